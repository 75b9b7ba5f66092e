"""Near-duplicates: copies the tests make (resized, recompressed, 5% cropped, flipped, grey, brighter) are
found, different photos of one class are not; `data check` reports and draws them, `data split` keeps
each group on one side."""

import json

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from conftest import cli
from imagegen import cut, jpeg_again
from petalnet.data.near_duplicates import (DEFAULT_THRESHOLD, connected_groups, fingerprint, near_duplicate_pairs,
                                           photo_groups)
from petalnet.data.split import make_split


COPIES = {
    "resized": lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.BILINEAR),
    "recompressed": lambda im: jpeg_again(im, 30),
    "cropped_corner": lambda im: cut(im, 0.05, 0.05, 0, 0),  # 5% off the left and the top
    "cropped_centre": lambda im: cut(im, 0.025, 0.025, 0.025, 0.025),
    "cropped_side": lambda im: cut(im, 0, 0, 0.05, 0),
    "mirrored": ImageOps.mirror,
    "upside_down": ImageOps.flip,
    "grey": lambda im: im.convert("L").convert("RGB"),
    "brighter": lambda im: ImageEnhance.Brightness(im).enhance(1.15),
    "all_at_once": lambda im: jpeg_again(ImageOps.mirror(cut(im, 0.05, 0, 0, 0.05)).resize(
        (im.width * 2 // 3, im.height * 2 // 3), Image.Resampling.BILINEAR), 60),
}


def smooth_photo(seed, size=(240, 180)):
    """A made-up photo of soft random blobs (no dataset needed): different seeds, different pictures."""
    cells = np.random.default_rng(seed).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(cells).resize(size, Image.Resampling.BICUBIC)


def real_photos(flowers, name, count, stride):
    return [Image.open(path).convert("RGB") for path in sorted((flowers / name).iterdir())[::stride][:count]]


def groups_of(originals, copies_of):
    """Near-duplicate groups among the originals and copies_of(original) for each, as sets of
    (original index, copy name) -- the original itself is (k, "original")."""
    looks, names = [], []
    for k, image in enumerate(originals):
        for name, copy in {"original": image, **copies_of(image)}.items():
            looks.append(fingerprint(copy))
            names.append((k, name))
    pairs = near_duplicate_pairs(looks, DEFAULT_THRESHOLD)
    return [{names[i] for i in group} for group in connected_groups(pairs, len(looks))], pairs


def every_copy(image):
    return {name: make(image) for name, make in COPIES.items()}


def test_every_made_copy_of_a_real_photo_is_found_and_nothing_else(flowers):
    originals = real_photos(flowers, "daisy", 8, 70)
    groups, pairs = groups_of(originals, every_copy)
    assert len(groups) == len(originals), [sorted(g) for g in groups]  # one group per original, none joined
    for group in groups:
        assert {name for _, name in group} == {"original", *COPIES}
        assert len({k for k, _ in group}) == 1
    assert min(similarity for *_, similarity in pairs) >= DEFAULT_THRESHOLD


@pytest.mark.parametrize("name", ["daisy", "tulips"])
def test_different_photos_of_one_class_do_not_match(flowers, name):
    looks = [fingerprint(image) for image in real_photos(flowers, name, 60, 9)]
    assert near_duplicate_pairs(looks, DEFAULT_THRESHOLD) == []
    assert near_duplicate_pairs(looks, 0.5) != []  # the search does compare them


def test_made_up_photos_and_their_copies(tmp_path):
    """The same without the dataset: smooth made-up photos."""
    groups, _ = groups_of([smooth_photo(seed) for seed in range(12)], every_copy)
    assert sorted(len(g) for g in groups) == [len(COPIES) + 1] * 12
    assert all(len({k for k, _ in g}) == 1 for g in groups)


def test_flat_pictures_match_nothing_and_identical_files_are_one_photo():
    flat = [fingerprint(Image.new("RGB", (64, 48), colour)) for colour in ("white", "black", (90, 140, 30))]
    assert near_duplicate_pairs(flat, 0.01) == []
    look = fingerprint(smooth_photo(1))
    groups, pairs = photo_groups(["a", "a", "b"], [look, look, fingerprint(smooth_photo(1).resize((120, 90)))])
    assert groups == [[0, 1, 2]] and [(i, j) for i, j, _ in pairs] == [(0, 2)]  # copies of "a" searched once
    assert photo_groups(["a", "a"], [look, look]) == ([], [])  # byte-identical only: data check's other list


def save(image, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=92)
    return path


def test_data_check_reports_near_duplicates_across_train_and_val_and_draws_them(tmp_path, capsys):
    root = tmp_path / "photos"
    for k in range(6):
        save(smooth_photo(k), root / "train" / ("a" if k < 3 else "b") / f"p{k}.jpg")
    save(COPIES["cropped_corner"](smooth_photo(0)), root / "val" / "a" / "crop_of_p0.jpg")
    save(COPIES["grey"](smooth_photo(4)), root / "train" / "a" / "grey_of_p4.jpg")
    save(smooth_photo(50), root / "val" / "b" / "new.jpg")
    picture = tmp_path / "pairs.png"
    assert cli("data", "check", root, "--json", "--pairs-picture", picture) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    near = {tuple(g["paths"]): g for g in report["near_duplicates"]}
    assert set(near) == {("train/a/p0.jpg", "val/a/crop_of_p0.jpg"), ("train/a/grey_of_p4.jpg", "train/b/p4.jpg")}
    straddle = near[("train/a/p0.jpg", "val/a/crop_of_p0.jpg")]
    assert straddle["across_train_val"] and straddle["similarity"] >= DEFAULT_THRESHOLD
    grey = near[("train/a/grey_of_p4.jpg", "train/b/p4.jpg")]
    assert grey["across_folders"] and not grey["across_train_val"]
    assert report["near_threshold"] == DEFAULT_THRESHOLD and report["duplicates"] == []
    assert "near-duplicate pairs" in err and Image.open(picture).format == "PNG"
    assert cli("data", "check", root) == 0
    text = capsys.readouterr().out
    assert "near-duplicates (similarity >= 0.9): 2 groups (2 across folders, 1 across train and val)" in text
    assert "train/a/p0.jpg ~ val/a/crop_of_p0.jpg" in text and "[across train and val]" in text


def test_a_stricter_threshold_finds_fewer_and_no_pairs_draws_nothing(tmp_path, capsys):
    root = tmp_path / "photos"
    for k in range(4):
        save(smooth_photo(k), root / "a" / f"p{k}.jpg")
    save(COPIES["all_at_once"](smooth_photo(0)), root / "a" / "copy.jpg")
    assert cli("data", "check", root, "--json") == 0
    similarity = json.loads(capsys.readouterr().out)["near_duplicates"][0]["similarity"]
    assert cli("data", "check", root, "--json", "--near-threshold", str(min(1.0, similarity + 0.001)),
               "--pairs-picture", tmp_path / "none.png") == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["near_duplicates"] == [] and "not written" in err
    assert not (tmp_path / "none.png").exists()


@pytest.mark.parametrize("value", ["0", "1.5", "-1", "nan", "high"])
def test_bad_near_threshold(tmp_path, capsys, value):
    save(smooth_photo(0), tmp_path / "photos" / "a" / "p.jpg")
    assert cli("data", "check", tmp_path / "photos", "--near-threshold", value) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--near-threshold" in err and "Traceback" not in err


def test_near_threshold_off_looks_for_byte_identical_copies_only(tmp_path, capsys):
    root = tmp_path / "photos"
    for k in range(3):
        save(smooth_photo(k), root / "a" / f"p{k}.jpg")
        save(smooth_photo(10 + k), root / "b" / f"q{k}.jpg")
    save(COPIES["resized"](smooth_photo(0)), root / "a" / "small_p0.jpg")
    assert cli("data", "check", root, "--json", "--near-threshold", "off") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["near_threshold"] is None and report["near_duplicates"] == []
    assert cli("data", "check", root, "--near-threshold", "off") == 0
    assert "near-duplicates: not searched (--near-threshold off)" in capsys.readouterr().out
    assert cli("data", "split", root, "--out", tmp_path / "split", "--near-threshold", "off") == 0
    record = json.loads((tmp_path / "split" / "split.json").read_text())
    assert record["near_threshold"] is None and record["near_duplicate_groups"] == 0


def test_a_picture_format_it_cannot_draw_is_refused_before_reading_photos(tmp_path, capsys):
    assert cli("data", "check", tmp_path / "no-such-folder", "--pairs-picture", tmp_path / "p.gif") == 2
    assert "cannot save a picture as .gif" in capsys.readouterr().err


def test_split_keeps_near_duplicate_groups_on_one_side(tmp_path):
    root = tmp_path / "photos"
    for k in range(10):
        save(smooth_photo(k), root / "a" / f"p{k}.jpg")
        save(smooth_photo(100 + k), root / "b" / f"q{k}.jpg")
    for name in ("resized", "mirrored", "cropped_corner"):
        save(COPIES[name](smooth_photo(3)), root / "a" / f"{name}_p3.jpg")
    save(COPIES["grey"](smooth_photo(105)), root / "a" / "grey_q5.jpg")  # filed under another class
    for seed in range(8):
        split = make_split(root, 0.3, seed, progress=False)
        where = {rel: part for part in ("train", "val") for rel, _ in split.part(part)}
        assert len({where[f"a/{name}_p3.jpg"] for name in ("resized", "mirrored", "cropped_corner")}
                   | {where["a/p3.jpg"]}) == 1
        assert where["a/grey_q5.jpg"] == where["b/q5.jpg"] == "train"  # labelled two ways
        assert split.near_duplicate_groups == 2 and split.near_threshold == DEFAULT_THRESHOLD


def test_the_split_of_flower_photos_leaves_no_near_duplicate_group_across_train_and_val(real_report, real_split):
    """The groups `data check` finds (byte-identical and near) against the split `train` makes."""
    groups = [group["paths"] for group in real_report["near_duplicates"]]
    assert 20 <= len(groups) <= 45  # 30 on 2026-12-02 (docs/near-duplicates.md)
    assert real_report["near_threshold"] == DEFAULT_THRESHOLD == real_split.near_threshold
    val = {rel for rel, _ in real_split.val}
    assert not [g for g in groups if 0 < sum(rel in val for rel in g) < len(g)]
    assert real_split.near_duplicate_groups == len(groups)
