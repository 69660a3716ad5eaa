"""Answer extraction for the project's math task YAMLs (loaded by lm-eval's ``!function``).

- MetaMath (dft.txt Table 1): the model is prompted with the Alpaca template and
  ends its working with "The answer is: X". GSM8K: the first number after the last
  "The answer is: " (commas dropped, a fraction evaluated), rounded to an integer
  and compared with the reference integer. MATH: the text after the last
  "The answer is: " up to the end of that sentence, compared with lm-eval's
  hendrycks_math string equivalence.
- MATH Level 5 zero-shot (bnf.txt): the last ``\\boxed{...}`` of the response,
  same equivalence.
"""
from __future__ import annotations

import re
from fractions import Fraction

from lm_eval.tasks.hendrycks_math import utils as _hendrycks

MARKER = "The answer is: "
_NUMBER = re.compile(r"[-+]?\d*[.,/]?\d+")


def metamath_number(completion: str) -> int | None:
    """MetaMath's GSM8K reading of a completion, or None when there is no answer."""
    if MARKER not in completion:
        return None
    match = _NUMBER.search(completion.split(MARKER)[-1].strip())
    if not match:
        return None
    text = match.group().replace(",", "")
    try:
        if "/" in text:
            num, den = text.split("/")
            value = float(num) if float(den) == 0 else float(Fraction(int(num), int(den)))
        else:
            value = float(text)
    except (ValueError, ZeroDivisionError):
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return round(value)


def _gsm8k_target(answer: str) -> int:
    return round(float(answer.split("#### ")[-1].replace(",", "").strip()))


def gsm8k_process_results(doc: dict, results: list[str]) -> dict[str, int]:
    pred = metamath_number(results[0])
    return {"exact_match": int(pred is not None and pred == _gsm8k_target(doc["answer"]))}


def metamath_math_answer(completion: str) -> str | None:
    """The final answer after the last "The answer is: ", first sentence, no final period."""
    if MARKER not in completion:
        return None
    ans = completion.split(MARKER)[-1].split(".\n")[0].strip()
    if ans.endswith("."):
        ans = ans[:-1]
    return ans.strip()


def math_process_docs(dataset):
    return _hendrycks.process_docs(dataset)


def math_level5_process_docs(dataset):
    return _hendrycks.process_docs(dataset.filter(lambda d: d["level"] == "Level 5"))


def _equiv(pred: str | None, target: str) -> int:
    return int(pred is not None and bool(_hendrycks.is_equiv(pred, target)))


def math_process_results(doc: dict, results: list[str]) -> dict[str, int]:
    return {"exact_match": _equiv(metamath_math_answer(results[0]), doc["answer"])}


def last_boxed(completion: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), or None."""
    boxed = _hendrycks.last_boxed_only_string(completion)
    if boxed is None:
        return None
    try:
        return _hendrycks.remove_boxed(boxed)
    except AssertionError:
        return None


def boxed_process_results(doc: dict, results: list[str]) -> dict[str, int]:
    return {"exact_match": _equiv(last_boxed(results[0]), doc["answer"])}
