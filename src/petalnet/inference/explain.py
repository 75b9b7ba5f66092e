"""Where the model looked: Grad-CAM heat maps on the last convolution, as arrays and as PNG overlays.

    petalnet predict runs/seed photos/ --explain heatmaps/    # one PNG per photo: the photo + heat map

    from petalnet.inference.explain import grad_cam
    maps = grad_cam(network, batch)                           # (N, H, W) in [0, 1], for the top class
    load_classifier("runs/seed").explain(prepared_photos)     # the same through the inference contract

Grad-CAM (Selvaraju et al., 2017): the last conv layer's activations, weighted by the spatial mean of
the gradient of the class score with respect to them, summed over channels, ReLU, upsampled to the
input size and scaled to [0, 1]. The same maps feed `petalnet serve`'s web page.
"""

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from petalnet.errors import UserError


def last_conv(model, image=None):
    """The last convolution with a spatial map (any CNN: AlexNet's features.10, ResNet's layer4, EfficientNet's
    conv_head; not a 1x1 map after global pooling, as timm's MobileNetV3 has, found by running `image` when
    given); one line if there is none or attention layers follow it (a transformer)."""
    convs, conv_at, attention_at = [], -1, -1
    for i, module in enumerate(model.modules()):
        if isinstance(module, nn.Conv2d):
            convs.append(module)
            conv_at = i
        elif isinstance(module, nn.MultiheadAttention) or "Attention" in type(module).__name__:
            attention_at = i
    name = type(getattr(model, "model", model)).__name__
    if not convs or attention_at > conv_at:
        why = "has no convolution" if not convs else "ends in attention layers, not a convolutional stage"
        raise UserError(f"Grad-CAM needs a convolutional network: {name} {why}")
    if image is None:
        return convs[-1]
    areas = {}
    hooks = [c.register_forward_hook(lambda m, _, out: areas.__setitem__(m, out.shape[-2] * out.shape[-1]))
             for c in convs]
    try:
        with torch.no_grad():
            model(image)
    finally:
        for hook in hooks:
            hook.remove()
    spatial = [c for c in convs if areas.get(c, 0) > 1]
    return spatial[-1] if spatial else convs[-1]


def grad_cam(model, images, classes=None):
    """Heat maps (N, H, W) in [0, 1] for `classes` (default: each image's top class), float32 on the CPU."""
    saved, was_training = {}, model.training
    model.eval()
    layer = last_conv(model, images[:1])

    def keep(_module, _inputs, out):
        # The conv's output is followed by an in-place ReLU: keep the original, let the ReLU have a copy.
        saved["act"] = out
        out.register_hook(lambda grad: saved.__setitem__("grad", grad))
        return out.clone()

    hook = layer.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            images = images.detach().requires_grad_(True)
            logits = model(images).float()
            classes = logits.argmax(dim=1) if classes is None else torch.as_tensor(classes, device=logits.device)
            model.zero_grad(set_to_none=True)
            logits.gather(1, classes.view(-1, 1)).sum().backward()
    finally:
        hook.remove()
        model.train(was_training)
    weights = saved["grad"].float().mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * F.relu(saved["act"].float())).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    low = cam.amin(dim=(1, 2), keepdim=True)
    high = cam.amax(dim=(1, 2), keepdim=True)
    return ((cam - low) / (high - low).clamp_min(1e-8)).detach().cpu()


def overlay(photo, heat, alpha=0.45):
    """The photo (PIL, any size) with the heat map (H, W in [0, 1]) blended on top in 'jet' colours."""
    from matplotlib import colormaps

    photo = photo.convert("RGB")
    heat_image = Image.fromarray(np.uint8(np.clip(np.asarray(heat), 0, 1) * 255)).resize(photo.size, Image.BILINEAR)
    colours = colormaps["jet"](np.asarray(heat_image) / 255.0)[..., :3]
    coloured = Image.fromarray(np.uint8(colours * 255))
    return Image.blend(photo, coloured, alpha)


def overlay_png(photo, heat, alpha=0.45):
    """overlay() as PNG bytes (for the web page)."""
    buffer = io.BytesIO()
    overlay(photo, heat, alpha).save(buffer, format="PNG")
    return buffer.getvalue()
