"""pipeline/loaders.py: epochs, shards, the val batches, and both pipelines' val against `petalnet evaluate`."""

import dataclasses
import json

import pytest
import torch

from conftest import SMALL, cli, metrics
from imagegen import make_class_folders
from petalnet.config.train import TrainConfig
from petalnet.devices.settings import DeviceSettings
from petalnet.pipeline.cache import decoded_photos
from petalnet.pipeline.loaders import CachedTrainBatches, StoredEvalBatches, epoch_seed, rank_share, shard
from petalnet.pipeline.store import StoreWriter


def photo_lists(root):
    paths = sorted(root.rglob("*.jpg"))
    labels = [0 if p.parent.name == "a" else 1 for p in paths]
    return {"train": (paths[:-3], labels[:-3]), "val": (paths[-3:], labels[-3:])}


def test_epochs_are_reproducible_permutations(tmp_path):
    make_class_folders(tmp_path / "photos", {"a": 5, "b": 7})
    train, _ = decoded_photos(photo_lists(tmp_path / "photos"), 40, 32, "squash", progress=False)
    config = dataclasses.replace(TrainConfig(), image_size=32, batch_size=4)
    batches = CachedTrainBatches(train, config, "cpu", DeviceSettings(channels_last=True))

    def epoch(n):
        batches.set_epoch(n)
        return [(images.clone(), labels.clone()) for images, labels in batches]

    one, again, two = epoch(1), epoch(1), epoch(2)
    assert len(one) == len(batches) == 3
    assert all(torch.equal(a[0], b[0]) for a, b in zip(one, again))
    assert not torch.equal(one[0][0], two[0][0])
    assert one[0][0].shape == (4, 3, 32, 32) and one[0][0].is_contiguous(memory_format=torch.channels_last)
    assert one[0][0].dtype == torch.float32 and -1.0 <= float(one[0][0].min()) < float(one[0][0].max()) <= 1.0
    assert sorted(torch.cat([labels for _, labels in one]).tolist()) == sorted(train.labels.tolist())


def test_shards_cover_every_photo_and_are_equal_when_training():
    parts = [shard(10, rank, 3, pad=True) for rank in range(3)]
    assert [len(p) for p in parts] == [4, 4, 4] and set(sum(parts, [])) == set(range(10))
    parts = [shard(10, rank, 3, pad=False) for rank in range(3)]
    assert sorted(sum(parts, [])) == list(range(10)) and [len(p) for p in parts] == [4, 3, 3]
    assert len({epoch_seed(0, 1), epoch_seed(0, 2), epoch_seed(1, 1), epoch_seed(0, 1, rank=1)}) == 4


def packed(n, size, value):
    writer = StoreWriter(parts=("val",))
    for k in range(n):
        writer.add("val", torch.full((size, size, 3), value, dtype=torch.uint8), k)
    return writer.finish()["val"]


def test_val_batches_switch_size_with_progressive_eval():
    config = TrainConfig(epochs=10, image_size=128, min_image_size=64, resize_ramp=(0.0, 0.5), eval_image_size=160,
                         progressive_eval=True)
    final = packed(5, 160, 0)
    asked = []

    def decode_at(size):
        asked.append(size)
        return packed(5, size, 255)

    val = StoredEvalBatches(final, config, "cpu", DeviceSettings(eval_batch_size=2), decode_at=decode_at)
    val.set_epoch(1)
    images, labels = next(iter(val))
    assert val.size == 80 and asked == [80] and images.shape == (2, 3, 80, 80)  # 64 * 160/128
    assert float(images.max()) == pytest.approx(1.0) and labels.tolist() == [0, 1] and len(val) == 3
    val.set_epoch(10)
    assert val.size == 160 and val.photos is final and asked == [80]  # the final size is kept, not decoded


def test_ranks_train_on_fixed_shares_and_take_as_many_steps(tmp_path):
    """Under torchrun each rank decodes and trains on its own share (positions rank::world), shuffled
    every epoch; a smaller share wraps so that every rank takes the same number of steps."""
    make_class_folders(tmp_path / "photos", {"a": 5, "b": 6})
    paths = sorted((tmp_path / "photos").rglob("*.jpg"))
    config = dataclasses.replace(TrainConfig(), image_size=32, batch_size=2)
    seen, steps = [], []
    for rank in range(2):
        share = rank_share(paths, rank, 2)
        data = {"train": (share, [paths.index(p) for p in share]), "val": ([], [])}
        train, _ = decoded_photos(data, 40, 32, "squash", progress=False)
        batches = CachedTrainBatches(train, config, "cpu", DeviceSettings(), rank, 2, num_classes=11, total=11)
        labels = []
        for epoch in (1, 2):
            batches.set_epoch(epoch)
            labels.append(torch.cat([y for _, y in batches]).tolist())
        steps.append(len(batches))
        assert len(labels[0]) == 6 and set(labels[0]) == set(labels[1]) == set(data["train"][1])
        assert labels[0] != labels[1]  # shuffled anew each epoch
        seen += data["train"][1]
    assert steps == [3, 3] and sorted(seen) == list(range(11))


@pytest.mark.parametrize("pipeline", ["cache", pytest.param("pil", marks=pytest.mark.slow)])
def test_train_val_and_evaluate_score_the_same_photos_the_same_way(pipeline, trained_run, made_photos, tmp_path,
                                                                   capsys):
    """Both pipelines validate with evaluate's preprocessing: the best epoch's val accuracy and loss in
    metrics.csv are evaluate's (the loss, a mean over 10 photos, shows a one-pixel difference)."""
    run = trained_run
    if pipeline == "pil":
        run = tmp_path / "pil"
        assert cli("train", "--data", made_photos, "--out", run, "--epochs", "1", *SMALL, "--pipeline", "pil",
                   "--amp", "off", "--channels-last", "off") == 0
        config = json.loads((run / "config.json").read_text())
        assert config["pipeline"] == "pil"
        assert config["device_settings"]["amp"] == "off" and config["device_settings"]["why"]["amp"] == "--amp"
    best = max(metrics(run), key=lambda r: float(r["val_acc"]))
    capsys.readouterr()
    assert cli("evaluate", run, "--json", "--device", "cpu", "--out", tmp_path / "eval") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 10 and report["accuracy"] == pytest.approx(float(best["val_acc"]), abs=1e-9)
    loss = json.loads((tmp_path / "eval" / "report.json").read_text())["loss"]
    assert loss == pytest.approx(float(best["val_loss"]), rel=1e-5)  # metrics.csv keeps 6 digits


def test_default_run_records_its_device_settings_and_why(trained_run):
    config = json.loads((trained_run / "config.json").read_text())
    settings = config["device_settings"]
    assert config["pipeline"] == "cache" and config["cache_size"] == round(64 * 8 / 7)
    assert settings["channels_last"] is True and settings["amp"] in ("off", "bf16")
    assert settings["fused_optimizer"] is True  # torch has fused optimizer kernels for CPUs
    assert set(settings) == {f.name for f in dataclasses.fields(DeviceSettings)}
    assert set(settings["why"]) >= {"amp", "channels_last", "workers", "eval_batch_size", "compile", "fused_optimizer"}
    assert settings["cache_memory"] > 0 and "available memory" in settings["why"]["cache_memory"]


@pytest.mark.slow
def test_photos_read_from_a_store_on_disk_train_exactly_as_in_memory(trained_run, made_photos, tmp_path):
    run, cache = tmp_path / "disk", tmp_path / "cache"
    assert cli("train", "--data", made_photos, "--out", run, "--epochs", "2", *SMALL, "--cache-dir", cache,
               "--cache-memory", "0.0015") == 0  # one batch of 32 can take 1 MiB, the photos about 2 MiB
    assert metrics(run) == metrics(trained_run)
    assert json.loads((run / "config.json").read_text())["device_settings"]["cache_memory"] == 0.0015
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 1


def test_a_memory_budget_below_one_batch_is_refused_in_one_line(made_photos, tmp_path, capsys):
    assert cli("train", "--data", made_photos, "--out", tmp_path / "run", *SMALL, "--batch-size", "64",
               "--cache-memory", "0.001") == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "petalnet: error: --cache-memory 0.001 GiB is less than one batch of decoded photos can take (0.002 GiB at "
        "batch size 64, cache size 73)"]
    assert not (tmp_path / "run").exists()
