"""The parameterised policies of the toy: a two-layer network, its imitation fits, the base policy.

ift.txt Sec. 5.3: "a two-layer fully connected neural network"; "the optimal
parameterized policy is trained using the previously obtained optimal
state-action probabilities". Everything else here is ours (docs/frozen_lake.md).

Encoding [ours]: the one-hot of the cell. The first layer applied to a one-hot is
a row lookup, i.e. a token embedding, so a cell plays the part of a token and
IFT's fused embedding (1-lam) E(true) + lam E(predicted) has an exact analogue.
(row, col) features would make neighbouring cells share parameters, which the
LM analogy has no counterpart for.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from negfree.toy.lake import Lake, blocked_desc, build_lake, soft_optimal_table, value_iteration

HIDDEN = 32          # hidden width [ours]
BASES = ("long_way", "uniform")   # the base policies the toy can start from [ours]
FIT_STEPS = 500      # full-batch Adam steps of the imitation fits [ours]
FIT_LR = 0.01


class PolicyNet(nn.Module):
    """one-hot(cell) -> Linear -> tanh -> Linear -> logits over the four moves."""

    def __init__(self, n_states: int, n_actions: int = 4, hidden: int = HIDDEN):
        super().__init__()
        self.n_states = n_states
        self.hidden = nn.Linear(n_states, hidden)
        self.out = nn.Linear(hidden, n_actions)

    def embed(self, states: Tensor, weight: Tensor | None = None) -> Tensor:
        """E(s): the first layer's weight column of each cell (= one-hot @ W^T, without the bias)."""
        w = self.hidden.weight if weight is None else weight
        return w.t()[states]

    def from_embedding(self, e: Tensor) -> Tensor:
        return self.out(torch.tanh(e + self.hidden.bias))

    def forward(self, states: Tensor) -> Tensor:
        """Logits for integer cell indices of any shape [...] -> [..., A]."""
        return self.from_embedding(self.embed(states))

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @torch.no_grad()
    def table(self) -> Tensor:
        """pi(a|s) for every cell, [S, A]."""
        return torch.softmax(self(torch.arange(self.n_states)), dim=-1)


def param_mse_blocks(net: PolicyNet, ref: PolicyNet, path_states: list[int]) -> dict[str, float]:
    """Parameter MSE to ``ref``, whole and per block [ours: the blocks].

    With one-hot inputs the first-layer column of a cell is read by that cell only,
    so a method that never trains on a cell leaves its column where the base put it.
    The blocks separate what the data can reach from what it cannot:
    ``shared`` = hidden bias + output layer (read by every cell), ``path`` = the
    first-layer columns of the optimal path's cells, ``offpath`` = every other column.
    ``mse_params`` (all parameters) is the metric of ift.txt's Fig. 3 caption.
    """
    on = torch.zeros(net.n_states, dtype=torch.bool)
    on[list(path_states)] = True
    d1 = (net.hidden.weight - ref.hidden.weight).detach() ** 2          # [H, S]
    shared = torch.cat([((p - q).detach() ** 2).reshape(-1) for p, q in
                        ((net.hidden.bias, ref.hidden.bias), (net.out.weight, ref.out.weight),
                         (net.out.bias, ref.out.bias))])
    total = float(d1.sum() + shared.sum()) / (d1.numel() + shared.numel())
    return {"mse_params": total, "mse_params_shared": float(shared.mean()),
            "mse_params_path": float(d1[:, on].mean()), "mse_params_offpath": float(d1[:, ~on].mean())}


def fit_table(net: PolicyNet, target: Tensor, states: Tensor, steps: int = FIT_STEPS,
              lr: float = FIT_LR) -> PolicyNet:
    """Minimise mean_s KL(target(.|s) || pi(.|s)) over ``states`` (full batch, Adam); in place."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    tgt = target[states]
    for _ in range(steps):
        logp = F.log_softmax(net(states), dim=-1)
        loss = -(tgt * logp).sum(-1).mean()   # cross-entropy = KL + const
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


def base_target(lake: Lake, pi_opt: Tensor, opt_actions: list[int], gamma: float, temperature: float,
                w_opt: float, noise: float, kind: str = "long_way") -> Tensor:
    """The 'pretraining' table the base policy imitates [ours].

    ``kind="uniform"``: every move 1/4 in every cell (a base that knows nothing).
    ``kind="long_way"`` (default): a noisy demonstrator that prefers the long way,

    (1 - noise) * [w_opt * pi_opt + (1 - w_opt) * pi_sub] + noise * uniform, where
    pi_sub is the soft-optimal table of the same map with the optimal path's
    interior turned into holes (so it walks the sub-optimal path; on the cells
    that are holes only there it falls back to pi_opt). Like a pretrained LM it
    knows the lake but its preferred answer is not the best one, and its
    samples sometimes fall in a hole.
    """
    if kind not in BASES:
        raise ValueError(f"base {kind!r} is not one of {list(BASES)}")
    uniform = torch.full_like(pi_opt, 1.0 / pi_opt.shape[-1])
    if kind == "uniform":
        return uniform
    sub_lake = build_lake(blocked_desc(lake, opt_actions))
    q_sub, _ = value_iteration(sub_lake, gamma)
    pi_sub = soft_optimal_table(q_sub, temperature)
    only_there = sub_lake.terminal & ~lake.terminal
    pi_sub[only_there] = pi_opt[only_there]
    return (1 - noise) * (w_opt * pi_opt + (1 - w_opt) * pi_sub) + noise * uniform


def reference_policies(lake: Lake, pi_opt: Tensor, pi_base: Tensor, seed: int) -> tuple[PolicyNet, PolicyNet]:
    """(optimal net, base net), both fitted from the same seeded initialisation.

    A shared start keeps the two in one basin, so the parameter MSE between a
    fine-tuned net (which starts at the base) and the optimal net measures the
    move towards it rather than an arbitrary permutation of hidden units.
    """
    torch.manual_seed(seed)
    init = PolicyNet(lake.n_states)
    live = lake.live
    opt_net = fit_table(copy.deepcopy(init), pi_opt, live)
    base_net = fit_table(copy.deepcopy(init), pi_base, live)
    return opt_net, base_net
