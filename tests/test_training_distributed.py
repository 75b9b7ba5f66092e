"""torchrun: two CPU processes (gloo) train one run; rank 0 writes; metrics cover every val photo; no
thread outlives the run; a process that dies is named in one line and the run resumes."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import SMALL, cli, shown
from imagegen import make_mosaics
from petalnet.models.checkpoint import load_checkpoint
from petalnet.devices.distributed import Processes, on_rank0, share_buffers
from petalnet.errors import UserError
from petalnet.training.ranklogs import PeerStopped, RankLog, Terminated, log_path
from petalnet.config.run import RUN_FILES

ENTRY = Path(__file__).with_name("torchrun_entry.py")  # `python -m petalnet`, then the threads left


def torchrun_command(*args):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(ENTRY),
            "train", *map(str, args)]


def child_env():
    return {**os.environ, "TQDM_DISABLE": "1"}


def torchrun(*args, timeout=300):
    return subprocess.run(torchrun_command(*args), capture_output=True, text=True, timeout=timeout, env=child_env())


def metric_rows(run):
    lines = (run / "metrics.csv").read_text().splitlines()
    return [dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]


@pytest.fixture(scope="module")
def ddp_run(made_photos, tmp_path_factory):
    run = tmp_path_factory.mktemp("ddp") / "run"
    done = torchrun("--data", made_photos, "--out", run, *SMALL, "--epochs", "2", "--batch-size", "8")
    assert done.returncode == 0, shown(done)
    assert "Traceback" not in done.stderr, shown(done)
    return run, done


def test_two_processes_train_one_run(ddp_run):
    run, done = ddp_run
    config = json.loads((run / "config.json").read_text())
    assert config["processes"] == 2 and config["num_train"] == 90 and config["num_val"] == 10
    assert {p.name for p in run.iterdir()} >= set(RUN_FILES)
    assert not [p for p in run.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]
    assert done.stdout.count("epoch   1/2") == 1, shown(done)  # rank 0 alone prints
    assert len(metric_rows(run)) == 2


def test_no_process_group_thread_outlives_train(ddp_run):
    """The cause of the SIGABRT one run in eight: gloo's threads were still alive while Python shut down,
    and one that finished its last collective then died taking the GIL (distributed.py)."""
    _, done = ddp_run
    left = [line for line in done.stderr.splitlines() if "threads after main" in line]
    if not left:
        pytest.skip("no /proc/PID/task on this system: threads cannot be listed")
    assert len(left) == 2 and not any("gloo" in line for line in left), shown(done)


def test_val_metrics_are_over_every_val_photo(ddp_run, capsys):
    run, _ = ddp_run
    rows = metric_rows(run)
    best = max(rows, key=lambda r: float(r["val_acc"]))
    assert cli("evaluate", run, "--json", "--out", run.parent / "eval", "--device", "cpu") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n"] == 10
    assert report["accuracy"] == pytest.approx(float(best["val_acc"]), abs=1e-6)
    saved = json.loads((run.parent / "eval" / "report.json").read_text())
    assert saved["loss"] == pytest.approx(float(best["val_loss"]), abs=2e-4)


def test_resume_under_torchrun_continues_the_run_a_rank_that_dies_is_named_and_it_resumes_again(ddp_run):
    """ddp_run resumed for epochs 3 and 4; rank 1 killed (SIGABRT) once epoch 3 is saved: the survivor names
    it in one line that says how to resume."""
    run, _ = ddp_run
    before = metric_rows(run)
    child = subprocess.Popen(torchrun_command("--out", run, "--resume", "--epochs", "4"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=child_env())
    deadline = time.monotonic() + 240
    while len(metric_rows(run)) < 3:  # epoch 3 is saved (metrics.csv is written last): rank 1 is in epoch 4
        assert child.poll() is None and time.monotonic() < deadline, shown(subprocess.CompletedProcess(
            child.args, child.returncode, *child.communicate()))
        time.sleep(0.05)
    log = run / "logs" / "rank-1.log"
    pid = int(re.findall(r"pid (\d+)", log.read_text())[-1])  # the log is appended to by each resume
    os.kill(pid, signal.SIGABRT)
    ended = subprocess.CompletedProcess(child.args, None, *child.communicate(timeout=240))
    ended.returncode = child.returncode
    assert "resuming at epoch 3/4" in ended.stdout, shown(ended)
    after = metric_rows(run)
    assert after[:2] == before and [int(row["epoch"]) for row in after] == [1, 2, 3]
    ours = [line for line in ended.stderr.splitlines() if line.startswith("petalnet: error:")]
    assert child.returncode != 0 and len(ours) == 1, shown(ended)
    epoch = load_checkpoint(run / "last.pt").epoch
    assert f"rank 1 of 2 (pid {pid}) died of SIGABRT" in ours[0], shown(ended)
    assert f"its log: {log}; last.pt holds epoch {epoch}" in ours[0], shown(ended)
    assert f"-m petalnet train --out {run} --resume" in ours[0], shown(ended)
    assert "Fatal Python error: Aborted" in log.read_text()  # with each thread's Python stack
    # (resuming after a stop to the run's end: the two-machine test below)


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def write_rank_log(run, rank, world, *lines, pid):
    path = log_path(run, rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"petalnet rank {rank} of {world}: pid {pid} on {socket.gethostname()}, started 2026-12-01T00:00:00"
    path.write_text("\n".join([header, *lines]) + "\n")


def stop_seen_by(run, rank, world, error):
    rank_log = RankLog(Processes(rank=rank, world=world))
    rank_log.open(run, resume=True)
    try:
        return rank_log.stopped(error)
    finally:
        rank_log.close()


def test_rank_0s_value_or_the_error_it_met_and_its_buffers_are_what_every_rank_gets():
    """on_rank0 and share_buffers in a process group: this process as rank 0 of 2 in torch's fake group (its
    collectives keep rank 0's data), so the paths a torchrun run takes run here without a launch."""
    import torch.distributed as dist
    from torch.testing._internal.distributed.fake_pg import FakeStore

    dist.init_process_group("fake", rank=0, world_size=2, store=FakeStore())
    try:
        processes = Processes(rank=0, world=2)
        assert on_rank0(lambda: {"epochs": 3}, processes) == {"epochs": 3}

        def unreadable():
            raise UserError("runs/x holds no run to resume")

        with pytest.raises(UserError, match="runs/x holds no run to resume"):  # raised on every rank
            on_rank0(unreadable, processes)
        norm = torch.nn.BatchNorm1d(2)
        norm.running_mean += 1.0
        share_buffers(norm, processes)
        assert torch.equal(norm.running_mean, torch.ones(2))  # rank 0's own, kept
    finally:
        dist.destroy_process_group()


def test_the_line_says_how_the_first_process_ended(tmp_path):
    """Without torchrun: rank logs as dead processes leave them, read by a survivor (rank 0 of 4)."""
    run = tmp_path / "run"
    write_rank_log(run, 1, 4, "stopped after another process: rank 2 of 4 ...", pid=os.getpid())  # not blamed
    write_rank_log(run, 2, 4, "epoch   1/9 ...", "stopped: UserError: cannot read a.jpg", pid=os.getpid())
    write_rank_log(run, 3, 4, "epoch   1/9 ...", pid=dead_pid())
    stop = stop_seen_by(run, 0, 4, Terminated())
    assert isinstance(stop, PeerStopped) and stop.exit_code == 4 and not stop.quiet
    assert str(stop).startswith(f"rank 2 of 4 (pid {os.getpid()}) stopped with an error: UserError: cannot read a.jpg;")
    assert f"its log: {log_path(run, 2)}; last.pt holds no finished epoch; continue with: torchrun" in str(stop)
    log_path(run, 2).unlink()
    assert "rank 3 of 4 (pid" in str(stop_seen_by(run, 0, 4, Terminated()))
    assert "died without a word: killed from outside (SIGKILL" in str(stop_seen_by(run, 0, 4, Terminated()))
    write_rank_log(run, 3, 4, "Fatal Python error: Segmentation fault", "", "Current thread ...", pid=dead_pid())
    assert "rank 3 of 4 (pid" in str(stop_seen_by(run, 0, 4, RuntimeError("Connection closed by peer [::1]:4")))
    assert "died of SIGSEGV (Segmentation fault)" in str(stop_seen_by(run, 0, 4, Terminated()))
    assert "stopped after another process: rank 3 of 4" in log_path(run, 0).read_text()


def test_the_lowest_survivor_speaks_and_an_own_error_stays_its_own(tmp_path):
    run = tmp_path / "run"
    write_rank_log(run, 0, 3, pid=os.getpid())  # alive: rank 0 speaks, rank 1 stays quiet
    write_rank_log(run, 2, 3, "Fatal Python error: Aborted", pid=dead_pid())
    assert stop_seen_by(run, 1, 3, Terminated()).quiet
    write_rank_log(run, 0, 3, pid=dead_pid())
    assert not stop_seen_by(run, 1, 3, Terminated()).quiet
    alone = tmp_path / "alone"
    write_rank_log(alone, 1, 2, pid=os.getpid())
    assert stop_seen_by(alone, 0, 2, ValueError("a bug of this process")) is None  # raised as it is
    assert "stopped: ValueError: a bug of this process" in log_path(alone, 0).read_text()
    terminated = stop_seen_by(alone, 0, 2, Terminated())
    assert str(terminated).startswith("rank 0 of 2 stopped: SIGTERM")


def test_sigterm_raises_while_the_log_is_open_and_not_after(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    rank_log = RankLog(Processes(rank=0, world=2))
    rank_log.open(tmp_path / "run")
    try:
        with pytest.raises(Terminated):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    finally:
        rank_log.close()
    assert signal.getsignal(signal.SIGTERM) is before
    assert RankLog(Processes()).stopped(Terminated()) is None  # a single process keeps no rank log


def test_a_sigterm_while_the_stop_line_is_made_does_not_interrupt_it(tmp_path, monkeypatch):
    """torchrun sends SIGTERM to the survivors once a process died; when a collective has already failed, it
    arrives while the survivor reads the logs and last.pt to make its line (CI saw a traceback from inside
    torch.load there): from then on it is ignored, and the line is said."""
    import petalnet.training.ranklogs as ranklogs

    def slow_line(run, processes, error):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-way, as torchrun's does
        time.sleep(0.2)
        return PeerStopped("rank 1 of 2 died of SIGABRT")

    monkeypatch.setattr(ranklogs, "_peer_stopped", slow_line)
    before = signal.getsignal(signal.SIGTERM)
    rank_log = RankLog(Processes(rank=0, world=2))
    rank_log.open(tmp_path / "run")
    try:
        stop = rank_log.stopped(RuntimeError("Connection closed by peer"))
    finally:
        rank_log.close()
    assert isinstance(stop, PeerStopped) and "died of SIGABRT" in str(stop)
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_pretrained_multilabel_run_with_a_frozen_start_trains_under_torchrun(made_photos, tmp_path):
    """efficientnet_lite0 from its offline weights on mosaics labelled with their classes (a labels column:
    multi-label): the head alone in epoch 1, then the body too. DDP is wrapped anew when the trainable
    parameters change; val's sigmoids are gathered from both ranks for mAP and the thresholds."""
    run = tmp_path / "ft"
    make_mosaics(made_photos, tmp_path / "mosaics", 40)
    done = torchrun("--data", tmp_path / "mosaics" / "labels.csv", "--out", run, "--recipe", "finetune", "--epochs",
                    "2", "--image-size", "64", "--eval-image-size", "64", "--batch-size", "8", "--device", "cpu")
    assert done.returncode == 0, shown(done)
    assert done.stdout.count("pretrained: ImageNet EfficientNet-Lite0") == 1, shown(done)
    assert len(metric_rows(run)) == 2
    last = load_checkpoint(run / "last.pt")
    assert last.config["head_epochs"] == 1 and last.spec.model == "efficientnet_lite0"
    assert last.spec.task == "multilabel" and len(last.spec.thresholds) == 5 and "val_map" in metric_rows(run)[0]
    split = json.loads((run / "split.json").read_text())
    assert json.loads((run / "config.json").read_text())["num_val"] == len(split["val"]) and split["multilabel"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine_command(node, port, *args):
    """One of two "machines" on this one: its own torchrun launcher, address 127.0.0.(node + 1) (c10d gives
    rank 0 to the first address in sorted order), joining through a c10d rendezvous that machine 0 hosts
    (is_host: otherwise whichever launcher binds the port first hosts it, and stopping that one would
    also stop the other's rendezvous)."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={node}",
            "--nproc_per_node=1", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
            f"--rdzv-conf=is_host={int(node == 0)}", f"--local-addr=127.0.0.{node + 1}", "--rdzv-id=petalnet-test",
            str(ENTRY), "train", *map(str, args)]


def start_machines(per_machine):
    """Two launchers, per_machine[n] the train arguments of machine n; returns their Popen objects. Each
    process computes with one thread, as torchrun sets for ddp_run's two processes on one machine: with two,
    float sums split differently and metrics may differ in their last digits."""
    port = free_port()
    env = {**child_env(), "OMP_NUM_THREADS": "1"}
    return [subprocess.Popen(machine_command(node, port, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env) for node, args in enumerate(per_machine)]


def finished(child, timeout=300):
    out, err = child.communicate(timeout=timeout)
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


def machine_args(made_photos, out, cache, *more):
    """What each machine is told: its own run folder and cache folder (nothing shared), the store on disk
    (--cache-memory below the photos' size, above one batch's)."""
    return ["--data", made_photos, "--out", out, *SMALL, "--batch-size", "8",
            "--device", "cpu", "--cache-dir", cache, "--cache-memory", "0.0005", *more]


def without_timings(rows):
    return [{k: v for k, v in row.items() if k not in ("epoch_seconds", "train_images_per_s", "elapsed_s")}
            for row in rows]


TWO_ADDRESSES = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                   reason="needs 127.0.0.2 (Linux answers on all of 127.0.0.0/8)")


@TWO_ADDRESSES
def test_two_machines_sharing_no_folder_train_as_one_machine_with_two_processes_and_resume_after_a_stop(
        made_photos, ddp_run, tmp_path):
    """Each machine decodes only its rank's share into its own cache folder, and the run's metrics equal
    those of one machine running two processes (ddp_run: the same settings, photos in memory): the same
    ranks get the same shares, draws and batches, and gloo's sum of two numbers does not depend on order.
    Once epoch 2 is saved, machine 1 is stopped (SIGTERM to its launcher, as a job system stops a node):
    both stop with one line each, and the two resume the run to its end."""
    per_machine = [machine_args(made_photos, tmp_path / f"run{n}", tmp_path / f"cache{n}", "--epochs", "4")
                   for n in range(2)]
    children, run, other = start_machines(per_machine), tmp_path / "run0", tmp_path / "run1"
    deadline = time.monotonic() + 240
    while len(metric_rows(run) if (run / "metrics.csv").is_file() else []) < 2:  # both are in epoch 3
        assert all(c.poll() is None for c in children) and time.monotonic() < deadline, \
            shown(finished(children[0])) + shown(finished(children[1]))
        time.sleep(0.05)
    children[1].send_signal(signal.SIGTERM)
    done = [finished(child) for child in children]
    lines = [[line for line in machine.stderr.splitlines() if line.startswith("petalnet: error:")] for machine in done]
    assert all(machine.returncode != 0 for machine in done) and [len(found) for found in lines] == [1, 1], \
        shown(done[0]) + shown(done[1])
    assert lines[0][0].startswith("petalnet: error: rank 0 of 2 lost contact with another process"), shown(done[0])
    assert lines[1][0].startswith("petalnet: error: rank 1 of 2 stopped: SIGTERM"), shown(done[1])
    epoch = load_checkpoint(run / "last.pt").epoch
    assert f"last.pt holds epoch {epoch}" in lines[0][0]
    assert "read from disk" in done[0].stdout, shown(done[0])
    assert [p.name for p in other.iterdir()] == ["logs"]  # machine 1 wrote its rank log only
    for n in range(2):
        (store,) = [p for p in (tmp_path / f"cache{n}").iterdir() if p.is_dir()]
        index = torch.load(store / "index.pt", weights_only=True)
        assert len(index["parts"]["train"]["labels"]) == 45 and len(index["parts"]["val"]["labels"]) == 5
    resumed = [finished(child) for child in start_machines([[*args, "--resume"] for args in per_machine])]
    assert all(machine.returncode == 0 for machine in resumed), shown(resumed[0]) + shown(resumed[1])
    assert f"resuming at epoch {epoch + 1}/4" in resumed[0].stdout, shown(resumed[0])
    rows = metric_rows(run)
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3, 4]
    one_machine = metric_rows(ddp_run[0])[:2]  # (a test above resumes ddp_run: its first two epochs stay)
    assert without_timings(rows[:2]) == without_timings(one_machine)  # seed's learning rate is constant
