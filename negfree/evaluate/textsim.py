"""BLEU-4 and ROUGE-1/2/L of greedy answers against held-out references (asft.txt Table 3:
HH-RLHF and UltraFeedback test answers).

- BLEU-4: sacrebleu's corpus BLEU (4-gram, brevity penalty, 13a tokenisation), 0-100.
- ROUGE-1/2/L: rouge-score F-measure (Porter stemmer), averaged over examples, x100.
asft.txt does not say which implementations it used; these are the standard ones
and both packages come with lm-eval.

Input: JSONL, one record per example, with a prompt (string or chat messages)
and a reference answer; the column names are arguments (the embedded data uses
``prompt`` and ``positive``).

Usage::

    evaluate_textsim("runs/x/checkpoint", "data/hh_rlhf/test.jsonl", "runs/x/eval/textsim_hh.json")
"""
from __future__ import annotations

import json
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from negfree.common.io import atomic_write_text
from negfree.evaluate import greedy

METRICS = ("bleu4", "rouge1", "rouge2", "rougeL")


def score(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Corpus BLEU-4 and mean ROUGE-1/2/L F1, all in 0-100."""
    import sacrebleu
    from rouge_score import rouge_scorer

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        raise ValueError("no examples to score")
    bleu = sacrebleu.corpus_bleu(predictions, [references])   # max_ngram_order 4 by default
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    sums = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for pred, ref in zip(predictions, references):
        for name, s in scorer.score(ref, pred).items():       # score(target, prediction)
            sums[name] += s.fmeasure
    n = len(predictions)
    return {"bleu4": float(bleu.score), **{k: 100.0 * v / n for k, v in sums.items()}}


def _read(path: Path, prompt_field: str, reference_field: str, limit: int | None):
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = rows[:limit] if limit else rows
    for i, r in enumerate(rows):
        for col in (prompt_field, reference_field):
            if col not in r:
                raise ValueError(f"{path} line {i + 1}: missing column {col!r}")
    return rows


def evaluate_textsim(model_dir: str | Path, data: str | Path, out_json: str | Path,
                     prompt_field: str = "prompt", reference_field: str = "positive",
                     limit: int | None = None, max_new_tokens: int = 512, batch_size: int = 8,
                     device: str = "cpu", name: str | None = None) -> dict:
    """Generate greedy answers, score them, write ``out_json`` and the predictions beside it."""
    data, out_json = Path(data), Path(out_json)
    rows = _read(data, prompt_field, reference_field, limit)
    model, tok = greedy.load(model_dir, device)
    gens = greedy.generate(model, tok, [r[prompt_field] for r in rows],
                           max_new_tokens=max_new_tokens, batch_size=batch_size, device=device)
    preds = [g["output"] for g in gens]
    refs = [r[reference_field] for r in rows]
    scores = score(preds, refs)
    dataset = name or data.stem
    record = {
        "model": str(model_dir),
        "protocol": f"textsim_{dataset}",
        "source": "asft.txt Table 3",
        "data": str(data),
        "n": len(rows),
        "scores": scores,
        "metrics": [{"task": dataset, "metric": m, "value": scores[m], "stderr": None,
                     "n": len(rows)} for m in METRICS],
        "implementation": {"bleu4": "sacrebleu.corpus_bleu (13a, 4-gram)",
                           "rouge": "rouge_score F-measure, use_stemmer=True, mean over examples"},
        "generation": {"greedy": True, "chat_template": True, "max_new_tokens": max_new_tokens,
                       "truncated": sum(not g["stopped"] for g in gens)},
        "limit": limit,
        "versions": _versions(),
        "predictions": out_json.with_suffix(".predictions.jsonl").name,
    }
    atomic_write_text(out_json.with_suffix(".predictions.jsonl"), "".join(
        json.dumps({"i": i, "prediction": p, "reference": r, "n_tokens": g["n_tokens"]}) + "\n"
        for i, (p, r, g) in enumerate(zip(preds, refs, gens))))
    atomic_write_text(out_json, json.dumps(record, indent=2, allow_nan=False) + "\n")
    return record


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("sacrebleu", "rouge_score", "transformers", "torch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out
