"""models/networks.py: the tutorial's AlexNet at half width, its variants, test-time flipping."""

import math

import pytest
import torch
from torch import nn

from petalnet.errors import UserError
from petalnet.models.networks import AlexNetHalf, FlipAveraged, build_model, count_parameters, smallest_input_error


def test_alexnet_half_matches_the_tutorial_architecture():
    model = build_model("alexnet_half", 5)
    assert count_parameters(model) == 14_591_685
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0], c.padding[0]) for c in convs] == [
        (3, 48, 11, 4, 2), (48, 128, 5, 1, 2), (128, 192, 3, 1, 1), (192, 192, 3, 1, 1), (192, 128, 3, 1, 1)]
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(4608, 2048), (2048, 2048), (2048, 5)]
    assert sum(isinstance(m, nn.Dropout) and m.p == 0.5 for m in model.classifier) == 2


def test_initialization_is_the_source_repositorys():
    torch.manual_seed(0)
    model = AlexNetHalf(num_classes=5)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            assert m.weight.std().item() == pytest.approx(0.01, rel=0.05)
            assert abs(m.weight.mean().item()) < 1e-3  # mean 0, not the tutorial text's 0.01
            assert torch.count_nonzero(m.bias) == 0
        elif isinstance(m, nn.Conv2d):
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
            assert m.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.1)
            assert torch.count_nonzero(m.bias) == 0


@pytest.mark.parametrize("size", [224, 160, 96, 64])
def test_other_input_sizes_work(size):
    model = build_model("alexnet_half", 3).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, size, size)).shape == (2, 3)


def test_adaptive_pool_is_a_no_op_at_224():
    model = build_model("alexnet_half", 5).eval()
    features = model.features(torch.randn(1, 3, 224, 224))
    assert features.shape[-2:] == (6, 6)
    assert torch.equal(model.avgpool(features), features)


def test_torchvision_alexnet_by_name():
    model = build_model("alexnet", 5)
    assert count_parameters(model) == 57_024_325
    assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 5)


def test_unknown_model_is_a_user_error():
    with pytest.raises(UserError, match="unknown model 'resnet7'"):
        build_model("resnet7", 5)


def test_alexnet_half_keeps_the_tutorial_layout_and_the_bn_variant_trains():
    keys = [k for k in AlexNetHalf().state_dict() if k.endswith("weight")]
    assert keys == ["features.0.weight", "features.3.weight", "features.6.weight", "features.8.weight",
                    "features.10.weight", "classifier.1.weight", "classifier.4.weight", "classifier.6.weight"]
    bn = build_model("alexnet_half_bn", 5)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules()) == 5
    loss = nn.functional.cross_entropy(bn(torch.randn(4, 3, 64, 64)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert bn.features[0].weight.grad is not None


def test_flip_averaged_is_the_mean_of_both_views():
    torch.manual_seed(0)
    model = build_model("alexnet_half", 5).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = (model(x) + model(x.flip(-1))) / 2
        assert not torch.allclose(model(x), expected)  # a photo and its mirror differ: the test can fail
        assert torch.allclose(FlipAveraged(model)(x), expected)


def test_smallest_input_is_found_without_changing_the_mode():
    model = build_model("alexnet_half", 5).train()
    assert smallest_input_error(model, 64) is None
    assert smallest_input_error(model, 32)  # the reason, one line
    assert "\n" not in smallest_input_error(model, 32) and model.training
