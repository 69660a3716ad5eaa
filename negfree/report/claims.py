"""The claims ledger: every claim of configs/claims.yaml, evaluated on what exists.

Verdicts: ``reproduced`` / ``not reproduced`` where the check could be computed from
files that exist (run directories, the Frozen Lake outputs), from the loss registry, or
from the library's loss code through autograd; ``not checkable at this scale`` otherwise,
with the exact missing thing as the reason (a run that does not exist, a paper benchmark,
a judge, a sweep, a private corpus, a GPU).

Evaluated here:
  compare / trend / close / ratio on train/<key> series of metrics.jsonl (agg final | mean |
      delta | every_step) and on timing/<key> of timing.json, between runs that exist;
  ordering / compare on toy/frozen_lake/<col> (mean over seeds of fig3.csv);
  registry: fields of negfree.losses.REGISTRY[...].describe() (``negfree methods --json``);
  analytic: the properties named in claims.yaml, by autograd through negfree.losses;
  compare / ordering / threshold / argmin / argmax on shift/<name> and score/<name>, read from
      the summary CSVs given with ``--shifts`` (``negfree shifts``: shifts_summary.csv, one row
      per model) and ``--score-dist`` (``negfree score-dist``: fig1_summary.csv, one row per
      pool). FILE_METRICS below is the one table from metric names to CSV columns; without
      the file, or when it lacks the row, column or bin anchor a claim needs, the claim is
      not checkable and the reason names what is missing, in which file.
Claims on paper-benchmark metrics (avg, gsm8k/..., alpacaeval2/..., bleu4, ...) are never
mapped onto the offline twin (negfree_offline): they are not checkable at this scale.
"""
from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..io import atomic_write_text
from .html import write_markdown_page
from .training import Run, find_runs

REPRODUCED, NOT_REPRODUCED, NOT_CHECKABLE = "reproduced", "not reproduced", "not checkable at this scale"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, NOT_CHECKABLE)
COLUMNS = ["id", "paper", "statement", "source", "measurement", "scale", "verdict", "reason"]

REQUIREMENTS = {
    "judge": "a paid LLM judge (GPT-4 class) for the paper's judged benchmark",
    "private_corpus": "the paper's private training corpus (not released)",
}


@dataclass
class Result:
    ok: bool | None          # None: not checkable
    measurement: str = ""
    reason: str = ""


def _nc(reason: str, measurement: str = "") -> Result:
    return Result(None, measurement, reason)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _combine(results: list[Result], what: str = "all") -> Result:
    """``all`` semantics: a definite failure fails the claim; otherwise any gap leaves it open."""
    def join(parts):
        return "; ".join(dict.fromkeys(p for p in parts if p))   # de-duplicated, in order

    meas = " | ".join(dict.fromkeys(r.measurement for r in results if r.measurement))
    if any(r.ok is False for r in results):
        open_parts = [f"part not checkable: {r.reason}" for r in results if r.ok is None and r.reason]
        return Result(False, meas, join(["at least one check fails (see measurement)"] + open_parts))
    if any(r.ok is None for r in results):
        return Result(None, meas, join(r.reason for r in results if r.ok is None))
    return Result(True, meas, join(r.reason for r in results))


# ------------------------------------------------------------------------------ context
@dataclass(frozen=True)
class FileMetric:
    """Where a shift/ or score/ metric is read: a column of one summary CSV."""
    source: str                # a key of FILE_SOURCES
    column: str
    anchor: str | None = None  # the file's bin_anchor must be this model (Fig. 4 bins)
    agg: str | None = None     # the check's agg this column answers (None: the check gives no agg)


@dataclass(frozen=True)
class FileSource:
    option: str          # the ``negfree claims`` argument that names the file
    made_by: str         # the command that writes it
    label_column: str    # the column naming each row
    selector: str        # the claims.yaml selector key that picks a row


FILE_SOURCES = {
    "shifts": FileSource("--shifts", "negfree shifts", "model", "method"),
    "score_dist": FileSource("--score-dist", "negfree score-dist", "pool", "pool"),
}

# metric (configs/claims.yaml) -> column of the summary CSV. shifts_summary.csv: one row per model,
# the row's label (column `model`) is the method name; every column is a mean over that model's greedy
# responses (negfree/report/shifts.py). fig1_summary.csv: one row per pool of negatives (column `pool`).
FILE_METRICS = {
    "shift/abs_loglik": FileMetric("shifts", "abs_loglik"),                    # Fig. 3a, |sum_i dl_i|
    "shift/abs_loglik_per_token": FileMetric("shifts", "abs_loglik_per_token"),  # Fig. 3d
    "shift/abs_logit": FileMetric("shifts", "abs_logit"),                      # Fig. 3b, sum_i |dz_i|
    "shift/abs_logit_per_token": FileMetric("shifts", "abs_logit_per_token"),    # Fig. 3e
    "shift/gini_logit": FileMetric("shifts", "gini_logit"),                    # Fig. 3f, Gini per response
    "shift/dpo_bins_central_mass": FileMetric("shifts", "bins_central_mass", anchor="dpo"),    # Fig. 4
    "shift/dpo_bins_extreme_mass": FileMetric("shifts", "bins_extreme_mass", anchor="dpo"),
    "shift/dpo_bins_l1_from_uniform": FileMetric("shifts", "bins_l1_from_uniform", anchor="dpo"),
    "score/s_theta": FileMetric("score_dist", "mean", agg="mean"),             # dft.txt Fig. 1, pool mean
}
# score/ selectors {pool: <key>} -> the pool whose label (column `pool`) starts with this, case-insensitive
# (the workflow labels the pools 'Sampling (T=<t>)' and 'Random (T=<t>)').
POOL_PREFIXES = {"sampling": "Sampling", "random_high_temperature": "Random"}


def _is_file_metric(metric: str) -> bool:
    return metric.startswith(("shift/", "score/"))


class SummaryFile:
    """One summary CSV given on the command line: its rows, or why there are none."""

    def __init__(self, source: str, path):
        self.source, self.spec = source, FILE_SOURCES[source]
        self.path = Path(path) if path else None
        self.df: pd.DataFrame | None = None
        self.error = ""
        if self.path is None:
            return
        if not self.path.is_file():
            self.error = f"{self.spec.option} {self.path} does not exist"
            return
        try:
            df = pd.read_csv(self.path)
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
            self.error = f"{self.spec.option} {self.path} cannot be read as CSV ({type(e).__name__}: {e})"
            return
        if self.spec.label_column not in df.columns:
            self.error = (f"{self.path} has no column '{self.spec.label_column}' (is it a file written by "
                          f"`{self.spec.made_by}`?)")
            return
        df[self.spec.label_column] = df[self.spec.label_column].astype(str)
        self.df = df

    @property
    def name(self) -> str:
        return self.path.name if self.path else ""

    def labels(self) -> list[str]:
        return list(self.df[self.spec.label_column]) if self.df is not None else []

    def describe(self) -> str:
        """What the file holds, for the scale column."""
        if self.df is None:
            return ""
        lab = self.spec.label_column
        if self.source == "shifts":
            n = "n_sequences" if "n_sequences" in self.df.columns else None
            rows = [f"{r[lab]}" + (f" {int(r[n])} responses" if n and pd.notna(r[n]) else "")
                    for _, r in self.df.iterrows()]
            return f"shift analysis {self.path}: " + ", ".join(rows)
        rows = []
        for _, r in self.df.iterrows():
            counts = [f"{int(r[c])} {c}" for c in ("negatives", "prompts") if c in self.df.columns and pd.notna(r[c])]
            rows.append(f"{r[lab]}" + (f" ({', '.join(counts)})" if counts else ""))
        return f"s_theta pools {self.path}: " + ", ".join(rows)


class Context:
    def __init__(self, runs: list[Run], frozen_lake_dir, scale: str, shifts=None, score_dist=None):
        self.runs = runs
        self.scale = scale
        self.files = {"shifts": SummaryFile("shifts", shifts), "score_dist": SummaryFile("score_dist", score_dist)}
        self.fl_dir = Path(frozen_lake_dir) if frozen_lake_dir else None
        self.fl = None
        self.fl_scale = "Frozen Lake toy"
        if self.fl_dir is not None and (self.fl_dir / "fig3.csv").exists():
            self.fl = pd.read_csv(self.fl_dir / "fig3.csv")
            cfgp = self.fl_dir / "config.json"
            if cfgp.exists():
                import json
                c = json.loads(cfgp.read_text())
                seeds = c.get("seeds", [])
                steps = (c.get("config") or {}).get("steps")
                self.fl_scale = f"Frozen Lake toy: {len(seeds)} seeds, {steps} steps (config.json)"


# ------------------------------------------------------------------------------ selectors
def _as_list(x) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, list) else [x]


def _sel_str(sel: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sel.items()) or "any"


def _run_desc(r: Run) -> str:
    beta = (r.config.get("hparams") or {}).get("beta")
    return f"{r.name} (lr {r.config.get('lr')}" + (f", beta {beta}" if beta is not None else "") + ")"


def _match(r: Run, sel: dict) -> bool:
    for k, v in sel.items():
        if k == "method":
            if r.kind != v:     # 'sft->dpo' matches a pipeline run, 'dpo' only runs from the base model
                return False
        elif k == "lr":
            lr = r.config.get("lr")
            if lr is None or not math.isclose(float(lr), float(v), rel_tol=1e-9):
                return False
        elif k in ("beta",):
            hv = (r.config.get("hparams") or {}).get(k)
            if hv is None or not math.isclose(float(hv), float(v), rel_tol=1e-9):
                return False
        else:   # setting / model / pool: not recorded in a run's config
            return False
    return True


def select_runs(ctx: Context, sel: dict) -> tuple[list[Run], str]:
    """Runs matching one selector, or [] with the reason."""
    m = sel.get("method", "")
    if isinstance(m, str) and "->" in m and not any(r.kind == m for r in ctx.runs):
        return [], f"no run of the two-stage pipeline {m} (a pipelines: run starting from {m.split('->')[0]})"
    if isinstance(m, str) and m.startswith("released:"):
        return [], f"needs the released checkpoint {m[len('released:'):]}"
    unknown = [k for k in sel if k not in ("method", "lr", "beta")]
    if unknown:
        return [], f"selector {_sel_str(sel)}: runs do not record {', '.join(unknown)}"
    rs = [r for r in ctx.runs if _match(r, sel)]
    if rs:
        return rs, ""
    same = [r for r in ctx.runs if r.kind == m]
    found = f"; found only {', '.join(_run_desc(r) for r in same)}" if same else ""
    return [], f"no run of {_sel_str(sel)}{found}"


# ------------------------------------------------------------------------------ values
def _series(r: Run, key: str) -> list[tuple[int, float]]:
    return r.series(key)


def _agg(series: list[tuple[int, float]], agg: str):
    vals = [v for _, v in series]
    if agg == "final":
        return vals[-1]
    if agg == "mean":
        return float(np.mean(vals))
    if agg == "delta":
        return vals[-1] - vals[0]
    if agg == "every_step":
        return dict(series)
    raise ValueError(f"unknown agg '{agg}'")


def run_value(ctx: Context, r: Run, metric: str, agg: str, claim: dict):
    """(value, '') or (None, reason) for one run."""
    ns, _, key = metric.partition("/")
    if ns == "train":
        s = _series(r, key)
        if not s:
            why = ""
            if key.startswith("logp_neg") or key == "likelihood_margin":
                why = f" (num_negatives {r.config.get('num_negatives')}: the run saw no negatives)"
            elif key == "deviation":
                why = " (no reference log-probs S0 in the batch)"
            return None, f"{r.name}: metrics.jsonl has no '{key}'{why}"
        if agg in ("delta",) and len(s) < 2:
            return None, f"{r.name}: '{key}' has {len(s)} step(s), a delta needs 2"
        return _agg(s, agg), ""
    if ns == "timing":
        t = r.timing
        if not t or key not in t:
            return None, f"{r.name}: timing.json has no '{key}'"
        return t[key], ""
    raise AssertionError(metric)


def _side(ctx: Context, sels, metric: str, agg: str, claim: dict):
    """[(label, value, run)] for every run matched by every selector, or (None, reason)."""
    out = []
    for sel in _as_list(sels):
        rs, why = select_runs(ctx, sel)
        if not rs:
            return None, why
        for r in rs:
            v, why = run_value(ctx, r, metric, agg, claim)
            if v is None:
                return None, why
            out.append((r.label, v, r))
    return out, ""


def _fl_means(ctx: Context, col: str):
    if ctx.fl is None:
        return None, f"no Frozen Lake results ({ctx.fl_dir}/fig3.csv does not exist)"
    if col not in ctx.fl.columns:
        return None, f"{ctx.fl_dir}/fig3.csv has no column '{col}'"
    return ctx.fl.groupby("method")[col].mean().to_dict(), ""


def _fl_side(ctx: Context, sels, col: str):
    means, why = _fl_means(ctx, col)
    if means is None:
        return None, why
    out = []
    for sel in _as_list(sels):
        extra = [k for k in sel if k != "method"]
        if extra:
            return None, f"Frozen Lake rows have no {', '.join(extra)}"
        m = sel["method"]
        if m not in means:
            return None, f"no Frozen Lake rows for method '{m}'"
        out.append((m, float(means[m]), None))
    return out, ""


# ------------------------------------------------------------------------------ summary files
def _file_metric(ctx: Context, metric: str, check: dict):
    """(FileMetric, SummaryFile, '') or (None, None, reason): the file and column a metric is read from."""
    fm = FILE_METRICS.get(metric)
    if fm is None:
        return None, None, f"'{metric}' has no column mapping (negfree/report/claims.py FILE_METRICS)"
    f = ctx.files[fm.source]
    if f.path is None:
        return None, None, metric_unavailable(metric, {})
    if f.df is None:
        return None, None, f.error
    agg = check.get("agg")
    if agg is not None and agg != fm.agg:
        return None, None, (f"{metric} with agg '{agg}': {f.path} column '{fm.column}' holds "
                            + (f"the {fm.agg} per {f.spec.label_column}" if fm.agg else
                               f"one value per {f.spec.label_column}, with no agg"))
    if fm.column not in f.df.columns:
        return None, None, f"{f.path} has no column '{fm.column}' (needed for {metric})"
    if fm.anchor is not None:
        if "bin_anchor" not in f.df.columns:
            return None, None, (f"{f.path} has no column 'bin_anchor' ({metric} needs bins anchored on "
                                f"'{fm.anchor}')")
        got = sorted(set(f.df["bin_anchor"].astype(str)))
        if got != [fm.anchor]:
            return None, None, (f"{metric} needs bins anchored on '{fm.anchor}'; the bins in {f.path} are anchored "
                                f"on {', '.join(repr(g) for g in got)} (column bin_anchor)")
    return fm, f, ""


def _file_desc(fm: FileMetric, f: SummaryFile) -> str:
    return f"{f.name} column '{fm.column}'" + (f", bins anchored on {fm.anchor}" if fm.anchor else "")


def _file_rows(f: SummaryFile, sel: dict):
    """(rows, '') or (None, reason): the rows of ``f`` one selector picks."""
    key, lab = f.spec.selector, f.spec.label_column
    extra = [k for k in sel if k != key]
    if extra:
        return None, f"{f.path} rows record only the {key} (column '{lab}'), not {', '.join(extra)}"
    if key not in sel:
        return None, f"selector {_sel_str(sel)} names no {key}; {f.path} has one row per {key}"
    v = str(sel[key])
    have = ", ".join(f.labels()) or "none"
    if f.source == "score_dist":
        prefix = POOL_PREFIXES.get(v)
        if prefix is None:
            return None, (f"pool '{v}' has no label mapping (POOL_PREFIXES: "
                          + ", ".join(f"{k} -> '{p}...'" for k, p in POOL_PREFIXES.items()) + ")")
        rows = f.df[f.df[lab].str.lower().str.startswith(prefix.lower())]
        what = f"pool labelled '{prefix}...' (pool={v})"
    else:
        rows = f.df[f.df[lab] == v]
        what = f"{key} '{v}'"
    if rows.empty:
        return None, f"no row for {what} in {f.path} (its {lab}s: {have})"
    if len(rows) > 1:
        return None, f"{len(rows)} rows for {what} in {f.path} ({', '.join(rows[lab])}): ambiguous"
    return rows, ""


def _file_value(ctx: Context, check: dict, metric: str, sel: dict):
    """(label, value, '') or (None, None, reason) for one selector."""
    fm, f, why = _file_metric(ctx, metric, check)
    if fm is None:
        return None, None, why
    rows, why = _file_rows(f, sel)
    if rows is None:
        return None, None, why
    label, v = rows[f.spec.label_column].iloc[0], rows[fm.column].iloc[0]
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None, None, f"{f.path}: column '{fm.column}' of '{label}' is not a number ({v!r})"
    if not math.isfinite(v):
        return None, None, f"{f.path}: column '{fm.column}' of '{label}' is {v}"
    return label, v, ""


def _file_side(ctx: Context, check: dict, metric: str, sels):
    """[(label, value, None)] for every selector, or (None, reason) at the first one that fails."""
    out = []
    for sel in _as_list(sels):
        label, v, why = _file_value(ctx, check, metric, sel)
        if label is None:
            return None, why
        out.append((label, v, None))
    if not out:
        return None, f"{metric}: the check selects nothing"
    return out, ""


# ------------------------------------------------------------------------------ metrics
def metric_unavailable(metric: str, claim: dict, ctx: Context | None = None) -> str | None:
    """Why a metric cannot be measured at this scale (None when it can)."""
    if metric.startswith(("train/", "timing/", "toy/frozen_lake/")):
        return None
    source = "shifts" if metric.startswith("shift/") else "score_dist" if metric.startswith("score/") else None
    if ctx is not None and source is not None and ctx.files[source].path is not None:
        if metric not in FILE_METRICS:
            return (f"'{metric}' has no column mapping onto {ctx.files[source].path} (negfree/report/claims.py "
                    f"FILE_METRICS maps {', '.join(m for m, fm in FILE_METRICS.items() if fm.source == source)})")
        return None              # the file is given: what it lacks is said per row / column
    if metric.startswith("shift/"):
        return (f"'{metric}' needs bnf.txt Sec. 5.3's shift analysis (policy vs reference on greedy generations "
                "of Wild-Bench-like prompts); the project produces no shift/ measurements")
    if metric.startswith("score/"):
        return (f"'{metric}' needs s_theta of two negative pools (T<1 and very high T) under a 1-epoch "
                "checkpoint; the project produces no score/ measurements")
    return (f"'{metric}' is a paper-benchmark metric; it is not computed at this scale and the offline twin "
            "(negfree_offline) is not a stand-in for it")


def _metrics_of(check: dict) -> list[str]:
    return _as_list(check.get("metrics")) or _as_list(check.get("metric"))


# ------------------------------------------------------------------------------ check kinds
_EXPECT = re.compile(r"^\s*a\s*(<=|>=|<|>)\s*(?:([0-9.eE+-]+)\s*\*\s*)?b\s*$")
_OPS = {"<": lambda x, y: x < y, ">": lambda x, y: x > y, "<=": lambda x, y: x <= y, ">=": lambda x, y: x >= y}


def _pairs(A, B):
    return [(a, b) for a in A for b in B]


def _values(ctx, check, metric, side):
    if metric.startswith("toy/frozen_lake/"):
        return _fl_side(ctx, check.get(side), metric.split("/", 2)[2])
    if _is_file_metric(metric):
        return _file_side(ctx, check, metric, check.get(side))
    agg = check.get("agg", "final")
    return _side(ctx, check.get(side), metric, agg, check)


def _timing_guard(ctx: Context, claim: dict, metric: str, sides) -> str | None:
    """Timing comparisons need like-for-like runs; some claims need what the trainer cannot do."""
    if not metric.startswith("timing/"):
        return None
    runs = [r for side in sides for _, _, r in side if r is not None]
    for key, src in (("steps", "timing"), ("batch_size", "config"), ("max_len", "config")):
        vals = {r.name: (r.timing if src == "timing" else r.config or {}).get(key) for r in runs}
        if len(set(vals.values())) > 1:
            return (f"runs differ in {key} ({', '.join(f'{k}: {v}' for k, v in vals.items())}); "
                    "their costs are not comparable")
    from ..losses import REGISTRY
    notes = claim.get("notes") or ""
    if "reference in the loop" in notes:
        refs = [r for r in runs if REGISTRY[r.method].needs_reference]
        if refs:
            return (f"{', '.join(r.name for r in refs)} read precomputed reference log-probs (score_reference runs "
                    "offline; the trainer has no in-loop reference model), but the claim times the reference in the loop")
    if metric == "timing/peak_memory_mb" and "gpu" in _as_list(claim.get("requires")):
        cpu = [r.name for r in runs if r.device == "CPU"]
        if cpu:
            return f"peak GPU memory needs an accelerator; {', '.join(cpu)} ran on CPU (provenance.json cuda = null)"
    return None


def _cpu_note(sides, metric) -> str:
    if metric == "timing/peak_memory_mb":
        devs = {r.device for side in sides for _, _, r in side if r is not None}
        if devs == {"CPU"}:
            return " [CPU: process max RSS]"
    return ""


def _agg_text(ctx, check, metric) -> str:
    if metric.startswith("train/"):
        return check.get("agg", "final")
    if metric.startswith("toy"):
        return "mean over seeds"
    if _is_file_metric(metric):
        fm, f, _ = _file_metric(ctx, metric, check)
        return _file_desc(fm, f) if fm is not None else ""
    return ""


def check_compare(ctx, check, claim) -> Result:
    m = _EXPECT.match(check["expect"])
    if not m:
        return _nc(f"cannot parse expect '{check['expect']}'")
    op, factor = m.group(1), float(m.group(2)) if m.group(2) else 1.0
    parts = []
    for metric in _metrics_of(check):
        A, why = _values(ctx, check, metric, "a")
        if A is None:
            parts.append(_nc(why))
            continue
        B, why = _values(ctx, check, metric, "b")
        if B is None:
            parts.append(_nc(why, f"{metric}: " + ", ".join(f"{l}={_fmt(v)}" for l, v, _ in A)
                             if not isinstance(A[0][1], dict) else ""))
            continue
        guard = _timing_guard(ctx, claim, metric, (A, B))
        meas_ab = ", ".join(f"{l}={_fmt(v)}" for l, v, _ in A + B if not isinstance(v, dict))
        if guard:
            parts.append(_nc(guard, f"{metric}: {meas_ab}"))
            continue
        agg = _agg_text(ctx, check, metric)
        ok_all, lines = True, []
        for (la, va, _), (lb, vb, _) in _pairs(A, B):
            if isinstance(va, dict):   # every_step; step 1 is logged before the first update (policy = reference)
                steps = [s for s in sorted(set(va) & set(vb)) if s > 1]
                if not steps:
                    parts.append(_nc(f"{la} and {lb} share no logged step"))
                    ok_all = None
                    break
                held = [_OPS[op](va[s], factor * vb[s]) for s in steps]
                ok_all = ok_all and all(held)
                lines.append(f"{la} {op} {lb} at {sum(held)}/{len(steps)} steps after the first update ("
                             + "; ".join(f"{s}: {_fmt(va[s])} vs {_fmt(vb[s])}" for s in steps) + ")")
            else:
                held = _OPS[op](va, factor * vb)
                ok_all = ok_all and held
                lines.append(f"{la} {_fmt(va)} {op} {'' if factor == 1 else _fmt(factor) + '*'}{lb} {_fmt(vb)}: "
                             f"{'yes' if held else 'no'}")
        if ok_all is None:
            continue
        parts.append(Result(bool(ok_all), f"{metric}{' (' + agg + ')' if agg else ''}{_cpu_note((A, B), metric)}: "
                            + "; ".join(lines)))
    return _combine(parts)


def check_trend(ctx, check, claim) -> Result:
    m = re.match(r"^\s*([<>])\s*0\s*$", check["expect"])
    metric = check["metric"]
    S, why = _side(ctx, check.get("select"), metric, "delta", check)
    if S is None:
        return _nc(why)
    ok = all((v < 0) if m.group(1) == "<" else (v > 0) for _, v, _ in S)
    lines = []
    for l, v, r in S:
        s = r.series(metric.split("/", 1)[1])
        lines.append(f"{l}: {_fmt(s[0][1])} (step {s[0][0]}) -> {_fmt(s[-1][1])} (step {s[-1][0]}), "
                     f"delta {_fmt(v)}")
    return Result(ok, f"{metric} delta {check['expect']}: " + "; ".join(lines))


def check_close(ctx, check, claim) -> Result:
    parts = []
    for metric in _metrics_of(check):
        A, why = _values(ctx, check, metric, "a")
        B, why2 = (None, why) if A is None else _values(ctx, check, metric, "b")
        if A is None or B is None:
            parts.append(_nc(why2 if A is not None else why))
            continue
        guard = _timing_guard(ctx, claim, metric, (A, B))
        if guard:
            parts.append(_nc(guard, f"{metric}: " + ", ".join(f"{l}={_fmt(v)}" for l, v, _ in A + B)))
            continue
        lines, ok = [], True
        for (la, va, _), (lb, vb, _) in _pairs(A, B):
            tol = check["abs_tol"] if "abs_tol" in check else check["rel_tol"] * abs(vb)
            held = abs(va - vb) <= tol
            ok = ok and held
            lines.append(f"|{la} {_fmt(va)} - {lb} {_fmt(vb)}| = {_fmt(abs(va - vb))} <= {_fmt(tol)}: "
                         f"{'yes' if held else 'no'}")
        agg = (check.get("agg", "final") if metric.startswith("train/") else
               _agg_text(ctx, check, metric) if _is_file_metric(metric) else "")
        parts.append(Result(ok, f"{metric}{' (' + agg + ')' if agg else ''}: " + "; ".join(lines)))
    return _combine(parts)


def check_ratio(ctx, check, claim) -> Result:
    metric = check["metric"]
    A, why = _values(ctx, check, metric, "a")
    if A is None:
        return _nc(why)
    B, why = _values(ctx, check, metric, "b")
    if B is None:
        return _nc(why, f"{metric}: " + ", ".join(f"{l}={_fmt(v)}" for l, v, _ in A))
    meas = ", ".join(f"{l}={_fmt(v)}" for l, v, _ in A + B)
    guard = _timing_guard(ctx, claim, metric, (A, B))
    if guard:
        return _nc(guard, f"{metric}: {meas}")
    e, tol = check["expect_approx"], check["rel_tol"]
    lines, ok = [], True
    for (la, va, _), (lb, vb, _) in _pairs(A, B):
        q = va / vb
        held = abs(q - e) <= tol * abs(e)
        ok = ok and held
        lines.append(f"{la}/{lb} = {_fmt(va)}/{_fmt(vb)} = {_fmt(q)} vs {e} +- {tol * 100:g}%: {'yes' if held else 'no'}")
    agg = _agg_text(ctx, check, metric) if _is_file_metric(metric) else ""
    return Result(ok, f"{metric}{' (' + agg + ')' if agg else ''}{_cpu_note((A, B), metric)}: " + "; ".join(lines))


def _ordering_values(ctx, check, metric, names):
    """({name: value}, description, '') or (None, '', reason) for the methods an ordering names."""
    if metric.startswith("toy/frozen_lake/"):
        means, why = _fl_means(ctx, metric.split("/", 2)[2])
        if means is None:
            return None, "", why
        absent = [m for m in names if m not in means]
        if absent:
            return None, "", f"no Frozen Lake rows for {', '.join(absent)}"
        return {m: means[m] for m in names}, "mean over seeds", ""
    fm, f, why = _file_metric(ctx, metric, check)
    if fm is None:
        return None, "", why
    key = f.spec.selector
    absent = [m for m in names if m not in f.labels()]
    if absent:
        names_ = ", ".join(map(repr, absent))
        return None, "", (f"no row for {key}{'s' if len(absent) > 1 else ''} {names_} in {f.path} "
                          f"(its {f.spec.label_column}s: {', '.join(f.labels()) or 'none'})")
    vals = {}
    for m in names:
        label, v, why = _file_value(ctx, check, metric, {key: m})
        if label is None:
            return None, "", why
        vals[m] = v
    return vals, _file_desc(fm, f), ""


def check_ordering(ctx, check, claim) -> Result:
    metrics = _metrics_of(check)
    if not all(m.startswith("toy/frozen_lake/") or _is_file_metric(m) for m in metrics):
        return _nc("ordering on runs is implemented for toy/frozen_lake, shift/ and score/ only")
    lower = check.get("lower_is_better", True)
    tiers = check["expect"]
    names = list(dict.fromkeys(m for t in tiers for m in t))
    primary = Result(None)
    extra = []
    for i, metric in enumerate(metrics + _as_list(check.get("also_metrics"))):
        means, desc, why = _ordering_values(ctx, check, metric, names)
        if means is None:
            return _nc(why)
        better = (lambda x, y: x < y) if lower else (lambda x, y: x > y)
        ok = all(better(means[a], means[b]) for t1, t2 in zip(tiers, tiers[1:]) for a in t1 for b in t2)
        ranked = sorted(names, key=lambda m: means[m], reverse=not lower)
        meas = (f"{metric} ({desc}, lower is better): "
                + " < ".join(f"{m} {_fmt(means[m])}" for m in ranked) if lower else
                f"{metric} ({desc}, higher is better): "
                + " > ".join(f"{m} {_fmt(means[m])}" for m in ranked))
        meas += f"; expected tiers {tiers}: {'held' if ok else 'violated'}"
        if i < len(metrics):
            primary = Result(ok, meas) if primary.ok is None else _combine([primary, Result(ok, meas)])
        else:
            extra.append(meas)
    if extra:
        primary.measurement += " | also (not part of the verdict): " + " | ".join(extra)
    return primary


def check_threshold(ctx, check, claim) -> Result:
    """``select`` <op> ``value``, for every metric and every selector (shift/ and score/ files)."""
    op, value = check["op"], check["value"]
    if op not in _OPS:
        return _nc(f"cannot parse op '{op}'")
    parts = []
    for metric in _metrics_of(check):
        S, why = _values(ctx, check, metric, "select")
        if S is None:
            parts.append(_nc(why))
            continue
        held = [(label, v, _OPS[op](v, value)) for label, v, _ in S]
        agg = _agg_text(ctx, check, metric)
        parts.append(Result(all(h for *_, h in held), f"{metric}{' (' + agg + ')' if agg else ''}: " + "; ".join(
            f"{label} {_fmt(v)} {op} {_fmt(value)}: {'yes' if h else 'no'}" for label, v, h in held)))
    return _combine(parts)


def check_argbest(ctx, check, claim) -> Result:
    """argmin / argmax over the rows of a summary file (sweep = its selector key: method or pool).

    The contenders are ``values`` when the check lists them (each must have a row), else every
    row of the file; the measurement names them. ``expect`` must win strictly."""
    kind = check["kind"]
    lowest = kind == "argmin"
    parts = []
    for metric in _metrics_of(check):
        fm, f, why = _file_metric(ctx, metric, check)
        if fm is None:
            parts.append(_nc(why))
            continue
        key = f.spec.selector
        if check.get("sweep") != key:
            parts.append(_nc(f"{kind} over '{check.get('sweep')}': {f.path} has one row per {key}"))
            continue
        if check.get("select"):
            parts.append(_nc(f"{kind} with select {_sel_str(check['select'])}: {f.path} rows record only the {key}"))
            continue
        if "expect" not in check:
            parts.append(_nc(f"{kind} without 'expect' (e.g. expect_in) is not evaluated on {f.path}"))
            continue
        listed = _as_list(check.get("values"))
        names = [str(v) for v in listed] or f.labels()
        vals, _, why = _ordering_values(ctx, check, metric, list(dict.fromkeys(names + [str(check["expect"])])))
        if vals is None:
            parts.append(_nc(why))
            continue
        want = str(check["expect"])
        others = [m for m in vals if m != want]
        ok = bool(others) and all((vals[want] < vals[m]) if lowest else (vals[want] > vals[m]) for m in others)
        ranked = sorted(vals, key=vals.get, reverse=not lowest)
        over = (f"the {len(vals)} listed {key}s" if listed else f"every {key} in {f.name} ({len(vals)})")
        sep = " < " if lowest else " > "
        meas = (f"{metric} ({_file_desc(fm, f)}, {'lowest' if lowest else 'highest'} wins) over {over}: "
                + sep.join(f"{m} {_fmt(vals[m])}" for m in ranked)
                + f"; {kind} {ranked[0]} (expected {want}, strictly): {'yes' if ok else 'no'}")
        if not others:
            parts.append(_nc(f"{kind} needs at least two {key}s; {f.path} has only {want}", meas))
            continue
        parts.append(Result(ok, meas))
    return _combine(parts)


def check_registry(ctx, check, claim) -> Result:
    from ..losses import REGISTRY
    name = check["method"]
    if name not in REGISTRY:
        return Result(False, f"method '{name}' is not registered")
    desc = REGISTRY[name].describe()
    prop = check["property"]
    if prop not in desc:
        return _nc(f"the registry's describe() has no field '{prop}'")
    got, want = desc[prop], check["expect"]
    return Result(got == want, f"negfree methods --json: {name}.{prop} = {got!r} (expected {want!r})")


# ------------------------------------------------------------------------------ analytic
def _analytic_table():
    import torch
    from ..logprobs import token_logprobs
    from ..losses import LossInputs, Seq, asft_align, bnf_sequence_loss, get_method
    from .analytic import BNF_LOSSES, _grad_abs

    D = torch.float64
    grid = np.linspace(0.01, 0.99, 99)

    def nll_pll():
        err, mono = 0.0, True
        for name in ("nll", "pll"):
            g = np.array([_grad_abs(BNF_LOSSES[name], float(p), 0.5) for p in grid])
            err = max(err, float(np.max(np.abs(g - (1 - grid)))))
            mono = mono and bool(np.all(np.diff(g) < 0))
        ok = err < 1e-9 and mono
        return ok, (f"autograd |dL/dz_y| vs 1 - p on {len(grid)} points p in [0.01, 0.99] for NLL and PLL: "
                    f"max |error| {err:.2e}; decreasing in p (NLL shrinks as p rises, PLL grows as p falls): {mono}")

    def bnf_eq9():
        err, peak_ok = 0.0, True
        peaks = []
        for q in (0.2, 0.5, 0.8):
            g = np.array([_grad_abs(BNF_LOSSES["bnf"], float(p), q) for p in grid])
            closed = np.where(grid < q, grid * (1 - q) / q, 1 - grid)
            err = max(err, float(np.max(np.abs(g - closed))))
            pk = float(grid[int(np.argmax(g))])
            peaks.append(f"q={q}: argmax p={pk:.2f}")
            peak_ok = peak_ok and abs(pk - q) <= 0.01 + 1e-12
        ok = err < 1e-9 and peak_ok
        return ok, (f"autograd |dL/dz_y| of registry bnf vs Eq. 9 (p(1-q)/q below q, 1-p above) on 99 points x "
                    f"3 references: max |error| {err:.2e}; peak at the reference: {'; '.join(peaks)}")

    def _bnf_seq(p_y, q, vocab=8, seed=0):
        gen = np.random.default_rng(seed)
        rest = gen.uniform(0.5, 2.0, vocab - 1)
        probs = np.concatenate([[p_y], (1 - p_y) * rest / rest.sum()])
        z = torch.tensor(np.log(probs), dtype=D).view(1, 1, -1).requires_grad_(True)
        labels = torch.zeros(1, 1, dtype=torch.long)
        mask = torch.ones(1, 1, dtype=D)
        tok, plogp = token_logprobs(z, labels, mask, with_plogp=True)
        ref = torch.full_like(tok, float(np.log(q)))
        return z, probs, tok, plogp, Seq(tok.sum(-1), mask.sum(-1), ref.sum(-1), tok, ref, plogp, mask)

    def bnf_target():
        # The loss is -label/|y| sum_j f_j log p_j with f detached; its weight on log p_j is read by autograd
        # from d L / d tok (the log p_y slot) and d L / d tok_plogp (sum_j sg[p_j] log p_j).
        worst_sum, worst_min, n = 0.0, 1.0, 0
        for q in (0.1, 0.5, 0.9):
            for p in np.linspace(0.02, 0.98, 25):
                for label in (1.0, -1.0):
                    _, probs, tok, plogp, s = _bnf_seq(float(p), q)
                    loss = bnf_sequence_loss(s, label).sum()
                    g_tok, g_pl = torch.autograd.grad(loss, (tok, plogp))
                    c_tok, c_pl = -label * g_tok.item(), -label * g_pl.item()
                    target = c_pl * probs
                    target[0] += c_tok
                    worst_sum = max(worst_sum, abs(target.sum() - 1))
                    worst_min = min(worst_min, float(target.min()))
                    n += 1
        ok = worst_sum < 1e-9 and worst_min >= -1e-12
        return ok, (f"target read by autograd from bnf_sequence_loss on {n} (p, q, label) cases, vocab 8: "
                    f"max |sum - 1| {worst_sum:.2e}, min entry {worst_min:.3g}")

    def bnf_other_mass():
        worst = 0.0
        n = 0
        for q in (0.1, 0.5, 0.9):
            for p in np.linspace(0.02, 0.98, 25):
                z, _, _, _, s = _bnf_seq(float(p), q)
                get_method("bnf")(LossInputs(pos=s)).loss.backward()
                g = z.grad[0, 0].numpy()
                worst = max(worst, abs(np.abs(g[1:]).sum() - abs(g[0])))
                n += 1
        return worst < 1e-9, (f"autograd on registry bnf, vocab 8, {n} (p, q) cases: "
                              f"max |sum_(t != y) |dL/dz_t| - |dL/dz_y|| = {worst:.2e}")

    def minorsft_init():
        gen = torch.Generator().manual_seed(0)
        worst = 0.0
        for n_tok in (3, 7):
            z = torch.randn(1, n_tok, 11, dtype=D, generator=gen)
            labels = torch.randint(0, 11, (1, n_tok), generator=gen)
            mask = torch.ones(1, n_tok, dtype=D)
            grads = {}
            for name in ("minorsft", "sft"):
                zz = z.clone().requires_grad_(True)
                tok, _ = token_logprobs(zz, labels, mask)
                ref = tok.detach().sum(-1)               # at initialisation pi_theta = pi_ref
                s = Seq(tok.sum(-1), mask.sum(-1), ref)
                get_method(name)(LossInputs(pos=s)).loss.backward()
                grads[name] = zz.grad
            worst = max(worst, float((grads["minorsft"] - grads["sft"]).abs().max()))
        return worst < 1e-12, (f"registry minorsft (beta 0.04) vs registry sft (one prompt: the length-averaged "
                               f"NLL) at S = S0, |y| in {{3, 7}}, vocab 11: max |grad difference| {worst:.2e}")

    def minorsft_weight():
        beta = float(get_method("minorsft").resolve()["beta"])
        rhos = np.linspace(-50, 50, 201)
        m = 5.0
        coefs = []
        for rho in rhos:
            S = torch.tensor([rho], dtype=D, requires_grad=True)
            s = Seq(S, torch.tensor([m], dtype=D), torch.zeros(1, dtype=D))
            get_method("minorsft")(LossInputs(pos=s)).loss.backward()
            coefs.append(-m * S.grad.item())           # per-token weight of grad S in -(coef/m) grad S
        coefs = np.array(coefs)
        closed = 2 / (1 + np.exp(beta * rhos))
        err = float(np.max(np.abs(coefs - closed)))
        dec = bool(np.all(np.diff(coefs) < 0))
        return dec and err < 1e-12, (f"coefficient -|y| dL/dS by autograd over log-ratio in [-50, 50] (beta {beta}): "
                                     f"strictly decreasing {dec}; coef({rhos[0]:g}) = {coefs[0]:.4g}, coef(0) = "
                                     f"{coefs[100]:.4g}, coef({rhos[-1]:g}) = {coefs[-1]:.4g}; max |coef - 2 sigma(-beta rho)| "
                                     f"{err:.2e}")

    def _bt_grads(beta):
        g1d = np.linspace(0.05, 0.95, 19)
        x1 = torch.tensor(np.repeat(g1d, len(g1d)), dtype=D, requires_grad=True)
        x2 = torch.tensor(np.tile(g1d, len(g1d)), dtype=D, requires_grad=True)
        zero, one = torch.zeros(1, dtype=D), torch.ones(1, dtype=D)
        lw, ll = torch.log(x1), torch.log(x2)
        dpo = get_method("dpo")
        vals = torch.stack([dpo(LossInputs(pos=Seq(lw[i:i + 1], one, ref=zero),
                                           neg=Seq(ll[i:i + 1].view(1, 1), one.view(1, 1), ref=zero.view(1, 1))),
                                beta=beta).loss for i in range(len(lw))])
        g1, g2 = torch.autograd.grad(vals.sum(), (x1, x2))
        return x1.detach().numpy(), x2.detach().numpy(), g1.numpy(), g2.numpy()

    def bt_eq16():
        worst = 0.0
        for b in (0.5, 1.0, 2.0):
            x1, x2, g1, g2 = _bt_grads(b)
            den = x1 ** b + x2 ** b
            e1 = -b * x2 ** b / (x1 * den)
            e2 = b * x2 ** (b - 1) / den
            worst = max(worst, float(np.max(np.abs(g1 - e1) / np.abs(e1))), float(np.max(np.abs(g2 - e2) / np.abs(e2))))
        return worst < 1e-9, (f"registry dpo (reference log-probs 0) on a 19 x 19 grid of (x1, x2), beta in "
                              f"{{0.5, 1, 2}}: max relative error vs Eq. 16 {worst:.2e}")

    def bt_x2_harder():
        x1, x2, g1, g2 = _bt_grads(1.0)
        dom = x1 > x2
        held = np.abs(g2[dom]) > np.abs(g1[dom])
        ratio_err = float(np.max(np.abs(np.abs(g2[dom]) / np.abs(g1[dom]) - x1[dom] / x2[dom])))
        return bool(held.all()), (f"registry dpo, beta 1: |dL/dx2| > |dL/dx1| at {int(held.sum())}/{int(dom.sum())} "
                                  f"grid points with x1 > x2; max |ratio - x1/x2| {ratio_err:.2e}")

    def align_eq18():
        g1d = np.linspace(0.025, 0.975, 20)
        x1 = torch.tensor(np.repeat(g1d, 20), dtype=D, requires_grad=True)
        x2 = torch.tensor(np.tile(g1d, 20), dtype=D, requires_grad=True)
        g1, g2 = torch.autograd.grad(asft_align(torch.log(x1), torch.log(x2)).sum(), (x1, x2))
        a, b = x1.detach().numpy(), x2.detach().numpy()
        e1 = float(np.max(np.abs(g1.numpy() + 1 / a) * a))
        e2 = float(np.max(np.abs(g2.numpy() - 1 / (1 - b)) * (1 - b)))
        return max(e1, e2) < 1e-6, (f"asft_align by autograd on a 20 x 20 grid: max relative error vs -1/x1 "
                                    f"{e1:.2e}, vs 1/(1-x2) {e2:.2e}")

    def align_ratio():
        t = np.array([0.4, 0.2, 0.1, 0.05, 0.01, 0.001])
        x1 = torch.tensor(1 - t, dtype=D, requires_grad=True)
        x2 = torch.tensor(t / 2, dtype=D, requires_grad=True)
        g1, g2 = torch.autograd.grad(asft_align(torch.log(x1), torch.log(x2)).sum(), (x1, x2))
        r = np.abs(g1.numpy()) / np.abs(g2.numpy())
        dist = np.abs(r - 1)
        ok = bool(np.all(np.diff(dist) < 0)) and dist[-1] < 1e-3
        return ok, ("|dL/dx1| / |dL/dx2| along x1 = 1 - t, x2 = t/2: "
                    + ", ".join(f"t={a:g}: {b:.4f}" for a, b in zip(t, r)) + " (tends to 1)")

    return {
        ("nll_pll", "abs_grad_equals_one_minus_p"): nll_pll,
        ("bnf", "abs_grad_matches_eq9_and_peaks_at_ref"): bnf_eq9,
        ("bnf", "target_nonnegative_sums_to_one"): bnf_target,
        ("bnf", "other_tokens_abs_grad_sum_equals_token_abs_grad"): bnf_other_mass,
        ("minorsft", "grad_equals_sft_grad_at_reference"): minorsft_init,
        ("minorsft", "weight_decreasing_in_log_ratio"): minorsft_weight,
        ("dpo", "bt_partials_match_eq16"): bt_eq16,
        ("dpo", "abs_grad_x2_gt_abs_grad_x1"): bt_x2_harder,
        ("asft", "align_partials_match_eq18"): align_eq18,
        ("asft", "update_ratio_tends_to_one"): align_ratio,
    }


def check_analytic(ctx, check, claim) -> Result:
    fn = _analytic_table().get((check["function"], check["property"]))
    if fn is None:
        return _nc(f"no autograd check implemented for {check['function']}/{check['property']}")
    ok, meas = fn()
    return Result(bool(ok), meas)


# ------------------------------------------------------------------------------ dispatch
RUN_KINDS = {"compare": check_compare, "trend": check_trend, "close": check_close, "ratio": check_ratio,
             "ordering": check_ordering}
SWEEP_KINDS = ("argmax", "argmin", "monotone", "top_drop")
# on shift/ and score/ metrics: one value per row of a summary file, no series over steps
FILE_KINDS = {"compare": check_compare, "close": check_close, "ratio": check_ratio, "ordering": check_ordering,
              "threshold": check_threshold, "argmin": check_argbest, "argmax": check_argbest}


def evaluate_check(ctx: Context, check: dict, claim: dict) -> Result:
    kind = check["kind"]
    if kind == "all":
        return _combine([evaluate_check(ctx, c, claim) for c in check["checks"]])
    if "for_each" in check:
        (key, values), = check["for_each"].items()
        subs = []
        for v in values:
            c = {k: val for k, val in check.items() if k != "for_each"}
            sides = [s for s in ("a", "b", "select") if s in c] or ["select"]
            for side in sides:
                c[side] = [{**s, key: v} for s in _as_list(c.get(side))] or [{key: v}]
            subs.append(evaluate_check(ctx, c, claim))
        return _combine(subs)
    if kind == "registry":
        return check_registry(ctx, check, claim)
    if kind == "analytic":
        return check_analytic(ctx, check, claim)
    metrics = _metrics_of(check)
    gaps = [m for m in metrics if metric_unavailable(m, claim, ctx)]
    if gaps:
        bench = [m for m in gaps if not m.startswith(("shift/", "score/"))]
        other = [metric_unavailable(m, claim, ctx) for m in gaps if m.startswith(("shift/", "score/"))]
        if bench:
            other.insert(0, f"paper-benchmark metric{'s' if len(bench) > 1 else ''} {', '.join(bench)}: not "
                            "computed at this scale, and the offline twin (negfree_offline) is not a stand-in")
        return _nc("; ".join(other))
    if metrics and any(_is_file_metric(m) for m in metrics):
        if not all(_is_file_metric(m) for m in metrics):
            return _nc("a check mixing shift/ or score/ metrics with others is not evaluated")
        if kind not in FILE_KINDS:
            files = sorted({str(ctx.files[FILE_METRICS[m].source].path) for m in metrics})
            return _nc(f"check kind '{kind}' is not evaluated on {', '.join(files)} (one value per row)")
        return FILE_KINDS[kind](ctx, check, claim)
    if kind in SWEEP_KINDS:
        return _nc(f"'{kind}' over the sweep '{check.get('sweep')}' needs one run per sweep value")
    if kind not in RUN_KINDS:
        return _nc(f"check kind '{kind}' is not evaluated on runs")
    return RUN_KINDS[kind](ctx, check, claim)


def _scale_of(ctx: Context, check: dict) -> str:
    kinds, metrics = set(), []

    def walk(c):
        kinds.add(c["kind"])
        for s in c.get("checks", []):
            walk(s)
        metrics.extend(_metrics_of(c))
    walk(check)
    if kinds <= {"analytic", "registry", "all"}:
        return "analytic (loss code and registry; no training)"
    if metrics and all(m.startswith("toy/frozen_lake/") for m in metrics):
        return ctx.fl_scale
    f = _file_of(ctx, metrics)
    if f is not None:
        return f"{ctx.scale}; {f.describe()}"
    return ctx.scale


def _file_of(ctx: Context, metrics: list[str]) -> SummaryFile | None:
    """The one readable summary file every metric is read from, if there is one."""
    srcs = {FILE_METRICS[m].source if m in FILE_METRICS else None for m in metrics}
    if not metrics or not all(_is_file_metric(m) for m in metrics) or len(srcs) != 1 or None in srcs:
        return None
    f = ctx.files[srcs.pop()]
    return f if f.df is not None else None


def _all_metrics(check: dict) -> list[str]:
    out = list(_metrics_of(check))
    for c in check.get("checks", []):
        out += _all_metrics(c)
    return out


def evaluate_claim(ctx: Context, claim: dict) -> dict:
    row = {k: claim.get(k, "") for k in ("id", "paper", "statement", "source")}
    check = claim["check"]
    missing_req = [r for r in _as_list(claim.get("requires")) if r in REQUIREMENTS]
    res = evaluate_check(ctx, check, claim)
    if missing_req:
        why = "; ".join(f"needs {REQUIREMENTS[r]}" for r in missing_req)
        res = Result(None, res.measurement, why + (f"; {res.reason}" if res.reason and res.ok is None else ""))
    if res.ok is None:
        runs = (claim.get("needs") or {}).get("runs") or []
        if runs and "no run" not in res.reason and "differ in" not in res.reason:
            res.reason += f" (runs the claim needs: {'; '.join(map(str, runs))})"
    verdict = {True: REPRODUCED, False: NOT_REPRODUCED, None: NOT_CHECKABLE}[res.ok]
    reason = res.reason
    if verdict != NOT_CHECKABLE and not reason:
        sc = _scale_of(ctx, check)
        f = _file_of(ctx, _all_metrics(check))
        reason = (f"from {f.path} (written by {f.spec.made_by})" if f is not None else
                  "from metrics.jsonl / timing.json of the runs named in the measurement" if sc == ctx.scale else
                  f"from {ctx.fl_dir}/fig3.csv" if sc == ctx.fl_scale else
                  "autograd through negfree.losses / the method registry, as the measurement says")
        if res.ok is False and not res.reason:
            reason = "the check fails (see measurement); " + reason
    if claim.get("paper_consistent") is False:
        reason += " [claims.yaml: the paper's own numbers do not fully bear the statement out]"
    row.update(measurement=res.measurement, scale=_scale_of(ctx, check), verdict=verdict, reason=reason)
    return row


# ------------------------------------------------------------------------------ ledger
def claims_ledger(claims_yaml, runs_root, frozen_lake_dir, out_csv, out_md, scale: str, *, shifts=None,
                  score_dist=None) -> pd.DataFrame:
    """Evaluate every claim; ``runs_root``: a directory searched for runs, or a list of run dirs.
    ``shifts`` / ``score_dist``: optional shifts_summary.csv / fig1_summary.csv for the shift/ and score/ claims."""
    claims = yaml.safe_load(Path(claims_yaml).read_text())["claims"]
    if isinstance(runs_root, (list, tuple)):      # explicit run directories
        runs = find_runs(runs_root)
    else:
        runs = find_runs(runs_root) if runs_root and Path(runs_root).exists() else []
    ctx = Context(runs, frozen_lake_dir, scale, shifts=shifts, score_dist=score_dist)
    df = pd.DataFrame([evaluate_claim(ctx, c) for c in claims], columns=COLUMNS)
    atomic_write_text(out_csv, df.to_csv(index=False))
    write_markdown_page(out_md, ledger_markdown(df, scale, runs, runs_root, frozen_lake_dir, shifts=shifts,
                                              score_dist=score_dist))
    return df


def _md(s) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def ledger_markdown(df: pd.DataFrame, scale: str, runs: list[Run], runs_root, fl_dir, *, shifts=None,
                    score_dist=None) -> str:
    counts = df.verdict.value_counts()
    files = "".join(f" {what}: `{path}`." for what, path in (("Shift analysis (shift/ claims)", shifts),
                                                            ("s_theta pools (score/ claims)", score_dist)) if path)
    lines = ["# Claims ledger", "",
             f"Scale: {scale}. Runs read from `{runs_root}`: "
             + (", ".join(f"{r.kind} ({r.name})" for r in runs) or "none")
             + f". Frozen Lake outputs: `{fl_dir}`.{files}", "",
             "| verdict | claims |", "|---|---|"]
    for v in VERDICTS:
        lines.append(f"| {v} | {int(counts.get(v, 0))} |")
    lines.append(f"| total | {len(df)} |")
    lines += ["", "| id | paper | verdict | measurement | reason |", "|---|---|---|---|---|"]
    for _, r in df.iterrows():
        lines.append(f"| {r.id} | {r.paper} | {r.verdict} | {_md(r.measurement)} | {_md(r.reason)} |")
    return "\n".join(lines) + "\n"


def main_claims(argv=None) -> None:
    p = argparse.ArgumentParser(prog="negfree claims", description="evaluate configs/claims.yaml on what exists")
    p.add_argument("--claims", default="configs/claims.yaml")
    p.add_argument("--runs-root", required=True)
    p.add_argument("--frozen-lake", required=True, help="directory of the Frozen Lake outputs (fig3.csv)")
    p.add_argument("--out-csv", required=True)
    p.add_argument("--out-md", required=True)
    p.add_argument("--scale", required=True)
    p.add_argument("--shifts", default=None, metavar="SHIFTS_SUMMARY.csv",
                   help="shifts_summary.csv of `negfree shifts` (bnf.txt Fig. 3-4): evaluates the shift/ claims; "
                        "without it they are not checkable")
    p.add_argument("--score-dist", default=None, metavar="FIG1_SUMMARY.csv",
                   help="fig1_summary.csv of `negfree score-dist` (dft.txt Fig. 1): evaluates the score/ claims; "
                        "without it they are not checkable")
    a = p.parse_args(argv)
    df = claims_ledger(a.claims, a.runs_root, a.frozen_lake, a.out_csv, a.out_md, a.scale, shifts=a.shifts,
                       score_dist=a.score_dist)
    print(df.verdict.value_counts().to_string())
    print(f"wrote {a.out_csv} and {a.out_md}")


if __name__ == "__main__":
    main_claims()
