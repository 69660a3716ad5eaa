"""AlpacaEval: annotator checks, LC eligibility, and an offline end-to-end run through
alpaca_eval with the local (non-GPT-4) annotator."""
import json

import pytest

from negfree.evaluate import alpaca as A

INSTRUCTIONS = [   # project-made, a handful, for the offline run
    "What is the capital of France?",
    "Give me two words that rhyme with cat.",
    "How many legs does a spider have?",
    "Name a primary colour.",
    "What is 3 plus 4?",
]
REFERENCES = ["The capital of France is Paris.", "Hat and bat.", "A spider has eight legs.",
              "Red is a primary colour.", "3 plus 4 is 7."]


def _files(tmp_path, n=len(INSTRUCTIONS)):
    instr = tmp_path / "instructions.json"
    ref = tmp_path / "reference.json"
    instr.write_text(json.dumps([{"instruction": i, "dataset": "negfree_test"} for i in INSTRUCTIONS[:n]]))
    ref.write_text(json.dumps([{"instruction": i, "output": o, "generator": "project_reference"}
                               for i, o in zip(INSTRUCTIONS[:n], REFERENCES)]))
    return instr, ref


def test_missing_openai_key_is_one_clear_message(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    instr, ref = _files(tmp_path)
    with pytest.raises(A.AlpacaEvalError, match="needs OPENAI_API_KEY in the environment"):
        A.evaluate_alpaca(tmp_path / "no_model_needed", instr, ref, tmp_path / "out.json")
    with pytest.raises(ValueError, match="unknown annotator 'gpt5'"):
        A.check_annotator("gpt5", None)
    with pytest.raises(ValueError, match="needs a local judge model"):
        A.check_annotator(A.LOCAL_ANNOTATOR, None)


def test_lc_only_on_the_full_set_in_order(monkeypatch):
    full = [{"instruction": f"q{i}"} for i in range(805)]
    # 805 instructions that are not AlpacaEval's (its digest): LC would read the wrong difficulties
    ok, why = A.lc_eligibility(full, full, None)
    assert not ok and "not AlpacaEval's set" in why
    monkeypatch.setattr(A, "EVAL_SET_SHA256", A.instructions_sha256(full))   # stands in for the 805
    assert A.lc_eligibility(full, full, None) == (True, "full 805-instruction set in its original order")
    ok, why = A.lc_eligibility(full, full, None, protocol="alpaca_eval1")
    assert not ok and "AlpacaEval 1 defines no length-controlled win rate" in why
    ok, why = A.lc_eligibility(full, full, 100)
    assert not ok and "subset" in why
    ok, why = A.lc_eligibility(full, full[::-1], None)
    assert not ok and "order" in why
    ok, why = A.lc_eligibility(full[:5], full[:5], None)
    assert not ok and "5 instructions" in why


def test_local_annotator_end_to_end(tiny_model_dir, tmp_path, monkeypatch):
    pytest.importorskip("alpaca_eval")
    secret = "sk-negfree-test-never-written"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    instr, ref = _files(tmp_path)
    out = tmp_path / "eval" / "alpaca_eval2.json"
    rec = A.evaluate_alpaca(tiny_model_dir, instr, ref, out, annotator=A.LOCAL_ANNOTATOR,
                            judge_model=tiny_model_dir, max_new_tokens=8, batch_size=3, name="tiny")
    assert json.loads(out.read_text()) == rec
    assert rec["annotator_is_alpaca_eval_judge"] is False
    assert rec["win_rate_kind"] == "plain" and "5 instructions" in rec["lc_reason"]
    assert 0.0 <= rec["win_rate"] <= 100.0 and rec["n"] == 5
    outputs = json.loads(out.with_suffix(".outputs.json").read_text())
    assert [o["instruction"] for o in outputs] == INSTRUCTIONS and {o["generator"] for o in outputs} == {"tiny"}
    assert rec["mean_length_chars"] == pytest.approx(sum(len(o["output"]) for o in outputs) / 5)
    ann = json.loads(out.with_suffix(".annotations.json").read_text())
    assert len(ann) == 5 and {a["preference"] for a in ann} <= {1.0, 2.0}
    # the win rate is the mean of the preferences as alpaca_eval scores them (2 = model wins)
    assert rec["win_rate"] == pytest.approx(100 * sum(a["preference"] - 1 for a in ann) / 5)
    for path in out.parent.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(), path


def test_local_judge_prefers_the_likelier_output(tiny_model_dir):
    judge = A.LoglikJudge(tiny_model_dir)
    a, b = "The capital of France is Paris.", "zq xv kk pp zq"
    prompt = A.LOCAL_TEMPLATE.format(instruction="What is the capital of France?", output_1=a, output_2=b)
    la, lb = (judge.mean_logprob("What is the capital of France?", x) for x in (a, b))
    got = judge([prompt])["completions"][0]
    assert got == ("Output (a)" if la >= lb else "Output (b)")
