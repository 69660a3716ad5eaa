# Tables are built only from result files.
rule summary_table:
    input:
        evals=table_evals,
        runs=table_runs,
    params:
        run_dirs=table_run_dirs,
    output:
        csv=f"results/tables/{EXP}/summary.csv",
        md=report(f"results/tables/{EXP}/summary.md", caption="../report/summary_table.rst", category="Tables",
                  labels={"table": "summary", "experiment": EXP}),
        provenance=f"results/tables/{EXP}/provenance.json",
    log:
        f"logs/{EXP}/summary_table.log",
    shell:
        "negfree table --evals {input.evals} --runs {params.run_dirs} --out-csv {output.csv} --out-md {output.md} > {log} 2>&1"
