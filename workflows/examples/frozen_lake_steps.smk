# Example ablation, in the one documented way to extend the DAG (see the Snakefile's header):
# copy this file into workflows/ and `snakemake --profile slurm` (or `make demo`) builds it, and
# `snakemake --report` shows it. Nothing else is edited.
#
# What it ablates: the training length of ift.txt Fig. 3 on the Frozen Lake toy (the demo trains
# 200 steps; this runs 50), for the paper's four methods, 3 seeds. CPU, about a minute.
#   1. a rule whose outputs wrap what the report should show in report(...) with a caption;
#   2. its final outputs appended to FINAL_TARGETS (workflows/common.smk), which `rule all` asks for.
# Rule names must be unique across workflows/*.smk; commands call the project's interpreter through
# {NEGFREE} (no activated venv needed) and end with `+ LOG` (one log per attempt).
ABLATION_LAKE = "results/ablations/frozen_lake/steps~50"


rule ablation_frozen_lake_steps:
    output:
        fig=report(f"{ABLATION_LAKE}/fig3.png", caption="../report/ablation_frozen_lake_steps.rst",
                   category="Ablations", labels={"ablation": "Frozen Lake, 50 steps", "figure": "IFT Fig. 3"}),
        table=f"{ABLATION_LAKE}/table.md",
    log:
        "logs/ablations/frozen_lake_steps~50.log",
    shell:
        "{NEGFREE} toy frozen-lake --out-dir " + ABLATION_LAKE + " --steps 50 --seeds 3 --methods sft,ift,dpo,orpo"
        + LOG


FINAL_TARGETS += [f"{ABLATION_LAKE}/fig3.png"]
