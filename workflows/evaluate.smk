# The offline lm-eval twin on the embedded test split, for the base model and every run.
rule evaluate_run:
    input:
        timing=f"{RUNS}/method~{{method}}/timing.json",
        test=f"{DATA_DIR}/test.jsonl",
    output:
        f"{RUNS}/method~{{method}}/eval/negfree_offline.json",
    params:
        model=final_model_of,
        flags=eval_flags(),
    log:
        f"logs/{EXP}/evaluate/method~{{method}}.log",
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
