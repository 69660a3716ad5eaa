"""Fine-tuning a toy policy with the LLM suite's own losses (negfree.losses).

The analogy, kept literal so that the loss functions are called exactly as the
trainer calls them:

- prompt = the start cell; answer = a trajectory; token y_t = the action a_t;
  the prefix before token t = the cell s_t reached so far (the policy is Markov).
- per-token log-probs ``tok`` = log pi(a_t | s_t) from :func:`negfree.common.logprobs.token_logprobs`
  (the one shared extractor), S = their sum, |y| = the number of steps.
- S0 and ``tok_ref`` come from the base policy, computed once before training and
  stored with the data; no reference network runs during training.
- One prompt per batch (N = 1): the dataset of ift.txt's toy is one start cell.

Where each method's data comes from is decided from the registry's facts, not
from a list of names, except for the one fact the registry cannot know: which
methods ift.txt App. B.2 trained on its preference pair (``PAPER_PAIR_METHODS``).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor

from negfree.common.logprobs import token_logprobs
from negfree.losses import LossInputs, Method, Seq

from negfree.toy.lake import Lake, Trajectories, rollout
from negfree.toy.policies import PolicyNet

# ift.txt App. B.2: "For DPO and ORPO, the optimal and sub-optimal trajectories are
# used as positive and negative samples". Every other method that needs negatives
# gets samples of the base policy (the negative-free setting of dft.txt / bnf.txt).
PAPER_PAIR_METHODS = ("dpo", "orpo")
NEGATIVE_SOURCES = ("auto", "suboptimal", "sampled")

# Changes to the registry defaults, each with its reason. ift.txt App. B.1 uses
# ORPO lambda 0.25 (the registry default 0.1 is ORPO's own paper) and App. B.2
# keeps "similar hyper-parameters as in NLP setting" for the lake.
TOY_HPARAMS = {"orpo": {"lam": 0.25}}

FT_LR = 1e-3        # Adam, constant, the same for every method [ours: a tenth of the imitation fits]
N_NEGATIVES = 4     # B, as dft.txt setting 1 [ours for the toy]


@dataclass
class Batchable:
    """Trajectories with their stored reference per-token log-probs [R, T]."""

    traj: Trajectories
    ref_tok: Tensor

    def select(self, idx) -> "Batchable":
        sub = self.traj.select(idx)
        T = max(int(sub.mask.sum(-1).max()), 1)
        return Batchable(Trajectories(sub.states[:, :T], sub.actions[:, :T], sub.mask[:, :T], sub.reached),
                         self.ref_tok[idx][:, :T])


@dataclass
class ToyData:
    """Everything fine-tuning reads, built once per seed from the base policy."""

    optimal: Batchable      # the target answer, R = 1
    suboptimal: Batchable   # the paper's dispreferred answer, R = 1
    sampled: Batchable      # base-policy rollouts from the start, B fresh ones per step
    mismatched: Batchable   # base-policy rollouts from other starts (KTO's KL term), one per step


@torch.no_grad()
def reference_tokens(base: PolicyNet, traj: Trajectories) -> Tensor:
    tok, _ = token_logprobs(base(traj.states), traj.actions, traj.mask)
    return tok


def build_data(lake: Lake, base: PolicyNet, optimal: Trajectories, suboptimal: Trajectories, steps: int,
               n_negatives: int, horizon: int, generator: torch.Generator) -> ToyData:
    """Sample the base policy once (a pool of steps * B walks, none reused, as DFT's pre-generated pool)."""
    table = base.table()
    starts = torch.full((steps * n_negatives,), lake.start, dtype=torch.long)
    sampled = rollout(lake, table, starts, horizon, generator)
    others = lake.live[lake.live != lake.start]
    other_starts = others[torch.randint(len(others), (steps,), generator=generator)]
    mismatched = rollout(lake, table, other_starts, horizon, generator)

    def stored(traj):
        traj = traj.trimmed()
        return Batchable(traj, reference_tokens(base, traj))

    return ToyData(stored(optimal), stored(suboptimal), stored(sampled), stored(mismatched))


def negative_source(method: Method, negatives: str) -> str | None:
    if negatives not in NEGATIVE_SOURCES:
        raise ValueError(f"negatives={negatives!r} is not one of {list(NEGATIVE_SOURCES)}")
    if not method.needs_negatives:
        return None
    if negatives == "auto":
        return "suboptimal" if method.name in PAPER_PAIR_METHODS else "sampled"
    return negatives


def resolved_hparams(method: Method, overrides: dict | None = None) -> dict:
    return method.resolve({**TOY_HPARAMS.get(method.name, {}), **(overrides or {})})


# ------------------------------------------------------------------------- sequences
def sequence(logits: Tensor, data: Batchable, group: bool = False) -> Seq:
    """Pack one set of trajectories as a Seq; ``group`` puts the R walks on the B axis of one prompt."""
    traj = data.traj
    tok, plogp = token_logprobs(logits, traj.actions, traj.mask, with_plogp=True)
    seq = Seq(logp=tok.sum(-1), length=traj.mask.sum(-1), ref=data.ref_tok.sum(-1), tok=tok,
              tok_ref=data.ref_tok, tok_plogp=plogp, mask=traj.mask)
    if group:
        seq = Seq(*(None if x is None else x.unsqueeze(0) for x in
                    (seq.logp, seq.length, seq.ref, seq.tok, seq.tok_ref, seq.tok_plogp, seq.mask)))
    return seq


def fused_logits(net: PolicyNet, lake: Lake, traj: Trajectories, lam: float,
                 frozen_embedding: Tensor | None) -> Tensor:
    """IFT's temporal residual on states (ift.txt Eq. 17, App. B.3, per step).

    Pass 1 (no gradient) takes the greedy action at every true state s_t; the
    state it would have led to, s^_{t+1} = next(s_t, argmax pi(.|s_t)), stands
    for the model's guess of the token. Pass 2 reads the fused embedding
    (1-lam) E(s_t) + lam E(s^_t); the first state is the prompt and stays true
    (s^_0 = s_0), as prompt tokens do in the authors' code. With
    ``frozen_embedding`` (the registry's freeze_embedding) both terms read that
    fixed copy, as the authors' trainer reads a frozen copy of embed_tokens.
    """
    states = traj.states
    true_e = net.embed(states, frozen_embedding)
    with torch.no_grad():
        greedy = net.from_embedding(true_e).argmax(-1)
    predicted = states.clone()
    predicted[:, 1:] = lake.next_state[states[:, :-1], greedy[:, :-1]]
    return net.from_embedding((1 - lam) * true_e + lam * net.embed(predicted, frozen_embedding))


def loss_inputs(method: Method, hp: dict, net: PolicyNet, lake: Lake, data: ToyData, step: int,
                source: str | None, n_negatives: int, log_u: Tensor | None,
                frozen_embedding: Tensor | None) -> LossInputs:
    pos = data.optimal
    if method.two_pass:
        pos_logits = fused_logits(net, lake, pos.traj, hp["lam"], frozen_embedding)
    else:
        pos_logits = net(pos.traj.states)
    inp = LossInputs(pos=sequence(pos_logits, pos), log_u=log_u)
    if source is not None:
        if source == "suboptimal":
            neg = data.suboptimal
        else:
            neg = data.sampled.select(slice(step * n_negatives, (step + 1) * n_negatives))
        inp.neg = sequence(net(neg.traj.states), neg, group=True)
    if method.needs_mismatched:
        kl = data.mismatched.select(slice(step, step + 1))
        inp.kl = sequence(net(kl.traj.states), kl)
    return inp


def finetune(method: Method, base: PolicyNet, lake: Lake, data: ToyData, steps: int, negatives: str = "auto",
             n_negatives: int = N_NEGATIVES, lr: float = FT_LR, hparams: dict | None = None,
             callback=None) -> PolicyNet:
    """``steps`` Adam steps of one registry loss, starting from a copy of the base policy.

    ``callback(step, net)``, if given, is called after every step (1-based), for learning curves.
    """
    hp = resolved_hparams(method, hparams)
    source = negative_source(method, negatives)
    if source == "sampled" and len(data.sampled.traj) < steps * n_negatives:
        raise ValueError(f"the sampled pool holds {len(data.sampled.traj)} walks; {steps} steps need "
                         f"{steps * n_negatives}")
    net = copy.deepcopy(base)
    frozen = base.hidden.weight.detach().clone() if hp.get("freeze_embedding") else None
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    log_u = torch.zeros(1) if method.stateful else None   # DFT: u = 1 per example at start
    for step in range(steps):
        inp = loss_inputs(method, hp, net, lake, data, step, source, n_negatives, log_u, frozen)
        out = method(inp, **hp)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        if method.stateful:
            log_u = out.log_u
        if callback is not None:
            callback(step + 1, net)
    return net
