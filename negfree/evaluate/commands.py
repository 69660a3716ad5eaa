"""CLI adapters for the evaluation commands, kept here so ``negfree/cli.py`` only wires them.

``register(sub)`` adds (or replaces) these subcommands on the ``negfree`` parser:

- ``negfree evaluate --model M --out J (--test T | --protocol NAME) [--dry-run] [--max-length N] [--cache DIR]``
- ``negfree fetch-eval-data --protocol NAME --out MARKER``
- ``negfree alpaca-eval --model M --instructions I --reference R --out J [--annotator A --judge-model D]``
- ``negfree textsim --model M --data D --out J [--prompt-field --reference-field --name]``
- ``negfree eval-csv JSON... --out CSV [--runs ...]``

Each ``main_*(argv)`` runs one command standalone (``python -m`` style).
Heavy imports happen inside the commands.
"""
from __future__ import annotations

import argparse
import json


# ----------------------------------------------------------------------- evaluate
def add_evaluate_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--model", required=True)
    s.add_argument("--out", required=True, help="result JSON (samples are written beside it)")
    what = s.add_mutually_exclusive_group(required=True)
    what.add_argument("--test", help="embedded test JSONL: the offline lm-eval twin")
    what.add_argument("--protocol", help="a paper protocol: openllm_dft, openllm_ift, math_zeroshot, bnf_reasoning")
    s.add_argument("--limit", type=float, default=None,
                   help="documents per task (an integer), or a fraction below 1")
    s.add_argument("--batch-size", default="default",
                   help="an integer, or 'auto' (lm-eval finds the largest that fits); default: auto on a GPU, 8 on the CPU")
    s.add_argument("--device", default="auto", help="auto (default): cuda when a GPU is visible, else cpu")
    s.add_argument("--seed", type=int, default=None, help="protocols only (default 1234)")
    s.add_argument("--max-length", type=int, default=None,
                   help="protocols only: the context lm-eval works at, and so the length batch size 'auto' "
                        "probes at; never above the model's own (default 4096; 0: the model's own)")
    s.add_argument("--cache", default=None,
                   help="protocols only: lm-eval's request cache, one folder per job, so a rerun of a killed "
                        "job only asks what is left; removed once the result is written "
                        "(default: <out stem>.cache beside --out; 'none': no cache)")
    s.add_argument("--chat-template", action="store_true",
                   help="offline twin only: wrap each prompt in the chat template "
                        "(protocols fix this per call)")
    s.add_argument("--dry-run", action="store_true",
                   help="protocols only: print the tasks, shots and metrics that would run; no model, no data")


def _limit(value):
    if value is None:
        return None
    return int(value) if value >= 1 else value


def _device(value: str) -> str:
    """``auto``: the GPU a cluster job was given, else the CPU (the workflow passes no device)."""
    from negfree.common.models import resolve_device

    return resolve_device(value)


def _batch(value: str, device: str = "cpu"):
    if value == "default":
        return "auto" if str(device).startswith("cuda") else 8
    return value if value.startswith("auto") else int(value)


def _max_length(value: int | None, default: int) -> int | None:
    if value is None:
        return default
    if value < 0:
        raise ValueError(f"--max-length must be a number of tokens, or 0 for the model's own; got {value}")
    return value or None


def _cache(value: str | None):
    if value is None:
        return True
    return False if value.lower() == "none" else value


def cmd_evaluate(args) -> None:
    if args.protocol:
        from negfree.evaluate.protocols import DEFAULT_MAX_LENGTH, DEFAULT_SEED, evaluate_protocol, resolve

        if args.dry_run:
            resolved = resolve(args.protocol)
            for group, got in resolved.items():
                print(f"{group}:")
                for task, cfg in got["tasks"].items():
                    print(f"  {task:<52} {cfg['num_fewshot']!s:>3}-shot  {','.join(cfg['metrics'])}"
                          f"  [{','.join(cfg['filters'])}]")
            return
        if args.chat_template:
            raise ValueError("--chat-template is fixed per call by the protocol; drop it")
        res = evaluate_protocol(args.model, args.protocol, args.out, limit=_limit(args.limit),
                                batch_size=_batch(args.batch_size, _device(args.device)), device=_device(args.device),
                                seed=DEFAULT_SEED if args.seed is None else args.seed,
                                max_length=_max_length(args.max_length, DEFAULT_MAX_LENGTH),
                                cache=_cache(args.cache))
        print(json.dumps({"tasks": {t: r["value"] for t, r in res["tasks"].items()},
                          "aggregate": res["aggregate"]["value"],
                          "failed": {c["group"]: c["error"] for c in res["calls"] if c["error"]}},
                         indent=2))
        return
    if args.dry_run:
        raise ValueError("--dry-run needs --protocol")
    if args.max_length is not None or args.cache is not None:
        raise ValueError("--max-length and --cache apply to --protocol only")
    from negfree.evaluate.local import evaluate_local

    res = evaluate_local(args.model, args.test, args.out, limit=_limit(args.limit),
                         batch_size=_batch(args.batch_size, _device(args.device)), device=_device(args.device),
                         apply_chat_template=args.chat_template)
    print(json.dumps(res["tasks"], indent=2))


# ---------------------------------------------------------------- fetch-eval-data
def add_fetch_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--protocol", required=True,
                   help="a paper protocol, or 'offline' (the embedded twin: nothing to fetch, the marker is written)")
    s.add_argument("--out", required=True, help="marker JSON: the datasets fetched per call")


def cmd_fetch_eval_data(args) -> None:
    from negfree.evaluate.protocols import fetch_data

    res = fetch_data(args.protocol, args.out)
    for call in res["calls"]:
        what = f"{len(call['tasks'])} tasks" if call["status"] == "ok" else f"skipped: {call['error']}"
        print(f"{call['group']}: {what}")
    print(f"{res['protocol']}: data in {res['hf_datasets_cache']} -> {args.out}")


# -------------------------------------------------------------------- alpaca-eval
def add_alpaca_arguments(s: argparse.ArgumentParser) -> None:
    from_alpaca = ("weighted_alpaca_eval_gpt4_turbo", "negfree_local_loglik")
    s.add_argument("--model", required=True)
    s.add_argument("--instructions", required=True, help="JSON list of {'instruction': ...} (the 805 set on the cluster)")
    s.add_argument("--reference", required=True, help="JSON list of reference {'instruction', 'output', 'generator'}")
    s.add_argument("--out", required=True)
    s.add_argument("--annotator", default=from_alpaca[0], choices=from_alpaca,
                   help="default: AlpacaEval 2's GPT-4-turbo judge (needs OPENAI_API_KEY); "
                        "negfree_local_loglik is an offline stand-in, NOT AlpacaEval's judge")
    s.add_argument("--judge-model", help="local judge model directory (negfree_local_loglik)")
    s.add_argument("--limit", type=int, default=None, help="first N instructions (plain win rate only)")
    s.add_argument("--max-new-tokens", type=int, default=2048)
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--device", default="auto", help="auto (default): cuda when a GPU is visible, else cpu")
    s.add_argument("--name", help="generator name in the outputs (default: the model folder name)")


def cmd_alpaca_eval(args) -> None:
    from negfree.evaluate.alpaca import evaluate_alpaca

    res = evaluate_alpaca(args.model, args.instructions, args.reference, args.out,
                          annotator=args.annotator, judge_model=args.judge_model, limit=args.limit,
                          max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                          device=_device(args.device), name=args.name)
    keys = ("annotator", "win_rate_kind", "win_rate", "standard_error", "n", "mean_length_chars", "lc_reason")
    print(json.dumps({k: res[k] for k in keys}, indent=2))


# ------------------------------------------------------------------------ textsim
def add_textsim_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--model", required=True)
    s.add_argument("--data", required=True, help="held-out JSONL with a prompt and a reference answer")
    s.add_argument("--out", required=True)
    s.add_argument("--prompt-field", default="prompt")
    s.add_argument("--reference-field", default="positive")
    s.add_argument("--name", help="dataset name in the results (default: the data file stem)")
    s.add_argument("--limit", type=int, default=None)
    s.add_argument("--max-new-tokens", type=int, default=512)
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--device", default="auto", help="auto (default): cuda when a GPU is visible, else cpu")


def cmd_textsim(args) -> None:
    from negfree.evaluate.textsim import evaluate_textsim

    res = evaluate_textsim(args.model, args.data, args.out, prompt_field=args.prompt_field,
                           reference_field=args.reference_field, limit=args.limit,
                           max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                           device=_device(args.device), name=args.name)
    print(json.dumps(res["scores"], indent=2))


# ----------------------------------------------------------------------- eval-csv
def add_eval_csv_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("evals", nargs="+", help="result JSONs")
    s.add_argument("--out", required=True, help="tidy CSV: run, protocol, task, metric, value, stderr, n")
    s.add_argument("--runs", nargs="*", default=None, help="run names, same order as the JSONs")


def cmd_eval_csv(args) -> None:
    from negfree.evaluate.aggregate import aggregate

    rows = aggregate(args.evals, args.out, args.runs)
    print(f"{len(rows)} rows -> {args.out}")


# ---------------------------------------------------------------------- wiring
COMMANDS = {
    "evaluate": ("lm-eval: a paper protocol (--protocol) or the offline twin (--test)",
                 add_evaluate_arguments, cmd_evaluate),
    "fetch-eval-data": ("fill the HF datasets cache with a protocol's lm-eval data (where the hub is reachable)",
                        add_fetch_arguments, cmd_fetch_eval_data),
    "alpaca-eval": ("AlpacaEval 2 win rate of greedy chat answers", add_alpaca_arguments, cmd_alpaca_eval),
    "textsim": ("BLEU-4 and ROUGE-1/2/L of greedy answers against references",
                add_textsim_arguments, cmd_textsim),
    "eval-csv": ("collect evaluation JSONs into one tidy CSV", add_eval_csv_arguments, cmd_eval_csv),
}


def register(sub) -> None:
    """Add the evaluation subcommands to an ``add_subparsers()`` object."""
    for name, (help_, add, fn) in COMMANDS.items():
        s = sub.add_parser(name, help=help_)
        add(s)
        s.set_defaults(fn=fn)


def _main(name: str, argv: list[str] | None) -> None:
    help_, add, fn = COMMANDS[name]
    p = argparse.ArgumentParser(prog=f"negfree {name}", description=help_)
    add(p)
    args = p.parse_args(argv)
    from negfree.common.errors import run_reporting_errors

    run_reporting_errors(name, lambda: fn(args))


def main_evaluate(argv: list[str] | None = None) -> None:
    _main("evaluate", argv)


def main_fetch_eval_data(argv: list[str] | None = None) -> None:
    _main("fetch-eval-data", argv)


def main_alpaca_eval(argv: list[str] | None = None) -> None:
    _main("alpaca-eval", argv)


def main_textsim(argv: list[str] | None = None) -> None:
    _main("textsim", argv)


def main_eval_csv(argv: list[str] | None = None) -> None:
    _main("eval-csv", argv)
