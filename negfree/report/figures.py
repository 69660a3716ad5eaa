"""Drawing helpers every figure module shares: headless pyplot, the byte-reproducible PNG/PDF writer
and the footnote that states a figure's scale and what it leaves out.

matplotlib is imported only when a figure is drawn, so importing a figure module stays cheap."""
from __future__ import annotations

import io
from pathlib import Path

from negfree.common.io import atomic_write_bytes


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, out_png) -> None:
    """Write ``fig`` to OUT.png and OUT.pdf beside it, byte-reproducibly (no date or software stamp),
    each file atomically, then close the figure."""
    import matplotlib.pyplot as plt

    out_png = Path(out_png)
    for path, fmt in ((out_png, "png"), (out_png.with_suffix(".pdf"), "pdf")):
        buf = io.BytesIO()
        meta = {"CreationDate": None} if fmt == "pdf" else {"Software": None}   # byte-reproducible files
        fig.savefig(buf, format=fmt, dpi=150, metadata=meta)
        atomic_write_bytes(path, buf.getvalue())
    plt.close(fig)


def footer(fig, scale: str, missing: list[str], extra: str = "") -> None:
    """The figure's footnote: the scale it was made at (and ``extra``), then what it does not show."""
    lines = [f"{scale}" + (f"; {extra}" if extra else "")]
    if missing:
        lines.append("not shown (no data): " + "; ".join(missing))
    fig.text(0.01, 0.01, "\n".join(lines), fontsize=6.5, ha="left", va="bottom", wrap=True)
