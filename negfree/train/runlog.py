"""Per-step metrics (JSONL, appended and flushed every step) and run provenance."""
from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

import torch


class MetricsLog:
    """One JSON object per optimizer step, appended and flushed. A resumed run keeps the
    rows of the steps its checkpoint covers and drops the rest, so the file ends up as
    if the run had never stopped."""

    def __init__(self, path: Path, keep_steps: int = 0, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if keep_steps and self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:   # a line cut by a kill
                    continue
                if row.get("step", 0) <= keep_steps:
                    kept.append(line + "\n")
        self.path.write_text("".join(kept))

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()

    @staticmethod
    def peak_memory_mb() -> float:
        if torch.cuda.is_available():
            return round(torch.cuda.max_memory_allocated() / 2**20, 1)
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)   # Linux: KiB


def git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("negfree", "torch", "transformers", "accelerate", "lm-eval", "snakemake"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    return {
        "git_commit": git_commit(), "python": sys.version.split()[0], "versions": versions,
        "platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "argv": sys.argv,
    }
