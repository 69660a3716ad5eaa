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

The judged protocols (Arena-Hard v0.1, MT-Bench, WildBench v2: ``negfree judged-eval``, one
``<run>/eval/<arena_hard|mt_bench|wildbench>.json`` of format negfree-judged-result/1 per run)
fill asft Table 2 and bnf Tables 4-6. Their JSON names the judge; the tidy CSV of ``eval-csv``
does not, so the table reads those JSONs themselves (``--evals`` takes both). Every judged cell
names its judge (``[J1]``, listed under the table); a judge other than the paper's
(``PAPER_JUDGES``) is marked ``*``, the offline judge ``†``, and a judged row read from a CSV,
whose judge is not recorded, ``*`` too. Lengths (bnf Table 5) are the answers', no judge's.
asft Table 2 reports MT-Bench with two judges: the same answers are judged by GPT-4
(``eval/mt_bench.json``) and again by GPT-4 Turbo (``eval/mt_bench@gpt-4-1106-preview.json``, an
extra judge of configs/judges.yaml paper_judges); each column takes the result of its paper judge
(``_ours_by_run``), the GPT-4 column failing that the one result of another judge, marked ``*``.

AlpacaEval 1 and 2 (``negfree alpaca-eval``, protocols alpaca_eval1 / alpaca_eval2, one
``<run>/eval/<protocol>.json`` per run) fill ift Table 2 and dft Fig. 5 the same way: the result
JSON names its ``annotator`` (alpaca_eval's annotator config, ``<annotator>@<model>`` when another
model answered through an endpoint), so each cell read from it names it; the paper's is the
protocol's own (``ALPACA_JUDGES``: alpaca_eval_gpt4 for AlpacaEval 1, weighted_alpaca_eval_gpt4_turbo
for AlpacaEval 2), another is marked ``*``, the offline stand-in negfree_local_loglik ``†``, and a
row of a tidy CSV ``*`` (not recorded). AlpacaEval 1 defines no length-controlled win rate, so ift
Table 2's "Alpaca-Eval lc win-rate" column stays empty with that reason. The AlpacaEval 2 plain win
rate of a result whose reported rate is the length-controlled one is its ``leaderboard_row.win_rate``.

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
                "unit", "paper", "ours", "diff", "status", "source", "note", "judge", "paper_judge", "judge_tag"]

OK, NOT_RUN, NOT_MEASURED, MISSING = "ok", "not run", "not measured", "missing"


# ----------------------------------------------------------------- the metric map
@dataclass(frozen=True)
class Source:
    """Our result row (protocol, task, metric) that gives a paper metric key.

    ``protocol`` and ``task`` may be fnmatch patterns (textsim protocols are named
    ``textsim_<dataset>``). ``factor`` converts our value to the paper's unit.
    ``judged``: the judged protocol whose result file (``<run>/eval/<judged>.json``) holds the
    value; ``judge_free``: the value is no judge's (an answer length), whoever judged the file."""
    paper_key: str
    protocol: str
    task: str
    metric: str
    factor: float
    note: str = ""
    judged: str = ""
    judge_free: bool = False


PCT = 100.0   # lm-eval fraction -> the paper's percent
JUDGED_FORMAT = "negfree-judged-result/1"
# a row the table adds when it reads a WildBench result JSON: output_length.leaderboard_mean_chars
LEADERBOARD_LENGTH = "leaderboard_mean_length_chars"

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
    # AlpacaEval 1 and 2 (negfree alpaca-eval): alpaca_eval reports win rates in percent. The
    # annotator is in the result JSON (read it: load_evals), not in the tidy CSV of eval-csv.
    # ift.txt Table 2 "Alpaca-Eval win-rate" (AlpacaEval 1 defines no LC: NOT_MEASURED_WHY)
    Source("alpacaeval/win_rate", "alpaca_eval1", "alpaca_eval1", "win_rate", 1.0,
           "AlpacaEval 1 is comparable to the paper only with alpaca_eval_gpt4 (GPT-4) against "
           "text_davinci_003's outputs on the 805 instructions; a row of a tidy CSV does not record the annotator "
           "(pass the run's alpaca_eval1.json)"),
    # ift.txt Table 2 "Alpaca-Eval-2 win-rate / lc win-rate"; dft.txt Fig. 2a, 5b, 6 (LC) and 5a (length)
    Source("alpacaeval2/win_rate", "alpaca_eval2", "alpaca_eval2", "win_rate", 1.0,
           "AlpacaEval 2 is comparable to the paper only with the weighted_alpaca_eval_gpt4_turbo "
           "annotator against gpt4_1106_preview's outputs on the 805 instructions; a row of a tidy CSV does not "
           "record the annotator (pass the run's alpaca_eval2.json: annotator, win_rate_kind)"),
    Source("alpacaeval2/lc_win_rate", "alpaca_eval2", "alpaca_eval2", "lc_win_rate", 1.0,
           "AlpacaEval 2 is comparable to the paper only with the weighted_alpaca_eval_gpt4_turbo "
           "annotator against gpt4_1106_preview's outputs on the 805 instructions; a row of a tidy CSV does not "
           "record the annotator (pass the run's alpaca_eval2.json: annotator, win_rate_kind)"),
    Source("alpacaeval2/avg_length", "alpaca_eval2", "alpaca_eval2", "mean_length_chars", 1.0,
           "AlpacaEval 2 length: [ours] the mean characters of the answers, AlpacaEval's avg_length; dft.txt "
           "states no unit for its lengths; no judge", judge_free=True),
    # asft.txt Table 3 (negfree textsim): already 0-100
    Source("bleu4", "textsim_*", "*", "bleu4", 1.0,
           "asft BLEU/ROUGE: the paper's test set is alpaca_en (asft.txt 5.1); ours is the "
           "dataset named in the protocol (textsim_<dataset>)"),
    Source("rouge1", "textsim_*", "*", "rouge1", 1.0),
    Source("rouge2", "textsim_*", "*", "rouge2", 1.0),
    Source("rougeL", "textsim_*", "*", "rougeL", 1.0),
    # The judged protocols (negfree judged-eval; its metrics rows, in percent / points already).
    # asft.txt Table 2: Arena-Hard v0.1 win rate; MT-Bench, the GPT-4 judge's column
    Source("arena_hard/win_rate", "arena_hard_v0.1", "arena_hard_v0.1", "win_rate", 1.0, judged="arena_hard"),
    Source("mt_bench/score_gpt4", "mt_bench", "mt_bench", "score", 1.0,
           "MT-Bench: single-answer grading, the mean of both turns' ratings over the 80 questions (FastChat)",
           judged="mt_bench"),
    # the GPT-4 Turbo column: the same answers judged again (configs/judges.yaml paper_judges.asft.mt_bench
    # lists gpt-4, then gpt-4-1106-preview: eval/mt_bench@gpt-4-1106-preview.json). Two sources of one
    # (protocol, task, metric): each takes the result of its paper judge (_ours_by_run, ``extra_judged``)
    Source("mt_bench/score_gpt4_turbo", "mt_bench", "mt_bench", "score", 1.0,
           "MT-Bench GPT-4 Turbo: the same answers judged again by the second judge", judged="mt_bench"),
    # bnf.txt Tables 4 and 6: Arena-Hard LC (and WR above), WildBench v2 WB-Score (task macro)
    Source("arena_hard/lc_win_rate", "arena_hard_v0.1", "arena_hard_v0.1", "lc_win_rate", 1.0,
           "Arena-Hard LC: [ours] the length covariate in characters of both answers (the benchmark counts "
           "tiktoken tokens) and standardised over this model's battles alone (the benchmark: over every model "
           "in its judgment folder); see the result's lc_win_rate.length_unit_note",
           judged="arena_hard"),
    Source("wildbench/score", "wildbench_v2", "wildbench_v2", "wb_score_task_macro", 1.0,
           "Wild-Bench Score: WildBench v2 WB-Score, the leaderboard's WB_score.task_macro", judged="wildbench"),
    # bnf.txt Table 5: mean answer lengths. WB: WildBench's leaderboard Length, characters of the
    # answers, truncated and empty ones left out (aggregate.wildbench_score; the paper's base rows are
    # that column); AH: Arena-Hard's length is tokens (tiktoken, gpt-3.5-turbo encoding)
    Source("wildbench/avg_length", "wildbench_v2", "wildbench_v2", LEADERBOARD_LENGTH, 1.0,
           "WB length: characters of the answers, truncated and empty ones left out, as WildBench's leaderboard "
           "Length (the paper's base rows are that column); no judge", judged="wildbench", judge_free=True),
    Source("arena_hard/avg_length", "arena_hard_v0.1", "arena_hard_v0.1", "mean_length_tokens", 1.0,
           "AH length: tokens, but of the model's own tokenizer (the answer file's n_tokens): Arena-Hard counts "
           "tiktoken tokens (gpt-3.5-turbo encoding), so ours is the paper's unit with another tokenizer "
           "(a smaller vocabulary, such as Mistral's, counts more tokens); no judge",
           judged="arena_hard", judge_free=True),
)

# item id -> the protocols whose results may fill its cells
_OPENLLM_DFT_ITEMS = ("dft/table2", "dft/table3", "dft/table4", "dft/table8_fig2b", "dft/table9_fig6",
                      "dft/table10_table11", "dft/table12", "dft/fig7")
ITEM_PROTOCOLS: dict[str, tuple[str, ...]] = {
    **{i: ("openllm_dft",) for i in _OPENLLM_DFT_ITEMS},
    "dft/table1": ("math_zeroshot",),
    "dft/fig2a_fig5": ("alpaca_eval2",),
    "ift/table2": ("alpaca_eval1", "alpaca_eval2"),
    "ift/table3": ("openllm_ift",),
    "bnf/table4": ("bnf_reasoning", "arena_hard_v0.1", "wildbench_v2"),
    "bnf/table5": ("wildbench_v2", "arena_hard_v0.1"),
    "bnf/table6": ("bnf_reasoning", "arena_hard_v0.1", "wildbench_v2"),
    "asft/table2": ("arena_hard_v0.1", "mt_bench"),
    "asft/table3": ("textsim_*",),
}

# (paper, paper key) -> the judge model the paper used for that column. Kept equal to
# configs/judges.yaml paper_judges (tests/test_judged_tables.py), which the DAG's default judge asks.
PAPER_JUDGES: dict[tuple[str, str], str] = {
    ("asft", "arena_hard/win_rate"): "gpt-4-1106-preview",   # asft.txt Table 1-2: GPT-4 Turbo
    ("asft", "mt_bench/score_gpt4"): "gpt-4",                # the GPT-4 column (FastChat's default judge)
    ("asft", "mt_bench/score_gpt4_turbo"): "gpt-4-1106-preview",
    ("bnf", "arena_hard/win_rate"): "gpt-4o-mini",           # bnf.txt Sec. 4 and footnote 2
    ("bnf", "arena_hard/lc_win_rate"): "gpt-4o-mini",
    ("bnf", "wildbench/score"): "gpt-4o-2024-05-13",         # "GPT-4o"; (05-13) in its Table 1
    ("bnf", "wildbench/elo"): "gpt-4o-2024-05-13",
}
# AlpacaEval protocol -> the annotator (alpaca_eval's annotator config) its paper numbers come from: each
# protocol's own judge (negfree/evaluate/alpaca.py OFFICIAL). ift.txt Table 2 and dft.txt Fig. 2a/5/6 say
# "judged by GPT-4" / "GPT4-as-a-judge on AlpacaEval2": AlpacaEval 1's judge is alpaca_eval_gpt4 (gpt-4),
# AlpacaEval 2's weighted_alpaca_eval_gpt4_turbo (gpt-4-1106-preview). Kept equal to alpaca.OFFICIAL
# (tests/test_alpaca_tables.py).
ALPACA_JUDGES: dict[str, str] = {"alpaca_eval1": "alpaca_eval_gpt4", "alpaca_eval2": "weighted_alpaca_eval_gpt4_turbo"}
ALPACA_JUDGE_NAMES = {"alpaca_eval1": "AlpacaEval 1's GPT-4 judge", "alpaca_eval2": "AlpacaEval 2's GPT-4 Turbo judge"}
ALPACA_STAND_IN = "negfree_local_loglik"     # alpaca.LOCAL_ANNOTATOR: the offline stand-in, not AlpacaEval's judge
ALPACA_SET_SIZE = 805                        # alpaca.FULL_SET_SIZE
PAPER, OTHER, OFFLINE, UNKNOWN = "paper's judge", "other judge", "offline judge", "judge not recorded"
MARKS = {PAPER: "", OTHER: "*", OFFLINE: "†", UNKNOWN: "*"}


def alpaca_source(key: str, protocols: Iterable[str] | None = None) -> Source | None:
    """The AlpacaEval source of a paper key (None: no AlpacaEval protocol's), among ``protocols`` if given."""
    return next((s for s in METRIC_SOURCES if s.paper_key == key and s.protocol in ALPACA_JUDGES
                 and (protocols is None or s.protocol in tuple(protocols))), None)


def paper_judge(paper_or_item: str | None, key: str) -> str | None:
    """The judge the paper used for a paper metric key (None: no judged column of that paper). An
    AlpacaEval key's is its protocol's own annotator (ALPACA_JUDGES), a length's none."""
    got = PAPER_JUDGES.get(((paper_or_item or "").split("/")[0], key))
    src = alpaca_source(key) if got is None else None
    return ALPACA_JUDGES[src.protocol] if src is not None and not src.judge_free else got


def judged_source(key: str) -> Source | None:
    """The judged protocol's source of a paper key (None: not a judged protocol's result)."""
    return next((s for s in METRIC_SOURCES if s.paper_key == key and s.judged), None)


# An extra judge's result: the same answers judged again by another model, ``<run>/eval/<protocol>@<model>.json``
# (negfree.jobs.judged.EXTRA_SEP; configs/judges.yaml paper_judges lists several models for the protocol)
EXTRA_JUDGE_SEP = "@"


def _shared(src: Source) -> list[Source]:
    """The judged sources that read the same (protocol, task, metric) as ``src``, in METRIC_SOURCES' order: more
    than one where the paper reports a benchmark with several judges (MT-Bench's GPT-4 and GPT-4 Turbo)."""
    return [s for s in METRIC_SOURCES if s.judged and not s.judge_free
            and (s.protocol, s.task, s.metric) == (src.protocol, src.task, src.metric)]


def extra_judged(paper_or_item: str | None, key: str) -> str | None:
    """"<protocol>@<model>" where a paper key's value is an extra judge's (a judged source that is not the first
    of the ones reading its protocol's metric: its paper judge judged the same answers again), else None."""
    src = judged_source(key)
    pj = paper_judge(paper_or_item, key)
    if src is None or src.judge_free or pj is None or _shared(src).index(src) == 0:
        return None
    return f"{src.judged}{EXTRA_JUDGE_SEP}{pj}"


def item_annotated(item: str) -> list[str]:
    """The AlpacaEval protocols (alpaca_eval1, alpaca_eval2) a paper item reads: their
    ``<run>/eval/<protocol>.json`` name the annotator, which the tidy CSV of eval-csv does not, so a
    table given them names each cell's judge."""
    iid = paper_numbers.resolve(item)[0] if item in paper_numbers.aliases() else item
    return [p for p in ALPACA_JUDGES if p in ITEM_PROTOCOLS.get(iid, ())]


def item_judged(item: str) -> list[str]:
    """The judged protocols (arena_hard, mt_bench, wildbench) whose result files a paper item reads:
    the workflow passes those ``<run>/eval/<judged>.json`` to ``negfree paper-table``."""
    iid = paper_numbers.resolve(item)[0] if item in paper_numbers.aliases() else item
    pats = ITEM_PROTOCOLS.get(iid, ())
    return list(dict.fromkeys(s.judged for s in METRIC_SOURCES if s.judged and s.protocol in pats))


def judge_status(judge: str | None, offline: bool, paper: str | None) -> tuple[str, str]:
    """(status, note) of one judged number: PAPER, OTHER, OFFLINE or UNKNOWN, and a sentence that
    names the judge used and the paper's."""
    want = paper or "not stated"
    if offline and judge == ALPACA_STAND_IN:
        return OFFLINE, (f"OFFLINE STAND-IN {judge} (not AlpacaEval's judge: it prefers the answer with the higher "
                         f"mean log-probability under a local model): judge differs from the paper's ({judge} vs "
                         f"{want}); the number says nothing about quality as AlpacaEval's judge rates it")
    if offline:
        return OFFLINE, (f"OFFLINE judge {judge or 'negfree_offline_judge'} (a hash of the request, not a model): "
                         f"judge differs from the paper's ({judge or 'negfree_offline_judge'} vs {want}); "
                         "the number says nothing about quality")
    if not judge:
        return UNKNOWN, (f"judge not recorded (a tidy CSV row: pass the result JSON): cannot say it is the "
                         f"paper's ({want})")
    if paper is not None and judge == paper:
        return PAPER, f"the paper's judge ({paper})"
    return OTHER, f"judge differs from the paper's ({judge} vs {want})"


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


def _wb_elo_why() -> str:
    from negfree.evaluate.judge.aggregate import wildbench_elo

    return wildbench_elo()["reason"]


# why a paper key is not measured (shown in the notes; keys may be fnmatch patterns; the first match wins)
NOT_MEASURED_WHY: dict[str, str] = {
    "avg_rank": "the average rank is over the paper's 8 columns and its block of methods; two of them, "
                "Wild-Bench Elo and CRUX, are not measured (negfree.evaluate.protocols.average_rank ranks our "
                "runs among themselves)",
    "crux/acc": "CRUX is not run: a maintained sandboxed harness for executing CRUX's code was not wired "
                "(ZeroEval's CRUX, the paper's, runs model-generated code; lm-eval's cruxeval too, and samples "
                "at T=0.2)",
    "wildbench/elo": "not computable from one model's results: " + _wb_elo_why(),
    "alpacaeval/lc_win_rate": "AlpacaEval 1 defines no length-controlled win rate (length control is AlpacaEval "
                              "2's: its GLM was fitted with AlpacaEval 2's judge and baseline), and ift.txt does "
                              "not say how it computed this column; not computed (the alpaca_eval1 result's "
                              "lc_reason)",
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
JUDGE_COLUMNS = ("judge", "judge_name", "judge_offline")
NOTE_COLUMN = "result_note"      # what a result's own fields say against the paper's protocol (AlpacaEval)


def judged_rows(path: str | Path, record: dict | None = None) -> list[dict]:
    """The tidy rows of one judged result (negfree judged-eval, format negfree-judged-result/1), each
    with its judge: ``judge`` (the model asked), ``judge_name`` (backend:model) and ``judge_offline``.
    The run is the one the result names (``--run``: the run id, nested sweeps included). A WildBench
    result adds LEADERBOARD_LENGTH, its leaderboard Length (``output_length.leaderboard_mean_chars``)."""
    from negfree.evaluate.aggregate import rows_from_record, run_name

    path = Path(path)
    if record is None:
        import json

        record = json.loads(path.read_text())
    if record.get("format") != JUDGED_FORMAT:
        raise ValueError(f"{path}: not a result of negfree judged-eval (format {JUDGED_FORMAT})")
    run = str(record.get("run") or run_name(path))
    rows = rows_from_record(record, run)
    length = (record.get("output_length") or {}).get("leaderboard_mean_chars")
    if length is not None:
        rows.append({"run": run, "protocol": record.get("protocol", ""), "task": record.get("protocol", ""),
                     "metric": LEADERBOARD_LENGTH, "value": length, "stderr": None,
                     "n": (record.get("output_length") or {}).get("n")})
    judge = record.get("judge") or {}
    offline = bool(record.get("judge_is_offline") or judge.get("offline"))
    for r in rows:
        r.update(judge=str(judge.get("model") or ""), judge_name=str(judge.get("name") or ""), judge_offline=offline)
    return rows


def _alpaca_run(path: Path, record: dict) -> str:
    """The run of an AlpacaEval result: its ``run`` if it has one, else the run directory under
    ``runs/<experiment>/`` (the DAG's results/runs/<exp>/<run>/eval/, nested runs included), else the
    folder above ``eval/``."""
    from negfree.evaluate.aggregate import run_name

    if record.get("run"):
        return str(record["run"])
    parts = Path(path).parts
    if len(parts) > 2 and parts[-2] == "eval" and "runs" in parts[:-2]:
        at = len(parts) - 1 - parts[::-1].index("runs")
        inner = parts[at + 2:-2]
        if inner:
            return "/".join(inner)
    return run_name(path)


def alpaca_result_note(record: dict) -> str:
    """Where an AlpacaEval result is not the paper's measurement apart from its judge (empty: nowhere):
    a subset or another instruction set, another reference, a length-controlled rate not defined."""
    protocol = record.get("protocol", "")
    out = []
    n = record.get("n")
    if record.get("limit") or (n is not None and n != ALPACA_SET_SIZE):
        out.append(f"judged {n} instructions, not AlpacaEval's {ALPACA_SET_SIZE}")
    elif record.get("instructions_are_alpaca_eval_set") is False:
        out.append(f"{n} instructions, not AlpacaEval's set in its order")
    if record.get("reference_is_protocols") is False:
        out.append(f"against {record.get('reference_generator')}'s outputs, not the protocol's reference")
    if protocol == "alpaca_eval2" and record.get("win_rate_kind") == "plain":
        out.append(f"no LC win rate: {record.get('lc_reason') or 'not defined here'}")
    return "; ".join(out)


def alpaca_rows(path: str | Path, record: dict) -> list[dict]:
    """The tidy rows of one AlpacaEval result (negfree alpaca-eval) with its annotator: ``judge`` (the
    result's ``annotator``), ``judge_name`` (the model it asked), ``judge_offline`` (the stand-in), and
    ``result_note`` (alpaca_result_note). Where the reported rate is the length-controlled one, the
    plain win rate (its ``leaderboard_row.win_rate``) is added as metric ``win_rate``."""
    from negfree.evaluate.aggregate import rows_from_record

    run = _alpaca_run(Path(path), record)
    rows = rows_from_record(record, run)
    protocol = record.get("protocol", "")
    plain = (record.get("leaderboard_row") or {}).get("win_rate")
    if record.get("win_rate_kind") == "length_controlled" and plain is not None \
            and not any(r["metric"] == "win_rate" for r in rows):
        rows.append({"run": run, "protocol": protocol, "task": protocol, "metric": "win_rate", "value": plain,
                     "stderr": (record.get("leaderboard_row") or {}).get("standard_error"), "n": record.get("n")})
    annotator = str(record.get("annotator") or "")
    model = record.get("judge_model")
    note = alpaca_result_note(record)
    for r in rows:
        r.update(judge=annotator, judge_name=str(model or "") if model and str(model) != annotator else "",
                 judge_offline=annotator == ALPACA_STAND_IN, result_note=note)
    return rows


def load_evals(evals) -> pd.DataFrame:
    """Tidy evaluation rows from CSVs of ``negfree eval-csv`` and/or evaluation JSONs
    (collected with ``aggregate.collect``; a judged result with its judge, ``judged_rows``), or
    from rows / a DataFrame given directly. Columns EVAL_COLUMNS and JUDGE_COLUMNS (empty judge:
    not recorded, as in a CSV)."""
    import json

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
                try:
                    record = json.loads(path.read_text())
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}: not valid JSON ({e})") from None
                if isinstance(record, dict) and record.get("format") == JUDGED_FORMAT:
                    frames.append(pd.DataFrame(judged_rows(path, record), columns=list(EVAL_COLUMNS + JUDGE_COLUMNS)))
                elif isinstance(record, dict) and record.get("protocol") in ALPACA_JUDGES:
                    frames.append(pd.DataFrame(alpaca_rows(path, record),
                                               columns=list(EVAL_COLUMNS + JUDGE_COLUMNS) + [NOTE_COLUMN]))
                else:
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
        return pd.DataFrame({c: pd.Series(dtype=object) for c in EVAL_COLUMNS + JUDGE_COLUMNS})
    df = pd.concat(frames, ignore_index=True)
    missing = [c for c in ("run", "protocol", "task", "metric", "value") if c not in df.columns]
    if missing:
        raise ValueError(f"evaluation rows lack the columns {', '.join(missing)}")
    for c in ("run", "protocol", "task", "metric"):
        df[c] = df[c].astype(str)
    df["value"] = pd.to_numeric(df["value"], errors="coerce").astype(float)
    for c in ("judge", "judge_name", NOTE_COLUMN):
        df[c] = df[c].fillna("").astype(str) if c in df.columns else ""
    df["judge_offline"] = df["judge_offline"].fillna(False).astype(bool) if "judge_offline" in df.columns else False
    # the same result read twice (a CSV and its JSON) is fine, the JSON's judge kept; two different
    # values are not, unless two judges gave them (the same answers judged again by an extra judge)
    key = ["run", "protocol", "task", "metric"]
    df = df.iloc[(df["judge"] == "").argsort(kind="stable")]
    df = df.drop_duplicates(subset=key + ["value"])
    dup = df[df.duplicated(subset=key, keep=False)]
    for _, g in dup.groupby(key, sort=False):
        if (g["judge"] == "").any() or g["judge"].duplicated().any():
            r = g.iloc[0]
            raise ValueError(f"run {r.run!r} has {len(g)} different values for {r.protocol}/{r.task}/{r.metric}: "
                             f"results of two runs with the same name? name them apart (eval-csv --runs)")
    return df.reset_index(drop=True)


def _ours_by_run(evals: pd.DataFrame, protocols: tuple[str, ...],
                 paper: str | None = None) -> dict[str, dict[str, tuple]]:
    """run -> paper key -> (value in the paper's unit (NaN: no value), source, note, judge, result
    note), the judge (model, backend:model, offline) for a judged or AlpacaEval source (None
    otherwise, and for lengths); the result note: what the result says against the paper's protocol.

    Where several judged sources read one (protocol, task, metric) (``_shared``: a benchmark the paper
    reports with several judges), each takes the row of its paper judge (PAPER_JUDGES of ``paper``);
    the first of them, failing that, the one row of a judge that is none of theirs (today's one-judge
    result, marked as another judge's), the others nothing."""
    srcs = sources_for(protocols)
    out: dict[str, dict] = {}
    fallback: dict[tuple[str, Source], list] = {}
    if "judge" not in evals.columns:
        evals = evals.assign(judge="", judge_name="", judge_offline=False)
    if NOTE_COLUMN not in evals.columns:
        evals = evals.assign(**{NOTE_COLUMN: ""})
    for r in evals.itertuples(index=False):
        for s in srcs:
            if (fnmatch.fnmatchcase(r.protocol, s.protocol) and fnmatch.fnmatchcase(r.task, s.task)
                    and r.metric == s.metric):
                shared = _shared(s)
                if len(shared) > 1:
                    wanted = [paper_judge(paper, x.paper_key) for x in shared]
                    if r.judge != paper_judge(paper, s.paper_key):
                        if s is shared[0] and r.judge not in wanted:
                            fallback.setdefault((r.run, s), []).append(r)
                        continue
                got = out.setdefault(r.run, {})
                where = f"{r.protocol}/{r.task}/{r.metric}"
                if s.paper_key in got:
                    raise ValueError(f"run {r.run!r}: both {got[s.paper_key][1]} and {where} map onto "
                                     f"{s.paper_key}: pass the results of one of them only")
                v = float(r.value) * s.factor if r.value is not None and not math.isnan(r.value) else math.nan
                judged = s.judged or s.protocol in ALPACA_JUDGES
                judge = (r.judge, r.judge_name, bool(r.judge_offline)) if judged and not s.judge_free else None
                got[s.paper_key] = (v, where, s.note, judge, getattr(r, NOTE_COLUMN) or "")
    for (run, s), rows in fallback.items():
        if s.paper_key in out.get(run, {}):
            continue
        if len(rows) > 1:
            raise ValueError(f"run {run!r}: {len(rows)} results of {s.protocol}/{s.task}/{s.metric}, by "
                             f"{', '.join(r.judge or 'an unrecorded judge' for r in rows)}, none by the paper's "
                             f"judge of {s.paper_key} ({paper_judge(paper, s.paper_key)}): pass one of them only")
        r = rows[0]
        v = float(r.value) * s.factor if r.value is not None and not math.isnan(r.value) else math.nan
        out.setdefault(run, {})[s.paper_key] = (v, f"{r.protocol}/{r.task}/{r.metric}", s.note,
                                                (r.judge, r.judge_name, bool(r.judge_offline)),
                                                getattr(r, NOTE_COLUMN) or "")
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
    ours = _ours_by_run(ev, protocols, iid)
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
        elif alpaca_source(key, protocols) is not None and paper_judge(iid, key):
            src = alpaca_source(key, protocols)
            col_notes[key] = (f"{label}: judged by alpaca_eval's annotator (negfree alpaca-eval, protocol "
                              f"{src.protocol}); the paper's is {paper_judge(iid, key)} "
                              f"({ALPACA_JUDGE_NAMES[src.protocol]}); each cell names the annotator that gave ours")
        elif paper_judge(iid, key):
            col_notes[key] = (f"{label}: judged by an LLM (negfree judged-eval); the paper's judge is "
                              f"{paper_judge(iid, key)}; each cell names the judge that gave ours")
    for s in sources_for(protocols):
        if s.note and s.paper_key in metrics:
            col_notes.setdefault(f"src:{s.note}", s.note)
    judges: dict[tuple, str] = {}      # (judge, backend:model, offline, paper's) -> tag
    judge_lines: list[str] = []
    judge_cols: dict[str, list[str]] = {}

    def judge_tag(key: str, label: str, judge: tuple) -> tuple[str, str, str]:
        """(tag, paper's judge, note) of one judged cell; the tag is listed under the table."""
        model, name, offline = judge
        pj = paper_judge(iid, key)
        status, why = judge_status(model, offline, pj)
        k = (model, name, offline, pj)
        if k not in judges:
            judges[k] = f"J{len(judges) + 1}{MARKS[status]}"
            used = (f"{model} ({name})" if name and name != model else model) or "not recorded"
            judge_lines.append(f"{judges[k]}: {used}: {why}")
        judge_cols.setdefault(judges[k], [])
        if label not in judge_cols[judges[k]]:
            judge_cols[judges[k]].append(label)
        return judges[k], pj or "", why

    def paper_cell(r: dict, key: str) -> tuple[float, str]:
        sel = paper[(paper.model == r["model"]) & (paper.setting == r["setting"])
                    & (paper.method == r["method"]) & (paper.metric == key)]
        if len(sel) == 0:
            return math.nan, ""
        return float(sel.value.iloc[0]), str(sel.unit.iloc[0])

    out = []
    result_notes: dict[str, None] = {}     # "run: what its result says against the paper's protocol", once each
    for i, r in enumerate(rows):
        run = mapping.get(i)
        have = ours.get(run, {}) if run else {}
        for key, label in zip(metrics, labels):
            p, unit = paper_cell(r, key)
            rec = {"item": item, "row": i + 1, "label": _row_label(rows, i), "model": r["model"],
                   "setting": r["setting"], "method": r["method"], "run": run or "", "metric": key,
                   "metric_label": label, "unit": unit, "paper": p, "ours": math.nan, "source": "", "note": "",
                   "judge": "", "paper_judge": paper_judge(iid, key) or "", "judge_tag": ""}
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
            elif key not in have and extra_judged(iid, key):
                extra = extra_judged(iid, key)
                pj = paper_judge(iid, key)
                why = (f"no result of {run} judged by {pj} (eval/{extra}.json: the same answers judged again, "
                       f"configs/judges.yaml paper_judges lists {pj} after {extra.split(EXTRA_JUDGE_SEP)[0]}'s own "
                       f"judge; a served judge, an endpoint with a fixed model and the offline judge ask no "
                       f"extra judge)")
                rec.update(status=MISSING, note=why)
                notes.append(f"{_describe(rows, i)}, {label}: left empty, {why}")
            elif key not in have or math.isnan(have[key][0]):
                where = have[key][1] if key in have else "its task"
                rec.update(status=MISSING, source=have[key][1] if key in have else "",
                           note=f"{run} has no value for {where} (call failed, skipped, or not run)")
                notes.append(f"{_describe(rows, i)}, {label}: {run} has no value for {where}")
                for said in dict.fromkeys(v[4] for v in have.values() if v[4]):
                    result_notes[f"{run}: {said}"] = None
            else:
                rec.update(status=OK, ours=have[key][0], source=have[key][1])
                if have[key][3] is not None:
                    tag, pj, why = judge_tag(key, label, have[key][3])
                    rec.update(judge=have[key][3][0] or "not recorded", judge_tag=tag, note=why)
                if have[key][4]:
                    rec["note"] = "; ".join(x for x in (rec["note"], have[key][4]) if x)
                    result_notes[f"{run}: {have[key][4]}"] = None
            rec["diff"] = rec["ours"] - rec["paper"] if not (math.isnan(rec["ours"]) or math.isnan(p)) else math.nan
            out.append(rec)
    notes += list(result_notes)
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
        judges=[f"{line} ({', '.join(judge_cols[line.split(':', 1)[0]])})" for line in judge_lines],
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
    tag = f" [{rec.judge_tag}]" if getattr(rec, "judge_tag", "") else ""
    return f"{_fmt(rec.paper, rec.unit)} / {_fmt(rec.ours, rec.unit)}{tag} / {_fmt(rec.diff, rec.unit, True)}"


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
    lines = [
        f"scale: {a['scale'] or 'unstated'}",
        f"protocol: {', '.join(a['protocols']) or 'none (no protocol of ours measures this item)'}",
        f"each cell: paper / ours / diff (ours − paper), in the paper's units ({_units(df)}); – = empty",
        f"runs: {'; '.join(runs) if runs else 'none'}",
    ]
    if a.get("judges"):
        lines.append("judged cells: [Jn] names the judge that gave ours (Judges, below); * = not the paper's "
                     "judge (or not recorded), † = the offline judge: compare those numbers with the paper's only "
                     "as a different measurement")
    return lines


def to_markdown(df: pd.DataFrame) -> str:
    a = df.attrs
    head, body = _layout(df)
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = [f"# {a['item']}: paper vs ours", "", a["caption"], ""]
    lines += [f"- {h}" for h in _header_lines(df)] + [""]
    lines.append("| " + " | ".join(esc(h) for h in head) + " |")
    lines.append("|" + "|".join("---" if j < len(head) - len(a["metrics"]) else "---:" for j in range(len(head))) + "|")
    lines += ["| " + " | ".join(esc(c) for c in line) + " |" for line in body]
    if a.get("judges"):
        lines += ["", "Judges:", ""] + [f"- {esc(j)}" for j in a["judges"]]
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
            "↓": r"$\downarrow$", "γ": r"$\gamma$", "α": r"$\alpha$", "β": r"$\beta$",
            "†": r"\dag{}"}


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
    notes = _header_lines(df) + [f"Judge {j}" for j in a.get("judges") or []] + list(a["column_notes"]) \
        + list(a["notes"])
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
                   help="tidy CSVs of `negfree eval-csv` and/or evaluation JSONs; the judged protocols' result "
                        "JSONs (negfree judged-eval) directly, so that each judged cell names its judge")
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
