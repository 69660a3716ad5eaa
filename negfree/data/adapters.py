"""Hub dataset adapters: one small function per dataset that turns a hub row into our record.

A normalised record (what every later stage reads)::

    id        "<adapter>-<split>-<row>"; row is the index in the full hub split, so an id
              never depends on the subsample drawn
    prompt    list of chat messages [{"role", "content"}], ending with a user turn
    positive  the answer to imitate (a preference set's chosen answer)
    negatives []; generation fills it (dft.txt Alg. 1), or use_pair_as_negatives() moves
              the pair's rejected answer here for pairwise training on preference data
    pair      {"chosen", "rejected"} for preference sets, else absent
    answer    the final answer where the dataset states one (MetaMathQA), else absent
    meta      {"source": hub id, "split", "row", ...dataset-specific fields}

Adapters (name -> hub id, splits):

- ``ultrafeedback``: HuggingFaceH4/ultrafeedback_binarized, train_prefs/test_prefs. The
  winner is the positive, the loser stays in ``pair`` (dft.txt Sec. 7 setting 2 discards it
  for SFT/DFT; DPO-style baselines use it).
- ``metamathqa``: meta-math/MetaMathQA, train. query/response rendered with the Alpaca
  no-input prompt of Yu et al. (2024), which dft.txt A.2 setting 1 follows. The rendered
  prompt is the one user message, so generate with strategy ``direct`` to feed it verbatim.
- ``ultrachat``: HuggingFaceH4/ultrachat_200k, train_sft/test_sft. First user turn and the
  first assistant reply after it.
- ``hh_rlhf``: Anthropic/hh-rlhf, train/test. ``chosen``/``rejected`` transcripts are split at
  the last "\\n\\nAssistant:"; the part before it is parsed into Human/Assistant turns.
- ``simpo_*``: the SimPO on-policy preference sets BNF trains on (bnf.txt Sec. 4),
  chosen/rejected message lists, train/test.
- ``alpaca_en``: llamafactory/alpaca_en (Stanford Alpaca's 52K, as LLaMA-Factory ships it under
  the name asft.txt Sec. 5.1 uses), one split ``train``. instruction and, where set, input
  joined by a newline are the one user turn (LLaMA-Factory's alpaca converter); output is the
  positive (the reference answer of asft.txt Table 3's BLEU/ROUGE).

``load_adapter(name, split, n, seed, path, revision)`` loads through ``datasets.load_dataset``
(the hub id at ``revision``, a data config's pinned commit, or a local parquet/json file at
``path``), keeps the first ``n`` rows of a permutation seeded by ``seed`` (kept in hub order,
so n=100 is a subset of n=1000 at the same seed), and converts only those rows. Any problem raises one ValueError naming the dataset, the row and
the column.

Pairing-ratio masking (bnf.txt Sec. 5.2 Table 6) is :func:`apply_pairing_ratio`; its
docstring defines how a dropped side is written down.
"""
from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path

# ---------------------------------------------------------------- prompts
# Training prompt of MetaMath (Yu et al. 2024, train_math.py): the Alpaca prompt without
# input. Their inference prompt appends " Let's think step by step." after "### Response:".
ALPACA_PROMPT = ("Below is an instruction that describes a task. "
                 "Write a response that appropriately completes the request.\n\n"
                 "### Instruction:\n{query}\n\n### Response:")
HH_ASSISTANT = "\n\nAssistant:"
HH_TURN = re.compile(r"\n\n(Human|Assistant):")


def _where(ctx: dict, row: int) -> str:
    return f"{ctx['dataset']} split {ctx['split']!r} row {row}"


def _text(value, ctx: dict, row: int, column: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{_where(ctx, row)}: column {column!r} is empty or not a string")
    return value.strip()


def _messages(value, ctx: dict, row: int, column: str) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{_where(ctx, row)}: column {column!r} must be a non-empty list of messages")
    out = []
    for k, m in enumerate(value):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise ValueError(f"{_where(ctx, row)}: column {column!r} message {k} needs a role "
                             f"system/user/assistant")
        out.append({"role": m["role"], "content": _text(m.get("content"), ctx, row, f"{column}[{k}].content")})
    return out


def _split_last_answer(msgs: list[dict], ctx: dict, row: int, column: str) -> tuple[list[dict], str]:
    """(prompt messages, answer) of a conversation whose last turn is the assistant's answer."""
    if msgs[-1]["role"] != "assistant" or len(msgs) < 2 or msgs[-2]["role"] != "user":
        raise ValueError(f"{_where(ctx, row)}: column {column!r} must end with a user turn "
                         f"followed by the assistant's answer")
    return msgs[:-1], msgs[-1]["content"]


def _record(ctx: dict, row: int, prompt: list[dict], positive: str, **extra) -> dict:
    rec = {"id": f"{ctx['name']}-{ctx['split']}-{row:07d}", "kind": ctx["name"], "prompt": prompt,
           "positive": positive, "negatives": []}
    meta = {"source": ctx["dataset"], "split": ctx["split"], "row": row, **extra.pop("meta", {})}
    rec.update(extra)
    rec["meta"] = meta
    return rec


def _pair_row(ctx: dict, row: int, r: dict) -> dict:
    """chosen/rejected message lists that share the prompt (UltraFeedback, SimPO sets)."""
    prompt, chosen = _split_last_answer(_messages(r["chosen"], ctx, row, "chosen"), ctx, row, "chosen")
    prompt_r, rejected = _split_last_answer(_messages(r["rejected"], ctx, row, "rejected"), ctx, row, "rejected")
    if prompt != prompt_r:
        raise ValueError(f"{_where(ctx, row)}: columns 'chosen' and 'rejected' answer different prompts")
    meta = {"prompt_id": r["prompt_id"]} if r.get("prompt_id") else {}
    return _record(ctx, row, prompt, chosen, pair={"chosen": chosen, "rejected": rejected}, meta=meta)


def _metamath_row(ctx: dict, row: int, r: dict) -> dict:
    query = _text(r["query"], ctx, row, "query")
    response = _text(r["response"], ctx, row, "response")
    m = re.search(r"The answer is:?\s*(.+?)\s*$", response)
    extra = {"answer": m.group(1)} if m else {}
    meta = {"template": "alpaca", "query": query}
    if r.get("type"):
        meta["type"] = r["type"]
    return _record(ctx, row, [{"role": "user", "content": ALPACA_PROMPT.format(query=query)}], response,
                   meta=meta, **extra)


def _ultrachat_row(ctx: dict, row: int, r: dict) -> dict:
    msgs = _messages(r["messages"], ctx, row, "messages")
    first_user = next((k for k, m in enumerate(msgs) if m["role"] == "user"), None)
    if first_user is None or first_user + 1 >= len(msgs) or msgs[first_user + 1]["role"] != "assistant":
        raise ValueError(f"{_where(ctx, row)}: column 'messages' has no assistant reply after the first user turn")
    meta = {"prompt_id": r["prompt_id"]} if r.get("prompt_id") else {}
    return _record(ctx, row, [msgs[first_user]], msgs[first_user + 1]["content"], meta=meta)


def _hh_split(text, ctx: dict, row: int, column: str) -> tuple[list[dict], str]:
    if not isinstance(text, str) or HH_ASSISTANT not in text:
        raise ValueError(f"{_where(ctx, row)}: column {column!r} has no '\\n\\nAssistant:' turn")
    cut = text.rindex(HH_ASSISTANT)
    head, answer = text[:cut], text[cut + len(HH_ASSISTANT):].strip()
    if not answer:
        raise ValueError(f"{_where(ctx, row)}: column {column!r} has an empty final assistant answer")
    parts = HH_TURN.split("\n\n" + head.lstrip("\n"))
    # parts = [text before the first turn, role, content, role, content, ...]
    if parts[0].strip() or len(parts) < 3:
        raise ValueError(f"{_where(ctx, row)}: column {column!r} does not start with a '\\n\\nHuman:' turn")
    msgs = []
    for role, content in zip(parts[1::2], parts[2::2]):
        if not content.strip():
            raise ValueError(f"{_where(ctx, row)}: column {column!r} has an empty {role} turn")
        msgs.append({"role": "user" if role == "Human" else "assistant", "content": content.strip()})
    if msgs[-1]["role"] != "user":
        raise ValueError(f"{_where(ctx, row)}: column {column!r}: the answered turn is not a Human turn")
    return msgs, answer


def _alpaca_row(ctx: dict, row: int, r: dict) -> dict:
    instruction = _text(r["instruction"], ctx, row, "instruction")
    extra = r.get("input")
    if extra is not None and not isinstance(extra, str):
        raise ValueError(f"{_where(ctx, row)}: column 'input' is not a string")
    content = f"{instruction}\n{extra.strip()}" if extra and extra.strip() else instruction
    return _record(ctx, row, [{"role": "user", "content": content}], _text(r["output"], ctx, row, "output"))


def _hh_row(ctx: dict, row: int, r: dict) -> dict:
    prompt, chosen = _hh_split(r["chosen"], ctx, row, "chosen")
    prompt_r, rejected = _hh_split(r["rejected"], ctx, row, "rejected")
    if prompt != prompt_r:
        raise ValueError(f"{_where(ctx, row)}: columns 'chosen' and 'rejected' have different dialogue prefixes")
    return _record(ctx, row, prompt, chosen, pair={"chosen": chosen, "rejected": rejected})


# name -> (hub id, splits, required columns, row function)
ADAPTERS = {
    "ultrafeedback": ("HuggingFaceH4/ultrafeedback_binarized", ("train_prefs", "test_prefs"),
                      ("chosen", "rejected"), _pair_row),
    "metamathqa": ("meta-math/MetaMathQA", ("train",), ("query", "response"), _metamath_row),
    "ultrachat": ("HuggingFaceH4/ultrachat_200k", ("train_sft", "test_sft"), ("messages",), _ultrachat_row),
    "hh_rlhf": ("Anthropic/hh-rlhf", ("train", "test"), ("chosen", "rejected"), _hh_row),
    "simpo_mistral_pairrm": ("princeton-nlp/mistral-instruct-ultrafeedback", ("train", "test"),
                             ("chosen", "rejected"), _pair_row),
    "simpo_llama3_armorm": ("princeton-nlp/llama3-ultrafeedback-armorm", ("train", "test"),
                            ("chosen", "rejected"), _pair_row),
    "simpo_gemma2_armorm": ("princeton-nlp/gemma2-ultrafeedback-armorm", ("train", "test"),
                            ("chosen", "rejected"), _pair_row),
    "alpaca_en": ("llamafactory/alpaca_en", ("train",), ("instruction", "output"), _alpaca_row),
}


def subsample_indices(total: int, n: int | None, seed: int) -> list[int]:
    """The first ``n`` of a permutation of range(total) seeded by ``seed``, in ascending order."""
    if n is None:
        return list(range(total))
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n={n!r}: the subsample size must be a positive integer or None")
    if n > total:
        raise ValueError(f"n={n} rows requested but the split has only {total}")
    order = list(range(total))
    random.Random(seed).shuffle(order)
    return sorted(order[:n])


def _load(name: str, split: str, path, cache_dir, revision=None):
    from datasets import load_dataset

    hub_id = ADAPTERS[name][0]
    if path is None:
        return hub_id, load_dataset(hub_id, split=split, cache_dir=cache_dir, revision=revision)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: local data file {path} does not exist")
    lower = path.name.lower()
    if lower.endswith(".parquet"):
        builder = "parquet"
    elif lower.endswith((".json", ".jsonl", ".json.gz", ".jsonl.gz")):
        builder = "json"
    else:
        raise ValueError(f"{name}: local data file {path} must be .parquet, .json or .jsonl")
    return str(path), load_dataset(builder, data_files=str(path), split="train", cache_dir=cache_dir)


def load_adapter(name: str, split: str, n: int | None = None, seed: int = 0, path: str | Path | None = None,
                 cache_dir: str | None = None, revision: str | None = None) -> list[dict]:
    """Records of ``split`` of dataset ``name`` (see ADAPTERS), subsampled to ``n`` rows.

    ``path`` (a local parquet/json/jsonl file in the hub schema) replaces the hub download;
    ``split`` then only names the records. Row numbers are positions in the loaded split.
    ``revision``: the hub commit to download (a data config's ``revision:``; None = the newest).
    """
    if name not in ADAPTERS:
        raise ValueError(f"unknown dataset adapter {name!r}; known: {', '.join(ADAPTERS)}")
    hub_id, splits, columns, row_fn = ADAPTERS[name]
    if split not in splits:
        raise ValueError(f"{name} ({hub_id}): unknown split {split!r}; known: {', '.join(splits)}")
    source, ds = _load(name, split, path, cache_dir, revision)
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise ValueError(f"{name} ({source}): missing column {missing[0]!r} "
                         f"(has {', '.join(ds.column_names) or 'no columns'})")
    hub = hub_id if revision is None else f"{hub_id}@{revision}"
    ctx = {"name": name, "dataset": hub if path is None else f"{hub_id} (local {source})", "split": split}
    rows = subsample_indices(len(ds), n, seed)
    picked = ds.select(rows)
    return [row_fn(ctx, row, r) for row, r in zip(rows, picked)]


# ---------------------------------------------------------------- preference pairs
def use_pair_as_negatives(records: list[dict]) -> list[dict]:
    """Copies whose one negative is the pair's rejected answer (pairwise training on preference data)."""
    out = []
    for r in records:
        pair = r.get("pair")
        if not isinstance(pair, dict) or not isinstance(pair.get("rejected"), str):
            raise ValueError(f"record {r.get('id')!r}: column 'pair' with a 'rejected' answer is needed")
        out.append({**r, "negatives": [pair["rejected"]]})
    return out


def _unit(*parts) -> float:
    """A uniform number in [0, 1) fixed by ``parts`` (no global RNG state)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


def apply_pairing_ratio(records: list[dict], ratio: float, seed: int) -> list[dict]:
    """Simulate a non-pairwise preference set (bnf.txt Sec. 5.2, Table 6).

    Each record must hold a positive and at least one negative (for a preference set, call
    :func:`use_pair_as_negatives` first). A record stays paired with probability ``ratio``;
    otherwise one side, chosen with probability 1/2, is dropped. Both draws are fixed by
    (seed, record id) alone, so the result does not depend on record order, and at one seed
    the records dropped at ratio r are a superset of those dropped at any ratio above r.

    Representation (what the trainer maps to ``Seq.valid``):

    - every returned record has ``"paired": true | false``;
    - a paired record is unchanged apart from ``paired: true``;
    - an unpaired record has ``"dropped": "positive"`` with ``"positive": None`` (its
      negatives stay), or ``"dropped": "negatives"`` with ``"negatives": []`` (its positive
      stays); ``pair``, if present, becomes ``None`` so no pairwise loss can read the
      dropped answer back. The dropped side's answers must get ``valid = 0``.
    """
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio <= 1.0:
        raise ValueError(f"pairing ratio {ratio!r} must be a number in [0, 1]")
    out = []
    for r in records:
        rid = r.get("id")
        if not isinstance(r.get("positive"), str) or not r["positive"].strip() or not r.get("negatives"):
            raise ValueError(f"record {rid!r}: pairing-ratio masking needs a positive and at least one "
                             f"negative (preference data: use_pair_as_negatives first)")
        if "paired" in r:
            raise ValueError(f"record {rid!r}: pairing-ratio masking was already applied")
        if _unit("pairing", seed, rid) < ratio:
            out.append({**r, "paired": True})
            continue
        side = "positive" if _unit("pairing-side", seed, rid) < 0.5 else "negatives"
        rec = {**r, "paired": False, "dropped": side}
        if side == "positive":
            rec["positive"] = None
        else:
            rec["negatives"] = []
        if "pair" in rec:
            rec["pair"] = None
        out.append(rec)
    return out


# ---------------------------------------------------------------- the make_data rule
def make_from_config(config_path: str | Path, out_dir: str | Path, n_train: int | None = None,
                     n_test: int | None = None, seed: int | None = None, path: str | Path | None = None) -> dict:
    """``train.jsonl``, ``test.jsonl`` and ``manifest.json`` in ``out_dir`` from a configs/data/*.yaml
    file (adapter, hub_id, splits, n, seed; optional revision, the hub commit downloaded).
    ``n_train``/``seed`` override the file's ``n``/``seed``;
    a dataset without a test split writes an empty ``test.jsonl`` (its evaluation is a protocol).
    ``path``: a local file in the hub schema instead of the download (tests, air-gapped clusters)."""
    import yaml

    from negfree.common.io import write_json, write_jsonl

    config_path = Path(config_path)
    if not config_path.is_file():
        raise FileNotFoundError(f"data source {config_path} does not exist (expected 'embedded' or a "
                                f"configs/data/*.yaml file)")
    spec = yaml.safe_load(config_path.read_text()) or {}
    missing = [k for k in ("adapter", "splits") if k not in spec]
    if missing:
        raise ValueError(f"{config_path}: missing key(s) {missing}")
    seed = spec.get("seed", 0) if seed is None else seed
    n_train = spec.get("n") if n_train is None else n_train
    out_dir = Path(out_dir)
    manifest = {"source": str(config_path), "adapter": spec["adapter"], "hub_id": ADAPTERS[spec["adapter"]][0]
                if spec["adapter"] in ADAPTERS else None, "local_file": str(path) if path else None,
                "revision": spec.get("revision"), "seed": seed, "n_train": n_train, "n_test": n_test,
                "splits": {}, "files": {}}
    for part, n in (("train", n_train), ("test", n_test)):
        split = (spec["splits"] or {}).get(part)
        records = (load_adapter(spec["adapter"], split, n=n, seed=seed, path=path, revision=spec.get("revision"))
                   if split else [])
        target = out_dir / f"{part}.jsonl"
        write_jsonl(target, records)
        manifest["splits"][part] = split
        manifest["files"][target.name] = {"records": len(records),
                                          "sha256": hashlib.sha256(target.read_bytes()).hexdigest()}
    write_json(out_dir / "manifest.json", manifest)
    return manifest
