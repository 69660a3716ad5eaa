"""Training-log figures, read only from run directories under results/runs/ (negfree.report.runs).

dft.txt Fig. 3 (per-token log-likelihood of positives and negatives over steps),
dft.txt Fig. 4 (training cost per method), minorsft.txt Fig. 1 (deviation m_theta,
Eq. 8, over steps) and asft.txt Fig. 2 ((a) likelihood margin ASFT vs ORPO, (b) runtime
and peak memory ASFT vs DPO).

Every number plotted is also written to the figure's data CSV exactly as read from
metrics.jsonl / perf.jsonl / timing.json. A method the paper's figure shows but for
which no run exists is named in the CSV (a row with ``note``) and in the figure's
footnote; nothing is filled in for it. Every figure states the scale it was made at.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from negfree.common.io import atomic_write_text
from negfree.report.figures import footer, pyplot, save_figure
from negfree.report.runs import Run, find_runs, pipeline_stages, runs_of, train_seconds

# The methods each paper figure compares (registry names; 'x->y' = a two-stage pipeline).
FIG_METHODS = {
    "dft/fig3": ("dft", "sft", "simpo"),
    "dft/fig4": ("dft", "dft2", "sft", "sft->dpo", "sft->simpo"),
    "minorsft/fig1": ("sft", "sft_dpo", "minorsft"),
    "asft/fig2a": ("asft", "orpo"),
    "asft/fig2b": ("asft", "dpo"),
}
CSV_COLUMNS = ["method", "run", "step", "series", "value", "note"]


# ----------------------------------------------------------------------------- helpers
def _missing_rows(fig: str, runs: list[Run], series_needed=()) -> tuple[list[dict], list[str]]:
    """Rows naming each paper method of ``fig`` that has no run (or no logged series)."""
    rows, missing = [], []
    for m in FIG_METHODS[fig]:
        rs = runs_of(runs, m)
        if not rs:
            why = "two-stage pipeline: no pipelines: run" if "->" in m else "no run of this method"
            rows.append({"method": m, "run": "", "step": "", "series": "", "value": "", "note": f"missing: {why}"})
            missing.append(f"{m} ({why})")
            continue
        for key in series_needed:
            for r in rs:
                if not r.curve(key):
                    rows.append({"method": m, "run": r.name, "step": "", "series": key, "value": "",
                                 "note": f"missing: {key} not logged in {r.curve_source}"})
                    missing.append(f"{r.label}: {key} not logged")
    return rows, missing


def _series_rows(runs: list[Run], keys) -> list[dict]:
    rows = []
    for r in runs:
        for key in keys:
            for step, v in r.curve(key):
                rows.append({"method": r.kind, "run": r.name, "step": step, "series": key, "value": v,
                             "note": r.curve_source})
    return rows


def _write_csv(path: Path, rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=CSV_COLUMNS)
    atomic_write_text(path, df.to_csv(index=False))
    return df


STYLES = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ((0, (5, 1)), "v"), ((0, (1, 1)), "P")]


def _groups(runs: list[Run]) -> list[tuple[str, list[Run]]]:
    """Runs that differ only in their seed (a methods: run and its replicates) form one group."""
    out: dict[tuple, list[Run]] = {}
    for r in runs:
        c = r.config or {}
        key = (r.kind, c.get("lr"), json.dumps(c.get("hparams") or {}, sort_keys=True),
               r.name.rsplit("/seed~", 1)[0])
        out.setdefault(key, []).append(r)
    return [(rs[0].label if len(rs) == 1 else rs[0].kind, rs) for rs in out.values()]


def _line_panel(ax, runs: list[Run], key: str, ylabel: str, title: str) -> None:
    """One line per method: the mean over its seeds with the min-max band where it has several.
    Each line has its own dash pattern and marker; a series identical to one already drawn (e.g.
    a method whose extra term has no gradient at this scale) says so in the legend and is drawn
    hollow on top, so it cannot hide."""
    drawn = []
    for name, rs in _groups(runs):
        curves = [c for c in (dict(r.curve(key)) for r in rs) if c]
        steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
        if not steps:
            continue
        vals = [[c[x] for c in curves] for x in steps]
        s = [(x, sum(v) / len(v)) for x, v in zip(steps, vals)]
        same = next((lab for prev, lab in drawn if prev == s), None)
        dash, marker = STYLES[len(drawn) % len(STYLES)]
        seeds = f", mean of {len(curves)} seeds, band min-max" if len(curves) > 1 else ""
        label = f"{name} (lr {rs[0].config.get('lr', '?')}{seeds})" + (f" = {same}" if same else "")
        line, = ax.plot(steps, [y for _, y in s], ls=dash, marker=marker, ms=4 if same else 3, lw=1.4, label=label,
                        mfc="none" if same else None, zorder=3 + len(drawn))
        if len(curves) > 1:
            ax.fill_between(steps, [min(v) for v in vals], [max(v) for v in vals], color=line.get_color(),
                            alpha=0.15, lw=0)
        drawn.append((s, name))
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if drawn:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no run logs this series", ha="center", va="center", transform=ax.transAxes, fontsize=8)


def _cost(r: Run) -> dict:
    """seconds per step and peak memory of one run: timing.json first, per-step log as a check."""
    t = r.timing or {}
    sec = [v for _, v in r.series("seconds")]
    mem = [v for _, v in r.series("peak_memory_mb")]
    return {
        "timing_seconds_per_step": t.get("seconds_per_step"),
        "timing_wall_seconds": t.get("wall_seconds"),
        "timing_peak_memory_mb": t.get("peak_memory_mb"),
        "timing_steps": t.get("steps"),
        "perf_mean_seconds": sum(sec) / len(sec) if sec else None,
        "perf_max_peak_memory_mb": max(mem) if mem else None,
    }


def _cost_rows(runs: list[Run]) -> list[dict]:
    rows = []
    for r in runs:
        for k, v in _cost(r).items():
            if v is not None:
                src = "timing.json" if k.startswith("timing_") else r.perf_source
                rows.append({"method": r.kind, "run": r.name, "step": "", "series": k, "value": v,
                             "note": f"{src}; {r.device}"})
    return rows


def _cost_panels(axes, runs: list[Run]) -> None:
    labels = [r.label for r in runs]
    for ax, key, ylabel in ((axes[0], "timing_seconds_per_step", "seconds / step (timing.json)"),
                            (axes[1], "timing_peak_memory_mb", "peak memory, MB (timing.json)")):
        vals = [_cost(r)[key] for r in runs]
        xs = [i for i, v in enumerate(vals) if v is not None]
        ax.bar(xs, [vals[i] for i in xs], color="tab:blue")
        for i in xs:   # vertical, so neighbouring labels of close values never overlap
            ax.text(i, vals[i], f" {vals[i]:.4g}", ha="center", va="bottom", fontsize=7, rotation=90)
        if xs:
            ax.set_ylim(0, max(vals[i] for i in xs) * 1.3)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        if not runs:
            ax.text(0.5, 0.5, "no runs", ha="center", va="center", transform=ax.transAxes)


def _source(runs: list[Run]) -> str:
    src = sorted({r.curve_source for r in runs})
    return {("probe.jsonl",): "held-out probe set, probe.jsonl",
            ("metrics.jsonl",): "each step's training batch, metrics.jsonl"}.get(tuple(src), " / ".join(src) or "no runs")


MEMORY_NOTE = "peak memory: CUDA max allocated on GPU, process max RSS on CPU"


# ----------------------------------------------------------------------------- figures
def dft_fig3(runs: list[Run], out_png: Path, scale: str) -> pd.DataFrame:
    sel = [r for m in FIG_METHODS["dft/fig3"] for r in runs_of(runs, m)]
    keys = ("logp_pos_per_token", "logp_neg_per_token", "logp_pos", "logp_neg")
    miss_rows, missing = _missing_rows("dft/fig3", runs, ("logp_pos_per_token", "logp_neg_per_token"))
    df = _write_csv(out_png.with_suffix(".csv"), _series_rows(sel, keys) + miss_rows)
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    _line_panel(axes[0], sel, "logp_pos_per_token", "mean log-likelihood per token", "(a) positives")
    _line_panel(axes[1], sel, "logp_neg_per_token", "mean log-likelihood per token", "(b) negatives")
    fig.suptitle("dft.txt Fig. 3: log-likelihood of positives and negatives during training "
                 f"({_source(sel)})", fontsize=9)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    footer(fig, scale, missing)
    save_figure(fig, out_png)
    return df


def fig4_runs(runs: list[Run]) -> list[Run]:
    """The bars of dft.txt Fig. 4 (a): each paper method's own run (its ``method~<m>`` directory, not a
    sweep point or a replicate, where it has one) and every SFT->DPO / SFT->SimPO pipeline run."""
    out = []
    for m in FIG_METHODS["dft/fig4"]:
        rs = runs_of(runs, m)
        if "->" not in m:
            rs = [r for r in rs if r.path.name == f"method~{r.method}"] or rs
        out += rs
    return out


def _short_labels(runs: list[Run]) -> list[str]:
    """The kind, plus the path parts that tell apart runs of one kind (e.g. pairs vs self-play PO)."""
    kinds: dict[str, list[set]] = {}
    for r in runs:
        kinds.setdefault(r.kind, []).append(set(r.name.split("/")))
    out = []
    for r in runs:
        if len(kinds[r.kind]) == 1:
            out.append(r.kind)
            continue
        common = set.intersection(*kinds[r.kind])
        own = [p for p in r.name.split("/") if p not in common]
        out.append(f"{r.kind} [{' '.join(own) or r.name}]")
    return out


def _total_rows(sel: list[Run], labels: list[str]) -> tuple[list[dict], list[str], list[tuple]]:
    """CSV rows of the total training time per bar, what is missing, and (label, [(stage, hours)]) bars."""
    rows, missing, bars = [], [], []
    for r, label in zip(sel, labels):
        stages = pipeline_stages(r)
        secs = [train_seconds(t) for _, _, t in stages]
        if any(s is None for s in secs):
            bad = "; ".join(f"{d}/timing.json" for (_, d, _), s in zip(stages, secs) if s is None)
            rows.append({"method": r.kind, "run": r.name, "step": "", "series": "total_train_hours", "value": "",
                         "note": f"missing: no seconds_per_step x steps in {bad}"})
            missing.append(f"{label} (no timing.json: {bad})")
            continue
        procs = [(t or {}).get("processes") or 1 for _, _, t in stages]
        for k, ((stage, d, _), s, p) in enumerate(zip(stages, secs, procs), 1):
            if len(stages) > 1:
                rows.append({"method": r.kind, "run": r.name, "step": "", "series": f"stage{k}_train_hours",
                             "value": s / 3600,
                             "note": f"{stage}: {d}/timing.json seconds_per_step x steps; {p} processes"})
        rows.append({"method": r.kind, "run": r.name, "step": "", "series": "total_train_hours",
                     "value": sum(secs) / 3600,
                     "note": ("sum of both stages (dft.txt A.4)" if len(stages) > 1
                              else "timing.json seconds_per_step x steps") + f"; {r.device}"})
        rows.append({"method": r.kind, "run": r.name, "step": "", "series": "total_gpu_hours",
                     "value": sum(s * p for s, p in zip(secs, procs)) / 3600,
                     "note": "hours x processes (one GPU each), summed over the stages"})
        bars.append((label, [(stage, s / 3600) for (stage, _, _), s in zip(stages, secs)], max(procs)))
    return rows, missing, bars


def _total_panel(ax, bars: list[tuple]) -> None:
    colours = {"run": "tab:blue", "PO stage": "tab:blue"}
    seen = set()
    for i, (_, stages, _) in enumerate(bars):
        bottom = 0.0
        for stage, hours in stages:
            lab = {"run": "one-stage run"}.get(stage, stage) if stage not in seen else None
            seen.add(stage)
            ax.bar(i, hours, bottom=bottom, color=colours.get(stage, "tab:gray"), label=lab)
            bottom += hours
        ax.text(i, bottom, f" {bottom:.3g}", ha="center", va="bottom", fontsize=7, rotation=90)
    tops = [sum(h for _, h in st) for _, st, _ in bars]
    if tops:
        ax.set_ylim(0, max(tops) * 1.6 or 1)
        ax.legend(fontsize=7, loc="upper left", ncol=3)
    else:
        ax.text(0.5, 0.5, "no runs", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks(range(len(bars)))
    ax.set_xticklabels([f"{lab} ({p} proc)" for lab, _, p in bars], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("total training time, hours", fontsize=8)
    ax.set_title("(a) total training time (a pipeline: both stages)", fontsize=9)


def dft_fig4(runs: list[Run], out_png: Path, scale: str) -> pd.DataFrame:
    """dft.txt Fig. 4: (a) the paper's quantity, total training time in hours per method, an SFT->PO
    pipeline counted as the sum of its two stages (A.4); (b, c) seconds per step and peak memory of
    every run of the experiment."""
    miss_rows, missing = _missing_rows("dft/fig4", runs)
    sel = fig4_runs(runs)
    total_rows, total_missing, bars = _total_rows(sel, _short_labels(sel))
    df = _write_csv(out_png.with_suffix(".csv"), total_rows + _cost_rows(runs) + miss_rows)
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    _total_panel(axes[0], bars)
    _cost_panels(axes[1:], runs)
    axes[1].set_title("(b) seconds per step, every run", fontsize=9)
    axes[2].set_title("(c) peak memory, every run", fontsize=9)
    fig.suptitle("dft.txt Fig. 4: training cost per method (timing.json of each run; negative generation "
                 "excluded, as in the paper)", fontsize=9)
    fig.tight_layout(rect=(0, 0.12, 1, 0.95))
    devices = sorted({r.device for r in runs}) or ["no runs"]
    footer(fig, scale, missing + total_missing,
            f"{MEMORY_NOTE}; device: {', '.join(devices)}; (a) the training loop of each stage, hours on the "
            "processes shown (the paper: 4xA100-80G), GPU-hours in the CSV")
    save_figure(fig, out_png)
    return df


def methods_run(fig: str, runs: list[Run]) -> tuple[list[str], list[str]]:
    """The paper methods of ``fig`` that have a run here (drawn), and those that do not."""
    ran = [m for m in FIG_METHODS[fig] if runs_of(runs, m)]
    return ran, [m for m in FIG_METHODS[fig] if m not in ran]


def _methods_line(fig: str, runs: list[Run]) -> str:
    """One title line saying which of the paper's methods the figure draws and which did not run."""
    ran, not_run = methods_run(fig, runs)
    line = f"drawn: {', '.join(ran) or 'none'}"
    if not_run:
        line += f"; not run at this scale: {', '.join(not_run)} (this experiment trains no run of them)"
    return line


def minorsft_fig1(runs: list[Run], out_png: Path, scale: str) -> pd.DataFrame:
    sel = [r for m in FIG_METHODS["minorsft/fig1"] for r in runs_of(runs, m)]
    miss_rows, missing = _missing_rows("minorsft/fig1", runs, ("deviation",))
    df = _write_csv(out_png.with_suffix(".csv"), _series_rows(sel, ("deviation",)) + miss_rows)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.4))
    _line_panel(ax, sel, "deviation", "m_theta = mean (S - S0) / |y|", "deviation from the reference (Eq. 8)")
    fig.suptitle(f"minorsft.txt Fig. 1: deviation metric over training steps ({_source(sel)})\n"
                 f"{_methods_line('minorsft/fig1', runs)}", fontsize=8.5)
    fig.tight_layout(rect=(0, 0.1, 1, 0.92))
    not_run = methods_run("minorsft/fig1", runs)[1]   # named in the title; the footnote keeps what ran but lacks data
    footer(fig, scale, [m for m in missing if m.split(" ", 1)[0] not in not_run],
            "paper: SFT lr 1e-5, SFT-using-DPO and MinorSFT lr 2e-5")
    save_figure(fig, out_png)
    return df


def asft_fig2(runs: list[Run], out_png: Path, scale: str) -> pd.DataFrame:
    sel_a = [r for m in FIG_METHODS["asft/fig2a"] for r in runs_of(runs, m)]
    sel_b = [r for m in FIG_METHODS["asft/fig2b"] for r in runs_of(runs, m)]
    miss_a, missing_a = _missing_rows("asft/fig2a", runs, ("likelihood_margin",))
    miss_b, missing_b = _missing_rows("asft/fig2b", runs)
    rows = [{**row, "series": f"a:{row['series']}" if row["series"] else "a"}
            for row in _series_rows(sel_a, ("likelihood_margin",)) + miss_a]
    rows += [{**row, "series": f"b:{row['series']}" if row["series"] else "b"} for row in _cost_rows(sel_b) + miss_b]
    df = _write_csv(out_png.with_suffix(".csv"), rows)
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    _line_panel(axes[0], sel_a, "likelihood_margin", "mean Sbar(y_w) - Sbar(y_l)", "(a) likelihood margin")
    _cost_panels(axes[1:], sel_b)
    axes[1].set_title("(b) runtime", fontsize=9)
    axes[2].set_title("(b) peak memory", fontsize=9)
    fig.suptitle(f"asft.txt Fig. 2: (a) likelihood margin ASFT vs ORPO ({_source(sel_a)}); (b) cost ASFT vs DPO",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    devices = sorted({r.device for r in sel_b}) or ["no runs"]
    footer(fig, scale, missing_a + missing_b, f"{MEMORY_NOTE}; device: {', '.join(devices)}; DPO reads "
            "precomputed reference log-probs (no in-loop reference model), unlike the paper's DPO")
    save_figure(fig, out_png)
    return df


def training_figures(run_dirs, out_root, scale: str) -> dict[str, Path]:
    """Write out_root/{dft/fig3, dft/fig4, minorsft/fig1, asft/fig2}.{png,pdf,csv}.

    ``run_dirs``: a runs root to search, or a list of run directories."""
    runs = find_runs(run_dirs)
    out_root = Path(out_root)
    out = {}
    for key, fn in (("dft/fig3", dft_fig3), ("dft/fig4", dft_fig4), ("minorsft/fig1", minorsft_fig1),
                    ("asft/fig2", asft_fig2)):
        png = out_root / f"{key}.png"
        png.parent.mkdir(parents=True, exist_ok=True)
        fn(runs, png, scale)
        out[key] = png
    return out


def main_training_figures(argv=None) -> None:
    p = argparse.ArgumentParser(prog="negfree training-figures",
                                description="dft Fig. 3/4, minorsft Fig. 1, asft Fig. 2 from training runs")
    p.add_argument("--runs-root", required=True, help="directory searched for run dirs (metrics.jsonl)")
    p.add_argument("--out-root", required=True, help="figures go to OUT_ROOT/<paper>/<fig>.{png,pdf,csv}")
    p.add_argument("--scale", required=True, help="scale string printed on every figure")
    a = p.parse_args(argv)
    for key, png in training_figures(a.runs_root, a.out_root, a.scale).items():
        print(f"{key}: wrote {png} (+ .pdf, .csv)")


if __name__ == "__main__":
    main_training_figures()
