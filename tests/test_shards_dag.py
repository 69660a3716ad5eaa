"""Sharded generation and scoring in the DAG: k jobs each, a gather job, the same bytes as one pass;
a shard count above the prompts stops at DAG build."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from negfree.data.schema import load_jsonl
from negfree.jobs.dag import ConfigError, Dag

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("section", ["generate", "score"])
def test_more_shards_than_prompts_is_refused_at_dag_build(tiny_dag_config, section):
    cfg = tiny_dag_config                                   # train_prompts: 8
    cfg[section]["shards"] = 9
    with pytest.raises(ConfigError, match=rf"{section}.shards: 9 is more than the 8 training prompts"):
        Dag(cfg, ROOT)
    cfg[section]["shards"] = 8
    assert Dag(cfg, ROOT).negs


def test_sharded_jobs_gather_the_bytes_of_one_pass(tmp_path, tiny_dag_config):
    from negfree.generate.negatives import generate_negatives
    from negfree.score.reference import score_records

    cfg = tiny_dag_config
    cfg["generate"]["shards"] = 3
    cfg["score"].update(shards=2, batch_size=4)
    exp = Dag(cfg, ROOT).experiments["demo"]
    neg = exp.neg_dir(exp.gen)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(tmp_path / "cfg.yaml"), "--cores", "2", "--quiet", "all", "--", f"{neg}/scored.jsonl"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    logs = "\n".join(p.read_text()[-1500:] for p in (tmp_path / "logs").rglob("*.log*") if p.is_file()) \
        if (tmp_path / "logs").exists() else ""
    assert proc.returncode == 0, proc.stderr[-4000:] + logs
    assert sorted(p.name for p in (tmp_path / neg / "shards~3").glob("*.jsonl")) == \
        ["generate~0.jsonl", "generate~1.jsonl", "generate~2.jsonl"]
    assert len(list((tmp_path / neg / "shards~2").glob("score~*.jsonl"))) == 2

    g = exp.gen
    records = load_jsonl(tmp_path / exp.data_dir / "train.jsonl")[:cfg["data"]["train_prompts"]]
    one = tmp_path / "one"
    generate_negatives(tmp_path / exp.model_dir, records, one / "negatives.jsonl", num=g["num"],
                       strategy_name=g["strategy"], temperature=g["temperature"],
                       max_new_tokens=g["max_new_tokens"], batch_size=g["batch_size"], seed=g["seed"],
                       progress=False)
    assert (one / "negatives.jsonl").read_bytes() == (tmp_path / neg / "negatives.jsonl").read_bytes()
    score_records(tmp_path / exp.model_dir, load_jsonl(one / "negatives.jsonl"), one / "scored.jsonl",
                  max_len=cfg["score"]["max_len"], batch_size=4, overlong_prompts="error")
    assert (one / "scored.jsonl").read_bytes() == (tmp_path / neg / "scored.jsonl").read_bytes()
