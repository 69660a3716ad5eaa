"""AlpacaEval 1 and 2 in the paper tables, the targets index and the claims ledger.

Hand-made results of ``negfree alpaca-eval`` (the result JSON with the fields the command writes,
its annotations.json and outputs.json), annotated by each protocol's own judge (alpaca_eval_gpt4 for
AlpacaEval 1, weighted_alpaca_eval_gpt4_turbo for AlpacaEval 2), by another model behind the
annotator (``<annotator>@<model>``) or by the offline stand-in negfree_local_loglik. Checked: which
cell of ift Table 2 and dft Fig. 5 each fills and how its annotator is marked (AlpacaEval 1's LC
column stays empty with its reason), that configs/targets.yaml lists those items as buildable with
their remaining gaps checked, and the ledger's rule: an AlpacaEval claim is never reproduced under
another annotator than the protocol's own, and not checkable with the offline stand-in. Offline, no
model, no judge."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from negfree.evaluate.aggregate import collect, write_csv
from negfree.report import paper_numbers as pn
from negfree.report import paper_table as T
from negfree.report.claims import INCONCLUSIVE, NOT_CHECKABLE, REPRODUCED, TEST_ITEMS, claims_ledger

ROOT = Path(__file__).resolve().parents[1]
SCALE = "fake AlpacaEval results, tests only"
AE1, AE2 = "alpaca_eval_gpt4", "weighted_alpaca_eval_gpt4_turbo"
STAND_IN = "negfree_local_loglik"
OTHER_MODEL = "Qwen/Qwen2.5-72B-Instruct"
AE1_NO_LC = "AlpacaEval 1 defines no length-controlled win rate (length control is AlpacaEval 2's): the plain win " \
            "rate is its number"
JUDGE_MODELS = {AE1: "gpt-4", AE2: "gpt-4-1106-preview"}


# ------------------------------------------------------------------------------ fake results
def write_alpaca(run_dir: Path, protocol: str, annotator: str, prefs, lengths, *, lc: float | None = None,
                 lc_se: float = 0.5, limit: int | None = None) -> Path:
    """<run_dir>/eval/<protocol>.json as negfree alpaca-eval writes it. ``annotator``: an official one, its
    ``@<model>`` form (another model through an endpoint) or the stand-in. ``prefs``: alpaca_eval's
    preference per instruction (1 reference, 2 model; continuous for the weighted annotator); ``lc``:
    the length-controlled win rate (AlpacaEval 2 on the full set), None: the plain rate is reported."""
    out = run_dir / "eval" / f"{protocol}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    prefs = np.asarray(prefs, dtype=float)
    n = len(prefs)
    ids = [f"instruction {k}" for k in range(n)]
    outputs = [{"instruction": i, "output": "x" * int(m), "generator": run_dir.name} for i, m in zip(ids, lengths)]
    out.with_suffix(".outputs.json").write_text(json.dumps(outputs))
    out.with_suffix(".annotations.json").write_text(json.dumps(
        [{"instruction": i, "output_1": "ref", "output_2": o["output"], "annotator": annotator.split("@")[0],
          "preference": float(p)} for i, o, p in zip(ids, outputs, prefs)]))
    plain = float((prefs - 1.0).mean() * 100)
    plain_se = float((prefs - 1.0).std(ddof=1) / math.sqrt(n) * 100)
    lc_defined = protocol == "alpaca_eval2" and lc is not None and limit is None
    lc_reason = (AE1_NO_LC if protocol == "alpaca_eval1" else "full 805-instruction set in its original order"
                 if lc_defined else f"subset: first {limit} of 805 instructions")
    base = annotator.split("@")[0]
    model = annotator.split("@")[1] if "@" in annotator else (str(run_dir / "judge") if base == STAND_IN
                                                              else JUDGE_MODELS[base])
    mean_chars = float(np.mean([len(o["output"]) for o in outputs]))
    win = lc if lc_defined else plain
    se = lc_se if lc_defined else plain_se
    record = {
        "model": str(run_dir / "final"), "protocol": protocol, "source": "test",
        "annotator": annotator, "annotator_config": base, "annotator_is_alpaca_eval_judge": "@" not in annotator
        and base != STAND_IN, "judge_model": model, "judge_endpoint": None, "judge_api_key_env": None,
        "reference_generator": "text_davinci_003" if protocol == "alpaca_eval1" else "gpt4_1106_preview",
        "reference_is_protocols": True, "win_rate_kind": "length_controlled" if lc_defined else "plain",
        "lc_reason": lc_reason, "win_rate": win, "standard_error": se,
        "leaderboard_row": {"win_rate": plain, "standard_error": plain_se, "avg_length": mean_chars,
                            **({"length_controlled_winrate": lc, "lc_standard_error": lc_se} if lc_defined else {})},
        "n": n, "n_instructions_in_file": 805, "instructions_are_alpaca_eval_set": True, "n_unjudged": 0,
        "mean_length_chars": mean_chars, "mean_length_tokens": mean_chars / 4, "truncated": 0, "limit": limit,
        "outputs": out.with_suffix(".outputs.json").name, "annotations": out.with_suffix(".annotations.json").name,
        "metrics": [{"task": protocol, "metric": "lc_win_rate" if lc_defined else "win_rate", "value": win,
                     "stderr": se, "n": n},
                    {"task": protocol, "metric": "mean_length_chars", "value": mean_chars, "stderr": None, "n": n}],
    }
    out.write_text(json.dumps(record))
    return out


def prefs_with(rng, p_win: float, n: int = 805, weighted: bool = True) -> np.ndarray:
    """Per instruction the judge's preference for the model: continuous in [1, 2] (the weighted
    annotator's probability) or 1 / 2 (AlpacaEval 1's ranking parser)."""
    if weighted:
        return 1.0 + np.clip(rng.normal(p_win, 0.2, n), 0.0, 1.0)
    return np.where(rng.random(n) < p_win, 2.0, 1.0)


def write_both(run_dir: Path, rng, ae1: str, ae2: str, p: float, lc: float, chars: int = 1400) -> list[Path]:
    lengths = chars + rng.integers(-200, 200, 805)
    return [write_alpaca(run_dir, "alpaca_eval1", ae1, prefs_with(rng, p, weighted=False), lengths),
            write_alpaca(run_dir, "alpaca_eval2", ae2, prefs_with(rng, p / 4), lengths, lc=lc)]


def cell(df, run, metric):
    sel = df[(df.run == run) & (df.metric == metric)]
    assert len(sel) == 1, (run, metric, len(sel))
    return sel.iloc[0]


def plain_of(path: Path) -> float:
    return json.loads(path.read_text())["leaderboard_row"]["win_rate"]


# ------------------------------------------------------------------------------ paper tables
PIPE = "method~ift/init~ift_uc.sft/lam~0.2/decay~0.95"


@pytest.fixture
def ift_results(tmp_path):
    """ift_base_uf: base judged by each protocol's own annotator, dpo by another model behind it, ift by
    the offline stand-in, and one UC->UF pipeline run (a nested run id) by the official annotators."""
    rng = np.random.default_rng(0)
    root = tmp_path / "results" / "runs" / "ift_base_uf"
    paths = {
        "base~mistral-7b-v0.1": write_both(root / "base~mistral-7b-v0.1", rng, AE1, AE2, 0.25, 0.4),
        "method~dpo": write_both(root / "method~dpo", rng, f"{AE1}@{OTHER_MODEL}", f"{AE2}@{OTHER_MODEL}", 0.7, 8.0),
        "method~ift": write_both(root / "method~ift", rng, STAND_IN, STAND_IN, 0.8, 12.0),
        PIPE: write_both(root / PIPE, rng, AE1, AE2, 0.85, 14.0),
    }
    return root, paths


ROWS = {"Mistral-7B": "base~mistral-7b-v0.1", "dpo": "method~dpo", "ift": "method~ift", "sft->ift": PIPE}


def test_ift_table2_cells_name_their_annotator(ift_results):
    root, paths = ift_results
    df = T.paper_table("ift/table2", [p for ps in paths.values() for p in ps], ROWS, SCALE)
    base = "base~mistral-7b-v0.1"
    ae1, ae2 = paths[base]
    c = cell(df, base, "alpacaeval/win_rate")
    assert c.status == T.OK and c.ours == pytest.approx(plain_of(ae1)) and c.judge == AE1 and c.paper_judge == AE1
    assert c.judge_tag[-1].isdigit() and c.note == f"the paper's judge ({AE1})"
    assert c["diff"] == pytest.approx(c.ours - pn.lookup("ift/table2", "base", "alpacaeval/win_rate"))
    # AlpacaEval 2: the plain win rate is the leaderboard row's, the LC the reported one
    c = cell(df, base, "alpacaeval2/win_rate")
    assert c.ours == pytest.approx(plain_of(ae2)) and c.judge == AE2 and c.paper_judge == AE2
    assert cell(df, base, "alpacaeval2/lc_win_rate").ours == pytest.approx(0.4)
    assert cell(df, base, "alpacaeval2/lc_win_rate").judge_tag == c.judge_tag
    # AlpacaEval 1's LC column: no such number, with the reason; data volume: not an evaluation
    lc1 = cell(df, base, "alpacaeval/lc_win_rate")
    assert lc1.status == T.NOT_MEASURED and math.isnan(lc1.ours) and not math.isnan(lc1.paper)
    assert "AlpacaEval 1 defines no length-controlled win rate" in lc1.note
    assert cell(df, base, "data_volume").status == T.NOT_MEASURED
    # another model behind the annotator: marked, both named
    other = cell(df, "method~dpo", "alpacaeval2/lc_win_rate")
    assert other.judge == f"{AE2}@{OTHER_MODEL}" and other.judge_tag.endswith("*")
    assert other.note == f"judge differs from the paper's ({AE2}@{OTHER_MODEL} vs {AE2})"
    assert cell(df, "method~dpo", "alpacaeval/win_rate").note == f"judge differs from the paper's ({AE1}@{OTHER_MODEL} vs {AE1})"
    # the offline stand-in: its own mark and words
    off = cell(df, "method~ift", "alpacaeval/win_rate")
    assert off.judge == STAND_IN and off.judge_tag.endswith("†")
    assert "OFFLINE STAND-IN negfree_local_loglik" in off.note and "not AlpacaEval's judge" in off.note
    assert f"judge differs from the paper's ({STAND_IN} vs {AE1})" in off.note
    # a nested run id (a pipeline) is read from its path under results/runs/<exp>/
    assert cell(df, PIPE, "alpacaeval2/lc_win_rate").label == "+ SFT + IFT"
    # one tag per (annotator, paper's annotator), listed under the table with the columns it gave
    tags = {cell(df, r, m).judge_tag for r in ROWS.values() for m in ("alpacaeval/win_rate", "alpacaeval2/win_rate")}
    assert len(tags) == 6 and len(df.attrs["judges"]) == 6
    md = T.to_markdown(df)
    assert f"[{other.judge_tag}]" in md and "Judges:" in md and "the offline judge" in md
    assert any(f": {AE2}@{OTHER_MODEL} ({OTHER_MODEL}): judge differs" in line for line in md.splitlines())
    notes = " ".join(df.attrs["column_notes"])
    assert "Alpaca-Eval win-rate: judged by alpaca_eval's annotator (negfree alpaca-eval, protocol alpaca_eval1); " \
           "the paper's is alpaca_eval_gpt4" in notes
    assert f"the paper's is {AE2} (AlpacaEval 2's GPT-4 Turbo judge)" in notes
    assert r"\dag{}" in T.to_latex(df)
    # the released rows the paper copies stay unrun
    assert set(df[df.method.str.startswith("released:")].status) == {T.NOT_RUN}


def test_a_csv_of_eval_csv_does_not_record_the_annotator(ift_results, tmp_path):
    root, paths = ift_results
    base = "base~mistral-7b-v0.1"
    csv = tmp_path / "evals.csv"
    write_csv(collect(paths[base], [base, base]), csv)
    df = T.paper_table("ift/table2", [csv], {"Mistral-7B": base}, SCALE)
    c = cell(df, base, "alpacaeval/win_rate")
    assert c.judge_tag.endswith("*") and "judge not recorded" in c.note
    # the tidy CSV has the reported (LC) rate only: AlpacaEval 2's plain win rate needs the JSON
    assert cell(df, base, "alpacaeval2/win_rate").status == T.MISSING
    assert cell(df, base, "alpacaeval2/lc_win_rate").ours == pytest.approx(0.4)
    df = T.paper_table("ift/table2", [csv] + paths[base], {"Mistral-7B": base}, SCALE)
    for m in ("alpacaeval/win_rate", "alpacaeval2/win_rate", "alpacaeval2/lc_win_rate"):
        c = cell(df, base, m)
        assert c.status == T.OK and not c.judge_tag.endswith(("*", "†")), m


def test_a_subset_result_says_so(tmp_path):
    rng = np.random.default_rng(1)
    d = tmp_path / "results" / "runs" / "ift_uc" / "method~sft"
    js = write_alpaca(d, "alpaca_eval2", AE2, prefs_with(rng, 0.1, n=20), [900] * 20, lc=None, limit=20)
    df = T.paper_table("ift/table2", [js], {"sft@UC": "method~sft"}, SCALE)
    c = cell(df, "method~sft", "alpacaeval2/win_rate")
    assert c.status == T.OK and "judged 20 instructions, not AlpacaEval's 805" in c.note
    assert cell(df, "method~sft", "alpacaeval2/lc_win_rate").status == T.MISSING
    assert any(n.startswith("method~sft: judged 20 instructions") and "no LC win rate: subset" in n
               for n in df.attrs["notes"])


def test_dft_fig5_lengths_and_lc(tmp_path):
    rng = np.random.default_rng(2)
    root = tmp_path / "results" / "runs" / "dft_uf"
    js = [write_alpaca(root / "method~dft", "alpaca_eval2", AE2, prefs_with(rng, 0.1), [1300] * 805, lc=9.0),
          write_alpaca(root / "released~mistral-7b-base-sft-simpo", "alpaca_eval2", f"{AE2}@{OTHER_MODEL}",
                       prefs_with(rng, 0.2), [1900] * 805, lc=20.0)]
    rows = {"dft(2)": "method~dft", "sft->simpo": "released~mistral-7b-base-sft-simpo"}
    df = T.paper_table("dft/fig5", js, rows, SCALE)
    ln = cell(df, "method~dft", "alpacaeval2/avg_length")
    assert ln.ours == pytest.approx(1300.0) and ln.paper == pytest.approx(1359.0) and ln.judge_tag == ""
    assert cell(df, "released~mistral-7b-base-sft-simpo", "alpacaeval2/avg_length").judge_tag == ""
    lc = cell(df, "method~dft", "alpacaeval2/lc_win_rate")
    assert lc.ours == pytest.approx(9.0) and math.isnan(lc.paper) and lc.paper_judge == AE2
    assert cell(df, "released~mistral-7b-base-sft-simpo", "alpacaeval2/lc_win_rate").judge_tag.endswith("*")
    assert any("AlpacaEval's avg_length" in n and "states no unit" in n for n in df.attrs["column_notes"])


def test_the_items_name_their_annotated_files_and_the_constants_agree():
    from negfree.evaluate import alpaca

    assert T.ALPACA_JUDGES == alpaca.OFFICIAL
    assert T.ALPACA_STAND_IN == alpaca.LOCAL_ANNOTATOR and T.ALPACA_SET_SIZE == alpaca.FULL_SET_SIZE
    assert T.item_annotated("ift/table2") == ["alpaca_eval1", "alpaca_eval2"]
    assert T.item_annotated("dft/fig5") == T.item_annotated("dft/fig2a_fig5") == ["alpaca_eval2"]
    assert T.item_annotated("dft/table2") == [] and T.item_annotated("asft/table2") == []
    assert T.item_judged("ift/table2") == []                 # AlpacaEval is no negfree judged-eval protocol
    for key in ("alpacaeval/win_rate", "alpacaeval2/win_rate", "alpacaeval2/lc_win_rate"):
        assert T.paper_judge("ift", key) in (AE1, AE2) and key in pn.info("ift/table2")["metrics"]
    assert T.paper_judge("dft", "alpacaeval2/avg_length") is None            # a length is no judge's
    assert T.check_sources() == []


def test_the_paper_configs_render_the_alpaca_items():
    from negfree.jobs.dag import Experiment
    from negfree.report.claims import paper_rows_of

    for name, item, runs in (("ift", "ift/table2", {"base~mistral-7b-v0.1", "method~ift", PIPE.split("/")[0]}),
                             ("ift_uc", "ift/table2", {"method~sft"}),
                             ("dft", "dft/fig5", {"method~dft", "released~mistral-7b-base-sft-simpo"})):
        exp = Experiment(yaml.safe_load((ROOT / f"configs/paper/{name}.yaml").read_text()), name)
        assert item in exp.paper_tables and set(T.item_annotated(item)) <= set(exp.protocols), name
        got = {Path(r["run_dir"]).relative_to(exp.runs_root).parts[0] for r in paper_rows_of(exp)
               if r["item"] == pn.resolve(item)[0]}
        assert runs <= got, (name, got)
        assert f"results/tables/{exp.name}/paper~{item.replace('/', '_')}.md" in exp.targets()


# ------------------------------------------------------------------------------ targets index
def test_alpaca_items_are_buildable_in_the_targets_index(tmp_path):
    from negfree.report.targets import load_targets
    from test_judged_tables import assert_not_built_yet

    targets = {t.id: t for t in load_targets(ROOT / "configs/targets.yaml")}
    for item, table in (("ift/table2", "ift_table2"), ("dft/fig2a_fig5", "dft_fig5"), ("dft/table9_fig6", "dft_table9")):
        t = targets[item]
        assert f"results/tables/{{exp}}/paper~{table}.md" in t.files, item
        for gone in ("paid", "OPENAI_API_KEY", "no experiment lists", "no protocol"):
            assert gone not in t.missing, (item, gone)
        assert {next(iter(n)) for n in t.needs}.isdisjoint({"unlisted_protocol", "no_protocol"}), item
    assert "AlpacaEval 1 defines no length-controlled win rate" in targets["ift/table2"].missing
    mine = [targets[i] for i in ("ift/table2", "dft/fig2a_fig5", "dft/table9_fig6")]
    assert_not_built_yet(mine, ["ift_base_uf", "dft_uf"], tmp_path, ["ift_table2", "dft_fig5"])


def test_the_new_needs_fail_once_the_configs_contradict_them(tmp_path):
    from negfree.report.targets import check_targets, load_targets

    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump({"items": [
        {"id": "ift/table2", "what": "x", "missing": "AlpacaEval 2 defines no length-controlled win rate.",
         "needs": [{"no_lc": "alpaca_eval2"}]},
        {"id": "dft/fig2a_fig5", "what": "x", "missing": "There is no sweep figure of openllm_dft here.",
         "needs": [{"no_sweep_figure": {"experiment": "configs/paper/dft.yaml", "metric": "openllm_dft"}}]},
        {"id": "dft/table9_fig6", "what": "x", "missing": "AlpacaEval 1 defines no length-controlled win rate.",
         "needs": [{"no_lc": "alpaca_eval1"}]},
        {"id": "dft/fig7", "what": "x", "missing": "There is no sweep figure of alpaca_eval2 in configs/paper/dft.yaml.",
         "needs": [{"paper_rows": {"item": "dft/fig7", "count": 2}}]},
    ]}))
    problems = check_targets(load_targets(cfg), ROOT)
    assert any(p.startswith("ift/table2: ") and "decides alpaca_eval2's LC win rate by the instructions" in p
               for p in problems)
    assert any(p.startswith("dft/fig2a_fig5: ") and "draws the sweep figure metric 'openllm_dft/mean (x100)'" in p
               for p in problems)
    assert not any(p.startswith("dft/table9_fig6: ") for p in problems)
    assert any(p.startswith("dft/fig7: ") and "'no sweep figure' but lists no need no_sweep_figure" in p
               for p in problems)


# ------------------------------------------------------------------------------ claims ledger
def _run(root: Path, run: str, method: str) -> Path:
    d = root / run
    d.mkdir(parents=True, exist_ok=True)
    if not run.startswith(("base~", "released~")):
        (d / "config.json").write_text(json.dumps({"method": method, "seed": 0, "lr": 1e-6}))
        (d / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 1.0}) + "\n")
    return d


def _claim(cid: str, check: dict, requires=("judge",), paper: str = "ift") -> dict:
    return {"id": cid, "paper": paper, "statement": cid, "source": "test", "check": check,
            "needs": {"targets": ["ift/table2"], "runs": []}, "requires": list(requires)}


CLAIMS = [
    _claim("ae1.ift_beats_sft", {"kind": "compare", "metric": "alpacaeval/win_rate", "a": {"method": "ift"},
                                 "b": {"method": "sft"}, "expect": "a > b", "paper_item": "ift/table2"}),
    _claim("ae2.ift_beats_sft", {"kind": "compare", "metric": "alpacaeval2/win_rate", "a": {"method": "ift"},
                                 "b": {"method": "sft"}, "expect": "a > b", "paper_item": "ift/table2"}),
    _claim("ae1.lc", {"kind": "compare", "metric": "alpacaeval/lc_win_rate", "a": {"method": "ift"},
                      "b": {"method": "sft"}, "expect": "a > b", "paper_item": "ift/table2"}),
    _claim("ae2.lc_value", {"kind": "paper_value", "metric": "alpacaeval2/lc_win_rate",
                            "select": [{"method": "ift", "setting": "UF"}], "paper_item": "ift/table2"}),
    _claim("ae2.shorter", {"kind": "compare", "metric": "alpacaeval2/avg_length", "a": {"method": "ift"},
                           "b": {"method": "sft"}, "expect": "a < b"}, requires=(), paper="dft"),
]


def _ledger(tmp_path: Path, ae1: str, ae2: str) -> pd.DataFrame:
    """ift clearly above sft on both AlpacaEvals (per instruction), LC 13.3 +- 0.2 (the paper's 13.27),
    shorter answers; every result annotated by ``ae1`` / ``ae2``."""
    rng = np.random.default_rng(3)
    root = tmp_path / ae2.replace("/", "_") / "ift_base_uf"
    for method, p, lc, chars in (("sft", 0.3, 8.0, 1600), ("ift", 0.7, 13.3, 1200)):
        d = _run(root, f"method~{method}", method)
        lengths = chars + rng.integers(-100, 100, 805)
        write_alpaca(d, "alpaca_eval1", ae1, prefs_with(rng, p, weighted=False), lengths)
        write_alpaca(d, "alpaca_eval2", ae2, prefs_with(rng, p / 3), lengths, lc=lc, lc_se=0.2)
    claims = tmp_path / "claims.yaml"
    claims.write_text(yaml.safe_dump({"version": 1, "claims": CLAIMS,
                                      "paper_value_tolerance": {"alpacaeval2/*": {"abs": 1.0, "why": "test"}}}))
    rows = [{"item": "ift/table2", "model": "Mistral-7B-v0.1", "setting": "UF", "method": m,
             "run_dir": str(root / f"method~{m}")} for m in ("sft", "ift")]
    return claims_ledger(claims, root, None, tmp_path / "c.csv", tmp_path / "c.md", SCALE,
                         paper_rows=rows).set_index("id")


def test_the_protocols_own_annotator_gives_verdicts(tmp_path):
    df = _ledger(tmp_path, AE1, AE2)
    for cid in ("ae1.ift_beats_sft", "ae2.ift_beats_sft"):
        r = df.loc[cid]
        assert r.verdict == REPRODUCED and r.uncertainty == TEST_ITEMS and "805 test items" in r.measurement, cid
    assert f"alpaca_eval1/win_rate judged by {AE1}" in df.loc["ae1.ift_beats_sft"].measurement
    r = df.loc["ae1.lc"]
    assert r.verdict == NOT_CHECKABLE and "AlpacaEval 1 defines no length-controlled win rate" in r.reason
    r = df.loc["ae2.lc_value"]          # one fitted number: the result's own standard error
    assert r.verdict == REPRODUCED and "the result's standard error" in r.measurement
    assert "the paper's 13.27 +- 1" in r.measurement
    r = df.loc["ae2.shorter"]
    assert r.verdict == REPRODUCED and "no judge" in r.measurement


def test_another_annotator_is_never_reproduced(tmp_path):
    ae1, ae2 = f"{AE1}@{OTHER_MODEL}", f"{AE2}@{OTHER_MODEL}"
    df = _ledger(tmp_path, ae1, ae2)
    r = df.loc["ae1.ift_beats_sft"]
    assert r.verdict == INCONCLUSIVE and f"judge differs from the paper's ({ae1} vs {AE1})" in r.reason
    assert "reads reproduced" in r.reason
    r = df.loc["ae2.ift_beats_sft"]
    assert r.verdict == INCONCLUSIVE and f"judge differs from the paper's ({ae2} vs {AE2})" in r.reason
    r = df.loc["ae2.lc_value"]
    assert r.verdict == NOT_CHECKABLE and "the protocols differ: judge differs from the paper's" in r.reason
    assert df.loc["ae2.shorter"].verdict == REPRODUCED                # a length is no judge's
    assert not (df.verdict == REPRODUCED).drop("ae2.shorter").any()


def test_the_offline_stand_in_is_not_checkable(tmp_path):
    df = _ledger(tmp_path, STAND_IN, STAND_IN)
    for cid, paper, name in (("ae1.ift_beats_sft", AE1, "AlpacaEval 1's GPT-4 judge"),
                             ("ae2.ift_beats_sft", AE2, "AlpacaEval 2's GPT-4 Turbo judge"),
                             ("ae2.lc_value", AE2, "AlpacaEval 2's GPT-4 Turbo judge")):
        r = df.loc[cid]
        assert r.verdict == NOT_CHECKABLE, cid
        assert f"judged by {STAND_IN}, not {name} ({paper})" in r.reason, cid
        assert "OFFLINE STAND-IN" in r.reason and "needs a paid LLM judge" in r.reason, cid
    assert df.loc["ae2.shorter"].verdict == REPRODUCED


def test_the_real_ift_claims_with_another_annotator(tmp_path):
    """configs/claims.yaml's ift Table 2 claims on runs annotated through another model: none reproduced,
    AlpacaEval 1 read like AlpacaEval 2; dft's length claim reads the dft/fig5 rows of configs/paper/dft.yaml."""
    from negfree.jobs.dag import Experiment
    from negfree.report.claims import paper_rows_of

    rng = np.random.default_rng(4)
    root = tmp_path / "runs"
    rows = []
    for name in ("ift", "ift_uc", "dft"):
        exp = Experiment(yaml.safe_load((ROOT / f"configs/paper/{name}.yaml").read_text()), name)
        rows += [{**r, "run_dir": str(root / exp.name / Path(r["run_dir"]).relative_to(exp.runs_root))}
                 for r in paper_rows_of(exp) if r["item"] in ("ift/table2", "dft/fig2a_fig5")]
    for r in rows:
        d = _run(Path(r["run_dir"]).parent, Path(r["run_dir"]).name, r["method"])
        good = r["method"] in ("ift", "sft->ift", "dft(2)")
        lengths = (1200 if good else 1600) + rng.integers(-100, 100, 805)
        ae = [f"{AE1}@{OTHER_MODEL}", f"{AE2}@{OTHER_MODEL}"]
        if r["item"] == "ift/table2":
            write_alpaca(d, "alpaca_eval1", ae[0], prefs_with(rng, 0.9 if good else 0.3, weighted=False), lengths)
        write_alpaca(d, "alpaca_eval2", ae[1], prefs_with(rng, 0.5 if good else 0.1), lengths, lc=13.0 if good else 5.0)
    df = claims_ledger(ROOT / "configs/claims.yaml", root, None, tmp_path / "c.csv", tmp_path / "c.md", SCALE,
                       paper_rows=rows).set_index("id")
    ift = df.loc[[i for i in df.index if i.startswith("ift.table2.")]]
    assert len(ift) >= 5 and not (ift.verdict == REPRODUCED).any()
    r = df.loc["ift.table2.dpo_fails_from_base"]        # AlpacaEval 1 win rate and LC
    assert r.verdict != REPRODUCED and f"({AE1}@{OTHER_MODEL} vs {AE1})" in r.reason
    assert "AlpacaEval 1 defines no length-controlled win rate" in r.reason
    r = df.loc["ift.table2.value_ift"]
    assert r.verdict == NOT_CHECKABLE and "the protocols differ: judge differs" in r.reason
    r = df.loc["dft.fig5.shorter_outputs_than_po"]      # DFT(2) -> method~dft, the PO rows -> released checkpoints
    assert r.verdict == REPRODUCED and "released~mistral-7b-base-sft-simpo" in r.measurement


def test_the_judged_table_reads_alpaca_eval_results_with_their_judge(tmp_path):
    """AlpacaEval listed under evaluate.judged: its rows in the judged table, the interval
    +/- 1.96 standard errors (by hand), the judge named and marked."""
    from negfree.report.judged import judged_table

    def result(name, **kw):
        rec = {"protocol": "alpaca_eval2", "win_rate": 60.0, "standard_error": 5.0, "win_rate_kind": "plain",
               "n": 805, "n_unjudged": 1, "mean_length_chars": 1500.0,
               "annotator": "weighted_alpaca_eval_gpt4_turbo", "annotator_config": "weighted_alpaca_eval_gpt4_turbo",
               "annotator_is_alpaca_eval_judge": True, "judge_model": "gpt-4-1106-preview", **kw}
        f = tmp_path / f"{name}.json"
        f.write_text(json.dumps(rec))
        return str(f)

    rows = judged_table(
        [(result("own", win_rate_kind="length_controlled"), "method~dft"),
         (result("other", annotator="weighted_alpaca_eval_gpt4_turbo@llama", annotator_is_alpaca_eval_judge=False,
                 judge_model="llama"), "method~sft"),
         (result("local", protocol="alpaca_eval1", annotator="negfree_local_loglik",
                 annotator_config="negfree_local_loglik", annotator_is_alpaca_eval_judge=False,
                 judge_model="work/models/x", standard_error=None), "base~x")],
        tmp_path / "t.csv", tmp_path / "t.md")
    assert rows[0]["metric"] == "lc_win_rate" and rows[1]["metric"] == "win_rate"
    assert (rows[0]["ci_low"], rows[0]["ci_high"]) == pytest.approx((60 - 9.8, 60 + 9.8))
    assert [r["judge_note"] for r in rows[:2]] == ["AlpacaEval's own judge", "not AlpacaEval's judge (gpt-4-1106-preview)"]
    assert rows[2]["judge_note"].startswith("OFFLINE stand-in") and rows[2]["paper_judge"] == "gpt-4"
    assert rows[2]["ci_low"] is None and rows[0]["failed"] == 1
    md = (tmp_path / "t.md").read_text()
    assert "| method~dft | alpaca_eval2 | lc_win_rate | 60.0 | [50.2, 69.8] | 805 | 1 | 1500 |" in md
    assert "AlpacaEval offline stand-in" in md and "1.96 times alpaca_eval's standard error" in md
