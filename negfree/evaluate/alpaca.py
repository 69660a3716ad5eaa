"""AlpacaEval 2: greedy answers with the chat template, judged by ``alpaca_eval``.

Inputs are local files (the hub loader of alpaca_eval 0.6.6 fails with datasets>=4):
- instructions: JSON list of ``{"instruction": ...}`` (AlpacaEval's format; extra
  keys such as ``dataset`` are kept). On the cluster, the 805-instruction set.
- reference outputs: JSON list of ``{"instruction", "output", "generator"}`` with
  the same instructions (the baseline the judge compares against).

Annotators:
- ``weighted_alpaca_eval_gpt4_turbo`` (default, AlpacaEval 2's judge): needs
  ``OPENAI_API_KEY`` in the environment; it is read by the OpenAI client only and
  never written to logs or results.
- ``negfree_local_loglik``: an OFFLINE STAND-IN, NOT AlpacaEval's judge. It runs
  through alpaca_eval's own annotator machinery (a local annotator config, its
  prompt template, regex parser, order randomisation and win-rate metric), but the
  "judge" prefers the output with the higher mean per-token log-probability under
  a given local model. It exists so the demo and the tests exercise the pipeline;
  its numbers say nothing about answer quality as GPT-4 would judge it.

Win rate: the length-controlled win rate is defined only on the full
805-instruction AlpacaEval set in its original order; on anything else the plain
win rate is reported, and the JSON's ``win_rate_kind`` says which (``lc_reason``
says why). The mean output length (characters, as AlpacaEval reports it, and
tokens) is recorded.
"""
from __future__ import annotations

import json
import math
import os
import platform
import re
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from negfree.common.errors import InputError
from negfree.common.io import atomic_write_text, check_writable, read_text, removed_on_error
from negfree.evaluate import greedy

GPT4_ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"
LOCAL_ANNOTATOR = "negfree_local_loglik"
ANNOTATORS = (GPT4_ANNOTATOR, LOCAL_ANNOTATOR)
FULL_SET_SIZE = 805

# Markers the local judge parses back out of the rendered prompt.
_A, _B, _I, _END = "<<<NEGFREE_OUTPUT_A>>>", "<<<NEGFREE_OUTPUT_B>>>", "<<<NEGFREE_INSTRUCTION>>>", "<<<NEGFREE_END>>>"
LOCAL_TEMPLATE = f"{_I}\n{{instruction}}\n{_A}\n{{output_1}}\n{_B}\n{{output_2}}\n{_END}\n"
_PARSE = re.compile(re.escape(_I) + r"\n(.*)\n" + re.escape(_A) + r"\n(.*)\n"
                    + re.escape(_B) + r"\n(.*)\n" + re.escape(_END), re.S)


class AlpacaEvalError(InputError, RuntimeError):
    """The judge or the alpaca_eval library failed: reported in one line."""


# ------------------------------------------------------------------------ inputs
def read_instructions(path: str | Path) -> list[dict]:
    path = Path(path)
    try:
        rows = json.loads(read_text(path, "input file"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{path}: expected a non-empty JSON list of {{'instruction': ...}}")
    for i, r in enumerate(rows):
        if not isinstance(r, dict) or not isinstance(r.get("instruction"), str):
            raise ValueError(f"{path} item {i}: needs a string 'instruction'")
    return rows


def lc_eligibility(instructions: list[dict], reference: list[dict], limit: int | None) -> tuple[bool, str]:
    """Whether the length-controlled win rate is defined here, and why (not)."""
    if limit is not None and limit < len(instructions):
        return False, f"subset: first {limit} of {len(instructions)} instructions"
    if len(instructions) != FULL_SET_SIZE:
        return False, f"{len(instructions)} instructions, LC needs the full {FULL_SET_SIZE}-instruction set"
    if [r["instruction"] for r in reference] != [r["instruction"] for r in instructions]:
        return False, "the reference outputs are not in the instructions' order"
    return True, f"full {FULL_SET_SIZE}-instruction set in its original order"


def check_annotator(annotator: str, judge_model: str | Path | None) -> None:
    """Fail early (before any generation) with one clear message."""
    if annotator not in ANNOTATORS:
        raise ValueError(f"unknown annotator {annotator!r}; known: {', '.join(ANNOTATORS)}")
    if annotator == GPT4_ANNOTATOR and not os.environ.get("OPENAI_API_KEY"):
        raise AlpacaEvalError(f"annotator {GPT4_ANNOTATOR} (AlpacaEval 2's GPT-4-turbo judge) needs "
                              f"OPENAI_API_KEY in the environment; it is not set. For an offline "
                              f"run use --annotator {LOCAL_ANNOTATOR} (not AlpacaEval's judge).")
    if annotator == LOCAL_ANNOTATOR and not judge_model:
        raise ValueError(f"annotator {LOCAL_ANNOTATOR} needs a local judge model directory")
    try:
        import alpaca_eval  # noqa: F401  (imports pkg_resources: setuptools<81)
    except ImportError as e:
        raise AlpacaEvalError(f"alpaca_eval is not importable ({e}); install "
                              f"'alpaca-eval==0.6.6' 'setuptools<81'") from None


# ------------------------------------------------------------------- local judge
class LoglikJudge:
    """Completion function for alpaca_eval: answers "Output (a)" or "Output (b)" by
    the higher mean per-token log-prob of the output given the instruction (chat
    template) under a local model. Deterministic; a tie goes to (a) (alpaca_eval
    randomises which output is (a))."""

    def __init__(self, model_dir: str | Path, device: str = "cpu", max_tokens: int = 1024):
        self.model, self.tok = greedy.load(model_dir, device)
        self.model_dir, self.device, self.max_tokens = str(model_dir), device, max_tokens

    def mean_logprob(self, instruction: str, output: str) -> float:
        import torch

        prefix = greedy.render(self.tok, instruction)
        p_ids = self.tok(prefix, add_special_tokens=False)["input_ids"]
        o_ids = self.tok(output, add_special_tokens=False)["input_ids"][: self.max_tokens]
        if not o_ids:
            return -math.inf
        ids = torch.tensor([p_ids + o_ids], device=self.device)
        with torch.no_grad():
            logits = self.model(ids).logits[0, len(p_ids) - 1:-1].float()
        lp = torch.log_softmax(logits, -1).gather(1, ids[0, len(p_ids):, None])
        return float(lp.mean())

    def __call__(self, prompts, **_) -> dict[str, list]:
        completions = []
        for prompt in prompts:
            m = _PARSE.search(prompt)
            if not m:
                raise AlpacaEvalError("local judge: prompt does not follow the negfree template")
            instruction, out_a, out_b = m.groups()
            a, b = self.mean_logprob(instruction, out_a), self.mean_logprob(instruction, out_b)
            completions.append("Output (a)" if a >= b else "Output (b)")
        n = len(prompts)
        return {"completions": completions, "price_per_example": [0.0] * n,
                "time_per_example": [0.0] * n, "completions_all": completions}


def write_local_annotator_config(folder: str | Path) -> Path:
    """An alpaca_eval annotator config folder for the local judge; returns configs.yaml."""
    import yaml

    folder = Path(folder)
    atomic_write_text(folder / "prompt.txt", LOCAL_TEMPLATE)
    cfg = {LOCAL_ANNOTATOR: {
        "prompt_template": str((folder / "prompt.txt").resolve()),
        "fn_completion_parser": "regex_parser",
        "completion_parser_kwargs": {"outputs_to_match": {1: r"^Output \(a\)$", 2: r"^Output \(b\)$"}},
        "batch_size": 1,
        "pretty_name": "negfree local log-likelihood judge (NOT AlpacaEval's GPT-4 judge)",
    }}
    path = folder / "configs.yaml"
    atomic_write_text(path, yaml.safe_dump(cfg, sort_keys=False))
    return path


# ------------------------------------------------------------------------ judging
def judge(model_outputs: list[dict], reference_outputs: list[dict], annotator: str,
          work_dir: str | Path, lc: bool, judge_model: str | Path | None = None,
          device: str = "cpu") -> tuple[dict, list[dict]]:
    """Run alpaca_eval; returns (its leaderboard row for the model, annotations)."""
    import pandas as pd
    from alpaca_eval import main as ae

    work_dir = Path(work_dir).resolve()   # alpaca_eval reads a relative config path under its own package
    kwargs = {}
    if annotator == LOCAL_ANNOTATOR:
        config = write_local_annotator_config(work_dir / "annotator")
        kwargs["fn_completions"] = LoglikJudge(judge_model, device)
    else:
        config = GPT4_ANNOTATOR
    metric_kwargs = {"save_weights_dir": None} if lc else {}
    try:
        with _no_logged_tracebacks():
            leaderboard, annotations = ae.evaluate(
                model_outputs=pd.DataFrame(model_outputs), reference_outputs=pd.DataFrame(reference_outputs),
                annotators_config=str(config), output_path=None, precomputed_leaderboard=None,
                is_return_instead_of_print=True, is_cache_leaderboard=False,
                fn_metric="get_length_controlled_winrate" if lc else "get_winrate",
                metric_kwargs=metric_kwargs, sort_by="length_controlled_winrate" if lc else "win_rate",
                caching_path=None, **kwargs)
    except AlpacaEvalError:
        raise
    except Exception as err:   # unreachable API, refused key, quota, a judge that crashed
        detail = " ".join(str(err).split()) or "no message"
        hint = (f"; check the network and OPENAI_API_KEY, or run offline with --annotator {LOCAL_ANNOTATOR}"
                if annotator == GPT4_ANNOTATOR else "")
        raise AlpacaEvalError(f"the judge ({annotator}) failed: {type(err).__name__}: {detail}; nothing "
                              f"was written{hint}") from err
    name = model_outputs[0]["generator"]
    row = leaderboard.loc[name].to_dict()
    return row, annotations.to_dict(orient="records") if hasattr(annotations, "to_dict") else list(annotations)


@contextmanager
def _no_logged_tracebacks():
    """alpaca_eval logs the traceback of an API error (on the root logger) before re-raising it.
    The error is then reported in one line, so the logged copy keeps its message only
    (NEGFREE_DEBUG=1 keeps the traceback)."""
    import logging

    def drop_traceback(record):
        record.exc_info, record.exc_text = None, None
        return True

    if os.environ.get("NEGFREE_DEBUG", "") not in ("", "0"):
        yield
        return
    root = logging.getLogger()
    root.addFilter(drop_traceback)
    try:
        yield
    finally:
        root.removeFilter(drop_traceback)


def _clean(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item"):
        return _clean(value.item())
    return value if isinstance(value, (int, str, bool)) or value is None else str(value)


# --------------------------------------------------------------------------- main
def evaluate_alpaca(model_dir: str | Path, instructions: str | Path, reference_outputs: str | Path,
                    out_json: str | Path, annotator: str = GPT4_ANNOTATOR,
                    judge_model: str | Path | None = None, limit: int | None = None,
                    max_new_tokens: int = 2048, batch_size: int = 8, device: str = "cpu",
                    name: str | None = None) -> dict:
    """Generate, judge, and write ``out_json`` (+ ``<stem>.outputs.json``, ``<stem>.annotations.json``)."""
    from negfree.common.models import check_model_dir

    check_annotator(annotator, judge_model)
    out_json = Path(out_json)
    instr = read_instructions(instructions)
    ref = read_instructions(reference_outputs)
    if len(ref) != len(instr) or any("output" not in r for r in ref):
        raise ValueError(f"{reference_outputs}: needs one {{'instruction', 'output'}} per instruction "
                         f"({len(ref)} items for {len(instr)} instructions)")
    by_instruction = {r["instruction"]: r for r in ref}
    missing = [r["instruction"] for r in instr if r["instruction"] not in by_instruction]
    if missing:
        raise ValueError(f"{reference_outputs}: no reference output for instruction {missing[0][:60]!r}")
    lc, lc_reason = lc_eligibility(instr, ref, limit)
    chosen = instr[:limit] if limit else instr
    check_model_dir(model_dir)
    if annotator == LOCAL_ANNOTATOR:
        check_model_dir(judge_model)
    check_writable(out_json)

    generator = name or Path(model_dir).name
    model, tok = greedy.load(model_dir, device)
    gens = greedy.generate(model, tok, [r["instruction"] for r in chosen],
                           max_new_tokens=max_new_tokens, batch_size=batch_size, device=device)
    del model
    model_outputs = [{**r, "output": g["output"], "generator": generator} for r, g in zip(chosen, gens)]
    reference = [{**by_instruction[r["instruction"]],
                  "generator": by_instruction[r["instruction"]].get("generator", "reference")}
                 for r in chosen]
    work = out_json.with_suffix(".work")
    with removed_on_error(work):   # the local judge's config; the outputs are written once judged
        row, annotations = judge(model_outputs, reference, annotator, work, lc=lc, judge_model=judge_model,
                                 device=device)
    atomic_write_text(out_json.with_suffix(".outputs.json"), json.dumps(model_outputs, indent=1) + "\n")
    win_key = "length_controlled_winrate" if lc else "win_rate"
    lengths = [len(o["output"]) for o in model_outputs]
    record = {
        "model": str(model_dir),
        "protocol": "alpaca_eval2",
        "source": "dft.txt Fig 2a/5, ift.txt Table 2",
        "annotator": annotator,
        "annotator_is_alpaca_eval_judge": annotator == GPT4_ANNOTATOR,
        "judge_model": str(judge_model) if annotator == LOCAL_ANNOTATOR else None,
        "win_rate_kind": "length_controlled" if lc else "plain",
        "lc_reason": lc_reason,
        "win_rate": _clean(row.get(win_key)),
        "standard_error": _clean(row.get("lc_standard_error" if lc else "standard_error")),
        "leaderboard_row": {k: _clean(v) for k, v in row.items()},
        "n": len(model_outputs),
        "n_instructions_in_file": len(instr),
        "mean_length_chars": sum(lengths) / len(lengths),
        "mean_length_tokens": sum(g["n_tokens"] for g in gens) / len(gens),
        "truncated": sum(not g["stopped"] for g in gens),
        "generation": {"greedy": True, "chat_template": True, "max_new_tokens": max_new_tokens},
        "instructions": str(instructions),
        "reference_outputs": str(reference_outputs),
        "limit": limit,
        "versions": _versions(),
        "outputs": out_json.with_suffix(".outputs.json").name,
        "annotations": out_json.with_suffix(".annotations.json").name,
    }
    record["metrics"] = [
        {"task": "alpaca_eval2", "metric": "lc_win_rate" if lc else "win_rate",
         "value": record["win_rate"], "stderr": record["standard_error"], "n": record["n"]},
        {"task": "alpaca_eval2", "metric": "mean_length_chars", "value": record["mean_length_chars"],
         "stderr": None, "n": record["n"]},
    ]
    atomic_write_text(out_json.with_suffix(".annotations.json"),
                      json.dumps([{k: _clean(v) for k, v in a.items()} for a in annotations],
                                 indent=1) + "\n")
    atomic_write_text(out_json, json.dumps(record, indent=2, allow_nan=False) + "\n")
    return record


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("alpaca_eval", "setuptools", "transformers", "torch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out
