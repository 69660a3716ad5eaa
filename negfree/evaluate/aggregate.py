"""Collect evaluation JSONs into one tidy CSV: run, protocol, task, metric, value, stderr, n.

Reads every result JSON this package writes:
- protocols (``evaluate_protocol``): one row per task (its protocol metric) plus
  one ``aggregate`` row when the protocol has an average;
- the offline lm-eval twin (``evaluate_local``): one row per task and metric key;
- AlpacaEval and BLEU/ROUGE: their ``metrics`` rows.

The run name is the folder above ``eval/`` (``runs/<run>/eval/<protocol>.json``),
else the JSON's parent folder; pass ``runs`` to name them yourself.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from negfree.common.io import atomic_write_text

COLUMNS = ("run", "protocol", "task", "metric", "value", "stderr", "n")


def run_name(path: str | Path) -> str:
    path = Path(path)
    return path.parent.parent.name if path.parent.name == "eval" else path.parent.name


def rows_from_record(record: dict, run: str) -> list[dict]:
    protocol = record.get("protocol", "")
    rows = []
    if isinstance(record.get("metrics"), list):                    # alpaca, textsim
        for m in record["metrics"]:
            rows.append({"task": m["task"], "metric": m["metric"], "value": m.get("value"),
                         "stderr": m.get("stderr"), "n": m.get("n")})
    elif "calls" in record:                                        # evaluate_protocol
        for task, t in record["tasks"].items():
            rows.append({"task": task, "metric": t["metric"], "value": t["value"],
                         "stderr": t["stderr"], "n": t["n"]})
        agg = record.get("aggregate") or {}
        if agg.get("rule") not in (None, "none"):
            rows.append({"task": "aggregate", "metric": f"{agg['rule']} (x{agg['scale']:g})",
                         "value": agg.get("value"), "stderr": None, "n": len(record["tasks"])})
    elif isinstance(record.get("tasks"), dict):                    # evaluate_local
        n_samples = record.get("n_samples", {})
        for task, metrics in record["tasks"].items():
            n = (n_samples.get(task) or {}).get("effective")
            for key, value in metrics.items():
                name, _, filt = key.partition(",")
                if name.endswith("_stderr"):
                    continue
                rows.append({"task": task, "metric": key, "value": value,
                             "stderr": metrics.get(f"{name}_stderr,{filt}"), "n": n})
    else:
        raise ValueError(f"not an evaluation result this package writes (protocol={protocol!r})")
    return [{"run": run, "protocol": protocol, **r} for r in rows]


def collect(paths: list[str | Path], runs: list[str] | None = None) -> list[dict]:
    if runs is not None and len(runs) != len(paths):
        raise ValueError(f"{len(runs)} run names for {len(paths)} result files")
    out = []
    for i, path in enumerate(paths):
        path = Path(path)
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        try:
            out += rows_from_record(record, runs[i] if runs else run_name(path))
        except (KeyError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from None
    return out


def write_csv(rows: list[dict], out_csv: str | Path) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r[k]) for k in COLUMNS})
    return atomic_write_text(out_csv, buf.getvalue())


def aggregate(paths: list[str | Path], out_csv: str | Path, runs: list[str] | None = None) -> list[dict]:
    rows = collect(paths, runs)
    write_csv(rows, out_csv)
    return rows

