"""Training run directories under results/runs/, read into data.

A run directory is what negfree.train.loop.train leaves: config.json, metrics.jsonl (each step's own
batch), perf.jsonl (per-step seconds and peak memory), probe.jsonl (the held-out probe set, from
step 0), timing.json and provenance.json. ``find_runs`` reads every run below a root (or a list of
run directories) into ``Run`` objects; a pipeline run (``init~sft`` or ``init~<experiment>.sft`` in
its path) knows the run it started from (``stage_one_dir``, ``pipeline_stages``). Nothing here
draws: the figures are negfree.report.training, the ledger negfree.report.claims.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


def _steps(rows: list[dict], key: str) -> list[tuple[int, float]]:
    return [(int(r["step"]), r[key]) for r in rows if key in r and r[key] is not None]


@dataclass
class Run:
    """One training run directory, as written by negfree.train.loop.train."""

    path: Path
    name: str
    method: str
    config: dict
    metrics: list[dict]
    perf: list[dict]
    timing: dict | None
    provenance: dict | None = None
    perf_source: str = "perf.jsonl"
    extra: dict = field(default_factory=dict)

    def series(self, key: str) -> list[tuple[int, float]]:
        """(step, value) for every metrics.jsonl row that has ``key`` (perf keys from perf.jsonl)."""
        rows = self.metrics
        if key in ("seconds", "tokens_per_s", "peak_memory_mb") and self.perf:
            rows = self.perf
        return _steps(rows, key)

    def curve(self, key: str) -> list[tuple[int, float]]:
        """A training curve: the held-out probe set's (probe.jsonl, from step 0) where the run has one,
        else each step's own batch (metrics.jsonl)."""
        return _steps(self.extra.get("probe") or self.metrics, key)

    @property
    def curve_source(self) -> str:
        return "probe.jsonl" if self.extra.get("probe") else "metrics.jsonl"

    @property
    def device(self) -> str:
        cuda = (self.provenance or {}).get("cuda")
        return f"GPU ({cuda})" if cuda else "CPU"

    @property
    def pipeline(self) -> str | None:
        """``sft->dpo`` for a run that started from a ``method~sft`` run's weights (a ``pipelines:``
        run, ``init~sft`` or ``init~<experiment>.sft`` in its path), else None."""
        return self.extra.get("pipeline")

    @property
    def kind(self) -> str:
        """What the figures and claims call the run: the method, or ``init->method`` for a pipeline."""
        return self.pipeline or self.method

    @property
    def label(self) -> str:
        return self.kind if self.extra.get("unique", True) else f"{self.kind} [{self.name}]"


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            out.append(json.loads(line))
    return out


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def load_run(run_dir, root=None) -> Run:
    run_dir = Path(run_dir)
    config = _read_json(run_dir / "config.json") or {}
    timing = _read_json(run_dir / "timing.json")
    method = config.get("method") or (timing or {}).get("method")
    if not method:
        raise ValueError(f"{run_dir}: neither config.json nor timing.json names the method")
    metrics = _read_jsonl(run_dir / "metrics.jsonl")
    perf = _read_jsonl(run_dir / "perf.jsonl")
    source = "perf.jsonl"
    if not perf:   # runs from before perf.jsonl existed logged the wall-clock keys in metrics.jsonl
        perf = [{k: r[k] for k in ("step", "seconds", "tokens_per_s", "peak_memory_mb") if k in r}
                for r in metrics if "seconds" in r or "peak_memory_mb" in r]
        source = "metrics.jsonl" if perf else ""
    name = str(run_dir.relative_to(root)) if root is not None else run_dir.name
    run = Run(run_dir, name, method, config, metrics, perf, timing, _read_json(run_dir / "provenance.json"),
              source)
    run.extra["probe"] = _read_jsonl(run_dir / "probe.jsonl")
    init = next((part[len("init~"):] for part in run_dir.parts if part.startswith("init~")), None)
    if init:
        run.extra["pipeline"] = f"{init.split('.')[-1]}->{method}"
        run.extra["init"] = init
    return run


def stage_one_dir(r: Run) -> Path | None:
    """The run a pipeline run started from (``init~sft``: the same experiment's method~sft;
    ``init~<experiment>.sft``: that experiment's, a sibling of this one's runs root), else None."""
    init = r.extra.get("init")
    if not init:
        return None
    parts = r.path.parts
    k = next(i for i, p in enumerate(parts) if p.startswith("method~"))
    exp_root = Path(*parts[:k]) if k else Path(".")
    if "." in init:
        other, method = init.split(".", 1)
        return exp_root.parent / other / f"method~{method}"
    return exp_root / f"method~{init}"


def train_seconds(timing: dict | None) -> float | None:
    """The whole run's training-loop time from timing.json: seconds_per_step x steps (= wall_seconds
    for a run never resumed; a resumed run's wall_seconds covers its last session only)."""
    t = timing or {}
    if t.get("seconds_per_step") is None or not t.get("steps"):
        return None
    return t["seconds_per_step"] * t["steps"]


def find_runs(run_dirs) -> list[Run]:
    """``run_dirs``: a root to search (every directory below it holding a metrics.jsonl)
    or an explicit list of run directories. Sorted by path, so output order is fixed."""
    if isinstance(run_dirs, (str, Path)):
        root = Path(run_dirs)
        dirs = sorted({p.parent for p in root.rglob("metrics.jsonl") if "checkpoints" not in p.parts})
        runs = [load_run(d, root) for d in dirs]
    else:
        runs = [load_run(d) for d in sorted(Path(d) for d in run_dirs)]
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.kind] = counts.get(r.kind, 0) + 1
    for r in runs:
        r.extra["unique"] = counts[r.kind] == 1
    return runs


def runs_of(runs: list[Run], method: str) -> list[Run]:
    """Runs of a method trained from the base model, or of a pipeline (``sft->dpo``)."""
    return [r for r in runs if r.kind == method]


def pipeline_stages(r: Run) -> list[tuple[str, str, dict | None]]:
    """(stage, run directory, timing.json) of everything a run's training time sums (one bar of dft.txt
    Fig. 4): a pipeline's starting run (dft.txt A.4: "an initial SFT phase of 2 epochs followed by a
    preference optimization phase of 1 epoch"), then the run itself."""
    first = stage_one_dir(r)
    own = ("PO stage" if first else "run", str(r.path), r.timing)
    if first is None:
        return [own]
    return [(f"{r.extra['init'].split('.')[-1].upper()} stage", str(first), _read_json(first / "timing.json")), own]
