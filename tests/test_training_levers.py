"""A run with every lever beyond the tutorial on (recipe best at small sizes, plus erasing, MixUp/CutMix,
jitter), end to end: sizes recorded, evaluate agrees with train's val, a stopped run resumes exactly."""

import json

import pytest
import torch

from conftest import cli, metrics, stop_after_epoch
from petalnet.models.checkpoint import load_checkpoint

LEVERS = ["--recipe", "best", "--image-size", "80", "--min-image-size", "64", "--resize-ramp", "0", "0.6",
          "--eval-image-size", "96", "--warmup-epochs", "1", "--device", "cpu", "--color-jitter", "0.2",
          "--random-erasing", "0.25", "--mixup-alpha", "0.2", "--cutmix-alpha", "1.0", "--tta-flip", "on"]


@pytest.fixture(scope="module")
def lever_run(made_photos, tmp_path_factory):
    """Every lever on, 3 epochs straight."""
    run = tmp_path_factory.mktemp("levers") / "straight"
    assert cli("train", "--data", made_photos, "--out", run, "--epochs", "3", *LEVERS) == 0
    return run


def test_lever_run_records_sizes_and_the_eval_transform(lever_run):
    rows = metrics(lever_run, drop_timings=False)
    assert [int(r["image_size"]) for r in rows] == [64, 64, 80]
    assert [int(r["eval_image_size"]) for r in rows] == [80, 80, 96]  # progressive_eval: 64 * 96 / 80 -> 80
    assert all(float(r["elapsed_s"]) > 0 for r in rows)
    assert [float(r["elapsed_s"]) for r in rows] == sorted(float(r["elapsed_s"]) for r in rows)
    best = load_checkpoint(lever_run / "best.pt")
    assert best.spec.image_size == int(rows[best.epoch - 1]["eval_image_size"])  # the size val used
    assert best.spec.tta_flip is True
    last = load_checkpoint(lever_run / "last.pt")
    assert last.spec.image_size == 96
    config = json.loads((lever_run / "config.json").read_text())
    assert config["mixup_alpha"] == 0.2 and config["resize_ramp"] == [0.0, 0.6] and config["color_jitter"] == 0.2
    assert config["recipe"] == "best" and config["auto_augment"] == "trivial"  # best's, not given
    assert last.state.ema["updates"] > 0  # best.pt holds the averaged weights, last.pt both


def test_evaluate_matches_train_val_with_averaged_weights_and_flips(lever_run, tmp_path, capsys):
    best = max(float(r["val_acc"]) for r in metrics(lever_run))
    capsys.readouterr()
    assert cli("evaluate", lever_run, "--json", "--device", "cpu", "--out", tmp_path / "eval") == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(best, abs=1e-9)


def test_resumed_lever_run_equals_the_straight_one(lever_run, made_photos, tmp_path, monkeypatch, capsys):
    """Stopped (Ctrl-C) after epoch 2 of 3, then resumed: the same metrics and weights as straight through.
    Meanwhile best.pt is from an epoch validated at 80 px (progressive_eval): evaluate agrees with it."""
    run = tmp_path / "resumed"
    undo = stop_after_epoch(monkeypatch, 2)
    assert cli("train", "--data", made_photos, "--out", run, "--epochs", "3", *LEVERS) == 130
    assert f"continue with 'petalnet train --out {run} --resume'" in capsys.readouterr().err
    assert load_checkpoint(run / "best.pt").spec.image_size == 80
    assert cli("evaluate", run, "--json", "--device", "cpu", "--out", tmp_path / "eval") == 0
    best_so_far = max(float(r["val_acc"]) for r in metrics(run))
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(best_so_far, abs=1e-9)
    undo()
    assert cli("train", "--out", run, "--resume") == 0
    assert metrics(run) == metrics(lever_run)
    for name in ("best.pt", "last.pt"):
        a, b = load_checkpoint(run / name), load_checkpoint(lever_run / name)
        assert all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)
