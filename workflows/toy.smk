# Frozen Lake (ift.txt Fig. 3), extended to every registered method; CPU, minutes.
rule frozen_lake:
    output:
        fig=report("figures/ift/fig3.png", caption="../report/ift_fig3.rst", category="Frozen Lake (IFT Fig. 3)",
                   labels={"paper": "IFT", "figure": "Fig. 3"}),
        csv="figures/ift/fig3.csv",
        table="results/toy/frozen_lake/table.md",
        curves="results/toy/frozen_lake/fig3.csv",
        visits=report("results/toy/frozen_lake/visits.png", caption="../report/frozen_lake_visits.rst",
                      category="Frozen Lake (IFT Fig. 3)", labels={"paper": "IFT", "figure": "visit map"}),
    params:
        args=frozen_lake_args(),
    log:
        "logs/toy/frozen_lake.log",
    shell:
        "(negfree toy frozen-lake --out-dir results/toy/frozen_lake {params.args} "
        "&& cp results/toy/frozen_lake/fig3.png {output.fig} "
        "&& cp results/toy/frozen_lake/fig3.csv {output.csv}) > {log} 2>&1"
