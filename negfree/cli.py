"""`negfree <command>`: the one entry point every workflow rule calls.

Each command is a thin adapter over tested package code. Heavy imports happen
inside the command, so `negfree methods` answers instantly.
"""
from __future__ import annotations

import argparse
import json
import sys

from negfree.common.errors import run_reporting_errors


def _parse_value(text: str):
    import yaml

    return yaml.safe_load(text)


def _pairs(items: list[str] | None, what: str) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"negfree: {what} '{item}' must look like key=value")
        k, v = item.split("=", 1)
        out[k.strip()] = _parse_value(v)
    return out


# ----------------------------------------------------------------------------- commands
def cmd_methods(args) -> None:
    from negfree.losses import REGISTRY

    rows = [m.describe() for m in REGISTRY.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    yes = lambda b: "yes" if b else "-"  # noqa: E731
    for line in methods_table([(r["name"], yes(r["needs_reference"]), yes(r["needs_negatives"]), yes(r["pairwise"]),
                                yes(r["token_level"]),
                                ", ".join(f"{k}={v}" for k, v in r["hyperparameters"].items()) or "none", r["paper"])
                               for r in rows], _table_width()):
        print(line)


def _table_width() -> int:
    """The terminal's width; 100 columns when stdout is not a terminal (a pipe, a file, a log)."""
    import shutil

    return shutil.get_terminal_size((100, 24)).columns if sys.stdout.isatty() else 100


def methods_table(rows: list[tuple], width: int = 100) -> list[str]:
    """The registry as a table no wider than ``width``: the two text columns (hyperparameters,
    paper) wrap onto continuation lines instead of running past the edge."""
    import textwrap
    from itertools import zip_longest

    head = ("name", "ref", "neg", "pair", "token", "hyperparameters (paper defaults)", "paper")
    fixed = [max(len(str(r[i])) for r in [head[:5], *rows]) for i in range(5)]
    lead = sum(fixed) + len(fixed)                       # the fixed columns and one space after each
    room = max(width - lead - 1, 30)                     # the two text columns and the space between
    hp_w = min(max(len(r[5]) for r in rows), max(room * 2 // 5, 16))
    paper_w = room - hp_w

    def lines(row):
        hp = textwrap.wrap(row[5], hp_w, break_on_hyphens=False) or [""]
        paper = textwrap.wrap(row[6], paper_w, break_on_hyphens=False) or [""]
        for i, (a, b) in enumerate(zip_longest(hp, paper, fillvalue="")):
            cells = row[:5] if i == 0 else ("",) * 5
            yield (" ".join(f"{c:<{w}}" for c, w in zip(cells, fixed)) + f" {a:<{hp_w}} {b}").rstrip()

    out = list(lines(head))
    out.append("-" * min(width, lead + room))
    for r in rows:
        out.extend(lines(r))
    return out


def cmd_prepare_model(args) -> None:
    from negfree.common.models import prepare_model

    print(prepare_model(args.source, args.out))


def cmd_make_data(args) -> None:
    if args.source == "embedded":
        from negfree.data.embedded import make_embedded

        print(json.dumps(make_embedded(args.out, n_train=args.n_train, n_test=args.n_test, seed=args.seed),
                         indent=2))
        return
    from negfree.data.adapters import make_from_config

    print(json.dumps(make_from_config(args.source, args.out, n_train=args.n_train or None,
                                      n_test=args.n_test or None, seed=args.seed, path=args.local), indent=2))


def _records(path: str, limit: int | None):
    from negfree.data.schema import load_jsonl

    recs = load_jsonl(path)
    return recs[:limit] if limit else recs


def cmd_generate(args) -> None:
    from negfree.generate.negatives import generate_negatives, pair_negatives

    if args.strategy == "pair":
        print(json.dumps(pair_negatives(_records(args.data, args.limit), args.out, num=args.num), indent=2))
        return
    if args.from_shards:   # the gather job: the shards' pools -> one pool in record order
        from negfree.generate.negatives import gather_generated

        print(json.dumps(gather_generated(_records(args.data, args.limit), args.from_shards, args.out), indent=2))
        return
    m = generate_negatives(args.model, _records(args.data, args.limit), args.out, num=args.num,
                           strategy_name=args.strategy, temperature=args.temperature, top_p=args.top_p,
                           top_k=args.top_k, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                           seed=args.seed, fallback_template=args.fallback_template, shard=args.shard,
                           num_shards=args.num_shards, backend=args.backend, device=args.device, dtype=args.dtype)
    print(json.dumps(m, indent=2))


def cmd_score(args) -> None:
    from negfree.common.io import write_json
    from negfree.score.reference import gather_scores, score_records

    records = _records(args.data, args.limit)
    if args.from_shards:   # the gather job: the shards' parts -> the scored file, in record order
        m = gather_scores(records, args.from_shards, args.out)
        write_json(args.out + ".manifest.json", m)
    else:
        m = score_records(args.model, records, args.out, max_len=args.max_len, batch_size=args.batch_size,
                          max_batch_tokens=args.max_batch_tokens, mismatched=not args.no_mismatched,
                          fallback_template=args.fallback_template, max_prompt_len=args.max_prompt_len,
                          overlong_prompts=args.overlong_prompts, source=args.data, shard=args.shard,
                          num_shards=args.num_shards, precision=args.precision, device=args.device)
    print(json.dumps(m, indent=2))


def cmd_train(args) -> None:
    import yaml

    from negfree.common.io import read_text
    from negfree.train.checkpoint import Preempted
    from negfree.train.loop import train

    cfg = {}
    if args.config:
        try:
            doc = yaml.safe_load(read_text(args.config, "config file")) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{args.config}:{mark.line + 1}" if mark else args.config
            raise ValueError(f"{where}: invalid YAML ({getattr(e, 'problem', None) or e})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("train", {}), dict):
            raise ValueError(f"{args.config}: expected a mapping with a 'train' mapping")
        cfg.update(doc.get("train", {}))
    if args.train_json:
        try:
            cfg.update(json.loads(args.train_json))
        except json.JSONDecodeError as e:
            raise ValueError(f"--train-json is not valid JSON ({e})") from None
    cfg.update(_pairs(args.set, "--set"))
    cfg.update({"method": args.method, "model": args.model, "data": args.data, "out_dir": args.out_dir})
    cfg["hparams"] = {**cfg.get("hparams", {}), **_pairs(args.hp, "--hp")}
    try:
        timing = train(cfg)
    except Preempted as e:   # Slurm preemption: the checkpoint is saved; 143 = 128 + SIGTERM, so the job is retried
        print(f"negfree train: {e}", file=sys.stderr, flush=True)
        raise SystemExit(143) from None
    print(json.dumps(timing, indent=2))


def cmd_bench(args, rest) -> None:
    import importlib

    importlib.import_module(f"negfree.bench.{args.bench}").main(rest)


def cmd_table(args) -> None:
    from negfree.report.tables import summary_table

    print(summary_table(args.evals, args.out_csv, args.out_md, runs=args.runs, scale=args.scale,
                        settings=json.loads(args.settings) if args.settings else None).to_string(index=False))


def cmd_sweep_table(args) -> None:
    from negfree.report.tables import protocol_sweep_table

    print(protocol_sweep_table(args.evals, args.runs, json.loads(args.settings), args.out_csv, args.out_md,
                               scale=args.scale).to_string(index=False))


def cmd_judged_table(args) -> None:
    from negfree.report.judged import judged_table

    if len(args.runs) != len(args.results):
        raise ValueError(f"judged-table: {len(args.results)} results but {len(args.runs)} run names")
    papers = _pairs(args.paper_judge, "--paper-judge")
    rows = judged_table(list(zip(args.results, args.runs)), args.out_csv, args.out_md, paper_judges=papers,
                        scale=args.scale)
    print(f"{len(rows)} judged results -> {args.out_md}")


def cmd_serve_judge(args) -> None:
    from negfree.evaluate.judged.serve import serve_and_run

    command = args.command_line[1:] if args.command_line[:1] == ["--"] else args.command_line
    rc = serve_and_run(args.model, command, gpus=args.gpus, startup_min=args.startup_min, server_cmd=args.server_cmd)
    if rc:
        raise SystemExit(rc)


def cmd_provenance(args) -> None:
    """What made the committed outputs: command, commit, date, hardware, wall time."""
    import time
    from datetime import datetime, timezone

    from negfree.common.io import write_json
    from negfree.train.runlog import provenance

    start = float(open(args.start_file).read().strip())
    rec = {"command": args.command, "started": datetime.fromtimestamp(start, timezone.utc).isoformat(timespec="seconds"),
           "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "wall_seconds": round(time.time() - start, 1), **provenance()}
    rec.pop("argv", None)
    write_json(args.out, rec)
    print(f"{args.command}: {rec['wall_seconds']} s -> {args.out}")


def cmd_figure(args) -> None:
    from negfree.report import analytic

    analytic.main([args.name, "--png", args.png, "--csv", args.csv])


def cmd_toy(args, rest: list[str]) -> None:
    from negfree.toy import frozen_lake

    raise SystemExit(frozen_lake.main(rest))


# ------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="negfree", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"negfree {_version()}")
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of an error (also: NEGFREE_DEBUG=1); by default bad input "
                        "ends with one line naming the culprit")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("methods", help="print the loss registry")
    s.add_argument("--json", action="store_true", help="machine-readable list of method facts")
    s.set_defaults(fn=cmd_methods)

    s = sub.add_parser("prepare-model", help="make the base model directory (embedded GGUF, hub id, or a local checkpoint)")
    s.add_argument("--source", default="embedded",
                   help="'embedded', 'hub:<org>/<name>[@revision]' (cluster), or a local checkpoint directory")
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_prepare_model)

    s = sub.add_parser("make-data", help="write the experiment's train/test JSONL (embedded, or a hub dataset)")
    s.add_argument("--source", default="embedded",
                   help="'embedded' or a configs/data/*.yaml file (hub dataset through its adapter)")
    s.add_argument("--local", default=None, help="adapter data: a local parquet/json/jsonl file in the hub schema "
                                                 "instead of the download (its one split is used for train and test)")
    s.add_argument("--out", required=True)
    s.add_argument("--n-train", type=int, default=256, help="embedded: records; adapter: subsample (0 = all)")
    s.add_argument("--n-test", type=int, default=64, help="embedded: records; adapter: subsample (0 = all)")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(fn=cmd_make_data)

    s = sub.add_parser("generate", help="sample a pool of negatives per prompt from a model")
    s.add_argument("--model", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--num", type=int, required=True, help="pool size per prompt (E x B)")
    s.add_argument("--strategy", default="chat_bad", help="direct | chat | chat_good | chat_bad (dft.txt B.5) | pair (the dataset's rejected answer)")
    s.add_argument("--temperature", type=float, default=0.7)
    s.add_argument("--top-p", type=float, default=1.0)
    s.add_argument("--top-k", type=int, default=50)
    s.add_argument("--max-new-tokens", type=int, default=320)
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--limit", type=int, default=None, help="first N prompts only")
    s.add_argument("--fallback-template", action="store_true")
    s.add_argument("--shard", type=int, default=0, help="this job's shard (records shard::num_shards)")
    s.add_argument("--num-shards", type=int, default=1)
    s.add_argument("--from-shards", nargs="+", default=None, metavar="PART",
                   help="gather: write --out from the outputs of shards 0..k-1 (no model is loaded)")
    s.add_argument("--backend", choices=["auto", "transformers", "vllm"], default="auto")
    s.add_argument("--device", default=None)
    s.add_argument("--dtype", default=None, help="auto (default): bf16 on CUDA, fp32 on the CPU; or bf16, fp32")
    s.set_defaults(fn=cmd_generate)

    s = sub.add_parser("score", help="store reference per-token log-probs with the data")
    s.add_argument("--model", required=True, help="the reference model of the stage")
    s.add_argument("--data", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--max-len", type=int, default=512)
    s.add_argument("--batch-size", type=int, default=16, help="sequences per forward at most")
    s.add_argument("--max-batch-tokens", type=int, default=None,
                   help="padded positions per forward at most (default: batch-size x max-len); batches are "
                        "sorted by length")
    s.add_argument("--shard", type=int, default=0, help="this job's shard of the batches (--out: its part)")
    s.add_argument("--num-shards", type=int, default=1)
    s.add_argument("--from-shards", nargs="+", default=None, metavar="PART",
                   help="gather: write --out from every shard's part (no model is loaded)")
    s.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="auto: bf16 autocast on CUDA (as training), fp32 elsewhere")
    s.add_argument("--device", default=None)
    s.add_argument("--limit", type=int, default=None)
    s.add_argument("--no-mismatched", action="store_true", help="skip KTO's mismatched pairs")
    s.add_argument("--fallback-template", action="store_true")
    s.add_argument("--max-prompt-len", type=int, default=None, help="default: max-len - 1 (as the trainer)")
    s.add_argument("--overlong-prompts", choices=["error", "skip"], default="error",
                   help="a prompt over the limit: stop naming it, or leave the record unscored (ref: null)")
    s.set_defaults(fn=cmd_score)

    s = sub.add_parser("train", help="train one run of a registered method")
    s.add_argument("--method", required=True)
    s.add_argument("--model", required=True)
    s.add_argument("--data", required=True, help="scored JSONL")
    s.add_argument("--out-dir", required=True)
    s.add_argument("--config", help="YAML whose 'train' section gives defaults")
    s.add_argument("--train-json", help="train keys as one JSON object (what workflow rules pass)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a train key")
    s.add_argument("--hp", action="append", metavar="NAME=VALUE", help="set a method hyperparameter")
    s.set_defaults(fn=cmd_train)

    from negfree.evaluate.commands import register as register_evaluation

    register_evaluation(sub)   # evaluate, alpaca-eval, textsim, eval-csv

    s = sub.add_parser("serve-judge", help="serve an open-weights judge (vLLM) for one command: "
                                          "negfree serve-judge --model M -- negfree judged-eval ... --judge-url {judge_url}")
    s.add_argument("--model", required=True, help="the judge's hub id or local directory")
    s.add_argument("--gpus", type=int, default=1, help="tensor-parallel GPUs of the server")
    s.add_argument("--startup-min", type=float, default=15.0, help="minutes to wait for the server to answer")
    s.add_argument("--server-cmd", default=None,
                   help="the server's command line, a template with {python} {model} {port} {gpus} (default: vLLM's)")
    s.add_argument("command_line", nargs=argparse.REMAINDER,
                   help="-- then the command to run while the judge answers; {judge_url} in it becomes the server's URL")
    s.set_defaults(fn=cmd_serve_judge)

    s = sub.add_parser("judged-table", help="the judged protocols' results of one experiment (CSV + markdown + HTML)")
    s.add_argument("--results", nargs="+", required=True, help="result JSONs of negfree judged-eval")
    s.add_argument("--runs", nargs="+", required=True, help="run names, same order")
    s.add_argument("--out-csv", required=True)
    s.add_argument("--out-md", required=True)
    s.add_argument("--paper-judge", nargs="*", default=None, metavar="PROTOCOL=MODEL",
                   help="the paper's judge per protocol: a result judged by another model is marked")
    s.add_argument("--scale", default=None, help="what ran, stated above the table")
    s.set_defaults(fn=cmd_judged_table)

    s = sub.add_parser("table", help="results table (CSV + markdown) from evaluation JSONs")
    s.add_argument("--evals", nargs="+", required=True)
    s.add_argument("--runs", nargs="*", default=None, help="run directories, same order (timing, metrics)")
    s.add_argument("--out-csv", required=True)
    s.add_argument("--out-md", required=True)
    s.add_argument("--scale", default=None, help="what ran, stated above the table (model, prompts, steps)")
    s.add_argument("--settings", default=None,
                   help="JSON list, one {key: value} per run: the setting columns (default: from the run ids)")
    s.set_defaults(fn=cmd_table)

    s = sub.add_parser("sweep-table", help="one sweep's grid points against the paper-protocol results (evals.csv)")
    s.add_argument("--evals", required=True, help="tidy CSV of `negfree eval-csv`")
    s.add_argument("--runs", nargs="+", required=True, help="run ids, one per grid point, in grid order")
    s.add_argument("--settings", required=True, help="JSON list, one {key: value} per grid point")
    s.add_argument("--scale", default=None)
    s.add_argument("--out-csv", required=True)
    s.add_argument("--out-md", required=True)
    s.set_defaults(fn=cmd_sweep_table)

    s = sub.add_parser("provenance", help="record what made the committed outputs (make demo calls it)")
    s.add_argument("--start-file", required=True, help="a file holding the start time (seconds since the epoch)")
    s.add_argument("--command", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_provenance)

    s = sub.add_parser("figure", help="analytic figures from the loss code (bnf-fig1, asft-fig1)")
    s.add_argument("name", choices=["bnf-fig1", "asft-fig1"])
    s.add_argument("--png", required=True)
    s.add_argument("--csv", required=True)
    s.set_defaults(fn=cmd_figure)

    s = sub.add_parser("plan", help="per-job tokens, GPU and host memory, GPU-hours of a DAG (negfree/jobs/plan.py)")
    s.add_argument("--configfile", default=None, help="default: configs/papers.yaml (as the Snakefile)")
    s.add_argument("--directory", default=None, help="the repository root (default: .)")
    s.add_argument("--gpu", choices=["a100-80gb", "h100-80gb"], default=None,
                   help="default: each experiment's launch.gpu_type")
    s.add_argument("--json", action="store_true")
    s.add_argument("--by-paper", action="store_true")
    s.add_argument("--seeds", default=None, metavar="PRESET.yaml",
                   help="plan the DAG with the seeds preset (configs/seeds.yaml: 3 seeds of the runs behind the "
                        "headline claims, trained and evaluated); without it the preset's extra cost per paper is "
                        "printed after the tables")
    s.set_defaults(fn=lambda a: __import__("negfree.jobs.plan", fromlist=["main"]).main(a))

    s = sub.add_parser("bench", help="benchmarks: 'negfree bench {train,generate,score,data} --help'",
                       add_help=False)
    s.add_argument("bench", nargs="?", choices=["train", "generate", "score", "data"])
    s.set_defaults(fn=cmd_bench, passthrough=True)

    # Subcommands whose module parses its own arguments: (name, help, module, its main function).
    for name, help_, module, fn in (
        ("training-figures", "dft Fig. 3/4, minorsft Fig. 1, asft Fig. 2 from run logs", "training",
         "main_training_figures"),
        ("claims", "the claims ledger (configs/claims.yaml) against the runs", "claims", "main_claims"),
        ("shifts", "bnf Fig. 3/4: log-likelihood and logit shifts of fine-tuned models vs the reference", "shifts",
         "main"),
        ("paper-table", "one paper item (e.g. dft/table2) with our values beside the paper's", "paper_table",
         "main_paper_table"),
        ("score-dist", "dft Fig. 1: s(y',x) per pool of negatives under a checkpoint", "score_dist", "main"),
        ("targets", "every targets.md item: its built files or a placeholder naming what is missing", "targets",
         "main"),
        ("sweep-figure", "one metric across a sweep table's grid points (line or bars)", "sweep_plots", "main"),
    ):
        s = sub.add_parser(name, help=help_, add_help=False)
        s.set_defaults(fn=lambda a, rest, module=module, fn=fn:
                       getattr(__import__(f"negfree.report.{module}", fromlist=["x"]), fn)(rest),
                       passthrough=True)

    s = sub.add_parser("toy", help="toy problems: 'negfree toy frozen-lake --help'", add_help=False)
    s.add_argument("toy", nargs="?", choices=["frozen-lake"])
    s.set_defaults(fn=cmd_toy, passthrough=True)
    _fill_help(sub)
    return p


# Help for the flags declared above without their own: by (command, flag), then by flag alone.
FLAG_HELP = {
    ("train", "--method"): "a registered method (negfree methods lists them)",
    ("train", "--model"): "the starting checkpoint directory (base model, or a pipeline's checkpoint)",
    ("train", "--out-dir"): "the run directory: final/, metrics.jsonl, checkpoints/ (resumed when present)",
    ("score", "--data"): "JSONL records with their negatives (negfree generate's output)",
    ("score", "--max-len"): "prompt + answer tokens at most, as the training run will encode them",
    ("generate", "--data"): "JSONL records whose prompts are sampled",
    ("generate", "--fallback-template"): "render prompts with the Zephyr-style template when the model has none",
    ("score", "--fallback-template"): "render prompts with the Zephyr-style template when the model has none",
    ("generate", "--backend"): "auto (vllm where a CUDA GPU and the vllm package are, else transformers), "
                               "transformers, or vllm",
    ("textsim", "--prompt-field"): "the column holding the prompt",
    ("textsim", "--reference-field"): "the column holding the reference answer",
    ("table", "--evals"): "evals.csv of the experiment (negfree eval-csv)",
    ("sweep-table", "--scale"): "one line on what ran at what scale, printed under the table",
    ("provenance", "--command"): "the command that made the outputs, as typed",
    ("figure", "--png"): "the figure to write (a .pdf beside it too)",
    ("figure", "--csv"): "the figure's data",
    ("plan", "--json"): "print the per-job list as JSON instead of the tables",
    ("plan", "--by-paper"): "with --json: an object of the jobs, per-paper totals and the grand total",
    ("make-data", "--seed"): "seed of the embedded generator or of the subsample",
    "--out": "the file (or directory) to write",
    "--out-csv": "the table as CSV",
    "--out-md": "the table as markdown",
    "--model": "a model directory (config.json, safetensors weights, tokenizer)",
    "--data": "a JSONL dataset",
    "--seed": "random seed",
    "--temperature": "sampling temperature (0: greedy)",
    "--top-p": "nucleus sampling: keep the smallest set of tokens with this much probability",
    "--top-k": "sample among the k most likely tokens (0: all)",
    "--max-new-tokens": "tokens generated per answer at most",
    "--batch-size": "prompts or sequences per forward",
    "--num-shards": "how many jobs share the records (with --shard)",
    "--device": "cuda, cpu, ... (default: the GPU when one is visible, else the CPU)",
    "--limit": "first N records only (a quick look)",
}


def _fill_help(sub) -> None:
    for name, parser in sub.choices.items():
        for action in parser._actions:
            if action.option_strings and not action.help and not isinstance(action, argparse._HelpAction):
                flag = action.option_strings[-1]
                action.help = FLAG_HELP.get((name, flag)) or FLAG_HELP.get(flag)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if not getattr(args, "passthrough", False) and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    group = {"bench": "bench", "toy": "toy"}.get(args.command)
    if group and getattr(args, group) is None:   # `negfree bench --help`: say what is in the group
        choices = next(a.choices for a in _subparser(parser, args.command)._actions if a.dest == group)
        text = f"usage: negfree {args.command} {{{','.join(choices)}}} [--help | options]"
        if {"-h", "--help"} & set(rest):
            print(_group_help(args.command, choices, text))
            return
        raise SystemExit(f"{text}\nnegfree {args.command}: name one of {', '.join(choices)}")
    run_reporting_errors(args.command, lambda: args.fn(args, rest) if getattr(args, "passthrough", False)
                         else args.fn(args), debug=args.debug)


GROUP_MODULES = {"bench": "negfree.bench.{}", "toy": "negfree.toy.{}"}


def _summary(module: str) -> str:
    """The first docstring line of a module, read from its source (no import: `--help` stays
    instant), without its "`negfree ...`: " prefix."""
    import ast
    import importlib.util

    spec = importlib.util.find_spec(module)
    with open(spec.origin, encoding="utf-8") as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
    line = doc.strip().splitlines()[0] if doc.strip() else ""
    line = line.split("`: ", 1)[1] if line.startswith("`negfree") and "`: " in line else line
    return line.rstrip(".")


def _group_help(group: str, choices, usage: str) -> str:
    """`negfree bench --help`: each member with one line, and how to get its own help."""
    width = max(len(c) for c in choices) + 2
    lines = [usage, "", f"{group} commands (each takes its own options: negfree {group} <name> --help):"]
    for c in choices:
        lines.append(f"  {c:<{width}}{_summary(GROUP_MODULES[group].format(c.replace('-', '_')))}")
    return "\n".join(lines)


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("negfree")
    except PackageNotFoundError:   # run from a source tree (make gpu-check)
        return "unknown (not installed)"


# ------------------------------------------------------------------------------- errors
if __name__ == "__main__":
    main()
