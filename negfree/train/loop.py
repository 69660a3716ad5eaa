"""The training loop: any registered method, from a scored dataset, on accelerate.

Read top to bottom: resolve and check the config and the records (the registry
says what a method needs) -> resume from the newest checkpoint if the run
directory has one -> for each optimizer step take ``batch_size`` prompts (the
global batch; each process takes its share), each with its positive and B
negatives, forward them in one concatenated batch per micro-batch, weight each
micro-batch loss so the step's gradient is exactly the gradient of the loss over
the whole global batch, step, sync DFT's log u, log, checkpoint.

Normalisation across micro-batches and processes (the invariance tests hold it):
a loss that averages over prompts gets weight (prompts in micro-batch)/(global
batch); a loss that averages over answer tokens (``reduction: tokens``, SFT) gets
(answer tokens in micro-batch)/(answer tokens in the global batch), the global
count summed over processes before the first forward. Each weight is then
multiplied by the process count, because data-parallel backends average
gradients over processes.

Reference log-probs come from the data (negfree.score.reference), never from a second
model. Methods differ only through their registry entry.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
import types
from pathlib import Path

import torch

from negfree.common.batching import mismatched_of
from negfree.common.io import check_writable, write_json
from negfree.common.logprobs import pack_bins, packing_support, plain_output_head
from negfree.data.tokenize import encode, render_prompt
from negfree.losses import LossInputs, get_method
from negfree.losses.core import masked_mean
from negfree.train.batch import collate, loss_inputs
from negfree.train.checkpoint import Checkpoints, Preempted, RunLock, StopFlag, fault
from negfree.train.records import check_records, check_references, compact_references, negative_indices
from negfree.train.runlog import MetricsLog, provenance

DEFAULTS = {
    "lr": 1e-5, "epochs": 1, "max_steps": None, "batch_size": 4, "micro_batch_size": 4,
    "num_negatives": 2, "max_len": 256, "max_prompt_len": None, "warmup_ratio": 0.1,
    "scheduler": "cosine", "weight_decay": 0.0, "grad_clip": 1.0, "seed": 0, "hparams": {},
    "gradient_checkpointing": False, "fallback_template": False, "logit_chunk": 1024,
    "chunked_head": True,              # output projection chunk-wise at answer positions only (no [R, T, V]
                                       # logits); off by itself for FSDP/ZeRO-3 and unlisted architectures
    "overlong_prompts": "error",       # error | skip (drop the record before training, counted in run_info.json)
    "save_every": 0,                   # steps between checkpoints (0: only on SIGTERM)
    "keep_checkpoints": 1,
    "keep_checkpoints_at_end": False,  # the final weights are in final/; checkpoints are for resuming
    "resume": True,                    # continue from out_dir/checkpoints/latest when it exists
    "report_to": None,                 # None | tensorboard | wandb (accelerate trackers), beside metrics.jsonl
    "mixed_precision": "auto",         # auto (bf16 on GPU, fp32 on CPU) | no | bf16 | fp16
    "pairing_ratio": None,             # bnf.txt Table 6: keep this fraction of records paired, drop one side
                                       # of the others (negfree.data.adapters.apply_pairing_ratio, seeded by seed)
    "track_negatives": False,          # methods without negatives still forward B of them (no gradient
                                       # flows: the loss ignores them) to log their likelihood (dft.txt Fig. 3)
    "length_bucketing": False,         # within a step, each process's prompts go to micro-batches by length
                                       # (less padding; the step's gradient is the same sum). Not applied to
                                       # KTO, whose z0 is a per-micro-batch estimate (run_info.json says so)
    "probe_records": 0,                # hold the last N records out of training: a fixed probe set (positives and
                                       # their pool's negatives) whose likelihoods go to probe.jsonl at step 0,
                                       # every probe_every steps and at the end (the training curves of the claims)
    "probe_every": 1,
    "packing": False,                  # padding-free: each micro-batch's rows packed into one row, position_ids
                                       # restarting per sequence (negfree.common.logprobs.pack_inputs); same values and
                                       # gradients as padding. Architectures outside PACKABLE_MODELS fall back to
                                       # length bucketing (run_info.json says why)
    "pack_capacity": None,             # None: one packed row per micro-batch; N: packed rows of N tokens (at least
                                       # the longest row), first-fit decreasing; with sdpa/eager, whose mask is
                                       # dense, a row of N tokens never costs more attention than padding to N
    "attn_implementation": None,       # None: transformers' default (sdpa); flash_attention_2 / flex_attention
                                       # make packed attention varlen on a GPU (sdpa and eager mask it densely)
    "save_dtype": "base",              # final/'s weights: base (the dtype the base checkpoint was saved in: bf16 for
                                       # every paper model, half the disk of fp32) | float32 | bfloat16
}
SAVE_DTYPES = ("base", "float32", "bfloat16")
# transformers finds packed sequences' boundaries in position_ids for these kernels only when the batch is
# one row: with several packed rows (pack_capacity) they would attend across sequences, silently
ONE_ROW_VARLEN = ("flash_attention_2", "flash_attention_3")
ATTN_IMPLEMENTATIONS = (None, "sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")
# Keys that may change between a run and its resumption without changing what it computes.
_RESUME_FREE = {"save_every", "keep_checkpoints", "keep_checkpoints_at_end", "resume", "report_to", "out_dir"}
# Per-step wall-clock quantities: kept out of metrics.jsonl so that file is a deterministic function of the seed.
PERF_KEYS = ("seconds", "tokens_per_s", "peak_memory_mb")


def mask_scored_pairs(records: list[dict], ratio: float, seed: int) -> list[dict]:
    """Pairing-ratio masking of scored records: the dropped side loses its reference log-probs too."""
    from negfree.data.adapters import apply_pairing_ratio

    out = []
    for r in apply_pairing_ratio(records, ratio, seed):
        if r["paired"] is False and r.get("ref"):
            r = {**r, "ref": {**r["ref"], **({"positive": None} if r["dropped"] == "positive" else {"negatives": []})}}
        out.append(r)
    return out


def resolve_config(cfg: dict) -> dict:
    unknown = sorted(set(cfg) - set(DEFAULTS) - {"method", "model", "data", "out_dir"})
    if unknown:
        raise ValueError(f"train: unknown key(s) {unknown}")
    for key in ("method", "model", "data", "out_dir"):
        if key not in cfg:
            raise ValueError(f"train: missing required key '{key}'")
    out = {**DEFAULTS, **cfg}
    method = get_method(out["method"])
    out["hparams"] = method.resolve(out.get("hparams") or {})
    for key in ("batch_size", "micro_batch_size", "epochs", "max_len", "logit_chunk", "keep_checkpoints",
                "probe_every"):
        if not isinstance(out[key], int) or out[key] < 1:
            raise ValueError(f"train: {key}={out[key]!r} must be an integer >= 1")
    if out["batch_size"] % out["micro_batch_size"]:
        raise ValueError(f"train: batch_size={out['batch_size']} is not a multiple of "
                         f"micro_batch_size={out['micro_batch_size']}")
    if not method.needs_negatives and not out["track_negatives"]:
        out["num_negatives"] = 0
    elif not isinstance(out["num_negatives"], int) or out["num_negatives"] < 1:
        raise ValueError(f"train: method '{method.name}' needs num_negatives (B) >= 1, got {out['num_negatives']!r}")
    if isinstance(out["probe_records"], bool) or not isinstance(out["probe_records"], int) or out["probe_records"] < 0:
        raise ValueError(f"train: probe_records={out['probe_records']!r} must be an integer >= 0")
    if not (isinstance(out["lr"], (int, float)) and math.isfinite(out["lr"]) and out["lr"] > 0):
        raise ValueError(f"train: lr={out['lr']!r} must be a finite number > 0")
    if not 0 <= out["warmup_ratio"] < 1:
        raise ValueError(f"train: warmup_ratio={out['warmup_ratio']} must be in [0, 1)")
    pr = out["pairing_ratio"]
    if pr is not None and (isinstance(pr, bool) or not isinstance(pr, (int, float)) or not 0 <= pr <= 1):
        raise ValueError(f"train: pairing_ratio={pr!r} must be null or a number in [0, 1]")
    if out["overlong_prompts"] not in ("error", "skip"):
        raise ValueError(f"train: overlong_prompts={out['overlong_prompts']!r} is not one of error, skip")
    if out["mixed_precision"] not in ("auto", "no", "bf16", "fp16"):
        raise ValueError(f"train: mixed_precision={out['mixed_precision']!r} is not one of auto, no, bf16, fp16")
    if not isinstance(out["packing"], bool):
        raise ValueError(f"train: packing={out['packing']!r} must be true or false")
    pc = out["pack_capacity"]
    if pc is not None and (isinstance(pc, bool) or not isinstance(pc, int) or pc < 1):
        raise ValueError(f"train: pack_capacity={pc!r} must be null or an integer >= 1 (tokens per packed row)")
    if out["attn_implementation"] not in ATTN_IMPLEMENTATIONS:
        raise ValueError(f"train: attn_implementation={out['attn_implementation']!r} is not one of "
                         f"{', '.join(str(a).replace('None', 'null') for a in ATTN_IMPLEMENTATIONS)}")
    if out["packing"] and pc is not None and out["attn_implementation"] in ONE_ROW_VARLEN:
        raise ValueError(f"train: packing with pack_capacity={pc} and attn_implementation="
                         f"{out['attn_implementation']} would attend across packed sequences (transformers reads "
                         f"their boundaries only in a one-row batch); drop pack_capacity (one packed row per "
                         f"micro-batch) or use flex_attention / sdpa")
    if out["save_dtype"] not in SAVE_DTYPES:
        raise ValueError(f"train: save_dtype={out['save_dtype']!r} is not one of {', '.join(SAVE_DTYPES)}")
    if out["report_to"] not in (None, "tensorboard", "wandb"):
        raise ValueError(f"train: report_to={out['report_to']!r} is not one of null, tensorboard, wandb")
    return out


def config_hash(cfg: dict) -> str:
    kept = {k: v for k, v in cfg.items() if k not in _RESUME_FREE}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def make_scheduler(optimizer, cfg: dict, total_steps: int):
    from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

    warmup = int(math.ceil(cfg["warmup_ratio"] * total_steps))
    kinds = {"cosine": get_cosine_schedule_with_warmup, "linear": get_linear_schedule_with_warmup}
    if cfg["scheduler"] == "constant":
        return get_constant_schedule_with_warmup(optimizer, warmup)
    if cfg["scheduler"] not in kinds:
        raise ValueError(f"train: scheduler '{cfg['scheduler']}' is not one of cosine, linear, constant")
    return kinds[cfg["scheduler"]](optimizer, warmup, total_steps)


def drop_overlong(tok, records: list[dict], cfg: dict) -> tuple[list[dict], list]:
    """The truncation policy: an answer is cut to fit max_len (its tail is lost, the prompt never is);
    a prompt longer than the limit stops the run naming the record (``overlong_prompts: error``,
    the default) or drops that record before training (``skip``). Checked before any step runs."""
    kept, dropped = [], []
    for r in records:
        try:
            encode(tok, render_prompt(tok, r["prompt"], fallback_template=cfg["fallback_template"]), "",
                   max_len=cfg["max_len"], max_prompt_len=cfg["max_prompt_len"], where=f"record {r['id']}")
            kept.append(r)
        except ValueError:
            if cfg["overlong_prompts"] == "error":
                raise
            dropped.append(r["id"])
    return kept, dropped


def sequence_metrics(inp: LossInputs) -> dict[str, float]:
    """What every run logs, whatever its loss: dft.txt Fig. 3's log-likelihoods (sum and per
    token) of positives and negatives, minorsft.txt Eq. 8's deviation where S0 exists, and the
    likelihood margin Sbar(y_w) - Sbar(y_l) (asft.txt Fig. 2a)."""
    pv = inp.pos.valid
    m = {"logp_pos": masked_mean(inp.pos.logp, pv), "logp_pos_per_token": masked_mean(inp.pos.mean, pv)}
    if inp.pos.ref is not None:
        m["deviation"] = masked_mean((inp.pos.logp - inp.pos.ref) / inp.pos.length, pv)
    if inp.neg is not None:
        nv = inp.neg.valid
        m["logp_neg"] = masked_mean(inp.neg.logp, nv)
        m["logp_neg_per_token"] = masked_mean(inp.neg.mean, nv)
        both = None if pv is None and nv is None else (
            (torch.ones_like(inp.neg.mean) if nv is None else nv.to(inp.neg.mean.dtype))
            * (1.0 if pv is None else pv.to(inp.neg.mean.dtype).unsqueeze(-1)))
        m["likelihood_margin"] = masked_mean(inp.pos.mean.unsqueeze(-1) - inp.neg.mean, both)
    return {k: float(v.detach()) for k, v in m.items()}


def packed_positions(attn: torch.Tensor, capacity: int | None) -> int:
    """Positions the model computes for ``attn``'s rows packed (one row: the real tokens), from the
    row lengths alone (the bins negfree.common.logprobs.Packing lays out)."""
    lengths = attn.sum(1).tolist()
    fills = [sum(lengths[i] for i in b) for b in pack_bins(lengths, capacity)]
    return len(fills) * max(fills)


def forward_micro(model, raw_model, batch, method, hp: dict, log_u, mi: list[int], cfg: dict,
                  chunked_head: bool, dev, autocast, gather=None, packed: bool = False):
    """One micro-batch's forward and loss. DFT's state ``log_u`` (float64, on the CPU, one
    value per record) goes to ``dev`` for the loss; the caller brings the update back.
    ``autocast``: the accelerator's context, so the chunked output head (applied outside
    ``model.forward``) and IFT's greedy pass compute in the same precision as the model.
    ``gather``: concatenates a tensor over processes (KTO's z0 is a mean over all of them).
    ``packed``: the rows go through the model packed padding-free (the run's effective packing)."""
    lu = log_u[mi].to(dev) if log_u is not None else None
    with autocast():
        inp = loss_inputs(model, raw_model, batch, method, hp, lu, cfg["logit_chunk"], chunked_head, packed,
                          cfg.get("pack_capacity"))
    inp.gather = gather
    return inp, method.fn(inp, **hp)


# The probe reads sequences only: no fused second pass (IFT), no vocabulary term (BNF).
_PROBE_READER = types.SimpleNamespace(two_pass=False, vocab_term=False)


def probe_metrics(model, raw_model, tok, probe: list[dict], cfg: dict, chunked_head: bool, autocast,
                  use_ref: bool, packed: bool = False) -> dict[str, float]:
    """sequence_metrics over the fixed probe set, without gradient: every positive and the first
    B' negatives of each pool (B' = the smallest pool among the probe records), whatever the
    method trains on, so every run's curve is measured on the same sequences. Every process
    computes all of it (under FSDP they must all take part in each forward)."""
    b = min(len(r.get("negatives") or []) for r in probe)
    sums: dict[str, float] = {}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(probe), cfg["micro_batch_size"]):
                recs = probe[i:i + cfg["micro_batch_size"]]
                batch = collate(tok, recs, [list(range(b))] * len(recs), cfg, [], use_ref)
                with autocast():
                    inp = loss_inputs(model, raw_model, batch, _PROBE_READER, {}, None, cfg["logit_chunk"],
                                      chunked_head, packed, cfg["pack_capacity"])
                for k, v in sequence_metrics(inp).items():
                    sums[k] = sums.get(k, 0.0) + v * len(recs) / len(probe)
    finally:
        model.train(was_training)
    return sums


def _accelerator(cfg: dict, n_micro: int):
    from accelerate import Accelerator
    from accelerate.utils import GradientAccumulationPlugin

    cuda = torch.cuda.is_available()
    mp = cfg["mixed_precision"]
    if mp == "auto":
        mp = "bf16" if cuda else "no"
    kw = {"log_with": cfg["report_to"], "project_dir": cfg["out_dir"]} if cfg["report_to"] else {}
    fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if not cuda and fsdp:
        _fsdp_on_cpu()
    # Under FSDP, accumulation without sync would hold every parameter's unsharded gradient until the
    # step's last micro-batch (2 B/param per GPU in bf16, uncounted by the plan's 16 B/param / N):
    # reduce-scatter after every micro-batch instead, so gradients stay sharded. DDP holds full
    # gradients either way, so it keeps skipping the all-reduce between micro-batches.
    plugin = GradientAccumulationPlugin(num_steps=n_micro, sync_each_batch=fsdp)
    return Accelerator(cpu=not cuda, mixed_precision=mp, gradient_accumulation_plugin=plugin, **kw)


def _fsdp_on_cpu() -> None:
    """accelerate 1.15 turns FSDP on only for accelerator process groups (its MULTI_CPU type never
    reaches the FSDP branch), but torch's fully_shard runs over gloo on the CPU. Promote the CPU
    process group so the sharded path (the one the cluster runs) is exercised by the CPU tests;
    the device stays the CPU."""
    from accelerate import PartialState
    from accelerate.utils import DistributedType

    state = PartialState(cpu=True)
    if state.distributed_type == DistributedType.MULTI_CPU:
        state.distributed_type = DistributedType.MULTI_GPU


def train(cfg: dict) -> dict:
    """Train one run; writes ``out_dir``/{final/, metrics.jsonl, perf.jsonl, config.json,
    provenance.json, run_info.json, timing.json}. Resumes from ``out_dir``/checkpoints."""
    run = _prepare_data(cfg)   # the config, records and references checked: nothing written yet
    _build(run)                # processes, accelerator, model (the run lock taken), optimizer, scheduler
    _open_run(run)             # resume; config.json, provenance.json, run_info.json, the logs, the step-0 probe
    _step_loop(run)            # the optimizer steps, with their checkpoints and preemption
    return _finish(run)        # final/, timing.json


def _prepare_data(cfg: dict) -> types.SimpleNamespace:
    """Phase 1: resolve the config, load the records (pairing ratio, overlong prompts), hold out the
    probe set, check the records and their references. Returns the run's state, which every later
    phase adds to. It holds the run lock (released when it goes, as train() returns): nothing put in it
    may refer back to it, or a reference cycle would keep the lock until the garbage collector runs."""
    from negfree.common.models import load_tokenizer
    from negfree.data.schema import load_jsonl

    cfg = resolve_config(cfg)
    method = get_method(cfg["method"])
    out_dir = Path(cfg["out_dir"])
    check_writable(out_dir, "out_dir")   # everything is checked before the run directory gets its first file
    per_token = method.token_level and method.needs_reference   # BNF reads reference log-probs per token
    records = load_jsonl(cfg["data"], transform=lambda r: compact_references(r, per_token))
    if cfg["pairing_ratio"] is not None:
        records = mask_scored_pairs(records, cfg["pairing_ratio"], cfg["seed"])
    tok = load_tokenizer(cfg["model"])
    records, dropped = drop_overlong(tok, records, cfg)
    probe = []
    if cfg["probe_records"]:
        if cfg["probe_records"] >= len(records):
            raise ValueError(f"train: probe_records={cfg['probe_records']} leaves no training record "
                             f"({len(records)} records in {cfg['data']})")
        records, probe = records[:-cfg["probe_records"]], records[-cfg["probe_records"]:]
        check_records(probe, method, 0, cfg["data"], negatives=False)
    check_records(records, method, cfg["num_negatives"], cfg["data"], negatives=cfg["num_negatives"] > 0)
    use_ref = method.needs_reference or all(r.get("ref") for r in records)
    if use_ref:
        check_references(tok, records, method, cfg, cfg["data"])
    return types.SimpleNamespace(cfg=cfg, method=method, out_dir=out_dir, tok=tok, records=records,
                                 dropped=dropped, probe=probe, use_ref=use_ref)


def _build(run: types.SimpleNamespace) -> None:
    """Phase 2: seed, count the processes and the steps, build the accelerator, load the model (then
    take the run lock), choose packing / length bucketing / the chunked head, build the optimizer and
    scheduler and prepare them, DFT's log u."""
    from negfree.common.models import load_model

    cfg, method, out_dir, records = run.cfg, run.method, run.out_dir, run.records
    random.seed(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    n, bs, mbs = len(records), cfg["batch_size"], cfg["micro_batch_size"]
    from accelerate import PartialState

    world = PartialState(cpu=not torch.cuda.is_available()).num_processes
    if bs % (world * mbs):
        raise ValueError(f"train: batch_size={bs} must be a multiple of processes x micro_batch_size "
                         f"= {world} x {mbs}")
    per_rank = bs // world
    n_micro = per_rank // mbs
    accelerator = _accelerator(cfg, n_micro)
    rank = accelerator.process_index
    steps_per_epoch = n // bs
    if steps_per_epoch == 0:
        raise ValueError(f"train: {n} records cannot fill one batch of {bs}")
    total = steps_per_epoch * cfg["epochs"]
    if cfg["max_steps"] is not None:
        total = min(total, int(cfg["max_steps"]))

    rss_before = _rss_mb()
    model = load_model(cfg["model"], device="cpu",   # accelerate places (or shards) it
                       attn_implementation=cfg["attn_implementation"], weights=not _receives_shards(accelerator))
    load_mb = _gather_floats(accelerator, world, _growth_mb(rss_before))
    # one launch per out_dir (a Slurm requeue beside a live run): taken once the weights have been read
    # (unreadable weights leave no directory), before the model goes to the GPU and before the first
    # read or write of the directory; held until train() returns or the process dies
    run_lock = RunLock(out_dir, accelerator).acquire()
    unpackable = packing_support(model) if cfg["packing"] else None
    packed = cfg["packing"] and unpackable is None
    if unpackable:
        accelerator.print(f"[train] packing: off, {unpackable}; length bucketing instead")
    # characters of the prompt and its longest answer: a cheap proxy for the padded row length.
    # Not for methods with a per-micro-batch estimate (KTO's z0): grouping would change it.
    bucketing = bool(cfg["length_bucketing"] or unpackable) and not method.needs_mismatched
    lengths = [len(str(r["prompt"])) + max([len(r.get("positive") or "")] + [len(a) for a in r.get("negatives") or []])
               for r in records] if bucketing else []
    if cfg["gradient_checkpointing"]:
        model.gradient_checkpointing_enable()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    # The scheduler is not passed through prepare(): accelerate would step it once per process.
    scheduler = make_scheduler(optimizer, cfg, total)
    model, optimizer = accelerator.prepare(model, optimizer)
    host_mb = _host_peak_mb_per_rank(accelerator, world)
    accelerator.register_for_checkpointing(scheduler)
    raw_model = accelerator.unwrap_model(model)
    from accelerate.utils import DistributedType

    # FSDP and ZeRO-3 keep parameters sharded outside the wrapped forward: full logits there.
    chunked_head = bool(cfg["chunked_head"] and plain_output_head(raw_model) is not None
                        and accelerator.distributed_type not in (DistributedType.FSDP, DistributedType.DEEPSPEED))
    log_u = torch.zeros(n, dtype=torch.float64) if method.stateful else None
    vars(run).update(n=n, bs=bs, mbs=mbs, world=world, per_rank=per_rank, n_micro=n_micro, accelerator=accelerator,
                     rank=rank, steps_per_epoch=steps_per_epoch, total=total, load_mb=load_mb, run_lock=run_lock,
                     unpackable=unpackable, packed=packed, bucketing=bucketing, lengths=lengths, model=model,
                     optimizer=optimizer, scheduler=scheduler, host_mb=host_mb, raw_model=raw_model,
                     chunked_head=chunked_head, log_u=log_u)


def _open_run(run: types.SimpleNamespace) -> None:
    """Phase 3: resume from the newest checkpoint where there is one, open the logs, write config.json,
    provenance.json and run_info.json (the first process), measure the probe set at step 0 and start
    the trackers."""
    cfg, method, out_dir, accelerator, tok = run.cfg, run.method, run.out_dir, run.accelerator, run.tok
    model, raw_model, chunked_head, packed, log_u = run.model, run.raw_model, run.chunked_head, run.packed, run.log_u
    n, world, n_micro, total, dropped, probe = run.n, run.world, run.n_micro, run.total, run.dropped, run.probe
    host_mb, load_mb, bucketing, unpackable = run.host_mb, run.load_mb, run.bucketing, run.unpackable
    chash = config_hash(cfg)
    ckpt = Checkpoints(out_dir, accelerator, cfg["keep_checkpoints"])
    start = 0
    if cfg["resume"]:
        restored = ckpt.load(chash)
        if restored is not None:
            start, saved_u = restored
            if log_u is not None:
                log_u = saved_u
            accelerator.print(f"[train] resumed from {ckpt.resumed_from} at step {start}")
    main = accelerator.is_main_process
    log = MetricsLog(out_dir / "metrics.jsonl", keep_steps=start, enabled=main)
    perf = MetricsLog(out_dir / "perf.jsonl", keep_steps=start, enabled=main)
    if main:
        write_json(out_dir / "config.json", cfg)
        write_json(out_dir / "provenance.json", provenance())
        run_info = {"records": n, "dropped_overlong_prompts": dropped,
                                               "processes": world, "micro_batches_per_step": n_micro,
                                               "distributed": str(accelerator.distributed_type),
                                               "parameter_dtype": str(next(raw_model.parameters()).dtype),
                                               "host_peak_mb_per_rank_after_load": host_mb,
                                               "host_mb_for_loading_per_rank": load_mb,
                                               "model_fp32_mb": round(_param_bytes(raw_model, 4) / 2**20, 1),
                                               "total_steps": total, "resumed_from_step": start,
                                               "probe_records": [r["id"] for r in probe],
                                               "chunked_head": chunked_head, "length_bucketing": bucketing,
                                               "packing": packed, "packing_unsupported": unpackable,
                                               "attn_implementation": getattr(raw_model.config, "_attn_implementation",
                                                                              None),
                                               "config_hash": chash}
        write_json(out_dir / "run_info.json", run_info)
    probe_log = MetricsLog(out_dir / "probe.jsonl", keep_steps=start, enabled=main and bool(probe))
    probe_ref = bool(probe) and all(r.get("ref") for r in probe)

    def write_probe(at: int) -> None:
        if probe:
            probe_log.write({"step": at, "records": len(probe), **probe_metrics(
                model, raw_model, tok, probe, cfg, chunked_head, accelerator.autocast, probe_ref, packed)})

    if start == 0:
        write_probe(0)   # the starting policy (= the reference where S0 exists)
    if cfg["report_to"]:
        accelerator.init_trackers(method.name, config={k: v for k, v in cfg.items() if k != "hparams"})
    vars(run).update(chash=chash, ckpt=ckpt, start=start, log_u=log_u, main=main, log=log, perf=perf,
                     run_info=run_info if main else None, write_probe=write_probe)


def _step_loop(run: types.SimpleNamespace) -> None:
    """Phase 4: the optimizer steps, ``run.start`` to ``run.total``, each over this process's micro-batches;
    checkpoints every save_every steps, and on SIGTERM before stopping (Preempted)."""
    cfg, method, accelerator, model, raw_model = run.cfg, run.method, run.accelerator, run.model, run.raw_model
    records, optimizer, scheduler, log_u, packed = run.records, run.optimizer, run.scheduler, run.log_u, run.packed
    n, bs, world, n_micro, start, total, main = run.n, run.bs, run.world, run.n_micro, run.start, run.total, run.main
    hp, dev = cfg["hparams"], accelerator.device
    gather = (lambda t: accelerator.gather(t.contiguous())) if world > 1 else None
    t0 = time.time()
    from tqdm import tqdm

    # progress with ETA on stderr (the first process only); metrics.jsonl stays the record
    bar = tqdm(total=total, initial=start, desc=f"train {method.name}", unit="step", disable=not main,
               dynamic_ncols=True, mininterval=5.0)
    held_mb = None
    with StopFlag() as stop, bar:
        for step in range(start, total):
            epoch, s = divmod(step, run.steps_per_epoch)
            ts = time.time()
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            mine, micro, denom = _micro_batches(run, epoch, s)   # this process's prompts, collated
            sums, n_tokens, grad_norm, padded = {}, 0, float("nan"), 0
            for mi, batch in micro:
                with accelerator.accumulate(model):
                    inp, out = forward_micro(model, raw_model, batch, method, hp, log_u, mi, cfg, run.chunked_head,
                                             dev, accelerator.autocast, gather, packed)
                    if not torch.isfinite(out.loss):
                        raise FloatingPointError(f"step {step + 1}: method '{method.name}' gave loss "
                                                 f"{out.loss.item()} (record ids {[records[i]['id'] for i in mi]})")
                    share = (batch.pos_tokens if method.reduction == "tokens" else len(mi)) / denom
                    # accelerate divides by gradient_accumulation_steps; DDP averages over processes
                    accelerator.backward(out.loss * share * world * n_micro)
                    if step == start and not accelerator.sync_gradients and held_mb is None:
                        held_mb = held_gradient_mb(model)   # what accumulation keeps between micro-batches
                    if out.log_u is not None:
                        log_u[mi] = out.log_u.detach().to(device="cpu", dtype=log_u.dtype)
                    n_tokens += int(batch.attn.sum())
                    # positions computed, padding included (this process): packing computes its rows' widths
                    padded += packed_positions(batch.attn, cfg["pack_capacity"]) if packed else batch.attn.numel()
                    w = len(mi) / bs
                    row = {**sequence_metrics(inp), **{k: float(v.detach()) for k, v in out.metrics.items()}}
                    for k, v in row.items():
                        sums[k] = sums.get(k, 0.0) + v * w
                    sums["loss"] = sums.get("loss", 0.0) + float(out.loss.detach()) * share
                    if accelerator.sync_gradients:
                        fault("kill", step + 1)
                        gn = accelerator.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
                        grad_norm = float(gn) if gn is not None else float("nan")   # DeepSpeed clips inside
                    lr = scheduler.get_last_lr()[0]   # the rate this step uses
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            if world > 1:
                sums, n_tokens, log_u = _sync(accelerator, sums, n_tokens, log_u, mine)
            dt = time.time() - ts
            if log_u is not None:
                sums.update(log_u_mean=float(log_u.mean()), log_u_std=float(log_u.std()) if n > 1 else 0.0)
            run.log.write({"step": step + 1, "epoch": epoch, "lr": lr, "grad_norm": grad_norm, "tokens": n_tokens,
                           **{k: sums[k] for k in sorted(sums)}})
            run.perf.write({"step": step + 1, "seconds": round(dt, 4), "tokens_per_s": round(n_tokens / dt, 2),
                            "peak_memory_mb": MetricsLog.peak_memory_mb(), "padded_positions_rank0": padded})
            if (step + 1) % cfg["probe_every"] == 0 or step + 1 == total:
                run.write_probe(step + 1)
            if step == start and n_micro > 1:
                held = _gather_floats(accelerator, world, held_mb or 0.0)
                if main:
                    run.run_info["gradient_mb_held_between_micro_batches"] = held
                    write_json(run.out_dir / "run_info.json", run.run_info)
            bar.set_postfix(loss=f"{sums['loss']:.4g}", refresh=False)
            bar.update(1)
            if cfg["report_to"]:
                accelerator.log({"loss": sums["loss"], "lr": lr, "grad_norm": grad_norm}, step=step + 1)
            preempted = _any(accelerator, stop.set, world)
            if preempted or (cfg["save_every"] and (step + 1) % cfg["save_every"] == 0 and step + 1 < total):
                path = run.ckpt.save(step + 1, run.chash, log_u)
                if preempted:
                    raise Preempted(step + 1, path)
    run.wall, run.log_u = time.time() - t0, log_u


def _finish(run: types.SimpleNamespace) -> dict:
    """Phase 5: final/ (the first process: the weights in save_dtype, the tokenizer, DFT's log u), end the
    trackers, clear the checkpoints, write timing.json; returns the timing."""
    cfg, method, accelerator, out_dir, tok = run.cfg, run.method, run.accelerator, run.out_dir, run.tok
    raw_model, log_u, wall, start, total, world, main = (run.raw_model, run.log_u, run.wall, run.start, run.total,
                                                         run.world, run.main)
    final = out_dir / "final"
    state = accelerator.get_state_dict(run.model)
    save_dtype = _save_dtype(cfg)
    if main:
        from negfree.common.io import write_dir_atomically

        if cfg["fallback_template"] and tok.chat_template is None:
            # the template the run was trained with travels with it (evaluation with a chat template)
            from negfree.data.tokenize import ZEPHYR_TEMPLATE

            tok.chat_template = ZEPHYR_TEMPLATE

        def fill(tmp):
            weights = {k: v.to(save_dtype) if v.is_floating_point() else v for k, v in state.items()}
            raw_model.save_pretrained(tmp, state_dict=weights, safe_serialization=True)
            # save_pretrained writes the dtype of the (fp32, training) parameters: say what the files hold
            config = json.loads((tmp / "config.json").read_text())
            write_json(tmp / "config.json", {**config, "dtype": str(save_dtype).removeprefix("torch.")})
            tok.save_pretrained(tmp)
            if log_u is not None:
                torch.save(log_u, tmp / "dft_log_u.pt")

        write_dir_atomically(final, fill)
    accelerator.wait_for_everyone()
    if cfg["report_to"]:
        accelerator.end_training()
    if not cfg["keep_checkpoints_at_end"]:
        run.ckpt.clear()
    steps_run = total - start
    timing = {"method": method.name, "steps": total, "steps_this_session": steps_run,
              "wall_seconds": round(wall, 3), "seconds_per_step": round(wall / max(steps_run, 1), 4),
              "peak_memory_mb": MetricsLog.peak_memory_mb(), "processes": world}
    if main:
        write_json(out_dir / "timing.json", timing)
    return timing


def _micro_batches(run: types.SimpleNamespace, epoch: int, s: int) -> tuple[list[int], list, float]:
    """Step ``s`` of ``epoch`` on this process: its prompts (``mine``), its micro-batches
    [(record indices, collated batch)] and the step's global normaliser."""
    cfg, method, accelerator, records, lengths = run.cfg, run.method, run.accelerator, run.records, run.lengths
    n, bs, mbs, world, rank, per_rank = run.n, run.bs, run.mbs, run.world, run.rank, run.per_rank
    order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg["seed"] * 1000 + epoch)).tolist()
    mine = order[s * bs:(s + 1) * bs][rank * per_rank:(rank + 1) * per_rank]
    if run.bucketing and run.n_micro > 1:
        mine = sorted(mine, key=lambda i: lengths[i])   # similar lengths share a micro-batch
    micro = []
    for m in range(0, per_rank, mbs):
        mi = mine[m:m + mbs]
        negs = [negative_indices(records[i], i, epoch, cfg["num_negatives"], cfg["seed"]) for i in mi]
        kl = [mismatched_of(records, i) for i in mi] if method.needs_mismatched else []
        micro.append((mi, collate(run.tok, [records[i] for i in mi], negs, cfg, kl, run.use_ref)))
    # the global normaliser: prompts, or positive answer tokens summed over every process
    if method.reduction == "tokens":
        local = torch.tensor([float(sum(b.pos_tokens for _, b in micro))], device=accelerator.device)
        denom = float(accelerator.reduce(local, "sum")) if world > 1 else float(local)
    else:
        denom = float(bs)
    return mine, micro, denom


def _save_dtype(cfg: dict) -> torch.dtype:
    """final/'s dtype: the base checkpoint's (fp32 where its config does not say) unless save_dtype names one."""
    from negfree.common.models import checkpoint_dtype

    if cfg["save_dtype"] != "base":
        return getattr(torch, cfg["save_dtype"])
    return checkpoint_dtype(cfg["model"]) or torch.float32


def _receives_shards(accelerator) -> bool:
    """FSDP with cpu_ram_efficient_loading: the first process reads the checkpoint and accelerate
    broadcasts every other process its shards (fsdp2_load_full_state_dict), so the others build
    the architecture alone (negfree.common.models.load_model(weights=False))."""
    from accelerate.utils import DistributedType

    plugin = getattr(accelerator.state, "fsdp_plugin", None)
    return (accelerator.distributed_type == DistributedType.FSDP and plugin is not None
            and bool(plugin.cpu_ram_efficient_loading) and not accelerator.is_main_process)


def _rss_mb() -> tuple[float, float]:
    """(resident now, peak resident so far) of this process, MiB (Linux /proc; the peak alone elsewhere)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20, peak
    except (OSError, ValueError, IndexError):
        return peak, peak


def _growth_mb(before: tuple[float, float]) -> float:
    """Host memory the load took: the peak's rise above the resident size before it where the
    peak rose during the load (the converted copy transformers builds counts), else the rise of
    the resident size."""
    now, peak = _rss_mb()
    return round(max(peak - before[0] if peak > before[1] else 0.0, now - before[0], 0.0), 1)


def _gather_floats(accelerator, world: int, value: float) -> list[float]:
    mine = torch.tensor([float(value)], dtype=torch.float64, device=accelerator.device)
    every = accelerator.gather(mine).cpu() if world > 1 else mine.cpu()
    return [round(float(x), 1) for x in every]


def _param_bytes(model, width: int) -> int:
    return sum(p.numel() for p in model.parameters()) * width


def held_gradient_mb(model) -> float:
    """Gradient memory this process holds now, MiB: each parameter's ``.grad`` (its local shard
    under FSDP2) plus the gradients FSDP2 keeps unsharded while gradient sync is off (torch's
    FSDPParam.unsharded_accumulated_grad, or the unsharded parameter's own .grad)."""
    def size(t) -> int:
        t = t.to_local() if hasattr(t, "to_local") else t
        return t.numel() * t.element_size()

    held = sum(size(p.grad) for p in model.parameters() if p.grad is not None)
    for module in model.modules():
        state = module._get_fsdp_state() if hasattr(module, "_get_fsdp_state") else None
        for fp in getattr(getattr(state, "_fsdp_param_group", None), "fsdp_params", None) or []:
            unsharded = getattr(fp, "_unsharded_param", None)
            for t in (getattr(fp, "unsharded_accumulated_grad", None), getattr(unsharded, "grad", None)):
                held += size(t) if t is not None else 0
    return held / 2**20


def _host_peak_mb_per_rank(accelerator, world: int) -> list[float]:
    """Peak resident host memory of every process once the model is loaded and placed (or sharded):
    under FSDP with cpu_ram_efficient_loading only the first process reads the full checkpoint."""
    return _gather_floats(accelerator, world, _rss_mb()[1])


def _any(accelerator, flag: bool, world: int) -> bool:
    if world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(t, "sum") > 0)


def _sync(accelerator, sums: dict, n_tokens: int, log_u, mine: list[int]):
    """Sum the per-process metric shares and token counts; give every process every
    updated log u (each process updated only its own examples)."""
    keys = sorted(sums)
    vec = torch.tensor([sums[k] for k in keys] + [float(n_tokens)], dtype=torch.float64, device=accelerator.device)
    vec = accelerator.reduce(vec, "sum").cpu()
    sums = {k: float(v) for k, v in zip(keys, vec[:-1])}
    if log_u is not None:
        idx = accelerator.gather(torch.tensor(mine, device=accelerator.device)).cpu()
        vals = accelerator.gather(log_u[mine].to(accelerator.device)).cpu()
        log_u[idx] = vals
    return sums, int(vec[-1]), log_u
