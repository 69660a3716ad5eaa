"""The claims ledger: every claim of configs/claims.yaml, judged on what exists.

Two kinds of claim, reported apart:

- ``implementation``: a property of our own code (``analytic``: autograd through
  negfree.losses, analytic_checks.py; ``registry``: a field of a method's description).
  Verdict ``verified`` or ``failed``: a check of our code, never a reproduction.
- ``empirical``: a measurement of training runs, the Frozen Lake toy or an analysis.
  Each value is read per seed from one tidy table (``results_table``: one row per
  run x metric x seed x step); the claim's effect is estimated per seed (paired by
  seed where both sides have the same seeds, as the workflow's replicates do) and
  given a 95% t interval over seeds. Verdict:
    reproduced     the interval excludes 0 in the paper's direction (close / ratio:
                   it lies inside the stated tolerance);
    contradicted   it excludes 0 the other way (close / ratio: it lies outside);
    inconclusive   otherwise;
    not checkable  fewer than MIN_SEEDS seeds, or a run, metric or file is missing;
                   the reason names it.

Metrics: ``probe/<key>`` (probe.jsonl: the held-out probe set, the training curves),
``train/<key>`` (metrics.jsonl: each step's own batch), ``timing/step_seconds`` (the
median of perf.jsonl's per-step times inside the training process, first step
dropped; never the job's wall clock), ``timing/peak_memory_mb`` (GPU runs only),
``toy/frozen_lake/<column>`` (fig3.csv, one row per method and seed),
``robustness`` checks (robustness_claims.csv of the Frozen Lake study),
``shift/`` and ``score/`` (one value per model in the analyses' summary CSVs: shown,
not judged). Paper-benchmark metrics are not computed at this scale.
Same inputs, same bytes: values are rounded to 6 significant digits before judging.
"""
from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..io import atomic_write_text
from .html import write_markdown_page
from .training import find_runs

MIN_SEEDS = 3
VERIFIED, FAILED = "verified", "failed"
REPRODUCED, CONTRADICTED, INCONCLUSIVE, NOT_CHECKABLE = "reproduced", "contradicted", "inconclusive", "not checkable"
VERDICTS = {"implementation": (VERIFIED, FAILED),
            "empirical": (REPRODUCED, CONTRADICTED, INCONCLUSIVE, NOT_CHECKABLE)}
COLUMNS = ["id", "paper", "kind", "statement", "source", "verdict", "n_seeds", "estimate", "ci_low", "ci_high",
           "measurement", "scale", "reason"]
REQUIREMENTS = {
    "judge": "a paid LLM judge (GPT-4 class) for the paper's judged benchmark",
    "private_corpus": "the paper's private training corpus (not released)",
}
# shift/ and score/ metrics -> (summary file, column); shown with the claim, not judged (one seed)
FILE_METRICS = {
    "shift/abs_loglik": ("shifts", "abs_loglik"), "shift/abs_loglik_per_token": ("shifts", "abs_loglik_per_token"),
    "shift/abs_logit": ("shifts", "abs_logit"), "shift/abs_logit_per_token": ("shifts", "abs_logit_per_token"),
    "shift/gini_logit": ("shifts", "gini_logit"), "shift/dpo_bins_central_mass": ("shifts", "bins_central_mass"),
    "shift/dpo_bins_extreme_mass": ("shifts", "bins_extreme_mass"),
    "shift/dpo_bins_l1_from_uniform": ("shifts", "bins_l1_from_uniform"), "score/s_theta": ("score_dist", "mean"),
}
FILE_LABELS = {"shifts": ("model", "method", "negfree shifts"), "score_dist": ("pool", "pool", "negfree score-dist")}
POOL_PREFIXES = {"sampling": "Sampling", "random_high_temperature": "Random"}
_PLAIN_RUN = re.compile(r"^method~[^/]+(/seed~\d+)?$")   # a methods: run or one of its replicates


def _r6(x: float) -> float:
    return float(f"{x:.6g}")


def _fmt(x) -> str:
    return f"{x:.6g}" if isinstance(x, float) else str(x)


# ------------------------------------------------------------------------------ statistics
@dataclass
class Judged:
    """One check's outcome. ``slack``: how far its interval is from failing (the distance to zero on
    the paper's side for a compare or trend; 0 for close and ratio), so a combination of reproduced
    parts reports the one closest to failing."""
    verdict: str
    measurement: str = ""
    reason: str = ""
    n_seeds: int | None = None
    estimate: float | None = None
    ci: tuple[float, float] | None = None
    slack: float = math.inf


def _nc(reason: str, measurement: str = "", n: int | None = None) -> Judged:
    return Judged(NOT_CHECKABLE, measurement, reason, n)


def t_interval(x) -> tuple[float, float, float]:
    """(mean, low, high): the 95% t interval of the mean of ``x`` (n >= 2)."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    m, n = float(x.mean()), len(x)
    half = float(stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return m, m - half, m + half


def welch_interval(a, b) -> tuple[float, float, float]:
    """(mean(a) - mean(b), low, high): Welch's 95% interval, for sides without common seeds."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    d, se = float(a.mean() - b.mean()), math.sqrt(va + vb)
    if se == 0:
        return d, d, d
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = float(stats.t.ppf(0.975, dof) * se)
    return d, d - half, d + half


def sign_verdict(lo: float, hi: float, want_negative: bool) -> str:
    if (hi < 0) if want_negative else (lo > 0):
        return REPRODUCED
    if (lo > 0) if want_negative else (hi < 0):
        return CONTRADICTED
    return INCONCLUSIVE


def band_verdict(lo: float, hi: float, band_lo: float, band_hi: float) -> str:
    if band_lo <= lo and hi <= band_hi:
        return REPRODUCED
    if hi < band_lo or lo > band_hi:
        return CONTRADICTED
    return INCONCLUSIVE


def combine(parts: list[Judged]) -> Judged:
    """Every part must be reproduced; one contradicted part contradicts the claim; a missing part
    leaves it not checkable. The reported estimate is the part that decides."""
    order = (CONTRADICTED, NOT_CHECKABLE, INCONCLUSIVE, REPRODUCED)
    worst = min(parts, key=lambda p: order.index(p.verdict))
    if worst.verdict == REPRODUCED:   # the part whose interval comes closest to failing
        worst = min(parts, key=lambda p: p.slack)
    meas = " | ".join(dict.fromkeys(p.measurement for p in parts if p.measurement))
    reason = "; ".join(dict.fromkeys([p.reason for p in parts if p.reason and p.verdict == worst.verdict] + [
        f"part not checkable: {p.reason}" for p in parts if p.reason and p.verdict == NOT_CHECKABLE != worst.verdict]))
    ns = [p.n_seeds for p in parts if p.n_seeds is not None]
    return Judged(worst.verdict, meas, reason, min(ns) if ns else None, worst.estimate, worst.ci)


# ------------------------------------------------------------------------------ the tidy table
TIDY = ["source", "run", "method", "lr", "beta", "device", "seed", "step", "metric", "value"]


def results_table(runs, frozen_lake: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per run x metric x seed x step: probe.jsonl, metrics.jsonl and perf.jsonl of every
    run, and Frozen Lake's fig3.csv (step -1: the final policy)."""
    rows = []
    for r in runs:
        c = r.config or {}
        head = ("runs", r.name, r.kind, c.get("lr"), (c.get("hparams") or {}).get("beta"), r.device, c.get("seed", 0))
        for ns, log in (("probe", r.extra.get("probe") or []), ("train", r.metrics)):
            for row in log:
                for k, v in row.items():
                    if k not in ("step", "epoch", "records") and isinstance(v, (int, float)) and v is not None:
                        rows.append((*head, int(row["step"]), f"{ns}/{k}", float(v)))
        for row in r.perf:
            for k, name in (("seconds", "timing/step_seconds"), ("peak_memory_mb", "timing/peak_memory_mb")):
                if row.get(k) is not None:
                    rows.append((*head, int(row["step"]), name, float(row[k])))
    if frozen_lake is not None:
        for _, row in frozen_lake.iterrows():
            for col in frozen_lake.columns:
                if col not in ("method", "seed", "role", "negatives") and pd.api.types.is_number(row[col]):
                    rows.append(("frozen_lake", f"frozen_lake/{row['method']}", row["method"], None, None, "CPU",
                                 int(row["seed"]), -1, f"toy/frozen_lake/{col}", float(row[col])))
    return pd.DataFrame(rows, columns=TIDY)


class Context:
    def __init__(self, runs, frozen_lake_dir, scale: str, shifts=None, score_dist=None, robustness=None):
        self.runs, self.scale = runs, scale
        self.fl_dir = Path(frozen_lake_dir) if frozen_lake_dir else None
        fig3 = self.fl_dir / "fig3.csv" if self.fl_dir else None
        fl = pd.read_csv(fig3) if fig3 is not None and fig3.exists() else None
        self.fl_scale = "Frozen Lake toy"
        if fl is not None and (self.fl_dir / "config.json").exists():
            cfg = json.loads((self.fl_dir / "config.json").read_text())
            self.fl_scale = (f"Frozen Lake toy: {len(cfg.get('seeds', []))} seeds, "
                             f"{(cfg.get('config') or {}).get('steps')} steps (config.json)")
        self.table = results_table(runs, fl)
        self.has_fl = fl is not None
        self.files = {"shifts": shifts, "score_dist": score_dist}
        self.robustness = Path(robustness) if robustness else (self.fl_dir / "robustness_claims.csv" if self.fl_dir
                                                                else None)


# ------------------------------------------------------------------------------ per-seed values
def _as_list(x) -> list:
    return [] if x is None else list(x) if isinstance(x, list) else [x]


def _sel_str(sel: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sel.items()) or "any"


def _select(ctx: Context, sel: dict, metric: str) -> tuple[pd.DataFrame | None, str]:
    """The table's rows of ``metric`` for the runs one selector names, or (None, why)."""
    toy = metric.startswith("toy/")
    t = ctx.table[ctx.table.source == ("frozen_lake" if toy else "runs")]
    if toy and not ctx.has_fl:
        return None, f"no Frozen Lake results ({ctx.fl_dir}/fig3.csv does not exist)"
    m = sel.get("method", "")
    if isinstance(m, str) and m.startswith("released:"):
        return None, f"needs the released checkpoint {m[len('released:'):]}"
    unknown = [k for k in sel if k not in ("method", "lr", "beta")]
    if unknown:
        return None, f"selector {_sel_str(sel)}: runs do not record {', '.join(unknown)}"
    t = t[t.method == m]
    for k in ("lr", "beta"):
        if k in sel:
            t = t[np.isclose(pd.to_numeric(t[k], errors="coerce").astype(float), float(sel[k]), rtol=1e-9)]
    if t.empty:
        have = sorted(set(ctx.table[ctx.table.method == m].run))
        return None, (f"no run of {_sel_str(sel)}" if "->" not in str(m) else
                      f"no run of the two-stage pipeline {m}") + (f"; found only {', '.join(have)}" if have else "")
    # several runs of one seed (a sweep beside the methods: run): the methods: run and its replicates
    if (t.groupby("seed").run.nunique() > 1).any():
        t = t[t.run.map(lambda n: bool(_PLAIN_RUN.match(n)))] if not toy else t
        if t.empty or (t.groupby("seed").run.nunique() > 1).any():
            return None, f"{_sel_str(sel)} matches several runs per seed; name lr or beta in the claim"
    names = set(t.run)
    t = t[t.metric == metric]
    if t.empty:
        why = (" (no probe.jsonl: train.probe_records is 0)" if metric.startswith("probe/") and
               not any(r.extra.get("probe") for r in ctx.runs if r.name in names) else
               " (the run saw no negatives)" if "neg" in metric or "margin" in metric else "")
        return None, f"runs of {_sel_str(sel)} have no '{metric}'{why}"
    return t, ""


def per_seed(ctx: Context, sel: dict, metric: str, agg: str) -> tuple[dict | None, str]:
    """{seed: value} (agg final | mean | delta | median | max), {seed: {step: value}} for every_step."""
    t, why = _select(ctx, sel, metric)
    if t is None:
        return None, why
    if metric == "timing/step_seconds":
        agg = "median_after_first"
    elif metric == "timing/peak_memory_mb":
        agg = "max"
    out = {}
    for seed, g in t.sort_values("step").groupby("seed"):
        v = g.value.to_numpy()
        if agg == "every_step":
            out[int(seed)] = dict(zip(g.step.astype(int), v))
            continue
        if agg in ("delta", "median_after_first") and len(v) < 2:
            return None, f"{g.run.iloc[0]}: '{metric}' has {len(v)} step(s); {agg} needs 2"
        out[int(seed)] = _r6(float({"final": lambda: v[-1], "mean": v.mean, "delta": lambda: v[-1] - v[0],
                                    "median_after_first": lambda: np.median(v[1:]), "max": v.max}[agg]()))
    return out, ""


# ------------------------------------------------------------------------------ empirical checks
_EXPECT = re.compile(r"^\s*a\s*(<=|>=|<|>)\s*(?:([0-9.eE+-]+)\s*\*\s*)?b\s*$")


def _interval(A: dict, B: dict | None, fn) -> tuple[int, float, float, float, str] | str:
    """(n, estimate, low, high, design) of fn(a) - or fn(a, b) paired by seed - over seeds; or why not."""
    if B is None:
        x = [fn(A[s]) for s in sorted(A)]
        design = "over seeds"
    else:
        common = sorted(set(A) & set(B))
        if len(common) >= MIN_SEEDS:
            x = [fn(A[s], B[s]) for s in common]
            design = "paired by seed"
        else:
            if min(len(A), len(B)) < MIN_SEEDS:
                return f"{min(len(A), len(B))} seed(s); an empirical verdict needs {MIN_SEEDS}"
            d, lo, hi = welch_interval([A[s] for s in sorted(A)], [B[s] for s in sorted(B)])
            return min(len(A), len(B)), _r6(d), _r6(lo), _r6(hi), "Welch, unpaired"
    if len(x) < MIN_SEEDS:
        return f"{len(x)} seed(s); an empirical verdict needs {MIN_SEEDS}"
    m, lo, hi = t_interval(x)
    return len(x), _r6(m), _r6(lo), _r6(hi), design


def _pair(ctx, check, metric, sa, sb, kind, claim) -> Judged:
    """One comparison of side a against side b (compare / close / ratio)."""
    agg = check.get("agg", "final")
    guard = _timing_guard(ctx, claim, metric, [sa, sb])
    A, why = per_seed(ctx, sa, metric, agg)
    B, why2 = (per_seed(ctx, sb, metric, agg) if A is not None else (None, why))
    if A is None or B is None:
        return _nc(why if A is None else why2)
    la, lb = _sel_str(sa), _sel_str(sb)
    if agg == "every_step":
        shown = f"{metric} at every logged step, {la} vs {lb} (seeds {sorted(A)} vs {sorted(B)})"
    else:
        shown = (f"{metric} ({agg}) {la}: " + ", ".join(f"seed {s} {_fmt(A[s])}" for s in sorted(A))
                 + f"; {lb}: " + ", ".join(f"seed {s} {_fmt(B[s])}" for s in sorted(B)))
    if guard:
        return _nc(guard, shown)
    if kind == "compare":
        op, factor = _EXPECT.match(check["expect"]).groups()
        factor = float(factor) if factor else 1.0
        neg = op.startswith("<")
        if agg == "every_step":   # the worst step after step 0 / 1 (where the policy is the reference)
            pick = max if neg else min

            def fn(a, b):
                steps = [s for s in sorted(set(a) & set(b)) if s > (0 if metric.startswith("probe/") else 1)]
                return pick(a[s] - factor * b[s] for s in steps) if steps else math.nan
            what = f"the worst step's {la} - {lb}"
        else:
            def fn(a, b):
                return a - factor * b
            what = f"{la} - {'' if factor == 1 else _fmt(factor) + ' * '}{lb}"
    elif kind == "close":
        def fn(a, b):
            return a - b
        what = f"{la} - {lb}"
    else:   # ratio, on the log scale
        def fn(a, b):
            return math.log(a / b)
        what = f"{la} / {lb} (geometric mean)"
    res = _interval(A, B, fn)
    if isinstance(res, str):
        return _nc(res, shown, min(len(A), len(B)))
    n, est, lo, hi, design = res
    if kind == "compare":
        if math.isnan(est):
            return _nc(f"{la} and {lb} share no logged step after the start", shown)
        verdict, expect = sign_verdict(lo, hi, neg), f"expect {check['expect']}"
    elif kind == "close":
        tol = check["abs_tol"] if "abs_tol" in check else check["rel_tol"] * abs(float(np.mean(list(B.values()))))
        verdict, expect = band_verdict(lo, hi, -tol, tol), f"within +-{_fmt(_r6(tol))}"
    else:
        est, lo, hi = (_r6(math.exp(v)) for v in (est, lo, hi))
        e, tol = check["expect_approx"], check["rel_tol"]
        verdict, expect = band_verdict(lo, hi, e * (1 - tol), e * (1 + tol)), f"expect {e} +- {tol * 100:g}%"
    slack = (-hi if neg else lo) if kind == "compare" else 0.0
    return Judged(verdict, f"{shown}; {what}: {_fmt(est)} [{_fmt(lo)}, {_fmt(hi)}], {n} seeds {design}; {expect}",
                  n_seeds=n, estimate=est, ci=(lo, hi), slack=slack)


def check_sides(ctx, check, claim) -> Judged:
    kind = check["kind"]
    if kind == "compare" and not _EXPECT.match(check["expect"]):
        return _nc(f"cannot parse expect '{check['expect']}'")
    parts = [_pair(ctx, check, metric, sa, sb, kind, claim)
             for metric in _metrics_of(check) for sa in _as_list(check.get("a")) for sb in _as_list(check.get("b"))]
    return combine(parts)


def check_trend(ctx, check, claim) -> Judged:
    metric, neg = check["metric"], check["expect"].strip().startswith("<")
    parts = []
    for sel in _as_list(check.get("select")):
        A, why = per_seed(ctx, sel, metric, "delta")
        if A is None:
            parts.append(_nc(why))
            continue
        shown = f"{metric} last - first, {_sel_str(sel)}: " + ", ".join(f"seed {s} {_fmt(A[s])}" for s in sorted(A))
        res = _interval(A, None, lambda a: a)
        if isinstance(res, str):
            parts.append(_nc(res, shown, len(A)))
            continue
        n, est, lo, hi, design = res
        parts.append(Judged(sign_verdict(lo, hi, neg), f"{shown}; mean {_fmt(est)} [{_fmt(lo)}, {_fmt(hi)}], {n} "
                            f"seeds; expect {check['expect']}", n_seeds=n, estimate=est, ci=(lo, hi),
                            slack=-hi if neg else lo))
    return combine(parts)


def check_ordering(ctx, check, claim) -> Judged:
    """Tiers best first: every method of a tier against every one of the next, paired by seed."""
    metrics = _metrics_of(check)
    if not all(m.startswith("toy/") for m in metrics):
        return _files_shown(ctx, check)
    lower = check.get("lower_is_better", True)
    tiers = check["expect"]
    parts = [_pair(ctx, {"expect": "a < b" if lower else "a > b"}, metric, {"method": a}, {"method": b}, "compare",
                   claim)
             for metric in metrics for t1, t2 in zip(tiers, tiers[1:]) for a in t1 for b in t2]
    out = combine(parts)
    out.measurement = f"tiers {tiers} ({'lower' if lower else 'higher'} is better): " + out.measurement
    for metric in _as_list(check.get("also_metrics")):
        means = ctx.table[ctx.table.metric == metric].groupby("method").value.mean()
        out.measurement += (f" | also, not judged: {metric} mean over seeds "
                            + ", ".join(f"{m} {_fmt(_r6(means[m]))}" for t in tiers for m in t if m in means))
    return out


def check_robustness(ctx, check, claim) -> Judged:
    """A claim's share of the Frozen Lake study's settings (robustness_claims.csv): its Wilson
    interval over settings against 1/2, as negfree.toy.robustness.verdict judges it."""
    path = ctx.robustness
    if path is None or not path.exists():
        return _nc(f"no Frozen Lake robustness study ({path} does not exist; `snakemake frozen_lake_robustness`)")
    df = pd.read_csv(path)
    row = df[(df.claim == check["claim"]) & (df.metric == check.get("metric", "mse_params"))
             & (df.protocol == check.get("protocol", "final"))]
    if len(row) != 1:
        return _nc(f"{path} has no single row for claim '{check['claim']}'")
    r = row.iloc[0]
    cfg = path.parent / "robustness_config.json"
    grid = (json.loads(cfg.read_text()).get("grid") or {}) if cfg.exists() else {}
    n = grid.get("n_seeds")
    scale = (f"; grid {len(grid.get('maps', []))} maps x steps {grid.get('steps')} x {len(grid.get('bases', []))} bases "
             f"x {len(grid.get('negatives', []))} negative sources x {n} seeds, {len(grid.get('methods') or [])} "
             f"methods ({cfg})" if grid else "")
    from ..toy.robustness import verdict as wilson_rule

    lo, hi = _r6(round(float(r.ci_low), 12)), _r6(round(float(r.ci_high), 12))
    verdict = wilson_rule(lo, hi)
    if n is not None and n < MIN_SEEDS:
        verdict = NOT_CHECKABLE
    return Judged(verdict, f"'{r.claim}' ({r.metric}, {r.protocol} step) holds in {int(r.n_holds)} of "
                  f"{int(r.n_settings)} settings (each judged over its seeds, paired): {_fmt(_r6(r.fraction))} "
                  f"[{_fmt(lo)}, {_fmt(hi)}] (Wilson 95%); reproduced if the interval lies above 1/2{scale}",
                  "" if verdict != NOT_CHECKABLE else f"the study ran {n} seed(s); a verdict needs {MIN_SEEDS}",
                  n, _r6(r.fraction), (lo, hi))


def _timing_guard(ctx, claim: dict, metric: str, sels) -> str | None:
    if metric == "timing/wall_seconds":
        return ("the job's wall clock (loading, saving, the machine's load) is not compared: the claim reads "
                "timing/step_seconds, the median per-step time inside each training process")
    if not metric.startswith("timing/"):
        return None
    from ..losses import REGISTRY

    t = ctx.table[ctx.table.source == "runs"]
    methods = [s.get("method") for s in sels]
    if "reference in the loop" in (claim.get("notes") or ""):
        refs = [m for m in methods if m in REGISTRY and REGISTRY[m].needs_reference]
        if refs:
            return (f"{', '.join(refs)} read precomputed reference log-probs (score_reference runs offline; the "
                    "trainer has no in-loop reference model), but the claim times the reference in the loop")
    sel = t[t.method.isin(methods)]
    cpu = sorted(set(sel[sel.device == "CPU"].run))
    if cpu and metric == "timing/peak_memory_mb":
        return f"peak GPU memory needs an accelerator; {', '.join(cpu)} ran on CPU (process RSS is not compared)"
    if cpu:
        return (f"the papers' costs are GPU costs; {', '.join(cpu[:4])}{' ...' if len(cpu) > 4 else ''} ran on CPU, "
                "where the balance of attention, projections and the output head differs (per-step medians are "
                "shown, not judged)")
    tracked = sorted({r.name for r in ctx.runs if r.kind in methods and not REGISTRY[r.method].needs_negatives
                      and (r.config or {}).get("num_negatives")})
    if tracked:
        return (f"{', '.join(tracked)} forward{'s' if len(tracked) == 1 else ''} B negatives to log their likelihood "
                "(train.track_negatives): its cost is not the method's")
    return None


# ------------------------------------------------------------------------------ analyses' files
def _file_values(ctx, metric: str, sel: dict) -> tuple[str | None, str]:
    src, col = FILE_METRICS[metric]
    path = ctx.files.get(src)
    label, key, made_by = FILE_LABELS[src]
    if not path or not Path(path).is_file():
        return None, f"needs {made_by}'s summary ({path or 'not given'})"
    df = pd.read_csv(path)
    if label not in df.columns or col not in df.columns:
        return None, f"{path} has no column '{label if label not in df.columns else col}'"
    want = str(sel.get(key, ""))
    hit = (df[df[label].astype(str).str.lower().str.startswith(POOL_PREFIXES.get(want, "\0").lower())]
           if src == "score_dist" else df[df[label].astype(str) == want])
    if len(hit) != 1:
        return None, f"no single row for {key} '{want}' in {path}"
    return f"{hit[label].iloc[0]} {_fmt(_r6(float(hit[col].iloc[0])))}", ""


def _files_shown(ctx, check) -> Judged:
    """shift/ and score/ claims: the values, shown; one analysis of one seed is not judged."""
    sels = [s for side in ("a", "b", "select") for s in _as_list(check.get(side))]
    for t in check.get("expect", []) if check["kind"] == "ordering" else []:
        sels += [{"method": m} for m in t]
    sels += [{"method": v} for v in _as_list(check.get("values"))]
    shown, missing = [], []
    for metric in _metrics_of(check):
        vals = []
        for sel in sels:
            v, why = _file_values(ctx, metric, sel)
            (vals.append(v) if v else missing.append(why))
        if vals:
            shown.append(f"{metric}: " + ", ".join(dict.fromkeys(vals)))
    reason = "; ".join(dict.fromkeys(missing)) or (
        f"one analysis of one training seed (one value per model); an empirical verdict needs {MIN_SEEDS} seeds")
    return _nc(reason, " | ".join(shown), 1 if shown else None)


# ------------------------------------------------------------------------------ dispatch
def _metrics_of(check: dict) -> list[str]:
    return _as_list(check.get("metrics")) or _as_list(check.get("metric"))


def _benchmark(metric: str) -> bool:
    return not metric.startswith(("probe/", "train/", "timing/", "toy/", "shift/", "score/"))


def evaluate_check(ctx: Context, check: dict, claim: dict) -> Judged:
    kind = check["kind"]
    if kind == "all":
        return combine([evaluate_check(ctx, c, claim) for c in check["checks"]])
    if "for_each" in check:
        (key, values), = check["for_each"].items()
        subs = []
        for v in values:
            c = {k: val for k, val in check.items() if k != "for_each"}
            for side in [s for s in ("a", "b", "select") if s in c] or ["select"]:
                c[side] = [{**s, key: v} for s in _as_list(c.get(side))] or [{key: v}]
            subs.append(evaluate_check(ctx, c, claim))
        return combine(subs)
    if kind == "robustness":
        return check_robustness(ctx, check, claim)
    metrics = _metrics_of(check)
    bench = [m for m in metrics if _benchmark(m)]
    if bench:
        return _nc(f"paper-benchmark metric{'s' if len(bench) > 1 else ''} {', '.join(bench)}: not computed at "
                   "this scale, and the offline twin (negfree_offline) is not a stand-in")
    if any(m.startswith(("shift/", "score/")) for m in metrics):
        return _files_shown(ctx, check)
    if kind in ("argmax", "argmin", "monotone", "top_drop", "threshold"):
        return _nc(f"'{kind}' over '{check.get('sweep')}' needs one run per sweep value, with {MIN_SEEDS} seeds each")
    if kind == "trend":
        return check_trend(ctx, check, claim)
    if kind == "ordering":
        return check_ordering(ctx, check, claim)
    return check_sides(ctx, check, claim)


def implementation_check(check: dict) -> tuple[bool | None, str]:
    if check["kind"] == "registry":
        from ..losses import REGISTRY

        name, prop = check["method"], check["property"]
        if name not in REGISTRY:
            return False, f"method '{name}' is not registered"
        got = REGISTRY[name].describe().get(prop, "<no such field>")
        return got == check["expect"], f"negfree methods --json: {name}.{prop} = {got!r} (expected {check['expect']!r})"
    from .analytic_checks import analytic_checks

    fn = analytic_checks().get((check["function"], check["property"]))
    if fn is None:
        return None, f"no autograd check implemented for {check['function']}/{check['property']}"
    ok, meas = fn()
    return bool(ok), meas


def _kinds(check: dict) -> set[str]:
    return {check["kind"]} | {k for c in check.get("checks", []) for k in _kinds(c)}


def evaluate_claim(ctx: Context, claim: dict) -> dict:
    row = {k: claim.get(k, "") for k in ("id", "paper", "statement", "source")}
    check = claim["check"]
    if _kinds(check) <= {"analytic", "registry", "all"}:
        results = [implementation_check(c) for c in (check.get("checks") or [check])]
        ok = all(r[0] for r in results)
        verdict = VERIFIED if ok else FAILED
        row.update(kind="implementation", verdict=verdict, measurement=" | ".join(r[1] for r in results),
                   scale="analytic (loss code and registry; no training)",
                   reason="autograd through negfree.losses / the method registry: a check of our code")
        return row
    res = evaluate_check(ctx, check, claim)
    missing = [REQUIREMENTS[r] for r in _as_list(claim.get("requires")) if r in REQUIREMENTS]
    if missing:
        res.verdict, res.reason = NOT_CHECKABLE, "; ".join(f"needs {m}" for m in missing)
    reason = res.reason
    if res.verdict == NOT_CHECKABLE and (claim.get("needs") or {}).get("runs"):
        reason += f" (runs the claim needs: {'; '.join(map(str, claim['needs']['runs']))})"
    if claim.get("paper_consistent") is False:
        reason += " [claims.yaml: the paper's own numbers do not fully bear the statement out]"
    if claim.get("narrowed"):
        reason += f" [narrowed: {claim['narrowed']}]"
    metrics = [m for c in [check, *check.get("checks", [])] for m in _metrics_of(c)]
    scale = (ctx.fl_scale if metrics and all(m.startswith("toy/") for m in metrics) else
             "Frozen Lake robustness study" if check["kind"] == "robustness" else ctx.scale)
    ci = res.ci or (None, None)
    row.update(kind="empirical", verdict=res.verdict, n_seeds=res.n_seeds, estimate=res.estimate, ci_low=ci[0],
               ci_high=ci[1], measurement=res.measurement, scale=scale, reason=reason.strip())
    return row


# ------------------------------------------------------------------------------ ledger
def claims_ledger(claims_yaml, runs_root, frozen_lake_dir, out_csv, out_md, scale: str, *, shifts=None,
                  score_dist=None, robustness=None) -> pd.DataFrame:
    """Evaluate every claim; ``runs_root``: a directory searched for runs, or a list of run dirs."""
    claims = yaml.safe_load(Path(claims_yaml).read_text())["claims"]
    if isinstance(runs_root, (list, tuple)):
        runs = find_runs(runs_root)
    else:
        runs = find_runs(runs_root) if runs_root and Path(runs_root).exists() else []
    ctx = Context(runs, frozen_lake_dir, scale, shifts=shifts, score_dist=score_dist, robustness=robustness)
    df = pd.DataFrame([evaluate_claim(ctx, c) for c in claims], columns=COLUMNS)
    df["n_seeds"] = df["n_seeds"].astype("Int64")
    atomic_write_text(out_csv, df.to_csv(index=False))
    write_markdown_page(out_md, ledger_markdown(df, scale, runs, runs_root, frozen_lake_dir))
    return df


def _md(s) -> str:
    return "" if s is None or (isinstance(s, float) and math.isnan(s)) else str(s).replace("|", "\\|").replace("\n", " ")


def ledger_markdown(df: pd.DataFrame, scale: str, runs, runs_root, fl_dir) -> str:
    seeds = sorted({int((r.config or {}).get("seed", 0)) for r in runs})
    lines = ["# Claims ledger", "",
             f"Scale: {scale}. {len(runs)} runs read from `{runs_root}` (seeds {seeds}): "
             + (", ".join(f"{r.kind} ({r.name})" for r in runs) or "none") + f". Frozen Lake: `{fl_dir}`.",
             "", f"An empirical verdict rests on at least {MIN_SEEDS} seeds: the effect's 95% t interval over seeds "
             "(paired by seed) must exclude zero in the paper's direction (`reproduced`) or the other way "
             "(`contradicted`); otherwise `inconclusive`. Implementation checks test our own code (`verified`).", ""]
    for kind, verdicts in VERDICTS.items():
        sub = df[df.kind == kind]
        lines += [f"| {kind} verdict | claims |", "|---|---|"]
        lines += [f"| {v} | {int((sub.verdict == v).sum())} |" for v in verdicts] + [f"| total | {len(sub)} |", ""]
    for kind in VERDICTS:
        lines += [f"## {kind.capitalize()} claims", "",
                  "| id | verdict | seeds | estimate [95% CI] | measurement | reason |", "|---|---|---|---|---|---|"]
        for _, r in df[df.kind == kind].iterrows():
            est = "" if pd.isna(r.estimate) else f"{_fmt(r.estimate)} [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]"
            lines.append(f"| {r.id} | {r.verdict} | {_md(r.n_seeds if not pd.isna(r.n_seeds) else '')} | {est} | "
                         f"{_md(r.measurement)} | {_md(r.reason)} |")
        lines.append("")
    return "\n".join(lines)


def main_claims(argv=None) -> None:
    p = argparse.ArgumentParser(prog="negfree claims", description="evaluate configs/claims.yaml on what exists")
    p.add_argument("--claims", default="configs/claims.yaml",
                   help="the claims to judge, one entry per claim (default: configs/claims.yaml)")
    p.add_argument("--runs-root", required=True,
                   help="directory searched for run directories (metrics.jsonl), e.g. results/runs/<experiment>")
    p.add_argument("--frozen-lake", required=True, help="directory of the Frozen Lake outputs (fig3.csv)")
    p.add_argument("--out-csv", required=True, help="the ledger as CSV, one row per claim")
    p.add_argument("--out-md", required=True, help="the ledger as markdown (an HTML page is written beside it)")
    p.add_argument("--scale", required=True, help="one line on what ran at what scale, printed with the ledger")
    p.add_argument("--shifts", default=None, metavar="SHIFTS_SUMMARY.csv",
                   help="shifts_summary.csv of `negfree shifts` (bnf.txt Fig. 3-4): shown beside the shift/ claims")
    p.add_argument("--score-dist", default=None, metavar="FIG1_SUMMARY.csv",
                   help="fig1_summary.csv of `negfree score-dist` (dft.txt Fig. 1): shown beside the score/ claims")
    p.add_argument("--robustness", default=None, metavar="ROBUSTNESS_CLAIMS.csv",
                   help="robustness_claims.csv of the Frozen Lake study (default: the one in --frozen-lake)")
    a = p.parse_args(argv)
    df = claims_ledger(a.claims, a.runs_root, a.frozen_lake, a.out_csv, a.out_md, a.scale, shifts=a.shifts,
                       score_dist=a.score_dist, robustness=a.robustness)
    print(df.groupby(["kind", "verdict"]).size().to_string())
    print(f"wrote {a.out_csv} and {a.out_md}")


if __name__ == "__main__":
    main_claims()
