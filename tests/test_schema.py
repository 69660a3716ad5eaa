"""The config schema (configs/schema/config.schema.yaml): the demo config passes, broken
variants fail with a message naming the key -- directly, and through `snakemake -n` on
the repo's own Snakefile (validation happens in workflows/common.smk before any job)."""
import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "configs" / "schema" / "config.schema.yaml"
DEMO = ROOT / "configs" / "demo.yaml"


def demo():
    return yaml.safe_load(DEMO.read_text())


def errors(cfg):
    """Every violation as 'dotted.path: message' (the same form common.smk reports)."""
    validator = jsonschema.Draft202012Validator(yaml.safe_load(SCHEMA.read_text()))
    return [f"{'.'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}"
            for e in validator.iter_errors(cfg)]


def _set(cfg, dotted, value):
    *parents, leaf = dotted.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    node[leaf] = value


def _rename(cfg, dotted, new_leaf):
    *parents, leaf = dotted.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    node[new_leaf] = node.pop(leaf)


def test_schema_is_valid_draft_2020_12():
    jsonschema.Draft202012Validator.check_schema(yaml.safe_load(SCHEMA.read_text()))


def test_demo_config_passes_and_schema_covers_every_demo_key():
    cfg = demo()
    assert errors(cfg) == []
    # the snakemake helper agrees (and must not need defaults to pass)
    from snakemake.utils import validate
    validate(copy.deepcopy(cfg), str(SCHEMA), set_default=False)
    props = yaml.safe_load(SCHEMA.read_text())["properties"]
    for section in ("experiment", "model", "data", "generate", "score", "train", "methods", "evaluate", "toy"):
        assert section in cfg and section in props, section
    for section in ("model", "data", "generate", "score", "train", "evaluate"):
        assert set(cfg[section]) <= set(props[section]["properties"]), section


# (how to break the demo config, the key the message must name)
BROKEN = [
    (lambda c: _rename(c, "generate.temperature", "tempreature"), "tempreature"),
    (lambda c: _rename(c, "train.lr", "learning_rate"), "learning_rate"),
    (lambda c: _rename(c, "evaluate", "evalute"), "evalute"),
    (lambda c: _set(c, "generate.temperature", -0.1), "generate.temperature"),
    (lambda c: _set(c, "generate.num", 0), "generate.num"),
    (lambda c: _set(c, "train.lr", 0), "train.lr"),
    (lambda c: _set(c, "train.batch_size", 0), "train.batch_size"),
    (lambda c: _set(c, "train.micro_batch_size", "4"), "train.micro_batch_size"),
    (lambda c: _set(c, "train.scheduler", "cosin"), "train.scheduler"),
    (lambda c: _set(c, "generate.strategy", "chat_evil"), "generate.strategy"),
    (lambda c: _set(c, "methods", ["sft", "dft2"]), "methods"),
    (lambda c: _set(c, "methods", {"dft2": {"tau": [1, 2]}}), "methods.dft2.tau"),
    (lambda c: _set(c, "toy.frozen_lake.seeds", 0), "toy.frozen_lake.seeds"),
    (lambda c: _set(c, "experiment", "demo/../x"), "experiment"),
    (lambda c: c.pop("score"), "'score' is a required property"),
]


@pytest.mark.parametrize("breakit,key", BROKEN, ids=[k for _, k in BROKEN])
def test_broken_config_fails_naming_the_key(breakit, key):
    cfg = demo()
    breakit(cfg)
    errs = errors(cfg)
    assert errs, f"schema accepted a config broken at {key}"
    assert any(key in e for e in errs), errs
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate
    with pytest.raises(WorkflowError):
        validate(cfg, str(SCHEMA), set_default=False)


def _dry_run(tmp_path, cfg):
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", "-n", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(tmp_path / "cfg.yaml"), "--cores", "1"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def test_snakemake_dry_run_accepts_demo_config(tmp_path):
    proc = _dry_run(tmp_path, demo())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "train" in proc.stdout + proc.stderr


@pytest.mark.parametrize("dotted,new,key", [
    ("generate.temperature", "tempreature", "tempreature"),   # misspelt key in a section
    ("toy", "toys", "toys"),                                  # misspelt top-level section
])
def test_snakemake_stops_on_misspelt_key_before_any_job(tmp_path, dotted, new, key):
    cfg = demo()
    _rename(cfg, dotted, new)
    proc = _dry_run(tmp_path, cfg)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"snakemake -n accepted a config with '{key}':\n{out[-2000:]}"
    assert key in out, out[-3000:]
    assert "Job stats" not in out          # stopped while parsing: no DAG, no job
    assert "KeyError" not in out           # the schema caught it, not a later lookup


def test_snakemake_stops_on_out_of_range_value(tmp_path):
    cfg = demo()
    cfg["train"]["lr"] = -1.0e-5
    proc = _dry_run(tmp_path, cfg)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"snakemake -n accepted train.lr < 0:\n{out[-2000:]}"
    assert "lr" in out and "Job stats" not in out, out[-3000:]


def test_a_configfile_replaces_the_demo_config_whole(tmp_path):
    """--configfile is the whole experiment: nothing is inherited from configs/demo.yaml
    (the demo's methods must not leak into an experiment that lists one)."""
    cfg = demo()
    cfg["methods"] = {"sft": {}}
    cfg.pop("replicates")      # the demo's seeds name its own methods
    cfg["evaluate"]["judged"]["runs"] = ["base", "method~sft"]   # and so do its judged runs
    proc = _dry_run(tmp_path, cfg)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert re.search(r"^train\s+1$", out, re.M), out[-3000:]
    partial = {"experiment": "x", "methods": {"sft": {}}}
    proc = _dry_run(tmp_path, partial)
    assert proc.returncode != 0 and "'model' is a required property" in proc.stdout + proc.stderr


@pytest.mark.parametrize("paper", sorted(p.stem for p in (ROOT / "configs/paper").glob("*.yaml")))
def test_paper_experiment_files_validate_and_resolve(paper):
    """configs/paper/*.yaml: schema, registry ranges, sweep and pipeline expansion, paper-table
    rows and analyses resolve (negfree.jobs.dag, as the workflow does), together with the experiments
    its pipelines start from. The whole DAG over every file is dry-run in test_dag_multi."""
    from negfree.jobs.dag import Dag

    by_name = {yaml.safe_load(f.read_text())["experiment"]: f"configs/paper/{f.name}"
               for f in (ROOT / "configs/paper").glob("*.yaml")}
    cfg = yaml.safe_load((ROOT / "configs/paper" / f"{paper}.yaml").read_text())
    deps = sorted({b["init"].split(".")[0] for b in (cfg.get("pipelines") or {}).values() if "." in b["init"]})
    dag = Dag({"experiments": [by_name[d] for d in deps] + [f"configs/paper/{paper}.yaml"]}, ROOT)
    exp = dag.experiments[cfg["experiment"]]
    assert exp.paper() in {"dft", "minorsft", "asft", "ift", "bnf"}
    assert exp.run_specs and exp.targets()
    assert not cfg.get("paper_tables") or any("/paper~" in t for t in exp.targets())
    assert f"configs/paper/{paper}.yaml" in yaml.safe_load((ROOT / "configs/papers.yaml").read_text())["experiments"]