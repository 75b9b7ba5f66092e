"""Crashes mid-training: SIGKILL at random moments, Ctrl-C, a full or read-only disk."""

import errno
import os
import random
import signal
import subprocess
import sys
import threading

import pytest
import torch

from conftest import SMALL, SMALL_SIZE, cli, shown
from petalnet.models.checkpoint import load_checkpoint

EPOCHS = "5"  # the SIGKILL test kills 3 tries, each within its first epoch: 2 or more epochs are left
TIMING = ("epoch_seconds", "train_images_per_s", "elapsed_s")


def train_command(data, run, resume=False):
    args = [sys.executable, "-m", "petalnet", "train", "--out", str(run), "--epochs", EPOCHS]
    if resume:
        return args + ["--resume"]
    return args + ["--data", str(data), *SMALL, "--batch-size", "16"]


def child_env():
    return {**os.environ, "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}


def learned_metrics(run):
    lines = (run / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    keep = [i for i, name in enumerate(header) if name not in TIMING]
    return [[line.split(",")[i] for i in keep] for line in lines[1:]]


def check_checkpoints(run, printed_epochs):
    """best.pt and last.pt load whenever they exist; last.pt has every epoch the log announced."""
    for name in ("best.pt", "last.pt"):
        if (run / name).exists():
            assert torch.load(run / name, weights_only=True)["format"] == "petalnet"
            load_checkpoint(run / name)
    if printed_epochs:
        assert load_checkpoint(run / "last.pt").epoch >= max(printed_epochs)


def printed(stdout):
    return [int(line.split()[1].split("/")[0]) for line in stdout.splitlines() if line.startswith("epoch ")]


@pytest.fixture(scope="module")
def uninterrupted(made_photos, tmp_path_factory):
    run = tmp_path_factory.mktemp("whole") / "run"
    done = subprocess.run(train_command(made_photos, run), capture_output=True, text=True, env=child_env(),
                          timeout=300)
    assert done.returncode == 0, shown(done)
    return run


def test_sigkill_at_random_moments_then_resume_ends_like_an_uninterrupted_run(made_photos, uninterrupted, tmp_path):
    run, rng = tmp_path / "run", random.Random(5)
    # Each try is killed at a random moment of its first epoch (or of its decoding, its validation or its
    # save), and at the latest when it prints that epoch: three tries add at most three of the 5 epochs, so
    # every try is killed, however fast or loaded the machine is.
    lines = (uninterrupted / "metrics.csv").read_text().splitlines()
    column = lines[0].split(",").index("epoch_seconds")
    epoch_s = sum(float(line.split(",")[column]) for line in lines[1:]) / (len(lines) - 1)
    for _ in range(3):
        started = (run / "last.pt").exists() or (run / "config.json").exists()
        child = subprocess.Popen(train_command(made_photos, run, resume=started), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=child_env())
        seen, training, epoch_printed = [], threading.Event(), threading.Event()

        def read(out=child.stdout, seen=seen, training=training, epoch_printed=epoch_printed):
            for line in out:  # training starts after the "model ..." line
                seen.append(line)
                if line.startswith("model "):
                    training.set()
                if line.startswith("epoch "):
                    epoch_printed.set()
            training.set()

        reader = threading.Thread(target=read)
        reader.start()
        training.wait(timeout=120)
        epoch_printed.wait(timeout=rng.uniform(0.0, 1.5 * epoch_s))  # mid-epoch, mid-validation or mid-save
        child.send_signal(signal.SIGKILL)  # a try that ended already fails below, its stderr shown
        child.wait(timeout=120)
        reader.join()
        stderr = child.stderr.read()
        ended = subprocess.CompletedProcess(child.args, child.returncode, "".join(seen), stderr)
        assert child.returncode == -signal.SIGKILL, shown(ended)
        assert "Traceback" not in stderr, shown(ended)
        check_checkpoints(run, printed(ended.stdout))
    done = subprocess.run(train_command(made_photos, run, resume=True), capture_output=True, text=True,
                          env=child_env(), timeout=300)
    assert done.returncode == 0, shown(done)
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
    assert learned_metrics(run) == learned_metrics(uninterrupted)
    resumed, whole = load_checkpoint(run / "last.pt").weights, load_checkpoint(uninterrupted / "last.pt").weights
    assert all(torch.equal(resumed[name], whole[name]) for name in whole)


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(made_photos, tmp_path):
    run = tmp_path / "run"
    # A suite started as a shell's background job inherits SIGINT ignored: give the child Ctrl-C back.
    child = subprocess.Popen(train_command(made_photos, run), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=child_env(),
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in child.stdout:
        if line.startswith("epoch "):
            child.send_signal(signal.SIGINT)
            break
    stdout, stderr = child.communicate(timeout=120)
    ended = subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)
    assert child.returncode == 130, shown(ended)
    assert "Traceback" not in stderr, shown(ended)
    assert f"petalnet train --out {run} --resume" in stderr, shown(ended)
    assert load_checkpoint(run / "last.pt").epoch >= 1


@pytest.fixture()
def disk_fails_after(monkeypatch):
    """Make the n-th torch.save from now write half a file and then fail as a full disk does."""

    def arm(calls, code=errno.ENOSPC):
        real_save, count = torch.save, {"n": 0}

        def failing_save(obj, path, *args, **kwargs):
            count["n"] += 1
            if count["n"] >= calls:
                with open(path, "wb") as f:
                    f.write(b"PK\x03\x04 half a checkpoint")
                raise OSError(code, os.strerror(code), str(path))
            return real_save(obj, path, *args, **kwargs)

        monkeypatch.setattr(torch, "save", failing_save)

    return arm


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_full_or_read_only_disk_stops_with_one_line_and_keeps_earlier_checkpoints(
        made_photos, tmp_path, capsys, disk_fails_after, code):
    run = tmp_path / "run"
    disk_fails_after(3, code)  # epoch 1 saves best.pt and last.pt; the third save is epoch 2's
    assert cli("train", "--data", made_photos, "--out", run, "--epochs", "3", "--image-size", SMALL_SIZE,
               "--device", "cpu") == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and os.strerror(code) in err and "holds epoch 1" in err
    assert load_checkpoint(run / "last.pt").epoch == 1 and load_checkpoint(run / "best.pt").epoch == 1
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders anyway")
def test_really_read_only_output_folder(made_photos, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    run.chmod(0o555)
    try:
        code = cli("train", "--data", made_photos, "--out", run, "--epochs", "1", "--image-size", SMALL_SIZE)
    finally:
        run.chmod(0o755)
    assert code == 3 and "Permission denied" in capsys.readouterr().err
