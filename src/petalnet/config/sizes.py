"""The image sizes of a run: the training size of each epoch (progressive resizing), the val size that
goes with it, and the InferenceSpec a checkpoint of the run carries.

    size = train_image_size(epoch, config)       # progressive resizing
    val_size = eval_image_size(config, epoch)    # ... and the val size that goes with it

Image size (FFCV's progressive resizing): `min_image_size` until `resize_ramp[0]` of the epochs are done,
then linearly up to `image_size` by `resize_ramp[1]`, in steps of 16 px; small images early cost a
fraction of the compute when the model is learning coarse features anyway.
Val size: `eval_image_size` (FixRes: a little larger than the training crops). With `progressive_eval`,
an epoch still growing is validated at its training size times the same ratio (16 px steps): a model
trained on small photos so far scores higher at a matching size than at the final one.
"""

from petalnet.models.spec import InferenceSpec

SIZE_STEP = 16


def train_image_size(epoch, config):
    """The training image size for `epoch` (1-based)."""
    final, start = config.image_size, config.min_image_size
    if not start or start >= final:
        return final
    ramp_start, ramp_end = config.resize_ramp
    done = (epoch - 1) / config.epochs
    if done <= ramp_start:
        return start
    if done >= ramp_end:
        return final
    size = start + (final - start) * (done - ramp_start) / (ramp_end - ramp_start)
    return max(start, min(final, int(size) // SIZE_STEP * SIZE_STEP))


def eval_image_size(config, epoch=None):
    """The val (and prediction) size: the final one, or with `progressive_eval` the one for `epoch`."""
    final = config.eval_image_size or config.image_size
    if epoch is None or not config.progressive_eval:
        return final
    size = train_image_size(epoch, config)
    if size >= config.image_size:
        return final
    return max(SIZE_STEP, min(final, round(size * final / config.image_size / SIZE_STEP) * SIZE_STEP))


def inference_spec(config, classes, image_size=None):
    """How a checkpoint of this run classifies a photo (at `image_size`, default the final eval size)."""
    return InferenceSpec(model=config.model, classes=tuple(classes), image_size=image_size or eval_image_size(config),
                         eval_resize=config.eval_resize, mean=config.mean, std=config.std, tta_flip=config.tta_flip)
