# Negatives sampled from the base model (dft.txt Alg. 1 step 5, offline pool).
rule generate_negatives:
    input:
        model=f"{MODEL_DIR}/config.json",
        data=f"{DATA_DIR}/train.jsonl",
    output:
        f"{NEG_DIR}/negatives.jsonl",
    params:
        g=GEN,
        limit=config["data"].get("train_prompts") or 0,
    log:
        f"logs/{EXP}/generate_negatives.log",
    shell:
        "negfree generate --model {MODEL_DIR} --data {input.data} --out {output} --num {params.g[num]} "
        "--strategy {params.g[strategy]} --temperature {params.g[temperature]} "
        "--max-new-tokens {params.g[max_new_tokens]} --batch-size {params.g[batch_size]} "
        "--seed {params.g[seed]} --limit {params.limit} > {log} 2>&1"
