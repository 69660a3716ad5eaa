"""Figures of the Frozen Lake toy, drawn only from the tables frozen_lake.py writes.

Each function returns PNG (or PDF) bytes so the caller writes them atomically.
"""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .lake import Lake, walk  # noqa: E402

ICE, HOLE = "#dff1fb", "#1f3b5a"


def _to_bytes(fig, fmt: str) -> bytes:
    buf = io.BytesIO()
    meta = {"CreationDate": None} if fmt == "pdf" else {"Software": None}   # byte-reproducible files
    fig.savefig(buf, format=fmt, dpi=150, bbox_inches="tight", metadata=meta)
    plt.close(fig)
    return buf.getvalue()


def _draw_cells(ax, lake: Lake, shade: np.ndarray | None = None, cmap="Oranges"):
    """The grid: holes dark, ice light (or shaded by ``shade`` in [0, 1]), S and G lettered."""
    for r in range(lake.nrow):
        for c in range(lake.ncol):
            letter = lake.desc[r][c]
            if letter == "H":
                color = HOLE
            elif shade is not None:
                color = plt.get_cmap(cmap)(0.1 + 0.9 * float(shade[r, c]))
            else:
                color = ICE
            ax.add_patch(plt.Rectangle((c, r), 1, 1, facecolor=color, edgecolor="white", lw=1.5))
            if letter in "SG":
                ax.text(c + 0.5, r + 0.5, letter, ha="center", va="center", fontsize=11, weight="bold")
    ax.set_xlim(0, lake.ncol)
    ax.set_ylim(lake.nrow, 0)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def map_figure(lake: Lake, optimal: list[int], suboptimal: list[int], fmt: str = "png") -> bytes:
    """The map with the optimal (solid) and sub-optimal (dashed) paths."""
    fig, ax = plt.subplots(figsize=(0.8 * lake.ncol + 1.5, 0.8 * lake.nrow + 0.6))
    _draw_cells(ax, lake)
    for actions, style, color, label in ((optimal, "-", "#2a9d3a", f"optimal ({len(optimal)} steps)"),
                                         (suboptimal, "--", "#d1495b", f"sub-optimal ({len(suboptimal)} steps)")):
        cells = walk(lake, actions) + [lake.goal]
        rc = np.array([lake.cell(s) for s in cells], dtype=float) + 0.5
        ax.plot(rc[:, 1], rc[:, 0], style, color=color, lw=3, label=label)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=1, frameon=False, fontsize=8)
    return _to_bytes(fig, fmt)


def fig3(results: pd.DataFrame, curves: pd.DataFrame, order: list[str], highlight: tuple[str, ...],
         fmt: str = "png") -> bytes:
    """ift.txt Fig. 3 extended: parameter MSE (the paper's metric), policy MSE, success, and policy-MSE curves."""
    tuned = results[results.role == "fine-tuned"]
    base = results[results.method == "base"]
    fig, axes = plt.subplots(2, 2, figsize=(max(9, 0.55 * len(order) + 4), 7.5))
    panels = (("mse_params", "(a) MSE to optimal-net parameters"),
              ("mse_policy", "(b) MSE to optimal policy table"),
              ("success_rate", "(c) success rate (sampled episodes)"))
    x = np.arange(len(order))
    for ax, (col, title) in zip(axes.flat, panels):
        stats = tuned.groupby("method")[col].agg(["mean", "std"]).reindex(order)
        colors = ["#e07a1f" if m in highlight else "#7d9bb5" for m in order]
        ax.bar(x, stats["mean"], yerr=stats["std"].fillna(0), color=colors, capsize=2)
        if len(base):
            ax.axhline(base[col].mean(), ls="--", color="k", lw=1, label="base (before fine-tuning)")
            ax.legend(fontsize=7, loc="upper left")
        ax.set_xticks(x, order, rotation=60, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
    ax = axes.flat[3]
    mean_curve = curves.groupby(["method", "step"])["mse_policy"].mean().reset_index()
    for m in order:
        c = mean_curve[mean_curve.method == m]
        bold = m in highlight
        ax.plot(c.step, c.mse_policy, lw=2 if bold else 0.8, alpha=1 if bold else 0.5,
                label=m if bold else None)
    if len(base):
        ax.axhline(base["mse_policy"].mean(), ls="--", color="k", lw=1)
    ax.set_xlabel("fine-tuning step")
    ax.set_title("(d) MSE to optimal policy during fine-tuning (mean over seeds)", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _to_bytes(fig, fmt)


def visits_figure(lake: Lake, visits: pd.DataFrame, order: list[str], fmt: str = "png") -> bytes:
    """One small grid per policy: the fraction of sampled episodes that stand on each cell (mean over seeds)."""
    n = len(order)
    ncols = min(6, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.9 * ncols, 1.9 * nrows + 0.3), squeeze=False)
    mean = visits.groupby(["method", "row", "col"])["visit_rate"].mean()
    for ax, m in zip(axes.flat, order):
        grid = np.zeros((lake.nrow, lake.ncol))
        for (r, c), v in mean.loc[m].items():
            grid[r, c] = v
        _draw_cells(ax, lake, shade=np.sqrt(grid))   # sqrt: rare detours stay visible
        ax.set_title(m, fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("cells visited: fraction of sampled episodes standing on each cell "
                 "(colour: square root of the fraction; dark blue = hole)", fontsize=9)
    fig.tight_layout()
    return _to_bytes(fig, fmt)
