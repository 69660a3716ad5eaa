"""Names that the job graph writes and the report reads back: the settings in a run id
(``method/key~value/...``) and the file names of the paper items."""
from __future__ import annotations


def run_settings(run_id: str) -> dict[str, str]:
    """The key~value segments of a run id after the method (as strings), in order."""
    out = {}
    for seg in run_id.split("/")[1:]:
        key, _, value = seg.partition("~")
        out[key] = value
    return out


def item_file(item: str) -> str:
    return item.replace("/", "_")


# Figure items with a target of their own (`snakemake dft_fig4`), beside the paper tables': item ->
# (the figure file per experiment, the config section an experiment of that paper needs to draw it).
# dft.txt Fig. 4 compares DFT with the SFT->PO pipelines: the dft experiments that declare pipelines.
FIGURE_ITEMS = {"dft/fig4": ("figures/{exp}/dft/fig4.png", "pipelines")}

