# The base model of the experiment: the embedded default is converted from its GGUF.
rule prepare_model:
    output:
        f"{MODEL_DIR}/config.json",
    params:
        source=config["model"]["source"],
    log:
        f"logs/{EXP}/prepare_model.log",
    shell:
        "negfree prepare-model --source {params.source} --out {MODEL_DIR} > {log} 2>&1"
