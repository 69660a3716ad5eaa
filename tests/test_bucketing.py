"""Length bucketing (issue 15): within a step, each process's prompts are grouped into
micro-batches by length. The step's gradient is the same sum over the same prompts, so the
weights after training equal the unbucketed run's to float precision."""
import json

import pytest
import torch
from safetensors.torch import load_file

from negfree.train.loop import train


@pytest.fixture(scope="module")
def data(scored_pool, tmp_path_factory):
    return scored_pool(tmp_path_factory.mktemp("bucket"), negatives=2)


@pytest.mark.parametrize("method", ["sft", "dft"])
def test_bucketed_micro_batches_give_the_same_weights(tmp_path, tiny_model_dir, data, method):
    runs = {}
    for bucket in (False, True):
        out = tmp_path / str(bucket)
        train({"method": method, "model": str(tiny_model_dir), "data": str(data), "out_dir": str(out),
               "batch_size": 4, "micro_batch_size": 2, "max_steps": 4, "epochs": 2, "num_negatives": 2, "max_len": 96,
               "lr": 1e-4, "scheduler": "constant", "warmup_ratio": 0.0, "length_bucketing": bucket})
        runs[bucket] = out
    wa, wb = load_file(str(runs[False] / "final/model.safetensors")), load_file(str(runs[True] / "final/model.safetensors"))
    for k in wa:
        # Adam turns fp32 summation-order noise of near-zero gradients into updates of up to ~lr each:
        # allow a tenth of one step's update (a wrong gradient moves weights by ~lr per step)
        assert (wa[k] - wb[k]).abs().max() <= 0.1 * 1e-4, k
    ma = [json.loads(x) for x in (runs[False] / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(x) for x in (runs[True] / "metrics.jsonl").read_text().splitlines()]
    for a, b in zip(ma, mb):
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5)
    for a, b in zip(ma, mb):   # DFT's loss is a small difference of ~100-nat terms: fp32 order noise scales with them
        assert abs(a["loss"] - b["loss"]) <= 1e-6 * max(abs(a["loss"]), abs(a["logp_pos"]), abs(a.get("logp_neg", 0)))
    pad = {k: sum(json.loads(x)["padded_positions_rank0"] for x in (v / "perf.jsonl").read_text().splitlines())
           for k, v in runs.items()}
    assert pad[True] < pad[False]   # 2 micro-batches of 2 prompts per step: sorted, similar rows share one


def test_kto_keeps_its_micro_batches(tmp_path, tiny_model_dir, data):
    """KTO's z0 is a mean over the micro-batch's mismatched answers: grouping by length would change
    the estimator, so bucketing is not applied, and run_info.json says so."""
    out = tmp_path / "kto"
    train({"method": "kto", "model": str(tiny_model_dir), "data": str(data), "out_dir": str(out), "batch_size": 4,
           "micro_batch_size": 2, "max_steps": 1, "num_negatives": 2, "max_len": 96, "length_bucketing": True})
    assert json.loads((out / "run_info.json").read_text())["length_bucketing"] is False
