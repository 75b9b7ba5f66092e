"""Multi-label training: a labels column (or --task multilabel) trains a sigmoid a class, splits by iterative
stratification, picks best.pt by val mAP and stores each class's best-F1 threshold; resume is exact."""

import dataclasses
import json
from collections import Counter

import numpy as np
import pytest
import torch

from conftest import SMALL, cli
from imagegen import make_mosaics
from petalnet import train
from petalnet.data.sources import open_data
from petalnet.data.split import make_split, split_label_sets
from petalnet.inference.multilabel import average_precision, best_f1_thresholds, label_mask, multi_hot
from petalnet.models.checkpoint import load_checkpoint
from petalnet.config.run import RunFolder
from petalnet.training.multilabel import MultiLabelLoss, asymmetric_loss


@pytest.fixture(scope="module")
def mosaics(made_photos, tmp_path_factory):
    """80 mosaics of the made photos labelled with their classes, no split column."""
    folder = tmp_path_factory.mktemp("mosaics")
    make_mosaics(made_photos, folder, 80)
    return folder / "labels.csv"


@pytest.fixture(scope="module")
def multilabel_run(mosaics, tmp_path_factory):
    run = tmp_path_factory.mktemp("ml") / "run"
    assert cli("train", "--data", mosaics, "--out", run, *SMALL, "--epochs", "2") == 0
    return run


def test_a_labels_column_trains_a_multilabel_run_picked_by_val_map(multilabel_run, capsys):
    lines = (multilabel_run / "metrics.csv").read_text().splitlines()
    assert lines[0].endswith(",val_map") and len(lines) == 3
    rows = [dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]
    best_row = max(rows, key=lambda row: float(row["val_map"]))
    best = load_checkpoint(multilabel_run / "best.pt")
    assert best.spec.task == "multilabel" and len(best.spec.thresholds) == 5
    assert all(0 <= t <= 1 for t in best.spec.thresholds) and best.epoch == int(best_row["epoch"])
    config = json.loads((multilabel_run / "config.json").read_text())
    assert config["task"] == "multilabel" and config["multilabel_loss"] == "bce" and config["layout"] == "manifest"
    split = json.loads((multilabel_run / "split.json").read_text())
    assert split["multilabel"] and all(isinstance(labels, list) for _, labels in split["train"])


def test_the_split_keeps_each_classs_share_of_val_near_the_fraction(mosaics):
    split = make_split(open_data(mosaics), val_fraction=0.25, seed=0, progress=False)
    assert split.multilabel and len(split.val) == pytest.approx(20, abs=3)
    train, val = (Counter(label for _, labels in split.part(part) for label in labels) for part in ("train", "val"))
    for label in range(5):
        assert val[label] / (train[label] + val[label]) == pytest.approx(0.25, abs=0.08)
    again = make_split(open_data(mosaics), val_fraction=0.25, seed=0, progress=False)
    assert again == split and make_split(open_data(mosaics), 0.25, seed=1, progress=False).val != split.val


def test_iterative_stratification_keeps_units_whole_and_mixed_units_in_train():
    label_sets = [(0,), (0, 1), (1,), (1,), (0, 1), (2,), (2,), (0,), (1, 2), (1, 2)] * 3
    keys = [f"k{i}" for i in range(len(label_sets))]
    keys[0] = keys[1] = "shared"  # a unit whose photos differ in labels: train
    keys[2] = keys[3] = "pair"  # the same labels: one side, together
    train_idx, val_idx = split_label_sets(label_sets, keys, 3, 0.3, seed=0)
    assert sorted(train_idx + val_idx) == list(range(len(label_sets)))
    assert 0 in train_idx and 1 in train_idx and (2 in val_idx) == (3 in val_idx)
    for label in range(3):
        share = sum(label in label_sets[i] for i in val_idx) / sum(label in labels for labels in label_sets)
        assert share == pytest.approx(0.3, abs=0.12)


def test_resume_equals_the_uninterrupted_run(multilabel_run, mosaics, tmp_path):
    config = RunFolder(multilabel_run).read_record().config
    run = tmp_path / "again"
    train(mosaics, run, config=dataclasses.replace(config, epochs=1), device="cpu", progress=False, log=lambda _: None)
    assert cli("train", "--out", run, "--resume", "--epochs", "2", "--device", "cpu") == 0
    a, b = ((path / "metrics.csv").read_text().splitlines() for path in (run, multilabel_run))
    timing = [i for i, name in enumerate(a[0].split(","))
              if name in ("epoch_seconds", "train_images_per_s", "elapsed_s")]
    assert [[v for i, v in enumerate(line.split(",")) if i not in timing] for line in a] == \
           [[v for i, v in enumerate(line.split(",")) if i not in timing] for line in b]
    thresholds = [load_checkpoint(path / "best.pt").spec.thresholds for path in (run, multilabel_run)]
    assert thresholds[0] == thresholds[1]


def test_class_folders_train_as_multilabel_when_asked(made_photos, tmp_path):
    lines = []
    train(made_photos, tmp_path / "run", recipe="seed", device="cpu", progress=False, log=lines.append,
          overrides={"model": "resnet9", "image_size": 32, "epochs": 1, "task": "multilabel", "multilabel_loss": "asl"})
    assert any("val_map" in line for line in lines)
    assert load_checkpoint(tmp_path / "run" / "best.pt").spec.task == "multilabel"


@pytest.mark.parametrize("args,said", [
    (["--task", "single"], "--task single needs one class a photo"),
    (["--mixup-alpha", "0.2"], "multilabel does not take --mixup-alpha"),
])
def test_what_multilabel_cannot_take_is_one_line(mosaics, tmp_path, capsys, args, said):
    assert cli("train", "--data", mosaics, "--out", tmp_path / "run", *SMALL, *args) == 2
    err = capsys.readouterr().err
    assert said in err and err.count("\n") == 1 and not (tmp_path / "run").exists()


def test_losses_and_masks():
    masks = torch.tensor([label_mask((0, 2)), label_mask(()), label_mask((1,))])
    targets = multi_hot(masks, 3)
    assert targets.tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0]]
    logits = torch.randn(3, 3)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / 3
    assert MultiLabelLoss("bce")(logits, masks).item() == pytest.approx(bce.item(), rel=1e-6)
    plain = asymmetric_loss(logits, targets, gamma_neg=0, gamma_pos=0, clip=0).sum() / 3
    assert plain.item() == pytest.approx(bce.item(), rel=1e-5)
    assert MultiLabelLoss("asl")(logits, masks).item() < bce.item()  # easy negatives weigh less
    smoothed = MultiLabelLoss("bce", label_smoothing=0.2)(logits, masks)
    soft = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets * 0.8 + 0.1, reduction="sum") / 3
    assert smoothed.item() == pytest.approx(soft.item(), rel=1e-6)


def test_average_precision_and_thresholds_against_brute_force():
    rng = np.random.default_rng(0)
    scores, positives = rng.random(40), rng.random(40) < 0.3
    ranks = np.argsort(-scores)
    hits = np.cumsum(positives[ranks])
    brute = np.mean([hits[k] / (k + 1) for k in range(40) if positives[ranks][k]])
    assert average_precision(scores, positives) == pytest.approx(brute)
    assert average_precision(scores, np.zeros(40, bool)) is None
    (threshold,) = best_f1_thresholds(scores[:, None], positives[:, None])
    f1 = [2 * ((scores >= t) & positives).sum() / ((scores >= t).sum() + positives.sum()) for t in scores]
    given = scores >= threshold
    assert 2 * (given & positives).sum() / (given.sum() + positives.sum()) == pytest.approx(max(f1))


def test_a_split_column_is_kept_and_split_json_reads_back(made_photos, tmp_path):
    """A multi-label manifest with a split column: its val rows are val, and split.json round-trips (a
    multi-label run's own val is what evaluate scores without --data)."""
    from petalnet.data.split import Split

    rows = make_mosaics(made_photos, tmp_path, 12, split=lambda k: "val" if k < 3 else "test" if k == 3 else "train")
    split = make_split(open_data(tmp_path / "labels.csv"), progress=False)
    assert [path for path, _ in split.val] == [row[0] for row in rows[:3]] and len(split.test) == 1
    assert split.val_fraction is None and split.multilabel
    assert Split.from_dict(json.loads(json.dumps(split.to_dict()))) == split


def test_top_losses_of_a_multilabel_model_are_its_summed_binary_cross_entropies(multilabel_run, tmp_path, capsys):
    assert cli("evaluate", multilabel_run, "--top-losses", "4", "--json", "--out", tmp_path / "e") == 0
    report = json.loads(capsys.readouterr().out)
    rows = report["top_losses"]
    assert len(rows) == 4 and "confused_pairs" not in report
    for row in rows:
        p = np.array([row["probs"][c] for c in report["classes"]])
        given = np.array([c in row["given"] for c in report["classes"]])
        bce = -(np.log(np.where(given, p, 1 - p))).sum()
        assert row["loss"] == pytest.approx(bce, rel=1e-3) and set(row["predicted"]) <= set(report["classes"])
    assert [r["loss"] for r in rows] == sorted((r["loss"] for r in rows), reverse=True)
    assert (tmp_path / "e" / "top_losses.png").is_file()
