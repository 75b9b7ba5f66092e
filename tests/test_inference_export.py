"""`petalnet export` (inference/export.py: ONNX, TorchScript, the parity check), predict on an .onnx
without torch (onnx.py), and Grad-CAM (explain.py)."""

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from conftest import cli, shown
from petalnet import load_classifier
from petalnet.inference.onnx import load_onnx_classifier
from petalnet.pipeline.preprocess import eval_array, load_eval_photo, open_eval_photo


@pytest.fixture(scope="module")
def onnx_model(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "flowers.onnx"
    assert cli("export", trained_run, "--format", "onnx", "--out", out) == 0
    return out


def test_onnx_export_writes_the_transform_beside_it_and_passes_parity(onnx_model, trained_run):
    meta = json.loads(onnx_model.with_name(onnx_model.name + ".json").read_text())
    assert meta["classes"] == ["daisy", "dandelion", "roses", "sunflowers", "tulips"]
    assert meta["image_size"] == 64 and meta["mean"] == [0.5] * 3 and meta["format"] == "onnx"
    assert onnx_model.stat().st_size > 1_000_000
    classifier = load_onnx_classifier(onnx_model)
    assert classifier.spec == load_classifier(trained_run, "cpu").spec  # the sidecar holds the checkpoint's spec


def test_parity_is_printed_and_a_failed_one_exits_1_and_removes_the_files(trained_run, tmp_path, capsys,
                                                                           monkeypatch):
    import petalnet.inference.export

    out = tmp_path / "flowers.pt"
    assert cli("export", trained_run, "--format", "torchscript", "--out", out) == 0
    line = capsys.readouterr().out
    assert "parity on 10 real photos: max |logit diff| 0.00e+00" in line  # the run's 10 val photos
    with warnings.catch_warnings():  # TorchScript is deprecated upstream, still what many deployments load
        warnings.simplefilter("ignore", FutureWarning)
        assert torch.jit.load(str(out))(torch.zeros(2, 3, 64, 64)).shape == (2, 5)
    monkeypatch.setattr(petalnet.inference.export, "TOLERANCE", 0.0)  # no difference is small enough
    assert cli("export", trained_run, "--format", "torchscript", "--out", tmp_path / "again.pt") == 1
    assert "the exported model differs from PyTorch's on the check photos (max |logit diff|" in capsys.readouterr().err
    assert not (tmp_path / "again.pt").exists() and not (tmp_path / "again.pt.json").exists()


def test_predict_on_onnx_agrees_with_the_checkpoint_without_importing_torch(onnx_model, trained_run, made_photos):
    photos = sorted(made_photos.rglob("*.jpg"))[::15]
    code = ("import sys, json; from petalnet.cli import main; rc = main(sys.argv[1:]); "
            "print(json.dumps(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))))")
    done = subprocess.run([sys.executable, "-c", code, "predict", str(onnx_model), *map(str, photos), "--json",
                           "--topk", "5"], capture_output=True, text=True)
    assert done.returncode == 0, shown(done)
    *lines, imported = done.stdout.strip().splitlines()
    assert json.loads(imported) == []  # torch never imported
    from_onnx = [json.loads(line) for line in lines]
    from_torch = load_classifier(trained_run, "cpu").predict(photos, topk=5)
    assert len(from_onnx) == len(from_torch) == len(photos)
    for a, b in zip(from_onnx, from_torch):
        assert a["path"] == b["path"] and a["top"][0]["class"] == b["top"][0]["class"]
        probs_a = {t["class"]: t["prob"] for t in a["top"]}
        assert all(abs(probs_a[t["class"]] - t["prob"]) < 0.01 for t in b["top"])  # Pillow vs torch resize
    top = [r["top"][0]["prob"] for r in from_torch]
    assert max(top) - min(top) > 0.02  # the photos' probabilities differ by more than twice that tolerance


def test_onnx_classifier_preprocesses_as_eval_array(onnx_model, made_photos):
    classifier = load_onnx_classifier(onnx_model)
    photo = sorted(made_photos.rglob("*.jpg"))[0]
    spec = classifier.spec
    assert np.array_equal(classifier.preprocess(photo), eval_array(open_eval_photo(photo, spec.image_size,
                                                                                   spec.eval_resize), spec))
    records = list(classifier.iter_predict([photo, made_photos / "nope.jpg"], topk=2))
    assert records[0][0]["top"][0]["prob"] >= records[0][0]["top"][1]["prob"]
    assert records[1][0] == {"path": str(made_photos / "nope.jpg"), "error": "no such file"}


def test_int8_export_is_smaller_and_keeps_the_classes(onnx_model, trained_run, made_photos, tmp_path, capsys,
                                                      monkeypatch):
    import petalnet.inference.export

    out = tmp_path / "flowers-int8.onnx"
    assert cli("export", trained_run, "--out", out, "--quantize", "int8") == 0
    assert "parity on 10 real photos: top-1 class the same on 100%" in capsys.readouterr().out
    meta = json.loads(out.with_name(out.name + ".json").read_text())
    assert meta["quantized"] == "int8" and meta["calibration_photos"] == 90  # all 90 train photos of the run
    assert out.stat().st_size < onnx_model.stat().st_size / 3  # int8 weights: a quarter, plus scales
    photos = sorted(made_photos.rglob("*.jpg"))[::7]
    int8, fp32 = load_onnx_classifier(out), load_onnx_classifier(onnx_model)
    tops = [[r[0]["top"][0]["class"] for r in clf.iter_predict(photos)] for clf in (int8, fp32)]
    assert np.mean([a == b for a, b in zip(*tops)]) >= 0.9
    assert not list(tmp_path.glob("*.float.onnx*")) and not list(tmp_path.glob(".*"))  # nothing left over
    monkeypatch.setattr(petalnet.inference.export, "AGREEMENT", 1.01)  # no agreement is enough
    assert cli("export", trained_run, "--out", tmp_path / "again.onnx", "--quantize", "int8") == 1
    assert "top-1 class the same on 100% (at least 101% needed)" in capsys.readouterr().err
    assert not (tmp_path / "again.onnx").exists() and not (tmp_path / "again.onnx.json").exists()


def test_int8_needs_onnx_and_photos_to_calibrate_on(trained_run, tmp_path, capsys):
    assert cli("export", trained_run, "--format", "torchscript", "--out", tmp_path / "m.pt", "--quantize",
               "int8") == 2
    assert "--quantize int8 needs --format onnx" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli("export", trained_run, "--out", tmp_path / "m.onnx", "--quantize", "int8", "--calibration-photos",
               tmp_path / "empty") == 2
    assert "no readable photos to calibrate int8 on" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_bad_export_requests_are_one_line(trained_run, tmp_path, capsys):
    assert cli("export", trained_run, "--format", "tflite", "--out", tmp_path / "m") == 2
    assert "unknown --format 'tflite': choose from onnx, torchscript" in capsys.readouterr().err
    assert cli("predict", tmp_path / "missing.onnx", tmp_path) == 2
    assert "no such model" in capsys.readouterr().err
    (tmp_path / "lonely.onnx").write_bytes(b"onnx")
    assert cli("predict", tmp_path / "lonely.onnx", tmp_path) == 2
    assert "lonely.onnx.json is missing or unreadable" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_grad_cam_maps_have_the_input_shape_and_are_not_uniform(trained_run, made_photos, tmp_path, capsys):
    classifier = load_classifier(trained_run, "cpu")
    photos = sorted(made_photos.rglob("*.jpg"))[::25]
    maps = classifier.explain(torch.stack([load_eval_photo(p, classifier.spec) for p in photos]))
    assert len(maps) == 4
    for heat in maps:
        assert heat.shape == (64, 64) and float(heat.min()) >= 0 and float(heat.max()) <= 1
        assert float(heat.std()) > 0.05  # it points somewhere
    assert cli("predict", trained_run, *photos, "--explain", tmp_path / "heat") == 0
    written = sorted((tmp_path / "heat").iterdir())
    assert len(written) == 4 and all(p.suffix == ".png" for p in written)
    assert "saved heat maps" in capsys.readouterr().err
