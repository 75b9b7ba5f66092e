"""`petalnet train` (training/train.py, config/run.py, photos.py): the run folder, resume, reproducibility,
refusals."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import petalnet

from conftest import CLASSES, SMALL, SMALL_SIZE, cli, linked_copy, metrics, run_petalnet, shown
from imagegen import make_flower_folders, truncated_jpeg
from petalnet.config.run import METRIC_COLUMNS, RUN_FILES, RunFolder
from petalnet.config.train import TrainConfig
from petalnet.errors import UserError
from petalnet.training.train import train


def test_run_folder_holds_everything(trained_run):
    names = {p.name for p in trained_run.iterdir()}
    assert set(RUN_FILES) <= names
    assert not [n for n in names if n.endswith(".tmp")]
    assert json.loads((trained_run / "class_indices.json").read_text()) == {str(i): c for i, c in enumerate(CLASSES)}
    rows = metrics(trained_run, drop_timings=False)
    assert list(rows[0]) == METRIC_COLUMNS and [r["epoch"] for r in rows] == ["1", "2"]
    assert all(0 <= float(r["val_acc"]) <= 1 and float(r["train_images_per_s"]) > 0 for r in rows)
    config = json.loads((trained_run / "config.json").read_text())
    assert config["recipe"] == "seed" and config["lr"] == 0.003 and config["batch_size"] == 32  # given; seed's
    assert config["epochs"] == 2 and config["image_size"] == int(SMALL_SIZE)
    assert config["num_train"] == 90 and config["num_val"] == 10 and config["device"].startswith("cpu")
    assert config["classes"] == CLASSES and config["layout"] == "class folders"
    keys = config["config_keys"]
    assert keys == sorted(keys) and {"data", "layout", "lr", "pipeline"} <= set(keys)
    assert (trained_run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_split_record_matches_the_split_command(trained_run):
    record = json.loads((trained_run / "split.json").read_text())
    val = {rel for rel, _ in record["val"]}
    assert len(val) == 10 and not val & {rel for rel, _ in record["train"]}
    assert all(rel.split("/")[0] == CLASSES[label] for rel, label in record["train"] + record["val"])


@pytest.mark.slow
def test_same_seed_same_metrics_and_resume_equals_uninterrupted(trained_run, made_photos, tmp_path):
    """The first epoch again through the Python API, with the TrainConfig the CLI run recorded; then resumed
    through the CLI to the second: the same metrics and weights as the run that was never stopped."""
    run, config = tmp_path / "resumed", RunFolder(trained_run).read_record().config
    train(made_photos, run, config=dataclasses.replace(config, epochs=1), device="cpu", progress=False,
          log=lambda line: None)
    assert metrics(run) == metrics(trained_run)[:1]  # a second run with the same seed
    assert cli("train", "--out", run, "--resume", "--epochs", "2", "--device", "cpu") == 0
    assert metrics(run) == metrics(trained_run)
    a = torch.load(run / "last.pt", weights_only=True)["model"]
    b = torch.load(trained_run / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_another_seed_gives_other_metrics(trained_run, made_photos, tmp_path):
    run = tmp_path / "seed1"
    assert cli("train", "--data", made_photos, "--out", run, "--epochs", "1", "--seed", "1", *SMALL) == 0
    assert metrics(run)[0] != metrics(trained_run)[0]


def test_python_api_trains_with_typed_overrides_and_options(made_photos, tmp_path):
    from petalnet.devices.options import DeviceOptions

    lines = []
    history = train(made_photos, tmp_path / "api", recipe="seed", device="cpu", progress=False, log=lines.append,
                    overrides={"epochs": 1, "image_size": 64, "batch_size": 45, "crop_scale": [0.5, 1.0]},
                    options=DeviceOptions(workers=1, channels_last="off", eval_batch_size=4))
    assert [row["epoch"] for row in history] == [1] and any(line.startswith("epoch   1/1") for line in lines)
    config = json.loads((tmp_path / "api" / "config.json").read_text())
    assert config["batch_size"] == 45 and config["crop_scale"] == [0.5, 1.0]
    assert config["device_settings"]["workers"] == 1 and config["device_settings"]["why"]["workers"] == "--workers"
    assert config["device_settings"]["eval_batch_size"] == 4 and config["device_settings"]["channels_last"] is False
    assert petalnet.train is train  # the package's own name for it
    with pytest.raises(UserError, match="config= is a whole run's settings"):  # before anything is read
        train(made_photos, tmp_path / "both", recipe="seed", config=TrainConfig(), device="cpu")
    with pytest.raises(UserError, match="config must be a TrainConfig"):
        train(made_photos, tmp_path / "dict", config={"epochs": 1}, device="cpu", log=lambda line: None)
    assert not (tmp_path / "both").exists() and not (tmp_path / "dict").exists()


def test_existing_run_is_never_clobbered(trained_run, made_photos, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in trained_run.iterdir()}
    assert cli("train", "--data", made_photos, "--out", trained_run, *SMALL) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in trained_run.iterdir()} == before


@pytest.mark.slow
def test_overwrite_replaces_a_run(made_photos, tmp_path):
    run = tmp_path / "again"
    run.mkdir()
    (run / "metrics.csv").write_text("stale\n")
    (run / "curves.png").write_text("stale\n")
    assert cli("train", "--data", made_photos, "--out", run, "--epochs", "1", "--overwrite", *SMALL) == 0
    assert len(metrics(run)) == 1 and (run / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_finished_run_resumed_says_so(trained_run, tmp_path, capsys):
    run = tmp_path / "copy"
    linked_copy(trained_run, run)
    assert cli("train", "--out", run, "--resume", "--device", "cpu", "--lr", "0.1") == 0
    out = capsys.readouterr().out
    assert "already finished 2 epochs" in out and "--lr is ignored with --resume (the run keeps 0.003)" in out
    assert metrics(run) == metrics(trained_run)


@pytest.mark.slow
def test_train_val_layout_is_used_as_is(made_photos, tmp_path):
    layout = tmp_path / "layout"
    assert cli("data", "split", made_photos, "--out", layout, "--val-fraction", "0.2") == 0
    run = tmp_path / "run"
    assert cli("train", "--data", layout, "--out", run, "--epochs", "1", *SMALL) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["layout"] == "train/val" and config["num_val"] == 20 and config["num_train"] == 80
    assert not (run / "split.json").exists()


@pytest.mark.slow
def test_unreadable_photos_are_listed_once_and_left_out(tmp_path, capsys):
    photos = make_flower_folders(tmp_path / "photos", CLASSES, 6)
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
    (["--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--lr", "0"], "--lr must be greater than 0"),
    (["--lr", "-0.1"], "--lr must be greater than 0"),
    (["--model", "vgg99"], "unknown --model 'vgg99': closest vgg19, vgg19_bn"),
    (["--recipe", "magic"], "unknown recipe 'magic'"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--val-fraction", "1.5"], "--val-fraction must be between 0 and 1"),
    (["--model", "alexnet_half", "--image-size", "32"], "--image-size 32 does not suit alexnet_half"),
    (["--epochs", "three"], "invalid int value: 'three'"),
    (["--hflip", "yes"], "expected on or off, got 'yes'"),
    (["--crop-scale", "0.5"], "expected 2 arguments"),
    (["--warmup-epochs", "3", "--epochs", "2"], "--warmup-epochs must be in [0, epochs), got 3"),
    (["--workers", "-1"], "--workers must be 0 or more"),
    (["--pipeline", "dali"], "unknown --pipeline 'dali': choose from cache, pil"),
    (["--pipeline", "pil", "--mixup-alpha", "0.2"], "--pipeline pil has the tutorial's augmentation only"),
    (["--cache-size", "10"], "--cache-size must be at least 16, got 10"),
    (["--cache-size", "48"], "--cache-size must be at least the image size (64), got 48"),
    (["--amp", "fp8"], "unknown --amp 'fp8'"),
    (["--amp", "fp16"], "--amp fp16 needs a CUDA GPU"),
    (["--channels-last", "maybe"], "unknown --channels-last 'maybe'"),
    (["--fused-optimizer", "yes"], "unknown --fused-optimizer 'yes'"),
    (["--eval-batch-size", "0"], "--eval-batch-size must be at least 1"),
])
def test_bad_flag_values_exit_2_with_one_line_and_write_nothing(made_photos, tmp_path, capsys, flags, message):
    run = tmp_path / "run"
    assert cli("train", "--data", made_photos, "--out", run, "--device", "cpu", "--image-size", SMALL_SIZE,
               *flags) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not run.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_refused(made_photos, tmp_path, capsys):
    assert cli("train", "--data", made_photos, "--out", tmp_path / "run", "--device", "cuda") == 2
    assert "--device cuda: no CUDA GPU is available" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_default_recipe_with_only_size_and_epochs_changed(made_photos, tmp_path, capsys):
    """The default recipe (sprint) with --image-size and --epochs: its other sizes and warmup follow; the
    device it chose is said."""
    assert cli("train", "--data", made_photos, "--out", tmp_path / "r", "--epochs", "1",
               "--image-size", SMALL_SIZE) == 0
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert f"device: {expected}" in capsys.readouterr().out
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["recipe"] == "sprint" and config["eval_image_size"] == 80 and config["warmup_epochs"] == 0
    assert config["min_image_size"] == 48 and config["model"] == "resnet9" and config["tta_flip"] is True


def test_console_script_and_module_entry_points():
    result = run_petalnet("--version")
    assert result.returncode == 0 and result.stdout.startswith("petalnet "), shown(result)
    script = Path(sys.executable).parent / "petalnet"
    result = subprocess.run([script, "train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--resume" in result.stdout and "--cache-size" in result.stdout, shown(result)
