# Frozen Lake (ift.txt Fig. 3), extended to every registered method; CPU, minutes.
rule frozen_lake:
    output:
        fig="figures/ift/fig3.png",
        csv="figures/ift/fig3.csv",
        table="results/toy/frozen_lake/table.md",
    params:
        args=frozen_lake_args(),
    log:
        "logs/toy/frozen_lake.log",
    shell:
        "(negfree toy frozen-lake --out-dir results/toy/frozen_lake {params.args} "
        "&& cp results/toy/frozen_lake/fig3.png {output.fig} "
        "&& cp results/toy/frozen_lake/fig3.csv {output.csv}) > {log} 2>&1"
