"""A figure of one metric across the grid points of a sweep (or of several sweeps).

Input: the sweep tables the DAG writes, one row per grid point in grid order,
the swept settings as columns:

- ``results/tables/<exp>/sweep~<name>.csv`` (offline twin, negfree.report.tables.summary_table):
  ``model``, the settings, ``mc_acc``, ``mc_acc_se``, ``gen_exact_match``, ...;
- ``results/tables/<exp>/sweep~<name>~protocols.csv`` (paper protocols, ``negfree sweep-table``):
  the settings, ``run``, ``<protocol>/<task>/<metric> (%)`` and ``<protocol>/<metric>``.

Nothing here knows a particular sweep. ``--x`` names the setting on the horizontal axis,
``--metric`` the column plotted, ``--series`` optionally a second key (one bar per value within
each x group). A numeric x without a series is drawn as a line (points at their values, joined in
increasing x); a categorical x, or any plot with a series, as grouped bars (x groups and series in
order of first appearance, i.e. grid order). Error bars come from the metric's standard-error
column when the table has one (``<metric>_se``, ``<metric>_stderr``, or ``<base>_se (%)`` for a
``<base> (%)`` column) or from ``--stderr COLUMN``.

``--table`` may be repeated (e.g. dft.txt Fig. 6: the B sweeps of several methods): the tables are
stacked in the order given, and two derived keys become available wherever the tables lack them:
``table`` (the sweep name from the file name: ``sweep~dft_B~protocols.csv`` -> ``dft_B``) and
``method`` (from the ``run`` id ``method~NAME/...`` or the first word of the ``model`` label).

Outputs: PATH.png, PATH.pdf (byte-reproducible) and PATH.csv, the plotted data: one row per point
in grid order, columns (series key,) x key, metric (, stderr column).
Every problem (missing file, empty table, missing column or key, no numeric value, two rows for
the same point) stops with one message naming the culprit.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from negfree.common.io import atomic_write_text

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


def _numeric(values: pd.Series) -> pd.Series | None:
    """``values`` as floats when every one parses as a number, else None."""
    out = pd.to_numeric(values, errors="coerce")
    return None if out.isna().any() else out.astype(float)


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


def plot_sweep(data: pd.DataFrame, x: str, metric: str, out_png: str | Path, *, title: str, scale: str,
               series: str | None = None, stderr: str | None = None) -> str:
    """Draw ``data`` (from :func:`sweep_data`); returns the kind drawn, 'line' or 'bars'."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from negfree.report.analytic import _save   # the project's byte-reproducible PNG/PDF writer

    xnum = _numeric(data[x])
    kind = "line" if (xnum is not None and series is None) else "bars"
    y = data[metric].to_numpy(dtype=float)
    err = data[stderr].to_numpy(dtype=float) if stderr else None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    if kind == "line":
        order = np.argsort(xnum.to_numpy(), kind="stable")
        xs = xnum.to_numpy()[order]
        ax.errorbar(xs, y[order], yerr=None if err is None else np.nan_to_num(err[order]), marker="o",
                    capsize=3, lw=1.5)
        ax.set_xticks(xs)
        ax.set_xticklabels(data[x].to_numpy()[order])
    else:
        groups = list(dict.fromkeys(data[x]))
        names = list(dict.fromkeys(data[series])) if series else [None]
        width = 0.8 / len(names)
        pos = np.arange(len(groups), dtype=float)
        for k, name in enumerate(names):
            d = data if name is None else data[data[series] == name]
            at = np.array([groups.index(v) for v in d[x]], dtype=float)
            e = None if err is None else np.nan_to_num(d[stderr].to_numpy(dtype=float))
            ax.bar(at - 0.4 + width * (k + 0.5), d[metric].to_numpy(dtype=float), width=width * 0.95, yerr=e,
                   capsize=3, label=None if name is None else f"{series}={name}")
        ax.set_xticks(pos)
        ax.set_xticklabels(groups)
        if series:   # outside the axes: bars fill the plot area
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.set_xlabel(x)
    ax.set_ylabel(metric + ("  (error bars: " + stderr + ")" if stderr else ""), fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.text(0.01, 0.01, scale, fontsize=6, ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    _save(fig, out_png)
    return kind


def sweep_figure(tables: list[str | Path], x: str, metric: str, out_png: str | Path, *, title: str, scale: str,
                 series: str | None = None, stderr: str | None = None) -> dict[str, Path]:
    """Write OUT.png, OUT.pdf and OUT.csv (the plotted data, grid order)."""
    out_png = Path(out_png)
    if out_png.suffix.lower() != ".png":
        raise ValueError(f"--out {out_png}: must end in .png (the .pdf and .csv go beside it)")
    if not scale or not scale.strip():
        raise ValueError("--scale must state what ran; it is printed on the figure")
    data, se = sweep_data(tables, x, metric, series=series, stderr=stderr)
    paths = {"png": out_png, "pdf": out_png.with_suffix(".pdf"), "csv": out_png.with_suffix(".csv")}
    atomic_write_text(paths["csv"], data.to_csv(index=False))
    plot_sweep(data, x, metric, out_png, title=title, scale=scale, series=series, stderr=se)
    return paths


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="negfree sweep-figure",
                                description="one metric across the grid points of a sweep table (line or bars)")
    p.add_argument("--table", action="append", required=True, metavar="SWEEP.csv",
                   help="results/tables/<exp>/sweep~NAME[~protocols].csv; repeat to stack several sweeps")
    p.add_argument("--x", required=True, metavar="KEY", help="the setting on the x axis (a column, e.g. gamma)")
    p.add_argument("--series", default=None, metavar="KEY",
                   help="a second key, one bar per value (derived keys: method, table)")
    p.add_argument("--metric", required=True, metavar="COLUMN", help="the column plotted")
    p.add_argument("--stderr", default=None, metavar="COLUMN", help="error-bar column (default: detected)")
    p.add_argument("--out", required=True, metavar="PATH.png", help="the .pdf and .csv are written beside it")
    p.add_argument("--title", required=True, help="the figure's title")
    p.add_argument("--scale", required=True, help="what ran, printed on the figure")
    a = p.parse_args(argv)
    paths = sweep_figure(a.table, a.x, a.metric, a.out, title=a.title, scale=a.scale, series=a.series,
                         stderr=a.stderr)
    print(f"wrote {paths['png']} (+ .pdf, .csv)")


if __name__ == "__main__":
    main()
