# negfree: the paper DAG. Thin on purpose: stages live in workflows/*.smk, logic in the
# negfree package (negfree/jobs/dag.py resolves the experiments).
#
# Extension by convention: any new workflows/*.smk is included, and it adds its final outputs
# with `FINAL_TARGETS += [...]` (a list defined in workflows/common.smk); they join `rule all`
# and so the DAG of `snakemake` and of `snakemake --report`, where every output wrapped in
# report(..., caption=...) shows. Nothing else is edited (example:
# workflows/examples/frozen_lake_steps.smk; copy it into workflows/).
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
        FINAL_TARGETS,
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


# The user's Slurm account, partitions, QoS and GPU model (NEGFREE_SLURM_*), joined to every
# rule's resources; and the attempt number for per-attempt logs (workflows/common.smk).
apply_cluster_settings(workflow.rules)
