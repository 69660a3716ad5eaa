# lm-eval's task data is fetched on the submit host (a local rule, like prepare_model and make_data:
# compute nodes often cannot reach the hub) into the HF datasets cache, which must sit on storage
# the compute nodes share (HF_HOME or HF_DATASETS_CACHE); every lm-eval job needs its protocol's
# marker (ancient: only its existence counts, a refetch reruns no evaluation) and runs with the hub
# switched off, so a GPU job never downloads. The offline twin's fetch only writes the marker (its
# data is the embedded test split).
localrules: fetch_eval_data


def fetched(protocol):
    return f"work/lm_eval_data/{protocol}.json"


EVAL_OFFLINE = "HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 "


rule fetch_eval_data:
    output:
        fetched("{eval_data}"),
    wildcard_constraints:
        eval_data="|".join(["offline", *sorted(_PROTOCOL_TABLE)]),
    log:
        "logs/lm_eval_data/{eval_data}.log",
    shell:
        "{NEGFREE} fetch-eval-data --protocol {wildcards.eval_data} --out {output}" + LOG


# A paper protocol's answered requests stay in lm-eval's request cache beside the result until it is
# written, so a retry of a preempted or timed-out job only asks what is left (negfree evaluate --cache).
def eval_cache(wildcards, output):
    return str(Path(output[0]).with_suffix(".cache"))


# The offline lm-eval twin on the embedded test split, for the base model and every run
# (evaluate.protocols: offline), and the papers' lm-eval protocols (the others).
rule evaluate_run:
    input:
        timing="results/runs/{exp}/{run}/timing.json",
        test=test_data,
        data=ancient(fetched("offline")),
    output:
        "results/runs/{exp}/{run}/eval/negfree_offline.json",
    params:
        model=final_model_of,
        flags=eval_flags,
    resources:
        gpu=gpus_of("evaluate_run"),
        nodes=1,
        mem_mb=mem_mb_of("evaluate_run"),
        runtime=runtime_of("evaluate_run"),
        cpus_per_task=cpus_of("evaluate_run"),
    log:
        "logs/{exp}/evaluate/{run}.log",
    shell:
        (EVAL_OFFLINE + "{NEGFREE} evaluate --model {params.model} --test {input.test} --out {output} "
         "{params.flags}") + LOG


rule evaluate_base:
    input:
        model="work/models/{model}/config.json",
        test=test_data,
        data=ancient(fetched("offline")),
    output:
        "results/runs/{exp}/base~{model}/eval/negfree_offline.json",
    params:
        flags=eval_flags,
    resources:
        gpu=gpus_of("evaluate_base"),
        nodes=1,
        mem_mb=mem_mb_of("evaluate_base"),
        runtime=runtime_of("evaluate_base"),
        cpus_per_task=cpus_of("evaluate_base"),
    log:
        "logs/{exp}/evaluate/base~{model}.log",
    shell:
        (EVAL_OFFLINE + "{NEGFREE} evaluate --model work/models/{wildcards.model} --test {input.test} "
         "--out {output} {params.flags}") + LOG


rule evaluate_protocol:
    input:
        timing="results/runs/{exp}/{run}/timing.json",
        data=ancient(fetched("{protocol}")),
    output:
        "results/runs/{exp}/{run}/eval/{protocol}.json",
    params:
        model=final_model_of,
        cache=eval_cache,
    resources:
        gpu=gpus_of("evaluate_protocol"),
        nodes=1,
        mem_mb=mem_mb_of("evaluate_protocol"),
        runtime=runtime_of("evaluate_protocol"),
        cpus_per_task=cpus_of("evaluate_protocol"),
    log:
        "logs/{exp}/evaluate/{run}/{protocol}.log",
    shell:
        (EVAL_OFFLINE + "{NEGFREE} evaluate --model {params.model} --protocol {wildcards.protocol} --out {output} "
         "--cache {params.cache}") + LOG


rule evaluate_protocol_base:
    input:
        model="work/models/{model}/config.json",
        data=ancient(fetched("{protocol}")),
    output:
        "results/runs/{exp}/base~{model}/eval/{protocol}.json",
    params:
        cache=eval_cache,
    resources:
        gpu=gpus_of("evaluate_protocol_base"),
        nodes=1,
        mem_mb=mem_mb_of("evaluate_protocol_base"),
        runtime=runtime_of("evaluate_protocol_base"),
        cpus_per_task=cpus_of("evaluate_protocol_base"),
    log:
        "logs/{exp}/evaluate/base~{model}/{protocol}.log",
    shell:
        (EVAL_OFFLINE + "{NEGFREE} evaluate --model work/models/{wildcards.model} --protocol {wildcards.protocol} "
         "--out {output} --cache {params.cache}") + LOG


# A released checkpoint (released: in the experiment; prepared like a base model) under a paper
# protocol, without training: run id released~<name>, a row of the paper tables. Sized as the
# experiment's base model's evaluation (the papers' released checkpoints share its architecture).
def released_estimate(wildcards):
    return NF.estimate("evaluate_protocol_base", {"exp": wildcards.exp, "model": exp_of(wildcards).model,
                                                  "protocol": wildcards.protocol})


rule evaluate_protocol_released:
    input:
        model="work/models/{model}/config.json",
        data=ancient(fetched("{protocol}")),
    output:
        "results/runs/{exp}/released~{model}/eval/{protocol}.json",
    params:
        cache=eval_cache,
    resources:
        gpu=lambda wildcards: released_estimate(wildcards).gpus,
        nodes=1,
        mem_mb=lambda wildcards, attempt: released_estimate(wildcards).mem_mb() * attempt,
        runtime=lambda wildcards: released_estimate(wildcards).runtime_min(),
        cpus_per_task=lambda wildcards: max(4, 4 * released_estimate(wildcards).gpus),
    log:
        "logs/{exp}/evaluate/released~{model}/{protocol}.log",
    shell:
        (EVAL_OFFLINE + "{NEGFREE} evaluate --model work/models/{wildcards.model} --protocol {wildcards.protocol} "
         "--out {output} --cache {params.cache}") + LOG


# The generation-based protocols: AlpacaEval 2 (negfree alpaca-eval; the GPT-4-turbo judge, or
# the offline stand-in) and BLEU/ROUGE against the test split (negfree textsim, asft.txt Table 3).
# {who} is a run id or base~<model>.
def who_ready(wildcards):
    exp = exp_of(wildcards)
    if wildcards.who.startswith("base~"):
        return f"{exp.model_dir}/config.json"
    return f"{exp.run_dir(wildcards.who)}/timing.json"


def who_model(wildcards):
    exp = exp_of(wildcards)
    return exp.model_dir if wildcards.who.startswith("base~") else f"{exp.run_dir(wildcards.who)}/final"


# AlpacaEval 1 (alpaca_eval1) and 2 (alpaca_eval2) and textsim; {who} may also be a released
# checkpoint (released~<name>, prepared like a base model under work/models/<name>), which the
# AlpacaEval figures compare with (dft.txt Fig. 5). AlpacaEval's official files come from the
# local rule fetch_judged_data (its marker, work/judged/alpaca_eval/.fetched) unless the experiment
# names its own; the judge's annotations are cached per run in work/judge_cache/alpaca_eval/.
rule evaluate_generation:
    input:
        budget=judge_budget_check,   # AlpacaEval's annotators are priced too
        ready=lambda wildcards: (f"work/models/{wildcards.who.split('~', 1)[1]}/config.json"
                                 if wildcards.who.startswith("released~") else who_ready(wildcards)),
        data=lambda wildcards: exp_of(wildcards).generation_eval_inputs(wildcards.gen_protocol),
    output:
        "results/runs/{exp}/{who}/eval/{gen_protocol}.json",
    params:
        model=lambda wildcards: (f"work/models/{wildcards.who.split('~', 1)[1]}"
                                 if wildcards.who.startswith("released~") else who_model(wildcards)),
        command=lambda wildcards: "textsim" if wildcards.gen_protocol == "textsim" else "alpaca-eval",
        args=lambda wildcards: exp_of(wildcards).generation_eval_args(wildcards.gen_protocol, wildcards.who),
    wildcard_constraints:
        who=rf"base~[^/]+|released~[^/]+|method~(?:{_METHOD_RE})(?:/[A-Za-z_][A-Za-z0-9_]*~[^/]+)*",
        gen_protocol="alpaca_eval1|alpaca_eval2|textsim",
    resources:
        gpu=gpus_of("evaluate_generation"),
        nodes=1,
        mem_mb=mem_mb_of("evaluate_generation"),
        runtime=runtime_of("evaluate_generation"),
        cpus_per_task=cpus_of("evaluate_generation"),
    log:
        "logs/{exp}/evaluate/{who}/{gen_protocol}.log",
    shell:
        "{NEGFREE} {params.command} --model {params.model} {params.args} --out {output}" + LOG
