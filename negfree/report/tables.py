"""Tables built only from result files: one row per evaluated model."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from negfree.common.io import atomic_write_text, read_json, write_json
from negfree.common.naming import run_settings
from negfree.report.html import write_markdown_page
from negfree.train.runlog import provenance

# metric key in the evaluation JSON -> column name in the table
COLUMNS = {
    ("negfree_mc", "acc,none"): "mc_acc",
    ("negfree_mc", "acc_norm,none"): "mc_acc_norm",
    ("negfree_gen", "exact_match,strict-match"): "gen_exact_match",
}
# the columns every row has, after the swept settings
_FIXED = [c for col in COLUMNS.values() for c in (col, col + "_se")] + ["n_test", "train_steps", "train_seconds"]


def _run_id(run_dir: Path) -> str:
    """The run id: the path from its method~NAME segment on (negfree.jobs.sweeps)."""
    parts = run_dir.parts
    i = next((k for k in range(len(parts) - 1, -1, -1) if parts[k].startswith("method~")), None)
    return "/".join(parts[i:]) if i is not None else run_dir.name


def _label(eval_json: Path, run_dir: Path | None) -> str:
    """'sft' for a run of `methods:`, 'dft gamma=0.9 tau=1.0' for a sweep point, 'base' without a run."""
    if run_dir is not None:
        cfg = run_dir / "config.json"
        if cfg.exists():
            settings = run_settings(_run_id(run_dir))
            return " ".join([read_json(cfg)["method"]] + [f"{k}={v}" for k, v in settings.items()])
    return "base"   # no training run: the model the experiment starts from


def provenance_path(out_csv: str | Path) -> Path:
    """results/tables/<exp>/summary.csv -> summary.provenance.json beside it."""
    return Path(out_csv).with_name(Path(out_csv).stem + ".provenance.json")


def summary_table(evals: list[str], out_csv: str, out_md: str, runs: list[str] | None = None,
                  scale: str | None = None, settings: list[dict] | None = None) -> pd.DataFrame:
    """One row per evaluation JSON: model label, metrics (x100), n, and, for trained runs,
    steps, wall time and the last logged training loss."""
    runs = list(runs) if runs else []
    runs = [None] * (len(evals) - len(runs)) + runs   # rows without a run (the base model) come first
    if len(runs) != len(evals):
        raise ValueError(f"table: {len(evals)} evaluation files but {len(runs)} run directories")
    if settings is not None and len(settings) != len(runs):
        raise ValueError(f"table: {len(settings)} settings for {len(runs)} rows")
    rows = []
    for k, (ev, run) in enumerate(zip(evals, runs)):
        ev = Path(ev)
        res = read_json(ev)
        run_dir = Path(run) if run else None
        row = {"model": _label(ev, run_dir)}
        if settings is not None:
            row.update(settings[k])                          # a sweep table: the point's settings
        elif run_dir is not None:
            row.update(run_settings(_run_id(run_dir)))       # settings named in the run id
        for (task, key), col in COLUMNS.items():
            value = res["tasks"].get(task, {}).get(key)
            row[col] = None if value is None else round(100 * value, 2)
            stderr = res["tasks"].get(task, {}).get(key.replace(",", "_stderr,", 1))
            row[col + "_se"] = None if stderr is None else round(100 * stderr, 2)
        row["n_test"] = max((v.get("effective", 0) for v in res.get("n_samples", {}).values()), default=None)
        if run_dir is not None:
            timing = read_json(run_dir / "timing.json")
            row["train_steps"] = timing["steps"]
            row["train_seconds"] = timing["wall_seconds"]
        rows.append(row)
    df = pd.DataFrame(rows)
    first = ["model"] + [c for c in df.columns if c != "model" and c not in _FIXED]
    df = df[first + [c for c in df.columns if c in _FIXED]]
    atomic_write_text(out_csv, df.to_csv(index=False))
    note = (f"Scale: {scale or 'not stated'}. Offline lm-eval twin on the embedded test split "
            "(negfree_mc: log-likelihood multiple choice; negfree_gen: strict exact match). "
            "Metrics in %, `_se` = standard error.\n\n")
    write_markdown_page(out_md, note + df.to_markdown(index=False) + "\n")
    write_json(provenance_path(out_csv), {
        "made": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "inputs": [str(e) for e in evals], **provenance(),
        "train_wall_seconds": {r["model"]: r.get("train_seconds") for r in rows if r.get("train_seconds")},
    })
    return df


def protocol_sweep_table(evals: str | Path, runs: list[str], settings: list[dict], out_csv: str | Path,
                         out_md: str | Path, scale: str | None = None) -> pd.DataFrame:
    """One sweep over paper protocols: a row per grid point (its settings, its run id), a column per
    (protocol, task, metric) of the tidy ``evals.csv`` (``negfree eval-csv``), task metrics in %
    (lm-eval fractions x 100), protocol averages as the protocol reports them."""
    from negfree.report.paper_table import load_evals

    if len(settings) != len(runs):
        raise ValueError(f"sweep table: {len(settings)} settings for {len(runs)} runs")
    df = load_evals([evals])
    missing = [r for r in runs if r not in set(df["run"])]
    if missing:
        raise ValueError(f"sweep table: {evals} has no results for run(s) {missing}")
    rows = []
    for run, point in zip(runs, settings):
        row = {**point, "run": run}
        for r in df[df["run"] == run].itertuples():
            if r.task == "aggregate" or r.protocol.startswith("alpaca_eval"):   # AlpacaEval: % and characters already
                row[f"{r.protocol}/{r.metric}"] = r.value
            else:
                row[f"{r.protocol}/{r.task}/{r.metric} (%)"] = None if pd.isna(r.value) else round(100 * r.value, 2)
        rows.append(row)
    table = pd.DataFrame(rows)
    atomic_write_text(out_csv, table.to_csv(index=False))
    note = (f"Scale: {scale or 'not stated'}. One row per grid point of the sweep (settings first, then the run "
            f"that computed it); lm-eval protocol results from `{evals}`, task metrics in %.\n\n")
    write_markdown_page(out_md, note + table.to_markdown(index=False) + "\n")
    return table
