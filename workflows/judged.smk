# The judged protocols (evaluate.judged; negfree/jobs/judged.py): Arena-Hard v0.1, MT-Bench and
# WildBench v2. Per (run, protocol): the run's answers on the benchmark's prompts (judged_answers, a
# GPU job), then judged_eval: the judge's verdicts, cached per judgement, and the benchmark's score
# with its interval (a CPU job). The judge is a backend of configs/judges.yaml: the paper's (OpenAI
# API), any OpenAI-compatible endpoint, an open-weights judge served on a GPU node, or the offline
# judge. A served judge is ONE GPU job per experiment and backend, judged_serve: negfree serve-judge
# starts the server once, every (run, protocol) it judges goes through it (negfree judged-eval, the
# same judgement cache: only pending judgements reach the server), it stops; each judged_eval then
# copies its result from work/judged_served/. With api_jobs: submit_host in configs/judges.yaml the
# judged_eval jobs run on the submit host (compute nodes without internet; none of them needs a GPU).
# The official files are fetched on the submit host (a local rule) at the revisions pinned in
# configs/judged/sources.yaml, unless the experiment names files of its own (evaluate.judged.files).
localrules: fetch_judged_data, judged_table

if any(e.judged and e.judged.api_jobs == "submit_host" for e in EXPS.values()):
    localrules: judged_eval

JUDGED_RE = "arena_hard|mt_bench|wildbench"
# judged_eval also judges "<protocol>@<model>": an extra judge of the protocol's answers (configs/judges.yaml
# paper_judges lists several models for it; Judged.extra), into eval/<protocol>@<model>.json
JUDGED_EVAL_RE = rf"(?:{JUDGED_RE})(?:@{EXTRA_MODEL_RE})?"


def judged_of(wildcards):
    return exp_of(wildcards).judged


rule fetch_judged_data:
    output:
        "work/judged/{judged}/.fetched",
    wildcard_constraints:
        judged=JUDGED_RE + "|alpaca_eval",   # alpaca_eval: the reference outputs of negfree alpaca-eval
    log:
        "logs/judged/{judged}.fetch.log",
    shell:
        "{NEGFREE} fetch-judged-data --protocol {wildcards.judged} --out work/judged" + LOG


rule judged_answers:
    input:
        budget=judge_budget_check,
        ready=who_ready,
        files=lambda wildcards: judged_of(wildcards).inputs(wildcards.judged),
    output:
        "results/runs/{exp}/{who}/judged/{judged}.answers.jsonl",
    params:
        model=who_model,
        args=lambda wildcards: judged_of(wildcards).answers_args(wildcards.judged),
        # Snakemake removes a failed job's output: the answers so far live here, so a retry resumes
        # (answers of other settings there, after a change of params, are moved aside and redone)
        progress="work/judged_answers/{exp}/{who}/{judged}.answers.jsonl",
    wildcard_constraints:
        who=rf"base~[^/]+|method~(?:{_METHOD_RE})(?:/[A-Za-z_][A-Za-z0-9_]*~[^/]+)*",
        judged=JUDGED_RE,
    resources:
        gpu=gpus_of("judged_answers"),
        nodes=1,
        mem_mb=mem_mb_of("judged_answers"),
        runtime=runtime_of("judged_answers"),
        cpus_per_task=cpus_of("judged_answers"),
    log:
        "logs/{exp}/judged/{who}/{judged}.answers.log",
    # the generation environment (.venv-vllm when `make setup-vllm` made one); --backend auto: vLLM
    # where a GPU and the package are, else transformers (the answers' settings name which ran)
    shell:
        "mkdir -p $(dirname {params.progress}) && {NEGFREE_GENERATE} judged-answers --model {params.model} "
        "{params.args} --backend auto --name {wildcards.who} --out {params.progress} --restart-on-new-settings "
        "&& cp {params.progress} {output}" + LOG


def judged_eval_command(wildcards, input, output):
    """negfree judged-eval (an API or the offline judge); with a served judge, the copy of the result (and its
    judgements JSONL, which the result names by file name) that the backend's judged_serve job wrote."""
    j = judged_of(wildcards)
    judge = j.judge_of(wildcards.judged)
    if judge.kind == "served":
        return j.served_copy_command(wildcards.exp, wildcards.who, wildcards.judged, str(output))
    cache = j.cache_dir(wildcards.exp, wildcards.who, wildcards.judged)
    return (f"{NEGFREE} judged-eval --answers {input.answers} --out {output} --run {wildcards.who} "
            + j.eval_args(wildcards.judged, cache))


def judged_served_marker(wildcards):
    """A served judge's judged_eval waits for its backend's judged_serve job (none for an API or offline judge)."""
    j = judged_of(wildcards)
    judge = j.judge_of(wildcards.judged)
    return [j.served_marker(wildcards.exp, judge.backend)] if judge.kind == "served" else []


def judged_eval_answers(wildcards):
    """The answers judged: the protocol's, for its own judge and for an extra judge ("<protocol>@<model>") alike."""
    return judged_of(wildcards).answers(exp_of(wildcards).runs_root, wildcards.who, Judged.split(wildcards.judged)[0])


rule judged_eval:
    input:
        answers=judged_eval_answers,
        files=lambda wildcards: judged_of(wildcards).inputs(Judged.split(wildcards.judged)[0]),
        served=judged_served_marker,
    output:
        "results/runs/{exp}/{who}/eval/{judged}.json",
    params:
        command=judged_eval_command,
    wildcard_constraints:
        who=rf"base~[^/]+|method~(?:{_METHOD_RE})(?:/[A-Za-z_][A-Za-z0-9_]*~[^/]+)*",
        judged=JUDGED_EVAL_RE,
    resources:
        gpu=0,      # never a GPU: an API waits on the network, the offline judge hashes, a served one copies
        nodes=1,
        mem_mb=lambda wildcards, attempt: max(4000, NF.estimate("judged_eval", wildcards).mem_mb() * attempt),
        runtime=lambda wildcards: max(60, NF.estimate("judged_eval", wildcards).runtime_min()),
        cpus_per_task=2,
    log:
        "logs/{exp}/judged/{who}/{judged}.eval.log",
    shell:
        "{params.command}" + LOG


# A served judge (configs/judges.yaml kind: served): one job per experiment and backend, on the judge's
# GPUs. negfree serve-judge starts the server, waits until it answers, runs negfree judged-eval for every
# (run, protocol) the backend judges (Judged.serve_command), and stops it; the marker is touched last.
rule judged_serve:
    input:
        lambda wildcards: judged_of(wildcards).serve_inputs(exp_of(wildcards).runs_root, wildcards.backend),
    output:
        touch("work/judged_served/{exp}/{backend}.done"),
    params:
        command=lambda wildcards: judged_of(wildcards).serve_command(exp_of(wildcards).runs_root, wildcards.exp,
                                                                     wildcards.backend, NEGFREE),
    wildcard_constraints:
        backend=r"[A-Za-z0-9_.-]+",
    resources:
        gpu=gpus_of("judged_serve"),
        nodes=1,
        mem_mb=mem_mb_of("judged_serve"),
        runtime=runtime_of("judged_serve"),
        cpus_per_task=cpus_of("judged_serve"),
    log:
        "logs/{exp}/judged/serve.{backend}.log",
    shell:
        "{params.command}" + LOG


def judged_results(wildcards):
    exp = exp_of(wildcards)
    # AlpacaEval listed under evaluate.judged: its results come from rule evaluate_generation (workflows/evaluate.smk)
    # an extra judge's results ("<protocol>@<model>") too: their rows name their judge
    return [(exp.judged.result(exp.runs_root, r, p), r) for p in [*exp.judged.judgings(), *exp.judged.alpaca]
            for r in exp.judged.runs]


def paper_judge_args(wildcards):
    """protocol=model of the paper's judges; a protocol with extra judges lists them all (model,model)."""
    j = exp_of(wildcards).judged
    return " ".join(f"{p}=" + ",".join([j.judges[p].paper_model, *(e.model for e in j.extra.get(p, []))])
                    for p in j.protocols if j.judges[p].paper_model)


rule judged_table:
    input:
        lambda wildcards: [path for path, _ in judged_results(wildcards)],
    output:
        csv="results/tables/{exp}/judged.csv",
        md="results/tables/{exp}/judged.md",
        html=report("results/tables/{exp}/judged.html", caption="../report/judged_table.rst", category="Tables",
                    labels={"table": "judged", "experiment": "{exp}"}),
    params:
        runs=lambda wildcards: [r for _, r in judged_results(wildcards)],
        paper=paper_judge_args,
        scale=scale_of,
    resources:
        mem_mb=2000,
        runtime=30,
        cpus_per_task=1,
    log:
        "logs/{exp}/judged_table.log",
    shell:
        "{NEGFREE} judged-table --results {input} --runs {params.runs} --paper-judge {params.paper} "
        "--out-csv {output.csv} --out-md {output.md} --scale {params.scale:q}" + LOG
