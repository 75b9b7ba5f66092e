"""Run folders written by older versions keep working: predict, evaluate, export, serve and
`train --resume` on a run as petalnet 0.2.0 wrote it, and on one from 0.1 (before the recipe levers and
the cache pipeline).

The runs are made from this session's small run: its files rewritten with torch.save and json as those
versions wrote them (plain dicts; format "petalnet", version 1; meta and config flat dicts with the keys
of their time), so the weights are the same and so must be every prediction.
"""

import json

import pytest
import torch

from conftest import cli, linked_copy, metrics
from petalnet.serving.client import get_json, post_photos
from server_process import ServerProcess

TUTORIAL = ["model", "epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "scheduler",
            "warmup_epochs", "label_smoothing", "image_size", "crop_scale", "hflip", "eval_resize", "mean", "std",
            "val_fraction", "seed"]
LEVERS = ["dropout", "auto_augment", "color_jitter", "random_erasing", "mixup_alpha", "cutmix_alpha",
          "min_image_size", "resize_ramp", "eval_image_size", "progressive_eval", "ema_decay", "tta_flip"]
FACTS = ["data", "layout", "classes"]
CONFIG_KEYS = {"0.1": ["recipe", *TUTORIAL, *FACTS],
               "0.2.0": ["recipe", *TUTORIAL, *LEVERS, "pipeline", "cache_size", *FACTS]}
META_KEYS = {"0.1": ["classes", "image_size", "model", "eval_resize", "mean", "std"],
             "0.2.0": ["classes", "image_size", "model", "eval_resize", "mean", "std", "tta_flip"]}
LAST_KEYS = {"0.1": ["optimizer", "scheduler", "rng", "history", "best_acc", "best_epoch"],
             "0.2.0": ["optimizer", "scheduler", "rng", "scaler", "ema", "history", "best_acc", "best_epoch"]}
METRIC_KEYS = {"0.1": ["epoch", "train_loss", "val_loss", "val_acc", "lr", "epoch_seconds", "train_images_per_s"],
               "0.2.0": ["epoch", "train_loss", "val_loss", "val_acc", "lr", "image_size", "eval_image_size",
                         "epoch_seconds", "train_images_per_s", "elapsed_s"]}
VERSIONS = list(CONFIG_KEYS)


def old_checkpoint(path, version, last):
    """The checkpoint at `path` as `version` wrote it: a plain dict of plain values and tensors."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    old = {"format": "petalnet", "version": 1, "meta": {k: ckpt["meta"][k] for k in META_KEYS[version]},
           "model": ckpt["model"], "epoch": ckpt["epoch"], "val_acc": ckpt["val_acc"],
           "config": {k: ckpt["config"][k] for k in CONFIG_KEYS[version]}}
    if last:
        old.update({k: ckpt[k] for k in LAST_KEYS[version]})
        old["history"] = [{k: row[k] for k in METRIC_KEYS[version]} for row in ckpt["history"]]
    return old


def make_old_run(trained_run, folder, version):
    """A copy of `trained_run` with best.pt, last.pt, config.json and metrics.csv as `version` wrote them."""
    linked_copy(trained_run, folder)
    for name in ("best.pt", "last.pt"):
        old = old_checkpoint(folder / name, version, last=name == "last.pt")
        assert set(old["config"]) == set(CONFIG_KEYS[version])  # today's run holds every key older ones did
        (folder / name).unlink()  # a hard link to trained_run's: write a file of its own
        torch.save(old, folder / name)
    config = json.loads((folder / "config.json").read_text())
    written = {**{k: config[k] for k in CONFIG_KEYS[version]}, "num_train": config["num_train"],
               "num_val": config["num_val"], "left_out": [], "device": config["device"], "petalnet": version}
    (folder / "config.json").write_text(json.dumps(written, indent=2))
    rows = metrics(folder, drop_timings=False)
    lines = [",".join(METRIC_KEYS[version])] + [",".join(row[k] for k in METRIC_KEYS[version]) for row in rows]
    (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def old_runs(trained_run, tmp_path_factory):
    """{version: run folder}, shared by the tests that only read them."""
    root = tmp_path_factory.mktemp("old")
    return {version: make_old_run(trained_run, root / version, version) for version in VERSIONS}


def test_the_old_runs_are_as_those_versions_wrote_them(old_runs):
    for version, run in old_runs.items():
        best = torch.load(run / "best.pt", weights_only=True)
        assert list(best["meta"]) == META_KEYS[version] and set(best["config"]) == set(CONFIG_KEYS[version])
        assert "config_keys" not in json.loads((run / "config.json").read_text())
    last = torch.load(old_runs["0.1"] / "last.pt", weights_only=True)
    assert "scaler" not in last and "ema" not in last and "pipeline" not in last["config"]


@pytest.mark.parametrize("version", VERSIONS)
def test_predict_and_evaluate_an_old_run(version, old_runs, trained_run, made_photos, tmp_path, capsys):
    run, photos = old_runs[version], sorted(made_photos.rglob("*.jpg"))[::20]
    assert cli("predict", run, *photos, "--json", "--topk", "5", "--device", "cpu") == 0
    assert cli("predict", trained_run, *photos, "--json", "--topk", "5", "--device", "cpu") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:len(photos)] == lines[len(photos):]  # the same weights and transform: the same records
    assert cli("evaluate", run, "--json", "--out", tmp_path / "eval", "--device", "cpu") == 0
    report = json.loads(capsys.readouterr().out)
    best = torch.load(run / "best.pt", weights_only=True)
    assert report["n"] == 10 and report["accuracy"] == pytest.approx(best["val_acc"], abs=1e-9)


@pytest.mark.parametrize("version, fmt", [("0.1", "onnx"), ("0.2.0", "torchscript")])
def test_export_an_old_run(version, fmt, old_runs, made_photos, tmp_path, capsys):
    """ONNX for the oldest run (its meta has no tta_flip); the checkpoint is read the same way for both."""
    out = tmp_path / ("model.onnx" if fmt == "onnx" else "model.pt")
    assert cli("export", old_runs[version], "--format", fmt, "--out", out) == 0
    assert "parity on 10 real photos" in capsys.readouterr().out
    sidecar = json.loads((tmp_path / (out.name + ".json")).read_text())
    assert sidecar["tta_flip"] is False and sidecar["image_size"] == 64 and sidecar["format"] == fmt
    if fmt == "onnx":
        photo = sorted(made_photos.rglob("*.jpg"))[0]
        assert cli("predict", out, photo, "--json") == 0
        assert json.loads(capsys.readouterr().out)["top"][0]["class"]


def test_serve_an_old_run(old_runs, made_photos):
    server = ServerProcess(old_runs["0.1"])
    try:
        status, info = get_json(server.url + "/model")
        assert status == 200 and info["input_size"] == 64 and info["training"]["recipe"] == "seed"
        assert info["training"]["pipeline"] is None  # 0.1 had one pipeline and did not name it
        photo = sorted(made_photos.rglob("*.jpg"))[0]
        status, body = post_photos(server.url, [(photo.name, photo.read_bytes())])
        assert status == 200 and body["predictions"][0]["top"], body
    finally:
        stderr = server.stop()
    assert "Traceback" not in stderr, stderr


@pytest.mark.parametrize("version", VERSIONS)
def test_resume_an_old_run(version, trained_run, tmp_path, capsys):
    """0.2.0's run resumes exactly as today's would (same metrics and weights); 0.1's resumes with what 0.1
    trained with (the pil pipeline, no levers), its history kept."""
    run = make_old_run(trained_run, tmp_path / version, version)
    before = metrics(run)
    code = cli("train", "--out", run, "--resume", "--epochs", "3", "--device", "cpu")
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "resuming at epoch 3/3" in out.out
    after = metrics(run)
    assert len(after) == 3 and [{k: row[k] for k in METRIC_KEYS["0.1"] if k in row} for row in after[:2]] == \
        [{k: row[k] for k in METRIC_KEYS["0.1"] if k in row} for row in before]
    config = json.loads((run / "config.json").read_text())
    assert config["pipeline"] == ("pil" if version == "0.1" else "cache") and "config_keys" in config
    assert config["ema_decay"] == 0.0 and config["classes"] == json.loads(
        (trained_run / "config.json").read_text())["classes"]
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == 3
    if version == "0.2.0":
        today = tmp_path / "today"
        linked_copy(trained_run, today)
        assert cli("train", "--out", today, "--resume", "--epochs", "3", "--device", "cpu") == 0
        assert metrics(run) == metrics(today)
        a, b = (torch.load(r / "last.pt", weights_only=True)["model"] for r in (run, today))
        assert all(torch.equal(a[k], b[k]) for k in a)

