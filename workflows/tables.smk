# Tables are built only from result files.
rule summary_table:
    input:
        evals=table_evals,
        runs=table_runs,
    params:
        run_dirs=table_run_dirs,
        scale=scale_of,
    output:
        csv="results/tables/{exp}/summary.csv",
        md="results/tables/{exp}/summary.md",
        html=report("results/tables/{exp}/summary.html", caption="../report/summary_table.rst", category="Tables",
                  labels={"table": "summary", "experiment": "{exp}"}),
        provenance="results/tables/{exp}/summary.provenance.json",
    resources:
        mem_mb=4000,    # a small CPU job (here, not in the profile: --set-resources replaces its block)
        runtime=30,
        cpus_per_task=1,
    log:
        "logs/{exp}/summary_table.log",
    shell:
        "{NEGFREE} table --evals {input.evals} --runs {params.run_dirs} --out-csv {output.csv} --out-md {output.md} "
        "--scale {params.scale:q}" + LOG


# One table per sweep: the swept settings as columns, one row per grid point, in grid order.
rule sweep_table:
    input:
        evals=sweep_evals,
        runs=sweep_timings,
    params:
        run_dirs=sweep_run_dirs,
        settings=sweep_settings_arg,
        scale=scale_of,
    output:
        csv="results/tables/{exp}/sweep~{sweep}.csv",
        provenance="results/tables/{exp}/sweep~{sweep}.provenance.json",
        md="results/tables/{exp}/sweep~{sweep}.md",
        html=report("results/tables/{exp}/sweep~{sweep}.html", caption="../report/sweep_table.rst",
                  category="Sweeps", labels={"sweep": "{sweep}", "experiment": "{exp}"}),
    log:
        "logs/{exp}/sweep_table/{sweep}.log",
    shell:
        "{NEGFREE} table --evals {input.evals} --runs {params.run_dirs} --out-csv {output.csv} --out-md {output.md} "
        "{params.settings} --scale {params.scale:q}" + LOG


# Every paper-protocol result of the experiment in one tidy CSV (run, protocol, task, metric,
# value, stderr, n); runs named by their id.
rule eval_csv:
    input:
        evals=protocol_eval_paths,
    params:
        names=protocol_eval_names,
    output:
        "results/tables/{exp}/evals.csv",
    log:
        "logs/{exp}/eval_csv.log",
    shell:
        "{NEGFREE} eval-csv {input.evals} --runs {params.names} --out {output}" + LOG


# The protocol results one paper item reads: the base model and the runs its rows name only, so
# `snakemake dft_table2` trains the table's runs and no sweep (evals.csv above has them all).
rule item_evals:
    input:
        evals=item_eval_paths,
    params:
        names=item_eval_names,
    output:
        "results/tables/{exp}/paper~{item}.evals.csv",
    log:
        "logs/{exp}/paper_table/{item}.evals.log",
    shell:
        "{NEGFREE} eval-csv {input.evals} --runs {params.names} --out {output}" + LOG


# One paper item (paper_tables:) with our values beside the paper's, in its column and row order.
rule paper_table:
    input:
        evals="results/tables/{exp}/paper~{item}.evals.csv",
        judged=item_judged_paths,
    output:
        md="results/tables/{exp}/paper~{item}.md",
        html=report("results/tables/{exp}/paper~{item}.html", caption="../report/paper_table.rst",
                  category="Paper tables", labels={"item": "{item}", "experiment": "{exp}"}),
        csv="results/tables/{exp}/paper~{item}.csv",
        tex="results/tables/{exp}/paper~{item}.tex",
    params:
        item=item_of,
        rows=paper_table_rows,
        scale=scale_of,
    log:
        "logs/{exp}/paper_table/{item}.log",
    shell:
        "{NEGFREE} paper-table --item {params.item} --evals {input.evals} {input.judged} {params.rows} --scale {params.scale:q} "
        "--out-md {output.md} --out-csv {output.csv} --out-tex {output.tex}" + LOG


# One table per sweep over the paper protocols (experiments without the offline twin).
rule sweep_table_protocols:
    input:
        evals="results/tables/{exp}/evals.csv",
    params:
        runs=lambda wildcards: " ".join(sweep_ids(wildcards)),
        settings=sweep_settings_arg,
        scale=scale_of,
    output:
        csv="results/tables/{exp}/sweep~{sweep}~protocols.csv",
        md="results/tables/{exp}/sweep~{sweep}~protocols.md",
        html=report("results/tables/{exp}/sweep~{sweep}~protocols.html", caption="../report/sweep_table.rst",
                  category="Sweeps", labels={"sweep": "{sweep}", "experiment": "{exp}"}),
    log:
        "logs/{exp}/sweep_table/{sweep}~protocols.log",
    shell:
        "{NEGFREE} sweep-table --evals {input.evals} --runs {params.runs} {params.settings} --scale {params.scale:q} "
        "--out-csv {output.csv} --out-md {output.md}" + LOG


# Every item of the five papers (configs/targets.yaml): the files this DAG built for it, or a
# placeholder page naming what is missing (a judge, a private corpus, a run type). Runs last.
rule targets_index:
    input:
        built=lambda wildcards: NF.targets(),
        targets=str(Path(workflow.basedir, "configs/targets.yaml")),
    output:
        md="results/tables/targets.md",
        html=report("results/tables/targets.html", caption="../report/targets.rst", category="Targets",
                  labels={"table": "every paper item"}),
        placeholders=directory("results/tables/placeholders"),
    params:
        exps=" ".join(EXPS),
    log:
        "logs/targets_index.log",
    shell:
        "{NEGFREE} targets --targets {input.targets} --experiments {params.exps} --out-md {output.md} "
        "--placeholders-dir {output.placeholders}" + LOG
