"""models/names.py: the names petalnet builds, checked against torchvision's own list; unknown names are
refused in one line that names the closest ones."""

import pytest

from conftest import cli
from petalnet.errors import UserError
from petalnet.models.names import (MODEL_NAMES, PETALNET_MODELS, TIMM_MODELS, TORCHVISION_MODELS, check_model_name,
                                   model_source, timm_name)
from petalnet.utils.fields import SettingError


def test_torchvision_names_are_torchvisions_classification_models_but_two():
    import torchvision

    listed = set(torchvision.models.list_models(module=torchvision.models))
    assert {"googlenet", "inception_v3"} <= listed  # still there to be left out
    assert set(TORCHVISION_MODELS) == listed - {"googlenet", "inception_v3"}
    assert len(TORCHVISION_MODELS) == len(set(TORCHVISION_MODELS))  # no name twice


def test_every_name_has_one_source():
    assert len(MODEL_NAMES) == len(set(MODEL_NAMES))
    assert {model_source(n) for n in PETALNET_MODELS} == {"petalnet"}
    assert {model_source(n) for n in TORCHVISION_MODELS} == {"torchvision"}
    assert {model_source(n) for n in TIMM_MODELS} == {"timm"}
    assert model_source("timm/convnext_atto") == "timm" and timm_name("timm/convnext_atto") == "convnext_atto"
    assert timm_name("efficientnet_lite0") == "tf_efficientnet_lite0"
    assert model_source("resnet81") is None
    for name in MODEL_NAMES + ("timm/convnext_atto",):
        check_model_name(name)  # no error


@pytest.mark.parametrize("name, near", [("resnet81", "resnet18"), ("mobilenet_v3", "mobilenet_v3_small"),
                                        ("alexnet_halfs", "alexnet_half"), ("efficientnet_lite", "efficientnet_lite0")])
def test_unknown_name_is_a_setting_error_naming_close_ones(name, near):
    with pytest.raises(SettingError) as caught:
        check_model_name(name)
    message = str(caught.value)
    assert isinstance(caught.value, UserError) and caught.value.setting == "model"
    assert f"unknown model '{name}'" in message and near in message.split("closest", 1)[1], message
    assert "petalnet models" in message and "\n" not in message


def test_far_names_and_a_bare_timm_prefix_are_refused_without_a_guess():
    with pytest.raises(SettingError) as caught:
        check_model_name("zzzzzzzz")
    assert "closest" not in str(caught.value)
    with pytest.raises(SettingError, match="unknown model 'timm/'"):
        check_model_name("timm/")


def test_cli_refuses_an_unknown_model_in_one_line_before_any_work(made_photos, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli("train", "--model", "resnet81", "--data", made_photos, "--out", run, "--device", "cpu") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--model" in err and "resnet18" in err, err
    assert not run.exists()


def test_a_size_a_transformer_does_not_take_is_one_line(tmp_path, capsys):
    """vit_b_16 asserts its one input size (an AssertionError, not a RuntimeError): still one line, exit 2."""
    assert cli("train", "--data", tmp_path, "--out", tmp_path / "run", "--model", "vit_b_16", "--image-size",
               "160") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--image-size 160 does not suit vit_b_16" in err, err


def test_an_unknown_timm_name_with_pretrained_weights_is_one_line(tmp_path, capsys):
    assert cli("train", "--data", tmp_path, "--out", tmp_path / "run", "--model", "timm/resnet_nope",
               "--pretrained", "imagenet") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "timm has no architecture 'resnet_nope'" in err, err
