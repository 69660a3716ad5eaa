"""The sweep tables the DAG writes, read and checked into the data one sweep figure plots.

One row per grid point in grid order, the swept settings as columns:

- ``results/tables/<exp>/sweep~<name>.csv`` (offline twin, negfree.report.tables.summary_table):
  ``model``, the settings, ``mc_acc``, ``mc_acc_se``, ``gen_exact_match``, ...;
- ``results/tables/<exp>/sweep~<name>~protocols.csv`` (paper protocols, ``negfree sweep-table``):
  the settings, ``run``, ``<protocol>/<task>/<metric> (%)`` and ``<protocol>/<metric>``.

Several tables are stacked in the order given; two derived keys exist wherever a table lacks them:
``table`` (the sweep name from the file name) and ``method`` (from the ``run`` id or the ``model``
label). A metric's standard-error column is found by name (``stderr_column``). Every problem
(missing file, empty table, missing column or key, no numeric value, two rows for the same point)
stops with one message naming the culprit. Drawing: negfree.report.sweep_plots.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

DERIVED_KEYS = ("table", "method")


def sweep_name(path: str | Path) -> str:
    """``sweep~dft_B~protocols.csv`` -> ``dft_B``; any other file: its stem."""
    stem = Path(path).stem
    if stem.startswith("sweep~"):
        stem = stem[len("sweep~"):]
    return stem[:-len("~protocols")] if stem.endswith("~protocols") else stem


def _method_of(row: pd.Series) -> str | None:
    run = row.get("run")
    if isinstance(run, str) and run.startswith("method~"):
        return run.split("/", 1)[0][len("method~"):]
    model = row.get("model")
    if isinstance(model, str) and model.strip():
        return model.split()[0]
    return None


def read_table(path: str | Path) -> pd.DataFrame:
    """One sweep table, every cell as text (the grid values keep their written form)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep table not found: {path}")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        raise ValueError(f"sweep table {path} is empty (no header, no rows)") from None
    if df.empty:
        raise ValueError(f"sweep table {path} has no rows")
    if "table" not in df.columns:
        df["table"] = sweep_name(path)
    if "method" not in df.columns:
        df["method"] = [_method_of(r) for _, r in df.iterrows()]
    return df


def stderr_column(columns, metric: str) -> str | None:
    """The standard-error column of ``metric`` in ``columns``, if the table has one."""
    candidates = [f"{metric}_se", f"{metric}_stderr"]
    if metric.endswith(" (%)"):
        base = metric[:-len(" (%)")]
        candidates += [f"{base}_se (%)", f"{base}_stderr (%)"]
    return next((c for c in candidates if c in columns), None)


def sweep_data(tables: list[str | Path], x: str, metric: str, series: str | None = None,
               stderr: str | None = None) -> tuple[pd.DataFrame, str | None]:
    """The plotted data, one row per grid point in grid order, and the stderr column used (or None)."""
    if not tables:
        raise ValueError("give at least one --table")
    if series is not None and series == x:
        raise ValueError(f"--series {series!r} is the same key as --x")
    frames = []
    for path in tables:
        df = read_table(path)
        for key, what in ((x, "--x key"), (series, "--series key"), (metric, "--metric column"),
                          (stderr, "--stderr column")):
            if key is None:
                continue
            if key not in df.columns:
                real = [c for c in df.columns if c not in DERIVED_KEYS]
                raise ValueError(f"{what} {key!r} is not a column of {path} (columns: {', '.join(real)})")
            if df[key].isna().all():
                raise ValueError(f"{what} {key!r} is empty in every row of {path}")
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    se = stderr if stderr is not None else stderr_column(df.columns, metric)

    for key, what in ((x, "--x key"), (series, "--series key")):
        if key is not None and df[key].isna().any():
            bad = df.index[df[key].isna()].tolist()
            raise ValueError(f"{what} {key!r} has no value in row(s) {bad} of the stacked table(s)")
    value = pd.to_numeric(df[metric], errors="coerce")
    text = df[metric]
    not_num = text.notna() & value.isna()
    if not_num.any():
        raise ValueError(f"--metric column {metric!r} holds non-numeric value(s) "
                         f"{sorted(set(text[not_num]))[:5]}")
    if value.isna().all():
        raise ValueError(f"--metric column {metric!r} has no numeric value in any row")
    keys = ([series] if series else []) + [x]
    dup = df.duplicated(subset=keys, keep=False)
    if dup.any():
        points = df.loc[dup, keys].drop_duplicates().to_dict("records")
        others = [c for c in df.columns if c not in keys + [metric] and df.loc[dup, c].nunique() > 1]
        raise ValueError(f"more than one row for the point(s) {points[:3]} of {'/'.join(keys)}; "
                         f"they differ in {others[:6] or 'nothing'}: give the other key as --series or "
                         f"plot one sweep at a time")
    out = df[keys].copy()
    out[metric] = value
    if se is not None:
        err = pd.to_numeric(df[se], errors="coerce")
        if err.notna().any():
            out[se] = err
        else:
            se = None
    return out.reset_index(drop=True), se
