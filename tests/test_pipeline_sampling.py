"""pipeline/sampling.py and the train flags --class-weights, --sampler: imbalanced classes."""

import dataclasses
import json

import pytest
import torch

from conftest import SMALL, cli
from imagegen import make_class_folders
from petalnet.config.train import TrainConfig
from petalnet.devices.settings import DeviceSettings
from petalnet.errors import UserError
from petalnet.pipeline.cache import decoded_photos
from petalnet.pipeline.loaders import CachedTrainBatches
from petalnet.pipeline.sampling import balanced_draw, balanced_weights


def test_balanced_weights_make_every_class_count_as_the_average_class():
    weights = balanced_weights([0] * 8 + [1] * 2 + [2] * 10, 3)
    assert torch.allclose(weights, torch.tensor([20 / 24, 20 / 6, 20 / 30]))
    assert torch.allclose(weights * torch.tensor([8.0, 2.0, 10.0]), torch.full((3,), 20 / 3))
    with pytest.raises(UserError, match="class\\(es\\) c have no train photos"):
        balanced_weights([0, 1, 1], 3, ["a", "b", "c"])
    with pytest.raises(UserError, match="at least two classes"):
        balanced_weights([0, 0], 1)


def test_balanced_draws_pick_classes_equally_often():
    labels = torch.tensor([0] * 90 + [1] * 10)
    draws = balanced_draw(labels, 20_000, torch.Generator().manual_seed(0))
    share = (labels[draws] == 1).float().mean().item()
    assert 0.48 < share < 0.52  # uniform order would give 0.10
    assert len(set(draws[labels[draws] == 1].tolist())) == 10  # every photo of the small class is used


def test_the_balanced_sampler_feeds_a_small_class_as_often_as_a_large_one(tmp_path):
    make_class_folders(tmp_path / "photos", {"big": 27, "small": 3})
    paths = sorted((tmp_path / "photos").rglob("*.jpg"))
    labels = [0 if p.parent.name == "big" else 1 for p in paths]
    train, _ = decoded_photos({"train": (paths, labels), "val": ([], [])}, 40, 32, "squash", progress=False)
    seen = {}
    for sampler in ("uniform", "balanced"):
        config = dataclasses.replace(TrainConfig(), image_size=32, batch_size=10, sampler=sampler)
        batches = CachedTrainBatches(train, config, "cpu", DeviceSettings())
        small = []
        for epoch in range(1, 21):
            batches.set_epoch(epoch)
            small += [int((y == 1).sum()) for _, y in batches]
        seen[sampler] = sum(small) / (20 * 30)
    assert seen["uniform"] == pytest.approx(0.1) and 0.4 < seen["balanced"] < 0.6, seen


@pytest.fixture(scope="module")
def skewed_photos(tmp_path_factory):
    return make_class_folders(tmp_path_factory.mktemp("skewed") / "photos", {"a": 24, "b": 4})


@pytest.mark.slow
def test_train_records_class_weights_and_sampler(skewed_photos, tmp_path):
    run = tmp_path / "run"
    assert cli("train", "--data", skewed_photos, "--out", run, "--epochs", "1", *SMALL, "--class-weights", "balanced",
               "--sampler", "balanced") == 0
    config = json.loads((run / "config.json").read_text())
    assert config["class_weights"] == "balanced" and config["sampler"] == "balanced"
    assert cli("train", "--out", run, "--resume", "--epochs", "2") == 0  # resumes with both


def test_imbalance_flags_refuse_what_they_cannot_do_in_one_line(skewed_photos, tmp_path, capsys):
    made = make_class_folders(tmp_path / "one", {"only": 6})
    assert cli("train", "--data", made, "--out", tmp_path / "r1", *SMALL, "--class-weights", "balanced") == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "petalnet: error: --class-weights balanced needs at least two classes"]
    assert cli("train", "--data", skewed_photos, "--out", tmp_path / "r2", *SMALL, "--pipeline", "pil",
               "--sampler", "balanced") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "need(s) --pipeline cache" in err and "sampler" in err, err
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()
