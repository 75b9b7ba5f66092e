"""models/resnet9.py and the sprint recipe: the whitening first layer (set from the training photos, kept
by checkpoints, never changed by the optimizer), sizes, and a sprint run end to end: it resumes exactly,
evaluate agrees with its val, and its ONNX export matches PyTorch."""

import json

import pytest
import torch
from torch import nn

from conftest import cli, metrics, stop_after_epoch
from petalnet.models.checkpoint import load_checkpoint
from petalnet.models.networks import build_model
from petalnet.models.resnet9 import PatchWhitening, ResNet9

SPRINT = ["--recipe", "sprint", "--image-size", "64", "--min-image-size", "48", "--eval-image-size", "80",
          "--resize-ramp", "0", "0.6", "--warmup-epochs", "1", "--device", "cpu"]


def correlated_images(n=64, size=32):
    """Images whose neighbouring pixels and channels are strongly correlated, as in photos."""
    torch.manual_seed(0)
    coarse = torch.randn(n, 1, size // 4, size // 4)
    smooth = nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
    return smooth * torch.tensor([1.0, 0.8, 0.5])[:, None, None] + 0.3 * torch.randn(n, 3, size, size)


def test_whitening_makes_the_patches_uncorrelated_with_unit_variance():
    images = correlated_images()
    layer = PatchWhitening(4)
    patches = nn.functional.unfold(images, 4, stride=4).transpose(1, 2).reshape(-1, 48)
    assert torch.corrcoef(patches.T).abs().triu(1).max() > 0.7  # correlated before: the test can fail
    layer.fit(images)
    out = layer(images)  # (N, 96, 8, 8): the 48 whitened directions, then their negatives
    assert out.shape == (64, 96, 8, 8)
    assert torch.allclose(out[:, :48], -out[:, 48:])
    white = out[:, :48].permute(0, 2, 3, 1).reshape(-1, 48).double()
    covariance = white.T @ white / len(white)
    off_diagonal = covariance - torch.diag(covariance.diagonal())
    assert off_diagonal.abs().max() < 1e-4
    variances = covariance.diagonal()  # eigenvalue / (eigenvalue + eps): 1, but for the faintest directions
    assert variances.max() < 1 + 1e-6 and variances.median() > 0.99 and variances.min() > 0.5


def test_the_whitening_is_a_buffer_the_checkpoint_keeps_and_the_optimizer_never_sees():
    model = ResNet9(5)
    names = {name for name, _ in model.named_parameters()}
    assert "stem.0.weight" not in names and "stem.0.weight" in model.state_dict()
    model.fit_to_photos(correlated_images())
    fresh = ResNet9(5)
    assert not torch.equal(fresh.stem[0].weight, model.stem[0].weight)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.stem[0].weight, model.stem[0].weight)


@pytest.mark.parametrize("size", [32, 48, 64, 96, 128, 160])
def test_resnet9_takes_any_size_from_32_px(size):
    model = build_model("resnet9", 3).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, size, size)).shape == (2, 3)


def test_resnet9_refuses_a_size_below_32_px_in_one_line(made_photos, tmp_path):
    assert cli("train", "--data", made_photos, "--out", tmp_path / "r", "--image-size", "16") == 2
    assert not (tmp_path / "r").exists()


@pytest.fixture(scope="module")
def sprint_run(made_photos, tmp_path_factory):
    run = tmp_path_factory.mktemp("sprint") / "straight"
    assert cli("train", "--data", made_photos, "--out", run, "--epochs", "3", *SPRINT) == 0
    return run


@pytest.mark.slow
def test_a_sprint_run_whitens_for_its_photos_and_evaluate_agrees_with_its_val(sprint_run, tmp_path, capsys):
    config = json.loads((sprint_run / "config.json").read_text())
    assert config["model"] == "resnet9" and config["recipe"] == "sprint" and config["tta_flip"] is True
    whitening = load_checkpoint(sprint_run / "best.pt").weights["stem.0.weight"]
    torch.manual_seed(0)
    assert not torch.equal(whitening, ResNet9(5).stem[0].weight)  # set from the photos, not the default
    best = max(float(r["val_acc"]) for r in metrics(sprint_run))
    capsys.readouterr()
    assert cli("evaluate", sprint_run, "--json", "--device", "cpu", "--out", tmp_path / "eval") == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(best, abs=1e-9)


@pytest.mark.slow
def test_a_stopped_sprint_run_resumes_exactly(sprint_run, made_photos, tmp_path, monkeypatch):
    run = tmp_path / "resumed"
    undo = stop_after_epoch(monkeypatch, 2)
    assert cli("train", "--data", made_photos, "--out", run, "--epochs", "3", *SPRINT) == 130
    undo()
    assert cli("train", "--out", run, "--resume") == 0
    assert metrics(run) == metrics(sprint_run)
    a, b = load_checkpoint(run / "last.pt"), load_checkpoint(sprint_run / "last.pt")
    assert all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)


@pytest.mark.slow
def test_a_sprint_run_exports_to_onnx_matching_pytorch(sprint_run, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "model.onnx"
    assert cli("export", sprint_run, "--format", "onnx", "--out", out) == 0  # export checks parity itself
    assert out.stat().st_size > 1_000_000
