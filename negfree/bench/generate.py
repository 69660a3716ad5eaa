"""`negfree bench generate`: tokens/s of batched sampling against one prompt at a time.

Both modes run in one process on the same model, the same prompts (the first N
training prompts of the embedded dataset, chat template) and the same per-sample
seeds, so their outputs must agree token for token (checked and reported); only
the batching differs. With ``--vllm`` a third row times vLLM on the same
requests, or records why it could not run (no GPU, vllm not installed).

    negfree bench generate --model embedded --prompts 16 --max-new-tokens 32 --json bench.json

``--model embedded`` uses work/models/smollm2-135m-instruct when it exists (the
demo's converted SmolLM2-135M-Instruct), else converts the shipped GGUF into a
temporary directory first (about 30 s).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from negfree.bench.output import emit

EMBEDDED_DIR = Path("work/models/smollm2-135m-instruct")


def resolve_model(name: str, scratch: Path) -> Path:
    if name != "embedded":
        if not (Path(name) / "config.json").exists():
            raise FileNotFoundError(f"--model {name}: no config.json there")
        return Path(name)
    for cand in (Path.cwd() / EMBEDDED_DIR, Path(__file__).resolve().parents[2] / EMBEDDED_DIR):
        if (cand / "config.json").exists():
            return cand
    from negfree.common.models import prepare_model

    return prepare_model("embedded", scratch / "smollm2-135m-instruct")


def bench_prompts(tok, n: int) -> list[list[int]]:
    from negfree.data.embedded import build_splits
    from negfree.data.tokenize import render_prompt

    train = build_splits(max(n, 256), 64, 0)["train"]
    if n > len(train):
        raise ValueError(f"--prompts {n}: the embedded training split has {len(train)} prompts")
    return [tok(render_prompt(tok, r["prompt"]), add_special_tokens=False)["input_ids"] for r in train[:n]]


def _timed(engine, prompts, seeds, batch_size: int, kw: dict) -> tuple[dict, list[str]]:
    start, texts, n_tokens = time.perf_counter(), [], 0
    for b in range(0, len(prompts), batch_size):
        for text, n in engine.sample(prompts[b:b + batch_size], seeds[b:b + batch_size], **kw):
            texts.append(text)
            n_tokens += n
    seconds = time.perf_counter() - start
    return {"batch_size": batch_size, "generated_tokens": n_tokens, "seconds": round(seconds, 3),
            "tokens_per_second": round(n_tokens / seconds, 2)}, texts


def _vllm_row(model_dir, prompts, seeds, kw) -> dict:
    if not torch.cuda.is_available():
        return {"mode": "vllm", "skipped": "no CUDA GPU on this machine"}
    try:
        import vllm  # noqa: F401
    except ImportError:
        return {"mode": "vllm", "skipped": "vllm is not installed"}
    from negfree.generate.negatives import VllmBackend

    engine = VllmBackend(model_dir, seed=0)
    engine.sample(prompts[:1], seeds[:1], **{**kw, "max_new_tokens": 2})     # warm-up
    row, _ = _timed(engine, prompts, seeds, len(prompts), kw)
    return {"mode": "vllm", **row}


def run(model_dir: Path, *, n_prompts: int, max_new_tokens: int, batch_size: int, temperature: float,
        seed: int, with_vllm: bool) -> dict:
    from negfree.generate.negatives import TransformersBackend, sample_seed

    engine = TransformersBackend(model_dir)
    prompts = bench_prompts(engine.tok, n_prompts)
    seeds = [sample_seed(seed, f"bench-{i}", 0) for i in range(n_prompts)]
    kw = dict(temperature=temperature, top_p=1.0, top_k=50, max_new_tokens=max_new_tokens)
    engine.sample(prompts[:2], seeds[:2], **{**kw, "max_new_tokens": 2})     # warm-up (first-call costs)
    batched, texts_b = _timed(engine, prompts, seeds, batch_size, kw)
    single, texts_s = _timed(engine, prompts, seeds, 1, kw)
    rows = [{"mode": "batched", **batched}, {"mode": "one_at_a_time", **single}]
    if with_vllm:
        rows.append(_vllm_row(model_dir, prompts, seeds, kw))
    return {
        "model": str(model_dir), "device": str(engine.device), "prompts": n_prompts,
        "max_new_tokens": max_new_tokens, "temperature": temperature, "seed": seed,
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "rows": rows,
        "speedup_batched_vs_one_at_a_time": round(batched["tokens_per_second"] / single["tokens_per_second"], 2),
        "identical_outputs": texts_b == texts_s,
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="negfree bench generate", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="embedded", help="'embedded' or a model directory")
    p.add_argument("--prompts", type=int, default=16, help="first N embedded training prompts")
    p.add_argument("--max-new-tokens", type=int, default=32, help="tokens generated per answer at most")
    p.add_argument("--batch-size", type=int, default=None, help="prompts per batch (default: all of them)")
    p.add_argument("--temperature", type=float, default=0.7, help="dft.txt B.5 default")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (per-sample seeds derive from it)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", help="write the result here as well")
    p.add_argument("--vllm", action="store_true", help="add a vLLM row (GPU with vllm installed)")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    for flag, value in (("--prompts", args.prompts), ("--max-new-tokens", args.max_new_tokens),
                        ("--batch-size", args.batch_size or 1), ("--threads", args.threads or 1)):
        if value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="negfree-bench-") as scratch:
        model_dir = resolve_model(args.model, Path(scratch))
        result = run(model_dir, n_prompts=args.prompts, max_new_tokens=args.max_new_tokens,
                     batch_size=args.batch_size or args.prompts, temperature=args.temperature,
                     seed=args.seed, with_vllm=args.vllm)
    for row in result["rows"]:
        if "skipped" in row:
            print(f"{row['mode']:>14}: skipped ({row['skipped']})")
        else:
            print(f"{row['mode']:>14}: {row['tokens_per_second']:8.1f} tokens/s  "
                  f"({row['generated_tokens']} tokens in {row['seconds']} s, batch {row['batch_size']})")
    print(f"batched / one at a time: {result['speedup_batched_vs_one_at_a_time']}x "
          f"(identical outputs: {result['identical_outputs']})")
    return emit(result, args.json, echo=False)       # the lines above are its printout


if __name__ == "__main__":
    main()
