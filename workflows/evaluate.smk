# The offline lm-eval twin on the embedded test split, for the base model and every run
# (evaluate.protocols: offline), and the papers' lm-eval protocols (the others).
rule evaluate_run:
    input:
        timing="results/runs/{exp}/{run}/timing.json",
        test=test_data,
    output:
        "results/runs/{exp}/{run}/eval/negfree_offline.json",
    params:
        model=final_model_of,
        flags=eval_flags,
    log:
        "logs/{exp}/evaluate/{run}.log",
    shell:
        "negfree evaluate --model {params.model} --test {input.test} --out {output} {params.flags} > {log} 2>&1"


rule evaluate_base:
    input:
        model="work/models/{model}/config.json",
        test=test_data,
    output:
        "results/runs/{exp}/base~{model}/eval/negfree_offline.json",
    params:
        flags=eval_flags,
    log:
        "logs/{exp}/evaluate/base~{model}.log",
    shell:
        "negfree evaluate --model work/models/{wildcards.model} --test {input.test} --out {output} {params.flags} "
        "> {log} 2>&1"


rule evaluate_protocol:
    input:
        timing="results/runs/{exp}/{run}/timing.json",
    output:
        "results/runs/{exp}/{run}/eval/{protocol}.json",
    params:
        model=final_model_of,
    log:
        "logs/{exp}/evaluate/{run}/{protocol}.log",
    shell:
        "negfree evaluate --model {params.model} --protocol {wildcards.protocol} --out {output} > {log} 2>&1"


rule evaluate_protocol_base:
    input:
        model="work/models/{model}/config.json",
    output:
        "results/runs/{exp}/base~{model}/eval/{protocol}.json",
    log:
        "logs/{exp}/evaluate/base~{model}/{protocol}.log",
    shell:
        "negfree evaluate --model work/models/{wildcards.model} --protocol {wildcards.protocol} --out {output} "
        "> {log} 2>&1"
