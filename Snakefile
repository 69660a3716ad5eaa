# negfree: the paper DAG. Thin on purpose: stages live in workflows/*.smk, logic in
# the negfree package. Any new workflows/*.smk is included automatically.
from pathlib import Path

configfile: "configs/demo.yaml"

include: "workflows/common.smk"

for _smk in sorted(Path(workflow.basedir, "workflows").glob("*.smk")):
    if _smk.name != "common.smk":
        include: str(_smk)


rule all:
    input:
        final_targets(),
    default_target: True
