# The experiment's data: the project-made embedded dataset (offline, deterministic), or a hub
# dataset through its adapter (configs/data/*.yaml), normalised to one schema, subsampled
# deterministically.
rule make_data:
    output:
        train=f"{DATA_DIR}/train.jsonl",
        test=f"{DATA_DIR}/test.jsonl",
    params:
        d=config["data"],
        source=config["data"].get("source", "embedded"),
        n_train=config["data"]["n_train"] or 0,
        n_test=config["data"]["n_test"] or 0,
    log:
        f"logs/{EXP}/make_data.log",
    shell:
        "negfree make-data --source {params.source} --out {DATA_DIR} --n-train {params.n_train} "
        "--n-test {params.n_test} --seed {params.d[seed]} > {log} 2>&1"
