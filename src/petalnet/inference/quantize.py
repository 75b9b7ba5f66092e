"""int8 ONNX: an ONNX export quantized by ONNX Runtime, calibrated on the run's own training photos.

    petalnet export runs/seed --out model-int8.onnx --quantize int8
    petalnet export model.pt --out m8.onnx --quantize int8 --calibration-photos photos/

Static quantization in QDQ format: weights int8 per output channel, activations uint8 with ranges
measured (min-max) on CALIBRATION_PHOTOS training photos taken evenly over the sorted list, through the
checkpoint's eval transform. The parity check then compares the int8 file with PyTorch on real photos by
top-1 agreement and probabilities (int8 logits cannot match fp32 to 1e-4); for a multi-label model by the
label sets at its thresholds and its sigmoids.
"""

import numpy as np

from petalnet.data.folders import list_photos
from petalnet.data.images import UnreadableImage
from petalnet.errors import UserError
from petalnet.inference.photos import own_photos
from petalnet.inference.probabilities import probabilities, thresholds_of
from petalnet.pipeline.preprocess import eval_array, open_eval_photo

CALIBRATION_PHOTOS = 256  # training photos whose activations set the int8 ranges
CALIBRATION_BATCH = 16
AGREEMENT = 0.9  # least share of check photos whose top-1 class (multi-label: label set) the int8 file must keep


def calibration_arrays(ckpt, model_path, folder=None, count=CALIBRATION_PHOTOS):
    """Up to `count` photos (float32 (3, S, S), normalized) of `folder`, else of the run's train split."""
    if folder is not None:
        paths = list_photos([folder])
    else:
        paths = own_photos(ckpt, model_path, "train", flag="--calibration-photos")[1]
    step, spec, arrays = max(1, len(paths) // count), ckpt.spec, []
    for path in paths[::step][:count]:
        try:
            arrays.append(eval_array(open_eval_photo(path, spec.image_size, spec.eval_resize), spec))
        except UnreadableImage:
            continue
    if not arrays:
        raise UserError("no readable photos to calibrate int8 on: pass --calibration-photos DIR")
    return arrays


def quantize_int8(float_path, out_path, arrays):
    """Write `out_path`: the ONNX model at `float_path` with int8 weights and uint8 activations (after ONNX
    Runtime's recommended pre-processing: shape inference and graph optimization)."""
    import logging

    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([np.stack(arrays[k:k + CALIBRATION_BATCH])
                                 for k in range(0, len(arrays), CALIBRATION_BATCH)])

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"images": batch}

    prepared = float_path.with_name(float_path.name + ".prepared.onnx")
    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # ONNX Runtime's advice, printed through the root logger
    try:
        try:
            quant_pre_process(str(float_path), str(prepared))
        except Exception:  # noqa: BLE001 - its symbolic shape inference fails on some graphs (ResNet-9's reshape)
            quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)  # ONNX's inference only
        quantize_static(str(prepared), str(out_path), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    finally:
        logging.getLogger().setLevel(quiet)
        prepared.unlink(missing_ok=True)


def agreement(expected_logits, got_logits, spec):
    """(share of rows whose top-1 class agrees, max |probability difference|); for a multi-label spec the rows
    whose label sets at its thresholds agree, and the sigmoids' difference."""
    expected, got = probabilities(expected_logits, spec), probabilities(got_logits, spec)
    if spec.multilabel:
        thresholds = np.asarray(thresholds_of(spec), dtype=np.float64)
        same = float(np.mean(np.all((expected >= thresholds) == (got >= thresholds), axis=1)))
    else:
        same = float(np.mean(expected_logits.argmax(axis=1) == got_logits.argmax(axis=1)))
    return same, float(np.abs(expected - got).max())
