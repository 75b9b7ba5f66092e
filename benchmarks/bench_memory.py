"""Memory at scale: peak resident memory and speed of `petalnet train` as the photo folder grows.

    python benchmarks/large_folder.py $PETALNET_DATA ~/.cache/petalnet/large-50k --count 50000   # (and 3k, 12k)
    python benchmarks/bench_memory.py --work /tmp/bench-memory \\
        --disk ~/.cache/petalnet/large-3k ~/.cache/petalnet/large-12k ~/.cache/petalnet/large-50k \\
        --memory ~/.cache/petalnet/large-3k ~/.cache/petalnet/large-12k --cold ~/.cache/petalnet/large-12k \\
        --two-processes ~/.cache/petalnet/large-12k

Every run is `petalnet train` (recipe seed, --epochs 2, --image-size 128) in its own process, which
reports its peak resident memory (VmHWM) as it ends:
    --disk F           the store on disk (--cache-dir under --work, --cache-memory below the photos' size)
    --memory F         the photos in memory (the default when they fit)
    --cold F           a second disk run that opens the store the first built, after the kernel's page cache
                       was dropped (root only): epoch 1 reads the store from the disk itself
    --two-processes F  torchrun, 2 processes on this machine, photos in memory and then on disk: the two
                       peaks added, beside the single-process runs of F
    --loader DIR       no training: the batches alone (crops, flips, normalization at 128 px, batch 32)
                       from the store in cache folder DIR, read from disk and kept resident, side by side
                       (disk, resident, disk), 300 batches each: what the store costs against the model
Prints one markdown table: photos, how, store GiB, decode s per 1000 photos (listing and checking not
included: rank 0's, under torchrun), train img/s in epochs 1 and 2, peak resident GiB (the sum over processes).
"""

import argparse
import itertools
import json
import os
import platform
import shutil
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

WRAPPER = """import sys
from petalnet.cli import main
code = main(sys.argv[1:])
peak = [line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")]
print(f"peak-kib {peak[0] if peak else 0}", file=sys.stderr, flush=True)
sys.exit(code)
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="a folder for the runs and stores (emptied first)")
    parser.add_argument("--disk", nargs="*", default=[], type=Path, help="folders to train on with the store on disk")
    parser.add_argument("--memory", nargs="*", default=[], type=Path, help="folders to train on from memory")
    parser.add_argument("--cold", nargs="*", default=[], type=Path, help="folders for a cold-cache disk run")
    parser.add_argument("--two-processes", nargs="*", default=[], type=Path, help="folders for torchrun x 2")
    parser.add_argument("--loader", nargs="*", default=[], type=Path, help="cache folders: time the batches alone")
    parser.add_argument("--disk-budget", type=float, default=0.25, help="--cache-memory of disk runs, GiB")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run")
    parser.add_argument("--image-size", type=int, default=128, help="training image size, pixels")
    return parser.parse_args(argv)


def train(args, folder, name, extra=(), processes=1):
    """One run; returns its row: times from its log lines, img/s from metrics.csv, peak resident KiB."""
    out = args.work / name
    shutil.rmtree(out, ignore_errors=True)
    wrapper = args.work / "wrapper.py"
    command = [sys.executable, str(wrapper)]
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   str(wrapper)]
    command += ["train", "--data", str(folder), "--out", str(out), "--recipe", "seed", "--epochs", str(args.epochs),
                "--image-size", str(args.image_size), "--device", "cpu", *extra]
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}
    with open(args.work / f"{name}.stderr", "w+") as stderr_file:  # a file: a full pipe cannot block the child
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=stderr_file, text=True, env=env)
        stderr_file.seek(0)
        stderr = stderr_file.read()
    if done.returncode != 0:
        sys.exit(f"{name} failed:\n{stderr[-3000:]}")
    decoding = [re.match(r"decoded (\d+) photos in ([\d.]+) s", line) for line in done.stdout.splitlines()]
    decoding = [m for m in decoding if m]
    rows = [line.split(",") for line in (out / "metrics.csv").read_text().splitlines()]
    columns = {key: [row[k] for row in rows[1:]] for k, key in enumerate(rows[0])}
    config = json.loads((out / "config.json").read_text())
    peaks = [int(line.split()[1]) for line in stderr.splitlines() if line.startswith("peak-kib")]
    photos = config["num_train"] + config["num_val"]
    return {"photos": photos, "how": name.split("-")[0],
            "decode_s_per_1000": 1000 * float(decoding[0].group(2)) / int(decoding[0].group(1)) if decoding else None,
            "img_s": [float(v) for v in columns["train_images_per_s"]], "peak_gib": sum(peaks) / 2**20,
            "processes": len(peaks)}


def loader_speeds(cache, batches=300):
    """img/s of the training batches alone from the store in `cache`: disk, resident, disk."""
    import dataclasses

    from petalnet.config.train import TrainConfig
    from petalnet.devices.settings import DeviceSettings
    from petalnet.pipeline.loaders import CachedTrainBatches
    from petalnet.pipeline.store import open_store

    folder = next(p for p in Path(cache).iterdir() if p.is_dir())
    config = dataclasses.replace(TrainConfig(), image_size=128, batch_size=32, cache_size=146)
    speeds = []
    for resident in (False, True, False):
        loader = CachedTrainBatches(open_store(folder, resident=resident, check=False)["train"], config, "cpu",
                                    DeviceSettings(channels_last=True))
        loader.set_epoch(1)
        started, seen = time.perf_counter(), 0
        for _, labels in itertools.islice(loader, batches):
            seen += len(labels)
        speeds.append((resident, seen / (time.perf_counter() - started)))
    return speeds


def store_gib(cache):
    return sum(p.stat().st_size for p in Path(cache).rglob("*.u8")) / 2**30 if Path(cache).is_dir() else None


def drop_page_cache():
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def main(argv=None):
    args = parse_args(argv)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    (args.work / "wrapper.py").write_text(WRAPPER)
    rows = []
    for folder in args.memory:
        rows.append({**train(args, folder, f"memory-{folder.name}"), "store": None})
    for folder in args.disk:
        cache = args.work / f"cache-{folder.name}"
        disk = ["--cache-dir", str(cache), "--cache-memory", str(args.disk_budget)]
        rows.append({**train(args, folder, f"disk-{folder.name}", disk), "store": store_gib(cache)})
        if folder in args.cold:
            dropped = drop_page_cache()
            row = train(args, folder, f"cold-{folder.name}", disk)
            rows.append({**row, "how": "disk, cold" if dropped else "disk, again (cache not dropped)",
                         "store": store_gib(cache), "decode_s_per_1000": None})
    for folder in args.two_processes:
        rows.append({**train(args, folder, f"memory2-{folder.name}", processes=2), "store": None})
        cache = args.work / f"cache2-{folder.name}"
        disk = ["--cache-dir", str(cache), "--cache-memory", str(args.disk_budget / 2)]
        rows.append({**train(args, folder, f"disk2-{folder.name}", disk, processes=2), "store": store_gib(cache)})
    if rows:
        print_table(rows, args)
    for cache in args.loader:
        speeds = loader_speeds(cache)
        print(f"batches alone from {cache}: " + ", ".join(f"{'resident' if r else 'disk'} {v:.0f} img/s"
                                                       for r, v in speeds))


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def print_table(rows, args):
    print(f"\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu_name()}, {os.cpu_count()} cores; recipe seed, "
          f"{args.epochs} epochs at {args.image_size} px; disk runs: --cache-memory {args.disk_budget} GiB\n")
    print("| photos | how | processes | store GiB | decode s / 1000 photos | img/s epoch 1 | img/s epoch 2 | "
          "peak resident GiB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        store = f"{r['store']:.2f}" if r["store"] is not None else "-"
        decode = f"{r['decode_s_per_1000']:.1f}" if r["decode_s_per_1000"] is not None else "-"
        speeds = (r["img_s"] + [float("nan")])[:2]
        print(f"| {r['photos']} | {r['how']} | {r['processes']} | {store} | {decode} | {speeds[0]:.1f} | "
              f"{speeds[1]:.1f} | {r['peak_gib']:.2f} |")
    print(json.dumps(rows), file=sys.stderr)


if __name__ == "__main__":
    main()
