"""`make gpu-check`: the first command to run on a GPU machine. Offline, about 2-4 minutes.

    make gpu-check                          # = PYTHONPATH=. python3 -m negfree.bench.gpu_check
    python -m negfree.bench.gpu_check --cpu       # the same stages on CPU: tiny model, 2 steps (the test)

It needs only torch, transformers, accelerate, tokenizers and safetensors, run from the
source tree: no venv, no registry, no hub. lm-eval and vLLM are used when installed and
reported as skipped when not. The models are built from configs with random weights (right
for device, dtype, speed and memory; not for quality): a tiny Llama for correctness and a
1.1B Llama (TinyLlama's shape, vocabulary 32000) for bf16 tokens/s and peak memory. Stages:

- imports: the package's training, scoring and generation modules import without the
  optional stacks;
- score: reference log-probs (negfree.score.reference) finite, <= 0, within tolerance of fp32;
- train: 10 steps each of sft, dft, dft2, dpo, ift, bnf, kto through the real
  negfree.train.loop.train() in bf16, one process per GPU under FSDP
  (configs/accelerate/fsdp.yaml) when two or more GPUs are visible. Checked: every loss and
  gradient norm finite, every matmul (F.linear: each Linear and the chunked output head)
  computed in bf16 on the GPU, final weights written, finite and changed, the process count,
  and the SFT loss going down;
- generate: negfree.generate.negatives (transformers backend; vLLM too when installed);
- evaluate: the offline lm-eval twin on the SFT checkpoint (lm-eval installed only).

Prints one table and writes ``results/bench/gpu_check.json`` (``--cpu``:
``gpu_check_cpu.json``). Exit status 1 when a stage failed. Without a GPU (and without
``--cpu``) it says so in one line and exits 0.
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]   # the repository root
METHODS = ("sft", "dft", "dft2", "dpo", "ift", "bnf", "kto")
OPTIONAL = ("vllm", "lm_eval", "datasets", "snakemake", "gguf")   # absent on a bare GPU node
# TinyLlama-1.1B's shape (Llama-2 vocabulary, grouped-query attention): 1.10B parameters.
BIG = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
           num_key_value_heads=4, vocab_size=32000)
BIG_METHODS = ("sft", "dpo")
# Stages whose matmuls must compute in bf16 on a GPU (issue 14: every forward under the same
# autocast); the others are expected in fp32. On CPU everything is fp32.
BF16_STAGES = {"train", "score", "generate", "evaluate"}


# ----------------------------------------------------------------------------- observing
def _dtype_observer():
    """A TorchFunctionMode that counts (dtype, device) of every F.linear output: each nn.Linear
    and the chunked head's projection. That is what the matmuls computed in, whatever the
    weights' dtype (autocast, FSDP2 mixed precision or bf16 weights)."""
    import torch
    from torch.overrides import TorchFunctionMode

    linear = torch.nn.functional.linear

    class Observer(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.seen: dict[str, int] = {}

        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func is linear and isinstance(out, torch.Tensor):
                key = f"{str(out.dtype).removeprefix('torch.')}@{out.device.type}"
                self.seen[key] = self.seen.get(key, 0) + 1
            return out

    return Observer()


def _expected(stage: str, device: str) -> str:
    return f"{'bfloat16' if device == 'cuda' and stage in BF16_STAGES else 'float32'}@{device}"


def _compute_ok(seen: dict, expect: str) -> tuple[bool, str]:
    if not seen:
        return False, "no matmul observed"
    bad = sorted(k for k in seen if k != expect)
    return (not bad), ("" if not bad else f"matmuls in {', '.join(bad)}, expected {expect}")


def _peak_gb(device: str):
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None


def _reset_peak(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _row(stage, method, model, passed, note="", tokens_per_s=None, peak_gpu_gb=None, seconds=None, **details):
    return {"stage": stage, "method": method, "model": model, "passed": passed, "tokens_per_s": tokens_per_s,
            "peak_gpu_gb": peak_gpu_gb, "seconds": seconds, "note": note, "details": details}


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"[:200]


# ----------------------------------------------------------------------------- models and data
def _big_model(out: Path, tok_dir: Path, device: str) -> tuple[Path, int]:
    """The 1.1B Llama, random bf16 weights, with the tiny model's tokenizer (the model's vocabulary
    is larger than the tokenizer's; only the tokenizer's ids are ever fed)."""
    import shutil

    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    cfg = LlamaConfig(**BIG, max_position_embeddings=2048, tie_word_embeddings=False,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    with torch.device(device):   # random init of 1.1B parameters is seconds on a GPU, minutes on a CPU
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.generation_config.pad_token_id = tok.pad_token_id
    n_params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out)
    del model
    for f in tok_dir.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy(f, out / f.name)
    return out, n_params


def _records(data_dir: Path, n: int, long: bool) -> list[dict]:
    """``n`` embedded records, each with 3 negatives (other records' answers, no generation needed).
    ``long``: answers of 32 concatenated positives (about 420 tokens), for the throughput runs."""
    from negfree.data.schema import load_jsonl

    recs = load_jsonl(data_dir / "train.jsonl")[:n]
    n = len(recs)
    if long:
        recs = [{**r, "positive": " ".join(recs[(i + k) % n]["positive"] for k in range(32))}
                for i, r in enumerate(recs)]
    for i, r in enumerate(recs):
        r["negatives"] = [recs[(i + k) % n]["positive"] for k in (1, 2, 3)]
    return recs


def _score_stage(model_dir: Path, label: str, records: list[dict], out: Path, device: str, expect: str,
                 max_len: int, ref_device: str = "cpu") -> dict:
    import torch

    from negfree.common.models import load_model, load_tokenizer
    from negfree.data.tokenize import encode, render_prompt
    from negfree.score.reference import answer_token_logprobs, answers_of, score_records

    _reset_peak(device)
    obs = _dtype_observer()
    t0 = time.time()
    with obs:
        manifest = score_records(model_dir, records, out, max_len=max_len)
    dt = time.time() - t0
    peak = _peak_gb(device)
    tok = load_tokenizer(model_dir)
    encs = [encode(tok, render_prompt(tok, r["prompt"]), a, max_len=max_len)
            for i, r in enumerate(records) for _, a in answers_of(records, i, True)]
    scored = [json.loads(x) for x in out.read_text().splitlines()]
    values = [v for r in scored for k in ("positive", "mismatched") for v in r["ref"][k]]
    values += [v for r in scored for neg in r["ref"]["negatives"] for v in neg]
    finite = all(math.isfinite(v) and v <= 1e-6 for v in values)
    ok_compute, why = _compute_ok(obs.seen, expect)
    # the same positives in fp32 (on the CPU; the 1.1B model on the GPU, a CPU takes minutes):
    # the scored numbers must agree (bf16: within 0.25 nats per token)
    k = min(4, len(records))
    pos = [encode(tok, render_prompt(tok, r["prompt"]), r["positive"], max_len=max_len) for r in records[:k]]
    fp32 = load_model(model_dir, dtype=torch.float32, device=ref_device).eval()
    ref = answer_token_logprobs(fp32, [e.ids for e in pos], [e.answer_start for e in pos], tok.pad_token_id)
    del fp32
    diff = max(abs(a - b) for r, cr in zip(scored[:k], ref) for a, b in zip(r["ref"]["positive"], cr))
    tol = 0.25 if expect.startswith("bfloat16") else 1e-4   # a misaligned or unmasked token is off by nats
    passed = bool(finite and ok_compute and manifest["sequences"] == len(encs) and diff <= tol)
    note = why or ("" if finite else "non-finite or positive log-prob")
    if diff > tol:
        note = (note + "; " if note else "") + f"max |d logp| vs fp32 ({ref_device}) {diff:.3g} > {tol}"
    return _row("score", "-", label, passed, note or f"max |d logp| vs fp32 ({ref_device}) {diff:.2g}",
                round(sum(len(e.ids) for e in encs) / dt, 1), peak, round(dt, 1), sequences=len(encs),
                compute=obs.seen, max_abs_diff_vs_fp32=diff, fp32_on=ref_device)


def big_stages(work: Path, tiny: Path, device: str, expect: str, world: int, base: dict) -> tuple[list, list]:
    """Build the 1.1B model and score long records with it (rows), and its training jobs (sft, dpo;
    8 prompts per process, micro-batches of 4, answers of about 420 tokens)."""
    label = "llama-1.1b"
    t0 = time.time()
    try:
        big, n_params = _big_model(work / "big", tiny, device)
    except Exception as e:
        return [_row("build", "-", label, False, _error(e))], []
    rows = [_row("build", "-", label, True, f"{n_params / 1e9:.2f}B parameters ({BIG['num_hidden_layers']} layers, "
                 f"hidden {BIG['hidden_size']}, vocab {BIG['vocab_size']}), random bf16",
                 seconds=round(time.time() - t0, 1), parameters=n_params)]
    recs = _records(work / "data", max(16, 8 * world), long=True)
    try:
        rows.append(_score_stage(big, label, recs, work / "big_scored.jsonl", device, expect, max_len=512,
                                 ref_device=device))
    except Exception as e:
        return rows + [_row("score", "-", label, False, _error(e))], []
    def job(m, packing=False):
        out = str(work / "big_runs" / (m + ("_packed" if packing else "")))
        return {"model_label": label + (" (packed)" if packing else ""), "method": m, "out_dir": out,
                "cfg": {**base, "batch_size": 8 * world, "micro_batch_size": 4, "num_negatives": 1, "max_len": 512,
                        "lr": 1e-5, "method": m, "model": str(big), "data": str(work / "big_scored.jsonl"),
                        "out_dir": out, "packing": packing}}

    # packed vs padded tokens/s of the same runs: the GPU side of bench train's packed_speedup
    return rows, [job(m) for m in BIG_METHODS] + [job(m, packing=True) for m in BIG_METHODS]


# ----------------------------------------------------------------------------- training
def train_jobs(spec: dict) -> list[dict]:
    """Run every training job of ``spec`` through negfree.train.loop.train() and check it.
    Runs in this process (CPU, one GPU) or in each process of an FSDP launch (rank 0 reports)."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    from negfree.train.loop import DEFAULTS, train

    rows = []
    for job in spec["jobs"]:
        label, method, out = job["model_label"], job["method"], Path(job["out_dir"])
        if spec["deadline"] is not None and time.time() > spec["deadline"]:
            rows.append(_row("train", method, label, None, "time budget spent"))
            continue
        # keys this version of the loop does not know are left out (and listed), not an error
        known = set(DEFAULTS) | {"method", "model", "data", "out_dir"}
        cfg = {k: v for k, v in job["cfg"].items() if k in known}
        gc.collect()   # the previous run's model and optimizer: out of the next run's peak memory
        if spec["device"] == "cuda":
            torch.cuda.empty_cache()
        obs = _dtype_observer()
        t0 = time.time()
        try:
            with obs:
                train(cfg)
        except Exception as e:   # report and go on: one broken method must not hide the others
            rows.append(_row("train", method, label, False, _error(e), seconds=round(time.time() - t0, 1)))
            continue
        dt = time.time() - t0
        metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        perf = [json.loads(x) for x in (out / "perf.jsonl").read_text().splitlines()]
        info = json.loads((out / "run_info.json").read_text())
        problems = []
        if len(metrics) != cfg["max_steps"]:
            problems.append(f"{len(metrics)} of {cfg['max_steps']} steps logged")
        if not all(math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"]) for m in metrics):
            problems.append("non-finite loss or gradient norm")
        if info["processes"] != spec["world"]:
            problems.append(f"{info['processes']} processes, expected {spec['world']}")
        ok_compute, why = _compute_ok(obs.seen, spec["expect"])
        if not ok_compute:
            problems.append(why)
        files = sorted((out / "final").glob("*.safetensors"))
        if not files:
            problems.append("no final/*.safetensors")
        elif job.get("check_weights"):
            final = {k: v for f in files for k, v in load_file(str(f)).items()}
            start = {k: v for f in Path(cfg["model"]).glob("*.safetensors") for k, v in load_file(str(f)).items()}
            if final.keys() != start.keys() or not all(torch.isfinite(v).all() for v in final.values()):
                problems.append("final weights: keys differ from the model's or not finite")
            elif all(torch.equal(final[k].float(), start[k].float()) for k in final):
                problems.append("final weights equal the initial ones")
        losses = [m["loss"] for m in metrics]
        if method == "sft" and len(losses) >= 4 and not sum(losses[-2:]) < sum(losses[:2]):
            problems.append(f"SFT loss did not go down ({losses[0]:.3f} -> {losses[-1]:.3f})")
        timed = perf[1:] or perf   # the first step pays for warm-up
        tps = round(statistics.median(p["tokens_per_s"] for p in timed), 1) if timed else None
        peak = max((p["peak_memory_mb"] for p in perf), default=0) / 1024 if spec["device"] == "cuda" else None
        note = "; ".join(problems) or (f"loss {losses[0]:.3f} -> {losses[-1]:.3f}" if losses else "")
        if info["processes"] > 1:   # host memory at load, gradients held under accumulation: the FSDP path
            note += (f"; host MB to load per rank {info.get('host_mb_for_loading_per_rank')}, gradient MB held "
                     f"between micro-batches {info.get('gradient_mb_held_between_micro_batches')} "
                     f"(fp32 model {info.get('model_fp32_mb')} MB)")
        rows.append(_row("train", method, label, not problems, note, tps, peak and round(peak, 2), round(dt, 1),
                         losses=losses, grad_norms=[m["grad_norm"] for m in metrics], compute=obs.seen,
                         processes=info["processes"], chunked_head=info.get("chunked_head"),
                         distributed=info.get("distributed"), parameter_dtype=info.get("parameter_dtype"),
                         host_mb_for_loading_per_rank=info.get("host_mb_for_loading_per_rank"),
                         gradient_mb_held_between_micro_batches=info.get("gradient_mb_held_between_micro_batches"),
                         model_fp32_mb=info.get("model_fp32_mb"),
                         ignored_keys=sorted(set(job["cfg"]) - known),
                         saved_dtypes=sorted({h.get_slice(k).get_dtype() for f in files[:1]
                                              for h in [safe_open(str(f), "pt")] for k in h.keys()})))
    return rows


PACKED_LOSS_RTOL = 2e-2   # bf16: the same step-1 loss from the same weights, up to bf16 summation order


def compare_packed(rows: list[dict]) -> None:
    """Each ``<model> (packed)`` training row against ``<model>``'s row of the same method: the first
    step's loss must agree (same weights, same data; packing changes no value); the note gets packed
    / padded tokens per second. A packed row whose loss disagrees is failed."""
    by = {(r["model"], r["method"]): r for r in rows if r.get("stage") == "train"}
    for (model, method), r in by.items():
        if " (packed" not in model or not r.get("passed"):
            continue
        ref = by.get((model[:model.index(" (packed")], method))
        la, lb = (ref or {}).get("details", {}).get("losses"), r.get("details", {}).get("losses")
        if not ref or not ref.get("passed") or not la or not lb:
            continue
        a, b = la[0], lb[0]
        agree = abs(a - b) <= PACKED_LOSS_RTOL * max(abs(a), abs(b), 1e-6)
        speed = (f"; packed / padded tokens/s {r['tokens_per_s'] / ref['tokens_per_s']:.2f}"
                 if r.get("tokens_per_s") and ref.get("tokens_per_s") else "")
        r["note"] = f"step-1 loss {b:.4f} vs padded {a:.4f}" + speed
        if not agree:
            r["passed"] = False
            r["note"] += f": differs by more than {PACKED_LOSS_RTOL:.0%}"


def _train_fsdp(spec: dict, work: Path, nproc: int) -> list[dict]:
    """One accelerate launch (FSDP, one process per GPU) that runs every training job."""
    spec_path, rows_path = work / "train_spec.json", work / "train_rows.json"
    # no deadline inside: processes deciding apart would leave the others waiting in a collective
    spec_path.write_text(json.dumps({**spec, "deadline": None, "rows_out": str(rows_path)}))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(ROOT / "configs/accelerate/fsdp.yaml"), "--num_processes", str(nproc), "--main_process_port", "0",
           "-m", "negfree.bench.gpu_check", "--worker", str(spec_path)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    timeout = max(60, spec["deadline"] - time.time() + 60)
    # its own session, so a timeout ends the launcher and every worker it started
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        tail = (err or out)[-600:]
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        tail = f"FSDP launch timed out after {timeout:.0f} s"
    if rows_path.exists():
        return json.loads(rows_path.read_text())
    last = tail.strip().splitlines()[-1] if tail.strip() else ""
    why = f"FSDP launch exit {p.returncode}: {last}"
    return [_row("train", j["method"], j["model_label"], False, why[:200], log_tail=tail) for j in spec["jobs"]]


def _worker(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    rows = train_jobs(spec)
    if int(os.environ.get("RANK", "0")) == 0:
        Path(spec["rows_out"]).write_text(json.dumps(rows))


# ----------------------------------------------------------------------------- generate, evaluate
def _generate_stage(model_dir: Path, records: list[dict], out: Path, device: str, expect: str, backend: str):
    from negfree.generate.negatives import generate_negatives

    _reset_peak(device)
    obs = _dtype_observer()
    t0 = time.time()
    kw = {"device": device} if backend == "transformers" else {}
    with obs:
        m = generate_negatives(model_dir, records, out, num=2, temperature=0.7, max_new_tokens=32,
                               batch_size=len(records), backend=backend, progress=False, **kw)
    dt = time.time() - t0
    got = [json.loads(x) for x in out.read_text().splitlines()]
    problems = []
    if len(got) != len(records) or any(len(r["negatives"]) != 2 for r in got):
        problems.append("not 2 negatives for every prompt")
    if backend == "transformers":
        if not str(m["device_used"]).startswith(device):
            problems.append(f"ran on {m['device_used']}, expected {device}")
        ok, why = _compute_ok(obs.seen, expect)
        if not ok:
            problems.append(why)
    note = "; ".join(problems) or f"{m['generated_tokens']} tokens, dtype {m['dtype']}"
    return _row("generate", backend, "tiny", not problems, note, m["tokens_per_second"], _peak_gb(device),
                round(dt, 1), compute=obs.seen, manifest_dtype=m["dtype"])


def _evaluate_stage(model_dir: Path, label: str, test_jsonl: Path, out: Path, device: str, expect: str):
    from negfree.evaluate.local import evaluate_local

    _reset_peak(device)
    obs = _dtype_observer()
    t0 = time.time()
    with obs:
        rec = evaluate_local(model_dir, test_jsonl, out, limit=4, batch_size=4, device=device)
    dt = time.time() - t0
    values = [v for task in rec["tasks"].values() for v in task.values() if isinstance(v, (int, float))]
    problems = [] if values and all(math.isfinite(v) for v in values) else ["no finite metric"]
    ok, why = _compute_ok(obs.seen, expect)
    if not ok:
        problems.append(why)
    return _row("evaluate", "lm-eval", label, not problems,
                "; ".join(problems) or f"{len(values)} metrics", None, _peak_gb(device), round(dt, 1),
                tasks=rec["tasks"], compute=obs.seen)


# ----------------------------------------------------------------------------- report
def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "transformers", "accelerate", "safetensors", "tokenizers", "lm_eval", "vllm",
                "datasets", "snakemake", "gguf"):
        try:
            out[pkg] = version(pkg) if importlib.util.find_spec(pkg) is not None else None
        except (PackageNotFoundError, ValueError):
            out[pkg] = None
    return out


def table(rows: list[dict]) -> str:
    head = ("stage", "method", "model", "passed", "tokens/s", "peak GPU GB", "note")
    lines = [[r["stage"], r["method"], r["model"], {True: "yes", False: "FAIL", None: "skip"}[r["passed"]],
              "-" if r["tokens_per_s"] is None else f"{r['tokens_per_s']:.0f}",
              "-" if r["peak_gpu_gb"] is None else f"{r['peak_gpu_gb']:.2f}", r["note"]] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
    fmt = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()   # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * w for w in widths])] + [fmt(c) for c in lines])


# ----------------------------------------------------------------------------- main
def run(args) -> int:
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()   # one table is the output, not a bar per model load

    t_start = time.time()
    deadline = t_start + args.budget_s
    cuda = not args.cpu
    device = "cuda" if cuda else "cpu"
    n_gpus = torch.cuda.device_count() if cuda else 0
    steps = args.steps or (10 if cuda else 2)
    rows = []

    imported = []
    for mod in ("negfree.cli", "negfree.common.models", "negfree.score.reference", "negfree.generate.negatives", "negfree.train.loop"):
        try:
            __import__(mod)
            imported.append(mod)
        except Exception as e:
            rows.append(_row("imports", "-", "-", False, f"{mod}: {_error(e)}"))
    absent = [m for m in OPTIONAL if importlib.util.find_spec(m) is None]
    if len(imported) == 5:
        rows.append(_row("imports", "-", "-", True, "absent: " + (", ".join(absent) or "none")))
    else:
        return _finish(args, rows, t_start, device, n_gpus, 1, steps)

    from negfree.bench.tiny import make_tiny_model
    from negfree.data.embedded import make_embedded

    world = args.processes or (n_gpus if n_gpus >= 2 else 1)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        work = Path(args.work or tmp)
        try:
            make_embedded(work / "data", n_train=128, n_test=16)
            size = dict(hidden=128, layers=2, heads=2) if cuda else {}   # head_dim 64 on GPU: what vLLM takes
            tiny = make_tiny_model(work / "tiny", work / "data", **size)
        except Exception as e:
            rows.append(_row("setup", "-", "tiny", False, _error(e)))
        else:
            rows += _stages(args, work, tiny, device, world, steps, deadline)
    return _finish(args, rows, t_start, device, n_gpus, world, steps)


def _stages(args, work: Path, tiny: Path, device: str, world: int, steps: int, deadline: float):
    """Every stage after the tiny model exists: score, train, generate, evaluate, the 1.1B model."""
    import torch

    from negfree.common.io import write_jsonl

    cuda = device == "cuda"
    methods = args.methods.split(",") if args.methods else list(METHODS)
    rows = []
    per_rank, micro = 4, 2
    recs = _records(work / "data", max(16, per_rank * world), long=False)
    write_jsonl(work / "raw.jsonl", recs)
    try:
        rows.append(_score_stage(tiny, "tiny", recs, work / "scored.jsonl", device, _expected("score", device),
                                 max_len=128))
    except Exception as e:
        rows.append(_row("score", "-", "tiny", False, _error(e)))

    base = {"batch_size": per_rank * world, "micro_batch_size": micro, "num_negatives": 2, "max_len": 128,
            "max_steps": steps, "epochs": 100, "lr": 1e-3, "scheduler": "constant", "warmup_ratio": 0.0,
            "mixed_precision": "bf16" if cuda else "no"}
    jobs = [{"model_label": "tiny", "method": m, "out_dir": str(work / "runs" / m), "check_weights": True,
             "cfg": {**base, "method": m, "model": str(tiny), "data": str(work / "scored.jsonl"),
                     "out_dir": str(work / "runs" / m)}} for m in methods]
    if "dft" in methods:   # packed rows (train.packing) against the padded dft run: step 1's loss
        jobs.append({"model_label": "tiny (packed)", "method": "dft", "out_dir": str(work / "runs" / "dft_packed"),
                     "check_weights": True, "cfg": {**base, "method": "dft", "model": str(tiny), "packing": True,
                                                    "data": str(work / "scored.jsonl"),
                                                    "out_dir": str(work / "runs" / "dft_packed")}})
        # flex_attention over several packed rows (pack_capacity): the varlen kernel that is right with
        # more than one row; its backward has no CPU kernel in torch, so only a GPU checks it
        if cuda:
            jobs.append({"model_label": "tiny (packed, flex, 2 rows)", "method": "dft", "check_weights": True,
                         "out_dir": str(work / "runs" / "dft_flex"),
                         "cfg": {**base, "method": "dft", "model": str(tiny), "packing": True, "pack_capacity": 128,
                                 "attn_implementation": "flex_attention", "data": str(work / "scored.jsonl"),
                                 "out_dir": str(work / "runs" / "dft_flex")}})

    big_rows = []
    if not cuda:
        big_rows.append(_row("build", "-", "llama-1.1b", None, "GPU only"))
    elif args.no_big:
        big_rows.append(_row("build", "-", "llama-1.1b", None, "--no-big"))
    elif deadline - time.time() < 150:
        big_rows.append(_row("build", "-", "llama-1.1b", None, "time budget spent"))
    else:
        big_rows, big_jobs = big_stages(work, tiny, device, _expected("score", device), world, base)
        jobs += big_jobs
    if cuda:
        torch.cuda.empty_cache()
    spec = {"jobs": jobs, "deadline": deadline, "world": world, "device": device, "expect": _expected("train", device)}
    train_rows = _train_fsdp(spec, work, world) if world > 1 else train_jobs(spec)
    compare_packed(train_rows)
    rows += [r for r in train_rows if r["model"].startswith("tiny")]

    test = _records(work / "data", 4, long=False)
    try:
        rows.append(_generate_stage(tiny, test, work / "gen.jsonl", device, _expected("generate", device),
                                    "transformers"))
    except Exception as e:
        rows.append(_row("generate", "transformers", "tiny", False, _error(e)))
    if not cuda or importlib.util.find_spec("vllm") is None:
        rows.append(_row("generate", "vllm", "tiny", None, "needs a GPU" if not cuda else "vllm not installed"))
    else:
        try:
            rows.append(_generate_stage(tiny, test, work / "gen_vllm.jsonl", device, _expected("generate", device),
                                        "vllm"))
        except Exception as e:
            rows.append(_row("generate", "vllm", "tiny", False, _error(e)))

    sft = work / "runs" / "sft" / "final"
    if importlib.util.find_spec("lm_eval") is None:
        rows.append(_row("evaluate", "lm-eval", "tiny", None, "lm_eval not installed"))
    elif time.time() > deadline:
        rows.append(_row("evaluate", "lm-eval", "tiny", None, "time budget spent"))
    else:
        try:
            rows.append(_evaluate_stage(sft if sft.exists() else tiny, "tiny (sft)" if sft.exists() else "tiny",
                                        work / "data" / "test.jsonl",
                                        work / "eval" / "negfree_offline.json", device,
                                        _expected("evaluate", device)))
        except Exception as e:
            rows.append(_row("evaluate", "lm-eval", "tiny", False, _error(e)))
    return rows + big_rows + [r for r in train_rows if not r["model"].startswith("tiny")]


def _finish(args, rows, t_start, device, n_gpus, world, steps) -> int:
    import torch

    ok = all(r["passed"] is not False for r in rows)
    out = Path(args.out or ("results/bench/gpu_check_cpu.json" if args.cpu else "results/bench/gpu_check.json"))
    doc = {"passed": ok, "mode": "cpu" if args.cpu else "gpu", "steps": steps,
           "gpus": [torch.cuda.get_device_name(i) for i in range(n_gpus)],
           "processes": world, "cuda": torch.version.cuda,
           "bf16_supported": device == "cuda" and torch.cuda.is_bf16_supported(),
           "versions": _versions(), "python": sys.version.split()[0],
           "wall_seconds": round(time.time() - t_start, 1), "stages": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    where = ", ".join(doc["gpus"]) or "CPU"
    print(f"gpu-check on {where} ({doc['processes']} process(es), {steps} steps, "
          f"{doc['wall_seconds']} s): {'all passed' if ok else 'FAILED'}")
    print(table(rows))
    print(f"-> {out}   (tokens/s: prompt+answer tokens for score and train, new tokens for generate)")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m negfree.bench.gpu_check", description=__doc__.splitlines()[0])
    p.add_argument("--cpu", action="store_true", default=os.environ.get("NEGFREE_GPU_CHECK_CPU") == "1",
                   help="run the stages on CPU (tiny model only, 2 steps); also NEGFREE_GPU_CHECK_CPU=1")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per method (10 on GPU, 2 on CPU)")
    p.add_argument("--methods", default=None, help=f"comma-separated subset of {','.join(METHODS)}")
    p.add_argument("--no-big", action="store_true", help="skip the 1.1B model")
    p.add_argument("--budget-s", type=float, default=270, help="stop starting stages after this many seconds")
    p.add_argument("--out", default=None, help="JSON path (default results/bench/gpu_check.json, "
                                               "--cpu: results/bench/gpu_check_cpu.json)")
    p.add_argument("--work", default=None, help="keep models and runs here (default: a temporary directory)")
    p.add_argument("--processes", type=int, default=None,
                   help="training processes (default: one per GPU; > 1 launches FSDP, on CPU over gloo)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)   # one process of the FSDP launch
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.worker:
        _worker(args.worker)
        return 0
    if args.cpu:   # before torch looks for GPUs: the loop and the stages then see none
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    try:
        import torch
    except ImportError:
        gpu = Path("/dev/nvidiactl").exists()   # a GPU machine without torch is a broken setup
        print(f"gpu-check: torch is not importable by {sys.executable}; "
              + ("this machine has an NVIDIA driver: make gpu-check PYTHON=<a python with CUDA torch>" if gpu
                 else "no GPU to check here"))
        return 1 if gpu else 0
    if not args.cpu and not torch.cuda.is_available():
        print(f"gpu-check: no CUDA GPU visible (torch {torch.__version__}); nothing to check "
              f"(--cpu runs the same stages on CPU)")
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
