# Reference log-probs under the model the negatives path names (the base model, or a pipeline's
# starting checkpoint), stored with the data: no trainer loads a reference.
rule score_reference:
    input:
        model=neg_model_ready,
        data=f"{NEG}/negatives.jsonl",
    output:
        f"{NEG}/scored.jsonl",
    params:
        s=neg_spec,
    resources:
        gpu=gpus_of("score_reference"),
        nodes=1,
        mem_mb=mem_mb_of("score_reference"),
        runtime=runtime_of("score_reference"),
        cpus_per_task=cpus_of("score_reference"),
    log:
        f"logs/{NEG}/score.log",
    shell:
        "negfree score --model {params.s.model_dir} --data {input.data} --out {output} {params.s.score} "
        "{params.s.template} > {log} 2>&1"


# A pipeline with `negatives: base`: the base model's pool, scored under the checkpoint the run
# starts from (its reference), beside the base-scored file.
rule score_reference_checkpoint:
    input:
        model=lambda wildcards: NF.checkpoint(wildcards.ref)[1],
        data=f"{NEG}/negatives.jsonl",
    output:
        f"{NEG}/ref~{{ref}}/scored.jsonl",
    params:
        s=neg_spec,
        model=lambda wildcards: NF.checkpoint(wildcards.ref)[0],
    wildcard_constraints:
        ref=r"[A-Za-z0-9_\-]+\.[a-z][a-z0-9_]*",
    resources:
        gpu=gpus_of("score_reference_checkpoint"),
        nodes=1,
        mem_mb=mem_mb_of("score_reference_checkpoint"),
        runtime=runtime_of("score_reference_checkpoint"),
        cpus_per_task=cpus_of("score_reference_checkpoint"),
    log:
        f"logs/{NEG}/ref~{{ref}}/score.log",
    shell:
        "negfree score --model {params.model} --data {input.data} --out {output} {params.s.score} "
        "{params.s.template} > {log} 2>&1"
