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
    log:
        f"logs/{NEG}/score.log",
    shell:
        "negfree score --model {params.s.model_dir} --data {input.data} --out {output} {params.s.score} "
        "{params.s.template} > {log} 2>&1"
