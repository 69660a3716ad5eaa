# Negatives sampled from the model the negatives path names (dft.txt Alg. 1 step 5, offline
# pool): the base model, or for a pipeline run the checkpoint it starts from. One directory
# per generation setting (strategy, temperature, pool size): sweeps over them share what they can.
rule generate_negatives:
    input:
        model=neg_model_ready,
        data=neg_data,
    output:
        f"{NEG}/negatives.jsonl",
    params:
        s=neg_spec,
    resources:
        gpu=gpus_of("generate_negatives"),
        nodes=1,
        mem_mb=mem_mb_of("generate_negatives"),
        runtime=runtime_of("generate_negatives"),
        cpus_per_task=cpus_of("generate_negatives"),
    log:
        f"logs/{NEG}/generate.log",
    shell:
        "negfree generate --model {params.s.model_dir} --data {input.data} --out {output} --num {wildcards.num} "
        "--strategy {wildcards.strategy} --temperature {wildcards.temperature} "
        "--max-new-tokens {params.s.gen[0]} --batch-size {params.s.gen[1]} "
        "--seed {params.s.gen[2]} --limit {params.s.gen[3]} {params.s.template} > {log} 2>&1"
