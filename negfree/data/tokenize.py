"""Turning (prompt messages, answer) into token ids: the one encoding every stage shares.

Generation, reference scoring and training must see the same tokens, or the
stored reference log-probs would not line up with the trainer's. So all three
call :func:`encode`.

Prompt rendering: the tokenizer's own chat template with the generation prompt
appended; for a base model without a template, a documented Zephyr-style
fallback (as the DFT authors used) when ``fallback_template=True``.
Answer: the answer text followed by the tokenizer's eos token (so models learn
to stop). Only answer tokens (eos included) enter any loss.

Length policy: a prompt longer than ``max_prompt_len`` tokens is an error that
names the record; an answer that does not fit in ``max_len`` is cut at the end
(the prompt is kept whole) and the cut is counted.
"""
from __future__ import annotations

from dataclasses import dataclass

ZEPHYR_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@dataclass
class Encoded:
    ids: list[int]
    answer_start: int        # index of the first answer token in ids
    truncated: bool


def with_system(messages: list[dict], system: str | None) -> list[dict]:
    if not system:
        return list(messages)
    rest = [m for m in messages if m.get("role") != "system"]
    return [{"role": "system", "content": system}] + rest


def render_prompt(tokenizer, messages: list[dict], *, system: str | None = None, chat: bool = True,
                  fallback_template: bool = False) -> str:
    """The prompt as text. ``chat=False`` is dft.txt B.5's 'direct prompting': the user text only."""
    msgs = with_system(messages, system)
    if not chat:
        return "\n".join(m["content"] for m in msgs)
    template = tokenizer.chat_template
    if template is None:
        if not fallback_template:
            raise ValueError("the tokenizer has no chat template; set data.fallback_template: true "
                             "to use the documented Zephyr-style template")
        template = ZEPHYR_TEMPLATE
    return tokenizer.apply_chat_template(msgs, chat_template=template, tokenize=False, add_generation_prompt=True)


def encode(tokenizer, prompt_text: str, answer: str, *, max_len: int, max_prompt_len: int | None = None,
           where: str = "record") -> Encoded:
    p = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    limit = max_prompt_len if max_prompt_len is not None else max_len - 1
    if len(p) > limit:
        raise ValueError(f"{where}: prompt has {len(p)} tokens, more than the limit {limit} "
                         f"(raise data.max_prompt_len or drop the record)")
    a = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    room = max_len - len(p)
    truncated = len(a) > room
    return Encoded(p + a[:room], len(p), truncated)
