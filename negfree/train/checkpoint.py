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
``kill-in-save@N`` SIGKILLs it in the middle of writing the checkpoint of step N.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import torch

from ..io import atomic_write_text


class Preempted(RuntimeError):
    """SIGTERM arrived; a checkpoint was saved at ``step``. Rerun the same command to resume."""

    def __init__(self, step: int, path: Path):
        super().__init__(f"preempted (SIGTERM) after step {step}; checkpoint {path}; "
                         f"rerun the same command to resume")
        self.step, self.path = step, path


def fault(point: str, step: int) -> None:
    """``NEGFREE_FAULT=<kind>@<step>``: kill (SIGKILL) or term (SIGTERM, handled like a
    Slurm preemption) at the point ``kill`` after the backward passes of that step;
    ``kill-in-save`` SIGKILLs in the middle of writing that step's checkpoint."""
    spec = os.environ.get("NEGFREE_FAULT", "")
    if not spec:
        return
    if point == "kill" and spec == f"term@{step}":
        os.kill(os.getpid(), signal.SIGTERM)
    elif spec == f"{point}@{step}":
        os.kill(os.getpid(), signal.SIGKILL)


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
        """Every process calls this (FSDP/ZeRO-3 states are sharded); the main one renames."""
        name = f"step-{step:06d}"
        tmp = self.root / f".{name}.tmp"
        if self.acc.is_main_process and tmp.exists():
            shutil.rmtree(tmp)
        self.acc.wait_for_everyone()
        # every process writes its own shard (FSDP's sharded state dict): the directory must exist for all
        tmp.mkdir(parents=True, exist_ok=True)
        self.acc.wait_for_everyone()
        self.acc.save_state(str(tmp), safe_serialization=True)
        self.acc.wait_for_everyone()   # each process's RNG state is its last file: all written before the rename
        if self.acc.is_main_process:
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
        self.acc.wait_for_everyone()
        return self.root / name

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
