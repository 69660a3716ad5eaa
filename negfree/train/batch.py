"""One micro-batch: encode prompt + positive + B negatives (+ KTO's mismatched answers)
into one padded batch, run one forward (two for IFT), and cut the per-token
log-probs into the :class:`Seq` views the losses read.

Rows are ordered positives (N), then negatives (N*B, prompt-major), then
mismatched answers (N). Reference log-probs travel with the data (negfree.score.reference)
and are laid on the logit positions that predict each answer token.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from negfree.common.batching import RefSum, pad_batch, ref_length
from negfree.common.logprobs import answer_logit_slice, model_greedy_tokens, model_token_logprobs, shift_for_causal_lm
from negfree.data.tokenize import encode, render_prompt
from negfree.losses import LossInputs, Seq


@dataclass
class Batch:
    ids: torch.Tensor
    attn: torch.Tensor
    answer: torch.Tensor
    ref_tok: torch.Tensor     # reference per-token log-probs at the answer positions (aligned with logits)
    n_prompts: int
    n_neg: int
    has_kl: bool
    has_ref: bool
    pos_tokens: int           # answer tokens of the positives (the unit of token-mean losses)
    pos_valid: torch.Tensor | None = None   # [N] 0 where pairing-ratio masking dropped the positive
    neg_valid: torch.Tensor | None = None   # [N, B] 0 where it dropped the negatives


def collate(tok, records: list[dict], neg_idx: list[list[int]], cfg: dict, kl_records: list[dict],
            use_ref: bool) -> Batch:
    """Encode positives, then the B negatives of each prompt, then (KTO) mismatched answers.

    A side dropped by pairing-ratio masking (``paired: false``) is encoded as an empty
    answer (the end-of-sequence token alone) and marked invalid, so it counts for nothing."""
    seqs, refs = [], []
    B = max((len(i) for i in neg_idx), default=0)
    prompts = [render_prompt(tok, r["prompt"], fallback_template=cfg["fallback_template"]) for r in records]

    def add(prompt, answer, ref, where):
        e = encode(tok, prompt, answer, max_len=cfg["max_len"], max_prompt_len=cfg["max_prompt_len"], where=where)
        n_answer = len(e.ids) - e.answer_start
        if ref is not None and ref_length(ref) != n_answer:
            raise ValueError(f"{where}: {ref_length(ref)} reference log-probs for {n_answer} answer tokens; the data "
                             f"was scored with another tokenizer or max_len (train max_len {cfg['max_len']})")
        seqs.append(e)
        refs.append(ref)

    pos_valid = [r.get("positive") is not None for r in records]
    neg_valid = [bool(idx) for idx in neg_idx]
    for r, p, ok in zip(records, prompts, pos_valid):
        ref = (r["ref"]["positive"] if ok else None) if use_ref else None
        add(p, r["positive"] if ok else "", ref, f"record {r['id']} (positive)")
    for r, p, idx in zip(records, prompts, neg_idx):
        for j in idx:
            add(p, r["negatives"][j], r["ref"]["negatives"][j] if use_ref else None,
                f"record {r['id']} (negative {j})")
        for _ in range(B - len(idx)):
            add(p, "", None, f"record {r['id']} (dropped negatives)")
    for r, p, k in zip(records, prompts, kl_records):
        add(p, k["positive"], r["ref"]["mismatched"], f"record {r['id']} (mismatched)")
    ids, attn, ans = pad_batch([e.ids for e in seqs], [e.answer_start for e in seqs], tok.pad_token_id)
    ref_tok = torch.zeros(ids.shape, dtype=torch.float32)
    for i, (e, ref) in enumerate(zip(seqs, refs)):
        if isinstance(ref, RefSum):   # a sequence-level loss reads only the row's sum
            ref_tok[i, answer_logit_slice(e.answer_start, len(e.ids)).start] = ref.total
        elif ref is not None:
            ref_tok[i, answer_logit_slice(e.answer_start, len(e.ids))] = torch.as_tensor(ref, dtype=torch.float32)
    pos_tokens = sum(len(e.ids) - e.answer_start for e in seqs[:len(records)])
    pv = None if all(pos_valid) else torch.tensor(pos_valid)
    nv = None if all(neg_valid) or not B else torch.tensor(neg_valid).unsqueeze(-1).expand(-1, B).contiguous()
    return Batch(ids, attn, ans, ref_tok, len(records), B, bool(kl_records), use_ref, pos_tokens, pv, nv)


def fused_embeddings(model, ids, attn, answer, lam: float, freeze: bool, chunk: int = 1024,
                     chunked_head: bool = True, packed: bool = False, pack_capacity: int | None = None):
    """IFT pass 1 (no gradient): greedy guesses at answer positions, fused into the input embeddings.

    ``model`` is the unwrapped module: the no-gradient pass must not touch DDP's hooks.
    """
    with torch.no_grad():
        _, before = shift_for_causal_lm(ids, answer)   # logit position t predicts token t + 1
        greedy = model_greedy_tokens(model, before, chunk=chunk, chunked_head=chunked_head, packed=packed,
                                     pack_capacity=pack_capacity, input_ids=ids, attention_mask=attn)
        guess = torch.cat([ids[:, :1], greedy[:, :-1]], dim=1)          # position t: the model's guess for token t
        mixed_ids = torch.where(answer.bool(), guess, ids)              # prompt positions keep the true tokens
    emb = model.get_input_embeddings()
    true_e, guess_e = emb(ids), emb(mixed_ids)
    if freeze:
        true_e, guess_e = true_e.detach(), guess_e.detach()
    return (1 - lam) * true_e + lam * guess_e


def loss_inputs(model, raw_model, batch: Batch, method, hp: dict, log_u: torch.Tensor | None,
                chunk: int, chunked_head: bool = True, packed: bool = False,
                pack_capacity: int | None = None) -> LossInputs:
    """``model`` is what the optimizer trains (possibly DDP/FSDP-wrapped); ``raw_model`` its module.
    ``chunked_head``: apply the output projection chunk-wise at answer positions only
    (``negfree.common.logprobs.model_token_logprobs``); the loop turns it off under FSDP/ZeRO-3.
    ``packed``: each forward (IFT's greedy pass too) runs over the micro-batch's rows packed
    padding-free into one row, or rows of ``pack_capacity`` tokens (``negfree.common.logprobs.pack_inputs``);
    the results are the same."""
    dev = next(raw_model.parameters()).device
    ids, attn, ans = batch.ids.to(dev), batch.attn.to(dev), batch.answer.to(dev)
    labels, mask = shift_for_causal_lm(ids, ans)
    if method.two_pass:
        emb = fused_embeddings(raw_model, ids, attn, ans, hp["lam"], hp["freeze_embedding"], chunk, chunked_head,
                               packed, pack_capacity)
        inputs = {"inputs_embeds": emb, "attention_mask": attn}
    else:
        inputs = {"input_ids": ids, "attention_mask": attn}
    tok, plogp = model_token_logprobs(model, raw_model, labels, mask, with_plogp=method.vocab_term, chunk=chunk,
                                      chunked_head=chunked_head, packed=packed, pack_capacity=pack_capacity,
                                      **inputs)
    mask = mask.to(tok.dtype)
    ref_tok = batch.ref_tok.to(dev)
    N, B = batch.n_prompts, batch.n_neg

    def seq(lo, hi, shape, valid=None):
        t, m, r = tok[lo:hi], mask[lo:hi], ref_tok[lo:hi]
        pl = plogp[lo:hi] if plogp is not None else None
        view = lambda x: None if x is None else x.reshape(*shape, *x.shape[1:])  # noqa: E731
        return Seq(view(t.sum(-1)), view(m.sum(-1)), view(r.sum(-1)) if batch.has_ref else None,
                   view(t), view(r), view(pl), view(m), None if valid is None else valid.to(dev))

    pos = seq(0, N, (N,), batch.pos_valid)
    neg = seq(N, N + N * B, (N, B), batch.neg_valid) if B else None
    kl = seq(N + N * B, N + N * B + N, (N,)) if batch.has_kl else None
    return LossInputs(pos=pos, neg=neg, log_u=log_u, kl=kl)
