"""Shared fixtures: real photos from $PETALNET_DATA, generated images, and one small trained run.

Training costs ~30 ms per 224 px image on a 2-core CPU, so the suite trains once per session on a few
real photos at 64 px and reuses that run wherever a test is not about training itself.
"""

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: no bars in test logs

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from petalnet.cli import main  # noqa: E402

CLASSES = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
SMALL_SIZE = "64"  # pixels: the trained fixture's image size


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


def link_subset(src, dst, per_class, offset=0):
    """A folder of class folders holding symlinks to `per_class` real photos of each class."""
    for name in CLASSES:
        (dst / name).mkdir(parents=True)
        for photo in sorted((src / name).iterdir())[offset:offset + per_class]:
            (dst / name / photo.name).symlink_to(photo)
    return dst


@pytest.fixture(scope="session")
def few_photos(flowers, tmp_path_factory):
    """20 real photos per class (as symlinks): 18 train / 2 val after the default split."""
    return link_subset(flowers, tmp_path_factory.mktemp("few") / "photos", 20)


@pytest.fixture(scope="session")
def trained_run(few_photos, tmp_path_factory):
    """One run trained through the CLI: recipe seed, 64 px, 2 epochs, on `few_photos`."""
    run = tmp_path_factory.mktemp("runs") / "small"
    code = main(["train", "--recipe", "seed", "--data", str(few_photos), "--out", str(run), "--epochs", "2",
                 "--image-size", SMALL_SIZE, "--device", "cpu"])
    assert code == 0
    return run


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
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "petalnet", *map(str, args)], capture_output=True,
                          text=True, env=full_env, timeout=timeout)
