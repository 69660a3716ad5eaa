# The judged protocols (evaluate.judged; negfree/jobs/judged.py): Arena-Hard v0.1, MT-Bench and
# WildBench v2. Per (run, protocol): the run's answers on the benchmark's prompts (a GPU job), then
# the judge's verdicts, cached per judgement, and the benchmark's score with its interval. The
# judge is a backend of configs/judges.yaml: the paper's (OpenAI API), any OpenAI-compatible
# endpoint, a judge served on a GPU node for the job (negfree serve-judge), or the offline judge.
# The official files are fetched on the submit host (a local rule) at the revisions pinned in
# configs/judged/sources.yaml, unless the experiment names files of its own (evaluate.judged.files).
localrules: fetch_judged_data, judged_table

JUDGED_RE = "arena_hard|mt_bench|wildbench"


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
    shell:
        "mkdir -p $(dirname {params.progress}) && {NEGFREE} judged-answers --model {params.model} {params.args} "
        "--name {wildcards.who} --out {params.progress} && cp {params.progress} {output}" + LOG


def judged_eval_command(wildcards, input, output):
    """negfree judged-eval; with a served judge, inside negfree serve-judge, which starts the server."""
    j = judged_of(wildcards)
    cache = f"work/judge_cache/{wildcards.exp}/{wildcards.who}/{wildcards.judged}"
    cmd = (f"{NEGFREE} judged-eval --answers {input.answers} --out {output} --run {wildcards.who} "
           + j.eval_args(wildcards.judged, cache))
    judge = j.judges[wildcards.judged]
    if judge.kind != "served":
        return cmd
    return (f"{NEGFREE} serve-judge --model {judge.model} --gpus {judge.gpus} "
            f"--startup-min {judge.startup_min:g} -- {cmd}")


rule judged_eval:
    input:
        answers="results/runs/{exp}/{who}/judged/{judged}.answers.jsonl",
        files=lambda wildcards: judged_of(wildcards).inputs(wildcards.judged),
    output:
        "results/runs/{exp}/{who}/eval/{judged}.json",
    params:
        command=judged_eval_command,
    wildcard_constraints:
        who=rf"base~[^/]+|method~(?:{_METHOD_RE})(?:/[A-Za-z_][A-Za-z0-9_]*~[^/]+)*",
        judged=JUDGED_RE,
    resources:
        gpu=gpus_of("judged_eval"),
        nodes=1,
        mem_mb=lambda wildcards, attempt: max(4000, NF.estimate("judged_eval", wildcards).mem_mb() * attempt),
        runtime=lambda wildcards: max(60, NF.estimate("judged_eval", wildcards).runtime_min()),
        cpus_per_task=lambda wildcards: max(2, 4 * NF.estimate("judged_eval", wildcards).gpus),
    log:
        "logs/{exp}/judged/{who}/{judged}.eval.log",
    shell:
        "{params.command}" + LOG


def judged_results(wildcards):
    exp = exp_of(wildcards)
    return [(exp.judged.result(exp.runs_root, r, p), r) for p in exp.judged.protocols for r in exp.judged.runs]


def paper_judge_args(wildcards):
    j = exp_of(wildcards).judged
    return " ".join(f"{p}={j.judges[p].paper_model}" for p in j.protocols if j.judges[p].paper_model)


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
