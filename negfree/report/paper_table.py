"""One paper item (e.g. ``dft/table2``) with our measured values beside the paper's.

    from negfree.report.paper_table import paper_table, write_markdown
    df = paper_table("dft/table2", ["results/evals.csv"], {"SFT": "method~sft"},
                     scale="SmolLM2-135M, 6 steps")
    write_markdown(df, "results/tables/dft_table2.md")

``negfree paper-table --item dft/table2 --evals E.csv --scale "..." --out-md T.md`` is
the same from the shell (docs/paper_tables.md).

Inputs:
- the paper side is ``negfree.report.paper_numbers`` (``load`` and ``info``): the
  item's metric keys in the paper's column order, its printed rows in order, its
  numbers in the paper's units;
- our side is the tidy rows of ``negfree eval-csv`` (run, protocol, task, metric,
  value, stderr, n), read from those CSVs or collected from the evaluation JSONs
  with ``negfree.evaluate.aggregate.collect``.

Our lm-eval values are fractions in [0, 1]; the paper prints percent. Every
(protocol, task, metric) we report is mapped onto a paper metric key, with the
factor that puts it in the paper's unit, by one explicit table: ``METRIC_SOURCES``.
A paper metric that no entry maps is "not measured"; nothing is inferred from
names. Which protocol measures which item is ``ITEM_PROTOCOLS``: results of another
protocol never fill an item's cells (openllm_ift runs MMLU with the chat template,
openllm_dft without; they are different numbers).

The paper's average columns are recomputed from our per-task values by the paper's
rule (``AVERAGE_RULES``) only when every averaged column is present, else left
empty with the reason in the notes.

The result is a long DataFrame (one row per paper row x paper column) with
``df.attrs`` holding the layout (column order, labels, runs, notes); the writers
render it as Markdown (one row per paper row, each cell ``paper / ours / diff``),
CSV (the long form) and LaTeX (booktabs).
"""
from __future__ import annotations

import argparse
import fnmatch
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from negfree.common.io import atomic_write_text
from negfree.report import paper_numbers
from negfree.report.html import write_markdown_page

EVAL_COLUMNS = ("run", "protocol", "task", "metric", "value", "stderr", "n")
LONG_COLUMNS = ["item", "row", "label", "model", "setting", "method", "run", "metric", "metric_label",
                "unit", "paper", "ours", "diff", "status", "source", "note"]

OK, NOT_RUN, NOT_MEASURED, MISSING = "ok", "not run", "not measured", "missing"


# ----------------------------------------------------------------- the metric map
@dataclass(frozen=True)
class Source:
    """Our result row (protocol, task, metric) that gives a paper metric key.

    ``protocol`` and ``task`` may be fnmatch patterns (textsim protocols are named
    ``textsim_<dataset>``). ``factor`` converts our value to the paper's unit."""
    paper_key: str
    protocol: str
    task: str
    metric: str
    factor: float
    note: str = ""


PCT = 100.0   # lm-eval fraction -> the paper's percent

METRIC_SOURCES: tuple[Source, ...] = (
    # dft.txt Table 7 (A.5): Tables 2, 3, 4, 8-12 and Fig. 7
    Source("mmlu/acc", "openllm_dft", "mmlu", "acc,none", PCT),
    Source("truthfulqa_mc2/acc", "openllm_dft", "truthfulqa_mc2", "acc,none", PCT),
    Source("hellaswag/acc_norm", "openllm_dft", "hellaswag", "acc_norm,none", PCT),
    Source("winogrande/acc", "openllm_dft", "winogrande", "acc,none", PCT),
    Source("gsm8k/exact_match,strict-match", "openllm_dft", "gsm8k", "exact_match,strict-match", PCT),
    Source("arc_challenge/acc_norm", "openllm_dft", "arc_challenge", "acc_norm,none", PCT),
    Source("ifeval/prompt_level_strict_acc", "openllm_dft", "ifeval", "prompt_level_strict_acc,none", PCT),
    # ift.txt 5.1 / Table 3 (chat template on every task)
    Source("arc_challenge/acc_norm", "openllm_ift", "arc_challenge", "acc_norm,none", PCT),
    Source("mmlu/acc", "openllm_ift", "mmlu", "acc,none", PCT),
    Source("truthfulqa_mc2/acc", "openllm_ift", "truthfulqa_mc2", "acc,none", PCT),
    Source("winogrande/acc", "openllm_ift", "winogrande", "acc,none", PCT),
    Source("gsm8k/exact_match,strict-match", "openllm_ift", "gsm8k", "exact_match,strict-match", PCT),
    # dft.txt Table 1 (MetaMath prompt, zero-shot)
    Source("gsm8k_0shot/acc", "math_zeroshot", "negfree_gsm8k_metamath", "exact_match,none", PCT),
    Source("math_0shot/acc", "math_zeroshot", "negfree_math_metamath", "exact_match,none", PCT),
    # bnf.txt Tables 4 and 6, the reasoning columns (the paper used ZeroEval; these are
    # lm-eval's zero-shot counterparts, see negfree.evaluate.protocols)
    Source("gsm8k/acc", "bnf_reasoning", "gsm8k_cot_zeroshot", "exact_match,flexible-extract", PCT,
           "bnf GSM8K: lm-eval gsm8k_cot_zeroshot (flexible-extract), not the paper's ZeroEval"),
    Source("math_l5/acc", "bnf_reasoning", "negfree_math_l5_zeroshot", "exact_match,none", PCT,
           "bnf MATH: lm-eval MATH Level 5 zero-shot, not the paper's ZeroEval"),
    Source("mmlu_redux/acc", "bnf_reasoning", "mmlu_redux_generative", "exact_match,default", PCT,
           "bnf MMLU: lm-eval mmlu_redux_generative, not the paper's ZeroEval"),
    # AlpacaEval 2 (negfree alpaca-eval): alpaca_eval reports win rates in percent
    Source("alpacaeval2/win_rate", "alpaca_eval2", "alpaca_eval2", "win_rate", 1.0,
           "AlpacaEval 2 is comparable to the paper only with the weighted_alpaca_eval_gpt4_turbo "
           "annotator on the 805 instructions; the tidy rows do not record the judge (see the "
           "run's JSON: annotator, win_rate_kind)"),
    Source("alpacaeval2/lc_win_rate", "alpaca_eval2", "alpaca_eval2", "lc_win_rate", 1.0,
           "AlpacaEval 2 is comparable to the paper only with the weighted_alpaca_eval_gpt4_turbo "
           "annotator on the 805 instructions; the tidy rows do not record the judge (see the "
           "run's JSON: annotator, win_rate_kind)"),
    # asft.txt Table 3 (negfree textsim): already 0-100
    Source("bleu4", "textsim_*", "*", "bleu4", 1.0,
           "asft BLEU/ROUGE: the paper's test set is alpaca_en (asft.txt 5.1); ours is the "
           "dataset named in the protocol (textsim_<dataset>)"),
    Source("rouge1", "textsim_*", "*", "rouge1", 1.0),
    Source("rouge2", "textsim_*", "*", "rouge2", 1.0),
    Source("rougeL", "textsim_*", "*", "rougeL", 1.0),
)

# item id -> the protocols whose results may fill its cells
_OPENLLM_DFT_ITEMS = ("dft/table2", "dft/table3", "dft/table4", "dft/table8_fig2b", "dft/table9_fig6",
                      "dft/table10_table11", "dft/table12", "dft/fig7")
ITEM_PROTOCOLS: dict[str, tuple[str, ...]] = {
    **{i: ("openllm_dft",) for i in _OPENLLM_DFT_ITEMS},
    "dft/table1": ("math_zeroshot",),
    "dft/fig2a_fig5": ("alpaca_eval2",),
    "ift/table2": ("alpaca_eval2",),
    "ift/table3": ("openllm_ift",),
    "bnf/table4": ("bnf_reasoning",),
    "bnf/table6": ("bnf_reasoning",),
    "asft/table3": ("textsim_*",),
}

# (paper key, protocol) -> the paper keys it averages (plain mean, in the paper's unit)
AVERAGE_RULES: dict[tuple[str, str], tuple[str, ...]] = {
    # dft.txt: "Avg." is the mean of the 7 benchmarks (every printed row checks out,
    # tests/test_paper_numbers.py); the same rule as the protocol's aggregate
    ("avg", "openllm_dft"): ("mmlu/acc", "truthfulqa_mc2/acc", "hellaswag/acc_norm", "winogrande/acc",
                             "gsm8k/exact_match,strict-match", "arc_challenge/acc_norm",
                             "ifeval/prompt_level_strict_acc"),
    # ift.txt Table 3: the caption's "average score" over its 5 benchmarks
    ("avg", "openllm_ift"): ("arc_challenge/acc_norm", "mmlu/acc", "truthfulqa_mc2/acc", "winogrande/acc",
                             "gsm8k/exact_match,strict-match"),
}

# why a paper key is not measured (shown in the notes; keys may be fnmatch patterns)
NOT_MEASURED_WHY: dict[str, str] = {
    "avg_rank": "the average rank is over the paper's 8 columns and its block of methods; we measure "
                "3 of the 8 columns (negfree.evaluate.protocols.average_rank ranks our runs among themselves)",
    "crux/acc": "CRUX is not run (lm-eval's cruxeval samples at T=0.2 and executes model code)",
    "wildbench/*": "Wild-Bench needs a GPT-4o judge: no protocol of ours runs it",
    "arena_hard/*": "Arena-Hard needs an LLM judge: no protocol of ours runs it",
    "mt_bench/*": "MT-Bench needs an LLM judge: no protocol of ours runs it",
    "alpacaeval/*": "AlpacaEval 1 is not run (only AlpacaEval 2: negfree alpaca-eval)",
    "alpacaeval2/avg_length": "the paper does not state the unit of its lengths; ours (mean_length_chars) "
                              "is not mapped",
    "data_volume": "the training-set size is a property of the run, not an evaluation result",
}


def sources_for(protocol_patterns: Iterable[str]) -> list[Source]:
    pats = tuple(protocol_patterns)
    return [s for s in METRIC_SOURCES if s.protocol in pats]


def check_sources() -> list[str]:
    """Problems of METRIC_SOURCES against negfree.evaluate.protocols.PROTOCOLS (empty = fine):
    every mapped lm-eval protocol task and metric must be one the protocol scores."""
    from negfree.evaluate.protocols import PROTOCOLS

    problems = []
    for s in METRIC_SOURCES:
        if any(ch in s.protocol for ch in "*?["):
            continue
        if s.protocol in PROTOCOLS:
            scored = {t: m for c in PROTOCOLS[s.protocol].calls for t, m in c.metrics.items()}
            if scored.get(s.task) != s.metric:
                problems.append(f"{s.paper_key}: protocol {s.protocol} scores {s.task!r} with "
                                f"{scored.get(s.task)!r}, not {s.metric!r}")
    return problems


def _why_not_measured(key: str, protocols: tuple[str, ...]) -> str:
    for pat, why in NOT_MEASURED_WHY.items():
        if fnmatch.fnmatchcase(key, pat):
            return why
    if not protocols:
        return "no protocol of ours measures this item"
    return f"no result of protocol {', '.join(protocols)} maps onto it"


# ---------------------------------------------------------------------- our side
def load_evals(evals) -> pd.DataFrame:
    """Tidy evaluation rows from CSVs of ``negfree eval-csv`` and/or evaluation JSONs
    (collected with ``aggregate.collect``), or from rows / a DataFrame given directly."""
    from negfree.evaluate.aggregate import collect

    if isinstance(evals, pd.DataFrame):
        frames = [evals]
    elif isinstance(evals, (str, Path)):
        return load_evals([evals])
    else:
        evals = list(evals)
        frames = []
        dict_rows = [e for e in evals if isinstance(e, Mapping)]
        if dict_rows:
            frames.append(pd.DataFrame(dict_rows))
        for e in evals:
            if isinstance(e, Mapping):
                continue
            path = Path(e)
            if not path.is_file():
                raise ValueError(f"evaluation file not found: {path}")
            if path.suffix.lower() == ".json":
                frames.append(pd.DataFrame(collect([path]), columns=list(EVAL_COLUMNS)))
            else:
                df = pd.read_csv(path, dtype={"run": str, "protocol": str, "task": str, "metric": str},
                                 keep_default_na=False, na_values={"value": [""], "stderr": [""], "n": [""]})
                missing = [c for c in EVAL_COLUMNS if c not in df.columns]
                if missing:
                    raise ValueError(f"{path}: not a tidy evaluation CSV of `negfree eval-csv` "
                                     f"(missing columns {', '.join(missing)})")
                frames.append(df)
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in EVAL_COLUMNS})
    df = pd.concat(frames, ignore_index=True)
    missing = [c for c in ("run", "protocol", "task", "metric", "value") if c not in df.columns]
    if missing:
        raise ValueError(f"evaluation rows lack the columns {', '.join(missing)}")
    for c in ("run", "protocol", "task", "metric"):
        df[c] = df[c].astype(str)
    df["value"] = pd.to_numeric(df["value"], errors="coerce").astype(float)
    # the same result read twice (a CSV and its JSON) is fine; two different values are not
    key = ["run", "protocol", "task", "metric"]
    df = df.drop_duplicates(subset=key + ["value"])
    dup = df[df.duplicated(subset=key, keep=False)]
    if len(dup):
        r = dup.iloc[0]
        raise ValueError(f"run {r.run!r} has {int((dup[key] == r[key]).all(axis=1).sum())} different "
                         f"values for {r.protocol}/{r.task}/{r.metric}: results of two runs with the same "
                         f"name? name them apart (eval-csv --runs)")
    return df.reset_index(drop=True)


def _ours_by_run(evals: pd.DataFrame, protocols: tuple[str, ...]) -> dict[str, dict[str, tuple[float, str, str]]]:
    """run -> paper key -> (value in the paper's unit (NaN: no value), source, note)."""
    srcs = sources_for(protocols)
    out: dict[str, dict] = {}
    for r in evals.itertuples(index=False):
        for s in srcs:
            if (fnmatch.fnmatchcase(r.protocol, s.protocol) and fnmatch.fnmatchcase(r.task, s.task)
                    and r.metric == s.metric):
                got = out.setdefault(r.run, {})
                where = f"{r.protocol}/{r.task}/{r.metric}"
                if s.paper_key in got:
                    raise ValueError(f"run {r.run!r}: both {got[s.paper_key][1]} and {where} map onto "
                                     f"{s.paper_key}: pass the results of one of them only")
                v = float(r.value) * s.factor if r.value is not None and not math.isnan(r.value) else math.nan
                got[s.paper_key] = (v, where, s.note)
    return out


_METHOD_RE = re.compile(r"(?:^|/)method~([^/]+)$")


def run_method(run: str) -> str | None:
    """'method~dft' -> 'dft'; 'base~<model>' -> 'base'; anything else -> None."""
    m = _METHOD_RE.search(run)
    if m:
        return m.group(1)
    if re.search(r"(?:^|/)base(?:~[^/]*)?$", run):
        return "base"
    return None


# ------------------------------------------------------------------ rows mapping
def _row_label(rows: list[dict], i: int) -> str:
    r = rows[i]
    if r.get("label"):
        return str(r["label"])
    same = [x for x in rows if x["method"] == r["method"]]
    return r["method"] if len(same) == 1 else f"{r['method']} [{r['setting']}]"


def _describe(rows: list[dict], i: int) -> str:
    r = rows[i]
    return f"#{i + 1} {_row_label(rows, i)} ({r['model']}; {r['setting']})"


def resolve_row(key: str, rows: list[dict], item: str) -> int:
    """A --row key -> the 0-based index of exactly one printed row.

    Keys: ``#N`` (1-based printed position), a printed label, or a method name,
    optionally qualified ``KEY@QUALIFIER`` with the row's model or setting."""
    key = key.strip()
    if re.fullmatch(r"#\d+", key):
        n = int(key[1:])
        if not 1 <= n <= len(rows):
            raise ValueError(f"unknown row {key!r} for {item}: it has rows #1..#{len(rows)}")
        return n - 1
    base, qual = key, None
    if "@" in key:
        base, qual = (p.strip() for p in key.rsplit("@", 1))
    hits = []
    for i, r in enumerate(rows):
        label = _row_label(rows, i)
        if base not in (label, r["method"]) and base.casefold() != label.casefold():
            continue
        if qual is not None and qual.casefold() not in (r["model"].casefold(), r["setting"].casefold()):
            continue
        hits.append(i)
    if not hits:
        known = "; ".join(_describe(rows, i) for i in range(len(rows)))
        raise ValueError(f"unknown row {key!r} for {item}: its rows are {known} "
                         f"(give a label, a method, #N, or KEY@MODEL / KEY@SETTING)")
    if len(hits) > 1:
        raise ValueError(f"row {key!r} matches {len(hits)} rows of {item}: "
                         f"{'; '.join(_describe(rows, i) for i in hits)}; qualify it as #N, KEY@MODEL or KEY@SETTING")
    return hits[0]


def _parse_row_pairs(row_map) -> list[tuple[str, str]]:
    if row_map is None:
        return []
    if isinstance(row_map, Mapping):
        return [(str(k), str(v)) for k, v in row_map.items()]
    pairs = []
    for item in row_map:
        if isinstance(item, (tuple, list)):
            pairs.append((str(item[0]), str(item[1])))
            continue
        if "=" not in item:
            raise ValueError(f"--row {item!r} must look like LABEL_OR_METHOD=RUN")
        k, v = item.rsplit("=", 1)      # labels and settings may contain '=', run names do not
        if not k.strip() or not v.strip():
            raise ValueError(f"--row {item!r} must look like LABEL_OR_METHOD=RUN")
        pairs.append((k.strip(), v.strip()))
    return pairs


def map_rows(item: str, rows: list[dict], row_map, runs_all: list[str], runs_usable: list[str],
             protocols: tuple[str, ...]) -> tuple[dict[int, str], list[str]]:
    """Explicit pairs first, then the default: an unmapped row whose method is X takes the
    run ``method~X`` when exactly one unmapped row has method X and one such run exists."""
    notes: list[str] = []
    mapping: dict[int, str] = {}
    for key, run in _parse_row_pairs(row_map):
        i = resolve_row(key, rows, item)
        if run not in runs_all:
            raise ValueError(f"run {run!r} (--row {key}={run}) is not in the evaluation results; runs there: "
                             f"{', '.join(sorted(runs_all)) or 'none'}")
        if run not in runs_usable:
            raise ValueError(f"run {run!r} (--row {key}={run}) has no result of protocol "
                             f"{', '.join(protocols) or '(none)'}, which {item} needs")
        if i in mapping and mapping[i] != run:
            raise ValueError(f"row {_describe(rows, i)} is given two runs: {mapping[i]!r} and {run!r}")
        mapping[i] = run
    used = set(mapping.values())
    by_method: dict[str, list[str]] = {}
    for run in runs_usable:
        m = run_method(run)
        if m is not None and run not in used:
            by_method.setdefault(m, []).append(run)
    for method, runs in sorted(by_method.items()):
        free = [i for i, r in enumerate(rows) if r["method"] == method and i not in mapping]
        if not free:
            continue
        if len(free) == 1 and len(runs) == 1:
            mapping[free[0]] = runs[0]
        elif len(runs) > 1:
            notes.append(f"runs {', '.join(runs)} all have method {method}: none is placed by default; "
                         f"choose with --row")
        else:
            notes.append(f"run {runs[0]} could fill {len(free)} rows ({'; '.join(_describe(rows, i) for i in free)}): "
                         f"none is filled by default; choose with --row")
    return mapping, notes


# ------------------------------------------------------------------- the table
def paper_table(item: str, evals, row_map=None, scale: str = "") -> pd.DataFrame:
    """Long DataFrame of ``item`` (LONG_COLUMNS): per printed row and paper column,
    the paper's value, ours in the paper's unit, and diff = ours - paper.

    ``evals``: paths of tidy CSVs / evaluation JSONs, tidy rows, or a DataFrame.
    ``row_map``: {KEY: RUN} or ["KEY=RUN", ...] (see ``resolve_row``); unmapped rows
    take the default (``map_rows``). ``scale`` says at what scale ours were measured.
    ``df.attrs`` carries the layout for the writers."""
    if item not in paper_numbers.aliases():
        raise ValueError(f"unknown paper item {item!r}; known: {', '.join(paper_numbers.items())}")
    info = paper_numbers.info(item)
    iid, filt = paper_numbers.resolve(item)
    if not info.get("numbers_in_text") or not info.get("files"):
        raise ValueError(f"paper item {item!r} has no numbers in the paper's text (it is a figure or "
                         f"analytic item; see negfree/report/paper_numbers/README.md): nothing to compare")
    paper = paper_numbers.load(item)
    metrics = list(info["metrics"])
    labels = list(info.get("metric_labels") or metrics)
    if "metric" in filt:                       # an alias such as dft/fig2b: only its column
        keep = [j for j, m in enumerate(metrics) if m == filt["metric"]]
        metrics, labels = [metrics[j] for j in keep], [labels[j] for j in keep]
    rows = [r for r in info["rows"] if all(r.get(c) == v for c, v in filt.items() if c in r)]

    protocols = ITEM_PROTOCOLS.get(iid, ())
    ev = load_evals(evals)
    ours = _ours_by_run(ev, protocols)
    runs_all = sorted(set(ev["run"]))
    runs_usable = [r for r in runs_all if r in ours]
    mapping, notes = map_rows(item, rows, row_map, runs_all, runs_usable, protocols)

    mapped_keys = {s.paper_key for s in sources_for(protocols)}
    col_notes: dict[str, str] = {}
    for key, label in zip(metrics, labels):
        rule = next((AVERAGE_RULES[(key, p)] for p in protocols if (key, p) in AVERAGE_RULES), None)
        if rule is not None:
            col_notes[key] = (f"{label}: ours is recomputed as the plain mean of "
                              f"{', '.join(rule)} (the paper's rule), only when all {len(rule)} are present")
        elif key not in mapped_keys:
            col_notes[key] = f"{label}: not measured ({_why_not_measured(key, protocols)})"
    for s in sources_for(protocols):
        if s.note and s.paper_key in metrics:
            col_notes.setdefault(f"src:{s.note}", s.note)

    def paper_cell(r: dict, key: str) -> tuple[float, str]:
        sel = paper[(paper.model == r["model"]) & (paper.setting == r["setting"])
                    & (paper.method == r["method"]) & (paper.metric == key)]
        if len(sel) == 0:
            return math.nan, ""
        return float(sel.value.iloc[0]), str(sel.unit.iloc[0])

    out = []
    for i, r in enumerate(rows):
        run = mapping.get(i)
        have = ours.get(run, {}) if run else {}
        for key, label in zip(metrics, labels):
            p, unit = paper_cell(r, key)
            rec = {"item": item, "row": i + 1, "label": _row_label(rows, i), "model": r["model"],
                   "setting": r["setting"], "method": r["method"], "run": run or "", "metric": key,
                   "metric_label": label, "unit": unit, "paper": p, "ours": math.nan, "source": "", "note": ""}
            rule = next((AVERAGE_RULES[(key, pr)] for pr in protocols if (key, pr) in AVERAGE_RULES), None)
            if run is None:
                rec.update(status=NOT_RUN, note="not run")
            elif rule is not None:
                missing = [k for k in rule if k not in have or math.isnan(have[k][0])]
                if missing:
                    rec.update(status=MISSING, note=f"average not computed: {run} lacks {', '.join(missing)}")
                    notes.append(f"{_describe(rows, i)}, {label}: left empty, {run} has no value for "
                                 f"{', '.join(missing)}")
                else:
                    rec.update(status=OK, ours=sum(have[k][0] for k in rule) / len(rule),
                               source="mean of " + ", ".join(have[k][1] for k in rule))
                    agg = ev[(ev.run == run) & (ev.task == "aggregate") & ev.protocol.isin(protocols)].value
                    if len(agg) == 1 and not math.isnan(agg.iloc[0]) and abs(agg.iloc[0] - rec["ours"]) > 1e-6:
                        notes.append(f"{_describe(rows, i)}, {label}: our recomputed {rec['ours']:.4f} differs "
                                     f"from the protocol's aggregate {agg.iloc[0]:.4f}")
            elif key not in mapped_keys:
                rec.update(status=NOT_MEASURED, note=_why_not_measured(key, protocols))
            elif key not in have or math.isnan(have[key][0]):
                where = have[key][1] if key in have else "its task"
                rec.update(status=MISSING, source=have[key][1] if key in have else "",
                           note=f"{run} has no value for {where} (call failed, skipped, or not run)")
                notes.append(f"{_describe(rows, i)}, {label}: {run} has no value for {where}")
            else:
                rec.update(status=OK, ours=have[key][0], source=have[key][1])
            rec["diff"] = rec["ours"] - rec["paper"] if not (math.isnan(rec["ours"]) or math.isnan(p)) else math.nan
            out.append(rec)
    df = pd.DataFrame(out, columns=LONG_COLUMNS)
    if paper.value.isna().all():
        notes.insert(0, f"{item}: the paper's text gives no number for this item (layout only)")
    unused = [r for r in runs_usable if r not in mapping.values()]
    if unused:
        notes.append(f"runs with {'/'.join(protocols)} results but in no row: {', '.join(unused)}")
    other = [r for r in runs_all if r not in runs_usable]
    if other:
        notes.append(f"runs without results of {'/'.join(protocols) or 'a protocol for this item'} "
                     f"(not used): {', '.join(other)}")
    if not protocols:
        notes.insert(0, f"{item}: no protocol of ours measures this item; only the paper's numbers are shown")
    df.attrs.update(
        item=item, caption=info.get("caption", ""), scale=scale, protocols=list(protocols),
        metrics=metrics, metric_labels=labels,
        rows=[{"row": i + 1, "label": _row_label(rows, i), "model": r["model"], "setting": r["setting"],
               "method": r["method"], "run": mapping.get(i, "")} for i, r in enumerate(rows)],
        column_notes=list(col_notes.values()), notes=notes,
    )
    return df


# ----------------------------------------------------------------------- writers
DECIMALS = {"%": 2, "score": 2, "elo": 0, "length": 0, "k examples": 0, "rank": 2, "hours": 2}


def _fmt(v: float, unit: str, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    d = DECIMALS.get(unit, 2)
    return f"{v:+.{d}f}" if signed else f"{v:.{d}f}"


def _cell(rec) -> str:
    return f"{_fmt(rec.paper, rec.unit)} / {_fmt(rec.ours, rec.unit)} / {_fmt(rec.diff, rec.unit, True)}"


def _layout(df: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Header and body of the wide table (strings), one row per printed row."""
    a = df.attrs
    rows = a["rows"]
    show_model = len({r["model"] for r in rows}) > 1
    show_setting = len({r["setting"] for r in rows}) > 1
    head = ["#", "Method"] + (["Model"] if show_model else []) + (["Setting"] if show_setting else [])
    head += ["Run"] + list(a["metric_labels"])
    body = []
    cells = {(rec.row, rec.metric): rec for rec in df.itertuples(index=False)}
    for r in rows:
        line = [str(r["row"]), r["label"]] + ([r["model"]] if show_model else [])
        line += [r["setting"]] if show_setting else []
        line += [r["run"] or "not run"]
        line += [_cell(cells[(r["row"], m)]) for m in a["metrics"]]
        body.append(line)
    return head, body


def _units(df: pd.DataFrame) -> str:
    units = [u for u in dict.fromkeys(df["unit"]) if u]
    return ", ".join(units) or "as printed"


def _header_lines(df: pd.DataFrame) -> list[str]:
    a = df.attrs
    runs = [f"{r['label']} ← {r['run']}" for r in a["rows"] if r["run"]]
    return [
        f"scale: {a['scale'] or 'unstated'}",
        f"protocol: {', '.join(a['protocols']) or 'none (no protocol of ours measures this item)'}",
        f"each cell: paper / ours / diff (ours − paper), in the paper's units ({_units(df)}); – = empty",
        f"runs: {'; '.join(runs) if runs else 'none'}",
    ]


def to_markdown(df: pd.DataFrame) -> str:
    a = df.attrs
    head, body = _layout(df)
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = [f"# {a['item']}: paper vs ours", "", a["caption"], ""]
    lines += [f"- {h}" for h in _header_lines(df)] + [""]
    lines.append("| " + " | ".join(esc(h) for h in head) + " |")
    lines.append("|" + "|".join("---" if j < len(head) - len(a["metrics"]) else "---:" for j in range(len(head))) + "|")
    lines += ["| " + " | ".join(esc(c) for c in line) + " |" for line in body]
    notes = list(a["column_notes"]) + list(a["notes"])
    if notes:
        lines += ["", "Notes:", ""] + [f"{k}. {n}" for k, n in enumerate(notes, 1)]
    return "\n".join(lines) + "\n"


def write_markdown(df: pd.DataFrame, path: str | Path) -> Path:
    return write_markdown_page(path, to_markdown(df))


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """The long form; ours and diff rounded to 6 decimals (float noise only)."""
    out = df.copy()
    out[["ours", "diff"]] = out[["ours", "diff"]].round(6)
    return atomic_write_text(path, out.to_csv(index=False))


_TEX_ESC = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
            "→": r"$\rightarrow$", "←": r"$\leftarrow$", "−": "$-$", "–": "--", "↑": r"$\uparrow$",
            "↓": r"$\downarrow$", "γ": r"$\gamma$", "α": r"$\alpha$", "β": r"$\beta$"}


def tex_escape(text: str) -> str:
    """Escape LaTeX specials; balanced $...$ spans (the labels copied from the paper, e.g.
    ``DFT w/ $\\gamma = 0.8$``) are kept as math."""
    parts = re.split(r"(\$[^$]+\$)", str(text))
    out = []
    for k, part in enumerate(parts):
        if k % 2 == 1:
            out.append(part)
        else:
            out.append("".join(_TEX_ESC.get(ch, ch) for ch in part))
    return "".join(out)


def to_latex(df: pd.DataFrame) -> str:
    a = df.attrs
    head, body = _layout(df)
    n_text = len(head) - len(a["metrics"])
    spec = "l" * n_text + "c" * len(a["metrics"])
    lines = [r"% needs \usepackage{booktabs} and \usepackage{graphicx}",
             r"\begin{table}[t]", r"\centering", r"\scriptsize",
             r"\caption{" + tex_escape(f"{a['item']}: paper / ours / diff (ours − paper). {a['caption']}") + "}",
             r"\label{tab:paper-" + re.sub(r"[^A-Za-z0-9]+", "-", a["item"]) + "}",
             r"\resizebox{\textwidth}{!}{%",
             r"\begin{tabular}{" + spec + "}", r"\toprule",
             " & ".join(tex_escape(h) for h in head) + r" \\", r"\midrule"]
    minus = lambda c: re.sub(r"(?<![\w.])-(?=\d)", "$-$", c)  # noqa: E731
    lines += [" & ".join(minus(tex_escape(c)) for c in line) + r" \\" for line in body]
    lines += [r"\bottomrule", r"\end{tabular}}", r"\par\smallskip\raggedright"]
    notes = _header_lines(df) + list(a["column_notes"]) + list(a["notes"])
    lines.append(" \\\\\n".join(tex_escape(n) for n in notes) + r"\par")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def write_latex(df: pd.DataFrame, path: str | Path) -> Path:
    return atomic_write_text(path, to_latex(df))


# ---------------------------------------------------------------------------- CLI
def main_paper_table(argv=None) -> None:
    p = argparse.ArgumentParser(prog="negfree paper-table",
                                description="one paper item with our values beside the paper's")
    p.add_argument("--item", required=True, help="paper item id, e.g. dft/table2 (negfree.report.paper_numbers)")
    p.add_argument("--evals", nargs="+", required=True,
                   help="tidy CSVs of `negfree eval-csv` and/or evaluation JSONs")
    p.add_argument("--row", action="append", default=[], metavar="LABEL_OR_METHOD=RUN",
                   help="put RUN in this printed row (label, method, #N; qualify with @MODEL or @SETTING); "
                        "repeatable. Default: the run method~X fills the one row whose method is X")
    p.add_argument("--scale", required=True, help="what our runs are, e.g. 'SmolLM2-135M, 6 steps'")
    p.add_argument("--out-md", help="the table as markdown (an HTML page beside it); with no --out-*: printed")
    p.add_argument("--out-csv", help="the table in long form as CSV")
    p.add_argument("--out-tex", help="the table as LaTeX (booktabs)")
    a = p.parse_args(argv)
    df = paper_table(a.item, a.evals, a.row, a.scale)
    written = []
    if a.out_md:
        written.append(write_markdown(df, a.out_md))
    if a.out_csv:
        written.append(write_csv(df, a.out_csv))
    if a.out_tex:
        written.append(write_latex(df, a.out_tex))
    if written:
        print("wrote " + ", ".join(str(w) for w in written))
    else:
        print(to_markdown(df), end="")


if __name__ == "__main__":
    main_paper_table()
