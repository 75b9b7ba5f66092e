"""Shared fixtures: made-up photos (no dataset needed), one small trained run, and real photos when
$PETALNET_DATA names them.

Every test that is not about real photos runs on `made_photos` (imagegen.flower_image: five classes told
apart by colour), so a fresh clone without the dataset still covers the code. Training costs ~30 ms per
224 px image on a 2-core CPU, so the suite trains once per session at 64 px and reuses that run wherever
a test is not about training itself.
"""

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: no bars in test logs

import contextlib  # noqa: E402
import csv  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from file_server import server  # noqa: E402,F401 (the fixture: files over HTTP on 127.0.0.1)
from imagegen import flower_image, make_flower_folders  # noqa: E402
from petalnet.cli import main  # noqa: E402

CLASSES = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
SMALL_SIZE = "64"  # pixels: the trained fixture's image size
SMALL_MODEL = "resnet9"  # the trained fixture's network: small (a 27 MB run folder) and quick to build and load
SMALL = ["--recipe", "seed", "--model", SMALL_MODEL, "--lr", "0.003", "--image-size", SMALL_SIZE, "--device", "cpu"]


# `make test-quick` (pytest -m "not slow") leaves out these modules, every test that reads the real photos,
# and the tests marked @pytest.mark.slow in their modules: what starts many child processes (torchrun,
# servers, the CLI's exit codes, benchmarks/) or trains runs of its own beyond the session's.
SLOW_MODULES = {"test_benchmarks", "test_cli_robustness", "test_compat_old_runs", "test_finetune",
                "test_serving_guards", "test_training_crashes", "test_training_distributed", "test_training_levers",
                "test_mosaics"}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.module.__name__ in SLOW_MODULES or "flowers" in item.fixturenames:
            item.add_marker(pytest.mark.slow)


def flower_dir():
    value = os.environ.get("PETALNET_DATA")
    return Path(value) if value else None


@pytest.fixture(scope="session", autouse=True)
def children_temp_folder(tmp_path_factory):
    """TMPDIR for every child process (torchrun's torchelastic_* folders, servers, benchmarks): a folder of
    the session's own, removed with it when the session passes (pyproject's tmp_path_retention_policy)."""
    folder = tmp_path_factory.mktemp("children-tmp")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TMPDIR", str(folder))
        yield folder


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
def real_report(flowers):
    """`petalnet data check $PETALNET_DATA --json`'s report: the real photos decoded and compared once for
    every test that reads it (a scan of flower_photos takes seconds, and more from a cold disk)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["data", "check", str(flowers), "--json"]) == 0
    return json.loads(out.getvalue())


@pytest.fixture(scope="session")
def real_split(flowers):
    """The split `petalnet train` makes of $PETALNET_DATA (10% val, seed 0), made once."""
    from petalnet.data.split import make_split

    return make_split(flowers, 0.1, 0, progress=False)


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

    Tests read it; a test that changes a run works on a `linked_copy`. At the end of the session every file
    must be as training left it: a test that wrote into a hard-linked checkpoint fails here."""
    run = tmp_path_factory.mktemp("runs") / "small"
    code = main(["train", "--data", str(made_photos), "--out", str(run), "--epochs", "2", *SMALL])
    assert code == 0
    before = fingerprint(run)
    yield run
    assert fingerprint(run) == before, "a test changed the session's trained run (write into a linked_copy instead)"


def fingerprint(folder):
    """{relative path: sha256} of every file under `folder`."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def linked_copy(run, dest):
    """A copy of the run folder `run` at `dest` whose checkpoints (*.pt, the bulk of a run: an AlexNet's
    best.pt and last.pt take 233 MB) are hard links to the originals and whose other files are copies.

    `train --resume`, `export`, `evaluate` and serve's reload only ever replace a checkpoint (fileio's atomic
    rename: a new file, the link broken), never write into it; a test that changes a checkpoint of the copy
    must do the same (torch.save to another name, then os.replace; or unlink it first)."""
    def link_checkpoints(source, target):
        if source.endswith(".pt"):
            os.link(source, target)
        else:
            shutil.copy2(source, target)

    return Path(shutil.copytree(run, dest, copy_function=link_checkpoints))


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
