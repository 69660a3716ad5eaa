# Reference log-probs under the base model, stored with the data: no trainer loads a reference.
rule score_reference:
    input:
        model=f"{MODEL_DIR}/config.json",
        data=f"{NEG_DIR}/negatives.jsonl",
    output:
        f"{NEG_DIR}/scored.jsonl",
    params:
        max_len=config["score"]["max_len"],
    log:
        f"logs/{EXP}/score_reference.log",
    shell:
        "negfree score --model {MODEL_DIR} --data {input.data} --out {output} --max-len {params.max_len} > {log} 2>&1"
