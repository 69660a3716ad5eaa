# Analyses of the training logs and the claims ledger (issue 8): built from results/ only.
rule training_figures:
    input:
        runs=table_runs,
    output:
        fig3=report(f"figures/{EXP}/dft/fig3.png", caption="../report/training_figures.rst", category="Training",
                    labels={"paper": "DFT", "figure": "Fig. 3"}),
        fig4=report(f"figures/{EXP}/dft/fig4.png", caption="../report/training_figures.rst", category="Training",
                    labels={"paper": "DFT", "figure": "Fig. 4"}),
        minor=report(f"figures/{EXP}/minorsft/fig1.png", caption="../report/training_figures.rst", category="Training",
                     labels={"paper": "MinorSFT", "figure": "Fig. 1"}),
        asft=report(f"figures/{EXP}/asft/fig2.png", caption="../report/training_figures.rst", category="Training",
                    labels={"paper": "ASFT", "figure": "Fig. 2"}),
    params:
        scale=SCALE,
    log:
        f"logs/{EXP}/training_figures.log",
    shell:
        "negfree training-figures --runs-root {RUNS} --out-root figures/{EXP} --scale {params.scale:q} > {log} 2>&1"


rule claims_ledger:
    input:
        runs=table_runs,
        lake="results/toy/frozen_lake/fig3.csv",
        claims=str(Path(workflow.basedir, "configs/claims.yaml")),
    output:
        csv=f"results/tables/{EXP}/claims.csv",
        md=report(f"results/tables/{EXP}/claims.md", caption="../report/claims.rst", category="Claims ledger",
                  labels={"table": "claims"}),
    params:
        scale=SCALE,
    log:
        f"logs/{EXP}/claims_ledger.log",
    shell:
        "negfree claims --claims {input.claims} --runs-root {RUNS} --frozen-lake results/toy/frozen_lake "
        "--out-csv {output.csv} --out-md {output.md} --scale {params.scale:q} > {log} 2>&1"
