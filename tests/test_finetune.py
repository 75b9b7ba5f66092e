"""The finetune recipe end to end (config/recipes.py, training/layers.py, models/weights.py): trained once
through the CLI from the offline EfficientNet-Lite0 ImageNet weights on the made-up photos, at 64 px,
then predicted, evaluated, exported, explained and resumed."""

import contextlib
import csv
import io
import json

import pytest
import torch

from conftest import CLASSES, cli, linked_copy
from petalnet.errors import UserError
from petalnet.models.networks import body_layers, build_model, head_parameters
from petalnet.models.weights import find_weights, read_weights

FLAGS = ["--recipe", "finetune", "--epochs", "2", "--head-epochs", "1", "--image-size", "64", "--eval-image-size", "64",
         "--batch-size", "16", "--device", "cpu"]


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory):
    """TORCH_HOME in tmp for the whole module: nothing here may download, or write to ~/.cache."""
    home = tmp_path_factory.mktemp("torch_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCH_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def finetuned(made_photos, torch_home, tmp_path_factory):
    """(run folder, what train printed)."""
    run = tmp_path_factory.mktemp("finetune") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli("train", "--data", made_photos, "--out", run, *FLAGS)
    assert code == 0, printed.getvalue()
    return run, printed.getvalue()


@pytest.fixture(scope="module")
def imagenet_state():
    return read_weights(find_weights("efficientnet_lite0", "imagenet"))


def frozen_for_the_whole_run(fraction=0.3):
    """Names of the parameters freeze_fraction keeps as pretrained (the body's first layers)."""
    model = build_model("efficientnet_lite0", 5)
    layers = body_layers(model, head_parameters(model, 5))
    return [name for layer in layers[: int(len(layers) * fraction)] for name in layer], layers


def rows(run):
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_config_records_the_recipe_and_the_weights_normalization(finetuned, torch_home):
    run, printed = finetuned
    config = json.loads((run / "config.json").read_text())
    assert config["recipe"] == "finetune" and config["model"] == "efficientnet_lite0"
    assert config["pretrained"] == "imagenet" and config["init"] is None
    assert config["mean"] == config["std"] == [0.5, 0.5, 0.5]  # the Lite0 weights' own, not ImageNet's
    assert (config["head_epochs"], config["freeze_fraction"], config["body_lr"]) == (1, 0.3, 0.1)
    assert config["eval_resize"] == "center_crop" and config["image_size"] == config["eval_image_size"] == 64
    assert "294 tensors; new head classifier.bias, classifier.weight" in printed  # all 296 but the head
    assert not any(torch_home.iterdir())  # offline: nothing downloaded


def test_best_pt_carries_the_transform_the_weights_need(finetuned):
    run, _ = finetuned
    best = torch.load(run / "best.pt", weights_only=True)
    meta = best["meta"]
    assert meta["mean"] == meta["std"] == [0.5, 0.5, 0.5] and meta["eval_resize"] == "center_crop"
    assert meta["model"] == "efficientnet_lite0" and meta["classes"] == CLASSES and meta["image_size"] == 64


def test_the_first_layers_stay_as_pretrained_and_the_rest_learned(finetuned, imagenet_state):
    run, _ = finetuned
    learned = torch.load(run / "last.pt", weights_only=True)["model"]
    frozen, layers = frozen_for_the_whole_run()
    assert "conv_stem.weight" in frozen and len(frozen) > 20
    for name in frozen:
        assert torch.equal(learned[name], imagenet_state[name]), name
    statistics = [k for k in learned if k.endswith(("running_mean", "running_var"))
                  and k.rsplit(".", 1)[0] + ".weight" in frozen]
    assert len(statistics) > 10  # the frozen layers' BatchNorms ran in eval mode: their statistics are ImageNet's
    for name in statistics:
        assert torch.equal(learned[name], imagenet_state[name]), name
    assert not torch.equal(learned["bn2.running_mean"], imagenet_state["bn2.running_mean"])  # trained ones moved
    trained = [name for layer in layers[int(len(layers) * 0.3):] for name in layer]
    for name in ("conv_head.weight", "blocks.6.0.conv_pwl.weight"):
        assert not torch.equal(learned[name], imagenet_state[name]), name
    assert sum(not torch.equal(learned[n], imagenet_state[n]) for n in trained) > 0.9 * len(trained)
    assert learned["classifier.weight"].shape == (5, 1280) and learned["classifier.weight"].abs().sum() > 0


def test_each_layer_group_has_its_own_rate(finetuned):
    run, _ = finetuned
    groups = torch.load(run / "last.pt", weights_only=True)["optimizer"]["param_groups"]
    initial = [g["initial_lr"] for g in groups]  # the scheduler's base rates
    assert len(groups) == 9 and len(groups[-1]["params"]) == 2  # 8 body steps, then the head
    assert initial[0] == pytest.approx(1e-4) and initial[-1] == pytest.approx(1e-3) and initial == sorted(initial)
    assert sum(len(g["params"]) for g in groups) == len(list(build_model("efficientnet_lite0", 5).parameters()))


def test_metrics_lr_is_the_lr_flags_schedule(finetuned):
    run, _ = finetuned
    history = rows(run)
    assert [r["epoch"] for r in history] == ["1", "2"]
    # epoch 1 starts the cosine schedule at --lr (1e-3, no warmup); the body's first layer is at 0.1x that
    assert float(history[0]["lr"]) == pytest.approx(1e-3), history[0]


def predictions(capsys, model, photos):
    assert cli("predict", model, *photos, "--json", "--topk", "5", "--device", "cpu") == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_predict_evaluate_and_export_take_the_run(finetuned, unseen_photos, tmp_path, capsys):
    run, _ = finetuned
    photos = sorted(unseen_photos.rglob("*.jpg"))[::4]
    from_run = predictions(capsys, run, photos)
    for record in from_run:
        assert {t["class"] for t in record["top"]} == set(CLASSES)
        assert sum(t["prob"] for t in record["top"]) == pytest.approx(1, abs=1e-4)
    assert cli("evaluate", run, "--json", "--out", tmp_path / "eval", "--device", "cpu") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 10 and report["classes"] == CLASSES and (tmp_path / "eval" / "report.json").is_file()
    onnx = tmp_path / "lite0.onnx"
    assert cli("export", run, "--format", "onnx", "--out", onnx) == 0  # exit 1 if the parity check failed
    assert "parity on 10 real photos" in capsys.readouterr().out
    meta = json.loads(onnx.with_name(onnx.name + ".json").read_text())
    assert meta["eval_resize"] == "center_crop" and meta["mean"] == [0.5, 0.5, 0.5] and meta["image_size"] == 64
    from_onnx = predictions(capsys, onnx, photos)
    for a, b in zip(from_onnx, from_run):
        assert a["top"][0]["class"] == b["top"][0]["class"], (a, b)
        assert abs(a["top"][0]["prob"] - b["top"][0]["prob"]) < 0.01  # Pillow vs torch resize


def test_explain_writes_a_heat_map(finetuned, unseen_photos, tmp_path, capsys):
    run, _ = finetuned
    photo = sorted((unseen_photos / "roses").iterdir())[0]
    assert cli("predict", run, photo, "--explain", tmp_path / "cams", "--device", "cpu") == 0
    pngs = list((tmp_path / "cams").glob("*.png"))
    assert len(pngs) == 1 and pngs[0].stat().st_size > 1000


def test_resume_continues_with_the_frozen_schedule(finetuned, imagenet_state, tmp_path):
    run, _ = finetuned
    copy = tmp_path / "run"
    linked_copy(run, copy)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli("train", "--out", copy, "--resume", "--epochs", "3", "--device", "cpu") == 0
    assert "resuming at epoch 3/3" in printed.getvalue()
    before, after = rows(run), rows(copy)
    timings = ("epoch_seconds", "train_images_per_s", "elapsed_s")
    assert [r["epoch"] for r in after] == ["1", "2", "3"]
    assert [{k: v for k, v in r.items() if k not in timings} for r in after[:2]] == \
        [{k: v for k, v in r.items() if k not in timings} for r in before]
    learned = torch.load(copy / "last.pt", weights_only=True)
    assert learned["epoch"] == 3
    frozen, _ = frozen_for_the_whole_run()
    for name in frozen:
        assert torch.equal(learned["model"][name], imagenet_state[name]), name
    epoch2 = torch.load(run / "last.pt", weights_only=True)["model"]
    assert not torch.equal(learned["model"]["conv_head.weight"], epoch2["conv_head.weight"])  # the rest trains on
    assert json.loads((copy / "config.json").read_text())["pretrained"] == "imagenet"


def test_grad_cam_refuses_a_transformer_in_one_line():
    from petalnet.inference.explain import last_conv

    with pytest.raises(UserError, match="attention") as caught:
        last_conv(build_model("vit_b_32", 5))
    assert "\n" not in str(caught.value) and "VisionTransformer" in str(caught.value)
    assert last_conv(build_model("efficientnet_lite0", 5)) is not None  # a CNN has one


def test_grad_cam_takes_the_last_convolution_with_a_spatial_map():
    """timm's MobileNetV3 has a 1x1 conv_head after global pooling: its map would be uniform."""
    from petalnet.inference.explain import grad_cam, last_conv

    model = build_model("timm/mobilenetv3_large_100", 5).eval()
    images = torch.randn(2, 3, 96, 96)
    assert last_conv(model, images[:1]) is not model.conv_head
    assert float(grad_cam(model, images).std()) > 0.05
