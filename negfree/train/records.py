"""What a scored record must hold for a method, and which negatives each epoch uses."""
from __future__ import annotations

import json
import math
import random

import numpy as np

from negfree.common.batching import RefSum, check_answers, mismatched_of, ref_length
from negfree.data.tokenize import render_prompt


def check_records(records: list[dict], method, num_negatives: int, source, negatives: bool | None = None) -> None:
    """Stop before any training if a record lacks what the method needs (one message, naming it)."""
    if not records:
        raise ValueError(f"{source}: no records")
    unpaired = [r.get("id") for r in records if r.get("paired") is False]
    if unpaired and not method.unpaired:
        raise ValueError(f"{source}: {len(unpaired)} records have one side dropped (pairing-ratio masking, "
                         f"e.g. {unpaired[0]!r}); method '{method.name}' needs both sides of every pair")
    for r in records:
        where = f"{source}: record {r.get('id', '?')}"
        dropped = r.get("dropped") if r.get("paired") is False else None
        if dropped != "positive" and not str(r.get("positive") or "").strip():
            raise ValueError(f"{where}: empty positive answer")
        if (method.needs_negatives if negatives is None else negatives) and dropped != "negatives":
            pool = r.get("negatives") or []
            if len(pool) < num_negatives:
                raise ValueError(f"{where}: B={num_negatives} negatives requested but the pool has {len(pool)}")
            check_answers([r], source)   # no empty negative (the same rule as scoring)
        if method.needs_reference or method.needs_mismatched:
            ref = r.get("ref")
            if not ref or (ref.get("positive") is None and dropped != "positive"):
                raise ValueError(f"{where}: method '{method.name}' needs reference log-probs; run "
                                 f"'negfree score' on this data first")
            if method.needs_negatives and len(ref.get("negatives", [])) != len(r.get("negatives", [])):
                raise ValueError(f"{where}: reference log-probs cover {len(ref.get('negatives', []))} of "
                                 f"{len(r['negatives'])} negatives")
            if method.needs_mismatched and ref.get("mismatched") is None:
                raise ValueError(f"{where}: method '{method.name}' needs mismatched-pair reference log-probs "
                                 f"(score with mismatched: true)")


def compact_references(record: dict, per_token: bool) -> dict:
    """Shrink a scored record's reference log-probs as it is read: float32 arrays (``per_token``:
    methods that read them token by token, BNF) or :class:`RefSum` (every other method). JSON's
    Python floats cost ~32 bytes each on every process (≈ 40 GB per rank for dft_metamath).
    A value that is not a list of finite numbers is left as it is for check_references to name."""
    def compact(values):
        if not isinstance(values, list):
            return values
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            return values
        if arr.ndim != 1 or not np.isfinite(arr).all():
            return values
        return arr.astype(np.float32) if per_token else RefSum(float(arr.sum()), len(arr))

    ref = record.get("ref")
    if ref:
        record["ref"] = {k: ([compact(v) for v in vals] if k == "negatives" and isinstance(vals, list)
                             else compact(vals)) for k, vals in ref.items()}
    return record


def check_references(tok, records: list[dict], method, cfg: dict, source) -> None:
    """Stop before any training if a reference value the run will read is missing, not a finite
    number, or does not line up with the answer's tokens as this run encodes them (the answer was
    edited after scoring, or scored with another tokenizer or max_len). Without this, a bad value
    surfaces only when its batch comes up, after the run directory is written, and a NaN in a
    record no step visits never surfaces at all."""
    for i, r in enumerate(records):
        ref = r.get("ref") or {}
        answers = [] if r.get("positive") is None else [("positive", r["positive"], ref.get("positive"))]
        if cfg["num_negatives"] > 0:
            refs = ref.get("negatives") or []
            answers += [(f"negative {j}", a, refs[j] if j < len(refs) else None)
                        for j, a in enumerate(r.get("negatives") or [])]
        if method.needs_mismatched:
            answers.append(("mismatched", mismatched_of(records, i)["positive"], ref.get("mismatched")))
        prompt = render_prompt(tok, r["prompt"], fallback_template=cfg["fallback_template"])
        # one tokenizer call per record: the prompt, then every answer (61K prompts x a pool each)
        ids = tok([prompt] + [a for _, a, _ in answers], add_special_tokens=False)["input_ids"]
        room = cfg["max_len"] - len(ids[0])
        for (what, answer, values), answer_ids in zip(answers, ids[1:]):
            where = f"{source}: record {r['id']} ({what})"
            if isinstance(values, (RefSum, np.ndarray)):   # compacted: finite by construction
                finite = True
            elif not isinstance(values, list):
                raise ValueError(f"{where}: no reference log-probs; run 'negfree score' on this data")
            else:
                try:
                    finite = all(map(math.isfinite, values))
                except TypeError:   # null (how JSON writers store NaN) or a string
                    finite = False
            if not finite:
                k = next(k for k, v in enumerate(values)
                         if not isinstance(v, (int, float)) or not math.isfinite(v))
                raise ValueError(f"{where}: reference log-prob {k} is {json.dumps(values[k])}, not a finite "
                                 f"number; re-run 'negfree score'")
            n_answer = len(range(len(answer_ids) + 1)[:room])   # as encode(): answer + end token, cut to fit
            if ref_length(values) != n_answer:
                raise ValueError(f"{where}: {ref_length(values)} reference log-probs for {n_answer} "
                                 f"answer tokens: the answer changed after scoring, or was scored with another "
                                 f"tokenizer or max_len (train max_len {cfg['max_len']}); re-run 'negfree score'")


def negative_indices(record: dict, index: int, epoch: int, b: int, seed: int) -> list[int]:
    """The B pool entries epoch ``epoch`` uses: a seeded permutation of the pool, consumed B at a time,
    so no negative repeats until the pool (E*B in the papers) is used up; then it wraps."""
    if b == 0 or not record.get("negatives"):   # no pool, or dropped by pairing-ratio masking
        return []
    pool = len(record["negatives"])
    perm = list(range(pool))
    random.Random(f"{seed}:{index}").shuffle(perm)
    start = (epoch * b) % pool
    return [perm[(start + k) % pool] for k in range(b)]
