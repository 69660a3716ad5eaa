"""dft.txt Fig. 1: the distribution of s_theta(y', x) for two (or more) pools of negatives.

What is plotted. Fig. 1 sits in dft.txt Sec. 5 (DFT2), where the scoring function is the
length-normalised generative log-likelihood

    s_theta(y, x) = (1/|y|) log P_g(y | x)

(Sec. 5, first paragraph; the same score as Setting 2 of Sec. 4.1, Eq. 5, and the one in
Eq. 11-13). The figure backs two statements made with that score: that exp(s/tau) of a
sample from the base model is much larger than that of a random y' ("This is verified by
Figure 1"), and Meng et al.'s observation that LLM samples have roughly the same
s = (1/|y'|) log P_g(y'|x). So the score here is ``Sbar(y') = S(y') / |y'|`` of
docs/methods.md: per-token log-probs of the answer tokens (the eos the encoding appends
included, as the trainer counts them) under the checkpoint, summed and divided by their
number. The summed log-likelihood S(y') is kept in the CSV too (``logp_sum``).

The pools are what ``negfree generate`` writes (one record per prompt, a ``negatives`` list):
in the paper, "Sampling" (temperature < 1, as used for training) and "Random" (a very high
temperature); any labels and any number of pools work here. Each negative is conditioned on
the training prompt x through the chat template (or the documented fallback template), as
``negfree score`` conditions S0: the same encoding (``negfree.data.tokenize.encode``) and the
same scorer (``negfree.score.reference.answer_token_logprobs``), not a second one. ``--system`` conditions
on the augmented prompt x-bar instead.

Reading the pools and scoring them: negfree.report.score_dist_data. Outputs under OUT_ROOT/dft/:
fig1.png, fig1.pdf (byte-reproducible), fig1.csv (one row per scored negative), fig1_summary.csv
(per pool: count, mean, std, ...).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from negfree.common.io import atomic_write_text
from negfree.report.figures import pyplot, save_figure
from negfree.report.score_dist_data import parse_pools, score_pools

SCORE_DEFINITION = "s(y',x) = (1/|y'|) log P_g(y'|x)  (dft.txt Sec. 5; Eq. 5 / Eq. 11)"
SUMMARY_COLUMNS = ["pool", "source", "prompts", "negatives", "mean", "std", "median", "min", "max",
                   "mean_n_tokens"]



def summarize(df: pd.DataFrame, sources: dict[str, str] | None = None) -> pd.DataFrame:
    """Per pool (in order of first appearance): prompts, negatives, mean, std (ddof 1), median, min, max."""
    rows = []
    for label in dict.fromkeys(df["pool"]):
        d = df[df["pool"] == label]
        s = d["score"].to_numpy(dtype=float)
        rows.append({"pool": label, "source": (sources or {}).get(label, ""),
                     "prompts": int(d["prompt_index"].nunique()), "negatives": len(d),
                     "mean": float(s.mean()), "std": float(s.std(ddof=1)) if len(s) > 1 else float("nan"),
                     "median": float(np.median(s)), "min": float(s.min()), "max": float(s.max()),
                     "mean_n_tokens": float(d["n_tokens"].mean())})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


# ---------------------------------------------------------------- figure
def plot_fig1(df: pd.DataFrame, summary: pd.DataFrame, out_png: str | Path, scale: str, model: str = "") -> Path:
    """Overlaid density histograms of the score per pool (shared bins), each pool's mean dashed."""
    plt = pyplot()
    scores = df["score"].to_numpy(dtype=float)
    lo, hi = float(scores.min()), float(scores.max())
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    n_bins = int(np.clip(np.ceil(np.sqrt(len(scores))) * 2, 10, 60))
    bins = np.linspace(lo, hi, n_bins + 1)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, row in enumerate(summary.itertuples()):
        s = df.loc[df["pool"] == row.pool, "score"].to_numpy(dtype=float)
        c = colors[k % len(colors)]
        std = "n/a" if np.isnan(row.std) else f"{row.std:.3f}"
        ax.hist(s, bins=bins, density=True, alpha=0.45, color=c, edgecolor=c, linewidth=0.6,
                label=f"{row.pool} (n={row.negatives}, mean {row.mean:.3f}, std {std})")
        ax.axvline(row.mean, color=c, ls="--", lw=1.2)
    ax.set_xlabel("s(y', x) = (1/|y'|) log P_g(y' | x)")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    ax.set_title("dft.txt Fig. 1: distribution of s(y', x) per pool of negatives", fontsize=9)
    foot = scale + (f"; checkpoint: {model}" if model else "")
    fig.text(0.01, 0.01, foot, fontsize=6, ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    save_figure(fig, out_png)
    return Path(out_png)


def score_dist(model_dir: str | Path, pool_specs: list[str], out_root: str | Path, scale: str, *,
               limit: int | None = None, max_len: int = 1024, batch_size: int = 16,
               fallback_template: bool = False, system: str | None = None, device: str | None = None) -> dict[str, Path]:
    """Score every pool under ``model_dir`` and write OUT_ROOT/dft/fig1.{png,pdf,csv} and fig1_summary.csv."""
    if not scale or not scale.strip():
        raise ValueError("--scale must state what ran (model, prompts, pools); it is printed on the figure")
    pools = parse_pools(pool_specs)
    df = score_pools(model_dir, pools, limit=limit, max_len=max_len, batch_size=batch_size,
                     fallback_template=fallback_template, system=system, device=device)
    summary = summarize(df, {label: str(path) for label, path in pools})
    out = Path(out_root) / "dft"
    paths = {"png": out / "fig1.png", "pdf": out / "fig1.pdf", "csv": out / "fig1.csv",
             "summary": out / "fig1_summary.csv"}
    atomic_write_text(paths["csv"], df.to_csv(index=False))
    atomic_write_text(paths["summary"], summary.to_csv(index=False))
    plot_fig1(df, summary, paths["png"], scale, model=str(model_dir))
    return paths


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="negfree score-dist",
                                description="dft.txt Fig. 1: distribution of s(y',x) = (1/|y'|) log P_g(y'|x) "
                                            "per pool of negatives, under one checkpoint")
    p.add_argument("--model", required=True, help="checkpoint directory (the paper: after 1 epoch of training)")
    p.add_argument("--pool", action="append", required=True, metavar="LABEL=NEGATIVES.jsonl",
                   help="a pool written by `negfree generate` (repeat: e.g. sampling=... random=...)")
    p.add_argument("--limit", type=int, default=None, help="first N prompts of each pool")
    p.add_argument("--out-root", required=True, help="figures go to OUT_ROOT/dft/fig1.{png,pdf,csv}")
    p.add_argument("--scale", required=True, help="what ran, printed on the figure")
    p.add_argument("--fallback-template", action="store_true",
                   help="the documented Zephyr-style template for a tokenizer without a chat template")
    p.add_argument("--system", default=None, help="condition on x-bar: this system message (default: none, x)")
    p.add_argument("--max-len", type=int, default=1024, help="prompt + answer tokens (longer answers are cut)")
    p.add_argument("--batch-size", type=int, default=16, help="sequences scored per forward")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    a = p.parse_args(argv)
    paths = score_dist(a.model, a.pool, a.out_root, a.scale, limit=a.limit, max_len=a.max_len,
                       batch_size=a.batch_size, fallback_template=a.fallback_template, system=a.system,
                       device=a.device)
    summary = pd.read_csv(paths["summary"])
    print(f"score: {SCORE_DEFINITION}")
    print(summary[["pool", "prompts", "negatives", "mean", "std"]].to_string(index=False))
    print(f"wrote {paths['png']} (+ .pdf, .csv) and {paths['summary']}")


if __name__ == "__main__":
    main()
