"""Baselines: preference-optimisation losses, one pinned definition each (methods.md).

rho(y) = S(y) - S0(y); Delta = rho(y_w) - rho(y_l). With B negatives per prompt a
pairwise loss is averaged over the B pairs (dft.txt Eq. 14), then over prompts.
Where a loss adds an NLL term on y_w it is the per-sequence mean -Sbar(y_w)
(docs/methods.md says so for each).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from negfree.losses.core import HParam, LossInputs, LossOutput, detached_metrics, log1mexp, pair_mean, register, require
from negfree.losses.negative_free import LOG_P_MAX, _likelihood_metrics

POS = dict(lo=0.0)
NONNEG = dict(lo=0.0, lo_open=False)


def _pair(inp: LossInputs, method: str):
    """Positive broadcast against its B negatives: ([N, 1] positive, [N, B] negatives)."""
    neg = require(inp.neg, method, "negatives or dispreferred answers")
    return inp.pos, neg


def _delta(inp: LossInputs, method: str) -> tuple[Tensor, Tensor, Tensor]:
    pos, neg = _pair(inp, method)
    rw = pos.rho(method).unsqueeze(-1)
    rl = neg.rho(method)
    return rw - rl, rw, rl


def _reward_metrics(inp: LossInputs, chosen: Tensor, rejected: Tensor) -> dict:
    m = _likelihood_metrics(inp)
    chosen, rejected = torch.broadcast_tensors(chosen, rejected)
    m.update(detached_metrics(reward_chosen=chosen, reward_rejected=rejected, reward_margin=chosen - rejected))
    m["reward_accuracy"] = (chosen > rejected).float().mean().detach()
    return m


def _nll_w(inp: LossInputs) -> Tensor:
    return -inp.pos.mean


BETA_DPO = HParam(0.1, "DPO (Rafailov et al. 2023); ift.txt App. B (beta 0.1)", **POS)


@register("dpo", paper="DPO (Rafailov et al. 2023); dft.txt Eq. 14 for B negatives",
          needs_reference=True, needs_negatives=True, pairwise=True, token_level=False,
          hyperparameters={"beta": BETA_DPO})
def dpo(inp: LossInputs, beta: float) -> LossOutput:
    """DPO: -log sigma(beta * (rho(y_w) - rho(y_l)))."""
    delta, rw, rl = _delta(inp, "dpo")
    loss = pair_mean(-F.logsigmoid(beta * delta), inp.neg)
    return LossOutput(loss, _reward_metrics(inp, beta * rw, beta * rl))


@register("spin", paper="SPIN (Chen et al. 2024): DPO on self-generated negatives; dft.txt A.2",
          needs_reference=True, needs_negatives=True, pairwise=True, token_level=False,
          hyperparameters={"beta": HParam(0.1, "dft.txt A.2 (grid {0.01, 0.05, 0.1})", **POS)})
def spin(inp: LossInputs, beta: float) -> LossOutput:
    """SPIN: the DPO loss with the base model's own samples as y_l and pi_0 as reference."""
    return dpo(inp, beta)  # the registered function itself (register returns fn unchanged)


@register("ipo", paper="IPO (Azar et al. 2023), on summed log-probs (TRL length-normalises)",
          needs_reference=True, needs_negatives=True, pairwise=True, token_level=False,
          hyperparameters={"tau": HParam(0.1, "IPO (Azar et al. 2023); asft.txt baselines", **POS)})
def ipo(inp: LossInputs, tau: float) -> LossOutput:
    """IPO: (Delta - 1/(2 tau))^2 with Delta on summed log-probs."""
    delta, rw, rl = _delta(inp, "ipo")
    loss = pair_mean((delta - 1.0 / (2.0 * tau)) ** 2, inp.neg)
    return LossOutput(loss, _reward_metrics(inp, rw, rl))


@register("dpo_p", paper="DPO-Positive / Smaug (Pal et al. 2024); dft.txt Table 2",
          needs_reference=True, needs_negatives=True, pairwise=True, token_level=False,
          hyperparameters={"beta": BETA_DPO,
                           "lam": HParam(50.0, "Smaug (Pal et al. 2024): lambda 50", **NONNEG)})
def dpo_p(inp: LossInputs, beta: float, lam: float) -> LossOutput:
    """DPO-Positive: -log sigma(beta * (Delta - lam * max(0, S0(y_w) - S(y_w))))."""
    delta, rw, rl = _delta(inp, "dpo_p")
    penalty = torch.clamp(-rw, min=0.0)
    loss = pair_mean(-F.logsigmoid(beta * (delta - lam * penalty)), inp.neg)
    return LossOutput(loss, _reward_metrics(inp, beta * rw, beta * rl))


@register("rdpo", paper="R-DPO (Park et al. 2024); dft.txt Table 3",
          needs_reference=True, needs_negatives=True, pairwise=True, token_level=False,
          hyperparameters={"beta": BETA_DPO,
                           "alpha": HParam(0.01, "R-DPO (Park et al. 2024) grid; value ours", **NONNEG)})
def rdpo(inp: LossInputs, beta: float, alpha: float) -> LossOutput:
    """R-DPO: -log sigma(beta * Delta + alpha * (|y_w| - |y_l|)).

    R-DPO maximises E[r - alpha |y|] - beta KL, so its implicit reward is
    beta log(pi/pi_ref) + alpha |y| + c: the length term enters with a plus, and
    with alpha > 0 a longer winner needs a larger log-ratio margin.
    """
    delta, rw, rl = _delta(inp, "rdpo")
    dlen = inp.pos.length.unsqueeze(-1) - inp.neg.length
    loss = pair_mean(-F.logsigmoid(beta * delta + alpha * dlen), inp.neg)
    return LossOutput(loss, _reward_metrics(inp, beta * rw, beta * rl))


@register("minor_dpo", paper="MinorDPO (minorsft.txt Sec. 3, Xie et al. 2024)",
          needs_reference=True, needs_negatives=True, pairwise=True, token_level=False,
          hyperparameters={"beta": BETA_DPO})
def minor_dpo(inp: LossInputs, beta: float) -> LossOutput:
    """MinorDPO: DPO with max(0, rho(y_l)) in place of rho(y_l)."""
    _, rw, rl = _delta(inp, "minor_dpo")
    loss = pair_mean(-F.logsigmoid(beta * (rw - torch.clamp(rl, min=0.0))), inp.neg)
    return LossOutput(loss, _reward_metrics(inp, beta * rw, beta * rl))


SIMPO_HP = {
    "beta": HParam(10.0, "dft.txt A.2 (grid {6, 8, 10, 12}); ift.txt uses 2.0", **POS),
    "gamma_beta_ratio": HParam(0.5, "dft.txt A.2 (ratio 0.5); ift.txt uses 0.8", **NONNEG),
}


def _simpo_terms(inp: LossInputs, beta: float, gamma_beta_ratio: float, method: str):
    pos, neg = _pair(inp, method)
    chosen = beta * pos.mean.unsqueeze(-1)
    rejected = beta * neg.mean
    per_pair = -F.logsigmoid(chosen - rejected - gamma_beta_ratio * beta)
    return pair_mean(per_pair, neg), chosen, rejected


@register("simpo", paper="SimPO (Meng et al. 2024); dft.txt A.2",
          needs_reference=False, needs_negatives=True, pairwise=True, token_level=False,
          hyperparameters=SIMPO_HP)
def simpo(inp: LossInputs, beta: float, gamma_beta_ratio: float) -> LossOutput:
    """SimPO: -log sigma(beta Sbar(y_w) - beta Sbar(y_l) - gamma), gamma = ratio * beta."""
    loss, chosen, rejected = _simpo_terms(inp, beta, gamma_beta_ratio, "simpo")
    return LossOutput(loss, _reward_metrics(inp, chosen, rejected))


@register("simpo_sft", paper="SimPO + SFT (dft.txt Sec. 6, A.2: combining weight 1)",
          needs_reference=False, needs_negatives=True, pairwise=True, token_level=False,
          hyperparameters={**SIMPO_HP, "sft_weight": HParam(1.0, "dft.txt A.2 (weight 1)", **NONNEG)})
def simpo_sft(inp: LossInputs, beta: float, gamma_beta_ratio: float, sft_weight: float) -> LossOutput:
    """SimPO-SFT: the SimPO loss + sft_weight * (-Sbar(y_w))."""
    loss, chosen, rejected = _simpo_terms(inp, beta, gamma_beta_ratio, "simpo_sft")
    loss = loss + sft_weight * _nll_w(inp).mean()
    return LossOutput(loss, _reward_metrics(inp, chosen, rejected))


@register("cpo", paper="CPO (Xu et al. 2024a); dft.txt Table 3",
          needs_reference=False, needs_negatives=True, pairwise=True, token_level=False,
          hyperparameters={"beta": BETA_DPO})
def cpo(inp: LossInputs, beta: float) -> LossOutput:
    """CPO: -log sigma(beta (S(y_w) - S(y_l))) + NLL(y_w)."""
    pos, neg = _pair(inp, "cpo")
    chosen, rejected = beta * pos.logp.unsqueeze(-1), beta * neg.logp
    loss = pair_mean(-F.logsigmoid(chosen - rejected), neg) + _nll_w(inp).mean()
    return LossOutput(loss, _reward_metrics(inp, chosen, rejected))


def log_odds(sbar: Tensor) -> Tensor:
    """log(p / (1 - p)) with p = exp(Sbar), stable for p near 0 and 1."""
    s = sbar.clamp(max=LOG_P_MAX)
    return s - log1mexp(s)


@register("orpo", paper="ORPO (Hong et al. 2024); asft.txt, ift.txt baselines",
          needs_reference=False, needs_negatives=True, pairwise=True, token_level=False,
          hyperparameters={"lam": HParam(0.1, "ORPO (Hong et al. 2024) lambda 0.1; ift.txt uses 0.25", **NONNEG)})
def orpo(inp: LossInputs, lam: float) -> LossOutput:
    """ORPO: NLL(y_w) + lam * (-log sigma(logodds(y_w) - logodds(y_l))), odds on exp(Sbar)."""
    pos, neg = _pair(inp, "orpo")
    lw, ll = log_odds(pos.mean).unsqueeze(-1), log_odds(neg.mean)
    loss = _nll_w(inp).mean() + lam * pair_mean(-F.logsigmoid(lw - ll), neg)
    m = _reward_metrics(inp, lw, ll)
    m["likelihood_margin"] = (pos.mean.unsqueeze(-1) - neg.mean).detach().mean()
    return LossOutput(loss, m)


@register("kto", paper="KTO (Ethayarajh et al. 2024); dft.txt A.2 (lambda_U 1, lambda_D in [B, 1.5B])",
          needs_reference=True, needs_negatives=True, pairwise=False, token_level=False, needs_mismatched=True,
          hyperparameters={
              "beta": HParam(0.1, "dft.txt A.2 (grid {0.01, 0.05, 0.1})", **POS),
              "lambda_d": HParam(1.0, "KTO default 1; dft.txt A.2 sets it in [B, 1.5B] per run", **NONNEG),
              "lambda_u": HParam(1.0, "dft.txt A.2 (lambda_U 1)", **NONNEG),
          })
def kto(inp: LossInputs, beta: float, lambda_d: float, lambda_u: float) -> LossOutput:
    """KTO: lambda_D (1 - sigma(beta (rho(y_w) - z0))) and lambda_U (1 - sigma(beta (z0 - rho(y_l)))).

    z0 = max(0, mean rho over answers paired with a mismatched prompt), detached. With several
    processes the mean runs over every process's mismatched answers of this micro-batch before the
    clamp (``inp.gather``), as TRL's KTOTrainer gathers them: one estimate, whatever the split.
    The loss mean runs over all N desirable and N*B undesirable examples (as KTO does).
    """
    pos, neg = _pair(inp, "kto")
    kl = require(inp.kl, "kto", "log-probs of answers under mismatched prompts (KL estimate)")
    rho_kl = kl.rho("kto").detach()
    if inp.gather is not None:
        rho_kl = inp.gather(rho_kl)
    z0 = rho_kl.mean().clamp(min=0.0)
    rw, rl = pos.rho("kto"), neg.rho("kto")
    desirable = lambda_d * (1.0 - torch.sigmoid(beta * (rw - z0)))
    undesirable = lambda_u * (1.0 - torch.sigmoid(beta * (z0 - rl)))
    if neg.valid is None:
        total, count = desirable.sum() + undesirable.sum(), desirable.numel() + undesirable.numel()
    else:
        v = neg.valid.to(undesirable.dtype)
        total, count = desirable.sum() + (undesirable * v).sum(), desirable.numel() + v.sum()
    m = _reward_metrics(inp, beta * rw.unsqueeze(-1), beta * rl)
    m["kl_z0"] = z0
    return LossOutput(total / count, m)


@register("slic_hf", paper="SLiC-HF (Zhao et al. 2023); bnf.txt Table 2",
          needs_reference=False, needs_negatives=True, pairwise=True, token_level=False,
          hyperparameters={"delta": HParam(1.0, "SLiC-HF (Zhao et al. 2023) margin delta 1", **NONNEG),
                           "lam": HParam(0.1, "SLiC-HF regularisation weight; value ours", **NONNEG)})
def slic_hf(inp: LossInputs, delta: float, lam: float) -> LossOutput:
    """SLiC-HF: max(0, delta - S(y_w) + S(y_l)) + lam * NLL(y_w)."""
    pos, neg = _pair(inp, "slic_hf")
    hinge = torch.clamp(delta - pos.logp.unsqueeze(-1) + neg.logp, min=0.0)
    loss = pair_mean(hinge, neg) + lam * _nll_w(inp).mean()
    return LossOutput(loss, _reward_metrics(inp, pos.logp.unsqueeze(-1), neg.logp))


@register("rrhf", paper="RRHF (Yuan et al. 2023a); dft.txt Table 3",
          needs_reference=False, needs_negatives=True, pairwise=True, token_level=False)
def rrhf(inp: LossInputs) -> LossOutput:
    """RRHF: max(0, Sbar(y_l) - Sbar(y_w)) + NLL(y_w)."""
    pos, neg = _pair(inp, "rrhf")
    rank = torch.clamp(neg.mean - pos.mean.unsqueeze(-1), min=0.0)
    loss = pair_mean(rank, neg) + _nll_w(inp).mean()
    return LossOutput(loss, _reward_metrics(inp, pos.mean.unsqueeze(-1), neg.mean))
