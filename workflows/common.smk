# Named input functions and lookups shared by every stage. The experiments (one, or the set a
# config lists under `experiments:`) are checked and expanded once, in negfree/dag.py; rules
# carry the experiment as the {exp} wildcard and look everything else up.
from pathlib import Path

from snakemake.exceptions import WorkflowError

from negfree.dag import ConfigError as _ConfigError, Dag as _Dag, item_file
from negfree.evaluate.protocols import PROTOCOLS as _PROTOCOL_TABLE
from negfree.losses import REGISTRY

try:
    NF = _Dag(config, workflow.basedir)
except _ConfigError as _e:
    raise WorkflowError(str(_e)) from None
EXPS = NF.experiments

_METHOD_RE = "|".join(sorted(REGISTRY, key=len, reverse=True))

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


def exp_of(wildcards):
    return EXPS[wildcards.exp]


def spec_of(wildcards):
    return EXPS[wildcards.exp].run_specs[wildcards.run]


# -- model, data, negatives: looked up by path ------------------------------------------
def model_source(wildcards):
    return NF.models[wildcards.model]


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
    from negfree.dag import init_label

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
# GPUs from the experiment's launch: section, runtime and memory from its plan (negfree/plan.py:
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
    return [eval_json(exp, exp.base_run())] + [eval_json(exp, r) for r in exp.run_specs]


def table_runs(wildcards):
    exp = exp_of(wildcards)
    return [f"{exp.run_dir(r)}/timing.json" for r in exp.run_specs]


def table_run_dirs(wildcards):
    exp = exp_of(wildcards)
    return [exp.run_dir(r) for r in exp.run_specs]


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
    from negfree.sweeps import sweep_settings

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
    """(path, name) of every paper-protocol result of one experiment: the base model and every run."""
    out = []
    for p in exp.paper_protocols:
        out.append((f"{exp.run_dir(exp.base_run())}/eval/{p}.json", exp.base_run()))
        out += [(f"{exp.run_dir(r)}/eval/{p}.json", r) for r in exp.run_specs]
    return out


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
