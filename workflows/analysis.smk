# Analyses of the training logs and the claims ledger (issue 8): built from results/ only.
rule training_figures:
    input:
        runs=table_runs,
    output:
        fig3=report("figures/dft/fig3.png", caption="../report/training_figures.rst", category="Training",
                    labels={"paper": "DFT", "figure": "Fig. 3"}),
        fig4=report("figures/dft/fig4.png", caption="../report/training_figures.rst", category="Training",
                    labels={"paper": "DFT", "figure": "Fig. 4"}),
        minor=report("figures/minorsft/fig1.png", caption="../report/training_figures.rst", category="Training",
                     labels={"paper": "MinorSFT", "figure": "Fig. 1"}),
        asft=report("figures/asft/fig2.png", caption="../report/training_figures.rst", category="Training",
                    labels={"paper": "ASFT", "figure": "Fig. 2"}),
    params:
        scale=SCALE,
    log:
        f"logs/{EXP}/training_figures.log",
    shell:
        "negfree training-figures --runs-root {RUNS} --out-root figures --scale {params.scale:q} > {log} 2>&1"


rule claims_ledger:
    input:
        runs=table_runs,
        lake="results/toy/frozen_lake/fig3.csv",
        claims="configs/claims.yaml",
    output:
        csv="results/claims.csv",
        md=report("results/claims.md", caption="../report/claims.rst", category="Claims ledger",
                  labels={"table": "claims"}),
    params:
        scale=SCALE,
    log:
        f"logs/{EXP}/claims_ledger.log",
    shell:
        "negfree claims --claims {input.claims} --runs-root {RUNS} --frozen-lake results/toy/frozen_lake "
        "--out-csv {output.csv} --out-md {output.md} --scale {params.scale:q} > {log} 2>&1"
