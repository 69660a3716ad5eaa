"""The inputs of bnf.txt Fig. 3/4 (negfree.report.shifts), read into its data: the prompts file
(``read_prompts``), the checkpoints (``parse_model_args``, ``check_model_dir``) and, per (model,
prompt), the model's greedy response with its four per-token series under the model and under the
reference (``compute_shifts``: the rows of shifts_tokens.jsonl). The definitions of everything
computed from them are in negfree.report.shifts.

Memory. Each model is loaded once; prompts go through in batches of ``batch_size``: greedy
decoding (negfree.generate.negatives.decode, KV cache), then one forward of the batch per model that
returns last hidden states (negfree.common.logprobs, models with a plain output head) and projects
onto the vocabulary only at answer positions, ``chunk`` positions at a time, keeping the chosen
token's logit and the log-sum-exp. The reference stays loaded; each fine-tuned model is
dropped before the next is loaded.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from negfree.common.io import iter_jsonl


@torch.no_grad()
def chosen_token_stats(model, seqs: list[list[int]], starts: list[int], pad_id: int, *,
                       chunk: int = 64) -> list[tuple[np.ndarray, np.ndarray]]:
    """(logit of y_i, log pi(y_i | prefix)) at every answer position of each sequence.

    ``seqs[r]`` = prompt ids + answer ids, the answer starting at ``starts[r]``. The vocabulary
    projection is applied only at answer positions, ``chunk`` at a time (plain-head models;
    others give full logits, still reduced chunk by chunk)."""
    from negfree.common.batching import pad_batch
    from negfree.common.logprobs import _forward, _project, answer_logit_slice, output_softcap, shift_for_causal_lm

    ids, attn, ans = pad_batch(seqs, starts, pad_id)
    labels, mask = shift_for_causal_lm(ids, ans)
    dev = next(model.parameters()).device
    out, head = _forward(model, model, True, {"input_ids": ids.to(dev), "attention_mask": attn.to(dev)})
    flat = out.reshape(-1, out.shape[-1])
    flat_labels = labels.reshape(-1).to(dev)
    idx = mask.reshape(-1).bool().nonzero(as_tuple=True)[0].to(dev)
    w, b = (head.weight, head.bias) if head is not None else (None, None)
    logit = torch.zeros(flat_labels.shape, dtype=torch.float64, device=dev)
    logp = torch.zeros(flat_labels.shape, dtype=torch.float64, device=dev)
    for s in range(0, idx.numel(), chunk):
        sel = idx[s:s + chunk]
        z = _project(flat.index_select(0, sel), w, b, output_softcap(model) if head is not None else None)
        if z.dtype in (torch.float16, torch.bfloat16):
            z = z.float()
        chosen = z.gather(-1, flat_labels.index_select(0, sel).unsqueeze(-1)).squeeze(-1)
        logit[sel] = chosen.double()
        logp[sel] = (chosen - torch.logsumexp(z, dim=-1)).double()
        del z
    logit, logp = logit.view(labels.shape).cpu().numpy(), logp.view(labels.shape).cpu().numpy()
    del out, flat
    res = []
    for r, (s_ids, a) in enumerate(zip(seqs, starts)):
        sl = answer_logit_slice(a, len(s_ids))
        res.append((logit[r, sl].copy(), logp[r, sl].copy()))
    return res


def check_model_dir(path: str | Path, what: str) -> Path:
    """``path`` if it is a model directory (negfree.common.models.check_model_dir), else its
    FileNotFoundError with ``what`` (the option that named it) in front."""
    from negfree.common import models

    try:
        return models.check_model_dir(path)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{what}: {e}") from None


def parse_model_args(items: list[str]) -> list[tuple[str, Path]]:
    """``LABEL=MODEL_DIR`` strings -> [(label, dir)], every dir checked to exist."""
    if not items:
        raise ValueError("give at least one --model LABEL=MODEL_DIR")
    out, seen = [], set()
    for item in items:
        label, sep, path = item.partition("=")
        label, path = label.strip(), path.strip()
        if not sep or not label or not path:
            raise ValueError(f"--model {item!r} must look like LABEL=MODEL_DIR")
        if label in seen:
            raise ValueError(f"--model {item!r}: label {label!r} is given twice")
        seen.add(label)
        out.append((label, check_model_dir(path, f"--model {label}")))
    return out


def read_prompts(path: str | Path, limit: int | None = None) -> list[dict]:
    """Records with a ``prompt`` (a string, or a non-empty list of chat messages); ``id`` optional."""
    path = Path(path)
    recs, ids = [], set()
    for lineno, where, rec in iter_jsonl(path, f"--data: file {path} does not exist"):
        if not isinstance(rec, dict) or "prompt" not in rec:
            raise ValueError(f"{where}: missing required column 'prompt'")
        p = rec["prompt"]
        ok = (isinstance(p, str) and p.strip()) or (
            isinstance(p, list) and p and all(isinstance(m, dict) and isinstance(m.get("role"), str)
                                              and isinstance(m.get("content"), str) for m in p))
        if not ok:
            raise ValueError(f"{where}: column 'prompt' must be a non-empty string or a list of "
                             f"{{role, content}} messages")
        rid = str(rec.get("id", f"line-{lineno}"))
        if rid in ids:
            raise ValueError(f"{where}: duplicate id {rid!r}")
        ids.add(rid)
        recs.append({"id": rid, "prompt": p})
        if limit and len(recs) >= limit:
            break
    if not recs:
        raise ValueError(f"--data: {path} has no records")
    return recs


def _check_same_vocab(tok, ref_tok, model, ref_model, label: str) -> None:
    if tok.get_vocab() != ref_tok.get_vocab():
        raise ValueError(f"--model {label}: its tokenizer differs from the reference's; shifts need the same "
                         f"tokens under both models")
    if model.get_output_embeddings().weight.shape[0] != ref_model.get_output_embeddings().weight.shape[0]:
        raise ValueError(f"--model {label}: output vocabulary size differs from the reference's")


def compute_shifts(reference: str | Path, models: list[tuple[str, Path]], records: list[dict], *,
                   max_new_tokens: int = 320, batch_size: int = 8, fallback_template: bool = False,
                   device: str | None = None, dtype: str = "float32", chunk: int = 64,
                   progress: bool = False) -> list[dict]:
    """Per (model, prompt): the greedy response and its four per-token series (see the docstring)."""
    from negfree.common.models import load_model, load_tokenizer, resolve_device
    from negfree.data.tokenize import render_prompt
    from negfree.generate.negatives import _eos_ids, _messages, decode

    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens {max_new_tokens!r} must be >= 1")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"--batch-size {batch_size!r} must be >= 1")
    reference = check_model_dir(reference, "--reference")
    device = resolve_device(device)
    tdtype = getattr(torch, dtype)
    ref_tok = load_tokenizer(reference)
    ref_model = load_model(reference, dtype=tdtype, device=device).eval()
    prompts = [ref_tok(render_prompt(ref_tok, _messages(r["prompt"]), fallback_template=fallback_template),
                       add_special_tokens=False)["input_ids"] for r in records]
    rows = []
    for label, mdir in models:
        t0 = time.time()
        tok = load_tokenizer(mdir)
        model = load_model(mdir, dtype=tdtype, device=device).eval()
        _check_same_vocab(tok, ref_tok, model, ref_model, label)
        eos = _eos_ids(tok, model)
        for b in range(0, len(records), batch_size):
            batch, pids = records[b:b + batch_size], prompts[b:b + batch_size]
            gens = decode(model, pids, [0] * len(pids), temperature=0, max_new_tokens=max_new_tokens,
                          eos_ids=eos, pad_id=tok.pad_token_id)
            seqs, starts = [p + g for p, g in zip(pids, gens)], [len(p) for p in pids]
            mine = chosen_token_stats(model, seqs, starts, tok.pad_token_id, chunk=chunk)
            ref = chosen_token_stats(ref_model, seqs, starts, ref_tok.pad_token_id, chunk=chunk)
            for r, p, g, (zm, lm), (zr, lr) in zip(batch, pids, gens, mine, ref):
                rows.append({"model": label, "id": r["id"], "prompt_tokens": len(p), "tokens": g,
                             "text": tok.decode(g, skip_special_tokens=True),
                             "ended_with_eos": bool(g and g[-1] in eos),
                             "logp_model": lm.tolist(), "logp_ref": lr.tolist(),
                             "logit_model": zm.tolist(), "logit_ref": zr.tolist()})
        del model
        if progress:
            print(f"shifts: {label}: {len(records)} prompts in {time.time() - t0:.1f} s", flush=True)
    return rows
