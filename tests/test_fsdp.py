"""FSDP2 on CPU (issue 14): the sharded path the paper configs launch on the cluster
(configs/accelerate/fsdp.yaml: torch's fully_shard driven by accelerate 1.15), run here
with 2 processes over gloo.

The launch environment comes from accelerate's own launcher code reading the real config
file (what `accelerate launch --config_file configs/accelerate/fsdp.yaml` exports), and
the processes are started by torchrun, because `accelerate launch --cpu` starts a single
process. negfree.train.loop then turns FSDP on over the CPU process group.

Each 2-process run is compared with one process on the same global batch: after 3 steps
the loss and the gradient norm of every step agree to 1e-6 (relative), and the weights
to float precision (Adam turns the summation-order noise of near-zero gradients into
updates of up to ~1e-6 of a parameter's scale)."""
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from negfree.train.loop import train

pytestmark = [pytest.mark.multiprocess, pytest.mark.usefixtures("one_thread")]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ["sft", "dft", "dft2", "dpo", "ift", "bnf", "kto"]
BASE = {"batch_size": 4, "micro_batch_size": 4, "max_steps": 3, "epochs": 2, "num_negatives": 2, "max_len": 96,
        "lr": 1e-4, "scheduler": "constant", "warmup_ratio": 0.0}


@pytest.fixture(scope="module")
def data(scored_pool, tmp_path_factory):
    """8 records, 3 negatives each (other records' answers), scored under the tiny model."""
    return scored_pool(tmp_path_factory.mktemp("fsdp_data"))


def fsdp_env(nproc: int = 2) -> dict:
    """The environment `accelerate launch --config_file configs/accelerate/fsdp.yaml` gives its workers."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    args = launch_command_parser().parse_args([
        "--config_file", os.path.join(ROOT, "configs/accelerate/fsdp.yaml"), "--num_processes", str(nproc),
        "--mixed_precision", "no", "-m", "negfree.cli"])
    args, _, _ = _validate_launch_command(args)
    env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    return env


def launch(method, model, data, out, nproc=2, env_extra=None, **kw):
    keys = {**BASE, "micro_batch_size": BASE["batch_size"] // nproc, **kw}
    args = ["-m", "negfree.cli", "train", "--method", method, "--model", str(model), "--data", str(data),
            "--out-dir", str(out), "--train-json", json.dumps(keys)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(fsdp_env(nproc) if nproc > 1 else {}), **(env_extra or {})}
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
                if nproc > 1 else [sys.executable])
    return subprocess.run(launcher + args, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)


def metrics(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def rel(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def test_the_probe_set_under_fsdp_equals_one_process(tmp_path, tiny_model_dir, data):
    """Every process reads the whole probe set (each forward of a sharded model needs them all);
    the first writes probe.jsonl, equal to one process's. The FSDP run also packs its rows
    padding-free (train.packing), the single process pads them: same probe, same losses."""
    kw = {"probe_records": 2, "probe_every": 1, "max_steps": 2}
    one, two = tmp_path / "one", tmp_path / "fsdp"
    train({"method": "dft", "model": str(tiny_model_dir), "data": str(data), "out_dir": str(one), **BASE, **kw})
    p = launch("dft", tiny_model_dir, data, two, packing=True, **kw)
    assert p.returncode == 0, p.stderr[-3000:]
    info = json.loads((two / "run_info.json").read_text())
    assert info["packing"] is True and info["distributed"] == "DistributedType.FSDP"
    pa, pb = ([json.loads(x) for x in (run / "probe.jsonl").read_text().splitlines()] for run in (one, two))
    assert [r["step"] for r in pa] == [r["step"] for r in pb] == [0, 1, 2]
    for ra, rb in zip(pa, pb):
        assert ra.keys() == rb.keys() and ra["records"] == 2
        for k in set(ra) - {"step", "records"}:
            assert ra[k] == pytest.approx(rb[k], rel=1e-5, abs=1e-6), (ra["step"], k, ra[k], rb[k])
    for ra, rb in zip(metrics(one), metrics(two)):
        assert rel(ra["grad_norm"], rb["grad_norm"]) < 1e-5 and rel(ra["loss"], rb["loss"]) < 1e-5


@pytest.mark.parametrize("method", METHODS)
def test_fsdp_on_two_processes_equals_one_process(tmp_path, tiny_model_dir, data, method):
    one, two = tmp_path / "one", tmp_path / "fsdp"
    train({"method": method, "model": str(tiny_model_dir), "data": str(data), "out_dir": str(one), **BASE})
    p = launch(method, tiny_model_dir, data, two)
    assert p.returncode == 0, p.stderr[-3000:]
    info = json.loads((two / "run_info.json").read_text())
    assert info["distributed"] == "DistributedType.FSDP" and info["processes"] == 2
    ma, mb = metrics(one), metrics(two)
    assert [r["step"] for r in mb] == [1, 2, 3]
    for ra, rb in zip(ma, mb):
        assert rel(ra["grad_norm"], rb["grad_norm"]) < 1e-6, (ra["step"], ra["grad_norm"], rb["grad_norm"])
        # DFT's and BNF's losses are small differences of summed log-likelihoods (~ -100 each here):
        # fp32 summation order bounds their agreement relative to those terms, not to the difference
        scale = max(abs(ra["loss"]), abs(ra["logp_pos"]), abs(ra.get("logp_neg", 0.0)))
        assert abs(ra["loss"] - rb["loss"]) <= 1e-6 * scale, (ra["step"], ra["loss"], rb["loss"], scale)
        # every logged mean (incl. KTO's kl_z0 and DFT's log u); a micro-batch's min/max depends on the split
        for k in {k for k in set(ra) & set(rb) if not k.endswith(("_min", "_max"))} - {"loss", "grad_norm"}:
            assert ra[k] == pytest.approx(rb[k], rel=1e-5, abs=1e-6), (k, ra[k], rb[k])
    # the final weights: written once, consolidated, one safetensors file that from_pretrained loads
    files = sorted(p.name for p in (two / "final").glob("*.safetensors"))
    assert files == ["model.safetensors"]
    wa, wb = load_file(str(one / "final/model.safetensors")), load_file(str(two / "final/model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        assert wa[k].dtype == torch.float32
        scale = wa[k].abs().max()
        assert (wa[k] - wb[k]).abs().max() <= 2e-5 * scale, k
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(str(two / "final"))
    if method in ("dft", "dft2"):
        # log u is a log-mean-exp of fp32 score differences of size ~10-100: fp32 noise, not float64's
        torch.testing.assert_close(torch.load(one / "final/dft_log_u.pt"), torch.load(two / "final/dft_log_u.pt"),
                                   rtol=1e-5, atol=1e-5)


def test_fsdp_checkpoint_resume_is_bit_identical_and_refuses_another_process_count(tmp_path, tiny_model_dir,
                                                                                    data):
    """DFT (the method with state of its own): killed after step 3's backward with a sharded checkpoint
    of step 2 on disk, refused by 1 process, resumed by 2: the same weights and log u, bit for bit."""
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    kw = {"max_steps": 4, "save_every": 1}
    assert launch("dft", tiny_model_dir, data, whole, **kw).returncode == 0
    p = launch("dft", tiny_model_dir, data, cut, env_extra={"NEGFREE_FAULT": "kill@3"}, **kw)
    assert p.returncode != 0 and not (cut / "final").exists()
    assert (cut / "checkpoints/latest").read_text().strip() == "step-000002"
    p = launch("dft", tiny_model_dir, data, cut, nproc=1, **{**kw, "micro_batch_size": 2})   # same config
    assert p.returncode != 0
    assert "written by 2 process(es), this run has 1" in p.stderr, p.stderr[-2000:]
    p = launch("dft", tiny_model_dir, data, cut, **kw)
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads((cut / "run_info.json").read_text())["resumed_from_step"] == 2
    wa, wb = load_file(str(whole / "final/model.safetensors")), load_file(str(cut / "final/model.safetensors"))
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert torch.equal(torch.load(whole / "final/dft_log_u.pt"), torch.load(cut / "final/dft_log_u.pt"))
    assert metrics(whole) == metrics(cut)


def test_only_the_first_process_reads_the_full_checkpoint(tmp_path, tiny_model_dir, data):
    """A ~40M-parameter model (160 MB in fp32): with cpu_ram_efficient_loading the second process
    builds it on the meta device and receives its shard, so its peak host memory stays well
    below the first's. With activation checkpointing on, as in the paper files."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    cfg = AutoConfig.from_pretrained(str(tiny_model_dir))
    cfg.update({"hidden_size": 768, "intermediate_size": 2048, "num_hidden_layers": 6, "num_attention_heads": 12,
                "num_key_value_heads": 12, "head_dim": 64})
    big = tmp_path / "big"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg)
    model_mb = sum(p.numel() for p in model.parameters()) * 4 / 2**20
    model.save_pretrained(big)
    AutoTokenizer.from_pretrained(str(tiny_model_dir)).save_pretrained(big)
    del model
    p = launch("sft", big, data, tmp_path / "run", max_steps=1, lr=1e-5, gradient_checkpointing=True)   # as the paper files
    assert p.returncode == 0, p.stderr[-3000:]
    rss = json.loads((tmp_path / "run/run_info.json").read_text())["host_peak_mb_per_rank_after_load"]
    assert len(rss) == 2
    assert rss[1] < rss[0] - 0.6 * model_mb, (rss, model_mb)
    AutoModelForCausalLM.from_pretrained(str(tmp_path / "run/final"))


@pytest.fixture(scope="module")
def hub_shaped_model(tmp_path_factory, embedded_dir):
    """A bf16 checkpoint, as every paper model ships on the hub, large enough (85M parameters,
    340 MB in fp32) that a full copy on a process stands far above the noise of its host memory."""
    from negfree.bench.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("bf16_model"), embedded_dir, hidden=1024, layers=8, heads=8,
                           dtype="bfloat16")


def test_a_bf16_checkpoint_is_read_by_the_first_process_only_and_accumulation_stays_sharded(
        tmp_path, hub_shaped_model, data):
    """The cluster's case: a bf16 hub checkpoint trained in fp32 under FSDP2 with 2 micro-batches a
    step. The second process builds the architecture on the meta device and receives its shard:
    loading costs it under a quarter of the fp32 model (transformers alone converts a full copy on
    every process, 1.0x). Between micro-batches each process holds at most its shard of the
    gradients (reduce-scatter after every micro-batch; skipping the sync holds them unsharded,
    1.0x). final/ is written in the checkpoint's dtype, bf16."""
    out = tmp_path / "run"
    p = launch("sft", hub_shaped_model, data, out, max_steps=1, batch_size=4, micro_batch_size=1)
    assert p.returncode == 0, p.stderr[-3000:]
    info = json.loads((out / "run_info.json").read_text())
    full = info["model_fp32_mb"]
    assert full > 300 and info["micro_batches_per_step"] == 2
    first, second = info["host_mb_for_loading_per_rank"]
    assert first > 0.9 * full, info          # the first process reads and converts the whole checkpoint
    assert second < 0.25 * full, info
    held = info["gradient_mb_held_between_micro_batches"]
    assert len(held) == 2 and all(0 < h <= 0.55 * full for h in held), info
    weights = load_file(str(out / "final/model.safetensors"))
    assert {v.dtype for v in weights.values()} == {torch.bfloat16}
    assert json.loads((out / "final/config.json").read_text())["dtype"] == "bfloat16"


@pytest.mark.parametrize("method", ["sft", "dft"])
def test_four_micro_batches_on_two_processes_equal_one_process(tmp_path, tiny_model_dir, data, method):
    """Accumulation under FSDP2 reduce-scatters every micro-batch: 4 micro-batches per process on
    2 processes give one process's losses, gradient norms and weights on the same global batch of 8
    (SFT's token-weighted normaliser and DFT's per-record state included)."""
    one, two = tmp_path / "one", tmp_path / "fsdp"
    kw = {**BASE, "batch_size": 8, "max_steps": 2}
    train({"method": method, "model": str(tiny_model_dir), "data": str(data), "out_dir": str(one), **kw,
           "micro_batch_size": 8})
    p = launch(method, tiny_model_dir, data, two, batch_size=8, micro_batch_size=1, max_steps=2)
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads((two / "run_info.json").read_text())["micro_batches_per_step"] == 4
    for ra, rb in zip(metrics(one), metrics(two)):
        assert rel(ra["grad_norm"], rb["grad_norm"]) < 1e-5, (ra["step"], ra["grad_norm"], rb["grad_norm"])
        scale = max(abs(ra["loss"]), abs(ra["logp_pos"]), abs(ra.get("logp_neg", 0.0)))
        assert abs(ra["loss"] - rb["loss"]) <= 1e-5 * scale, (ra["step"], ra["loss"], rb["loss"])
    wa, wb = load_file(str(one / "final/model.safetensors")), load_file(str(two / "final/model.safetensors"))
    for k in wa:
        assert (wa[k] - wb[k]).abs().max() <= 5e-5 * wa[k].abs().max(), k
