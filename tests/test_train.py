"""`petalnet train`: the run folder, checkpoints, resume, reproducibility, refusals."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import CLASSES, SMALL_SIZE, cli, link_subset, run_petalnet, shown
from imagegen import truncated_jpeg
from petalnet.checkpoint import load_checkpoint, model_from_checkpoint
from petalnet.runs import METRIC_COLUMNS

SMALL = ["--recipe", "seed", "--image-size", SMALL_SIZE, "--device", "cpu"]


def metrics(run, drop_timings=True):
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if drop_timings:
        timings = ("epoch_seconds", "train_images_per_s", "elapsed_s")
        rows = [{k: v for k, v in row.items() if k not in timings} for row in rows]
    return rows


def test_run_folder_holds_everything(trained_run):
    names = {p.name for p in trained_run.iterdir()}
    assert {"best.pt", "last.pt", "class_indices.json", "config.json", "metrics.csv", "curves.png",
            "split.json"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    assert json.loads((trained_run / "class_indices.json").read_text()) == {str(i): c for i, c in enumerate(CLASSES)}
    rows = metrics(trained_run, drop_timings=False)
    assert list(rows[0]) == METRIC_COLUMNS and [r["epoch"] for r in rows] == ["1", "2"]
    assert all(0 <= float(r["val_acc"]) <= 1 and float(r["train_images_per_s"]) > 0 for r in rows)
    config = json.loads((trained_run / "config.json").read_text())
    assert config["recipe"] == "seed" and config["lr"] == 2e-4 and config["batch_size"] == 32
    assert config["epochs"] == 2 and config["image_size"] == int(SMALL_SIZE)
    assert config["num_train"] == 90 and config["num_val"] == 10 and config["device"].startswith("cpu")
    assert (trained_run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoints_carry_what_is_needed_to_use_them(trained_run):
    best = torch.load(trained_run / "best.pt", map_location="cpu", weights_only=True)
    assert best["meta"] == {"classes": CLASSES, "model": "alexnet_half", "image_size": int(SMALL_SIZE),
                            "eval_resize": "squash", "mean": [0.5] * 3, "std": [0.5] * 3, "tta_flip": False}
    best_epoch = max(metrics(trained_run), key=lambda r: float(r["val_acc"]))["epoch"]
    assert best["epoch"] == int(best_epoch)
    model = model_from_checkpoint(best)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 5)
    last = load_checkpoint(trained_run / "last.pt")
    assert last["epoch"] == 2 and {"optimizer", "scheduler", "rng", "history", "config"} <= set(last)
    assert last["optimizer"]["state"]  # Adam moments are saved


def test_split_record_matches_the_split_command(trained_run, few_photos):
    record = json.loads((trained_run / "split.json").read_text())
    val = {rel for rel, _ in record["val"]}
    assert len(val) == 10 and not val & {rel for rel, _ in record["train"]}
    assert all(rel.split("/")[0] == CLASSES[label] for rel, label in record["train"] + record["val"])


def test_same_seed_same_metrics_and_resume_equals_uninterrupted(trained_run, few_photos, tmp_path):
    run = tmp_path / "resumed"
    assert cli("train", "--data", few_photos, "--out", run, "--epochs", "1", *SMALL) == 0
    assert metrics(run) == metrics(trained_run)[:1]  # a second run with the same seed
    assert cli("train", "--out", run, "--resume", "--epochs", "2", "--device", "cpu") == 0
    assert metrics(run) == metrics(trained_run)
    a = torch.load(run / "last.pt", weights_only=True)["model"]
    b = torch.load(trained_run / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_another_seed_gives_other_metrics(trained_run, few_photos, tmp_path):
    run = tmp_path / "seed1"
    assert cli("train", "--data", few_photos, "--out", run, "--epochs", "1", "--seed", "1", *SMALL) == 0
    assert metrics(run)[0] != metrics(trained_run)[0]


def test_existing_run_is_never_clobbered(trained_run, few_photos, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in trained_run.iterdir()}
    assert cli("train", "--data", few_photos, "--out", trained_run, *SMALL) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in trained_run.iterdir()} == before


def test_overwrite_replaces_a_run(few_photos, tmp_path):
    run = tmp_path / "again"
    run.mkdir()
    (run / "metrics.csv").write_text("stale\n")
    assert cli("train", "--data", few_photos, "--out", run, "--epochs", "1", "--overwrite", *SMALL) == 0
    assert len(metrics(run)) == 1


def test_finished_run_resumed_says_so(trained_run, capsys):
    assert cli("train", "--out", trained_run, "--resume", "--device", "cpu") == 0
    assert "already finished 2 epochs" in capsys.readouterr().out


def test_train_val_layout_is_used_as_is(few_photos, tmp_path):
    layout = tmp_path / "layout"
    assert cli("data", "split", few_photos, "--out", layout, "--val-fraction", "0.2") == 0
    run = tmp_path / "run"
    assert cli("train", "--data", layout, "--out", run, "--epochs", "1", *SMALL) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["layout"] == "train/val" and config["num_val"] == 20 and config["num_train"] == 80
    assert not (run / "split.json").exists()


def test_unreadable_photos_are_listed_once_and_left_out(flowers, tmp_path, capsys):
    photos = link_subset(flowers, tmp_path / "photos", 6)
    (photos / "roses" / "broken.jpg").write_bytes(truncated_jpeg())
    (photos / "tulips" / "readme.txt").write_text("not a photo")
    run = tmp_path / "run"
    assert cli("train", "--data", photos, "--out", run, "--epochs", "1", *SMALL) == 0
    out = capsys.readouterr().out
    assert out.count("roses/broken.jpg") == 1 and "left out 1 unreadable file" in out
    config = json.loads((run / "config.json").read_text())
    assert [r["path"] for r in config["left_out"]] == ["roses/broken.jpg"]
    assert config["num_train"] + config["num_val"] == 30


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--lr", "0"], "--lr must be greater than 0"),
    (["--lr", "-0.1"], "--lr must be greater than 0"),
    (["--model", "vgg99"], "unknown model 'vgg99'"),
    (["--recipe", "magic"], "unknown recipe 'magic'"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--val-fraction", "1.5"], "--val-fraction must be between 0 and 1"),
    (["--image-size", "32"], "--image-size 32 is too small for alexnet_half"),
    (["--epochs", "three"], "invalid int value: 'three'"),
    (["--workers", "-1"], "--workers must be 0 or more"),
])
def test_bad_flag_values_exit_2_with_one_line_and_write_nothing(few_photos, tmp_path, capsys, flags, message):
    run = tmp_path / "run"
    assert cli("train", "--data", few_photos, "--out", run, *flags) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not run.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_refused(few_photos, tmp_path, capsys):
    assert cli("train", "--data", few_photos, "--out", tmp_path / "run", "--device", "cuda") == 2
    assert "no CUDA GPU is available" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_bad_data_paths_exit_2_in_a_child_process(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "loose.jpg").write_bytes(b"")
    cases = [(tmp_path / "missing", "no such folder"), (empty, "no class folders")]
    for data, message in cases:
        result = run_petalnet("train", "--data", data, "--out", tmp_path / "run")
        assert result.returncode == 2, shown(result)
        assert message in result.stderr and result.stderr.count("\n") == 1, shown(result)
        assert "Traceback" not in result.stderr, shown(result)
    assert not (tmp_path / "run").exists()


def test_auto_device_is_said(trained_run, few_photos, tmp_path, capsys):
    """Also the default recipe (fast) with only --image-size and --epochs changed: its other sizes follow."""
    assert cli("train", "--data", few_photos, "--out", tmp_path / "r", "--epochs", "1",
               "--image-size", SMALL_SIZE) == 0
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert f"device: {expected}" in capsys.readouterr().out
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["recipe"] == "fast" and config["eval_image_size"] == 80 and config["warmup_epochs"] == 0


def test_console_script_and_module_entry_points():
    result = run_petalnet("--version")
    assert result.returncode == 0 and result.stdout.startswith("petalnet "), shown(result)
    script = Path(sys.executable).parent / "petalnet"
    result = subprocess.run([script, "train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--resume" in result.stdout, shown(result)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_fused_optimizer_steps_like_the_plain_one(optimizer):
    from petalnet.models import build_model
    from petalnet.recipes import FAST
    from petalnet.train import build_optimizer

    config = {**FAST, "optimizer": optimizer, "lr": 0.01, "weight_decay": 0.05}
    models = []
    for fused in (False, True):
        torch.manual_seed(0)
        model = build_model("alexnet_half", 5, 0.0)
        start = [p.detach().clone() for p in model.parameters()]
        opt = build_optimizer(model, config, fused=fused)
        assert opt.defaults["fused"] is (True if fused else None)
        torch.manual_seed(1)
        for _ in range(3):
            loss = model(torch.randn(4, 3, 64, 64)).logsumexp(dim=1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        models.append(model)
    plain, fused = (list(m.parameters()) for m in models)
    assert all((p - s).abs().max() > 1e-4 for p, s in zip(plain, start))  # every tensor was updated
    for p, q, s in zip(plain, fused, start):  # the same update, up to float rounding
        assert (p - q).norm() < 1e-4 * (p - s).norm()
