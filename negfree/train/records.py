"""What a scored record must hold for a method, and which negatives each epoch uses."""
from __future__ import annotations

import random


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
