"""The one place per-token log-probs are taken.

``logits`` [R, T, V] come from a causal LM; ``labels`` [R, T] hold at position t the
token that logits[:, t] predicts (already shifted), ``mask`` [R, T] is 1 on answer
tokens. Only answer positions are processed, in chunks of ``chunk`` positions,
each under activation checkpointing: the fp32 log-softmax of one chunk exists at
a time, in the forward and again in the backward, never a [tokens x vocab] fp32
tensor for the whole batch.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint


def _chunk_stats(logits: Tensor, targets: Tensor, with_plogp: bool):
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()   # one chunk at a time; float64 stays float64 (tests)
    lse = torch.logsumexp(logits, dim=-1)
    tok = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse
    if not with_plogp:
        return tok, torch.zeros_like(tok)
    logp = logits - lse.unsqueeze(-1)
    plogp = (logp.detach().exp() * logp).sum(-1)   # sum_v sg[p_v] log p_v (BNF's vocabulary term)
    return tok, plogp


def token_logprobs(logits: Tensor, labels: Tensor, mask: Tensor, *, with_plogp: bool = False,
                   chunk: int = 1024) -> tuple[Tensor, Tensor | None]:
    """Per-token log pi(y_t | prefix) at answer positions (0 elsewhere), shape [R, T].

    With ``with_plogp`` also returns sum_v sg[p_v] log p_v per position, the only
    vocabulary-wide quantity BNF needs.
    """
    if logits.shape[:2] != labels.shape or labels.shape != mask.shape:
        raise ValueError(f"shape mismatch: logits {tuple(logits.shape)}, labels {tuple(labels.shape)}, "
                         f"mask {tuple(mask.shape)}")
    flat_mask = mask.reshape(-1).bool()
    idx = flat_mask.nonzero(as_tuple=True)[0]
    flat_logits = logits.reshape(-1, logits.shape[-1])
    flat_labels = labels.reshape(-1)
    toks, plogps = [], []
    need_grad = torch.is_grad_enabled() and logits.requires_grad
    for start in range(0, idx.numel(), chunk):
        sel = idx[start:start + chunk]
        args = (flat_logits.index_select(0, sel), flat_labels.index_select(0, sel), with_plogp)
        if need_grad:
            tok, plogp = checkpoint(_chunk_stats, *args, use_reentrant=False)
        else:
            tok, plogp = _chunk_stats(*args)
        toks.append(tok)
        plogps.append(plogp)
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    out_tok = logits.new_zeros(flat_labels.shape, dtype=dtype)
    out_plogp = logits.new_zeros(flat_labels.shape, dtype=dtype)
    if toks:
        out_tok = out_tok.index_put((idx,), torch.cat(toks))
        out_plogp = out_plogp.index_put((idx,), torch.cat(plogps))
    return out_tok.view_as(labels), (out_plogp.view_as(labels) if with_plogp else None)


def shift_for_causal_lm(input_ids: Tensor, answer_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Labels and mask aligned with logits: logits[:, t] predicts input_ids[:, t + 1]."""
    labels = torch.zeros_like(input_ids)
    labels[:, :-1] = input_ids[:, 1:]
    mask = torch.zeros_like(answer_mask)
    mask[:, :-1] = answer_mask[:, 1:]
    return labels, mask


def answer_logit_slice(answer_start: int, length: int) -> slice:
    """Logits at position t predict token t+1, so answer token k of a sequence whose
    answer starts at ``answer_start`` sits at logit position answer_start - 1 + k."""
    return slice(answer_start - 1, length - 1)
