"""Parsers from an LLM judge's reply text to a verdict, one per benchmark.

Each parser takes the reply text and returns a JSON-serialisable verdict, or raises
:class:`MalformedVerdict` (a ValueError) when the reply holds no usable verdict: the judge
client (``negfree.evaluate.judge.client``) treats a ValueError as a malformed reply and asks
again. :class:`AmbiguousVerdict` (a MalformedVerdict) says the reply holds several verdicts
that disagree; callers that want to tell the two cases apart can.

- :func:`parse_arena_hard`: Arena-Hard-Auto v0.1 pairwise label, ``"A>>B"`` ... ``"B>>A"``.
- :func:`parse_mt_bench`: MT-Bench single-answer grading, a rating in [1, 10] from ``[[rating]]``.
- :func:`parse_wildbench_score`: WildBench v2 score mode, the ``"score"`` of its JSON reply, in [1, 10].

AlpacaEval needs no parser here: its judge is run, and its replies parsed, by the
``alpaca_eval`` library itself (``negfree.evaluate.alpaca``).

Where a rule below is the benchmark's own, the file it comes from is named; a rule marked
[ours] is a choice made here where the benchmark's code does something we cannot (it gives up
without asking again) or says nothing.
"""
from __future__ import annotations

import json
import math
import re

__all__ = [
    "ARENA_HARD_LABELS", "AmbiguousVerdict", "MalformedVerdict",
    "arena_hard_label", "parse_arena_hard", "parse_mt_bench", "parse_wildbench_score",
]


class MalformedVerdict(ValueError):
    """The reply holds no usable verdict (the client asks again)."""


class AmbiguousVerdict(MalformedVerdict):
    """The reply holds several verdicts that disagree."""


# ------------------------------------------------------------------ Arena-Hard
#: The five labels the Arena-Hard-Auto v0.1 judge prompt asks for (config/judge_config.yaml,
#: ``system_prompt``): A much better, A slightly better, tie, B slightly better, B much better.
ARENA_HARD_LABELS = ("A>>B", "A>B", "A=B", "B>A", "B>>A")

#: Written the other way round: the same verdicts. Arena-Hard-Auto v2.0's show_result.py
#: (``label_to_score``) scores these like the canonical labels; v0.1's show_result.py drops
#: them (weight 0). [ours] We accept them, as v2.0 does, rather than lose the game.
_ARENA_HARD_SYNONYMS = {"B<<A": "A>>B", "B<A": "A>B", "B=A": "A=B", "A<B": "B>A", "A<<B": "B>>A"}

#: Arena-Hard-Auto v0.1 config/judge_config.yaml ``regex_pattern``.
_ARENA_HARD_PATTERN = re.compile(r"\[\[([AB<>=]+)\]\]")


def arena_hard_label(raw: str) -> str:
    """``raw`` as one of :data:`ARENA_HARD_LABELS` (synonyms mapped); MalformedVerdict otherwise."""
    label = _ARENA_HARD_SYNONYMS.get(raw, raw) if isinstance(raw, str) else raw
    if label not in ARENA_HARD_LABELS:
        raise MalformedVerdict(f"unknown verdict label {raw!r} (expected one of {', '.join(ARENA_HARD_LABELS)})")
    return label


def parse_arena_hard(reply: str) -> str:
    """The verdict label of an Arena-Hard judge reply, one of :data:`ARENA_HARD_LABELS`.

    Rule (Arena-Hard-Auto v0.1, gen_judgment.py ``get_score`` with the pattern
    ``\\[\\[([AB<>=]+)\\]\\]`` of config/judge_config.yaml): every ``[[...]]`` label in the whole
    reply is collected; the same label repeated counts once (a judge often states its verdict
    and then repeats it: "My final verdict is [[A>B]]" ... "[[A>B]]"); when exactly one distinct
    label is found it is the verdict.

    Raises MalformedVerdict when no label is found (the benchmark then asks the judge to
    "continue your judgment", up to ``number_of_judgment_attempts``: 2; here the client asks
    again), and AmbiguousVerdict when two different labels are found (the benchmark records
    the game as failed, score None, without asking again; [ours] here the client asks again,
    as for any ValueError). A label outside the five (after the synonyms above) is malformed.
    Spaces inside the brackets ("[[A > B]]") do not match the benchmark's pattern and do not
    match here either.
    """
    if not isinstance(reply, str):
        raise MalformedVerdict(f"reply is {type(reply).__name__}, not text")
    found = [m for m in _ARENA_HARD_PATTERN.findall(reply) if m]
    if not found:
        raise MalformedVerdict("no [[verdict]] label (expected one of " + ", ".join(ARENA_HARD_LABELS) + ")")
    return _the_one([arena_hard_label(raw) for raw in found], "verdict labels", lambda x: f"[[{x}]]")


# -------------------------------------------------------------------- MT-Bench
#: FastChat fastchat/llm_judge/common.py ``one_score_pattern`` and ``one_score_pattern_backup``.
_MT_PATTERN = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_MT_PATTERN_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")
MT_BENCH_RANGE = (1.0, 10.0)


def parse_mt_bench(reply: str, *, allow_single_brackets: bool = True) -> float:
    """The rating of an MT-Bench single-answer grading reply ("Rating: [[7]]", "[[8.5]]").

    Rule (FastChat fastchat/llm_judge/common.py ``run_judge_single``, output format
    ``[[rating]]``): the FIRST ``[[number]]`` in the reply (``re.search``); when there is none,
    the first ``[number]`` (the backup pattern; ``allow_single_brackets=False`` turns it off,
    [ours]: a reply citing "[1]" with no rating would otherwise read as a 1). The number is an
    unsigned integer or decimal. FastChat records -1 when nothing matches and drops -1 when it
    averages (show_result.py); here the reply is malformed (the client asks again).

    [ours] The judge prompt asks for a rating "on a scale of 1 to 10"; FastChat does not check
    the range; a rating outside [1, 10] is malformed here.
    """
    if not isinstance(reply, str):
        raise MalformedVerdict(f"reply is {type(reply).__name__}, not text")
    m = _MT_PATTERN.search(reply)
    if m is None and allow_single_brackets:
        m = _MT_PATTERN_BACKUP.search(reply)
    if m is None:
        raise MalformedVerdict("no [[rating]] in the reply")
    rating = float(m.group(1))
    lo, hi = MT_BENCH_RANGE
    if not lo <= rating <= hi:
        raise MalformedVerdict(f"rating {m.group(1)} is outside [{lo:g}, {hi:g}]")
    return rating


# ------------------------------------------------------------------- WildBench
WILDBENCH_RANGE = (1.0, 10.0)
_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.S)
#: WildBench src/eval.py ``extract_values_from_json``: the quoted value of "score" ...
_WB_QUOTED = re.compile(r'"score"\s*:\s*"([^"]*?)"')
#: ... [ours] or an unquoted number (the official fallback allows it only when asked to).
_WB_BARE = re.compile(r'"score"\s*:\s*(-?\d+(?:\.\d+)?)')


def parse_wildbench_score(reply: str) -> float:
    """The score of a WildBench v2 score-mode reply (evaluation/eval_template.score.v2.md asks for
    a JSON object with "strengths", "weaknesses" and "score": "[1~10]").

    Rule: the first of these that finds anything is used:

    1. the whole reply is one JSON object with a "score" (WildBench's own batch evaluation,
       src/openai_batch_eval/batch_results_format.py, asks the API for a JSON reply and
       ``json.loads`` it whole);
    2. [ours] the JSON objects inside ```json (or bare ```) fences that have a "score";
    3. [ours] JSON objects with a "score" found anywhere in the text (the first complete
       object starting at each "{" not inside an earlier one);
    4. the regular expressions of WildBench src/eval.py ``extract_values_from_json``
       (``"score": "7"``), [ours] and ``"score": 7`` unquoted.

    The score may be a number or a numeric string ("7", "7.5"): WildBench converts it with
    ``float()`` (leaderboard/data_dir/_create_tables.py). [ours] When a step finds several
    different scores the reply is ambiguous (WildBench's fallback takes the first match);
    a score outside [1, 10], a placeholder left unfilled ("[1~10]"), a boolean or a non-finite
    number is malformed.
    """
    if not isinstance(reply, str):
        raise MalformedVerdict(f"reply is {type(reply).__name__}, not text")
    text = reply.strip()
    for finder in (_whole_json, _fenced_json, _embedded_json, _regex_scores):
        raw = finder(text)
        if raw:
            return _one_wildbench_score(raw)
    raise MalformedVerdict('no "score" in the reply')


def _has_score(obj) -> bool:
    return isinstance(obj, dict) and "score" in obj


def _whole_json(text: str) -> list:
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return []
    return [obj["score"]] if _has_score(obj) else []


def _fenced_json(text: str) -> list:
    out = []
    for block in _FENCE.findall(text):
        try:
            obj = json.loads(block.strip())
        except (json.JSONDecodeError, RecursionError):
            continue
        if _has_score(obj):
            out.append(obj["score"])
    return out


def _embedded_json(text: str) -> list:
    decoder, out, i = json.JSONDecoder(), [], 0
    while True:
        i = text.find("{", i)
        if i < 0:
            return out
        try:
            obj, end = decoder.raw_decode(text, i)
        except (json.JSONDecodeError, RecursionError):
            i += 1
            continue
        if _has_score(obj):
            out.append(obj["score"])
        i = end


def _regex_scores(text: str) -> list:
    return _WB_QUOTED.findall(text) or _WB_BARE.findall(text)


def _the_one(found: list, what: str, show):
    """The one distinct value of ``found`` (repeats are fine); several different ones: AmbiguousVerdict."""
    distinct = list(dict.fromkeys(found))
    if len(distinct) > 1:
        raise AmbiguousVerdict(f"several different {what}: " + ", ".join(show(x) for x in distinct))
    return distinct[0]


def _one_wildbench_score(raw_scores: list) -> float:
    return _the_one([_score_value(raw) for raw in raw_scores], "scores", lambda v: f"{v:g}")


def _score_value(raw) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise MalformedVerdict(f'"score" is {raw!r}, not a number')
    try:
        value = float(raw.strip() if isinstance(raw, str) else raw)
    except ValueError:
        raise MalformedVerdict(f'"score" is {raw!r}, not a number') from None
    lo, hi = WILDBENCH_RANGE
    if not math.isfinite(value) or not lo <= value <= hi:
        raise MalformedVerdict(f'"score" {raw!r} is outside [{lo:g}, {hi:g}]')
    return value
