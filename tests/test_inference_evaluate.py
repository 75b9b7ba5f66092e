"""`petalnet evaluate` (inference/evaluate.py, metrics.py, photos.py): the report, pictures, predictions.csv,
which photos.

That train's val and evaluate agree photo for photo is tests/test_pipeline_loaders.py's."""

import csv
import json
import math
import os
import shutil
import sys

import pytest
import torch

from conftest import CLASSES, cli
from petalnet.inference.table import cell as spreadsheet_cell
from petalnet.inference.metrics import (calibration, classification_report, confusion_matrix, format_report,
                                        probability_report, top_k_accuracy, wilson_interval)

REPORT_KEYS = {"accuracy", "n", "classes", "per_class", "confusion"}  # the keys of petalnet 0.x, unchanged
NEW_KEYS = {"accuracy_ci95", "accuracy_ci_method", "balanced_accuracy", "macro_f1", "weighted_f1",
            "top_k_accuracy", "ece", "calibration"}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def check_report(report, n):
    """The report's numbers follow from its confusion matrix, exactly (nothing is rounded)."""
    assert set(report) == REPORT_KEYS | NEW_KEYS
    assert report["n"] == n and report["classes"] == CLASSES
    confusion = report["confusion"]
    assert len(confusion) == 5 and all(len(row) == 5 for row in confusion)
    assert sum(map(sum, confusion)) == n
    assert report["accuracy"] == sum(confusion[i][i] for i in range(5)) / n
    assert set(report["per_class"]) == set(CLASSES)
    for i, name in enumerate(CLASSES):
        m = report["per_class"][name]
        assert set(m) == {"precision", "recall", "f1", "support"}
        assert m["support"] == sum(confusion[i])
        predicted = sum(row[i] for row in confusion)
        assert m["precision"] == (confusion[i][i] / predicted if predicted else 0)
        assert m["recall"] == (confusion[i][i] / m["support"] if m["support"] else 0)
        p, r = m["precision"], m["recall"]
        assert m["f1"] == pytest.approx(2 * p * r / (p + r) if p + r else 0, rel=1e-12)
    check_new_keys(report, n)


def check_new_keys(report, n):
    """The new numbers agree with the old ones and with themselves (5 classes: top-1 and top-3)."""
    lo, hi = report["accuracy_ci95"]
    assert report["accuracy_ci_method"] == "wilson" and 0 <= lo <= report["accuracy"] <= hi <= 1 and lo < hi
    recalls = [report["per_class"][c]["recall"] for c in CLASSES if report["per_class"][c]["support"]]
    assert report["balanced_accuracy"] == pytest.approx(sum(recalls) / len(recalls), rel=1e-12)
    assert set(report["top_k_accuracy"]) == {"1", "3"} and report["top_k_accuracy"]["1"] == report["accuracy"]
    assert report["accuracy"] <= report["top_k_accuracy"]["3"] <= 1
    bins = report["calibration"]
    assert bins["bins"] == 15 and len(bins["edges"]) == 16 and sum(bins["count"]) == n
    gaps = [c / n * abs(a - f) for c, a, f in zip(bins["count"], bins["accuracy"], bins["confidence"]) if c]
    assert report["ece"] == pytest.approx(sum(gaps), abs=1e-12) and 0 <= report["ece"] <= 1


def read_predictions(folder):
    with open(folder / "predictions.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "true_class", "predicted_class", "probability", "correct"]
    return [dict(zip(rows[0], row)) for row in rows[1:]]


def check_predictions(folder, report, paths):
    """One row per photo, in order; its correct column gives the report's accuracy, its probability and
    correct columns give the report's calibration bins (recomputed here with ceil(15 p) - 1)."""
    rows = read_predictions(folder)
    assert [row["path"] for row in rows] == [str(p) for p in paths]
    assert sum(int(row["correct"]) for row in rows) / len(rows) == report["accuracy"]
    for row in rows:
        assert int(row["correct"]) == (row["true_class"] == row["predicted_class"])
        assert 1 / len(CLASSES) <= float(row["probability"]) <= 1
    counts, hits = [0] * 15, [0] * 15
    for row in rows:
        m = max(0, math.ceil(float(row["probability"]) * 15) - 1)
        counts[m], hits[m] = counts[m] + 1, hits[m] + int(row["correct"])
    assert counts == report["calibration"]["count"]
    assert [h / c if c else None for h, c in zip(hits, counts)] == report["calibration"]["accuracy"]
    return rows


def test_metrics_of_a_known_confusion():
    import torch

    targets, predictions = torch.tensor([0, 0, 0, 1, 1, 2]), torch.tensor([0, 0, 1, 1, 2, 2])
    assert confusion_matrix(targets, predictions, 3).tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    report = classification_report(targets, predictions, ["a", "b", "c"])
    assert report["accuracy"] == 4 / 6 and report["per_class"]["a"] == {"precision": 1.0, "recall": 2 / 3,
                                                                         "f1": 0.8, "support": 3}
    assert report["per_class"]["b"]["precision"] == 0.5 and report["per_class"]["c"]["recall"] == 1.0
    empty = classification_report(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), ["a"])
    assert empty["accuracy"] == 0.0 and empty["per_class"]["a"]["f1"] == 0.0
    assert "accuracy 0.6667 on 6 photos" in format_report(report)
    assert format_report(report).startswith("accuracy 0.6667 on 6 photos (95% CI 0.300-0.903, Wilson)\n"
                                            "balanced accuracy 0.722, macro F1 0.656, weighted F1 0.678\n")


def test_wilson_interval_of_300_in_331():
    """The value of the closed form, found here as the roots of the score equation (p^ - p)^2 = z^2 p(1-p)/n
    by bisection: 0.870130, 0.933235 (z = 1.959964, the normal's 97.5% quantile)."""
    lo, hi = wilson_interval(300, 331)
    assert lo == pytest.approx(0.8701300793828639, abs=1e-12) and hi == pytest.approx(0.9332351936852126, abs=1e-12)
    for k, n in ((1, 10), (7, 9), (50, 100)):
        z, p = 1.959963984540054, k / n
        for bound in wilson_interval(k, n):
            assert (p - bound) ** 2 == pytest.approx(z * z * bound * (1 - bound) / n, rel=1e-9)
    assert wilson_interval(0, 10)[0] == 0 and wilson_interval(10, 10)[1] == 1 and wilson_interval(0, 0) == (0, 1)
    assert wilson_interval(10, 10)[0] == pytest.approx(10 / (10 + 1.959963984540054 ** 2))  # 0.7225 by hand


def test_balanced_accuracy_and_f1_by_hand():
    """confusion [[2, 1, 0], [0, 1, 1], [0, 0, 1]]: recalls 2/3, 1/2, 1; F1 0.8, 0.5, 2/3; supports 3, 2, 1."""
    targets, predictions = torch.tensor([0, 0, 0, 1, 1, 2]), torch.tensor([0, 0, 1, 1, 2, 2])
    report = classification_report(targets, predictions, ["a", "b", "c", "absent"])
    assert report["balanced_accuracy"] == pytest.approx(13 / 18, rel=1e-12)
    assert report["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3, rel=1e-12)  # "absent" not counted
    assert report["weighted_f1"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 2 / 3) / 6, rel=1e-12)
    assert report["accuracy_ci95"] == list(wilson_interval(4, 6)) and report["accuracy_ci_method"] == "wilson"
    # a class predicted but with no photos: out of balanced accuracy, in macro F1 with F1 0
    only_a = classification_report(torch.tensor([0, 0]), torch.tensor([0, 1]), ["a", "b"])
    assert only_a["balanced_accuracy"] == 0.5
    assert only_a["macro_f1"] == pytest.approx(1 / 3) and only_a["weighted_f1"] == pytest.approx(2 / 3)


def test_top_k_and_ties():
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25],
                          [0.25, 0.25, 0.25, 0.25]])
    targets = torch.tensor([1, 3, 0, 3])
    # ranks of the true class: 3rd, 4th, 1st (a tie goes to the lowest index, as argmax), 4th
    assert top_k_accuracy(targets, probs) == {"1": 0.25, "3": 0.5}  # no top-5 with 4 classes
    assert top_k_accuracy(targets, probs, ks=(1, 2)) == {"1": 0.25, "2": 0.25}
    assert top_k_accuracy(targets, probs)["1"] == (probs.argmax(dim=1) == targets).float().mean().item()
    assert set(top_k_accuracy(torch.tensor([0]), torch.tensor([[0.1] * 6]))) == {"1", "3", "5"}
    assert set(top_k_accuracy(torch.tensor([0]), torch.tensor([[0.6, 0.4]]))) == {"1"}


def test_expected_calibration_error_by_hand():
    """Confidences 0.9375 (right), 0.9375 (wrong), 0.5 (right), 0.25 (wrong) fall in bins 14, 14, 7 and 3 of
    15: ECE = 2/4 |0.5 - 0.9375| + 1/4 |1 - 0.5| + 1/4 |0 - 0.25| = 0.21875 + 0.125 + 0.0625 = 0.40625."""
    probs = torch.tensor([[0.9375, 0.0625, 0, 0], [0.9375, 0.0625, 0, 0], [0.25, 0.5, 0.25, 0],
                          [0.25, 0.25, 0.25, 0.25]])
    targets = torch.tensor([0, 1, 1, 2])
    ece, bins = calibration(targets, probs)
    assert ece == 0.40625
    assert bins["count"] == [0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 2]
    assert bins["accuracy"][14] == 0.5 and bins["confidence"][14] == 0.9375 and bins["accuracy"][3] == 0.0
    assert bins["accuracy"][0] is None and bins["edges"][1] == pytest.approx(1 / 15) and bins["edges"][15] == 1
    assert calibration(torch.tensor([0]), torch.tensor([[1.0, 0.0]]))[1]["count"][14] == 1  # 1.0: last bin
    assert probability_report(targets, probs)["ece"] == ece
    assert calibration(torch.tensor([0, 1]), torch.tensor([[0.75, 0.25], [0.25, 0.75]]))[0] == 0.25
    empty = calibration(torch.zeros(0, dtype=torch.long), torch.zeros(0, 0))
    assert empty[0] == 0.0 and sum(empty[1]["count"]) == 0


def test_spreadsheet_cells():
    for cell in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert spreadsheet_cell(cell) == "'" + cell
    assert spreadsheet_cell("a=b, c") == "a=b, c" and spreadsheet_cell("daisy") == "daisy"
    assert spreadsheet_cell(os.fsdecode(b"caf\xff.jpg")) == "caf\\xff.jpg"  # the byte as text, \xff
    assert spreadsheet_cell("caf\u00e9.jpg") == "caf\u00e9.jpg"  # valid UTF-8 stays as it is
    assert spreadsheet_cell("x\ud800") == "x\\ud800"  # a surrogate no byte made


def test_own_val_report_and_pictures(trained_run, capsys, tmp_path):
    out = tmp_path / "eval"
    assert cli("evaluate", trained_run, "--json", "--out", out) == 0
    report = json.loads(capsys.readouterr().out)
    check_report(report, 10)
    saved = json.loads((out / "report.json").read_text())
    assert {k: saved[k] for k in report} == report and set(saved) == set(report) | {"checkpoint", "data", "loss"}
    assert saved["data"] == "val" and saved["checkpoint"] == str(trained_run) and saved["loss"] > 0
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    split = json.loads((trained_run / "split.json").read_text())
    val = [os.path.join(split["source"], path) for path, _ in split["val"]]
    rows = check_predictions(out, report, val)
    assert [row["true_class"] for row in rows] == [CLASSES[label] for _, label in split["val"]]
    png = (out / "reliability.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    from PIL import Image

    assert min(Image.open(out / "reliability.png").size) > 300
    assert (out / "mistakes.png").exists() == (report["accuracy"] < 1)


def test_evaluate_scores_each_photo_as_predict_and_trains_val_do(trained_run, tmp_path, capsys):
    """evaluate decodes a photo as open_eval_photo does (a JPEG at least twice the model's side at a reduced
    scale, as train's val and predict): its probabilities are predict's, to float32 rounding."""
    from PIL import Image

    from petalnet import load_classifier

    assert cli("evaluate", trained_run, "--out", tmp_path / "eval", "--json", "--device", "cpu") == 0
    capsys.readouterr()
    rows = read_predictions(tmp_path / "eval")
    assert any(min(Image.open(row["path"]).size) >= 128 for row in rows)  # decoded at 1/2 scale for 64 px
    records = load_classifier(trained_run, "cpu").predict([row["path"] for row in rows], topk=1)
    for row, record in zip(rows, records):
        assert record["top"][0]["class"] == row["predicted_class"]
        assert abs(record["top"][0]["prob"] - float(row["probability"])) < 1e-6, (row, record)


@pytest.mark.slow
def test_unseen_photos_default_output_folder_and_text_table(trained_run, unseen_photos, tmp_path, capsys):
    run = tmp_path / "run"  # a run folder of its own: the default output goes into it
    run.mkdir()
    (run / "best.pt").symlink_to(trained_run / "best.pt")
    assert cli("evaluate", run, "--data", unseen_photos) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "on 20 photos" in out and "confusion matrix" in out
    assert "(95% CI " in out and "balanced accuracy " in out and "macro F1 " in out and "top-3 " in out
    assert "ECE " in out and "predictions.csv" in out and "reliability.png" in out
    assert all(name in out for name in CLASSES)
    report = json.loads((run / "eval-unseen" / "report.json").read_text())
    check_report({k: report[k] for k in REPORT_KEYS | NEW_KEYS}, 20)
    check_predictions(run / "eval-unseen", report, sorted(unseen_photos.rglob("*.jpg")))
    assert report["data"] == "unseen"
    assert (run / "eval-unseen" / "mistakes.png").exists() == (report["accuracy"] < 1)
    assert cli("evaluate", run / "best.pt", "--data", unseen_photos, "--json") == 0
    assert (run / "eval-unseen-2" / "report.json").is_file()  # a new folder, never clobbered


@pytest.mark.slow
def test_train_val_layout_uses_its_val(trained_run, made_photos, tmp_path, capsys):
    layout = tmp_path / "layout"
    assert cli("data", "split", made_photos, "--out", layout, "--val-fraction", "0.2") == 0
    capsys.readouterr()
    assert cli("evaluate", trained_run, "--data", layout, "--json", "--out", tmp_path / "e") == 0
    check_report(json.loads(capsys.readouterr().out), 20)


def test_other_class_names_fail_cleanly(trained_run, tmp_path, capsys):
    other = tmp_path / "other"
    for name in ("cats", "dogs"):
        (other / name).mkdir(parents=True)
    assert cli("evaluate", trained_run, "--data", other, "--out", tmp_path / "e") == 2
    err = capsys.readouterr().err  # the same in a child process: test_cli_robustness
    assert err.count("\n") == 1 and "{cats, dogs}" in err, err
    assert "{daisy, dandelion, roses, sunflowers, tulips}" in err, err
    assert not (tmp_path / "e").exists()


def test_an_exported_onnx_file_is_named_as_such(tmp_path, capsys):
    onnx = tmp_path / "model.onnx"  # evaluate runs the PyTorch network: predict is the command for an .onnx
    onnx.write_bytes(b"onnx")
    assert cli("evaluate", onnx, "--data", tmp_path) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is an exported ONNX model" in err and "run folder or its .pt" in err, err


def test_moved_dataset_is_a_clear_error(trained_run, tmp_path, capsys):
    moved = tmp_path / "moved_run"
    moved.mkdir()
    (moved / "best.pt").symlink_to(trained_run / "best.pt")
    split = json.loads((trained_run / "split.json").read_text())
    (moved / "split.json").write_text(json.dumps({**split, "source": str(tmp_path / "gone")}))
    assert cli("evaluate", moved, "--json") == 2
    err = capsys.readouterr().err
    assert "10 val photo(s) of the recorded split are missing" in err and "pass --data" in err
    assert not (moved / "eval-val").exists()


def test_a_checkpoint_without_its_run_needs_data(trained_run, tmp_path, capsys):
    alone = tmp_path / "alone.pt"
    alone.symlink_to(trained_run / "best.pt")
    assert cli("evaluate", alone, "--json") == 2
    assert "cannot find the val photos" in capsys.readouterr().err


def odd_name_photos(made_photos, root):
    """Copies of made photos under names a CSV or a spreadsheet can trip on: {class: [file names]}."""
    names = {"daisy": ["a,b.jpg", "=HYPERLINK(\"x\").jpg"], "dandelion": ['say "hi".jpg'],
             "roses": ["two\nlines.jpg", "+1.jpg"], "sunflowers": ["-x.jpg", "@y.jpg"], "tulips": ["plain.jpg"]}
    for name, files in names.items():
        (root / name).mkdir(parents=True)
        for k, file in enumerate(files):
            shutil.copy(made_photos / name / f"made_{k:03d}.jpg", root / name / file)
    if sys.platform.startswith("linux"):  # macOS and Windows refuse names that are not valid UTF-8
        source = os.fsencode(made_photos / "tulips" / "made_001.jpg")
        with open(source, "rb") as f, open(os.fsencode(root / "tulips") + b"/caf\xff.jpg", "wb") as g:
            g.write(f.read())
        names["tulips"].append(os.fsdecode(b"caf\xff.jpg"))
    return names


@pytest.mark.slow
def test_predictions_csv_is_safe_for_spreadsheets(trained_run, made_photos, tmp_path, monkeypatch, capsys):
    """A folder given as the relative path "=evil" makes every path cell start with "="; file names hold a
    comma, quotes, a newline, leading = + - @ and (on Linux) the byte 0xff. Read back with the csv module,
    every row has its path (quoted, the byte as \\xff) and no cell starts like a formula."""
    monkeypatch.chdir(tmp_path)
    names = odd_name_photos(made_photos, tmp_path / "=evil")
    assert cli("evaluate", trained_run, "--data", "=evil", "--json", "--out", tmp_path / "e", "--device", "cpu") == 0
    report = json.loads(capsys.readouterr().out)
    expected = sorted(f"'=evil/{name}/{file}".replace(os.fsdecode(b"\xff"), "\\xff")
                      for name, files in names.items() for file in files)
    rows = read_predictions(tmp_path / "e")
    assert sorted(row["path"] for row in rows) == expected and report["n"] == len(expected)
    assert len(expected) == 8 + sys.platform.startswith("linux")
    for row in rows:
        assert not any(cell.startswith(FORMULA_STARTS) for cell in row.values()), row
        assert row["true_class"] == row["path"].split("/")[1]
    assert sum(int(row["correct"]) for row in rows) / len(rows) == report["accuracy"]
    raw = (tmp_path / "e" / "predictions.csv").read_bytes()
    assert b'"\'=evil/dandelion/say ""hi"".jpg"' in raw and b"\xff" not in raw  # csv quoting; UTF-8 only


@pytest.mark.slow
def test_class_names_that_start_like_formulas(made_photos, tmp_path, capsys):
    """Class names come from the model (here the tutorial's class file): they are quoted the same way."""
    from petalnet.models.networks import build_model

    classes = ["=daisy", "+dandelion", "-roses", "@sunflowers", "=tulips"]
    model, photos = tmp_path / "model", tmp_path / "photos"
    model.mkdir()
    torch.save(build_model("alexnet_half", 5).state_dict(), model / "AlexNet.pth")
    (model / "class_indices.json").write_text(json.dumps(dict(enumerate(classes))))
    for name, made in zip(classes, CLASSES):
        (photos / name).mkdir(parents=True)
        shutil.copy(made_photos / made / "made_000.jpg", photos / name / "p.jpg")
    assert cli("evaluate", model, "--data", photos, "--json", "--out", tmp_path / "e", "--device", "cpu") == 0
    assert json.loads(capsys.readouterr().out)["classes"] == classes
    rows = read_predictions(tmp_path / "e")
    assert sorted(row["true_class"] for row in rows) == sorted("'" + name for name in classes)
    assert all(row["predicted_class"][0] == "'" and row["predicted_class"][1:] in classes for row in rows)
    assert all(row["path"] == str(photos / row["true_class"][1:] / "p.jpg") for row in rows)


def test_top_losses_are_the_photos_least_believed_and_the_confused_pairs_add_up(trained_run, capsys, tmp_path):
    out = tmp_path / "eval"
    assert cli("evaluate", trained_run, "--top-losses", "3", "--json", "--out", out, "--device", "cpu") == 0
    report = json.loads(capsys.readouterr().out)
    rows = report["top_losses"]
    assert len(rows) == 3 and [r["loss"] for r in rows] == sorted((r["loss"] for r in rows), reverse=True)
    for row in rows:  # the loss is the cross-entropy of the given class
        assert row["loss"] == pytest.approx(-math.log(row["given_probability"]), rel=1e-4, abs=1e-5)
        assert row["probability"] >= row["given_probability"]
    shown = {row["path"] for row in rows}
    right = [float(r["probability"]) for r in csv.DictReader(open(out / "predictions.csv"))
             if r["correct"] == "1" and r["path"] not in shown]  # their loss: -log of their own probability
    assert right and all(-math.log(p) <= rows[-1]["loss"] + 1e-5 for p in right)
    pairs = report["confused_pairs"]
    assert sum(pair["count"] for pair in pairs) == report["n"] - round(report["accuracy"] * report["n"])
    assert json.loads((out / "report.json").read_text())["top_losses"] == rows
    assert (out / "top_losses.png").stat().st_size > 1000
    assert cli("evaluate", trained_run, "--top-losses", "2", "--out", tmp_path / "text", "--device", "cpu") == 0
    text = capsys.readouterr().out
    assert "top 2 losses (highest first)" in text and "most-confused pairs" in text and "top_losses.png" in text
