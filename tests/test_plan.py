"""`negfree plan` (negfree/jobs/plan.py) and the per-experiment launch resources it feeds: the
memory and disk arithmetic by hand, every paper job covered and within 70 GB per GPU, the
checks that stop a DAG before anything is submitted, and a Slurm dry run asking each
experiment's GPUs."""
import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from negfree.jobs.dag import ConfigError, Dag
from negfree.jobs.resources import (BUDGET_GB, MODELS, arch_from_config, evaluate_job, generate_job, jobs_of,
                                    score_job, train_job)

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
    keys = {"job", "experiment", "rule", "gpus", "est_peak_gpu_mem_gb", "est_host_mem_gb", "est_gpu_hours",
            "est_disk_gb", "est_scratch_peak_gb"}
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
        for run in exp.released_runs():       # released checkpoints: evaluated, so priced (dft Tables 1, 3)
            for p in exp.paper_protocols:
                assert f"{exp.run_dir(run)}/eval/{p}.json" in jobs
    assert {r["rule"] for r in rows} >= {"train", "generate_negatives", "score_reference", "evaluate_protocol",
                                         "evaluate_protocol_base", "evaluate_protocol_released"}
    released = [r for r in rows if r["rule"] == "evaluate_protocol_released" and r["experiment"] == "dft_uf"]
    base = next(r for r in rows if r["rule"] == "evaluate_protocol_base" and r["experiment"] == "dft_uf")
    assert len(released) == 7 and all(r["est_gpu_hours"] == base["est_gpu_hours"] for r in released)
    # asft Table 3's textsim is priced on alpaca_en's 2,000 rows, its own test set, in both experiments
    ts = [r for r in rows if r["job"].endswith("/eval/textsim.json")]
    assert {r["experiment"] for r in ts} == {"asft_llama3_uf", "asft_llama3_hh"}
    assert len({r["est_gpu_hours"] for r in ts}) == 1
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


P_MISTRAL = 7_241_732_096    # Mistral-7B-v0.1, bf16 on the hub (config.json torch_dtype)


def test_disk_of_a_training_run_by_hand():
    """dft_uf's SFT run (Mistral-7B, bf16 base, keep_checkpoints: 2): final/ in the base dtype is
    2 B/param = 14.48 GB; while running, 3 sharded checkpoints (two kept, one being written) of
    fp32 weights 4 B + AdamW m, v 8 B = 12 B/param, plus final/: 38 B/param = 275.19 GB. With
    keep_checkpoints 1: 2 x 12 + 2 = 26 B/param; save_dtype float32 doubles final/;
    keep_checkpoints_at_end leaves the kept checkpoints too."""
    exp = _papers_dag().experiments["dft_uf"]
    t = exp.config["train"]
    assert t["keep_checkpoints"] == 2 and not t.get("keep_checkpoints_at_end")
    job = train_job(exp, "method~sft", ROOT)
    assert job.est_disk_gb == pytest.approx(2 * P_MISTRAL / 1e9, abs=0.01)
    assert job.est_scratch_peak_gb == pytest.approx((3 * 12 + 2) * P_MISTRAL / 1e9, abs=0.01)
    t["keep_checkpoints"] = 1
    job = train_job(exp, "method~sft", ROOT)
    assert job.est_disk_gb == pytest.approx(14.48, abs=0.01)
    assert job.est_scratch_peak_gb == pytest.approx(26 * P_MISTRAL / 1e9, abs=0.01)   # 188.28
    t.update(save_dtype="float32", keep_checkpoints_at_end=True)
    job = train_job(exp, "method~sft", ROOT)
    assert job.est_disk_gb == pytest.approx((4 + 12) * P_MISTRAL / 1e9, abs=0.01)
    assert job.est_scratch_peak_gb == pytest.approx((2 * 12 + 4) * P_MISTRAL / 1e9, abs=0.01)


def test_host_memory_per_rank_by_hand():
    """Training under FSDP on 8 GPUs: the first rank reads the fp32 checkpoint (4 B/param), the
    other seven build the model on the meta device and receive a shard (4 B/param / 8), so they
    hold 4 x 7/8 x 7,241,732,096 = 25.35 GB less each. DDP (dft_qwen, 4 GPUs): every rank holds
    the whole fp32 model. Inference on a GPU reads the checkpoint in bf16: 3 GB + 2 B/param."""
    dag = _papers_dag()
    job = train_job(dag.experiments["dft_uf"], "method~sft", ROOT)
    first, others = job.est_host_mem_gb, (job.est_job_host_mem_gb - job.est_host_mem_gb) / 7
    assert first - others == pytest.approx(4 * P_MISTRAL * 7 / 8 / 1e9, abs=0.06)
    assert others < 4 * P_MISTRAL / 1e9   # no rank but the first holds the full model
    qwen = train_job(dag.experiments["dft_qwen"], "method~sft", ROOT)
    assert qwen.gpus == 4 and qwen.est_job_host_mem_gb == pytest.approx(4 * qwen.est_host_mem_gb, abs=0.2)
    exp = dag.experiments["dft_uf"]
    gen = exp.run_specs["method~sft"]["generate"]
    score = score_job(exp, gen, exp.scored("method~sft"), ROOT)
    assert score.gpus == 1 and score.est_host_mem_gb == pytest.approx(3 + 2 * P_MISTRAL / 1e9, abs=0.05)   # 17.5
    ev = evaluate_job(exp, "method~sft", "openllm_dft", "x.json", ROOT)
    assert ev.est_host_mem_gb == pytest.approx(17.5, abs=0.05)


def test_disk_of_a_pool_and_its_scored_file_by_hand():
    """minorsft's pool (pair strategy: UltraFeedback's own rejected answer; 26,000 prompts of 190
    tokens, chosen 360, rejected 300) is its text at 4 B/token: 26,000 x 4 x 850 = 0.088 GB. The
    scored file (score.max_len 2048 caps nothing) adds a float per answer token at 21 B: the
    positive, the negative, KTO's mismatched positive: 26,000 x (360 + 300 + 360) x 21 = 0.557 GB."""
    exp = _papers_dag().experiments["minorsft_fig1"]
    gen = exp.run_specs["method~sft_dpo"]["generate"]
    assert gen["strategy"] == "pair" and exp.config["score"]["max_len"] == 2048
    assert not exp.gen.get("shards") and not exp.config["score"].get("shards")
    pool = generate_job(exp, gen, "pool.jsonl", ROOT)
    assert pool.est_disk_gb == pytest.approx(26_000 * 4 * 850 / 1e9, abs=0.005)
    scored = score_job(exp, gen, "scored.jsonl", ROOT)
    assert scored.est_disk_gb == pytest.approx((26_000 * 4 * 850 + 26_000 * 1020 * 21) / 1e9, abs=0.005)


def test_checkpoint_dtype_from_config_json_and_table():
    c = {"hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128, "vocab_size": 100,
         "num_attention_heads": 4}
    assert arch_from_config(c).dtype == "float32"
    assert arch_from_config({**c, "torch_dtype": "bfloat16"}).dtype == "bfloat16"
    assert arch_from_config({**c, "dtype": "bfloat16"}).dtype == "bfloat16"
    assert {a.dtype for a in MODELS.values()} == {"bfloat16"}


def test_largest_training_estimate_fits_an_a100_with_headroom():
    """The issue's bound: every paper training job's per-GPU estimate on A100-80GB is <= 75 GB."""
    train = [j for j in jobs_of(_papers_dag(), "a100-80gb") if j.rule == "train"]
    worst = max(train, key=lambda j: j.est_peak_gpu_mem_gb)
    assert worst.est_peak_gpu_mem_gb <= 75, (worst.job, worst.memory)


def test_plan_prints_disk_per_job_and_per_paper(capsys):
    """The text tables carry the disk; ``--by-paper`` (with --json) wraps the same job list with
    the per-paper sums, while plain --json stays the list its consumers read."""
    from negfree.jobs.plan import main

    args = argparse.Namespace(directory=str(ROOT), configfile=None, gpu=None, json=True, by_paper=True)
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    rows, papers = out["jobs"], out["papers"]
    assert set(papers) == {"dft", "minorsft", "asft", "ift", "bnf"}
    for name, p in papers.items():
        mine = [r for r in rows if r["paper"] == name]
        assert p["disk_gb"] == pytest.approx(sum(r["est_disk_gb"] for r in mine), abs=0.05)
        assert p["max_scratch_peak_gb"] == max(r["est_scratch_peak_gb"] for r in mine)
    assert out["total"]["disk_gb"] == pytest.approx(sum(p["disk_gb"] for p in papers.values()), abs=0.05)
    assert main(argparse.Namespace(directory=str(ROOT), configfile=None, gpu=None, json=False)) == 0
    text = capsys.readouterr().out
    assert "disk GB" in text and "max run scratch GB" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("bnf "))
    assert line.split()[-2:] == [f"{papers['bnf']['disk_gb']:.1f}", f"{papers['bnf']['max_scratch_peak_gb']:.1f}"]


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
    with pytest.raises(ConfigError, match=r"model.source 'hub:org/unknown-7b' has no size in negfree/jobs/resources.py"):
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
    from negfree.jobs.resources import GPUS, _layout_of

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
