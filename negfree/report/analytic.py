"""Analytic figures, computed from the library's own loss code through autograd.

bnf.txt Fig. 1: |dL/dz_y| of a one-token answer against p_theta(y) for NLL, PLL
(the log-likelihood loss that pushes a dispreferred answer down) and BNF.
asft.txt Fig. 1: value and gradient field over (x1, x2) = (p(y_w), p(y_l)) of the
Bradley-Terry (DPO, beta = 1, no reference) loss and of L_align (Eq. 13).

Nothing here uses a closed form: logits or probabilities are leaf tensors, the
registry's losses are evaluated on them and autograd gives the gradients. The
closed forms appear only in the tests, which compare the two.
"""
from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import torch

from negfree.common.io import atomic_write_text
from negfree.common.logprobs import token_logprobs
from negfree.losses import LossInputs, Seq, asft_align, get_method
from negfree.report.figures import pyplot, save_figure

D = torch.float64
VOCAB_REST = (1.0, 2.0, 3.0, 4.0)   # how the mass 1 - p(y) is spread over the other tokens


def _one_token_logits(p_y: float) -> torch.Tensor:
    rest = torch.tensor(VOCAB_REST, dtype=D)
    probs = torch.cat([torch.tensor([p_y], dtype=D), (1 - p_y) * rest / rest.sum()])
    return torch.log(probs).view(1, 1, -1).requires_grad_(True)


def _one_token_seq(z: torch.Tensor, q: float) -> Seq:
    labels = torch.zeros(1, 1, dtype=torch.long)
    mask = torch.ones(1, 1, dtype=D)
    tok, plogp = token_logprobs(z, labels, mask, with_plogp=True)
    ref = torch.full_like(tok, float(np.log(q)))
    return Seq(tok.sum(-1), mask.sum(-1), ref.sum(-1), tok, ref, plogp, mask)


def _grad_abs(loss_of_seq, p: float, q: float) -> float:
    z = _one_token_logits(p)
    loss_of_seq(_one_token_seq(z, q)).backward()
    return abs(z.grad[0, 0, 0].item())


BNF_LOSSES = {
    "nll": lambda s: get_method("sft")(LossInputs(pos=s)).loss,
    "pll": lambda s: -get_method("sft")(LossInputs(pos=s)).loss,      # minimising log p(y_l)
    "bnf": lambda s: get_method("bnf")(LossInputs(pos=s)).loss,       # label +1
}


def bnf_fig1(out_png, out_csv, p_refs=(0.2, 0.5, 0.8), n_grid: int = 99) -> pd.DataFrame:
    grid = np.linspace(0.01, 0.99, n_grid)
    rows = [{"method": name, "p_ref": q, "p_theta": float(p), "grad_abs": _grad_abs(fn, float(p), q)}
            for q in p_refs for name, fn in BNF_LOSSES.items() for p in grid]
    df = pd.DataFrame(rows)
    atomic_write_text(out_csv, df.to_csv(index=False))

    plt = pyplot()
    fig, axes = plt.subplots(1, len(p_refs), figsize=(4 * len(p_refs), 3.4), sharey=True)
    styles = {"nll": ("NLL (y preferred)", "-"), "pll": ("PLL (y dispreferred)", "--"), "bnf": ("BNF", "-")}
    for ax, q in zip(np.atleast_1d(axes), p_refs):
        for name, (label, ls) in styles.items():
            d = df[(df.method == name) & (df.p_ref == q)]
            ax.plot(d.p_theta, d.grad_abs, ls, label=label, lw=2 if name == "bnf" else 1.3)
        ax.axvline(q, color="grey", lw=0.8, ls=":")
        ax.set_title(f"pi_ref(y) = {q}")
        ax.set_xlabel("pi_theta(y)")
    np.atleast_1d(axes)[0].set_ylabel("|dL / dz_y|")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.suptitle("bnf.txt Fig. 1, one-token answer; gradients by autograd through negfree's loss code", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out_png)
    return df


def asft_fig1(out_png, out_csv, n_grid: int = 20) -> pd.DataFrame:
    grid = np.linspace(0.025, 0.975, n_grid)
    x1 = torch.tensor(np.repeat(grid, n_grid), dtype=D, requires_grad=True)
    x2 = torch.tensor(np.tile(grid, n_grid), dtype=D, requires_grad=True)
    one = torch.ones_like(x1)
    frames = []
    for name in ("bt", "asft_align"):
        lw, ll = torch.log(x1), torch.log(x2)
        if name == "bt":   # registry DPO, beta 1, reference log-probs 0: -log sigma(log x1 - log x2)
            dpo, zero = get_method("dpo"), torch.zeros(1, dtype=D)
            values = torch.stack([dpo(LossInputs(pos=Seq(lw[i:i + 1], one[:1], ref=zero),
                                                 neg=Seq(ll[i:i + 1].view(1, 1), one[:1].view(1, 1),
                                                         ref=zero.view(1, 1))), beta=1.0).loss
                                  for i in range(len(lw))])
        else:
            values = asft_align(lw, ll)
        g1, g2 = torch.autograd.grad(values.sum(), (x1, x2))
        frames.append(pd.DataFrame({"loss": name, "x1": x1.detach().numpy(), "x2": x2.detach().numpy(),
                                    "value": values.detach().numpy(), "d_x1": g1.numpy(), "d_x2": g2.numpy()}))
    df = pd.concat(frames, ignore_index=True)
    atomic_write_text(out_csv, df.to_csv(index=False))

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    titles = {"bt": "Bradley-Terry / DPO (beta = 1)", "asft_align": "ASFT L_align (Eq. 13)"}
    for ax, (name, d) in zip(axes, df.groupby("loss", sort=False)):
        v = d.value.to_numpy().reshape(n_grid, n_grid)
        cs = ax.contourf(grid, grid, v.T, levels=20, cmap="viridis")
        fig.colorbar(cs, ax=ax, shrink=0.85)
        g = -d[["d_x1", "d_x2"]].to_numpy()
        g = g / np.linalg.norm(g, axis=1, keepdims=True).clip(min=1e-12)   # direction only: magnitudes span decades
        ax.quiver(d.x1, d.x2, g[:, 0], g[:, 1], color="white", angles="xy", scale_units="xy", scale=n_grid * 1.3,
                  width=0.004)
        ax.set_title(titles[name], fontsize=10)
        ax.set_xlabel("x1 = p(y_w)")
        ax.set_ylabel("x2 = p(y_l)")
    fig.suptitle("asft.txt Fig. 1: loss (colour) and direction of -grad (unit arrows); autograd through negfree's loss code",
                 fontsize=8)
    fig.tight_layout()
    save_figure(fig, out_png)
    return df


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="negfree figure")
    p.add_argument("name", choices=["bnf-fig1", "asft-fig1"])
    p.add_argument("--png", required=True)
    p.add_argument("--csv", required=True)
    a = p.parse_args(argv)
    (bnf_fig1 if a.name == "bnf-fig1" else asft_fig1)(a.png, a.csv)
    print(f"wrote {a.png} and {a.csv}")
