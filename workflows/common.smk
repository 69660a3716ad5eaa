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

EXP = config["experiment"]
MODEL = config["model"]["name"]
DATA = config["data"]["name"]
GEN = config["generate"]

MODEL_DIR = f"work/models/{MODEL}"
DATA_DIR = f"work/data/{DATA}"
NEG_DIR = (f"{DATA_DIR}/negatives/model~{MODEL}/strategy~{GEN['strategy']}/"
           f"temperature~{GEN['temperature']}/num~{GEN['num']}")
RUNS = f"results/runs/{EXP}"
_T = config["train"]
SCALE = (f"{EXP} scale: {MODEL}, {config['data'].get('train_prompts') or config['data'].get('n_train')} "
         f"training prompts, {_T.get('max_steps')} steps of {_T.get('batch_size')} prompts, "
         f"B={_T.get('num_negatives')}")

wildcard_constraints:
    method="|".join(sorted(REGISTRY, key=len, reverse=True)),


def methods():
    unknown = [m for m in config["methods"] if m not in REGISTRY]
    if unknown:
        raise ValueError(f"config 'methods': unknown method(s) {unknown}; known: {', '.join(REGISTRY)}")
    return list(config["methods"])


def run_dir(method):
    return f"{RUNS}/method~{method}"


def eval_json(method):
    return f"{run_dir(method)}/eval/negfree_offline.json"


def base_eval_json():
    return f"{RUNS}/base~{MODEL}/eval/negfree_offline.json"


def train_args(wildcards):
    """The train section and the method's hyperparameters, passed as JSON (shell-quoted)."""
    import json, shlex

    train = {**config["train"], "hparams": config["methods"].get(wildcards.method) or {}}
    return "--train-json " + shlex.quote(json.dumps(train))


def run_dir_of(wildcards):
    return run_dir(wildcards.method)


def table_evals(wildcards):
    return [base_eval_json()] + [eval_json(m) for m in methods()]


def table_runs(wildcards):
    return [f"{run_dir(m)}/timing.json" for m in methods()]


def final_targets():
    return [
        f"results/tables/{EXP}/summary.md",
        "results/claims.md",
        "figures/dft/fig3.png",
        "figures/bnf/fig1.png",
        "figures/asft/fig1.png",
        "figures/ift/fig3.png",
    ]


def final_model_of(wildcards):
    return f"{run_dir(wildcards.method)}/final"


def eval_flags():
    ev = config.get("evaluate", {})
    flags = []
    if ev.get("limit"):
        flags.append(f"--limit {int(ev['limit'])}")
    if ev.get("chat_template"):
        flags.append("--chat-template")
    return " ".join(flags)


def table_run_dirs(wildcards):
    return [run_dir(m) for m in methods()]


def frozen_lake_args():
    t = config.get("toy", {}).get("frozen_lake", {})
    args = [f"--seeds {int(t.get('seeds', 5))}", f"--steps {int(t.get('steps', 200))}"]
    if t.get("methods"):
        args.append("--methods " + ",".join(t["methods"]))
    return " ".join(args)
