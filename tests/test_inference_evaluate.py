"""`petalnet evaluate` (inference/evaluate.py, metrics.py, photos.py): the report, pictures, which photos.

That train's val and evaluate agree photo for photo is tests/test_pipeline_loaders.py's."""

import json

import pytest

from conftest import CLASSES, cli, run_petalnet, shown
from petalnet.inference.metrics import classification_report, confusion_matrix, format_report

REPORT_KEYS = {"accuracy", "n", "classes", "per_class", "confusion"}


def check_report(report, n):
    """The report's numbers follow from its confusion matrix, exactly (nothing is rounded)."""
    assert set(report) == REPORT_KEYS
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


def test_own_val_report_and_pictures(trained_run, capsys, tmp_path):
    out = tmp_path / "eval"
    assert cli("evaluate", trained_run, "--json", "--out", out) == 0
    report = json.loads(capsys.readouterr().out)
    check_report(report, 10)
    saved = json.loads((out / "report.json").read_text())
    assert {k: saved[k] for k in REPORT_KEYS} == report
    assert saved["data"] == "val" and saved["checkpoint"] == str(trained_run) and saved["loss"] > 0
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "mistakes.png").exists() == (report["accuracy"] < 1)


def test_unseen_photos_default_output_folder_and_text_table(trained_run, unseen_photos, tmp_path, capsys):
    run = tmp_path / "run"  # a run folder of its own: the default output goes into it
    run.mkdir()
    (run / "best.pt").symlink_to(trained_run / "best.pt")
    assert cli("evaluate", run, "--data", unseen_photos) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "on 20 photos" in out and "confusion matrix" in out
    assert all(name in out for name in CLASSES)
    report = json.loads((run / "eval-unseen" / "report.json").read_text())
    check_report({k: report[k] for k in REPORT_KEYS}, 20)
    assert report["data"] == "unseen"
    assert (run / "eval-unseen" / "mistakes.png").exists() == (report["accuracy"] < 1)
    assert cli("evaluate", run / "best.pt", "--data", unseen_photos, "--json") == 0
    assert (run / "eval-unseen-2" / "report.json").is_file()  # a new folder, never clobbered


def test_train_val_layout_uses_its_val(trained_run, made_photos, tmp_path, capsys):
    layout = tmp_path / "layout"
    assert cli("data", "split", made_photos, "--out", layout, "--val-fraction", "0.2") == 0
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


def test_a_checkpoint_without_its_run_needs_data(trained_run, tmp_path, capsys):
    alone = tmp_path / "alone.pt"
    alone.symlink_to(trained_run / "best.pt")
    assert cli("evaluate", alone, "--json") == 2
    assert "cannot find the val photos" in capsys.readouterr().err
