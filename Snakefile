# negfree: the paper DAG. Thin on purpose: stages live in workflows/*.smk, logic in
# the negfree package. Any new workflows/*.smk is included automatically.
from pathlib import Path

import yaml

# Without --configfile the workflow runs the main job (configs/demo.yaml). A --configfile
# replaces it whole: Snakemake would merge a `configfile:` default into it key by key, and
# an experiment would silently inherit the demo's methods.
if not config:
    config.update(yaml.safe_load(Path(workflow.basedir, "configs/demo.yaml").read_text()))

include: "workflows/common.smk"

for _smk in sorted(Path(workflow.basedir, "workflows").glob("*.smk")):
    if _smk.name != "common.smk":
        include: str(_smk)


rule all:
    input:
        final_targets(),
    default_target: True
