"""Greedy answers with the chat template, for the judged and reference-based evaluations
(AlpacaEval, BLEU/ROUGE). Deterministic: no sampling, left padding, fixed order."""
from __future__ import annotations

from pathlib import Path


def as_messages(prompt) -> list[dict]:
    """A prompt is a plain string (one user turn) or a list of chat messages."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, list) and all(isinstance(m, dict) and "role" in m for m in prompt):
        return prompt
    raise ValueError(f"a prompt must be a string or a list of chat messages, got {type(prompt).__name__}")


def render(tokenizer, prompt) -> str:
    """The chat-template text that precedes the answer (generation prompt added)."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the model's tokenizer has no chat template; these evaluations "
                         "generate with the chat template (AlpacaEval, BLEU/ROUGE)")
    return tokenizer.apply_chat_template(as_messages(prompt), tokenize=False,
                                         add_generation_prompt=True)


def load(model_dir: str | Path, device: str = "cpu"):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from negfree.common.models import check_model_dir, load_named

    check_model_dir(model_dir)
    model = load_named(model_dir, "model",
                       lambda: AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32))
    model = model.to(device).eval()
    tok = load_named(model_dir, "tokenizer", lambda: AutoTokenizer.from_pretrained(str(model_dir)))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok


def generate(model, tokenizer, prompts: list, max_new_tokens: int = 512, batch_size: int = 8,
             device: str = "cpu") -> list[dict]:
    """Greedy answers, in the order of ``prompts``: ``[{"output", "n_tokens", "stopped"}]``.

    ``stopped`` is False when the answer hit ``max_new_tokens`` without an end token.
    """
    import torch

    texts = [render(tokenizer, p) for p in prompts]
    eos = {tokenizer.eos_token_id} | set(_as_list(model.generation_config.eos_token_id))
    eos.discard(None)
    tokenizer.padding_side = "left"
    out = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start:start + batch_size]
        # the template already holds any BOS it wants: add no special tokens twice
        enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        with torch.no_grad():
            gen = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens,
                                 pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=sorted(eos) or None, temperature=None,
                                 top_p=None, top_k=None)
        for row in gen[:, enc["input_ids"].shape[1]:].tolist():
            cut = next((i for i, t in enumerate(row) if t in eos), None)
            ids = row if cut is None else row[:cut]
            ids = [t for t in ids if t != tokenizer.pad_token_id]
            out.append({"output": tokenizer.decode(ids, skip_special_tokens=True).strip(),
                        "n_tokens": len(ids), "stopped": cut is not None})
    return out


def _as_list(x) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple, set)) else [x]
