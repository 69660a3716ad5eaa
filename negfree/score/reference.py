"""Reference scoring: S0 per token for every answer, stored with the data.

This is the contract that keeps a reference model out of training: every
answer the trainer will see (the positive, each negative, and for KTO the
positive of the next record paired with this prompt) gets its per-token
log-probs under the frozen reference of its stage, computed once here.

By default S0 is conditioned on the training prompt x, as the DFT authors'
code does; ``system`` conditions it on the augmented prompt x-bar instead.

Throughput (issue 15). Every sequence is encoded first; the sequences are then
sorted by length (longest first, ties in record order) and cut into batches of
at most ``batch_size`` sequences and ``max_batch_tokens`` padded positions
(default ``batch_size x max_len``, today's worst case, so peak memory does not
grow). Values go back to their records, so the output does not depend on the
order. On CUDA the forward runs under ``torch.autocast(bfloat16)`` over fp32
weights, the autocast the trainer's ``mixed_precision: auto`` uses, so DPO/DFT
implicit rewards start at ~0; on the CPU it is plain fp32 (tests stay exact).

Sharding and resume. The batch plan is a function of all records, and each
batch belongs to one of ``num_shards`` shards (largest first, to the least
loaded shard): every sequence is computed in the same batch, with the same
padding, whatever the shard count, so a sharded run gives the same bytes as one
pass. A shard appends each finished batch to ``<out>.partial.jsonl`` (first
line: the configuration) and a restarted shard resumes after the last complete
line. One shard (the default) writes the scored file itself; with several, each
shard's ``--out`` is its finished progress file and :func:`gather_scores`
(``negfree score --from-shards``) writes the scored file in record order.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import torch

from negfree.common.batching import check_answers, mismatched_of, pad_batch, padded_positions, plan_batches
from negfree.common.fingerprint import model_fingerprint
from negfree.common.io import _clean, atomic_write_bytes, check_writable, read_progress, write_json
from negfree.common.logprobs import answer_logit_slice, model_token_logprobs, shift_for_causal_lm
from negfree.common.models import inference_dtype
from negfree.data.tokenize import encode, render_prompt

PARTIAL_FORMAT = "negfree-score-partial/1"


def _autocast(device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


@torch.no_grad()
def answer_token_logprobs(model, seqs: list[list[int]], starts: list[int], pad_id: int,
                          dtype: torch.dtype | None = None) -> list[list[float]]:
    """Per-token log-probs of the answer part of each sequence (one list per sequence); ``dtype``:
    compute under autocast to it (None: the weights' dtype)."""
    ids, attn, ans = pad_batch(seqs, starts, pad_id)
    labels, mask = shift_for_causal_lm(ids, ans)
    dev = model.device
    with _autocast(dev, dtype):
        tok, _ = model_token_logprobs(model, model, labels.to(dev), mask.to(dev), input_ids=ids.to(dev),
                                      attention_mask=attn.to(dev))
    tok = tok.float().cpu()
    return [tok[i, answer_logit_slice(a, len(s))].tolist() for i, (s, a) in enumerate(zip(seqs, starts))]


def answers_of(records: list[dict], i: int, mismatched: bool) -> list[tuple[str, str]]:
    r = records[i]
    items = [] if r.get("positive") is None else [("positive", r["positive"])]
    items += [("negative", a) for a in r.get("negatives", [])]
    if mismatched:
        items.append(("mismatched", mismatched_of(records, i)["positive"]))
    return items


# ------------------------------------------------------------------ the batch plan
def assign_shards(lengths: list[int], batches: list[list[int]], num_shards: int) -> list[int]:
    """The shard of each batch: in plan order, to the shard with the fewest padded positions so
    far (ties: the lowest shard). A function of the plan alone, so every shard agrees."""
    load, out = [0] * num_shards, []
    for b in batches:
        s = min(range(num_shards), key=lambda j: (load[j], j))
        load[s] += len(b) * max(lengths[k] for k in b)
        out.append(s)
    return out


# ------------------------------------------------------------------ files
def partial_path(out_path: str | Path) -> Path:
    out = Path(out_path)
    stem = out.name[:-len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return out.with_name(stem + ".partial.jsonl")


def _line(obj) -> bytes:
    """One JSONL line, byte for byte what negfree.common.io.write_jsonl writes."""
    return (json.dumps(_clean(obj), default=str) + "\n").encode("utf-8")


def _resume(partial: Path, header: dict, my_batches: list[int]) -> list[bytes]:
    """The finished batch lines of a previous run of this shard with the same configuration."""
    done = read_progress(partial, header, "scoring", unlabelled="plan")
    for k, line in enumerate(done):
        if k >= len(my_batches) or json.loads(line).get("batch") != my_batches[k]:
            raise ValueError(f"{partial}: line {k + 2} is not batch {my_batches[k] if k < len(my_batches) else '-'} "
                             f"of this shard; delete it to start over")
    return done


# ------------------------------------------------------------------ scoring
def encode_jobs(tok, records: list[dict], *, max_len: int, max_prompt_len: int | None, system: str | None,
                mismatched: bool, fallback_template: bool, overlong_prompts: str):
    """(jobs, skipped): jobs = (record index, kind, encoded) for every answer in record order;
    skipped = record indices whose prompt is over the limit (``overlong_prompts='skip'``)."""
    jobs, skipped = [], []
    for i, r in enumerate(records):
        prompt = render_prompt(tok, r["prompt"], system=system, fallback_template=fallback_template)
        try:
            mine = [(i, kind, encode(tok, prompt, answer, max_len=max_len, max_prompt_len=max_prompt_len,
                                     where=f"record {r['id']}")) for kind, answer in answers_of(records, i, mismatched)]
        except ValueError:
            if overlong_prompts == "error":
                raise
            skipped.append(i)
            continue
        jobs += mine
    return jobs, skipped


def score_records(model_dir: str | Path, records: list[dict], out_path: str | Path, *, max_len: int = 512,
                  max_prompt_len: int | None = None, batch_size: int = 16, max_batch_tokens: int | None = None,
                  sort: bool = True, system: str | None = None, mismatched: bool = True,
                  fallback_template: bool = False, overlong_prompts: str = "error",
                  source: str | Path | None = None, shard: int = 0, num_shards: int = 1,
                  precision: str = "auto", device: str | None = None) -> dict:
    """Add ``ref`` = {positive: [...], negatives: [[...]], mismatched: [...]} to every record.

    A prompt over the limit stops scoring naming the record (``overlong_prompts='error'``), or
    (``'skip'``) leaves that record unscored (``ref: null``), counted in the manifest: the
    trainer's ``overlong_prompts: skip`` drops the same records before training. The records,
    the model and the output location are checked before any scoring (``source``: the file
    the records came from, for the messages). With ``num_shards > 1`` this writes shard
    ``shard``'s part to ``out_path`` (see the module docstring) and returns its manifest."""
    from negfree.common.models import check_model_dir, load_model, load_tokenizer, resolve_device

    if overlong_prompts not in ("error", "skip"):
        raise ValueError(f"score: overlong_prompts={overlong_prompts!r} is not one of error, skip")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"score: batch_size={batch_size!r} must be >= 1")
    if max_batch_tokens is not None and max_batch_tokens < 1:
        raise ValueError(f"score: max_batch_tokens={max_batch_tokens!r} must be >= 1")
    if not (isinstance(num_shards, int) and num_shards >= 1 and isinstance(shard, int) and 0 <= shard < num_shards):
        raise ValueError(f"score: shard={shard!r}, num_shards={num_shards!r}: need 0 <= shard < num_shards")
    device = resolve_device(device)
    dtype = inference_dtype(device, precision, stage="score")
    check_answers(records, source)
    check_model_dir(model_dir)
    check_writable(out_path)
    out_path = Path(out_path)

    tok = load_tokenizer(model_dir)
    jobs, skipped = encode_jobs(tok, records, max_len=max_len, max_prompt_len=max_prompt_len, system=system,
                                mismatched=mismatched, fallback_template=fallback_template,
                                overlong_prompts=overlong_prompts)
    lengths = [len(e.ids) for _, _, e in jobs]
    tokens = max_batch_tokens or batch_size * max_len
    batches = plan_batches(lengths, batch_size=batch_size, max_batch_tokens=tokens, sort=sort)
    owner = assign_shards(lengths, batches, num_shards)
    mine = [b for b, s in enumerate(owner) if s == shard]
    if num_shards > 1 and len(batches) < num_shards:
        raise ValueError(f"score: {num_shards} shards for {len(batches)} batches ({len(jobs)} sequences): "
                         f"shard(s) {', '.join(str(s) for s in range(num_shards) if s not in owner)} would get "
                         f"nothing; use at most {len(batches)} shards")
    config = {"reference_model": str(model_dir), "model_fingerprint": model_fingerprint(model_dir),
              "input_records_sha256": hashlib.sha256(b"".join(_line(r) for r in records)).hexdigest(),
              "records": len(records), "max_len": max_len, "max_prompt_len": max_prompt_len,
              "conditioned_on_system": system, "mismatched": mismatched, "fallback_template": fallback_template,
              "overlong_prompts": overlong_prompts, "batch_size": batch_size, "max_batch_tokens": tokens,
              "sorted": sort, "precision": "fp32" if dtype is None else "bf16", "num_shards": num_shards}
    stats = {"sequences": len(jobs), "truncated_answers": sum(1 for _, _, e in jobs if e.truncated),
             "skipped": skipped, "batches": len(batches), "real_tokens": sum(lengths),
             "padded_positions": padded_positions(lengths, batches)}
    header = {"format": PARTIAL_FORMAT, "config": config, "shard": shard, "stats": stats}
    partial = partial_path(out_path)
    done = _resume(partial, header, mine)
    resumed = len(done)

    start = time.time()
    if resumed < len(mine):
        # bf16 weights where scoring computes in bf16: fp32 weights under autocast would keep a bf16
        # copy of every weight beside them (6 B/param on the GPU instead of 2)
        model = load_model(model_dir, dtype=dtype or torch.float32, device=device).eval()
        partial.parent.mkdir(parents=True, exist_ok=True)
        with partial.open("ab") as fh:
            if resumed == 0:
                fh.truncate(0)
                fh.write(_line(header))
            from tqdm import tqdm

            bar = tqdm(mine[resumed:], total=len(mine), initial=resumed, desc=f"score {Path(out_path).name}",
                       unit="batch", file=sys.stderr, mininterval=5.0, dynamic_ncols=True)
            for b in bar:
                chunk = [jobs[k][2] for k in batches[b]]
                lps = answer_token_logprobs(model, [e.ids for e in chunk], [e.answer_start for e in chunk],
                                            tok.pad_token_id, dtype=dtype)
                line = _line({"batch": b, "values": [[k, lp] for k, lp in zip(batches[b], lps)]})
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
                done.append(line)
    elapsed = time.time() - start
    body = _line(header) + b"".join(done)
    run = {"shard": shard, "resumed_batches": resumed, "device": device, "seconds": round(elapsed, 2)}
    if num_shards == 1:
        manifest = {**gather_scores(records, [body], out_path, source=str(partial)), **run}
        partial.unlink()
    else:
        atomic_write_bytes(out_path, body)
        partial.unlink()
        manifest = {**config, **{k: v for k, v in stats.items() if k != "skipped"}, **run,
                    "shard_batches": len(mine)}
    write_json(Path(str(out_path) + ".manifest.json"), manifest)
    return manifest


def gather_scores(records: list[dict], shards: list, out_path: str | Path, *, source: str | None = None) -> dict:
    """Write the scored file from every shard's part (paths, or the bytes of one part), in record
    order; each part must come from the same configuration and the same records, and together
    they must cover every batch once. Returns the manifest (not written here)."""
    headers, values = [], {}
    for n, part in enumerate(shards):
        where = source or (str(part) if not isinstance(part, bytes) else f"part {n}")
        data = part if isinstance(part, bytes) else Path(part).read_bytes()
        lines = data.splitlines()
        try:
            head = json.loads(lines[0]) if lines else None
        except json.JSONDecodeError:
            head = None
        if not isinstance(head, dict) or head.get("format") != PARTIAL_FORMAT:
            raise ValueError(f"{where}: not a negfree scoring shard")
        headers.append((where, head))
        for line in lines[1:]:
            for k, lp in json.loads(line)["values"]:
                if k in values:
                    raise ValueError(f"{where}: sequence {k} is scored twice (a shard given twice?)")
                values[k] = lp
    where0, h0 = headers[0]
    cfg, stats = h0["config"], h0["stats"]
    for where, h in headers[1:]:
        if h["config"] != cfg or h["stats"] != stats:
            raise ValueError(f"{where}: made with another configuration than {where0}")
    got = sorted(h["shard"] for _, h in headers)
    if got != list(range(cfg["num_shards"])):
        raise ValueError(f"score: shards {got} given, expected 0..{cfg['num_shards'] - 1}")
    if cfg["records"] != len(records) or hashlib.sha256(b"".join(_line(r) for r in records)).hexdigest() \
            != cfg["input_records_sha256"]:
        raise ValueError(f"{where0}: scored other records than the data given (re-run the shards)")
    skipped = set(stats["skipped"])
    out = [{**r, "ref": None if i in skipped else {"positive": None, "negatives": [], "mismatched": None}}
           for i, r in enumerate(records)]
    k = 0
    for i in range(len(records)):
        if i in skipped:
            continue
        for kind, _ in answers_of(records, i, cfg["mismatched"]):
            if k not in values:
                raise ValueError(f"score: sequence {k} (record {records[i]['id']}, {kind}) is in no shard")
            ref = out[i]["ref"]
            if kind == "negative":
                ref["negatives"].append(values[k])
            else:
                ref[kind] = values[k]
            k += 1
    if k != stats["sequences"] or len(values) != k:
        raise ValueError(f"score: the shards hold {len(values)} sequences, the records {k}")
    atomic_write_bytes(out_path, b"".join(_line(r) for r in out))
    return {**cfg, "records": len(out), "sequences": k, "truncated_answers": stats["truncated_answers"],
            "skipped_overlong_prompts": [records[i]["id"] for i in sorted(skipped)],
            "batches": stats["batches"], "real_tokens": stats["real_tokens"],
            "padded_positions": stats["padded_positions"],
            "padding_ratio": round(stats["padded_positions"] / max(stats["real_tokens"], 1), 4)}


# ------------------------------------------------------------------ a columnar copy (issue 14)
KINDS = ("positive", "negative", "mismatched")


def write_reference_table(records: list[dict], path: str | Path) -> Path:
    """The reference log-probs of scored ``records`` as an Arrow IPC file, uncompressed so that
    every process memory-maps one copy (the OS page cache) instead of parsing JSON floats: one row
    per scored answer (record index, kind, j, tokens n, float64 sum, float32 per-token values).
    float32 loses nothing: the scorer's values are float32 numbers."""
    import numpy as np
    import pyarrow as pa

    cols = {"record": [], "kind": [], "j": [], "n": [], "total": [], "logprobs": []}

    def add(i, kind, j, values):
        arr = np.asarray(values, dtype=np.float32)
        for key, v in zip(cols, (i, KINDS.index(kind), j, len(arr), float(arr.astype(np.float64).sum()), arr)):
            cols[key].append(v)

    for i, r in enumerate(records):
        ref = r.get("ref") or {}
        if ref.get("positive") is not None:
            add(i, "positive", 0, ref["positive"])
        for j, values in enumerate(ref.get("negatives") or []):
            add(i, "negative", j, values)
        if ref.get("mismatched") is not None:
            add(i, "mismatched", 0, ref["mismatched"])
    table = pa.table({"record": pa.array(cols["record"], pa.int64()), "kind": pa.array(cols["kind"], pa.int8()),
                      "j": pa.array(cols["j"], pa.int32()), "n": pa.array(cols["n"], pa.int32()),
                      "total": pa.array(cols["total"], pa.float64()),
                      "logprobs": pa.array(cols["logprobs"], pa.list_(pa.float32()))})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return atomic_write_bytes(path, sink.getvalue().to_pybytes())


def read_reference_table(path: str | Path, records: list[dict], per_token: bool) -> list[dict]:
    """``records`` (scored records with or without ``ref``) with ``ref`` from the table, in the
    form the trainer keeps after negfree.train.records.compact_references: float32 arrays that are
    read-only views into the memory map (``per_token``: BNF), else RefSum(sum, n) (every other
    method). A record with no row (skipped as overlong) gets ``ref: None``."""
    import numpy as np
    import pyarrow as pa

    from negfree.common.batching import RefSum

    table = pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()
    rec = table.column("record").to_numpy()
    kind = table.column("kind").to_numpy()
    j = table.column("j").to_numpy()
    n = table.column("n").to_numpy()
    total = table.column("total").to_numpy()
    if per_token:
        lp = table.column("logprobs").combine_chunks()
        flat, offsets = lp.values.to_numpy(zero_copy_only=True), lp.offsets.to_numpy()
    if len(rec) and rec.max() >= len(records):
        raise ValueError(f"{path}: rows for record {int(rec.max())}, the data has {len(records)} records")
    out = [{**r, "ref": None} for r in records]
    for row in range(len(rec)):
        value = (flat[offsets[row]:offsets[row + 1]] if per_token else RefSum(float(total[row]), int(n[row])))
        ref = out[rec[row]]["ref"] or {"positive": None, "negatives": [], "mismatched": None}
        out[rec[row]]["ref"] = ref
        name = KINDS[kind[row]]
        if name == "negative":
            if j[row] != len(ref["negatives"]):
                raise ValueError(f"{path}: record {int(rec[row])}: negative {int(j[row])} out of order")
            ref["negatives"].append(value)
        else:
            ref[name] = value
    return out
