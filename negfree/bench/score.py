"""`negfree bench score`: reference scoring with length-sorted batches against record order.

Both modes run in one process on the same model, the same sequences and the same forward
(negfree.score.reference.answer_token_logprobs), after one warm-up batch; only the batching differs:

- ``unsorted``: sequences in record order, ``--batch-size`` per batch (the scorer before
  issue 15);
- ``sorted``: negfree.common.batching.plan_batches, longest first under a budget of ``--batch-size x
  --max-len`` padded positions (what ``negfree score`` runs).

``speedup_vs_unsorted`` = unsorted seconds / sorted seconds, the fastest of ``--repeats``
alternating runs of each, in this process's CPU time on a CPU with one torch thread by default
(on shared cores other jobs' load would otherwise enter the ratio, and idle OpenMP threads spin;
wall times are reported too, ``wall_speedup_vs_unsorted``) and in wall time on a GPU. On a CPU
the ratio stays below the ratio of padded positions: the chunked output head runs on real
answer tokens only, the same work in both modes. The largest per-token difference
between the modes is reported (float rounding of another padded width; 0 means bitwise equal).

Data: the first ``--prompts`` embedded training prompts with their answers as positives and
``--negatives`` negatives each whose lengths follow the UltraFeedback-shaped distribution of
``negfree bench data`` (answer tokens ~ log-normal, median 230, sigma 0.6, capped to fit
``--max-len``): the text is other records' answers joined and cut to the drawn token count,
so lengths spread as a sampled pool's do. Plus KTO's mismatched answer, as ``negfree score``.

    negfree bench score --json results/bench/score.json
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from negfree.bench.output import emit


def bench_records(tok, n: int, B: int, max_len: int, seed: int = 0) -> list[dict]:
    from negfree.common.batching import UF_SHAPE
    from negfree.data.embedded import build_splits

    recs = build_splits(max(n, 256), 64, 0)["train"][:n]
    pool = tok(" ".join(r["positive"] for r in build_splits(256, 64, 0)["train"]),
               add_special_tokens=False)["input_ids"]
    rng = np.random.default_rng(seed)
    med, sigma = UF_SHAPE["negative"]
    for i, r in enumerate(recs):
        negs = []
        for j in range(B):
            k = int(np.clip(round(rng.lognormal(np.log(med), sigma)), 4, max_len - 96))
            start = int(rng.integers(0, len(pool) - k))
            negs.append(tok.decode(pool[start:start + k]).strip() or "no")
        r["negatives"] = negs
    return recs


def _clock() -> float:
    """GPU: wall time after a synchronize. CPU: this process's CPU time, so other jobs sharing
    the cores do not enter the ratio (the work of both modes is what is compared)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        return time.perf_counter()
    return time.process_time()


def _timed(model, jobs, batches, pad_id) -> tuple[float, float, dict]:
    from negfree.score.reference import answer_token_logprobs

    out, t0, w0 = {}, _clock(), time.perf_counter()
    for b in batches:
        chunk = [jobs[k][2] for k in b]
        for k, lp in zip(b, answer_token_logprobs(model, [e.ids for e in chunk], [e.answer_start for e in chunk],
                                                  pad_id)):
            out[k] = lp
    return _clock() - t0, time.perf_counter() - w0, out


def run(model_dir: Path, *, n_prompts: int, negatives: int, max_len: int, batch_size: int, seed: int,
        repeats: int = 1) -> dict:
    from negfree.common.batching import padded_positions, plan_batches
    from negfree.common.models import load_model, load_tokenizer
    from negfree.score.reference import encode_jobs

    tok = load_tokenizer(model_dir)
    model = load_model(model_dir).eval()
    recs = bench_records(tok, n_prompts, negatives, max_len, seed)
    jobs, _ = encode_jobs(tok, recs, max_len=max_len, max_prompt_len=None, system=None, mismatched=True,
                          fallback_template=False, overlong_prompts="error")
    lengths = [len(e.ids) for _, _, e in jobs]
    plans = {"unsorted": plan_batches(lengths, batch_size=batch_size, sort=False),
             "sorted": plan_batches(lengths, batch_size=batch_size, max_batch_tokens=batch_size * max_len)}
    _timed(model, jobs, [plans["sorted"][-1]], tok.pad_token_id)     # warm-up
    rows, values, times = {}, {}, {mode: [] for mode in plans}
    for _ in range(repeats):                      # alternate the modes; the fastest repeat of each counts
        for mode, batches in plans.items():
            seconds, wall, values[mode] = _timed(model, jobs, batches, tok.pad_token_id)
            times[mode].append((seconds, wall))
    for mode, batches in plans.items():
        seconds, wall = min(t[0] for t in times[mode]), min(t[1] for t in times[mode])
        rows[mode] = {"batches": len(batches), "seconds": round(seconds, 3), "wall_seconds": round(wall, 3),
                      "padded_positions": padded_positions(lengths, batches),
                      "padding_ratio": round(padded_positions(lengths, batches) / sum(lengths), 4),
                      "real_tokens_per_second": round(sum(lengths) / seconds, 1)}
    diff = max(abs(a - b) for k in values["sorted"] for a, b in zip(values["sorted"][k], values["unsorted"][k]))
    device = (torch.cuda.get_device_name(0) if torch.cuda.is_available()
              else f"cpu ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})")
    return {"speedup_vs_unsorted": round(rows["unsorted"]["seconds"] / rows["sorted"]["seconds"], 3),
            "device": device, "model": str(model_dir), "prompts": n_prompts, "negatives": negatives,
            "repeats": repeats, "sequences": len(jobs), "real_tokens": sum(lengths), "max_len": max_len,
            "batch_size": batch_size,
            "max_batch_tokens": batch_size * max_len, "rows": rows, "max_abs_diff_sorted_vs_unsorted": diff,
            "precision": "bf16 autocast" if torch.cuda.is_available() else "fp32",
            "clock": "wall time (GPU)" if torch.cuda.is_available() else "process CPU time (cores shared)",
            "wall_speedup_vs_unsorted": round(rows["unsorted"]["wall_seconds"] / rows["sorted"]["wall_seconds"], 3)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="negfree bench score", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="embedded", help="'embedded' or a model directory")
    p.add_argument("--prompts", type=int, default=16, help="first N embedded training prompts")
    p.add_argument("--negatives", type=int, default=2, help="negatives per prompt (UltraFeedback-shaped lengths, cut from other answers)")
    p.add_argument("--max-len", type=int, default=320, help="prompt + answer tokens at most")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per batch (the scorer's default)")
    p.add_argument("--seed", type=int, default=0, help="seed of the negatives' lengths and text")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default on a CPU: 1, whose CPU time is the work itself; with more, "
                        "idle threads spin and count on shared cores)")
    p.add_argument("--repeats", type=int, default=2, help="alternating runs of both modes; the fastest counts")
    p.add_argument("--json", help="write the result here as well")
    args = p.parse_args(argv)
    for flag, value, least in (("--prompts", args.prompts, 1), ("--negatives", args.negatives, 1),
                               ("--max-len", args.max_len, 128), ("--batch-size", args.batch_size, 1),
                               ("--threads", args.threads or 1, 1), ("--repeats", args.repeats, 1)):
        if value < least:
            raise ValueError(f"{flag} must be >= {least}, got {value}")
    if args.threads or not torch.cuda.is_available():
        torch.set_num_threads(args.threads or 1)
    from negfree.bench.generate import resolve_model

    with torch.inference_mode(), tempfile.TemporaryDirectory(prefix="negfree-bench-") as scratch:
        res = run(resolve_model(args.model, Path(scratch)), n_prompts=args.prompts, negatives=args.negatives,
                  max_len=args.max_len, batch_size=args.batch_size, seed=args.seed, repeats=args.repeats)
    return emit(res, args.json)


if __name__ == "__main__":
    main()
