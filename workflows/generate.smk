# Negatives sampled from the model the negatives path names (dft.txt Alg. 1 step 5, offline
# pool): the base model, or for a pipeline run the checkpoint it starts from. One directory
# per generation setting (strategy, temperature, pool size): sweeps over them share what they can.
# With `generate.shards: k > 1`, k jobs sample prompts i::k (each resumes after a kill) and
# generate_negatives only gathers their outputs in record order, on the CPU.
# `--dtype auto`: bf16 on a CUDA GPU, fp32 on the CPU. `--backend` from generate.backend (default auto:
# vLLM where a CUDA GPU and the vllm package are and vLLM takes the temperature, else transformers; the
# manifest names the one that ran and why; gen_backend routes a pool vLLM cannot sample through auto).
def gen_shard_parts(wildcards):
    """The shard outputs the pool is gathered from ([]: one job samples the whole pool)."""
    k = neg_spec(wildcards).shards[0]
    if k == 1 or wildcards.strategy == "pair":
        return []
    neg = f"{wildcards.neg_root}/strategy~{wildcards.strategy}/temperature~{wildcards.temperature}/num~{wildcards.num}"
    return [f"{neg}/shards~{k}/generate~{i}.jsonl" for i in range(k)]


def gen_gather_flag(wildcards):
    parts = gen_shard_parts(wildcards)
    return "--from-shards " + " ".join(parts) if parts else ""


def gen_gpus(wildcards):
    return 0 if gen_shard_parts(wildcards) else gpus_of("generate_negatives")(wildcards)


def gen_mem_mb(wildcards, attempt):
    return 8000 * attempt if gen_shard_parts(wildcards) else mem_mb_of("generate_negatives")(wildcards, attempt)


def gen_runtime(wildcards):
    return 30 if gen_shard_parts(wildcards) else runtime_of("generate_negatives")(wildcards)


def gen_backend(wildcards):
    """generate.backend, except that a pool the named backend cannot sample (a temperature above
    vLLM's 2, negfree.generate.negatives.BACKEND_LIMITS) goes through `auto`, which samples it with
    transformers and records why in the manifest, instead of failing every retry."""
    backend = neg_spec(wildcards).gen[4]
    if backend == "auto":
        return backend
    from negfree.generate.negatives import backend_refusal   # imports torch: only when a backend is named

    return "auto" if backend_refusal(backend, temperature=float(wildcards.temperature)) else backend


GEN_ARGS = ("--num {wildcards.num} --strategy {wildcards.strategy} --temperature {wildcards.temperature} "
            "--max-new-tokens {params.s.gen[0]} --batch-size {params.s.gen[1]} --seed {params.s.gen[2]} "
            "--limit {params.s.gen[3]} --backend {params.backend} --dtype auto {params.s.template}")


rule generate_negatives:
    input:
        model=neg_model_ready,
        data=neg_data,
        parts=gen_shard_parts,
    output:
        f"{NEG}/negatives.jsonl",
    params:
        s=neg_spec,
        backend=gen_backend,
        gather=gen_gather_flag,
    resources:
        gpu=gen_gpus,
        nodes=1,
        mem_mb=gen_mem_mb,
        runtime=gen_runtime,
        cpus_per_task=cpus_of("generate_negatives"),
    log:
        f"logs/{NEG}/generate.log",
    shell:
        "{NEGFREE_GENERATE} generate --model {params.s.model_dir} --data {input.data} --out {output} "
        + GEN_ARGS + " {params.gather}" + LOG


# One shard of a pool (`generate.shards`): the whole pool's memory, 1/k of its time.
rule generate_negatives_shard:
    input:
        model=neg_model_ready,
        data=neg_data,
    output:
        f"{NEG}/shards~{{k}}/generate~{{shard}}.jsonl",
    params:
        s=neg_spec,
        backend=gen_backend,
    wildcard_constraints:
        k=r"[0-9]+",
        shard=r"[0-9]+",
    resources:
        gpu=gpus_of("generate_negatives"),
        nodes=1,
        mem_mb=mem_mb_of("generate_negatives"),
        runtime=shard_runtime_of("generate_negatives"),
        cpus_per_task=cpus_of("generate_negatives"),
    log:
        f"logs/{NEG}/shards~{{k}}/generate~{{shard}}.log",
    shell:
        "{NEGFREE_GENERATE} generate --model {params.s.model_dir} --data {input.data} --out {output} "
        "--shard {wildcards.shard} --num-shards {wildcards.k} " + GEN_ARGS + LOG
