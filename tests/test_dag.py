"""The whole DAG through Snakemake on the tiny model: every stage runs for real."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_tiny_dag_runs_end_to_end(tmp_path, tiny_dag_config):
    cfg = tiny_dag_config
    cfg["methods"] = {"sft": {}, "dft2": {"tau": 0.5}}
    # a sweep over a hyperparameter on negatives of another temperature (a second generation dir)
    cfg["sweeps"] = {"dft2_tau": {"method": "dft2", "hparams": {"tau": [0.5, 2.0]},
                                  "generate": {"temperature": 1.0}}}
    cfg["toy"] = {"frozen_lake": {"seeds": 1, "steps": 20, "methods": ["sft", "dpo"]}}
    # the judged protocols with the offline judge on the demo's project-made files (absolute: the DAG runs in tmp_path)
    demo = yaml.safe_load((ROOT / "configs/demo.yaml").read_text())["evaluate"]["judged"]
    cfg["evaluate"]["judged"] = {**demo, "runs": ["base", "method~sft"], "max_new_tokens": 4,
                                 "protocols": ["arena_hard", "mt_bench", "wildbench", "alpaca_eval2"],
                                 "files": {p: {k: str(ROOT / v) for k, v in f.items()} for p, f in demo["files"].items()}}
    # AlpacaEval 2 among the judged protocols: the demo's files, the offline stand-in judged by the tiny model
    alpaca = yaml.safe_load((ROOT / "configs/demo.yaml").read_text())["evaluate"]["alpaca_eval"]
    cfg["evaluate"]["alpaca_eval"] = {**{k: str(ROOT / alpaca[k]) for k in ("instructions", "reference")},
                                      "annotator": "negfree_local_loglik", "judge_model": "base",
                                      "limit": 2, "max_new_tokens": 4}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path),
           "--configfile", str(tmp_path / "cfg.yaml"), "--cores", "2", "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    logs = "\n".join(p.read_text()[-2000:] for p in (tmp_path / "logs").rglob("*.log")) if (tmp_path / "logs").exists() else ""
    assert proc.returncode == 0, proc.stderr[-4000:] + logs
    table = pd.read_csv(tmp_path / "results/tables/demo/summary.csv")
    assert list(table["model"]) == ["base", "sft", "dft2", "dft2 temperature=1.0 tau=0.5",
                                    "dft2 temperature=1.0 tau=2.0"]
    assert table["mc_acc"].notna().all()
    sweep = pd.read_csv(tmp_path / "results/tables/demo/sweep~dft2_tau.csv")
    assert list(sweep["tau"]) == [0.5, 2.0] and list(sweep["temperature"]) == [1.0, 1.0]
    point = tmp_path / "results/runs/demo/method~dft2/temperature~1.0/tau~2.0"
    assert '"tau": 2.0' in (point / "config.json").read_text()
    assert "temperature~1.0/num~4/scored.jsonl" in (point / "config.json").read_text()
    run = tmp_path / "results/runs/demo/method~dft2"
    assert (run / "final/model.safetensors").exists() and (run / "metrics.jsonl").read_text().count("\n") == 2
    probe = [json.loads(x) for x in (run / "probe.jsonl").read_text().splitlines()]   # 2 held-out prompts
    assert [r["step"] for r in probe] == [0, 1, 2] and all(r["records"] == 2 for r in probe)
    assert '"tau": 0.5' in (run / "config.json").read_text()
    for fig in ("bnf/fig1", "asft/fig1", "ift/fig3"):
        assert (tmp_path / f"figures/{fig}.png").stat().st_size > 0
        assert (tmp_path / f"figures/{fig}.csv").stat().st_size > 0
    judged = pd.read_csv(tmp_path / "results/tables/demo/judged.csv")
    assert sorted(zip(judged["run"], judged["protocol"])) == sorted(
        (r, p) for r in ("base~tiny", "method~sft")
        for p in ("arena_hard_v0.1", "mt_bench", "wildbench_v2", "alpaca_eval2"))
    assert judged["value"].notna().all() and judged["judge_note"].str.startswith("OFFLINE").all()
    ae = judged["protocol"] == "alpaca_eval2"
    assert (judged[~ae]["judge"] == "negfree_offline_judge").all() and (judged[ae]["judge"] == "negfree_local_loglik").all()
    assert (judged[ae]["n"] == 2).all()
    # a second invocation finds nothing to do
    again = subprocess.run(cmd + ["-n"], env=env, capture_output=True, text=True, timeout=300)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_cli_methods_json():
    import json

    out = subprocess.run([sys.executable, "-m", "negfree.cli", "methods", "--json"], capture_output=True,
                         text=True, check=True).stdout
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["dft"]["needs_reference"] and rows["dft"]["hyperparameters"] == {"tau": 1.0, "gamma": 0.85}
    assert not rows["dft2"]["needs_reference"] and rows["ift"]["token_level"]
    for key in ("name", "needs_reference", "needs_negatives", "token_level", "hyperparameters", "paper"):
        assert all(key in r for r in rows.values())


def test_cli_bad_input_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "negfree.cli", "train", "--method", "nope", "--model", "m",
                           "--data", str(tmp_path / "missing.jsonl"), "--out-dir", str(tmp_path / "o")],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith("negfree train: unknown method 'nope'")
