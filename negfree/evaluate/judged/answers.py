"""The model's answers to a judged benchmark's prompts, with its chat template.

One JSONL line per finished prompt::

    {"question_id": <as in the question file>, "turns": [answer, ...], "model": <name>,
     "settings": {...}, "n_tokens": [int, ...], "stopped": [bool, ...]}

- Arena-Hard v0.1 and MT-Bench: one answer per user turn of ``question.jsonl``. Turn k is
  generated from the conversation user t1, assistant a1, ..., user tk, where a1.. are the
  model's OWN earlier answers (as FastChat's gen_model_answer.py and Arena-Hard's
  gen_answer.py do): MT-Bench's second turn sees the model's first answer.
- WildBench v2: one answer, generated from ``conversation_input`` as it is (the recorded
  history, then the last user query).

Decoding: ``temperature`` 0 is greedy (``negfree.evaluate.greedy.generate``); above 0 it
samples (``top_p`` nucleus) with a ``torch.Generator`` per answer seeded from
sha256(seed, question id, turn), so an answer does not depend on the batch it ran in, nor on
an interruption (up to float rounding under different padding). ``category_temperatures``
(MT-Bench) sets the temperature per question category, as FastChat's ``temperature_config``
does (:data:`FASTCHAT_TEMPERATURES`); the others use ``temperature``.

Backends (``backend``): ``auto`` (the default: ``vllm`` where a CUDA GPU and the vllm package are
and every temperature asked is one vLLM samples with, else ``transformers``), ``transformers``
(batched, left padding, the sampler above) and ``vllm`` (:class:`negfree.common.vllm_engine.VllmEngine`,
loaded once per call: the chat template rendered by the tokenizer to token ids, one request per
answer, greedy as temperature 0, sampled with ``SamplingParams(seed=answer_seed(...))``; up to
:data:`VLLM_PROMPTS_PER_CALL` prompts per generate call, vLLM batching them itself;
``stopped`` from vLLM's ``finish_reason``). The two give different samples for the same seed:
``settings`` names the backend that ran. ``vllm`` named where it cannot run (no GPU, no package)
stops in one line before anything is loaded.

Resumable: every finished prompt is appended (and fsynced) at once; a restarted run reads the
file, drops a line cut by a kill, refuses lines of another model or other settings (naming
the setting), and generates only the prompts not yet answered. ``settings`` holds what
decides the answers (benchmark, decoding, seed, backend, the question file's sha256); batch size
and device are left out. Lines written before ``settings`` named the backend count as other
settings (refused, or redone with ``restart_on_new_settings``).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from negfree.common.io import check_writable
from negfree.evaluate.judged.sources import (qid_key, read_arena_hard_questions, read_mt_bench_questions,
                                             read_wildbench_records, sha256_file)

BENCHMARKS = ("arena_hard", "mt_bench", "wildbench")
BACKENDS = ("auto", "transformers", "vllm")
#: prompts per vLLM generate call (vLLM schedules them itself); a kill loses at most one call's answers
VLLM_PROMPTS_PER_CALL = 256
FORMAT = "negfree-judged-answers/1"
#: FastChat fastchat/llm_judge/common.py ``temperature_config`` (MT-Bench sampling per category).
FASTCHAT_TEMPERATURES = {"writing": 0.7, "roleplay": 0.7, "extraction": 0.0, "math": 0.0, "coding": 0.0,
                         "reasoning": 0.0, "stem": 0.1, "humanities": 0.1}


def benchmark_name(name: str) -> str:
    """``arena-hard`` / ``arena_hard`` -> ``arena_hard`` (one of :data:`BENCHMARKS`)."""
    key = str(name).strip().lower().replace("-", "_")
    if key not in BENCHMARKS:
        raise ValueError(f"unknown judged benchmark {name!r}; known: {', '.join(b.replace('_', '-') for b in BENCHMARKS)}")
    return key


class Prompt:
    """What the model answers: ``turns`` (the user turns, answered in order) after ``history``
    (messages given as they are: WildBench's recorded conversation)."""
    __slots__ = ("question_id", "turns", "history", "category")

    def __init__(self, question_id, turns, history=(), category=None):
        self.question_id = question_id
        self.turns = tuple(turns)
        self.history = tuple(history)
        self.category = category

    @property
    def key(self) -> str:
        return qid_key(self.question_id)


def load_prompts(benchmark: str, questions: str | Path) -> list[Prompt]:
    benchmark = benchmark_name(benchmark)
    if benchmark == "mt_bench":
        return [Prompt(q.question_id, q.turns, category=q.category) for q in read_mt_bench_questions(questions)]
    if benchmark == "arena_hard":
        return [Prompt(q.question_id, q.turns, category=q.category) for q in read_arena_hard_questions(questions)]
    return [Prompt(r.session_id, [r.last_query], history=r.history, category=r.primary_tag)
            for r in read_wildbench_records(questions)]


def turn_messages(prompt: Prompt, answers: list[str], turn: int) -> list[dict]:
    """The conversation turn ``turn`` (0-based) is generated from: the history, the earlier
    user turns each followed by the model's own answer, then user turn ``turn``."""
    if len(answers) < turn:
        raise ValueError(f"question {prompt.question_id}: turn {turn + 1} needs the {turn} earlier answer(s)")
    msgs = [dict(m) for m in prompt.history]
    for k in range(turn):
        msgs += [{"role": "user", "content": prompt.turns[k]}, {"role": "assistant", "content": answers[k]}]
    msgs.append({"role": "user", "content": prompt.turns[turn]})
    return msgs


def write_prompt_file(benchmark: str, questions: str | Path, out: str | Path, *, limit: int | None = None) -> dict:
    """The benchmark's prompts as chat messages, one JSONL line each, for ``negfree shifts --data``
    (bnf.txt Figs. 3-4 on Wild-Bench prompts): ``{"id": <question id>, "prompt": [messages]}``, the
    messages of the first turn (:func:`turn_messages`; WildBench: the recorded history, then the
    last user query). The first ``limit`` prompts in the file's order; written atomically. A bad
    question file is refused by its reader, naming the file (and line)."""
    from negfree.common.io import write_jsonl

    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    benchmark = benchmark_name(benchmark)
    every = load_prompts(benchmark, questions)
    prompts = every[:limit] if limit else every
    check_writable(out, "prompt file")
    write_jsonl(out, ({"id": p.question_id, "prompt": turn_messages(p, [], 0)} for p in prompts))
    return {"benchmark": benchmark, "questions": str(questions), "out": str(out), "n": len(prompts),
            "in_file": len(every)}


def answer_seed(seed: int, question_id, turn: int) -> int:
    """The sampling seed of one answer (63 bits of sha256(seed, question id, turn))."""
    digest = hashlib.sha256(f"{seed}\x1f{qid_key(question_id)}\x1f{turn}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


# ---------------------------------------------------------------------------- decoding
def _eos_ids(generation_config, tok) -> list[int]:
    """The ids an answer stops at: the tokenizer's eos and the generation config's (None: none)."""
    ids = {tok.eos_token_id}
    gen = getattr(generation_config, "eos_token_id", None)
    ids |= set(gen) if isinstance(gen, (list, tuple, set)) else {gen}
    return sorted(int(i) for i in ids if i is not None)


def _seeded_sampler(seeds: list[int], temperature: float, top_p: float):
    """A logits processor that draws each row's next token from its own generator (temperature,
    then nucleus top_p) and leaves only that token finite, so greedy search takes it."""
    import torch
    from transformers import LogitsProcessor

    class SeededSampler(LogitsProcessor):
        def __init__(self):
            self.gens = [torch.Generator().manual_seed(int(s)) for s in seeds]

        def __call__(self, input_ids, scores):
            probs = torch.softmax(scores.double() / temperature, dim=-1)
            vals, idx = probs.sort(dim=-1, descending=True)
            if top_p < 1.0:     # the smallest prefix holding top_p of the mass
                vals = vals * ((vals.cumsum(-1) - vals) < top_p)
            cdf = vals.cumsum(-1)
            u = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in self.gens]).to(cdf.device)
            pick = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1), right=True).clamp(max=cdf.shape[-1] - 1)
            token = idx.gather(-1, pick)
            out = torch.full_like(scores, float("-inf"))
            return out.scatter(-1, token, 0.0)

    return SeededSampler()


def _sample(model, tok, conversations: list[list[dict]], *, temperature: float, top_p: float,
            max_new_tokens: int, seeds: list[int], batch_size: int, device: str) -> list[dict]:
    """Sampled answers, in order: ``[{"output", "n_tokens", "stopped"}]`` (as greedy.generate)."""
    import torch
    from transformers import LogitsProcessorList

    from negfree.evaluate import greedy

    texts = [greedy.render(tok, c) for c in conversations]
    eos = _eos_ids(model.generation_config, tok)
    tok.padding_side = "left"
    out = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start:start + batch_size]
        enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        sampler = _seeded_sampler(seeds[start:start + batch_size], temperature, top_p)
        with torch.no_grad():
            gen = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens,
                                 pad_token_id=tok.pad_token_id, eos_token_id=eos or None,
                                 temperature=None, top_p=None, top_k=None,
                                 logits_processor=LogitsProcessorList([sampler]))
        for row in gen[:, enc["input_ids"].shape[1]:].tolist():
            cut = next((i for i, t in enumerate(row) if t in eos), None)
            ids = [t for t in (row if cut is None else row[:cut]) if t != tok.pad_token_id]
            out.append({"output": tok.decode(ids, skip_special_tokens=True).strip(),
                        "n_tokens": len(ids), "stopped": cut is not None})
    return out


def _generate_turn(model, tok, conversations: list[list[dict]], *, temperature: float, top_p: float,
                   max_new_tokens: int, seeds: list[int], batch_size: int, device: str) -> list[dict]:
    """One turn's answers for a batch of conversations (greedy at temperature 0)."""
    if temperature == 0:
        from negfree.evaluate import greedy

        return greedy.generate(model, tok, conversations, max_new_tokens=max_new_tokens,
                               batch_size=batch_size, device=device)
    return _sample(model, tok, conversations, temperature=temperature, top_p=top_p,
                   max_new_tokens=max_new_tokens, seeds=seeds, batch_size=batch_size, device=device)


def _chat_tokenizer(model_dir):
    """The model's tokenizer, which must carry a chat template (the judged benchmarks use it)."""
    from negfree.common.models import load_tokenizer

    tok = load_tokenizer(model_dir)
    if not getattr(tok, "chat_template", None):
        raise ValueError(f"the tokenizer of {model_dir} has no chat template; the judged benchmarks "
                         f"generate with the model's chat template")
    return tok


def _load(model_dir, device: str, precision: str):
    import torch

    from negfree.common.models import inference_dtype, load_model

    tok = _chat_tokenizer(model_dir)
    dtype = inference_dtype(device, precision, stage="judged-answers") or torch.float32
    model = load_model(model_dir, dtype=dtype, device=device).eval()
    return model, tok


def choose_backend(backend: str, temperatures) -> str:
    """The backend that answers: ``auto`` is vllm where it can run (a CUDA GPU and the package) and
    samples at every temperature in ``temperatures``, else transformers; ``vllm`` named where it
    cannot run, or for a temperature it refuses, stops here in one line (nothing loaded yet)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    if backend == "transformers":
        return backend
    from negfree.common.vllm_engine import backend_refusal, check_vllm, vllm_missing

    refused = next(filter(None, (backend_refusal("vllm", temperature=t) for t in temperatures)), None)
    if backend == "auto":
        return "transformers" if refused or vllm_missing() else "vllm"
    if refused:
        raise ValueError(f"backend 'vllm' cannot answer with these settings: {refused}; use backend "
                         f"'transformers' (or 'auto', which falls back to it)")
    check_vllm()
    return backend


def _load_vllm(model_dir, precision: str, seed: int):
    """The vLLM engine (loaded once) and the eos ids an answer stops at, as the transformers path's."""
    import torch

    from negfree.common.models import inference_dtype
    from negfree.common.vllm_engine import VllmEngine

    tok = _chat_tokenizer(model_dir)
    dtype = inference_dtype("cuda", precision, stage="judged-answers") or torch.float32
    try:
        from transformers import GenerationConfig

        gen = GenerationConfig.from_pretrained(str(model_dir))
    except OSError:           # no generation_config.json: the tokenizer's eos only
        gen = None
    engine = VllmEngine(model_dir, dtype=str(dtype).removeprefix("torch."), seed=seed, tokenizer=tok)
    return engine, _eos_ids(gen, tok)


def _vllm_turn(engine, conversations: list[list[dict]], *, temperature: float, top_p: float,
               max_new_tokens: int, seeds: list[int], eos: list[int]) -> list[dict]:
    """One turn's answers through vLLM: ``[{"output", "n_tokens", "stopped"}]`` (as greedy.generate:
    the end token not counted). Greedy at temperature 0 (no seed), else each answer's own seed."""
    from negfree.evaluate import greedy

    tok = engine.tok
    ids = [tok(greedy.render(tok, c), add_special_tokens=False)["input_ids"] for c in conversations]
    outs = engine.generate(ids, [None] * len(ids) if temperature == 0 else seeds, temperature=temperature,
                           top_p=top_p, top_k=None, max_new_tokens=max_new_tokens, stop_token_ids=eos)
    res = []
    for o in outs:
        stopped = o["finish_reason"] == "stop"
        n = len(o["token_ids"]) - (1 if stopped and o["token_ids"] and o["token_ids"][-1] in eos else 0)
        res.append({"output": o["text"].strip(), "n_tokens": n, "stopped": stopped})
    return res


# ---------------------------------------------------------------------------- progress
def read_answer_file(path: str | Path, *, trim: bool = False) -> list[tuple[str, dict]]:
    """(``file:line``, record) of every complete line; a last line cut by a kill is dropped
    (and, with ``trim``, cut from the file)."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if trim and end != len(data):
        with open(path, "r+b") as fh:
            fh.truncate(end)
    out = []
    for lineno, raw in enumerate(data[:end].splitlines(), start=1):
        where = f"{path}:{lineno}"
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{where}: not an answer line ({type(err).__name__}); delete the file to start over") from None
        if not isinstance(rec, dict) or "question_id" not in rec or not isinstance(rec.get("turns"), list):
            raise ValueError(f"{where}: field 'turns': not an answer line {{question_id, turns, model, settings}}")
        out.append((where, rec))
    return out


def _line_mismatch(rec: dict, model: str, settings: dict) -> str | None:
    """Why an answer line is not this run's ("field 'model': ...", "field 'settings': ..."), or None."""
    if rec.get("model") != model:
        return f"field 'model': written for {rec.get('model')!r}, this run is {model!r}"
    old = rec.get("settings") or {}
    diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
    if diff:
        what = ", ".join(f"{k}: {old.get(k)!r} -> {settings.get(k)!r}" for k in diff)
        return f"field 'settings': left by a run with other settings ({what})"
    return None


def _append(path: Path, rec: dict) -> None:
    line = (json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8")
    with open(path, "ab") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


# -------------------------------------------------------------------------------- main
def generate_answers(model_dir: str | Path, benchmark: str, questions: str | Path, out: str | Path, *,
                     name: str | None = None, temperature: float = 0.0, top_p: float = 1.0,
                     max_new_tokens: int = 1024, seed: int = 0, batch_size: int = 8, device: str = "cpu",
                     precision: str = "auto", limit: int | None = None,
                     category_temperatures: dict[str, float] | None = None,
                     restart_on_new_settings: bool = False, backend: str = "auto") -> dict:
    """Answer the benchmark's prompts (the first ``limit``), appending to ``out``; returns a
    summary (prompts answered now and before, mean lengths, truncated answers).
    ``backend``: auto (vllm where a CUDA GPU and the package are, else transformers), transformers
    or vllm; ``settings`` records the one that ran.
    ``restart_on_new_settings``: answers of another model or other settings in ``out`` are moved
    to ``<out>.stale`` and every prompt is answered again (the DAG's choice: its params changed),
    instead of refusing them."""
    from negfree.common.models import check_model_dir

    benchmark = benchmark_name(benchmark)
    if temperature < 0 or not 0 < top_p <= 1 or max_new_tokens < 1 or batch_size < 1:
        raise ValueError("need temperature >= 0, 0 < top_p <= 1, max_new_tokens >= 1, batch_size >= 1 "
                         f"(got {temperature}, {top_p}, {max_new_tokens}, {batch_size})")
    if category_temperatures and any(t < 0 for t in category_temperatures.values()):
        raise ValueError("category temperatures must be >= 0")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    backend = choose_backend(backend, {temperature, *(category_temperatures or {}).values()})
    out = Path(out)
    prompts = load_prompts(benchmark, questions)
    prompts = prompts[:limit] if limit else prompts
    check_model_dir(model_dir)
    check_writable(out, "answer file")
    model_name = name or Path(model_dir).name
    settings = {"format": FORMAT, "benchmark": benchmark, "chat_template": True,
                "decoding": ("greedy" if temperature == 0 and not any((category_temperatures or {}).values())
                             else "sampled"),
                "temperature": float(temperature), "top_p": float(top_p), "max_new_tokens": int(max_new_tokens),
                "seed": int(seed), "backend": backend,
                "category_temperatures": dict(sorted(category_temperatures.items())) if category_temperatures else None,
                "questions_sha256": sha256_file(questions)}
    done: dict[str, dict] = {}
    restarted = None
    for where, rec in read_answer_file(out, trim=True):
        restarted = _line_mismatch(rec, model_name, settings)
        if restarted and not restart_on_new_settings:
            raise ValueError(f"{where}: {restarted}; write to another --out or delete the file")
        if restarted:
            break
        done[qid_key(rec["question_id"])] = rec
    if restarted:
        os.replace(out, out.with_name(out.name + ".stale"))
        done = {}
        print(f"judged-answers: {out}: {restarted}: moved to {out.name}.stale, answering again", file=sys.stderr)
    todo = [p for p in prompts if p.key not in done]
    if todo:
        out.parent.mkdir(parents=True, exist_ok=True)
        if backend == "vllm":
            engine, eos = _load_vllm(model_dir, precision, seed)
            step = VLLM_PROMPTS_PER_CALL

            def answer_turn(convs, temp, seeds):
                return _vllm_turn(engine, convs, temperature=temp, top_p=top_p, max_new_tokens=max_new_tokens,
                                  seeds=seeds, eos=eos)
        else:
            engine, tok = _load(model_dir, device, precision)
            step = batch_size

            def answer_turn(convs, temp, seeds):
                return _generate_turn(engine, tok, convs, temperature=temp, top_p=top_p,
                                      max_new_tokens=max_new_tokens, seeds=seeds, batch_size=batch_size,
                                      device=device)
        groups: dict[float, list[Prompt]] = {}
        for p in todo:
            t = (category_temperatures or {}).get(p.category, temperature)
            groups.setdefault(float(t), []).append(p)
        for temp, group in groups.items():
            for start in range(0, len(group), step):
                chunk = group[start:start + step]
                got: dict[str, list[dict]] = {p.key: [] for p in chunk}
                for turn in range(max(len(p.turns) for p in chunk)):
                    active = [p for p in chunk if len(p.turns) > turn]
                    convs = [turn_messages(p, [g["output"] for g in got[p.key]], turn) for p in active]
                    outs = answer_turn(convs, temp, [answer_seed(seed, p.question_id, turn) for p in active])
                    for p, g in zip(active, outs):
                        got[p.key].append(g)
                for p in chunk:
                    rec = {"question_id": p.question_id, "turns": [g["output"] for g in got[p.key]],
                           "model": model_name, "settings": settings,
                           "n_tokens": [g["n_tokens"] for g in got[p.key]],
                           "stopped": [g["stopped"] for g in got[p.key]]}
                    if temp != temperature:
                        rec["temperature"] = temp
                    _append(out, rec)
                    done[p.key] = rec
        del engine
    answered = [done[p.key] for p in prompts]
    chars = [sum(len(t) for t in r["turns"]) for r in answered]
    toks = [sum(r["n_tokens"]) for r in answered if isinstance(r.get("n_tokens"), list)]
    return {"benchmark": benchmark, "out": str(out), "model": model_name, "n": len(answered),
            "generated": len(todo), "resumed": len(prompts) - len(todo), "restarted": bool(restarted),
            "mean_length_chars": sum(chars) / len(chars) if chars else None,
            "mean_length_tokens": sum(toks) / len(toks) if toks else None,
            "truncated": sum(1 for r in answered for s in (r.get("stopped") or []) if s is False),
            "settings": settings}


def summary_line(res: dict) -> dict[str, Any]:
    keys = ("benchmark", "out", "model", "n", "generated", "resumed", "mean_length_chars", "mean_length_tokens",
            "truncated")
    return {k: res[k] for k in keys}
