"""The offline lm-eval twin: real lm-evaluation-harness runs on local tasks.

Why: the paper protocols (Open-LLM suites, GSM8K, ...) need hub datasets that
the development machines cannot reach. These two project-made tasks, built
from the embedded test split, run the same harness code path (task YAMLs,
TaskManager, HFLM, filters, metrics, samples) fully offline, so the evaluation
stage is exercised end to end everywhere.

- ``negfree_mc``: multiple choice by log-likelihood over the 4 stored choices;
  metrics ``acc,none`` and ``acc_norm,none``.
- ``negfree_gen``: greedy generation until a newline, then a strict regex
  extraction of the final answer: the number after "The answer is" for
  arithmetic, the leading capitalised word(s) for facts (the embedded
  positives start with the answer). Metric ``exact_match,strict-match``.
- ``negfree_offline``: a group of both, 0-shot (shot counts live in the group
  YAML, as for the hub protocols).

Usage::

    evaluate_local("runs/x/checkpoint", "data/embedded/test.jsonl",
                   "runs/x/eval/negfree_offline.json", limit=16)
"""
from __future__ import annotations

import json
import math
from importlib.metadata import version
from pathlib import Path

import yaml

from negfree.common.io import atomic_write_text, check_writable, removed_on_error
from negfree.common.models import check_model_dir, inference_dtype, load_named
from negfree.data.schema import load_jsonl

GROUP = "negfree_offline"
TASKS = ("negfree_mc", "negfree_gen")
DATA_FILE = "negfree_offline_test.jsonl"
PROMPT = "Question: {{question}}\nAnswer:"

# Arithmetic: the number after "The answer is". Facts: the leading capitalised
# word(s), but only when the response never says "The answer is" (otherwise the
# first word of an arithmetic working, e.g. "Tom", would be taken).
ANSWER_REGEX = (r"The answer is (-?[0-9]+)"
                r"|\A(?!.*The answer is)\s*([A-Z][A-Za-z]*(?: [A-Z][A-Za-z]*)*)")


def _task_configs(data_path: Path) -> dict[str, dict]:
    """The YAML content of every task and of the group, by file name."""
    data = {"dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(data_path)}},
            "test_split": "test", "doc_to_text": PROMPT,
            "metadata": {"version": 1.0}}
    mc = {"task": "negfree_mc", **data, "output_type": "multiple_choice",
          "doc_to_choice": "choices", "doc_to_target": "label",
          "metric_list": [
              {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
              {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}]}
    gen = {"task": "negfree_gen", **data, "output_type": "generate_until",
           "doc_to_target": "answer",
           "generation_kwargs": {"until": ["\n"], "do_sample": False,
                                 "temperature": 0.0, "max_gen_toks": 24},
           "filter_list": [{"name": "strict-match", "filter": [
               {"function": "regex", "regex_pattern": ANSWER_REGEX, "group_select": 0},
               {"function": "take_first"}]}],
           "metric_list": [{"metric": "exact_match", "aggregation": "mean",
                            "higher_is_better": True, "ignore_case": False,
                            "ignore_punctuation": False}]}
    group = {"group": GROUP,
             "task": [{"task": name, "num_fewshot": 0} for name in TASKS],
             "metadata": {"version": 1.0}}
    return {"negfree_mc.yaml": mc, "negfree_gen.yaml": gen, f"{GROUP}.yaml": group}


def _doc(rec: dict, path: Path) -> dict:
    """Flatten one embedded record into the columns the task YAMLs read."""
    missing = [c for c in ("answer", "choices", "label") if c not in rec]
    if missing:
        raise ValueError(f"{path} (id={rec['id']!r}): missing column {missing[0]!r} "
                         f"needed by the local lm-eval tasks")
    choices, label = rec["choices"], rec["label"]
    if not (isinstance(label, int) and 0 <= label < len(choices)
            and choices[label] == rec["answer"]):
        raise ValueError(f"{path} (id={rec['id']!r}): column 'label' does not point "
                         f"at the answer {rec['answer']!r}")
    users = [m["content"] for m in rec["prompt"] if m["role"] == "user"]
    if len(users) != 1:
        raise ValueError(f"{path} (id={rec['id']!r}): column 'prompt' must hold exactly "
                         f"one user turn for the local tasks, found {len(users)}")
    return {"id": rec["id"], "kind": rec.get("kind", ""), "question": users[0],
            "answer": rec["answer"], "choices": rec["choices"], "label": rec["label"]}


def write_tasks(test_jsonl: str | Path, tasks_dir: str | Path) -> list[str]:
    """Write the task YAMLs and their data file into ``tasks_dir``.

    Returns the registered names (the two tasks, then the group). The data
    path inside the YAMLs is absolute, so the folder can be included from
    anywhere.
    """
    test_jsonl, tasks_dir = Path(test_jsonl), Path(tasks_dir).resolve()
    docs = [_doc(rec, test_jsonl) for rec in load_jsonl(test_jsonl)]   # checked before anything is written
    tasks_dir.mkdir(parents=True, exist_ok=True)
    data_path = tasks_dir / DATA_FILE
    atomic_write_text(data_path, "".join(json.dumps(d) + "\n" for d in docs))
    for name, cfg in _task_configs(data_path).items():
        atomic_write_text(tasks_dir / name, yaml.safe_dump(cfg, sort_keys=False))
    return [*TASKS, GROUP]


def _task_manager(tasks_dir: Path, expected: list[str]):
    """A TaskManager over our folder only; refuse if any of our YAMLs was skipped.

    lm-eval drops a YAML it cannot parse with only a debug log, so a broken
    task would otherwise surface much later as "unknown task".
    """
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(tasks_dir), include_defaults=False)
    lost = [name for name in expected if name not in manager.all_tasks]
    if lost:
        raise RuntimeError(f"lm-eval did not register {lost} from {tasks_dir}; "
                           f"check the YAML files there")
    return manager


def evaluate_local(model_dir: str | Path, test_jsonl: str | Path, out_json: str | Path,
                   tasks=TASKS, limit: int | None = None, batch_size: int = 8,
                   device: str = "cpu", apply_chat_template: bool = False) -> dict:
    """Evaluate a saved checkpoint on the local tasks and write one result JSON.

    The task files are written next to ``out_json`` (``<stem>.tasks/``) so the
    result folder shows exactly what was run. Also writes
    ``<out_json stem>.samples.jsonl`` with one row per scored document.
    Returns the result dict that was written.
    """
    out_json = Path(out_json)
    check_model_dir(model_dir)
    check_writable(out_json)
    tasks_dir = out_json.with_name(out_json.stem + ".tasks")
    with removed_on_error(tasks_dir):   # a failed evaluation leaves nothing that was not there before
        return _evaluate_local(model_dir, test_jsonl, out_json, tasks_dir, tasks, limit, batch_size, device,
                               apply_chat_template)


def _evaluate_local(model_dir, test_jsonl, out_json: Path, tasks_dir: Path, tasks, limit, batch_size, device,
                    apply_chat_template) -> dict:
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tasks = [tasks] if isinstance(tasks, str) else list(tasks)
    manager = _task_manager(tasks_dir, write_tasks(test_jsonl, tasks_dir))
    unknown = [t for t in tasks if t not in manager.all_tasks]
    if unknown:
        raise ValueError(f"unknown local lm-eval task {unknown[0]!r}; "
                         f"known: {sorted(manager.all_tasks)}")

    model_dir = str(model_dir)
    # The pretrained-object path of HFLM ignores `device`: place the model here.
    dtype = inference_dtype(device) or torch.float32        # None: fp32
    model = load_named(model_dir, "model", lambda: AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype))
    model = model.to(device).eval()
    tokenizer = load_named(model_dir, "tokenizer", lambda: AutoTokenizer.from_pretrained(model_dir))
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=device)
    results = simple_evaluate(model=lm, tasks=tasks, task_manager=manager, limit=limit,
                              batch_size=batch_size, device=device, log_samples=True,
                              apply_chat_template=apply_chat_template)

    record = {
        "model": model_dir,
        "protocol": GROUP,
        "tasks": _metrics(results["results"]),
        "n_samples": _jsonable(results.get("n-samples", {})),
        "lm_eval_version": version("lm_eval"),
        "limit": limit,
        "apply_chat_template": apply_chat_template,
        "config": _jsonable(results["config"]),
        "versions": _jsonable(results.get("versions", {})),
        "task_configs": _jsonable(results.get("configs", {})),
    }
    samples_path = out_json.with_suffix(".samples.jsonl")
    rows = [_sample_row(task, s) for task, ss in results["samples"].items() for s in ss]
    atomic_write_text(samples_path, "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows))
    atomic_write_text(out_json, json.dumps(record, indent=2, allow_nan=False) + "\n")
    return record


def _metrics(per_task: dict) -> dict:
    """``{task: {"acc,none": .., "acc_stderr,none": ..}}``: lm-eval's own keys.

    Only "metric,filter" keys are kept (lm-eval 0.4.13 also puts ``alias``,
    ``name`` and ``sample_len`` there); a group without aggregate metrics is
    left out rather than written as an empty entry.
    """
    out = {}
    for name, metrics in per_task.items():
        kept = {k: _number(v) for k, v in metrics.items() if "," in k}
        if kept:
            out[name] = kept
    return out


def _sample_row(task: str, s: dict) -> dict:
    """One scored document: what was asked, what came back, what was kept, the score."""
    row = {"task": task, "doc_id": s["doc_id"], "id": s["doc"].get("id"),
           "filter": s["filter"], "target": _jsonable(s["target"]),
           "prompt": s["arguments"][0][0] if s["arguments"] else None}
    if s["arguments"] and isinstance(s["resps"][0][0], str):      # generation
        row["response"] = s["resps"][0][0]
        row["filtered_response"] = s["filtered_resps"][0]
    else:                                                         # log-likelihoods
        row["choices"] = s["doc"].get("choices")
        row["response"] = [_number(r[0][0]) for r in s["resps"]]
        row["filtered_response"] = [_number(r[0]) for r in s["filtered_resps"]]
    row["metrics"] = {m: _number(s[m]) for m in s.get("metrics", []) if m in s}
    return row


def _number(value):
    """A plain float, or None for lm-eval's 'N/A' and for non-finite values."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _jsonable(obj):
    """Recursively turn lm-eval's config/result objects into strict JSON values."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if hasattr(obj, "tolist"):                      # numpy / torch scalars and arrays
        obj = obj.tolist()
        return _number(obj) if isinstance(obj, float) else _jsonable(obj)
    if isinstance(obj, float):
        return _number(obj)
    return str(obj)
