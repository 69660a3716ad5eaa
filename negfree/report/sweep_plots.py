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
the same point) stops with one message naming the culprit. Reading and checking the tables:
negfree.report.sweep_tables; drawing: here.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from negfree.common.io import atomic_write_text
from negfree.report.figures import pyplot, save_figure
from negfree.report.sweep_tables import sweep_data


def _numeric(values: pd.Series) -> pd.Series | None:
    """``values`` as floats when every one parses as a number, else None."""
    out = pd.to_numeric(values, errors="coerce")
    return None if out.isna().any() else out.astype(float)


def plot_sweep(data: pd.DataFrame, x: str, metric: str, out_png: str | Path, *, title: str, scale: str,
               series: str | None = None, stderr: str | None = None) -> str:
    """Draw ``data`` (from :func:`negfree.report.sweep_tables.sweep_data`); returns the kind drawn,
    'line' or 'bars'."""
    plt = pyplot()
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
    save_figure(fig, out_png)
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
