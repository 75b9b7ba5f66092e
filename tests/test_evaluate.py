"""`petalnet evaluate`: the JSON report, pictures, class-name checks."""

import csv
import json

import pytest

from conftest import CLASSES, cli, link_subset, run_petalnet, shown

REPORT_KEYS = {"accuracy", "n", "classes", "per_class", "confusion"}


def check_report(report, n):
    assert set(report) == REPORT_KEYS
    assert report["n"] == n and report["classes"] == CLASSES
    confusion = report["confusion"]
    assert len(confusion) == 5 and all(len(row) == 5 for row in confusion)
    assert sum(map(sum, confusion)) == n
    assert report["accuracy"] == pytest.approx(sum(confusion[i][i] for i in range(5)) / n, abs=1e-4)
    assert set(report["per_class"]) == set(CLASSES)
    for i, name in enumerate(CLASSES):
        m = report["per_class"][name]
        assert set(m) == {"precision", "recall", "f1", "support"}
        assert m["support"] == sum(confusion[i])
        predicted = sum(row[i] for row in confusion)
        assert m["precision"] == pytest.approx(confusion[i][i] / predicted if predicted else 0, abs=1e-4)
        assert m["recall"] == pytest.approx(confusion[i][i] / m["support"] if m["support"] else 0, abs=1e-4)
        p, r = m["precision"], m["recall"]
        assert m["f1"] == pytest.approx(2 * p * r / (p + r) if p + r else 0, abs=2e-4)


def test_own_val_matches_training_validation(trained_run, capsys, tmp_path):
    out = tmp_path / "eval"
    assert cli("evaluate", trained_run, "--json", "--out", out) == 0
    report = json.loads(capsys.readouterr().out)
    check_report(report, 10)
    with open(trained_run / "metrics.csv", newline="") as f:
        best = max(csv.DictReader(f), key=lambda r: float(r["val_acc"]))
    assert report["accuracy"] == pytest.approx(float(best["val_acc"]), abs=1e-4)  # one implementation
    saved = json.loads((out / "report.json").read_text())
    assert {k: saved[k] for k in REPORT_KEYS} == report
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_unseen_photos_default_output_folder_and_text_table(trained_run, flowers, tmp_path, capsys):
    unseen = link_subset(flowers, tmp_path / "unseen", 4, offset=40)
    assert cli("evaluate", trained_run, "--data", unseen) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "on 20 photos" in out and "confusion matrix" in out
    assert all(name in out for name in CLASSES)
    folder = trained_run / "eval-unseen"
    report = json.loads((folder / "report.json").read_text())
    check_report({k: report[k] for k in REPORT_KEYS}, 20)
    assert (folder / "mistakes.png").exists() == (report["accuracy"] < 1)
    assert cli("evaluate", trained_run, "--data", unseen, "--json") == 0
    assert (trained_run / "eval-unseen-2" / "report.json").is_file()  # a new folder, never clobbered


def test_train_val_layout_uses_its_val(trained_run, few_photos, tmp_path, capsys):
    layout = tmp_path / "layout"
    assert cli("data", "split", few_photos, "--out", layout, "--val-fraction", "0.2") == 0
    capsys.readouterr()
    assert cli("evaluate", trained_run, "--data", layout, "--json", "--out", tmp_path / "e") == 0
    check_report(json.loads(capsys.readouterr().out), 20)


def test_other_class_names_fail_cleanly(trained_run, tmp_path):
    other = tmp_path / "other"
    for name in ("cats", "dogs"):
        (other / name).mkdir(parents=True)
    result = run_petalnet("evaluate", trained_run, "--data", other, "--out", tmp_path / "e")
    assert result.returncode == 2 and "Traceback" not in result.stderr, shown(result)
    assert result.stderr.count("\n") == 1, shown(result)
    assert "{cats, dogs}" in result.stderr, shown(result)
    assert "{daisy, dandelion, roses, sunflowers, tulips}" in result.stderr, shown(result)
    assert not (tmp_path / "e").exists()


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
