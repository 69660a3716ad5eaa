"""Checkpoint, resume and preemption: what lets a run continue bit for bit.

Layout inside a run directory::

    checkpoints/step-000012/   accelerate state (model, optimizer, scheduler, RNG of every
                               process) + trainer_state.json (step, config hash) + log_u.pt
    checkpoints/latest         one line naming the newest complete checkpoint

A checkpoint is written under a temporary name and renamed into place once
complete; only then does ``latest`` move (atomically). A job killed at any
moment, mid-save included, leaves the previous checkpoint as the newest
complete one. The data position needs no state of its own: the order of
examples is a pure function of (seed, epoch), so the step number fixes it.

Slurm preemption sends SIGTERM. :class:`StopFlag` records it; the loop finishes
the step it is in, saves a checkpoint and raises :class:`Preempted`, which the
CLI turns into exit status 143 so Snakemake's retry (or a requeue) starts the
same command again, which resumes.

Fault injection for the tests (and for anyone who wants to see resume work):
``NEGFREE_FAULT=kill@N`` SIGKILLs the process after the backward passes of step
N, before its optimizer update; ``term@N`` sends SIGTERM at the same point;
``kill-in-save@N`` SIGKILLs it in the middle of writing the checkpoint of step N;
``enospc@N`` raises ENOSPC at that same point, as a full disk would.

A full disk (or quota) while writing a checkpoint ends the run with one line naming the
checkpoint and the space it needs and has (:class:`negfree.common.io.DiskFull`); the partial
directory is removed and ``latest`` still names the previous checkpoint, so freeing space and
rerunning resumes from there. :class:`RunLock` keeps a second copy of a run (a Slurm requeue
while the first still writes) out of its directory.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
import socket
import time
from pathlib import Path

import torch

from negfree.common.io import DiskFull, atomic_write_text, dir_bytes, free_bytes, human_bytes, is_disk_full


class Preempted(RuntimeError):
    """SIGTERM arrived; a checkpoint was saved at ``step``. Rerun the same command to resume."""

    def __init__(self, step: int, path: Path):
        super().__init__(f"preempted (SIGTERM) after step {step}; checkpoint {path}; "
                         f"rerun the same command to resume")
        self.step, self.path = step, path


def fault(point: str, step: int) -> None:
    """``NEGFREE_FAULT=<kind>@<step>``: kill (SIGKILL) or term (SIGTERM, handled like a
    Slurm preemption) at the point ``kill`` after the backward passes of that step;
    ``kill-in-save`` SIGKILLs in the middle of writing that step's checkpoint, ``enospc``
    raises ENOSPC there (a full disk)."""
    spec = os.environ.get("NEGFREE_FAULT", "")
    if not spec:
        return
    if point == "kill" and spec == f"term@{step}":
        os.kill(os.getpid(), signal.SIGTERM)
    elif point == "kill-in-save" and spec == f"enospc@{step}":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    elif spec == f"{point}@{step}":
        os.kill(os.getpid(), signal.SIGKILL)


_STATE_FACTOR = 3   # a checkpoint holds the weights and Adam's two moments, each the weights' size


def _save_errors() -> tuple:
    """What a failed checkpoint write raises: any Exception, and FSDP's sharded save wraps the
    failures of every process in a CheckpointException, which is a BaseException."""
    try:
        from torch.distributed.checkpoint.api import CheckpointException
    except ImportError:
        return (Exception,)
    return (Exception, CheckpointException)


class RunLocked(RuntimeError, OSError):
    """Another launch holds the run directory. An OSError too, so the CLI reports it in one line."""

    def __str__(self) -> str:
        return self.args[0]


class RunLock:
    """One launch at a time per run directory: an exclusive, non-blocking ``flock`` on
    ``<out_dir>/.lock``, held while the run lives. A Slurm requeue can start a second copy of a
    run while the first still writes; that copy stops with one line naming the holder.

    The kernel drops the lock when its process dies (SIGKILL, node reboot aside), so a killed run
    never leaves it stale, and the file is never deleted (deleting a lock file lets two runs hold
    locks on two different files). flock is local to one machine on some network filesystems:
    NFSv4 (Linux >= 2.6.12 emulates it with byte-range locks) and Lustre mounted with ``flock``
    make it cluster-wide; Lustre's ``localflock`` or no option does not (``mount | grep lustre``).

    Only the first process of a launch takes it (``accelerator``: the main process, whose result
    every process learns, so all stop together); one process of this Python holding it already
    makes a second RunLock on the same directory a no-op (a train() retried in one process).
    ``with RunLock(d):`` or ``lock = RunLock(d).acquire()``: the lock lives as long as the object."""

    _held: dict[str, list] = {}   # realpath of the lock file -> [fd, holders] in this process

    def __init__(self, out_dir: str | Path, accelerator=None):
        self.out_dir = Path(out_dir)
        self.acc = accelerator
        self.key: str | None = None

    def acquire(self) -> "RunLock":
        main = self.acc is None or self.acc.is_main_process
        refused = self._take() if main else None
        if self.acc is not None and self.acc.num_processes > 1:
            flag = torch.tensor([1.0 if refused else 0.0], device=self.acc.device)
            if float(self.acc.reduce(flag, "sum")) > 0 and not refused:
                refused = f"{self.out_dir} is held by another run (the first process says by whom)"
        if refused:
            self.release()
            raise RunLocked(refused)
        return self

    def _take(self) -> str | None:
        """Lock the file; the refusal line when another process holds it."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / ".lock"
        key = os.path.realpath(path)
        if key in self._held:
            self._held[key][1] += 1
            self.key = key
            return None
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            try:
                who = path.read_text().strip() or "unknown"
            except OSError:
                who = "unknown"
            return (f"{self.out_dir} is held by another run ({who}); a second copy of a run (a Slurm requeue "
                    f"while the first still writes) would corrupt it: wait for that one, or scancel it and rerun")
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()} since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n".encode())
        self._held[key] = [fd, 1]
        self.key = key
        return None

    def release(self) -> None:
        key, self.key = self.key, None
        held = self._held.get(key) if key else None
        if held is None:
            return
        held[1] -= 1
        if held[1] == 0:
            del self._held[key]
            os.close(held[0])   # closing drops the flock

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> bool:
        self.release()
        return False

    def __del__(self):   # train() holds it in a local: released when that returns, even without a with
        try:
            self.release()
        except Exception:   # interpreter shutdown: the process exit drops the lock anyway
            pass


class StopFlag:
    """Set by SIGTERM (Slurm preemption, scancel); the loop checks it once per step."""

    def __init__(self):
        self.set = False
        self._old = None

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:   # not the main thread (e.g. inside a test runner thread): no handler
            self._old = None
        return self

    def _handle(self, signum, frame):
        self.set = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)
        return False


class Checkpoints:
    def __init__(self, run_dir: Path, accelerator, keep: int = 1):
        self.root = Path(run_dir) / "checkpoints"
        self.acc = accelerator
        self.keep = max(1, int(keep))
        self.resumed_from: Path | None = None   # the checkpoint load() restored

    def latest(self) -> Path | None:
        pointer = self.root / "latest"
        if not pointer.exists():
            return None
        path = self.root / pointer.read_text().strip()
        return path if (path / "trainer_state.json").exists() else None

    def save(self, step: int, config_hash: str, log_u: torch.Tensor | None) -> Path:
        """Every process calls this (FSDP/ZeRO-3 states are sharded); the main one renames.
        A write that fails on any process (a full disk above all) fails on every process, so
        none waits at a barrier for it; the partial directory goes and ``latest`` stays."""
        name = f"step-{step:06d}"
        tmp = self.root / f".{name}.tmp"
        if self.acc.is_main_process and tmp.exists():
            shutil.rmtree(tmp)
        self.acc.wait_for_everyone()
        # every process writes its own shard (FSDP's sharded state dict): the directory must exist for all
        tmp.mkdir(parents=True, exist_ok=True)
        self.acc.wait_for_everyone()
        failure = None
        try:
            self.acc.save_state(str(tmp), safe_serialization=True)
        except _save_errors() as err:
            failure = err
        self._agree(failure, tmp, name)   # also the barrier: each process's RNG state is its last file
        if self.acc.is_main_process:
            try:
                if log_u is not None:
                    torch.save(log_u, tmp / "log_u.pt")
                (tmp / "trainer_state.json").write_text(json.dumps({"step": step, "config_hash": config_hash,
                                                                    "processes": self.acc.num_processes}))
                fault("kill-in-save", step)
                final = self.root / name
                if final.exists():
                    shutil.rmtree(final)
                os.replace(tmp, final)
                atomic_write_text(self.root / "latest", name + "\n")
                self._prune(keep_name=name)
            except Exception as err:
                failure = err
        self._agree(failure, tmp, name)
        return self.root / name

    def _agree(self, failure: BaseException | None, tmp: Path, name: str) -> None:
        """A collective: returns on every process when none failed, else every process raises
        (a full disk as one DiskFull line) once the main one has removed ``tmp``."""
        full = failure is not None and is_disk_full(failure, tmp)
        counts = [float(full), float(failure is not None and not full)]
        if self.acc.num_processes > 1:
            counts = self.acc.reduce(torch.tensor(counts, device=self.acc.device), "sum").tolist()
        if not any(counts):
            return
        if self.acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        if counts[0]:
            raise DiskFull(self._disk_full_message(name)) from failure
        if failure is not None:
            raise failure
        raise RuntimeError(f"writing checkpoint {self.root / name} failed on another process (its log has the "
                           f"error); {self.root / 'latest'} still names the previous checkpoint")

    def _disk_full_message(self, name: str) -> str:
        """What the checkpoint needs: the size of the previous one, else the parameters' bytes
        times _STATE_FACTOR (weights and Adam's two moments); what the filesystem has free."""
        prev = self.latest()
        need = dir_bytes(prev) if prev else _STATE_FACTOR * sum(
            p.numel() * p.element_size() for m in getattr(self.acc, "_models", []) for p in m.parameters())
        kept = f"{prev} is kept for the resume" if prev else "there is no earlier checkpoint to resume from"
        return (f"no space left on device writing {self.root / name}: the checkpoint needs ~{human_bytes(need)}, "
                f"{human_bytes(free_bytes(self.root))} free; {kept}; free some space and rerun")

    def candidates(self) -> list[Path]:
        """Complete checkpoints: the one ``latest`` names first, then the others newest first."""
        done = sorted((p for p in self.root.glob("step-*") if (p / "trainer_state.json").exists()), reverse=True)
        first = self.latest()
        return ([first] if first else []) + [p for p in done if p != first]

    def load(self, config_hash: str) -> tuple[int, torch.Tensor | None] | None:
        """Restore the newest readable checkpoint. One that cannot be read (a truncated weights
        file, a garbled state) is named and the previous one is tried; with none left, the run
        stops naming the unreadable one rather than silently starting over."""
        from safetensors import SafetensorError

        bad = []
        for path in self.candidates():
            try:
                state = json.loads((path / "trainer_state.json").read_text())
                step, saved_hash = int(state["step"]), state["config_hash"]
            except (OSError, ValueError, KeyError, TypeError) as err:
                bad.append((path, f"trainer_state.json: {err}"))
                continue
            if saved_hash != config_hash:
                raise ValueError(f"{path}: this checkpoint was made with a different training config; "
                                 f"remove {self.root} or use another out_dir")
            saved = state.get("processes", 1)
            if saved != self.acc.num_processes:
                # sharded optimizer states and per-process RNG streams do not map onto another process count
                raise ValueError(f"{path}: this checkpoint was written by {saved} process(es), this run has "
                                 f"{self.acc.num_processes}; resume with {saved} GPUs (the experiment's "
                                 f"launch section) or remove {self.root} to start over")
            try:
                self.acc.load_state(str(path))
                log_u = torch.load(path / "log_u.pt") if (path / "log_u.pt").exists() else None
            except (OSError, ValueError, RuntimeError, EOFError, KeyError, SafetensorError) as err:
                # load_state restores model, optimizer, scheduler and RNG in turn: an earlier
                # good checkpoint then overwrites whatever this half-read one restored
                bad.append((path, f"{type(err).__name__}: {' '.join(str(err).split())}"))
                continue
            for b, why in bad:
                self.acc.print(f"[train] checkpoint {b} is unreadable ({why}); resuming from {path} instead")
            self.resumed_from = path
            return step, log_u
        if bad:
            b, why = bad[0]
            raise ValueError(f"checkpoint {b} is unreadable ({why}) and there is no earlier readable one; "
                             f"remove {self.root} to start the run over")
        return None

    def _prune(self, keep_name: str) -> None:
        done = sorted(p for p in self.root.glob("step-*") if p.is_dir())
        for p in done[:-self.keep]:
            if p.name != keep_name:
                shutil.rmtree(p, ignore_errors=True)
        for p in self.root.glob(".step-*.tmp"):   # left by a process killed mid-save
            shutil.rmtree(p, ignore_errors=True)

    def clear(self) -> None:
        if self.acc.is_main_process:
            shutil.rmtree(self.root, ignore_errors=True)
