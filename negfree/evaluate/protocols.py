"""The papers' lm-eval protocols as named, checked configurations.

A protocol is one or more lm-eval calls. Each call runs one group YAML from
``negfree/evaluate/protocols/`` (where the per-task shot counts live: lm-eval
refuses per-task dicts in ``simple_evaluate``) with or without the chat
template; each task contributes one metric; the protocol says how the paper
aggregates them.

=================  ==========================================  =====================
protocol           calls (group, chat template)                aggregate
=================  ==========================================  =====================
openllm_dft        negfree_openllm_dft (no), _chat (IFEval)    mean of 7, in %
openllm_ift        negfree_openllm_ift (yes)                   mean of 5, in %
math_zeroshot      negfree_math_zeroshot (no)                  none (two columns)
bnf_reasoning      negfree_bnf_reasoning (yes)                 none (ranks: across runs)
=================  ==========================================  =====================

Usage::

    evaluate_protocol("runs/x/checkpoint", "openllm_dft", "runs/x/eval/openllm_dft.json")

One JSON per (model, protocol): per-task metric, stderr and n; the aggregate;
per call the full lm-eval config, task configs, versions, seeds, and the error
if that call failed (the other calls still run and are kept). Samples go to
``<out_json stem>.samples.jsonl`` beside it. A task left without a result fails the
evaluation (EvaluationFailed), with the record in ``<stem>.failed.json``; answered requests
stay in lm-eval's request cache (``<stem>.cache/``) until the result is written, so a rerun
of a killed or failed job only asks what is left. ``fetch_data`` fills the HF datasets cache
beforehand, where the hub is reachable (the workflow's rule fetch_eval_data).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import shutil
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from negfree.common.fingerprint import model_fingerprint
from negfree.common.io import atomic_write_text
from negfree.evaluate.local import _jsonable, _number, _sample_row

TASKS_DIR = Path(__file__).with_name("protocols")
DEFAULT_SEED = 1234
# [ours] The context lm-eval works at, capped at the model's own: at 32,768 (Mistral, Qwen2)
# batch_size "auto" probes generation at full length and finds batches of 4-8. 4096 is Llama-2's
# own context; a longer prompt loses its oldest tokens (lm-eval truncates from the left).
DEFAULT_MAX_LENGTH = 4096
OFFLINE = "offline"        # the workflow's name for the embedded twin (negfree/evaluate/local.py)


class EvaluationFailed(ValueError):
    """A task produced no result or its data could not be fetched: a ValueError, so the CLI
    says it in one line and exits non-zero."""


@dataclass(frozen=True)
class Call:
    """One ``simple_evaluate`` call: a group, the chat-template flag, and per task
    the metric key (lm-eval's ``metric,filter``) and the shot count it must have."""
    group: str
    chat_template: bool
    metrics: dict[str, str]
    num_fewshot: dict[str, int]
    fewshot_as_multiturn: bool = False


@dataclass(frozen=True)
class Protocol:
    name: str
    source: str
    calls: tuple[Call, ...]
    aggregate: str = "none"          # "mean": mean of the task metrics, x scale
    scale: float = 100.0             # the papers report percentages
    notes: str = ""
    include_path: tuple[str, ...] = field(default=())   # extra task folders
    include_defaults: bool = True                        # lm-eval's own tasks too

    def __post_init__(self):
        seen = set()
        for task in (t for c in self.calls for t in c.metrics):
            if task in seen:
                raise ValueError(f"protocol {self.name!r}: task {task!r} is scored by more than one call")
            seen.add(task)

    @property
    def tasks(self) -> list[str]:
        return [t for c in self.calls for t in c.metrics]


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol(
        name="openllm_dft",
        source="dft.txt Table 7 (A.5); results in Tables 2, 3, 4, 8-12",
        calls=(
            Call("negfree_openllm_dft", chat_template=False,
                 metrics={"arc_challenge": "acc_norm,none", "hellaswag": "acc_norm,none",
                          "truthfulqa_mc2": "acc,none", "mmlu": "acc,none",
                          "winogrande": "acc,none", "gsm8k": "exact_match,strict-match"},
                 num_fewshot={"arc_challenge": 25, "hellaswag": 10, "truthfulqa_mc2": 0,
                              "mmlu": 5, "winogrande": 5, "gsm8k": 5}),
            Call("negfree_openllm_dft_chat", chat_template=True,
                 metrics={"ifeval": "prompt_level_strict_acc,none"},
                 num_fewshot={"ifeval": 0}),
        ),
        aggregate="mean",
        notes="AVG. is the plain mean of the 7 benchmark scores in % (dft.txt Table 8: "
              "(61.42+51.08+83.90+78.14+48.22+64.51+52.50)/7 = 62.82); MMLU counts once, "
              "as lm-eval's size-weighted mmlu group accuracy."),
    Protocol(
        name="openllm_ift",
        source="ift.txt 5.1 Benchmarks, Table 3",
        calls=(
            Call("negfree_openllm_ift", chat_template=True,
                 metrics={"arc_challenge": "acc_norm,none", "mmlu": "acc,none",
                          "truthfulqa_mc2": "acc,none", "winogrande": "acc,none",
                          "gsm8k": "exact_match,strict-match"},
                 num_fewshot={"arc_challenge": 25, "mmlu": 5, "truthfulqa_mc2": 0,
                              "winogrande": 5, "gsm8k": 5}),
        ),
        aggregate="mean",
        notes="Chat template on every task (ift.txt). Metrics follow the Open LLM "
              "Leaderboard v1 the paper names; few-shot examples are rendered inside one "
              "user turn (fewshot_as_multiturn off: the paper does not say)."),
    Protocol(
        name="math_zeroshot",
        source="dft.txt Table 1 (setting 1, MetaMathQA)",
        calls=(
            Call("negfree_math_zeroshot", chat_template=False,
                 metrics={"negfree_gsm8k_metamath": "exact_match,none",
                          "negfree_math_metamath": "exact_match,none"},
                 num_fewshot={"negfree_gsm8k_metamath": 0, "negfree_math_metamath": 0}),
        ),
        notes="MetaMath Alpaca prompt, greedy, 512 new tokens, answer after 'The answer is: '. "
              "MATH is the 5000-problem test set, size-weighted over the 7 subjects."),
    Protocol(
        name="bnf_reasoning",
        source="bnf.txt Table 4, reasoning columns (GSM8K, MATH, MMLU)",
        calls=(
            Call("negfree_bnf_reasoning", chat_template=True,
                 metrics={"gsm8k_cot_zeroshot": "exact_match,flexible-extract",
                          "negfree_math_l5_zeroshot": "exact_match,none",
                          "mmlu_redux_generative": "exact_match,default"},
                 num_fewshot={"gsm8k_cot_zeroshot": 0, "negfree_math_l5_zeroshot": 0,
                              "mmlu_redux_generative": 0}),
        ),
        notes="The paper used ZeroEval; these are lm-eval's zero-shot counterparts. CRUX is "
              "not run (lm-eval's cruxeval samples at T=0.2 and executes model code). The "
              "paper's 'Average Rank' is across methods: negfree.evaluate.protocols.average_rank."),
)}


# ------------------------------------------------------------------------ lookup
def get_protocol(protocol: str | Protocol) -> Protocol:
    if isinstance(protocol, Protocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(sorted(PROTOCOLS))}")
    return PROTOCOLS[protocol]


def task_manager(protocol: Protocol | None = None):
    """lm-eval's TaskManager over its own tasks plus ours (about 15 s to index)."""
    from lm_eval.tasks import TaskManager

    paths = [str(TASKS_DIR), *(protocol.include_path if protocol else ())]
    return TaskManager(include_path=paths,
                       include_defaults=protocol.include_defaults if protocol else True)


def check_known(protocol: Protocol, manager) -> None:
    """Every group and task the protocol names must be registered: one clear error."""
    known = set(manager.all_tasks)
    missing = [c.group for c in protocol.calls if c.group not in known]
    missing += [t for t in protocol.tasks if t not in known]
    if missing:
        raise ValueError(f"protocol {protocol.name!r}: lm-eval does not know "
                         f"{', '.join(repr(m) for m in missing)} (searched its own tasks and "
                         f"{[str(TASKS_DIR), *protocol.include_path]})")


# -------------------------------------------------------------- offline resolution
@contextlib.contextmanager
def _configs_only():
    """Build tasks as configs only: lm-eval's factory would download every dataset."""
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.config.task import TaskConfig
    from lm_eval.tasks import _factory

    class ConfigOnlyTask(ConfigurableTask):
        def __init__(self, config=None, **_):
            self._config = TaskConfig(**config)

    real = _factory.ConfigurableTask
    _factory.ConfigurableTask = ConfigOnlyTask
    try:
        yield
    finally:
        _factory.ConfigurableTask = real


def resolve(protocol: str | Protocol, manager=None) -> dict[str, dict]:
    """What each call would run, without data: ``{group: {"tasks": {leaf: {...}}, "groups": {..}}}``.

    Per leaf task: num_fewshot, metric names, filter names, dataset path/name,
    output type. Per sub-group (e.g. mmlu): its leaf tasks. Used by the tests and
    by ``negfree evaluate --protocol NAME --dry-run``.
    """
    protocol = get_protocol(protocol)
    manager = manager or task_manager(protocol)
    check_known(protocol, manager)
    out = {}
    with _configs_only():
        for call in protocol.calls:
            loaded = manager.load([call.group])
            tasks = {}
            for name, task in loaded["tasks"].items():
                cfg = task.config
                tasks[name] = {
                    "num_fewshot": cfg.num_fewshot,
                    "metrics": [m["metric"] if isinstance(m["metric"], str) else m["metric"].__name__
                                for m in (cfg.metric_list or [])],
                    "filters": [f["name"] for f in (cfg.filter_list or [])] or ["none"],
                    "dataset": [cfg.dataset_path, cfg.dataset_name],
                    "output_type": cfg.output_type,
                    "doc_to_text": cfg.doc_to_text if isinstance(cfg.doc_to_text, str) else None,
                }
            groups = {g: sorted(t.task_name for t in obj.get_all_tasks())
                      for g, obj in loaded["groups"].items()}
            out[call.group] = {"tasks": tasks, "groups": groups}
    return out


# ---------------------------------------------------------------------- checks
def _missing_packages(call: Call, leaf_tasks: list[str] | None = None) -> str | None:
    names = set(call.metrics) | set(leaf_tasks or ())
    if "ifeval" in names:
        missing = []
        for module in ("langdetect", "immutabledict", "nltk"):
            try:
                __import__(module)
            except ImportError:
                missing.append(module)
        if missing:
            return (f"IFEval needs the Python packages {', '.join(missing)}: "
                    f"pip install 'lm-eval[ifeval]==0.4.13'")
    return None


def preflight(call: Call, leaf_tasks: list[str] | None = None) -> str | None:
    """Why this call cannot run here, or None. IFEval needs extra packages and NLTK data.
    A call it stops is recorded as skipped, never as a failure."""
    problem = _missing_packages(call, leaf_tasks)
    if problem:
        return problem
    if "ifeval" in set(call.metrics) | set(leaf_tasks or ()):
        import nltk

        try:
            nltk.data.find("tokenizers/punkt_tab")
        except LookupError:
            return ("IFEval needs NLTK's punkt_tab data, which is not installed (and lm-eval "
                    "would try to download it): run `python -m nltk.downloader punkt_tab` "
                    "where the network is reachable, or copy it under a folder listed in NLTK_DATA")
    return None


# ------------------------------------------------------------------ data fetch
def fetch_data(protocol: str | Protocol, marker: str | Path) -> dict:
    """Load every task of ``protocol`` once, so its datasets land in the HF datasets cache.

    Why: GPU jobs should never download (compute nodes often cannot reach the hub, and a
    download there costs GPU time). The workflow runs this on the submit host (a local rule);
    the evaluation jobs then read the same cache with HF_DATASETS_OFFLINE=1. Building the
    tasks with lm-eval itself makes exactly the ``load_dataset`` calls the evaluation makes
    (and IFEval's NLTK data download). ``offline`` (the embedded twin) has nothing to fetch.
    A call that preflight would skip for missing packages is skipped here too. Writes and
    returns the marker record.
    """
    from negfree.common.io import check_writable

    marker = Path(marker)
    check_writable(marker)
    calls = []
    if protocol != OFFLINE:
        protocol = get_protocol(protocol)
        manager = task_manager(protocol)
        check_known(protocol, manager)
        for call in protocol.calls:
            problem = _missing_packages(call)
            if problem:
                calls.append({"group": call.group, "status": "skipped", "error": problem})
                continue
            try:
                loaded = manager.load([call.group])
            except Exception as e:
                raise EvaluationFailed(f"protocol {protocol.name!r}: cannot fetch the data of "
                                       f"{call.group!r}: {_one_line(e)}") from e
            calls.append({"group": call.group, "status": "ok", "tasks": {
                name: {"dataset": [task.config.dataset_path, task.config.dataset_name],
                       "rows": {split: d.num_rows for split, d in (getattr(task, "dataset", None) or {}).items()}}
                for name, task in loaded["tasks"].items()}})
        protocol = protocol.name
    from datasets import config as datasets_config

    record = {"protocol": protocol, "calls": calls,
              "hf_datasets_cache": str(datasets_config.HF_DATASETS_CACHE), "versions": _versions()}
    atomic_write_text(marker, json.dumps(_jsonable(record), indent=2) + "\n")
    return record


def _one_line(err: BaseException, limit: int = 400) -> str:
    text = " ".join(f"{type(err).__name__}: {err}".split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ------------------------------------------------------------------ aggregation
def summarize(protocol: Protocol, results_by_call: dict[str, dict | None]) -> dict:
    """Per-task metric/stderr/n and the aggregate, from lm-eval result dicts.

    ``results_by_call`` maps each call's group to what ``simple_evaluate``
    returned (only ``results`` and ``n-samples`` are read), or None if the call
    failed. Values stay in lm-eval's 0-1 scale; the aggregate is in the paper's
    scale (``protocol.scale``).
    """
    tasks = {}
    for call in protocol.calls:
        res = results_by_call.get(call.group) or {}
        per_task, n_samples = res.get("results", {}), res.get("n-samples", {})
        for task, key in call.metrics.items():
            metric, _, filt = key.partition(",")
            row = per_task.get(task, {})
            n = n_samples.get(task, {}).get("effective") if task in n_samples else None
            tasks[task] = {
                "metric": key,
                "value": _number(row.get(key)),
                "stderr": _number(row.get(f"{metric}_stderr,{filt}")),
                "n": n,
                "num_fewshot": call.num_fewshot.get(task),
                "chat_template": call.chat_template,
                "call": call.group,
            }
    agg = {"rule": protocol.aggregate, "value": None, "scale": protocol.scale,
           "missing": [t for t, r in tasks.items() if r["value"] is None]}
    if protocol.aggregate == "mean" and not agg["missing"] and tasks:
        agg["value"] = protocol.scale * sum(r["value"] for r in tasks.values()) / len(tasks)
    elif protocol.aggregate not in ("mean", "none"):
        raise ValueError(f"protocol {protocol.name!r}: unknown aggregate rule {protocol.aggregate!r}")
    return {"tasks": tasks, "aggregate": agg}


def average_rank(scores: dict[str, dict[str, float]], lower_is_better: tuple[str, ...] = ()) -> dict:
    """bnf.txt Table 4's "Average Rank": per metric, rank the runs (1 = best, ties
    share the better rank, as the paper's "1149 (3)" twice then "(5)"); average per run.

    ``scores`` is ``{run: {metric: value}}``; every run must have every metric.
    Returns ``{run: {"ranks": {metric: rank}, "average_rank": float}}``.
    """
    runs = list(scores)
    metrics = sorted({m for r in runs for m in scores[r]})
    out = {r: {"ranks": {}} for r in runs}
    for m in metrics:
        missing = [r for r in runs if m not in scores[r] or scores[r][m] is None]
        if missing:
            raise ValueError(f"average_rank: metric {m!r} missing for {missing}")
        sign = 1 if m in lower_is_better else -1
        for r in runs:
            better = sum(1 for o in runs if sign * scores[o][m] < sign * scores[r][m])
            out[r]["ranks"][m] = 1 + better
    for r in runs:
        out[r]["average_rank"] = sum(out[r]["ranks"].values()) / len(metrics)
    return out


# ------------------------------------------------------------------- evaluation
def _versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("lm_eval", "torch", "transformers", "datasets", "negfree"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _cache_prefix(cache, out_json: Path, model_dir: str, max_length: int, device: str) -> str | None:
    """lm-eval's request cache of this job (``use_cache``: it adds ``_rank0.db``), or None.

    Cached answers are only valid for one checkpoint, context length and device kind: those
    name a key folder, and a key folder of an earlier checkpoint at this path is dropped, so a
    retrained model never reads its predecessor's answers.
    """
    if cache is None or cache is False:
        return None
    root = out_json.with_suffix(".cache") if cache is True else Path(cache)
    ident = [model_fingerprint(model_dir), max_length, str(device).split(":")[0], version("lm_eval")]
    key = hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:16]
    for stale in _cache_folders(root):
        if stale.name != key:
            shutil.rmtree(stale, ignore_errors=True)
    return str(root / key / "requests")


def _cache_folders(root: Path) -> list[Path]:
    """Only folders this module made (a key holding request dbs): nothing else is ever removed."""
    return [d for d in root.iterdir() if d.is_dir() and any(d.glob("requests_rank*.db"))] if root.is_dir() else []


def _detach_cache(lm) -> None:
    """Close the sqlite db lm-eval hooked onto the model (an open file on NFS blocks removal)."""
    from lm_eval.api.model import CacheHook

    db = getattr(lm.cache_hook, "dbdict", None)
    lm.set_cache_hook(CacheHook(None))
    if db is not None:
        db.close()


def _remove_cache(prefix: str | None) -> None:
    # The cache only bridges the attempts of one job: once the result is written no rerun needs
    # it (a rerun for a changed checkpoint has another key), and it would only hold shared disk.
    if prefix is None:
        return
    folder = Path(prefix).parent
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        folder.parent.rmdir()          # the cache root, when nothing else is in it


def _no_results(calls: list[dict], tasks: dict[str, dict]) -> list[str]:
    """'task (why)' for every task without a value, except those of a call preflight skipped."""
    by_group = {c["group"]: c for c in calls}
    out = []
    for task, row in tasks.items():
        call = by_group[row["call"]]
        if row["value"] is None and call["status"] != "skipped":
            why = " ".join((call["error"] or f"lm-eval returned no {row['metric']!r}").split())
            out.append(f"{task} ({why[:300]})")
    return out


def evaluate_protocol(model_dir: str | Path, protocol: str | Protocol, out_json: str | Path,
                      limit: int | float | None = None, batch_size: int | str = 8,
                      device: str = "cpu", seed: int = DEFAULT_SEED,
                      max_length: int | None = DEFAULT_MAX_LENGTH, cache: str | Path | bool = True) -> dict:
    """Run every call of ``protocol`` on one saved checkpoint; write and return the result.

    A call that fails (missing data, ...) is recorded with its error and the others still run;
    then, as some task has no result, the record goes to ``<stem>.failed.json`` instead (a
    failed Snakemake job loses its output) and EvaluationFailed names the tasks. A call that
    preflight skips (IFEval resources missing) is recorded as skipped and fails nothing.
    ``max_length`` caps the context (and so the length ``batch_size="auto"`` probes at), never
    above the model's own; None: the model's own. ``cache``: True keeps answered requests in
    ``<stem>.cache/`` beside the output, a path puts them there (one folder per job), False
    keeps none. Raises ValueError at once, before loading the model, for an unknown protocol or
    task name.
    """
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.models.utils import resolve_max_length
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from negfree.common.io import check_writable
    from negfree.common.models import check_model_dir, inference_dtype, load_named

    protocol = get_protocol(protocol)
    out_json = Path(out_json)
    if max_length is not None and int(max_length) < 1:
        raise ValueError(f"max_length must be a positive number of tokens, got {max_length}")
    manager = task_manager(protocol)
    check_known(protocol, manager)
    check_model_dir(model_dir)
    check_writable(out_json)

    model_dir = str(model_dir)
    dtype = inference_dtype(device) or torch.float32        # None: fp32
    model = load_named(model_dir, "model", lambda: AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype))
    model = model.to(device).eval()
    tokenizer = load_named(model_dir, "tokenizer", lambda: AutoTokenizer.from_pretrained(model_dir))
    own_length = resolve_max_length(model.config, tokenizer)
    used_length = own_length if max_length is None else min(int(max_length), own_length)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device,
              max_length=used_length)
    cache_prefix = _cache_prefix(cache, out_json, model_dir, used_length, device)

    results_by_call, calls, rows = {}, [], []
    for call in protocol.calls:
        entry = {"group": call.group, "apply_chat_template": call.chat_template,
                 "fewshot_as_multiturn": call.fewshot_as_multiturn and call.chat_template,
                 "status": "ok", "error": None}
        problem = preflight(call)
        if problem:
            entry.update(status="skipped", error=problem)
            results_by_call[call.group] = None
            calls.append(entry)
            continue
        try:
            res = simple_evaluate(
                model=lm, tasks=[call.group], task_manager=manager, limit=limit,
                batch_size=batch_size, device=device, log_samples=True, use_cache=cache_prefix,
                apply_chat_template=call.chat_template,
                fewshot_as_multiturn=call.fewshot_as_multiturn and call.chat_template,
                random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                fewshot_random_seed=seed)
        except Exception as e:   # keep the other calls' results; say what failed
            entry.update(status="failed", error=f"{type(e).__name__}: {e}")
            results_by_call[call.group] = None
            calls.append(entry)
            continue
        finally:
            _detach_cache(lm)
        results_by_call[call.group] = res
        entry.update(
            all_metrics={t: {k: _number(v) for k, v in m.items() if "," in k}
                         for t, m in res["results"].items()},
            n_samples=_jsonable(res.get("n-samples", {})),
            config=_jsonable(res.get("config", {})),
            versions=_jsonable(res.get("versions", {})),
            n_shot=_jsonable(res.get("n-shot", {})),
            task_configs=_jsonable(res.get("configs", {})),
        )
        calls.append(entry)
        for task, samples in res.get("samples", {}).items():
            rows += [{"call": call.group, **_sample_row(task, s)} for s in samples]

    summary = summarize(protocol, results_by_call)
    record = {
        "model": model_dir,
        "protocol": protocol.name,
        "source": protocol.source,
        "notes": protocol.notes,
        "tasks": summary["tasks"],
        "aggregate": summary["aggregate"],
        "calls": calls,
        "limit": limit,
        "seed": seed,
        "device": device,
        "batch_size": batch_size,
        "max_length": {"used": used_length, "model": own_length},
        "versions": _versions(),
        "protocol_definition": _jsonable(asdict(protocol)),
        "samples": out_json.with_suffix(".samples.jsonl").name,
    }
    atomic_write_text(out_json.with_suffix(".samples.jsonl"),
                      "".join(json.dumps(_jsonable(r), allow_nan=False) + "\n" for r in rows))
    failed_json = out_json.with_suffix(".failed.json")
    missing = _no_results(calls, summary["tasks"])
    if missing:     # the cache stays: the rerun asks only what is left
        atomic_write_text(failed_json, json.dumps(record, indent=2, allow_nan=False) + "\n")
        raise EvaluationFailed(f"protocol {protocol.name!r}: no results for {'; '.join(missing)} "
                               f"(record: {failed_json})")
    atomic_write_text(out_json, json.dumps(record, indent=2, allow_nan=False) + "\n")
    failed_json.unlink(missing_ok=True)
    _remove_cache(cache_prefix)
    return record
