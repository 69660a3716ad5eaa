# Named input functions and lookups shared by every stage. The experiments (one, or the set a
# config lists under `experiments:`) are checked and expanded once, in negfree/jobs/dag.py; rules
# carry the experiment as the {exp} wildcard and look everything else up.
import os
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from negfree.common.naming import item_file
from negfree.jobs.dag import ConfigError as _ConfigError, Dag as _Dag
from negfree.jobs.judged import EXTRA_MODEL_RE, Judged
from negfree.evaluate.protocols import PROTOCOLS as _PROTOCOL_TABLE
from negfree.losses import REGISTRY

def _config_origin():
    """The config file the user gave, as they would write it (the last --configfile wins; without
    one, the Snakefile loaded configs/papers.yaml)."""
    if not workflow.configfiles:
        return "configs/papers.yaml" if "experiments" in config else "config"
    f = Path(workflow.configfiles[-1])
    try:
        return str(f.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(f)


try:
    NF = _Dag(config, workflow.basedir, origin=_config_origin())
except _ConfigError as _e:
    # a config error is the user's input, not a bug: one line (the config file, the key, the
    # culprit) and status 1, before any job is planned; no Snakemake traceback header
    sys.exit(f"negfree: {_e}")
EXPS = NF.experiments
_BUDGET_CHECKED = []


def judge_budget_check(wildcards):
    """No input; the judge budget (configs/judges.yaml budget_usd, NEGFREE_JUDGE_BUDGET_USD), once, while
    the DAG is built (when a judged job is asked for): an estimate over it stops the DAG in one line
    before any job starts; a dry run warns and goes on."""
    if _BUDGET_CHECKED:
        return []
    _BUDGET_CHECKED.append(True)
    msg = NF.judge_budget_refusal(os.environ)
    if msg and workflow.dryrun:
        print(f"WARNING: {msg} (a run without -n stops here)", file=sys.stderr)
    elif msg:
        raise WorkflowError(msg)
    return []

_METHOD_RE = "|".join(sorted(REGISTRY, key=len, reverse=True))

# The project's interpreter by absolute path: jobs need no activated venv and no `negfree` on
# PATH (on a cluster the venv must be on a filesystem the compute nodes share). Rules call
# `{NEGFREE} <command>`, `{PY}` and `{ACCELERATE}`.
PY = shlex.quote(sys.executable)
NEGFREE = f"{PY} -m negfree.cli"
ACCELERATE = f"{PY} -m accelerate.commands.launch"
# Generation runs in the vLLM environment when `make setup-vllm` made one (configs/vllm-env.txt:
# vLLM's pins do not resolve beside .venv's), else in the project's; `--backend auto` picks vLLM
# only where a GPU and the package are.
_VLLM_PY = Path(workflow.basedir) / ".venv-vllm" / "bin" / "python"
NEGFREE_GENERATE = f"{shlex.quote(str(_VLLM_PY))} -m negfree.cli" if _VLLM_PY.exists() else NEGFREE

wildcard_constraints:
    exp=NF.exp_re(),
    model=NF.model_re(),
    data_dir=NF.data_re(),
    neg_root=NF.neg_root_re(),
    method=_METHOD_RE,
    run=rf"method~(?:{_METHOD_RE})(?:/[A-Za-z_][A-Za-z0-9_]*~[^/]+)*",
    sweep=r"[A-Za-z0-9_\-]+",
    strategy=r"[a-z_]+",
    temperature=r"[0-9.]+",
    num=r"[0-9]+",
    protocol="|".join(sorted(_PROTOCOL_TABLE)),
    item=r"[a-z]+_[a-z0-9_]+",
    name=r"[A-Za-z0-9_\-]+",

NEG = "{neg_root}/strategy~{strategy}/temperature~{temperature}/num~{num}"

# Final outputs that rule files add beyond the experiments' own (NF.targets()): a new
# workflows/<name>.smk appends its outputs here, and `rule all` (Snakefile) asks for them.
FINAL_TARGETS = []


def exp_of(wildcards):
    return EXPS[wildcards.exp]


def spec_of(wildcards):
    return EXPS[wildcards.exp].run_specs[wildcards.run]


# -- model, data, negatives: looked up by path ------------------------------------------
def model_source(wildcards):
    return NF.models[wildcards.model]


def gated_model_check(wildcards):
    """No input; stops the DAG when this model is still to be downloaded, is gated on the hub and
    no Hugging Face token is set (negfree/jobs/dag.py gated_model_error). Input functions run while
    the DAG is built, only for jobs of the requested targets."""
    from negfree.jobs.dag import gated_model_error

    msg = gated_model_error(wildcards.model, NF.models[wildcards.model],
                            Path(f"work/models/{wildcards.model}/config.json").exists())
    if msg and workflow.dryrun:     # a plan (-n) goes on, and says so
        print(f"WARNING: {msg}", file=sys.stderr)
    elif msg:
        raise WorkflowError(msg)
    return []


def data_spec(wildcards):
    return NF.data[wildcards.data_dir]


def neg_spec(wildcards):
    return NF.negs[wildcards.neg_root]


def neg_model_ready(wildcards):
    return neg_spec(wildcards).model_ready


def neg_data(wildcards):
    return f"{neg_spec(wildcards).data_dir}/train.jsonl"


# -- training ------------------------------------------------------------------------------
def train_args(wildcards):
    """The train section with the run's overrides and its hyperparameters, as JSON (shell-quoted)."""
    import json, shlex

    spec = spec_of(wildcards)
    train = {**exp_of(wildcards).config["train"], **spec["train"], "hparams": spec["hparams"]}
    return "--train-json " + shlex.quote(json.dumps(train))


def start_model(wildcards):
    """(directory, ready file) the run starts from: the base model, or a pipeline's checkpoint."""
    from negfree.jobs.dag import init_label

    exp, spec = exp_of(wildcards), spec_of(wildcards)
    if spec.get("init") is None:
        return exp.model_dir, f"{exp.model_dir}/config.json"
    return NF.checkpoint(init_label(exp.name, spec["init"]))


def start_model_ready(wildcards):
    return start_model(wildcards)[1]


def start_model_dir(wildcards):
    return start_model(wildcards)[0]


def method_of(wildcards):
    return spec_of(wildcards)["method"]


def scored_data_of(wildcards):
    return exp_of(wildcards).scored(wildcards.run)


def run_dir_of(wildcards):
    return exp_of(wildcards).run_dir(wildcards.run)


def accelerate_config(wildcards):
    return exp_of(wildcards).config.get("launch", {}).get("accelerate_config", "configs/accelerate/ddp.yaml")


# -- Slurm resources per job ---------------------------------------------------------------
# GPUs from the experiment's launch: section, runtime and memory from its plan (negfree/jobs/resources.py:
# estimate x SAFETY; memory also x attempt, so a job killed for memory gets more). Every job runs
# on one node (sbatch --nodes=1). `negfree plan` prints the same numbers.
def gpus_of(rule):
    def gpu(wildcards):
        return NF.estimate(rule, wildcards).gpus
    return gpu


def mem_mb_of(rule):
    def mem_mb(wildcards, attempt):
        return NF.estimate(rule, wildcards).mem_mb() * attempt
    return mem_mb


def runtime_of(rule):
    def runtime(wildcards):
        return NF.estimate(rule, wildcards).runtime_min()
    return runtime


def shard_runtime_of(rule):
    """A shard job's time limit: its 1/k of the whole job's estimate (shards are equal slices)."""
    def runtime(wildcards):
        job = NF.estimate(rule, wildcards)
        return job.runtime_min(share=1 / int(wildcards.k))
    return runtime


def cpus_of(rule):
    def cpus_per_task(wildcards):
        return max(4, 4 * NF.estimate(rule, wildcards).gpus)
    return cpus_per_task


# -- evaluation and tables -----------------------------------------------------------------
def eval_json(exp, run):
    return f"{exp.run_dir(run)}/eval/negfree_offline.json"


def final_model_of(wildcards):
    return f"{exp_of(wildcards).run_dir(wildcards.run)}/final"


def eval_flags(wildcards):
    return exp_of(wildcards).eval_flags()


def base_model_dir(wildcards):
    return exp_of(wildcards).model_dir


def base_model_ready(wildcards):
    return f"{exp_of(wildcards).model_dir}/config.json"


def test_data(wildcards):
    return f"{exp_of(wildcards).data_dir}/test.jsonl"


def base_run_of(wildcards):
    return exp_of(wildcards).base_run()


def table_evals(wildcards):
    exp = exp_of(wildcards)
    return [eval_json(exp, exp.base_run())] + [eval_json(exp, r) for r in exp.evaluated_runs()]


def table_runs(wildcards):
    exp = exp_of(wildcards)
    return [f"{exp.run_dir(r)}/timing.json" for r in exp.evaluated_runs()]


def table_run_dirs(wildcards):
    exp = exp_of(wildcards)
    return [exp.run_dir(r) for r in exp.evaluated_runs()]


def all_runs(wildcards):
    """Every run's timing.json, the replicates' too (the ledger's statistics and the training figures)."""
    exp = exp_of(wildcards)
    return [f"{exp.run_dir(r)}/timing.json" for r in exp.run_specs]


def runs_root(wildcards):
    return exp_of(wildcards).runs_root


def scale_of(wildcards):
    return exp_of(wildcards).scale


def sweep_ids(wildcards):
    try:
        return exp_of(wildcards).sweeps[wildcards.sweep]
    except KeyError:
        raise WorkflowError(f"experiment {wildcards.exp} has no sweep {wildcards.sweep!r} "
                            f"(sweeps: {', '.join(exp_of(wildcards).sweeps) or 'none'})") from None


def sweep_evals(wildcards):
    exp = exp_of(wildcards)
    return [eval_json(exp, r) for r in sweep_ids(wildcards)]


def sweep_run_dirs(wildcards):
    exp = exp_of(wildcards)
    return [exp.run_dir(r) for r in sweep_ids(wildcards)]


def sweep_timings(wildcards):
    return [f"{d}/timing.json" for d in sweep_run_dirs(wildcards)]


def sweep_settings_arg(wildcards):
    """The sweep table's setting columns, one dict per grid point (a point may be a methods: run)."""
    import json, shlex
    from negfree.jobs.sweeps import sweep_settings

    block = exp_of(wildcards).config["sweeps"][wildcards.sweep]
    return "--settings " + shlex.quote(json.dumps(sweep_settings(block)))


def item_of(wildcards):
    exp = exp_of(wildcards)
    try:
        return next(i for i in exp.paper_tables if item_file(i) == wildcards.item)
    except StopIteration:
        raise WorkflowError(f"experiment {exp.name} declares no paper table {wildcards.item!r} "
                            f"(paper_tables: {', '.join(exp.paper_tables) or 'none'})") from None


def paper_table_rows(wildcards):
    import shlex

    exp = exp_of(wildcards)
    rows = (exp.paper_tables[item_of(wildcards)] or {}).get("rows") or {}
    return " ".join(f"--row {shlex.quote(f'{k}={exp.aliases.get(v, v)}')}" for k, v in rows.items())


def protocol_evals(exp):
    """(path, name) of every paper-protocol result of one experiment: the base model, the released
    checkpoints it evaluates and every run."""
    out = []
    for p in exp.paper_protocols:
        out.append((f"{exp.run_dir(exp.base_run())}/eval/{p}.json", exp.base_run()))
        out += [(f"{exp.run_dir(r)}/eval/{p}.json", r) for r in exp.released_runs()]
        out += [(f"{exp.run_dir(r)}/eval/{p}.json", r) for r in exp.evaluated_runs()]
    return out


def item_evals(wildcards):
    """(path, name) of the paper-protocol results one paper table reads (Experiment.item_runs): the
    AlpacaEval protocols only for the items that show them (their answers cost a judge)."""
    from negfree.report.paper_table import item_annotated

    exp = exp_of(wildcards)
    item = item_of(wildcards)
    shown = set(item_annotated(item))
    return [(f"{exp.run_dir(r)}/eval/{p}.json", r) for p in exp.paper_protocols
            if not p.startswith("alpaca_eval") or p in shown for r in exp.item_runs(item)]


def item_judged_paths(wildcards):
    """The judged results one paper table reads: <run>/eval/<protocol>.json of its rows' runs that the
    experiment judges, for the judged protocols the item shows; given to paper-table as JSON (the judge)."""
    from negfree.report.paper_table import item_annotated, item_judged

    exp = exp_of(wildcards)
    item = item_of(wildcards)
    # AlpacaEval's results name their annotator, which the tidy CSV of eval-csv drops
    out = [f"{exp.run_dir(r)}/eval/{p}.json" for p in item_annotated(item) if p in exp.protocols
           for r in exp.item_runs(item)]
    if exp.judged is None:
        return out
    # each protocol's result and its extra judges' ("<protocol>@<model>": the same answers judged again)
    wanted = [p for p in exp.judged.judgings() if Judged.split(p)[0] in item_judged(item)]
    return out + [exp.judged.result(exp.runs_root, r, p) for p in wanted for r in exp.item_runs(item)
                  if r in exp.judged.runs]


def item_eval_paths(wildcards):
    return [path for path, _ in item_evals(wildcards)]


def item_eval_names(wildcards):
    return [name for _, name in item_evals(wildcards)]


def protocol_eval_paths(wildcards):
    return [path for path, _ in protocol_evals(exp_of(wildcards))]


def protocol_eval_names(wildcards):
    return [name for _, name in protocol_evals(exp_of(wildcards))]


def frozen_lake_args():
    t = NF.toy.get("frozen_lake", {})
    args = [f"--seeds {int(t.get('seeds', 5))}", f"--steps {int(t.get('steps', 200))}"]
    if t.get("methods"):
        args.append("--methods " + ",".join(t["methods"]))
    return " ".join(args)


def paper_targets(paper):
    def inputs(wildcards):
        try:
            return NF.paper_targets(paper)
        except _ConfigError as e:
            raise WorkflowError(str(e)) from None
    return inputs


# -- the user's cluster (issue 16) ---------------------------------------------------------
# Account, partitions, QoS and GPU model come from the user's environment, never from the
# repository: NEGFREE_SLURM_ACCOUNT, NEGFREE_SLURM_PARTITION_GPU, NEGFREE_SLURM_PARTITION_CPU,
# NEGFREE_SLURM_QOS, NEGFREE_SLURM_GPU_MODEL, NEGFREE_SLURM_EXTRA, NEGFREE_SLURM_MAX_RUNTIME_GPU,
# NEGFREE_SLURM_MAX_RUNTIME_CPU (negfree/jobs/dag.py CLUSTER_ENV).
# The Snakefile calls this once every rule file is read, so a new workflows/*.smk gets them too.
# They join each rule's own resources (memory, runtime, GPUs stay); a resource that a rule or the
# command line (--set-resources) sets itself wins. Rules that ask for GPUs (gpu > 0, or per job)
# go to the GPU partition, the others to the CPU one. The runtime caps clip every job's runtime
# (its own or --set-resources'), by the same GPU/CPU split. Once the DAG is built, under the Slurm
# executor, _check_cluster prints what the jobs will use and refuses GPU jobs without a partition.
def apply_cluster_settings(rules):
    from negfree.jobs.dag import cluster_resources, cluster_settings, runtime_caps

    settings = cluster_settings(os.environ)
    try:
        caps = runtime_caps(settings)
    except _ConfigError as e:
        sys.exit(f"negfree: {e}")     # the user's input: one line, status 1 (as a config error)
    for r in rules:
        if caps and "runtime" in r.resources:
            r.resources["runtime"] = _capped(r.name, r.resources["runtime"], r.resources.get("gpu"), caps)
        gpu = r.resources.get("gpu")
        on_gpu, on_cpu = cluster_resources(settings, True), cluster_resources(settings, False)
        if "extra" in settings:     # appended to the rule's own flags (train: the early signal)
            r.resources["slurm_extra"] = (_append_extra(r.resources["slurm_extra"], settings["extra"])
                                          if "slurm_extra" in r.resources else settings["extra"])
        for key in on_gpu.keys() | on_cpu.keys():
            if key in r.resources:
                continue
            if on_gpu.get(key) == on_cpu.get(key):
                r.resources[key] = on_gpu[key]
            elif not gpu.is_evaluable():
                value = on_gpu.get(key) if gpu.value else on_cpu.get(key)
                if value is not None:
                    r.resources[key] = value
            else:     # GPUs per job (a gather job of a sharded stage asks for none)
                r.resources[key] = _per_job(gpu, on_gpu.get(key), on_cpu.get(key))
        # the attempt number, for per-attempt logs (LOG below)
        r.resources["attempt"] = _attempt


# (Snakemake hands a resource function every argument it has when it takes **kw: passed on.)
def _append_extra(own, extra):
    def joined(wildcards, **kw):
        mine = own.evaluate(wildcards, **kw).value
        return f"{mine} {extra}" if mine else extra
    return joined


def _per_job(gpu, if_gpu, if_cpu):
    def pick(wildcards, **kw):
        return if_gpu if gpu.evaluate(wildcards, **kw).value else if_cpu
    return pick


def _attempt(wildcards, attempt):
    _check_cluster()    # every rule has this resource: its first evaluation comes once the DAG is built
    return attempt


# Runtimes asked above a cap, by job: (rule, wildcards) -> (minutes asked, variable, cap).
_CLIPPED = {}


def _job_key(rulename, wildcards):
    return rulename, tuple(sorted(dict(wildcards.items()).items()))     # Wildcards or a dict


def _capped(rulename, own, gpu, caps):
    from negfree.jobs.dag import capped_runtime

    def runtime(wildcards, **kw):
        asked = own.evaluate(wildcards, **kw).value
        minutes, var = capped_runtime(asked, caps, bool(gpu.evaluate(wildcards, **kw).value))
        if var:
            _CLIPPED[_job_key(rulename, wildcards)] = (asked, var, minutes)
        return minutes
    return runtime


def _executor_name():
    """The executor the user asked for (--executor, or the profile's `executor:`). Snakemake 9.27 sets
    workflow.executor_plugin only when it executes the DAG, and a dry run (-n) or --touch executes
    with the 'dryrun'/'touch' plugin instead; the one asked for is then the `executor` argument of
    snakemake.api.DAGApi.execute_workflow, which is on the stack while the DAG is executed. Inside a
    Slurm job, snakemake runs with the 'slurm-jobstep' executor."""
    name = getattr(workflow.executor_plugin, "name", None)
    if name not in (None, "dryrun", "touch"):
        return name
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_name == "execute_workflow" and frame.f_globals.get("__name__") == "snakemake.api":
            return frame.f_locals.get("executor")
        frame = frame.f_back
    return name


_CLUSTER_CHECKED = []


def _check_cluster():
    """Once, when the first job's resources are evaluated (the DAG is built, nothing submitted yet),
    under the Slurm executor only: one line saying which account, partitions and QoS the jobs will
    use; a warning per unknown NEGFREE_SLURM_* variable; the refusal of GPU jobs that no partition
    reaches (a dry run warns and goes on, as for gated models; negfree/jobs/dag.py gpu_partition_refusal;
    opt-out NEGFREE_SLURM_PARTITION_GPU=default); and one line on the jobs the runtime caps clip,
    raising the train rule's retries by the clipped attempts its largest job needs (clip_retries)."""
    if _CLUSTER_CHECKED:
        return
    _CLUSTER_CHECKED.append(True)
    if _executor_name() != "slurm":
        return
    from negfree.jobs.dag import (RESUMABLE_RULES, clip_retries, clip_summary, cluster_settings, cluster_summary,
                             gpu_partition_refusal, unknown_cluster_vars)

    settings = cluster_settings(os.environ)
    print(cluster_summary(settings), file=sys.stderr)
    for line in unknown_cluster_vars(os.environ):
        print(f"WARNING: {line}", file=sys.stderr)
    unplaced, clipped = {}, []
    for job in workflow.dag.needrun_jobs():
        name = job.rule.name
        if job.rule.norun or name in workflow._localrules:     # not submitted: run on this host
            continue
        res = job.resources     # evaluates the job's resources (runtime: clipped, recorded in _CLIPPED)
        gpus = res.get("gpu")
        if isinstance(gpus, int) and gpus > 0 and not res.get("slurm_partition"):
            unplaced[name] = unplaced.get(name, 0) + 1
        asked = _CLIPPED.get(_job_key(name, job.wildcards_dict))
        if asked:
            clipped.append((name, *asked))
    msg = gpu_partition_refusal(settings, unplaced)
    if msg and workflow.dryrun:
        print(f"WARNING: {msg} (a run without -n stops here)", file=sys.stderr)
    elif msg:
        raise WorkflowError(msg)
    retries = {}
    for name, asked, var, cap in clipped:
        if name in RESUMABLE_RULES:
            retries[name] = max(retries.get(name, 0), clip_retries(asked, cap, workflow.execution_settings.retries))
    for name, n in retries.items():
        workflow.get_rule(name).restart_times = n    # read by the scheduler when a job fails
    line = clip_summary(clipped, retries)
    if line:
        print(line, file=sys.stderr)


# Per-attempt logs: Snakemake deletes a job's log before it retries the job, so each attempt
# writes <log>.attempt<N> and <log> links to the newest; a preempted attempt's log stays.
# Rules end their command with `+ LOG` (stdout and stderr of the command).
LOG = (' > "$(ln -sfn "$(basename {log}).attempt{resources.attempt}" {log} && '
       'echo {log}.attempt{resources.attempt})" 2>&1')
