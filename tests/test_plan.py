"""`negfree plan` (negfree/plan.py) and the per-experiment launch resources it feeds: the
memory arithmetic by hand, every paper job covered and within 70 GB per GPU, the checks that
stop a DAG before anything is submitted, and a Slurm dry run asking each experiment's GPUs."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from negfree.dag import ConfigError, Dag
from negfree.plan import BUDGET_GB, MODELS, arch_from_config, jobs_of, train_job

ROOT = Path(__file__).resolve().parents[1]


def _papers_dag():
    return Dag(yaml.safe_load((ROOT / "configs/papers.yaml").read_text()), ROOT)


def _env():
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def test_fsdp_state_of_7b_on_8_gpus_by_hand():
    """Mistral-7B (7,241,732,096 params) on 8 GPUs under FSDP2: fp32 master weights 4 B + fp32
    gradients 4 B + AdamW m, v 8 B = 16 B/param, sharded: 16 x 7,241,732,096 / 8 = 14.48 GB.
    The gathered layer: (7,241,732,096 - 2 x 32,000 x 4,096) / 32 = 218,112,128 params per layer;
    two bf16 copies (4 B) + one fp32 gradient (4 B) = 8 x 218,112,128 = 1.745 GB, plus the root
    module's bf16 embeddings and head 2 x 2 x 32,000 x 4,096 = 0.524 GB -> 2.27 GB."""
    exp = _papers_dag().experiments["dft_uf"]
    job = train_job(exp, "method~sft", ROOT)
    assert job.gpus == 8
    assert job.memory["weights+grads+adam (fp32)"] == pytest.approx(14.48, abs=0.01)
    assert job.memory["gathered bf16 layers + root, fp32 layer grads"] == pytest.approx(2.27, abs=0.01)
    # activations with checkpointing: micro-batch 2 prompts x 1 sequence (sft) x 1024 tokens = 2048
    # tokens; layer inputs 2 x 4096 x 32 B/token + one layer 10 x 4096 + 8 x 14336 B/token
    tokens = 2 * 1024
    act = tokens * (2 * 4096 * 32 + 10 * 4096 + 8 * 14336) / 1e9
    assert job.memory["activations"] == pytest.approx(act, abs=0.01)
    # FSDP takes the full-logits path: 2048 rows x 32,000 x 12 B
    assert job.memory["logits"] == pytest.approx(2048 * 32000 * 12 / 1e9, abs=0.01)
    total = (sum(job.memory.values()) + 2.0) * 1.10
    assert job.est_peak_gpu_mem_gb == pytest.approx(total, abs=0.06)


def test_arch_table_matches_the_parameter_formula():
    """The hub table's parameter counts agree with a Llama-shaped count from the same config
    values (within 0.1%): a typo in either shows up here."""
    for hub_id, a in MODELS.items():
        c = {"hidden_size": a.hidden, "num_hidden_layers": a.layers, "intermediate_size": a.intermediate,
             "vocab_size": a.vocab, "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads,
             "head_dim": a.head_dim, "tie_word_embeddings": a.tied}
        assert arch_from_config(c).params == pytest.approx(a.params, rel=2e-3), hub_id


def test_plan_json_covers_every_paper_job_within_budget():
    proc = subprocess.run([sys.executable, "-m", "negfree.cli", "plan", "--json"], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout)
    keys = {"job", "experiment", "rule", "gpus", "est_peak_gpu_mem_gb", "est_host_mem_gb", "est_gpu_hours"}
    assert rows and all(keys <= set(r) for r in rows)
    dag = _papers_dag()
    # every training run, every pool and every protocol evaluation of the five papers
    jobs = {r["job"] for r in rows}
    for exp in dag.experiments.values():
        for run in exp.run_specs:
            assert f"{exp.run_dir(run)}/timing.json" in jobs
            assert exp.scored(run) in jobs
            for p in exp.paper_protocols:
                assert f"{exp.run_dir(run)}/eval/{p}.json" in jobs
    assert {r["rule"] for r in rows} >= {"train", "generate_negatives", "score_reference", "evaluate_protocol",
                                         "evaluate_protocol_base"}
    over = [(r["job"], r["est_peak_gpu_mem_gb"]) for r in rows if r["est_peak_gpu_mem_gb"] > BUDGET_GB]
    assert not over, over
    train = {r["experiment"]: r["gpus"] for r in rows if r["rule"] == "train"}
    assert train["dft_uf"] == 8 and train["asft_llama3_uf"] == 4
    assert all(r["est_gpu_hours"] >= 0 for r in rows)
    # the same numbers on H100: the same memory, fewer hours
    h100 = {j.job: j for j in jobs_of(dag, "h100-80gb")}
    r = next(r for r in rows if r["rule"] == "train" and r["experiment"] == "dft_uf")
    assert h100[r["job"]].est_peak_gpu_mem_gb == r["est_peak_gpu_mem_gb"]
    assert h100[r["job"]].est_gpu_hours == pytest.approx(r["est_gpu_hours"] * 312 / 989, rel=0.02)


def _with(cfg_file: str, tmp_path, edit) -> dict:
    cfg = yaml.safe_load((ROOT / cfg_file).read_text())
    edit(cfg)
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return cfg


def test_batch_not_divisible_by_gpus_stops_the_dag(tmp_path):
    cfg = _with("configs/paper/asft.yaml", tmp_path, lambda c: c["launch"]["gpus"].update(train=8))
    with pytest.raises(ConfigError, match=r"experiment asft_llama3_uf, run method~\w+: train.batch_size=4 is not a "
                                          r"multiple of launch.gpus.train x train.micro_batch_size = 8 x 1"):
        Dag(cfg, ROOT)


def test_peak_above_gpu_memory_stops_the_dag(tmp_path):
    """7B on one GPU: 16 B/param unsharded is 116 GB before any activation."""
    cfg = _with("configs/paper/minorsft.yaml", tmp_path, lambda c: c["launch"]["gpus"].update(train=1))
    with pytest.raises(ConfigError, match=r"experiment minorsft_fig1, train job .*estimated peak \d+\.\d GB per "
                                          r"GPU > 80 GB of a100-80gb"):
        Dag(cfg, ROOT)


def test_unknown_hub_model_is_named(tmp_path):
    cfg = _with("configs/paper/minorsft.yaml", tmp_path, lambda c: c["model"].update(source="hub:org/unknown-7b"))
    with pytest.raises(ConfigError, match=r"model.source 'hub:org/unknown-7b' has no size in negfree/plan.py"):
        Dag(cfg, ROOT)


def test_slurm_dry_run_asks_each_experiments_gpus():
    """`snakemake -n --profile slurm` on the five papers, no overrides: every training job asks
    the GPUs its experiment declares, on one node, with runtime and memory from the plan."""
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--profile", "slurm", "-s",
                           str(ROOT / "Snakefile"), "--directory", str(ROOT)],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    dag = _papers_dag()
    plans = {j.job: j for j in jobs_of(dag)}
    seen = {}
    for rule, body in re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n)*)", out, re.M):
        res = re.search(r"resources: (.*)", body).group(1)
        if rule == "train":
            exp = re.search(r"wildcards: exp=([^,]+)", body).group(1)
            gpus = int(re.search(r"\bgpu=(\d+)", res).group(1))
            assert gpus == (dag.experiments[exp].config["launch"]["gpus"]["train"]), (exp, res)
            assert re.search(r"\bnodes=1\b", res) and "--signal=TERM@600" in res
            target = re.search(r"output: (\S+)", body).group(1)
            assert f"mem_mb={plans[target].mem_mb()}," in res and f"runtime={plans[target].runtime_min()}," in res
            seen.setdefault(exp, gpus)
        elif rule == "score_reference_shard" or (rule == "score_reference" and "shards~" not in body):
            assert re.search(r"\bgpu=1\b", res) and re.search(r"\bnodes=1\b", res)
        elif rule == "score_reference":   # gathers its shards' parts (score.shards > 1): no GPU
            assert re.search(r"\bgpu=0\b", res), res
    assert seen["dft_uf"] == 8 and seen["asft_llama3_uf"] == 4 and seen["dft_qwen"] == 4
    assert len(seen) == len(dag.experiments)


def test_the_baseline_before_issue_15_by_hand():
    """The baseline (padded training, record-order fp32 scoring without TF32) against today's plan,
    job by job: never cheaper; a scoring job costs the fp32/bf16 peak ratio (312 / 19.5 = 16 on
    A100) times the padding ratios of record order over sorted batches; a packed training run
    pays for its padded positions again."""
    from negfree.plan import GPUS, _layout_of

    dag = _papers_dag()
    now = {j.job: j for j in jobs_of(dag)}
    before = {j.job: j for j in jobs_of(dag, before=True)}
    assert now.keys() == before.keys()
    assert all(before[k].est_gpu_hours >= now[k].est_gpu_hours for k in now)
    exp = dag.experiments["dft_uf"]
    run = "method~sft"
    score = next(k for k in now if k == exp.scored(run))
    gen = exp.run_specs[run]["generate"]
    lay = _layout_of(1, gen["num"], exp.config["score"]["max_len"], gen["max_new_tokens"], 16,
                     16 * exp.config["score"]["max_len"], 0, False, False)
    fp32 = GPUS["a100-80gb"].bf16_tflops / GPUS["a100-80gb"].fp32_tflops
    want = fp32 * lay["padding_ratio_score_before"] / lay["padding_ratio_score_after"]
    assert before[score].est_gpu_hours / now[score].est_gpu_hours == pytest.approx(want, rel=0.02)
    t = f"{exp.run_dir(run)}/timing.json"
    assert exp.config["train"]["packing"] is True
    assert 1.2 < before[t].est_gpu_hours / now[t].est_gpu_hours < 1.6   # padded 1.58 positions per token
