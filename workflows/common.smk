# Named input functions and paths shared by every stage. Sweeps expand here only.
from pathlib import Path

import jsonschema as _jsonschema
import yaml as _yaml
from snakemake.exceptions import WorkflowError

from negfree.losses import REGISTRY

# The merged config is checked against configs/schema/config.schema.yaml before anything
# reads it: a misspelt key or an out-of-range value stops here, naming the key.
_CONFIG_SCHEMA = Path(workflow.basedir, "configs/schema/config.schema.yaml")
_config_errors = [f"{'.'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}" for e in
                  _jsonschema.Draft202012Validator(_yaml.safe_load(_CONFIG_SCHEMA.read_text())).iter_errors(config)]
if config.get("score", {}).get("max_len") != config.get("train", {}).get("max_len"):
    _config_errors.append("score.max_len must equal train.max_len (reference log-probs align token by token)")
if _config_errors:
    raise WorkflowError(f"config does not match {_CONFIG_SCHEMA.name}:\n  " + "\n  ".join(_config_errors))

from negfree.sweeps import expand_runs as _expand_runs

EXP = config["experiment"]
MODEL = config["model"]["name"]
DATA = config["data"]["name"]
GEN = config["generate"]

MODEL_DIR = f"work/models/{MODEL}"
_D = config["data"]
# the path says which records: two experiments share data only when these agree
DATA_DIR = f"work/data/{DATA}/n_train~{_D['n_train'] or 'all'}/n_test~{_D['n_test'] or 'all'}/seed~{_D['seed']}"
RUNS = f"results/runs/{EXP}"


def template_flag():
    """Base models without a chat template: the documented fallback, at every stage that renders prompts."""
    return "--fallback-template" if config["train"].get("fallback_template") else ""


# What a negatives pool depends on besides the swept keys (fixed per experiment).
NEG_ROOT = (f"{DATA_DIR}/negatives/model~{MODEL}/max_new_tokens~{GEN['max_new_tokens']}/seed~{GEN['seed']}/"
            f"prompts~{config['data'].get('train_prompts') or 'all'}")


def neg_dir(gen):
    """Where the negatives of one generation setting live: the path says how they were made."""
    return f"{NEG_ROOT}/strategy~{gen['strategy']}/temperature~{gen['temperature']}/num~{gen['num']}"


# Every training run of the experiment, keyed by its id (a path under RUNS): one per entry
# of `methods:` (method~NAME) and one per point of each `sweeps:` grid
# (method~NAME/key~value/...). This is the only place sweeps are expanded.
try:
    RUN_SPECS, SWEEPS, ALIASES = _expand_runs(config["methods"], config.get("sweeps") or {}, GEN,
                                              config["train"])
except ValueError as _e:
    raise WorkflowError(f"config: {_e}") from None
_T = config["train"]
_PROMPTS = config["data"].get("train_prompts") or config["data"].get("n_train") or "all"
_LENGTH = (f"{_T['max_steps']} steps" if _T.get("max_steps") else f"{_T.get('epochs', 1)} epoch(s)")
SCALE = (f"{EXP} scale: {MODEL}, {_PROMPTS} training prompts, {_LENGTH} of {_T.get('batch_size')} prompts, "
         f"B={_T.get('num_negatives')}")

_METHOD_RE = "|".join(sorted(REGISTRY, key=len, reverse=True))

wildcard_constraints:
    method=_METHOD_RE,
    run=rf"method~(?:{_METHOD_RE})(?:/[A-Za-z_][A-Za-z0-9_]*~[^/]+)*",
    sweep=r"[A-Za-z0-9_\-]+",
    strategy=r"[a-z_]+",
    temperature=r"[0-9.]+",
    num=r"[0-9]+",
    protocol="|".join(["openllm_dft", "openllm_ift", "math_zeroshot", "bnf_reasoning"]),
    item=r"[a-z]+_[a-z0-9_]+",


def runs():
    return list(RUN_SPECS)


def run_dir(run):
    return f"{RUNS}/{run}"


def eval_json(run):
    return f"{run_dir(run)}/eval/negfree_offline.json"


def base_eval_json():
    return f"{RUNS}/base~{MODEL}/eval/negfree_offline.json"


def train_args(wildcards):
    """The train section with the run's overrides and its hyperparameters, as JSON (shell-quoted)."""
    import json, shlex

    spec = RUN_SPECS[wildcards.run]
    train = {**config["train"], **spec["train"], "hparams": spec["hparams"]}
    return "--train-json " + shlex.quote(json.dumps(train))


def method_of(wildcards):
    return RUN_SPECS[wildcards.run]["method"]


def scored_data_of(wildcards):
    return f"{neg_dir(RUN_SPECS[wildcards.run]['generate'])}/scored.jsonl"


def run_dir_of(wildcards):
    return run_dir(wildcards.run)


def table_evals(wildcards):
    return [base_eval_json()] + [eval_json(r) for r in runs()]


def table_runs(wildcards):
    return [f"{run_dir(r)}/timing.json" for r in runs()]


def sweep_evals(wildcards):
    return [eval_json(r) for r in SWEEPS[wildcards.sweep]]


def sweep_run_dirs(wildcards):
    return [run_dir(r) for r in SWEEPS[wildcards.sweep]]


def sweep_settings_arg(wildcards):
    """The sweep table's setting columns, one dict per grid point (a point may be a methods: run)."""
    import json, shlex
    from negfree.sweeps import sweep_settings

    return "--settings " + shlex.quote(json.dumps(sweep_settings(config["sweeps"][wildcards.sweep])))


def sweep_timings(wildcards):
    return [f"{run_dir(r)}/timing.json" for r in SWEEPS[wildcards.sweep]]


# Evaluation: "offline" is the lm-eval twin on the embedded test split (summary and sweep
# tables); the paper protocols (negfree/evaluate/protocols.py) feed the tidy evals.csv and
# the paper tables.
PROTOCOLS = list(config.get("evaluate", {}).get("protocols") or ["offline"])
PAPER_PROTOCOLS = [p for p in PROTOCOLS if p != "offline"]
PAPER_TABLES = config.get("paper_tables") or {}
for _item, _spec in PAPER_TABLES.items():
    for _key, _run in ((_spec or {}).get("rows") or {}).items():
        if _run not in RUN_SPECS and _run not in ALIASES and not _run.startswith("base~"):
            raise WorkflowError(f"config: paper_tables.{_item}.rows.{_key}: run {_run!r} is not a run of this "
                                f"experiment (runs: {', '.join(RUN_SPECS)})")
if "offline" in PROTOCOLS and config["data"].get("source", "embedded") != "embedded":
    raise WorkflowError("config: evaluate.protocols 'offline' scores the embedded test split; with "
                        f"data.source {config['data']['source']!r} choose paper protocols")
if PAPER_TABLES and not PAPER_PROTOCOLS:
    raise WorkflowError("config: paper_tables needs a paper protocol under evaluate.protocols")


def item_file(item):
    return item.replace("/", "_")


def item_of(wildcards):
    return next(i for i in PAPER_TABLES if item_file(i) == wildcards.item)


def paper_table_rows(wildcards):
    import shlex

    rows = (PAPER_TABLES[item_of(wildcards)] or {}).get("rows") or {}
    return " ".join(f"--row {shlex.quote(f'{k}={ALIASES.get(v, v)}')}" for k, v in rows.items())


def protocol_evals():
    """(path, name) of every paper-protocol result: the base model and every run."""
    out = []
    for p in PAPER_PROTOCOLS:
        out.append((f"{RUNS}/base~{MODEL}/eval/{p}.json", f"base~{MODEL}"))
        out += [(f"{run_dir(r)}/eval/{p}.json", r) for r in runs()]
    return out


def final_targets():
    targets = [
        f"figures/{EXP}/dft/fig3.png",
        f"results/tables/{EXP}/claims.md",
        "figures/bnf/fig1.png",
        "figures/asft/fig1.png",
        "figures/ift/fig3.png",
    ]
    if "offline" in PROTOCOLS:
        targets.append(f"results/tables/{EXP}/summary.md")
        targets += [f"results/tables/{EXP}/sweep~{name}.md" for name in SWEEPS]
    if PAPER_PROTOCOLS:
        targets.append(f"results/tables/{EXP}/evals.csv")
        targets += [f"results/tables/{EXP}/paper~{item_file(i)}.md" for i in PAPER_TABLES]
        targets += [f"results/tables/{EXP}/sweep~{name}~protocols.md" for name in SWEEPS]
    return targets


def final_model_of(wildcards):
    return f"{run_dir(wildcards.run)}/final"


def eval_flags():
    ev = config.get("evaluate", {})
    flags = []
    if ev.get("limit"):
        flags.append(f"--limit {int(ev['limit'])}")
    if ev.get("chat_template"):
        flags.append("--chat-template")
    return " ".join(flags)


def table_run_dirs(wildcards):
    return [run_dir(r) for r in runs()]


def frozen_lake_args():
    t = config.get("toy", {}).get("frozen_lake", {})
    args = [f"--seeds {int(t.get('seeds', 5))}", f"--steps {int(t.get('steps', 200))}"]
    if t.get("methods"):
        args.append("--methods " + ",".join(t["methods"]))
    return " ".join(args)
