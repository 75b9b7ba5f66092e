"""`petalnet train --folds K` (data/folds.py, config/folds.py, training/folds.py): folds stratified, disjoint and
covering every photo once, copies and near-duplicates in one fold, a manifest's test rows in none; the parent's
fold-1..K, folds.json and oof.csv; resume; bad K and torchrun refused in one line; compare reads a parent."""

import csv
import json
import shutil
from collections import Counter

import pytest

from conftest import CLASSES, SMALL, cli, linked_copy, run_petalnet, shown
from imagegen import make_class_folders, make_flower_folders, make_mosaics
from test_data_near_duplicates import COPIES, smooth_photo
from petalnet.config.folds import FoldsFolder, read_out_of_fold
from petalnet.data.folds import fold_photos, make_folds
from petalnet.data.sources import open_data
from petalnet.data.split import Split
from petalnet.errors import UserError
from petalnet.training.train import train
from petalnet.utils.fields import SettingError


def where(splits):
    """{relative path: fold} of every photo in a val part; each photo once (asserted)."""
    found = [(rel, split.fold) for split in splits for rel, _ in split.val]
    assert len(found) == len(dict(found))
    return dict(found)


def test_folds_are_stratified_disjoint_and_cover_every_photo_once(tmp_path):
    root = make_class_folders(tmp_path / "photos", {"a": 11, "b": 7, "c": 5})
    splits = make_folds(root, 5, seed=0, progress=False)
    everything = {f"{name}/img_{k:03d}.jpg" for name, n in {"a": 11, "b": 7, "c": 5}.items() for k in range(n)}
    assert set(where(splits)) == everything and [split.fold for split in splits] == [1, 2, 3, 4, 5]
    for split in splits:
        assert split.folds == 5 and set(split.train) | set(split.val) == {p for s in splits for p in s.val}
        assert not set(split.train) & set(split.val)
        assert Split.from_dict(json.loads(json.dumps(split.to_dict()))) == split
    for label in range(3):  # each class spread evenly: within a photo per fold
        per_fold = [sum(lab == label for _, lab in split.val) for split in splits]
        assert max(per_fold) - min(per_fold) <= 1
    sizes = [len(split.val) for split in splits]
    assert max(sizes) - min(sizes) <= 1
    assert make_folds(root, 5, seed=0, progress=False) == splits
    assert where(make_folds(root, 5, seed=1, progress=False)) != where(splits)
    plain = {key: value for key, value in splits[0].to_dict().items() if key not in ("fold", "folds")}
    assert Split.from_dict(plain).fold is None  # a split.json written before folds existed


def test_copies_and_near_duplicates_stay_in_one_fold_even_when_labelled_differently(tmp_path):
    root = tmp_path / "photos"
    for k in range(8):
        for name, seed in (("a", k), ("b", 100 + k)):
            (root / name).mkdir(parents=True, exist_ok=True)
            smooth_photo(seed).save(root / name / f"{name}{k}.jpg", quality=92)
    for copy in ("resized", "mirrored"):
        COPIES[copy](smooth_photo(3)).save(root / "a" / f"{copy}_a3.jpg", quality=92)
    COPIES["grey"](smooth_photo(105)).save(root / "a" / "grey_b5.jpg", quality=92)  # filed under another class
    shutil.copyfile(root / "a" / "a1.jpg", root / "b" / "copy_of_a1.jpg")  # byte copy, another class
    for seed in range(4):
        folds = fold_photos(root, 4, seed=seed, progress=False)
        fold = where(folds.splits())
        assert fold["a/a3.jpg"] == fold["a/resized_a3.jpg"] == fold["a/mirrored_a3.jpg"]
        assert fold["a/grey_b5.jpg"] == fold["b/b5.jpg"] and fold["a/a1.jpg"] == fold["b/copy_of_a1.jpg"]
        assert folds.photos.near_duplicate_groups == 2 and len(fold) == 20


def test_a_manifests_test_rows_never_enter_a_fold_and_its_split_column_is_ignored(tmp_path):
    root = make_class_folders(tmp_path / "m", {"a": 6, "b": 6})
    rows = [(f"{name}/img_{k:03d}.jpg", name, "test" if k < 2 else "val" if k == 2 else "train")
            for name in "ab" for k in range(6)]
    with open(root / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([("path", "label", "split"), *rows])
    splits = make_folds(open_data(root / "labels.csv"), 3, seed=0, progress=False)
    test = {rel for rel, _, part in rows if part == "test"}
    assert set(where(splits)) == {rel for rel, _, part in rows if part != "test"}
    for split in splits:
        assert {rel for rel, _ in split.test} == test and not test & {rel for rel, _ in split.train + split.val}


def test_bad_k_is_one_line_before_anything_is_written(tmp_path, capsys):
    photos = make_flower_folders(tmp_path / "photos", CLASSES[:2], 3)
    for k, said in (("1", "--folds must be from 2 to 20 (0: no cross-validation), got 1"),
                    ("21", "--folds must be from 2 to 20"),
                    ("4", "class 'daisy' has 3 readable photo(s) in")):
        assert cli("train", "--data", photos, "--out", tmp_path / "cv", "--folds", k, *SMALL) == 2
        err = capsys.readouterr().err
        assert said in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "cv").exists()
    with pytest.raises(SettingError, match="folds must be from 2 to 20"):
        make_folds(photos, 1, seed=0, progress=False)


def test_torchrun_is_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="torchrun is not supported for cross-validation"):
        train(tmp_path, tmp_path / "cv", folds=3, device="cpu")
    assert not (tmp_path / "cv").exists()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """6 made-up photos per class of CLASSES: 10 a fold with --folds 3."""
    return make_flower_folders(tmp_path_factory.mktemp("folds") / "photos", CLASSES, 6)


@pytest.fixture(scope="module")
def parent(photos, tmp_path_factory):
    """`petalnet train --folds 3`, 1 epoch a fold, through the CLI."""
    run = tmp_path_factory.mktemp("cv") / "cv"
    assert cli("train", "--data", photos, "--out", run, "--folds", "3", "--epochs", "1", *SMALL) == 0
    return run


def oof_rows(parent):
    with open(parent / "oof.csv", newline="") as f:
        return list(csv.reader(f))


def test_train_folds_writes_each_fold_folds_json_and_oof_csv(parent, photos):
    assert sorted(p.name for p in parent.iterdir()) == ["fold-1", "fold-2", "fold-3", "folds.json", "oof.csv"]
    record = json.loads((parent / "folds.json").read_text())
    assert record["k"] == 3 and record["finished"] and record["classes"] == CLASSES and not record["multilabel"]
    assert record["data"] == str(photos.resolve()) and record["recipe"] == "seed" and record["config"]["epochs"] == 1
    assert [fold["run"] for fold in record["folds"]] == ["fold-1", "fold-2", "fold-3"]
    assert [fold["val"] for fold in record["folds"]] == [10, 10, 10]
    scores = [fold["best_score"] for fold in record["folds"]]
    mean = sum(scores) / 3
    assert record["accuracy_mean"] == pytest.approx(mean)
    assert record["accuracy_sd"] == pytest.approx((sum((s - mean) ** 2 for s in scores) / 2) ** 0.5)
    rows = oof_rows(parent)
    assert rows[0] == ["path", "given", "fold", *CLASSES]
    assert sorted(row[0] for row in rows[1:]) == sorted(str(p) for p in photos.resolve().rglob("*.jpg"))
    oof = read_out_of_fold(parent)
    assert oof.paths == [row[0] for row in rows[1:]] and oof.k == 3 and oof.data == record["data"]
    assert [CLASSES[label] for label in oof.given] == [row[1] for row in rows[1:]]
    assert all(abs(sum(probs) - 1) < 1e-5 for probs in oof.probs)
    assert [float(cell) for cell in rows[1][3:]] == oof.probs[0]  # written in full
    for fold, score in zip((1, 2, 3), scores):  # the probabilities of each fold's best.pt, the epoch val scored
        scored = [(given, probs) for given, probs, f in zip(oof.given, oof.probs, oof.folds) if f == fold]
        assert sum(max(range(5), key=probs.__getitem__) == given for given, probs in scored) / 10 == score
        split = json.loads((parent / f"fold-{fold}" / "split.json").read_text())
        assert split["fold"] == fold and split["folds"] == 3 and len(split["val"]) == 10


def test_resume_finishes_the_folds_left_without_training_fold_1_again(parent, tmp_path, capsys):
    """A copy stopped before fold 2's first epoch ended and before fold 3 started: --resume trains those two."""
    cv = linked_copy(parent, tmp_path / "cv")
    for name in ("best.pt", "last.pt", "metrics.csv", "curves.png"):
        (cv / "fold-2" / name).unlink()
    shutil.rmtree(cv / "fold-3")
    (cv / "oof.csv").unlink()
    record = json.loads((cv / "folds.json").read_text())
    (cv / "folds.json").write_text(json.dumps({**record, "finished": False}))
    before = (cv / "fold-1" / "last.pt").stat().st_mtime_ns
    lines = []
    done = train(out=cv, resume=True, device="cpu", progress=False, log=lines.append)
    assert done.finished and done.k == 3 and (cv / "fold-1" / "last.pt").stat().st_mtime_ns == before
    assert [line for line in lines if line.startswith("fold ")] == [
        f"fold 1/3 in {cv / 'fold-1'}: done (1 epochs)", f"fold 2/3 in {cv / 'fold-2'}: resuming",
        f"fold 3/3 in {cv / 'fold-3'}: starting"]
    assert lines[-1].startswith("3 folds: val accuracy ") and lines[-1].endswith(f"in {cv / 'oof.csv'}")
    again, first = oof_rows(cv), oof_rows(parent)
    assert [row[:3] for row in again] == [row[:3] for row in first]
    assert [row for row in again if row[2] == "1"] == [row for row in first if row[2] == "1"]
    assert cli("train", "--out", cv, "--resume", "--device", "cpu") == 0
    assert "already finished its 3 folds" in capsys.readouterr().out


def test_a_parent_is_never_clobbered_and_overwrite_clears_it(parent, photos, tmp_path, capsys):
    assert cli("train", "--data", photos, "--out", parent, "--folds", "3", *SMALL) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert cli("train", "--data", photos, "--out", parent, "--overwrite", *SMALL) == 2
    assert "holds a cross-validation run: pass --folds K" in capsys.readouterr().err
    cv = linked_copy(parent, tmp_path / "cv")
    FoldsFolder(cv).check(resume=False, overwrite=True)
    FoldsFolder(cv).prepare(overwrite=True)
    assert list(cv.iterdir()) == []


def test_compare_reads_a_parent_as_one_row_with_the_folds_mean_and_sd(parent, capsys):
    assert cli("compare", parent, parent / "fold-1", "--json") == 0
    row, fold = json.loads(capsys.readouterr().out)
    scores = [fold["best_score"] for fold in json.loads((parent / "folds.json").read_text())["folds"]]
    assert row["run"] == "cv (3 folds)" and row["folds"] == 3 and row["best_epoch"] is None
    assert row["best_val_acc"] == pytest.approx(sum(scores) / 3) and row["val_acc_sd"] >= 0
    assert "folds" not in fold and fold["best_val_acc"] == scores[0]
    assert cli("compare", parent) == 0
    assert capsys.readouterr().out.splitlines()[0].split()[-1] == "sd"


@pytest.mark.slow  # a second cross-validation run
def test_multilabel_folds_spread_each_class_and_write_label_sets(photos, tmp_path, capsys):
    folder = tmp_path / "mosaics"
    make_mosaics(photos, folder, 24)
    splits = make_folds(open_data(folder / "labels.csv"), 2, seed=0, progress=False)
    for label in range(5):
        per_fold = [sum(label in labels for _, labels in split.val) for split in splits]
        assert min(per_fold) >= 1 and max(per_fold) - min(per_fold) <= 2
    run = tmp_path / "cv"
    code = cli("train", "--data", folder / "labels.csv", "--out", run, "--folds", "2", "--epochs", "1", *SMALL)
    assert code == 0, capsys.readouterr().err
    oof = read_out_of_fold(run)
    assert oof.multilabel and all(isinstance(given, tuple) for given in oof.given)
    assert all(0 <= p <= 1 for probs in oof.probs for p in probs) and Counter(oof.folds).keys() == {1, 2}
    record = json.loads((run / "folds.json").read_text())
    assert record["metric"] == "val_map" and record["multilabel"]
    named = {row[0]: row[1] for row in oof_rows(run)[1:]}
    assert all(named[path] == ";".join(oof.classes[c] for c in given) for path, given in zip(oof.paths, oof.given))


def test_a_parent_that_is_not_finished_is_one_line_for_its_readers(parent, tmp_path):
    cv = linked_copy(parent, tmp_path / "cv")
    (cv / "oof.csv").unlink()
    with pytest.raises(UserError, match=f"{cv} has no oof.csv: finish it with 'petalnet train --out {cv} --resume'"):
        read_out_of_fold(cv)
    with pytest.raises(UserError, match="is not a cross-validation run: it has no folds.json"):
        read_out_of_fold(cv / "fold-1")


@pytest.mark.slow  # a child process (test_bad_k_is_one_line_before_anything_is_written runs the CLI in this one)
def test_the_command_line_says_a_bad_k_in_one_line(tmp_path):
    done = run_petalnet("train", "--data", tmp_path, "--out", tmp_path / "cv", "--folds", "1")
    assert done.returncode == 2, shown(done)
    said = "petalnet: error: --folds must be from 2 to 20 (0: no cross-validation), got 1"
    assert done.stderr.strip() == said, shown(done)
