"""Inference per architecture: `petalnet predict` img/s and cold start, PyTorch checkpoint and ONNX Runtime,
measured side by side in one run on this machine.

    PETALNET_DATA=~/flower_photos python benchmarks/bench_models.py --out runs/bench_models
    python benchmarks/bench_models.py --models resnet18 efficientnet_lite0 --photos 200 --out /tmp/b

For each model: a checkpoint with random weights (speed does not depend on the weights) and the
InferenceSpec of a 5-class flower model at 224 px, exported to ONNX by `petalnet export`. Cold start is the
wall time of `petalnet predict MODEL one_photo.jpg` (a new process: imports, loading, one photo);
img/s is (N - 1) photos over the extra time `predict` takes for N photos instead of one. Decoding is
included (it is part of predicting a folder). Run nothing else on the machine meanwhile.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

MODELS = ("alexnet_half", "resnet18", "mobilenet_v3_large", "efficientnet_lite0", "convnext_tiny")
CLASSES = ("daisy", "dandelion", "roses", "sunflowers", "tulips")


def make_checkpoint(name, folder, image_size=224):
    import torch

    from petalnet.models.checkpoint import Checkpoint, save_checkpoint
    from petalnet.models.networks import build_model
    from petalnet.models.spec import InferenceSpec

    torch.manual_seed(0)
    model = build_model(name, len(CLASSES))
    spec = InferenceSpec(model=name, classes=CLASSES, image_size=image_size, eval_resize="center_crop")
    path = folder / f"{name}.pt"
    save_checkpoint(path, Checkpoint(spec=spec, weights=model.state_dict(), epoch=0, val_acc=0.0,
                                     config={"model": name}))
    return path


def petalnet(*args):
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "petalnet", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "TQDM_DISABLE": "1"})
    if done.returncode != 0:
        raise SystemExit(f"petalnet {' '.join(map(str, args))} failed:\n{done.stderr}")
    return time.perf_counter() - start


def photo_list(data, count):
    photos = sorted(p for p in Path(data).rglob("*.jpg"))
    return photos[:: max(1, len(photos) // count)][:count]


def measure(model_path, photos):
    one = petalnet("predict", model_path, photos[0], "--json")
    many = petalnet("predict", model_path, *photos, "--json")
    return {"cold_start_s": one, "img_per_s": (len(photos) - 1) / max(many - one, 1e-9)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.environ.get("PETALNET_DATA"), help="photos (default: $PETALNET_DATA)")
    parser.add_argument("--out", required=True, help="folder for checkpoints, ONNX files and results.json")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--image-size", type=int, default=224, help="the models' input size (the tests' smaller)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    photos = photo_list(args.data, args.photos)
    rows = []
    for name in args.models:
        checkpoint = make_checkpoint(name, out, args.image_size)
        onnx = out / f"{name}.onnx"
        petalnet("export", checkpoint, "--format", "onnx", "--out", onnx, "--check-photos", photos[0].parent)
        row = {"model": name, "torch": measure(checkpoint, photos), "onnx": measure(onnx, photos)}
        rows.append(row)
        print(f"| {name} | {row['torch']['img_per_s']:.1f} | {row['torch']['cold_start_s']:.2f} | "
              f"{row['onnx']['img_per_s']:.1f} | {row['onnx']['cold_start_s']:.2f} |", flush=True)
    (out / "results.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
