"""The judged protocols in the paper tables, the targets index and the claims ledger.

Hand-made results of ``negfree judged-eval`` (format negfree-judged-result/1: the JSON, its
judgements.jsonl and the run's answer file), their scores computed by the benchmark code itself
(negfree.evaluate.judge.aggregate), judged by the paper's judge, by another model, or by the
offline judge. Checked: which cell each fills and how its judge is marked (asft Table 2, bnf Tables
4-6), that configs/targets.yaml lists those items as buildable, and the ledger's rule: a claim on a
judged benchmark is never reproduced by another judge than the paper's, and not checkable with the
offline judge. Offline, no model."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from negfree.evaluate.aggregate import collect, write_csv
from negfree.evaluate.judge.aggregate import WB_TRUNCATED, arena_hard_score, mt_bench_score
from negfree.report import paper_numbers as pn
from negfree.report import paper_table as T
from negfree.report.claims import INCONCLUSIVE, NOT_CHECKABLE, REPRODUCED, TEST_ITEMS, claims_ledger

ROOT = Path(__file__).resolve().parents[1]
SCALE = "fake judged results, tests only"
OFFLINE_MODEL = "negfree_offline_judge"
OTHER = "Qwen/Qwen2.5-72B-Instruct"


# ------------------------------------------------------------------------------ fake judged results
def _judge(model: str) -> dict:
    offline = model == OFFLINE_MODEL
    return {"name": OFFLINE_MODEL if offline else f"paper:{model}", "model": model, "offline": offline}


def _write(run_dir: Path, protocol: str, record: dict, judgements: list[dict], answers: list[dict],
           stem: str | None = None) -> Path:
    """``stem``: the result's file name, when not the protocol's (an extra judge's: mt_bench@<model>)."""
    out = run_dir / "eval" / f"{stem or protocol}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    (run_dir / "judged").mkdir(exist_ok=True)
    (run_dir / "judged" / f"{protocol}.answers.jsonl").write_text("".join(json.dumps(a) + "\n" for a in answers))
    out.with_name(f"{stem or protocol}.judgements.jsonl").write_text("".join(json.dumps(j) + "\n" for j in judgements))
    offline = record["judge"]["offline"]
    out.write_text(json.dumps({"format": T.JUDGED_FORMAT, "run": run_dir.name, "limit": None,
                               "judge_is_offline": offline,
                               "judgements": out.with_name(f"{stem or protocol}.judgements.jsonl").name, **record}))
    return out


def write_arena_hard(run_dir: Path, judge: str, games: list[tuple[str, str]], lc: float, tokens: list[int],
                     run: str | None = None) -> Path:
    """Arena-Hard v0.1: per prompt the labels of (model_as_a, model_as_b); the WR from arena_hard_score."""
    judgments = [{"model_as_a": a, "model_as_b": b} for a, b in games]
    wr = arena_hard_score(judgments, rounds=20)
    ids = [f"q{k:03d}" for k in range(len(games))]
    answers = [{"question_id": q, "turns": ["x" * (4 * t)], "n_tokens": [t]} for q, t in zip(ids, tokens)]
    chars = [4 * t for t in tokens]
    rows = [{"task": "arena_hard_v0.1", "metric": m, "value": v, "stderr": None, "n": len(games)}
            for m, v in (("win_rate", wr["value"]), ("lc_win_rate", lc), ("mean_length_chars", float(np.mean(chars))),
                         ("mean_length_tokens", float(np.mean(tokens))))]
    record = {"protocol": "arena_hard_v0.1", "run": run or run_dir.name, "metric": "arena_hard_win_rate",
              "value": wr["value"], "metrics": rows, "judge": _judge(judge),
              "results": {"win_rate": wr, "lc_win_rate": {"value": lc, "ci_low": lc - 3.0, "ci_high": lc + 3.0,
                                                          "interval": {"method": "bootstrap-percentile",
                                                                       "unit": "prompt"}}},
              "output_length": {"mean_chars": float(np.mean(chars)), "mean_tokens": float(np.mean(tokens)),
                                "n": len(games)}}
    judgements = [{"id": f"{q}/{g}", "verdict": lab, "ok": True} for q, (a, b) in zip(ids, games)
                  for g, lab in (("model_as_b", b), ("model_as_a", a))]
    return _write(run_dir, "arena_hard", record, judgements, answers)


def write_mt_bench(run_dir: Path, judge: str, ratings: list[tuple[float, float]], extra: bool = False) -> Path:
    """``extra``: the same answers judged again by ``judge``, an extra judge: eval/mt_bench@<judge>.json."""
    mt = mt_bench_score([list(r) for r in ratings], rounds=20)
    ids = [str(81 + k) for k in range(len(ratings))]
    rows = [{"task": "mt_bench", "metric": "score", "value": mt["value"], "stderr": None, "n": len(ratings)},
            {"task": "mt_bench", "metric": "mean_length_chars", "value": 100.0, "stderr": None, "n": len(ratings)}]
    record = {"protocol": "mt_bench", "metric": "mt_bench_score", "value": mt["value"], "metrics": rows,
              "judge": _judge(judge), "results": {"score": mt}, "output_length": {"mean_chars": 100.0, "n": len(ids)}}
    judgements = [{"id": f"{q}/turn{t + 1}", "verdict": r[t], "ok": True}
                  for q, r in zip(ids, ratings) for t in range(2)]
    answers = [{"question_id": q, "turns": ["a", "b"], "n_tokens": [1, 1]} for q in ids]
    return _write(run_dir, "mt_bench", record, judgements, answers, stem=f"mt_bench@{judge}" if extra else None)


def write_wildbench(run_dir: Path, judge: str, score: float, outputs: list[str]) -> Path:
    kept = [len(o.strip()) for o in outputs if o.strip() and not o.strip().endswith(WB_TRUNCATED)]
    rows = [{"task": "wildbench_v2", "metric": m, "value": v, "stderr": None, "n": len(outputs)}
            for m, v in (("wb_score_task_macro", score), ("wb_score_plain", score + 1.0),
                         ("mean_length_chars", float(np.mean([len(o) for o in outputs]))))]
    record = {"protocol": "wildbench_v2", "metric": "wb_score_task_macro", "value": score, "metrics": rows,
              "judge": _judge(judge),
              "results": {"wb_score": {"value": score, "ci_low": score - 2.0, "ci_high": score + 2.0,
                                       "interval": {"method": "bootstrap-percentile", "unit": "task"}},
                          "wb_elo": {"value": None, "computable": False}},
              "output_length": {"mean_chars": float(np.mean([len(o) for o in outputs])), "n": len(outputs),
                                "leaderboard_mean_chars": float(np.mean(kept))}}
    ids = [f"wb-{k}" for k in range(len(outputs))]
    judgements = [{"id": q, "verdict": 6.0, "ok": True} for q in ids]
    answers = [{"question_id": q, "turns": [o], "n_tokens": [len(o) // 4]} for q, o in zip(ids, outputs)]
    return _write(run_dir, "wildbench", record, judgements, answers)


def games_with(rng, n: int, p_win: float) -> list[tuple[str, str]]:
    """Per prompt two games; the model wins each with probability p_win (A>B as assistant A, B>A as B)."""
    out = []
    for _ in range(n):
        a = "A>B" if rng.random() < p_win else "B>A"
        b = "B>A" if rng.random() < p_win else "A>B"
        out.append((a, b))
    return out


def cell(df, run, metric):
    sel = df[(df.run == run) & (df.metric == metric)]
    assert len(sel) == 1, (run, metric, len(sel))
    return sel.iloc[0]


# ------------------------------------------------------------------------------ paper tables
@pytest.fixture
def bnf_results(tmp_path):
    """Three Llama-3 runs of bnf: base judged by the paper's judges, dpo by another model, bnf offline."""
    rng = np.random.default_rng(0)
    root = tmp_path / "runs" / "bnf_llama3_main"
    paths = {}
    for run, ah_judge, wb_judge, p, score in (
            ("base~meta-llama-3-8b-instruct", "gpt-4o-mini", "gpt-4o-2024-05-13", 0.3, 29.0),
            ("method~dpo", OTHER, OTHER, 0.5, 40.0),
            ("method~bnf", OFFLINE_MODEL, OFFLINE_MODEL, 0.6, -31.0)):
        d = root / run
        paths[run] = [write_arena_hard(d, ah_judge, games_with(rng, 40, p), lc=p * 100 - 1,
                                       tokens=[500 + k for k in range(40)]),
                      write_wildbench(d, wb_judge, score, ["y" * 2900, "z" * 3100, "", "w" * 50 + WB_TRUNCATED])]
    return root, paths


def test_bnf_table4_judged_cells_name_their_judge(bnf_results):
    root, paths = bnf_results
    jsons = [p for ps in paths.values() for p in ps]
    rows = {"Base@Meta-Llama-3-8B-Instruct": "base~meta-llama-3-8b-instruct",
            "DPO@Meta-Llama-3-8B-Instruct": "method~dpo", "BNF@Meta-Llama-3-8B-Instruct": "method~bnf"}
    df = T.paper_table("bnf/table4", jsons, rows, SCALE)
    base = "base~meta-llama-3-8b-instruct"
    wr = json.loads(paths[base][0].read_text())["results"]["win_rate"]["value"]
    c = cell(df, base, "arena_hard/win_rate")
    assert c.status == T.OK and c.ours == pytest.approx(wr) and c.judge == "gpt-4o-mini"
    assert c.paper_judge == "gpt-4o-mini" and c.judge_tag.startswith("J") and c.judge_tag[-1].isdigit()
    assert c["diff"] == pytest.approx(wr - pn.lookup("bnf/table4", "base", "arena_hard/win_rate",
                                                     model="Meta-Llama-3-8B-Instruct"))
    assert cell(df, base, "wildbench/score").ours == pytest.approx(29.0)
    assert cell(df, base, "wildbench/score").paper_judge == "gpt-4o-2024-05-13"
    other = cell(df, "method~dpo", "arena_hard/lc_win_rate")
    assert other.judge == OTHER and other.judge_tag.endswith("*")
    assert other.note == f"judge differs from the paper's ({OTHER} vs gpt-4o-mini)"
    off = cell(df, "method~bnf", "wildbench/score")
    assert off.judge_tag.endswith("†") and "OFFLINE" in off.note and "says nothing about quality" in off.note
    # one tag per (judge, paper's judge): the cells and the lines under the table agree
    tags = {cell(df, r, m).judge_tag for r in rows.values() for m in ("arena_hard/win_rate", "arena_hard/lc_win_rate",
                                                                        "wildbench/score")}
    assert len(tags) == 6 and len(df.attrs["judges"]) == 6
    assert cell(df, "method~dpo", "arena_hard/win_rate").judge_tag == other.judge_tag
    md = T.to_markdown(df)
    assert f"[{other.judge_tag}]" in md and "Judges:" in md
    assert any(line.startswith(f"- {other.judge_tag}: {OTHER} (paper:{OTHER}): judge differs from the paper's "
                               f"({OTHER} vs gpt-4o-mini)") for line in md.splitlines())
    assert f"judge differs from the paper's ({OFFLINE_MODEL} vs gpt-4o-2024-05-13)" in md
    # Wild-Bench Elo: not computable from one model's results; CRUX: no sandboxed harness wired
    elo = cell(df, base, "wildbench/elo")
    assert elo.status == T.NOT_MEASURED and "not computable from one model's results" in elo.note
    assert "Chatbot Arena Elo" in elo.note
    assert "maintained sandboxed harness" in cell(df, base, "crux/acc").note
    # the reasoning columns stay their protocol's: not given here, so missing, not filled by the judged JSONs
    assert cell(df, base, "gsm8k/acc").status == T.MISSING
    tex = T.to_latex(df)
    assert r"\dag{}" in tex and "Judge J" in tex
    long = df.copy()
    assert list(long.columns) == T.LONG_COLUMNS


def test_bnf_table6_reads_nested_runs_by_the_results_run_name(tmp_path):
    rng = np.random.default_rng(1)
    d = tmp_path / "runs" / "bnf_llama3_main" / "method~bnf" / "pairing_ratio~0.0"
    js = write_arena_hard(d, "gpt-4o-mini", games_with(rng, 20, 0.5), 40.0, [300] * 20,
                          run="method~bnf/pairing_ratio~0.0")
    df = T.paper_table("bnf/table6", [js], {"0%": "method~bnf/pairing_ratio~0.0"}, SCALE)
    c = cell(df, "method~bnf/pairing_ratio~0.0", "arena_hard/lc_win_rate")
    assert c.label == "0%" and c.ours == pytest.approx(40.0) and not c.judge_tag.endswith(("*", "†"))


def test_asft_table2_arena_hard_and_the_gpt4_column(tmp_path):
    rng = np.random.default_rng(2)
    root = tmp_path / "runs" / "asft_llama3_uf"
    js = []
    for run, judge in (("base~meta-llama-3-8b-instruct", "gpt-4-1106-preview"), ("method~asft", OTHER)):
        js.append(write_arena_hard(root / run, judge, games_with(rng, 30, 0.4), 30.0, [400] * 30))
        js.append(write_mt_bench(root / run, "gpt-4" if judge != OTHER else OTHER, [(8.0, 7.0)] * 10))
    df = T.paper_table("asft/table2", js, {"SFT": "base~meta-llama-3-8b-instruct"}, SCALE)
    sft = "base~meta-llama-3-8b-instruct"
    assert cell(df, sft, "mt_bench/score_gpt4").ours == pytest.approx(7.5)
    assert cell(df, sft, "mt_bench/score_gpt4").paper_judge == "gpt-4"
    assert not cell(df, sft, "mt_bench/score_gpt4").judge_tag.endswith("*")
    assert cell(df, sft, "arena_hard/win_rate").paper_judge == "gpt-4-1106-preview"
    assert cell(df, "method~asft", "mt_bench/score_gpt4").judge_tag.endswith("*")      # the default row
    # one MT-Bench result (by gpt-4): the GPT-4 Turbo column is empty, with the reason
    turbo = cell(df, sft, "mt_bench/score_gpt4_turbo")
    assert turbo.status == T.MISSING and math.isnan(turbo.ours) and turbo.paper_judge == "gpt-4-1106-preview"
    assert "no result of base~meta-llama-3-8b-instruct judged by gpt-4-1106-preview" in turbo.note
    assert "eval/mt_bench@gpt-4-1106-preview.json" in turbo.note
    assert math.isnan(cell(df, "method~asft", "mt_bench/score_gpt4_turbo").ours)     # OTHER's result: the GPT-4 column


def test_asft_table2_both_mt_bench_columns_from_two_judges(tmp_path):
    """The same answers judged by gpt-4 (eval/mt_bench.json) and again by gpt-4-1106-preview
    (eval/mt_bench@gpt-4-1106-preview.json): each MT-Bench column takes its paper judge's result."""
    root = tmp_path / "runs" / "asft_llama3_uf"
    sft = "base~meta-llama-3-8b-instruct"
    js = [write_mt_bench(root / sft, "gpt-4", [(8.0, 7.0)] * 10),
          write_mt_bench(root / sft, "gpt-4-1106-preview", [(6.0, 7.0)] * 10, extra=True)]
    assert js[1].name == "mt_bench@gpt-4-1106-preview.json" and js[0].name == "mt_bench.json"
    df = T.paper_table("asft/table2", js, {"SFT": sft}, SCALE)
    gpt4, turbo = cell(df, sft, "mt_bench/score_gpt4"), cell(df, sft, "mt_bench/score_gpt4_turbo")
    assert gpt4.status == turbo.status == T.OK
    assert gpt4.ours == pytest.approx(7.5) and turbo.ours == pytest.approx(6.5)
    assert gpt4.judge == "gpt-4" and gpt4.paper_judge == "gpt-4" and "the paper's judge (gpt-4)" in gpt4.note
    assert turbo.judge == "gpt-4-1106-preview" and turbo.paper_judge == "gpt-4-1106-preview"
    assert "the paper's judge (gpt-4-1106-preview)" in turbo.note
    assert not gpt4.judge_tag.endswith(("*", "†")) and not turbo.judge_tag.endswith(("*", "†"))
    assert gpt4.judge_tag != turbo.judge_tag and len(df.attrs["judges"]) == 2
    # the order of the files does not matter; a third MT-Bench result by the same judge is two values of one cell
    df = T.paper_table("asft/table2", js[::-1], {"SFT": sft}, SCALE)
    assert cell(df, sft, "mt_bench/score_gpt4").ours == pytest.approx(7.5)
    assert cell(df, sft, "mt_bench/score_gpt4_turbo").ours == pytest.approx(6.5)
    other = write_mt_bench(tmp_path / "x" / sft, "gpt-4", [(1.0, 1.0)] * 10)
    with pytest.raises(ValueError, match="different values for mt_bench/mt_bench/score"):
        T.paper_table("asft/table2", [*js, other], {"SFT": sft}, SCALE)
    # only the extra judge's result: the GPT-4 column keeps today's rule (another judge's result, marked), the
    # GPT-4 Turbo column its own
    df = T.paper_table("asft/table2", [js[1]], {"SFT": sft}, SCALE)
    assert cell(df, sft, "mt_bench/score_gpt4_turbo").ours == pytest.approx(6.5)
    assert math.isnan(cell(df, sft, "mt_bench/score_gpt4").ours)


def test_bnf_table5_lengths_in_the_papers_units_and_no_judge(bnf_results):
    root, paths = bnf_results
    jsons = [p for ps in paths.values() for p in ps]
    df = T.paper_table("bnf/table5", jsons, {"Base@Meta-Llama-3-8B-Instruct": "base~meta-llama-3-8b-instruct",
                                             "BNF@Meta-Llama-3-8B-Instruct": "method~bnf"}, SCALE)
    base = "base~meta-llama-3-8b-instruct"
    wb = cell(df, base, "wildbench/avg_length")
    assert wb.ours == pytest.approx(3000.0)          # the leaderboard's Length: empty and truncated answers left out
    assert wb.unit == "length" and wb.judge_tag == "" and wb.judge == ""
    ah = cell(df, base, "arena_hard/avg_length")
    assert ah.ours == pytest.approx(np.mean([500 + k for k in range(40)]))     # tokens
    assert cell(df, "method~bnf", "wildbench/avg_length").judge_tag == ""       # offline-judged: lengths still real
    notes = " ".join(df.attrs["column_notes"])
    assert "tiktoken" in notes and "leaderboard Length" in notes
    assert not df.attrs["judges"]


def test_a_csv_of_eval_csv_does_not_record_the_judge(bnf_results, tmp_path):
    root, paths = bnf_results
    base = "base~meta-llama-3-8b-instruct"
    csv = tmp_path / "evals.csv"
    write_csv(collect(paths[base], [base, base]), csv)
    df = T.paper_table("bnf/table4", [csv], {"Base@Meta-Llama-3-8B-Instruct": base}, SCALE)
    c = cell(df, base, "arena_hard/win_rate")
    assert c.judge_tag.endswith("*") and "judge not recorded" in c.note
    # the CSV and the JSONs together: the same values, the JSON's judge kept
    df = T.paper_table("bnf/table4", [csv] + paths[base], {"Base@Meta-Llama-3-8B-Instruct": base}, SCALE)
    c = cell(df, base, "arena_hard/win_rate")
    assert c.judge == "gpt-4o-mini" and not c.judge_tag.endswith("*")


def test_paper_judges_are_the_judges_yaml_ones_and_the_items_name_their_files():
    judges = yaml.safe_load((ROOT / "configs/judges.yaml").read_text())["paper_judges"]
    for (paper, key), model in T.PAPER_JUDGES.items():
        src = T.judged_source(key)
        if src is not None:
            listed = judges[paper][src.judged]
            listed = listed if isinstance(listed, list) else [listed]
            extra = T.extra_judged(paper, key)       # a further model of the list: an extra judge's column
            assert (listed[0] == model and extra is None) if extra is None else (
                model in listed[1:] and extra == f"{src.judged}@{model}"), (paper, key)
        assert key in pn.info(f"{paper}/table2" if paper == "asft" else "bnf/table4")["metrics"], key
    assert set(T.item_judged("asft/table2")) == {"arena_hard", "mt_bench"}
    assert set(T.item_judged("bnf/table4")) == set(T.item_judged("bnf/table6")) == {"arena_hard", "wildbench"}
    assert set(T.item_judged("bnf/table5")) == {"arena_hard", "wildbench"}
    assert T.item_judged("asft/table3") == [] and T.item_judged("dft/table2") == []


def test_the_demo_offline_results_are_read(tmp_path):
    d = ROOT / "results/runs/demo/base~smollm2-135m-instruct/eval"
    if not (d / "arena_hard.json").is_file():
        pytest.skip("no demo judged results here (make demo writes them)")
    df = T.paper_table("asft/table2", [d / "arena_hard.json", d / "mt_bench.json"],
                       {"SFT": "base~smollm2-135m-instruct"}, SCALE)
    ours = df[df.run == "base~smollm2-135m-instruct"]
    assert set(ours[ours.status == T.OK].judge_tag) == {"J1†", "J2†"}


# ------------------------------------------------------------------------------ targets index
def assert_not_built_yet(items, experiments: list[str], tmp_path, commands: list[str]) -> None:
    """The targets index's checks pass for ``items`` (configs/targets.yaml entries), each is "not built
    yet" for ``experiments`` in an empty tree, and its page names each `snakemake <target>` command."""
    from negfree.report.targets import check_targets, report

    assert check_targets(items, ROOT) == []
    statuses = report(items, experiments, "t.md", "ph", root=tmp_path)
    assert set(statuses.values()) == {"not built yet"}
    md = (tmp_path / "t.md").read_text()
    for command in commands:
        assert f"`snakemake {command}`" in md, command


def test_judged_items_are_buildable_in_the_targets_index(tmp_path):
    from negfree.report.targets import load_targets

    targets = {t.id: t for t in load_targets(ROOT / "configs/targets.yaml")}
    for item in ("asft/table2", "bnf/table4", "bnf/table5", "bnf/table6"):
        t = targets[item]
        assert t.files == [f"results/tables/{{exp}}/paper~{item.replace('/', '_')}.md"], item
        assert "paid" not in (t.missing or "") and "no DAG protocol" not in (t.missing or ""), item
    assert targets["bnf/table5"].missing is None
    assert targets["asft/table2"].missing is None and not targets["asft/table2"].needs   # both MT-Bench judges
    for item in ("bnf/table4", "bnf/table6"):
        assert "maintained sandboxed harness for executing CRUX's code was not wired" in targets[item].missing
        assert "ZeroEval's CRUX runs model-generated code" in targets[item].missing
        assert "not computable from one model's results" in targets[item].missing
    mine = [targets[i] for i in ("asft/table2", "bnf/table4", "bnf/table5", "bnf/table6", "bnf/fig3_fig4")]
    assert_not_built_yet(mine, ["asft_llama3_uf", "bnf_llama3_main"], tmp_path, ["asft_table2", "bnf_table5"])


def test_a_judged_protocol_is_a_protocol_of_the_dag_for_the_targets_check(tmp_path):
    from negfree.report.targets import check_targets, load_targets

    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump({"items": [
        {"id": "asft/table2", "what": "x", "missing": "Arena-Hard has no DAG protocol.",
         "needs": [{"no_protocol": "arena_hard"}]},
        {"id": "bnf/table5", "what": "x", "missing": "Wild-Bench has no DAG protocol.",
         "needs": [{"no_protocol": "wild_bench"}]},
        {"id": "bnf/table6", "what": "x", "missing": "It is judged in the DAG by one judge.",
         "needs": [{"judged": {"experiment": "configs/paper/dft.yaml", "protocols": ["wildbench"]}},
                   {"paper_judge": {"paper": "bnf", "protocol": "wildbench", "judge": "gpt-4o"}}]},
        {"id": "bnf/table4", "what": "x", "missing": "Its Elo is not computable.",
         "needs": [{"not_computable": "wildbench_score"}]},
    ]}))
    problems = check_targets(load_targets(cfg), ROOT)
    assert any("asft/table2" in p and "arena_hard is a judged protocol of the DAG" in p for p in problems)
    assert any("bnf/table5" in p and "wild_bench is a judged protocol of the DAG" in p for p in problems)
    assert any("bnf/table6" in p and "configs/paper/dft.yaml does not judge wildbench" in p for p in problems)
    assert any("bnf/table6" in p and "paper_judges.bnf.wildbench is 'gpt-4o-2024-05-13'" in p for p in problems)
    assert any("bnf/table4" in p and "wildbench_score()" in p for p in problems)


def test_the_paper_configs_render_the_judged_items():
    from negfree.jobs.dag import Experiment
    from negfree.report.claims import paper_rows_of

    for name, items in (("asft", {"asft/table2"}), ("bnf", {"bnf/table4", "bnf/table5", "bnf/table6"}),
                        ("bnf_mistral", {"bnf/table4", "bnf/table5"})):
        exp = Experiment(yaml.safe_load((ROOT / f"configs/paper/{name}.yaml").read_text()), name)
        assert items <= set(exp.paper_tables), name
        rows = paper_rows_of(exp)
        for item in items:
            runs = {r["run_dir"].rsplit("/", 1)[-1] for r in rows if r["item"] == item}
            assert any(r.startswith("base~") for r in runs), (name, item)


# ------------------------------------------------------------------------------ claims ledger
def _run(root: Path, run: str, method: str) -> Path:
    d = root / run
    d.mkdir(parents=True, exist_ok=True)
    if not run.startswith("base~"):
        (d / "config.json").write_text(json.dumps({"method": method, "seed": 0, "lr": 1e-6}))
        (d / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 1.0}) + "\n")
    return d


def _claim(cid: str, paper: str, check: dict, requires=("judge",)) -> dict:
    return {"id": cid, "paper": paper, "statement": cid, "source": "test", "check": check,
            "needs": {"targets": [check.get("paper_item", "asft/table2")], "runs": []}, "requires": list(requires)}


CLAIMS = [
    _claim("ah.asft_beats_sft", "asft", {"kind": "compare", "metric": "arena_hard/win_rate", "a": {"method": "asft"},
                                         "b": {"method": "base"}, "expect": "a > b", "paper_item": "asft/table2"}),
    _claim("mt.asft_beats_sft", "asft", {"kind": "compare", "metric": "mt_bench/score_gpt4", "a": {"method": "asft"},
                                         "b": {"method": "base"}, "expect": "a > b", "paper_item": "asft/table2"}),
    _claim("mt.turbo", "asft", {"kind": "close", "metric": "mt_bench/score_gpt4_turbo", "a": {"method": "asft"},
                                "b": {"method": "base"}, "abs_tol": 0.15, "paper_item": "asft/table2"}),
    _claim("ah.paper_value", "asft", {"kind": "paper_value", "metric": "arena_hard/win_rate",
                                      "select": [{"method": "asft"}], "paper_item": "asft/table2"}),
    _claim("lc.bnf", "bnf", {"kind": "compare", "metric": "arena_hard/lc_win_rate", "a": {"method": "asft"},
                             "b": {"method": "base"}, "expect": "a > b", "paper_item": "bnf/table4"}),
    _claim("len.shorter", "bnf", {"kind": "compare", "metric": "arena_hard/avg_length", "a": {"method": "asft"},
                                  "b": {"method": "base"}, "expect": "a < b", "paper_item": "bnf/table5"}, requires=()),
]


def _ledger(tmp_path: Path, judge: str, turbo: bool = False) -> pd.DataFrame:
    """asft clearly above the base model on Arena-Hard (per prompt) and MT-Bench (per question), with
    shorter answers; every judged result by ``judge``."""
    rng = np.random.default_rng(3)
    root = tmp_path / judge.replace("/", "_") / "asft_llama3_uf"
    for run, method, p, rating, tokens in (("base~meta-llama-3-8b-instruct", "base", 0.2, 5.0, 600),
                                           ("method~asft", "asft", 0.8, 8.0, 400)):
        d = _run(root, run, method)
        write_arena_hard(d, judge, games_with(rng, 200, p), lc=p * 100,
                         tokens=[int(t) for t in tokens + rng.integers(-50, 50, 200)])
        write_mt_bench(d, judge if judge != "gpt-4-1106-preview" else "gpt-4",
                       [(float(rating + rng.integers(-1, 2)), float(rating + rng.integers(-1, 2))) for _ in range(80)])
        if turbo:       # the same answers judged again by GPT-4 Turbo (eval/mt_bench@gpt-4-1106-preview.json)
            write_mt_bench(d, "gpt-4-1106-preview", [(float(rating), float(rating))] * 80, extra=True)
    claims = tmp_path / "claims.yaml"
    claims.write_text(yaml.safe_dump({"version": 1, "claims": CLAIMS,
                                      "paper_value_tolerance": {"arena_hard/*": {"abs": 60.0, "why": "test"}}}))
    return claims_ledger(claims, root, None, tmp_path / "c.csv", tmp_path / "c.md", SCALE).set_index("id")


def test_the_papers_judge_gives_verdicts(tmp_path):
    df = _ledger(tmp_path, "gpt-4-1106-preview")     # asft's Arena-Hard judge (and gpt-4 for MT-Bench)
    r = df.loc["ah.asft_beats_sft"]
    assert r.verdict == REPRODUCED and r.uncertainty == TEST_ITEMS and "200 test items" in r.measurement
    assert "judged by gpt-4-1106-preview" in r.measurement
    r = df.loc["mt.asft_beats_sft"]
    assert r.verdict == REPRODUCED and "80 test items" in r.measurement
    r = df.loc["mt.turbo"]             # no result of the extra judge here (mt_bench@gpt-4-1106-preview.json)
    assert r.verdict == NOT_CHECKABLE and "mt_bench@gpt-4-1106-preview.json" in r.reason
    r = df.loc["ah.paper_value"]
    assert r.verdict == REPRODUCED and "the paper's 32.5 +- 60" in r.measurement     # a wide test band
    # the LC win rate: a fitted model, no per-prompt scores; one training seed: no interval
    r = df.loc["lc.bnf"]
    assert r.verdict == NOT_CHECKABLE and "fitted model" in r.reason and "3 seeds" in r.reason
    # lengths: the answers', paired by prompt
    r = df.loc["len.shorter"]
    assert r.verdict == REPRODUCED and r.uncertainty == TEST_ITEMS and "no judge" in r.measurement


def test_the_ledger_reads_the_extra_judges_result(tmp_path):
    """Two MT-Bench results per run (gpt-4 and gpt-4-1106-preview): each claim reads its column's judge."""
    df = _ledger(tmp_path, "gpt-4-1106-preview", turbo=True)
    assert df.loc["mt.asft_beats_sft"].verdict == REPRODUCED
    r = df.loc["mt.turbo"]             # asft 8.0 vs base 5.0 by GPT-4 Turbo: not within 0.15
    assert r.verdict == "contradicted" and "judge differs" not in r.reason, r.reason
    assert "mt_bench/score judged by gpt-4-1106-preview" in r.measurement and "80 test items" in r.measurement


def test_another_judge_is_never_reproduced(tmp_path):
    df = _ledger(tmp_path, OTHER)
    r = df.loc["ah.asft_beats_sft"]
    assert r.verdict == INCONCLUSIVE
    assert f"judge differs from the paper's ({OTHER} vs gpt-4-1106-preview)" in r.reason
    assert "reads reproduced" in r.reason
    r = df.loc["mt.asft_beats_sft"]
    assert r.verdict == INCONCLUSIVE and f"judge differs from the paper's ({OTHER} vs gpt-4)" in r.reason
    r = df.loc["ah.paper_value"]
    assert r.verdict == NOT_CHECKABLE and "the protocols differ: judge differs from the paper's" in r.reason
    assert df.loc["lc.bnf"].verdict == NOT_CHECKABLE
    assert f"({OTHER} vs gpt-4o-mini)" in df.loc["lc.bnf"].reason
    assert df.loc["len.shorter"].verdict == REPRODUCED                # a length is no judge's
    assert (df.verdict != REPRODUCED).sum() == len(df) - 1


def test_the_offline_judge_is_not_checkable(tmp_path):
    df = _ledger(tmp_path, OFFLINE_MODEL)
    for cid, paper in (("ah.asft_beats_sft", "gpt-4-1106-preview"), ("mt.asft_beats_sft", "gpt-4"),
                       ("ah.paper_value", "gpt-4-1106-preview"), ("lc.bnf", "gpt-4o-mini")):
        r = df.loc[cid]
        assert r.verdict == NOT_CHECKABLE, cid
        assert f"judge differs from the paper's ({OFFLINE_MODEL} vs {paper})" in r.reason, cid
        assert "OFFLINE judge" in r.reason and "needs a paid LLM judge" in r.reason, cid
    assert df.loc["len.shorter"].verdict == REPRODUCED


def test_the_real_asft_claims_with_another_judge(tmp_path):
    """configs/claims.yaml's asft Table 2 claims on runs judged by another model: none reproduced."""
    rng = np.random.default_rng(4)
    root = tmp_path / "asft_llama3_uf"
    for run, method, p in (("base~meta-llama-3-8b-instruct", "base", 0.2), ("method~dpo", "dpo", 0.5),
                           ("method~ipo", "ipo", 0.5), ("method~orpo", "orpo", 0.5), ("method~asft", "asft", 0.9)):
        d = _run(root, run, method)
        write_arena_hard(d, OTHER, games_with(rng, 200, p), 30.0, [400] * 200)
        write_mt_bench(d, OTHER, [(8.0, 8.0)] * 80)
    from negfree.jobs.dag import Experiment
    from negfree.report.claims import paper_rows_of

    exp = Experiment(yaml.safe_load((ROOT / "configs/paper/asft.yaml").read_text()), "asft.yaml")
    rows = [{**r, "run_dir": str(root / Path(r["run_dir"]).relative_to(exp.runs_root))} for r in paper_rows_of(exp)]
    df = claims_ledger(ROOT / "configs/claims.yaml", root, None, tmp_path / "c.csv", tmp_path / "c.md", SCALE,
                       paper_rows=rows).set_index("id")
    judged = df.loc[[i for i in df.index if i.startswith("asft.table2.")]]
    assert len(judged) >= 3 and not (judged.verdict == REPRODUCED).any()
    r = df.loc["asft.table2.best_arena_hard"]
    assert r.verdict == INCONCLUSIVE and f"judge differs from the paper's ({OTHER} vs gpt-4-1106-preview)" in r.reason
