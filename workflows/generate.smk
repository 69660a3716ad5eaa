# Negatives sampled from the base model (dft.txt Alg. 1 step 5, offline pool). One directory per
# generation setting (strategy, temperature, pool size): sweeps over them share what they can.
rule generate_negatives:
    input:
        model=f"{MODEL_DIR}/config.json",
        data=f"{DATA_DIR}/train.jsonl",
    output:
        f"{NEG_ROOT}/strategy~{{strategy}}/temperature~{{temperature}}/num~{{num}}/negatives.jsonl",
    params:
        template=template_flag(),
        g=GEN,
        limit=config["data"].get("train_prompts") or 0,
    log:
        f"logs/{EXP}/generate/strategy~{{strategy}}_temperature~{{temperature}}_num~{{num}}.log",
    shell:
        "negfree generate --model {MODEL_DIR} --data {input.data} --out {output} --num {wildcards.num} "
        "--strategy {wildcards.strategy} --temperature {wildcards.temperature} "
        "--max-new-tokens {params.g[max_new_tokens]} --batch-size {params.g[batch_size]} "
        "--seed {params.g[seed]} --limit {params.limit} {params.template} > {log} 2>&1"
