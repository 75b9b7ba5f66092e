"""config/sizes.py: progressive resizing, the val size that goes with it, and a run's InferenceSpec."""

import dataclasses

from petalnet.config.sizes import eval_image_size, inference_spec, train_image_size
from petalnet.config.train import TrainConfig, recipe_config, resolve_config
from petalnet.models.spec import InferenceSpec


def test_progressive_resizing_grows_from_min_to_final_in_steps_of_16():
    config = TrainConfig(epochs=20, image_size=176, min_image_size=96, resize_ramp=(0.1, 0.7))
    sizes = [train_image_size(epoch, config) for epoch in range(1, 21)]
    assert sizes[0] == sizes[2] == 96 and sizes[-1] == sizes[14] == 176
    assert sizes == sorted(sizes) and all(size % 16 == 0 for size in sizes)
    assert len(set(sizes)) >= 4
    no_ramp = dataclasses.replace(config, min_image_size=None)
    assert [train_image_size(e, no_ramp) for e in (1, 20)] == [176, 176]


def test_progressive_eval_validates_each_epoch_at_its_training_size_times_the_final_ratio():
    fast = recipe_config("fast")
    sizes = {train_image_size(e, fast): eval_image_size(fast, e) for e in range(1, fast.epochs + 1)}
    assert sizes == {128: 144, 144: 160, 160: 192, 176: 208, 192: 224, 208: 240}  # 240/208 = 1.15, 16 px steps
    assert eval_image_size(fast) == 240  # the final size, which predict uses by default
    assert {eval_image_size(dataclasses.replace(fast, progressive_eval=False), e) for e in (1, 30, 90)} == {240}
    assert {eval_image_size(TrainConfig(), e) for e in (1, 10)} == {224}


def test_a_runs_inference_spec_is_its_final_eval_transform():
    config = resolve_config("best", {"image_size": 112, "mean": [0.4, 0.4, 0.4], "eval_resize": "center_crop"})
    assert inference_spec(config, ["b", "a"]) == InferenceSpec(
        model="alexnet_half", classes=("b", "a"), image_size=128, eval_resize="center_crop", mean=(0.4, 0.4, 0.4),
        std=(0.5, 0.5, 0.5), tta_flip=True)  # best's eval size 256 follows image_size 224 -> 112
    assert inference_spec(config, ["a"], image_size=80).image_size == 80  # an epoch validated at 80 px
