"""CLI adapters for the evaluation commands, kept here so ``negfree/cli.py`` only wires them.

``register(sub)`` adds (or replaces) these subcommands on the ``negfree`` parser:

- ``negfree evaluate --model M --out J (--test T | --protocol NAME) [--dry-run] [--max-length N] [--cache DIR]``
- ``negfree fetch-eval-data --protocol NAME --out MARKER``
- ``negfree fetch-judged-data --protocol {arena_hard,mt_bench,wildbench,alpaca_eval,all} [--sources Y] [--out DIR]
  [--base-url-map FROM=TO ...]`` (the judged benchmarks' pinned official files; needs the network)
- ``negfree alpaca-eval --model M [--protocol alpaca_eval1|alpaca_eval2] --instructions I --reference R --out J
  [--annotator A --judge-model D] [--endpoint-url U --endpoint-model ID --endpoint-key-env VAR] [--cache-dir C]``
- ``negfree textsim --model M --data D --out J [--prompt-field --reference-field --name]``
- ``negfree eval-csv JSON... --out CSV [--runs ...]``
- ``negfree judged-answers --benchmark B --model M --questions Q --out A.jsonl [--backend auto|transformers|vllm]
  [--temperature --top-p --seed ...]``
- ``negfree judged-eval --benchmark B --answers A.jsonl --questions Q --judge-template T --out J --cache-dir D
  (--judge offline|SPEC.yaml | --judge-model M --judge-url U [--judge-key-env VAR]) [--baseline F] [--reference F]``
- ``negfree judged-prompts --benchmark B --questions Q --out P.jsonl [--limit N]`` (the prompts as chat messages,
  ``{id, prompt}`` per line, for ``negfree shifts --data``)

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


# -------------------------------------------------------------- fetch-judged-data
def add_fetch_judged_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--protocol", required=True, choices=["arena_hard", "mt_bench", "wildbench", "alpaca_eval", "all"],
                   help="whose official files to download (alpaca_eval: AlpacaEval 1's and 2's reference outputs, "
                        "which carry the 805 instructions; all: every one, one after the other)")
    s.add_argument("--sources", default="configs/judged/sources.yaml",
                   help="the pinned URLs, sha256 and sizes (default configs/judged/sources.yaml)")
    s.add_argument("--out", default="work/judged",
                   help="files land in OUT/<protocol>/ with manifest.json and the marker .fetched (default work/judged)")
    s.add_argument("--base-url-map", action="append", metavar="FROM=TO", default=None,
                   help="use a mirror: replace the URL prefix FROM (https://raw.githubusercontent.com, "
                        "https://huggingface.co) by TO; repeatable. Without it, $NEGFREE_JUDGED_MIRROR is read: "
                        "FROM=TO pairs (comma-separated) or one base URL serving both hosts' paths. "
                        "The sha256 checks are the same")


def cmd_fetch_judged_data(args) -> None:
    from negfree.evaluate.judged.fetch import fetch_judged

    for res in fetch_judged(args.protocol, args.sources, args.out, base_url_map=args.base_url_map, log=print):
        unverified = f"; sha256 not pinned, recorded unverified: {', '.join(res['unverified'])}" \
            if res["unverified"] else ""
        print(f"{res['protocol']}: {res['downloaded']} downloaded, {res['present']} already in place -> "
              f"{res['dir']} (manifest.json, .fetched){unverified}")


# -------------------------------------------------------------------- alpaca-eval
def add_alpaca_arguments(s: argparse.ArgumentParser) -> None:
    annotators = ("weighted_alpaca_eval_gpt4_turbo", "alpaca_eval_gpt4", "negfree_local_loglik")
    s.add_argument("--model", required=True)
    s.add_argument("--protocol", default="alpaca_eval2", choices=("alpaca_eval1", "alpaca_eval2"),
                   help="alpaca_eval2 (default): judged by weighted_alpaca_eval_gpt4_turbo against gpt4_1106_preview's "
                        "outputs, LC win rate on the full set; alpaca_eval1: alpaca_eval_gpt4 against "
                        "text_davinci_003's outputs, win rate")
    s.add_argument("--instructions", required=True,
                   help="JSON list of {'instruction': ...}; the official reference file serves (805 instructions, "
                        "in order): work/judged/alpaca_eval/reference_ae{1,2}.json after negfree fetch-judged-data")
    s.add_argument("--reference", required=True, help="JSON list of reference {'instruction', 'output', 'generator'}")
    s.add_argument("--out", required=True)
    s.add_argument("--annotator", default=None, choices=annotators,
                   help="default: the protocol's own judge (alpaca_eval2: weighted_alpaca_eval_gpt4_turbo, "
                        "alpaca_eval1: alpaca_eval_gpt4; OPENAI_API_KEY, or --endpoint-*); negfree_local_loglik "
                        "is an offline stand-in, NOT AlpacaEval's judge")
    s.add_argument("--judge-model", help="local judge model directory (negfree_local_loglik)")
    s.add_argument("--endpoint-url", metavar="URL",
                   help="ask an OpenAI-compatible server instead of OpenAI's API, e.g. http://judge:8000/v1")
    s.add_argument("--endpoint-model", metavar="ID",
                   help="the model id the endpoint serves (default: the annotator's own, gpt-4 or gpt-4-1106-preview)")
    s.add_argument("--endpoint-key-env", metavar="VAR", default="OPENAI_API_KEY",
                   help="the NAME of the variable holding the endpoint's key (default OPENAI_API_KEY; '' for none); "
                        "the key is read at request time and never written")
    s.add_argument("--cache-dir", metavar="DIR",
                   help="keep the judge's annotations in DIR across reruns (alpaca_eval's caching_path, one file "
                        "per judge); default: no cache")
    s.add_argument("--fallback-template", action="store_true",
                   help="a model without a chat template answers through the Zephyr-style one (train.fallback_template)")
    s.add_argument("--limit", type=int, default=None, help="first N instructions (plain win rate only)")
    s.add_argument("--max-new-tokens", type=int, default=2048)
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--device", default="auto", help="auto (default): cuda when a GPU is visible, else cpu")
    s.add_argument("--name", help="generator name in the outputs (default: the model folder name)")


def cmd_alpaca_eval(args) -> None:
    from negfree.evaluate.alpaca import evaluate_alpaca

    endpoint = None
    if args.endpoint_url:
        endpoint = {"base_url": args.endpoint_url, "model": args.endpoint_model,
                    "api_key_env": args.endpoint_key_env or None}
    elif args.endpoint_model:
        raise ValueError("--endpoint-model needs --endpoint-url (the server that serves it)")
    res = evaluate_alpaca(args.model, args.instructions, args.reference, args.out,
                          annotator=args.annotator, judge_model=args.judge_model, limit=args.limit,
                          max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                          device=_device(args.device), name=args.name, protocol=args.protocol,
                          endpoint=endpoint, cache_dir=args.cache_dir, fallback_template=args.fallback_template)
    keys = ("protocol", "annotator", "win_rate_kind", "win_rate", "standard_error", "n", "mean_length_chars",
            "lc_reason", "n_judgements_from_cache")
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


# ------------------------------------------------------------ judged benchmarks
_BENCHES = ("arena-hard", "mt-bench", "wildbench")


def add_judged_answers_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--benchmark", required=True, choices=_BENCHES, help="whose question file --questions is")
    s.add_argument("--model", required=True, help="the model directory that answers (with its chat template)")
    s.add_argument("--questions", required=True,
                   help="the official prompts: Arena-Hard/MT-Bench question.jsonl, WildBench v2 records (JSONL)")
    s.add_argument("--out", required=True,
                   help="answers JSONL, appended per finished prompt; a rerun resumes where it stopped")
    s.add_argument("--name", help="the model's name in the answers (default: the model folder name)")
    s.add_argument("--temperature", type=float, default=0.0, help="0 (default): greedy; above 0: seeded sampling")
    s.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass, when sampling (default 1.0)")
    s.add_argument("--seed", type=int, default=0, help="seed of the per-answer sampling generators (default 0)")
    s.add_argument("--max-new-tokens", type=int, default=None,
                   help="tokens per answer at most (default: 4096 Arena-Hard, 1024 MT-Bench, 4096 WildBench)")
    s.add_argument("--mt-bench-category-temperatures", action="store_true",
                   help="MT-Bench: FastChat's per-category temperatures (writing/roleplay 0.7, stem/humanities 0.1, "
                        "others 0) instead of --temperature")
    s.add_argument("--batch-size", type=int, default=8,
                   help="prompts per generate call (default 8; transformers only: vLLM batches itself)")
    s.add_argument("--backend", choices=["auto", "transformers", "vllm"], default="auto",
                   help="auto (default): vllm where a CUDA GPU and the vllm package are, else transformers; "
                        "the answers' settings name the one that ran")
    s.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="auto: bf16 weights on CUDA, fp32 on the CPU")
    s.add_argument("--device", default="auto", help="auto (default): cuda when a GPU is visible, else cpu")
    s.add_argument("--limit", type=int, default=None, help="the first N prompts only")
    s.add_argument("--restart-on-new-settings", action="store_true",
                   help="answers in --out of another model or other settings are moved to <out>.stale and every "
                        "prompt is answered again (default: refused in one line)")


_DEFAULT_NEW_TOKENS = {"arena_hard": 4096, "mt_bench": 1024, "wildbench": 4096}


def cmd_judged_answers(args) -> None:
    from negfree.evaluate.judged.answers import (FASTCHAT_TEMPERATURES, benchmark_name, generate_answers,
                                                 summary_line)

    bench = benchmark_name(args.benchmark)
    if args.mt_bench_category_temperatures and bench != "mt_bench":
        raise ValueError("--mt-bench-category-temperatures applies to --benchmark mt-bench only")
    res = generate_answers(args.model, bench, args.questions, args.out, name=args.name,
                           temperature=args.temperature, top_p=args.top_p,
                           max_new_tokens=args.max_new_tokens or _DEFAULT_NEW_TOKENS[bench], seed=args.seed,
                           batch_size=args.batch_size, device=_device(args.device), precision=args.precision,
                           limit=args.limit,
                           category_temperatures=FASTCHAT_TEMPERATURES if args.mt_bench_category_temperatures else None,
                           restart_on_new_settings=args.restart_on_new_settings, backend=args.backend)
    print(json.dumps(summary_line(res), indent=2))


def add_judged_eval_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--benchmark", required=True, choices=_BENCHES, help="which benchmark's protocol judges")
    s.add_argument("--answers", required=True, help="the answers JSONL of negfree judged-answers")
    s.add_argument("--questions", required=True, help="the question (or WildBench record) file they answer")
    s.add_argument("--judge-template", required=True,
                   help="the official judge template: MT-Bench judge_prompts.jsonl, Arena-Hard judge_config.yaml, "
                        "WildBench eval_template.score.v2.md")
    s.add_argument("--baseline", help="Arena-Hard: the baseline answers, model_answer/gpt-4-0314.jsonl")
    s.add_argument("--reference", help="MT-Bench: the reference answers, reference_answer/gpt-4.jsonl")
    s.add_argument("--out", required=True, help="result JSON (the per-judgement JSONL is written beside it)")
    s.add_argument("--cache-dir", required=True, help="the judgement cache: a judgement is asked once, across reruns")
    who = s.add_mutually_exclusive_group(required=True)
    who.add_argument("--judge", help="'offline' (a hash, NOT a model: demo and tests only) or a YAML/JSON file of "
                                     "judge settings (name, model, base_url, api_key_env, ...)")
    who.add_argument("--judge-model", help="the judge's model id on an OpenAI-compatible server (with --judge-url)")
    s.add_argument("--judge-url", help="the server's base URL, e.g. https://api.openai.com/v1")
    s.add_argument("--judge-key-env", help="the NAME of the environment variable holding the API key (never the key)")
    s.add_argument("--judge-name", help="the judge's display name (default: its model id)")
    s.add_argument("--judge-max-tokens", type=int, default=None,
                   help="reply tokens at most (default: 4096 Arena-Hard, 2048 MT-Bench, 1024 WildBench)")
    s.add_argument("--judge-concurrency", type=int, default=4, help="requests in flight at once (default 4)")
    s.add_argument("--max-failed-fraction", type=float, default=0.0,
                   help="judgements that may fail for good before the job fails (default 0: any failure "
                        "fails it, after the rest are judged and cached)")
    s.add_argument("--wildbench-max-words", type=int, default=1000,
                   help="WildBench: words of history, query and answer shown to the judge (default 1000, as "
                        "WildBench's scripts; 0: all)")
    s.add_argument("--limit", type=int, default=None, help="the first N questions only")
    s.add_argument("--run", help="the run's name in the result (default: the answers' model name)")


def _judge_from_args(args, bench: str):
    from negfree.evaluate.judged.run import INFO

    if args.judge is not None:
        if any(v is not None for v in (args.judge_url, args.judge_key_env, args.judge_name, args.judge_max_tokens)):
            raise ValueError("--judge takes its settings from the file (or is 'offline'); drop the --judge-* flags")
        if args.judge == "offline":
            return "offline"
        from negfree.common.io import read_text
        import yaml

        try:
            spec = yaml.safe_load(read_text(args.judge, "judge settings file"))
        except yaml.YAMLError as err:
            raise ValueError(f"{args.judge}: not valid YAML/JSON ({err})") from None
        if not isinstance(spec, dict):
            raise ValueError(f"{args.judge}: expected a mapping of judge settings (name, model, base_url, ...)")
        spec.setdefault("name", spec.get("model", "judge"))
        spec.setdefault("max_tokens", INFO[bench]["judge_max_tokens"])
        return spec
    if not args.judge_url:
        raise ValueError("--judge-model needs --judge-url (the OpenAI-compatible server's base URL)")
    return {"name": args.judge_name or args.judge_model, "model": args.judge_model, "base_url": args.judge_url,
            "api_key_env": args.judge_key_env, "max_concurrency": args.judge_concurrency,
            "max_tokens": args.judge_max_tokens or INFO[bench]["judge_max_tokens"]}


def cmd_judged_eval(args) -> None:
    from negfree.evaluate.judged.answers import benchmark_name
    from negfree.evaluate.judged.run import evaluate_judged

    bench = benchmark_name(args.benchmark)
    if args.baseline and bench != "arena_hard":
        raise ValueError("--baseline applies to --benchmark arena-hard only")
    if args.reference and bench != "mt_bench":
        raise ValueError("--reference applies to --benchmark mt-bench only")
    res = evaluate_judged(bench, answers=args.answers, questions=args.questions, templates=args.judge_template,
                          out=args.out, cache_dir=args.cache_dir, judge=_judge_from_args(args, bench),
                          baseline=args.baseline, reference=args.reference,
                          max_failed_fraction=args.max_failed_fraction, limit=args.limit, run=args.run,
                          wildbench_max_words=args.wildbench_max_words or None)
    keys = ("protocol", "model", "metric", "value", "ci_low", "ci_high", "n", "failed", "judge_is_offline")
    print(json.dumps({**{k: res[k] for k in keys}, "judge": res["judge"]["name"]}, indent=2))
    if res["judge_is_offline"]:
        print(res["warning"])


def add_judged_prompts_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--benchmark", required=True, choices=_BENCHES, help="whose question file --questions is")
    s.add_argument("--questions", required=True,
                   help="the official prompts: WildBench v2 records (JSONL), Arena-Hard/MT-Bench question.jsonl")
    s.add_argument("--out", required=True,
                   help="JSONL, one {id, prompt: [chat messages]} per prompt (negfree shifts --data); the "
                        "messages of the first turn: WildBench's recorded history, then its last user query")
    s.add_argument("--limit", type=int, default=None, help="the first N prompts only, in the file's order")


def cmd_judged_prompts(args) -> None:
    from negfree.evaluate.judged.answers import write_prompt_file

    res = write_prompt_file(args.benchmark, args.questions, args.out, limit=args.limit)
    print(f"{res['benchmark']}: {res['n']} of {res['in_file']} prompts of {res['questions']} -> {res['out']}")


# ---------------------------------------------------------------------- wiring
COMMANDS = {
    "evaluate": ("lm-eval: a paper protocol (--protocol) or the offline twin (--test)",
                 add_evaluate_arguments, cmd_evaluate),
    "fetch-eval-data": ("fill the HF datasets cache with a protocol's lm-eval data (where the hub is reachable)",
                        add_fetch_arguments, cmd_fetch_eval_data),
    "fetch-judged-data": ("download the judged benchmarks' pinned official files (Arena-Hard v0.1, MT-Bench, "
                          "WildBench v2, AlpacaEval 1 and 2), sha256-checked, on a host with internet",
                          add_fetch_judged_arguments, cmd_fetch_judged_data),
    "alpaca-eval": ("AlpacaEval 1 or 2 win rate of greedy chat answers", add_alpaca_arguments, cmd_alpaca_eval),
    "textsim": ("BLEU-4 and ROUGE-1/2/L of greedy answers against references",
                add_textsim_arguments, cmd_textsim),
    "eval-csv": ("collect evaluation JSONs into one tidy CSV", add_eval_csv_arguments, cmd_eval_csv),
    "judged-answers": ("a model's answers to Arena-Hard v0.1, MT-Bench or WildBench v2 prompts (chat template, "
                       "resumable)", add_judged_answers_arguments, cmd_judged_answers),
    "judged-eval": ("judge answers on Arena-Hard v0.1, MT-Bench or WildBench v2 from the official files",
                    add_judged_eval_arguments, cmd_judged_eval),
    "judged-prompts": ("a judged benchmark's prompts as chat messages, {id, prompt} per line (negfree shifts "
                       "--data: bnf.txt Figs. 3-4 on WildBench v2)", add_judged_prompts_arguments,
                       cmd_judged_prompts),
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


def main_fetch_judged_data(argv: list[str] | None = None) -> None:
    _main("fetch-judged-data", argv)


def main_alpaca_eval(argv: list[str] | None = None) -> None:
    _main("alpaca-eval", argv)


def main_textsim(argv: list[str] | None = None) -> None:
    _main("textsim", argv)


def main_eval_csv(argv: list[str] | None = None) -> None:
    _main("eval-csv", argv)


def main_judged_answers(argv: list[str] | None = None) -> None:
    _main("judged-answers", argv)


def main_judged_eval(argv: list[str] | None = None) -> None:
    _main("judged-eval", argv)


def main_judged_prompts(argv: list[str] | None = None) -> None:
    _main("judged-prompts", argv)
