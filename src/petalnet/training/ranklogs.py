"""Under torchrun: a log file per process, and one clear line when a process of the run dies.

    RUN/logs/rank-K.log   rank K's pid and host, its lines (rank 0 prints them too), the error it stopped
                          with, and Python's fault handler's stacks if a signal kills it (SIGABRT, SIGSEGV)

A process that dies cannot say so itself. The others learn it from a collective that fails ("Connection
closed by peer") or from the SIGTERM torchrun sends them; the lowest-ranked survivor then reads the others'
logs and raises PeerStopped, whose one line names the rank, how it ended, where its log is, which epoch
last.pt holds, and the command that resumes the run.
"""

import faulthandler
import os
import signal
import socket
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import torch.distributed as dist

from petalnet.config.run import RunFolder
from petalnet.errors import UserError
from petalnet.errors import one_line

HEADER = "petalnet rank"
OWN_ERROR = "stopped:"  # this process's own error ended it
AFTER_PEER = "stopped after another process:"  # it stopped because another one had
FATAL = "Fatal Python error: "  # how faulthandler starts its dump
SIGNALS = {"Aborted": "SIGABRT", "Segmentation fault": "SIGSEGV", "Floating point exception": "SIGFPE",
           "Bus error": "SIGBUS", "Illegal instruction": "SIGILL"}  # faulthandler's words for each signal


class PeerStopped(UserError):
    """Another process of a torchrun run stopped first, so this one stops too (exit 4). The lowest-ranked
    survivor prints the line; in the others it is `quiet` (written to their logs only)."""

    exit_code = 4
    quiet = False


class Terminated(BaseException):
    """SIGTERM reached this process (torchrun sends it when another process of the run has died)."""


def log_path(run, rank):
    return Path(run) / "logs" / f"rank-{rank}.log"


class RankLog:
    """This process's log under torchrun (nothing at all for a single process).

    Once open: lines written to it, Python's fault handler writing into it, and SIGTERM raising
    Terminated in the main thread (so that the process can say what happened) instead of killing it.
    """

    def __init__(self, processes):
        self.processes, self.run, self.file = processes, None, None
        self.fault_handler_was_on, self.previous_sigterm = False, None

    def open(self, run, resume=False):
        if not self.processes.active:
            return
        self.run, path = Path(run), log_path(run, self.processes.rank)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a" if resume else "w", buffering=1, encoding="utf-8")
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.write(f"{HEADER} {self.processes.rank} of {self.processes.world}: pid {os.getpid()} on "
                   f"{socket.gethostname()}, started {started}")
        self.fault_handler_was_on = faulthandler.is_enabled()
        faulthandler.enable(file=self.file, all_threads=True)
        if threading.current_thread() is threading.main_thread():
            self.previous_sigterm = signal.signal(signal.SIGTERM, _raise_terminated)

    def write(self, line):
        if self.file is not None:
            self.file.write(f"{line}\n")

    def stopped(self, error):
        """Log that this process stops with `error`. Returns the PeerStopped to raise instead when another
        process of the run has ended (or torchrun's SIGTERM came, or a collective lost its peer), else None.

        The process is stopping already: torchrun's SIGTERM, which often comes while the line is being made
        (when a collective saw the peer die first), is ignored from here on instead of raising Terminated
        into the middle of it (close() restores the handler)."""
        if self.file is None:
            return None
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop = _peer_stopped(self.run, self.processes, error)
        if stop is None:
            self.write(f"{OWN_ERROR} {type(error).__name__}: {one_line(error)[:300]}")
            return None
        self.write(f"{AFTER_PEER} {stop}")
        stop.quiet = any(_running(self.run, rank) for rank in range(self.processes.rank))
        return stop

    def close(self):
        if self.file is None:
            return
        if self.previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self.previous_sigterm)
        faulthandler.disable()
        if self.fault_handler_was_on:
            faulthandler.enable(file=sys.stderr, all_threads=True)
        self.file.close()
        self.file = None


def _raise_terminated(signum, frame):
    raise Terminated()


def is_lost_peer_error(error):
    """True for the errors a collective raises when another process is gone."""
    text = str(error)
    return isinstance(error, dist.DistError) or "Connection closed by peer" in text or "Connection reset" in text


def _peer_stopped(run, processes, error):
    others = [rank for rank in range(processes.world) if rank != processes.rank]
    culprits = [rank for rank in others if _ended(run, rank, own_fault=True)]
    me, world = processes.rank, processes.world
    resume = f"; last.pt holds {_saved_epoch(run)}; continue with: {_resume_command(run)}"
    if culprits:
        return PeerStopped(f"rank {culprits[0]} of {world} {_how_it_ended(run, culprits[0])}; its log: "
                           f"{log_path(run, culprits[0])}{resume}")
    if isinstance(error, Terminated):
        return PeerStopped(f"rank {me} of {world} stopped: SIGTERM (from torchrun when another process died, or "
                           f"from the job system); logs in {Path(run) / 'logs'}{resume}")
    if is_lost_peer_error(error):
        return PeerStopped(f"rank {me} of {world} lost contact with another process ({one_line(error)[:120]}); "
                           f"logs in {Path(run) / 'logs'}{resume}")
    return None


def _last_section(run, rank):
    """This attempt's part of rank's log: from its last header on ('' when there is none)."""
    try:
        text = log_path(run, rank).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    start = text.rfind(HEADER)
    return text[start:] if start >= 0 else ""


def _pid(section):
    words = section.split()
    try:
        return int(words[words.index("pid") + 1])
    except (ValueError, IndexError):
        return None


def _running(run, rank):
    """Whether rank's process is known to run still (its log is here and says nothing of an end); a rank on
    another machine whose log this one cannot see is not known to run, so this one speaks."""
    return bool(_last_section(run, rank)) and not _ended(run, rank)


def _ended(run, rank, own_fault=False):
    """Whether rank's process has ended (own_fault: by its own error, a signal or a kill, not after another's)."""
    section = _last_section(run, rank)
    if not section:
        return False
    lines = section.splitlines()
    if any(line.startswith((OWN_ERROR, FATAL)) for line in lines):
        return True
    if any(line.startswith(AFTER_PEER) for line in lines):
        return not own_fault
    pid, same_host = _pid(section), f" on {socket.gethostname()}," in lines[0]
    return pid is not None and same_host and not _alive(pid)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead, only not yet reaped by torchrun
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[-1][:1] != "Z"
    except OSError:
        return True


def _how_it_ended(run, rank):
    section = _last_section(run, rank)
    pid = _pid(section)
    who = f"(pid {pid}) " if pid else ""
    for line in section.splitlines():
        if line.startswith(OWN_ERROR):
            return f"{who}stopped with an error: {line[len(OWN_ERROR):].strip()}"
        if line.startswith(FATAL):
            words = line[len(FATAL):].strip()
            return f"{who}died of {SIGNALS.get(words, 'a fatal signal')} ({words})"
    return f"{who}died without a word: killed from outside (SIGKILL; the out-of-memory killer does that)"


def _saved_epoch(run):
    from petalnet.models.checkpoint import saved_epoch

    epoch = saved_epoch(RunFolder(run).last)
    return "no finished epoch" if epoch is None else f"epoch {epoch}"


def _resume_command(run):
    local, world = os.environ.get("LOCAL_WORLD_SIZE"), os.environ.get("WORLD_SIZE")
    launcher = f"torchrun --nproc_per_node={local}" if local and local == world else "torchrun (the same options)"
    return f"{launcher} -m petalnet train --out {run} --resume"
