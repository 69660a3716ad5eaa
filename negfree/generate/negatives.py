"""Negative generation: a pool of answers sampled from the base model for each prompt.

The four prompting strategies of dft.txt B.5 are named here (and only here):
``direct`` (the user text, no template), ``chat`` (the chat template),
``chat_good`` (+ the UltraFeedback 'good' system message), ``chat_bad``
(+ "You are an unhelpful assistant.", the paper's best). Sampling uses
temperature, top_k 50 and top_p 1.0 as in dft.txt B.5; temperature 0 is greedy
(one answer, repeated ``num`` times). Any temperature > 0 works, e.g. 3.0 for
the "very high temperature" pool of dft.txt Fig. 1.

Reproducibility. Sample j of the record with id ``rid`` draws from its own
``torch.Generator`` seeded by sha256(seed, rid, j) (:func:`sample_seed`). So a
pool does not depend on the batch size, the sharding or an interruption: the
same (seed, id, j) always gives the same answer. transformers' ``generate``
cannot take one generator per row, hence the small decode loop below (KV cache,
left padding, one uniform draw per row and step through the row's own
generator, inverse-CDF over the top-k/top-p distribution). The one remaining
dependence on batching is float rounding of the logits under different padding;
it changes a token only when a draw lands within ~1e-7 of a CDF boundary.

Backends: ``auto`` (the default: ``vllm`` when a CUDA GPU is visible, the vllm package is
installed and vLLM can sample with the settings asked (:data:`BACKEND_LIMITS`), else
``transformers``; the manifest records which ran and why), ``transformers`` (the loop
above, any temperature) and ``vllm`` (GPU; imported
lazily; prompts go in as pre-rendered token ids, so no second BOS and no second
chat template; max_tokens is always set, since vLLM's default is 16; one request
per sample with its per-sample seed). Both write the same file format. ``dtype`` auto
(:func:`generation_dtype`): bf16 weights on CUDA, fp32 on the CPU. vLLM without a CUDA GPU or
without its package stops before any model is loaded, naming the install step; ``vllm`` named
for settings outside its limits (temperature > 2) stops before any file is written.

Work is split by ``shard=i, num_shards=k`` (records i::k; :func:`gather_generated` puts the
shards' outputs back in record order). Finished prompts are
appended to ``<out>.partial.jsonl`` (first line: the configuration) and a
restarted run resumes from it; the output and its manifest are written
atomically only when every prompt is done, so a killed run never leaves a file
that looks complete.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from negfree.common.fingerprint import model_fingerprint
from negfree.common.io import _clean, atomic_write_bytes, check_writable, read_progress, write_json, write_jsonl
from negfree.common.models import inference_dtype
from negfree.common.vllm_engine import (BACKEND_LIMITS, VLLM_INSTALL, VllmEngine, backend_refusal,  # noqa: F401
                                        check_vllm, vllm_missing)
from negfree.data.tokenize import render_prompt

GOOD_SYSTEM = ("The assistant should answer truthfully and be faithful to factual knowledge as well as "
               "given contexts, never making up any new facts that aren't true or cannot be grounded "
               "in the instruction.")
BAD_SYSTEM = "You are an unhelpful assistant."
STRATEGIES = {
    "direct": dict(chat=False, system=None),
    "chat": dict(chat=True, system=None),
    "chat_good": dict(chat=True, system=GOOD_SYSTEM),
    "chat_bad": dict(chat=True, system=BAD_SYSTEM),
}
BACKENDS = ("auto", "transformers", "vllm")
PARTIAL_FORMAT = "negfree-generate-partial/1"


def strategy(name: str) -> dict:
    if name not in STRATEGIES:
        raise ValueError(f"unknown prompting strategy '{name}'; known: {', '.join(STRATEGIES)}")
    return STRATEGIES[name]


def sample_seed(seed: int, record_id: str, j: int) -> int:
    """The seed of sample ``j`` of record ``record_id`` (63 bits, from sha256)."""
    digest = hashlib.sha256(f"{seed}\x1f{record_id}\x1f{j}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


# ---------------------------------------------------------------- the decode loop
def _next_tokens(logits: torch.Tensor, gens: list[torch.Generator], temperature: float, top_k: int | None,
                 top_p: float) -> torch.Tensor:
    """One token per row: argmax at temperature 0, else an inverse-CDF draw from the row's generator."""
    if temperature == 0:
        return logits.argmax(-1)
    scores = logits.double() / temperature
    k = scores.shape[-1] if not top_k or top_k >= scores.shape[-1] else top_k
    vals, idx = scores.topk(k, dim=-1)                     # sorted, most likely first
    probs = torch.softmax(vals, dim=-1)
    if top_p < 1.0:                                        # keep the smallest prefix with mass >= top_p
        probs = probs * ((probs.cumsum(-1) - probs) < top_p)
    cdf = probs.cumsum(-1)
    u = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in gens]).to(cdf.device)
    pick = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1), right=True).clamp(max=k - 1)
    return idx.gather(-1, pick).squeeze(-1)


@torch.no_grad()
def decode(model, prompts: list[list[int]], seeds: list[int], *, temperature: float, top_p: float = 1.0,
           top_k: int | None = 50, max_new_tokens: int = 320, eos_ids: set[int], pad_id: int) -> list[list[int]]:
    """Sampled continuation token ids (eos included when reached) of each prompt, one generator per row."""
    device = next(model.parameters()).device
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    # The samples of one prompt share its prefill: run each distinct prompt once, then copy
    # its KV cache to every row that samples from it.
    distinct: dict[tuple, int] = {}
    row_of = torch.tensor([distinct.setdefault(tuple(p), len(distinct)) for p in prompts], device=device)
    width = max(len(p) for p in distinct)
    ids = torch.full((len(distinct), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(distinct), width), dtype=torch.long)
    for r, p in enumerate(distinct):                       # left padding: every row ends at the same column
        ids[r, width - len(p):] = torch.tensor(p, dtype=torch.long)
        attn[r, width - len(p):] = 1
    ids, attn = ids.to(device), attn.to(device)
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True, logits_to_keep=1)
    if len(distinct) < len(prompts):
        out.past_key_values.reorder_cache(row_of)
        out.logits, attn, pos = out.logits[row_of], attn[row_of], pos[row_of]
    eos = torch.tensor(sorted(eos_ids), dtype=torch.long, device=device)
    done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    result: list[list[int]] = [[] for _ in prompts]
    for _ in range(max_new_tokens):
        nxt = _next_tokens(out.logits[:, -1, :], gens, temperature, top_k, top_p)
        picked = nxt.tolist()
        for r in (~done).nonzero().flatten().tolist():
            result[r].append(picked[r])
        done |= torch.isin(nxt, eos)
        if bool(done.all()):
            break
        attn = torch.cat([attn, torch.ones_like(attn[:, :1])], dim=-1)
        pos = pos[:, -1:] + 1
        out = model(input_ids=nxt.masked_fill(done, pad_id).unsqueeze(-1), attention_mask=attn, position_ids=pos,
                    past_key_values=out.past_key_values, use_cache=True)
    return result


def _eos_ids(tok, model) -> set[int]:
    ids = {tok.eos_token_id}
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids |= set(gen_eos) if isinstance(gen_eos, (list, tuple)) else {gen_eos}
    return {int(i) for i in ids if i is not None}


class TransformersBackend:
    """The decode loop above on a transformers model (CPU or one GPU)."""

    def __init__(self, model_dir, *, device: str | None = None, dtype: str = "float32"):
        from negfree.common.models import load_model, load_tokenizer, resolve_device

        self.device = resolve_device(device)
        self.tok = load_tokenizer(model_dir)
        self.model = load_model(model_dir, dtype=getattr(torch, dtype), device=self.device).eval()
        self.eos_ids = _eos_ids(self.tok, self.model)

    def sample(self, prompts: list[list[int]], seeds: list[int], *, temperature, top_p, top_k, max_new_tokens):
        outs = decode(self.model, prompts, seeds, temperature=temperature, top_p=top_p, top_k=top_k,
                      max_new_tokens=max_new_tokens, eos_ids=self.eos_ids, pad_id=self.tok.pad_token_id)
        return [(self.tok.decode(o, skip_special_tokens=True).strip(), len(o)) for o in outs]


def choose_backend(backend: str, **settings) -> tuple[str, str | None]:
    """The backend that runs and, for ``auto``, why: vllm where it can run (a CUDA GPU and the
    package) and can sample with ``settings`` (:data:`BACKEND_LIMITS`), else transformers. The
    two give different samples for the same seed, so the pool's manifest names the one that ran."""
    if backend != "auto":
        return backend, None
    why = backend_refusal("vllm", **settings) or vllm_missing()
    return ("transformers", why) if why else ("vllm", "a CUDA GPU and the vllm package are present")


def resolve_backend(backend: str, **settings) -> str:
    """:func:`choose_backend` without the reason."""
    return choose_backend(backend, **settings)[0]


def check_backend(backend: str) -> None:
    """vLLM needs a CUDA GPU and its package: say so before any model is loaded."""
    if backend == "vllm":
        check_vllm()


def generation_dtype(backend: str, device: str, dtype: str | None = None) -> str:
    """The dtype the model decodes in: ``None``/``auto`` is bfloat16 on CUDA (as training computes
    there: :func:`negfree.common.models.inference_dtype`; vLLM always runs on CUDA) and float32 on
    any other device; ``bf16``/``fp32`` are accepted for the full names."""
    alias = {"bf16": "bfloat16", "fp32": "float32", "fp16": "float16"}
    dtype = alias.get(dtype, dtype)
    if dtype in (None, "auto"):
        return "float32" if inference_dtype("cuda" if backend == "vllm" else device) is None else "bfloat16"
    if dtype not in ("bfloat16", "float32", "float16"):
        raise ValueError(f"generate: dtype={dtype!r} is not one of auto, bf16, fp32, bfloat16, float32, float16")
    return dtype


class VllmBackend(VllmEngine):
    """vLLM on pre-rendered token ids, one request per sample with its own seed
    (:class:`negfree.common.vllm_engine.VllmEngine`)."""

    def sample(self, prompts: list[list[int]], seeds: list[int], *, temperature, top_p, top_k, max_new_tokens):
        outs = self.generate(prompts, seeds, temperature=temperature, top_p=top_p, top_k=top_k,
                             max_new_tokens=max_new_tokens)
        return [(o["text"].strip(), len(o["token_ids"])) for o in outs]


# ---------------------------------------------------------------- files
def partial_path(out_path: str | Path) -> Path:
    out = Path(out_path)
    stem = out.name[:-len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return out.with_name(stem + ".partial.jsonl")


def _line(rec: dict) -> bytes:
    """One JSONL line, byte for byte what negfree.common.io.write_jsonl writes."""
    return (json.dumps(_clean(rec), default=str) + "\n").encode("utf-8")


def _sha256_records(records: list[dict]) -> str:
    return hashlib.sha256(b"".join(_line(r) for r in records)).hexdigest()


def _resume(partial: Path, header: dict, records: list[dict]) -> list[bytes]:
    """The finished lines of a previous run with the same configuration ([] when there is none)."""
    done = read_progress(partial, header, "generation")
    if len(done) > len(records):
        raise ValueError(f"{partial}: holds {len(done)} prompts, more than the {len(records)} of this shard")
    for k, line in enumerate(done):
        if json.loads(line).get("id") != records[k]["id"]:
            raise ValueError(f"{partial}: line {k + 2} is record {json.loads(line).get('id')!r}, "
                             f"expected {records[k]['id']!r}; delete it to start over")
    return done


def _check_args(records, num, temperature, top_p, top_k, max_new_tokens, batch_size, shard, num_shards, backend):
    checks = [(isinstance(num, int) and num >= 1, f"num={num!r}: the pool needs at least one negative per prompt"),
              (temperature >= 0, f"temperature={temperature} must be >= 0"),
              (0 < top_p <= 1, f"top_p={top_p} must be in (0, 1]"),
              (top_k is None or (isinstance(top_k, int) and top_k >= 0), f"top_k={top_k!r} must be an int >= 0 "
                                                                          f"(0 or None: no top-k)"),
              (isinstance(max_new_tokens, int) and max_new_tokens >= 1,
               f"max_new_tokens={max_new_tokens!r} must be >= 1"),
              (isinstance(batch_size, int) and batch_size >= 1, f"batch_size={batch_size!r} must be >= 1"),
              (isinstance(num_shards, int) and num_shards >= 1 and isinstance(shard, int) and 0 <= shard < num_shards,
               f"shard={shard!r}, num_shards={num_shards!r}: need 0 <= shard < num_shards"),
              (backend in BACKENDS, f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")]
    for ok, msg in checks:
        if not ok:
            raise ValueError(msg)
    why = backend_refusal(backend, temperature=temperature, top_p=top_p, top_k=top_k, max_new_tokens=max_new_tokens)
    if why:   # a named backend is not swapped silently; auto falls back (choose_backend)
        raise ValueError(f"backend {backend!r} cannot sample this pool: {why}; use backend 'transformers' "
                         f"(or 'auto', which falls back to it)")
    seen = set()
    for k, r in enumerate(records):
        rid = r.get("id") if isinstance(r, dict) else None
        if not isinstance(rid, str) or not rid:
            raise ValueError(f"record {k}: column 'id' must be a non-empty string (it seeds the samples)")
        if rid in seen:
            raise ValueError(f"record {rid!r}: duplicate id (ids seed the samples and must be unique)")
        seen.add(rid)
        if not isinstance(r.get("prompt"), (str, list)) or not r["prompt"]:
            raise ValueError(f"record {rid!r}: column 'prompt' must be a string or a list of messages")


def _messages(prompt) -> list[dict]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt


def generate_negatives(model_dir: str | Path, records: list[dict], out_path: str | Path, *, num: int,
                       strategy_name: str = "chat_bad", temperature: float = 0.7, top_p: float = 1.0,
                       top_k: int | None = 50, max_new_tokens: int = 320, batch_size: int = 8, seed: int = 0,
                       fallback_template: bool = False, shard: int = 0, num_shards: int = 1,
                       backend: str = "auto", device: str | None = None, dtype: str | None = None,
                       progress: bool = True) -> dict:
    """Write ``records[shard::num_shards]`` with a pool of ``num`` negatives each to ``out_path``.

    Returns the manifest, also written to ``<out_path>.manifest.json``. ``batch_size`` counts
    prompts per forward batch (each brings ``num`` rows, 1 at temperature 0).
    """
    from negfree.common.models import check_model_dir

    _check_args(records, num, temperature, top_p, top_k, max_new_tokens, batch_size, shard, num_shards, backend)
    how = strategy(strategy_name)
    check_model_dir(model_dir)
    check_writable(out_path)
    out_path = Path(out_path)
    mine = records[shard::num_shards]
    if not mine:
        raise ValueError(f"shard {shard} of {num_shards} gets no records (the input has {len(records)})")
    backend, backend_reason = choose_backend(backend, temperature=temperature, top_p=top_p, top_k=top_k,
                                             max_new_tokens=max_new_tokens)
    check_backend(backend)
    from negfree.common.models import resolve_device

    device = resolve_device(device) if backend == "transformers" else "cuda"
    dtype = generation_dtype(backend, device, dtype)
    config = {"model": str(model_dir), "model_sha256": model_fingerprint(model_dir), "backend": backend, "dtype": dtype,
              "device": device, "strategy": strategy_name, "system": how["system"], "chat": how["chat"],
              "fallback_template": fallback_template, "temperature": temperature, "top_p": top_p, "top_k": top_k,
              "max_new_tokens": max_new_tokens, "num": num, "seed": seed, "shard": shard,
              "num_shards": num_shards, "input_records_sha256": _sha256_records(mine)}
    header = {"format": PARTIAL_FORMAT, "config": config}
    partial = partial_path(out_path)
    done = _resume(partial, header, mine)
    resumed = len(done)

    if backend == "vllm":
        engine = VllmBackend(model_dir, dtype=dtype, seed=seed)
    else:
        engine = TransformersBackend(model_dir, device=device, dtype=dtype)
    tok = engine.tok
    per = 1 if temperature == 0 else num                  # greedy: one answer, repeated
    bar = tqdm(total=len(mine), initial=resumed, file=sys.stderr, desc=f"generate {out_path.name}",
               unit="prompt", disable=not progress)
    start, n_tokens = time.time(), 0
    partial.parent.mkdir(parents=True, exist_ok=True)
    with partial.open("ab") as fh:
        if resumed == 0:
            fh.truncate(0)
            fh.write(_line(header))
        for b in range(resumed, len(mine), batch_size):
            batch = mine[b:b + batch_size]
            ids, seeds = [], []
            for r in batch:
                text = render_prompt(tok, _messages(r["prompt"]), system=how["system"], chat=how["chat"],
                                     fallback_template=fallback_template)
                p = tok(text, add_special_tokens=False)["input_ids"]
                for j in range(per):
                    ids.append(p)
                    seeds.append(sample_seed(seed, r["id"], j))
            answers = engine.sample(ids, seeds, temperature=temperature, top_p=top_p, top_k=top_k,
                                    max_new_tokens=max_new_tokens)
            lines = []
            for i, r in enumerate(batch):
                mine_answers = answers[i * per:(i + 1) * per]
                n_tokens += sum(n for _, n in mine_answers)
                negs = [a for a, _ in mine_answers] * (num if per == 1 else 1)
                lines.append(_line({**r, "negatives": negs}))
            fh.write(b"".join(lines))
            fh.flush()
            os.fsync(fh.fileno())
            done += lines
            bar.update(len(batch))
    bar.close()
    elapsed = time.time() - start

    data = b"".join(done)
    out_records = [json.loads(x) for x in done]
    manifest = {
        **config, "backend_reason": backend_reason, "batch_size": batch_size,
        "device_used": str(getattr(engine, "device", "vllm")),
        "seeds": {"seed": seed, "per_sample": "torch.Generator seeded by sha256(seed, record id, j)[:8] >> 1"},
        "prompts": len(out_records), "prompts_in_input": len(records), "resumed_prompts": resumed,
        "negatives": sum(len(r["negatives"]) for r in out_records),
        "empty_negatives": sum(1 for r in out_records for a in r["negatives"] if not a),
        "generated_tokens": n_tokens, "seconds": round(elapsed, 2),
        "tokens_per_second": round(n_tokens / max(elapsed, 1e-9), 2),
        "sha256": {"model": config["model_sha256"], "input_records": config["input_records_sha256"],
                   "output": hashlib.sha256(data).hexdigest()},
        "versions": {"torch": torch.__version__, "transformers": _version("transformers")},
    }
    write_json(Path(str(out_path) + ".manifest.json"), manifest)
    atomic_write_bytes(out_path, data)
    partial.unlink()
    return manifest


def gather_generated(records: list[dict], parts: list[str | Path], out_path: str | Path) -> dict:
    """The pool of ``records`` in record order from the outputs of shards 0..k-1 (shard i holds
    records i::k; each part's manifest says which shard it is), checked id by id."""
    shards = {}
    for part in parts:
        m = json.loads(Path(str(part) + ".manifest.json").read_text())
        if m.get("num_shards") != len(parts) or m.get("shard") in shards:
            raise ValueError(f"{part}: shard {m.get('shard')} of {m.get('num_shards')}; expected each of "
                             f"{len(parts)} shards once")
        shards[m["shard"]] = (Path(part).read_bytes().splitlines(keepends=True), m)
    k = len(parts)
    lines = []
    for n, r in enumerate(records):
        part = shards[n % k][0]
        line = part[n // k] if n // k < len(part) else b"{}"
        if json.loads(line).get("id") != r["id"]:
            raise ValueError(f"{parts[n % k]}: line {n // k + 1} is not record {r['id']!r} (shards of other data?)")
        lines.append(line)
    if sum(len(p) for p, _ in shards.values()) != len(records):
        raise ValueError(f"the {k} shards hold {sum(len(p) for p, _ in shards.values())} prompts, the data "
                         f"{len(records)}")
    data = b"".join(lines)
    first = shards[0][1]
    ran = [{key: shards[i][1].get(key) for key in ("backend", "backend_reason")} for i in range(k)]
    manifest = {**{key: first[key] for key in ("model", "backend", "backend_reason", "dtype", "strategy",
                                               "temperature", "num", "seed", "max_new_tokens") if key in first},
                # shards on different machines may resolve `auto` differently: then each is named
                **({"backend_per_shard": ran} if any(r != ran[0] for r in ran) else {}),
                "num_shards": k, "prompts": len(records),
                "generated_tokens": sum(m["generated_tokens"] for _, m in shards.values()),
                "seconds_per_shard": [shards[i][1]["seconds"] for i in range(k)],
                "sha256": {"output": hashlib.sha256(data).hexdigest()}}
    write_json(Path(str(out_path) + ".manifest.json"), manifest)
    atomic_write_bytes(out_path, data)
    return manifest


def _version(pkg: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


def pair_negatives(records: list[dict], out_path: str | Path, *, num: int = 1) -> dict:
    """Strategy ``pair``: the one negative of each prompt is the dataset's own rejected answer
    (preference data; the SFT -> PO rows of dft.txt Tables 3-4, bnf.txt's pairwise sets).
    Nothing is sampled; the output has the same layout as a sampled pool of size 1."""
    from negfree.data.adapters import use_pair_as_negatives

    if num != 1:
        raise ValueError(f"strategy 'pair' gives exactly one negative per prompt; num={num} (set generate.num: 1)")
    out = use_pair_as_negatives(records)
    out_path = Path(out_path)
    write_jsonl(out_path, out)
    manifest = {"strategy": "pair", "num": 1, "prompts": len(out), "input_records_sha256": _sha256_records(records),
                "output_sha256": hashlib.sha256(out_path.read_bytes()).hexdigest()}
    write_json(Path(str(out_path) + ".manifest.json"), manifest)
    return manifest
