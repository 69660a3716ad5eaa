# Analytic figures, computed from the library's own loss code through autograd.
rule bnf_fig1:
    output:
        png="figures/bnf/fig1.png",
        csv="figures/bnf/fig1.csv",
    log:
        "logs/figures/bnf_fig1.log",
    shell:
        "negfree figure bnf-fig1 --png {output.png} --csv {output.csv} > {log} 2>&1"


rule asft_fig1:
    output:
        png="figures/asft/fig1.png",
        csv="figures/asft/fig1.csv",
    log:
        "logs/figures/asft_fig1.log",
    shell:
        "negfree figure asft-fig1 --png {output.png} --csv {output.csv} > {log} 2>&1"
