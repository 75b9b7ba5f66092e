"""Requests per second and latency of `petalnet serve` on this machine, and predict's cold start.

    python benchmarks/bench_serve.py runs/seed                      # photos from $PETALNET_DATA
    python benchmarks/bench_serve.py runs/seed --clients 16 --requests 400 --onnx model.onnx --json

Starts `petalnet serve MODEL` on a free port, sends --requests single-photo POST /predict requests from
--clients concurrent clients (real photos, round robin), and reports requests/s and the p50/p99
latency. With --onnx, also times `petalnet predict` on one photo in a new process for the checkpoint
and for the exported ONNX file (best of 3).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from petalnet.serving.client import post_photos

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from server_process import ServerProcess  # noqa: E402 - the tests' harness


def real_photos(root, count):
    paths = sorted(p for p in Path(root).rglob("*.jpg"))
    step = max(1, len(paths) // count)
    return [(p.name, p.read_bytes()) for p in paths[::step][:count]]


def load(url, photos, clients, requests):
    def one(k):
        started = time.perf_counter()
        status, _ = post_photos(url, [photos[k % len(photos)]])
        return status, time.perf_counter() - started

    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(one, range(clients)))  # warm-up
        started = time.perf_counter()
        answers = list(pool.map(one, range(requests)))
        seconds = time.perf_counter() - started
    latencies = sorted(latency for _, latency in answers)
    return {"requests": requests, "clients": clients, "ok": sum(status == 200 for status, _ in answers),
            "requests_per_s": round(requests / seconds, 1),
            "p50_ms": round(1000 * statistics.median(latencies), 1),
            "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1)}


def cold_start(model, photo):
    times = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "petalnet", "predict", str(model), str(photo), "--device", "cpu"],
                       check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return round(min(times), 2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="run folder or checkpoint")
    parser.add_argument("--data", default=os.environ.get("PETALNET_DATA"), help="photos (default $PETALNET_DATA)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--onnx", help="an exported .onnx of the same model: also time predict's cold start")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.data:
        parser.exit(2, "bench_serve.py: error: pass --data DIR or set PETALNET_DATA\n")
    photos = real_photos(args.data, 64)
    server = ServerProcess(args.model)
    try:
        result = load(server.url, photos, args.clients, args.requests)
    finally:
        server.stop()
    if args.onnx:
        photo = sorted(Path(args.data).rglob("*.jpg"))[0]
        result["predict_cold_start_s"] = {"checkpoint": cold_start(args.model, photo),
                                          "onnx": cold_start(args.onnx, photo)}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['requests']} requests from {result['clients']} clients: {result['ok']} answered 200, "
          f"{result['requests_per_s']} requests/s, latency p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms")
    if args.onnx:
        cold = result["predict_cold_start_s"]
        print(f"petalnet predict on one photo, new process: checkpoint {cold['checkpoint']} s, "
              f".onnx {cold['onnx']} s (no torch imported)")


if __name__ == "__main__":
    main()
