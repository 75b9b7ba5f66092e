"""`petalnet data check`: counts, unreadable and non-image files, exact duplicates."""

import json

from conftest import cli
from imagegen import jpeg_bytes, make_class_folders, truncated_jpeg, write_photo


def make_messy_folder(root):
    make_class_folders(root, {"cats": 4, "dogs": 3})
    (root / "cats" / "truncated.jpg").write_bytes(truncated_jpeg())
    (root / "cats" / "text.jpg").write_text("not really a jpeg\n")
    (root / "dogs" / "empty.png").write_bytes(b"")
    (root / "dogs" / "notes.txt").write_text("a note\n")
    (root / "dogs" / "same_as_cat0.jpg").write_bytes((root / "cats" / "img_000.jpg").read_bytes())
    (root / "dogs" / "sub").mkdir()
    write_photo(root / "dogs" / "sub" / "twin_a.jpg", 77)
    write_photo(root / "dogs" / "sub" / "twin_b.jpg", 77)
    (root / "dogs" / "sub" / "nested_copy.jpg").write_bytes((root / "dogs" / "img_001.jpg").read_bytes())
    return root


def test_check_reports_every_problem_as_json(tmp_path, capsys):
    root = make_messy_folder(tmp_path / "photos")
    assert cli("data", "check", root, "--json") == 1  # some files are unreadable
    report = json.loads(capsys.readouterr().out)
    assert report["classes"] == ["cats", "dogs"]
    assert report["counts"] == {"cats": 4, "dogs": 7}
    assert report["total"] == 11
    bad = {r["path"]: r["error"] for r in report["unreadable"]}
    assert set(bad) == {"cats/truncated.jpg", "cats/text.jpg", "dogs/empty.png"}
    assert "truncated" in bad["cats/truncated.jpg"]
    assert report["non_image"] == ["dogs/notes.txt"]
    groups = {tuple(g["paths"]): g for g in report["duplicates"]}
    assert groups[("cats/img_000.jpg", "dogs/same_as_cat0.jpg")]["across_folders"] is True
    assert groups[("dogs/sub/twin_a.jpg", "dogs/sub/twin_b.jpg")]["across_folders"] is False
    assert groups[("dogs/img_001.jpg", "dogs/sub/nested_copy.jpg")]["folders"] == ["dogs"]  # one class
    assert len(groups) == 3


def test_check_clean_folder_exits_zero_with_readable_text(tmp_path, capsys):
    root = make_class_folders(tmp_path / "p", {"a": 2, "b": 2})
    assert cli("data", "check", root) == 0
    out = capsys.readouterr().out
    assert "4 readable photos" in out and "unreadable: 0" in out and "exact duplicates: 0 groups" in out


def test_check_train_val_layout_finds_leaks_between_them(tmp_path, capsys):
    root = tmp_path / "split"
    make_class_folders(root / "train", {"a": 3, "b": 3})
    make_class_folders(root / "val", {"a": 1, "b": 1}, start_seed=100)
    (root / "val" / "a" / "leak.jpg").write_bytes(jpeg_bytes(0))  # same bytes as train/a/img_000.jpg
    make_class_folders(root / "val", {"c": 1}, start_seed=200)  # a class train lacks
    assert cli("data", "check", root, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["layout"] == "train/val" and report["classes"] == ["a", "b", "c"]
    assert report["counts"] == {"train/a": 3, "train/b": 3, "val/a": 2, "val/b": 1, "val/c": 1}
    [leak] = report["duplicates"]
    assert leak["paths"] == ["train/a/img_000.jpg", "val/a/leak.jpg"]
    assert leak["folders"] == ["train/a", "val/a"] and leak["across_folders"]


def test_check_real_flower_photos(real_report):
    report = real_report
    assert report["classes"] == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    assert report["total"] == sum(report["counts"].values()) > 3000
    across = [g for g in report["duplicates"] if g["across_folders"]]
    assert any({p.split("/")[0] for p in g["paths"]} == {"roses", "tulips"} for g in across)


def test_check_missing_folder(tmp_path, capsys):
    assert cli("data", "check", tmp_path / "nope") == 2
    assert capsys.readouterr().err.strip() == f"petalnet: error: no such folder: {tmp_path / 'nope'}"


def test_check_reports_class_shares_and_warns_when_imbalanced(tmp_path, capsys):
    make_class_folders(tmp_path / "even", {"a": 4, "b": 5})
    assert cli("data", "check", tmp_path / "even", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["class_shares"] == {"a": 4 / 9, "b": 5 / 9} and report["imbalance_ratio"] == 1.25
    assert report["imbalanced"] is False
    make_class_folders(tmp_path / "skewed", {"a": 2, "b": 7, "c": 3})
    assert cli("data", "check", tmp_path / "skewed") == 0
    out = capsys.readouterr().out
    assert "class shares: a 16.7%, b 58.3%, c 25.0%; largest / smallest: 3.50" in out
    assert "warning: the classes are imbalanced (largest / smallest above 3)" in out


def test_real_flower_photos_are_mildly_imbalanced(real_report):
    report = real_report
    assert 1.3 < report["imbalance_ratio"] < 1.6 and not report["imbalanced"]
    assert max(report["class_shares"], key=report["class_shares"].get) == "dandelion"
