# Analytic figures, computed from the library's own loss code through autograd.
rule bnf_fig1:
    output:
        png=report("figures/bnf/fig1.png", caption="../report/bnf_fig1.rst", category="Analytic figures",
                   labels={"paper": "BNF", "figure": "Fig. 1"}),
        csv="figures/bnf/fig1.csv",
    resources:
        mem_mb=4000,    # a small CPU job (here, not in the profile: --set-resources replaces its block)
        runtime=30,
        cpus_per_task=1,
    log:
        "logs/figures/bnf_fig1.log",
    shell:
        "{NEGFREE} figure bnf-fig1 --png {output.png} --csv {output.csv}" + LOG


rule asft_fig1:
    output:
        png=report("figures/asft/fig1.png", caption="../report/asft_fig1.rst", category="Analytic figures",
                   labels={"paper": "ASFT", "figure": "Fig. 1"}),
        csv="figures/asft/fig1.csv",
    resources:
        mem_mb=4000,
        runtime=30,
        cpus_per_task=1,
    log:
        "logs/figures/asft_fig1.log",
    shell:
        "{NEGFREE} figure asft-fig1 --png {output.png} --csv {output.csv}" + LOG
