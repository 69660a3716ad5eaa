"""`make gpu-check` (negfree/bench/gpu_check.py), exercised on CPU: the one-line answer without a GPU,
every stage of the script with ``--cpu`` as on a bare GPU node (lm-eval, snakemake, datasets,
gguf and vLLM made unimportable), a check that can fail does fail, the 1.1B model's stages on a
scaled-down shape, and the FSDP launch on 2 CPU processes."""
import json
import os
import subprocess
import sys
import time

import pytest

from negfree.bench import gpu_check
from negfree.common.io import write_jsonl
from negfree.score.reference import score_records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ABSENT = ("lm_eval", "snakemake", "datasets", "gguf", "vllm")   # not on the bare GPU node, reported as such
# nor are the project's other dependencies beyond torch, transformers, accelerate, safetensors,
# tokenizers, numpy, pandas, pyarrow, scipy, tqdm, rich and pyyaml
UNSEEN = ABSENT + ("alpaca_eval", "matplotlib", "jsonschema", "gymnasium", "trl", "pkg_resources")
# sys.modules[name] = None makes `import name` fail and importlib.util.find_spec(name) return None,
# which is how transformers and gpu_check look for optional packages.
BARE = ("import runpy, sys\n"
        f"for m in {UNSEEN!r}: sys.modules[m] = None\n"
        "runpy.run_module('negfree.bench.gpu_check', run_name='__main__', alter_sys=True)\n")


def run(args, env_extra=None, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", **(env_extra or {})}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_without_a_gpu_make_gpu_check_prints_one_line_and_exits_0():
    plan = run(["make", "-n", "--no-print-directory", "gpu-check", f"PYTHON={sys.executable}"])
    commands = plan.stdout.strip().splitlines()   # no setup step: the one command, whatever python is given
    assert plan.returncode == 0 and len(commands) == 1, plan.stdout
    assert commands[0].startswith("PYTHONPATH=.") and commands[0].endswith(f"{sys.executable} -m negfree.bench.gpu_check")
    p = run(["make", "-s", "--no-print-directory", "gpu-check", f"PYTHON={sys.executable}"])
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1 and "no CUDA GPU" in lines[0], p.stdout


def test_cpu_mode_runs_every_stage_as_on_a_bare_node(tmp_path):
    out = tmp_path / "gpu_check.json"
    p = run([sys.executable, "-c", BARE, "--cpu", "--steps", "4", "--out", str(out)],
            env_extra={"PYTHONPATH": ROOT})
    assert p.returncode == 0, p.stdout + p.stderr[-3000:]
    assert json.loads(out.read_text())["wall_seconds"] < 60   # 7 s on a quiet 2-core machine
    lines = p.stdout.splitlines()
    assert lines[0].startswith("gpu-check on CPU (1 process(es), 4 steps") and "all passed" in lines[0]
    assert lines[1].split() == ["stage", "method", "model", "passed", "tokens/s", "peak", "GPU", "GB", "note"]
    doc = json.loads(out.read_text())
    assert doc["passed"] and doc["mode"] == "cpu" and doc["processes"] == 1
    assert all(doc["versions"][m] is None for m in ABSENT)
    by = {(r["stage"], r["method"]): r for r in doc["stages"]}
    assert by[("imports", "-")]["passed"] and all(m in by[("imports", "-")]["note"] for m in ABSENT)
    assert by[("score", "-")]["passed"] and by[("score", "-")]["details"]["max_abs_diff_vs_fp32"] == 0
    for m in gpu_check.METHODS:
        r = by[("train", m)]
        assert r["passed"], r
        assert len(r["details"]["losses"]) == 4 and r["details"]["compute"].keys() == {"float32@cpu"}
        assert r["tokens_per_s"] > 0 and r["peak_gpu_gb"] is None
    packed = [r for r in doc["stages"] if r["model"] == "tiny (packed)"]
    assert len(packed) == 1 and packed[0]["passed"] and packed[0]["note"].startswith("step-1 loss")
    assert by[("generate", "transformers")]["passed"]
    assert by[("generate", "vllm")]["passed"] is None
    assert by[("evaluate", "lm-eval")]["passed"] is None and "not installed" in by[("evaluate", "lm-eval")]["note"]
    assert by[("build", "-")]["passed"] is None   # the 1.1B model: GPU only
    for row in doc["stages"]:   # every row is in the printed table
        assert any(line.split()[:2] == [row["stage"], row["method"]] for line in lines[3:]), row


@pytest.fixture(scope="module")
def scored(tiny_model_dir, embedded_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check_data")
    recs = gpu_check._records(embedded_dir, 8, long=False)
    score_records(tiny_model_dir, recs, out / "scored.jsonl", max_len=128)
    return out / "scored.jsonl"


def job(model, data, out, method, **kw):
    cfg = {"method": method, "model": str(model), "data": str(data), "out_dir": str(out), "batch_size": 4,
           "micro_batch_size": 2, "max_steps": 2, "epochs": 10, "num_negatives": 2, "max_len": 128, "lr": 1e-3,
           "scheduler": "constant", "warmup_ratio": 0.0, "mixed_precision": "no", **kw}
    return {"model_label": "tiny", "method": method, "out_dir": str(out), "check_weights": True, "cfg": cfg}


def test_a_check_that_does_not_hold_fails_the_row(tmp_path, tiny_model_dir, scored):
    """fp32 matmuls where bf16 is expected fail the row, naming them; an exception in train()
    fails its row and the next job still runs."""
    spec = {"jobs": [job(tiny_model_dir, scored, tmp_path / "sft", "sft"),
                     job(tiny_model_dir, scored, tmp_path / "bad", "sft", batch_size=3),
                     job(tiny_model_dir, scored, tmp_path / "dpo", "dpo")],
            "deadline": time.time() + 300, "world": 1, "device": "cpu", "expect": "bfloat16@cpu"}
    rows = gpu_check.train_jobs(spec)
    assert [r["passed"] for r in rows] == [False, False, False]
    assert "matmuls in float32@cpu, expected bfloat16@cpu" in rows[0]["note"]
    assert rows[1]["note"].startswith("ValueError") and "batch_size=3" in rows[1]["note"]
    assert rows[2]["details"]["losses"]   # ran after the failure
    spec["expect"] = "float32@cpu"
    spec["jobs"] = [spec["jobs"][0]]
    assert gpu_check.train_jobs(spec)[0]["passed"]
    assert gpu_check.table(rows).splitlines()[2].split()[:4] == ["train", "sft", "tiny", "FAIL"]


def test_big_model_stages_on_a_scaled_down_shape(tmp_path, tiny_model_dir, embedded_dir, monkeypatch):
    """The 1.1B path (build, score long records, sft and dpo jobs) with the same code, small dims."""
    monkeypatch.setattr(gpu_check, "BIG", dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                               num_attention_heads=4, num_key_value_heads=2, vocab_size=1000))
    (tmp_path / "data").symlink_to(embedded_dir)
    base = {"max_steps": 2, "epochs": 10, "scheduler": "constant", "warmup_ratio": 0.0, "mixed_precision": "no"}
    rows, jobs = gpu_check.big_stages(tmp_path, tiny_model_dir, "cpu", "float32@cpu", 1, base)
    assert [r["passed"] for r in rows] == [True, True], rows
    assert rows[0]["details"]["parameters"] > 0 and "random bf16" in rows[0]["note"]
    assert [j["method"] for j in jobs] == list(gpu_check.BIG_METHODS) * 2
    assert [j["cfg"]["packing"] for j in jobs] == [False] * 2 + [True] * 2
    trained = gpu_check.train_jobs({"jobs": jobs, "deadline": time.time() + 300, "world": 1, "device": "cpu",
                                    "expect": "float32@cpu"})
    gpu_check.compare_packed(trained)
    assert all(r["passed"] for r in trained), trained
    assert all("packed / padded tokens/s" in r["note"] for r in trained if r["model"].endswith("(packed)"))
    assert min(len(r["positive"]) for r in gpu_check._records(embedded_dir, 16, long=True)) > 1200


def test_a_packed_run_whose_loss_differs_fails():
    row = lambda model, loss, tps: gpu_check._row("train", "dft", model, True, "", tps, losses=[loss])  # noqa: E731
    rows = [row("tiny", 2.0, 100.0), row("tiny (packed)", 2.01, 130.0), row("big", 2.0, 10.0),
            row("big (packed)", 2.5, 12.0)]
    gpu_check.compare_packed(rows)
    assert rows[1]["passed"] and rows[1]["note"] == "step-1 loss 2.0100 vs padded 2.0000; packed / padded tokens/s 1.30"
    assert rows[3]["passed"] is False and "differs by more than 2%" in rows[3]["note"]


@pytest.mark.multiprocess
def test_cpu_mode_with_two_processes_launches_fsdp(tmp_path):
    out = tmp_path / "gpu_check.json"
    p = run([sys.executable, "-c", BARE, "--cpu", "--processes", "2", "--methods", "sft,kto",
             "--out", str(out)], env_extra={"PYTHONPATH": ROOT})
    assert p.returncode == 0, p.stdout + p.stderr[-3000:]
    doc = json.loads(out.read_text())
    train = [r for r in doc["stages"] if r["stage"] == "train"]
    assert [r["method"] for r in train] == ["sft", "kto"] and all(r["passed"] for r in train)
    assert all(r["details"]["processes"] == 2 and "FSDP" in r["details"]["distributed"] for r in train)
