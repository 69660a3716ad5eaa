# Reference log-probs under the model the negatives path names (the base model, or a pipeline's
# starting checkpoint), stored with the data: no trainer loads a reference. Batches are sorted
# by length; with `score.shards: k > 1`, k jobs score their share of the batches (each resumes
# after a kill) and the scored file is only gathered from their parts, on the CPU, in record order.
def score_shard_parts(wildcards):
    """The shard parts a scored file is gathered from ([]: one job scores it all)."""
    k = neg_spec(wildcards).shards[1]
    if k == 1:
        return []
    ref = f"/ref~{wildcards.ref}" if "ref" in wildcards.keys() else ""
    neg = f"{wildcards.neg_root}/strategy~{wildcards.strategy}/temperature~{wildcards.temperature}/num~{wildcards.num}"
    return [f"{neg}{ref}/shards~{k}/score~{i}.jsonl" for i in range(k)]


def score_gather_flag(wildcards):
    parts = score_shard_parts(wildcards)
    return "--from-shards " + " ".join(parts) if parts else ""


def score_resources(rule):
    """(gpu, mem_mb, runtime) of a scored file's job: the plan's, or a small CPU job to gather."""
    def gpu(wildcards):
        return 0 if score_shard_parts(wildcards) else gpus_of(rule)(wildcards)

    def mem_mb(wildcards, attempt):
        return 8000 * attempt if score_shard_parts(wildcards) else mem_mb_of(rule)(wildcards, attempt)

    def runtime(wildcards):
        return 30 if score_shard_parts(wildcards) else runtime_of(rule)(wildcards)

    return gpu, mem_mb, runtime


_SCORE = score_resources("score_reference")
_SCORE_CKPT = score_resources("score_reference_checkpoint")


rule score_reference:
    input:
        model=neg_model_ready,
        data=f"{NEG}/negatives.jsonl",
        parts=score_shard_parts,
    output:
        f"{NEG}/scored.jsonl",
    params:
        s=neg_spec,
        gather=score_gather_flag,
    resources:
        gpu=_SCORE[0],
        nodes=1,
        mem_mb=_SCORE[1],
        runtime=_SCORE[2],
        cpus_per_task=cpus_of("score_reference"),
    log:
        f"logs/{NEG}/score.log",
    shell:
        "{NEGFREE} score --model {params.s.model_dir} --data {input.data} --out {output} {params.s.score} "
        "{params.s.template} {params.gather}" + LOG


# One shard of a scored file (`score.shards`); sized like the whole file's job (an upper bound).
rule score_reference_shard:
    input:
        model=neg_model_ready,
        data=f"{NEG}/negatives.jsonl",
    output:
        f"{NEG}/shards~{{k}}/score~{{shard}}.jsonl",
    params:
        s=neg_spec,
    wildcard_constraints:
        k=r"[0-9]+",
        shard=r"[0-9]+",
    resources:
        gpu=gpus_of("score_reference"),
        nodes=1,
        mem_mb=mem_mb_of("score_reference"),
        runtime=shard_runtime_of("score_reference"),
        cpus_per_task=cpus_of("score_reference"),
    log:
        f"logs/{NEG}/shards~{{k}}/score~{{shard}}.log",
    shell:
        "{NEGFREE} score --model {params.s.model_dir} --data {input.data} --out {output} {params.s.score} "
        "{params.s.template} --shard {wildcards.shard} --num-shards {wildcards.k}" + LOG


# A pipeline with `negatives: base`: the base model's pool, scored under the checkpoint the run
# starts from (its reference), beside the base-scored file.
rule score_reference_checkpoint:
    input:
        model=lambda wildcards: NF.checkpoint(wildcards.ref)[1],
        data=f"{NEG}/negatives.jsonl",
        parts=score_shard_parts,
    output:
        f"{NEG}/ref~{{ref}}/scored.jsonl",
    params:
        s=neg_spec,
        model=lambda wildcards: NF.checkpoint(wildcards.ref)[0],
        gather=score_gather_flag,
    wildcard_constraints:
        ref=r"[A-Za-z0-9_\-]+\.[a-z][a-z0-9_]*",
    resources:
        gpu=_SCORE_CKPT[0],
        nodes=1,
        mem_mb=_SCORE_CKPT[1],
        runtime=_SCORE_CKPT[2],
        cpus_per_task=cpus_of("score_reference_checkpoint"),
    log:
        f"logs/{NEG}/ref~{{ref}}/score.log",
    shell:
        "{NEGFREE} score --model {params.model} --data {input.data} --out {output} {params.s.score} "
        "{params.s.template} {params.gather}" + LOG


rule score_reference_checkpoint_shard:
    input:
        model=lambda wildcards: NF.checkpoint(wildcards.ref)[1],
        data=f"{NEG}/negatives.jsonl",
    output:
        f"{NEG}/ref~{{ref}}/shards~{{k}}/score~{{shard}}.jsonl",
    params:
        s=neg_spec,
        model=lambda wildcards: NF.checkpoint(wildcards.ref)[0],
    wildcard_constraints:
        ref=r"[A-Za-z0-9_\-]+\.[a-z][a-z0-9_]*",
        k=r"[0-9]+",
        shard=r"[0-9]+",
    resources:
        gpu=gpus_of("score_reference_checkpoint"),
        nodes=1,
        mem_mb=mem_mb_of("score_reference_checkpoint"),
        runtime=runtime_of("score_reference_checkpoint"),
        cpus_per_task=cpus_of("score_reference_checkpoint"),
    log:
        f"logs/{NEG}/ref~{{ref}}/shards~{{k}}/score~{{shard}}.log",
    shell:
        "{NEGFREE} score --model {params.model} --data {input.data} --out {output} {params.s.score} "
        "{params.s.template} --shard {wildcards.shard} --num-shards {wildcards.k}" + LOG
