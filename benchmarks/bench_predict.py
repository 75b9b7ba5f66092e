"""`petalnet predict` on a folder against the machine's limit: decoding and the model measured apart, then
together, in one run, for the PyTorch checkpoint, its ONNX export and its int8 ONNX export; then the
three's accuracy on the run's val photos and their file sizes.

    python benchmarks/bench_predict.py runs/finetune --data $PETALNET_DATA --photos 500

The limit: decoding (open + eval transform, as predict does it, on every core at once) and the model
(batches of --batch-size, already decoded) share the same cores, so no pipeline can beat
1 / (decode seconds per photo + model seconds per photo). `predict` img/s is reported as a fraction of
that. The photos are read once first (page cache warm). Run nothing else on the machine meanwhile.
"""

import argparse
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from petalnet.data.folders import list_photos
from petalnet.inference.classifier import load_classifier
from petalnet.inference.export import export_model
from petalnet.inference.photos import own_val_photos
from petalnet.inference.settings import ExportSettings
from petalnet.models.checkpoint import load_checkpoint
from petalnet.utils.cores import cpu_count


def pick_photos(folder, count):
    """Every `step`-th photo of the folder (sorted), `count` in all: each class represented."""
    paths = list_photos([folder])
    step = max(1, len(paths) // count)
    chosen = paths[::step][:count]
    for path in chosen:
        path.read_bytes()
    return chosen


def per_photo(work, items):
    """Seconds per item of work(items), after one item of warm-up."""
    work(items[:1])
    start = time.perf_counter()
    work(items)
    return (time.perf_counter() - start) / len(items)


def measure(name, decode, model_batch, predict, paths, batch_size):
    """One table row: decode s/photo on every core, model s/photo on decoded batches, predict img/s."""
    threads = cpu_count()
    with ThreadPoolExecutor(threads) as pool:
        decoded = list(pool.map(decode, paths))
        decode_s = per_photo(lambda items: list(pool.map(decode, items)), paths)
    one_thread_s = per_photo(lambda items: [decode(p) for p in items], paths[:100])
    batches = [decoded[k:k + batch_size] for k in range(0, len(decoded), batch_size)]
    model_s = per_photo(lambda chunks: [model_batch(chunk) for chunk in chunks], batches) / batch_size
    model_s *= len(batches) * batch_size / len(decoded)  # the last batch may be short
    predict_s = per_photo(predict, paths)
    limit = 1 / (decode_s + model_s)
    return (f"| {name} | {1 / one_thread_s:.0f} | {1 / decode_s:.0f} | {1 / model_s:.0f} | {limit:.0f} | "
            f"{1 / predict_s:.0f} | {1 / predict_s / limit:.2f} |")


def measure_classifier(name, classifier, paths, batch_size):
    """measure() for any model format, through the classifier's public interface (decode, rank, iter_predict)."""
    return measure(name, lambda p: classifier.decode(p).prepared, lambda chunk: classifier.rank(chunk, 1),
                   lambda items: list(classifier.iter_predict(items, batch_size=batch_size)), paths, batch_size)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="a run folder or checkpoint")
    parser.add_argument("--data", default=os.environ.get("PETALNET_DATA"), help="a folder of photos")
    parser.add_argument("--photos", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    paths = pick_photos(args.data, args.photos)
    torch_clf = load_classifier(args.model, device="cpu")
    spec = torch_clf.spec
    rows = [measure_classifier("PyTorch", torch_clf, paths, args.batch_size)]
    accuracy = [accuracy_row("PyTorch", torch_clf, None, args.model)]
    with tempfile.TemporaryDirectory() as folder:
        for name, quantize in (("ONNX Runtime", None), ("ONNX Runtime int8", "int8")):
            onnx_path = Path(folder) / f"model-{quantize or 'fp32'}.onnx"
            export_model(ExportSettings(model=args.model, out=onnx_path, quantize=quantize), log=lambda line: None)
            onnx_clf = load_classifier(onnx_path)
            rows.append(measure_classifier(name, onnx_clf, paths, args.batch_size))
            accuracy.append(accuracy_row(name, onnx_clf, onnx_path, args.model))
    print(f"machine: {platform.processor() or platform.machine()}, {cpu_count()} cores, torch {torch.__version__}, "
          f"python {sys.version.split()[0]}; {len(paths)} photos from {args.data}, model {args.model} "
          f"({spec.image_size} px), batch {args.batch_size}")
    print("\n| path | decode img/s, 1 thread | decode img/s, all cores | model img/s | limit img/s | "
          "predict img/s | predict / limit |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print("\n| model | file MB | val accuracy | val photos |")
    print("|---|---:|---:|---:|")
    print("\n".join(accuracy))


def accuracy_row(name, classifier, path, model):
    """Top-1 accuracy of `classifier` on the run's own val photos, and the size of its file."""
    if path is None:
        path = Path(model) / "best.pt" if Path(model).is_dir() else Path(model)
    _, photos, labels = own_val_photos(load_checkpoint(model), model)
    records = classifier.predict(photos)
    right = sum(record["top"][0]["class"] == classifier.classes[label] for record, label in zip(records, labels))
    return f"| {name} | {path.stat().st_size / 1e6:.1f} | {right / len(labels):.4f} | {len(labels)} |"


if __name__ == "__main__":
    main()
