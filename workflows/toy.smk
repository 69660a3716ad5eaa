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
    resources:
        mem_mb=8000,    # the toy, on CPU (here, not in the profile: --set-resources replaces its block)
        runtime=120,
        cpus_per_task=4,
    log:
        "logs/toy/frozen_lake.log",
    shell:
        "({NEGFREE} toy frozen-lake --out-dir results/toy/frozen_lake {params.args} "
        "&& cp results/toy/frozen_lake/fig3.png {output.fig} "
        "&& cp results/toy/frozen_lake/fig3.csv {output.csv})" + LOG


# How robust the Fig. 3 ordering is: a grid over maps, step counts, base policies and negative
# sources (negfree/toy/robustness.py). The full grid (every registered method, ~18 min of CPU on one
# core) is its own target, `snakemake frozen_lake_robustness`, in results/toy/frozen_lake/. A config
# with `toy: frozen_lake_robustness:` (configs/demo.yaml) sizes a reduced grid, written apart in
# results/toy/frozen_lake/demo_grid/ so it never overwrites the full one; it joins `all`.
from negfree.jobs.dag import ROBUSTNESS_FULL as ROBUST_FULL, ROBUSTNESS_REDUCED as ROBUST_REDUCED


def frozen_lake_robustness_args():
    t = NF.toy.get("frozen_lake_robustness") or {}
    args = []
    for key in ("maps", "steps", "bases", "negatives", "methods"):
        if t.get(key):
            args.append(f"--{key} " + ",".join(str(v) for v in t[key]))
    if t.get("seeds"):
        args.append(f"--seeds {int(t['seeds'])}")
    return " ".join(args)


def robustness_outputs(d):
    return {"csv": f"{d}/robustness.csv", "claims": f"{d}/robustness_claims.csv", "table": f"{d}/robustness.md",
            "fig": report(f"{d}/robustness.png", caption="../report/frozen_lake_robustness.rst",
                          category="Frozen Lake (IFT Fig. 3)",
                          labels={"paper": "IFT", "figure": "robustness" + ("" if d == ROBUST_FULL else " (reduced)")})}


rule frozen_lake_robustness:
    output:
        **robustness_outputs(ROBUST_FULL),
    log:
        "logs/toy/frozen_lake_robustness.log",
    shell:
        "{PY} -m negfree.toy.robustness --out-dir " + ROBUST_FULL + LOG


rule frozen_lake_robustness_reduced:
    output:
        **robustness_outputs(ROBUST_REDUCED),
    params:
        args=frozen_lake_robustness_args(),
    log:
        "logs/toy/frozen_lake_robustness_reduced.log",
    shell:
        "{PY} -m negfree.toy.robustness --out-dir " + ROBUST_REDUCED + " {params.args}" + LOG
