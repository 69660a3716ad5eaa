"""The judged benchmarks' answers through vLLM (negfree.evaluate.judged.answers, backend vllm/auto), on a
FAKE ``vllm`` module (no GPU, no vllm here): its ``LLM.generate`` answers deterministically from the prompt's
token ids and the request's seed and records every request. What is checked is what negfree asks vLLM for:
token ids rendered by the chat template, SamplingParams per answer (temperature 0 for greedy, the answer's
own seed when sampling, FastChat's per-category temperatures), turn 2 after the model's own turn-1 answer,
one engine per call, and the backend named in the answers' settings."""
import hashlib
import importlib.machinery
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from negfree.common import vllm_engine
from negfree.common.models import load_tokenizer
from negfree.evaluate.judged import answers as A
from negfree.evaluate.judged import sources as S

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "configs" / "judged" / "demo"
MT_Q = DATA / "mt_bench" / "question.jsonl"
AH_Q = DATA / "arena_hard" / "question.jsonl"
WB_RECORDS = DATA / "wildbench" / "wildbench_v2_test.jsonl"
NEW_TOKENS = 8


def lines(path) -> list[dict]:
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


def fake_answer(ids: list[int], kw: dict) -> tuple[str, list[int], str]:
    """The fake engine's answer to one request: text, token ids and finish_reason, from the prompt and the seed."""
    h = hashlib.sha256(f"{ids}|{kw['seed']}|{kw['temperature']}".encode()).hexdigest()
    eos = kw["stop_token_ids"][0]
    if int(h[0], 16) % 3 == 0:                               # ran to max_tokens
        return f"long answer {h[:8]}", [7] * kw["max_tokens"], "length"
    n = 1 + int(h[1], 16) % (kw["max_tokens"] - 1)
    return f" answer {h[:8]} ", [7] * n + [eos], "stop"


@pytest.fixture
def fake_vllm(monkeypatch):
    return install_fake_vllm(monkeypatch)


def install_fake_vllm(monkeypatch):
    """A stand-in vllm module (found by importlib.util.find_spec too) and a CUDA GPU that is 'visible'."""
    seen = types.SimpleNamespace(inits=[], calls=[], requests=[])

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    class LLM:
        def __init__(self, **kw):
            seen.inits.append(kw)

        def generate(self, prompts, params, use_tqdm=True):
            assert len(prompts) == len(params) and use_tqdm is False
            seen.calls.append(len(prompts))
            outs = []
            for p, sp in zip(prompts, params):
                seen.requests.append((p["prompt_token_ids"], sp.kw))
                text, ids, why = fake_answer(p["prompt_token_ids"], sp.kw)
                done = types.SimpleNamespace
                outs.append(done(outputs=[done(text=text, token_ids=ids, finish_reason=why)]))
            return outs

    mod = types.ModuleType("vllm")
    mod.__spec__ = importlib.machinery.ModuleSpec("vllm", None)
    mod.LLM, mod.SamplingParams = LLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", mod)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    return seen


def rendered_ids(tok, conversation) -> list[int]:
    text = tok.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    return tok(text, add_special_tokens=False)["input_ids"]


# ------------------------------------------------------------------------- the choice
def test_auto_picks_vllm_with_the_package_and_a_gpu_and_transformers_without(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert A.choose_backend("auto", {0.0}) == "transformers"                     # no GPU
    assert A.choose_backend("transformers", {0.0}) == "transformers"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "vllm", None)                                # a GPU, no package
    assert A.choose_backend("auto", {0.0, 0.7}) == "transformers"
    with pytest.raises(ValueError, match="backend 'vllm' needs the vllm package.*make setup-vllm"):
        A.choose_backend("vllm", {0.0})
    with pytest.raises(ValueError, match="unknown backend 'vllm2'"):
        A.choose_backend("vllm2", {0.0})


def test_auto_picks_vllm_with_the_fake_and_falls_back_for_a_temperature_it_refuses(fake_vllm):
    assert A.choose_backend("auto", {0.0, 0.7, 0.1}) == "vllm"
    assert A.choose_backend("vllm", {2.0}) == "vllm"
    assert A.choose_backend("auto", {0.0, 2.5}) == "transformers"
    with pytest.raises(ValueError) as err:
        A.choose_backend("vllm", {2.5})
    assert "\n" not in str(err.value) and "backend 'vllm'" in str(err.value) and "temperature <= 2" in str(err.value)


# ---------------------------------------------------------------------- through vLLM
def test_mt_bench_through_vllm_per_category_temperatures_and_turn_two_after_the_own_answer(
        fake_vllm, tiny_model_dir, tmp_path):
    out = tmp_path / "mt.jsonl"
    res = A.generate_answers(tiny_model_dir, "mt-bench", MT_Q, out, max_new_tokens=NEW_TOKENS, seed=5, name="tiny",
                             category_temperatures=A.FASTCHAT_TEMPERATURES)
    assert len(fake_vllm.inits) == 1                       # one engine for 2 temperature groups x 2 turns
    assert fake_vllm.inits[0]["dtype"] == "bfloat16" and fake_vllm.inits[0]["model"] == str(tiny_model_dir)
    assert fake_vllm.calls == [1, 1, 2, 2]                 # writing (0.7): t1, t2; math + reasoning (0): t1, t2
    assert res["n"] == res["generated"] == 3 and res["settings"]["backend"] == "vllm"
    recs = {r["question_id"]: r for r in lines(out)}
    assert all(r["settings"]["backend"] == "vllm" and r["model"] == "tiny" for r in recs.values())
    tok = load_tokenizer(tiny_model_dir)
    questions = {q.question_id: q for q in S.read_mt_bench_questions(MT_Q)}
    requests = iter(fake_vllm.requests)
    for qids in ([901], [902, 903]):                       # the groups' order: as the questions first meet them
        for turn in (0, 1):
            for qid in qids:
                ids, kw = next(requests)
                q, rec = questions[qid], recs[qid]
                temp = A.FASTCHAT_TEMPERATURES[q.category]
                assert kw["temperature"] == temp and kw["top_p"] == 1.0 and kw["max_tokens"] == NEW_TOKENS
                assert kw["seed"] == (A.answer_seed(5, qid, turn) if temp else None)
                conv = [{"role": "user", "content": q.turns[0]}]
                if turn == 1:                              # the model's OWN first answer, through the template
                    conv += [{"role": "assistant", "content": rec["turns"][0]}, {"role": "user", "content": q.turns[1]}]
                assert ids == rendered_ids(tok, conv)
                text, out_ids, why = fake_answer(ids, kw)
                assert rec["turns"][turn] == text.strip()
                assert rec["stopped"][turn] == (why == "stop")
                assert rec["n_tokens"][turn] == (len(out_ids) - 1 if why == "stop" else NEW_TOKENS)
    assert recs[901]["temperature"] == 0.7 and "temperature" not in recs[902]
    text = tok.decode(fake_vllm.requests[1][0])            # 901's turn 2 holds turn 1's answer
    assert recs[901]["turns"][0] in text and questions[901].turns[1] in text


def test_greedy_and_seeded_sampling_through_vllm(fake_vllm, tiny_model_dir, tmp_path):
    A.generate_answers(tiny_model_dir, "arena_hard", AH_Q, tmp_path / "g.jsonl", max_new_tokens=NEW_TOKENS)
    assert all(kw["temperature"] == 0 and kw["seed"] is None for _, kw in fake_vllm.requests)
    assert lines(tmp_path / "g.jsonl")[0]["settings"]["decoding"] == "greedy"
    fake_vllm.requests.clear()
    A.generate_answers(tiny_model_dir, "wildbench", WB_RECORDS, tmp_path / "s.jsonl", max_new_tokens=NEW_TOKENS,
                       temperature=0.7, top_p=0.9, seed=3)
    qids = [r["question_id"] for r in lines(tmp_path / "s.jsonl")]
    assert [kw["seed"] for _, kw in fake_vllm.requests] == [A.answer_seed(3, q, 0) for q in qids]
    assert all(kw["temperature"] == 0.7 and kw["top_p"] == 0.9 for _, kw in fake_vllm.requests)
    assert len(fake_vllm.inits) == 2                       # one per call


def test_a_file_answered_by_transformers_is_not_resumed_under_vllm(tiny_model_dir, tmp_path, monkeypatch):
    out = tmp_path / "ah.jsonl"
    A.generate_answers(tiny_model_dir, "arena_hard", AH_Q, out, max_new_tokens=4, limit=2, batch_size=2,
                       backend="transformers")
    assert all(r["settings"]["backend"] == "transformers" for r in lines(out))
    before = out.read_text()
    seen = install_fake_vllm(monkeypatch)
    with pytest.raises(ValueError, match=r"ah.jsonl:1: field 'settings': .*backend: 'transformers' -> 'vllm'"):
        A.generate_answers(tiny_model_dir, "arena_hard", AH_Q, out, max_new_tokens=4, limit=2)
    assert out.read_text() == before and not seen.inits
    res = A.generate_answers(tiny_model_dir, "arena_hard", AH_Q, out, max_new_tokens=4, limit=2,
                             restart_on_new_settings=True)
    assert res["restarted"] and res["generated"] == 2 and (tmp_path / "ah.jsonl.stale").read_text() == before
    assert all(r["settings"]["backend"] == "vllm" for r in lines(out)) and len(seen.inits) == 1
    res = A.generate_answers(tiny_model_dir, "arena_hard", AH_Q, out, max_new_tokens=4, limit=2)   # same backend
    assert res["resumed"] == 2 and res["generated"] == 0 and len(seen.inits) == 1


def test_backend_vllm_without_a_gpu_fails_in_one_line_before_loading(tiny_model_dir, tmp_path, monkeypatch):
    from negfree.evaluate import commands

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    loaded = []
    monkeypatch.setattr(A, "_load", lambda *a, **k: loaded.append(a))
    monkeypatch.setattr(A, "_load_vllm", lambda *a, **k: loaded.append(a))
    monkeypatch.setattr(A, "load_prompts", lambda *a, **k: loaded.append(a))
    out = tmp_path / "x" / "mt.jsonl"
    with pytest.raises(SystemExit) as err:
        commands.main_judged_answers(["--benchmark", "mt-bench", "--model", str(tiny_model_dir), "--questions",
                                      str(MT_Q), "--out", str(out), "--backend", "vllm"])
    msg = str(err.value.code)
    assert "\n" not in msg.strip() and "backend 'vllm' needs a CUDA GPU" in msg and "make setup-vllm" in msg
    assert not loaded and not out.parent.exists()


def test_the_cli_passes_the_backend(fake_vllm, tiny_model_dir, tmp_path, capsys):
    from negfree.evaluate import commands

    out = tmp_path / "ah.jsonl"
    commands.main_judged_answers(["--benchmark", "arena-hard", "--model", str(tiny_model_dir), "--questions",
                                  str(AH_Q), "--out", str(out), "--max-new-tokens", "4", "--backend", "vllm"])
    assert '"generated": 3' in capsys.readouterr().out and len(fake_vllm.inits) == 1
    assert all(r["settings"]["backend"] == "vllm" for r in lines(out))


# ---------------------------------------------------------------- the rest unchanged
def test_negative_generation_still_imports_its_vllm_names_from_the_old_place():
    from negfree.generate import negatives as gen
    from negfree.generate.negatives import (BACKEND_LIMITS, VLLM_INSTALL, VllmBackend, backend_refusal,  # noqa: F401
                                            check_backend, choose_backend, vllm_missing)

    assert issubclass(VllmBackend, vllm_engine.VllmEngine) and callable(VllmBackend.sample)
    assert gen.vllm_missing is vllm_engine.vllm_missing and VLLM_INSTALL == vllm_engine.VLLM_INSTALL
    assert backend_refusal("vllm", temperature=5.0) == "vllm allows temperature <= 2, asked 5.0"


def test_the_rule_runs_in_the_generation_environment_with_backend_auto():
    body = (ROOT / "workflows" / "judged.smk").read_text().split("rule judged_answers:\n")[1].splitlines()
    rule = "\n".join(body[:next(i for i, ln in enumerate(body) if ln and not ln[0].isspace())])
    assert "{NEGFREE_GENERATE} judged-answers" in rule and "--backend auto" in rule and "{NEGFREE} " not in rule


def test_judged_answers_runs_without_what_the_vllm_environment_leaves_out(tmp_path, tiny_model_dir, monkeypatch):
    """The rule now runs in .venv-vllm (negfree installed --no-deps): the command must not need the
    packages configs/vllm-env.txt leaves out (tests/test_cluster_deps.py's list)."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent))
    from test_cluster_deps import LEFT_OUT

    script = tmp_path / "run.py"
    script.write_text("import sys\n"
                      f"for m in {LEFT_OUT!r}:\n    sys.modules[m] = None\n"
                      "from negfree.cli import main\nmain(sys.argv[1:])\n")
    out = tmp_path / "ah.jsonl"
    proc = subprocess.run([sys.executable, str(script), "judged-answers", "--benchmark", "arena-hard", "--model",
                           str(tiny_model_dir), "--questions", str(AH_Q), "--out", str(out), "--max-new-tokens", "2",
                           "--limit", "1", "--backend", "auto"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["settings"]["backend"] for r in lines(out)] == ["transformers"]
