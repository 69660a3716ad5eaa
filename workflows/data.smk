# The embedded dataset: made by the project, deterministic, offline.
rule make_data:
    output:
        train=f"{DATA_DIR}/train.jsonl",
        test=f"{DATA_DIR}/test.jsonl",
    params:
        d=config["data"],
    log:
        f"logs/{EXP}/make_data.log",
    shell:
        "negfree make-data --out {DATA_DIR} --n-train {params.d[n_train]} --n-test {params.d[n_test]} "
        "--seed {params.d[seed]} > {log} 2>&1"
