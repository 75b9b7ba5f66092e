"""`petalnet data split`: stratified, deterministic, duplicates on one side, hard links."""

import hashlib
import json

import pytest

from conftest import cli
from imagegen import make_class_folders
from petalnet.data.split import make_split


def sides(out):
    """{relative path: 'train'|'val'} for a written split folder."""
    return {str(p.relative_to(out / part)): part for part in ("train", "val")
            for p in (out / part).rglob("*.jpg")}


@pytest.fixture
def photos(tmp_path):
    root = make_class_folders(tmp_path / "photos", {"a": 30, "b": 21, "c": 9})
    (root / "a" / "copy_of_a1.jpg").write_bytes((root / "a" / "img_001.jpg").read_bytes())
    (root / "c" / "same_as_b0.jpg").write_bytes((root / "b" / "img_000.jpg").read_bytes())
    return root


def test_split_is_stratified_linked_and_deterministic(photos, tmp_path):
    assert cli("data", "split", photos, "--out", tmp_path / "s1", "--seed", "0") == 0
    assert cli("data", "split", photos, "--out", tmp_path / "s2", "--seed", "0") == 0
    first, second = sides(tmp_path / "s1"), sides(tmp_path / "s2")
    assert first == second
    val_per_class = {c: sum(1 for p, s in first.items() if s == "val" and p.startswith(c)) for c in "abc"}
    assert val_per_class == {"a": round(31 * 0.1), "b": round(21 * 0.1), "c": round(10 * 0.1)}
    assert len(first) == 62  # every photo on exactly one side
    for rel, part in first.items():
        assert (tmp_path / "s1" / part / rel).stat().st_ino == (photos / rel).stat().st_ino
    record = json.loads((tmp_path / "s1" / "split.json").read_text())
    assert record["classes"] == ["a", "b", "c"] and record["seed"] == 0


def test_byte_identical_photos_land_on_the_same_side(photos, tmp_path):
    for seed in range(8):
        split = make_split(photos, 0.3, seed, progress=False)
        where = {rel: part for part in ("train", "val") for rel, _ in split.part(part)}
        assert where["a/copy_of_a1.jpg"] == where["a/img_001.jpg"]
        assert where["b/img_000.jpg"] == where["c/same_as_b0.jpg"] == "train"  # labelled two ways


def test_another_seed_gives_another_split(photos):
    one = make_split(photos, 0.2, 0, progress=False).val
    two = make_split(photos, 0.2, 1, progress=False).val
    assert one != two and len(one) == len(two)


def test_split_refuses_to_write_into_a_used_folder(photos, tmp_path, capsys):
    out = tmp_path / "used"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert cli("data", "split", photos, "--out", out) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("fraction", ["0", "1", "1.5", "-0.1"])
def test_bad_val_fraction(photos, tmp_path, capsys, fraction):
    assert cli("data", "split", photos, "--out", tmp_path / "x", "--val-fraction", fraction) == 2
    assert "--val-fraction must be between 0 and 1" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_real_flower_photos_split_has_no_leak(flowers, real_split):
    split = real_split
    digest = {}
    for part in ("train", "val"):
        for rel, _ in split.part(part):
            digest[rel] = hashlib.sha256((flowers / rel).read_bytes()).hexdigest()
    train_digests = {digest[rel] for rel, _ in split.train}
    assert not any(digest[rel] in train_digests for rel, _ in split.val)
    counts = {name: sum(1 for _, label in split.val if label == i) for i, name in enumerate(split.classes)}
    totals = {name: len(list((flowers / name).iterdir())) for name in split.classes}
    assert counts == {name: round(n * 0.1) for name, n in totals.items()}
