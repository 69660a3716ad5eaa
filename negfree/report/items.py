"""Per-item scores of one evaluation, and intervals over test items (the claims ledger's second source
of uncertainty).

A run trained once has no spread over training seeds, but its evaluation scored every test item
separately: lm-eval's per-sample rows (``<out>.samples.jsonl``, written by
negfree/evaluate/protocols.py and by the offline twin negfree/evaluate/local.py), textsim's
predictions (``<out>.predictions.jsonl``: BLEU and ROUGE are recomputed per item), AlpacaEval's
per-item judge preferences (``<out>.annotations.json``). Two models scored on the same items give
a *paired* interval for their difference: it says whether the difference is larger than the noise
of the test set, for these two trained models. It does not cover training noise (another seed
could land elsewhere): every verdict built on it says so.

Statistics (95%):

- ``paired_binary_interval``: a difference of two accuracies on the same binary items, in closed
  form: the Agresti-Min (2005) interval for paired proportions (the Wald interval of the 2x2
  table with 0.5 added to each cell; it keeps near-nominal coverage when few items are
  discordant, where the plain Wald interval is too narrow).
- ``bootstrap``: a percentile bootstrap (``BOOT_N`` resamples, fixed seed ``BOOT_SEED``) of any
  statistic of per-benchmark means. Items are resampled *within* each benchmark (an average over
  benchmarks keeps each benchmark's size); a pair of models is resampled together (the same
  items for both: paired). Used for averages over benchmarks, for non-binary scores (TruthfulQA
  MC2, ROUGE), for ratios, and for corpus BLEU (resampled from per-item n-gram statistics).
- ``wilson_interval``: one model's accuracy on binary items (paper-value comparisons).

Which lm-eval column gives a claim's metric key: ``negfree.report.paper_table.METRIC_SOURCES`` and
``AVERAGE_RULES``, the same map the paper tables use; a group task (MMLU, MATH, MMLU-redux) is
the pool of its leaf tasks' items (lm-eval's size-weighted group mean), checked against the
value the result JSON reports.
"""
from __future__ import annotations

import fnmatch
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BOOT_N = 2000
BOOT_SEED = 0
LEVEL = 0.95
_CHUNK = 4_000_000      # bootstrap indices drawn at once (rows x items), to bound memory

# lm-eval group task -> the pattern of its leaf tasks' names (their samples carry the leaf's name)
GROUP_LEAVES = {
    "mmlu": re.compile(r"mmlu_(?!redux).+"),
    "mmlu_redux_generative": re.compile(r"mmlu_redux_.+_generative"),
    "negfree_math_l5_zeroshot": re.compile(r"negfree_math_l5_zeroshot_.+"),
    "negfree_math_metamath": re.compile(r"negfree_math_metamath_.+"),
}
# the file a protocol's result is written to, under <run>/eval/ (workflows/evaluate.smk)
EVAL_FILE = {"offline": "negfree_offline.json", "textsim_*": "textsim.json", "alpaca_eval2": "alpaca_eval2.json"}


# ------------------------------------------------------------------------------ statistics
def _z() -> float:
    from scipy import stats

    return float(stats.norm.ppf(0.5 + LEVEL / 2))


def paired_binary_interval(a, b) -> tuple[float, float, float]:
    """(mean(a) - mean(b), low, high) for binary scores of two models on the same items: the
    Agresti-Min interval (0.5 added to each cell of the paired 2x2 table, then Wald)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n = len(a)
    n10, n01 = float(np.sum((a == 1) & (b == 0))), float(np.sum((a == 0) & (b == 1)))
    m = n + 2.0
    p10, p01 = (n10 + 0.5) / m, (n01 + 0.5) / m
    d = p10 - p01
    half = _z() * math.sqrt(max(p10 + p01 - d * d, 0.0) / m)
    return (n10 - n01) / n, d - half, d + half


def wilson_interval(x) -> tuple[float, float, float]:
    """(mean, low, high) of one model's binary scores: the Wilson score interval."""
    x = np.asarray(x, dtype=float)
    n, p, z = len(x), float(x.mean()), _z()
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, centre - half, centre + half


def bootstrap(arrays: list[np.ndarray], stat, n_boot: int | None = None, seed: int | None = None,
              chunk: int = _CHUNK) -> tuple[float, float, float]:
    """(stat(means), low, high): ``arrays[k]`` holds benchmark k's items, one row per item (a
    paired comparison puts both models' columns side by side); each resample draws n_k rows with
    replacement within benchmark k, benchmarks in order, ``numpy.random.default_rng(seed)``
    (indices of benchmark k drawn as ``rng.integers(0, n_k, size=(n_boot, n_k))``, in row chunks:
    the same draws).
    ``stat`` maps the list of per-benchmark mean rows, each of shape (r, columns), to r values;
    the interval is the 2.5 and 97.5 percentiles of the ``n_boot`` resampled values."""
    n_boot = BOOT_N if n_boot is None else n_boot
    rng = np.random.default_rng(BOOT_SEED if seed is None else seed)
    arrays = [np.asarray(x, dtype=float).reshape(len(x), -1) for x in arrays]
    means = []
    for x in arrays:
        n = len(x)
        rows = max(1, chunk // max(n * x.shape[1], 1))
        parts = []
        for start in range(0, n_boot, rows):
            idx = rng.integers(0, n, size=(min(rows, n_boot - start), n))
            parts.append(x[idx].mean(axis=1))
        means.append(np.concatenate(parts))
    vals = np.asarray(stat(means), dtype=float)
    est = float(np.asarray(stat([x.mean(axis=0, keepdims=True) for x in arrays]), dtype=float)[0])
    lo, hi = np.percentile(vals, [50 * (1 - LEVEL), 50 * (1 + LEVEL)])
    return est, float(lo), float(hi)


# ------------------------------------------------------------------------------ per-item scores
@dataclass
class Column:
    """One benchmark column of one model: per-item values (rows of ``values``, ids in ``ids``) and
    how they reduce to the reported score: ``reduce(mean row) * unit`` (the mean itself for
    accuracies; corpus BLEU from mean n-gram statistics)."""
    key: str
    protocol: str
    path: Path
    ids: list
    values: np.ndarray
    unit: float = 1.0
    reduce: object = None
    binary: bool = False
    record: dict = field(default_factory=dict)
    source: str = ""

    def score(self, mean_rows: np.ndarray) -> np.ndarray:
        """The reported score (in the paper's unit) of each mean row."""
        m = np.asarray(mean_rows, dtype=float)
        return (self.reduce(m) if self.reduce is not None else m[:, 0]) * self.unit

    @property
    def value(self) -> float:
        return float(self.score(self.values.mean(axis=0, keepdims=True))[0])


class NoItems(ValueError):
    """Why a column has no usable per-item scores (the message is the ledger's reason)."""


_CACHE: dict = {}
_SAMPLE_KEYS = ("task", "doc_id", "filter", "metrics")     # what a score needs of an lm-eval sample row


def _read_rows(path: Path, keep: tuple[str, ...] | None = None):
    """A JSON file, or the rows of a JSONL file (only the ``keep`` keys of each: lm-eval's samples carry
    every prompt, megabytes the scores do not need); the last few files read are kept."""
    key = (str(path), path.stat().st_mtime_ns, path.stat().st_size, keep)
    if key not in _CACHE:
        if len(_CACHE) > 8:
            _CACHE.clear()
        if path.suffix == ".jsonl":
            rows = []
            with path.open() as f:
                for line in f:
                    if line.strip():
                        r = json.loads(line)
                        rows.append({k: r.get(k) for k in keep} if keep else r)
            _CACHE[key] = rows
        else:
            _CACHE[key] = json.loads(path.read_text())
    return _CACHE[key]


def _leaf_match(task: str, leaf: str) -> bool:
    pat = GROUP_LEAVES.get(task)
    return leaf == task or (pat is not None and pat.fullmatch(leaf) is not None)


def _reported(record: dict, task: str, metric: str):
    """The value the result JSON reports for one task and lm-eval metric key, and its n."""
    t = (record.get("tasks") or {}).get(task)
    if t is None:
        return None, None
    if "metric" in t and "value" in t:               # evaluate_protocol: one metric per task
        return (t["value"] if t["metric"] == metric else None), t.get("n")
    n = ((record.get("n_samples") or {}).get(task) or {}).get("effective")   # evaluate_local
    return t.get(metric), n


def _result(json_path: Path) -> dict:
    """An evaluation's result JSON, or NoItems naming it."""
    if not json_path.is_file():
        raise NoItems(f"no evaluation {json_path}")
    return _read_rows(json_path)


def _beside(json_path: Path, record: dict, field: str, suffix: str, what: str) -> Path:
    """The per-item file a result names under ``field`` (default: its own name with ``suffix``),
    or NoItems saying the result has no ``what``."""
    path = json_path.with_name(record.get(field) or json_path.with_suffix(suffix).name)
    if not path.is_file():
        raise NoItems(f"{json_path} has no {what} ({path.name})")
    return path


def lm_eval_column(json_path: Path, key: str, protocol: str, task: str, metric: str, unit: float) -> Column:
    """Per-item scores of one lm-eval task (or group) from the samples file beside its result."""
    record = _result(json_path)
    samples = _beside(json_path, record, "samples", ".samples.jsonl", "per-sample file")
    name, _, filt = metric.partition(",")
    ids, vals = [], []
    for r in _read_rows(samples, _SAMPLE_KEYS):
        if r.get("filter") != filt or not _leaf_match(task, r.get("task", "")):
            continue
        v = (r.get("metrics") or {}).get(name)
        if v is None:
            raise NoItems(f"{samples.name}: {r['task']} doc {r.get('doc_id')} has no '{name}' score")
        ids.append((r["task"], r["doc_id"]))
        vals.append(float(v))
    if not ids:
        raise NoItems(f"{samples.name} has no items of {task} ({metric})")
    if len(set(ids)) != len(ids):
        raise NoItems(f"{samples.name}: {task} ({metric}) has an item twice")
    x = np.asarray(vals)
    reported, n = _reported(record, task, metric)
    if reported is None:
        raise NoItems(f"{json_path.name} reports no {task} {metric}")
    if n is not None and int(n) != len(ids):
        raise NoItems(f"{samples.name} has {len(ids)} items of {task}, the result says {n}")
    if abs(float(x.mean()) - float(reported)) > 1e-6:
        raise NoItems(f"the {len(ids)} items of {task} in {samples.name} average {x.mean():.6g}, the result "
                      f"reports {float(reported):.6g}")
    return Column(key, protocol, json_path, ids, x.reshape(-1, 1), unit, None,
                  bool(np.isin(x, (0.0, 1.0)).all()), record, f"{protocol}/{task}/{metric}")


def _bleu_stats(preds: list[str], refs: list[str]) -> np.ndarray:
    """Per-item sufficient statistics of sacrebleu's corpus BLEU: hypothesis and reference length,
    then matches and totals of each n-gram order."""
    from sacrebleu.metrics import BLEU

    return np.asarray(BLEU()._extract_corpus_statistics(preds, [refs]), dtype=float)


def _bleu_of(sum_stats: np.ndarray) -> np.ndarray:
    from sacrebleu.metrics import BLEU

    bleu = BLEU()
    return np.asarray([bleu._compute_score_from_stats([int(v) for v in row]).score for row in sum_stats])


def textsim_column(json_path: Path, key: str, metric: str) -> Column:
    """BLEU-4 or ROUGE-1/2/L per item, recomputed from the predictions beside a textsim result."""
    record = _result(json_path)
    preds_path = _beside(json_path, record, "predictions", ".predictions.jsonl", "predictions file")
    rows = _read_rows(preds_path)
    preds, refs = [r["prediction"] for r in rows], [r["reference"] for r in rows]
    ids = [(r["i"], r["reference"]) for r in rows]
    if metric == "bleu4":
        # corpus BLEU from summed statistics: a resample's mean row times the number of items is its sums
        n = len(rows)
        x, unit = _bleu_stats(preds, refs), 1.0

        def reduce(mean_rows, n=n):
            return _bleu_of(np.rint(np.asarray(mean_rows) * n))
    else:
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer([metric], use_stemmer=True)
        x = np.asarray([[scorer.score(r, p)[metric].fmeasure] for p, r in zip(preds, refs)])
        reduce, unit = None, 100.0
    col = Column(key, record.get("protocol", "textsim"), json_path, ids, x, unit, reduce, False, record,
                 f"{record.get('protocol')}/{metric}")
    reported = (record.get("scores") or {}).get(metric)
    if reported is None or abs(col.value - float(reported)) > 1e-4:
        raise NoItems(f"{metric} recomputed from {preds_path.name} is {col.value:.6g}, the result reports {reported}")
    return col


def alpaca_column(json_path: Path, key: str, metric: str) -> Column:
    """A judged win rate per item: the judge's preference for the model's answer over the reference
    (alpaca_eval's preference 1 = reference, 2 = model; win = preference - 1), in percent. Only the
    plain win rate is a mean of per-item preferences: the length-controlled one is a model fit."""
    record = _result(json_path)
    if metric != "win_rate":
        raise NoItems(f"the {metric} of AlpacaEval is fitted over all items (length control), not a mean of per-item "
                      "preferences: no test-item interval (the plain win rate has one)")
    path = _beside(json_path, record, "annotations", ".annotations.json", "per-item judge preferences")
    rows = _read_rows(path)
    ids, vals = [], []
    for r in rows:
        p = r.get("preference")
        if p is None:
            raise NoItems(f"{path.name}: an item without a preference ({str(r.get('instruction'))[:40]!r})")
        ids.append(r["instruction"])
        vals.append(float(p) - 1.0)
    x = np.asarray(vals).reshape(-1, 1)
    return Column(key, "alpaca_eval2", json_path, ids, x, 100.0, None, bool(np.isin(x, (0.0, 1.0)).all()),
                  record, f"alpaca_eval2 judged by {record.get('annotator')}")


def column(run_dir: Path, key: str, protocols: tuple[str, ...] | None = None) -> list[Column]:
    """The per-item columns behind one paper metric key of one run: one column, or the averaged
    columns of an average (``avg``: AVERAGE_RULES; ``mean_of(a,b,...)``). The first protocol with a
    result of the run gives them. Raises NoItems with the reason."""
    from negfree.report.paper_table import AVERAGE_RULES, METRIC_SOURCES

    parts = re.fullmatch(r"mean_of\((.*)\)", key)
    if parts:
        return [c for k in parts.group(1).split(",") for c in column(run_dir, k.strip(), protocols)]
    why = []
    cands = [s for s in METRIC_SOURCES if s.paper_key == key]
    avgs = [(p, keys) for (k, p), keys in AVERAGE_RULES.items() if k == key]
    for p, keys in avgs:
        if protocols and p not in protocols:
            continue
        path = run_dir / "eval" / f"{p}.json"
        if not path.is_file():
            why.append(f"no evaluation {path}")
            continue
        return [column(run_dir, k, (p,))[0] for k in keys]
    for s in cands:
        if protocols and not any(p == s.protocol or fnmatch.fnmatchcase(p, s.protocol) for p in protocols):
            continue
        path = run_dir / "eval" / EVAL_FILE.get(s.protocol, f"{s.protocol}.json")
        if not path.is_file():
            why.append(f"no evaluation {path}")
            continue
        if s.protocol.startswith("textsim"):
            return [textsim_column(path, key, s.metric)]
        if s.protocol == "alpaca_eval2":
            return [alpaca_column(path, key, s.metric)]
        return [lm_eval_column(path, key, s.protocol, s.task, s.metric, s.factor)]
    if not cands and not avgs:
        raise NoItems(f"'{key}' is not measured by any protocol of ours (negfree/report/paper_table.py METRIC_SOURCES)")
    raise NoItems("; ".join(dict.fromkeys(why)) or f"no protocol of {protocols} measures '{key}'")


def align(a: Column, b: Column) -> tuple[np.ndarray, np.ndarray]:
    """The two columns' rows on the same items, in a's order; refuses different item sets."""
    if a.ids == b.ids:
        return a.values, b.values
    pos = {i: k for k, i in enumerate(b.ids)}
    if len(pos) != len(a.ids) or any(i not in pos for i in a.ids):
        only_a = sum(i not in pos for i in a.ids)
        raise NoItems(f"{a.source}: the two evaluations scored different items ({len(a.ids)} vs {len(b.ids)}, "
                      f"{only_a} only in {a.path})")
    return a.values, b.values[[pos[i] for i in a.ids]]


# ------------------------------------------------------------------------------ comparisons
@dataclass
class ItemInterval:
    estimate: float
    low: float
    high: float
    method: str
    n_items: int
    value_a: float
    value_b: float | None = None


def compare(A: list[Column], B: list[Column], kind: str = "diff", factor: float = 1.0) -> ItemInterval:
    """The paired interval over test items of ``kind``: ``diff`` mean_k(a_k - factor b_k) (the
    average over the columns, each in its unit), or ``log_ratio`` log(mean_k a_k / mean_k b_k).
    One binary column compared by a plain difference: Agresti-Min; otherwise the paired bootstrap."""
    if len(A) != len(B) or any(a.key != b.key for a, b in zip(A, B)):
        raise NoItems("the two sides have different columns")
    pairs = [align(a, b) for a, b in zip(A, B)]
    n = sum(len(x) for x, _ in pairs)
    va = float(np.mean([a.value for a in A]))
    vb = float(np.mean([b.value for b in B]))
    if kind == "diff" and factor == 1.0 and len(A) == 1 and A[0].binary and B[0].binary and A[0].reduce is None:
        d, lo, hi = paired_binary_interval(pairs[0][0][:, 0], pairs[0][1][:, 0])
        u = A[0].unit
        return ItemInterval(d * u, lo * u, hi * u, "Agresti-Min paired interval", n, va, vb)
    widths = [x.shape[1] for x, _ in pairs]

    def stat(means):
        sa = np.mean([A[k].score(m[:, :w]) for k, (m, w) in enumerate(zip(means, widths))], axis=0)
        sb = np.mean([B[k].score(m[:, w:]) for k, (m, w) in enumerate(zip(means, widths))], axis=0)
        return sa - factor * sb if kind == "diff" else np.log(sa / sb)

    est, lo, hi = bootstrap([np.hstack([x, y]) for x, y in pairs], stat)
    what = f"paired bootstrap ({BOOT_N} resamples{', within each benchmark' if len(A) > 1 else ''})"
    return ItemInterval(est, lo, hi, what, n, va, vb)


def score_interval(A: list[Column]) -> ItemInterval:
    """One model's score with its interval over test items (Wilson for one binary column, else the
    bootstrap within each benchmark)."""
    n = sum(len(a.ids) for a in A)
    if len(A) == 1 and A[0].binary and A[0].reduce is None:
        p, lo, hi = wilson_interval(A[0].values[:, 0])
        u = A[0].unit
        return ItemInterval(p * u, lo * u, hi * u, "Wilson interval", n, p * u)
    est, lo, hi = bootstrap([a.values for a in A],
                            lambda means: np.mean([a.score(m) for a, m in zip(A, means)], axis=0))
    return ItemInterval(est, lo, hi, f"bootstrap ({BOOT_N} resamples{', within each benchmark' if len(A) > 1 else ''})",
                        n, est)
