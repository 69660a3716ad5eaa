"""Reference scoring: S0 per token for every answer, stored with the data.

This is the contract that keeps a reference model out of training: every
answer the trainer will see (the positive, each negative, and for KTO the
positive of the next record paired with this prompt) gets its per-token
log-probs under the frozen reference of its stage, computed once here.

By default S0 is conditioned on the training prompt x, as the DFT authors'
code does; ``system`` conditions it on the augmented prompt x-bar instead.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .data.tokenize import encode, render_prompt
from .io import check_writable, write_json, write_jsonl
from .logprobs import answer_logit_slice, model_token_logprobs, shift_for_causal_lm


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


@torch.no_grad()
def answer_token_logprobs(model, seqs: list[list[int]], starts: list[int], pad_id: int) -> list[list[float]]:
    """Per-token log-probs of the answer part of each sequence (one list per sequence)."""
    ids, attn, ans = pad_batch(seqs, starts, pad_id)
    labels, mask = shift_for_causal_lm(ids, ans)
    dev = model.device
    tok, _ = model_token_logprobs(model, model, labels.to(dev), mask.to(dev), input_ids=ids.to(dev),
                                  attention_mask=attn.to(dev))
    out = []
    for i, (s, a) in enumerate(zip(seqs, starts)):
        out.append(tok[i, answer_logit_slice(a, len(s))].tolist())
    return out


def mismatched_of(records: list[dict], i: int) -> dict:
    """KTO's mismatched answer for prompt i: the positive of the next record that has one
    (pairing-ratio masking can drop a positive). The trainer uses the same rule."""
    for k in range(1, len(records) + 1):
        r = records[(i + k) % len(records)]
        if r.get("positive") is not None:
            return r
    raise ValueError("no record has a positive answer")


def answers_of(records: list[dict], i: int, mismatched: bool) -> list[tuple[str, str]]:
    r = records[i]
    items = [] if r.get("positive") is None else [("positive", r["positive"])]
    items += [("negative", a) for a in r.get("negatives", [])]
    if mismatched:
        items.append(("mismatched", mismatched_of(records, i)["positive"]))
    return items


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


def score_records(model_dir: str | Path, records: list[dict], out_path: str | Path, *, max_len: int = 512,
                  max_prompt_len: int | None = None, batch_size: int = 16, system: str | None = None,
                  mismatched: bool = True, fallback_template: bool = False,
                  overlong_prompts: str = "error", source: str | Path | None = None) -> dict:
    """Add ``ref`` = {positive: [...], negatives: [[...]], mismatched: [...]} to every record.

    A prompt over the limit stops scoring naming the record (``overlong_prompts='error'``), or
    (``'skip'``) leaves that record unscored (``ref: null``), counted in the manifest: the
    trainer's ``overlong_prompts: skip`` drops the same records before training. The records,
    the model and the output location are checked before any scoring (``source``: the file
    the records came from, for the messages)."""
    if overlong_prompts not in ("error", "skip"):
        raise ValueError(f"score: overlong_prompts={overlong_prompts!r} is not one of error, skip")
    from .models import load_model, load_tokenizer

    check_answers(records, source)
    check_writable(out_path)

    tok = load_tokenizer(model_dir)
    model = load_model(model_dir).eval()
    jobs = []   # (record index, kind, encoded)
    skipped = set()
    for i, r in enumerate(records):
        prompt = render_prompt(tok, r["prompt"], system=system, fallback_template=fallback_template)
        try:
            mine = [(i, kind, encode(tok, prompt, answer, max_len=max_len, max_prompt_len=max_prompt_len,
                                     where=f"record {r['id']}")) for kind, answer in answers_of(records, i, mismatched)]
        except ValueError:
            if overlong_prompts == "error":
                raise
            skipped.add(i)
            continue
        jobs += mine
    results = []
    for b in range(0, len(jobs), batch_size):
        chunk = jobs[b:b + batch_size]
        results += answer_token_logprobs(model, [e.ids for _, _, e in chunk], [e.answer_start for _, _, e in chunk],
                                         tok.pad_token_id)
    out = [{**r, "ref": None if i in skipped else {"positive": None, "negatives": [], "mismatched": None}}
           for i, r in enumerate(records)]
    for (i, kind, _), lp in zip(jobs, results):
        ref = out[i]["ref"]
        if kind == "negative":
            ref["negatives"].append(lp)
        else:
            ref[kind] = lp
    write_jsonl(out_path, out)
    manifest = {"reference_model": str(model_dir), "records": len(out), "sequences": len(jobs),
                "max_len": max_len, "conditioned_on_system": system, "mismatched": mismatched,
                "truncated_answers": sum(1 for _, _, e in jobs if e.truncated),
                "skipped_overlong_prompts": [records[i]["id"] for i in sorted(skipped)]}
    write_json(Path(str(out_path) + ".manifest.json"), manifest)
    return manifest
