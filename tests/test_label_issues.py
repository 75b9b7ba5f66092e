"""`petalnet data issues` (inference/label_issues.py, labels.py, features.py) on made-up photos whose labels the
tests flip: the CLI once with the real ImageNet features, then the Python API with features made in the test
(each class a direction, so a flipped label is certain) for the forms and the errors."""

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import CLASSES, cli, fingerprint
from imagegen import make_flower_folders, noise_image
from petalnet.data.sources import open_data
from petalnet.errors import UserError
from petalnet.inference import label_issues
from petalnet.inference.features import FeatureTable
from petalnet.inference.label_issues import find_issues
from petalnet.inference.settings import IssuesSettings

# (class folder, photo, class folder it is moved to): six wrong labels, none between the two yellow classes
# (imagegen's CLASS_HUES), which ImageNet features barely tell apart in made-up photos
FLIPS = [("daisy", "made_000.jpg", "roses"), ("roses", "made_001.jpg", "tulips"), ("tulips", "made_002.jpg", "daisy"),
         ("dandelion", "made_003.jpg", "roses"), ("sunflowers", "made_004.jpg", "daisy"),
         ("daisy", "made_005.jpg", "tulips")]


def plant(root):
    """Flip FLIPS' labels (moved_<class>_<photo>), file a byte copy of a daisy as roses, add a photo of noise;
    returns {shown path: the true class} of the flipped photos."""
    flipped = {}
    for origin, name, target in FLIPS:
        moved = root / target / f"moved_{origin}_{name}"
        shutil.move(root / origin / name, moved)
        flipped[f"{target}/{moved.name}"] = origin
    shutil.copy(root / "daisy" / "made_010.jpg", root / "roses" / "copy_of_daisy_010.jpg")
    noise_image(7, size=(160, 120)).save(root / "tulips" / "odd_one.jpg", quality=92)
    return flipped


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    root = make_flower_folders(tmp_path_factory.mktemp("issues") / "photos", CLASSES, 30)
    return root, plant(root)


@pytest.fixture(scope="module")
def cli_run(noisy, tmp_path_factory):
    """`petalnet data issues photos --out DIR` once: real ImageNet features, 5-fold logistic regression."""
    root, flipped = noisy
    before = fingerprint(root)
    out = tmp_path_factory.mktemp("found") / "issues"
    assert cli("data", "issues", root, "--out", out, "--show", "12") == 0
    assert fingerprint(root) == before  # nothing in DATA is touched
    return out, read_rows(out / "issues.csv")


def test_issues_csv_lists_the_planted_problems_most_likely_first(cli_run, noisy):
    out, rows = cli_run
    _, flipped = noisy
    assert list(rows[0]) == ["path", "given", "suggested", "score", "kind"]
    scores = [float(row["score"]) for row in rows]
    assert scores == sorted(scores, reverse=True)
    by_path = {row["path"]: row for row in rows}
    assert rows[0] == {"path": "roses/copy_of_daisy_010.jpg", "given": "roses", "suggested": "daisy", "score": "1.0",
                       "kind": "conflict"}
    # made-up photos are mostly background, which ImageNet features see first: most flips are found, not all
    found = [path for path in flipped if path in by_path]
    assert len(found) >= 4 and all(by_path[path]["kind"] == "label" for path in found), rows[:12]
    assert len({row["path"] for row in rows[:10]} & set(flipped)) >= 4, rows[:12]  # among the first rows
    assert sum(by_path[path]["suggested"] == flipped[path] for path in found) >= 4
    assert by_path["tulips/odd_one.jpg"]["kind"] == "outlier"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["photos"] == 30 * 5 + 2 and summary["issues"] == len(rows)
    assert summary["method"].startswith("5-fold logistic regression on ImageNet features (C ")
    assert 0.5 < summary["out_of_fold_accuracy"] <= 1
    assert (out / "issues.jpg").stat().st_size > 10_000


def test_corrected_manifest_is_what_train_reads_without_flags(cli_run, noisy):
    out, rows = cli_run
    root, _ = noisy
    photos = open_data(out / "corrected.csv").photos()  # what train --data reads: no --allow-paths-outside
    label_of = {Path(p).relative_to((out / "photos").absolute()).as_posix(): photos.classes[label]
                for p, label in zip(photos.files, photos.labels)}
    outliers = {row["path"] for row in rows if row["kind"] == "outlier"}
    assert "tulips/odd_one.jpg" in outliers and not outliers & set(label_of)
    assert len(label_of) == 30 * 5 + 2 - len(outliers)
    for row in rows:
        if row["kind"] != "outlier":
            assert label_of[row["path"]] == row["suggested"]
    assert label_of["daisy/made_020.jpg"] == "daisy"  # a photo without an issue keeps its label
    assert (out / "photos").resolve() == root.resolve()


def test_earlier_results_are_kept_and_data_inside_is_refused(cli_run, noisy, capsys):
    out, _ = cli_run
    root, _ = noisy
    before = (out / "issues.csv").read_bytes()
    assert cli("data", "issues", root, "--out", out) == 2
    assert "already exists: pass --overwrite" in capsys.readouterr().err
    assert (out / "issues.csv").read_bytes() == before
    assert cli("data", "issues", root, "--out", root / "issues") == 2
    assert "inside" in capsys.readouterr().err and not (root / "issues").exists()
    assert cli("data", "issues", root, "--out", out / "again", "--folds", "1") == 2
    assert cli("data", "issues", root, "--out", out / "again", "--recipe", "seed", "--from", out) == 2
    assert "give one of them" in capsys.readouterr().err


def class_features(labels, dim=16, seed=0):
    """Made-up features: each photo's true class is a direction, plus a little noise."""
    rng = np.random.default_rng(seed)
    features = rng.normal(0, 0.3, (len(labels), dim)).astype(np.float32)
    for i, label in enumerate(labels):
        for c in (label if isinstance(label, tuple) else (label,)):
            features[i, c] += 1.0
    return features


@pytest.fixture
def fake_features(monkeypatch):
    """photo_features replaced by class_features of each photo's true class (`truth`: path -> label)."""
    truth = {}

    def features(paths, device="auto", batch_size=64, progress=True):
        return FeatureTable(features=class_features([truth[str(p)] for p in paths]), unreadable={})

    monkeypatch.setattr(label_issues, "photo_features", features)
    return truth


def test_a_manifest_with_label_sets_and_a_split_column(tmp_path, fake_features):
    root = make_flower_folders(tmp_path / "photos", CLASSES[:3], 20)
    rows, truth = [], {}
    for k, path in enumerate(sorted(root.rglob("*.jpg"))):
        true = (CLASSES.index(path.parent.name),) + ((2,) if k % 3 == 0 and path.parent.name != "roses" else ())
        given = (0, 1) if k in (4, 27) else true  # two photos given daisy;dandelion instead
        fake_features[str(path.absolute())] = true
        truth[path.relative_to(root).as_posix()] = true
        rows.append((path.relative_to(root).as_posix(), ";".join(CLASSES[c] for c in sorted(given)),
                     "val" if k % 5 == 0 else "train"))
    with open(root / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([("path", "labels", "split"), *rows])
    found = find_issues(IssuesSettings(data=str(root / "labels.csv"), out=str(tmp_path / "out"), folds=3), False)
    flipped = {rows[4][0], rows[27][0]}
    assert {issue.path for issue in found.issues[:2]} == flipped and found.issues[0].kind == "label"
    for issue in found.issues[:2]:  # the suggestion drops the class given in error
        assert issue.suggested and set(issue.suggested.split(";")) <= {CLASSES[c] for c in truth[issue.path]}
    corrected = read_rows(tmp_path / "out" / "corrected.csv")
    assert list(corrected[0]) == ["path", "labels", "split"]
    assert [row["split"] for row in corrected] == [split for _, _, split in rows]


def two_class_run(root, fake_features):
    """An OutOfFold of 6 + 6 made-up photos under `root` that disbelieves daisy/made_003.jpg."""
    from petalnet.config.folds import OutOfFold

    make_flower_folders(root, CLASSES[:2], 6)
    paths = sorted(str(p.absolute()) for p in root.rglob("*.jpg"))
    labels = [CLASSES.index(Path(p).parent.name) for p in paths]
    fake_features.update({p: label for p, label in zip(paths, labels)})
    probs = [[0.9, 0.1] if label == 0 else [0.1, 0.9] for label in labels]
    probs[3] = [0.02, 0.98]
    return OutOfFold(classes=tuple(CLASSES[:2]), paths=paths, given=labels, folds=[1 + i % 2 for i in labels],
                     probs=probs, multilabel=False, data=str(root), k=2)


def test_from_a_folds_run_takes_its_probabilities(tmp_path, fake_features, monkeypatch):
    from petalnet.config import folds

    root = tmp_path / "photos"
    oof = two_class_run(root, fake_features)
    monkeypatch.setattr(folds, "read_out_of_fold", lambda run: oof)
    found = find_issues(IssuesSettings(data=str(root), out=str(tmp_path / "out"), from_run="runs/cv", folds=2), False)
    assert found.method == "the folds of runs/cv"
    assert found.issues[0].path == "daisy/made_003.jpg" and found.issues[0].suggested == "dandelion"
    assert found.issues[0].score == pytest.approx(0.98)
    short = replace(oof, paths=oof.paths[1:], probs=oof.probs[1:], given=oof.given[1:])
    monkeypatch.setattr(folds, "read_out_of_fold", lambda run: short)
    with pytest.raises(UserError, match="lack 1 of the 12 photos"):
        find_issues(IssuesSettings(data=str(root), out=str(tmp_path / "o2"), from_run="runs/cv", folds=2), False)


def test_recipe_trains_the_folds_into_out_first_and_resumes_them(tmp_path, fake_features, monkeypatch):
    import petalnet.training.train as training
    from petalnet.config import folds

    root, out, calls = tmp_path / "photos", tmp_path / "out", []
    oof = two_class_run(root, fake_features)
    monkeypatch.setattr(folds, "read_out_of_fold", lambda run: oof if Path(run) == out / "folds" else None)
    monkeypatch.setattr(training, "train", lambda *args, **kwargs: calls.append((args, kwargs)))
    assert cli("data", "issues", root, "--out", out, "--recipe", "finetune", "--folds", "2", "--seed", "3") == 0
    (data, run), asked = calls[0]
    assert (Path(data), Path(run)) == (root, out / "folds")
    assert (asked["recipe"], asked["folds"], asked["resume"], asked["overrides"]) == ("finetune", 2, False, {"seed": 3})
    assert read_rows(out / "issues.csv")[0]["path"] == "daisy/made_003.jpg"
    (out / "folds").mkdir()
    (out / "folds" / "folds.json").write_text("{}")  # a parent is there: resumed, its own settings kept
    assert cli("data", "issues", root, "--out", out, "--recipe", "finetune", "--folds", "2", "--overwrite") == 0
    assert (calls[1][1]["recipe"], calls[1][1]["folds"], calls[1][1]["resume"]) == (None, 0, True)


def test_without_the_extra_one_line_names_it(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_cleanlab(name, *args, **kwargs):
        if name.startswith("cleanlab"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cleanlab)
    with pytest.raises(UserError, match=r"pip install 'petalnet\[issues\]'"):
        find_issues(IssuesSettings(data=str(tmp_path), out=str(tmp_path / "out")), False)
