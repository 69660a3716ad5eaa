"""The LLM-judge client, its cache and the offline judge (negfree.evaluate.judge), against the stub
OpenAI-compatible server of tests/judge_stub.py on 127.0.0.1. Nothing leaves the machine, and no
test waits for a backoff: the client's sleep is injected and recorded."""
import fcntl
import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from judge_stub import (PAIR_TEMPLATE, StubServer, make_request, make_requests, messages_hash,  # noqa: E402
                        parse_ab, read_log)

from negfree.common.errors import run_reporting_errors  # noqa: E402
from negfree.evaluate.judge import (OFFLINE_JUDGE_NAME, CacheEntry, JudgeCacheError, JudgeClient,  # noqa: E402
                                    JudgeError, JudgementCache, JudgeRequest, JudgeSpec, offline_client,
                                    offline_spec, require_all)
from negfree.evaluate.judge.cache import CACHE_FILE  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
KEY_ENV = "NEGFREE_TEST_JUDGE_KEY"


def spec_for(url, **kw):
    settings = dict(name="stub-judge", model="stub-model", base_url=url, max_retries=3, backoff_s=1.0,
                    max_backoff_s=30.0, request_timeout_s=5.0, max_concurrency=2)
    settings.update(kw)
    return JudgeSpec(**settings)


@pytest.fixture
def stub(tmp_path):
    servers = []

    def make(**kw):
        s = StubServer(tmp_path / f"stub{len(servers)}.log", **kw).start()
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
def sleeps():
    return []


def client_for(spec, cache_dir, sleeps, **kw):
    return JudgeClient(spec, JudgementCache(cache_dir), kw.pop("parse", parse_ab), sleep=sleeps.append, **kw)


# ------------------------------------------------------------------ (a) (b) retries
@pytest.mark.parametrize("retry_after, expect", [(2.5, 2.5), (500, 30.0), (None, None)])
def test_429_is_retried_after_the_servers_wait(stub, tmp_path, sleeps, retry_after, expect):
    s = stub(script={1: ("429", retry_after)})
    c = client_for(spec_for(s.url), tmp_path / "cache", sleeps)
    [j] = c.judge_many([make_request(0)])
    assert j.ok and j.verdict in ("A", "B") and j.attempts == 2 and not j.cached
    assert [r["action"] for r in s.requests()] == ["429", "ok"]
    assert len({r["hash"] for r in s.requests()}) == 1
    assert len(sleeps) == 1
    if expect is None:                    # no Retry-After: the first backoff, jittered in [base/2, base]
        assert 0.5 <= sleeps[0] <= 1.0
    else:                                 # Retry-After honoured, capped at max_backoff_s
        assert sleeps[0] == expect
    assert c.stats.rate_limited == 1 and c.stats.sent == 2 and c.stats.judged == 1
    assert len(JudgementCache(tmp_path / "cache")) == 1


def test_5xx_is_retried_with_exponential_backoff(stub, tmp_path, sleeps):
    s = stub(script={1: ("500",), 2: ("500",)})
    c = client_for(spec_for(s.url), tmp_path / "cache", sleeps)
    [j] = c.judge_many([make_request(0)])
    assert j.ok and j.attempts == 3
    assert [r["action"] for r in s.requests()] == ["500", "500", "ok"]
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0
    assert [h["error"][:8] for h in j.history] == ["HTTP 500", "HTTP 500"]


def test_connection_refused_and_timeouts_are_retried_then_fail(stub, tmp_path, sleeps):
    with socket.socket() as sock:                         # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    c = client_for(spec_for(f"http://127.0.0.1:{dead}/v1", max_retries=2), tmp_path / "c1", sleeps)
    [j] = c.judge_many([make_request(0)])
    assert not j.ok and j.verdict is None and j.attempts == 3 and "connection" in j.error
    assert len(sleeps) == 2 and c.stats.connection_errors == 3

    s = stub(delay_s=0.6)
    c = client_for(spec_for(s.url, max_retries=1, request_timeout_s=0.15), tmp_path / "c2", sleeps)
    t0 = time.monotonic()
    [j] = c.judge_many([make_request(0)])
    assert time.monotonic() - t0 < 3
    assert not j.ok and "timed out" in j.error.lower() and j.attempts == 2
    assert len(JudgementCache(tmp_path / "c2")) == 0      # a failure is never cached


# ------------------------------------------------------------------ (c) (d) malformed replies
@pytest.mark.parametrize("bad", ["malformed", "garbage", "no_choices"])
def test_a_malformed_reply_is_recorded_and_asked_again(stub, tmp_path, sleeps, bad):
    s = stub(script={1: (bad,)})
    c = client_for(spec_for(s.url), tmp_path / "cache", sleeps)
    [j] = c.judge_many([make_request(0)])
    assert j.ok and j.attempts == 2 and c.stats.malformed == 1
    assert sleeps == []                                   # a malformed reply is asked again at once
    entry = JudgementCache(tmp_path / "cache").get(j.key)
    assert entry.attempts == 2 and entry.verdict == j.verdict
    [h] = entry.history
    assert h["attempt"] == 1 and "malformed" in h["error"]
    if bad == "malformed":
        assert "decline to choose" in h["raw"]            # the raw text is kept
        assert "no [[A]] or [[B]] verdict" in h["error"]
    if bad == "garbage":
        assert "not json" in h["raw"]


def test_an_always_malformed_request_fails_alone(stub, tmp_path, sleeps):
    reqs = make_requests(4)
    poison = messages_hash(reqs[1].messages)
    s = stub(by_hash={poison: ("malformed",)})
    c = client_for(spec_for(s.url, max_retries=2), tmp_path / "cache", sleeps)
    js = c.judge_many(reqs)
    assert [j.ok for j in js] == [True, False, True, True]
    bad = js[1]
    assert bad.verdict is None and bad.attempts == 3 and "failed after 3 attempt(s)" in bad.error
    assert "stub-judge" in bad.error and "malformed" in bad.error
    assert len(bad.history) == 3 and all("decline" in h["raw"] for h in bad.history)
    assert sum(r["hash"] == poison for r in s.requests()) == 3
    assert c.stats.failed == 1 and c.stats.malformed == 3
    cache = JudgementCache(tmp_path / "cache")
    assert len(cache) == 3 and bad.key not in cache      # not cached as a success
    with pytest.raises(JudgeError, match=r"1 of 4 judgements failed"):
        require_all(js, c.spec)
    # the next run asks only the failed one (now answered)
    s.by_hash.clear()
    before = len(s.requests())
    js2 = client_for(spec_for(s.url), tmp_path / "cache", sleeps).judge_many(reqs)
    assert all(j.ok for j in js2) and [j.cached for j in js2] == [True, False, True, True]
    assert [r["hash"] for r in s.requests()[before:]] == [poison]


# ------------------------------------------------------------------ (e) fail fast
def test_a_bad_key_fails_fast_in_one_line_without_the_key(stub, tmp_path, sleeps, monkeypatch):
    wrong = "sk-wrong-" + secrets.token_hex(16)
    monkeypatch.setenv(KEY_ENV, wrong)
    s = stub(expect_key="sk-right-" + secrets.token_hex(16))
    c = client_for(spec_for(s.url, api_key_env=KEY_ENV), tmp_path / "cache", sleeps)
    with pytest.raises(JudgeError) as info:
        c.judge_many(make_requests(6))
    msg = str(info.value)
    assert "\n" not in msg and wrong not in msg
    assert msg.startswith("judge stub-judge (stub-model at http://127.0.0.1:")
    assert "HTTP 401 Unauthorized" in msg and f"${KEY_ENV}" in msg
    assert "Incorrect API key provided: ***" in msg      # the server echoed it: redacted
    log = s.requests()
    assert 1 <= len(log) <= 2 and all(r["action"] == "401" for r in log)   # no retries, no more sent
    assert all(r["auth"] == "wrong" for r in log)
    assert sleeps == [] and len(JudgementCache(tmp_path / "cache")) == 0
    # through the CLI's error handling: one line, exit status non-zero
    with pytest.raises(SystemExit) as ex:
        run_reporting_errors("judge", lambda: c.judge_many(make_requests(1)))
    assert str(ex.value).startswith("negfree judge: judge stub-judge") and wrong not in str(ex.value)


def test_400_fails_fast_and_a_missing_key_variable_sends_nothing(stub, tmp_path, sleeps, monkeypatch):
    s = stub(script={1: ("401",)})
    c = client_for(spec_for(s.url), tmp_path / "cache", sleeps)
    with pytest.raises(JudgeError, match=r"HTTP 401 .*name its variable in api_key_env"):
        c.judge_many([make_request(0)])
    monkeypatch.delenv(KEY_ENV, raising=False)
    c = client_for(spec_for(s.url, api_key_env=KEY_ENV), tmp_path / "cache", sleeps)
    n = len(s.requests())
    with pytest.raises(JudgeError, match=f"environment variable {KEY_ENV} .* is not set"):
        c.judge_many([make_request(0)])
    assert len(s.requests()) == n


# ------------------------------------------------------------------ (f) the cache
def test_the_cache_answers_reruns_and_its_key_follows_the_content(stub, tmp_path, sleeps):
    s = stub()
    spec = spec_for(s.url)
    reqs = make_requests(3)
    first = client_for(spec, tmp_path / "cache", sleeps).judge_many(reqs + [reqs[0]])   # a duplicate
    assert len(s.requests()) == 3                                   # each key asked once
    assert first[3].verdict == first[0].verdict
    entry = JudgementCache(tmp_path / "cache").get(first[0].key)
    assert entry.usage == {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
    assert entry.judge == "stub-judge" and entry.order == "ab" and entry.request_id == "q0-ab"

    again = client_for(spec, tmp_path / "cache", sleeps)            # a rerun: a fresh cache object
    second = again.judge_many(reqs)
    assert len(s.requests()) == 3 and again.stats.sent == 0 and again.stats.cached == 3
    assert [j.verdict for j in second] == [j.verdict for j in first[:3]] and all(j.cached for j in second)

    r = reqs[0]
    base = r.key(spec)
    other_template = PAIR_TEMPLATE.replace("Compare", "Judge")
    assert make_request(0, template=other_template).key(spec) != base
    assert make_request(0, order="ba").key(spec) != base
    assert JudgeRequest(r.kind, r.messages, other_template, r.instruction, r.outputs, r.order).key(spec) != base
    assert JudgeRequest(r.kind, r.messages, r.template, r.instruction, r.outputs, "ba").key(spec) != base
    assert JudgeRequest(r.kind, r.messages, r.template, "other", r.outputs, r.order).key(spec) != base
    assert JudgeRequest(r.kind, r.messages, r.template, r.instruction, ("x", "y"), r.order).key(spec) != base
    assert r.key(spec_for(s.url, model="stub-model-2")) != base
    assert r.key(spec_for(s.url, temperature=0.7)) != base
    assert r.key(spec_for(s.url, max_tokens=17)) != base
    # what does not change the answer does not change the key
    assert r.key(spec_for(s.url, temperature=0)) == base
    assert r.key(spec_for("http://elsewhere:1/v1", name="renamed", max_concurrency=9, max_retries=0)) == base
    assert JudgeRequest(r.kind, r.messages, r.template, r.instruction, list(r.outputs), r.order,
                        id="another id").key(spec) == base

    # a new key is asked: another model, the swapped order
    client_for(spec_for(s.url, model="stub-model-2"), tmp_path / "cache", sleeps).judge_many(reqs[:1])
    client_for(spec, tmp_path / "cache", sleeps).judge_many([make_request(0, order="ba")])
    assert len(s.requests()) == 5 and s.requests()[3]["model"] == "stub-model-2"
    assert len(JudgementCache(tmp_path / "cache")) == 5


def test_a_cut_last_line_is_ignored_and_a_second_writer_is_refused(tmp_path):
    d = tmp_path / "cache"
    with JudgementCache(d) as cache:
        cache.put(CacheEntry(key="k1", verdict="A", raw="[[A]]"))
    path = d / CACHE_FILE
    with open(path, "ab") as f:
        f.write(b'{"key": "k2", "verdict": "B", "ra')               # a kill mid-write
    cache = JudgementCache(d)
    assert cache.keys() == ["k1"] and cache.dropped_tail
    with open(path, "rb") as other_process:                         # another writer holds the lock
        fcntl.flock(other_process.fileno(), fcntl.LOCK_EX)
        with pytest.raises(JudgeCacheError, match="being written by another process"):
            cache.put(CacheEntry(key="k3", verdict="A", raw="x"))
    # two cache objects of one process share the writer; a new line starts clean after the cut one
    same_process = JudgementCache(d)
    cache.put(CacheEntry(key="k2", verdict="B", raw="[[B]]"))
    same_process.put(CacheEntry(key="k4", verdict="A", raw="[[A]]"))
    cache.close()
    same_process.close()
    lines = path.read_bytes().splitlines()
    assert [json.loads(x)["key"] for x in lines] == ["k1", "k2", "k4"]
    assert set(JudgementCache(d).keys()) == {"k1", "k2", "k4"}
    path.write_bytes(b"not json\n" + path.read_bytes())
    with pytest.raises(JudgeCacheError, match=rf"{CACHE_FILE}:1: not a judge cache line"):
        JudgementCache(d)


# ------------------------------------------------------------------ (g) kill and resume
CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
from judge_stub import make_requests, parse_ab
from negfree.evaluate.judge import JudgeClient, JudgementCache, JudgeSpec
spec = JudgeSpec("stub-judge", "stub-model", sys.argv[2], max_concurrency=2, max_retries=2,
                 request_timeout_s=10)
with JudgementCache(sys.argv[3]) as cache:
    js = JudgeClient(spec, cache, parse_ab).judge_many(make_requests(20))
print(sum(j.ok for j in js))
"""


def test_a_killed_run_resumes_without_asking_a_cached_pair_again(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    port_file, log, cache_dir = tmp_path / "port", tmp_path / "stub.log", tmp_path / "cache"
    server = subprocess.Popen([sys.executable, str(TESTS / "judge_stub.py"), "--port-file", str(port_file),
                               "--log", str(log), "--delay", "0.1"], env=env)
    child = None
    try:
        deadline = time.monotonic() + 10
        while not port_file.exists():
            assert time.monotonic() < deadline and server.poll() is None, "the stub did not start"
            time.sleep(0.02)
        url = f"http://127.0.0.1:{port_file.read_text()}/v1"
        args = [sys.executable, "-c", CHILD, str(TESTS), url, str(cache_dir)]
        child = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        cache_file = cache_dir / CACHE_FILE
        deadline = time.monotonic() + 15
        while not (cache_file.exists() and cache_file.read_bytes().count(b"\n") >= 6):
            assert time.monotonic() < deadline and child.poll() is None, child.stderr.read().decode()
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        assert child.returncode == -signal.SIGKILL               # killed before it could finish
        child.stdout.close()
        child.stderr.close()

        cached_before = set(JudgementCache(cache_dir).keys())
        assert 6 <= len(cached_before) < 20
        with open(cache_file, "ab") as f:                        # as if the kill cut a line
            f.write(b'{"key": "0123abcd", "verdict": "A", "raw": "[[')
        asked_before, settled = len(read_log(log)), time.monotonic()
        while time.monotonic() - settled < 0.3:                  # requests the kill left in flight
            time.sleep(0.05)                                     # reach the log before the snapshot
            if len(read_log(log)) != asked_before:
                asked_before, settled = len(read_log(log)), time.monotonic()

        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "20"
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        server.kill()
        server.wait()

    spec = spec_for(url, max_concurrency=2, max_retries=2, request_timeout_s=10)
    reqs = make_requests(20)
    hash_of = {r.key(spec): messages_hash(r.messages) for r in reqs}
    rerun = [rec["hash"] for rec in read_log(log)[asked_before:]]
    assert not {hash_of[k] for k in cached_before} & set(rerun)      # no cached pair asked again
    assert len(rerun) == len(set(rerun)) == 20 - len(cached_before)  # each missing pair asked once
    final = JudgementCache(cache_dir)
    assert set(final.keys()) == set(hash_of) and not final.dropped_tail
    assert len(cache_file.read_bytes().splitlines()) == 20


# ------------------------------------------------------------------ (h) no secret written
def test_the_key_is_sent_but_never_written(stub, tmp_path, sleeps, monkeypatch, caplog):
    key = "sk-" + secrets.token_urlsafe(24)
    monkeypatch.setenv(KEY_ENV, key)
    reqs = make_requests(5)
    s = stub(expect_key=key, script={1: ("429", 1), 2: ("500",), 3: ("malformed",)},
             by_hash={messages_hash(reqs[4].messages): ("malformed",)})
    out = tmp_path / "out"
    out.mkdir()
    caplog.set_level(logging.DEBUG, logger="negfree.judge")
    spec = spec_for(s.url, api_key_env=KEY_ENV, max_retries=4)   # scripted failures may all hit one request
    c = client_for(spec, tmp_path / "cache", sleeps)
    js = c.judge_many(reqs)
    assert [j.ok for j in js] == [True, True, True, True, False]
    assert {r["auth"] for r in s.requests()} == {"ok"}             # the header WAS sent, with the key
    errors = []
    s.expect_key = "sk-another-" + secrets.token_hex(8)             # now the key is refused, and echoed
    try:
        client_for(spec, tmp_path / "cache", sleeps).judge_many(make_requests(7))
    except JudgeError as err:
        errors.append(str(err))
    assert errors and "***" in errors[0]
    try:
        require_all(js, spec)
    except JudgeError as err:
        errors.append(str(err))
    (out / "results.json").write_text(json.dumps(
        {"judgements": [repr(j) for j in js], "errors": errors + [j.error for j in js if j.error],
         "history": [j.history for j in js], "spec": repr(spec), "client": repr(c),
         "stats": repr(c.stats)}, default=str))
    (out / "log.txt").write_text("\n".join(r.getMessage() for r in caplog.records))
    assert caplog.records
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == CACHE_FILE for p in files) and len(files) >= 4
    for p in files:
        assert key.encode() not in p.read_bytes(), p
    assert key not in repr(spec) + repr(c)


def test_a_key_in_the_config_is_refused():
    with pytest.raises(ValueError, match="do not put the API key in the config"):
        JudgeSpec.from_dict({"name": "j", "model": "m", "base_url": "http://x", "api_key": "sk-1"})
    with pytest.raises(ValueError, match="unknown setting"):
        JudgeSpec.from_dict({"name": "j", "model": "m", "base_url": "http://x", "temprature": 0})
    with pytest.raises(ValueError, match="max_concurrency"):
        JudgeSpec("j", "m", "http://x", max_concurrency=0)


# ------------------------------------------------------------------ (i) the offline judge
def _mt_pair(text):
    found = re.findall(r"\[\[([ABC])\]\]", text)
    if not found:
        raise ValueError("no verdict")
    return found[-1]


def _rating(text):
    m = re.search(r"Rating: \[\[(\d+)\]\]", text)
    if not m:
        raise ValueError("no rating")
    return int(m.group(1))


def _arena(text):
    m = re.search(r"\[\[(A>>B|A>B|A=B|B>A|B>>A)\]\]", text)
    if not m:
        raise ValueError("no verdict")
    return m.group(1)


def _wild(text):
    m = re.search(r"```json\s*(\{.*\})\s*```", text, re.S)
    if not m:
        raise ValueError("no json")
    return json.loads(m.group(1))


RATING_TEMPLATE = ("Rate the answer from 1 to 10, strictly in this format: \"Rating: [[rating]]\".\n"
                   "[Question]\n{instruction}\n[Answer]\n{a}")


def _rating_request(i):
    instruction, a = f"Question {i}?", f"answer {i}"
    msgs = [{"role": "user", "content": RATING_TEMPLATE.format(instruction=instruction, a=a)}]
    return JudgeRequest("rating", msgs, RATING_TEMPLATE, instruction, (a,), "", id=f"r{i}")


def test_the_offline_judge_runs_through_the_same_client_and_cache(tmp_path):
    reqs = make_requests(6) + make_requests(6, order="ba")
    c1 = offline_client(JudgementCache(tmp_path / "c1"), _mt_pair)
    assert c1.spec.name == OFFLINE_JUDGE_NAME == "negfree_offline_judge"
    js = c1.judge_many(reqs)
    assert all(j.ok for j in js) and all(j.verdict in ("A", "B", "C") for j in js)
    assert all("OFFLINE negfree_offline_judge" in j.raw for j in js)
    assert len(set(j.verdict for j in js)) > 1                     # not a constant
    assert c1.stats.sent == 12 and len(JudgementCache(tmp_path / "c1")) == 12
    entry = JudgementCache(tmp_path / "c1").get(js[0].key)
    assert entry.model == OFFLINE_JUDGE_NAME and entry.usage["total_tokens"] > 0

    # deterministic: a fresh cache gets the same verdicts; the filled cache answers without asking
    c2 = offline_client(JudgementCache(tmp_path / "c2"), _mt_pair)
    assert [j.verdict for j in c2.judge_many(reqs)] == [j.verdict for j in js]
    c3 = offline_client(JudgementCache(tmp_path / "c1"), _mt_pair)
    assert [j.verdict for j in c3.judge_many(reqs)] == [j.verdict for j in js]
    assert c3.stats.sent == 0 and c3.stats.cached == 12

    ratings = offline_client(JudgementCache(tmp_path / "c1"), _rating).judge_many(
        [_rating_request(i) for i in range(8)])
    assert all(1 <= j.verdict <= 10 for j in ratings) and len({j.verdict for j in ratings}) > 1

    arena_t = PAIR_TEMPLATE.replace("End with [[A]] if A is better, [[B]] if B is better",
                                    "End with one of [[A>>B]], [[A>B]], [[A=B]], [[B>A]], [[B>>A]]")
    arena = offline_client(JudgementCache(tmp_path / "c1"), _arena).judge_many(
        make_requests(4, template=arena_t))
    assert all(j.raw.rstrip().endswith(f"My final verdict is: [[{j.verdict}]]") for j in arena)

    wild = offline_client(JudgementCache(tmp_path / "c4"), _wild, mode="wildbench_pair").judge_many(reqs[:3])
    assert all(j.verdict["choice"] in ("A++", "A+", "A=B", "B+", "B++") for j in wild)

    odd = JudgeRequest("odd", [{"role": "user", "content": "say hi"}], "say hi", "hi", ("x",))
    with pytest.raises(JudgeError, match="negfree_offline_judge.*HTTP 400.*cannot tell the reply format"):
        offline_client(JudgementCache(tmp_path / "c5"), _rating).judge_many([odd])
    assert offline_spec().base_url.startswith("offline:")
