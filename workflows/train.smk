# One run per method; run directories are named key~value so the path says what ran.
rule train:
    input:
        model=f"{MODEL_DIR}/config.json",
        data=f"{NEG_DIR}/scored.jsonl",
    output:
        f"{RUNS}/method~{{method}}/timing.json",
    params:
        args=train_args,
        out=run_dir_of,
    log:
        f"logs/{EXP}/train/method~{{method}}.log",
    shell:
        "negfree train --method {wildcards.method} --model {MODEL_DIR} --data {input.data} "
        "--out-dir {params.out} {params.args} > {log} 2>&1"
