"""How fast petalnet trains and predicts, against the model alone and the tutorial's pipeline, in one run.

    python benchmarks/bench_train.py                 # real photos from $PETALNET_DATA (or --data DIR)
    python benchmarks/bench_train.py --json          # one JSON object (keys below)
    make bench

Measured side by side, same process, same batch size, same photos:
  (a) model_only_train     the model training on random tensors already on the device
  (b) petalnet_train       petalnet's default path: decoded-photo cache + batch augmentation on the device
  (c) seed_pipeline_train  the tutorial's: ImageFolder + torchvision transforms (v1) on PIL, num_workers=0,
                           NCHW fp32
  (d) model_only_infer vs petalnet_infer: inference on random tensors vs `petalnet predict`'s path
      (Classifier.iter_predict on photo files: Pillow decode, resize, model)
(a), (b) and (d) use the device settings petalnet picks (devices/settings.py). Each is measured --rounds times
(default 3), alternating, and the median is kept: on a 2-core CPU one measurement varies by +-5%.
Goals: CPU b/a >= 0.95 and d >= 0.9; GPU b/c >= 30.
"""

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from petalnet.pipeline.cache import decoded_photos
from petalnet.models.checkpoint import Checkpoint, save_checkpoint
from petalnet.inference.classifier import Classifier
from petalnet.inference.torch_backend import TorchBackend
from petalnet.devices.select import describe, pick_device
from petalnet.training.engine import Training, train_one_epoch
from petalnet.data.folders import find_classes
from petalnet.models.networks import build_model
from petalnet.pipeline.loaders import CachedTrainBatches
from petalnet.config.train import TrainConfig
from petalnet.models.spec import InferenceSpec
from petalnet.utils.fields import to_dict
from petalnet.devices.settings import autocast, device_settings, grad_scaler


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_steps(model, batches, device, settings, steps, warmup):
    """Images per second over `steps` training steps after `warmup` (batches: an iterator)."""
    fused = bool(settings and settings.fused_optimizer) or None  # the tutorial's path (no settings): plain Adam
    optimizer = torch.optim.Adam(model.parameters(), lr=TrainConfig().lr, fused=fused)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    training = Training(model=model, optimizer=optimizer, scheduler=scheduler, criterion=nn.CrossEntropyLoss(),
                        scaler=grad_scaler(device, settings) if settings else None, device=device, settings=settings)
    train_one_epoch(training, itertools.islice(batches, warmup), progress=False)
    sync(device)
    stats = train_one_epoch(training, itertools.islice(batches, steps), progress=False)
    sync(device)
    return stats["images"] / stats["seconds"]


def fresh_model(device, settings, classes=5):
    torch.manual_seed(0)
    model = build_model("alexnet_half", classes).to(device)
    if settings is None or not settings.channels_last:
        return model
    return model.to(memory_format=torch.channels_last)


def random_batches(batch, size, device, settings):
    images = torch.randn(batch, 3, size, size, device=device)
    if settings.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, 5, (batch,), device=device)
    return itertools.repeat((images, targets))


def sample_photos(root, count):
    """`count` photos spread over the class folders (every k-th, sorted), with labels."""
    classes = find_classes(root)
    photos = [(p, label) for label, name in enumerate(classes) for p in sorted((root / name).iterdir())]
    step = max(1, len(photos) // count)
    chosen = photos[::step][:count]
    return [p for p, _ in chosen], [label for _, label in chosen]


def endless(loader):
    """Epoch after epoch of a loader (itertools.cycle would keep every batch it has seen)."""
    while True:
        yield from loader


def tutorial_batches(root, batch):
    """The tutorial's training loader, exactly: ImageFolder, transforms v1, shuffle, no workers."""
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(),
                                    transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)])
    loader = torch.utils.data.DataLoader(datasets.ImageFolder(str(root), transform=transform), batch_size=batch,
                                         shuffle=True, num_workers=0)
    return endless(loader)


def measure_training(args, device, settings, photos):
    size, batch = 224, args.batch_size
    config = TrainConfig(batch_size=batch, image_size=size, cache_size=256)
    started = time.perf_counter()
    train, _ = decoded_photos({"train": photos, "val": ([], [])}, 256, size, config.eval_resize, settings.workers,
                              progress=False)
    cache_seconds = time.perf_counter() - started
    cached = CachedTrainBatches(train, config, device, settings)
    cached.set_epoch(1)
    runs = {"a": [], "b": [], "c": []}
    for _ in range(args.rounds):
        runs["a"].append(timed_steps(fresh_model(device, settings), random_batches(batch, size, device, settings),
                                     device, settings, args.steps, args.warmup))
        runs["b"].append(timed_steps(fresh_model(device, settings), endless(cached), device, settings,
                                     args.steps, args.warmup))
        runs["c"].append(timed_steps(fresh_model(device, None), tutorial_batches(args.data, batch), device, None,
                                     args.steps, args.warmup))
    return {key: statistics.median(values) for key, values in runs.items()}, cache_seconds


@torch.no_grad()
def model_only_inference(model, device, settings, batch, steps):
    images = next(random_batches(batch, 224, device, settings))[0]
    with autocast(device, settings, training=False):
        model(images)
        sync(device)
        started = time.perf_counter()
        for _ in range(steps):
            model(images).float().softmax(dim=1).cpu()
        sync(device)
    return batch * steps / (time.perf_counter() - started)


def measure_inference(args, device, photos):
    seed = TrainConfig()
    meta = InferenceSpec(model=seed.model, classes=("daisy", "dandelion", "roses", "sunflowers", "tulips"),
                         image_size=seed.image_size, eval_resize=seed.eval_resize, mean=seed.mean, std=seed.std)
    backend = TorchBackend(fresh_model(device, None), meta, device)
    classifier = Classifier(backend)
    batch, paths = 64, photos[0]
    runs = {"model": [], "predict": []}
    for _ in range(args.rounds):
        runs["model"].append(model_only_inference(backend.model, device, backend.settings, batch,
                                                  max(1, len(paths) // batch)))
        started = time.perf_counter()
        count = sum(1 for _ in classifier.iter_predict(paths, batch_size=batch))
        sync(device)
        runs["predict"].append(count / (time.perf_counter() - started))
    return statistics.median(runs["model"]), statistics.median(runs["predict"]), meta


def cold_start_seconds(meta, photo):
    """Wall time of `python -m petalnet predict CKPT PHOTO` in a new process (CPU), best of 3."""
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "model.pt"
        save_checkpoint(checkpoint, Checkpoint(spec=meta, weights=build_model("alexnet_half", 5).state_dict()))
        times = []
        for _ in range(3):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "petalnet", "predict", str(checkpoint), str(photo), "--device",
                            "cpu"], check=True, capture_output=True)
            times.append(time.perf_counter() - started)
    return min(times)


def training_flops_per_image(size=224):
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model("alexnet_half", 5)
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, size, size)).sum().backward()
    return counter.get_total_flops()


def matmul_peak_tflops(device, settings):
    """What a large matmul reaches in the training precision: the ceiling for this model's convs."""
    n = 4096 if device.type == "cuda" else 1024
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(settings.amp, torch.float32)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    steps, started = (50 if device.type == "cuda" else 5), time.perf_counter()
    for _ in range(steps):
        a @ b
    sync(device)
    return 2 * n ** 3 * steps / (time.perf_counter() - started) / 1e12


def run(args):
    device = pick_device(args.device)
    settings = device_settings(device)
    steps = args.steps or (16 if device.type == "cpu" else 60)
    args.steps, args.warmup = steps, args.warmup or (2 if device.type == "cpu" else 10)
    photos = sample_photos(args.data, args.photos or steps * args.batch_size * 2)
    train, cache_seconds = measure_training(args, device, settings, photos)
    model_infer, predict_infer, meta = measure_inference(args, device, photos)
    flops = training_flops_per_image()
    peak = matmul_peak_tflops(device, settings)
    result = {
        "device": describe(device), "torch": torch.__version__, "batch_size": args.batch_size,
        "settings": {k: v for k, v in to_dict(settings).items() if k not in ("why", "cache_dir")},
        "model_only_train_img_s": round(train["a"], 1), "petalnet_train_img_s": round(train["b"], 1),
        "seed_pipeline_train_img_s": round(train["c"], 1), "model_only_infer_img_s": round(model_infer, 1),
        "petalnet_infer_img_s": round(predict_infer, 1),
        "cache_build_s": round(cache_seconds, 2), "photos": len(photos[0]),
        "train_gflop_per_image": round(flops / 1e9, 3), "matmul_peak_tflops": round(peak, 2),
        "petalnet_train_fraction_of_matmul_peak": round(train["b"] * flops / (peak * 1e12), 3),
    }
    result.update({"b_over_a": round(train["b"] / train["a"], 3), "b_over_c": round(train["b"] / train["c"], 2),
                   "d_ratio": round(predict_infer / model_infer, 3)})
    if not args.skip_cold_start:
        result["predict_cold_start_s"] = round(cold_start_seconds(meta, photos[0][0]), 2)
    return result


def report(result):
    lines = [f"device: {result['device']}, torch {result['torch']}, batch {result['batch_size']}, "
             f"{result['photos']} photos (decoded in {result['cache_build_s']} s)",
             f"settings: {result['settings']}", "",
             "training img/s",
             f"  (a) model alone, random tensors           {result['model_only_train_img_s']:>9}",
             f"  (b) petalnet (cache pipeline)             {result['petalnet_train_img_s']:>9}",
             f"  (c) the tutorial's pipeline (PIL, fp32)   {result['seed_pipeline_train_img_s']:>9}",
             "inference img/s",
             f"  model alone                               {result['model_only_infer_img_s']:>9}",
             f"  petalnet predict's path (files)           {result['petalnet_infer_img_s']:>9}", "",
             f"b/a = {result['b_over_a']}   (goal on CPU >= 0.95)",
             f"b/c = {result['b_over_c']}   (goal on GPU >= 30)",
             f"d   = {result['d_ratio']}   (predict path / model alone; goal on CPU >= 0.9)",
             f"b uses {result['petalnet_train_fraction_of_matmul_peak']:.1%} of a large matmul's "
             f"{result['matmul_peak_tflops']} TFLOP/s ({result['train_gflop_per_image']} GFLOP per training image)"]
    if "predict_cold_start_s" in result:
        lines.append(f"petalnet predict, one photo, new process (CPU): {result['predict_cold_start_s']} s "
                     "(goal <= 3 s)")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=os.environ.get("PETALNET_DATA"),
                        help="folder of class folders (default $PETALNET_DATA)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, help="timed training steps (default 16 CPU, 60 GPU)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating repetitions; the median is kept")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 2 CPU, 10 GPU)")
    parser.add_argument("--photos", type=int, help="photos decoded for (b) and (d) (default 2 x steps x batch)")
    parser.add_argument("--skip-cold-start", action="store_true", help="do not time `petalnet predict` start-up")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.data is None or not Path(args.data).is_dir():
        parser.exit(2, "bench_train.py: error: pass --data DIR or set PETALNET_DATA to a folder of class folders\n")
    args.data = Path(args.data)
    result = run(args)
    print(json.dumps(result) if args.json else report(result))


if __name__ == "__main__":
    main()
