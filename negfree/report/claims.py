"""The claims ledger: every claim of configs/claims.yaml, judged on what exists.

Two kinds of claim, reported apart:

- ``implementation``: a property of our own code (``analytic``: autograd through
  negfree.losses, analytic_checks.py; ``registry``: a field of a method's description).
  Verdict ``verified`` or ``failed``: a check of our code, never a reproduction.
- ``empirical``: a measurement of training runs, the Frozen Lake toy or an analysis.
  Verdict:
    reproduced     the interval excludes 0 in the paper's direction (close / ratio /
                   paper_value: it lies inside the stated tolerance);
    contradicted   it excludes 0 the other way (close / ratio / paper_value: it lies outside);
    inconclusive   otherwise: a difference inside the noise is never reproduced;
    not checkable  no interval can be had (too few seeds and no per-item scores), or a run,
                   metric or file is missing; the reason names it.

Every empirical verdict names the source of its interval (column ``uncertainty``):

- ``seeds``: training seeds. Each value is read per seed (training logs from one tidy table,
  ``results_table``: one row per run x metric x seed x step; benchmark scores from each seed's
  evaluation); the effect is estimated per seed (paired by seed where both sides have the same
  seeds, as the workflow's replicates do; against an untrained model, base or released, over
  the trained side's seeds) and given a 95% t interval over at least MIN_SEEDS seeds.
- ``test_items``: for paper benchmarks of runs trained once: a paired 95% interval over the
  test items both models were scored on (negfree/report/items.py: Agresti-Min for one binary
  benchmark, else a paired bootstrap resampling items within each benchmark). It covers the
  test set's noise, not training noise: such a verdict holds for these trained models, and its
  row says so.
- ``settings``: the Frozen Lake robustness study's Wilson interval over its settings.

Metrics: ``probe/<key>`` (probe.jsonl: the held-out probe set, the training curves),
``train/<key>`` (metrics.jsonl: each step's own batch), ``timing/step_seconds`` (the
median of perf.jsonl's per-step times inside the training process, first step
dropped; never the job's wall clock), ``timing/peak_memory_mb`` (GPU runs only),
``toy/frozen_lake/<column>`` (fig3.csv, one row per method and seed),
``robustness`` checks (robustness_claims.csv of the Frozen Lake study),
``shift/`` and ``score/`` (one value per model in the analyses' summary CSVs: shown,
not judged), and paper-benchmark keys (``avg``, ``gsm8k/acc``, ``bleu4``, ...: the
evaluations under ``<run>/eval/``, mapped as the paper tables map them). A selector with a
``setting`` or ``model`` names a run through the experiments' ``paper_tables`` rows
(``--paper-rows``); a bare method names the experiment's ``method~<m>`` run.
``paper_value`` checks put our score beside the paper's transcribed number
(negfree/report/paper_numbers/) within a per-benchmark tolerance (claims.yaml
``paper_value_tolerance``, [ours]); where our protocol differs from the paper's (judge,
shot count, harness, a subset of the items) there is no verdict and the reason says which.
The judged benchmarks (Arena-Hard, MT-Bench, WildBench: negfree judged-eval) count only with the
paper's judge: another model's numbers give at best ``inconclusive`` ("judge differs from the
paper's (<used> vs <paper>)"), never ``reproduced``; the offline judge's make a claim ``not
checkable`` (see ``_judged_columns``). AlpacaEval 1 and 2 (negfree alpaca-eval) likewise, the protocol's own
annotator being the paper's judge (alpaca_eval_gpt4, weighted_alpaca_eval_gpt4_turbo): another annotator or model
gives at best ``inconclusive``, the offline stand-in negfree_local_loglik ``not checkable`` (``_alpaca_columns``).
Same inputs, same bytes: values are rounded to 6 significant digits before judging, and the
bootstrap's seed is fixed.
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

from negfree.common.io import atomic_write_text
from negfree.report.html import write_markdown_page
from negfree.report.runs import find_runs

MIN_SEEDS = 3
VERIFIED, FAILED = "verified", "failed"
REPRODUCED, CONTRADICTED, INCONCLUSIVE, NOT_CHECKABLE = "reproduced", "contradicted", "inconclusive", "not checkable"
VERDICTS = {"implementation": (VERIFIED, FAILED),
            "empirical": (REPRODUCED, CONTRADICTED, INCONCLUSIVE, NOT_CHECKABLE)}
COLUMNS = ["id", "paper", "kind", "statement", "source", "verdict", "uncertainty", "n_seeds", "estimate", "ci_low",
           "ci_high", "measurement", "scale", "reason"]
SEEDS, TEST_ITEMS, SETTINGS = "seeds", "test_items", "settings"     # the sources of an interval
TEST_ITEMS_NOTE = ("over test items only: holds for these trained models (one training seed each); the interval "
                   "covers the test set's noise, not training noise")
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
    uncertainty: str = ""


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
    sources = sorted({u for p in parts if p.verdict != NOT_CHECKABLE for u in p.uncertainty.split("+") if u})
    return Judged(worst.verdict, meas, reason, min(ns) if ns else None, worst.estimate, worst.ci,
                  uncertainty="+".join(sources) if worst.verdict != NOT_CHECKABLE else "")


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
    """What the claims are judged on. ``root``: the experiment's runs directory (its base~ and
    released~ evaluations live there too); ``paper_rows``: the experiments' paper-table rows, one
    dict per row with item, model, setting, method and run_dir (``paper_rows_of``);
    ``tolerances``: claims.yaml's ``paper_value_tolerance``."""

    def __init__(self, runs, frozen_lake_dir, scale: str, shifts=None, score_dist=None, robustness=None,
                 root=None, paper_rows=None, tolerances=None):
        self.runs, self.scale = runs, scale
        self.root = Path(root) if root else None
        self.rows = [{**r, "item": _item_id(r["item"]), "run_dir": str(Path(r["run_dir"]))}
                     for r in (paper_rows or [])]
        self.tolerances = tolerances or {}
        self._columns: dict = {}
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
                  n_seeds=n, estimate=est, ci=(lo, hi), slack=slack, uncertainty=SEEDS)


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
                            slack=-hi if neg else lo, uncertainty=SEEDS))
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
    from negfree.toy.robustness import verdict as wilson_rule

    lo, hi = _r6(round(float(r.ci_low), 12)), _r6(round(float(r.ci_high), 12))
    verdict = wilson_rule(lo, hi)
    if n is not None and n < MIN_SEEDS:
        verdict = NOT_CHECKABLE
    return Judged(verdict, f"'{r.claim}' ({r.metric}, {r.protocol} step) holds in {int(r.n_holds)} of "
                  f"{int(r.n_settings)} settings (each judged over its seeds, paired): {_fmt(_r6(r.fraction))} "
                  f"[{_fmt(lo)}, {_fmt(hi)}] (Wilson 95%); reproduced if the interval lies above 1/2{scale}",
                  "" if verdict != NOT_CHECKABLE else f"the study ran {n} seed(s); a verdict needs {MIN_SEEDS}",
                  n, _r6(r.fraction), (lo, hi), uncertainty=SETTINGS if verdict != NOT_CHECKABLE else "")


def _timing_guard(ctx, claim: dict, metric: str, sels) -> str | None:
    if metric == "timing/wall_seconds":
        return ("the job's wall clock (loading, saving, the machine's load) is not compared: the claim reads "
                "timing/step_seconds, the median per-step time inside each training process")
    if not metric.startswith("timing/"):
        return None
    from negfree.losses import REGISTRY

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


# ------------------------------------------------------------------------------ paper benchmarks
UNTRAINED = ("base~", "released~")     # evaluated, never trained: one value, no training seed
# Paper keys whose protocol is not the paper's: our number is not the paper's number's measurement,
# so a paper_value check gives no verdict. (The judged and dataset checks read the result itself.)
PROTOCOL_DIFFERS = {
    "gsm8k/acc": "bnf.txt scores with ZeroEval; ours is lm-eval's gsm8k_cot_zeroshot (another harness, prompt and "
                 "answer extraction)",
    "math_l5/acc": "bnf.txt scores with ZeroEval; ours is lm-eval's MATH Level 5 zero-shot (another harness, prompt "
                   "and answer extraction)",
    "mmlu_redux/acc": "bnf.txt scores with ZeroEval; ours is lm-eval's mmlu_redux_generative (another harness, prompt "
                      "and answer extraction)",
    "bleu4": "asft.txt names neither its BLEU implementation nor its decoding length nor how many alpaca_en rows it "
             "scores; ours is sacrebleu corpus BLEU on a seeded subsample",
    "rouge1": "asft.txt names neither its ROUGE implementation nor its decoding length nor how many alpaca_en rows it "
              "scores; ours is rouge-score F1 on a seeded subsample",
}
PROTOCOL_DIFFERS["rouge2"] = PROTOCOL_DIFFERS["rougeL"] = PROTOCOL_DIFFERS["rouge1"]


def _item_id(item: str | None) -> str | None:
    from negfree.report import paper_numbers

    if not item:
        return None
    try:
        return paper_numbers.resolve(item)[0]
    except KeyError:
        return item


def paper_rows_of(exp) -> list[dict]:
    """The paper-table rows of one experiment (negfree.jobs.dag.Experiment): per row of each item in its
    ``paper_tables``, the paper's model, setting and method and the run directory that fills it."""
    from negfree.report import paper_numbers
    from negfree.report.paper_table import _parse_row_pairs, resolve_row

    out = []
    for item, spec in (exp.paper_tables or {}).items():
        info = paper_numbers.info(item)
        iid, filt = paper_numbers.resolve(item)
        rows = [r for r in info.get("rows") or [] if all(r.get(c) == v for c, v in filt.items() if c in r)]
        for key, run in _parse_row_pairs((spec or {}).get("rows") or {}):
            r = rows[resolve_row(key, rows, item)]
            out.append({"item": iid, "model": r["model"], "setting": r["setting"], "method": r["method"],
                        "run_dir": exp.run_dir(exp.aliases.get(run, run))})
    return out


def _paper_rows(ctx) -> list[dict]:
    """The rows of the paper whose claim is being judged (a setting such as UC->UF means another
    run in another paper's tables)."""
    paper = getattr(ctx, "claim_paper", None)
    return [r for r in ctx.rows if not paper or str(r["item"]).split("/")[0] == paper]


def _row_match(row: dict, sel: dict) -> bool:
    return all(str(row.get(k)) == str(sel[k]) for k in ("method", "setting", "model") if k in sel)


def _plain_bench_run(ctx, sel: dict) -> Path | None:
    """The experiment's own run a bare selector names: method~<m> (a pipeline: its one run),
    base~<model> for 'base', released~<name> for 'released:<name>'."""
    m = str(sel.get("method", ""))
    if ctx.root is not None and m.startswith("released:"):
        d = ctx.root / f"released~{m.split(':', 1)[1]}"
        return d if d.is_dir() else None
    if ctx.root is not None and m == "base":
        found = sorted(d for d in ctx.root.glob("base~*") if d.is_dir())
        return found[0] if len(found) == 1 else None
    runs = [r for r in ctx.runs if r.kind == m and "/seed~" not in f"/{r.name}"]
    for k in ("lr", "beta"):
        if k in sel:
            runs = [r for r in runs if (v := (r.config or {}).get("lr") if k == "lr" else
                                        ((r.config or {}).get("hparams") or {}).get("beta")) is not None
                    and math.isclose(float(v), float(sel[k]), rel_tol=1e-9)]
    if len(runs) > 1:
        runs = [r for r in runs if r.name == f"method~{m}"]
    return Path(runs[0].path) if len(runs) == 1 else None


def _bench_run(ctx, sel: dict, item: str | None) -> tuple[Path | None, str]:
    """(run directory, why not) of the run a selector names for a paper benchmark: through the
    paper-table rows (the item's first) where the selector names a setting or model or the rows
    name one run; else the experiment's own run of that method."""
    unknown = [k for k in sel if k not in ("method", "setting", "model", "lr", "beta")]
    if unknown:
        return None, f"selector {_sel_str(sel)}: runs do not record {', '.join(unknown)}"
    hits = [r for r in _paper_rows(ctx) if _row_match(r, sel)]
    iid = _item_id(item)
    if iid and any(r["item"] == iid for r in hits):
        hits = [r for r in hits if r["item"] == iid]
    dirs = list(dict.fromkeys(r["run_dir"] for r in hits))
    plain = _plain_bench_run(ctx, sel)
    if len(dirs) == 1:
        d = Path(dirs[0])
        return (d, "") if d.is_dir() else (None, f"no run {d} (the paper-table row of {_sel_str(sel)})")
    if len(dirs) > 1:
        if "setting" not in sel and plain is not None and str(plain) in dirs:
            return plain, ""
        return None, (f"{_sel_str(sel)} names {len(dirs)} runs of the paper tables ({', '.join(dirs[:4])}"
                      f"{' ...' if len(dirs) > 4 else ''}); the claim must name the setting")
    if "setting" in sel or "model" in sel:
        return None, (f"no paper-table row of {_sel_str(sel)}" + ("" if ctx.rows else
                      " (no paper_tables rows given: negfree claims --paper-rows)"))
    if plain is not None:
        return plain, ""
    return None, f"no run of {_sel_str(sel)}"


def _seed_dirs(run_dir: Path) -> dict:
    """{training seed: run directory} of a run and its replicates (``<run>/seed~<s>``); an
    untrained model (base~, released~) is ``{None: dir}``."""
    if run_dir.name.startswith(UNTRAINED):
        return {None: run_dir}

    def seed_of(d: Path, default: int = 0) -> int:
        cfg = d / "config.json"
        return int(json.loads(cfg.read_text()).get("seed", default)) if cfg.is_file() else default

    out = {seed_of(run_dir): run_dir}
    for d in sorted(run_dir.glob("seed~*")):
        if d.is_dir():
            out.setdefault(seed_of(d, int(d.name.split("~", 1)[1])), d)
    return out


# ------------------------------------------------------------------------------ judged benchmarks
# The judged protocols' results (negfree judged-eval: <run>/eval/<arena_hard|mt_bench|wildbench>.json,
# negfree/report/paper_table.py METRIC_SOURCES with ``judged``) name their judge. A claim on them is
# judged only as the paper's judge judged it:
#   the offline judge        not checkable (a hash, not a model), the reason naming both judges;
#   another model            at best inconclusive, never reproduced (nor contradicted): the reason says
#                            "judge differs from the paper's (<used> vs <paper>)" and what the interval read;
#                            a paper_value check gives no verdict (the protocols differ);
#   the paper's judge        the usual rules.
# Per-item scores, for paired intervals over test items: MT-Bench per question (its two turns'
# ratings, judgements.jsonl), Arena-Hard's win rate per prompt (its games' weighted wins over
# weights: the benchmark's BT win rate against the one baseline is their ratio); the LC win rate
# (a fitted model) and the WB-Score (a weighted macro over task groups) have none: over training
# seeds only, and a paper_value check reads the result's own bootstrap interval. Lengths (bnf
# Table 5) are no judge's: per answer, from the answer file, whoever judged.
_RESULT_KEY = {"win_rate": "win_rate", "lc_win_rate": "lc_win_rate", "score": "score",
               "wb_score_task_macro": "wb_score"}
_NO_ITEMS = {"lc_win_rate": "the Arena-Hard LC win rate is a fitted model over all battles (length control), not a "
                            "mean of per-prompt scores",
             "wb_score_task_macro": "the WB-Score is a weighted macro over task groups; the result keeps no "
                                    "tasks' tags"}


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _judgements(path: Path, rec: dict) -> list[dict]:
    from negfree.report.items import NoItems

    jpath = path.with_name(rec.get("judgements") or f"{path.stem}.judgements.jsonl")
    if not jpath.is_file():
        raise NoItems(f"{path} has no per-item judgements ({jpath.name})")
    return _read_jsonl(jpath)


def _judged_items(path: Path, rec: dict, metric: str) -> tuple[list, np.ndarray, object, float]:
    """(ids, per-item rows, reduce, unit) of a judged score whose per-item scores make it, or NoItems."""
    from negfree.report.items import NoItems

    if metric == "score":                                   # MT-Bench: per question, its turns' ratings
        by_q: dict[str, dict] = {}
        for r in _judgements(path, rec):
            qid, _, turn = str(r["id"]).rpartition("/turn")
            if not r.get("ok") or r.get("verdict") is None:
                raise NoItems(f"{path.name}: judgement {r['id']} failed; no per-question scores")
            by_q.setdefault(qid, {})[int(turn)] = float(r["verdict"])
        if len({len(v) for v in by_q.values()}) != 1:
            raise NoItems(f"{path.name}: the questions have different numbers of rated turns")
        ids = list(by_q)
        return ids, np.asarray([[v[t] for t in sorted(v)] for v in by_q.values()]), lambda m: m.mean(axis=1), 1.0
    if metric == "win_rate":                                # Arena-Hard: per prompt, sum w*y and sum w
        from negfree.evaluate.judge.aggregate import arena_hard_battles

        games: dict[str, dict] = {}
        for r in _judgements(path, rec):
            qid, _, game = str(r["id"]).rpartition("/")
            games.setdefault(qid, {})[game] = r.get("verdict") if r.get("ok") else None
        weight = ((rec.get("results") or {}).get("win_rate") or {}).get("weight")
        b = arena_hard_battles([{"model_as_a": g.get("model_as_a"), "model_as_b": g.get("model_as_b")}
                                for g in games.values()], **({"weight": int(weight)} if weight else {}))
        n = len(games)
        wy = np.bincount(b["prompt"], weights=b["w"] * b["y"], minlength=n)
        w = np.bincount(b["prompt"], weights=b["w"], minlength=n)
        keep = w > 0
        return ([q for q, k in zip(games, keep) if k], np.column_stack([wy, w])[keep],
                lambda m: m[:, 0] / m[:, 1], 100.0)
    raise NoItems(_NO_ITEMS.get(metric, f"no per-item scores of {metric}"))


def _length_items(run_dir: Path, judged: str, metric: str) -> tuple[list, np.ndarray]:
    """Per-answer lengths from the answer file (negfree judged-answers), as the result counts them."""
    from negfree.evaluate.judge.aggregate import WB_TRUNCATED
    from negfree.report.items import NoItems

    path = run_dir / "judged" / f"{judged}.answers.jsonl"
    if not path.is_file():
        raise NoItems(f"no answer file {path} (the lengths per answer)")
    ids, vals = [], []
    for r in _read_jsonl(path):
        if metric == "mean_length_tokens":
            if not isinstance(r.get("n_tokens"), list):
                raise NoItems(f"{path.name}: answer {r.get('question_id')} has no token counts")
            vals.append(float(sum(r["n_tokens"])))
        else:       # WildBench's leaderboard Length: characters, the truncated and empty answers left out
            out = str((r.get("turns") or [""])[0]).strip()
            if not out or out.endswith(WB_TRUNCATED):
                continue
            vals.append(float(len(out)))
        ids.append(str(r.get("question_id")))
    if not ids:
        raise NoItems(f"{path.name} has no answer to measure")
    return ids, np.asarray(vals).reshape(-1, 1)


def _judged_columns(run_dir: Path, metric: str, paper: str | None) -> list | None:
    """The columns of a judged benchmark's metric key (None: the key is no judged protocol's). Each
    column carries ``judge`` (the model, or None for a length) and, where it has no per-item scores,
    ``no_items`` (why) and ``result_ci`` (the result's own interval). Raises NoItems, the offline
    judge included."""
    from negfree.report.items import Column, NoItems
    from negfree.report.paper_table import (JUDGED_FORMAT, LEADERBOARD_LENGTH, NOT_MEASURED_WHY, OFFLINE, PAPER,
                                            extra_judged, judge_status, judged_source, paper_judge)

    src = judged_source(metric)
    if src is None:
        if paper_judge(paper, metric) and metric in NOT_MEASURED_WHY:
            raise NoItems(f"'{metric}' is not measured: {NOT_MEASURED_WHY[metric]}")
        return None
    # a column of an extra judge (the same answers judged again: MT-Bench's GPT-4 Turbo) reads its own result
    extra = extra_judged(paper, metric)
    path = run_dir / "eval" / f"{extra or src.judged}.json"
    if not path.is_file():
        raise NoItems(f"no evaluation {path}" + (f" (the answers judged again by {paper_judge(paper, metric)})"
                                                 if extra else ""))
    rec = json.loads(path.read_text())
    if rec.get("format") != JUDGED_FORMAT:
        raise NoItems(f"{path}: not a result of negfree judged-eval ({JUDGED_FORMAT})")
    ours = {m["metric"]: m.get("value") for m in rec.get("metrics") or []}
    length = rec.get("output_length") or {}
    if src.judge_free:
        reported = length.get("leaderboard_mean_chars") if src.metric == LEADERBOARD_LENGTH else ours.get(src.metric)
        ids, x = _length_items(run_dir, src.judged, src.metric)
        if reported is None or abs(float(x.mean()) - float(reported)) > 1e-6:
            answers = path.parent.parent / "judged" / f"{src.judged}.answers.jsonl"
            raise NoItems(f"the {len(ids)} answers of {answers} average {x.mean():.6g}, the result reports {reported}")
        col = Column(metric, src.protocol, path, ids, x, 1.0, None, False, rec,
                     f"{src.protocol}/{src.metric} (answer lengths, no judge)")
        col.judge = None
        return [col]
    judge = rec.get("judge") or {}
    model = str(judge.get("model") or "")
    pj = paper_judge(paper, metric)
    status, why = judge_status(model, bool(rec.get("judge_is_offline") or judge.get("offline")), pj)
    if status == OFFLINE:
        raise NoItems(f"{path} was judged by the {why}")
    value = ours.get(src.metric)
    if value is None:
        raise NoItems(f"{path} reports no {src.metric}")
    res = (rec.get("results") or {}).get(_RESULT_KEY.get(src.metric, src.metric)) or {}
    try:
        ids, x, reduce, unit = _judged_items(path, rec, src.metric)
        col = Column(metric, src.protocol, path, ids, x, unit, reduce, False, rec,
                     f"{src.protocol}/{src.metric} judged by {model or 'an unrecorded judge'}")
        if abs(col.value - float(value)) > 1e-6 * max(1.0, abs(float(value))):
            raise NoItems(f"the {len(ids)} items of {path.name} give {col.value:.6g}, the result reports {value}")
        col.no_items = None
    except NoItems as e:
        col = Column(metric, src.protocol, path, ["(the whole benchmark)"], np.asarray([[float(value)]]), 1.0, None,
                     False, rec, f"{src.protocol}/{src.metric} judged by {model or 'an unrecorded judge'}")
        col.no_items = str(e)
    iv = res.get("interval") or {}
    col.result_ci = ((float(res["ci_low"]), float(res["ci_high"]),
                      f"the result's own {iv.get('method', 'interval')} over {iv.get('unit', 'items')}s")
                     if res.get("ci_low") is not None and res.get("ci_high") is not None else None)
    col.judge, col.judge_note = model, (why if status != PAPER else "")
    return [col]


# AlpacaEval 1 and 2 (negfree alpaca-eval: <run>/eval/<alpaca_eval1|alpaca_eval2>.json) count only with the
# protocol's own annotator (paper_table.ALPACA_JUDGES: alpaca_eval_gpt4, weighted_alpaca_eval_gpt4_turbo), as
# the judged protocols do with the paper's judge: the offline stand-in negfree_local_loglik makes a claim not
# checkable; another annotator (or another model behind it, "<annotator>@<model>") gives at best inconclusive,
# the reason naming both; a paper_value check gives no verdict. The plain win rate has per-item scores (the
# judge's preference per instruction, the annotations file); the LC win rate (a fitted model) has none: over
# training seeds, and a paper_value check reads the result's standard error. AlpacaEval 1 has no LC. Lengths
# are the answers' (the outputs file), no judge's.
_ALPACA_NO_ITEMS = ("the LC win rate of AlpacaEval 2 is fitted over all items (length control), not a mean of "
                    "per-item preferences")


def _alpaca_columns(run_dir: Path, metric: str, paper: str | None, protocols) -> list | None:
    """The column of an AlpacaEval metric key (None: the key is no AlpacaEval protocol's), with ``judge``
    (the result's annotator, None for a length) and, where it has no per-item scores, ``no_items`` and
    ``result_ci``. Raises NoItems, the offline stand-in included."""
    import fnmatch

    from negfree.report.items import Column, NoItems, alpaca_column
    from negfree.report.paper_table import (ALPACA_JUDGE_NAMES, ALPACA_STAND_IN, NOT_MEASURED_WHY, OFFLINE, PAPER,
                                            alpaca_source, judge_status, paper_judge)

    src = alpaca_source(metric, protocols)
    if src is None:              # AlpacaEval 1's LC: no such number (NOT_MEASURED_WHY says why)
        why = next((w for k, w in NOT_MEASURED_WHY.items() if fnmatch.fnmatchcase(metric, k)), None)
        if why and alpaca_source(metric) is None and metric.startswith(("alpacaeval/", "alpacaeval2/")):
            raise NoItems(f"'{metric}' is not measured: {why}")
        return None
    path = run_dir / "eval" / f"{src.protocol}.json"
    if not path.is_file():
        raise NoItems(f"no evaluation {path}")
    rec = json.loads(path.read_text())
    ours = {m.get("metric"): m.get("value") for m in rec.get("metrics") or []}
    if src.judge_free:                                   # the answers' lengths, per instruction
        out = path.with_name(rec.get("outputs") or path.with_suffix(".outputs.json").name)
        if not out.is_file():
            raise NoItems(f"{path} has no outputs file ({out.name}): no lengths per answer")
        answers = json.loads(out.read_text())
        ids = [str(a.get("instruction")) for a in answers]
        x = np.asarray([float(len(str(a.get("output") or ""))) for a in answers]).reshape(-1, 1)
        reported = ours.get(src.metric, rec.get(src.metric))
        if not ids or reported is None or abs(float(x.mean()) - float(reported)) > 1e-6 * max(1.0, abs(reported)):
            raise NoItems(f"the {len(ids)} answers of {out.name} average {x.mean() if ids else 'nothing'}, the result "
                          f"reports {reported}")
        col = Column(metric, src.protocol, path, ids, x, 1.0, None, False, rec,
                     f"{src.protocol}/{src.metric} (answer lengths, no judge)")
        col.judge = None
        return [col]
    annotator = str(rec.get("annotator") or "")
    pj = paper_judge(paper, metric)
    status, why = judge_status(annotator, annotator == ALPACA_STAND_IN, pj)
    if status == OFFLINE:
        raise NoItems(f"{path} was judged by {annotator}, not {ALPACA_JUDGE_NAMES[src.protocol]} ({pj}): {why}")
    judged_by = f"{src.protocol}/{src.metric} judged by {annotator or 'an unrecorded annotator'}"
    if src.metric == "win_rate":                         # the judge's preference per instruction
        col = alpaca_column(path, metric, "win_rate")
        col.protocol, col.source = src.protocol, judged_by
        reported = ours["win_rate"] if "win_rate" in ours else (rec.get("leaderboard_row") or {}).get("win_rate")
        if reported is not None and abs(col.value - float(reported)) > 1e-6 * max(1.0, abs(float(reported))):
            raise NoItems(f"the {len(col.ids)} preferences of {path.name}'s annotations give {col.value:.6g}, the "
                          f"result reports a win rate of {reported}")
        col.no_items, col.result_ci = None, None
    else:                                                # the LC win rate: one fitted number
        value = ours.get(src.metric)
        if value is None:
            raise NoItems(f"{path} reports no {src.metric}" + (f" ({rec['lc_reason']})" if rec.get("lc_reason") else ""))
        col = Column(metric, src.protocol, path, ["(the whole benchmark)"], np.asarray([[float(value)]]), 1.0, None,
                     False, rec, judged_by)
        col.no_items = _ALPACA_NO_ITEMS
        se = rec.get("standard_error")
        col.result_ci = ((float(value) - 1.959964 * float(se), float(value) + 1.959964 * float(se),
                          "the result's standard error (alpaca_eval's lc_standard_error) x 1.96")
                         if se is not None else None)
    col.judge, col.judge_note = annotator, (why if status != PAPER else "")
    return [col]


def _columns(ctx, run_dir: Path, metric: str, protocols) -> list:
    """The per-item columns of ``metric`` in one run's evaluations (cached); raises NoItems. A judged
    benchmark's column whose judge is not the paper's is noted in ``ctx.judge_notes`` (the claim's
    verdict is capped, evaluate_claim)."""
    from negfree.report.items import NoItems, column

    paper = getattr(ctx, "claim_paper", None)
    key = (str(run_dir), metric, protocols, paper)
    if key not in ctx._columns:
        try:
            cols = _judged_columns(Path(run_dir), metric, paper)
            if cols is None:
                cols = _alpaca_columns(Path(run_dir), metric, paper, protocols)
            if cols is None:
                cols = column(run_dir, metric, protocols)
            ctx._columns[key] = cols
        except NoItems as e:
            ctx._columns[key] = e
    got = ctx._columns[key]
    if isinstance(got, Exception):
        raise got
    notes = getattr(ctx, "judge_notes", None)
    if notes is not None:
        notes += [c.judge_note for c in got if getattr(c, "judge_note", "")]
    return got


def _item_protocols(item: str | None):
    from negfree.report.paper_table import ITEM_PROTOCOLS

    return ITEM_PROTOCOLS.get(_item_id(item)) if item else None


def _label(ctx, d: Path) -> str:
    try:
        return str(d.relative_to(ctx.root)) if ctx.root is not None else d.name
    except ValueError:
        return str(d)


def _verdict_of(kind: str, check: dict, est: float, lo: float, hi: float, b_value: float):
    """(verdict, what is expected, slack, estimate, low, high) of a compare / close / ratio interval
    (a ratio's interval comes on the log scale and leaves on the ratio scale)."""
    if kind == "compare":
        neg = _EXPECT.match(check["expect"]).group(1).startswith("<")
        return sign_verdict(lo, hi, neg), f"expect {check['expect']}", (-hi if neg else lo), est, lo, hi
    if kind == "close":
        tol = check["abs_tol"] if "abs_tol" in check else check["rel_tol"] * abs(b_value)
        return band_verdict(lo, hi, -tol, tol), f"within +-{_fmt(_r6(tol))}", 0.0, est, lo, hi
    est, lo, hi = (_r6(math.exp(v)) for v in (est, lo, hi))
    e, tol = check["expect_approx"], check["rel_tol"]
    return band_verdict(lo, hi, e * (1 - tol), e * (1 + tol)), f"expect {e} +- {tol * 100:g}%", 0.0, est, lo, hi


def _bench_nc(metric: str, why: str, shown: str = "", n=None) -> Judged:
    return _nc(f"paper-benchmark metric {metric}: {why}", shown, n)


def _bench_pair(ctx, check, metric, sa, sb, kind, item=None, b_item=None) -> Judged:
    """One comparison of side a against side b on a paper benchmark: over training seeds where
    both sides have MIN_SEEDS (an untrained side counts as fixed), else over the test items the
    two runs' evaluations share (paired, one training seed each)."""
    from negfree.report.items import NoItems, compare

    la, lb = _sel_str(sa), _sel_str(sb)
    da, why = _bench_run(ctx, sa, item)
    db, why2 = _bench_run(ctx, sb, b_item or item) if da is not None else (None, why)
    if da is None or db is None:
        return _bench_nc(metric, why if da is None else why2)
    protocols = _item_protocols(item)
    factor = 1.0
    if kind == "compare":
        op, f = _EXPECT.match(check["expect"]).groups()
        factor = float(f) if f else 1.0
    SA, SB = _seed_dirs(da), _seed_dirs(db)
    try:
        A0 = _columns(ctx, SA[next(iter(SA))], metric, protocols)
        B0 = _columns(ctx, SB[next(iter(SB))], metric, tuple(dict.fromkeys(c.protocol for c in A0)))
    except NoItems as e:
        return _bench_nc(metric, f"{e} (the offline twin, negfree_offline, is not a stand-in)"
                         if "no evaluation" in str(e) else str(e))
    src = ", ".join(dict.fromkeys(c.source for c in A0))
    if kind == "ratio":
        def fn(a, b):
            return math.log(a / b)
    else:
        def fn(a, b):
            return a - factor * b

    def values(seeds: dict) -> dict:
        out = {}
        for s, d in seeds.items():
            try:
                out[s] = _r6(float(np.mean([c.value for c in _columns(ctx, d, metric, tuple(x.protocol for x in A0))])))
            except NoItems:
                pass
        return out

    VA, VB = values(SA), values(SB)
    what = (f"{la} - {'' if factor == 1 else _fmt(factor) + ' * '}{lb}" if kind != "ratio"
            else f"{la} / {lb}")
    over_seeds = (None in VB and None not in VA and len(VA) >= MIN_SEEDS
                  or None in VA and None not in VB and len(VB) >= MIN_SEEDS
                  or None not in VA and None not in VB and len(set(VA) & set(VB)) >= MIN_SEEDS)

    def listed(V: dict) -> str:
        return ", ".join(f"seed {s} {_fmt(v)}" if s is not None else f"untrained {_fmt(v)}"
                         for s, v in sorted(V.items(), key=lambda kv: kv[0] or 0))
    if over_seeds:
        shown = f"{metric} ({src}) {la}: {listed(VA)}; {lb}: {listed(VB)}"
        if None in VB:
            res = _interval(VA, None, lambda a: fn(a, VB[None]))
        elif None in VA:
            res = _interval(VB, None, lambda b: fn(VA[None], b))
        else:
            res = _interval(VA, VB, fn)
        n, est, lo, hi, design = res
        design = design if None not in VA and None not in VB else "against the untrained model's one value"
        verdict, expect, slack, est, lo, hi = _verdict_of(kind, check, est, lo, hi, float(np.mean(list(VB.values()))))
        return Judged(verdict, f"{shown}; {what}: {_fmt(est)} [{_fmt(lo)}, {_fmt(hi)}], {n} seeds {design}; {expect}",
                      n_seeds=n, estimate=est, ci=(lo, hi), slack=slack, uncertainty=SEEDS)
    no_items = [c.no_items for c in A0 + B0 if getattr(c, "no_items", None)]
    if no_items:
        return _bench_nc(metric, f"{no_items[0]}: no interval over test items; over training seeds it needs "
                                 f"{MIN_SEEDS} seeds of each side", f"{metric} ({src}) {la}: {listed(VA)}; "
                                                                     f"{lb}: {listed(VB)}")
    try:
        iv = compare(A0, B0, "log_ratio" if kind == "ratio" else "diff", factor)
    except NoItems as e:
        return _bench_nc(metric, str(e))
    est, lo, hi = _r6(iv.estimate), _r6(iv.low), _r6(iv.high)
    verdict, expect, slack, est, lo, hi = _verdict_of(kind, check, est, lo, hi, iv.value_b)
    seeds = f"seeds {sorted(s for s in VA if s is not None)} vs {sorted(s for s in VB if s is not None)}: " \
        if len(VA) > 1 or len(VB) > 1 else ""
    shown = (f"{metric} ({src}) {la} [{_label(ctx, da)}] {_fmt(_r6(iv.value_a))} vs {lb} [{_label(ctx, db)}] "
             f"{_fmt(_r6(iv.value_b))}")
    return Judged(verdict, f"{shown}; {what}: {_fmt(est)} [{_fmt(lo)}, {_fmt(hi)}], {iv.method} over the {iv.n_items} "
                  f"test items ({seeds}fewer than {MIN_SEEDS} training seeds); {expect}",
                  n_seeds=min(sum(s is not None for s in VA) or 1, sum(s is not None for s in VB) or 1),
                  estimate=est, ci=(lo, hi), slack=slack, uncertainty=TEST_ITEMS)


def _parent_item(check: dict, claim: dict) -> str | None:
    return check.get("paper_item") or (claim.get("check") or {}).get("paper_item")


def check_bench_sides(ctx, check, claim) -> Judged:
    kind = check["kind"]
    if kind == "compare" and not _EXPECT.match(check["expect"]):
        return _nc(f"cannot parse expect '{check['expect']}'")
    item = _parent_item(check, claim)
    return combine([_bench_pair(ctx, check, metric, sa, sb, kind, item, check.get("b_item"))
                    for metric in _metrics_of(check) for sa in _as_list(check.get("a"))
                    for sb in _as_list(check.get("b"))])


def check_bench_ordering(ctx, check, claim) -> Judged:
    """Tiers best first, on a paper benchmark: every method of a tier against every one of the next."""
    lower = check.get("lower_is_better", True)
    base = (_as_list(check.get("select")) or [{}])[0]
    item = _parent_item(check, claim)
    tiers = check["expect"]
    out = combine([_bench_pair(ctx, {"expect": "a < b" if lower else "a > b"}, metric, {**base, "method": a},
                               {**base, "method": b}, "compare", item)
                   for metric in _metrics_of(check) for t1, t2 in zip(tiers, tiers[1:]) for a in t1 for b in t2])
    out.measurement = f"tiers {tiers} ({'lower' if lower else 'higher'} is better): " + out.measurement
    return out


def _sweep_value(row: dict, sweep: str):
    if sweep == "method":
        return row["method"]
    m = re.search(rf"(?:^|;){re.escape(sweep)}=([^;]+)", str(row.get("setting", "")))
    if not m:
        return None
    try:
        return float(m.group(1))
    except ValueError:
        return m.group(1)


def check_bench_argbest(ctx, check, claim) -> Judged:
    """argmax / argmin over the rows of a sweep with one expected winner: the winner against every
    other value, each a comparison (over seeds or test items)."""
    kind, sweep, metric = check["kind"], check["sweep"], _metrics_of(check)[0]
    if "expect" not in check or "," in sweep:
        return _bench_nc(metric, f"'{kind}' with a range or over several keys ({sweep}) is not judged: only one "
                                 "expected winner against each other value")
    sel = (_as_list(check.get("select")) or [{}])[0]
    item = _parent_item(check, claim)
    rows = [r for r in _paper_rows(ctx) if _row_match(r, {k: v for k, v in sel.items() if k != "setting"})
            and (sweep == "method" and ("setting" not in sel or r["setting"] == sel["setting"])
                 or sweep != "method" and _sweep_value(r, sweep) is not None)]
    iid = _item_id(item)
    if iid and any(r["item"] == iid for r in rows):
        rows = [r for r in rows if r["item"] == iid]
    values = list(dict.fromkeys(_sweep_value(r, sweep) for r in rows))
    expect = check["expect"]
    win = [v for v in values if v == expect or str(v) == str(expect)]
    if not win or len(values) < 2:
        return _bench_nc(metric, f"'{kind}' over {sweep}: the paper-table rows give {values or 'no value'}"
                         + ("" if ctx.rows else " (no paper_tables rows given: --paper-rows)"))
    # a figure's sweep values the paper prints no number for have no row: the argmax needs them all
    from negfree.report import paper_numbers

    listed = [_sweep_value({"setting": st}, sweep) for it in dict.fromkeys(r["item"] for r in rows)
              for st in paper_numbers.info(it).get("settings") or []]
    unrowed = [v for v in dict.fromkeys(listed) if v is not None and str(v) not in {str(x) for x in values}]
    if unrowed:
        return _bench_nc(metric, f"'{kind}' over {sweep}: {', '.join(map(str, unrowed))} of the paper's values "
                                 f"{[v for v in dict.fromkeys(listed)]} have no paper-table row (no printed number), "
                                 "so the best of all cannot be judged")

    def side(v):
        if sweep == "method":
            return {**sel, "method": v}
        r = next(r for r in rows if _sweep_value(r, sweep) == v)
        return {**{k: x for k, x in sel.items() if k != "setting"}, "method": r["method"], "setting": r["setting"]}
    op = "a > b" if kind == "argmax" else "a < b"
    out = combine([_bench_pair(ctx, {"expect": op}, metric, side(win[0]), side(v), "compare", item)
                   for v in values if str(v) != str(win[0])])
    out.measurement = f"{kind} over {sweep} = {expect} against {[v for v in values if str(v) != str(expect)]}: " \
        + out.measurement
    return out


def _tolerance(ctx, metric: str) -> tuple[float | None, str]:
    for pat, t in ctx.tolerances.items():
        if pat == metric or re.fullmatch(pat.replace("*", ".*"), metric):
            return float(t["abs"]), t.get("why", "")
    return None, ""


def _protocol_differs(metric: str, cols) -> str | None:
    """Why our measurement is not the paper's protocol, or None: a subset of the items, another
    shot count or chat-template use than the protocol's (the paper's), another judge, another
    harness (PROTOCOL_DIFFERS)."""
    from negfree.evaluate.protocols import PROTOCOLS
    from negfree.report.paper_table import ALPACA_JUDGES, alpaca_result_note

    for c in cols:
        if c.key in PROTOCOL_DIFFERS:
            return PROTOCOL_DIFFERS[c.key]
        rec = c.record
        if rec.get("limit"):
            return (f"ours scored the first {rec['limit']} items of each task (evaluate.limit), the paper the full "
                    "test set")
        if c.protocol in ALPACA_JUDGES:      # the judge is the column's judge_note; here the rest of the protocol
            said = alpaca_result_note(rec)
            if said:
                return f"ours {said}"
            continue
        proto = PROTOCOLS.get(c.protocol)
        if proto is None:
            continue
        task = c.source.split("/")[1]
        call = next((k for k in proto.calls if task in k.metrics), None)
        ran = next((k for k in rec.get("calls") or [] if call is not None and k.get("group") == call.group), None)
        if call is None or ran is None:
            continue
        shots = {t: v for t, v in (ran.get("n_shot") or {}).items() if t == task or (t.startswith(task + "_"))}
        bad = sorted({v for v in shots.values() if v != call.num_fewshot[task]})
        if bad:
            return f"a different shot count on {task}: ours {bad}, the paper's {call.num_fewshot[task]}"
        if bool(ran.get("apply_chat_template")) != call.chat_template:
            return (f"{task} {'with' if ran.get('apply_chat_template') else 'without'} the chat template, the paper's "
                    f"{'with' if call.chat_template else 'without'}")
    return None


def check_paper_value(ctx, check, claim) -> Judged:
    """Our score within the paper's transcribed value +- the benchmark's tolerance ([ours]), judged on
    our interval (over seeds where the run has MIN_SEEDS, else over test items)."""
    from negfree.report import paper_numbers
    from negfree.report.items import NoItems, score_interval

    item = check["paper_item"]
    paper = paper_numbers.load(item)
    parts = []
    for sel in _as_list(check.get("select")):
        for metric in _metrics_of(check):
            hit = paper[(paper.metric == metric) & np.logical_and.reduce(
                [paper[k] == str(v) for k, v in sel.items() if k in ("method", "setting", "model")] or [True])]
            if len(hit) != 1 or math.isnan(float(hit.value.iloc[0])):
                parts.append(_bench_nc(metric, f"{item} has {len(hit)} printed value(s) for {_sel_str(sel)}"))
                continue
            pv = float(hit.value.iloc[0])
            tol, why_tol = _tolerance(ctx, metric)
            if tol is None:
                parts.append(_bench_nc(metric, f"no tolerance for {metric} (claims.yaml paper_value_tolerance)"))
                continue
            d, why = _bench_run(ctx, sel, item)
            if d is None:
                parts.append(_bench_nc(metric, why))
                continue
            seeds = _seed_dirs(d)
            try:
                cols = _columns(ctx, seeds[next(iter(seeds))], metric, _item_protocols(item))
            except NoItems as e:
                parts.append(_bench_nc(metric, str(e)))
                continue
            band = f"the paper's {_fmt(pv)} +- {_fmt(tol)} ([ours]: {why_tol})"
            differs = "; ".join(c.judge_note for c in cols if getattr(c, "judge_note", "")) \
                or _protocol_differs(metric, cols)
            if differs:
                ours = float(np.mean([c.value for c in cols]))
                parts.append(_nc(f"paper value {metric} of {_sel_str(sel)}: no verdict, the protocols differ: "
                                 f"{differs}",
                                 f"{metric} {_sel_str(sel)}: ours {_fmt(_r6(ours))}, {band}"))
                continue
            vals = {}
            for s, sd in seeds.items():
                try:
                    vals[s] = _r6(float(np.mean([c.value for c in _columns(ctx, sd, metric, _item_protocols(item))])))
                except NoItems:
                    pass
            if None not in vals and len(vals) >= MIN_SEEDS:
                n, est, lo, hi, _ = _interval(vals, None, lambda a: a)
                how = f"{n} seeds: " + ", ".join(f"seed {s} {_fmt(v)}" for s, v in sorted(vals.items()))
                unc, ns = SEEDS, n
            elif any(getattr(c, "no_items", None) for c in cols):     # a judged score with its own interval only
                ci = cols[0].result_ci if len(cols) == 1 else None
                if ci is None:
                    parts.append(_bench_nc(metric, f"{cols[0].no_items}, and the result gives no interval"))
                    continue
                est, lo, hi = _r6(cols[0].value), _r6(ci[0]), _r6(ci[1])
                trained = "an untrained model" if None in seeds else "one training seed"
                how, unc, ns = f"{ci[2]}, {trained}", TEST_ITEMS, 1
            else:
                iv = score_interval(cols)
                est, lo, hi = _r6(iv.estimate), _r6(iv.low), _r6(iv.high)
                trained = "an untrained model" if None in seeds else "one training seed"
                how, unc, ns = f"{iv.method} over the {iv.n_items} test items, {trained}", TEST_ITEMS, 1
            verdict = band_verdict(lo, hi, pv - tol, pv + tol)
            parts.append(Judged(verdict, f"{metric} {_sel_str(sel)} [{_label(ctx, d)}]: ours {_fmt(est)} [{_fmt(lo)}, "
                                f"{_fmt(hi)}] ({how}); {band}", n_seeds=ns, estimate=est, ci=(lo, hi), slack=0.0,
                                uncertainty=unc))
    return combine(parts)


# ------------------------------------------------------------------------------ the offline twin (the demo)
# pairs the papers' headline claims compare; on the offline twin's embedded test split they are shown,
# not judged against any claim (it is no paper benchmark)
HEADLINE_PAIRS = (("dft", "sft"), ("dft2", "sft"), ("ift", "sft"), ("ift", "dpo"), ("asft", "dpo"), ("asft", "orpo"),
                  ("bnf", "dpo"), ("bnf", "simpo"))
OFFLINE_METRICS = (("negfree_mc", "acc,none"), ("negfree_gen", "exact_match,strict-match"))


def offline_comparisons(ctx) -> list[dict]:
    """The headline pairs on the offline twin's per-item scores (negfree_offline.samples.jsonl of the
    methods: runs): paired intervals over the test items, one training seed each."""
    from negfree.report.items import NoItems, compare, lm_eval_column

    out = []
    for a, b in HEADLINE_PAIRS:
        ra, rb = _plain_bench_run(ctx, {"method": a}), _plain_bench_run(ctx, {"method": b})
        if ra is None or rb is None:
            continue
        for task, metric in OFFLINE_METRICS:
            try:
                ca, cb = (lm_eval_column(d / "eval" / "negfree_offline.json", f"{task}/{metric}", "offline", task,
                                         metric, 100.0) for d in (ra, rb))
                iv = compare([ca], [cb])
            except NoItems:
                continue
            lo, hi = _r6(iv.low), _r6(iv.high)
            word = (f"{a} higher" if lo > 0 else f"{a} lower" if hi < 0 else INCONCLUSIVE)
            out.append({"pair": f"{a} - {b}", "metric": f"{task} {metric.split(',')[0]} (%)", "a": _r6(iv.value_a),
                        "b": _r6(iv.value_b), "estimate": _r6(iv.estimate), "ci_low": lo, "ci_high": hi,
                        "n_items": iv.n_items, "method": iv.method, "verdict": word})
    return out


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
    if kind == "paper_value":
        return check_paper_value(ctx, check, claim)
    metrics = _metrics_of(check)
    bench = [m for m in metrics if _benchmark(m)]
    if bench:
        if kind in ("compare", "close", "ratio"):
            return check_bench_sides(ctx, check, claim)
        if kind == "ordering":
            return check_bench_ordering(ctx, check, claim)
        if kind in ("argmax", "argmin"):
            return check_bench_argbest(ctx, check, claim)
        return _nc(f"paper-benchmark metric{'s' if len(bench) > 1 else ''} {', '.join(bench)}: a '{kind}' check is "
                   "not judged (compare, close, ratio, ordering, argmax/argmin with one expected winner and "
                   "paper_value are)")
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
        from negfree.losses import REGISTRY

        name, prop = check["method"], check["property"]
        if name not in REGISTRY:
            return False, f"method '{name}' is not registered"
        got = REGISTRY[name].describe().get(prop, "<no such field>")
        return got == check["expect"], f"negfree methods --json: {name}.{prop} = {got!r} (expected {check['expect']!r})"
    from negfree.report.analytic_checks import analytic_checks

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
    ctx.claim_paper, ctx.judge_notes = claim.get("paper"), []
    res = evaluate_check(ctx, check, claim)
    judge_notes = list(dict.fromkeys(ctx.judge_notes))
    ctx.judge_notes = None
    if judge_notes:     # another judge than the paper's: never reproduced (nor contradicted)
        note = "; ".join(judge_notes)
        if res.verdict in (REPRODUCED, CONTRADICTED):
            res.reason = (f"{note}: with that judge the interval reads {res.verdict}, which is no verdict on the "
                          f"paper's claim" + (f"; {res.reason}" if res.reason else ""))
            res.verdict = INCONCLUSIVE
        elif note not in res.reason:
            res.reason = f"{note}; {res.reason}" if res.reason else note
    # a judged benchmark reaches a verdict only through the paper's judge (_columns refuses others)
    missing = [REQUIREMENTS[r] for r in _as_list(claim.get("requires"))
               if r in REQUIREMENTS and not (r == "judge" and res.verdict != NOT_CHECKABLE)]
    if missing:
        why = "; ".join(f"needs {m}" for m in missing)
        res.verdict, res.reason, res.uncertainty = NOT_CHECKABLE, why + (f" ({res.reason})" if res.reason else ""), ""
    reason = res.reason
    if TEST_ITEMS in res.uncertainty.split("+") and res.verdict != NOT_CHECKABLE:
        reason = f"{TEST_ITEMS_NOTE}; {reason}" if reason else TEST_ITEMS_NOTE
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
    row.update(kind="empirical", verdict=res.verdict,
               uncertainty=res.uncertainty if res.verdict != NOT_CHECKABLE else "",
               n_seeds=res.n_seeds, estimate=res.estimate, ci_low=ci[0], ci_high=ci[1], measurement=res.measurement,
               scale=scale, reason=reason.strip())
    return row


# ------------------------------------------------------------------------------ ledger
def claims_ledger(claims_yaml, runs_root, frozen_lake_dir, out_csv, out_md, scale: str, *, shifts=None,
                  score_dist=None, robustness=None, paper_rows=None) -> pd.DataFrame:
    """Evaluate every claim; ``runs_root``: a directory searched for runs.
    ``paper_rows``: the paper-table rows that name runs (``paper_rows_of``), for settings and models."""
    spec = yaml.safe_load(Path(claims_yaml).read_text())
    claims = spec["claims"]
    runs = find_runs(runs_root) if runs_root and Path(runs_root).exists() else []
    root = runs_root if runs_root and Path(runs_root).is_dir() else None
    ctx = Context(runs, frozen_lake_dir, scale, shifts=shifts, score_dist=score_dist, robustness=robustness,
                  root=root, paper_rows=paper_rows, tolerances=spec.get("paper_value_tolerance"))
    df = pd.DataFrame([evaluate_claim(ctx, c) for c in claims], columns=COLUMNS)
    df["n_seeds"] = df["n_seeds"].astype("Int64")
    atomic_write_text(out_csv, df.to_csv(index=False))
    write_markdown_page(out_md, ledger_markdown(df, scale, runs, runs_root, frozen_lake_dir,
                                                offline_comparisons(ctx)))
    return df


def _md(s) -> str:
    return "" if s is None or (isinstance(s, float) and math.isnan(s)) else str(s).replace("|", "\\|").replace("\n", " ")


SOURCES = (SEEDS, TEST_ITEMS, SETTINGS)


def ledger_markdown(df: pd.DataFrame, scale: str, runs, runs_root, fl_dir, offline=()) -> str:
    seeds = sorted({int((r.config or {}).get("seed", 0)) for r in runs})
    lines = ["# Claims ledger", "",
             f"Scale: {scale}. {len(runs)} runs read from `{runs_root}` (seeds {seeds}): "
             + (", ".join(f"{r.kind} ({r.name})" for r in runs) or "none") + f". Frozen Lake: `{fl_dir}`.",
             "", "Every empirical verdict names what its 95% interval covers (column `uncertainty`): `seeds`, the "
             f"effect's t interval over at least {MIN_SEEDS} training seeds (paired by seed), which covers training "
             "noise; `test_items`, for paper benchmarks of runs trained once, a paired interval over the test items "
             "both models were scored on (Agresti-Min for one binary benchmark, else a paired bootstrap within each "
             "benchmark), which covers the test set's noise only: such a verdict holds for these trained models; "
             "`settings`, the Frozen Lake study's interval over its settings. The interval must exclude zero in the "
             "paper's direction (`reproduced`) or the other way (`contradicted`); otherwise `inconclusive`. "
             "Implementation checks test our own code (`verified`).", ""]
    for kind, verdicts in VERDICTS.items():
        sub = df[df.kind == kind]
        if kind == "empirical":
            unc = sub.uncertainty.fillna("").astype(str)
            lines += [f"| {kind} verdict | claims | " + " | ".join(f"over {u.replace('_', ' ')}" for u in SOURCES)
                      + " |", "|---|---|" + "---|" * len(SOURCES)]
            lines += [f"| {v} | {int((sub.verdict == v).sum())} | " + " | ".join(
                str(int(((sub.verdict == v) & unc.str.split("+").map(lambda xs, u=u: u in xs)).sum())) for u in SOURCES)
                + " |" for v in verdicts] + [f"| total | {len(sub)} |" + " |" * len(SOURCES), ""]
        else:
            lines += [f"| {kind} verdict | claims |", "|---|---|"]
            lines += [f"| {v} | {int((sub.verdict == v).sum())} |" for v in verdicts] + [f"| total | {len(sub)} |", ""]
    for kind in VERDICTS:
        lines += [f"## {kind.capitalize()} claims", "",
                  "| id | verdict | uncertainty | seeds | estimate [95% CI] | measurement | reason |",
                  "|---|---|---|---|---|---|---|"]
        for _, r in df[df.kind == kind].iterrows():
            est = "" if pd.isna(r.estimate) else f"{_fmt(r.estimate)} [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]"
            lines.append(f"| {r.id} | {r.verdict} | {_md(r.uncertainty)} | "
                         f"{_md(r.n_seeds if not pd.isna(r.n_seeds) else '')} | {est} | "
                         f"{_md(r.measurement)} | {_md(r.reason)} |")
        lines.append("")
    if offline:
        lines += ["## Offline twin: test-item comparisons (shown, not claims)", "",
                  "The pairs the papers' headline claims compare, on the offline lm-eval twin's embedded test split "
                  "(negfree_offline.samples.jsonl): no paper benchmark, so no claim is judged on them. Uncertainty: "
                  "test items, one training seed each: a difference outside the interval holds for these trained "
                  "models, not for the method.", "",
                  "| pair | metric | a | b | a - b [95% CI] | test items | interval | reading |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {o['pair']} | {o['metric']} | {_fmt(o['a'])} | {_fmt(o['b'])} | {_fmt(o['estimate'])} "
                  f"[{_fmt(o['ci_low'])}, {_fmt(o['ci_high'])}] | {o['n_items']} | {o['method']} | {o['verdict']} |"
                  for o in offline]
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
    p.add_argument("--paper-rows", default=None, metavar="JSON",
                   help="the paper-table rows that name runs, a JSON list of {item, model, setting, method, run_dir} "
                        "(the workflow passes the experiments' paper_tables rows): claims whose selectors name a "
                        "setting or a model read these runs")
    a = p.parse_args(argv)
    df = claims_ledger(a.claims, a.runs_root, a.frozen_lake, a.out_csv, a.out_md, a.scale, shifts=a.shifts,
                       score_dist=a.score_dist, robustness=a.robustness,
                       paper_rows=json.loads(a.paper_rows) if a.paper_rows else None)
    print(df.groupby(["kind", "verdict", "uncertainty"], dropna=False).size().to_string())
    print(f"wrote {a.out_csv} and {a.out_md}")


if __name__ == "__main__":
    main_claims()
