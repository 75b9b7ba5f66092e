"""Requests per second and latency of `petalnet serve` on this machine, predict's cold start, and the
server under overload.

    python benchmarks/bench_serve.py runs/seed                      # photos from $PETALNET_DATA
    python benchmarks/bench_serve.py runs/seed --clients 16 --requests 400 --onnx model.onnx --json
    python benchmarks/bench_serve.py runs/seed --overload           # 64 clients, 30 s, --max-pending 32

Starts `petalnet serve MODEL` on a free port, sends --requests single-photo POST /predict requests from
--clients concurrent clients (real photos, round robin), and reports requests/s and the p50/p99
latency. With --onnx, also times `petalnet predict` on one photo in a new process for the checkpoint
and for the exported ONNX file (best of 3).

--overload: a server with --max-pending P gets --overload-clients clients that each post a photo again
the moment they have an answer (429 included: impolite clients, the worst case; --polite: they wait
the Retry-After a 429 asks for) for --seconds, --rounds times;
reported: answers by status, accepted requests' p50/p99 latency, how fast a 429 comes, the slowest
/health answer during the load (polled every 0.25 s), and the server's memory (VmRSS) after start-up,
after a warm-up and after each round (growth that goes on round after round would be a leak).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from petalnet.serving.client import get_json, post_photos

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


def percentile(values, q):
    values = sorted(values)
    return round(1000 * values[min(len(values) - 1, int(q * len(values)))], 1) if values else None


def hammer(url, photos, clients, seconds, polite=False):
    """Each client posts again as soon as it has an answer (after Retry-After on a 429 when `polite`),
    until `seconds` pass: [(status, latency)]."""
    deadline = time.perf_counter() + seconds

    def client(k):
        answers = []
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                status, _ = post_photos(url, [photos[(k + len(answers)) % len(photos)]], timeout=60)
            except OSError:
                status = "connection error"
            answers.append((status, time.perf_counter() - started))
            if polite and status == 429:
                time.sleep(1.0)  # the server's Retry-After
        return answers

    with ThreadPoolExecutor(max_workers=clients) as pool:
        return [answer for answers in pool.map(client, range(clients)) for answer in answers]


def health_watch(url, stop):
    """The slowest /health answer (seconds) while `stop` is not set."""
    slowest = 0.0
    while not stop.wait(0.25):
        started = time.perf_counter()
        status, _ = get_json(url + "/health", timeout=30)
        slowest = max(slowest, time.perf_counter() - started if status == 200 else float("inf"))
    return slowest


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def overload(model, photos, clients, seconds, max_pending, rounds=2, polite=False):
    server = ServerProcess(model, "--max-pending", max_pending, "--log-format", "off")
    result = {"clients": clients, "seconds": seconds, "max_pending": max_pending, "polite": polite,
              "rss_mib": {"started": rss_mib(server.process.pid)}, "rounds": []}
    try:
        load(server.url, photos, 4, 100)
        result["rss_mib"]["warm"] = rss_mib(server.process.pid)
        for round_ in range(1, rounds + 1):
            stop, slowest = threading.Event(), []
            watcher = threading.Thread(target=lambda stop=stop, slowest=slowest: slowest.append(
                health_watch(server.url, stop)))
            watcher.start()
            answers = hammer(server.url, photos, clients, seconds, polite)
            stop.set()
            watcher.join()
            statuses = {}
            for status, _ in answers:
                statuses[str(status)] = statuses.get(str(status), 0) + 1
            accepted = [latency for status, latency in answers if status == 200]
            rejected = [latency for status, latency in answers if status == 429]
            result["rounds"].append({
                "requests": len(answers), "statuses": statuses, "accepted_per_s": round(len(accepted) / seconds, 1),
                "rejected_share": round(len(rejected) / len(answers), 4),
                "server_errors": sum(n for s, n in statuses.items() if s.isdigit() and int(s) >= 500),
                "accepted_p50_ms": percentile(accepted, 0.5), "accepted_p99_ms": percentile(accepted, 0.99),
                "rejected_p50_ms": percentile(rejected, 0.5), "rejected_p99_ms": percentile(rejected, 0.99),
                "health_slowest_ms": round(1000 * slowest[0], 1)})
            result["rss_mib"][f"after_round_{round_}"] = rss_mib(server.process.pid)
    finally:
        server.stop()
    result["rss_mib"] = {k: round(v, 1) for k, v in result["rss_mib"].items()}
    return result


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
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients of the throughput run")
    parser.add_argument("--requests", type=int, default=400, help="requests of the throughput run")
    parser.add_argument("--onnx", help="an exported .onnx of the same model: also time predict's cold start")
    parser.add_argument("--overload", action="store_true", help="the overload run instead of the throughput run")
    parser.add_argument("--overload-clients", type=int, default=64, help="clients of the overload run")
    parser.add_argument("--seconds", type=float, default=30, help="length of each overload round")
    parser.add_argument("--max-pending", type=int, default=32, help="the server's --max-pending in the overload run")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the overload run")
    parser.add_argument("--polite", action="store_true", help="overload clients wait Retry-After after a 429")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    if not args.data:
        parser.exit(2, "bench_serve.py: error: pass --data DIR or set PETALNET_DATA\n")
    photos = real_photos(args.data, 64)
    if args.overload:
        result = overload(args.model, photos, args.overload_clients, args.seconds, args.max_pending, args.rounds,
                          args.polite)
        print(json.dumps(result) if args.json else json.dumps(result, indent=1))
        return
    server = ServerProcess(args.model, "--log-format", "off")
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
