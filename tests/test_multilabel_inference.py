"""Multi-label models in predict, evaluate, export and serve: label sets at per-class thresholds, sigmoids in
every format (torch_backend.py, onnx.py, backend.py), the --csv and --sort-into forms, the multi-label report
and picture, and one line when a model and its photos are of different kinds.

The model is a ResNet-9 saved without training: its head is set so that tulips (0.95, threshold 0.5) and
daisy (0.3, threshold 0.25) are given to every photo, dandelion (0.6, threshold 0.7) to none, and roses to
about half of them (random weights around 0.5, threshold 0.5)."""

import csv
import io
import json
import math
import os
import threading
import time

import numpy as np
import pytest
import torch

from conftest import cli
from test_serving_app import CHROMIUM, post_with
from imagegen import flower_image
from petalnet import load_classifier
from petalnet.inference.multilabel import multilabel_report

CLASSES = ("daisy", "dandelion", "roses", "tulips")
PROBS = {"daisy": 0.3, "dandelion": 0.6, "tulips": 0.95}  # every photo's; roses varies
THRESHOLDS = (0.25, 0.7, 0.5, 0.5)
ROSES = CLASSES.index("roses")
GIVEN = {"p0.jpg": "tulips;daisy", "p1.jpg": "roses", "p2.jpg": "", "p3.jpg": "tulips;roses;daisy",
         "p4.jpg": "dandelion;roses", "p5.jpg": "tulips;daisy;roses"}  # the manifest's label sets


def save_model(path, weights, task="multilabel", thresholds=THRESHOLDS):
    from petalnet.models.checkpoint import Checkpoint, save_checkpoint
    from petalnet.models.spec import InferenceSpec

    spec = InferenceSpec(model="resnet9", classes=CLASSES, image_size=32, task=task,
                         thresholds=thresholds if task == "multilabel" else None)
    save_checkpoint(path, Checkpoint(spec=spec, weights=weights, epoch=0, val_acc=0.0, config={"model": "resnet9"}))
    return path


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("multi") / "photos"
    folder.mkdir()
    for k, name in enumerate(GIVEN):
        flower_image(k % 5, 700 + k).save(folder / name, quality=92)
    return folder


@pytest.fixture(scope="module")
def models(photos, tmp_path_factory):
    """{"multi": the model above, "strict": the same with every threshold 0.99 (no photo gets a label),
    "single": the same weights as a single-label model}."""
    from petalnet.models.networks import build_model
    from petalnet.models.resnet9 import LOGIT_SCALE
    from petalnet.pipeline.preprocess import load_eval_photo, normalize_batch

    torch.manual_seed(0)
    net = build_model("resnet9", len(CLASSES)).eval()
    with torch.no_grad():
        net.fc.weight.zero_()
        net.fc.weight[ROSES] = torch.randn(net.fc.weight.shape[1]) * 50  # roses: the photo decides
        for name, p in PROBS.items():
            net.fc.bias[CLASSES.index(name)] = math.log(p / (1 - p)) / LOGIT_SCALE
        spec = type("Spec", (), {"image_size": 32, "eval_resize": "squash"})
        batch = torch.stack([load_eval_photo(p, spec) for p in sorted(photos.iterdir())])
        roses = net(normalize_batch(batch, (0.5,) * 3, (0.5,) * 3))[:, ROSES].sort().values
        gap = int((roses[1:] - roses[:-1]).argmax())  # roses' threshold (logit 0) in the widest gap between photos
        net.fc.bias[ROSES] = -(roses[gap] + roses[gap + 1]) / 2 / LOGIT_SCALE
    folder, weights = tmp_path_factory.mktemp("models"), net.state_dict()
    return {"multi": save_model(folder / "multi.pt", weights),
            "strict": save_model(folder / "strict.pt", weights, thresholds=(0.99,) * 4),
            "single": save_model(folder / "single.pt", weights, task="single")}


@pytest.fixture(scope="module")
def manifest(photos):
    path = photos.parent / "labels.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([("path", "labels"), *((f"photos/{name}", labels) for name, labels in GIVEN.items())])
    return path


def predicted(model, photos, capsys, *flags):
    """predict --json's records, by file name."""
    assert cli("predict", model, photos, "--json", "--device", "cpu", *flags) == 0
    return {os.path.basename(r["path"]): r for r in map(json.loads, capsys.readouterr().out.splitlines())}


def check_sets(records):
    """Every record: its labels are the classes at or above their thresholds, most probable first."""
    for record in records.values():
        assert set(record) == {"path", "labels", "probs"} and list(record["probs"]) == list(CLASSES)
        probs = record["probs"]
        given = [c for c, t in zip(CLASSES, THRESHOLDS) if probs[c] >= t]
        assert record["labels"] == sorted(given, key=lambda c: -probs[c])
        for name, p in PROBS.items():
            assert probs[name] == pytest.approx(p, abs=1e-5)  # sigmoids, not a softmax
    with_roses = sum("roses" in r["labels"] for r in records.values())
    assert 0 < with_roses < len(records)  # the photo decides


def test_predict_gives_each_photo_its_label_set(models, photos, capsys):
    records = predicted(models["multi"], photos, capsys)
    check_sets(records)
    assert {tuple(r["labels"]) for r in records.values()} == {("tulips", "roses", "daisy"), ("tulips", "daisy")}
    [record] = load_classifier(models["multi"], "cpu").predict(photos / "p0.jpg")  # the Python API
    assert record["path"] == str(photos / "p0.jpg") and record["labels"] == records["p0.jpg"]["labels"]
    assert record["probs"] == pytest.approx(records["p0.jpg"]["probs"], abs=1e-5)  # a batch of 1, not of 6
    assert cli("predict", models["multi"], photos / "p0.jpg", photos / "p1.jpg", "--device", "cpu") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{photos / 'p0.jpg'}  labels: tulips 0.950, ")
    assert cli("predict", models["strict"], photos / "p0.jpg", "--device", "cpu") == 0
    assert capsys.readouterr().out == f"{photos / 'p0.jpg'}  labels: none (most probable: tulips 0.950)\n"


def test_csv_sort_into_and_plot_of_label_sets(models, photos, tmp_path, capsys):
    table, out, plot, heat = tmp_path / "preds.csv", tmp_path / "sorted", tmp_path / "preds.png", tmp_path / "heat"
    records = predicted(models["multi"], photos, capsys, "--csv", table, "--sort-into", out, "--plot", plot,
                        "--explain", heat)
    header, *rows = csv.reader(io.StringIO(table.read_text(encoding="utf-8"), newline=""))
    assert header == ["path", "labels", *(f"probability_{c}" for c in CLASSES), "error"]
    for row in rows:
        record = records[os.path.basename(row[0])]
        assert row[1] == ";".join(record["labels"]) and row[-1] == ""
        assert [float(v) for v in row[2:-1]] == list(record["probs"].values())  # in full
    for name, record in records.items():  # a link in every folder of its labels, and only there
        holding = sorted(p.parent.name for p in out.rglob(name))
        assert holding == sorted(record["labels"]) and all(os.path.samefile(p, photos / name) for p in out.rglob(name))
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in heat.iterdir()) == [f"{k:04d}_p{k}_tulips.png" for k in range(6)]  # the top class
    assert cli("predict", models["strict"], photos, "--sort-into", tmp_path / "none", "--device", "cpu") == 0
    assert sorted(p.name for p in (tmp_path / "none" / "_none").iterdir()) == sorted(GIVEN)
    assert [p.name for p in (tmp_path / "none").iterdir()] == ["_none"]
    err = capsys.readouterr().err
    assert "sorted 6 photo(s) into" in err and "no label given; no label 6 (in _none/)" in err


def test_min_prob_is_refused_for_a_multilabel_model(models, photos, tmp_path, capsys):
    out = tmp_path / "sorted"
    assert cli("predict", models["multi"], photos, "--sort-into", out, "--min-prob", "0.5") == 2
    err = capsys.readouterr().err
    assert "--min-prob is for single-label models" in err and err.count("\n") == 1 and not out.exists()


def test_evaluate_reports_label_sets_on_a_manifest(models, photos, manifest, tmp_path, capsys):
    records = predicted(models["multi"], photos, capsys)
    out = tmp_path / "eval"
    assert cli("evaluate", models["multi"], "--data", manifest, "--out", out, "--device", "cpu") == 0
    lines = capsys.readouterr().out.splitlines()  # a short table
    assert lines[0].startswith("mAP ") and "on 6 photos, micro F1" in lines[0] and "Hamming loss" in lines[0]
    assert lines[2].split() == ["class", "AP", "precision", "recall", "f1", "threshold", "support"]
    assert [line.split()[0] for line in lines[3:7]] == list(CLASSES) and "precision_recall.png" in lines[-1]
    report = json.loads((out / "report.json").read_text())
    assert list(report) == ["task", "map", "micro_f1", "macro_f1", "subset_accuracy", "hamming_loss", "n",
                            "classes", "per_class", "most_wrong", "checkpoint", "data", "loss"]
    assert report["task"] == "multilabel" and report["n"] == 6 and report["classes"] == list(CLASSES)
    assert report["data"] == "labels"
    names = sorted(GIVEN)
    probs = np.array([list(records[n]["probs"].values()) for n in names])
    targets = np.array([[c in GIVEN[n].split(";") for c in CLASSES] for n in names], dtype=float)
    expected = multilabel_report(probs, targets, THRESHOLDS, CLASSES)
    for key in ("map", "micro_f1", "macro_f1", "subset_accuracy", "hamming_loss"):
        assert report[key] == pytest.approx(expected[key], abs=1e-6), key
    assert set(report["per_class"]["roses"]) == {"ap", "precision", "recall", "f1", "threshold", "support"}
    assert report["per_class"]["dandelion"]["support"] == 1 and report["per_class"]["roses"]["threshold"] == 0.5
    wrong = [(os.path.basename(m["path"]), m["wrong"]) for m in report["most_wrong"]]
    counts = [int(((probs[i] >= THRESHOLDS) != (targets[i] > 0)).sum()) for i in range(6)]
    assert sorted(n for n, _ in wrong) == sorted(n for n, c in zip(names, counts) if c)
    assert [w for _, w in wrong] == sorted((c for c in counts if c), reverse=True)
    worst = report["most_wrong"][0]
    assert worst["given"] == [c for c in CLASSES if c in GIVEN[os.path.basename(worst["path"])].split(";")]
    assert worst["predicted"] == records[os.path.basename(worst["path"])]["labels"]
    for picture in ("precision_recall.png", "mistakes.png"):
        assert (out / picture).read_bytes()[:4] == b"\x89PNG"
    assert not (out / "confusion.png").exists()
    header, *rows = csv.reader(io.StringIO((out / "predictions.csv").read_text(), newline=""))
    assert header == ["path", "given", "predicted", "wrong", *(f"probability_{c}" for c in CLASSES)]
    by_name = {os.path.basename(row[0]): row for row in rows}
    assert all(by_name[n][2] == ";".join(records[n]["labels"]) and int(by_name[n][3]) == c
               for n, c in zip(names, counts))
    run = tmp_path / "run"  # a multi-label run's own val photos: split.json's label sets
    run.mkdir()
    os.link(models["multi"], run / "best.pt")
    val = [[name, [CLASSES.index(c) for c in labels.split(";") if c]] for name, labels in GIVEN.items()]
    (run / "split.json").write_text(json.dumps({"source": str(photos), "classes": list(CLASSES), "train": [],
                                                "val": val, "val_fraction": 1.0, "seed": 0, "multilabel": True}))
    assert cli("evaluate", run, "--device", "cpu", "--json") == 0
    own = json.loads(capsys.readouterr().out)
    assert own == {k: v for k, v in report.items() if k not in ("checkpoint", "data", "loss")}  # as the manifest's


def test_a_model_and_photos_of_different_kinds_are_one_line(models, photos, manifest, tmp_path, capsys):
    single = tmp_path / "single.csv"
    single.write_text("path,label\n" + "".join(f"{photos / n},daisy\n" for n in GIVEN))
    cases = [(models["single"], manifest, "labels photos with sets of classes (a labels column) and the model is "
                                          "single-label"),
             (models["multi"], single, "the model is multi-label and"),
             (models["multi"], photos.parent, "the model is multi-label and")]  # class folders
    for model, data, says in cases:
        assert cli("evaluate", model, "--data", data, "--out", tmp_path / "e", "--device", "cpu",
                   "--allow-paths-outside") == 2
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1, err
    assert not (tmp_path / "e").exists()


def test_onnx_export_carries_the_task_and_predicts_the_same_sets(models, photos, tmp_path, capsys):
    out = tmp_path / "multi.onnx"
    assert cli("export", models["multi"], "--out", out, "--check-photos", photos) == 0
    assert "parity on 6 real photos" in capsys.readouterr().out
    sidecar = json.loads((tmp_path / "multi.onnx.json").read_text())
    assert sidecar["task"] == "multilabel" and sidecar["thresholds"] == list(THRESHOLDS)
    from_checkpoint, from_onnx = predicted(models["multi"], photos, capsys), predicted(out, photos, capsys)
    check_sets(from_onnx)
    for name, record in from_checkpoint.items():
        assert from_onnx[name]["labels"] == record["labels"]
        assert from_onnx[name]["probs"] == pytest.approx(record["probs"], abs=0.01)  # Pillow vs torch resize
        assert abs(record["probs"]["roses"] - 0.5) > 0.02  # not a close call
    from petalnet.inference.quantize import agreement

    spec = load_classifier(out).spec
    logits = np.array([[0.0, 0.0, 0.1, 3.0], [0.0, 0.0, -0.1, 3.0]], dtype=np.float32)
    assert agreement(logits, logits[::-1].copy(), spec)[0] == 0.0  # the roses decision differs on both rows
    assert agreement(logits, logits + 0.01, spec) == (1.0, pytest.approx(0.0025, abs=5e-4))


@pytest.fixture(scope="module")
def serving(models):
    """`petalnet serve` of the multi-label model in this process (uvicorn in a thread): its URL."""
    import uvicorn

    from petalnet.serving.app import create_app
    from petalnet.serving.settings import ServeSettings
    from server_process import free_port

    port = free_port()
    running = uvicorn.Server(uvicorn.Config(create_app(models["multi"], ServeSettings(device="cpu")),
                                            host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not running.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert running.started
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True
    thread.join(10)


def test_serve_predict_returns_the_label_set(serving, models, photos):
    from petalnet.serving.client import get_json, post_photos

    info = get_json(serving + "/model")[1]
    assert info["task"] == "multilabel" and info["thresholds"] == list(THRESHOLDS)
    status, body = post_photos(serving, [(n, (photos / n).read_bytes()) for n in ("p0.jpg", "p1.jpg")], explain=True)
    assert status == 200
    expected = load_classifier(models["multi"], "cpu").predict([photos / "p0.jpg", photos / "p1.jpg"])
    for got, want in zip(body["predictions"], expected):
        assert set(got) == {"path", "labels", "probs", "heatmap"} and got["labels"] == want["labels"]
        assert got["probs"] == pytest.approx(want["probs"], abs=1e-6)
    status, body = post_photos(serving, [("p0.jpg", (photos / "p0.jpg").read_bytes())], topk=1)
    assert status == 200 and len(body["predictions"][0]["probs"]) == 4  # topk does not apply
    status, body = post_with(serving, photos / "p0.jpg", "min_prob=0.5")
    assert status == 422 and "min_prob is for single-label models" in body["detail"]


@pytest.mark.slow  # a browser starts
@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium; .ci/run installs it)")
def test_the_web_page_shows_the_label_set(serving, photos):
    from petalnet.serving.client import post_photos

    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(serving + "/")
            page.wait_for_function("document.getElementById('about').textContent.includes('multi-label')")
            page.set_input_files("#picker", str(photos / "p0.jpg"))
            page.wait_for_selector(".card .bars .bar", timeout=30_000)
            shown, hidden = page.inner_text(".card .label"), page.is_hidden("#controls")
            given = page.locator(".card .bar.given .cls").all_inner_texts()
            bars, ticks = page.locator(".card .bar").count(), page.locator(".card .bar .tick").count()
        finally:
            browser.close()
    labels = post_photos(serving, [("p0.jpg", (photos / "p0.jpg").read_bytes())])[1]["predictions"][0]["labels"]
    assert shown == ", ".join(labels) and given == labels  # the set, its bars marked, most probable first
    assert bars == ticks == len(CLASSES) and hidden  # every class with its threshold; no min_prob box
