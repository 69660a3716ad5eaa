# The offline lm-eval twin on the embedded test split, for the base model and every run
# (evaluate.protocols: offline), and the papers' lm-eval protocols (the others).
rule evaluate_run:
    input:
        timing=f"{RUNS}/{{run}}/timing.json",
        test=f"{DATA_DIR}/test.jsonl",
    output:
        f"{RUNS}/{{run}}/eval/negfree_offline.json",
    params:
        model=final_model_of,
        flags=eval_flags(),
    log:
        f"logs/{EXP}/evaluate/{{run}}.log",
    shell:
        "negfree evaluate --model {params.model} --test {input.test} --out {output} {params.flags} > {log} 2>&1"


rule evaluate_base:
    input:
        model=f"{MODEL_DIR}/config.json",
        test=f"{DATA_DIR}/test.jsonl",
    output:
        base_eval_json(),
    params:
        flags=eval_flags(),
    log:
        f"logs/{EXP}/evaluate/base.log",
    shell:
        "negfree evaluate --model {MODEL_DIR} --test {input.test} --out {output} {params.flags} > {log} 2>&1"


rule evaluate_protocol:
    input:
        timing=f"{RUNS}/{{run}}/timing.json",
    output:
        f"{RUNS}/{{run}}/eval/{{protocol}}.json",
    params:
        model=final_model_of,
    log:
        f"logs/{EXP}/evaluate/{{run}}/{{protocol}}.log",
    shell:
        "negfree evaluate --model {params.model} --protocol {wildcards.protocol} --out {output} > {log} 2>&1"


rule evaluate_protocol_base:
    input:
        model=f"{MODEL_DIR}/config.json",
    output:
        f"{RUNS}/base~{MODEL}/eval/{{protocol}}.json",
    log:
        f"logs/{EXP}/evaluate/base/{{protocol}}.log",
    shell:
        "negfree evaluate --model {MODEL_DIR} --protocol {wildcards.protocol} --out {output} > {log} 2>&1"
