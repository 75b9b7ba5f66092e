"""training/layers.py (head-only epochs, freeze_fraction, body_lr's parameter groups) and the parts of
models/networks.py it stands on: head_parameters finds each network's classifier, body_layers the rest
in order from the input."""

import pytest
import torch

from petalnet.config.train import TrainConfig
from petalnet.models.networks import body_layers, build_model, head_parameters
from petalnet.training.layers import RATE_STEPS, Layers
from petalnet.training.optim import build_optimizer, build_scheduler

HEADS = {
    "resnet18": ({"fc.weight", "fc.bias"}, "conv1.weight"),
    "mobilenet_v3_small": ({"classifier.3.weight", "classifier.3.bias"}, "features.0.0.weight"),
    "efficientnet_lite0": ({"classifier.weight", "classifier.bias"}, "conv_stem.weight"),
    "squeezenet1_1": ({"classifier.1.weight", "classifier.1.bias"}, "features.0.weight"),
    "alexnet_half": ({"classifier.6.weight", "classifier.6.bias"}, "features.0.weight"),
    "timm/convnext_atto": ({"head.fc.weight", "head.fc.bias"}, "stem.0.weight"),
}


@pytest.fixture(scope="module")
def resnet18():
    return build_model("resnet18", 5)


@pytest.mark.parametrize("name", list(HEADS))
def test_head_is_the_classifier_and_the_body_the_rest_from_the_stem(name):
    model = build_model(name, 5)
    head, stem = HEADS[name]
    assert head_parameters(model, 5) == head
    layers = body_layers(model, head)
    assert layers[0][0] == stem
    flat = [n for layer in layers for n in layer]
    assert len(flat) == len(set(flat)) and not set(flat) & head
    assert set(flat) | head == {n for n, _ in model.named_parameters()}
    assert all(len({n.rsplit(".", 1)[0] for n in layer}) == 1 for layer in layers)  # one module per layer


def test_head_of_a_network_without_such_a_layer_is_a_user_error():
    from petalnet.errors import UserError

    with pytest.raises(UserError, match="cannot find the classifier of ResNet"):
        head_parameters(build_model("resnet18", 5), 7)


def config(**values):
    return TrainConfig(pretrained="imagenet", lr=1e-3, **values)


def test_body_lr_rises_geometrically_from_the_first_layer_to_the_head(resnet18):
    layers = Layers.of(resnet18, 5)
    groups = layers.param_groups(resnet18, config(body_lr=0.1))
    assert len(groups) == RATE_STEPS + 1
    assert groups[0]["lr"] == pytest.approx(1e-3 * 0.1 ** 1)
    assert groups[-1]["lr"] == pytest.approx(1e-3)
    assert groups[-2]["lr"] == pytest.approx(1e-3 * 0.1 ** (1 / RATE_STEPS))
    rates = [g["lr"] for g in groups]
    assert rates == sorted(rates) and len(set(rates)) == len(rates)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in resnet18.parameters()}  # each once
    params = dict(resnet18.named_parameters())
    assert id(params["conv1.weight"]) in {id(p) for p in groups[0]["params"]}
    assert id(params["layer4.1.bn2.bias"]) in {id(p) for p in groups[-2]["params"]}
    assert {id(p) for p in groups[-1]["params"]} == {id(resnet18.fc.weight), id(resnet18.fc.bias)}


def test_body_lr_one_is_a_single_group_at_lr(resnet18):
    groups = Layers.of(resnet18, 5).param_groups(resnet18, config(body_lr=1.0))
    assert len(groups) == 1 and "lr" not in groups[0]
    assert len(groups[0]["params"]) == len(list(resnet18.parameters()))


def test_a_body_of_fewer_layers_than_steps_still_has_every_parameter_once():
    model = build_model("alexnet_half", 5)
    groups = Layers.of(model, 5).param_groups(model, config(body_lr=0.01))
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert groups[0]["lr"] == pytest.approx(1e-3 * 0.01) and groups[-1]["lr"] == pytest.approx(1e-3)


@pytest.mark.parametrize("optimizer", ["adamw", "sgd", "adam"])
def test_the_optimizer_and_schedule_keep_each_groups_ratio(resnet18, optimizer):
    settings = config(body_lr=0.1, optimizer=optimizer, scheduler="cosine", epochs=4, warmup_epochs=1)
    opt = build_optimizer(Layers.of(resnet18, 5).param_groups(resnet18, settings), settings)
    scheduler = build_scheduler(opt, settings, steps_per_epoch=5)
    for _ in range(7):
        opt.step()
        scheduler.step()
    head, first = opt.param_groups[-1]["lr"], opt.param_groups[0]["lr"]
    assert 0 < head < 1e-3 and first == pytest.approx(head * 0.1)


def test_head_epochs_freeze_the_whole_body_then_freeze_fraction_its_first_layers(resnet18):
    layers = Layers.of(resnet18, 5)
    body = [n for layer in layers.body for n in layer]
    settings = config(head_epochs=2, freeze_fraction=0.5)
    assert layers.frozen_names(settings, 1) == layers.frozen_names(settings, 2) == set(body)
    later = layers.frozen_names(settings, 3)
    half = len(layers.body) // 2
    assert later == {n for layer in layers.body[:half] for n in layer}
    assert "conv1.weight" in later and "layer4.1.conv2.weight" not in later and not later & layers.head
    assert layers.frozen_names(config(), 1) == set()


def test_set_trainable_says_when_something_changed():
    model = build_model("resnet18", 5)
    layers = Layers.of(model, 5)
    settings = config(head_epochs=1, freeze_fraction=0.5)
    assert layers.set_trainable(model, settings, 1) is True
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}
    assert layers.set_trainable(model, settings, 1) is False  # the same epoch again: nothing changes
    assert layers.set_trainable(model, settings, 2) is True
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == layers.frozen_names(settings, 2) and frozen
    assert layers.set_trainable(model, settings, 3) is False
    assert layers.set_trainable(build_model("resnet18", 5), config(), 1) is False  # nothing frozen, ever


def test_frozen_parameters_get_no_gradient_and_do_not_move():
    model = build_model("resnet18", 5)
    layers = Layers.of(model, 5)
    settings = config(head_epochs=1, optimizer="adamw", weight_decay=0.1)
    layers.set_trainable(model, settings, 1)
    opt = build_optimizer(layers.param_groups(model, settings), settings)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 64, 64)), torch.tensor([0, 1, 2, 3])).backward()
    opt.step()
    for name, param in model.named_parameters():
        moved = not torch.equal(param, before[name])
        assert moved == (name in layers.head), name
        assert (param.grad is not None) == (name in layers.head), name


def test_a_frozen_convolution_takes_its_batchnorm_with_it():
    model = build_model("resnet18", 5)
    layers = Layers.of(model, 5)
    for fraction in [k / 20 for k in range(1, 20)]:
        config = TrainConfig(pretrained="imagenet", freeze_fraction=fraction)
        frozen = layers.frozen_names(config, epoch=5)
        count = sum(1 for layer in layers.body if set(layer) <= frozen)
        assert count == len(layers.body) or not layers.is_norm[count], fraction  # never a BatchNorm first
        norms = layers.frozen_norms(model, config, epoch=5)
        assert all(isinstance(n, torch.nn.BatchNorm2d) for n in norms) and len(norms) > 0
