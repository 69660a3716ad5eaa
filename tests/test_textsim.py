"""BLEU-4 / ROUGE: hand-checked values, and greedy answers scored end to end."""
import json
import math

import pytest

from negfree.evaluate.textsim import score, evaluate_textsim


def test_scores_match_hand_computation():
    # BLEU-4 by hand: hypothesis "the cat sat on the mat", reference "the cat sat on a mat":
    # n-gram precisions 5/6, 3/5, 2/4, 1/3, equal lengths (BP = 1)
    # => 100 * (5/6 * 3/5 * 2/4 * 1/3) ** (1/4) = 53.728...
    s = score(["the cat sat on the mat"], ["the cat sat on a mat"])
    assert s["bleu4"] == pytest.approx(100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25, abs=1e-6)
    # ROUGE by hand: "the cat sat" vs "the cat sat on the mat": unigram P=3/3 R=3/6 -> F=2/3;
    # bigram P=2/2 R=2/5 -> F=4/7; LCS=3 -> same as ROUGE-1
    s = score(["the cat sat"], ["the cat sat on the mat"])
    assert s["rouge1"] == pytest.approx(200 / 3) and s["rougeL"] == pytest.approx(200 / 3)
    assert s["rouge2"] == pytest.approx(400 / 7)


def test_rouge_is_averaged_over_examples_and_bleu_is_corpus_level():
    s = score(["the cat sat", "a b c d"], ["the cat sat", "w x y z"])
    assert s["rouge1"] == pytest.approx(50.0)       # (100 + 0) / 2
    assert 0 < s["bleu4"] < 100
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        score(["a", "b"], ["a"])


def test_evaluate_textsim_tiny_model(tiny_model_dir, embedded_dir, tmp_path):
    out = tmp_path / "eval" / "textsim_embedded.json"
    rec = evaluate_textsim(tiny_model_dir, embedded_dir / "test.jsonl", out, limit=3,
                           max_new_tokens=6, batch_size=2, name="embedded")
    assert json.loads(out.read_text()) == rec
    assert rec["n"] == 3 and rec["protocol"] == "textsim_embedded"
    assert {m["metric"] for m in rec["metrics"]} == {"bleu4", "rouge1", "rouge2", "rougeL"}
    assert all(math.isfinite(v) and 0 <= v <= 100 for v in rec["scores"].values())
    preds = [json.loads(x) for x in out.with_suffix(".predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 3 and all(p["n_tokens"] <= 6 for p in preds)
    # the written predictions reproduce the written scores
    assert score([p["prediction"] for p in preds], [p["reference"] for p in preds]) == rec["scores"]


def test_missing_reference_column_is_named(tiny_model_dir, embedded_dir, tmp_path):
    with pytest.raises(ValueError, match="missing column 'answer_text'"):
        evaluate_textsim(tiny_model_dir, embedded_dir / "test.jsonl", tmp_path / "x.json",
                         reference_field="answer_text")
