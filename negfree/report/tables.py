"""Tables built only from result files: one row per evaluated model."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from ..io import atomic_write_text, read_json, write_json
from ..train.runlog import provenance

# metric key in the evaluation JSON -> column name in the table
COLUMNS = {
    ("negfree_mc", "acc,none"): "mc_acc",
    ("negfree_mc", "acc_norm,none"): "mc_acc_norm",
    ("negfree_gen", "exact_match,strict-match"): "gen_exact_match",
}


def _label(eval_json: Path, run_dir: Path | None) -> str:
    if run_dir is not None:
        cfg = run_dir / "config.json"
        if cfg.exists():
            return read_json(cfg)["method"]
    return "base"   # no training run: the model the experiment starts from


def summary_table(evals: list[str], out_csv: str, out_md: str, runs: list[str] | None = None) -> pd.DataFrame:
    """One row per evaluation JSON: model label, metrics (x100), n, and, for trained runs,
    steps, wall time and the last logged training loss."""
    runs = list(runs) if runs else []
    runs = [None] * (len(evals) - len(runs)) + runs   # rows without a run (the base model) come first
    if len(runs) != len(evals):
        raise ValueError(f"table: {len(evals)} evaluation files but {len(runs)} run directories")
    rows = []
    for ev, run in zip(evals, runs):
        ev = Path(ev)
        res = read_json(ev)
        run_dir = Path(run) if run else None
        row = {"model": _label(ev, run_dir)}
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
    atomic_write_text(out_csv, df.to_csv(index=False))
    note = ("Scale: the embedded SmolLM2-135M-Instruct, embedded dataset, CPU; offline lm-eval twin "
            "(negfree_mc: log-likelihood multiple choice; negfree_gen: strict exact match). "
            "Metrics in %, `_se` = standard error.\n\n")
    atomic_write_text(out_md, note + df.to_markdown(index=False) + "\n")
    write_json(Path(out_csv).with_name("provenance.json"), {
        "made": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "inputs": [str(e) for e in evals], **provenance(),
        "train_wall_seconds": {r["model"]: r.get("train_seconds") for r in rows if r.get("train_seconds")},
    })
    return df
