"""Compare stores for decoded training photos (issue 18): a packed flat file read with mmap
against WebDataset/wids, mosaicml-streaming and litdata, on this machine.

    python benchmarks/bench_stores.py --n 5000 --split-check     # ~7 min on 2 cores
    python benchmarks/bench_stores.py --n 20000 --repeats 1 --engines packed-mmap,webdataset,wids,streaming

The engines are optional; they were measured from a throwaway venv, not petalnet's:
    pip install webdataset wids mosaicml-streaming litdata

Rows "packed-mmap+dontneed" drop each used photo's pages after a batch (madvise per photo);
"+dontneed-all" drops the whole mapping once per batch. wids keeps 10 shards open (lru_size):
with more shards than that, random indices mostly miss and it re-opens a shard per photo.

The photos are synthetic uint8 HWC arrays shaped like petalnet's decoded train photos
(h in [110,146], w in [146,292], about 40-130 KB each; label = index % 5). Every engine stores
the same raw pixels without compression, so what is compared is the container and its reader.

For each engine a fresh subprocess writes the N photos, another reads them back for one full
pass in shuffled order in a single process (no DataLoader workers) and copies a 128x128 crop of
each photo into a batch tensor, as training would. Printed per row: write seconds per 1000
photos (fsync included), size on disk, read photos per CPU-second of the reading process (all its
threads; median and range of --repeats passes, each in a fresh process: robust when other jobs share
the CPUs) and per wall-clock second, peak resident-memory growth of the reading process
(VmHWM after the pass minus VmRSS before it, the peak reset with /proc/self/clear_refs), and
whether an arbitrary index can be read (true random access) or only a shuffle inside
shards/buffers. The page cache is warm (the data was just written): this measures reader cost,
not disk speed.

--split-check runs each engine as 2 ranks on 2 simulated nodes (1 rank each, the environment
variables torchrun sets, a gloo process group on 127.0.0.1) for 2 epochs and reports whether the
ranks' samples are disjoint and how many of node 1's epoch-1 samples it had not seen in epoch 0,
i.e. whether a node can hold only a fixed share of the data on its local disk.

An engine that is not installed is skipped with the pip command that installs it.
"""

import argparse
import importlib.util
import json
import mmap
import os
import shutil
import subprocess
import sys
import time
import warnings

import numpy as np
import torch

CROP = 128
BATCH = 256
ENGINES = {  # name: (python module that must import, pip package)
    "packed-mmap": ("numpy", "numpy"),
    "packed-mmap+dontneed": ("numpy", "numpy"),
    "packed-mmap+dontneed-all": ("numpy", "numpy"),
    "webdataset": ("webdataset", "webdataset"),
    "wids": ("wids", "wids"),
    "streaming": ("streaming", "mosaicml-streaming"),
    "streaming-index": ("streaming", "mosaicml-streaming"),
    "litdata": ("litdata", "litdata"),
    "litdata-index": ("litdata", "litdata"),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=5000, help="number of synthetic photos")
    p.add_argument("--dir", default="/tmp/bench_stores", help="scratch folder (wiped per engine)")
    p.add_argument("--engines", default=",".join(ENGINES), help="comma-separated subset of: " + ", ".join(ENGINES))
    p.add_argument("--shard-mb", type=int, default=64, help="shard/chunk size for the sharded engines")
    p.add_argument("--repeats", type=int, default=3, help="read passes per engine (fresh process each); median shown")
    p.add_argument("--seed", type=int, default=0, help="seed for shapes, pixels and shuffles")
    p.add_argument("--split-check", action="store_true", help="also run the 2-node split check")
    p.add_argument("--keep", action="store_true", help="keep the written stores")
    p.add_argument("--child", nargs=2, metavar=("ACTION", "ENGINE"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---------------------------------------------------------------- data and measurement helpers
def photos(n, seed):
    """Yield (index, uint8 HWC array, label); arrays are views into one random pool (cheap to make)."""
    rng = np.random.default_rng(seed)
    hs, ws = rng.integers(110, 147, n), rng.integers(146, 293, n)
    pool = np.frombuffer(rng.bytes(int(146 * 292 * 3 * 1.05) + 1), dtype=np.uint8)
    for i in range(n):
        size = int(hs[i] * ws[i] * 3)
        start = (i * 7919) % (len(pool) - size)
        yield i, pool[start : start + size].reshape(int(hs[i]), int(ws[i]), 3), i % 5


def status_kb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class Consumer:
    """Copies a random 128x128 crop (smaller if the photo is) of each photo into a batch tensor; counts what it saw."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed + 1)
        self.batch = torch.empty(BATCH, CROP, CROP, 3, dtype=torch.uint8)
        self.j, self.on_batch = 0, None
        self.epochs = [[]]  # keys seen, one list per epoch
        self.seen = self.epochs[0]

    def next_epoch(self):
        self.seen = []
        self.epochs.append(self.seen)

    def __call__(self, key, img):
        img = torch.as_tensor(img)
        ch, cw = min(CROP, img.shape[0]), min(CROP, img.shape[1])  # photos under 128 px: a smaller crop
        y, x = int(self.rng.integers(0, img.shape[0] - ch + 1)), int(self.rng.integers(0, img.shape[1] - cw + 1))
        self.batch[self.j, :ch, :cw].copy_(img[y : y + ch, x : x + cw])
        self.seen.append(int(key))
        self.j += 1
        if self.j == BATCH:
            self.j = 0
            if self.on_batch:
                self.on_batch()


def dir_mb(path):
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total / 2**20


# ---------------------------------------------------------------- (a) packed flat file + mmap
def packed_write(a, out):
    index = []
    with open(os.path.join(out, "train.u8"), "wb") as f:
        for _, img, label in photos(a.n, a.seed):
            index.append((f.tell(), img.shape[0], img.shape[1], label))
            f.write(img.tobytes())
    np.save(os.path.join(out, "index.npy"), np.array(index, dtype=np.int64))


def packed_read(a, out, eat, dontneed=False, order=None):
    index = np.load(os.path.join(out, "index.npy"))
    f = open(os.path.join(out, "train.u8"), "rb")
    mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    used = []

    def drop_pages():  # "disk" mode: give back the pages of the photos just used
        if dontneed == "all":  # one call for the whole mapping: also drops neighbours' pages that
            mm.madvise(mmap.MADV_DONTNEED)  # the kernel mapped around a fault (per photo, ~26% stay)
            return
        for off, h, w, _ in used:
            start = off - off % mmap.PAGESIZE
            mm.madvise(mmap.MADV_DONTNEED, start, off + h * w * 3 - start)
        used.clear()

    if dontneed:
        eat.on_batch = drop_pages
    order = np.random.default_rng(a.seed).permutation(len(index)) if order is None else order
    for i in order:
        off, h, w, _ = (int(v) for v in index[i])
        if dontneed:
            used.append((off, h, w, 0))
        eat(i, torch.frombuffer(mm, dtype=torch.uint8, count=h * w * 3, offset=off).view(h, w, 3))


# ---------------------------------------------------------------- (b) WebDataset tar shards / wids
def wds_write(a, out):
    import webdataset as wds

    with wds.ShardWriter(os.path.join(out, "shard-%05d.tar"), maxsize=a.shard_mb * 2**20, verbose=0) as w:
        for i, img, label in photos(a.n, a.seed):
            w.write({"__key__": f"{i:08d}", "npy": img, "cls": label})
    shards = sorted(f for f in os.listdir(out) if f.endswith(".tar"))
    counts = [sum(1 for _ in wds.WebDataset(os.path.join(out, s), shardshuffle=False)) for s in shards]
    json.dump(
        [{"url": os.path.join(out, s), "nsamples": c} for s, c in zip(shards, counts)],
        open(os.path.join(out, "shards.json"), "w"),
    )


def wds_read(a, out, eat, epochs=1):
    import webdataset as wds

    urls = [s["url"] for s in json.load(open(os.path.join(out, "shards.json")))]
    ds = (
        wds.WebDataset(urls, shardshuffle=len(urls), nodesplitter=wds.split_by_node, seed=a.seed).shuffle(1000).decode()
    )  # shard order shuffled, then a 1000-sample shuffle buffer
    for epoch in range(epochs):
        eat.next_epoch() if epoch else None
        for s in ds:
            eat(s["__key__"], s["npy"])


def wids_read(a, out, eat, order=None):
    import wids

    shards = json.load(open(os.path.join(out, "shards.json")))
    ds = wids.ShardListDataset(shards, localname=lambda url: url, transformations=[wids.wids_decode.decode_basic])
    order = np.random.default_rng(a.seed).permutation(len(ds)) if order is None else order
    for i in order:
        s = ds[int(i)]
        eat(s["__key__"], s[".npy"])


# ---------------------------------------------------------------- (c) mosaicml-streaming MDS
def streaming_write(a, out):
    from streaming import MDSWriter

    cols = {"i": "int", "x": "ndarray:uint8", "y": "int"}
    with MDSWriter(out=out, columns=cols, size_limit=a.shard_mb * 2**20, compression=None) as w:
        for i, img, label in photos(a.n, a.seed):
            w.write({"i": i, "x": img, "y": label})


def streaming_read(a, out, eat, index=False, epochs=1):
    from streaming import StreamingDataset
    from streaming.base.util import clean_stale_shared_memory

    clean_stale_shared_memory()
    ds = StreamingDataset(local=out, shuffle=True, shuffle_seed=a.seed, batch_size=BATCH)
    read_dataset(ds, a, eat, index, epochs)


def read_dataset(ds, a, eat, index, epochs, set_epoch=None):
    """index: a global permutation through ds[i] (true random access); else iterate `epochs` times."""
    if index:
        for i in np.random.default_rng(a.seed).permutation(len(ds)):
            s = ds[int(i)]
            eat(s["i"], s["x"])
        return
    for epoch in range(epochs):
        eat.next_epoch() if epoch else None
        if set_epoch:
            set_epoch(epoch + 1)
        for s in ds:
            eat(s["i"], s["x"])


# ---------------------------------------------------------------- (d) litdata chunks
def litdata_write(a, out):
    from litdata.streaming.writer import BinaryWriter

    w = BinaryWriter(out, chunk_bytes=a.shard_mb * 2**20)
    for i, img, label in photos(a.n, a.seed):
        w.add_item(i, {"i": i, "x": img, "y": label})
    w.done()
    w.merge()


def litdata_read(a, out, eat, index=False, epochs=1):
    from litdata import StreamingDataset

    ds = StreamingDataset(out, shuffle=True, seed=a.seed)
    read_dataset(ds, a, eat, index, epochs, ds.set_epoch)


# engine: (store folder, writer, reader, true random access)
def engine_table():
    return {
        "packed-mmap": ("packed", packed_write, packed_read, "yes (any index)"),
        "packed-mmap+dontneed": ("packed", packed_write, lambda a, o, e: packed_read(a, o, e, dontneed=True),
                                 "yes (any index)"),
        "packed-mmap+dontneed-all": ("packed", packed_write, lambda a, o, e: packed_read(a, o, e, dontneed="all"),
                                     "yes (any index)"),
        "webdataset": ("wds", wds_write, wds_read, "no: shard order + 1000-sample buffer"),
        "wids": ("wds", wds_write, wids_read, "yes (tar index + mmap)"),
        "streaming": ("mds", streaming_write, streaming_read, "iter: block shuffle (py1e)"),
        "streaming-index": ("mds", streaming_write, lambda a, o, e: streaming_read(a, o, e, index=True),
                            "yes (get_item)"),
        "litdata": ("lit", litdata_write, litdata_read, "iter: chunk order + within chunk"),
        "litdata-index": ("lit", litdata_write, lambda a, o, e: litdata_read(a, o, e, index=True), "yes (__getitem__)"),
    }


# ---------------------------------------------------------------- child processes
def child(a):
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    # one intra-op thread, as in a DataLoader worker: with 2 (the default here) the small crop copies
    # ran 50-100x slower whenever another job kept the second core busy
    torch.set_num_threads(1)
    action, name = a.child
    folder, write, read, _ = engine_table()[name]
    out = os.path.join(a.dir, folder)
    importlib.import_module(ENGINES[name][0])  # import cost is measured apart (see the report), not timed here
    if action == "write":
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        t = time.perf_counter()
        write(a, out)
        for root, _, files in os.walk(out):  # durable: part of the write; and reads must not meet dirty pages
            for f in files:
                fd = os.open(os.path.join(root, f), os.O_RDONLY)
                os.fsync(fd)
                os.close(fd)
        res = {"write_s": time.perf_counter() - t, "mb": dir_mb(out)}
    elif action == "read":
        eat = Consumer(a.seed)
        rss0 = status_kb("VmRSS")
        open("/proc/self/clear_refs", "w").write("5")  # reset VmHWM to the current RSS
        t, cpu = time.perf_counter(), time.process_time()
        read(a, out, eat)
        dt, cpu = time.perf_counter() - t, time.process_time() - cpu
        res = {
            "read_s": dt,
            "photos_s": len(eat.seen) / dt,
            "photos_cpu_s": len(eat.seen) / cpu,
            "count": len(eat.seen),
            "complete": sorted(eat.seen) == list(range(a.n)),
            "peak_mb": (status_kb("VmHWM") - rss0) / 1024,
            "end_mb": (status_kb("VmRSS") - rss0) / 1024,
        }
    else:  # split: this process is one rank of a 2-node job; record which samples it reads per epoch
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
        node_out = out if rank == 0 else out + f"-node{rank}"  # each node reads its own local copy
        eat = Consumer(a.seed)
        if name == "packed-mmap":  # petalnet: a fixed class-stratified share, positions rank::world
            for epoch in range(2):
                eat.next_epoch() if epoch else None
                order = np.random.default_rng(a.seed + epoch).permutation(np.arange(rank, a.n, world))
                packed_read(a, node_out, eat, order=order)
        else:
            read(a, node_out, eat, epochs=2)
        res = {"rank": rank, "epochs": eat.epochs}
        torch.distributed.destroy_process_group()
    print("RESULT " + json.dumps(res))


def run_child(a, action, name, env=None, own_shm=False):
    # own_shm: a private /dev/shm (mount namespace, needs root), so that a second simulated node on this
    # host does not share streaming's shared-memory names with the first, as a real second machine would not
    cmd = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs tmpfs /dev/shm && exec "$0" "$@"'] if own_shm else []
    cmd += [
        sys.executable,
        os.path.abspath(__file__),
        "--n",
        str(a.n),
        "--dir",
        a.dir,
        "--seed",
        str(a.seed),
        "--shard-mb",
        str(a.shard_mb),
        "--child",
        action,
        name,
    ]
    return subprocess.Popen(
        cmd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def result(proc, what):
    out, err = proc.communicate()
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{what} failed:\n{err[-3000:]}")


# ---------------------------------------------------------------- split check (2 simulated nodes)
def split_check(a, names):
    print("\n2 nodes x 1 rank, 2 epochs (torchrun's env vars + gloo on 127.0.0.1; node 1 reads its own copy)")
    own_shm = os.geteuid() == 0 and shutil.which("unshare") is not None
    print(f"{'engine':<14} {'per rank':>9} {'overlap':>8} {'union':>7} {'node1 epoch1 new':>17}")
    for port, name in enumerate(n for n in ("packed-mmap", "webdataset", "streaming", "litdata") if n in names):
        out = os.path.join(a.dir, engine_table()[name][0])
        shutil.rmtree(out + "-node1", ignore_errors=True)
        shutil.copytree(out, out + "-node1", copy_function=os.link)
        env = {
            "WORLD_SIZE": "2",
            "LOCAL_WORLD_SIZE": "1",
            "LOCAL_RANK": "0",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(29600 + port),
            "NNODES": "2",
        }  # NNODES: litdata reads it (CPU can't tell)
        procs = [
            run_child(
                a,
                "split",
                name,
                {**env, "RANK": str(r), "GROUP_RANK": str(r), "GLOBAL_RANK": str(r), "NODE_RANK": str(r)},
                own_shm=r > 0 and own_shm,
            )
            for r in range(2)
        ]
        try:
            r0, r1 = (result(p, f"{name} split") for p in procs)
        except RuntimeError as e:
            print(f"{name:<14} failed: {str(e).splitlines()[-1][:90]}")
            continue
        e0, e1 = [set(x) for x in r0["epochs"]], [set(x) for x in r1["epochs"]]
        new = len(e1[1] - e1[0]) / max(1, len(e1[1]))
        print(f"{name:<14} {len(r0['epochs'][0]):>9} {len(e0[0] & e1[0]):>8} {len(e0[0] | e1[0]):>7} {new:>16.0%}")
        shutil.rmtree(out + "-node1", ignore_errors=True)


# ---------------------------------------------------------------- main
def main(argv=None):
    a = parse_args(argv)
    if a.child:
        return child(a)
    names = [n.strip() for n in a.engines.split(",") if n.strip()]
    unknown = [n for n in names if n not in ENGINES]
    if unknown:
        sys.exit(f"unknown engine(s) {', '.join(unknown)}: choose from {', '.join(ENGINES)}")
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(
        f"N={a.n} photos, {os.cpu_count()} CPUs ({cpu}), torch {torch.__version__}, numpy {np.__version__}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    table, written = engine_table(), {}
    print(
        f"{'engine':<24} {'write s/1000':>12} {'disk MB':>8} {'photos/cpu-s':>12} {'(min-max)':>13} {'photos/s':>8} "
        f"{'peak RSS +MB':>12} {'end RSS +MB':>11}  random access"
    )
    for name in names:
        module, package = ENGINES[name]
        if importlib.util.find_spec(module) is None:
            print(f"{name:<24} skipped: not installed (pip install {package})")
            continue
        folder = table[name][0]
        try:
            if folder not in written:
                written[folder] = result(run_child(a, "write", name), f"{name} write")
            w = written[folder]
            runs = sorted(
                (result(run_child(a, "read", name), f"{name} read") for _ in range(a.repeats)),
                key=lambda r: r["photos_cpu_s"],
            )
            r = runs[len(runs) // 2]
        except RuntimeError as e:
            print(f"{name:<24} failed: {str(e).strip().splitlines()[-1][:100]}")
            continue
        spread = f"{runs[0]['photos_cpu_s']:.0f}-{runs[-1]['photos_cpu_s']:.0f}"
        flag = "" if all(x["complete"] for x in runs) else f"  (read {r['count']} photos, not each once)"
        print(
            f"{name:<24} {w['write_s'] / a.n * 1000:>12.2f} {w['mb']:>8.0f} {r['photos_cpu_s']:>12.0f} {spread:>13} "
            f"{r['photos_s']:>8.0f} {r['peak_mb']:>12.0f} {r['end_mb']:>11.0f}  {table[name][3]}{flag}",
            flush=True,
        )
    if a.split_check:
        split_check(a, names)
    if not a.keep:
        shutil.rmtree(a.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
