"""Records and batches as scoring and training both see them: which answers a record holds and
which are valid (check_answers, mismatched_of), a reference log-prob kept as a sum (RefSum), how
sequences are cut into padded batches (plan_batches, pad_batch), and the padding and attention
ratios of a set of row lengths (ratios, synthetic_rows), which `negfree bench data` reports and
`negfree plan` sizes memory with."""
from __future__ import annotations

import random
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from negfree.common.logprobs import pack_bins


# ------------------------------------------------------------------ records
def mismatched_of(records: list[dict], i: int) -> dict:
    """KTO's mismatched answer for prompt i: the positive of the next record that has one
    (pairing-ratio masking can drop a positive). The trainer uses the same rule."""
    for k in range(1, len(records) + 1):
        r = records[(i + k) % len(records)]
        if r.get("positive") is not None:
            return r
    raise ValueError("no record has a positive answer")


def check_answers(records: list[dict], source: str | Path | None = None) -> None:
    """Every answer to score is a non-empty string (a side dropped by pairing-ratio masking is
    None or [], not empty): an empty answer has no tokens of its own to score."""
    for r in records:
        where = f"{source}: record {r.get('id')}" if source else f"record {r.get('id')}"
        if r.get("positive") is not None and (not isinstance(r["positive"], str) or not r["positive"].strip()):
            raise ValueError(f"{where}: empty positive answer")
        for j, answer in enumerate(r.get("negatives") or []):
            if not isinstance(answer, str) or not answer.strip():
                raise ValueError(f"{where}: negative {j} is empty; an empty sample is no answer to push "
                                 f"down (regenerate the pool or drop the record)")


class RefSum(NamedTuple):
    """A reference log-prob kept as its sum over the answer (float64) and the number of tokens it
    covers: all that a sequence-level loss reads, in 16 bytes instead of ~32 per token."""
    total: float
    n: int


def ref_length(values) -> int:
    return values.n if isinstance(values, RefSum) else len(values)


# ------------------------------------------------------------------ batches
def pad_batch(seqs: list[list[int]], starts: list[int], pad_id: int):
    """Right-padded ids, attention mask and answer mask for a list of encodings."""
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), T), dtype=torch.long)
    ans = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, (s, a) in enumerate(zip(seqs, starts)):
        ids[i, :len(s)] = torch.tensor(s)
        attn[i, :len(s)] = 1
        ans[i, a:len(s)] = 1
    return ids, attn, ans


def plan_batches(lengths: list[int], *, batch_size: int, max_batch_tokens: int | None = None,
                 sort: bool = True) -> list[list[int]]:
    """Indices into ``lengths`` per batch. ``sort``: longest first (ties in index order), else in
    index order (the unsorted baseline). A batch holds at most ``batch_size`` sequences and, when
    set, ``max_batch_tokens`` padded positions (a longer sequence alone is a batch of its own)."""
    order = sorted(range(len(lengths)), key=lambda k: (-lengths[k], k)) if sort else range(len(lengths))
    batches, cur, width = [], [], 0
    for k in order:
        w = max(width, lengths[k])
        if cur and (len(cur) == batch_size or (max_batch_tokens and (len(cur) + 1) * w > max_batch_tokens)):
            batches.append(cur)
            cur, w = [], lengths[k]
        cur.append(k)
        width = w
    return batches + ([cur] if cur else [])


def padded_positions(lengths: list[int], batches: list[list[int]]) -> int:
    """Token positions the forward computes: each batch is padded to its longest sequence."""
    return sum(len(b) * max(lengths[k] for k in b) for b in batches)


# ------------------------------------------------------------------ padding and attention ratios
# (median tokens, sigma of the log) per part; see negfree/bench/data.py
UF_SHAPE = {"prompt": (110, 0.9), "chosen": (260, 0.7), "negative": (230, 0.6)}


def synthetic_rows(n: int, B: int, max_len: int, max_new_tokens: int, seed: int = 0) -> list[list[int]]:
    """Per record: [positive, negative_1..B] row lengths (prompt + answer + eos, at most max_len)."""
    rng = np.random.default_rng(seed)

    def draw(part, size, cap):
        med, sigma = UF_SHAPE[part]
        return np.clip(np.round(rng.lognormal(np.log(med), sigma, size)), 4, cap).astype(int)

    prompt = draw("prompt", n, max_len // 2)
    chosen = draw("chosen", n, 4096)
    neg = draw("negative", (n, B), max_new_tokens)
    return [[int(min(max_len, p + a + 1)) for a in [c, *ng]] for p, c, ng in zip(prompt, chosen, neg)]


def ratios(rows: list[list[int]], st: dict) -> dict:
    """The padding and attention ratios of one set of records (rows: per record, its row lengths)."""
    mbs = st["micro_batch_size"]
    real = sum(sum(r) for r in rows)

    cap = st.get("pack_capacity") or st["max_len"]   # packed rows of train.pack_capacity (default here: max_len)

    def layout(order) -> dict:
        """Positions computed and attention pairs, summed over the micro-batches of ``order``."""
        sums = dict.fromkeys(("padded_positions", "capacity_positions", "padded", "packed_dense", "varlen",
                              "packed_capacity"), 0)
        for k in range(0, len(order), mbs):
            lens = [x for i in order[k:k + mbs] for x in rows[i]]
            fills = [sum(lens[i] for i in b) for b in pack_bins(lens, cap)]
            sums["padded_positions"] += len(lens) * max(lens)
            sums["capacity_positions"] += len(fills) * max(fills)
            sums["padded"] += len(lens) * max(lens) ** 2
            sums["packed_dense"] += sum(lens) ** 2
            sums["varlen"] += sum(x * x for x in lens)
            sums["packed_capacity"] += sum(f * f for f in fills)
        return sums

    shuffled = list(range(len(rows)))
    random.Random(st["seed"]).shuffle(shuffled)
    bucketed = sorted(range(len(rows)), key=lambda i: (-max(rows[i]), i))
    # scoring also scores KTO's mismatched answer: the next record's positive under this prompt;
    # rows here are whole sequences, so it is approximated by this record's positive length
    seqs = [x for r in rows for x in r + [r[0]]]
    before = plan_batches(seqs, batch_size=st["score_batch_size"], sort=False)
    after = plan_batches(seqs, batch_size=st["score_batch_size"], max_batch_tokens=st["score_max_batch_tokens"])
    order = bucketed if st.get("length_bucketing") else shuffled
    lay_before, lay_bucketed = layout(shuffled), layout(bucketed)
    lay = lay_bucketed if order is bucketed else lay_before
    if st.get("packing"):
        train_after = lay["capacity_positions"] if st.get("pack_capacity") else real
    else:
        train_after = lay["padded_positions"]
    return {"padding_ratio_train_before": round(lay_before["padded_positions"] / real, 4),
            "padding_ratio_train_after": round(train_after / real, 4),
            "padding_ratio_score_before": round(padded_positions(seqs, before) / sum(seqs), 4),
            "padding_ratio_score_after": round(padded_positions(seqs, after) / sum(seqs), 4),
            "padding_ratio_train_bucketed": round(lay_bucketed["padded_positions"] / real, 4),
            "attention_ratio_packed_dense": round(lay["packed_dense"] / lay["padded"], 4),
            "attention_ratio_packed_varlen": round(lay["varlen"] / lay["padded"], 4),
            "padding_ratio_train_packed_capacity": round(lay["capacity_positions"] / real, 4),
            "attention_ratio_packed_capacity": round(lay["packed_capacity"] / lay["padded"], 4),
            "records": len(rows), "real_train_tokens": real, "score_sequences": len(seqs),
            # query-key pairs per layer and head, summed over micro-batches (negfree plan reads these)
            "attention_pairs": {"padded_before": lay_before["padded"], "padded_after": lay["padded"],
                                "packed_dense": lay["packed_dense"], "varlen": lay["varlen"],
                                "packed_capacity": lay["packed_capacity"]}}

