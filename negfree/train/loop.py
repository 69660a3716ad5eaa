"""The training loop: any registered method, from a scored dataset, on accelerate.

Read top to bottom: load the scored records -> check them against what the
method needs (the registry says) -> for each optimizer step take ``batch_size``
prompts, each with its positive and B negatives, forward them in one
concatenated batch per micro-batch, build the loss inputs, call the loss,
step. Reference log-probs come from the data (negfree.score), never from a
second model. Methods differ only through their registry entry.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.tokenize import encode, render_prompt
from ..io import write_json
from ..logprobs import shift_for_causal_lm, token_logprobs
from ..losses import LossInputs, Seq, get_method
from ..score import pad_batch
from .records import check_records, negative_indices
from .runlog import MetricsLog, provenance

DEFAULTS = {
    "lr": 1e-5, "epochs": 1, "max_steps": None, "batch_size": 4, "micro_batch_size": 4,
    "num_negatives": 2, "max_len": 256, "max_prompt_len": None, "warmup_ratio": 0.1,
    "scheduler": "cosine", "weight_decay": 0.0, "grad_clip": 1.0, "seed": 0, "hparams": {},
    "gradient_checkpointing": False, "fallback_template": False, "logit_chunk": 1024,
}


@dataclass
class Batch:
    ids: torch.Tensor
    attn: torch.Tensor
    answer: torch.Tensor
    ref_tok: torch.Tensor     # reference per-token log-probs at the answer positions (aligned with logits)
    n_prompts: int
    n_neg: int
    has_kl: bool


def resolve_config(cfg: dict) -> dict:
    unknown = sorted(set(cfg) - set(DEFAULTS) - {"method", "model", "data", "out_dir"})
    if unknown:
        raise ValueError(f"train: unknown key(s) {unknown}")
    for key in ("method", "model", "data", "out_dir"):
        if key not in cfg:
            raise ValueError(f"train: missing required key '{key}'")
    out = {**DEFAULTS, **cfg}
    method = get_method(out["method"])
    out["hparams"] = method.resolve(out.get("hparams") or {})
    if out["batch_size"] % out["micro_batch_size"]:
        raise ValueError(f"train: batch_size={out['batch_size']} is not a multiple of "
                         f"micro_batch_size={out['micro_batch_size']}")
    if not method.needs_negatives:
        out["num_negatives"] = 0
    elif out["num_negatives"] < 1:
        raise ValueError(f"train: method '{method.name}' needs num_negatives >= 1")
    if out["lr"] <= 0:
        raise ValueError(f"train: lr={out['lr']} must be > 0")
    return out


def collate(tok, records: list[dict], neg_idx: list[list[int]], method, cfg: dict, kl_records: list[dict]) -> Batch:
    """Encode positives, then the B negatives of each prompt, then (KTO) mismatched answers."""
    seqs, refs = [], []
    prompts = [render_prompt(tok, r["prompt"], fallback_template=cfg["fallback_template"]) for r in records]

    def add(prompt, answer, ref, where):
        e = encode(tok, prompt, answer, max_len=cfg["max_len"], max_prompt_len=cfg["max_prompt_len"], where=where)
        n_answer = len(e.ids) - e.answer_start
        if ref is not None and len(ref) != n_answer:
            raise ValueError(f"{where}: {len(ref)} reference log-probs for {n_answer} answer tokens; the data "
                             f"was scored with another tokenizer or max_len ({cfg['max_len']})")
        seqs.append(e)
        refs.append(ref)

    need_ref = method.needs_reference
    for r, p in zip(records, prompts):
        add(p, r["positive"], r["ref"]["positive"] if need_ref else None, f"record {r['id']} (positive)")
    for r, p, idx in zip(records, prompts, neg_idx):
        for j in idx:
            add(p, r["negatives"][j], r["ref"]["negatives"][j] if need_ref else None, f"record {r['id']} (negative {j})")
    for r, p, k in zip(records, prompts, kl_records):
        add(p, k["positive"], r["ref"]["mismatched"], f"record {r['id']} (mismatched)")
    ids, attn, ans = pad_batch([e.ids for e in seqs], [e.answer_start for e in seqs], tok.pad_token_id)
    ref_tok = torch.zeros(ids.shape, dtype=torch.float32)
    for i, (e, ref) in enumerate(zip(seqs, refs)):
        if ref is not None:   # logits at t predict token t+1: answer token k sits at position start-1+k
            ref_tok[i, e.answer_start - 1:len(e.ids) - 1] = torch.tensor(ref)
    return Batch(ids, attn, ans, ref_tok, len(records), len(neg_idx[0]) if neg_idx else 0, bool(kl_records))


def fused_embeddings(model, ids, attn, answer, lam: float, freeze: bool):
    """IFT pass 1 (no gradient): greedy guesses at answer positions, fused into the input embeddings."""
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attn).logits
        guess = torch.cat([ids[:, :1], logits.argmax(-1)[:, :-1]], dim=1)   # position t: the model's guess for token t
        mixed_ids = torch.where(answer.bool(), guess, ids)                  # prompt positions keep the true tokens
    emb = model.get_input_embeddings()
    true_e, guess_e = emb(ids), emb(mixed_ids)
    if freeze:
        true_e, guess_e = true_e.detach(), guess_e.detach()
    return (1 - lam) * true_e + lam * guess_e


def loss_inputs(model, batch: Batch, method, hp: dict, log_u: torch.Tensor | None, chunk: int) -> tuple[LossInputs, int]:
    dev = next(model.parameters()).device
    ids, attn, ans = batch.ids.to(dev), batch.attn.to(dev), batch.answer.to(dev)
    if method.two_pass:
        logits = model(inputs_embeds=fused_embeddings(model, ids, attn, ans, hp["lam"], hp["freeze_embedding"]),
                       attention_mask=attn).logits
    else:
        logits = model(input_ids=ids, attention_mask=attn).logits
    labels, mask = shift_for_causal_lm(ids, ans)
    tok, plogp = token_logprobs(logits, labels, mask, with_plogp=method.vocab_term, chunk=chunk)
    mask = mask.to(tok.dtype)
    ref_tok = batch.ref_tok.to(dev)
    N, B = batch.n_prompts, batch.n_neg

    def seq(rows, shape):
        sl = slice(rows[0], rows[1])
        t, m, r = tok[sl], mask[sl], ref_tok[sl]
        pl = plogp[sl] if plogp is not None else None
        view = lambda x: None if x is None else x.reshape(*shape, *x.shape[1:])  # noqa: E731
        return Seq(view(t.sum(-1)), view(m.sum(-1)), view(r.sum(-1)) if method.needs_reference else None,
                   view(t), view(r), view(pl), view(m))

    pos = seq((0, N), (N,))
    neg = seq((N, N + N * B), (N, B)) if B else None
    kl = seq((N + N * B, N + N * B + N), (N,)) if batch.has_kl else None
    return LossInputs(pos=pos, neg=neg, log_u=log_u, kl=kl), int(attn.sum())


def make_scheduler(optimizer, cfg: dict, total_steps: int):
    from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup, get_constant_schedule_with_warmup

    warmup = int(math.ceil(cfg["warmup_ratio"] * total_steps))
    kinds = {"cosine": get_cosine_schedule_with_warmup, "linear": get_linear_schedule_with_warmup}
    if cfg["scheduler"] == "constant":
        return get_constant_schedule_with_warmup(optimizer, warmup)
    if cfg["scheduler"] not in kinds:
        raise ValueError(f"train: scheduler '{cfg['scheduler']}' is not one of cosine, linear, constant")
    return kinds[cfg["scheduler"]](optimizer, warmup, total_steps)


def train(cfg: dict) -> dict:
    """Train one run; writes ``out_dir``/{final/, metrics.jsonl, config.json, provenance.json, timing.json}."""
    from accelerate import Accelerator

    from ..data.embedded import load_jsonl
    from ..models import load_model, load_tokenizer

    cfg = resolve_config(cfg)
    method = get_method(cfg["method"])
    out_dir = Path(cfg["out_dir"])
    records = load_jsonl(cfg["data"])
    check_records(records, method, cfg["num_negatives"], cfg["data"])
    random.seed(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    accelerator = Accelerator(cpu=not torch.cuda.is_available(),
                              mixed_precision="bf16" if torch.cuda.is_available() else "no")
    tok = load_tokenizer(cfg["model"])
    model = load_model(cfg["model"])
    if cfg["gradient_checkpointing"]:
        model.gradient_checkpointing_enable()
    model.train()
    n, bs, mbs = len(records), cfg["batch_size"], cfg["micro_batch_size"]
    steps_per_epoch = n // bs
    if steps_per_epoch == 0:
        raise ValueError(f"train: {n} records cannot fill one batch of {bs}")
    total = steps_per_epoch * cfg["epochs"]
    if cfg["max_steps"] is not None:
        total = min(total, int(cfg["max_steps"]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    scheduler = make_scheduler(optimizer, cfg, total)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    log_u = torch.zeros(n, dtype=torch.float64) if method.stateful else None
    log = MetricsLog(out_dir / "metrics.jsonl")
    write_json(out_dir / "config.json", cfg)
    write_json(out_dir / "provenance.json", provenance())
    t0, step = time.time(), 0
    hp = cfg["hparams"]
    for epoch in range(cfg["epochs"]):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg["seed"] * 1000 + epoch)).tolist()
        for s in range(steps_per_epoch):
            if step >= total:
                break
            ts = time.time()
            idx = order[s * bs:(s + 1) * bs]
            sums, n_tokens = {}, 0
            for m in range(0, bs, mbs):
                mi = idx[m:m + mbs]
                recs = [records[i] for i in mi]
                negs = [negative_indices(records[i], i, epoch, cfg["num_negatives"], cfg["seed"]) for i in mi]
                kl = [records[(i + 1) % n] for i in mi] if method.needs_mismatched else []
                batch = collate(tok, recs, negs, method, cfg, kl)
                lu = log_u[mi] if log_u is not None else None
                inp, ntok = loss_inputs(model, batch, method, hp, lu, cfg["logit_chunk"])
                out = method(inp, **hp)
                if not torch.isfinite(out.loss):
                    raise FloatingPointError(f"step {step}: method '{method.name}' gave loss {out.loss.item()}")
                accelerator.backward(out.loss * len(mi) / bs)
                if out.log_u is not None:
                    log_u[mi] = out.log_u.to(log_u.dtype).cpu()
                n_tokens += ntok
                for k, v in {"loss": out.loss, **out.metrics}.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach()) * len(mi) / bs
            grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
            lr = scheduler.get_last_lr()[0]   # the rate this step uses
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            dt = time.time() - ts
            log.write({"step": step + 1, "epoch": epoch, "lr": lr,
                       "grad_norm": float(grad_norm), "tokens": n_tokens, "tokens_per_s": n_tokens / dt,
                       "seconds": dt, **sums})
            step += 1
    wall = time.time() - t0
    final = out_dir / "final"
    accelerator.unwrap_model(model).save_pretrained(final, safe_serialization=True)
    tok.save_pretrained(final)
    if log_u is not None:
        torch.save(log_u, final / "dft_log_u.pt")
    timing = {"method": method.name, "steps": step, "wall_seconds": round(wall, 3),
              "seconds_per_step": round(wall / max(step, 1), 4), "peak_memory_mb": log.peak_memory_mb()}
    write_json(out_dir / "timing.json", timing)
    return timing
