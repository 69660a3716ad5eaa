"""bnf.txt Fig. 3 and Fig. 4: log-likelihood and logit shifts of fine-tuned models against the reference.

What the paper does (bnf.txt Sec. 5.3 "Distributions of log-likelihood and logit"): greedy
responses of each fine-tuned model (BNF, DPO, IPO, SimPO) to 1,000 Wild-Bench questions,
then "log-likelihood and logit shifts between policy and reference models" on those
responses. Fig. 3: (a) log-likelihood shifts, (b) absolute logit shifts, (c) logit shifts vs
log-likelihood shifts, (d) length-normalized log-likelihood shifts, (e) length-normalized
absolute logit shifts, (f) Gini coefficients for logits. Fig. 4: DPO's token-level
log-likelihood shifts cut into "10 percentile-based bins", and the token-level shifts of
BNF, SimPO and IPO mapped onto these DPO-defined bins.

The paper gives no formulas for any of these. The definitions used here, with what is
the paper's and what is ours ([ours] marks a choice where the paper is silent):

Notation. For a fine-tuned model theta and a prompt x, y = (y_1..y_T) is theta's greedy
response (argmax decoding, at most ``max_new_tokens`` tokens, the end-of-sequence token
included when theta emits it [ours]; Sec. 5.3: "We apply greedy decoding to generate
responses using BNF and three baselines"). The prompt is rendered with the chat template
(or the Zephyr-style fallback), as every other negfree stage does. At answer position i:
    l_theta,i = log pi_theta(y_i | x, y_<i),     z_theta,i = the pre-softmax logit of y_i,
and l_ref,i, z_ref,i the same under the reference model on the same tokens.

Token level.
    token log-likelihood shift   dl_i = l_theta,i - l_ref,i
    token logit shift            dz_i = z_theta,i - z_ref,i
  The logit is that of the generated (chosen) token y_i only [ours]: Sec. 5.3 explains
  Fig. 3c by BNF raising "the output logits uniformly across preferred tokens at each
  position, resulting in consistent likelihood after softmax normalization", i.e. the
  logit of y_i can move a lot while its log-probability does not; the chosen token's logit
  is the quantity that story is about. No vocabulary-wide logit tensor is kept.

Sequence level (one value per (model, prompt); the distributions plotted in Fig. 3):
    (a)  loglik              dLL  = sum_i dl_i  = log pi_theta(y|x) - log pi_ref(y|x)   (signed)
    (b)  abs_logit           dZ   = sum_i |dz_i|                                        [ours: sum of
         absolute token shifts, the total that (f)'s Gini distributes over tokens]
    (c)  scatter, x = |dLL| (abs_loglik), y = dZ [ours: |dLL| so that "top-left" of Fig. 3c
         reads literally as small log-likelihood shift, large logit shift]
    (d)  loglik_per_token    dLL / T      (length-normalised: divided by the response length)
    (e)  abs_logit_per_token dZ / T
    (f)  gini_logit          G({|dz_i|, i = 1..T}) per sequence [ours: the Gini is taken over the
         tokens of one response, since Sec. 5.3 reads it as "the shifts come from many tokens,
         rather than being concentrated in a few"]; the summary also gives gini_logit_pooled,
         G over every token of every response of the model.
  Gini coefficient (Gini, 1912, the paper's reference), of non-negative values x_1..x_n:
    G(x) = sum_i sum_j |x_i - x_j| / (2 n^2 mean(x)),
  computed as G = 2 sum_k k x_(k) / (n sum x) - (n + 1) / n over the sorted values. G = 0 when
  all values are equal, (n - 1) / n when one of n is non-zero. All-zero values (nothing
  shifted) give G = 0 [ours: no inequality]; n = 1 gives 0.

Fig. 4 (token level). The anchor model (``--bin-anchor``, default the model labelled
``dpo``, else the first ``--model``; the paper's anchor is DPO) pools its dl_i over all its
responses; the edges e_0..e_10 are its 0th, 10th, ..., 100th percentiles (numpy's linear
interpolation). Bin k (1..10) holds e_(k-1) <= dl < e_k; the outer bins are open-ended [ours],
so every token of every model lands in a bin (bin 1 = dl < e_1, bin 10 = dl >= e_9); a value
equal to an inner edge goes to the bin above it. Each model's pooled token shifts dl_i (its own
greedy responses) are counted per bin; the figure shows the fraction of that model's tokens in
each bin. By construction the anchor has about 10% per bin (ties, e.g. many exactly-equal
shifts, make some bins empty). Summary columns (the claims ledger's shift/... metrics):
bins_central_mass = fraction in bins 2..9, bins_extreme_mass = bins 1 and 10,
bins_l1_from_uniform = sum_k |fraction_k - 0.1|.

Outputs under OUT_ROOT/bnf/: fig3.{png,pdf,csv} (csv: one row per (model, prompt), the
sequence-level values above), fig4.{png,pdf,csv} (csv: one row per (model, bin): edges,
token count, fraction), shifts_summary.csv (one row per model: mean sequence-level shifts,
mean absolute ones, Gini per sequence and pooled, bin masses), and shifts_tokens.jsonl (one
line per (model, prompt): the generated token ids and text and the four per-token series, the
raw data everything else is computed from). Every file is written atomically; PNG/PDF are
byte-reproducible (negfree.report.figures.save_figure).

Reading the checkpoints and prompts, greedy decoding and the per-token series (and the memory
this takes): negfree.report.shifts_data.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from negfree.common.io import atomic_write_text, write_jsonl
from negfree.report.figures import footer, pyplot, save_figure
from negfree.report.shifts_data import check_model_dir, compute_shifts, parse_model_args, read_prompts

N_BINS = 10
FIG3_COLUMNS = ["model", "id", "n_tokens", "ended_with_eos", "loglik", "abs_loglik", "abs_logit", "logit",
                "loglik_per_token", "abs_logit_per_token", "gini_logit"]
FIG4_COLUMNS = ["model", "anchor", "bin", "edge_low", "edge_high", "n_tokens", "fraction"]
SUMMARY_COLUMNS = ["model", "n_sequences", "n_tokens", "mean_response_tokens", "eos_fraction",
                   "loglik", "abs_loglik", "loglik_per_token", "abs_loglik_per_token",
                   "abs_logit", "abs_logit_per_token", "token_loglik", "token_abs_logit",
                   "gini_logit", "gini_logit_pooled", "bin_anchor", "bins_central_mass", "bins_extreme_mass",
                   "bins_l1_from_uniform"]


# ----------------------------------------------------------------------------- the statistics
def gini(values) -> float:
    """Gini coefficient of non-negative values (see the module docstring); 0 for all-zero or one value."""
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if x.size == 0:
        raise ValueError("gini: no values")
    if (x < 0).any() or not np.isfinite(x).all():
        raise ValueError("gini: values must be finite and non-negative")
    total = x.sum()
    if total == 0:
        return 0.0
    n = x.size
    k = np.arange(1, n + 1, dtype=np.float64)
    return float(max(0.0, 2.0 * (k * x).sum() / (n * total) - (n + 1) / n))


def sequence_shifts(logp_model, logp_ref, logit_model, logit_ref) -> dict:
    """Sequence-level values (Fig. 3 a-f) of one response from its four per-token series."""
    dl = np.asarray(logp_model, dtype=np.float64) - np.asarray(logp_ref, dtype=np.float64)
    dz = np.asarray(logit_model, dtype=np.float64) - np.asarray(logit_ref, dtype=np.float64)
    T = dl.size
    if T == 0 or dz.size != T:
        raise ValueError(f"sequence_shifts: need equal non-empty series (got {dl.size} and {dz.size})")
    loglik, abs_logit = float(dl.sum()), float(np.abs(dz).sum())
    return {"n_tokens": T, "loglik": loglik, "abs_loglik": abs(loglik), "abs_logit": abs_logit,
            "logit": float(dz.sum()), "loglik_per_token": loglik / T, "abs_logit_per_token": abs_logit / T,
            "gini_logit": gini(np.abs(dz))}


def anchor_edges(anchor_token_shifts) -> np.ndarray:
    """The 11 edges (0th..100th percentile) of the anchor model's token log-likelihood shifts."""
    x = np.asarray(anchor_token_shifts, dtype=np.float64)
    if x.size == 0:
        raise ValueError("the bin anchor has no tokens")
    return np.percentile(x, np.linspace(0, 100, N_BINS + 1))


def bin_of(values, edges) -> np.ndarray:
    """Bin index 0..9 of each value: e_k <= v < e_(k+1), outer bins open-ended."""
    return np.searchsorted(np.asarray(edges)[1:-1], np.asarray(values, dtype=np.float64), side="right")


def bin_fractions(values, edges) -> tuple[np.ndarray, np.ndarray]:
    counts = np.bincount(bin_of(values, edges), minlength=N_BINS)
    return counts, counts / max(counts.sum(), 1)


# ----------------------------------------------------------------------------- tables and figures
def fig3_table(rows: list[dict]) -> pd.DataFrame:
    out = []
    for r in rows:
        s = sequence_shifts(r["logp_model"], r["logp_ref"], r["logit_model"], r["logit_ref"])
        out.append({"model": r["model"], "id": r["id"], "ended_with_eos": r["ended_with_eos"], **s})
    return pd.DataFrame(out, columns=FIG3_COLUMNS)


def _token_ll_shifts(rows: list[dict], label: str) -> np.ndarray:
    parts = [np.asarray(r["logp_model"], dtype=np.float64) - np.asarray(r["logp_ref"], dtype=np.float64)
             for r in rows if r["model"] == label]
    return np.concatenate(parts) if parts else np.zeros(0)


def fig4_table(rows: list[dict], labels: list[str], anchor: str) -> pd.DataFrame:
    edges = anchor_edges(_token_ll_shifts(rows, anchor))
    out = []
    for label in labels:
        counts, frac = bin_fractions(_token_ll_shifts(rows, label), edges)
        for k in range(N_BINS):
            out.append({"model": label, "anchor": anchor, "bin": k + 1,
                        "edge_low": -np.inf if k == 0 else float(edges[k]),
                        "edge_high": np.inf if k == N_BINS - 1 else float(edges[k + 1]),
                        "n_tokens": int(counts[k]), "fraction": float(frac[k])})
    return pd.DataFrame(out, columns=FIG4_COLUMNS)


def summary_table(rows: list[dict], fig3: pd.DataFrame, fig4: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    out = []
    for label in labels:
        d = fig3[fig3.model == label]
        mine = [r for r in rows if r["model"] == label]
        dz = np.concatenate([np.asarray(r["logit_model"]) - np.asarray(r["logit_ref"]) for r in mine])
        dl = _token_ll_shifts(rows, label)
        f = fig4[fig4.model == label].sort_values("bin").fraction.to_numpy()
        out.append({"model": label, "n_sequences": len(d), "n_tokens": int(d.n_tokens.sum()),
                    "mean_response_tokens": float(d.n_tokens.mean()), "eos_fraction": float(d.ended_with_eos.mean()),
                    "loglik": float(d.loglik.mean()), "abs_loglik": float(d.abs_loglik.mean()),
                    "loglik_per_token": float(d.loglik_per_token.mean()),
                    "abs_loglik_per_token": float((d.abs_loglik / d.n_tokens).mean()),
                    "abs_logit": float(d.abs_logit.mean()), "abs_logit_per_token": float(d.abs_logit_per_token.mean()),
                    "token_loglik": float(dl.mean()), "token_abs_logit": float(np.abs(dz).mean()),
                    "gini_logit": float(d.gini_logit.mean()), "gini_logit_pooled": gini(np.abs(dz)),
                    "bin_anchor": fig4.anchor.iloc[0], "bins_central_mass": float(f[1:-1].sum()),
                    "bins_extreme_mass": float(f[0] + f[-1]),
                    "bins_l1_from_uniform": float(np.abs(f - 1.0 / N_BINS).sum())})
    return pd.DataFrame(out, columns=SUMMARY_COLUMNS)


def _box(ax, fig3: pd.DataFrame, labels: list[str], col: str, title: str, ylabel: str) -> None:
    data = [fig3.loc[fig3.model == m, col].to_numpy() for m in labels]
    ax.boxplot(data, showmeans=True, widths=0.6)
    for i, d in enumerate(data, start=1):   # every sequence as a point: small runs have few of them
        ax.plot(np.full(d.size, i) + np.linspace(-0.15, 0.15, d.size) if d.size > 1 else [i], d, ".",
                ms=3, alpha=0.5, color="tab:grey")
    ax.set_xticks(range(1, len(labels) + 1))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=8)


def plot_fig3(fig3: pd.DataFrame, summary: pd.DataFrame, labels: list[str], out_png: Path, scale: str) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.6))
    a = axes.ravel()
    _box(a[0], fig3, labels, "loglik", "(a) log-likelihood shift", "sum_i [log pi - log pi_ref](y_i)")
    _box(a[1], fig3, labels, "abs_logit", "(b) absolute logit shift", "sum_i |z - z_ref|(y_i)")
    for m in labels:
        d = fig3[fig3.model == m]
        a[2].scatter(d.abs_loglik, d.abs_logit, s=12, alpha=0.7, label=m)
    a[2].set_xlabel("|log-likelihood shift|", fontsize=8)
    a[2].set_ylabel("absolute logit shift", fontsize=8)
    a[2].set_title("(c) logit shift vs log-likelihood shift", fontsize=9)
    a[2].legend(fontsize=7)
    _box(a[3], fig3, labels, "loglik_per_token", "(d) length-normalised log-likelihood shift", "per token")
    _box(a[4], fig3, labels, "abs_logit_per_token", "(e) length-normalised absolute logit shift", "per token")
    _box(a[5], fig3, labels, "gini_logit", "(f) Gini of |logit shifts| over a response's tokens", "Gini")
    pooled = summary.set_index("model").loc[labels, "gini_logit_pooled"].to_numpy()
    a[5].plot(range(1, len(labels) + 1), pooled, "x", color="tab:red", ms=8, label="pooled over all tokens")
    a[5].legend(fontsize=7)
    fig.suptitle("bnf.txt Fig. 3: shifts of each model's greedy responses against the reference "
                 "(box: per response; triangle: mean)", fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    footer(fig, scale, [], "logit = the generated token's pre-softmax logit; definitions in negfree/report/shifts.py")
    save_figure(fig, out_png)


def plot_fig4(fig4: pd.DataFrame, labels: list[str], anchor: str, out_png: Path, scale: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 4.6))
    width = 0.8 / len(labels)
    x = np.arange(1, N_BINS + 1)
    for j, m in enumerate(labels):
        d = fig4[fig4.model == m].sort_values("bin")
        ax.bar(x - 0.4 + width * (j + 0.5), d.fraction, width, label=m + (" (anchor)" if m == anchor else ""))
    ax.axhline(1.0 / N_BINS, color="grey", lw=0.8, ls=":")
    d = fig4[fig4.model == anchor].sort_values("bin")
    ax.set_xticks(x)
    ax.set_xticklabels([f"{k}\n{lo:.2g}\nto {hi:.2g}" for k, lo, hi in zip(d.bin, d.edge_low, d.edge_high)],
                       fontsize=7)
    ax.set_xlabel(f"decile bin of {anchor}'s token-level log-likelihood shifts: low <= shift < high", fontsize=8)
    ax.set_ylabel("fraction of the model's tokens", fontsize=8)
    ax.legend(fontsize=7)
    fig.suptitle(f"bnf.txt Fig. 4: distribution of token-level log-likelihood shifts on {anchor}'s percentile bins",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    footer(fig, scale, [], "each model on its own greedy responses")
    save_figure(fig, out_png)


def _write_csv(path: Path, df: pd.DataFrame) -> None:
    atomic_write_text(path, df.to_csv(index=False))


def shifts_report(reference, models: list[tuple[str, Path]], records: list[dict], out_root, scale: str, *,
                  bin_anchor: str | None = None, **kw) -> dict[str, Path]:
    """Compute, then write OUT_ROOT/bnf/{fig3,fig4}.{png,pdf,csv}, shifts_summary.csv, shifts_tokens.jsonl."""
    labels = [m for m, _ in models]
    anchor = bin_anchor or ("dpo" if "dpo" in labels else labels[0])
    if anchor not in labels:
        raise ValueError(f"--bin-anchor {anchor!r} is not one of the --model labels ({', '.join(labels)})")
    if not scale or not scale.strip():
        raise ValueError("--scale must say at what scale this ran (it is printed on the figures)")
    rows = compute_shifts(reference, models, records, **kw)
    out = Path(out_root) / "bnf"
    fig3 = fig3_table(rows)
    fig4 = fig4_table(rows, labels, anchor)
    summary = summary_table(rows, fig3, fig4, labels)
    paths = {"tokens": out / "shifts_tokens.jsonl", "fig3_csv": out / "fig3.csv", "fig4_csv": out / "fig4.csv",
             "summary": out / "shifts_summary.csv", "fig3": out / "fig3.png", "fig4": out / "fig4.png"}
    write_jsonl(paths["tokens"], rows)
    _write_csv(paths["fig3_csv"], fig3)
    _write_csv(paths["fig4_csv"], fig4)
    _write_csv(paths["summary"], summary)
    plot_fig3(fig3, summary, labels, paths["fig3"], scale)
    plot_fig4(fig4, labels, anchor, paths["fig4"], scale)
    return paths


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="negfree shifts",
                                description="bnf.txt Fig. 3/4: log-likelihood and logit shifts of fine-tuned "
                                            "models' greedy responses against the reference model")
    p.add_argument("--reference", required=True, metavar="MODEL_DIR", help="the base (reference) model directory")
    p.add_argument("--model", action="append", required=True, metavar="LABEL=MODEL_DIR",
                   help="a fine-tuned checkpoint (repeat for each)")
    p.add_argument("--data", required=True, metavar="TEST.jsonl", help="records with a 'prompt' column")
    p.add_argument("--out-root", required=True, help="writes OUT_ROOT/bnf/{fig3,fig4}.{png,pdf,csv} and more")
    p.add_argument("--scale", required=True, help="one line printed on the figures: at what scale this ran")
    p.add_argument("--limit", type=int, default=None, help="first N prompts only")
    p.add_argument("--max-new-tokens", type=int, default=320, help="tokens per greedy answer at most")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per decode/scoring batch")
    p.add_argument("--bin-anchor", default=None, help="label whose token shifts define Fig. 4's bins "
                                                      "(default: 'dpo' if given, else the first --model)")
    p.add_argument("--fallback-template", action="store_true",
                   help="render prompts with the Zephyr-style template when the model has none")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--dtype", default="float32", help="torch dtype both models are loaded in (float32, bfloat16)")
    a = p.parse_args(argv)
    if a.limit is not None and a.limit < 1:
        raise ValueError(f"--limit {a.limit} must be >= 1")
    models = parse_model_args(a.model)
    check_model_dir(a.reference, "--reference")
    records = read_prompts(a.data, a.limit)
    t0 = time.time()
    paths = shifts_report(a.reference, models, records, a.out_root, a.scale, bin_anchor=a.bin_anchor,
                          max_new_tokens=a.max_new_tokens, batch_size=a.batch_size,
                          fallback_template=a.fallback_template, device=a.device, dtype=a.dtype, progress=True)
    for key, path in paths.items():
        print(f"{key}: wrote {path}" + (" (+ .pdf)" if path.suffix == ".png" else ""))
    print(f"shifts: {len(models)} model(s) x {len(records)} prompts in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
