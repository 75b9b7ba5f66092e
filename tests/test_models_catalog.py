"""`petalnet models` (models/catalog.py): one row per network petalnet builds, with its size, cost and
where its weights are; and the networks themselves, built by name (models/networks.py) with a head
for the photos' classes."""

import json

import pytest
import torch

from conftest import cli
from petalnet.errors import UserError
from petalnet.models.catalog import format_table, model_row
from petalnet.models.names import MODEL_NAMES
from petalnet.models.networks import (architecture_has_depthwise_convs, build_model, count_parameters,
                                      has_depthwise_convs)

BUILT = {  # name: depthwise convolutions
    "resnet18": False, "mobilenet_v3_small": True, "efficientnet_lite0": True, "squeezenet1_1": False,
    "alexnet_half": False, "timm/convnext_atto": True,
}


@pytest.fixture(autouse=True)
def torch_home(tmp_path, monkeypatch):
    """An empty torch hub folder: no weights downloaded on this 'machine' yet."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"


@pytest.mark.parametrize("name", list(BUILT))
def test_networks_build_by_name_with_a_head_for_the_classes(name):
    model = build_model(name, 5).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 5)
    assert has_depthwise_convs(model) is BUILT[name]
    assert architecture_has_depthwise_convs(name) is BUILT[name]


def test_vit_takes_its_own_size_only_and_has_no_depthwise_convs():
    model = build_model("vit_b_32", 5).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 5)
    assert not has_depthwise_convs(model)


def test_timm_names_that_timm_lacks_are_a_user_error_naming_close_ones():
    with pytest.raises(UserError, match="timm has no architecture 'convnext_atoo'") as caught:
        build_model("timm/convnext_atoo", 5)
    assert "timm/convnext_atto" in str(caught.value)


def test_models_json_has_one_row_per_name(torch_home, capsys):
    assert cli("models", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(MODEL_NAMES)
    assert all(set(r) == {"name", "source", "parameters", "gflops", "image_size", "weights"} for r in rows)
    by_name = {r["name"]: r for r in rows}
    assert by_name["resnet18"] == {"name": "resnet18", "source": "torchvision", "parameters": 11_689_512,
                                   "gflops": pytest.approx(1.814, abs=0.001), "image_size": 224,
                                   "weights": "download"}
    assert by_name["efficientnet_lite0"]["source"] == "timm" and by_name["efficientnet_lite0"]["weights"] == "offline"
    assert by_name["alexnet_half"]["weights"] == by_name["alexnet_half_bn"]["weights"] == "-"
    assert by_name["vit_h_14"]["image_size"] == 518  # its weights' own size
    assert {r["weights"] for r in rows} == {"-", "offline", "download"}
    assert not torch_home.exists()  # listing downloads nothing


def test_counted_rows_agree_with_the_networks_and_torchvisions_own_figures():
    lite0 = model_row("efficientnet_lite0")
    assert lite0.parameters == count_parameters(build_model("efficientnet_lite0", 1000)) == 4_652_008
    assert lite0.gflops == pytest.approx(0.40, abs=0.02)  # multiply-adds, as torchvision counts them
    half = model_row("alexnet_half")
    assert half.parameters == count_parameters(build_model("alexnet_half", 1000))
    assert half.image_size == 224 and half.source == "petalnet"
    full = model_row("alexnet")  # torchvision's figure; the half-width one costs about a quarter of it
    assert 0.2 < half.gflops / full.gflops < 0.6


def test_a_downloaded_file_makes_the_weights_offline(torch_home):
    from petalnet.models.weights import find_weights

    assert model_row("resnet18").weights == "download"
    file = find_weights("resnet18", "imagenet").file
    (torch_home / "hub" / "checkpoints").mkdir(parents=True)
    open(file, "wb").close()
    assert model_row("resnet18").weights == "offline"


def test_the_table_has_a_line_per_model_and_the_timm_note(capsys):
    assert cli("models") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(MODEL_NAMES) + 2 and lines[0].split() == ["model", "source", "params", "GFLOPs",
                                                                         "size", "weights"]
    resnet = next(line for line in lines if line.startswith("resnet18 "))
    assert resnet.split() == ["resnet18", "torchvision", "11.7M", "1.81", "224", "download"]
    assert "timm/NAME" in lines[-1]
    assert format_table([]).count("\n") == 1
