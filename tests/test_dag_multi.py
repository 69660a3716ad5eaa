"""Several experiments in one DAG (negfree/jobs/dag.py): the papers' set, pipelines across runs and
experiments, the analyses beyond the tables, and the errors that name the culprit."""
import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from negfree.jobs.dag import ConfigError, Dag

ROOT = Path(__file__).resolve().parents[1]


def _papers():
    return yaml.safe_load((ROOT / "configs/papers.yaml").read_text())


def test_papers_config_loads_every_paper_and_shares_what_agrees():
    dag = Dag(_papers(), ROOT)
    papers = {e.paper() for e in dag.experiments.values()}
    assert papers == {"dft", "minorsft", "asft", "ift", "bnf"}
    # dft and ift both start from Mistral-7B-v0.1: one model directory, prepared once
    assert "mistral-7b-v0.1" in dag.models
    assert len({e.model for e in dag.experiments.values()}) < len(dag.experiments)
    # released checkpoints are prepared like base models, each once (dft Tables 1 and 3)
    assert dag.models["mistral-7b-base-sft-simpo"] == "hub:princeton-nlp/Mistral-7B-Base-SFT-SimPO"
    for paper in papers:
        targets = dag.paper_targets(paper)
        assert targets and all(t.startswith(("results/", "figures/")) for t in targets)
    assert "results/tables/dft_uf/paper~dft_table2.md" in dag.paper_targets("dft")
    assert dag.items()["dft_table2"] == ["results/tables/dft_uf/paper~dft_table2.md"]
    assert len(dag.items()["bnf_table4"]) == 3          # the Llama-3, Mistral and Gemma blocks
    assert dag.items()["asft_table3"] == ["results/tables/asft_llama3_uf/paper~asft_table3.md",
                                          "results/tables/asft_llama3_hh/paper~asft_table3.md"]  # UF, HH-RLHF blocks
    assert dag.items()["dft_fig4"] == ["figures/dft_uf/dft/fig4.png"]   # the dft experiment with SFT->PO pipelines
    # asft Table 3's references are alpaca_en (asft.txt Sec. 5.1), a data set of its own, made once for both
    uf, hh = dag.experiments["asft_llama3_uf"], dag.experiments["asft_llama3_hh"]
    assert uf.textsim_data_dir == hh.textsim_data_dir == "work/data/alpaca_en/n_train~all/n_test~2000/seed~0"
    assert dag.data[uf.textsim_data_dir]["source"] == "configs/data/alpaca_en.yaml"
    assert uf.generation_eval_inputs("textsim") == [f"{uf.textsim_data_dir}/test.jsonl"]
    assert "--name alpaca_en" in hh.generation_eval_args("textsim")
    assert hh.data_dir.startswith("work/data/hh_rlhf/")
    with pytest.raises(ConfigError, match="no loaded experiment belongs to paper dft"):
        Dag(yaml.safe_load((ROOT / "configs/demo.yaml").read_text()), ROOT).paper_targets("dft")


def _write(tmp_path, name, cfg):
    (tmp_path / "configs").mkdir(exist_ok=True)
    (tmp_path / "configs" / name).write_text(yaml.safe_dump(cfg, sort_keys=False))
    return f"configs/{name}"


@pytest.fixture
def basedir(tmp_path):
    """A base directory with the real schema, where tests write their experiment files."""
    (tmp_path / "configs/schema").mkdir(parents=True)
    (tmp_path / "configs/schema/config.schema.yaml").write_text(
        (ROOT / "configs/schema/config.schema.yaml").read_text())
    return tmp_path


def test_conflicts_and_bad_references_name_the_culprit(basedir):
    demo = yaml.safe_load((ROOT / "configs/demo.yaml").read_text())
    demo.pop("replicates")   # these tests set their own methods
    demo["evaluate"].pop("judged")   # and its judged runs name the demo's methods and files
    a = _write(basedir, "a.yaml", {**demo, "experiment": "a"})
    b_cfg = copy.deepcopy(demo)
    b_cfg["experiment"] = "b"
    b_cfg["model"]["source"] = "hub:someone/else"
    b = _write(basedir, "b.yaml", b_cfg)
    with pytest.raises(ConfigError, match=r"model 'smollm2-135m-instruct' has source 'hub:someone/else'.*a\.yaml"):
        Dag({"experiments": [a, b]}, basedir)
    with pytest.raises(ConfigError, match="experiment name 'a' is used twice"):
        Dag({"experiments": [a, a]}, basedir)
    with pytest.raises(ConfigError, match="^config: experiments: configs/nope.yaml does not exist$"):
        Dag({"experiments": [a, "configs/nope.yaml"]}, basedir)
    with pytest.raises(ConfigError, match=r"takes only 'experiments', 'toy' and 'seeds' \(configs/seeds.yaml\); found \['methods'\]"):
        Dag({"experiments": [a], "methods": {}}, basedir)
    c_cfg = {**demo, "experiment": "c", "pipelines": {"po": {"init": "zzz.sft", "method": "dpo"}}}
    c = _write(basedir, "c.yaml", c_cfg)
    with pytest.raises(ConfigError, match="experiment 'zzz' is not loaded"):
        Dag({"experiments": [a, c]}, basedir)
    d = _write(basedir, "d.yaml", {**demo, "experiment": "d", "pipelines": {"po": {"init": "a.kto", "method": "dpo"}}})
    with pytest.raises(ConfigError, match="experiment a has no methods: run 'kto'"):
        Dag({"experiments": [a, d]}, basedir)
    with pytest.raises(ConfigError, match=r"pipelines.po: init 'orpo' is not a methods: run"):
        Dag({**demo, "methods": {"sft": {}}, "pipelines": {"po": {"init": "orpo", "method": "dpo"}}}, basedir)
    with pytest.raises(ConfigError, match=r"pipelines.po.*missing 'init'|'init' is a required property"):
        Dag({**demo, "pipelines": {"po": {"method": "dpo"}}}, basedir)
    with pytest.raises(ConfigError, match=r"analysis.shifts.runs: \['method~ipo'\]"):
        Dag({**demo, "analysis": {"shifts": {"runs": ["method~ipo"]}}}, basedir)
    with pytest.raises(ConfigError, match="sweep_figures.f.sweeps: \\['nope'\\]"):
        Dag({**demo, "analysis": {"sweep_figures": {"f": {"sweeps": ["nope"], "x": "tau", "title": "t"}}}}, basedir)


def test_pipeline_runs_generate_and_score_with_their_start_checkpoint(basedir):
    demo = yaml.safe_load((ROOT / "configs/demo.yaml").read_text())
    demo.pop("replicates")   # these tests set their own methods
    demo["evaluate"].pop("judged")   # and its judged runs name the demo's methods and files
    cfg = {**demo, "methods": {"sft": {}}, "pipelines": {"sft_dpo": {"init": "sft", "method": "dpo",
                                                                       "hparams": {"beta": 0.05}}}}
    dag = Dag(cfg, basedir)
    exp = dag.experiments["demo"]
    assert list(exp.run_specs) == ["method~sft", "method~dpo/init~sft/beta~0.05"]
    scored = exp.scored("method~dpo/init~sft/beta~0.05")
    assert "/negatives/model~demo.sft/" in scored and scored.endswith("/scored.jsonl")
    root = scored.split("/strategy~")[0]
    assert dag.negs[root].model_dir == "results/runs/demo/method~sft/final"
    assert dag.negs[root].model_ready == "results/runs/demo/method~sft/timing.json"
    # the base model's pool is a different directory
    assert exp.scored("method~sft") != scored and "/model~smollm2-135m-instruct/" in exp.scored("method~sft")


def test_pipeline_with_base_negatives_rescores_the_base_pool(basedir):
    """dft.txt Table 4: the base model's pool (DFT's negatives), scored under the SFT checkpoint."""
    demo = yaml.safe_load((ROOT / "configs/demo.yaml").read_text())
    demo.pop("replicates")   # these tests set their own methods
    demo["evaluate"].pop("judged")   # and its judged runs name the demo's methods and files
    cfg = {**demo, "methods": {"sft": {}, "dft": {}},
           "pipelines": {"po": {"init": "sft", "method": "dpo", "negatives": "base", "train": {"num_negatives": 1}}}}
    exp = Dag(cfg, basedir).experiments["demo"]
    run = "method~dpo/init~sft/negatives~base/num_negatives~1"
    assert run in exp.run_specs
    base_pool = exp.scored("method~dft")[: -len("/scored.jsonl")]
    assert exp.scored(run) == f"{base_pool}/ref~demo.sft/scored.jsonl"
    with pytest.raises(ConfigError, match=r"pipelines.po.negatives: 'sampled'"):
        Dag({**cfg, "pipelines": {"po": {"init": "sft", "method": "dpo", "negatives": "sampled"}}}, basedir)


def test_two_experiments_with_pipelines_and_analyses_run_end_to_end(tmp_path, tiny_dag_config):
    """Experiment a: sft, dft, dpo started from a's sft on the base pool rescored under it, a gamma sweep whose default point is
    method~dft, the score distribution (dft Fig. 1), the shift figures (bnf Fig. 3-4) and a sweep
    figure. Experiment b: sft started from a's sft (another experiment's checkpoint)."""
    a = copy.deepcopy(tiny_dag_config)
    a["experiment"] = "a"
    a["methods"] = {"sft": {}, "dft": {}}
    a["pipelines"] = {"sft_dpo": {"init": "sft", "method": "dpo", "negatives": "base"}}
    a["sweeps"] = {"dft_gamma": {"method": "dft", "hparams": {"gamma": [0.85, 1.0]}}}
    a["analysis"] = {"score_dist": {"temperature": 5.0, "num": 1, "limit": 4},
                     "shifts": {"runs": ["method~dpo/init~sft/negatives~base", "method~dft"], "limit": 3, "max_new_tokens": 4},
                     "sweep_figures": {"gamma": {"sweeps": ["dft_gamma"], "x": "gamma", "title": "gamma sweep"}}}
    b = copy.deepcopy(tiny_dag_config)
    b["experiment"] = "b"
    b["methods"] = {"sft": {}}
    b["pipelines"] = {"more_sft": {"init": "a.sft", "method": "sft"}}
    b.pop("toy")
    # b also runs the generation protocols: BLEU/ROUGE on its test split and AlpacaEval with the
    # offline stand-in judge (the tiny model), a few prompts each
    instructions = [{"instruction": "Name a colour."}, {"instruction": "Say hello."}]
    (tmp_path / "alpaca_instructions.json").write_text(json.dumps(instructions))
    (tmp_path / "alpaca_reference.json").write_text(json.dumps(
        [{**i, "output": "Blue.", "generator": "ref"} for i in instructions]))
    b["evaluate"] = {**b["evaluate"], "protocols": ["offline", "textsim", "alpaca_eval2"],
                     "textsim": {"limit": 3, "max_new_tokens": 4},
                     "alpaca_eval": {"instructions": "alpaca_instructions.json", "reference": "alpaca_reference.json",
                                     "annotator": "negfree_local_loglik", "judge_model": str(tiny_dag_config["model"]["source"]),
                                     "max_new_tokens": 4}}
    (tmp_path / "configs").mkdir()
    for name, cfg in (("a", a), ("b", b)):
        (tmp_path / f"configs/{name}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (tmp_path / "all.yaml").write_text(yaml.safe_dump(
        {"experiments": ["configs/a.yaml", "configs/b.yaml"], "toy": tiny_dag_config["toy"]}))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    snakefile = tmp_path / "Snakefile"
    # a copy of the workflow: experiment files are read relative to its base directory
    for item in ("Snakefile", "workflows", "report", "configs/schema", "configs/claims.yaml", "configs/targets.yaml",
                 "configs/accelerate"):
        src, dst = ROOT / item, tmp_path / item
        if src.is_dir():
            subprocess.run(["cp", "-r", str(src), str(dst.parent) + "/"], check=True)
        else:
            dst.write_bytes(src.read_bytes())
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "--directory", str(tmp_path),
           "--configfile", str(tmp_path / "all.yaml"), "--cores", "2", "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    logs = "\n".join(f"== {p}\n{p.read_text()[-1500:]}" for p in (tmp_path / "logs").rglob("*.log")) \
        if (tmp_path / "logs").exists() else ""
    assert proc.returncode == 0, proc.stderr[-4000:] + logs

    runs = tmp_path / "results/runs"
    po = json.dumps(json.loads((runs / "a/method~dpo/init~sft/negatives~base/config.json").read_text()))
    assert "results/runs/a/method~sft/final" in po            # starts from a's SFT weights
    assert "/negatives/model~tiny/" in po and "/ref~a.sft/scored.jsonl" in po   # base pool, SFT reference
    # b's pipeline samples its negatives from a's SFT checkpoint
    pool = next((tmp_path / "work/data").rglob("model~a.sft/**/negatives.jsonl"))
    assert pool.stat().st_size > 0
    b_run = json.loads((runs / "b/method~sft/init~a.sft/config.json").read_text())
    assert "results/runs/a/method~sft/final" in json.dumps(b_run)
    # the sweep's gamma 0.85 point is method~dft (trained once); gamma 1.0 is its own run
    assert not (runs / "a/method~dft/gamma~0.85").exists() and (runs / "a/method~dft/gamma~1.0/timing.json").exists()
    for fig in ("a/dft/fig1", "a/bnf/fig3", "a/bnf/fig4", "a/sweeps/gamma"):
        assert (tmp_path / f"figures/{fig}.png").stat().st_size > 0, fig
        assert (tmp_path / f"figures/{fig}.csv").stat().st_size > 0, fig
    for exp in ("a", "b"):
        assert (tmp_path / f"results/tables/{exp}/summary.md").exists()
    import pandas as pd

    # dft Fig. 4 names the pipeline run sft->dpo (it used to list sft->dpo as missing)
    fig4 = pd.read_csv(tmp_path / "figures/a/dft/fig4.csv")
    rows = fig4[fig4["method"] == "sft->dpo"]
    assert len(rows) and rows["run"].str.contains("init~sft").all() and not rows["note"].str.startswith("missing").any()
    assert "sft->dpo (method~dpo/init~sft/negatives~base)" in (tmp_path / "results/tables/a/claims.md").read_text()

    evals = pd.read_csv(tmp_path / "results/tables/b/evals.csv")
    assert set(evals["run"]) == {"base~tiny", "method~sft", "method~sft/init~a.sft"}
    assert {"bleu4", "rougeL", "win_rate"} <= set(evals["metric"])
    assert set(evals["protocol"]) == {"textsim_embedded", "alpaca_eval2"}
    again = subprocess.run(cmd + ["-n"], env=env, capture_output=True, text=True, timeout=300)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_dry_run_of_the_five_papers_by_name():
    """Without --configfile the workflow is the five papers (configs/papers.yaml): the whole DAG
    builds (hub ids are never contacted in a dry run), and `dft_table2` is a target by name."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_HUB_OFFLINE")}
    env["HF_HOME"] = "/nonexistent/hf"      # no stored token either
    base = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(ROOT), "-n"]
    for target, rules in (([], ("all", "paper_table", "evaluate_protocol", "evaluate_protocol_released",
                                "shift_figures", "score_distribution")),
                          (["dft_table2"], ("dft_table2", "train"))):
        proc = subprocess.run(base + target, env=env, capture_output=True, text=True, timeout=300)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-3000:]
        stats = out[out.index("Job stats"):]
        for rule in rules:
            assert f"\n{rule} " in stats, (rule, stats[:2000])
        # a gated model without a token: a dry run warns (a real run stops at DAG build)
        assert ("is gated on the Hugging Face hub and no token is set" in out) == (target == []), target
    # one paper item builds only what its rows name: dft Table 2's 9 runs, not the experiment's 36
    counts = dict((r, int(n)) for r, n in re.findall(r"^(\w+)\s+(\d+)$", stats, re.M))
    # (a sharded stage counts once: its k shard jobs are one generation or scoring split for throughput)
    shard_jobs = sum(n for r, n in counts.items() if r.endswith("_shard"))
    assert counts["total"] - shard_jobs <= 30 and counts["train"] == 9, counts


def test_released_checkpoints_are_evaluated_not_trained():
    """dft Table 1's released MetaMath rows: prepared like base models, rows of the paper table."""
    cfg = yaml.safe_load((ROOT / "configs/paper/dft_metamath.yaml").read_text())
    dag = Dag(cfg, ROOT)
    exp = dag.experiments["dft_metamath"]
    assert dag.models["metamath-mistral-7b"] == "hub:meta-math/MetaMath-Mistral-7B"
    assert exp.item_runs("dft/table1") == ["base~mistral-7b-v0.1", "method~dft", "method~dft2",
                                           "released~metamath-mistral-7b", "released~metamath-7b"]
    assert not any(r.startswith("released~") for r in exp.run_specs)      # nothing trains for them
    bad = copy.deepcopy(cfg)
    bad["paper_tables"]["dft/table1"]["rows"]["x"] = "released~nope"
    with pytest.raises(ConfigError, match="released~nope.*names no checkpoint"):
        Dag(bad, ROOT)
    bad = copy.deepcopy(cfg)
    bad["released"]["metamath-7b"]["revision"] = "main"
    with pytest.raises(ConfigError, match="released.metamath-7b"):
        Dag(bad, ROOT)


def test_released_row_fills_the_paper_table():
    """A released~<name> run's protocol result lands in the paper's row for that checkpoint."""
    import pandas as pd

    from negfree.report.paper_table import paper_table

    ev = pd.DataFrame([{"run": "released~metamath-mistral-7b", "protocol": "math_zeroshot", "task": t,
                        "metric": "exact_match,none", "value": v, "stderr": 0.01, "n": 100}
                       for t, v in (("negfree_gsm8k_metamath", 0.75), ("negfree_math_metamath", 0.27))])
    df = paper_table("dft/table1", ev, {"released:metamath-mistral-7b": "released~metamath-mistral-7b"})
    row = df[(df["run"] == "released~metamath-mistral-7b") & (df["metric"] == "gsm8k_0shot/acc")]
    assert len(row) == 1 and row["ours"].iloc[0] == pytest.approx(75.0) and row["paper"].iloc[0] == 77.7


def test_replicates_add_seeded_runs_that_are_trained_but_not_evaluated():
    demo = yaml.safe_load((ROOT / "configs/demo.yaml").read_text())
    demo.pop("replicates")   # these tests set their own methods
    demo["evaluate"].pop("judged")   # and its judged runs name the demo's methods and files
    demo["replicates"] = {"seeds": [0, 1, 2], "methods": ["sft", "dft"]}
    demo["train"]["seed"] = 0
    exp = Dag(demo, ROOT).experiments["demo"]
    assert exp.replicates == ["method~sft/seed~1", "method~sft/seed~2", "method~dft/seed~1", "method~dft/seed~2"]
    spec = exp.run_specs["method~dft/seed~2"]
    assert spec["train"]["seed"] == 2 and spec["method"] == "dft"
    assert exp.run_specs["method~dft"]["train"].get("seed") is None      # the run itself keeps train.seed
    assert not set(exp.replicates) & set(exp.evaluated_runs())
    assert exp.scored("method~dft/seed~2") == exp.scored("method~dft")   # one pool; each seed draws its B
    for bad, msg in (({"seeds": [1], "methods": ["kto"]}, r"replicates.methods: \['kto'\] not among"),
                     ({"seeds": [], "methods": ["sft"]}, "replicates.seeds"),
                     ({"seeds": [1], "methods": ["sft"], "steps": 3}, "replicates.*'steps'")):
        with pytest.raises(ConfigError, match=msg):
            Dag({**demo, "replicates": bad}, ROOT)
