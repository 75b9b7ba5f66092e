"""benchmarks/mosaics.py: a multi-label set of 2x2 mosaics, val mosaics made from val photos only."""

import contextlib
import csv
import importlib.util
import io
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from conftest import CLASSES, fingerprint, shown

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "mosaics.py"
SMALL = ["--train", "12", "--val", "4", "--size", "64", "--workers", "2"]


def mosaics(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=120)


def load_script():
    spec = importlib.util.spec_from_file_location("mosaics", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows_of(folder):
    with open(folder / "labels.csv", newline="") as f:
        return list(csv.reader(f))


@pytest.fixture(scope="module")
def built(made_photos, tmp_path_factory):
    """The script run twice with the same arguments, at once: in a child process (what a user runs) and in
    this one (which then has the split's imports warm for the tests that import the script).
    (the child's CompletedProcess, its OUT, the OUT of the run in this process)."""
    parent = tmp_path_factory.mktemp("mosaics")
    with ThreadPoolExecutor(max_workers=1) as pool:
        child = pool.submit(mosaics, made_photos, "--out", parent / "child", *SMALL)
        with contextlib.redirect_stdout(io.StringIO()):
            assert load_script().main([str(made_photos), "--out", str(parent / "here"), *SMALL]) == 0
        done = child.result()
    assert done.returncode == 0, shown(done)
    return done, parent / "child", parent / "here"


def test_labels_csv_lists_every_mosaic_with_its_sorted_classes(built):
    done, out, _ = built
    rows = rows_of(out)
    assert rows[0] == ["path", "labels", "split"]
    assert [r[0] for r in rows[1:]] == ([f"images/train/{k:05d}.jpg" for k in range(1, 13)]
                                        + [f"images/val/{k:05d}.jpg" for k in range(1, 5)])
    assert [r[2] for r in rows[1:]] == ["train"] * 12 + ["val"] * 4
    for path, labels, _ in rows[1:]:
        names = labels.split(";")
        assert names == sorted(set(names)) and 1 <= len(names) <= 3 and set(names) <= set(CLASSES), labels
        with Image.open(out / path) as image:
            assert (image.format, image.size) == ("JPEG", (64, 64))
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg")) == sorted(r[0] for r in rows[1:])
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []  # no temporary folder left
    assert "12 train" in done.stdout and "4 val" in done.stdout and len(done.stdout.splitlines()) == 1, shown(done)


def test_the_same_arguments_give_the_same_bytes(built):
    _, child, here = built
    assert fingerprint(child) == fingerprint(here)


def test_val_mosaics_are_made_of_val_photos_only(built, made_photos):
    """The plan the script follows, drawn again in this process: each part's tiles come from that part of
    petalnet's own split, the labels are the tiles' classes, and each file is that plan rendered."""
    from petalnet.data.split import make_split

    script, out = load_script(), built[1]
    split = make_split(made_photos, 0.1, 0, progress=False)
    rows = rows_of(out)[1:]
    for part, count in (("train", 12), ("val", 4)):
        plans = script.plan_part(split, part, count, 3, 0)
        allowed = set(split.paths(part))
        part_rows = [r for r in rows if r[2] == part]
        for (labels, sources), (path, written, _) in zip(plans, part_rows, strict=True):
            assert len(sources) == 4 and set(sources) <= allowed, (part, sources)
            assert labels == sorted({p.parent.name for p in sources}) and ";".join(labels) == written
            if part == "val":
                assert script.render(sources, 64) == (out / path).read_bytes()


def test_refuses_an_out_that_is_not_empty(made_photos, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    done = mosaics(made_photos, "--out", out, *SMALL)
    assert done.returncode == 2, shown(done)
    assert len(done.stderr.strip().splitlines()) == 1 and "not an empty folder" in done.stderr, shown(done)
    assert [p.name for p in tmp_path.iterdir()] == ["taken"] and (out / "keep.txt").read_text() == "mine"
