"""Judge a model's answers on Arena-Hard v0.1, MT-Bench or WildBench v2, from files, and write
one result JSON per (run, benchmark).

Requests, built from the OFFICIAL template files (:mod:`negfree.evaluate.judged.sources`) and
the answers of :mod:`negfree.evaluate.judged.answers`:

- Arena-Hard v0.1 (gen_judgment.py): two games per prompt, a system message (the config's
  ``system_prompt``) then one user message per ``prompt_template`` entry, formatted with
  ``question_k`` and ``answer_k`` (the first-placed answer's turns, then the second's). Game
  ``model_as_b`` puts the baseline (gpt-4-0314) as assistant A and the model as B (the
  benchmark's first game); game ``model_as_a`` swaps them. Verdicts:
  :func:`~negfree.evaluate.judge.verdicts.parse_arena_hard`; scores:
  :func:`~negfree.evaluate.judge.aggregate.arena_hard_score` and
  :func:`~negfree.evaluate.judge.aggregate.arena_hard_length_controlled`.
- MT-Bench (FastChat gen_judgment.py, ``--mode single``): one grading per turn, a system
  message (the prompt's ``system_prompt``) and a user message. Turn 1: ``single-v1``, or
  ``single-math-v1`` with the reference answer for math, reasoning and coding; turn 2:
  ``single-v1-multi-turn`` / ``single-math-v1-multi-turn`` with both turns (and both
  reference turns). Verdicts: :func:`~negfree.evaluate.judge.verdicts.parse_mt_bench`;
  score: :func:`~negfree.evaluate.judge.aggregate.mt_bench_score`.
- WildBench v2 (src/eval.py, ``--mode score``): one user message, the template with
  ``{$history}`` (``USER: ...`` / ``ASSISTANT: ...`` turns, each followed by a blank line),
  ``{$user_query}``, ``{$model_output}`` (these three cut to ``max_words`` words, 1000 in
  WildBench's scripts, with "... (truncated)") and ``{$checklist}`` ("- item" lines). An
  empty answer is scored 1 without asking, as WildBench does. Verdicts:
  :func:`~negfree.evaluate.judge.verdicts.parse_wildbench_score`; scores:
  :func:`~negfree.evaluate.judge.aggregate.wildbench_score` (and ``wildbench_elo``, which one
  model's scores cannot give: recorded as not computable).

Judging: :class:`~negfree.evaluate.judge.client.JudgeClient` with a
:class:`~negfree.evaluate.judge.client.JudgeSpec` (any OpenAI-compatible server) or the
OFFLINE judge (``"offline"``: a hash, not a model; its numbers are never judged results and
the result says so), through a :class:`~negfree.evaluate.judge.cache.JudgementCache` in
``cache_dir``: a judgement is asked once, across reruns.

Failure rule: every request is asked (retries and malformed replies are the client's
business); a judgement that still fails is not cached. When the failed fraction of the
benchmark's judgements is above ``max_failed_fraction`` (default 0: any failure) the job
fails with one line AFTER everything else was judged and cached, and writes no result: the
rerun asks only the failed ones. At or below it, the result is written with the failed
judgements left out of the scores and counted (``failed``, ``failed_fraction``).
"""
from __future__ import annotations

import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable

from negfree.common.io import check_writable, write_json, write_jsonl
from negfree.evaluate.judge.aggregate import (arena_hard_length_controlled, arena_hard_score, mt_bench_score,
                                              wildbench_elo, wildbench_score)
from negfree.evaluate.judge.cache import JudgementCache
from negfree.evaluate.judge.client import JudgeClient, JudgeError, JudgeRequest, JudgeSpec
from negfree.evaluate.judge.offline import OFFLINE_JUDGE_NAME, OfflineTransport, offline_spec, offline_transport
from negfree.evaluate.judge.verdicts import (_ARENA_HARD_PATTERN, parse_arena_hard, parse_mt_bench,
                                             parse_wildbench_score)
from negfree.evaluate.judged.answers import benchmark_name, read_answer_file
from negfree.evaluate.judged.sources import (InputFile, qid_key, read_arena_hard_answers,
                                             read_arena_hard_judge_config, read_arena_hard_questions,
                                             read_mt_bench_judge_prompts, read_mt_bench_questions,
                                             read_mt_bench_reference, read_wildbench_records,
                                             read_wildbench_template)

FORMAT = "negfree-judged-result/1"
WILDBENCH_MAX_WORDS = 1000
WB_TRUNCATION = "... (truncated)"
INFO = {
    "arena_hard": {"protocol": "arena_hard_v0.1", "title": "Arena-Hard-Auto v0.1",
                   "kind": "arena_hard_v0.1_pairwise", "parse": parse_arena_hard, "judge_max_tokens": 4096,
                   "source": "lmarena-ai/arena-hard-auto gen_judgment.py, show_result.py (v0.1)"},
    "mt_bench": {"protocol": "mt_bench", "title": "MT-Bench (single-answer grading)",
                 "kind": "mt_bench_single", "parse": parse_mt_bench, "judge_max_tokens": 2048,
                 "source": "lm-sys/FastChat fastchat/llm_judge gen_judgment.py --mode single, common.py"},
    "wildbench": {"protocol": "wildbench_v2", "title": "WildBench v2 (score mode)",
                  "kind": "wildbench_v2_score", "parse": parse_wildbench_score, "judge_max_tokens": 1024,
                  "source": "allenai/WildBench src/eval.py --mode score, eval_template.score.v2.md"},
}
FAILURE_RULE = ("every judgement is asked and the successes cached; if more than max_failed_fraction of "
                "the benchmark's judgements still fail, the job fails with one line after judging the rest "
                "and writes no result (a rerun asks only the failed ones); otherwise the failed ones are "
                "left out of the scores and counted here")


# ------------------------------------------------------------------------------- judge
def make_client(judge, cache_dir: str | Path, parse: Callable, *, transport=None,
                sleep: Callable | None = None) -> tuple[JudgeClient, bool]:
    """(client, offline): ``judge`` is ``"offline"``, a :class:`JudgeSpec` or its mapping."""
    cache = JudgementCache(cache_dir)
    if judge is None or judge == "offline":
        return JudgeClient(offline_spec(), cache, parse, transport=transport or offline_transport,
                           sleep=lambda s: None), True
    spec = judge if isinstance(judge, JudgeSpec) else JudgeSpec.from_dict(dict(judge))
    kwargs = {"sleep": sleep} if sleep is not None else {}
    client = JudgeClient(spec, cache, parse, transport=transport, **kwargs)
    offline = isinstance(transport, OfflineTransport) or spec.model == OFFLINE_JUDGE_NAME
    return client, offline


def judge_record(spec: JudgeSpec, offline: bool) -> dict:
    parts = urllib.parse.urlsplit(spec.base_url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return {"name": spec.name, "model": spec.model, "base_url_host": host, "offline": offline,
            "temperature": spec.temperature, "max_tokens": spec.max_tokens, "max_retries": spec.max_retries,
            "max_concurrency": spec.max_concurrency}


# ----------------------------------------------------------------------------- answers
def read_answers(path: str | Path, benchmark: str, questions_sha256: str) -> tuple[dict[str, dict], dict]:
    """question id (text) -> answer record, and the (one) model and settings of the file."""
    lines = read_answer_file(path)
    if not lines:
        raise ValueError(f"{path}: no answers (negfree judged-answers writes them)")
    first_where, first = lines[0]
    model, settings = first.get("model"), first.get("settings") or {}
    out = {}
    for where, rec in lines:
        if rec.get("model") != model:
            raise ValueError(f"{where}: field 'model': {rec.get('model')!r}, the file's first line has {model!r}")
        if (rec.get("settings") or {}) != settings:
            raise ValueError(f"{where}: field 'settings': differs from the file's first line ({first_where})")
        if not all(isinstance(t, str) for t in rec["turns"]):
            raise ValueError(f"{where}: field 'turns': expected a list of strings")
        key = qid_key(rec["question_id"])
        if key in out:
            raise ValueError(f"{where}: field 'question_id': {key!r} answered twice")
        out[key] = rec
    if settings.get("benchmark") not in (None, benchmark):
        raise ValueError(f"{first_where}: field 'settings.benchmark': answers for {settings['benchmark']!r}, "
                         f"not {benchmark!r}")
    if settings.get("questions_sha256") not in (None, questions_sha256):
        raise ValueError(f"{first_where}: field 'settings.questions_sha256': the answers were generated from "
                         f"another question file (sha256 {settings['questions_sha256'][:12]}..., this one "
                         f"{questions_sha256[:12]}...)")
    return out, {"model": model, "settings": settings}


def _answer_for(answers: dict, qid, n_turns: int, path) -> dict:
    rec = answers.get(qid_key(qid))
    if rec is None:
        raise ValueError(f"{path}: field 'question_id': no answer to question {qid!r} (run negfree "
                         f"judged-answers again: it resumes)")
    if len(rec["turns"]) != n_turns:
        raise ValueError(f"{path}: field 'turns': question {qid!r} has {n_turns} turn(s), its answer "
                         f"{len(rec['turns'])}")
    return rec


def _format(template: str, args: dict, where: str, what: str) -> str:
    try:
        return template.format(**args)
    except KeyError as err:
        raise ValueError(f"{where}: field 'prompt_template': {what}: no value for {{{err.args[0]}}}") from None
    except (IndexError, ValueError) as err:
        raise ValueError(f"{where}: field 'prompt_template': {what}: {err}") from None


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return float(sum(xs) / len(xs)) if xs else None


# ---------------------------------------------------------------------------- builders
def _arena_hard(questions, answers, baseline, config, answers_path, baseline_path):
    """(requests, slots, lengths, length record): slots[i] = (question index, game key)."""
    text = config.text()
    requests, slots, m_chars, b_chars, m_tokens, b_tokens = [], [], [], [], [], []
    for qi, q in enumerate(questions):
        ans = _answer_for(answers, q.question_id, len(q.turns), answers_path)
        base = baseline.get(qid_key(q.question_id))
        if base is None:
            raise ValueError(f"{baseline_path}: field 'question_id': no baseline answer to question {q.question_id!r}")
        model_turns, base_turns = list(ans["turns"]), list(base.turns)
        for game, first, second in (("model_as_b", base_turns, model_turns), ("model_as_a", model_turns, base_turns)):
            args = {f"question_{i + 1}": t for i, t in enumerate(q.turns)}
            args.update({f"answer_{i + 1}": t for i, t in enumerate(first)})
            args.update({f"answer_{i + 1 + len(first)}": t for i, t in enumerate(second)})
            msgs = [{"role": "system", "content": config.system_prompt}]
            msgs += [{"role": "user", "content": _format(t, args, config.path, f"question {q.question_id!r}")}
                     for t in config.prompt_template]
            requests.append(JudgeRequest(kind=INFO["arena_hard"]["kind"], messages=msgs, template=text,
                                         instruction=list(q.turns),
                                         outputs=("\n\n".join(first), "\n\n".join(second)),
                                         order="ab" if game == "model_as_a" else "ba",
                                         id=f"{q.question_id}/{game}"))
            slots.append((qi, game))
        m_chars.append(sum(len(t) for t in model_turns))
        b_chars.append(sum(len(t) for t in base_turns))
        m_tokens.append(sum(ans["n_tokens"]) if isinstance(ans.get("n_tokens"), list) else None)
        b_tokens.append(sum(base.token_len) if base.token_len and None not in base.token_len else None)
    return requests, slots, (m_chars, b_chars, m_tokens, b_tokens)


def _mt_bench(questions, answers, prompts, reference, answers_path, reference_path):
    requests, slots = [], []
    for qi, q in enumerate(questions):
        ans = _answer_for(answers, q.question_id, len(q.turns), answers_path)
        refkw = {}
        if q.needs_reference:
            if reference is None:
                raise ValueError(f"{q.where}: field 'category': {q.category!r} questions are judged against "
                                 f"reference answers: give the reference answer file")
            ref = reference.get(qid_key(q.question_id))
            if ref is None or len(ref) < len(q.turns):
                raise ValueError(f"{reference_path}: field 'question_id': no {len(q.turns)}-turn reference answer "
                                 f"to question {q.question_id!r}")
            refkw = {f"ref_answer_{i + 1}": r for i, r in enumerate(ref)}
        for turn in range(len(q.turns)):
            if turn == 0:
                p = prompts["single-math-v1" if q.needs_reference else "single-v1"]
                args = {"question": q.turns[0], "answer": ans["turns"][0], **refkw}
            else:
                p = prompts["single-math-v1-multi-turn" if q.needs_reference else "single-v1-multi-turn"]
                args = {"question_1": q.turns[0], "question_2": q.turns[1], "answer_1": ans["turns"][0],
                        "answer_2": ans["turns"][1], **refkw}
            user = _format(p.prompt_template, args, p.where, f"{p.name}, question {q.question_id!r}")
            msgs = [{"role": "system", "content": p.system_prompt}, {"role": "user", "content": user}]
            requests.append(JudgeRequest(kind=f"{INFO['mt_bench']['kind']}:{p.name}", messages=msgs,
                                         template=p.text(), instruction=list(q.turns[:turn + 1]),
                                         outputs=tuple(ans["turns"][:turn + 1]), order="",
                                         id=f"{q.question_id}/turn{turn + 1}"))
            slots.append((qi, turn))
    return requests, slots


def shorten(text: str, max_words: int | None) -> str:
    """WildBench's cut: more than ``max_words`` space-separated words -> the first ``max_words``
    and "... (truncated)"."""
    if max_words and max_words > 0:
        words = text.split(" ")
        if len(words) > max_words:
            return " ".join(words[:max_words]) + WB_TRUNCATION
    return text


def wildbench_history(record) -> str:
    parts = []
    for m in record.history:
        parts.append(("USER: " if m["role"] == "user" else "ASSISTANT: ") + m["content"] + "\n\n")
    return "".join(parts)


def _wildbench(records, answers, template, answers_path, max_words):
    requests, slots, fixed = [], [], {}
    for ri, r in enumerate(records):
        ans = _answer_for(answers, r.session_id, 1, answers_path)
        output = ans["turns"][0]
        if not output.strip():           # WildBench: an empty answer is scored 1, the judge not asked
            fixed[ri] = 1.0
            continue
        checklist = "".join(f"- {c}\n" for c in r.checklist)
        prompt = (template.replace("{$history}", shorten(wildbench_history(r), max_words))
                  .replace("{$user_query}", shorten(r.last_query, max_words))
                  .replace("{$model_output}", shorten(output, max_words))
                  .replace("{$checklist}", checklist))
        requests.append(JudgeRequest(kind=INFO["wildbench"]["kind"], messages=[{"role": "user", "content": prompt}],
                                     template=template, instruction={"history": r.history, "query": r.last_query,
                                                                     "checklist": list(r.checklist)},
                                     outputs=(output,), order="", id=str(r.session_id)))
        slots.append((ri, 0))
    return requests, slots, fixed


# ------------------------------------------------------------------------------- usage
def _usage(judgements) -> dict:
    keys = ("prompt_tokens", "completion_tokens", "total_tokens")
    total = {k: 0 for k in keys}
    fresh = {k: 0 for k in keys}
    with_usage = 0
    for j in judgements:
        if not j.ok or not isinstance(j.usage, dict):
            continue
        with_usage += 1
        for k in keys:
            v = j.usage.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                total[k] += int(v)
                if not j.cached:
                    fresh[k] += int(v)
    return {**total, "judgements_with_usage": with_usage, "this_run": fresh}


# -------------------------------------------------------------------------------- main
def evaluate_judged(benchmark: str, *, answers: str | Path, questions: str | Path, templates: str | Path,
                    out: str | Path, cache_dir: str | Path, judge: Any = "offline",
                    baseline: str | Path | None = None, reference: str | Path | None = None,
                    max_failed_fraction: float = 0.0, limit: int | None = None, run: str | None = None,
                    wildbench_max_words: int | None = WILDBENCH_MAX_WORDS, transport=None,
                    sleep: Callable | None = None) -> dict:
    """Judge ``answers`` on ``benchmark`` and write ``out`` (+ ``<stem>.judgements.jsonl``);
    returns the result. ``templates``: MT-Bench judge_prompts.jsonl, Arena-Hard
    judge_config.yaml, WildBench eval_template.score.v2.md. ``baseline``: Arena-Hard's
    model_answer/gpt-4-0314.jsonl. ``reference``: MT-Bench's reference_answer/gpt-4.jsonl.
    ``judge``: "offline", a :class:`JudgeSpec` or its mapping. ``transport``/``sleep`` go to
    the client (tests)."""
    benchmark = benchmark_name(benchmark)
    info = INFO[benchmark]
    if not 0.0 <= float(max_failed_fraction) <= 1.0:
        raise ValueError(f"max_failed_fraction must be in [0, 1], got {max_failed_fraction}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    out = Path(out)
    check_writable(out, "result")
    check_writable(cache_dir, "judge cache")
    inputs = {"questions": InputFile.of("questions", questions),
              "judge_template": InputFile.of("judge_template", templates)}

    # ---- read everything first: a bad file fails before any request
    if benchmark == "arena_hard":
        if baseline is None:
            raise ValueError("Arena-Hard needs the baseline answers (model_answer/gpt-4-0314.jsonl)")
        qs = read_arena_hard_questions(questions)
        config = read_arena_hard_judge_config(templates, expected_pattern=_ARENA_HARD_PATTERN.pattern)
        base = read_arena_hard_answers(baseline)
        inputs["baseline"] = InputFile.of("baseline", baseline)
    elif benchmark == "mt_bench":
        qs = read_mt_bench_questions(questions)
        prompts = read_mt_bench_judge_prompts(templates)
        ref = read_mt_bench_reference(reference) if reference is not None else None
        if reference is not None:
            inputs["reference"] = InputFile.of("reference", reference)
        if len({len(q.turns) for q in qs}) > 1:
            raise ValueError(f"{questions}: field 'turns': the questions mix 1- and 2-turn ones; MT-Bench's "
                             f"score averages per turn over questions with the same turns")
    else:
        qs = read_wildbench_records(questions)
        wb_template = read_wildbench_template(templates)
    n_in_file = len(qs)
    qs = qs[:limit] if limit else qs
    ans, meta = read_answers(answers, benchmark, inputs["questions"].sha256)
    inputs["answers"] = InputFile.of("answers", answers)
    used_templates: dict[str, str] = {}

    # ---- requests
    fixed: dict[int, float] = {}
    lengths = None
    if benchmark == "arena_hard":
        requests, slots, lengths = _arena_hard(qs, ans, base, config, answers, baseline)
        used_templates["judge_config"] = _sha(config.text())
    elif benchmark == "mt_bench":
        requests, slots = _mt_bench(qs, ans, prompts, ref, answers, reference)
        for name in sorted({r.kind.split(":", 1)[1] for r in requests}):
            used_templates[name] = _sha(prompts[name].text())
    else:
        requests, slots, fixed = _wildbench(qs, ans, wb_template, answers, wildbench_max_words)
        used_templates["eval_template.score.v2"] = _sha(wb_template)

    # ---- judge
    client, offline = make_client(judge, cache_dir, info["parse"], transport=transport, sleep=sleep)
    try:
        judgements = client.judge_many(requests) if requests else []
    finally:
        client.cache.close()
    spec = client.spec
    failed = [j for j in judgements if not j.ok]
    total = len(judgements)
    frac = len(failed) / total if total else 0.0
    if failed and frac > max_failed_fraction:
        raise JudgeError(f"judge {spec.name}: {len(failed)} of {total} {info['title']} judgements failed "
                         f"({100 * frac:.1f}% > the {100 * max_failed_fraction:g}% allowed); the "
                         f"{total - len(failed)} others are cached in {cache_dir}: rerun to ask only the "
                         f"failed ones (first: {failed[0].error})")

    # ---- scores
    verdicts = {slot: j.verdict for slot, j in zip(slots, judgements)}
    results, rows, length = _score(benchmark, qs, ans, verdicts, fixed, lengths)
    primary = results[next(iter(results))]
    stats = client.stats
    result = {
        "format": FORMAT,
        "protocol": info["protocol"],
        "benchmark": info["title"],
        "run": run or meta["model"],
        "model": meta["model"],
        "metric": primary["metric"],
        "value": primary["value"],
        "ci_low": primary.get("ci_low"),
        "ci_high": primary.get("ci_high"),
        "results": results,
        "metrics": [{"task": info["protocol"], **r} for r in rows],
        "n": len(qs),
        "n_questions_in_file": n_in_file,
        "limit": limit,
        "n_judgements": total,
        "scored_without_judge": len(fixed),
        "failed": len(failed),
        "failed_fraction": frac,
        "max_failed_fraction": float(max_failed_fraction),
        "failure_rule": FAILURE_RULE,
        "judge": judge_record(spec, offline),
        "judge_is_offline": offline,
        "judge_usage": {**_usage(judgements), "requests_sent": stats.sent, "cached": stats.cached,
                        "judged": stats.judged, "failed": stats.failed, "malformed": stats.malformed,
                        "rate_limited": stats.rate_limited, "server_errors": stats.server_errors,
                        "connection_errors": stats.connection_errors, "slept_s": stats.slept_s},
        "output_length": length,
        "inputs": {k: v.record() for k, v in inputs.items()},
        "templates_sha256": used_templates,
        "generation": meta["settings"],
        "cache_dir": str(cache_dir),
        "judgements": out.with_suffix(".judgements.jsonl").name,
        "source": info["source"],
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if benchmark == "arena_hard":
        result["judge_config_settings"] = config.settings
    if offline:
        result["warning"] = (f"OFFLINE judge {OFFLINE_JUDGE_NAME}: verdicts are a hash of the prompt, not a "
                             f"model's judgement; these numbers must never be reported as judged results")
    lines = [{"id": j.request.id, "kind": j.request.kind, "order": j.request.order, "verdict": j.verdict,
              "ok": j.ok, "cached": j.cached, "attempts": j.attempts, "error": j.error, "key": j.key,
              "usage": j.usage} for j in judgements]
    lines += [{"id": str(qs[i].session_id), "kind": info["kind"], "order": "", "verdict": v, "ok": True,
               "cached": False, "attempts": 0, "error": None, "key": None, "usage": None,
               "note": "empty answer: scored 1 without asking the judge (WildBench src/eval.py)"}
              for i, v in fixed.items()]
    write_jsonl(out.with_suffix(".judgements.jsonl"), lines)
    write_json(out, result)
    return result


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _score(benchmark, qs, ans, verdicts, fixed, lengths):
    """(results by metric, eval-csv rows, output length record)."""
    answers = [ans[qid_key(q.session_id if benchmark == "wildbench" else q.question_id)] for q in qs]
    chars = [sum(len(t) for t in a["turns"]) for a in answers]
    toks = [sum(a["n_tokens"]) if isinstance(a.get("n_tokens"), list) else None for a in answers]
    length = {"mean_chars": _mean(chars), "mean_tokens": _mean(toks), "unit": "per question, all turns summed; "
              "tokens of the model's own tokenizer (from the answer file)", "n": len(answers)}
    if benchmark == "arena_hard":
        judgments = [{"model_as_a": verdicts.get((i, "model_as_a")), "model_as_b": verdicts.get((i, "model_as_b"))}
                     for i in range(len(qs))]
        m_chars, b_chars, m_tokens, b_tokens = lengths
        wr = arena_hard_score(judgments)
        lc = arena_hard_length_controlled(judgments, m_chars, b_chars, length_unit="chars")
        lc["length_unit_note"] = ("[ours] characters of both answers: the benchmark counts tiktoken tokens "
                                  "(gpt-3.5-turbo encoding), which the model's own answers are not counted in here")
        length["baseline_mean_chars"] = _mean(b_chars)
        length["baseline_mean_token_len"] = _mean(b_tokens)
        length["baseline_token_unit"] = "the baseline file's token_len (tiktoken, as Arena-Hard counts)"
        results = {"win_rate": wr, "lc_win_rate": lc}
        rows = [("win_rate", wr["value"], wr["n"]), ("lc_win_rate", lc["value"], lc["n"])]
    elif benchmark == "mt_bench":
        ratings = [[verdicts.get((i, t)) for t in range(len(q.turns))] for i, q in enumerate(qs)]
        mt = mt_bench_score(ratings)
        by_cat: dict[str, list] = {}
        for q, row in zip(qs, ratings):
            by_cat.setdefault(q.category, []).extend(r for r in row if r is not None)
        mt["by_category"] = {c: {"mean": _mean(v), "n_ratings": len(v)} for c, v in sorted(by_cat.items())}
        results = {"score": mt}
        rows = [("score", mt["value"], mt["n"])] + [(f"score_turn{t['turn']}", t["value"], t["n"]) for t in mt["turns"]]
        length["per_turn_mean_chars"] = [_mean([len(a["turns"][t]) for a in answers if len(a["turns"]) > t])
                                         for t in range(max(len(q.turns) for q in qs))]
    else:
        items = []
        for i, (r, a) in enumerate(zip(qs, answers)):
            score = fixed[i] if i in fixed else verdicts.get((i, 0))
            items.append({"score": score, "tags": r.tags, "output": a["turns"][0]})
        wb = wildbench_score(items)
        results = {"wb_score": wb, "wb_elo": wildbench_elo(items)}
        rows = [("wb_score_task_macro", wb["value"], wb["n"]), ("wb_score_plain", wb["wb_score_plain"], wb["n"])]
        length["leaderboard_mean_chars"] = wb["mean_length_chars"]
    rows += [("mean_length_chars", length["mean_chars"], len(answers))]
    if length["mean_tokens"] is not None:
        rows.append(("mean_length_tokens", length["mean_tokens"], len(answers)))
    return results, [{"metric": m, "value": v, "stderr": None, "n": n} for m, v, n in rows], length
