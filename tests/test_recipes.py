"""Recipes and the levers beyond the tutorial: schedules, augmentation policies, weight averaging,
test-time flipping, progressive resizing, and a run that uses all of them end to end."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from conftest import cli, shown
from imagegen import write_photo
from petalnet.checkpoint import load_checkpoint
from petalnet.cli import TRAIN_OVERRIDES
from petalnet.config import resolve_config
from petalnet.ema import WeightAverage
from petalnet.errors import UserError
from petalnet.models import AlexNetHalf, FlipAveraged, build_model
from petalnet.policies import batch_mixer, erase_boxes, photo_policy
from petalnet.recipes import FAST, RECIPES, SEED
from petalnet.schedules import eval_image_size, lr_factor, train_image_size

ROOT = Path(__file__).resolve().parents[1]


def test_every_recipe_value_has_a_flag():
    for name, recipe in RECIPES.items():
        assert set(recipe) <= set(TRAIN_OVERRIDES), name
        config = resolve_config(name)
        assert config["recipe"] == name and config["model"] == "alexnet_half"  # the goals count this model


def test_flags_override_recipe_values():
    config = resolve_config("fast", {"crop_scale": [0.3, 0.9], "hflip": False, "tta_flip": True, "mean": [0.1] * 3})
    assert config["crop_scale"] == [0.3, 0.9] and config["hflip"] is False and config["tta_flip"] is True
    assert config["mean"] == [0.1] * 3 and config["ema_decay"] == 0.999  # the rest stays fast's


def test_sizes_and_warmup_follow_the_values_they_depend_on_unless_given():
    assert resolve_config(None)["recipe"] == "fast"  # the default
    small = resolve_config(None, {"image_size": 112, "epochs": 2})
    assert (small["min_image_size"], small["eval_image_size"], small["warmup_epochs"]) == (64, 128, 1)
    assert small["cache_size"] == 128  # 112 * 8/7
    tiny = resolve_config("fast", {"image_size": 64})  # 128 * 64/208 -> 32 px is too small for alexnet_half
    assert tiny["min_image_size"] == 64 and tiny["eval_image_size"] == 80
    given = resolve_config("fast", {"image_size": 112, "min_image_size": 96, "eval_image_size": 112,
                                    "epochs": 2, "warmup_epochs": 0})
    assert (given["min_image_size"], given["eval_image_size"], given["warmup_epochs"]) == (96, 112, 0)
    with pytest.raises(UserError, match="--warmup-epochs"):  # a warmup the user asked for is never cut
        resolve_config("fast", {"epochs": 2, "warmup_epochs": 3})
    assert resolve_config("seed", {"image_size": 96})["eval_image_size"] is None


@pytest.mark.parametrize("overrides, words", [
    ({"auto_augment": "autoaugment"}, "--auto-augment"),
    ({"resize_ramp": [0.8, 0.2]}, "--resize-ramp"),
    ({"min_image_size": 512}, "--min-image-size"),
    ({"crop_scale": [0.0, 1.0]}, "--crop-scale"),
    ({"ema_decay": 1.0}, "--ema-decay"),
    ({"eval_image_size": 8}, "--eval-image-size"),
    ({"pipeline": "pil"}, "need(s) --pipeline cache"),
])
def test_bad_lever_values_are_refused_in_one_line(overrides, words):
    with pytest.raises(UserError, match=words.replace("(", r"\(").replace(")", r"\)")):
        resolve_config("best", overrides)


def test_pil_pipeline_takes_the_levers_that_do_not_touch_pixels():
    config = resolve_config("seed", {"pipeline": "pil", "ema_decay": 0.99, "tta_flip": True, "eval_image_size": 96})
    assert config["pipeline"] == "pil"


def test_lr_warmup_then_cosine_to_zero():
    factors = [lr_factor(step, 10, 100, cosine=True) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))  # non-increasing after warmup
    assert factors[-1] < 0.001
    assert lr_factor(50, 10, 100, cosine=False) == 1.0


def test_progressive_resizing_grows_from_min_to_final_in_steps_of_16():
    config = {**SEED, "epochs": 20, "image_size": 176, "min_image_size": 96, "resize_ramp": [0.1, 0.7]}
    sizes = [train_image_size(epoch, config) for epoch in range(1, 21)]
    assert sizes[0] == sizes[2] == 96 and sizes[-1] == sizes[14] == 176
    assert sizes == sorted(sizes) and all(size % 16 == 0 for size in sizes)
    assert len(set(sizes)) >= 4
    assert [train_image_size(e, {**config, "min_image_size": None}) for e in (1, 20)] == [176, 176]


def test_progressive_eval_validates_each_epoch_at_its_training_size_times_the_final_ratio():
    sizes = {train_image_size(e, FAST): eval_image_size(FAST, e) for e in range(1, FAST["epochs"] + 1)}
    assert sizes == {128: 144, 144: 160, 160: 192, 176: 208, 192: 224, 208: 240}  # 240/208 = 1.15, 16 px steps
    assert eval_image_size(FAST) == 240  # the final size, which predict uses by default
    assert {eval_image_size({**FAST, "progressive_eval": False}, e) for e in (1, 30, 90)} == {240}
    assert {eval_image_size(SEED, e) for e in (1, 10)} == {224}


def test_photo_policy_gives_each_photo_its_own_draw():
    assert photo_policy(SEED) is None
    torch.manual_seed(0)
    photo = torch.randint(0, 256, (3, 48, 48), dtype=torch.uint8)
    batch = photo.expand(16, 3, 48, 48).contiguous()
    out = photo_policy({**SEED, "auto_augment": "trivial"})(batch)
    assert out.shape == batch.shape and out.dtype == torch.uint8
    assert len({tuple(image.flatten()[:200].tolist()) for image in out}) >= 4  # not one op for the whole batch
    jitter = photo_policy({**SEED, "color_jitter": 0.4})(batch)
    assert not torch.equal(jitter[0], jitter[1])


def test_random_erasing_zeroes_one_box_per_photo():
    images = torch.ones(8, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    erased = erase_boxes(images, p=1.0)
    zero_fraction = (erased == 0).float().mean(dim=(1, 2, 3))
    assert bool(((zero_fraction > 0) & (zero_fraction < 0.5)).all())
    assert erased.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(erase_boxes(images, p=0.0), images)


def test_mixup_and_cutmix_give_soft_labels():
    assert batch_mixer(SEED, 5) is None
    mixer = batch_mixer({**SEED, "mixup_alpha": 0.2, "cutmix_alpha": 1.0}, 5)
    images, labels = mixer(torch.rand(6, 3, 16, 16), torch.tensor([0, 1, 2, 3, 4, 0]))
    assert images.shape == (6, 3, 16, 16) and labels.shape == (6, 5)
    assert torch.allclose(labels.sum(dim=1), torch.ones(6))
    loss = nn.CrossEntropyLoss(label_smoothing=0.1)(torch.randn(6, 5), labels)
    assert math.isfinite(loss.item())


def test_weight_average_warms_up_then_follows_its_decay():
    model = nn.Linear(2, 1, bias=False)
    nn.init.zeros_(model.weight)
    ema = WeightAverage(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update()  # decay min(0.9, 2/11): the average moves most of the way at first
    assert ema.model.weight[0, 0].item() == pytest.approx(1 - 2 / 11)
    for _ in range(200):
        ema.update()
    assert ema.model.weight[0, 0].item() == pytest.approx(1.0, abs=1e-6)
    copy = WeightAverage(model, decay=0.9)
    copy.load_state_dict(ema.state_dict())
    assert copy.updates == 201 and not copy.model.weight.requires_grad


def test_flip_averaged_is_the_mean_of_both_views():
    torch.manual_seed(0)
    model = build_model("alexnet_half", 5).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = (model(x) + model(x.flip(-1))) / 2
        assert torch.allclose(FlipAveraged(model)(x), expected)


def test_alexnet_half_keeps_the_tutorial_layout_and_the_bn_variant_trains():
    keys = [k for k in AlexNetHalf().state_dict() if k.endswith("weight")]
    assert keys == ["features.0.weight", "features.3.weight", "features.6.weight", "features.8.weight",
                    "features.10.weight", "classifier.1.weight", "classifier.4.weight", "classifier.6.weight"]
    bn = build_model("alexnet_half_bn", 5)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules()) == 5
    loss = nn.functional.cross_entropy(bn(torch.randn(4, 3, 64, 64)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert bn.features[0].weight.grad is not None


LEVERS = ["--recipe", "best", "--image-size", "80", "--min-image-size", "64", "--resize-ramp", "0", "0.6",
          "--eval-image-size", "96", "--warmup-epochs", "1", "--device", "cpu", "--color-jitter", "0.2",
          "--random-erasing", "0.25", "--mixup-alpha", "0.2", "--cutmix-alpha", "1.0", "--tta-flip", "on"]


@pytest.fixture(scope="module")
def lever_run(few_photos, tmp_path_factory):
    """Every lever on (recipe best at small sizes, plus erasing, MixUp/CutMix, jitter), 3 epochs straight."""
    run = tmp_path_factory.mktemp("levers") / "straight"
    assert cli("train", "--data", few_photos, "--out", run, "--epochs", "3", *LEVERS) == 0
    return run


def metrics(run, skip=("epoch_seconds", "train_images_per_s", "elapsed_s")):
    with open(run / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in skip} for row in csv.DictReader(f)]


def test_lever_run_records_sizes_and_the_eval_transform(lever_run):
    rows = metrics(lever_run, skip=())
    assert [int(r["image_size"]) for r in rows] == [64, 64, 80]
    assert [int(r["eval_image_size"]) for r in rows] == [80, 80, 96]  # progressive_eval: 64 * 96 / 80 -> 80
    assert all(float(r["elapsed_s"]) > 0 for r in rows)
    assert [float(r["elapsed_s"]) for r in rows] == sorted(float(r["elapsed_s"]) for r in rows)
    best = load_checkpoint(lever_run / "best.pt")
    assert best["meta"]["image_size"] == int(rows[best["epoch"] - 1]["eval_image_size"])  # the size val used
    assert best["meta"]["tta_flip"] is True
    assert load_checkpoint(lever_run / "last.pt")["meta"]["image_size"] == 96
    config = json.loads((lever_run / "config.json").read_text())
    assert config["mixup_alpha"] == 0.2 and config["resize_ramp"] == [0.0, 0.6] and config["color_jitter"] == 0.2
    last = load_checkpoint(lever_run / "last.pt")
    assert last["ema"]["updates"] > 0  # best.pt holds the averaged weights, last.pt both


def test_evaluate_matches_train_val_with_averaged_weights_and_flips(lever_run, capsys):
    best = max(float(r["val_acc"]) for r in metrics(lever_run))
    capsys.readouterr()
    assert cli("evaluate", lever_run, "--json", "--device", "cpu") == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(best, abs=1e-6)


def test_resumed_lever_run_equals_the_straight_one(lever_run, few_photos, tmp_path, monkeypatch, capsys):
    """Stopped (Ctrl-C) after epoch 2 of 3, then resumed: the same metrics and weights as straight through.
    Meanwhile best.pt is from an epoch validated at 80 px (progressive_eval): evaluate agrees with it."""
    import petalnet.train

    save_epoch = petalnet.train.save_epoch

    def save_then_stop(run, config, meta, history, *args):
        save_epoch(run, config, meta, history, *args)
        if len(history) == 2:
            raise KeyboardInterrupt

    run = tmp_path / "resumed"
    monkeypatch.setattr(petalnet.train, "save_epoch", save_then_stop)
    assert cli("train", "--data", few_photos, "--out", run, "--epochs", "3", *LEVERS) == 130
    assert load_checkpoint(run / "best.pt")["meta"]["image_size"] == 80
    capsys.readouterr()
    assert cli("evaluate", run, "--json", "--device", "cpu", "--out", tmp_path / "eval") == 0
    best_so_far = max(float(r["val_acc"]) for r in metrics(run))
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(best_so_far, abs=1e-6)
    monkeypatch.setattr(petalnet.train, "save_epoch", save_epoch)
    assert cli("train", "--out", run, "--resume") == 0
    assert metrics(run) == metrics(lever_run)
    for name in ("best.pt", "last.pt"):
        a, b = load_checkpoint(run / name), load_checkpoint(lever_run / name)
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_time_to_accuracy_reads_runs(trained_run, tmp_path):
    for name in ("seed", "other"):
        (tmp_path / name).symlink_to(trained_run)
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "time_to_accuracy.py"), "--reuse", "--out",
                           str(tmp_path), "--run", "seed=seed", "--run", "other=fast"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, shown(done)
    results = json.loads((tmp_path / "time_to_accuracy.json").read_text())
    assert results[0]["speedup"] == pytest.approx(1.0) and results[1]["seconds_to_target"] > 0
    assert (tmp_path / "time_to_accuracy.png").stat().st_size > 1000
    assert "| other | fast |" in done.stdout, shown(done)


def test_shrink_photos_keeps_layout_and_caps_the_short_side(tmp_path):
    source, target = tmp_path / "split", tmp_path / "small"
    write_photo(source / "train" / "daisy" / "big.jpg", 1, size=(400, 300))
    write_photo(source / "train" / "roses" / "tall.jpg", 2, size=(150, 320))
    write_photo(source / "val" / "daisy" / "tiny.jpg", 3, size=(60, 40))
    (source / "val" / "daisy" / "notes.txt").write_text("not a photo")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "shrink_photos.py"), str(source), str(target),
                           "--short-side", "100"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, shown(done)
    sizes = {p.relative_to(target).as_posix(): Image.open(p).size for p in target.rglob("*") if p.is_file()}
    assert sizes == {"train/daisy/big.webp": (133, 100), "train/roses/tall.webp": (100, 213),
                     "val/daisy/tiny.webp": (60, 40)}
    assert "3 photos" in done.stdout, shown(done)
