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

from negfree.toy.lake import Lake, walk  # noqa: E402

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


def _method_styles(order: list[str], highlight: tuple[str, ...]) -> dict[str, dict]:
    """One colour + line style per method so that every curve can be named in a legend."""
    cmap = plt.get_cmap("tab20")
    styles, k = {}, 0
    for m in order:
        if m in highlight:
            styles[m] = {"color": plt.get_cmap("tab10")(highlight.index(m)), "lw": 2.2, "ls": "-"}
        else:
            styles[m] = {"color": cmap(k % 20), "lw": 0.9, "ls": ("--", ":", "-.")[k % 3]}
            k += 1
    return styles


def fig3(results: pd.DataFrame, curves: pd.DataFrame, order: list[str], highlight: tuple[str, ...],
         footer: str = "", fmt: str = "png") -> bytes:
    """ift.txt Fig. 3 extended: parameter MSE (the paper's metric), policy MSE, success, and policy-MSE curves.

    Panel (d) shows policy MSE, the metric that moves (parameter MSE is nearly flat, see
    docs/frozen_lake.md); curves.csv holds the parameter-MSE curves as well.
    """
    tuned = results[results.role == "fine-tuned"]
    base = results[results.method == "base"]
    fig, axes = plt.subplots(2, 2, figsize=(max(10, 0.55 * len(order) + 5), 8.5))
    panels = (("mse_params", "(a) parameter MSE to the optimal net (paper's metric)", "MSE (parameters)"),
              ("mse_policy", "(b) MSE to the optimal policy table", "MSE (pi(a|s), non-terminal cells x 4 moves)"),
              ("success_rate", "(c) success rate of sampled episodes", "fraction reaching the gift"))
    x = np.arange(len(order))
    for ax, (col, title, ylabel) in zip(axes.flat, panels):
        stats = tuned.groupby("method")[col].agg(["mean", "std"]).reindex(order)
        colors = ["#e07a1f" if m in highlight else "#7d9bb5" for m in order]
        ax.bar(x, stats["mean"], yerr=stats["std"].fillna(0), color=colors, capsize=2)
        if len(base):
            ax.axhline(base[col].mean(), ls="--", color="k", lw=1, label="base (before fine-tuning)")
            ax.legend(fontsize=7, loc="upper left")
        ax.set_xticks(x, order, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_title(title, fontsize=10)
    ax = axes.flat[3]
    mean_curve = curves.groupby(["method", "step"])["mse_policy"].mean().reset_index()
    styles = _method_styles(order, highlight)
    for m in order:
        c = mean_curve[mean_curve.method == m]
        ax.plot(c.step, c.mse_policy, label=m, alpha=1 if m in highlight else 0.8, **styles[m])
    if len(base):
        ax.axhline(base["mse_policy"].mean(), ls="--", color="k", lw=1, label="base")
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel("MSE (policy table), mean over seeds", fontsize=8)
    ax.set_title("(d) MSE to the optimal policy during fine-tuning", fontsize=10)
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5), ncol=1 if len(order) <= 12 else 2,
              frameon=False)
    fig.tight_layout(rect=(0, 0.04 if footer else 0, 1, 1))
    if footer:
        fig.text(0.01, 0.005, footer, fontsize=7, ha="left", va="bottom", wrap=True)
    return _to_bytes(fig, fmt)


def robustness_figure(claims: pd.DataFrame, ranks: pd.DataFrame, footer: str, fmt: str = "png") -> bytes:
    """(a) per paper claim: fraction of settings where it holds, with its 95% CI; (b) mean rank per method."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.2), gridspec_kw={"width_ratios": [1.2, 1]})
    labels = [f"{r.claim}\n[{r.metric}, {r.protocol}]" for r in claims.itertuples()]
    y = np.arange(len(claims))[::-1]
    colors = {"reproduced": "#2a9d3a", "contradicted": "#d1495b", "inconclusive": "#888888"}
    for yy, r in zip(y, claims.itertuples()):
        err = [[max(r.fraction - r.ci_low, 0.0)], [max(r.ci_high - r.fraction, 0.0)]]   # rounding at 0 and 1
        ax1.errorbar(r.fraction, yy, xerr=err, fmt="o",
                     color=colors[r.verdict], capsize=3)
    ax1.axvline(0.5, ls="--", color="k", lw=1)
    ax1.set_yticks(y, labels, fontsize=6.5)
    ax1.set_xlim(-0.02, 1.02)
    ax1.set_xlabel("fraction of settings where the claim holds (95% Wilson CI)", fontsize=8)
    ax1.set_title("(a) ift.txt Fig. 3 claims across the grid\n(green reproduced, red contradicted, "
                  "grey inconclusive)", fontsize=9)
    yy = np.arange(len(ranks))[::-1]
    ax2.barh(yy, ranks["mean_rank"], xerr=ranks["std_rank"], color="#7d9bb5", capsize=2)
    ax2.set_yticks(yy, ranks["method"], fontsize=7)
    ax2.set_xlabel("rank by parameter MSE at the last step (1 = closest), mean ± std over settings", fontsize=8)
    ax2.set_title("(b) every method: rank within each (map, steps, base, negatives, seed)", fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.text(0.01, 0.005, footer, fontsize=7, ha="left", va="bottom", wrap=True)
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
