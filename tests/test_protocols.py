"""Protocols: YAMLs resolve to the intended tasks/shots/metrics; aggregation maths;
evaluate_protocol end to end on the local twin tasks with the tiny model."""
import json
import math

import pytest

from negfree.evaluate import protocols as P
from negfree.evaluate.local import write_tasks


@pytest.fixture(scope="module")
def manager():
    return P.task_manager()          # lm-eval's task YAMLs + ours; no data is read


# ----------------------------------------------------------------- resolution
EXPECTED = {   # protocol -> {task: (num_fewshot, metric key, chat template)}
    "openllm_dft": {"arc_challenge": (25, "acc_norm,none", False), "hellaswag": (10, "acc_norm,none", False),
                    "truthfulqa_mc2": (0, "acc,none", False), "mmlu": (5, "acc,none", False),
                    "winogrande": (5, "acc,none", False), "gsm8k": (5, "exact_match,strict-match", False),
                    "ifeval": (0, "prompt_level_strict_acc,none", True)},
    "openllm_ift": {"arc_challenge": (25, "acc_norm,none", True), "mmlu": (5, "acc,none", True),
                    "truthfulqa_mc2": (0, "acc,none", True), "winogrande": (5, "acc,none", True),
                    "gsm8k": (5, "exact_match,strict-match", True)},
    "math_zeroshot": {"negfree_gsm8k_metamath": (0, "exact_match,none", False),
                      "negfree_math_metamath": (0, "exact_match,none", False)},
    "bnf_reasoning": {"gsm8k_cot_zeroshot": (0, "exact_match,flexible-extract", True),
                      "negfree_math_l5_zeroshot": (0, "exact_match,none", True),
                      "mmlu_redux_generative": (0, "exact_match,default", True)},
}


def test_protocol_table_matches_the_papers():
    assert set(P.PROTOCOLS) == set(EXPECTED)
    for name, tasks in EXPECTED.items():
        proto = P.PROTOCOLS[name]
        got = {t: (c.num_fewshot[t], c.metrics[t], c.chat_template) for c in proto.calls for t in c.metrics}
        assert got == tasks, name
    dft = P.PROTOCOLS["openllm_dft"]
    assert [c.chat_template for c in dft.calls] == [False, True]       # IFEval only with the template
    assert dft.aggregate == "mean" and P.PROTOCOLS["openllm_ift"].aggregate == "mean"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_protocol_yamls_resolve(manager, name):
    if name == "openllm_dft":
        pytest.importorskip("langdetect")      # lm-eval's IFEval YAML imports it
        pytest.importorskip("immutabledict")
    resolved = P.resolve(name, manager)
    proto = P.PROTOCOLS[name]
    assert list(resolved) == [c.group for c in proto.calls]
    for call in proto.calls:
        got = resolved[call.group]
        leaves = got["tasks"]
        covered = set()
        for task, key in call.metrics.items():
            metric, _, filt = key.partition(",")
            members = got["groups"].get(task, [task])       # a group (mmlu) stands for its leaves
            assert members and all(m in leaves for m in members), (task, members[:3])
            for m in members:
                cfg = leaves[m]
                assert cfg["num_fewshot"] == call.num_fewshot[task], (m, cfg["num_fewshot"])
                assert metric in cfg["metrics"], (m, cfg["metrics"])
                assert filt in cfg["filters"], (m, cfg["filters"])
            covered |= set(members)
        assert covered == set(leaves), set(leaves) - covered     # nothing else runs
    if name == "openllm_dft":
        assert len(resolved["negfree_openllm_dft"]["groups"]["mmlu"]) == 57


def test_math_tasks_derive_from_lm_eval_datasets(manager):
    resolved = P.resolve("math_zeroshot", manager)["negfree_math_zeroshot"]["tasks"]
    gsm = resolved["negfree_gsm8k_metamath"]
    assert gsm["dataset"] == ["openai/gsm8k", "main"]
    assert gsm["doc_to_text"].startswith("Below is an instruction that describes a task.")
    assert gsm["doc_to_text"].endswith("### Response: Let's think step by step.")
    subjects = sorted(cfg["dataset"][1] for t, cfg in resolved.items() if t.startswith("negfree_math_"))
    assert subjects == ["algebra", "counting_and_prob", "geometry", "intermediate_algebra",
                        "num_theory", "prealgebra", "precalc"]
    assert {cfg["dataset"][0] for t, cfg in resolved.items() if t.startswith("negfree_math_")} \
        == {"EleutherAI/hendrycks_math"}


def test_metamath_answer_extraction():
    import importlib.util

    spec = importlib.util.spec_from_file_location("mm", P.TASKS_DIR / "metamath_utils.py")
    mm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mm)
    doc = {"answer": "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs.\n#### 1,018"}
    assert mm.gsm8k_process_results(doc, ["So 1000 + 18 = 1018.\nThe answer is: 1,018"]) == {"exact_match": 1}
    assert mm.gsm8k_process_results(doc, ["The answer is 1018"]) == {"exact_match": 0}   # MetaMath's colon
    assert mm.metamath_number("x. The answer is: 7/2") == 4          # fractions are evaluated, rounded
    assert mm.metamath_math_answer("so $x=3$.\nThe answer is: \\frac{1}{2}.") == "\\frac{1}{2}"
    assert mm.math_process_results({"answer": "\\frac{1}{2}"}, ["The answer is: \\frac12"]) == {"exact_match": 1}
    assert mm.boxed_process_results({"answer": "5"}, ["thus \\boxed{4} no, \\boxed{5}"]) == {"exact_match": 1}
    assert mm.boxed_process_results({"answer": "5"}, ["The answer is 5"]) == {"exact_match": 0}


def test_a_task_is_scored_by_one_call_only():
    call = P.Call("g", False, metrics={"t": "acc,none"}, num_fewshot={"t": 0})
    with pytest.raises(ValueError, match="task 't' is scored by more than one call"):
        P.Protocol(name="dup", source="test", calls=(call, call))


def test_unknown_names_fail_clearly(manager, tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown protocol 'openllm_v9'; known: bnf_reasoning"):
        P.evaluate_protocol(tiny_model_dir, "openllm_v9", tmp_path / "x.json")
    bad = P.Protocol(name="bad", source="test", calls=(
        P.Call("negfree_openllm_ift", True, metrics={"arc_challenge": "acc,none", "arc_challange": "acc,none"},
               num_fewshot={}),))
    with pytest.raises(ValueError, match="lm-eval does not know 'arc_challange'"):
        P.check_known(bad, manager)


# ----------------------------------------------------------------- aggregation
def _lm_eval_result(values: dict, n: int = 100) -> dict:
    """A fabricated lm-eval results dict (the shape simple_evaluate returns)."""
    results = {}
    for task, (key, value) in values.items():
        metric, _, filt = key.partition(",")
        results[task] = {"alias": task, key: value, f"{metric}_stderr,{filt}": 0.01}
    return {"results": results, "n-samples": {t: {"original": n, "effective": n} for t in values}}


def test_dft_average_is_the_papers():
    # dft.txt Table 8, gamma = 0.8 row: AVG. 62.82
    paper = {"mmlu": 61.42, "truthfulqa_mc2": 51.08, "hellaswag": 83.90, "winogrande": 78.14,
             "gsm8k": 48.22, "arc_challenge": 64.51, "ifeval": 52.50}
    proto = P.PROTOCOLS["openllm_dft"]
    by_call = {}
    for call in proto.calls:
        by_call[call.group] = _lm_eval_result(
            {t: (key, paper[t] / 100) for t, key in call.metrics.items()})
    summary = P.summarize(proto, by_call)
    assert summary["aggregate"]["missing"] == []
    assert round(summary["aggregate"]["value"], 2) == 62.82
    assert summary["tasks"]["gsm8k"]["stderr"] == 0.01 and summary["tasks"]["ifeval"]["n"] == 100
    assert summary["tasks"]["ifeval"]["chat_template"] is True


def test_failed_call_leaves_a_hole_not_a_number():
    proto = P.PROTOCOLS["openllm_dft"]
    base = proto.calls[0]
    by_call = {base.group: _lm_eval_result({t: (k, 0.5) for t, k in base.metrics.items()}),
               "negfree_openllm_dft_chat": None}
    summary = P.summarize(proto, by_call)
    assert summary["aggregate"]["value"] is None and summary["aggregate"]["missing"] == ["ifeval"]
    assert summary["tasks"]["arc_challenge"]["value"] == 0.5


def test_average_rank_reproduces_bnf_table4():
    # bnf.txt Table 4, Meta-Llama-3-8B-Instruct: values and the paper's average rank
    cols = ["elo", "wb_score", "ah_lc", "ah_wr", "gsm8k", "math", "crux", "mmlu"]
    rows = {"Base": ([1131, 29.2, 33.9, 36.1, 78.5, 6.8, 38.1, 62.4], 6.00),
            "SLiC-HF": ([1142, 33.2, 49.1, 46.3, 66.6, 8.3, 33.9, 61.4], 6.00),
            "DPO": ([1155, 39.5, 60.4, 62.2, 70.5, 8.5, 31.8, 56.4], 3.75),
            "IPO": ([1146, 36.1, 50.1, 51.3, 79.9, 9.2, 39.2, 59.8], 3.75),
            "KTO": ([1139, 34.7, 45.4, 45.8, 78.8, 10.0, 38.9, 63.7], 4.13),
            "ORPO": ([1149, 36.2, 49.6, 49.2, 74.8, 9.3, 34.5, 63.5], 3.88),
            "SimPO": ([1149, 37.2, 52.2, 52.5, 56.6, 6.0, 32.6, 55.0], 5.25),
            "BNF": ([1153, 37.5, 54.8, 52.1, 77.0, 9.3, 35.4, 61.4], 2.88)}
    ranks = P.average_rank({r: dict(zip(cols, v)) for r, (v, _) in rows.items()})
    for run, (_, paper) in rows.items():
        assert round(ranks[run]["average_rank"] + 1e-9, 2) == paper, run
    assert ranks["ORPO"]["ranks"]["elo"] == ranks["SimPO"]["ranks"]["elo"] == 3
    assert ranks["IPO"]["ranks"]["elo"] == 5


# ----------------------------------------------------------------- end to end
def test_evaluate_protocol_tiny_end_to_end(tiny_model_dir, embedded_dir, tmp_path):
    tasks_dir = tmp_path / "tasks"
    write_tasks(embedded_dir / "test.jsonl", tasks_dir)
    # a registered task whose data is missing: its call must fail alone
    (tasks_dir / "negfree_broken.yaml").write_text(
        "task: negfree_broken\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {tmp_path / 'nowhere.jsonl'}\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: '{{question}}'\n"
        "doc_to_choice: choices\ndoc_to_target: label\nmetadata:\n  version: 1.0\n")
    proto = P.Protocol(
        name="tiny_twin", source="test", aggregate="mean", include_path=(str(tasks_dir),),
        include_defaults=False,
        calls=(P.Call("negfree_mc", False, metrics={"negfree_mc": "acc_norm,none"},
                      num_fewshot={"negfree_mc": 0}),
               P.Call("negfree_broken", False, metrics={"negfree_broken": "acc,none"},
                      num_fewshot={"negfree_broken": 0}),
               P.Call("negfree_gen", True, metrics={"negfree_gen": "exact_match,strict-match"},
                      num_fewshot={"negfree_gen": 0})))
    out = tmp_path / "eval" / "tiny_twin.json"
    with pytest.raises(P.EvaluationFailed, match=r"no results for negfree_broken \(.*nowhere\.jsonl"):
        P.evaluate_protocol(tiny_model_dir, proto, out, limit=3, batch_size=4)
    assert not out.exists()                       # a task without results fails the job, not a hole
    out = out.with_suffix(".failed.json")         # the record is kept beside it
    rec = json.loads(out.read_text())
    status = {c["group"]: c["status"] for c in rec["calls"]}
    assert status == {"negfree_mc": "ok", "negfree_broken": "failed", "negfree_gen": "ok"}
    broken = next(c for c in rec["calls"] if c["group"] == "negfree_broken")
    assert "nowhere.jsonl" in broken["error"] or "FileNotFound" in broken["error"]
    mc = rec["tasks"]["negfree_mc"]
    assert 0.0 <= mc["value"] <= 1.0 and mc["n"] == 3 and math.isfinite(mc["stderr"])
    assert rec["tasks"]["negfree_broken"]["value"] is None
    assert rec["aggregate"] == {"rule": "mean", "value": None, "scale": 100.0,
                                "missing": ["negfree_broken"]}
    ok = next(c for c in rec["calls"] if c["group"] == "negfree_mc")
    assert ok["config"]["limit"] == 3 and ok["task_configs"]["negfree_mc"]["num_fewshot"] == 0
    assert rec["seed"] == P.DEFAULT_SEED and rec["versions"]["lm_eval"] == "0.4.13"
    rows = [json.loads(x) for x in (tmp_path / "eval" / "tiny_twin.samples.jsonl").read_text().splitlines()]
    assert {(r["call"], r["task"]) for r in rows} == {("negfree_mc", "negfree_mc"), ("negfree_gen", "negfree_gen")}
    chat = [r for r in rows if r["call"] == "negfree_gen"]
    assert chat[0]["prompt"].startswith("<|user|>\n")          # the chat-template call used it
    from negfree.evaluate.aggregate import aggregate
    rows = aggregate([out], tmp_path / "tidy.csv", runs=["tiny"])
    assert [(r["task"], r["metric"]) for r in rows] == [
        ("negfree_mc", "acc_norm,none"), ("negfree_broken", "acc,none"),
        ("negfree_gen", "exact_match,strict-match"), ("aggregate", "mean (x100)")]
    assert rows[0]["value"] == mc["value"] and rows[0]["n"] == 3


def test_cli_dry_run_lists_the_protocol(capsys):
    from negfree.evaluate.commands import main_evaluate

    main_evaluate(["--model", "unused", "--out", "unused.json", "--protocol", "math_zeroshot", "--dry-run"])
    out = capsys.readouterr().out
    assert out.startswith("negfree_math_zeroshot:\n")
    assert "negfree_gsm8k_metamath" in out and "0-shot  exact_match" in out
    with pytest.raises(SystemExit, match="negfree evaluate: unknown protocol 'nope'"):
        main_evaluate(["--model", "m", "--out", "o.json", "--protocol", "nope", "--dry-run"])
