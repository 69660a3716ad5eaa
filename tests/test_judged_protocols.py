"""The judged benchmarks end to end from files (negfree.evaluate.judged): Arena-Hard v0.1,
MT-Bench and WildBench v2.

The fixtures in configs/judged/demo/ (and tests/data/judged/malformed/) are PROJECT-MADE: the official file formats with our own
prompts, answers and stand-in judge templates (labelled as such in their text). Judging runs on
the OFFLINE judge (a hash, not a model) or on the stub OpenAI-compatible server of
tests/judge_stub.py on 127.0.0.1: nothing leaves the machine."""
import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from judge_stub import StubServer, messages_hash  # noqa: E402

from negfree.evaluate.aggregate import rows_from_record  # noqa: E402
from negfree.evaluate.judge import JudgeError, JudgeSpec  # noqa: E402
from negfree.evaluate.judge.verdicts import _ARENA_HARD_PATTERN  # noqa: E402
from negfree.evaluate.judged import answers as A  # noqa: E402
from negfree.evaluate.judged import run as R  # noqa: E402
from negfree.evaluate.judged import sources as S  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

DATA = Path(__file__).resolve().parents[1] / "configs" / "judged" / "demo"   # also the demo's
BROKEN = Path(__file__).resolve().parent / "data" / "judged" / "malformed"
MT_Q = DATA / "mt_bench" / "question.jsonl"
MT_REF = DATA / "mt_bench" / "reference_answer" / "negfree-reference.jsonl"
MT_PROMPTS = DATA / "mt_bench" / "judge_prompts.jsonl"
AH_Q = DATA / "arena_hard" / "question.jsonl"
AH_BASE = DATA / "arena_hard" / "model_answer" / "negfree-baseline.jsonl"
AH_CONFIG = DATA / "arena_hard" / "judge_config.yaml"
WB_RECORDS = DATA / "wildbench" / "wildbench_v2_test.jsonl"
WB_TEMPLATE = DATA / "wildbench" / "eval_template.score.v2.md"
FILES = {"arena_hard": dict(questions=AH_Q, templates=AH_CONFIG, baseline=AH_BASE),
         "mt_bench": dict(questions=MT_Q, templates=MT_PROMPTS, reference=MT_REF),
         "wildbench": dict(questions=WB_RECORDS, templates=WB_TEMPLATE)}
NEW_TOKENS = 8


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def lines(path) -> list[dict]:
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


@pytest.fixture(scope="module")
def answered(tiny_model_dir, tmp_path_factory):
    """The tiny model's greedy answers to each benchmark's fixture prompts, made once."""
    root = tmp_path_factory.mktemp("judged_answers")
    out = {}
    for bench, files in FILES.items():
        out[bench] = root / f"{bench}.jsonl"
        A.generate_answers(tiny_model_dir, bench, files["questions"], out[bench], max_new_tokens=NEW_TOKENS,
                           batch_size=4, name="tiny")
    return out


# ============================================================================ readers
def test_the_readers_read_each_official_format():
    qs = S.read_mt_bench_questions(MT_Q)
    assert [q.question_id for q in qs] == [901, 902, 903]
    assert [q.needs_reference for q in qs] == [False, True, True]          # math, reasoning use references
    assert qs[1].reference == ("7", "14") and len(qs[0].turns) == 2
    assert S.read_mt_bench_reference(MT_REF)["902"] == ("3 plus 4 is 7.", "7 times 2 is 14.")
    prompts = S.read_mt_bench_judge_prompts(MT_PROMPTS)
    assert set(S.MT_BENCH_SINGLE_PROMPTS) <= set(prompts) and prompts["single-v1"].output_format == "[[rating]]"
    assert all("PROJECT-MADE" in p.system_prompt for p in prompts.values())

    ah = S.read_arena_hard_questions(AH_Q)
    assert len(ah) == 3 and ah[0].turns == ("Name a primary colour.",) and ah[0].cluster == "negfree tests"
    base = S.read_arena_hard_answers(AH_BASE)
    assert base[ah[1].question_id].turns == ("A spider has eight legs.",) and base[ah[1].question_id].token_len == (6,)
    cfg = S.read_arena_hard_judge_config(AH_CONFIG, expected_pattern=_ARENA_HARD_PATTERN.pattern)
    assert len(cfg.prompt_template) == 1 and "PROJECT-MADE" in cfg.system_prompt
    assert cfg.settings["baseline_model"] == "negfree-baseline" and cfg.regex_pattern == _ARENA_HARD_PATTERN.pattern

    wb = S.read_wildbench_records(WB_RECORDS)
    assert [r.session_id for r in wb][:2] == ["negfree-wb-1", "negfree-wb-2"]
    assert wb[1].history == [{"role": "user", "content": "I have 3 apples."},
                             {"role": "assistant", "content": "Good, you have 3 apples."}]
    assert wb[1].last_query == "I eat one. How many are left?" and wb[1].tags == ["Math", "Reasoning"]
    assert "PROJECT-MADE" in S.read_wildbench_template(WB_TEMPLATE)
    assert S.InputFile.of("q", MT_Q).sha256 == sha(MT_Q)


MALFORMED = [  # (file, reader, what the one line must name)
    ("mt_question.jsonl", S.read_mt_bench_questions, ":2: field 'turns'"),
    ("mt_reference.jsonl", S.read_mt_bench_reference, ":1: field 'choices'"),
    ("mt_judge_prompts.jsonl", S.read_mt_bench_judge_prompts, ":2: field 'prompt_template'"),
    ("ah_question.jsonl", S.read_arena_hard_questions, ":2: field 'turns[0]'"),
    ("ah_answer.jsonl", S.read_arena_hard_answers, ":1: field 'choices[0].turns[0].token_len'"),
    ("ah_judge_config.yaml", S.read_arena_hard_judge_config, ":4: field 'prompt_template'"),
    ("wb_records.jsonl", S.read_wildbench_records, ":2: field 'primary_tag'"),
    ("wb_template.md", S.read_wildbench_template, ": field '{$checklist}'"),
]


@pytest.mark.parametrize("name, reader, names", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_a_malformed_file_fails_in_one_line_naming_file_line_and_field(name, reader, names):
    path = BROKEN / name
    with pytest.raises(ValueError) as err:
        reader(path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(path)) and names in msg


def test_a_config_asking_for_another_verdict_pattern_is_refused(tmp_path):
    cfg = tmp_path / "judge_config.yaml"
    cfg.write_text(AH_CONFIG.read_text().replace(r"regex_pattern: \[\[([AB<>=]+)\]\]", r"regex_pattern: \[\[(.+)\]\]"))
    with pytest.raises(ValueError, match=r"judge_config.yaml:\d+: field 'regex_pattern'"):
        S.read_arena_hard_judge_config(cfg, expected_pattern=_ARENA_HARD_PATTERN.pattern)


# ============================================================================ answers
def test_mt_bench_second_turn_is_generated_after_the_models_own_first_answer(tiny_model_dir, tmp_path,
                                                                            monkeypatch):
    seen = []
    real = A._generate_turn

    def spy(model, tok, conversations, **kw):
        seen.append((tok, [list(c) for c in conversations]))
        return real(model, tok, conversations, **kw)

    monkeypatch.setattr(A, "_generate_turn", spy)
    out = tmp_path / "mt.jsonl"
    res = A.generate_answers(tiny_model_dir, "mt-bench", MT_Q, out, max_new_tokens=NEW_TOKENS, batch_size=2,
                             name="tiny")
    recs = lines(out)
    assert res["n"] == res["generated"] == 3 and [r["question_id"] for r in recs] == [901, 902, 903]
    for r in recs:
        assert set(r) >= {"question_id", "turns", "model", "settings"} and r["model"] == "tiny"
        assert len(r["turns"]) == 2 and r["settings"]["decoding"] == "greedy"
        assert r["settings"]["questions_sha256"] == sha(MT_Q)
    # batches of 2: [901, 902] turn 1, turn 2, then [903] turn 1, turn 2
    assert [len(c) for _, c in seen] == [2, 2, 1, 1]
    questions = {q.question_id: q for q in S.read_mt_bench_questions(MT_Q)}
    second_turns = seen[1][1] + seen[3][1]
    for rec, conv in zip(recs, second_turns):
        q = questions[rec["question_id"]]
        assert conv == [{"role": "user", "content": q.turns[0]},
                        {"role": "assistant", "content": rec["turns"][0]},   # the model's OWN first answer
                        {"role": "user", "content": q.turns[1]}]
        tok = seen[1][0]
        rendered = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        # the chat template renders: user t1, assistant a1 (closed by eos), user t2, then the answer's start
        i1 = rendered.index(f"<|user|>\n{q.turns[0]}")
        i2 = rendered.index(f"<|assistant|>\n{rec['turns'][0]}{tok.eos_token}", i1)
        i3 = rendered.index(f"<|user|>\n{q.turns[1]}", i2)
        assert rendered.endswith("<|assistant|>\n") and rendered.count("<|assistant|>") == 2 and i3 > i2


def test_answers_resume_after_a_kill_and_refuse_other_settings(tiny_model_dir, tmp_path, monkeypatch):
    full = tmp_path / "full.jsonl"
    A.generate_answers(tiny_model_dir, "arena_hard", AH_Q, full, max_new_tokens=NEW_TOKENS, batch_size=1)
    done = full.read_text().splitlines(keepends=True)
    assert len(done) == 3
    # killed after k=1 finished prompt, in the middle of writing the second line
    part = tmp_path / "part.jsonl"
    part.write_text(done[0] + done[1][:25])
    asked = []
    real = A._generate_turn

    def spy(model, tok, conversations, **kw):
        asked.extend(c[-1]["content"] for c in conversations)
        return real(model, tok, conversations, **kw)

    monkeypatch.setattr(A, "_generate_turn", spy)
    res = A.generate_answers(tiny_model_dir, "arena_hard", AH_Q, part, max_new_tokens=NEW_TOKENS, batch_size=1)
    assert res["resumed"] == 1 and res["generated"] == 2
    assert asked == [q.turns[0] for q in S.read_arena_hard_questions(AH_Q)[1:]]
    assert part.read_text() == full.read_text()          # the cut line is dropped, the rest as a full run
    asked.clear()
    A.generate_answers(tiny_model_dir, "arena_hard", AH_Q, part, max_new_tokens=NEW_TOKENS, batch_size=1)
    assert asked == []                                   # nothing left to do
    with pytest.raises(ValueError, match=r"part.jsonl:1: field 'settings': .*temperature: 0.0 -> 0.7"):
        A.generate_answers(tiny_model_dir, "arena_hard", AH_Q, part, max_new_tokens=NEW_TOKENS, temperature=0.7)
    # the DAG's choice after a change of params: the old answers moved aside, every prompt answered again
    before = part.read_text()
    res = A.generate_answers(tiny_model_dir, "arena_hard", AH_Q, part, max_new_tokens=NEW_TOKENS, temperature=0.7,
                             batch_size=1, restart_on_new_settings=True)
    assert res["restarted"] and res["generated"] == 3 and res["resumed"] == 0
    assert (tmp_path / "part.jsonl.stale").read_text() == before
    assert all(r["settings"]["temperature"] == 0.7 for r in lines(part))


def test_sampling_is_seeded_per_answer_not_per_batch(tiny_model_dir, tmp_path):
    def sample(name, batch_size, seed):
        out = tmp_path / name
        A.generate_answers(tiny_model_dir, "wildbench", WB_RECORDS, out, max_new_tokens=NEW_TOKENS,
                           batch_size=batch_size, temperature=1.0, top_p=0.9, seed=seed)
        return [r["turns"] for r in lines(out)]

    one = sample("a.jsonl", 1, 3)
    assert sample("b.jsonl", 4, 3) == one
    assert sample("c.jsonl", 4, 4) != one
    assert lines(tmp_path / "a.jsonl")[0]["settings"]["decoding"] == "sampled"


# ============================================================ end to end, offline judge
@pytest.mark.parametrize("bench", ["arena_hard", "mt_bench", "wildbench"])
def test_offline_end_to_end_result(bench, answered, tmp_path):
    files = FILES[bench]
    out = tmp_path / "eval" / f"{bench}.json"
    kw = dict(answers=answered[bench], out=out, cache_dir=tmp_path / "cache", judge="offline", **files)
    res = R.evaluate_judged(bench, **kw)
    assert json.loads(out.read_text()) == json.loads(json.dumps(res))
    n_q = {"arena_hard": 3, "mt_bench": 3, "wildbench": 4}[bench]
    n_judgements = {"arena_hard": 6, "mt_bench": 6, "wildbench": 4}[bench]
    assert res["format"] == "negfree-judged-result/1" and res["protocol"] == R.INFO[bench]["protocol"]
    assert res["n"] == n_q and res["n_judgements"] == n_judgements and res["failed"] == 0
    assert res["value"] is not None and res["ci_low"] <= res["value"] <= res["ci_high"]
    assert res["judge"] == {"name": "negfree_offline_judge", "model": "negfree_offline_judge",
                            "base_url_host": "negfree", "offline": True, "temperature": 0.0, "max_tokens": 1024,
                            "max_retries": 0, "max_concurrency": 1}
    assert res["judge_is_offline"] and "OFFLINE" in res["warning"]
    want = {"questions", "judge_template", "answers"} | {"arena_hard": {"baseline"}, "mt_bench": {"reference"},
                                                          "wildbench": set()}[bench]
    assert set(res["inputs"]) == want
    for role, rec in res["inputs"].items():
        assert rec["sha256"] == sha(rec["path"])
    assert res["templates_sha256"] and all(len(v) == 64 for v in res["templates_sha256"].values())
    usage = res["judge_usage"]
    assert usage["requests_sent"] == usage["judged"] == n_judgements and usage["cached"] == 0
    assert usage["total_tokens"] > 0 and usage["this_run"]["total_tokens"] == usage["total_tokens"]
    turns = 2 if bench == "mt_bench" else 1
    assert res["output_length"]["mean_chars"] > 0 and 0 < res["output_length"]["mean_tokens"] <= NEW_TOKENS * turns
    assert res["generation"]["benchmark"] == bench and res["model"] == "tiny"
    judged = lines(out.with_suffix(".judgements.jsonl"))
    assert len(judged) == n_judgements and all(j["ok"] for j in judged)
    rows = rows_from_record(res, "tiny")                      # negfree eval-csv reads it
    assert rows[0]["protocol"] == R.INFO[bench]["protocol"] and rows[0]["value"] == res["value"]
    if bench == "arena_hard":
        assert set(res["results"]) == {"win_rate", "lc_win_rate"}
        assert sorted(j["id"].split("/")[1] for j in judged) == ["model_as_a"] * 3 + ["model_as_b"] * 3
        assert res["output_length"]["baseline_mean_token_len"] == pytest.approx(17 / 3)
    elif bench == "mt_bench":
        assert [t["turn"] for t in res["results"]["score"]["turns"]] == [1, 2]
        assert set(res["templates_sha256"]) == set(S.MT_BENCH_SINGLE_PROMPTS)
    else:
        assert res["results"]["wb_elo"]["value"] is None and res["results"]["wb_elo"]["computable"] is False
    # a rerun asks nothing: every judgement comes from the cache
    again = R.evaluate_judged(bench, **kw)
    assert again["judge_usage"]["requests_sent"] == 0 and again["judge_usage"]["cached"] == n_judgements
    assert again["value"] == res["value"] and again["judge_usage"]["this_run"]["total_tokens"] == 0


def test_mt_bench_requests_use_the_reference_templates_for_reference_categories(answered):
    qs = S.read_mt_bench_questions(MT_Q)
    ans = {str(r["question_id"]): r for r in lines(answered["mt_bench"])}
    reqs, slots = R._mt_bench(qs, ans, S.read_mt_bench_judge_prompts(MT_PROMPTS),
                              S.read_mt_bench_reference(MT_REF), answered["mt_bench"], MT_REF)
    kinds = {r.id: r.kind.split(":")[1] for r in reqs}
    assert kinds == {"901/turn1": "single-v1", "901/turn2": "single-v1-multi-turn",
                     "902/turn1": "single-math-v1", "902/turn2": "single-math-v1-multi-turn",
                     "903/turn1": "single-math-v1", "903/turn2": "single-math-v1-multi-turn"}
    by_id = {r.id: r for r in reqs}
    user = by_id["902/turn1"].messages[1]["content"]
    assert "3 plus 4 is 7." in user and ans["902"]["turns"][0] in user and "7 times 2" not in user
    user = by_id["902/turn2"].messages[1]["content"]
    assert all(x in user for x in ("3 plus 4 is 7.", "7 times 2 is 14.", *ans["902"]["turns"]))
    assert by_id["901/turn1"].messages[0]["role"] == "system" and "Reference" not in by_id["901/turn1"].messages[1]["content"]


def test_wildbench_history_checklist_and_an_empty_answer(answered, tmp_path):
    recs = lines(answered["wildbench"])
    recs[3]["turns"] = [""]                                  # an empty answer: scored 1, the judge not asked
    path = tmp_path / "wb.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    res = R.evaluate_judged("wildbench", answers=path, out=tmp_path / "wb.json", cache_dir=tmp_path / "c",
                            **FILES["wildbench"])
    assert res["n_judgements"] == 3 and res["scored_without_judge"] == 1
    judged = {j["id"]: j for j in lines(tmp_path / "wb.judgements.jsonl")}
    assert judged["negfree-wb-4"]["verdict"] == 1.0 and judged["negfree-wb-4"]["attempts"] == 0
    wb = S.read_wildbench_records(WB_RECORDS)
    ans = {r["question_id"]: r for r in recs}
    reqs, _, fixed = R._wildbench(wb, ans, S.read_wildbench_template(WB_TEMPLATE), path, 1000)
    prompt = reqs[1].messages[0]["content"]
    assert "USER: I have 3 apples.\n\nASSISTANT: Good, you have 3 apples.\n\n" in prompt
    assert "I eat one. How many are left?" in prompt and "- Is the count 2?\n" in prompt
    assert not any(p in prompt for p in S.WILDBENCH_PLACEHOLDERS) and fixed == {3: 1.0}
    assert R.shorten("a b c d", 2) == "a b... (truncated)" and R.shorten("a b", 2) == "a b"


def test_answers_that_miss_a_question_are_refused(answered, tmp_path):
    path = tmp_path / "short.jsonl"
    path.write_text("".join(x + "\n" for x in answered["arena_hard"].read_text().splitlines()[:2]))
    with pytest.raises(ValueError, match=r"field 'question_id': no answer to question 'negfree0+3'"):
        R.evaluate_judged("arena_hard", answers=path, out=tmp_path / "r.json", cache_dir=tmp_path / "c",
                          **FILES["arena_hard"])
    res = R.evaluate_judged("arena_hard", answers=path, out=tmp_path / "r.json", cache_dir=tmp_path / "c",
                            limit=2, **FILES["arena_hard"])
    assert res["n"] == 2 and res["n_questions_in_file"] == 3 and res["limit"] == 2


# ============================================================ the stub server (Arena-Hard)
def _stub_spec(url, **kw):
    settings = dict(name="stub-judge", model="stub-model", base_url=url, max_retries=1, backoff_s=0.0,
                    max_backoff_s=0.0, request_timeout_s=5.0, max_concurrency=1)
    settings.update(kw)
    return JudgeSpec(**settings)


def test_arena_hard_against_the_stub_server_asks_both_game_orders(answered, tmp_path):
    verdict = "I compared them.\n\nMy final verdict is: [[A>B]]"
    script = {n: ("ok", verdict) for n in range(1, 50)}
    with StubServer(tmp_path / "stub.log", script=script) as stub:
        res = R.evaluate_judged("arena_hard", answers=answered["arena_hard"], out=tmp_path / "ah.json",
                                cache_dir=tmp_path / "cache", judge=_stub_spec(stub.url), **FILES["arena_hard"])
        log = stub.requests()
    # what should have been asked: both orders of each prompt
    qs = S.read_arena_hard_questions(AH_Q)
    ans = {str(r["question_id"]): r for r in lines(answered["arena_hard"])}
    cfg = S.read_arena_hard_judge_config(AH_CONFIG)
    reqs, slots, _ = R._arena_hard(qs, ans, S.read_arena_hard_answers(AH_BASE), cfg, answered["arena_hard"], AH_BASE)
    assert sorted(r["hash"] for r in log) == sorted(messages_hash(r.messages) for r in reqs)
    assert {r["model"] for r in log} == {"stub-model"} and len(log) == 6
    base = S.read_arena_hard_answers(AH_BASE)
    for q in qs:
        games = {g: r for r, (qi, g) in zip(reqs, slots) if qs[qi] is q}
        model_text, base_text = ans[str(q.question_id)]["turns"][0], base[str(q.question_id)].turns[0]
        b_first = games["model_as_b"].messages[1]["content"]          # the benchmark's game 1: baseline is A
        a_first = games["model_as_a"].messages[1]["content"]
        assert b_first.index(base_text) < b_first.index(model_text)
        assert a_first.index(model_text) < a_first.index(base_text)
        assert games["model_as_b"].messages[0] == {"role": "system", "content": cfg.system_prompt}
    # always "A>B": the model wins as A, loses as B -> 50%
    assert res["value"] == pytest.approx(50.0) and res["results"]["win_rate"]["counts"]["win"] == 3
    assert res["judge"]["base_url_host"] == f"127.0.0.1:{stub.port}" and res["judge"]["offline"] is False
    assert "warning" not in res and res["judge_usage"]["prompt_tokens"] == 6 * 11


def test_a_judgement_that_fails_fails_the_job_after_the_rest_are_cached(answered, tmp_path):
    verdict = "My final verdict is: [[A=B]]"
    script = {1: ("500",), 2: ("500",), **{n: ("ok", verdict) for n in range(3, 50)}}
    kw = dict(answers=answered["arena_hard"], out=tmp_path / "ah.json", cache_dir=tmp_path / "cache",
              **FILES["arena_hard"])
    with StubServer(tmp_path / "bad.log", script=script) as stub:
        with pytest.raises(JudgeError) as err:
            R.evaluate_judged("arena_hard", judge=_stub_spec(stub.url), **kw)
        assert len(stub.requests()) == 7                  # 1 + 1 retry for the failing one, 5 others
    msg = str(err.value)
    assert "\n" not in msg and "1 of 6" in msg and "the 5 others are cached" in msg and "HTTP 500" in msg
    assert not (tmp_path / "ah.json").exists()
    with StubServer(tmp_path / "good.log", script={n: ("ok", verdict) for n in range(1, 50)}) as stub:
        res = R.evaluate_judged("arena_hard", judge=_stub_spec(stub.url), **kw)
        assert len(stub.requests()) == 1                  # only the failed one is asked again
    assert res["failed"] == 0 and res["judge_usage"]["cached"] == 5 and res["value"] == pytest.approx(50.0)
    # a failure within the allowed fraction is written, counted and left out of the score
    shutil.rmtree(tmp_path / "cache")
    with StubServer(tmp_path / "bad2.log", script=script) as stub:
        res = R.evaluate_judged("arena_hard", judge=_stub_spec(stub.url), max_failed_fraction=0.2, **kw)
    assert res["failed"] == 1 and res["failed_fraction"] == pytest.approx(1 / 6)
    assert res["results"]["win_rate"]["failed"] == 1 and res["results"]["win_rate"]["n_games"] == 5


# ================================================================================ CLI
def test_the_commands_are_registered_and_run(answered, tmp_path, capsys):
    from negfree import cli
    from negfree.evaluate import commands

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert {"judged-answers", "judged-eval"} <= set(sub.choices)
    commands.main_judged_eval(["--benchmark", "mt-bench", "--answers", str(answered["mt_bench"]),
                               "--questions", str(MT_Q), "--judge-template", str(MT_PROMPTS),
                               "--reference", str(MT_REF), "--out", str(tmp_path / "mt.json"),
                               "--cache-dir", str(tmp_path / "cache"), "--judge", "offline"])
    out = capsys.readouterr().out
    assert '"protocol": "mt_bench"' in out and "OFFLINE" in out
    with pytest.raises(SystemExit) as err:
        commands.main_judged_eval(["--benchmark", "arena-hard", "--answers", str(answered["arena_hard"]),
                                   "--questions", str(AH_Q), "--judge-template", str(AH_CONFIG),
                                   "--out", str(tmp_path / "ah.json"), "--cache-dir", str(tmp_path / "cache"),
                                   "--judge", "offline"])
    assert "needs the baseline answers" in str(err.value.code)
