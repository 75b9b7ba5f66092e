"""models/checkpoint.py and spec.py: what a checkpoint holds, what loading it gives, what it refuses."""

import dataclasses

import pytest
import torch

from conftest import CLASSES, SMALL_MODEL, SMALL_SIZE, metrics
from petalnet.errors import UserError
from petalnet.models.checkpoint import load_checkpoint, model_from_checkpoint
from petalnet.models.spec import InferenceSpec

META_0_2_0 = ["classes", "image_size", "model", "eval_resize", "mean", "std", "tta_flip"]  # keys, in order


def test_checkpoints_carry_what_is_needed_to_use_them(trained_run):
    saved = torch.load(trained_run / "best.pt", map_location="cpu", weights_only=True)
    assert saved["format"] == "petalnet" and saved["version"] == 1
    assert list(saved["meta"]) == META_0_2_0  # a plain dict, as 0.2.0 wrote it
    assert saved["meta"] == {"classes": CLASSES, "model": SMALL_MODEL, "image_size": int(SMALL_SIZE),
                             "eval_resize": "squash", "mean": [0.5] * 3, "std": [0.5] * 3, "tta_flip": False}
    best_epoch = max(metrics(trained_run), key=lambda r: float(r["val_acc"]))["epoch"]
    assert saved["epoch"] == int(best_epoch)
    ckpt = load_checkpoint(trained_run)  # a run folder means its best.pt
    spec = ckpt.spec
    assert isinstance(spec, InferenceSpec) and spec.classes == tuple(CLASSES) and spec.image_size == 64
    assert spec.to_dict() == saved["meta"]
    model = model_from_checkpoint(ckpt)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 5)
    last = load_checkpoint(trained_run / "last.pt")
    assert last.epoch == 2 and last.config["recipe"] == "seed" and len(last.state.history) == 2
    assert last.state.optimizer["state"] and last.state.rng["torch"] is not None  # Adam moments are saved
    assert ckpt.state is None  # best.pt: the weights and what they need, not how to resume


def test_meta_of_older_checkpoints_gets_the_defaults_they_used(tmp_path):
    """0.1 checkpoints had no tta_flip; their meta's lists become tuples."""
    old = {"classes": ["a", "b"], "model": "alexnet_half", "image_size": 96, "eval_resize": "center_crop",
           "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.2, 0.2]}
    spec = InferenceSpec.from_dict(old)
    assert spec == InferenceSpec(model="alexnet_half", classes=("a", "b"), image_size=96, eval_resize="center_crop",
                                 mean=(0.4, 0.5, 0.6), std=(0.2, 0.2, 0.2), tta_flip=False)
    assert list(spec.to_dict()) == META_0_2_0
    with pytest.raises(UserError, match=r"lacks what a model needs to classify \(image_size\)"):
        InferenceSpec.from_dict({k: v for k, v in old.items() if k != "image_size"}, "x.pt")


@pytest.mark.parametrize("content, message", [
    ({"meta": {"model": "alexnet_half"}}, "is not a petalnet checkpoint"),  # no format
    ({"format": "petalnet", "version": 1, "meta": "alexnet"}, "is not a petalnet checkpoint"),
    ([1, 2, 3], "is not a petalnet checkpoint"),
    ({"format": "petalnet", "version": 1, "meta": {"model": "alexnet_half", "classes": ["a"]}},
     "lacks what a model needs to classify (image_size)"),
])
def test_what_is_not_a_checkpoint_is_one_clear_line(tmp_path, content, message):
    path = tmp_path / "x.pt"
    torch.save(content, path)
    with pytest.raises(UserError) as err:
        load_checkpoint(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_weights_of_another_model_do_not_fit(trained_run):
    ckpt = load_checkpoint(trained_run)
    other = dataclasses.replace(ckpt, spec=dataclasses.replace(ckpt.spec, classes=("a", "b", "c")))
    with pytest.raises(UserError, match=f"weights do not fit model '{SMALL_MODEL}' with 3 classes"):
        model_from_checkpoint(other, "other.pt")
