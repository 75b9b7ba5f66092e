"""torchrun: two CPU processes (gloo) train one run; rank 0 writes; metrics cover every val photo."""

import json
import subprocess
import sys

import pytest

from conftest import SMALL_SIZE, cli
from petalnet.runs import RUN_FILES


def torchrun(*args, timeout=300):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "petalnet", "train", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env={**__import__("os").environ, "TQDM_DISABLE": "1"})


def metric_rows(run):
    lines = (run / "metrics.csv").read_text().splitlines()
    return [dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]


@pytest.fixture(scope="module")
def ddp_run(few_photos, tmp_path_factory):
    run = tmp_path_factory.mktemp("ddp") / "run"
    done = torchrun("--data", few_photos, "--out", run, "--recipe", "seed", "--epochs", "2", "--image-size", SMALL_SIZE,
                    "--batch-size", "8", "--device", "cpu")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    return run, done


def test_two_processes_train_one_run(ddp_run):
    run, done = ddp_run
    config = json.loads((run / "config.json").read_text())
    assert config["processes"] == 2 and config["num_train"] == 90 and config["num_val"] == 10
    assert {p.name for p in run.iterdir()} >= set(RUN_FILES)
    assert not [p for p in run.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]
    assert done.stdout.count("epoch   1/2") == 1  # rank 0 alone prints
    assert len(metric_rows(run)) == 2


def test_val_metrics_are_over_every_val_photo(ddp_run, capsys):
    run, _ = ddp_run
    rows = metric_rows(run)
    best = max(rows, key=lambda r: float(r["val_acc"]))
    assert cli("evaluate", run, "--json", "--out", run.parent / "eval") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 10
    assert report["accuracy"] == pytest.approx(float(best["val_acc"]), abs=1e-6)
    saved = json.loads((run.parent / "eval" / "report.json").read_text())
    assert saved["loss"] == pytest.approx(float(best["val_loss"]), abs=2e-4)


def test_resume_under_torchrun_continues_the_run(ddp_run):
    run, _ = ddp_run
    before = metric_rows(run)
    done = torchrun("--out", run, "--resume", "--epochs", "3")
    assert done.returncode == 0, done.stderr[-2000:]
    after = metric_rows(run)
    assert len(after) == 3 and after[:2] == before
    assert "resuming at epoch 3/3" in done.stdout
