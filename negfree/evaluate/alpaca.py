"""AlpacaEval 1 and 2: greedy answers with the chat template, judged by ``alpaca_eval``.

Protocols (``negfree alpaca-eval --protocol``):

- ``alpaca_eval2`` (dft.txt Fig. 2a, 5, 6; ift.txt Table 2 "Alpaca-Eval-2"): alpaca_eval's
  ``weighted_alpaca_eval_gpt4_turbo`` annotator (gpt-4-1106-preview, logprob parser) against
  gpt4_1106_preview's reference outputs; the length-controlled win rate where it is defined (below).
- ``alpaca_eval1`` (ift.txt Table 2 "Alpaca-Eval"): alpaca_eval's ``alpaca_eval_gpt4`` annotator
  (AlpacaEval 1's judge: gpt-4, temperature 0, ranking parser) against text_davinci_003's
  reference outputs; the (plain) win rate. AlpacaEval 1 defines no length-controlled win rate:
  length control (Dubois et al. 2024) is AlpacaEval 2's, its GLM's instruction difficulties
  were fitted with AlpacaEval 2's judge and baseline. ift.txt's Table 2 nevertheless prints an
  "lc win-rate" under Alpaca-Eval and says nothing of how it was computed; the likeliest reading
  is the number alpaca_eval >= 0.6 prints for any annotator, i.e. AlpacaEval 2's GLM applied to
  AlpacaEval 1's annotations, which no AlpacaEval leaderboard defines (its AlpacaEval 1 cells
  for the public checkpoints, Zephyr and Mistral-ORPO, are empty). It is not computed here.

Inputs are local files (the hub loader of alpaca_eval 0.6.6 fails with datasets>=4):
- instructions: JSON list of ``{"instruction": ...}`` (AlpacaEval's format; extra keys such as
  ``dataset`` are kept). The official reference files hold the 805 instructions in AlpacaEval's
  order, so each serves as its protocol's instructions file too.
- reference outputs: JSON list of ``{"instruction", "output", "generator"}`` with the same
  instructions (the baseline the judge compares against).
  ``negfree fetch-judged-data --protocol alpaca_eval`` puts the official ones, sha256-checked
  (configs/judged/sources.yaml), at :data:`FETCHED_FILES` (``work/judged/alpaca_eval/``).

Annotators:
- the protocol's own (:data:`OFFICIAL`): OpenAI's API with ``OPENAI_API_KEY`` (read by the
  OpenAI client only, never written), or any OpenAI-compatible endpoint (``endpoint``:
  ``base_url``, optionally ``model``, and ``api_key_env``, the NAME of the variable holding its
  key). An endpoint is given to alpaca_eval as a client config file (its
  ``client_config_path``, see alpaca_eval's client_configs/README.md) whose client
  (:func:`openai_client`) reads the key from that variable when it is made; the file names the
  variable, never the key. Without ``model`` the annotator's own model id is asked (a gateway
  to OpenAI's models); with another model the result's ``annotator`` reads
  ``<annotator>@<model>`` and ``annotator_is_alpaca_eval_judge`` is false. AlpacaEval 2's
  annotator reads the top-5 log-probabilities of a one-token reply: the endpoint must return
  chat logprobs (vLLM does).
- ``negfree_local_loglik``: an OFFLINE STAND-IN, NOT AlpacaEval's judge. It runs through
  alpaca_eval's own annotator machinery (a local annotator config, its prompt template, the
  protocol's parser: regex for alpaca_eval2, AlpacaEval 1's ranking parser for alpaca_eval1,
  order randomisation and win-rate metric), but the "judge" prefers the output with the higher
  mean per-token log-probability under a given local model. It exists so the demo and the tests
  exercise the pipeline; its numbers say nothing about answer quality as GPT-4 would judge it.

Annotations are cached across reruns (``cache_dir``: alpaca_eval's ``caching_path``, one JSON file
per judge, named by the annotator and a digest of the judge's identity: model, endpoint, local
judge directory), saved as alpaca_eval annotates; a rerun, or a job killed midway and run again,
asks the judge only the pairs not in it. Failed judgements are dropped from it before a run
(asked again).

Win rate: the length-controlled win rate is defined only for alpaca_eval2 on the full
805-instruction AlpacaEval set in its original order (its GLM reads each instruction's
difficulty by position); on anything else the plain win rate is reported, and the JSON's
``win_rate_kind`` says which (``lc_reason`` says why). The mean output length (characters, as
AlpacaEval reports it, and tokens) is recorded.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
from contextlib import contextmanager
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from negfree.common.errors import InputError
from negfree.common.io import atomic_write_text, check_writable, read_text, removed_on_error
from negfree.evaluate import greedy

PROTOCOLS = ("alpaca_eval1", "alpaca_eval2")
AE1_ANNOTATOR = "alpaca_eval_gpt4"                     # alpaca_eval constants.ANNOTATOR_CONFIG_AE1
GPT4_ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"     # ... ANNOTATOR_CONFIG_AE2
LOCAL_ANNOTATOR = "negfree_local_loglik"
ANNOTATORS = (GPT4_ANNOTATOR, AE1_ANNOTATOR, LOCAL_ANNOTATOR)
OFFICIAL = {"alpaca_eval1": AE1_ANNOTATOR, "alpaca_eval2": GPT4_ANNOTATOR}
#: the model each official annotator config asks (its completions_kwargs.model_name, alpaca_eval 0.6.6)
JUDGE_MODELS = {AE1_ANNOTATOR: "gpt-4", GPT4_ANNOTATOR: "gpt-4-1106-preview"}
JUDGE_NAMES = {AE1_ANNOTATOR: "AlpacaEval 1's GPT-4 judge", GPT4_ANNOTATOR: "AlpacaEval 2's GPT-4-turbo judge"}
#: the generator of each protocol's official reference outputs (the files' "generator" field)
REFERENCE_GENERATORS = {"alpaca_eval1": "text_davinci_003", "alpaca_eval2": "gpt4_1106_preview"}
FETCHED_DIR = "work/judged/alpaca_eval"
FETCHED_FILES = {"alpaca_eval1": f"{FETCHED_DIR}/reference_ae1.json",
                 "alpaca_eval2": f"{FETCHED_DIR}/reference_ae2.json"}
FETCHED_MARKER = f"{FETCHED_DIR}/.fetched"
SOURCES = {"alpaca_eval1": "ift.txt Table 2 (Alpaca-Eval win-rate)",
           "alpaca_eval2": "dft.txt Fig 2a/5/6, ift.txt Table 2 (Alpaca-Eval-2)"}
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
FULL_SET_SIZE = 805
#: sha256 of json.dumps([the 805 instructions in order], ensure_ascii=False): AlpacaEval's eval set
#: (computed from results/text_davinci_003/model_outputs.json at the revision sources.yaml pins; the
#: gpt4_1106_preview file's instructions give the same digest)
EVAL_SET_SHA256 = "e4356cd997a280afd66c7dd3f9d44a151d2e94a3d4c2b67ab5d364a14404ae26"
AE1_NO_LC = ("AlpacaEval 1 defines no length-controlled win rate (length control is AlpacaEval 2's): "
             "the plain win rate is its number")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

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


def instructions_sha256(rows: list[dict]) -> str:
    """The digest :data:`EVAL_SET_SHA256` is of: the instructions, in order."""
    return hashlib.sha256(json.dumps([r["instruction"] for r in rows], ensure_ascii=False).encode()).hexdigest()


def lc_eligibility(instructions: list[dict], reference: list[dict], limit: int | None,
                   protocol: str = "alpaca_eval2") -> tuple[bool, str]:
    """Whether the length-controlled win rate is defined here, and why (not)."""
    if protocol == "alpaca_eval1":
        return False, AE1_NO_LC
    if limit is not None and limit < len(instructions):
        return False, f"subset: first {limit} of {len(instructions)} instructions"
    if len(instructions) != FULL_SET_SIZE:
        return False, f"{len(instructions)} instructions, LC needs the full {FULL_SET_SIZE}-instruction set"
    if [r["instruction"] for r in reference] != [r["instruction"] for r in instructions]:
        return False, "the reference outputs are not in the instructions' order"
    if instructions_sha256(instructions) != EVAL_SET_SHA256:
        return False, (f"{FULL_SET_SIZE} instructions, but not AlpacaEval's set in its original order (their "
                       f"sha256 differs); LC reads each instruction's difficulty by its position in that set")
    return True, f"full {FULL_SET_SIZE}-instruction set in its original order"


def check_endpoint(endpoint: dict | None) -> dict | None:
    """``{base_url, model?, api_key_env?}`` checked; api_key_env defaults to OPENAI_API_KEY and
    null means no key. Returns the endpoint with every key present."""
    if not endpoint:
        return None
    unknown = sorted(set(endpoint) - {"base_url", "model", "api_key_env"})
    if unknown:
        raise ValueError(f"endpoint: unknown key(s) {', '.join(unknown)}; expected base_url, model, api_key_env")
    url = endpoint.get("base_url")
    if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+", url):
        raise ValueError(f"endpoint.base_url: expected the OpenAI-compatible server's http(s):// URL, got {url!r}")
    model = endpoint.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise ValueError(f"endpoint.model: expected a model id, got {model!r}")
    env = endpoint.get("api_key_env", DEFAULT_KEY_ENV)
    if env is not None and (not isinstance(env, str) or not _ENV_NAME.match(env)):
        raise ValueError("endpoint.api_key_env: expected the NAME of the environment variable that holds the key "
                         "(letters, digits, _), never the key itself")
    return {"base_url": url.rstrip("/"), "model": model, "api_key_env": env}


def check_annotator(annotator: str | None, judge_model: str | Path | None, protocol: str = "alpaca_eval2",
                    endpoint: dict | None = None) -> str:
    """Fail early (before any generation) with one clear message; returns the annotator
    (None: the protocol's own)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    annotator = annotator or OFFICIAL[protocol]
    if annotator not in ANNOTATORS:
        raise ValueError(f"unknown annotator {annotator!r}; known: {', '.join(ANNOTATORS)}")
    if annotator not in (OFFICIAL[protocol], LOCAL_ANNOTATOR):
        other = next(p for p, a in OFFICIAL.items() if a == annotator)
        raise ValueError(f"annotator {annotator} is {other}'s judge; {protocol} is judged by {OFFICIAL[protocol]} "
                         f"(or, offline, {LOCAL_ANNOTATOR})")
    endpoint = check_endpoint(endpoint)
    if annotator == LOCAL_ANNOTATOR:
        if endpoint:
            raise ValueError(f"annotator {LOCAL_ANNOTATOR} is a local model: an endpoint applies to "
                             f"{OFFICIAL[protocol]} only")
        if not judge_model:
            raise ValueError(f"annotator {LOCAL_ANNOTATOR} needs a local judge model directory")
    else:
        env = endpoint["api_key_env"] if endpoint else DEFAULT_KEY_ENV
        if env and not os.environ.get(env):
            where = f" (the key of the endpoint {endpoint['base_url']})" if endpoint else ""
            raise AlpacaEvalError(f"annotator {annotator} ({JUDGE_NAMES[annotator]}) needs {env} in the "
                                  f"environment{where}; it is not set. For an offline run use --annotator "
                                  f"{LOCAL_ANNOTATOR} (not AlpacaEval's judge).")
    try:
        import_module("alpaca_eval")   # imports pkg_resources: setuptools<81
    except ImportError as e:
        raise AlpacaEvalError(f"alpaca_eval is not importable ({e}); install "
                              f"'alpaca-eval==0.6.6' 'setuptools<81'") from None
    return annotator


#: evaluate.alpaca_eval's key of each protocol's reference outputs (``reference`` stays AlpacaEval 2's)
REFERENCE_KEYS = {"alpaca_eval1": "reference_ae1", "alpaca_eval2": "reference"}
_FILE_KEYS = ("instructions", "reference", "reference_ae1")


def resolve_config(block: dict | None, protocol: str) -> dict:
    """An experiment's ``evaluate.alpaca_eval`` for one protocol, checked (a ValueError names the
    key): the files (the experiment's own, or the ones negfree fetch-judged-data fetches: with
    ``fetched: true``, or when neither instructions nor the protocol's reference is given), the
    annotator (default the protocol's own), the local judge, the endpoint, limit and length."""
    b = block or {}
    where = "evaluate.alpaca_eval"
    if protocol not in PROTOCOLS:
        raise ValueError(f"{where}: unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    ref_key = REFERENCE_KEYS[protocol]
    fetched = b.get("fetched")
    if fetched is True:
        given = [k for k in _FILE_KEYS if b.get(k)]
        if given:
            raise ValueError(f"{where}: fetched: true reads the official files (negfree fetch-judged-data --protocol "
                             f"alpaca_eval); drop {', '.join(given)} or set fetched: false")
    elif fetched is None:
        fetched = not (b.get("instructions") or b.get(ref_key))
    if fetched:
        instructions = reference = FETCHED_FILES[protocol]
    else:
        for k in ("instructions", ref_key):
            if not b.get(k):
                what = ("the instructions, a JSON list of {instruction}" if k == "instructions" else
                        f"{REFERENCE_GENERATORS[protocol]}'s outputs on those instructions (its reference)")
                raise ValueError(f"{where}.{k}: {protocol} needs {what}, or neither instructions nor "
                                 f"{ref_key} for the official files (fetched: true)")
        instructions, reference = b["instructions"], b[ref_key]
    annotator = b.get("annotator") or OFFICIAL[protocol]
    if annotator not in (OFFICIAL[protocol], LOCAL_ANNOTATOR):
        raise ValueError(f"{where}.annotator: {annotator} is not {protocol}'s judge ({OFFICIAL[protocol]}); leave "
                         f"annotator out for each protocol's own, or {LOCAL_ANNOTATOR} for the offline stand-in")
    if annotator == LOCAL_ANNOTATOR and not b.get("judge_model"):
        raise ValueError(f"{where}.judge_model: annotator {LOCAL_ANNOTATOR} needs a local judge model directory")
    try:
        endpoint = check_endpoint(b.get("endpoint"))
    except ValueError as e:
        raise ValueError(f"{where}.{e}") from None
    if endpoint and annotator == LOCAL_ANNOTATOR:
        raise ValueError(f"{where}.endpoint: applies to AlpacaEval's own annotators, not {LOCAL_ANNOTATOR}")
    return {"instructions": instructions, "reference": reference, "fetched": bool(fetched), "annotator": annotator,
            "judge_model": b.get("judge_model") if annotator == LOCAL_ANNOTATOR else None, "endpoint": endpoint,
            "limit": b.get("limit"), "max_new_tokens": b.get("max_new_tokens")}


def judge_identity(annotator: str, judge_model: str | Path | None = None, endpoint: dict | None = None) -> dict:
    """Who judges: the annotator, the model asked, where (None: OpenAI's API as alpaca_eval's
    client settings say), the key's variable; the label results carry."""
    if annotator == LOCAL_ANNOTATOR:
        return {"annotator": annotator, "label": annotator, "model": str(judge_model), "base_url": None,
                "api_key_env": None, "is_alpaca_eval_judge": False}
    endpoint = check_endpoint(endpoint)
    model = (endpoint or {}).get("model") or JUDGE_MODELS[annotator]
    same = model == JUDGE_MODELS[annotator]
    return {"annotator": annotator, "label": annotator if same else f"{annotator}@{model}", "model": model,
            "base_url": endpoint["base_url"] if endpoint else None,
            "api_key_env": endpoint["api_key_env"] if endpoint else DEFAULT_KEY_ENV, "is_alpaca_eval_judge": same}


def cache_file(cache_dir: str | Path, protocol: str, identity: dict) -> Path:
    """One annotations file per judge: alpaca_eval keys its cache by (instruction, output_1,
    output_2, annotator name), so another model behind the same annotator name gets its own file."""
    key = {k: identity[k] for k in ("annotator", "model", "base_url")}
    digest = hashlib.sha256(json.dumps({"protocol": protocol, **key}, sort_keys=True).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"annotations_{identity['annotator']}_{digest}.json"


# ------------------------------------------------------------------- local judge
class LoglikJudge:
    """Completion function for alpaca_eval: prefers output (a) or (b) by the higher mean
    per-token log-prob of the output given the instruction (chat template) under a local model.
    Deterministic; a tie goes to (a) (alpaca_eval randomises which output is (a)). It answers
    "Output (a)" / "Output (b)" (``style="regex"``, the alpaca_eval2 stand-in) or, in AlpacaEval
    1's ranking format, ``[{'model': 'model_1', 'rank': 1}, ...]`` (``style="ranking"``)."""

    def __init__(self, model_dir: str | Path, device: str = "cpu", max_tokens: int = 1024, style: str = "regex"):
        if style not in ("regex", "ranking"):
            raise ValueError(f"unknown local judge style {style!r}")
        self.model, self.tok = greedy.load(model_dir, device)
        self.model_dir, self.device, self.max_tokens, self.style = str(model_dir), device, max_tokens, style
        self.calls = 0

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

    def _answer(self, a_wins: bool) -> str:
        if self.style == "regex":
            return "Output (a)" if a_wins else "Output (b)"
        first, second = (1, 2) if a_wins else (2, 1)
        return f"[{{'model': 'model_1', 'rank': {first}}}, {{'model': 'model_2', 'rank': {second}}}]"

    def __call__(self, prompts, **_) -> dict[str, list]:
        completions = []
        for prompt in prompts:
            m = _PARSE.search(prompt)
            if not m:
                raise AlpacaEvalError("local judge: prompt does not follow the negfree template")
            instruction, out_a, out_b = m.groups()
            a, b = self.mean_logprob(instruction, out_a), self.mean_logprob(instruction, out_b)
            completions.append(self._answer(a >= b))
        n = len(prompts)
        self.calls += n
        return {"completions": completions, "price_per_example": [0.0] * n,
                "time_per_example": [0.0] * n, "completions_all": completions}


def write_local_annotator_config(folder: str | Path, protocol: str = "alpaca_eval2") -> Path:
    """An alpaca_eval annotator config folder for the local judge; returns configs.yaml. The
    parser is the protocol's kind: regex (alpaca_eval2) or AlpacaEval 1's ranking parser."""
    import yaml

    folder = Path(folder)
    atomic_write_text(folder / "prompt.txt", LOCAL_TEMPLATE)
    cfg = {"prompt_template": str((folder / "prompt.txt").resolve())}
    if protocol == "alpaca_eval1":
        cfg["fn_completion_parser"] = "ranking_parser"
    else:
        cfg["fn_completion_parser"] = "regex_parser"
        cfg["completion_parser_kwargs"] = {"outputs_to_match": {1: r"^Output \(a\)$", 2: r"^Output \(b\)$"}}
    cfg["batch_size"] = 1
    cfg["pretty_name"] = "negfree local log-likelihood judge (NOT AlpacaEval's GPT-4 judge)"
    path = folder / "configs.yaml"
    atomic_write_text(path, yaml.safe_dump({LOCAL_ANNOTATOR: cfg}, sort_keys=False))
    return path


# --------------------------------------------------------------- an OpenAI-compatible endpoint
def openai_client(api_key_env: str | None = None, **kwargs):
    """The client alpaca_eval makes from an endpoint's client config (its ``client_class``): an
    ``openai.OpenAI`` whose key is read here, from the variable the config names, and so is never
    in a file. No variable: no key (a local server that asks none)."""
    from openai import OpenAI

    key = os.environ.get(api_key_env, "") if api_key_env else ""
    return OpenAI(api_key=key or "EMPTY", **kwargs)


def evaluators_dir() -> Path:
    import alpaca_eval

    return Path(alpaca_eval.__file__).parent / "evaluators_configs"


def official_files(annotator: str) -> dict[str, str]:
    """sha256 of the installed alpaca_eval's annotator config and prompt (sources.yaml pins the same
    files at alpaca_eval's GitHub revision: judge_config_ae1/ae2, judge_prompt_ae1/ae2)."""
    import yaml

    base = evaluators_dir()
    config = base / annotator / "configs.yaml"
    prompt = base / yaml.safe_load(config.read_text())[annotator]["prompt_template"]
    return {str(f.relative_to(base)): hashlib.sha256(f.read_bytes()).hexdigest() for f in (config, prompt)}


def write_endpoint_annotator_config(folder: str | Path, annotator: str, endpoint: dict) -> Path:
    """The official annotator config, unchanged but for where it asks: its prompt by absolute path,
    ``client_config_path`` to a client config for the endpoint (base_url and the key's variable
    name), the endpoint's model if one is given, and the chat API (the prompts are chat
    prompts whatever the model's name). Returns configs.yaml."""
    import yaml

    endpoint = check_endpoint(endpoint)
    folder = Path(folder).resolve()
    base = evaluators_dir()
    entry = dict(yaml.safe_load((base / annotator / "configs.yaml").read_text())[annotator])
    entry["prompt_template"] = str(base / entry["prompt_template"])
    client = {"client_class": f"{__name__}.openai_client", "base_url": endpoint["base_url"],
              "api_key_env": endpoint["api_key_env"]}
    client_path = folder / "openai_client.yaml"
    atomic_write_text(client_path, "# the key is read from the variable api_key_env names; it is never written\n"
                      + yaml.safe_dump({"default": [client]}, sort_keys=False))
    kwargs = dict(entry.get("completions_kwargs") or {})
    kwargs["model_name"] = endpoint["model"] or kwargs["model_name"]
    kwargs["client_config_path"] = str(client_path)
    kwargs["requires_chatml"] = True
    entry["completions_kwargs"] = kwargs
    path = folder / "configs.yaml"
    atomic_write_text(path, yaml.safe_dump({annotator: entry}, sort_keys=False))
    return path


# ------------------------------------------------------------------------ judging
def _prepare_cache(path: Path) -> str | None:
    """Before judging: a cache file a killed job left half-written is moved aside (alpaca_eval
    would fail to read it), and the judgements that failed (alpaca_eval stores them as -1 or
    null, and would not ask them again) are dropped, so a rerun asks the judge again. Returns a
    note saying what was done, if anything."""
    if not path.is_file():
        return None
    try:
        rows = json.loads(path.read_text("utf-8"))
        if not isinstance(rows, list):
            raise ValueError("not a list")
    except (ValueError, UnicodeDecodeError):
        aside = path.with_name(path.name + ".unreadable")
        os.replace(path, aside)
        return f"{path} could not be read as alpaca_eval's annotations: moved to {aside.name}, judged again"
    kept = [r for r in rows if isinstance(r, dict) and _clean(r.get("preference")) not in (None, -1, -1.0)]
    if len(kept) == len(rows):
        return None
    atomic_write_text(path, json.dumps(kept, indent=2) + "\n")
    return f"{len(rows) - len(kept)} failed judgement(s) dropped from {path.name}: asked again"


def _cached_pairs(path: Path | None, pairs: list[tuple[str, str, str]], annotator: str) -> int:
    """How many of this run's (instruction, reference output, model output) pairs the cache holds."""
    if path is None or not path.is_file():
        return 0
    try:
        rows = json.loads(path.read_text("utf-8"))
    except ValueError:
        return 0
    held = {(r.get("instruction"), r.get("output_1"), r.get("output_2")) for r in rows
            if isinstance(r, dict) and r.get("annotator") == annotator and r.get("preference") is not None}
    return sum(p in held for p in pairs)


_ANNOTATOR_CLASS = None


def annotator_class():
    """alpaca_eval's PairwiseAnnotator, reading its cache with float preferences: pandas infers
    int64 for a cache of whole preferences (AlpacaEval 1's ranking parser gives 1 or 2), and
    alpaca_eval 0.6.6 then writes 1.5 (a draw) into that column, which pandas >= 3 refuses."""
    global _ANNOTATOR_CLASS
    if _ANNOTATOR_CLASS is None:
        from alpaca_eval.annotators import PairwiseAnnotator

        class FloatPreferences(PairwiseAnnotator):
            def load_(self, path=None):
                super().load_(path)
                df = self.df_annotations
                if df is not None and self.annotation_key in df.columns:
                    df[self.annotation_key] = df[self.annotation_key].astype(float)

        _ANNOTATOR_CLASS = FloatPreferences
    return _ANNOTATOR_CLASS


def judge(model_outputs: list[dict], reference_outputs: list[dict], annotator: str,
          work_dir: str | Path, lc: bool, judge_model: str | Path | None = None,
          device: str = "cpu", protocol: str = "alpaca_eval2", endpoint: dict | None = None,
          cache: str | Path | None = None) -> tuple[dict, list[dict]]:
    """Run alpaca_eval; returns (its leaderboard row for the model, annotations)."""
    import pandas as pd
    from alpaca_eval import main as ae

    work_dir = Path(work_dir).resolve()   # alpaca_eval reads a relative config path under its own package
    kwargs = {}
    if annotator == LOCAL_ANNOTATOR:
        config = write_local_annotator_config(work_dir / "annotator", protocol)
        kwargs["fn_completions"] = LoglikJudge(judge_model, device,
                                               style="ranking" if protocol == "alpaca_eval1" else "regex")
    elif endpoint:
        config = write_endpoint_annotator_config(work_dir / "annotator", annotator, endpoint)
    else:
        config = annotator
    if cache is not None:
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
    metric_kwargs = {"save_weights_dir": None} if lc else {}
    try:
        with _no_logged_tracebacks():
            leaderboard, annotations = ae.evaluate(
                model_outputs=pd.DataFrame(model_outputs), reference_outputs=pd.DataFrame(reference_outputs),
                annotators_config=str(config), output_path=None, precomputed_leaderboard=None,
                is_return_instead_of_print=True, is_cache_leaderboard=False,
                fn_metric="get_length_controlled_winrate" if lc else "get_winrate",
                metric_kwargs=metric_kwargs, sort_by="length_controlled_winrate" if lc else "win_rate",
                caching_path=str(cache) if cache is not None else None, Annotator=annotator_class(),
                **kwargs)
    except AlpacaEvalError:
        raise
    except Exception as err:   # unreachable API, refused key, quota, a judge that crashed
        detail = " ".join(str(err).split()) or "no message"
        hint = ""
        if annotator != LOCAL_ANNOTATOR:
            ep = check_endpoint(endpoint)
            where = (f"the endpoint {ep['base_url']} and {ep['api_key_env'] or 'its settings'}" if ep
                     else f"the network and {DEFAULT_KEY_ENV}")
            hint = f"; check {where}, or run offline with --annotator {LOCAL_ANNOTATOR}"
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
                    out_json: str | Path, annotator: str | None = None,
                    judge_model: str | Path | None = None, limit: int | None = None,
                    max_new_tokens: int = 2048, batch_size: int = 8, device: str = "cpu",
                    name: str | None = None, protocol: str = "alpaca_eval2", endpoint: dict | None = None,
                    cache_dir: str | Path | None = None, fallback_template: bool = False) -> dict:
    """Generate, judge, and write ``out_json`` (+ ``<stem>.outputs.json``, ``<stem>.annotations.json``).
    ``annotator`` None: the protocol's own (:data:`OFFICIAL`). ``fallback_template``: a model whose
    tokenizer has no chat template (a base model) answers through the documented Zephyr-style one
    (negfree.data.tokenize.ZEPHYR_TEMPLATE, as its training and negatives did)."""
    from negfree.common.models import check_model_dir

    annotator = check_annotator(annotator, judge_model, protocol, endpoint)
    endpoint = check_endpoint(endpoint)
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
    generators = sorted({str(r.get("generator", "reference")) for r in ref})
    swapped = [p for p, g in REFERENCE_GENERATORS.items() if p != protocol and generators == [g]]
    if swapped:
        raise ValueError(f"{reference_outputs}: holds {generators[0]}'s outputs, {swapped[0]}'s reference; "
                         f"{protocol} compares with {REFERENCE_GENERATORS[protocol]}'s")
    lc, lc_reason = lc_eligibility(instr, ref, limit, protocol)
    chosen = instr[:limit] if limit else instr
    check_model_dir(model_dir)
    if annotator == LOCAL_ANNOTATOR:
        check_model_dir(judge_model)
    check_writable(out_json)
    who = judge_identity(annotator, judge_model, endpoint)
    cache = cache_file(cache_dir, protocol, who) if cache_dir else None
    cache_note = _prepare_cache(cache) if cache else None

    generator = name or Path(model_dir).name
    model, tok = greedy.load(model_dir, device)
    template = "the model's chat template"
    if not getattr(tok, "chat_template", None) and fallback_template:
        from negfree.data.tokenize import ZEPHYR_TEMPLATE

        tok.chat_template, template = ZEPHYR_TEMPLATE, "fallback: Zephyr-style (negfree.data.tokenize)"
    gens = greedy.generate(model, tok, [r["instruction"] for r in chosen],
                           max_new_tokens=max_new_tokens, batch_size=batch_size, device=device)
    del model
    model_outputs = [{**r, "output": g["output"], "generator": generator} for r, g in zip(chosen, gens)]
    reference = [{**by_instruction[r["instruction"]],
                  "generator": by_instruction[r["instruction"]].get("generator", "reference")}
                 for r in chosen]
    pairs = [(m["instruction"], r["output"], m["output"]) for m, r in zip(model_outputs, reference)]
    n_cached = _cached_pairs(cache, pairs, annotator)
    work = out_json.with_suffix(".work")
    with removed_on_error(work):   # the annotator's config; the outputs are written once judged
        row, annotations = judge(model_outputs, reference, annotator, work, lc=lc, judge_model=judge_model,
                                 device=device, protocol=protocol, endpoint=endpoint, cache=cache)
    atomic_write_text(out_json.with_suffix(".outputs.json"), json.dumps(model_outputs, indent=1) + "\n")
    win_key = "length_controlled_winrate" if lc else "win_rate"
    lengths = [len(o["output"]) for o in model_outputs]
    record = {
        "model": str(model_dir),
        "protocol": protocol,
        "source": SOURCES[protocol],
        "annotator": who["label"],
        "annotator_config": annotator,
        "annotator_is_alpaca_eval_judge": who["is_alpaca_eval_judge"],
        "judge_model": str(judge_model) if annotator == LOCAL_ANNOTATOR else who["model"],
        "judge_endpoint": who["base_url"],
        "judge_api_key_env": who["api_key_env"],
        "annotator_files_sha256": official_files(annotator) if annotator != LOCAL_ANNOTATOR else None,
        "reference_generator": generators[0] if len(generators) == 1 else generators,
        "reference_is_protocols": generators == [REFERENCE_GENERATORS[protocol]],
        "win_rate_kind": "length_controlled" if lc else "plain",
        "lc_reason": lc_reason,
        "win_rate": _clean(row.get(win_key)),
        "standard_error": _clean(row.get("lc_standard_error" if lc else "standard_error")),
        "leaderboard_row": {k: _clean(v) for k, v in row.items()},
        "n": len(model_outputs),
        "n_instructions_in_file": len(instr),
        "instructions_are_alpaca_eval_set": instructions_sha256(instr) == EVAL_SET_SHA256,
        "n_unjudged": sum(a.get("preference") is None or _clean(a.get("preference")) is None for a in annotations),
        "annotation_cache": str(cache) if cache else None,
        "n_judgements_from_cache": n_cached,
        "mean_length_chars": sum(lengths) / len(lengths),
        "mean_length_tokens": sum(g["n_tokens"] for g in gens) / len(gens),
        "truncated": sum(not g["stopped"] for g in gens),
        "generation": {"greedy": True, "chat_template": True, "template": template, "max_new_tokens": max_new_tokens},
        "instructions": str(instructions),
        "reference_outputs": str(reference_outputs),
        "limit": limit,
        "versions": _versions(),
        "outputs": out_json.with_suffix(".outputs.json").name,
        "annotations": out_json.with_suffix(".annotations.json").name,
    }
    if cache_note:
        record["annotation_cache_note"] = cache_note
    record["metrics"] = [
        {"task": protocol, "metric": "lc_win_rate" if lc else "win_rate",
         "value": record["win_rate"], "stderr": record["standard_error"], "n": record["n"]},
        {"task": protocol, "metric": "mean_length_chars", "value": record["mean_length_chars"],
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
