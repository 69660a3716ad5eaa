"""The inputs of dft.txt Fig. 1 (negfree.report.score_dist), read into its data: the pools of
negatives ``negfree generate`` wrote (``parse_pools``, ``load_pool``), each negative scored under one
checkpoint (``score_pools``: one row per negative, CSV_COLUMNS; the score and how a negative is
conditioned on its prompt are defined in negfree.report.score_dist's docstring)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

CSV_COLUMNS = ["pool", "prompt_index", "record_id", "negative_index", "score", "n_tokens", "logp_sum",
               "truncated"]


# ---------------------------------------------------------------- inputs
def parse_pool(spec: str) -> tuple[str, Path]:
    """'LABEL=PATH' -> (label, path); the label is what the legend and the CSV show. The path is
    what follows the last '=', so a label may hold one ('T=3.0=negs.jsonl')."""
    label, sep, path = spec.rpartition("=")
    label, path = label.strip(), path.strip()
    if not sep or not label or not path:
        raise ValueError(f"--pool {spec!r}: expected LABEL=NEGATIVES.jsonl (e.g. sampling=work/negs/t0.7.jsonl)")
    return label, Path(path)


def parse_pools(specs: list[str]) -> list[tuple[str, Path]]:
    if not specs:
        raise ValueError("give at least one --pool LABEL=NEGATIVES.jsonl")
    pools = [parse_pool(s) for s in specs]
    seen = set()
    for label, _ in pools:
        if label in seen:
            raise ValueError(f"--pool label {label!r} is given twice; labels must be distinct")
        seen.add(label)
    return pools


def load_pool(label: str, path: str | Path, limit: int | None = None) -> list[dict]:
    """The first ``limit`` records of a negatives file (all when None), checked: each has a
    ``negatives`` list of strings, and the pool holds at least one negative."""
    from negfree.data.schema import load_jsonl

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pool {label!r}: negatives file not found: {path}")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit {limit}: must be >= 1 (or left out for every prompt)")
    records = load_jsonl(path)
    records = records[:limit] if limit else records
    for r in records:
        negs = r.get("negatives")
        if not isinstance(negs, list) or not all(isinstance(a, str) for a in negs):
            raise ValueError(f"pool {label!r}: {path} record {r['id']!r} has no 'negatives' list of strings "
                             f"(is this a file written by `negfree generate`?)")
    if not any(r["negatives"] for r in records):
        raise ValueError(f"pool {label!r}: {path} holds no negatives in its first {len(records)} record(s)")
    return records


# ---------------------------------------------------------------- scoring
def score_pools(model_dir: str | Path, pools: list[tuple[str, Path]], *, limit: int | None = None,
                max_len: int = 1024, batch_size: int = 16, fallback_template: bool = False,
                system: str | None = None, device: str | None = None) -> pd.DataFrame:
    """One row per negative of each pool: its score Sbar under ``model_dir`` and its token count."""
    import torch

    from negfree.common.models import load_model, load_tokenizer
    from negfree.data.tokenize import encode, render_prompt
    from negfree.score.reference import answer_token_logprobs

    loaded = [(label, path, load_pool(label, path, limit)) for label, path in pools]   # fail before loading a model
    if batch_size < 1:
        raise ValueError(f"--batch-size {batch_size}: must be >= 1")
    tok = load_tokenizer(model_dir)
    model = load_model(model_dir, device=device).eval()
    jobs = []   # (pool, prompt index, record id, negative index, Encoded)
    for label, path, records in loaded:
        for i, r in enumerate(records):
            prompt = r["prompt"]
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
            text = render_prompt(tok, messages, system=system, fallback_template=fallback_template)
            for j, answer in enumerate(r["negatives"]):
                enc = encode(tok, text, answer, max_len=max_len, where=f"pool {label!r} record {r['id']!r}")
                jobs.append((label, i, r["id"], j, enc))
    rows = []
    with torch.no_grad():
        for b in range(0, len(jobs), batch_size):
            chunk = jobs[b:b + batch_size]
            lps = answer_token_logprobs(model, [e.ids for *_, e in chunk], [e.answer_start for *_, e in chunk],
                                        tok.pad_token_id)
            for (label, i, rid, j, enc), lp in zip(chunk, lps):
                total = float(sum(lp))
                rows.append({"pool": label, "prompt_index": i, "record_id": rid, "negative_index": j,
                             "score": total / len(lp), "n_tokens": len(lp), "logp_sum": total,
                             "truncated": bool(enc.truncated)})
    return pd.DataFrame(rows, columns=CSV_COLUMNS)
