"""`petalnet export` (inference/export.py: ONNX, TorchScript, the parity check), predict on an .onnx
without torch (onnx.py), one inference contract for both formats (backend.py, classifier.py), and Grad-CAM
(explain.py)."""

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from conftest import cli, shown
from petalnet import load_classifier
from petalnet.errors import UserError
from petalnet.inference.classifier import Classifier
from petalnet.inference.onnx import OnnxBackend
from petalnet.inference.torch_backend import TorchBackend
from petalnet.pipeline.preprocess import eval_array, eval_tensor, load_eval_photo, open_eval_photo


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
    classifier = load_classifier(onnx_model)
    assert classifier.spec == load_classifier(trained_run, "cpu").spec  # the sidecar holds the checkpoint's spec


@pytest.mark.slow
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


def test_each_backend_prepares_a_photo_as_today(onnx_model, trained_run, made_photos):
    """ONNX: eval_array (Pillow, NumPy); a checkpoint: eval_tensor (torch's uint8 resize), from one decode."""
    photo = sorted(made_photos.rglob("*.jpg"))[0]
    for path, expected in ((onnx_model, eval_array), (trained_run, None)):
        classifier = load_classifier(path, "cpu")
        spec = classifier.spec
        image = open_eval_photo(photo, spec.image_size, spec.eval_resize)
        prepared = classifier.decode(photo).prepared
        if expected is eval_array:
            assert isinstance(classifier.backend, OnnxBackend)
            assert np.array_equal(prepared, eval_array(image, spec)) and prepared.dtype == np.float32
        else:
            assert isinstance(classifier.backend, TorchBackend)
            assert torch.equal(prepared, eval_tensor(image, spec.image_size, spec.eval_resize))
            assert prepared.dtype == torch.uint8


def test_a_checkpoint_and_its_onnx_file_give_the_same_records_through_one_code_path(onnx_model, trained_run,
                                                                                     made_photos, monkeypatch):
    """Both are a Classifier over a Backend: the same decoding, probabilities and top-k (spied on here), the same
    records for unreadable files and PIL images, the same classes in the same order for every photo."""
    import petalnet.inference.classifier as classifier_module
    from PIL import Image

    calls = []

    def spy(owner, name):
        function = getattr(owner, name)

        def wrapped(*args, **kwargs):
            calls.append(name)
            return function(*args, **kwargs)
        monkeypatch.setattr(owner, name, wrapped)

    for name in ("decode_ahead", "top_classes"):
        spy(classifier_module, name)
    photos = sorted(made_photos.rglob("*.jpg"))[::9]
    inputs = [*photos, made_photos / "nope.jpg", Image.open(photos[0])]
    records = {}
    for path in (trained_run, onnx_model):
        calls.clear()
        classifier = load_classifier(path, "cpu")
        assert type(classifier) is Classifier
        spy(classifier.backend, "probabilities")  # the backend's: torch's softmax, or NumPy's for ONNX
        records[path] = classifier.predict(inputs, topk=5, batch_size=4)
        assert calls.count("decode_ahead") == 1 and calls.count("probabilities") == 4  # 14 photos, batches of 4
        assert calls.count("top_classes") == len(photos) + 1  # the readable ones
    from_torch, from_onnx = records[trained_run], records[onnx_model]
    assert from_torch[-2] == from_onnx[-2] == {"path": str(made_photos / "nope.jpg"), "error": "no such file"}
    assert from_torch[-1]["path"] is None and from_onnx[-1]["path"] is None
    for a, b in zip(from_torch[:-2] + from_torch[-1:], from_onnx[:-2] + from_onnx[-1:]):
        assert list(a) == list(b) == ["path", "top"] and a["path"] == b["path"]
        assert [t["class"] for t in a["top"]] == [t["class"] for t in b["top"]]
        assert all(abs(s["prob"] - t["prob"]) < 0.01 for s, t in zip(a["top"], b["top"]))  # Pillow vs torch resize


def test_heat_maps_are_a_checkpoints_capability(onnx_model, trained_run, made_photos, tmp_path, capsys):
    onnx = load_classifier(onnx_model)
    with pytest.raises(UserError, match="--explain needs a PyTorch checkpoint or run folder, not an .onnx file"):
        onnx.check_explain()
    assert cli("predict", onnx_model, made_photos, "--explain", tmp_path / "heat") == 2
    err = capsys.readouterr().err
    assert "--explain needs a PyTorch checkpoint" in err and err.count("\n") == 1
    assert not (tmp_path / "heat").exists()
    load_classifier(trained_run, "cpu").check_explain()  # a CNN checkpoint can


@pytest.mark.slow
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
    int8, fp32 = load_classifier(out), load_classifier(onnx_model)
    tops = [[r["top"][0]["class"] for r in clf.predict(photos)] for clf in (int8, fp32)]
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
    maps = classifier.explain([load_eval_photo(p, classifier.spec) for p in photos])
    assert len(maps) == 4
    for heat in maps:
        assert heat.shape == (64, 64) and float(heat.min()) >= 0 and float(heat.max()) <= 1
        assert float(heat.std()) > 0.05  # it points somewhere
    assert cli("predict", trained_run, *photos, "--explain", tmp_path / "heat") == 0
    written = sorted((tmp_path / "heat").iterdir())
    assert len(written) == 4 and all(p.suffix == ".png" for p in written)
    assert "saved heat maps" in capsys.readouterr().err
