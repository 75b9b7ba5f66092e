"""The cache pipeline: decoded-photo cache file, epoch order, sharding; the pil pipeline; settings."""

import json

import pytest
import torch

from conftest import SMALL_SIZE, cli
from imagegen import make_class_folders
from petalnet.cache import decoded_photos
from petalnet.errors import UserError
from petalnet.pipeline import CachedTrainBatches, shard
from petalnet.recipes import SEED

META = {**SEED, "image_size": 32}


def photo_lists(root):
    paths = sorted(root.rglob("*.jpg"))
    labels = [0 if p.parent.name == "a" else 1 for p in paths]
    return {"train": (paths[:-2], labels[:-2]), "val": (paths[-2:], labels[-2:])}


def test_cache_file_is_reused_and_keyed_by_content(tmp_path):
    make_class_folders(tmp_path / "photos", {"a": 4, "b": 4})
    data, logs = photo_lists(tmp_path / "photos"), []
    first = decoded_photos(data, 40, META, cache_dir=tmp_path / "cache", progress=False, log=logs.append)
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == 1 and "saved decoded photos" in logs[-1]
    second = decoded_photos(data, 40, META, cache_dir=tmp_path / "cache", progress=False, log=logs.append)
    assert logs[-1].startswith("decoded photos from")
    assert torch.equal(first[0].canvas, second[0].canvas) and torch.equal(first[1][0], second[1][0])
    data["train"][0][0].write_bytes(data["train"][0][1].read_bytes())  # one photo's content changes
    decoded_photos(data, 40, META, cache_dir=tmp_path / "cache", progress=False, log=logs.append)
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_a_broken_cache_file_is_rebuilt_not_trusted(tmp_path):
    make_class_folders(tmp_path / "photos", {"a": 3, "b": 3})
    data, logs = photo_lists(tmp_path / "photos"), []
    decoded_photos(data, 40, META, cache_dir=tmp_path / "cache", progress=False, log=logs.append)
    (cache_file,) = (tmp_path / "cache").iterdir()
    cache_file.write_bytes(b"not a cache")
    train, _ = decoded_photos(data, 40, META, cache_dir=tmp_path / "cache", progress=False, log=logs.append)
    assert any("ignoring unreadable cache file" in line for line in logs)
    assert len(train) == 4 and cache_file.stat().st_size > 1000


def test_decoding_threads_give_the_same_photos_in_order_and_stop_at_a_broken_one(tmp_path):
    make_class_folders(tmp_path / "photos", {"a": 9, "b": 9})
    data = photo_lists(tmp_path / "photos")
    alone = decoded_photos(data, 40, META, workers=0, progress=False)
    threads = decoded_photos(data, 40, META, workers=3, progress=False)
    assert torch.equal(alone[0].canvas, threads[0].canvas) and torch.equal(alone[0].sizes, threads[0].sizes)
    assert torch.equal(alone[1][0], threads[1][0])
    broken = data["train"][0][5]
    broken.write_bytes(broken.read_bytes()[:200])  # truncated after the check, before training decodes it
    with pytest.raises(UserError, match=f"cannot decode {broken}"):
        decoded_photos(data, 40, META, workers=3, progress=False)


def test_epochs_are_reproducible_permutations(tmp_path):
    make_class_folders(tmp_path / "photos", {"a": 5, "b": 6})
    data = photo_lists(tmp_path / "photos")
    train, _ = decoded_photos(data, 40, META, progress=False)
    config = {**META, "batch_size": 4}
    batches = CachedTrainBatches(train, config, "cpu", {"channels_last": True})

    def epoch(n):
        batches.set_epoch(n)
        return [(images.clone(), labels.clone()) for images, labels in batches]

    one, again, two = epoch(1), epoch(1), epoch(2)
    assert len(one) == len(batches) == 3
    assert all(torch.equal(a[0], b[0]) for a, b in zip(one, again))
    assert not torch.equal(one[0][0], two[0][0])
    assert one[0][0].shape == (4, 3, 32, 32) and one[0][0].is_contiguous(memory_format=torch.channels_last)
    assert sorted(torch.cat([labels for _, labels in one]).tolist()) == sorted(train.labels.tolist())


def test_shards_cover_every_photo_and_are_equal_when_training():
    parts = [shard(10, rank, 3, pad=True) for rank in range(3)]
    assert [len(p) for p in parts] == [4, 4, 4] and set(sum(parts, [])) == set(range(10))
    parts = [shard(10, rank, 3, pad=False) for rank in range(3)]
    assert sorted(sum(parts, [])) == list(range(10))


def test_pil_pipeline_trains_and_is_recorded(few_photos, tmp_path):
    run = tmp_path / "pil"
    assert cli("train", "--recipe", "seed", "--data", few_photos, "--out", run, "--epochs", "1", "--image-size",
               SMALL_SIZE, "--device", "cpu", "--pipeline", "pil", "--amp", "off", "--channels-last", "off") == 0
    config = json.loads((run / "config.json").read_text())
    assert config["pipeline"] == "pil"
    assert config["device_settings"]["amp"] == "off" and config["device_settings"]["why"]["amp"] == "--amp"


def test_default_run_records_its_device_settings_and_why(trained_run):
    config = json.loads((trained_run / "config.json").read_text())
    settings = config["device_settings"]
    assert config["pipeline"] == "cache" and config["cache_size"] == round(int(SMALL_SIZE) * 8 / 7)
    assert settings["channels_last"] is True and settings["amp"] in ("off", "bf16")
    assert settings["fused_optimizer"] is True  # torch has fused optimizer kernels for CPUs
    assert set(settings["why"]) >= {"amp", "channels_last", "workers", "eval_batch_size", "compile", "fused_optimizer"}


def test_evaluate_agrees_with_the_runs_own_val_accuracy(trained_run, capsys):
    rows = (trained_run / "metrics.csv").read_text().splitlines()
    header, values = rows[0].split(","), [row.split(",") for row in rows[1:]]
    best = max(float(v[header.index("val_acc")]) for v in values)
    assert cli("evaluate", trained_run, "--json", "--out", trained_run / "eval-check") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"] == pytest.approx(best, abs=1e-6)


@pytest.mark.parametrize("flags,message", [
    (["--pipeline", "dali"], "unknown pipeline 'dali'"),
    (["--cache-size", "10"], "--cache-size must be at least the image size"),
    (["--amp", "fp8"], "unknown --amp 'fp8'"),
    (["--amp", "fp16"], "--amp fp16 needs a CUDA GPU"),
    (["--channels-last", "maybe"], "unknown --channels-last 'maybe'"),
    (["--fused-optimizer", "yes"], "unknown --fused-optimizer 'yes'"),
    (["--eval-batch-size", "0"], "--eval-batch-size must be at least 1"),
])
def test_bad_pipeline_flags_exit_2_and_write_nothing(few_photos, tmp_path, capsys, flags, message):
    run = tmp_path / "bad"
    code = cli("train", "--data", few_photos, "--out", run, "--device", "cpu", "--image-size", SMALL_SIZE, *flags)
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not run.exists()
