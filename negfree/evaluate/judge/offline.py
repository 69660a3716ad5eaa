"""OFFLINE JUDGE ("negfree_offline_judge"): a stand-in for the demo and the tests, NOT an LLM
judge. Its verdicts are a pure function of the prompt (a sha256 of the messages): the same
prompt always gets the same verdict, and the verdict says nothing about which answer is
better. Numbers it produces must never be reported as judged results.

It answers in the text formats the real judges use, so the benchmarks' own parsers read it:

==================  ==========================================  ==============================
prompt contains     format (mode)                               reply ends with
==================  ==========================================  ==============================
``[[A>>B]]``/       Arena-Hard pairwise (``arena_hard``)        ``My final verdict is: [[A>B]]``
``[[A>B]]``                                                     (A>>B, A>B, A=B, B>A, B>>A)
``[[rating]]``      MT-Bench single answer (``rating``)         ``Rating: [[7]]`` (1 to 10)
``[[A]]``           MT-Bench pairwise (``mt_bench_pair``)       ``[[A]]``, ``[[B]]`` or ``[[C]]`` (tie)
``"choice"`` and    WildBench pairwise (``wildbench_pair``)     a ```json block with ``"choice"``
``A++``                                                         (A++, A+, A=B, B+, B++)
``"score"``         WildBench single answer (``wildbench_score``)  a ```json block with ``"score"``
==================  ==========================================  ==============================

It plugs into :class:`~negfree.evaluate.judge.client.JudgeClient` as its transport, so the
cache, the retries and the parser run the same code as with a server::

    client = JudgeClient(offline_spec(), cache, parse, transport=offline_transport)

A prompt in none of these formats gets an HTTP 400 reply (the client stops with one line).
"""
from __future__ import annotations

import hashlib
import json

from negfree.evaluate.judge.cache import canonical_json
from negfree.evaluate.judge.client import HttpReply, JudgeClient, JudgeSpec

OFFLINE_JUDGE_NAME = "negfree_offline_judge"
MODES = ("arena_hard", "rating", "mt_bench_pair", "wildbench_pair", "wildbench_score")
_LABEL = f"[OFFLINE {OFFLINE_JUDGE_NAME}: verdict from a hash of the prompt, not a model's judgement]"
_ARENA = ("A>>B", "A>B", "A=B", "B>A", "B>>A")
_MT_PAIR = ("A", "B", "C")
_WILD_PAIR = ("A++", "A+", "A=B", "B+", "B++")


def offline_spec(**overrides) -> JudgeSpec:
    """The offline judge's spec: no URL, no key, no waiting."""
    settings = dict(name=OFFLINE_JUDGE_NAME, model=OFFLINE_JUDGE_NAME, base_url="offline://negfree",
                    api_key_env=None, max_concurrency=1, max_retries=0, backoff_s=0.0, max_backoff_s=0.0)
    settings.update(overrides)
    return JudgeSpec(**settings)


def detect_mode(prompt: str) -> str | None:
    """The reply format a prompt asks for (see the module table), or None."""
    low = prompt.lower()
    if "[[a>>b]]" in low or "[[a>b]]" in low:
        return "arena_hard"
    if "[[rating]]" in low:
        return "rating"
    if "[[a]]" in low:
        return "mt_bench_pair"
    if '"choice"' in low and "a++" in low:
        return "wildbench_pair"
    if '"score"' in low:
        return "wildbench_score"
    return None


def offline_reply_text(messages, mode: str | None = None) -> str:
    """The offline judge's reply to ``messages``: a pure function of them (and ``mode``, which is
    detected from the prompt when None). Raises ValueError when no format is recognised."""
    prompt = "\n".join(str(m.get("content", "")) for m in messages)
    mode = mode or detect_mode(prompt)
    if mode not in MODES:
        raise ValueError(f"{OFFLINE_JUDGE_NAME}: cannot tell the reply format from the prompt "
                         f"(expected one of: [[A>B]], [[rating]], [[A]], a \"choice\" or \"score\" JSON)")
    h = int.from_bytes(hashlib.sha256(canonical_json(list(messages)).encode("utf-8")).digest()[:8], "big")
    why = f"{_LABEL}\n\nOffline evaluation, prompt hash {h:016x}."
    if mode == "arena_hard":
        return f"{why}\n\nMy final verdict is: [[{_ARENA[h % len(_ARENA)]}]]"
    if mode == "rating":
        return f"{why}\n\nRating: [[{1 + h % 10}]]"
    if mode == "mt_bench_pair":
        return f"{why}\n\n[[{_MT_PAIR[h % len(_MT_PAIR)]}]]"
    if mode == "wildbench_pair":
        body = {"analysis": why, "choice": _WILD_PAIR[h % len(_WILD_PAIR)]}
    else:
        body = {"analysis": why, "score": str(1 + h % 10)}
    return "```json\n" + json.dumps(body, indent=2) + "\n```"


def _completion(model: str, text: str, messages) -> dict:
    prompt_words = sum(len(str(m.get("content", "")).split()) for m in messages)
    out_words = len(text.split())
    return {
        "id": "offline-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:12],
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_words, "completion_tokens": out_words,
                  "total_tokens": prompt_words + out_words},
    }


class OfflineTransport:
    """A :data:`~negfree.evaluate.judge.client.Transport` answering as the OFFLINE judge, with
    a chat-completions body. ``mode`` forces one reply format; None detects it per prompt."""

    def __init__(self, mode: str | None = None):
        if mode is not None and mode not in MODES:
            raise ValueError(f"{OFFLINE_JUDGE_NAME}: mode {mode!r} is not one of {', '.join(MODES)}")
        self.mode = mode

    def __call__(self, payload: dict, spec: JudgeSpec) -> HttpReply:
        messages = payload["messages"]
        try:
            text = offline_reply_text(messages, self.mode)
        except ValueError as err:
            return HttpReply(400, {"content-type": "application/json"},
                             json.dumps({"error": {"message": str(err)}}))
        return HttpReply(200, {"content-type": "application/json"},
                         json.dumps(_completion(payload.get("model", OFFLINE_JUDGE_NAME), text, messages)))

    def __repr__(self) -> str:
        return f"OfflineTransport(mode={self.mode!r})  # OFFLINE {OFFLINE_JUDGE_NAME}"


offline_transport = OfflineTransport()


def offline_client(cache, parse, mode: str | None = None, **spec_overrides) -> JudgeClient:
    """A :class:`JudgeClient` on the OFFLINE judge (its spec and transport), caching in ``cache``."""
    return JudgeClient(offline_spec(**spec_overrides), cache, parse,
                       transport=OfflineTransport(mode) if mode else offline_transport,
                       sleep=lambda s: None)
