"""`negfree bench train`: time our training loop per method, and against TRL's DPOTrainer.

Every measurement is a real run of ``negfree train`` (or of TRL) in a fresh
process, so peak memory is that run's own, on the same model, data and batch:

- data: the first records of the embedded dataset; each prompt's B negatives are
  other prompts' answers (no generation needed), reference log-probs scored once
  with the benchmarked model;
- each method runs ``--warmup + --steps`` optimizer steps; the first ``--warmup``
  are dropped, the median of the rest is ``median_step_s``;
- ``ratio_to_sft`` compares seconds per real token (positives + negatives, padding not
  counted) with SFT's, measured in the same invocation;
- ``packed_speedup`` (per method, on by default; ``--no-packed`` skips it): the same run
  with ``train.packing`` on (each micro-batch's rows padding-free in one row), its real
  tokens per second over the padded run's. ``padding_ratio`` is the padded run's computed
  positions per real token, what packing removes. On CPU with sdpa the packed row's
  block-diagonal mask is computed densely, so attention costs more while the rest costs
  less; a varlen kernel on a GPU (flash_attention_2) pays only for the real blocks;
- ``--full-logits-too`` repeats every method with ``chunked_head`` off, so the effect
  of applying the output head at answer positions only is measured in the same run;
- ``--vs-trl`` runs TRL's DPOTrainer (optional dependency ``trl``) with its
  defaults, on the same model, the same (prompt, positive, first negative) triples,
  the same batch and steps, and reports our DPO's time and peak memory over TRL's.

Ratios measured in one run on one machine are the claim; absolute times depend on
the machine and its load and are reported only beside them.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from negfree.bench.output import emit
from negfree.common.io import write_json, write_jsonl


def _device() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})"


def _model(spec: str, work: Path) -> Path:
    if spec == "tiny":
        from negfree.bench.tiny import make_tiny_model

        return make_tiny_model(work / "tiny", hidden=256, layers=4, heads=4)
    if spec == "embedded":
        from negfree.common.models import prepare_model

        here = Path("work/models/smollm2-135m-instruct")
        return here if (here / "config.json").exists() else prepare_model("embedded", work / "smollm2")
    path = Path(spec)
    if not (path / "config.json").exists():
        raise ValueError(f"--model {spec}: not 'tiny', 'embedded' or a model directory with config.json")
    return path


def _data(model_dir: Path, n: int, b: int, max_len: int, work: Path) -> Path:
    from negfree.data.embedded import make_embedded
    from negfree.data.schema import load_jsonl
    from negfree.score.reference import score_records

    make_embedded(work / "data")
    recs = load_jsonl(work / "data" / "train.jsonl")[:n]
    for i, r in enumerate(recs):
        r["negatives"] = [recs[(i + k) % len(recs)]["positive"] for k in range(1, b + 1)]
    write_jsonl(work / "raw.jsonl", recs)
    score_records(model_dir, recs, work / "scored.jsonl", max_len=max_len)
    return work / "scored.jsonl"


def _ours(method: str, model_dir: Path, data: Path, out: Path, args, chunked_head: bool = True,
          packing: bool = False) -> dict:
    cfg = {"batch_size": args.batch_size, "micro_batch_size": args.batch_size, "num_negatives": args.negatives,
           "max_len": args.max_len, "max_steps": args.warmup + args.steps, "lr": 1e-6, "scheduler": "constant",
           "warmup_ratio": 0.0, "gradient_checkpointing": args.gradient_checkpointing, "chunked_head": chunked_head,
           "packing": packing, "pack_capacity": args.pack_capacity if packing else None}
    cmd = [sys.executable, "-m", "negfree.cli", "train", "--method", method, "--model", str(model_dir),
           "--data", str(data), "--out-dir", str(out), "--train-json", json.dumps(cfg)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"bench: {method} failed:\n{p.stderr[-2000:]}")
    perf = [json.loads(x) for x in (out / "perf.jsonl").read_text().splitlines()][args.warmup:]
    mets = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()][args.warmup:]
    med = statistics.median(r["seconds"] for r in perf)
    tokens = statistics.mean(r["tokens"] for r in mets)
    info = json.loads((out / "run_info.json").read_text())
    if packing and not info["packing"]:
        raise RuntimeError(f"bench: {method} did not pack: {info['packing_unsupported']}")
    positions = statistics.mean(r["padded_positions_rank0"] for r in perf)
    return {"method": method, "median_step_s": round(med, 4), "tokens_per_step": tokens,
            "tokens_per_s": round(tokens / med, 1), "seconds_per_token": med / tokens,
            "padding_ratio": round(positions / tokens, 4), "peak_mem_mb": max(r["peak_memory_mb"] for r in perf)}


# ----------------------------------------------------------------------------- TRL
def trl_worker(spec_path: str) -> None:
    """Runs in its own process: TRL's DPOTrainer with its defaults, timed per step."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from negfree.data.schema import load_jsonl

    spec = json.loads(Path(spec_path).read_text())
    recs = load_jsonl(spec["data"])
    rows = [{"prompt": r["prompt"], "chosen": [{"role": "assistant", "content": r["positive"]}],
             "rejected": [{"role": "assistant", "content": r["negatives"][0]}]} for r in recs]
    tok = AutoTokenizer.from_pretrained(spec["model"])
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32)
    cuda = torch.cuda.is_available()
    args = DPOConfig(output_dir=spec["out"], per_device_train_batch_size=spec["batch_size"],
                     max_steps=spec["steps"], learning_rate=1e-6, lr_scheduler_type="constant",
                     max_length=spec["max_len"], logging_steps=10**6, save_strategy="no", report_to="none",
                     use_cpu=not cuda, bf16=cuda, gradient_checkpointing=spec["gradient_checkpointing"],
                     dataloader_num_workers=0, seed=0)
    times = []

    class Timer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            if cuda:
                torch.cuda.synchronize()
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.t)

    if cuda:
        model = model.cuda()
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                         callbacks=[Timer()])
    trainer.train()
    peak = (torch.cuda.max_memory_allocated() / 2**20 if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    write_json(spec["result"], {"step_seconds": times, "peak_mem_mb": round(peak, 1),
                                "trl_version": __import__("trl").__version__})


def _trl(model_dir: Path, data: Path, work: Path, args) -> dict:
    try:
        import trl  # noqa: F401
    except ImportError:
        return {"skipped": "trl is not installed (pip install trl==1.16.0)"}
    spec = {"model": str(model_dir), "data": str(data), "out": str(work / "trl"), "result": str(work / "trl.json"),
            "batch_size": args.batch_size, "steps": args.warmup + args.steps, "max_len": args.max_len,
            "gradient_checkpointing": args.gradient_checkpointing}
    (work / "trl_spec.json").write_text(json.dumps(spec))
    p = subprocess.run([sys.executable, "-m", "negfree.bench.train", "--trl-worker", str(work / "trl_spec.json")],
                       capture_output=True, text=True)
    if p.returncode:
        return {"error": p.stderr[-2000:]}
    res = json.loads((work / "trl.json").read_text())
    med = statistics.median(res["step_seconds"][args.warmup:])
    return {"version": res["trl_version"], "median_step_s": round(med, 4), "peak_mem_mb": res["peak_mem_mb"],
            "settings": "DPOTrainer defaults (reference model resident, sigmoid loss, beta 0.1), same batch, "
                        "model, (prompt, positive, first negative) triples and steps"}


def run(args) -> dict:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    from negfree.losses import get_method

    for m in methods:
        get_method(m)   # unknown names fail before any work
    if "sft" not in methods:
        methods = ["sft"] + methods
    if args.vs_trl and "dpo" not in methods:
        methods.append("dpo")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = _model(args.model, work)
        n = args.batch_size * (args.warmup + args.steps)
        data = _data(model_dir, n, args.negatives, args.max_len, work)
        results = []
        for m in methods:
            print(f"[bench] {m}", file=sys.stderr, flush=True)
            results.append(_ours(m, model_dir, data, work / m, args))
        full = {}
        if args.full_logits_too:   # the same runs with the output head applied to every position
            for m in methods:
                print(f"[bench] {m} (full logits)", file=sys.stderr, flush=True)
                full[m] = _ours(m, model_dir, data, work / f"{m}_full", args, chunked_head=False)
        packed = {}
        if not args.no_packed:   # the same runs, rows packed padding-free
            for m in methods:
                print(f"[bench] {m} (packed)", file=sys.stderr, flush=True)
                packed[m] = _ours(m, model_dir, data, work / f"{m}_packed", args, packing=True)
        base = next(r for r in results if r["method"] == "sft")["seconds_per_token"]
        for r in results:
            r["ratio_to_sft"] = round(r.pop("seconds_per_token") / base, 3)
            if r["method"] in packed:
                k = packed[r["method"]]
                r["packed"] = {"median_step_s": k["median_step_s"], "tokens_per_s": k["tokens_per_s"],
                               "padding_ratio": k["padding_ratio"], "peak_mem_mb": k["peak_mem_mb"]}
                r["packed_speedup"] = round(k["tokens_per_s"] / r["tokens_per_s"], 3)
            if r["method"] in full:
                f = full[r["method"]]
                r["full_logits"] = {"median_step_s": f["median_step_s"], "peak_mem_mb": f["peak_mem_mb"],
                                    "step_time_ratio": round(r["median_step_s"] / f["median_step_s"], 3),
                                    "peak_mem_ratio": round(r["peak_mem_mb"] / f["peak_mem_mb"], 3)}
        out = {"device": _device(), "model": args.model, "batch_size": args.batch_size, "negatives": args.negatives,
               "pack_capacity": args.pack_capacity,
               "max_len": args.max_len, "steps": args.steps, "warmup": args.warmup, "results": results}
        if packed:
            out["packed_speedup"] = {r["method"]: r["packed_speedup"] for r in results}
        if args.vs_trl:
            print("[bench] trl dpo", file=sys.stderr, flush=True)
            import copy

            one = copy.copy(args)   # TRL compares one pair per prompt: our DPO gets the same single negative
            one.negatives = 1
            ours = _ours("dpo", model_dir, data, work / "dpo_b1", one)
            trl = _trl(model_dir, data, work, args)
            if "median_step_s" in trl:
                trl["ours_dpo_B1"] = {k: ours[k] for k in ("median_step_s", "peak_mem_mb")}
                trl["step_time_ratio"] = round(ours["median_step_s"] / trl["median_step_s"], 3)
                trl["peak_mem_ratio"] = round(ours["peak_mem_mb"] / trl["peak_mem_mb"], 3)
            out["trl"] = trl
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="negfree bench train", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny", help="tiny (random, built offline) | embedded (SmolLM2-135M) | a path")
    p.add_argument("--methods", default="sft,dft,dft2,dpo,simpo,asft,minorsft,bnf,ift",
                   help="comma-separated registered methods to time (negfree methods lists them)")
    p.add_argument("--steps", type=int, default=5, help="timed optimizer steps per method (after --warmup)")
    p.add_argument("--warmup", type=int, default=1, help="optimizer steps run first and not timed")
    p.add_argument("--batch-size", type=int, default=4, help="prompts per optimizer step")
    p.add_argument("--negatives", type=int, default=2, help="B")
    p.add_argument("--max-len", type=int, default=128, help="prompt + answer tokens at most")
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute activations in the backward pass (train.gradient_checkpointing)")
    p.add_argument("--json", help="write the result here (printed either way)")
    p.add_argument("--full-logits-too", action="store_true",
                   help="also run every method with chunked_head off (full [R, T, V] logits) and report "
                        "chunked / full time and memory ratios")
    p.add_argument("--no-packed", action="store_true",
                   help="skip the packed runs (packed_speedup: packed / padded real tokens per second)")
    p.add_argument("--pack-capacity", type=int, default=None,
                   help="packed runs: rows of this many tokens (train.pack_capacity; default one row per micro-batch)")
    p.add_argument("--vs-trl", action="store_true", help="also run TRL's DPOTrainer (needs trl)")
    p.add_argument("--trl-worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.trl_worker:
        return trl_worker(args.trl_worker)
    if args.steps < 1 or args.batch_size < 1 or args.negatives < 1:
        raise ValueError("--steps, --batch-size and --negatives must be >= 1")
    emit(run(args), args.json)


if __name__ == "__main__":
    main()
