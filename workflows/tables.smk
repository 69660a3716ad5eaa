# Tables are built only from result files.
rule summary_table:
    input:
        evals=table_evals,
        runs=table_runs,
    params:
        run_dirs=table_run_dirs,
        scale=SCALE,
    output:
        csv=f"results/tables/{EXP}/summary.csv",
        md=report(f"results/tables/{EXP}/summary.md", caption="../report/summary_table.rst", category="Tables",
                  labels={"table": "summary", "experiment": EXP}),
        provenance=f"results/tables/{EXP}/summary.provenance.json",
    log:
        f"logs/{EXP}/summary_table.log",
    shell:
        "negfree table --evals {input.evals} --runs {params.run_dirs} --out-csv {output.csv} --out-md {output.md} "
        "--scale {params.scale:q} > {log} 2>&1"


# One table per sweep: the swept settings as columns, one row per grid point, in grid order.
rule sweep_table:
    input:
        evals=sweep_evals,
        runs=sweep_timings,
    params:
        run_dirs=sweep_run_dirs,
        settings=sweep_settings_arg,
        scale=SCALE,
    output:
        csv=f"results/tables/{EXP}/sweep~{{sweep}}.csv",
        provenance=f"results/tables/{EXP}/sweep~{{sweep}}.provenance.json",
        md=report(f"results/tables/{EXP}/sweep~{{sweep}}.md", caption="../report/sweep_table.rst",
                  category="Sweeps", labels={"sweep": "{sweep}", "experiment": EXP}),
    log:
        f"logs/{EXP}/sweep_table/{{sweep}}.log",
    shell:
        "negfree table --evals {input.evals} --runs {params.run_dirs} --out-csv {output.csv} --out-md {output.md} "
        "{params.settings} --scale {params.scale:q} > {log} 2>&1"


# Every paper-protocol result of the experiment in one tidy CSV (run, protocol, task, metric,
# value, stderr, n); runs named by their id.
rule eval_csv:
    input:
        evals=[path for path, _ in protocol_evals()],
    params:
        names=[name for _, name in protocol_evals()],
    output:
        f"results/tables/{EXP}/evals.csv",
    log:
        f"logs/{EXP}/eval_csv.log",
    shell:
        "negfree eval-csv --evals {input.evals} --runs {params.names} --out {output} > {log} 2>&1"


# One paper item (paper_tables:) with our values beside the paper's, in its column and row order.
rule paper_table:
    input:
        evals=f"results/tables/{EXP}/evals.csv",
    output:
        md=report(f"results/tables/{EXP}/paper~{{item}}.md", caption="../report/paper_table.rst",
                  category="Paper tables", labels={"item": "{item}", "experiment": EXP}),
        csv=f"results/tables/{EXP}/paper~{{item}}.csv",
        tex=f"results/tables/{EXP}/paper~{{item}}.tex",
    params:
        item=item_of,
        rows=paper_table_rows,
        scale=SCALE,
    log:
        f"logs/{EXP}/paper_table/{{item}}.log",
    shell:
        "negfree paper-table --item {params.item} --evals {input.evals} {params.rows} --scale {params.scale:q} "
        "--out-md {output.md} --out-csv {output.csv} --out-tex {output.tex} > {log} 2>&1"


# One table per sweep over the paper protocols (experiments without the offline twin).
rule sweep_table_protocols:
    input:
        evals=f"results/tables/{EXP}/evals.csv",
    params:
        runs=lambda wildcards: " ".join(SWEEPS[wildcards.sweep]),
        settings=sweep_settings_arg,
        scale=SCALE,
    output:
        csv=f"results/tables/{EXP}/sweep~{{sweep}}~protocols.csv",
        md=report(f"results/tables/{EXP}/sweep~{{sweep}}~protocols.md", caption="../report/sweep_table.rst",
                  category="Sweeps", labels={"sweep": "{sweep}", "experiment": EXP}),
    log:
        f"logs/{EXP}/sweep_table/{{sweep}}~protocols.log",
    shell:
        "negfree sweep-table --evals {input.evals} --runs {params.runs} {params.settings} --scale {params.scale:q} "
        "--out-csv {output.csv} --out-md {output.md} > {log} 2>&1"
