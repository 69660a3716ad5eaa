# Analyses of the training logs and the claims ledger (issue 8): built from results/ only.
rule training_figures:
    input:
        runs=all_runs,
    output:
        fig3=report("figures/{exp}/dft/fig3.png", caption="../report/dft_fig3.rst", category="Training",
                    labels={"paper": "DFT", "figure": "Fig. 3", "experiment": "{exp}"}),
        fig4=report("figures/{exp}/dft/fig4.png", caption="../report/dft_fig4.rst", category="Training",
                    labels={"paper": "DFT", "figure": "Fig. 4", "experiment": "{exp}"}),
        minor=report("figures/{exp}/minorsft/fig1.png", caption="../report/minorsft_fig1.rst", category="Training",
                     labels={"paper": "MinorSFT", "figure": "Fig. 1", "experiment": "{exp}"}),
        asft=report("figures/{exp}/asft/fig2.png", caption="../report/asft_fig2.rst", category="Training",
                    labels={"paper": "ASFT", "figure": "Fig. 2", "experiment": "{exp}"}),
    params:
        scale=scale_of,
        root=runs_root,
    log:
        "logs/{exp}/training_figures.log",
    shell:
        "{NEGFREE} training-figures --runs-root {params.root} --out-root figures/{wildcards.exp} "
        "--scale {params.scale:q}" + LOG


def paper_experiments(exp):
    """The experiments whose runs one experiment's ledger reads for benchmark claims: those of its paper
    (bnf Table 4's model blocks and asft Table 3's data sets are separate experiments), else itself."""
    return [e for e in EXPS.values() if e.paper() == exp.paper()] if exp.paper() else [exp]


def claims_evals(exp):
    """Every evaluation the ledger reads: the paper protocols' results of the paper's experiments
    (runs, base model, released checkpoints, the seeds preset's replicates) and the offline twin's."""
    out = [path for e in paper_experiments(exp) for path, _ in protocol_evals(e)]
    out += [e.judged.result(e.runs_root, r, p) for e in paper_experiments(exp) if e.judged
            for p in e.judged.protocols for r in e.judged.runs]
    if "offline" in exp.protocols:
        out += [eval_json(exp, r) for r in exp.evaluated_runs()]
    return list(dict.fromkeys(out))


def claims_paper_rows(wildcards):
    """The paper_tables rows of the paper's experiments, for claims that name a setting or a model."""
    import json
    from negfree.report.claims import paper_rows_of

    rows = [r for e in paper_experiments(exp_of(wildcards)) for r in paper_rows_of(e)]
    return f"--paper-rows {shlex.quote(json.dumps(rows))}" if rows else ""


def claims_inputs(wildcards):
    """The runs, Frozen Lake, the analyses the experiment makes (their claims are checked too) and the
    evaluations (benchmark claims: over seeds, or over the test items of runs trained once)."""
    exp = exp_of(wildcards)
    out = {"runs": all_runs(wildcards), "lake": "results/toy/frozen_lake/fig3.csv",
           "claims": str(Path(workflow.basedir, "configs/claims.yaml")), "evals": claims_evals(exp)}
    if NF.toy.get("frozen_lake_robustness"):    # the reduced study is in the DAG where a config sizes it (the demo)
        out["robustness"] = f"{NF.robustness_dir()}/robustness_claims.csv"
    if exp.shifts():
        out["shifts"] = f"figures/{exp.name}/bnf/shifts_summary.csv"
    if exp.score_dist():
        out["score_dist"] = f"figures/{exp.name}/dft/fig1_summary.csv"
    return out


def claims_analysis_args(wildcards):
    inputs = claims_inputs(wildcards)
    # the full study is read where it exists, never forced (18 CPU minutes): `snakemake frozen_lake_robustness`
    robust = f"--robustness {NF.robustness_dir()}/robustness_claims.csv"
    return " ".join([robust] + [f"--{key.replace('_', '-')} {inputs[key]}" for key in ("shifts", "score_dist")
                                if key in inputs])


rule claims_ledger:
    input:
        unpack(claims_inputs),
    output:
        csv="results/tables/{exp}/claims.csv",
        md="results/tables/{exp}/claims.md",
        html=report("results/tables/{exp}/claims.html", caption="../report/claims.rst", category="Claims ledger",
                  labels={"table": "claims", "experiment": "{exp}"}),
    params:
        scale=scale_of,
        root=runs_root,
        analyses=claims_analysis_args,
        rows=claims_paper_rows,
    log:
        "logs/{exp}/claims_ledger.log",
    shell:
        "{NEGFREE} claims --claims {input.claims} --runs-root {params.root} --frozen-lake results/toy/frozen_lake "
        "{params.analyses} {params.rows} --out-csv {output.csv} --out-md {output.md} --scale {params.scale:q}" + LOG


# dft.txt Fig. 1: s(y',x) under a dft checkpoint for its own sampled negatives and for a pool
# sampled by the base model at a very high temperature (analysis.score_dist, negfree/jobs/dag.py).
def score_dist_of(wildcards):
    return exp_of(wildcards).score_dist()


def score_dist_inputs(wildcards):
    exp, sd = exp_of(wildcards), score_dist_of(wildcards)
    spec = exp.run_specs[sd["run"]]
    return {"timing": f"{exp.run_dir(sd['run'])}/timing.json",
            "sampled": f"{exp.neg_dir(spec['generate'])}/negatives.jsonl",
            "random": f"work/analysis/{exp.name}/score_dist/negatives.jsonl"}


def score_dist_pools(wildcards):
    import shlex

    exp, sd = exp_of(wildcards), score_dist_of(wildcards)
    spec = exp.run_specs[sd["run"]]
    inputs = score_dist_inputs(wildcards)
    return (f"--pool {shlex.quote('Sampling (T=' + str(spec['generate']['temperature']) + ')=' + inputs['sampled'])} "
            f"--pool {shlex.quote('Random (T=' + str(sd['temperature']) + ')=' + inputs['random'])}")


rule score_dist_pool:
    input:
        model=base_model_ready,
        data=lambda wildcards: f"{exp_of(wildcards).data_dir}/train.jsonl",
    output:
        "work/analysis/{exp}/score_dist/negatives.jsonl",
    params:
        model=base_model_dir,
        sd=score_dist_of,
        gen=lambda wildcards: exp_of(wildcards).gen,
        template=lambda wildcards: exp_of(wildcards).template_flag(),
    resources:
        gpu=gpus_of("score_dist_pool"),
        nodes=1,
        mem_mb=mem_mb_of("score_dist_pool"),
        runtime=runtime_of("score_dist_pool"),
        cpus_per_task=cpus_of("score_dist_pool"),
    log:
        "logs/{exp}/score_dist_pool.log",
    shell:
        "{NEGFREE_GENERATE} generate --model {params.model} --data {input.data} --out {output} --num {params.sd[num]} "
        "--strategy {params.gen[strategy]} --temperature {params.sd[temperature]} "
        "--max-new-tokens {params.gen[max_new_tokens]} --batch-size {params.gen[batch_size]} "
        "--seed {params.gen[seed]} --limit {params.sd[limit]} {params.template}" + LOG


rule score_distribution:
    input:
        unpack(score_dist_inputs),
    output:
        png=report("figures/{exp}/dft/fig1.png", caption="../report/score_dist.rst", category="Training",
                   labels={"paper": "DFT", "figure": "Fig. 1", "experiment": "{exp}"}),
        csv="figures/{exp}/dft/fig1.csv",
        summary="figures/{exp}/dft/fig1_summary.csv",
    params:
        model=lambda wildcards: f"{exp_of(wildcards).run_dir(score_dist_of(wildcards)['run'])}/final",
        pools=score_dist_pools,
        sd=score_dist_of,
        max_len=lambda wildcards: exp_of(wildcards).config["score"]["max_len"],
        template=lambda wildcards: exp_of(wildcards).template_flag(),
        scale=scale_of,
    resources:
        gpu=gpus_of("score_distribution"),
        nodes=1,
        mem_mb=mem_mb_of("score_distribution"),
        runtime=runtime_of("score_distribution"),
        cpus_per_task=cpus_of("score_distribution"),
    log:
        "logs/{exp}/score_distribution.log",
    shell:
        "{NEGFREE} score-dist --model {params.model} {params.pools} --limit {params.sd[limit]} "
        "--max-len {params.max_len} --out-root figures/{wildcards.exp} --scale {params.scale:q} {params.template}" + LOG


# bnf.txt Fig. 3-4: log-likelihood and logit shifts of checkpoints against the base model on
# their own greedy answers (analysis.shifts, negfree/jobs/dag.py) to the test prompts, or with
# analysis.shifts.prompts: wildbench to the WildBench v2 tasks (bnf.txt Sec. 5.3 "1,000 questions
# from Wild-Bench"): rule shift_prompts turns the experiment's WildBench records into chat messages.
localrules: shift_prompts


def shift_wildbench_questions(wildcards):
    """The WildBench v2 records: the experiment's own (evaluate.judged.files.wildbench), else the ones
    negfree fetch-judged-data fetches on the submit host (rule fetch_judged_data, workflows/judged.smk)."""
    from negfree.jobs.judged import FETCHED, FILES

    j = exp_of(wildcards).judged
    if j and "wildbench" in j.protocols and not j.fetched["wildbench"]:
        return j.files["wildbench"]["questions"]
    return f"{FETCHED}/wildbench/{FILES['wildbench']['questions']}"


def shift_prompt_inputs(wildcards):
    """The experiment's own records, or the marker written once the fetched files are verified."""
    from negfree.jobs.judged import FETCHED

    questions = shift_wildbench_questions(wildcards)
    return {"fetched": f"{FETCHED}/wildbench/.fetched"} if questions.startswith(f"{FETCHED}/") else {"questions": questions}


def shift_data(wildcards):
    """What the greedy answers answer (analysis.shifts.prompts): the test prompts, or the WildBench ones."""
    exp = exp_of(wildcards)
    if exp.shifts()["prompts"] == "wildbench":
        return f"work/analysis/{exp.name}/shifts/wildbench_prompts.jsonl"
    return test_data(wildcards)


rule shift_prompts:
    input:
        unpack(shift_prompt_inputs),
    output:
        "work/analysis/{exp}/shifts/wildbench_prompts.jsonl",
    params:
        questions=shift_wildbench_questions,
    log:
        "logs/{exp}/shift_prompts.log",
    shell:
        "{NEGFREE} judged-prompts --benchmark wildbench --questions {params.questions:q} --out {output}" + LOG


def shift_runs(wildcards):
    exp = exp_of(wildcards)
    return [f"{exp.run_dir(r)}/timing.json" for r in exp.shifts()["runs"]]


def shift_models(wildcards):
    import shlex

    exp = exp_of(wildcards)
    labels = [exp.run_specs[r]["method"] if sum(exp.run_specs[q]["method"] == exp.run_specs[r]["method"]
                                                for q in exp.shifts()["runs"]) == 1 else r
              for r in exp.shifts()["runs"]]
    return " ".join(f"--model {shlex.quote(label + '=' + exp.run_dir(r) + '/final')}"
                    for label, r in zip(labels, exp.shifts()["runs"]))


rule shift_figures:
    input:
        runs=shift_runs,
        model=base_model_ready,
        test=shift_data,
    output:
        fig3=report("figures/{exp}/bnf/fig3.png", caption="../report/shifts.rst", category="Training",
                    labels={"paper": "BNF", "figure": "Fig. 3", "experiment": "{exp}"}),
        fig4=report("figures/{exp}/bnf/fig4.png", caption="../report/shifts.rst", category="Training",
                    labels={"paper": "BNF", "figure": "Fig. 4", "experiment": "{exp}"}),
        summary="figures/{exp}/bnf/shifts_summary.csv",
    params:
        reference=base_model_dir,
        models=shift_models,
        a=lambda wildcards: exp_of(wildcards).shifts(),
        template=lambda wildcards: exp_of(wildcards).template_flag(),
        scale=scale_of,
    resources:
        gpu=gpus_of("shift_figures"),
        nodes=1,
        mem_mb=mem_mb_of("shift_figures"),
        runtime=runtime_of("shift_figures"),
        cpus_per_task=cpus_of("shift_figures"),
    log:
        "logs/{exp}/shift_figures.log",
    shell:
        "{NEGFREE} shifts --reference {params.reference} {params.models} --data {input.test} "
        "--limit {params.a[limit]} --max-new-tokens {params.a[max_new_tokens]} --out-root figures/{wildcards.exp} "
        "--scale {params.scale:q} {params.template}" + LOG


# Sweep figures (dft.txt Fig. 2b, Fig. 6): one metric across the grid points of the sweep tables.
def sweep_figure_of(wildcards):
    figs = exp_of(wildcards).sweep_figures()
    if wildcards.name not in figs:
        raise WorkflowError(f"experiment {wildcards.exp} declares no analysis.sweep_figures.{wildcards.name} "
                            f"(declared: {', '.join(figs) or 'none'})")
    return figs[wildcards.name]


def sweep_figure_args(wildcards):
    import shlex

    f = sweep_figure_of(wildcards)
    args = [f"--x {shlex.quote(f['x'])}", f"--metric {shlex.quote(f['metric'])}", f"--title {shlex.quote(f['title'])}"]
    if f.get("series"):
        args.append(f"--series {shlex.quote(f['series'])}")
    if f.get("stderr"):
        args.append(f"--stderr {shlex.quote(f['stderr'])}")
    return " ".join(args) + " " + " ".join(f"--table {shlex.quote(t)}" for t in f["tables"])


rule sweep_figure:
    input:
        lambda wildcards: sweep_figure_of(wildcards)["tables"],
    output:
        png=report("figures/{exp}/sweeps/{name}.png", caption="../report/sweep_figure.rst", category="Sweeps",
                   labels={"figure": "{name}", "experiment": "{exp}"}),
        csv="figures/{exp}/sweeps/{name}.csv",
    params:
        args=sweep_figure_args,
        scale=scale_of,
    log:
        "logs/{exp}/sweep_figure/{name}.log",
    shell:
        "{NEGFREE} sweep-figure {params.args} --out {output.png} --scale {params.scale:q}" + LOG
