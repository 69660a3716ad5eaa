"""Readers for the judged benchmarks' OFFICIAL file formats, by path.

We never retype a prompt, a reference answer or a judge template: on the cluster these files
come from the official releases; here they are inputs. Every reader validates what it reads
and fails with ONE ValueError line naming the file, the line (where the format has lines)
and the field. :func:`sha256_file` / :class:`InputFile` record what was read.

MT-Bench (FastChat ``fastchat/llm_judge/data``):
- ``mt_bench/question.jsonl``: ``{"question_id", "category", "turns": [t1, t2]}``, some lines
  with ``"reference": [r1, r2]`` (read and kept, not used: FastChat's gen_judgment.py takes the
  judge's reference answers from ``reference_answer/<judge>.jsonl``, and so do we);
- ``mt_bench/reference_answer/gpt-4.jsonl``: ``{"question_id", "choices": [{"index": 0,
  "turns": [a1, a2]}]}`` (turns are strings);
- ``judge_prompts.jsonl``: ``{"name", "type", "system_prompt", "prompt_template",
  "output_format", ...}``; single-answer grading uses ``single-v1``, ``single-math-v1``,
  ``single-v1-multi-turn`` and ``single-math-v1-multi-turn`` (common.py ``NEED_REF_CATS``:
  math, reasoning and coding use the "math" ones, with reference answers).
- Placeholders (``str.format``; FastChat common.py ``run_judge_single``): ``{question}``,
  ``{answer}``, ``{ref_answer_1}`` for turn 1; ``{question_1}``, ``{answer_1}``,
  ``{question_2}``, ``{answer_2}``, ``{ref_answer_1}``, ``{ref_answer_2}`` for the multi-turn
  templates.

Arena-Hard-Auto v0.1 (lmarena-ai/arena-hard-auto, ``data/arena-hard-v0.1``):
- ``question.jsonl``: ``{"question_id" (or v2's "uid"), "category", "cluster", "turns":
  [{"content": ...}]}``;
- ``model_answer/gpt-4-0314.jsonl``: ``{"question_id", "answer_id", "model_id", "choices":
  [{"index": 0, "turns": [{"content", "token_len"}]}], "tstamp"}`` (``token_len``: tiktoken
  tokens, optional here);
- ``config/judge_config.yaml``: ``system_prompt``, ``prompt_template`` (a list of strings,
  one user message each; v0.1: one, with ``{question_1}``, ``{answer_1}``, ``{answer_2}``),
  ``regex_pattern``, and the run settings (``judge_model``, ``baseline_model``,
  ``temperature``, ``max_tokens``, ...), which are recorded.

WildBench v2 (hub dataset allenai/WildBench, config v2, split test, exported as JSONL):
- records ``{"session_id", "conversation_input": [{"role", "content"}, ...] (the history,
  then the last user query), "checklist": [str], "primary_tag", "secondary_tags": [str],
  ...}``;
- ``evaluation/eval_template.score.v2.md`` with ``{$history}``, ``{$user_query}``,
  ``{$model_output}`` and ``{$checklist}`` (plain text replacement, src/eval.py).
"""
from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from negfree.common.io import iter_jsonl, read_text

MT_BENCH_REF_CATEGORIES = ("math", "reasoning", "coding")
#: The four single-answer-grading prompts and the placeholders each must use.
MT_BENCH_SINGLE_PROMPTS = {
    "single-v1": ("question", "answer"),
    "single-math-v1": ("question", "answer", "ref_answer_1"),
    "single-v1-multi-turn": ("question_1", "answer_1", "question_2", "answer_2"),
    "single-math-v1-multi-turn": ("question_1", "answer_1", "question_2", "answer_2",
                                  "ref_answer_1", "ref_answer_2"),
}
WILDBENCH_PLACEHOLDERS = ("{$history}", "{$user_query}", "{$model_output}", "{$checklist}")
_AH_FIELD = re.compile(r"(question|answer|ref_answer)_(\d+)$")


# ------------------------------------------------------------------------- provenance
def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class InputFile:
    """A file read, as recorded in a result: its path and the sha256 of its bytes."""
    role: str
    path: str
    sha256: str

    @classmethod
    def of(cls, role: str, path: str | Path) -> "InputFile":
        return cls(role, str(path), sha256_file(path))

    def record(self) -> dict:
        return {"path": self.path, "sha256": self.sha256}


def qid_key(question_id) -> str:
    """Question ids are ints (MT-Bench) or strings (Arena-Hard, WildBench); files are matched on
    their text."""
    return str(question_id)


# ----------------------------------------------------------------------------- checks
def _fail(where: str, fld: str, what: str):
    raise ValueError(f"{where}: field '{fld}': {what}")


def _need(rec: dict, where: str, fld: str, kind, what: str):
    if fld not in rec:
        _fail(where, fld, "missing")
    value = rec[fld]
    if isinstance(value, bool) or not isinstance(value, kind):
        _fail(where, fld, f"expected {what}, got {type(value).__name__}")
    return value


def _id(rec: dict, where: str, *names: str):
    for name in names:
        if name in rec:
            value = rec[name]
            if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
                _fail(where, name, f"expected a non-empty string or an integer, got {value!r}")
            return value
    _fail(where, names[0], "missing" + (f" (nor {', '.join(names[1:])})" if len(names) > 1 else ""))


def _turn_text(turn, where: str, fld: str, k: int) -> str:
    """A turn is a string (MT-Bench) or {"content": str} (Arena-Hard); both are accepted."""
    if isinstance(turn, dict):
        turn = turn.get("content")
    if not isinstance(turn, str):
        _fail(where, f"{fld}[{k}]", "expected a string or {'content': string}")
    return turn


def _turns(rec: dict, where: str, fld: str = "turns", *, min_len: int = 1, max_len: int | None = None,
           allow_empty_text: bool = False, prefix: str = "") -> list[str]:
    """``rec[fld]`` as texts; ``prefix`` names the object holding it in messages ("choices[0].")."""
    if fld not in rec:
        _fail(where, prefix + fld, "missing")
    turns = rec[fld]
    fld = prefix + fld
    if not isinstance(turns, list):
        _fail(where, fld, f"expected a list of turns, got {type(turns).__name__}")
    if len(turns) < min_len or (max_len is not None and len(turns) > max_len):
        span = f"{min_len}" if max_len == min_len else f"{min_len} to {max_len}" if max_len else f"at least {min_len}"
        _fail(where, fld, f"expected {span} turn(s), got {len(turns)}")
    out = [_turn_text(t, where, fld, k) for k, t in enumerate(turns)]
    if not allow_empty_text:
        for k, t in enumerate(out):
            if not t.strip():
                _fail(where, f"{fld}[{k}]", "empty text")
    return out


def _unique(seen: dict, key: str, where: str, fld: str) -> None:
    if key in seen:
        _fail(where, fld, f"duplicate id {key!r} (first at {seen[key]})")
    seen[key] = where


def _records(path, what: str):
    path = Path(path)
    got = list(iter_jsonl(path, f"{what} {path} does not exist"))
    if not got:
        raise ValueError(f"{path}: no records (an empty {what})")
    for lineno, where, rec in got:
        if not isinstance(rec, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    return got


def _placeholders(template: str, where: str, fld: str) -> set[str]:
    """The ``str.format`` field names of ``template`` (a malformed brace is an error)."""
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as err:
        _fail(where, fld, f"not a valid str.format template ({err})")


# ============================================================================ MT-Bench
@dataclass(frozen=True)
class MTQuestion:
    question_id: Any
    category: str
    turns: tuple[str, ...]
    reference: tuple[str, ...] | None = None    # the question file's own hints (not used by the judge)
    where: str = ""

    @property
    def needs_reference(self) -> bool:
        return self.category in MT_BENCH_REF_CATEGORIES


def read_mt_bench_questions(path: str | Path) -> list[MTQuestion]:
    out, seen = [], {}
    for _, where, rec in _records(path, "MT-Bench question file"):
        qid = _id(rec, where, "question_id")
        _unique(seen, qid_key(qid), where, "question_id")
        category = _need(rec, where, "category", str, "a string")
        turns = _turns(rec, where, min_len=1, max_len=2)
        ref = None
        if rec.get("reference") is not None:
            raw = _need(rec, where, "reference", list, "a list of strings")
            if not all(isinstance(r, str) for r in raw):
                _fail(where, "reference", "expected a list of strings")
            ref = tuple(raw)
        out.append(MTQuestion(qid, category, tuple(turns), ref, where))
    return out


def read_mt_bench_reference(path: str | Path) -> dict[str, tuple[str, ...]]:
    """question id (as text) -> the reference answer's turns (``choices[0].turns``)."""
    out, seen = {}, {}
    for _, where, rec in _records(path, "MT-Bench reference answer file"):
        qid = _id(rec, where, "question_id")
        _unique(seen, qid_key(qid), where, "question_id")
        choices = _need(rec, where, "choices", list, "a non-empty list")
        if not choices or not isinstance(choices[0], dict):
            _fail(where, "choices", "expected a non-empty list of {'index', 'turns'} objects")
        out[qid_key(qid)] = tuple(_turns(choices[0], where, "turns", allow_empty_text=True, prefix="choices[0]."))
    return out


@dataclass(frozen=True)
class MTJudgePrompt:
    name: str
    type: str
    system_prompt: str
    prompt_template: str
    output_format: str
    where: str = ""

    def text(self) -> str:
        """The full template text (system prompt and user template), for the cache key."""
        return f"[system]\n{self.system_prompt}\n[user]\n{self.prompt_template}"


def read_mt_bench_judge_prompts(path: str | Path) -> dict[str, MTJudgePrompt]:
    """Every judge prompt of the file, by name; the four single-grading ones must be there,
    of type "single", with output format "[[rating]]" and their placeholders."""
    path = Path(path)
    prompts, seen = {}, {}
    for _, where, rec in _records(path, "MT-Bench judge prompt file"):
        name = _need(rec, where, "name", str, "a string")
        _unique(seen, name, where, "name")
        fields = {f: _need(rec, where, f, str, "a string")
                  for f in ("type", "system_prompt", "prompt_template", "output_format")}
        prompts[name] = MTJudgePrompt(name, fields["type"], fields["system_prompt"], fields["prompt_template"],
                                      fields["output_format"], where)
    for name, needed in MT_BENCH_SINGLE_PROMPTS.items():
        if name not in prompts:
            raise ValueError(f"{path}: field 'name': no judge prompt named {name!r} (single-answer grading "
                             f"needs {', '.join(MT_BENCH_SINGLE_PROMPTS)})")
        p = prompts[name]
        if p.type != "single":
            _fail(p.where, "type", f"{name} must be of type 'single', got {p.type!r}")
        if p.output_format != "[[rating]]":
            _fail(p.where, "output_format", f"{name} must ask for '[[rating]]', got {p.output_format!r}")
        used = _placeholders(p.prompt_template, p.where, "prompt_template")
        missing = [f for f in needed if f not in used]
        if missing:
            _fail(p.where, "prompt_template", f"{name} lacks the placeholder {{{missing[0]}}}")
        allowed = set(MT_BENCH_SINGLE_PROMPTS["single-math-v1-multi-turn"]) | {"question", "answer"}
        unknown = sorted(used - allowed)
        if unknown:
            _fail(p.where, "prompt_template", f"{name} uses the unknown placeholder {{{unknown[0]}}}")
    return prompts


# ========================================================================== Arena-Hard
@dataclass(frozen=True)
class AHQuestion:
    question_id: Any
    turns: tuple[str, ...]
    category: str | None = None
    cluster: str | None = None
    where: str = ""


def read_arena_hard_questions(path: str | Path) -> list[AHQuestion]:
    out, seen = [], {}
    for _, where, rec in _records(path, "Arena-Hard question file"):
        qid = _id(rec, where, "question_id", "uid")
        _unique(seen, qid_key(qid), where, "question_id")
        turns = _turns(rec, where)
        extra = {}
        for f in ("category", "cluster"):
            if rec.get(f) is not None:
                extra[f] = _need(rec, where, f, str, "a string")
        out.append(AHQuestion(qid, tuple(turns), extra.get("category"), extra.get("cluster"), where))
    return out


@dataclass(frozen=True)
class AHAnswer:
    question_id: Any
    model_id: str | None
    turns: tuple[str, ...]
    token_len: tuple[int | None, ...]
    where: str = ""


def read_arena_hard_answers(path: str | Path) -> dict[str, AHAnswer]:
    """question id (as text) -> the answer (``choices[0].turns[*].content``, ``token_len``)."""
    out, seen = {}, {}
    for _, where, rec in _records(path, "Arena-Hard answer file"):
        qid = _id(rec, where, "question_id", "uid")
        _unique(seen, qid_key(qid), where, "question_id")
        model_id = rec.get("model_id", rec.get("model"))
        if model_id is not None and not isinstance(model_id, str):
            _fail(where, "model_id", "expected a string")
        choices = _need(rec, where, "choices", list, "a non-empty list")
        if not choices or not isinstance(choices[0], dict):
            _fail(where, "choices", "expected a non-empty list of {'index', 'turns'} objects")
        turns = _turns(choices[0], where, "turns", allow_empty_text=True, prefix="choices[0].")
        lens = []
        for k, t in enumerate(choices[0]["turns"]):
            n = t.get("token_len") if isinstance(t, dict) else None
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
                _fail(where, f"choices[0].turns[{k}].token_len", f"expected an integer >= 0, got {n!r}")
            lens.append(n)
        out[qid_key(qid)] = AHAnswer(qid, model_id, tuple(turns), tuple(lens), where)
    return out


@dataclass(frozen=True)
class AHJudgeConfig:
    system_prompt: str
    prompt_template: tuple[str, ...]
    regex_pattern: str
    settings: dict = field(default_factory=dict)     # the other keys (judge_model, baseline_model, ...)
    path: str = ""

    def text(self) -> str:
        return "[system]\n" + self.system_prompt + "".join(f"\n[user]\n{t}" for t in self.prompt_template)


def _yaml_lines(text: str) -> dict[str, int]:
    """Top-level key -> its line (1-based), from the YAML node tree."""
    import yaml

    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def read_arena_hard_judge_config(path: str | Path, *, expected_pattern: str | None = None) -> AHJudgeConfig:
    """``config/judge_config.yaml``. ``expected_pattern``: the verdict regex our parser implements;
    a config asking for another is refused (its verdicts would be read wrong)."""
    import yaml

    path = Path(path)
    text = read_text(path, "Arena-Hard judge config")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{path}{line}: not valid YAML ({getattr(err, 'problem', None) or err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a YAML mapping with system_prompt, prompt_template, regex_pattern")
    lines = _yaml_lines(text)

    def where(key):
        return f"{path}:{lines[key]}" if key in lines else str(path)

    for key in ("system_prompt", "prompt_template", "regex_pattern"):
        if key not in data:
            raise ValueError(f"{path}: field '{key}': missing")
    system = data["system_prompt"]
    if not isinstance(system, str) or not system.strip():
        _fail(where("system_prompt"), "system_prompt", "expected a non-empty string")
    templates = data["prompt_template"]
    if isinstance(templates, str):
        templates = [templates]
    if (not isinstance(templates, list) or not templates
            or not all(isinstance(t, str) and t.strip() for t in templates)):
        _fail(where("prompt_template"), "prompt_template", "expected a list of non-empty strings")
    used = set()
    for t in templates:
        used |= _placeholders(t, where("prompt_template"), "prompt_template")
    for name in sorted(used):
        m = _AH_FIELD.match(name)
        if not m:
            _fail(where("prompt_template"), "prompt_template", f"unknown placeholder {{{name}}}")
        if m.group(1) == "ref_answer":
            _fail(where("prompt_template"), "prompt_template",
                  f"{{{name}}}: reference answers are not supported (Arena-Hard v0.1 judges without them)")
    for name in ("question_1", "answer_1", "answer_2"):
        if name not in used:
            _fail(where("prompt_template"), "prompt_template", f"lacks the placeholder {{{name}}}")
    pattern = data["regex_pattern"]
    if not isinstance(pattern, str):
        _fail(where("regex_pattern"), "regex_pattern", "expected a string")
    try:
        re.compile(pattern)
    except re.error as err:
        _fail(where("regex_pattern"), "regex_pattern", f"not a valid regular expression ({err})")
    if expected_pattern is not None and pattern != expected_pattern:
        _fail(where("regex_pattern"), "regex_pattern",
              f"{pattern!r} is not the v0.1 verdict pattern {expected_pattern!r} the parser implements")
    settings = {k: v for k, v in data.items() if k not in ("system_prompt", "prompt_template", "regex_pattern")
                and isinstance(v, (str, int, float, bool, type(None), list))}
    return AHJudgeConfig(system, tuple(templates), pattern, settings, str(path))


# =========================================================================== WildBench
@dataclass(frozen=True)
class WBRecord:
    session_id: str
    conversation_input: tuple[dict, ...]
    checklist: tuple[str, ...]
    primary_tag: str
    secondary_tags: tuple[str, ...]
    where: str = ""

    @property
    def history(self) -> list[dict]:
        """The messages before the last user query."""
        return [{"role": m["role"], "content": m["content"]} for m in self.conversation_input[:-1]]

    @property
    def last_query(self) -> str:
        return self.conversation_input[-1]["content"]

    @property
    def tags(self) -> list[str]:
        return [self.primary_tag, *self.secondary_tags]


def read_wildbench_records(path: str | Path) -> list[WBRecord]:
    from negfree.evaluate.judge.aggregate import WB_TASK_GROUPS

    def tag(value, where, fld):
        if not isinstance(value, str) or value not in WB_TASK_GROUPS:
            _fail(where, fld, f"{value!r} is not a WildBench task tag ({', '.join(WB_TASK_GROUPS)})")
        return value

    out, seen = [], {}
    for _, where, rec in _records(path, "WildBench record file"):
        sid = _id(rec, where, "session_id")
        _unique(seen, qid_key(sid), where, "session_id")
        conv = _need(rec, where, "conversation_input", list, "a non-empty list of {'role', 'content'}")
        if not conv:
            _fail(where, "conversation_input", "empty")
        for k, m in enumerate(conv):
            if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
                _fail(where, f"conversation_input[{k}].role", "expected 'user' or 'assistant'")
            if not isinstance(m.get("content"), str):
                _fail(where, f"conversation_input[{k}].content", "expected a string")
        if conv[-1]["role"] != "user":
            _fail(where, f"conversation_input[{len(conv) - 1}].role", "the last message must be the user's query")
        checklist = _need(rec, where, "checklist", list, "a list of strings")
        if not all(isinstance(c, str) for c in checklist):
            _fail(where, "checklist", "expected a list of strings")
        primary = tag(rec.get("primary_tag"), where, "primary_tag")
        secondary = rec.get("secondary_tags") or []
        if not isinstance(secondary, list):
            _fail(where, "secondary_tags", "expected a list of strings")
        secondary = [tag(t, where, f"secondary_tags[{k}]") for k, t in enumerate(secondary)]
        out.append(WBRecord(str(sid), tuple(dict(m) for m in conv), tuple(checklist), primary,
                            tuple(secondary), where))
    return out


def read_wildbench_template(path: str | Path) -> str:
    """``eval_template.score.v2.md``: the text, with its four placeholders checked."""
    path = Path(path)
    text = read_text(path, "WildBench score template")
    for ph in WILDBENCH_PLACEHOLDERS:
        if ph not in text:
            raise ValueError(f"{path}: field '{ph}': placeholder missing (the score template needs "
                             f"{', '.join(WILDBENCH_PLACEHOLDERS)})")
    if '"score"' not in text:
        raise ValueError(f"{path}: field 'score': the template does not ask for a JSON \"score\"")
    return text
