"""models/tutorial.py: the tutorial's own AlexNet.pth + class_indices.json, read as a checkpoint with no
conversion step: predict gives the tutorial's predict.py probabilities; evaluate, export and
`train --init` take the folder too."""

import functools
import json
import shutil

import pytest
import torch
from PIL import Image

from conftest import CLASSES, cli
from petalnet.models.checkpoint import load_checkpoint
from petalnet.models.networks import build_model


def write_tutorial_folder(folder, classes=CLASSES, outputs=5):
    """What the tutorial's train.py leaves: the half-width AlexNet's state dict and the class file.

    The last layer is scaled up so that the probabilities differ from photo to photo (a fresh init's are
    all near 1/5, which any preprocessing would match), not so far that a grey level of resizing
    difference (Pillow's vs torch's bilinear) moves them by 2e-3: x30 keeps that under 1e-3, while a
    center crop instead of the tutorial's squash moves them by over 2e-2."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = build_model("alexnet_half", outputs)
    with torch.no_grad():
        model.classifier[6].weight.mul_(30)
    torch.save(model.state_dict(), folder / "AlexNet.pth")
    (folder / "class_indices.json").write_text(json.dumps({str(i): c for i, c in enumerate(classes)}, indent=4))
    return folder


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory):
    return write_tutorial_folder(tmp_path_factory.mktemp("tutorial") / "Test2_alexnet")


def tutorial_predict(folder, *photos):
    """The tutorial's predict.py, for several photos at once: one {class: probability} per photo."""
    from torchvision import transforms

    data_transform = transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor(),
                                         transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
    img = torch.stack([data_transform(Image.open(photo).convert("RGB")) for photo in photos])
    class_indict = json.loads((folder / "class_indices.json").read_text())
    with torch.no_grad():
        predict = torch.softmax(tutorial_model(folder)(img), dim=1)
    return [{class_indict[str(i)]: p[i].item() for i in range(len(p))} for p in predict]


@functools.lru_cache(maxsize=2)
def tutorial_model(folder):
    model = build_model("alexnet_half", 5)
    model.load_state_dict(torch.load(folder / "AlexNet.pth", weights_only=True))
    return model.eval()


def predicted(capsys, model, photos):
    assert cli("predict", model, *photos, "--json", "--topk", "5", "--device", "cpu") == 0
    lines = capsys.readouterr().out.splitlines()
    return [{t["class"]: t["prob"] for t in json.loads(line)["top"]} for line in lines]


def test_the_folder_reads_as_a_checkpoint_with_the_tutorials_transform(tutorial):
    for path in (tutorial, tutorial / "AlexNet.pth"):
        ckpt = load_checkpoint(path)
        spec = ckpt.spec
        assert spec.model == "alexnet_half" and spec.classes == tuple(CLASSES)
        assert spec.image_size == 224 and spec.eval_resize == "squash" and not spec.tta_flip
        assert tuple(spec.mean) == tuple(spec.std) == (0.5, 0.5, 0.5)


def test_predict_gives_the_tutorials_probabilities(tutorial, sample_photos, capsys):
    ours = predicted(capsys, tutorial, sample_photos)
    theirs = tutorial_predict(tutorial, *sample_photos)
    for photo, a, b in zip(sample_photos, ours, theirs):
        assert set(a) == set(CLASSES)
        assert all(abs(a[c] - b[c]) <= 2e-3 for c in CLASSES), (photo, a, b)
    spread = [max(b.values()) - min(b.values()) for b in theirs]
    assert min(spread) > 0.05  # the probabilities say something: a wrong transform would show
    assert max(abs(theirs[0][c] - theirs[1][c]) for c in CLASSES) > 0.01  # and differ from photo to photo


def test_the_class_file_decides_which_output_is_which_class(tutorial, sample_photos, tmp_path, capsys):
    shuffled = tmp_path / "shuffled"
    shutil.copytree(tutorial, shuffled)
    order = ["tulips", "daisy", "sunflowers", "dandelion", "roses"]
    (shuffled / "class_indices.json").write_text(json.dumps({str(i): c for i, c in enumerate(order)}, indent=4))
    plain = predicted(capsys, tutorial, sample_photos[:1])[0]
    renamed = predicted(capsys, shuffled, sample_photos[:1])[0]
    for i, name in enumerate(order):
        assert renamed[name] == pytest.approx(plain[CLASSES[i]], abs=1e-6)


@pytest.mark.slow
def test_evaluate_scores_the_folder_like_the_tutorial_would(tutorial, made_photos, tmp_path, capsys):
    out = tmp_path / "eval"
    assert cli("evaluate", tutorial, "--data", made_photos, "--json", "--out", out, "--device", "cpu") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 100 and report["classes"] == CLASSES and (out / "report.json").is_file()
    theirs = [[0] * 5 for _ in CLASSES]
    photos = sorted(made_photos.rglob("*.jpg"))
    for photo, probs in zip(photos, tutorial_predict(tutorial, *photos)):
        theirs[CLASSES.index(photo.parent.name)][CLASSES.index(max(probs, key=probs.get))] += 1
    assert len({c for row in theirs for c, n in enumerate(row) if n}) >= 2  # not one class for every photo
    differ = sum(abs(a - b) for row_a, row_b in zip(report["confusion"], theirs) for a, b in zip(row_a, row_b))
    assert differ <= 4, (report["confusion"], theirs)  # at most 2 near-ties decided the other way


@pytest.mark.slow
def test_export_writes_an_onnx_that_predicts_like_the_folder(tutorial, made_photos, sample_photos, tmp_path, capsys):
    out = tmp_path / "tutorial.onnx"
    assert cli("export", tutorial, "--format", "onnx", "--out", out, "--check-photos", made_photos) == 0
    assert "parity on" in capsys.readouterr().out
    meta = json.loads(out.with_name(out.name + ".json").read_text())
    assert meta["model"] == "alexnet_half" and meta["eval_resize"] == "squash" and meta["image_size"] == 224
    assert meta["classes"] == CLASSES and meta["mean"] == meta["std"] == [0.5, 0.5, 0.5]
    onnx = predicted(capsys, out, sample_photos[:3])
    for photo, a, b in zip(sample_photos, onnx, tutorial_predict(tutorial, *sample_photos[:3])):
        assert all(abs(a[c] - b[c]) <= 2e-3 for c in CLASSES), (photo, a, b)


def test_export_without_check_photos_names_the_flag_to_pass(tutorial, tmp_path, capsys):
    assert cli("export", tutorial, "--format", "onnx", "--out", tmp_path / "t.onnx") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--check-photos" in err, err  # export has no --data
    assert not (tmp_path / "t.onnx").exists()


@pytest.mark.parametrize("content, said", [
    (json.dumps({str(i): c for i, c in enumerate(CLASSES[:4])}, indent=4), "names 4 classes but AlexNet.pth has 5"),
    ('{"0": "daisy", "2": "roses"}', "must map the indices 0..N-1"),
    ("[daisy", "cannot read"),
])
def test_a_class_file_that_does_not_fit_is_one_line(tutorial, sample_photos, tmp_path, capsys, content, said):
    broken = tmp_path / "broken"
    shutil.copytree(tutorial, broken)
    (broken / "class_indices.json").write_text(content)
    assert cli("predict", broken, sample_photos[0], "--device", "cpu") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and said in err, err


@pytest.fixture(scope="module")
def init_run(tutorial, made_photos, tmp_path_factory):
    """One epoch of `train --init` from the tutorial's folder, at a learning rate too small to move it."""
    run = tmp_path_factory.mktemp("init") / "run"
    assert cli("train", "--init", tutorial, "--data", made_photos, "--out", run, "--epochs", "1", "--image-size", "64",
               "--recipe", "seed", "--lr", "1e-9", "--device", "cpu") == 0
    return run


@pytest.mark.slow
def test_train_init_starts_from_the_tutorials_weights(init_run, tutorial):
    config = json.loads((init_run / "config.json").read_text())
    assert config["init"] == str(tutorial) and config["model"] == "alexnet_half" and config["pretrained"] == "none"
    assert config["mean"] == config["std"] == [0.5, 0.5, 0.5]
    start = torch.load(tutorial / "AlexNet.pth", weights_only=True)
    best = torch.load(init_run / "best.pt", weights_only=True)["model"]
    assert start.keys() == best.keys()
    for key in start:
        assert torch.allclose(best[key], start[key], atol=1e-5), key
    torch.manual_seed(1)
    assert not torch.allclose(build_model("alexnet_half", 5).state_dict()["features.0.weight"],
                              best["features.0.weight"], atol=1e-3)


@pytest.mark.slow
def test_train_init_from_a_run_with_other_classes_is_refused_before_anything_is_written(init_run, tmp_path, capsys):
    from imagegen import make_flower_folders

    four = make_flower_folders(tmp_path / "four", CLASSES[:4], 10)
    run = tmp_path / "run"
    assert cli("train", "--init", init_run, "--data", four, "--out", run, "--epochs", "1", "--image-size", "64",
               "--recipe", "seed", "--device", "cpu") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "trained on the classes daisy, dandelion" in err, err
    assert "not daisy, dandelion, roses, sunflowers (in this order)" in err, err
    assert not run.exists(), sorted(p.name for p in run.iterdir())  # exit 2: nothing was written (errors.py)
