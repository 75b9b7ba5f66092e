"""Shared fixtures: made-up photos (no dataset needed), one small trained run, and real photos when
$PETALNET_DATA names them.

Every test that is not about real photos runs on `made_photos` (imagegen.flower_image: five classes told
apart by colour), so a fresh clone without the dataset still covers the code. Training costs ~30 ms per
224 px image on a 2-core CPU, so the suite trains once per session at 64 px and reuses that run wherever
a test is not about training itself.
"""

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: no bars in test logs

import csv  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from file_server import server  # noqa: E402,F401 (the fixture: files over HTTP on 127.0.0.1)
from imagegen import flower_image, make_flower_folders  # noqa: E402
from petalnet.cli import main  # noqa: E402

CLASSES = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
SMALL_SIZE = "64"  # pixels: the trained fixture's image size
SMALL = ["--recipe", "seed", "--image-size", SMALL_SIZE, "--device", "cpu"]  # a small, quick run


def flower_dir():
    value = os.environ.get("PETALNET_DATA")
    return Path(value) if value else None


@pytest.fixture(scope="session")
def flowers():
    """The real flower_photos folder, or skip."""
    path = flower_dir()
    if path is None:
        pytest.skip("needs real photos: set PETALNET_DATA to the flower_photos folder (CI does)")
    if not path.is_dir():
        pytest.skip(f"PETALNET_DATA={path} is not a folder")
    return path


@pytest.fixture(scope="session")
def made_photos(tmp_path_factory):
    """20 made-up photos per class of CLASSES: 18 train / 2 val after the default split."""
    return make_flower_folders(tmp_path_factory.mktemp("made") / "photos", CLASSES, 20)


@pytest.fixture(scope="session")
def unseen_photos(tmp_path_factory):
    """4 more made-up photos per class, none of them in made_photos."""
    return make_flower_folders(tmp_path_factory.mktemp("unseen") / "unseen", CLASSES, 4, start_seed=500)


@pytest.fixture(scope="session")
def sample_photos(tmp_path_factory):
    """Photos for pixel-level comparisons: made-up ones of every shape, plus 5 real ones with $PETALNET_DATA."""
    folder = tmp_path_factory.mktemp("samples")
    paths = []
    for k in range(8):
        paths.append(folder / f"made_{k}.jpg")
        flower_image(k % len(CLASSES), 900 + k).save(paths[-1], quality=92)
    real = flower_dir()
    if real is not None and real.is_dir():
        paths += [sorted((real / name).iterdir())[3 * k] for k, name in enumerate(CLASSES)]
    return paths


@pytest.fixture(scope="session")
def trained_run(made_photos, tmp_path_factory):
    """One run trained through the CLI: recipe seed, 64 px, 2 epochs, on `made_photos`.

    Tests read it; a test that changes a run works on a copy (shutil.copytree)."""
    run = tmp_path_factory.mktemp("runs") / "small"
    code = main(["train", "--data", str(made_photos), "--out", str(run), "--epochs", "2", *SMALL])
    assert code == 0
    return run


def stop_after_epoch(monkeypatch, epochs):
    """Make `train` stop as Ctrl-C would right after saving epoch `epochs`; returns the undo (call it
    before resuming)."""
    import petalnet.training.train

    save_epoch = petalnet.training.train.save_epoch

    def save_then_stop(run, spec, progress, training):
        save_epoch(run, spec, progress, training)
        if len(progress.history) == epochs:
            raise KeyboardInterrupt

    monkeypatch.setattr(petalnet.training.train, "save_epoch", save_then_stop)
    return lambda: monkeypatch.setattr(petalnet.training.train, "save_epoch", save_epoch)


def cli(*args):
    """Run the CLI in this process; returns the exit code (argparse's SystemExit included)."""
    try:
        return main([str(a) for a in args])
    except SystemExit as exc:
        return exc.code


def shown(done, limit=20_000):
    """A finished child process for an assertion message: exit code, its whole stderr (first and last
    lines when longer than `limit` characters) and the end of its stdout, so that CI's log shows the cause."""
    stderr, stdout = done.stderr or "", done.stdout or ""
    if len(stderr) > limit:
        stderr = f"{stderr[:limit // 4]}\n[... {len(stderr) - limit} characters ...]\n{stderr[-3 * limit // 4:]}"
    return f"exit {done.returncode}\n--- stderr ---\n{stderr}\n--- stdout (end) ---\n{stdout[-3000:]}"


def run_petalnet(*args, env=None, timeout=300):
    """Run `python -m petalnet` in a child process (for exit codes and what reaches the terminal)."""
    full_env = {**os.environ, "TQDM_DISABLE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "petalnet", *map(str, args)], capture_output=True,
                          text=True, env=full_env, timeout=timeout)


def metrics(run, drop_timings=True):
    """metrics.csv's rows as dicts of strings; without the timing columns, which differ run to run."""
    with open(Path(run) / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if drop_timings:
        timings = ("epoch_seconds", "train_images_per_s", "elapsed_s")
        rows = [{k: v for k, v in row.items() if k not in timings} for row in rows]
    return rows
