"""The losses of the five papers: sft, dft, dft2, minorsft, sft_dpo, asft, ift, bnf.

Conventions (pinned in ../shared/design/methods.md and docs/methods.md):
S(y) = summed answer log-prob, Sbar = S/|y|, S0 = the same under the frozen base
model, sg = stop-gradient. Batch reduction is a mean over prompts unless stated.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from negfree.losses.core import HParam, LossInputs, LossOutput, Seq, detached_metrics, log1mexp, masked_mean, register, require

POS = dict(lo=0.0)            # (0, inf)
UNIT = dict(lo=0.0, hi=1.0)   # (0, 1]


def _likelihood_metrics(inp: LossInputs) -> dict:
    m = {"logp_pos": inp.pos.logp, "logp_pos_per_token": inp.pos.mean}
    if inp.neg is not None:
        m["logp_neg"] = inp.neg.logp
        m["logp_neg_per_token"] = inp.neg.mean
    return detached_metrics(**m)


# ---------------------------------------------------------------------------- SFT
@register(
    "sft",
    paper="standard maximum likelihood; token-mean NLL over the batch (methods.md)",
    needs_reference=False, needs_negatives=False, pairwise=False, token_level=False, reduction="tokens",
)
def sft(inp: LossInputs) -> LossOutput:
    """Token-mean negative log-likelihood of the positives: -sum_i S(y_i) / sum_i |y_i|."""
    loss = -inp.pos.logp.sum() / inp.pos.length.sum()
    return LossOutput(loss, _likelihood_metrics(inp))


# ------------------------------------------------------------------------ DFT/DFT2
def dft_update_log_u(log_u: Tensor, d: Tensor, gamma: float, valid: Tensor | None = None) -> Tensor:
    """Moving-average estimator of g_i in log space (dft.txt Eq. 7, 9-10).

    log u <- logaddexp(log(1-gamma) + log u, log(gamma) + logmeanexp_j d_j).
    ``d`` is [N, B] and detached; gamma = 1 gives the plain mini-batch estimate
    (log(0) = -inf and logaddexp(-inf, a) = a). Never leaves log space, so scores
    near -1e4 stay finite where u itself would underflow to 0.
    """
    d = d.detach()
    if valid is not None:
        d = d.masked_fill(~valid.bool(), float("-inf"))
        count = valid.to(d.dtype).sum(-1)
    else:
        count = torch.full(d.shape[:-1], d.shape[-1], dtype=d.dtype, device=d.device)
    fresh = torch.logsumexp(d, dim=-1) - torch.log(count)
    keep = math.log1p(-gamma) if gamma < 1 else float("-inf")
    return torch.logaddexp(keep + log_u.to(device=d.device, dtype=d.dtype), math.log(gamma) + fresh)


def _dft_loss(inp: LossInputs, s_pos: Tensor, s_neg: Tensor, d: Tensor, gamma: float, name: str) -> LossOutput:
    """Shared body of DFT and DFT2: -s(y) + (1/B) sum_j sg[exp(d_j - log u_new)] s(y'_j).

    Its gradient is dft.txt Eq. 8 (DFT) / Eq. 13 (DFT2): the weights are the
    importance ratios divided by the updated estimator u_{i,t+1}.
    """
    neg = require(inp.neg, name, "negatives")
    log_u = require(inp.log_u, name, "its per-example estimator state log_u")
    new_log_u = dft_update_log_u(log_u, d, gamma, neg.valid)
    w = torch.exp(d.detach() - new_log_u.unsqueeze(-1))
    per_prompt = -s_pos + masked_mean(w * s_neg, neg.valid, dim=-1)
    metrics = _likelihood_metrics(inp)
    metrics.update(detached_metrics(log_u=new_log_u, dft_weight=w))
    metrics["log_u_min"] = new_log_u.detach().min()
    metrics["log_u_max"] = new_log_u.detach().max()
    return LossOutput(per_prompt.mean(), metrics, new_log_u.detach())


@register(
    "dft",
    paper="dft.txt Alg. 1, Eq. 7-10 (score s = S, importance weight 1/P0)",
    needs_reference=True, needs_negatives=True, pairwise=False, token_level=False, stateful=True,
    hyperparameters={
        "tau": HParam(1.0, "dft.txt Table 6 / A.2 (setting 2: tau 1.0)", **POS),
        "gamma": HParam(0.85, "dft.txt Table 6 (setting 2: gamma 0.85; setting 1: 0.95)", **UNIT),
    },
)
def dft(inp: LossInputs, tau: float, gamma: float) -> LossOutput:
    """Discriminative fine-tuning: d_j = S(y'_j)/tau - S0(y'_j), moving-average normaliser u."""
    neg = require(inp.neg, "dft", "negatives")
    d = neg.logp.detach() / tau - require(neg.ref, "dft", "reference log-probs of the negatives (S0)")
    return _dft_loss(inp, inp.pos.logp, neg.logp, d, gamma, "dft")


@register(
    "dft2",
    paper="dft.txt Sec. 5, Eq. 11-13 (score s = Sbar, no reference)",
    needs_reference=False, needs_negatives=True, pairwise=False, token_level=False, stateful=True,
    hyperparameters={
        "tau": HParam(0.3, "dft.txt Table 6 (setting 2: tau 0.3; setting 1: 0.1)", **POS),
        "gamma": HParam(0.90, "dft.txt Table 6 (setting 2: gamma 0.90; setting 1: 0.95)", **UNIT),
    },
)
def dft2(inp: LossInputs, tau: float, gamma: float) -> LossOutput:
    """DFT2: length-normalised score, d_j = Sbar(y'_j)/tau, no P0 weighting."""
    neg = require(inp.neg, "dft2", "negatives")
    d = neg.mean.detach() / tau
    return _dft_loss(inp, inp.pos.mean, neg.mean, d, gamma, "dft2")


# ------------------------------------------------------------------------ MinorSFT
def _deviation(inp: LossInputs) -> dict:
    """minorsft.txt Eq. 8: batch mean of (S - S0)/|y| of the positives."""
    if inp.pos.ref is None:
        return {}
    return {"deviation": ((inp.pos.logp - inp.pos.ref) / inp.pos.length).detach().mean()}


@register(
    "minorsft",
    paper="minorsft.txt Eq. 7 (loss form ours: its gradient is exactly Eq. 7)",
    needs_reference=True, needs_negatives=False, pairwise=False, token_level=False,
    hyperparameters={"beta": HParam(0.04, "minorsft.txt Sec. 4 (beta 0.04)", **POS)},
)
def minorsft(inp: LossInputs, beta: float) -> LossOutput:
    """MinorSFT: -(2/(beta*m)) log sigma(beta * (S - S0)), m = |y|."""
    r = inp.pos.rho("minorsft")
    loss = (-(2.0 / (beta * inp.pos.length)) * F.logsigmoid(beta * r)).mean()
    return LossOutput(loss, {**_likelihood_metrics(inp), **_deviation(inp)})


@register(
    "sft_dpo",
    paper="minorsft.txt Eq. 3 ('SFT using DPO')",
    needs_reference=True, needs_negatives=False, pairwise=False, token_level=False,
    hyperparameters={"beta": HParam(0.04, "minorsft.txt Sec. 4 (beta 0.04)", **POS)},
)
def sft_dpo(inp: LossInputs, beta: float) -> LossOutput:
    """SFT using DPO: -log sigma(beta * (S - S0)) on the positives only."""
    r = inp.pos.rho("sft_dpo")
    loss = -F.logsigmoid(beta * r).mean()
    return LossOutput(loss, {**_likelihood_metrics(inp), **_deviation(inp)})


# ---------------------------------------------------------------------------- ASFT
LOG_P_MAX = -1e-6  # p = exp(Sbar) must stay below 1 for log(1-p); see docs/methods.md


def asft_align(logp_w: Tensor, logp_l: Tensor) -> Tensor:
    """asft.txt Eq. 13: -log sigma(f(y_w)) - log sigma(-f(y_l)), f = log p - log(1-p).

    Written through f exactly as the equation; ``logp_*`` are log p(y) (here Sbar).
    """
    lw = logp_w.clamp(max=LOG_P_MAX)
    ll = logp_l.clamp(max=LOG_P_MAX)
    f_w = lw - log1mexp(lw)
    f_l = ll - log1mexp(ll)
    return -F.logsigmoid(f_w) - F.logsigmoid(-f_l)


@register(
    "asft",
    paper="asft.txt Eq. 13-14 (p = exp(Sbar) [ours]: Eq. 10 / App. B use the whole-sequence probability, available as length_normalize: false)",
    needs_reference=False, needs_negatives=True, pairwise=True, token_level=False,
    hyperparameters={
        "beta": HParam(0.1, "asft.txt Sec. 5 (beta 0.1)", **POS),
        "length_normalize": HParam(True, "methods.md: p = exp(Sbar) [ours, as ORPO does; asft.txt Eq. 10 uses the sequence probability]"),
    },
)
def asft(inp: LossInputs, beta: float, length_normalize: bool) -> LossOutput:
    """ASFT: -Sbar(y_w) + beta * L_align(y_w, y_l), the y_l term averaged over B negatives."""
    neg = require(inp.neg, "asft", "negatives")
    pw = inp.pos.mean if length_normalize else inp.pos.logp
    pl = neg.mean if length_normalize else neg.logp
    align = asft_align(pw.unsqueeze(-1), pl)          # [N, B]
    per_prompt = -inp.pos.mean + beta * masked_mean(align, neg.valid, dim=-1)
    metrics = _likelihood_metrics(inp)
    metrics["likelihood_margin"] = (inp.pos.mean.unsqueeze(-1) - neg.mean).detach().mean()
    return LossOutput(per_prompt.mean(), metrics)


# ----------------------------------------------------------------------------- IFT
def ift_token_weights(tok_loss: Tensor, mask: Tensor, decay: float, propagation: str) -> Tensor:
    """Per-token weights of IFT's Dynamic Relation Propagation (mean 1 over answer tokens).

    ``reference`` (the authors' GitHub trainer, ``get_cumsum_weight``):
    R_t = sum_{k>=t} decay^(k-t) L_k/|y|, w = R |y| / sum_t R_t. ``paper`` (ift.txt
    Eq. 22 with a decay): the double sum sum_n sum_{i>=n} decay^(i-n) L_i gives token i
    the weight c_i = sum_{n<=i} decay^(i-n), normalised to mean 1 [ours: the paper
    does not normalise]. decay = 0 gives w = 1 in both, i.e. sequence-mean SFT: the
    authors' ``get_cumsum_weight`` returns all-ones weights when gamma == 0.
    """
    m = mask.to(tok_loss.dtype)
    if decay == 0:
        return m
    length = m.sum(-1, keepdim=True).clamp_min(1)
    T = tok_loss.shape[-1]
    t = torch.arange(T, device=tok_loss.device, dtype=tok_loss.dtype)
    gap = t.view(1, T) - t.view(T, 1)                  # gap[t, k] = k - t
    kernel = torch.where(gap >= 0, decay ** gap.clamp_min(0), torch.zeros_like(gap))
    if propagation == "reference":
        r = (tok_loss * m / length) @ kernel.T         # R_t = sum_k kernel[t, k] L_k / |y|
    else:                                              # c_i = sum_{n<=i} decay^(i-n), answer positions only
        r = m @ kernel                                 # (m @ kernel)[i] = sum_n m_n kernel[n, i]
    r = r * m
    return r * length / r.sum(-1, keepdim=True).clamp_min(torch.finfo(r.dtype).tiny)


@register(
    "ift",
    paper="ift.txt Sec. 4, App. B.3 (two-pass fused embeddings, Dynamic Relation Propagation)",
    needs_reference=False, needs_negatives=False, pairwise=False, token_level=True, two_pass=True,
    hyperparameters={
        "lam": HParam(0.2, "ift.txt App. B (lambda 0.2)", lo=0.0, hi=1.0, lo_open=False),
        "decay": HParam(0.95, "ift.txt App. B (decay 0.95)", lo=0.0, hi=1.0, lo_open=False),
        "propagation": HParam("reference", "methods.md: the authors' code by default", choices=("reference", "paper")),
        "detach_weights": HParam(False, "methods.md: the authors' code does not detach"),
        "freeze_embedding": HParam(False, "methods.md: the authors' code freezes E [ours: off]"),
    },
)
def ift(inp: LossInputs, lam: float, decay: float, propagation: str, detach_weights: bool,
        freeze_embedding: bool) -> LossOutput:
    """IFT: sum_t w_t L_t / |y|, L_t = -log p(y_t | fused prefix); the trainer fuses with ``lam``."""
    pos = inp.pos
    tok = require(pos.tok, "ift", "per-token log-probs from the fused forward")
    mask = require(pos.mask, "ift", "an answer-token mask").to(tok.dtype)
    tok_loss = -tok * mask
    w = ift_token_weights(tok_loss, mask, decay, propagation)
    if detach_weights:
        w = w.detach()
    per_seq = (w * tok_loss).sum(-1) / mask.sum(-1).clamp_min(1)
    metrics = _likelihood_metrics(inp)
    metrics["ift_weight_max"] = w.detach().max()
    return LossOutput(per_seq.mean(), metrics)


# ----------------------------------------------------------------------------- BNF
def bnf_sequence_loss(seq: Seq, label: float, method: str = "bnf") -> Tensor:
    """bnf.txt Eq. 4-6: -(label/|y|) sum_i [f log p(y_i) + sg[(1-f)/(1-p(y_i))] sum_{t!=y_i} sg[p(t)] log p(t)].

    f = sg[min(p(y_i)/q(y_i), 1)] with q the reference token probability. The
    vocabulary sum arrives precomputed as ``tok_plogp`` = sum_t sg[p(t)] log p(t)
    (chunked in negfree.common.logprobs), so the non-target part is tok_plogp - sg[p(y_i)] log p(y_i).
    Returns one loss per sequence, shape of ``seq.logp``.
    """
    lp = require(seq.tok, method, "per-token log-probs")
    lq = require(seq.tok_ref, method, "per-token reference log-probs")
    plogp = require(seq.tok_plogp, method, "the per-position vocabulary term sum_t p log p")
    mask = require(seq.mask, method, "an answer-token mask").to(lp.dtype)
    with torch.no_grad():
        f = torch.exp(lp - lq).clamp(max=1.0)
        one_minus_p = -torch.expm1(lp)                      # 1 - p(y_i), accurate near p = 1
        coef = torch.where(f >= 1.0, torch.zeros_like(f), (1.0 - f) / one_minus_p.clamp_min(1e-30))
        p = lp.exp()
    others = plogp - p * lp
    per_tok = (f * lp + coef * others) * mask
    return -label * per_tok.sum(-1) / mask.sum(-1).clamp_min(1)


@register(
    "bnf",
    paper="bnf.txt Eq. 4-9, App. B (dynamic target distribution, no hyperparameter)",
    needs_reference=True, needs_negatives=True, pairwise=False, token_level=True, vocab_term=True, unpaired=True,
)
def bnf(inp: LossInputs) -> LossOutput:
    """BNF: label +1 on positives, -1 on negatives; per prompt L(y) + mean_j L(y'_j)."""
    pos_loss = bnf_sequence_loss(inp.pos, 1.0)
    per_prompt = pos_loss if inp.pos.valid is None else pos_loss * inp.pos.valid.to(pos_loss.dtype)
    if inp.neg is not None:
        neg_loss = bnf_sequence_loss(inp.neg, -1.0)
        per_prompt = per_prompt + masked_mean(neg_loss, inp.neg.valid, dim=-1)
    return LossOutput(per_prompt.mean(), _likelihood_metrics(inp))
