"""The offline lm-eval twin runs the real harness end to end on a tiny model."""
import json
import math
import re

import pytest

from negfree.evaluate.local import ANSWER_REGEX, evaluate_local, write_tasks


@pytest.mark.parametrize("response,expected", [
    (" Tom has 7 + 5 = 12 apples. The answer is 12.", "12"),
    (" The answer is -3", "-3"),
    (" Paris is the capital of France.", "Paris"),
    ("New Delhi is the capital of India.", "New Delhi"),
    (" Tom has 12 apples.", "Tom"),           # no final answer: strict, so wrong
])
def test_answer_regex_extracts_like_lm_eval(response, expected):
    """Mirror lm-eval's RegexFilter: findall, first match, first non-empty group."""
    match = [g for g in re.findall(ANSWER_REGEX, response)[0] if g][0].strip()
    assert match == expected


def test_write_tasks_registers_everything(embedded_dir, tmp_path):
    from negfree.evaluate.local import _task_manager

    names = write_tasks(embedded_dir / "test.jsonl", tmp_path)
    assert names == ["negfree_mc", "negfree_gen", "negfree_offline"]
    manager = _task_manager(tmp_path, names)
    assert set(names) <= set(manager.all_tasks)
    rows = (tmp_path / "negfree_offline_test.jsonl").read_text().splitlines()
    assert len(rows) == 64 and json.loads(rows[0])["question"]


def test_evaluate_local_tiny_model(tiny_model_dir, embedded_dir, tmp_path):
    out = tmp_path / "eval" / "negfree_offline.json"
    result = evaluate_local(tiny_model_dir, embedded_dir / "test.jsonl", out, limit=4,
                            batch_size=4)
    assert json.loads(out.read_text()) == result
    assert result["protocol"] == "negfree_offline" and result["limit"] == 4
    for task, key in (("negfree_mc", "acc,none"), ("negfree_mc", "acc_norm,none"),
                      ("negfree_gen", "exact_match,strict-match")):
        value = result["tasks"][task][key]
        assert math.isfinite(value) and 0.0 <= value <= 1.0, (task, key, value)
    assert result["n_samples"]["negfree_mc"]["effective"] == 4

    rows = [json.loads(line) for line in
            out.with_suffix(".samples.jsonl").read_text().splitlines()]
    assert sorted({r["task"] for r in rows}) == ["negfree_gen", "negfree_mc"]
    assert len(rows) == 8
    gen = [r for r in rows if r["task"] == "negfree_gen"]
    assert all(isinstance(r["response"], str) and r["filtered_response"] for r in gen)


def test_evaluate_local_with_chat_template(tiny_model_dir, embedded_dir, tmp_path):
    out = tmp_path / "chat.json"
    result = evaluate_local(tiny_model_dir, embedded_dir / "test.jsonl", out,
                            tasks=["negfree_gen"], limit=2, apply_chat_template=True)
    assert list(result["tasks"]) == ["negfree_gen"]
    prompt = json.loads(out.with_suffix(".samples.jsonl").read_text().splitlines()[0])["prompt"]
    assert prompt.startswith("<|user|>\nQuestion:") and prompt.endswith("<|assistant|>\n")


def test_unknown_task_is_named(tiny_model_dir, embedded_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown local lm-eval task 'negfree_nope'"):
        evaluate_local(tiny_model_dir, embedded_dir / "test.jsonl", tmp_path / "x.json",
                       tasks=["negfree_mc", "negfree_nope"])


def test_aggregate_local_and_protocol_jsons_to_tidy_csv(tmp_path):
    import csv

    from negfree.evaluate.aggregate import COLUMNS, aggregate

    local = {"model": "m", "protocol": "negfree_offline",
             "tasks": {"negfree_mc": {"acc,none": 0.5, "acc_stderr,none": 0.1,
                                      "acc_norm,none": 0.25, "acc_norm_stderr,none": 0.05}},
             "n_samples": {"negfree_mc": {"original": 64, "effective": 8}}}
    proto = {"model": "m", "protocol": "openllm_ift", "calls": [],
             "tasks": {"gsm8k": {"metric": "exact_match,strict-match", "value": 0.4, "stderr": 0.02, "n": 50},
                       "ifeval": {"metric": "prompt_level_strict_acc,none", "value": None, "stderr": None,
                                  "n": None}},
             "aggregate": {"rule": "mean", "value": None, "scale": 100.0, "missing": ["ifeval"]}}
    (tmp_path / "runs" / "sft" / "eval").mkdir(parents=True)
    p1 = tmp_path / "runs" / "sft" / "eval" / "negfree_offline.json"
    p2 = tmp_path / "runs" / "sft" / "eval" / "openllm_ift.json"
    p1.write_text(json.dumps(local))
    p2.write_text(json.dumps(proto))
    rows = aggregate([p1, p2], tmp_path / "all.csv")
    with open(tmp_path / "all.csv") as f:
        table = list(csv.DictReader(f))
    assert tuple(table[0]) == COLUMNS and len(table) == len(rows) == 5
    assert table[0] == {"run": "sft", "protocol": "negfree_offline", "task": "negfree_mc",
                        "metric": "acc,none", "value": "0.5", "stderr": "0.1", "n": "8"}
    assert table[1]["metric"] == "acc_norm,none" and table[1]["stderr"] == "0.05"
    assert [r["task"] for r in table[2:]] == ["gsm8k", "ifeval", "aggregate"]
    assert table[3]["value"] == "" and table[4]["value"] == ""      # failed task: empty, not 0
    with pytest.raises(ValueError, match="2 run names for 1 result files"):
        aggregate([p1], tmp_path / "x.csv", runs=["a", "b"])
