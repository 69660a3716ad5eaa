# negfree: the paper DAG. Thin on purpose: stages live in workflows/*.smk, logic in the
# negfree package (negfree/dag.py resolves the experiments). Any new workflows/*.smk is
# included automatically.
#
#   snakemake --profile slurm              every experiment of the five papers (configs/papers.yaml)
#   snakemake --profile slurm dft          one paper: dft | minorsft | asft | ift | bnf
#   snakemake --profile slurm dft_table2   one paper item, by name (or ask for its file)
#   snakemake --configfile configs/demo.yaml   the main job on CPU (`make demo`)
from pathlib import Path

import yaml

# Without --configfile: the five papers. A --configfile replaces that whole: Snakemake would
# merge a `configfile:` default into it key by key, and an experiment would silently inherit
# another's methods.
if not config:
    config.update(yaml.safe_load(Path(workflow.basedir, "configs/papers.yaml").read_text()))

include: "workflows/common.smk"

for _smk in sorted(Path(workflow.basedir, "workflows").glob("*.smk")):
    if _smk.name != "common.smk":
        include: str(_smk)


rule all:
    input:
        NF.targets(),
        "results/tables/targets.md",
    default_target: True


# One target per paper: every experiment that declares `paper: <name>`, and its global figures.
for _paper in ("dft", "minorsft", "asft", "ift", "bnf"):
    rule:
        name: _paper
        input:
            paper_targets(_paper),


# One target per paper item, by name (dft_table2, bnf_table6, ...): every experiment rendering it.
for _item, _file in NF.items().items():
    rule:
        name: _item
        input:
            _file,
