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
        "({NEGFREE} toy frozen-lake --out-dir results/toy/frozen_lake {params.args} "
        "&& cp results/toy/frozen_lake/fig3.png {output.fig} "
        "&& cp results/toy/frozen_lake/fig3.csv {output.csv})" + LOG


# How robust the Fig. 3 ordering is: a grid over maps, step counts, base policies and negative
# sources (negfree/toy/robustness.py). Its own target: `snakemake frozen_lake_robustness` runs the
# full grid (~18 min of CPU, one core); a config with `toy: frozen_lake_robustness:` (configs/demo.yaml:
# a reduced grid) also puts it in `all`.
def frozen_lake_robustness_args():
    t = NF.toy.get("frozen_lake_robustness") or {}
    args = []
    for key in ("maps", "steps", "bases", "negatives", "methods"):
        if t.get(key):
            args.append(f"--{key} " + ",".join(str(v) for v in t[key]))
    if t.get("seeds"):
        args.append(f"--seeds {int(t['seeds'])}")
    return " ".join(args)


rule frozen_lake_robustness:
    output:
        csv="results/toy/frozen_lake/robustness.csv",
        claims="results/toy/frozen_lake/robustness_claims.csv",
        table="results/toy/frozen_lake/robustness.md",
        fig=report("results/toy/frozen_lake/robustness.png", caption="../report/frozen_lake_robustness.rst",
                   category="Frozen Lake (IFT Fig. 3)", labels={"paper": "IFT", "figure": "robustness"}),
    params:
        args=frozen_lake_robustness_args(),
    log:
        "logs/toy/frozen_lake_robustness.log",
    shell:
        "{PY} -m negfree.toy.robustness --out-dir results/toy/frozen_lake {params.args}" + LOG
