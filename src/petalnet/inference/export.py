"""`petalnet export`: a checkpoint as an ONNX or TorchScript file, checked against PyTorch on real photos.

    petalnet export runs/seed --format onnx --out model.onnx      # + model.onnx.json: classes, size, mean, std
    petalnet export runs/seed --format torchscript --out model.pt
    petalnet export runs/seed --format onnx --out m.onnx --check-photos photos/
    petalnet export runs/seed --out model-int8.onnx --quantize int8     # quantize.py

After writing, the exported file's logits (ONNX Runtime for onnx) are compared with PyTorch's on real
photos (the run's val photos, or --check-photos): the max absolute difference is printed and must be
under 1e-4 (an int8 file: the same top-1 class on at least 90% of them; a multi-label model's: the same label
set at its thresholds, its sigmoids compared), else the export is reported as failed (exit 1) and the files
are removed. A multi-label model's sidecar carries its task and thresholds (InferenceSpec.to_dict), so that
predict on the file gives the checkpoint's label sets. The Python API takes the same settings:
export_model(ExportSettings(model="runs/seed", out="model.onnx")) (inference/settings.py).
"""

import contextlib
import io
import sys
import warnings
from pathlib import Path

import torch

from petalnet.models.checkpoint import load_checkpoint, model_from_checkpoint
from petalnet.pipeline.preprocess import load_eval_photo, normalize_batch
from petalnet.errors import StorageError, UserError, describe_os_error
from petalnet.utils.fileio import atomic_path, write_json
from petalnet.data.folders import list_photos
from petalnet.data.images import UnreadableImage
from petalnet.inference.onnx import sidecar_path
from petalnet.inference.photos import own_val_photos
from petalnet.inference.quantize import AGREEMENT, agreement, calibration_arrays, quantize_int8
from petalnet.utils.fields import check_fields

TOLERANCE = 1e-4
CHECK_PHOTOS = 16


def export_model(settings, log=print):
    """Write the ExportSettings' file and its JSON sidecar; returns whether the parity check passed (else both
    are removed). Bad settings raise UserError before anything is written."""
    check_fields(settings)
    model, fmt, quantize = settings.model, settings.format, settings.quantize
    if quantize is not None and fmt != "onnx":
        raise UserError(f"--quantize {quantize} needs --format onnx")
    ckpt = load_checkpoint(model)
    net = model_from_checkpoint(ckpt, model).eval()
    spec, out = ckpt.spec, Path(settings.out)
    batch = photo_batch(ckpt, model, settings.check_photos)
    if fmt == "onnx":
        _require("onnx", "onnxscript", "onnxruntime")
    calibration = quantize and calibration_arrays(ckpt, model, settings.calibration_photos)  # before writing
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            _write_file(net, spec.image_size, fmt, tmp, calibration)
        extra = {"quantized": quantize, "calibration_photos": len(calibration)} if quantize else {}
        write_json(sidecar_path(out), {**spec.to_dict(), "format": fmt, "input": "images", "output": "logits",
                                       "layout": "NCHW float32, normalized with mean and std", **extra})
    except OSError as err:
        raise StorageError(f"cannot write {out}: {describe_os_error(err)}") from None
    with torch.no_grad():
        expected = net(batch).numpy()
    got = _exported_logits(out, fmt, batch)
    ok, said = _parity(expected, got, quantize, spec)
    log(f"wrote {out} and {sidecar_path(out)}; parity on {len(batch)} real photos: {said}")
    if not ok:
        out.unlink(missing_ok=True)
        sidecar_path(out).unlink(missing_ok=True)
        print(f"petalnet: error: the exported model differs from PyTorch's on the check photos ({said}); removed "
              f"{out}", file=sys.stderr)
    return ok


def _write_file(net, size, fmt, path, calibration):
    if fmt == "torchscript":
        return _write_torchscript(net, size, path)
    if not calibration:
        return _write_onnx(net, size, path)
    float_path = path.with_name(path.name + ".float.onnx")
    try:
        _write_onnx(net, size, float_path)
        quantize_int8(float_path, path, calibration)
    finally:
        float_path.unlink(missing_ok=True)


def _parity(expected, got, quantize, spec):
    """(passed, what to print): logits within TOLERANCE, or for int8 the top-1 class (a multi-label model: the
    label set) kept on AGREEMENT."""
    if quantize:
        same, prob = agreement(expected, got, spec)
        kept = "label set" if spec.multilabel else "top-1 class"
        return same >= AGREEMENT, (f"{kept} the same on {same:.0%} (at least {AGREEMENT:.0%} needed), "
                                   f"max |probability diff| {prob:.3f}")
    diff = float(abs(got - expected).max())
    return diff < TOLERANCE, f"max |logit diff| {diff:.2e}" + ("" if diff < TOLERANCE else f" (>= {TOLERANCE})")


def _require(*modules):
    import importlib.util

    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"ONNX export needs {', '.join(missing)}: pip install 'petalnet[serve]'")


def _write_onnx(net, size, path):
    example = torch.zeros(2, 3, size, size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # the exporter's progress talk
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), str(path), input_names=["images"], output_names=["logits"],
                          dynamic_shapes={"x": {0: batch}}, dynamo=True, external_data=False, verbose=False)


def _write_torchscript(net, size, path):
    example = torch.zeros(1, 3, size, size)
    with warnings.catch_warnings():  # TorchScript's deprecation notice
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(net, example), str(path))


def _exported_logits(path, fmt, batch):
    if fmt == "torchscript":
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.load(str(path)).eval()(batch).numpy()
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": batch.numpy()})[0]


def photo_batch(ckpt, model, folder=None):
    """Up to CHECK_PHOTOS real photos through the eval transform, normalized (fp32, NCHW)."""
    if folder is not None:
        paths = list_photos([folder])
    else:
        paths = own_val_photos(ckpt, model, flag="--check-photos")[1]
    images = []
    for path in paths:
        try:
            images.append(load_eval_photo(path, ckpt.spec))
        except UnreadableImage:
            continue
        if len(images) == CHECK_PHOTOS:
            break
    if not images:
        raise UserError("no readable photos to check the export against: pass --check-photos DIR")
    return normalize_batch(torch.stack(images), ckpt.spec.mean, ckpt.spec.std)


def run_export(settings):
    """`petalnet export`: 0 when the file is written and passes its parity check, else 1."""
    return 0 if export_model(settings) else 1
