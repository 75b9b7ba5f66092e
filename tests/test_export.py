"""`petalnet export` (ONNX, TorchScript) with its parity check, predict on .onnx without torch, Grad-CAM."""

import json
import subprocess
import sys
import warnings

import pytest
import torch

from conftest import cli, shown
from petalnet import load_classifier
from petalnet.decode import load_eval_photo


@pytest.fixture(scope="module")
def onnx_model(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "flowers.onnx"
    assert cli("export", trained_run, "--format", "onnx", "--out", out) == 0
    return out


def test_onnx_export_writes_the_transform_beside_it_and_passes_parity(onnx_model, trained_run, capsys):
    meta = json.loads(onnx_model.with_name(onnx_model.name + ".json").read_text())
    assert meta["classes"] == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    assert meta["image_size"] == 64 and meta["mean"] == [0.5] * 3 and meta["format"] == "onnx"
    out = tmp = onnx_model.parent / "again.onnx"
    assert cli("export", trained_run, "--out", out) == 0
    line = capsys.readouterr().out
    diff = float(line.split("max |logit diff|")[1].split()[0])
    assert "parity on 10 real photos" in line and diff < 1e-4
    assert tmp.stat().st_size > 1_000_000


def test_torchscript_export_matches_exactly(trained_run, tmp_path, capsys):
    out = tmp_path / "flowers.pt"
    assert cli("export", trained_run, "--format", "torchscript", "--out", out) == 0
    assert "max |logit diff| 0.00e+00" in capsys.readouterr().out
    with warnings.catch_warnings():  # TorchScript is deprecated upstream, still what many deployments load
        warnings.simplefilter("ignore", FutureWarning)
        assert torch.jit.load(str(out))(torch.zeros(2, 3, 64, 64)).shape == (2, 5)


def test_predict_on_onnx_agrees_with_the_checkpoint_without_importing_torch(onnx_model, trained_run, few_photos):
    photos = sorted(few_photos.rglob("*.jpg"))[:6]
    code = ("import sys, json; from petalnet.cli import main; rc = main(sys.argv[1:]); "
            "print(json.dumps(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))))")
    done = subprocess.run([sys.executable, "-c", code, "predict", str(onnx_model), *map(str, photos), "--json",
                           "--topk", "5"], capture_output=True, text=True)
    assert done.returncode == 0, shown(done)
    *lines, imported = done.stdout.strip().splitlines()
    assert json.loads(imported) == []  # torch never imported
    from_onnx = [json.loads(line) for line in lines]
    from_torch = load_classifier(trained_run, "cpu").predict(photos, topk=5)
    for a, b in zip(from_onnx, from_torch):
        assert a["top"][0]["class"] == b["top"][0]["class"]
        probs_a = {t["class"]: t["prob"] for t in a["top"]}
        assert all(abs(probs_a[t["class"]] - t["prob"]) < 0.01 for t in b["top"])  # Pillow vs torch resize


def test_bad_export_requests_are_one_line(trained_run, tmp_path, capsys):
    assert cli("export", trained_run, "--format", "tflite", "--out", tmp_path / "m") == 2
    assert "unknown --format 'tflite'" in capsys.readouterr().err
    assert cli("predict", tmp_path / "missing.onnx", tmp_path) == 2
    assert "no such model" in capsys.readouterr().err


def test_grad_cam_maps_have_the_input_shape_and_are_not_uniform(trained_run, few_photos, tmp_path, capsys):
    classifier = load_classifier(trained_run, "cpu")
    photos = sorted(few_photos.rglob("*.jpg"))[:4]
    maps = classifier.explain(torch.stack([load_eval_photo(p, classifier.meta) for p in photos]))
    assert len(maps) == 4
    for heat in maps:
        assert heat.shape == (64, 64) and float(heat.min()) >= 0 and float(heat.max()) <= 1
        assert float(heat.std()) > 0.05  # it points somewhere
    assert cli("predict", trained_run, *photos, "--explain", tmp_path / "heat") == 0
    written = sorted((tmp_path / "heat").iterdir())
    assert len(written) == 4 and all(p.suffix == ".png" for p in written)
    assert "saved heat maps" in capsys.readouterr().err
