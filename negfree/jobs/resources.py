"""What each GPU job of a DAG needs, before anything is submitted: tokens, per-GPU peak memory,
host memory per rank, GPU-hours and disk. `negfree plan` (negfree/jobs/plan.py) prints it; the
workflow asks it for each job's Slurm ``runtime`` and ``mem_mb``; negfree.jobs.dag refuses a DAG
whose estimated per-GPU peak exceeds its GPU.

Per job (train, generate, score, evaluate, and the analyses that load a model): estimated
tokens, per-GPU peak memory, host memory per rank, GPU-hours and disk (what the job leaves;
for training also its scratch peak); per paper, the sums. ``--json`` prints the per-job list
(what its readers parse); ``main`` given ``args.by_paper`` prints instead an object of that
list, the per-paper sums and the total (and ``seeds_preset``). The seeds preset (configs/seeds.yaml) is
priced per paper in every text plan: the extra runs, jobs and GPU-hours it adds; ``--seeds FILE``
plans the DAG with it. The workflow asks the same estimates for each job's
Slurm ``runtime`` and ``mem_mb`` (times ``SAFETY``), and ``negfree.jobs.dag`` refuses a DAG whose
estimated per-GPU peak exceeds the GPU's memory. Everything is arithmetic over two small
tables (``MODELS``, ``DATASETS``), the experiment's config and its ``launch:`` section; nothing
is downloaded or loaded.

The model, with its sources (summarised in README.md, "Running on a cluster"):

* **Training, per GPU** (bf16 compute, fp32 master weights, fp32 AdamW; FSDP2 shards the
  fp32 state over the N training GPUs, DDP or one process keeps it whole):
  master weights 4 B + gradients 4 B + AdamW m and v 8 B = 16 B/param, divided by N under
  FSDP2 (Rajbhandari et al. 2020, ZeRO Sec. 3: "16 bytes per parameter" of mixed-precision
  Adam). FSDP2 gathers bf16 parameters one decoder layer at a time (two in flight: the
  current layer and the prefetched next), plus the layer's fp32 gradient before its
  reduce-scatter, plus the root module (embeddings and output head, unsharded for the whole
  step). DDP keeps a bf16 copy of the weights for autocast (2 B/param). Gradient accumulation
  adds nothing: under FSDP2 the trainer reduce-scatters after every micro-batch (accelerate's
  ``sync_each_batch=True``), so no unsharded gradient lives between micro-batches; under DDP or
  one process the full fp32 gradient is the 4 B/param already counted.
  Activations: with gradient checkpointing, each layer's bf16 input (2 h B/token) for all L
  layers, plus one layer's recomputed activations, ``10 h + 8 I`` B/token (q, k, v, output,
  two norms in bf16, and the SwiGLU gate/up/act/product of width I; flash attention keeps no
  T x T scores; after Korthikanti et al. 2022, "Reducing Activation Recomputation", Sec. 4.1,
  re-derived for SwiGLU); without checkpointing, all L layers of them. Tokens per micro-batch
  are counted at ``max_len`` (padding to the longest record: the worst case).
  Logits: the chunked output head (``negfree/common/logprobs.py``) keeps one chunk of ``logit_chunk``
  positions x vocabulary in fp32 (logits, log-softmax, gradient: 12 B); where the trainer
  takes the full-logits path (FSDP, or an architecture outside ``PLAIN_HEAD_MODELS`` and
  ``SOFTCAP_HEAD_MODELS``) every
  token of the micro-batch has a vocabulary row: bf16 logits 2 B + fp32 copy 4 B + fp32
  log-softmax kept for backward 4 B + bf16 gradient 2 B = 12 B per element.
  Fixed: 2 GB (CUDA context, NCCL buffers), then +10% for allocator fragmentation.
* **Inference, per GPU** (scoring, generation, evaluation): bf16 weights (2 B/param), one
  layer's activations for the batch, the KV cache of a generation batch, and the logits
  (chunked head for scoring where allowed; full fp32 rows otherwise).
* **Host memory per rank**: 3 GB for a CUDA process (1.5 GB without a GPU), plus the model:
  training reads the checkpoint in the training parameter dtype, fp32 (4 B/param). Under FSDP
  (more than one training GPU) only the first rank reads it; every other rank builds the model
  on the meta device and receives its shard, 4 B/param / N at most, transiently; under DDP or
  one process every rank holds the whole fp32 model. Inference on a GPU reads the checkpoint in
  bf16 (2 B/param; fp32, 4 B, on the CPU). Training ranks also hold the training data as Python
  objects (about 34 B per stored float or token id, platform.md). ``est_host_mem_gb`` is the
  largest rank (the first); the job's ``mem_mb`` is the sum over its ranks.
* **Disk** (``est_disk_gb``: what the job leaves; decimal GB). Training: ``final/`` in the
  train key ``save_dtype`` (``base``, the default, is the base checkpoint's dtype: the
  ``torch_dtype`` (or ``dtype``) of its config.json, ``Arch.dtype`` in ``MODELS``, where every
  paper model is bf16: 2 B/param; ``float32`` 4 B; ``bfloat16`` 2 B), plus the tokenizer and the
  logs (a few MB, not counted); with ``keep_checkpoints_at_end`` also the kept checkpoints.
  A sharded accelerate checkpoint is fp32 parameters 4 B + AdamW m and v 8 B = 12 B/param (the
  scheduler, RNG states and DFT's log u, 8 B per record, are left out). While running
  (``est_scratch_peak_gb``): ``keep_checkpoints`` complete ones plus the one being written
  (``Checkpoints.save`` writes it under a temporary name before ``_prune`` removes the oldest),
  plus ``final/``: an upper bound, since the last checkpoint is written before the final step
  (the exact peak is the larger of (keep + 1) checkpoints and keep checkpoints + ``final/``).
  A pool (``negatives.jsonl``): its records' text at 4 B of JSON per token (``TEXT_BYTES``,
  about 4 characters of English per token; the same figure the host term uses). A scored pool:
  the pool's text again plus the reference log-prob of every answer token (the positive, each
  negative and KTO's mismatched positive; ``negfree score`` writes them per token whatever the
  method) at 21 B per float (``FLOAT_JSON_BYTES``: float32 values written as Python floats with
  a ", " separator, 17-19 digits each; measured 20.7 B on the scored pool of the tests'
  ``scored_pool`` fixture, 64 records under the tiny model, and 20.9 B / 22.4 B on float32
  samples of -Exp(1.5) / -Exp(0.05)). With ``generate.shards`` / ``score.shards`` > 1 the shard
  parts stay beside the gathered file: the pool's text again, or the floats again. Evaluation:
  the samples file, each document's prompt once (the log-likelihood tokens over
  ``LOGLIK_CHOICES`` choices per document) and each generation's prompt and answer, at 4 B per
  token; the result JSON is small. Figures and their CSVs count 0.
* **Throughput.** FLOPs per token of a forward pass: 2 x params + 2 x L x h x s (the causal
  attention of a sequence of mean length s; Kaplan et al. 2020, Table 1). Training: 3
  forwards' worth (forward + backward), one more with gradient checkpointing. Time = FLOPs /
  (MFU x peak bf16 dense TFLOPS): A100 SXM 80GB 312 TFLOPS, H100 SXM 80GB 989 TFLOPS (NVIDIA
  A100 and H100 datasheets, dense, without sparsity). MFU assumed: 0.35 training (FSDP with
  checkpointing; PyTorch FSDP paper, Zhao et al. 2023, reports 0.3-0.55 on A100), 0.40 for
  forward-only scoring and log-likelihood evaluation. Decoding is bandwidth-bound: each
  decode step reads the bf16 weights once for the whole batch, at 50% of the HBM bandwidth
  (A100 80GB SXM 2.039 TB/s, H100 SXM 3.35 TB/s, same datasheets), never faster than the
  compute bound above.
* **Tokens** use each dataset's mean prompt and answer lengths (``DATASETS``, our estimates
  from samples of the hub sets, rounded up), sampled negatives at ``max_new_tokens``, all
  capped at ``max_len``.
* **Padding and packing.** The weights' FLOPs are paid per computed position, so training
  and scoring tokens are multiplied by the positions per real token that ``negfree bench data``
  computes for the experiment's batch settings on ``LAYOUT_RECORDS`` UltraFeedback-shaped
  records (padded, length-bucketed, packed into one row or into rows of ``pack_capacity``;
  scoring sorted under its token budget), and the attention term by the query-key pairs
  computed over those of a varlen kernel (packed rows under sdpa are masked densely). The
  ``before`` estimate (``negfree plan`` prints it as the baseline) is the DAG as it ran before
  issue 15: padded micro-batches, scoring in record order, and plain FP32 without TF32 for
  scoring, generation and evaluation (A100 19.5, H100 67 TFLOPS, same datasheets; decoding
  reads 4 B per parameter).

These are estimates to size Slurm requests and to catch a config that cannot fit, not
measurements: ``SAFETY`` (1.5) multiplies runtime and host memory, and a job killed for memory
is retried with twice as much (``attempt``).
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

SAFETY = 1.5            # runtime and mem_mb asked of Slurm = estimate x SAFETY (x attempt for mem_mb)
BUDGET_GB = 70.0        # the per-GPU goal for paper jobs on 80 GB GPUs (headroom for the estimate's error)
FIXED_GPU_GB = 2.0      # CUDA context + NCCL buffers
FRAGMENTATION = 1.10    # caching-allocator fragmentation on top of the tensors
HOST_BASE_GB = {True: 3.0, False: 1.5}   # one process with / without CUDA
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
CHECKPOINT_BYTES = 12   # per param of a sharded accelerate checkpoint: fp32 weights + AdamW m, v
TEXT_BYTES = 4          # JSON text per token of prompt or answer
FLOAT_JSON_BYTES = 21   # one per-token log-prob in a JSON list (module docstring: measured)
LOGLIK_CHOICES = 4      # log-likelihood requests per lm-eval document (its prompt is written once)
FIGURE_RULES = ("score_distribution", "shift_figures")   # leave figures and small CSVs
MFU_TRAIN, MFU_FORWARD, BW_EFFICIENCY = 0.35, 0.40, 0.5
STARTUP_H = 0.15        # load + save per job (hours), added before the safety factor
LAYOUT_RECORDS = 2048   # synthetic records behind each experiment's padding and attention factors


@dataclass(frozen=True)
class Gpu:
    mem_gb: float
    bf16_tflops: float   # dense, from the vendor datasheet
    hbm_tbps: float
    source: str
    fp32_tflops: float = 0.0   # plain FP32 (no TF32), for the baseline estimate (``before``)


GPUS = {
    "a100-80gb": Gpu(80, 312, 2.039, "NVIDIA A100 Tensor Core GPU datasheet (SXM 80GB): BF16 312 TFLOPS, FP32 "
                     "19.5 TFLOPS, 2,039 GB/s", 19.5),
    "h100-80gb": Gpu(80, 989, 3.35, "NVIDIA H100 Tensor Core GPU datasheet (SXM): BF16 989 TFLOPS dense, FP32 67 "
                     "TFLOPS, 3.35 TB/s", 67),
}
# attn_implementation values whose packed attention pays only for each sequence's own blocks
VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3", "flex_attention")


@dataclass(frozen=True)
class Arch:
    params: int
    hidden: int
    layers: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool
    model_type: str
    source: str = ""
    dtype: str = "float32"   # the checkpoint's (config.json torch_dtype); transformers' default without one


# Hub ids the configs name: the model's config.json on huggingface.co (hidden_size,
# num_hidden_layers, intermediate_size, vocab_size, num_attention_heads, num_key_value_heads,
# head_dim, tie_word_embeddings, torch_dtype) and the parameter count its safetensors index reports.
MODELS = {
    "mistralai/Mistral-7B-v0.1": Arch(7_241_732_096, 4096, 32, 14336, 32000, 32, 8, 128, False, "mistral",
                                      "huggingface.co/mistralai/Mistral-7B-v0.1 config.json", "bfloat16"),
    "mistralai/Mistral-7B-Instruct-v0.2": Arch(7_241_732_096, 4096, 32, 14336, 32000, 32, 8, 128, False, "mistral",
                                               "huggingface.co/mistralai/Mistral-7B-Instruct-v0.2 config.json",
                                               "bfloat16"),
    "meta-llama/Meta-Llama-3-8B-Instruct": Arch(8_030_261_248, 4096, 32, 14336, 128256, 32, 8, 128, False, "llama",
                                                "huggingface.co/meta-llama/Meta-Llama-3-8B-Instruct config.json",
                                                "bfloat16"),
    "Qwen/Qwen2-7B-Instruct": Arch(7_615_616_512, 3584, 28, 18944, 152064, 28, 4, 128, False, "qwen2",
                                   "huggingface.co/Qwen/Qwen2-7B-Instruct config.json", "bfloat16"),
    "Qwen/Qwen2.5-0.5B": Arch(494_032_768, 896, 24, 4864, 151936, 14, 2, 64, True, "qwen2",
                              "huggingface.co/Qwen/Qwen2.5-0.5B config.json", "bfloat16"),
    "google/gemma-2-9b-it": Arch(9_241_705_984, 3584, 42, 14336, 256000, 16, 8, 256, True, "gemma2",
                                 "huggingface.co/google/gemma-2-9b-it config.json", "bfloat16"),
    # model.source: embedded (platform.md: 134.5M parameters once dequantised)
    "HuggingFaceTB/SmolLM2-135M-Instruct": Arch(134_515_008, 576, 30, 1536, 49152, 9, 3, 64, True, "llama",
                                                "huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct config.json",
                                                "bfloat16"),
}

# Hub datasets of configs/data/*.yaml: training rows (the dataset card's split size) and mean
# token lengths of prompt, chosen and rejected answer (our estimates, rounded up).
DATASETS = {
    "HuggingFaceH4/ultrafeedback_binarized": dict(rows=61_135, test=2_000, prompt=190, chosen=360, rejected=300,
                                                  source="dataset card: train_prefs 61,135, test_prefs 2,000"),
    "meta-math/MetaMathQA": dict(rows=395_000, test=0, prompt=120, chosen=250, rejected=250,
                                 source="dataset card / dft.txt Sec. 7: 395K"),
    "HuggingFaceH4/ultrachat_200k": dict(rows=207_865, test=23_110, prompt=160, chosen=1100, rejected=1100,
                                         source="dataset card: train_sft 207,865, test_sft 23,110"),
    "princeton-nlp/llama3-ultrafeedback-armorm": dict(rows=60_000, test=2_000, prompt=190, chosen=480, rejected=480,
                                                      source="dataset card: about 59.9k train rows (rounded up)"),
    "princeton-nlp/mistral-instruct-ultrafeedback": dict(rows=60_000, test=2_000, prompt=190, chosen=480,
                                                         rejected=480,
                                                         source="dataset card: about 59.7k train rows (rounded up)"),
    "princeton-nlp/gemma2-ultrafeedback-armorm": dict(rows=60_000, test=2_000, prompt=190, chosen=520, rejected=520,
                                                      source="dataset card: about 59.6k train rows (rounded up)"),
    "Anthropic/hh-rlhf": dict(rows=160_800, test=8_552, prompt=200, chosen=90, rejected=90,
                              source="dataset card: train 160,800, test 8,552"),
    "llamafactory/alpaca_en": dict(rows=0, test=52_002, prompt=30, chosen=70, rejected=0,
                                   source="Stanford Alpaca's 52,002 rows (an upper bound: LLaMA-Factory removed "
                                          "some); one split, read as the test split (configs/data/alpaca_en.yaml); "
                                          "lengths our estimate of its short instructions and answers"),
    "embedded": dict(rows=None, test=None, prompt=40, chosen=24, rejected=24,
                     source="negfree/data/embedded.py: short questions and answers"),
}

# lm-eval work per protocol (negfree/evaluate/protocols.py): log-likelihood tokens (every
# request forwards its whole few-shot context) and generation tasks as (prompts, prompt
# tokens, new tokens). Request counts are the test-set sizes of the lm-eval tasks (ARC-C 1,172
# x 4 choices, HellaSwag 10,042 x 4, TruthfulQA 817 x ~8, MMLU 14,042 x 4, Winogrande 1,267 x 2,
# GSM8K 1,319, IFEval 541, MATH 5,000, MATH-L5 1,324, MMLU-Redux 5,700); context lengths are our
# estimates of the few-shot prompts.
PROTOCOL_WORK = {
    "openllm_dft": (78e6, [(1319, 900, 256), (541, 60, 1280)]),
    "openllm_ift": (45e6, [(1319, 900, 256)]),
    "math_zeroshot": (0, [(1319, 150, 512), (5000, 150, 512)]),
    "bnf_reasoning": (0, [(1319, 150, 256), (1324, 150, 512), (5700, 300, 256)]),
}
EVAL_BATCH, EVAL_CONTEXT = 8, 2048   # lm-eval requests per forward, longest context assumed


class PlanError(ValueError):
    """A model or data set the plan has no size for, named."""


@dataclass
class Job:
    job: str                  # the job's main output (Snakemake's target)
    experiment: str
    paper: str | None
    rule: str
    gpus: int
    gpu_type: str
    tokens: int
    est_peak_gpu_mem_gb: float
    est_host_mem_gb: float    # per rank (the largest rank)
    est_job_host_mem_gb: float
    est_gpu_hours: float
    est_disk_gb: float = 0.0            # what the job leaves on disk
    est_scratch_peak_gb: float = 0.0    # training: the most on disk while it runs (checkpoints + final/)
    memory: dict = field(default_factory=dict)   # the peak's parts, GB

    def runtime_min(self, share: float = 1.0) -> int:
        """Slurm minutes for ``share`` of this job's work (a shard: 1/k)."""
        hours = share * self.est_gpu_hours / max(self.gpus, 1) + STARTUP_H
        return max(30, math.ceil(hours * 60 * SAFETY))   # > the profile's 10-min early signal

    def mem_mb(self) -> int:
        return max(2000, math.ceil(self.est_job_host_mem_gb * 1024 * SAFETY))


# -- what a config names -------------------------------------------------------------------
def arch_of(exp, basedir: Path) -> Arch:
    source = exp.config["model"]["source"]
    if source == "embedded":   # negfree.common.models.convert_embedded saves the dequantised GGUF in fp32
        return replace(MODELS["HuggingFaceTB/SmolLM2-135M-Instruct"], dtype="float32")
    if source.startswith("hub:"):
        hub_id = source[4:].split("@")[0]
        if hub_id not in MODELS:
            raise PlanError(f"{exp.origin}: model.source {source!r} has no size in negfree/jobs/resources.py MODELS; add its "
                            f"config.json values there (known: {', '.join(MODELS)})")
        return MODELS[hub_id]
    cfg_file = (basedir / source / "config.json")
    if not cfg_file.is_file():
        raise PlanError(f"{exp.origin}: model.source {source!r}: no config.json to size it from")
    return arch_from_config(json.loads(cfg_file.read_text()), str(cfg_file))


def arch_from_config(c: dict, source: str = "") -> Arch:
    """A Llama-shaped decoder's size and checkpoint dtype from its config.json."""
    from negfree.common.models import dtype_name

    h, n_layers, inter, vocab = c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"], c["vocab_size"]
    heads = c["num_attention_heads"]
    kv = c.get("num_key_value_heads") or heads
    hd = c.get("head_dim") or h // heads
    tied = bool(c.get("tie_word_embeddings", False))
    layer = h * heads * hd * 2 + 2 * h * kv * hd + 3 * h * inter + 2 * h
    params = vocab * h * (1 if tied else 2) + n_layers * layer + h
    dtype = dtype_name(c) or "float32"
    return Arch(params, h, n_layers, inter, vocab, heads, kv, hd, tied, c.get("model_type", ""), source, dtype)


def data_of(exp, basedir: Path) -> dict:
    """Training prompts, test prompts and mean lengths of the experiment's data."""
    d = exp.config["data"]
    source = d.get("source", "embedded")
    if source == "embedded":
        stats = dict(DATASETS["embedded"], rows=d["n_train"] or 256, test=d["n_test"] or 64)
    else:
        hub_id = yaml.safe_load((basedir / source).read_text())["hub_id"]
        if hub_id not in DATASETS:
            raise PlanError(f"{exp.origin}: data {source} ({hub_id}) has no size in negfree/jobs/resources.py DATASETS")
        stats = dict(DATASETS[hub_id])
        stats["rows"] = min(stats["rows"], d["n_train"] or stats["rows"])
        stats["test"] = min(stats["test"], d["n_test"] or stats["test"]) if stats["test"] else (d["n_test"] or 0)
    if d.get("train_prompts"):
        stats["rows"] = min(stats["rows"], d["train_prompts"])
    return stats


def textsim_data_of(exp, basedir: Path) -> dict:
    """The test set the textsim protocol scores: evaluate.textsim.data where set, else the experiment's."""
    ts = getattr(exp, "textsim_data", None)
    if not ts:
        return data_of(exp, basedir)
    hub_id = yaml.safe_load((basedir / ts["source"]).read_text())["hub_id"]
    if hub_id not in DATASETS:
        raise PlanError(f"{exp.origin}: evaluate.textsim.data {ts['source']} ({hub_id}) has no size in "
                        f"negfree/jobs/resources.py DATASETS")
    stats = dict(DATASETS[hub_id])
    stats["test"] = min(stats["test"], ts["n_test"] or stats["test"])
    return stats


def launch_of(exp) -> dict:
    """The experiment's launch section with its defaults (configs/schema: launch)."""
    la = exp.config.get("launch") or {}
    gpus = {"train": 1, "generate": 1, "score": 1, "evaluate": 1, **(la.get("gpus") or {})}
    return {"gpus": gpus, "nodes": la.get("nodes", 1), "gpu_type": la.get("gpu_type", "a100-80gb"),
            "accelerate_config": la.get("accelerate_config", "configs/accelerate/ddp.yaml")}


def sharded(exp, basedir: Path) -> bool:
    """Whether the train rule's accelerate config shards the model (FSDP)."""
    path = basedir / launch_of(exp)["accelerate_config"]
    return path.is_file() and (yaml.safe_load(path.read_text()) or {}).get("distributed_type") == "FSDP"


# -- the estimates -------------------------------------------------------------------------
def _gb(x: float) -> float:
    return x / 1e9


def _forward_flops(a: Arch, tokens: float, mean_len: float, pad: float = 1.0, attn: float = 1.0) -> float:
    """Forward FLOPs of ``tokens`` real tokens: the weights' 2 x params per computed position (``pad``
    positions per real token) and the attention term, times ``attn`` (query-key pairs computed over
    those of a varlen kernel on the real sequences)."""
    return tokens * (2 * a.params * pad + 2 * a.layers * a.hidden * mean_len * attn)


def _hours(flops: float, mfu: float, gpu: Gpu, fp32: bool = False) -> float:
    return flops / (mfu * (gpu.fp32_tflops if fp32 else gpu.bf16_tflops) * 1e12) / 3600


def _decode_hours(a: Arch, new_tokens: float, batch: int, gpu: Gpu, fp32: bool = False) -> float:
    """Bandwidth-bound decoding: one read of the weights (bf16, or fp32 for the baseline) per step
    serves the batch."""
    width = 4 if fp32 else 2
    per_s = batch * BW_EFFICIENCY * gpu.hbm_tbps * 1e12 / (width * a.params)
    per_s = min(per_s, MFU_FORWARD * (gpu.fp32_tflops if fp32 else gpu.bf16_tflops) * 1e12 / (2 * a.params))
    return new_tokens / per_s / 3600


@functools.lru_cache(maxsize=None)
def _layout_of(mbs: int, B: int, max_len: int, max_new_tokens: int, score_bs: int, score_tokens: int, seed: int,
               packing: bool, bucketing: bool, pack_capacity: int | None = None) -> dict:
    """negfree bench data's ratios for these batch settings on the UltraFeedback-shaped lengths."""
    from negfree.common.batching import ratios, synthetic_rows

    st = {"micro_batch_size": mbs, "num_negatives": B, "max_len": max_len, "score_batch_size": score_bs,
          "score_max_batch_tokens": score_tokens, "max_new_tokens": max_new_tokens, "seed": seed,
          "packing": packing, "length_bucketing": bucketing, "pack_capacity": pack_capacity}
    return ratios(synthetic_rows(LAYOUT_RECORDS, max(B, 1), max_len, max_new_tokens, seed), st)


def _layer_act(a: Arch) -> int:
    """Bytes per token of one decoder layer's bf16 activations (module docstring)."""
    return 10 * a.hidden + 8 * a.intermediate


def _chunked(a: Arch, cfg_train: dict, fsdp: bool) -> bool:
    from negfree.common.logprobs import PLAIN_HEAD_MODELS, SOFTCAP_HEAD_MODELS   # the trainer's rule (negfree/train/loop.py)

    return (bool(cfg_train.get("chunked_head", True)) and a.model_type in PLAIN_HEAD_MODELS | SOFTCAP_HEAD_MODELS
            and not fsdp)


def _finish(parts: dict, on_gpu: bool) -> float:
    """Per-GPU peak: the parts, the fixed CUDA/NCCL share, fragmentation. 0 for a CPU job."""
    return round((sum(parts.values()) + FIXED_GPU_GB) * FRAGMENTATION, 1) if on_gpu else 0.0


def _pool_bytes(gen: dict, d: dict, n: int) -> float:
    """A pool's JSONL: each prompt's text with its positive and ``num`` negatives (sampled at
    ``max_new_tokens``; the dataset's rejected answer for ``pair``), ``TEXT_BYTES`` per token."""
    neg_len = d["rejected"] if gen["strategy"] == "pair" else gen["max_new_tokens"]
    return n * TEXT_BYTES * (d["prompt"] + d["chosen"] + gen["num"] * neg_len)


def _shards(exp) -> tuple[int, int]:
    """(generation, scoring) jobs per pool, as negfree.jobs.dag reads them: parts beside the gathered file."""
    return int(exp.gen.get("shards") or 1), int(exp.config["score"].get("shards") or 1)


def train_job(exp, run: str, basedir: Path, gpu_type: str | None = None, before: bool = False) -> Job:
    """``before``: the baseline of issue 15 (padded micro-batches, neither packing nor bucketing)."""
    from negfree.common.logprobs import PACKABLE_MODELS
    from negfree.losses import get_method
    from negfree.train.loop import DEFAULTS

    la = launch_of(exp)
    gpu = GPUS[gpu_type or la["gpu_type"]]
    a, d = arch_of(exp, basedir), data_of(exp, basedir)
    spec = exp.run_specs[run]
    t = {**DEFAULTS, **exp.config["train"], **spec["train"]}
    method = get_method(spec["method"])
    n_gpu = la["gpus"]["train"]
    fsdp = sharded(exp, basedir) and n_gpu > 1
    world = max(n_gpu, 1)
    B, L = t["num_negatives"], t["max_len"]
    neg_len = d["rejected"] if spec["generate"]["strategy"] == "pair" else spec["generate"]["max_new_tokens"]
    pos = min(L, d["prompt"] + d["chosen"])
    neg = min(L, d["prompt"] + neg_len)
    grad_seq = pos + (B * neg if method.needs_negatives else 0)
    fwd_seq = (B * neg if t.get("track_negatives") and not method.needs_negatives else 0) + \
        (pos if method.two_pass else 0)
    steps = t["max_steps"] or math.ceil(d["rows"] * t["epochs"] / t["batch_size"])
    prompts = steps * t["batch_size"]
    passes = 4 if t["gradient_checkpointing"] else 3
    # computed positions and attention pairs per real token (negfree bench data's arithmetic); the
    # trainer falls back to bucketing where the architecture cannot pack
    packs = bool(t.get("packing")) and a.model_type in PACKABLE_MODELS and not before
    lay = _layout_of(int(t["micro_batch_size"]), max(int(t["num_negatives"] or 0), 1), int(L),
                     int(spec["generate"]["max_new_tokens"]), 16, 16 * int(L), 0, packs,
                     bool(t.get("length_bucketing") or t.get("packing")) and not before, t.get("pack_capacity"))
    pairs = lay["attention_pairs"]
    # packed: 1.0 for one row, the rows' tails with pack_capacity
    pad = lay["padding_ratio_train_before" if before else "padding_ratio_train_after"]
    if packs:
        dense = pairs["packed_capacity" if t.get("pack_capacity") else "packed_dense"]
        attn = 1.0 if t.get("attn_implementation") in VARLEN_ATTENTION else dense / pairs["varlen"]
    else:
        attn = pairs["padded_before" if before else "padded_after"] / pairs["varlen"]
    flops = passes * _forward_flops(a, prompts * grad_seq, pos, pad, attn) + \
        _forward_flops(a, prompts * fwd_seq, pos, pad, attn)
    # memory of one micro-batch at max_len
    seqs = 1 + (B if method.needs_negatives else 0)
    mb_tokens = t["micro_batch_size"] * seqs * L
    layer_p = (a.params - a.vocab * a.hidden * (1 if a.tied else 2)) / a.layers
    root_p = a.vocab * a.hidden * (1 if a.tied else 2)
    parts = {"weights+grads+adam (fp32)": 16 * a.params / (world if fsdp else 1)}
    if fsdp:
        parts["gathered bf16 layers + root, fp32 layer grads"] = 2 * 2 * layer_p + 4 * layer_p + 2 * root_p
    elif n_gpu > 0:
        parts["bf16 weight copy (autocast)"] = 2 * a.params
    if t["gradient_checkpointing"]:
        parts["activations"] = mb_tokens * (2 * a.hidden * a.layers + _layer_act(a))
    else:
        parts["activations"] = mb_tokens * _layer_act(a) * a.layers
    rows = min(t["logit_chunk"], mb_tokens) if _chunked(a, t, fsdp) else mb_tokens
    parts["logits"] = 12 * rows * a.vocab
    parts = {k: round(_gb(v), 2) for k, v in parts.items()}
    on_gpu = n_gpu > 0
    # host: every rank all records: text (~4 B/token), one reference sum per answer, per-token
    # float32 values only for token-level methods (BNF; negfree.train.records.compact_references).
    # The model in fp32: the first rank reads it whole; under FSDP the others get their shard
    num = spec["generate"]["num"]
    data_gb = _gb(d["rows"] * (TEXT_BYTES * (pos + num * neg) + 34 * (1 + num)
                               + (4 * (d["chosen"] + B * neg_len) if method.token_level else 0)))
    first = HOST_BASE_GB[on_gpu] + _gb(4 * a.params) + data_gb
    others = HOST_BASE_GB[on_gpu] + data_gb + _gb(4 * a.params / (world if fsdp else 1))
    # disk: final/ in the save dtype (base: the checkpoint's), sharded checkpoints while it runs
    save = t.get("save_dtype") or "base"
    final = a.params * DTYPE_BYTES.get(a.dtype if save == "base" else save, 4)
    ckpt, keep = CHECKPOINT_BYTES * a.params, int(t["keep_checkpoints"])
    disk = final + (keep * ckpt if t["keep_checkpoints_at_end"] else 0)
    return Job(f"{exp.run_dir(run)}/timing.json", exp.name, exp.paper(), "train", n_gpu, gpu_type or la["gpu_type"],
               int(prompts * (grad_seq + fwd_seq)), _finish(parts, on_gpu), round(first, 1),
               round(first + (world - 1) * others, 1), round(_hours(flops, MFU_TRAIN, gpu), 2),
               round(_gb(disk), 2), round(_gb((keep + 1) * ckpt + final), 2), parts)


def _inference(a: Arch, n_gpu: int, batch_tokens: float, logit_bytes: float,
               kv_tokens: float = 0) -> tuple[float, float, dict]:
    """(per-GPU peak, host GB, parts) of a forward-only job: bf16 weights, one layer's
    activations, the KV cache (bf16 k and v per layer), the logits; the host reads the weights
    in bf16 on a GPU (fp32 on the CPU)."""
    parts = {"weights (bf16)": 2 * a.params, "activations": batch_tokens * _layer_act(a),
             "kv cache": kv_tokens * 2 * a.layers * a.kv_heads * a.head_dim * 2, "logits": logit_bytes}
    parts = {k: round(_gb(v), 2) for k, v in parts.items() if v}
    host = HOST_BASE_GB[n_gpu > 0] + _gb((2 if n_gpu > 0 else 4) * a.params)   # the checkpoint read in bf16
    return _finish(parts, n_gpu > 0), round(host, 1), parts


def generate_job(exp, gen: dict, out: str, basedir: Path, gpu_type: str | None = None, rule="generate_negatives",
                 prompts: int | None = None, before: bool = False) -> Job:
    """``before``: the baseline of issue 15, fp32 weights without TF32."""
    la = launch_of(exp)
    gt = gpu_type or la["gpu_type"]
    gpu, a, d = GPUS[gt], arch_of(exp, basedir), data_of(exp, basedir)
    n = prompts or d["rows"]
    disk = _gb(_pool_bytes(gen, d, n)) * (2 if rule == "generate_negatives" and _shards(exp)[0] > 1 else 1)
    disk = 0.0 if rule in FIGURE_RULES else round(disk, 2)
    if gen["strategy"] == "pair":     # the dataset's own rejected answer: a copy, no model
        return Job(out, exp.name, exp.paper(), rule, 0, gt, 0, 0.0, 2.0, 2.0, 0.0, disk)
    new = n * gen["num"] * gen["max_new_tokens"]
    batch = gen["batch_size"]
    hours = _hours(_forward_flops(a, n * d["prompt"], d["prompt"]), MFU_FORWARD, gpu, before) + \
        _decode_hours(a, new, batch, gpu, before)
    peak, host, parts = _inference(a, la["gpus"]["generate"], batch * d["prompt"], 12 * batch * a.vocab,
                                   batch * (d["prompt"] + gen["max_new_tokens"]))
    return Job(out, exp.name, exp.paper(), rule, la["gpus"]["generate"], gt, int(new + n * d["prompt"]),
               peak, host, host, round(hours, 2), disk, memory=parts)


def score_job(exp, gen: dict, out: str, basedir: Path, gpu_type: str | None = None, rule="score_reference",
              prompts: int | None = None, before: bool = False) -> Job:
    """Batches sorted by length under a token budget, bf16 (``before``: record order, fp32
    without TF32); the padding factor is negfree bench data's for these batch settings."""
    la = launch_of(exp)
    gt = gpu_type or la["gpu_type"]
    gpu, a, d = GPUS[gt], arch_of(exp, basedir), data_of(exp, basedir)
    L = exp.config["score"]["max_len"]
    neg_len = d["rejected"] if gen["strategy"] == "pair" else gen["max_new_tokens"]
    n = prompts or d["rows"]
    tokens = n * (min(L, d["prompt"] + d["chosen"]) + gen["num"] * min(L, d["prompt"] + neg_len))
    batch_tokens = exp.config["score"].get("batch_size", 16) * L      # negfree score --batch-size
    # fp32 logits and log-softmax of one chunk of 1024 answer positions; without the chunked head
    # the model first returns every position's logits in bf16 (two copies: soft-capping)
    logit_bytes = 8 * min(1024, batch_tokens) * a.vocab
    if not _chunked(a, exp.config["train"], False):
        logit_bytes += 4 * batch_tokens * a.vocab
    peak, host, parts = _inference(a, la["gpus"]["score"], batch_tokens, logit_bytes)
    sc = exp.config["score"]
    bs = int(sc.get("batch_size") or 16)
    lay = _layout_of(1, max(int(gen["num"]), 1), int(L), int(gen["max_new_tokens"]), bs,
                     int(sc.get("max_batch_tokens") or bs * L), 0, False, False)
    pad = lay["padding_ratio_score_before" if before else "padding_ratio_score_after"]
    # disk: the pool's records again with a float per answer token: the positive, each negative and
    # KTO's mismatched positive (prompt + answer capped at max_len); the shard parts hold the floats again
    ans = 2 * max(0, min(L, d["prompt"] + d["chosen"]) - d["prompt"]) + \
        gen["num"] * max(0, min(L, d["prompt"] + neg_len) - d["prompt"])
    floats = n * ans * FLOAT_JSON_BYTES * (2 if rule.startswith("score_reference") and _shards(exp)[1] > 1 else 1)
    disk = 0.0 if rule in FIGURE_RULES else round(_gb(_pool_bytes(gen, d, n) + floats), 2)
    return Job(out, exp.name, exp.paper(), rule, la["gpus"]["score"], gt, int(tokens), peak, host, host,
               round(_hours(_forward_flops(a, tokens, L / 2, pad, pad), MFU_FORWARD, gpu, before), 2), disk,
               memory=parts)


def evaluate_job(exp, who: str, protocol: str, out: str, basedir: Path, gpu_type: str | None = None,
                 rule="evaluate_protocol", before: bool = False) -> Job:
    """``before``: the baseline of issue 15, fp32 weights without TF32."""
    la = launch_of(exp)
    gt = gpu_type or la["gpu_type"]
    gpu, a, d = GPUS[gt], arch_of(exp, basedir), data_of(exp, basedir)
    ev = exp.config.get("evaluate") or {}
    if protocol in PROTOCOL_WORK:
        loglik, gens = PROTOCOL_WORK[protocol]
    elif protocol == "offline":
        loglik, gens = d["test"] * 4 * (d["prompt"] + d["chosen"]), [(d["test"], d["prompt"], 32)]
    elif protocol in ("alpaca_eval1", "alpaca_eval2"):
        # AlpacaEval 1 and 2 on the 805 instructions (or evaluate.alpaca_eval.limit), each answer up to
        # max_new_tokens ([ours] default 2048, negfree alpaca-eval's). [ours] 64 prompt tokens: the 805
        # instructions average 165 characters (the pinned reference files), ~41 tokens at ~4 characters a
        # token, plus the chat template's turn markers. The judging is API calls, no GPU work.
        a_cfg = ev.get("alpaca_eval") or {}
        loglik, gens = 0, [(a_cfg.get("limit") or 805, 64, a_cfg.get("max_new_tokens") or 2048)]
    else:   # textsim on its test set
        a_cfg = ev.get("textsim") or {}
        t = textsim_data_of(exp, basedir)
        loglik, gens = 0, [(a_cfg.get("limit") or t["test"], t["prompt"], a_cfg.get("max_new_tokens") or 512)]
    if ev.get("limit") and protocol not in ("alpaca_eval1", "alpaca_eval2"):   # AlpacaEval: its own limit only
        loglik, gens = min(loglik, ev["limit"] * 4 * EVAL_CONTEXT), [(min(n, ev["limit"]), p, m) for n, p, m in gens]
    hours = _hours(_forward_flops(a, loglik, EVAL_CONTEXT / 2), MFU_FORWARD, gpu, before)
    new = 0
    for n, p, m in gens:
        hours += _hours(_forward_flops(a, n * p, p), MFU_FORWARD, gpu, before) + \
            _decode_hours(a, n * m, EVAL_BATCH, gpu, before)
        new += n * (p + m)
    bt = EVAL_BATCH * EVAL_CONTEXT
    # lm-eval's log-likelihood requests: bf16 logits and their log-softmax for every position
    peak, host, parts = _inference(a, la["gpus"]["evaluate"], bt, 4 * bt * a.vocab, bt)
    # disk: the samples file, each document's prompt once and each generation's prompt and answer
    disk = _gb(TEXT_BYTES * (loglik / LOGLIK_CHOICES + new))
    return Job(out, exp.name, exp.paper(), rule, la["gpus"]["evaluate"], gt, int(loglik + new), peak, host, host,
               round(hours, 2), round(disk, 2), memory=parts)


# -- the judged protocols (negfree/jobs/judged.py) ----------------------------------------------
# [ours] Token counts behind the judged estimates: the benchmark's mean prompt (Arena-Hard v0.1 and
# MT-Bench turns are short questions, WildBench v2 tasks carry a conversation history), the judge's
# own template, the mean length of a model's answer (well under the max_new_tokens cap), and the
# judge's reply (Arena-Hard's judge writes its own answer before the verdict; MT-Bench's a short
# explanation; WildBench's a JSON of strengths and weaknesses). Estimates to size jobs and budgets.
API_LATENCY_S = 15          # [ours] one API judgement, its reply of a few hundred tokens included
JUDGED_TOKENS = {   # protocol: (prompt, judge template, model answer, judge reply, judgements per prompt)
    "arena_hard": (150, 450, 600, 700, 2),     # two games per prompt, both answers in each
    "mt_bench": (80, 350, 350, 250, 2),        # one grading per turn (turn 2 also shows turn 1)
    "wildbench": (700, 900, 700, 450, 1),
}


def judged_work(exp, protocol: str) -> dict:
    """Per judged run: prompts, generated tokens, and the judge's input and output tokens."""
    j = exp.judged
    p_tok, tmpl, ans, reply, per = JUDGED_TOKENS[protocol]
    from negfree.jobs.judged import PROMPTS, TURNS

    n = min(j.limit or PROMPTS[protocol], PROMPTS[protocol])
    answer = min(ans, j.max_new_tokens[protocol])
    shown = 2 if protocol == "arena_hard" else 1                       # answers each judgement shows
    context = p_tok + (answer + p_tok if protocol == "mt_bench" else 0)   # turn 2 also shows turn 1
    return {"prompts": n, "new_tokens": n * TURNS[protocol] * j.max_new_tokens[protocol],
            "prompt_tokens": n * TURNS[protocol] * p_tok, "judgements": n * per,
            "judge_in": n * per * (tmpl + context + shown * answer), "judge_out": n * per * reply}


def judged_answers_job(exp, who: str, protocol: str, basedir: Path, gpu_type: str | None = None,
                       before: bool = False) -> Job:
    """negfree judged-answers: the run's answers on the benchmark's prompts (a generation job),
    sized at max_new_tokens per answer (the upper bound, as for negative pools)."""
    la = launch_of(exp)
    gt = gpu_type or la["gpu_type"]
    gpu, a = GPUS[gt], arch_of(exp, basedir)
    w = judged_work(exp, protocol)
    mnt = exp.judged.max_new_tokens[protocol]
    batch = exp.judged.batch_size or EVAL_BATCH
    p_tok = JUDGED_TOKENS[protocol][0]
    hours = _hours(_forward_flops(a, w["prompt_tokens"], p_tok), MFU_FORWARD, gpu, before) + \
        _decode_hours(a, w["new_tokens"], batch, gpu, before)
    peak, host, parts = _inference(a, la["gpus"]["evaluate"], batch * p_tok, 12 * batch * a.vocab,
                                   batch * (p_tok + mnt))
    out = exp.judged.answers(exp.runs_root, who, protocol)
    return Job(out, exp.name, exp.paper(), "judged_answers", la["gpus"]["evaluate"], gt,
               int(w["prompt_tokens"] + w["new_tokens"]), peak, host, host, round(hours, 2),
               round(_gb(TEXT_BYTES * w["new_tokens"]), 2), memory=parts)


def judged_eval_job(exp, who: str, protocol: str, basedir: Path) -> Job:
    """negfree judged-eval: a CPU job (gpus 0). With an API judge it waits on the API (its judgements at
    API_LATENCY_S each, ``concurrency`` in flight); with the offline judge it hashes; with a served judge
    it copies the result that the backend's judged_serve job wrote (judged_serve_job). ``protocol``
    "<protocol>@<model>": an extra judge's judging of the protocol's answers (the same work)."""
    judge = exp.judged.judge_of(protocol)
    w = judged_work(exp, exp.judged.split(protocol)[0])
    out = exp.judged.result(exp.runs_root, who, protocol)
    # est_gpu_hours holds the job's wall hours here (no GPU): its Slurm runtime
    hours = w["judgements"] * API_LATENCY_S / judge.concurrency / 3600 if judge.kind == "api" else 0.0
    return Job(out, exp.name, exp.paper(), "judged_eval", 0, "cpu", int(w["judge_in"] + w["judge_out"]),
               0.0, 2.0, 2.0, round(hours, 2), 0.01)


def served_judging_hours(judge, w: dict, gpu) -> float:
    """Wall hours of a served judge on one (run, protocol)'s judgements (``w``: judged_work), start-up
    aside: its prompts' prefill at MFU_FORWARD, its replies decoded at the bandwidth bound of the
    judge's weights, ``concurrency`` replies per pass, over the judge's GPUs."""
    params, n = judge.params, judge.gpus
    return 2 * params * w["judge_in"] / (MFU_FORWARD * gpu.bf16_tflops * 1e12 * n) / 3600 + \
        w["judge_out"] / judge.concurrency * (2 * params) / (BW_EFFICIENCY * gpu.hbm_tbps * 1e12 * n) / 3600


def judged_serve_job(exp, backend: str, basedir: Path, gpu_type: str | None = None) -> Job:
    """The served judge ``backend`` for the whole experiment (rule judged_serve): one server start-up,
    then the judgements of every (run, protocol) it judges (served_judging_hours of each), on the
    judge's GPUs. Its output is the marker the experiment's judged_eval jobs wait for."""
    from negfree.jobs.judged import JudgedConfigError

    j = exp.judged
    try:
        judge, pairs = j.served_judge(backend)
    except JudgedConfigError as e:
        raise PlanError(f"{exp.origin}: {e}") from None
    gt = gpu_type or launch_of(exp)["gpu_type"]
    gpu = GPUS[gt]
    hours, tokens = judge.startup_min / 60, 0
    for _, protocol in pairs:
        w = judged_work(exp, protocol)
        hours += served_judging_hours(judge, w, gpu)
        tokens += w["judge_in"] + w["judge_out"]
    # per GPU: its share of the weights + the KV cache of the judgements in flight
    per_gpu = round(_gb(2 * judge.params) / judge.gpus + FIXED_GPU_GB + 8, 1)
    # host: vLLM's workers and the weights read once (bf16), at least 64 GB
    host = max(64.0, round(_gb(2 * judge.params) / 2, 1))
    return Job(j.served_marker(exp.name, backend), exp.name, exp.paper(), "judged_serve", judge.gpus, gt, int(tokens),
               per_gpu, host, host, round(hours * judge.gpus, 2), 0.01)


# [ours] AlpacaEval's annotators, per judgement: (model, input tokens, output tokens). The prompt is the
# annotator's template (alpaca_eval_gpt4's carries worked examples; AlpacaEval 2's is short and asks one
# logprob token) with the instruction and both outputs (~450 tokens each).
ALPACA_JUDGE = {"alpaca_eval1": ("gpt-4", 1500, 60), "alpaca_eval2": ("gpt-4-1106-preview", 1150, 1)}


def _left_to_judge(basedir: Path, result: str, cache_dir: str, expected: int) -> float:
    """The fraction of one (run, protocol)'s judgements not yet paid for: 0 once its result exists,
    else what its judgement cache does not hold yet (judged-eval's judgements.jsonl lines, or the
    entries of alpaca_eval's annotations_*.json files)."""
    if (basedir / result).is_file() or expected <= 0:
        return 0.0
    cache, held = basedir / cache_dir, 0
    if (cache / "judgements.jsonl").is_file():
        with open(cache / "judgements.jsonl", "rb") as fh:
            held = sum(1 for line in fh if line.endswith(b"\n"))
    for f in cache.glob("annotations_*.json") if cache.is_dir() else []:
        try:
            held += len(json.loads(f.read_text()))
        except (ValueError, TypeError, OSError):
            pass
    return max(0.0, 1.0 - held / expected)


def judge_costs(dag, prices: dict | None = None) -> dict[str, dict]:
    """Per paper (or experiment): the judgements the judged protocols ask, their tokens, and the
    dollars of the API judges at configs/judges.yaml's prices (served and offline judges cost
    no dollars; a served judge's GPU-hours are its judged_serve job, one per experiment and backend).
    ``judge_usd_left``: the dollars not yet spent, without the (run, protocol) pairs whose result
    exists and the judgements their caches hold (what the budget cap compares). An extra judge of a
    protocol (``Judged.extra``: the same answers judged again by another model) is priced as the
    protocol's judgements at its model's price, its result and cache its own."""
    out: dict[str, dict] = {}
    base = Path(dag.basedir)

    def entry(exp) -> dict:
        return out.setdefault(exp.paper() or exp.name, {"judgements": 0, "judge_input_tokens": 0,
                                                        "judge_output_tokens": 0, "judge_usd": 0.0,
                                                        "judge_usd_left": 0.0, "unpriced": []})

    for exp in dag.experiments.values():
        if not exp.judged:
            continue
        p = entry(exp)
        for judging in exp.judged.judgings():
            judge = exp.judged.judge_of(judging)
            w = judged_work(exp, exp.judged.split(judging)[0])
            k = len(exp.judged.runs)
            p["judgements"] += k * w["judgements"]
            p["judge_input_tokens"] += k * w["judge_in"]
            p["judge_output_tokens"] += k * w["judge_out"]
            if judge.kind != "api":
                continue
            price = (prices or {}).get(judge.model)
            if price is None:
                p["unpriced"] = sorted(set(p["unpriced"]) | {judge.model})
                continue
            usd = (w["judge_in"] * price[0] + w["judge_out"] * price[1]) / 1e6   # one run's
            p["judge_usd"] = round(p["judge_usd"] + k * usd, 2)
            left = sum(_left_to_judge(base, exp.judged.result(exp.runs_root, who, judging),
                                      exp.judged.cache_dir(exp.name, who, judging), w["judgements"])
                       for who in exp.judged.runs)
            p["judge_usd_left"] = round(p["judge_usd_left"] + left * usd, 2)
    for exp in dag.experiments.values():   # AlpacaEval 1 and 2: alpaca_eval's own annotators
        judged_alpaca = exp.judged.alpaca if exp.judged else []
        for protocol in [q for q in ALPACA_JUDGE if q in exp.protocols or q in judged_alpaca]:
            a = exp.alpaca_eval(protocol)
            if a.get("annotator") == "negfree_local_loglik":
                continue
            model, tin, tout = ALPACA_JUDGE[protocol]
            model = ((a.get("endpoint") or {}).get("model")) or model
            # every evaluated run and released checkpoint (evaluate.protocols), or evaluate.judged's runs
            runs = set(exp.judged.runs) if protocol in judged_alpaca else set()
            if protocol in exp.protocols:
                runs |= {exp.base_run(), *exp.evaluated_runs(), *exp.released_runs()}
            per_run = a.get("limit") or 805
            n = per_run * len(runs)
            p = entry(exp)
            p["judgements"] += n
            p["judge_input_tokens"] += n * tin
            p["judge_output_tokens"] += n * tout
            price = (prices or {}).get(model)
            if price is None:
                p["unpriced"] = sorted(set(p["unpriced"]) | {model})
            else:
                usd = per_run * (tin * price[0] + tout * price[1]) / 1e6   # one run's
                p["judge_usd"] = round(p["judge_usd"] + len(runs) * usd, 2)
                left = sum(_left_to_judge(base, f"{exp.run_dir(who)}/eval/{protocol}.json",
                                          exp.alpaca_cache_dir(who, protocol), per_run)
                           for who in sorted(runs))
                p["judge_usd_left"] = round(p["judge_usd_left"] + left * usd, 2)
    return out


# -- every job of a DAG ---------------------------------------------------------------------
def jobs_of(dag, gpu_type: str | None = None, before: bool = False) -> list[Job]:
    """One estimate per GPU job of the DAG (shared jobs once, under the first experiment).
    ``before``: every job as it ran before issue 15 (padded training, unsorted fp32 scoring,
    fp32 generation and evaluation), the baseline the README compares with."""
    out: dict[str, Job] = {}
    base = dag.basedir

    def add(job: Job) -> None:
        out.setdefault(job.job, job)

    for exp in dag.experiments.values():
        for run, spec in exp.run_specs.items():
            add(train_job(exp, run, base, gpu_type, before))
            scored = exp.scored(run)
            neg_dir = scored.rsplit("/", 2 if "/ref~" in scored else 1)[0]
            add(generate_job(exp, spec["generate"], f"{neg_dir}/negatives.jsonl", base, gpu_type, before=before))
            add(score_job(exp, spec["generate"], scored, base, gpu_type,
                          "score_reference_checkpoint" if "/ref~" in scored else "score_reference", before=before))
        for who in [exp.base_run(), *exp.evaluated_runs()]:
            for p in exp.protocols:
                rule = {"offline": "evaluate_run", "textsim": "evaluate_generation",
                        "alpaca_eval1": "evaluate_generation", "alpaca_eval2": "evaluate_generation"
                        }.get(p, "evaluate_protocol")
                if who.startswith("base~") and rule != "evaluate_generation":
                    rule = "evaluate_base" if p == "offline" else "evaluate_protocol_base"
                name = "negfree_offline" if p == "offline" else p
                add(evaluate_job(exp, who, p, f"{exp.run_dir(who)}/eval/{name}.json", base, gpu_type, rule, before))
        # released checkpoints (released:), evaluated only, under the lm-eval protocols; sized as the base
        # model's evaluation, as workflows/evaluate.smk sizes rule evaluate_protocol_released
        for who in exp.released_runs():
            for p in exp.paper_protocols:
                if p in PROTOCOL_WORK:
                    add(evaluate_job(exp, who, p, f"{exp.run_dir(who)}/eval/{p}.json", base, gpu_type,
                                     "evaluate_protocol_released", before))
                elif p in ("alpaca_eval1", "alpaca_eval2"):   # rule evaluate_generation, as for any run
                    add(evaluate_job(exp, who, p, f"{exp.run_dir(who)}/eval/{p}.json", base, gpu_type,
                                     "evaluate_generation", before))
        for p in exp.judged.alpaca if exp.judged else []:   # AlpacaEval listed as judged: rule evaluate_generation
            for who in exp.judged.runs:
                add(evaluate_job(exp, who, p, f"{exp.run_dir(who)}/eval/{p}.json", base, gpu_type,
                                 "evaluate_generation", before))
        for job in analysis_jobs(exp, base, gpu_type, before).values():
            add(job)
        if exp.judged:   # judged_eval is a CPU job; a served judge is one GPU job per backend (judged_serve)
            for protocol in exp.judged.protocols:
                for who in exp.judged.runs:
                    add(judged_answers_job(exp, who, protocol, base, gpu_type, before))
            for backend in exp.judged.served_backends():
                add(judged_serve_job(exp, backend, base, gpu_type))
    return list(out.values())


def analysis_jobs(exp, base: Path, gpu_type: str | None = None, before: bool = False) -> dict[str, Job]:
    """dft Fig. 1 (a pool sampled at high temperature, both pools scored under the checkpoint)
    and bnf Fig. 3-4 (greedy answers of each checkpoint, scored under it and the base)."""
    out = {}
    sd = exp.score_dist()
    if sd:
        gen = {**exp.gen, "temperature": sd["temperature"], "num": sd["num"]}
        out["score_dist_pool"] = generate_job(exp, gen, f"work/analysis/{exp.name}/score_dist/negatives.jsonl", base,
                                              gpu_type, "score_dist_pool", prompts=sd["limit"], before=before)
        out["score_distribution"] = score_job(exp, gen, f"figures/{exp.name}/dft/fig1.png", base, gpu_type,
                                              "score_distribution", prompts=sd["limit"], before=before)
    sh = exp.shifts()
    if sh:
        gen = {**exp.gen, "strategy": "chat", "num": len(sh["runs"]) + 1, "max_new_tokens": sh["max_new_tokens"],
               "batch_size": EVAL_BATCH}
        # prompts: wildbench is sized at the training prompts' length (generate_job: data_of), not JUDGED_TOKENS'
        out["shift_figures"] = generate_job(exp, gen, f"figures/{exp.name}/bnf/fig3.png", base, gpu_type,
                                            "shift_figures", prompts=sh["limit"], before=before)
    return out


def job_for(dag, rule: str, wc: dict) -> Job:
    """The estimate of one Snakemake job, from its rule and wildcards (workflows/common.smk)."""
    base = dag.basedir
    if "neg_root" in wc:        # generate_negatives, score_reference, score_reference_checkpoint
        exp = dag.experiments[dag.neg_owner[wc["neg_root"]]]
        gen = {**exp.gen, "strategy": wc["strategy"], "temperature": float(wc["temperature"]), "num": int(wc["num"])}
        neg = f"{wc['neg_root']}/strategy~{wc['strategy']}/temperature~{wc['temperature']}/num~{wc['num']}"
        if rule == "generate_negatives":
            return generate_job(exp, gen, f"{neg}/negatives.jsonl", base)
        out = f"{neg}/ref~{wc['ref']}/scored.jsonl" if "ref" in wc else f"{neg}/scored.jsonl"
        return score_job(exp, gen, out, base, rule=rule)
    exp = dag.experiments[wc["exp"]]
    if rule == "train":
        return train_job(exp, wc["run"], base)
    if rule == "judged_answers":
        return judged_answers_job(exp, wc["who"], wc["judged"], base)
    if rule == "judged_eval":
        return judged_eval_job(exp, wc["who"], wc["judged"], base)
    if rule == "judged_serve":
        return judged_serve_job(exp, wc["backend"], base)
    if rule.startswith("evaluate"):
        who = wc.get("run") or wc.get("who") or f"base~{wc['model']}"
        protocol = wc.get("protocol") or wc.get("gen_protocol") or "offline"
        name = "negfree_offline" if protocol == "offline" else protocol
        return evaluate_job(exp, who, protocol, f"{exp.run_dir(who)}/eval/{name}.json", base, rule=rule)
    return analysis_jobs(exp, base)[rule]


