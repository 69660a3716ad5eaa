# Analyses of the training logs and the claims ledger (issue 8): built from results/ only.
rule training_figures:
    input:
        runs=table_runs,
    output:
        fig3=report("figures/{exp}/dft/fig3.png", caption="../report/training_figures.rst", category="Training",
                    labels={"paper": "DFT", "figure": "Fig. 3", "experiment": "{exp}"}),
        fig4=report("figures/{exp}/dft/fig4.png", caption="../report/training_figures.rst", category="Training",
                    labels={"paper": "DFT", "figure": "Fig. 4", "experiment": "{exp}"}),
        minor=report("figures/{exp}/minorsft/fig1.png", caption="../report/training_figures.rst", category="Training",
                     labels={"paper": "MinorSFT", "figure": "Fig. 1", "experiment": "{exp}"}),
        asft=report("figures/{exp}/asft/fig2.png", caption="../report/training_figures.rst", category="Training",
                    labels={"paper": "ASFT", "figure": "Fig. 2", "experiment": "{exp}"}),
    params:
        scale=scale_of,
        root=runs_root,
    log:
        "logs/{exp}/training_figures.log",
    shell:
        "negfree training-figures --runs-root {params.root} --out-root figures/{wildcards.exp} "
        "--scale {params.scale:q} > {log} 2>&1"


rule claims_ledger:
    input:
        runs=table_runs,
        lake="results/toy/frozen_lake/fig3.csv",
        claims=str(Path(workflow.basedir, "configs/claims.yaml")),
    output:
        csv="results/tables/{exp}/claims.csv",
        md=report("results/tables/{exp}/claims.md", caption="../report/claims.rst", category="Claims ledger",
                  labels={"table": "claims", "experiment": "{exp}"}),
    params:
        scale=scale_of,
        root=runs_root,
    log:
        "logs/{exp}/claims_ledger.log",
    shell:
        "negfree claims --claims {input.claims} --runs-root {params.root} --frozen-lake results/toy/frozen_lake "
        "--out-csv {output.csv} --out-md {output.md} --scale {params.scale:q} > {log} 2>&1"
