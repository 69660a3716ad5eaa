"""`negfree paper-table`: a paper item with our values beside the paper's.

The evaluation results are fake protocol JSONs built the way ``evaluate_protocol``
builds them (from the real protocol definitions, through ``protocols.summarize``), so
a drift in task or metric names breaks these tests. Every "ours" value here is made
up (round fractions such as 0.60); the paper values come from the transcription.
Offline, pandas only, no model."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import pandas as pd
import pytest

from negfree.evaluate import protocols as P
from negfree.evaluate.aggregate import collect, write_csv
from negfree.report import paper_numbers as pn
from negfree.report import paper_table as T

SCALE = "fake values, tests only"


def protocol_record(protocol: str, values: dict, model: str = "ckpt") -> dict:
    """The record evaluate_protocol writes, for lm-eval results with these task values
    (fractions; None = that call was skipped)."""
    proto = P.PROTOCOLS[protocol]
    unknown = set(values) - set(proto.tasks)
    assert not unknown, f"tasks {unknown} are not in protocol {protocol}"
    by_call, calls = {}, []
    for call in proto.calls:
        if any(values.get(t) is None for t in call.metrics):
            by_call[call.group] = None
            calls.append({"group": call.group, "status": "skipped", "error": "fake: skipped"})
            continue
        res = {"results": {}, "n-samples": {}}
        for task, key in call.metrics.items():
            metric, _, filt = key.partition(",")
            res["results"][task] = {key: values[task], f"{metric}_stderr,{filt}": 0.01}
            res["n-samples"][task] = {"original": 100, "effective": 100}
        by_call[call.group] = res
        calls.append({"group": call.group, "status": "ok", "error": None})
    summary = P.summarize(proto, by_call)
    return {"model": model, "protocol": proto.name, "source": proto.source, "notes": proto.notes,
            "tasks": summary["tasks"], "aggregate": summary["aggregate"], "calls": calls,
            "limit": None, "seed": 1234, "device": "cpu", "batch_size": 8}


def write_run(root, run: str, protocol: str, values: dict):
    path = root / "runs" / "exp" / run / "eval" / f"{protocol}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(protocol_record(protocol, values), indent=2))
    return path


DFT_TASKS = P.PROTOCOLS["openllm_dft"].tasks     # the protocol's own task names
SFT = {"mmlu": 0.60, "truthfulqa_mc2": 0.50, "hellaswag": 0.80, "winogrande": 0.70,
       "gsm8k": 0.40, "arc_challenge": 0.55, "ifeval": 0.45}
DFT = {t: v + 0.01 for t, v in SFT.items()}
DFT_NO_IFEVAL = {**DFT, "ifeval": None}


@pytest.fixture
def dft_evals(tmp_path):
    assert set(SFT) == set(DFT_TASKS)
    jsons = [write_run(tmp_path, "method~sft", "openllm_dft", SFT),
             write_run(tmp_path, "method~dft", "openllm_dft", DFT),
             write_run(tmp_path, "method~dft2", "openllm_dft", DFT_NO_IFEVAL),
             write_run(tmp_path, "method~spin-b4", "openllm_dft", SFT)]
    csv = tmp_path / "evals.csv"
    write_csv(collect(jsons), csv)
    return csv, jsons


def cell(df, label, metric, col="ours"):
    sel = df[(df.label == label) & (df.metric == metric)]
    assert len(sel) == 1
    return sel[col].iloc[0]


# --------------------------------------------------------------------- the map
def test_metric_sources_match_the_protocol_definitions():
    assert T.check_sources() == []
    # every openllm_dft task is mapped once, onto a key of dft Table 2
    keys = pn.info("dft/table2")["metrics"]
    src = {s.task: s.paper_key for s in T.sources_for(["openllm_dft"])}
    assert set(src) == set(DFT_TASKS)
    assert set(src.values()) | {"avg"} == set(keys)
    assert set(T.AVERAGE_RULES[("avg", "openllm_dft")]) == set(keys) - {"avg"}


# ------------------------------------------------------------------ dft/table2
def test_dft_table2_layout_values_and_average(dft_evals):
    csv, _ = dft_evals
    df = T.paper_table("dft/table2", [csv], None, SCALE)
    info = pn.info("dft/table2")
    # column order and row order are the paper's
    assert list(dict.fromkeys(df.metric)) == info["metrics"]
    assert df.attrs["metrics"] == info["metrics"]
    assert [r["label"] for r in df.attrs["rows"]] == [r["label"] for r in info["rows"]]
    assert list(dict.fromkeys(df.label)) == [r["label"] for r in info["rows"]]
    assert len(df) == len(info["rows"]) * len(info["metrics"])
    # default mapping: method~X fills the row whose method is X
    runs = {r["label"]: r["run"] for r in df.attrs["rows"]}
    assert runs["SFT"] == "method~sft" and runs["DFT"] == "method~dft" and runs["DFT2"] == "method~dft2"
    # one hand-computed cell: ours 0.60 acc -> 60.00 %; paper SFT MMLU 62.18; diff -2.18
    assert cell(df, "SFT", "mmlu/acc", "paper") == pytest.approx(62.18)
    assert cell(df, "SFT", "mmlu/acc") == pytest.approx(60.0)
    assert cell(df, "SFT", "mmlu/acc", "diff") == pytest.approx(-2.18)
    assert cell(df, "SFT", "mmlu/acc", "source") == "openllm_dft/mmlu/acc,none"
    # average by hand: (60+50+80+70+40+55+45)/7 = 400/7
    assert cell(df, "SFT", "avg") == pytest.approx(400 / 7)
    assert cell(df, "SFT", "avg", "diff") == pytest.approx(400 / 7 - 61.79)
    assert cell(df, "DFT", "avg") == pytest.approx(407 / 7)
    # DFT2 has no IFEval: its average is left empty, and a note says why
    assert math.isnan(cell(df, "DFT2", "avg"))
    assert cell(df, "DFT2", "avg", "status") == T.MISSING
    assert "ifeval/prompt_level_strict_acc" in cell(df, "DFT2", "avg", "note")
    assert math.isnan(cell(df, "DFT2", "ifeval/prompt_level_strict_acc"))
    assert cell(df, "DFT2", "mmlu/acc") == pytest.approx(61.0)
    # rows without a run: the paper's value, ours empty, "not run"
    kto = df[df.label == "KTO"]
    assert (kto.status == T.NOT_RUN).all() and kto.ours.isna().all() and kto.paper.notna().all()
    assert (kto.note == "not run").all() and (kto.run == "").all()
    # a run that fits no row is listed
    assert any("method~spin-b4" in n for n in df.attrs["notes"])


def test_writers(dft_evals, tmp_path):
    csv, _ = dft_evals
    df = T.paper_table("dft/table2", [csv], {"SPIN": "method~spin-b4"}, "SmolLM2-135M, 6 steps")
    md = T.write_markdown(df, tmp_path / "t.md").read_text()
    assert "scale: SmolLM2-135M, 6 steps" in md
    assert "SFT ← method~sft" in md and "SPIN ← method~spin-b4" in md
    head = next(line for line in md.splitlines() if line.startswith("| #"))
    labels = pn.info("dft/table2")["metric_labels"]
    assert [c.strip() for c in head.strip("|").split("|")][-len(labels):] == labels
    sft = next(line for line in md.splitlines() if line.startswith("| 1 | SFT |"))
    assert "62.18 / 60.00 / -2.18" in sft
    kto = next(line for line in md.splitlines() if "| KTO |" in line)
    assert "not run" in kto and " / – / –" in kto
    assert "Avg." in md and "plain mean" in md

    long = pd.read_csv(T.write_csv(df, tmp_path / "t.csv"))
    assert list(long.columns) == T.LONG_COLUMNS and len(long) == len(df)

    tex = T.write_latex(df, tmp_path / "t.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"\begin{tabular}{" in tex
    body = [line for line in tex.splitlines() if line.endswith(r"\\")]
    ncols = len(pn.info("dft/table2")["metrics"]) + 3          # #, Method, Run
    for line in body[:1 + len(pn.info("dft/table2")["rows"])]:
        assert len(re.findall(r"(?<!\\)&", line)) == ncols - 1, line
    # specials escaped: run names (~), metric keys (_), percent
    assert "method\\textasciitilde{}sft" in tex and "(\\%)" not in tex.replace("\\%", "")
    for line in tex.splitlines():
        if line.startswith("%"):
            continue
        text = re.sub(r"\$[^$]*\$", "", line)           # math spans kept from the paper's labels
        text = re.sub(r"\{%$", "{", text)                 # an intended end-of-line comment
        assert re.search(r"(?<!\\)[%_~^#]", text) is None, line
        if not line.endswith(r" \\") or " & " not in line:
            assert re.search(r"(?<!\\)&", text) is None, line


def test_tex_escape_keeps_paper_math():
    assert T.tex_escape("DFT w/ $\\gamma = 0.8$ & 5% of a_b") == "DFT w/ $\\gamma = 0.8$ \\& 5\\% of a\\_b"
    assert T.tex_escape("SFT → SimPO") == "SFT $\\rightarrow$ SimPO"


def test_explicit_rows_and_json_inputs(dft_evals):
    _, jsons = dft_evals
    df = T.paper_table("dft/table2", jsons, ["SIMPO=method~spin-b4", "#1=method~dft"], SCALE)
    runs = {r["label"]: r["run"] for r in df.attrs["rows"]}
    assert runs["SIMPO"] == "method~spin-b4"
    assert runs["SFT"] == "method~dft"                 # explicit wins
    assert runs["DFT"] == ""                           # method~dft is used: no default
    assert cell(df, "SFT", "mmlu/acc") == pytest.approx(61.0)
    # the same results given twice (CSV and JSON) are read once
    csv, _ = dft_evals
    assert T.paper_table("dft/table2", [csv, *jsons], None, SCALE).equals(
        T.paper_table("dft/table2", [csv], None, SCALE))


def test_other_protocol_never_fills_dft_cells(tmp_path):
    ift = {"arc_challenge": 0.5, "mmlu": 0.5, "truthfulqa_mc2": 0.5, "winogrande": 0.5, "gsm8k": 0.5}
    js = write_run(tmp_path, "method~sft", "openllm_ift", ift)
    df = T.paper_table("dft/table2", [js], None, SCALE)
    assert (df.status == T.NOT_RUN).all()
    with pytest.raises(ValueError, match=r"method~sft.*openllm_dft"):
        T.paper_table("dft/table2", [js], {"SFT": "method~sft"}, SCALE)


# --------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, culprit", [
    ({"item": "dft/table99"}, "dft/table99"),
    ({"item": "dft/fig3"}, "dft/fig3"),                                  # no numbers in the text
    ({"rows": {"NOPE": "method~sft"}}, "NOPE"),                          # unknown row label
    ({"rows": {"SFT": "method~ghost"}}, "method~ghost"),                 # run not in evals
    ({"rows": ["SFT"]}, "SFT"),                                          # not KEY=RUN
    ({"rows": {"#42": "method~sft"}}, "#42"),
    ({"evals": "missing.csv"}, "missing.csv"),
])
def test_bad_input_names_the_culprit(dft_evals, tmp_path, kwargs, culprit):
    csv, _ = dft_evals
    evals = [tmp_path / kwargs["evals"]] if "evals" in kwargs else [csv]
    with pytest.raises(ValueError, match=re.escape(culprit)):
        T.paper_table(kwargs.get("item", "dft/table2"), evals, kwargs.get("rows"), SCALE)


def test_ambiguous_rows(dft_evals):
    csv, _ = dft_evals
    # dft Table 9 prints DFT once per B: a bare label is ambiguous, a qualified one is not
    with pytest.raises(ValueError, match=r"'DFT' matches 3 rows"):
        T.paper_table("dft/table9_fig6", [csv], {"DFT": "method~dft"}, SCALE)
    df = T.paper_table("dft/table9_fig6", [csv], {"DFT@B=4": "method~dft"}, SCALE)
    placed = [r for r in df.attrs["rows"] if r["run"] == "method~dft"]
    assert [(r["label"], r["setting"]) for r in placed] == [("DFT", "B=4")]
    # the default does not guess between the B blocks: a note says so
    df = T.paper_table("dft/table9_fig6", [csv], None, SCALE)
    assert not any(r["run"] == "method~dft" for r in df.attrs["rows"])
    assert any("method~dft could fill 3 rows" in n for n in df.attrs["notes"])


def test_conflicting_values_for_one_run(tmp_path):
    a = write_run(tmp_path / "a", "method~sft", "openllm_dft", SFT)
    b = write_run(tmp_path / "b", "method~sft", "openllm_dft", DFT)
    with pytest.raises(ValueError, match="method~sft"):
        T.paper_table("dft/table2", [a, b], None, SCALE)


# ------------------------------------------------------------ other papers' items
def test_bnf_table4_measured_and_not_measured_columns(tmp_path):
    vals = {"gsm8k_cot_zeroshot": 0.70, "negfree_math_l5_zeroshot": 0.10, "mmlu_redux_generative": 0.50}
    js = write_run(tmp_path, "method~bnf", "bnf_reasoning", vals)
    # BNF is printed in three model blocks: the default places it nowhere, @MODEL does
    df = T.paper_table("bnf/table4", [js], {"BNF@Gemma-2-9b-It": "method~bnf"}, SCALE)
    info = pn.info("bnf/table4")
    assert df.attrs["metrics"] == info["metrics"]
    row = df[(df.run == "method~bnf")]
    assert set(row.model) == {"Gemma-2-9b-It"}
    got = dict(zip(row.metric, row.ours))
    assert got["gsm8k/acc"] == pytest.approx(70.0) and got["math_l5/acc"] == pytest.approx(10.0)
    assert got["mmlu_redux/acc"] == pytest.approx(50.0)
    paper = pn.lookup("bnf/table4", "bnf", "gsm8k/acc", model="Gemma-2-9b-It")
    assert dict(zip(row.metric, row["diff"]))["gsm8k/acc"] == pytest.approx(70.0 - paper)
    status = dict(zip(row.metric, row.status))
    for key in ("wildbench/elo", "crux/acc", "avg_rank"):
        assert status[key] == T.NOT_MEASURED, key
    # the judged columns are measured (negfree judged-eval, tests/test_judged_tables.py): this run has none
    for key in ("wildbench/score", "arena_hard/lc_win_rate", "arena_hard/win_rate"):
        assert status[key] == T.MISSING, key
    notes = "\n".join(df.attrs["column_notes"])
    assert "CRUX" in notes and "not measured" in notes and "Average Rank" in notes
    md = T.to_markdown(df)
    assert "| Model |" in md.replace("| Method | Model |", "| Model |")


def test_ift_table2_alpaca_and_item_without_protocol(tmp_path):
    rec = {"model": "ckpt", "protocol": "alpaca_eval2", "metrics": [
        {"task": "alpaca_eval2", "metric": "win_rate", "value": 12.5, "stderr": 1.0, "n": 805},
        {"task": "alpaca_eval2", "metric": "mean_length_chars", "value": 900.0, "stderr": None, "n": 805}]}
    js = tmp_path / "runs" / "method~ift" / "eval" / "alpaca.json"
    js.parent.mkdir(parents=True)
    js.write_text(json.dumps(rec))
    df = T.paper_table("ift/table2", [js], None, SCALE)
    row = df[df.run == "method~ift"]
    assert list(row.label.unique()) == ["+ IFT"]            # as printed
    got = dict(zip(row.metric, row.ours))
    assert got["alpacaeval2/win_rate"] == pytest.approx(12.5)          # already in percent
    assert math.isnan(got["alpacaeval2/lc_win_rate"])                  # plain win rate only
    status = dict(zip(row.metric, row.status))
    assert status["alpacaeval/win_rate"] == T.MISSING                   # AlpacaEval 1: no alpaca_eval1 result given
    assert status["alpacaeval/lc_win_rate"] == T.NOT_MEASURED           # AlpacaEval 1 defines no LC
    assert any("weighted_alpaca_eval_gpt4_turbo" in n for n in df.attrs["column_notes"])
    # asft Table 2 (Arena-Hard, MT-Bench): the judged protocols' results only; an AlpacaEval one fills nothing
    df = T.paper_table("asft/table2", [js], None, SCALE)
    assert (df.status.isin([T.NOT_RUN, T.NOT_MEASURED])).all() and df.ours.isna().all()
    assert any("without results of arena_hard_v0.1/mt_bench" in n for n in df.attrs["notes"])
    # an item no protocol of ours measures (asft Fig. 2's stated reductions): only the paper's numbers
    df = T.paper_table("asft/fig2", [js], None, SCALE)
    assert df.ours.isna().all() and any("no protocol of ours measures" in n for n in df.attrs["notes"])


# -------------------------------------------------------------------------- CLI
def test_cli(dft_evals, tmp_path):
    csv, _ = dft_evals
    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "negfree.cli", "paper-table", "--item", "dft/table2", "--evals", str(csv),
           "--row", "SPIN=method~spin-b4", "--scale", "SmolLM2-135M, 6 steps",
           "--out-md", str(out) + ".md", "--out-csv", str(out) + ".csv", "--out-tex", str(out) + ".tex"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "SPIN ← method~spin-b4" in (tmp_path / "o.md").read_text()
    assert (tmp_path / "o.csv").exists() and (tmp_path / "o.tex").exists()
    r = subprocess.run(cmd[:5] + ["dft/nope", "--evals", str(csv), "--scale", "x"], capture_output=True, text=True)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1].startswith("negfree paper-table: unknown paper item 'dft/nope'")
