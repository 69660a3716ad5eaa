"""Negative generation: a pool of answers sampled from the base model for each prompt.

The four prompting strategies of dft.txt B.5 are named here (and only here):
``direct`` (the user text, no template), ``chat`` (the chat template),
``chat_good`` (+ the UltraFeedback 'good' system message), ``chat_bad``
(+ "You are an unhelpful assistant.", the paper's best). Temperature 0 means
greedy. Sampling uses top_p 1.0 and top_k 50 as in the paper's setup.

Prompts are sampled in batches (left padded). Each batch is seeded from
(seed, index of its first prompt), so a rerun gives the same pool.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from .data.tokenize import render_prompt
from .io import write_json, write_jsonl

GOOD_SYSTEM = ("The assistant should answer truthfully and be faithful to factual knowledge as well as "
               "given contexts, never making up any new facts that aren't true or cannot be grounded "
               "in the instruction.")
BAD_SYSTEM = "You are an unhelpful assistant."
STRATEGIES = {
    "direct": dict(chat=False, system=None),
    "chat": dict(chat=True, system=None),
    "chat_good": dict(chat=True, system=GOOD_SYSTEM),
    "chat_bad": dict(chat=True, system=BAD_SYSTEM),
}


def strategy(name: str) -> dict:
    if name not in STRATEGIES:
        raise ValueError(f"unknown prompting strategy '{name}'; known: {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


@torch.no_grad()
def sample_answers(model, tokenizer, prompts: list[str], *, num: int, temperature: float, top_p: float = 1.0,
                   top_k: int = 50, max_new_tokens: int = 320, seed: int = 0) -> list[list[str]]:
    """``num`` answers for each prompt text; greedy (one distinct answer, repeated) at temperature 0."""
    tokenizer.padding_side = "left"
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    torch.manual_seed(seed)
    greedy = temperature == 0
    out = model.generate(
        **enc, do_sample=not greedy, temperature=None if greedy else temperature,
        top_p=None if greedy else top_p, top_k=None if greedy else top_k,
        num_return_sequences=1 if greedy else num, max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    per = 1 if greedy else num
    grouped = [texts[i * per:(i + 1) * per] for i in range(len(prompts))]
    return [[t.strip() for t in g] * (num if greedy else 1) for g in grouped]


def generate_negatives(model_dir: str | Path, records: list[dict], out_path: str | Path, *, num: int,
                       strategy_name: str = "chat_bad", temperature: float = 0.7, top_p: float = 1.0,
                       top_k: int = 50, max_new_tokens: int = 320, batch_size: int = 8, seed: int = 0,
                       fallback_template: bool = False) -> dict:
    """Write ``records`` with a pool of ``num`` negatives each to ``out_path`` (JSONL + manifest)."""
    from .models import load_model, load_tokenizer

    if num < 1:
        raise ValueError(f"num={num}: the pool needs at least one negative per prompt")
    if temperature < 0:
        raise ValueError(f"temperature={temperature} must be >= 0")
    how = strategy(strategy_name)
    tok = load_tokenizer(model_dir)
    model = load_model(model_dir).eval()
    start, n_tokens, out = time.time(), 0, []
    for b in range(0, len(records), batch_size):
        batch = records[b:b + batch_size]
        prompts = [render_prompt(tok, r["prompt"], system=how["system"], chat=how["chat"],
                                 fallback_template=fallback_template) for r in batch]
        answers = sample_answers(model, tok, prompts, num=num, temperature=temperature, top_p=top_p,
                                 top_k=top_k, max_new_tokens=max_new_tokens, seed=seed * 1_000_003 + b)
        for r, negs in zip(batch, answers):
            n_tokens += sum(len(tok(a, add_special_tokens=False)["input_ids"]) for a in negs)
            out.append({**r, "negatives": negs})
        print(f"[generate] {min(b + batch_size, len(records))}/{len(records)} prompts", flush=True)
    elapsed = time.time() - start
    write_jsonl(out_path, out)
    manifest = {
        "model": str(model_dir), "strategy": strategy_name, "system": how["system"], "chat": how["chat"],
        "temperature": temperature, "top_p": top_p, "top_k": top_k, "max_new_tokens": max_new_tokens,
        "num": num, "seed": seed, "prompts": len(out), "generated_tokens": n_tokens,
        "empty_negatives": sum(1 for r in out for a in r["negatives"] if not a),
        "seconds": round(elapsed, 2), "tokens_per_second": round(n_tokens / max(elapsed, 1e-9), 2),
    }
    write_json(Path(str(out_path) + ".manifest.json"), manifest)
    return manifest
