"""The five papers' own numbers, transcribed from their text, for printing beside ours.

    from negfree.report.paper_numbers import items, load, info
    items()                     # every targets.md item id, e.g. 'dft/table2', 'dft/table8_fig2b'
    load("dft/table2")          # tidy DataFrame: paper,item,model,setting,method,metric,value,unit,source
    load("dft/fig2b")           # an alias: the item's rows filtered (here metric == 'avg')
    info("dft/table2")          # the index.yaml entry: files, caption, metric/row order, runs

``value`` is a float; NaN where the paper text gives no number (see README.md). An item
whose numbers are not in the text (most figures) loads as an empty frame with the columns.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
COLUMNS = ["paper", "item", "model", "setting", "method", "metric", "value", "unit", "source"]


@lru_cache(maxsize=1)
def _index() -> dict:
    return yaml.safe_load((HERE / "index.yaml").read_text(encoding="utf-8"))["items"]


def items() -> list[str]:
    """Every item id of index.yaml (one per targets.md row), in targets.md order."""
    return list(_index())


def aliases() -> dict[str, tuple[str, dict]]:
    """alias id -> (item id, row filter). Every item id is its own alias with no filter."""
    out: dict[str, tuple[str, dict]] = {}
    for iid, entry in _index().items():
        out[iid] = (iid, {})
        for alias, filt in (entry.get("aliases") or {}).items():
            out[alias] = (iid, dict(filt or {}))
    return out


def resolve(item_id: str) -> tuple[str, dict]:
    try:
        return aliases()[item_id]
    except KeyError:
        raise KeyError(f"unknown paper item {item_id!r}; known: {', '.join(sorted(aliases()))}") from None


def info(item_id: str) -> dict:
    """The index.yaml entry of an item (or of the item an alias points to)."""
    return dict(_index()[resolve(item_id)[0]])


def read_csv(path: str | Path) -> pd.DataFrame:
    """One transcription CSV with every column as text except ``value`` (float, NaN if empty)."""
    return _read_csv(str(path)).copy()


@lru_cache(maxsize=None)
def _read_csv(path: str) -> pd.DataFrame:
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(df.columns) != COLUMNS:
        raise ValueError(f"{path}: columns {list(df.columns)} != {COLUMNS}")
    df["value"] = pd.to_numeric(df["value"].replace("", float("nan")), errors="raise").astype(float)
    return df


def load(item_id: str) -> pd.DataFrame:
    """The paper's numbers for an item id or alias, in the paper's row/column order."""
    iid, filt = resolve(item_id)
    files = _index()[iid].get("files") or []
    frames = [read_csv(HERE / f) for f in files]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=float if c == "value" else object) for c in COLUMNS})
    df = pd.concat(frames, ignore_index=True)
    for col, want in filt.items():
        df = df[df[col] == want]
    return df.reset_index(drop=True)


def lookup(item_id: str, method: str, metric: str, setting: str | None = None, model: str | None = None) -> float:
    """One number; raises if the selection is not exactly one row."""
    df = load(item_id)
    sel = (df.method == method) & (df.metric == metric)
    if setting is not None:
        sel &= df.setting == setting
    if model is not None:
        sel &= df.model == model
    hit = df[sel]
    if len(hit) != 1:
        raise KeyError(f"{item_id}: {len(hit)} rows for method={method} metric={metric} setting={setting} model={model}")
    return float(hit.value.iloc[0])
