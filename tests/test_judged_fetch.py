"""negfree fetch-judged-data against a local HTTP server (127.0.0.1 only) laid out like the two
hosts' URL paths, with a sources.yaml of small project-made files pinned by their sha256."""
import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest
import yaml

from negfree.evaluate import commands
from negfree.evaluate.judged import fetch

GH, HF = fetch.GITHUB_RAW, fetch.HF_HUB
REV = {"mt_bench": "a" * 40, "arena_hard": "b" * 40, "wildbench": "c" * 40, "hf": "d" * 40, "alpaca_eval": "e" * 40}
TOKEN = "hf_TESTtoken_never_written_0123456789"

# role -> (repo path, content) per protocol; the contents are made up here, not the benchmarks'
GITHUB_FILES = {
    "mt_bench": ("lm-sys/FastChat", {
        "questions": ("fastchat/llm_judge/data/mt_bench/question.jsonl",
                      b'{"question_id": 81, "category": "writing", "turns": ["q1", "q2"]}\n'),
        "reference_answers": ("fastchat/llm_judge/data/mt_bench/reference_answer/gpt-4.jsonl",
                              b'{"question_id": 101, "choices": [{"index": 0, "turns": ["a1", "a2"]}]}\n'),
        "judge_prompts": ("fastchat/llm_judge/data/judge_prompts.jsonl",
                          b'{"name": "single-v1", "type": "single", "prompt_template": "{question} {answer}"}\n'),
    }),
    "arena_hard": ("lmarena-ai/arena-hard-auto", {
        "questions": ("data/arena-hard-v0.1/question.jsonl",
                      b'{"question_id": "abc", "category": "arena-hard-v0.1", "turns": [{"content": "x"}]}\n'),
        "baseline_answers": ("data/arena-hard-v0.1/model_answer/gpt-4-0314.jsonl",
                             b'{"question_id": "abc", "choices": [{"index": 0, "turns": [{"content": "y"}]}]}\n'),
        "judge_config": ("config/judge_config.yaml", b"judge_model: test\nregex_pattern: x\n"),
    }),
    "wildbench": ("allenai/WildBench", {
        "score_template": ("evaluation/eval_template.score.v2.md",
                           "{$history} {$user_query} {$model_output} {$checklist} \u2014 ok\n".encode()),
    }),
    # AlpacaEval: the two reference files land as reference_ae1.json / reference_ae2.json (fetch.NAMES);
    # the judge file beside them is pinned for the record and not fetched
    "alpaca_eval": ("tatsu-lab/alpaca_eval", {
        "reference_outputs_ae1": ("results/text_davinci_003/model_outputs.json",
                                  b'[{"dataset": "t", "instruction": "Say hi.", "output": "Hi.", '
                                  b'"generator": "text_davinci_003"}]\n'),
        "reference_outputs_ae2": ("results/gpt4_1106_preview/model_outputs.json",
                                  b'[{"dataset": "t", "instruction": "Say hi.", "output": "Hello!", '
                                  b'"generator": "gpt4_1106_preview"}]\n'),
        "judge_config_ae1": ("src/alpaca_eval/evaluators_configs/alpaca_eval_gpt4/configs.yaml",
                             b"alpaca_eval_gpt4: {}\n"),
    }),
}


def local_name(protocol, role, path):
    """Where fetch-judged-data puts a role's file (None: not fetched)."""
    if protocol in fetch.NAMES:
        return fetch.NAMES[protocol].get(role)
    return f"{role}{Path(path).suffix}"
HF_PATH = "v2/test-00000-of-00001.parquet"
ROWS = [
    {"session_id": "s1",
     "conversation_input": [{"role": "user", "content": "hi \u2028 there"}, {"role": "assistant", "content": "hello"},
                            {"role": "user", "content": "and now?"}],
     "checklist": ["Is it kind?", "Is it \"short\"?"], "primary_tag": "Info seeking",
     "secondary_tags": [], "length": 3, "avg_similarity": 0.25, "note": None},
    {"session_id": "s2", "conversation_input": [{"role": "user", "content": "\u4f60\u597d"}],
     "checklist": ["One"], "primary_tag": "Coding & Debugging", "secondary_tags": ["Math", "Reasoning"],
     "length": 1, "avg_similarity": float("nan"), "note": "n"},
]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parquet_bytes(tmp_path) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    return path.read_bytes()


class LocalHTTP:
    """An HTTP server on 127.0.0.1 (an ephemeral port) served by a daemon thread; ``close()`` stops it.
    Subclasses build their handler class and call ``_serve(Handler)``, which returns the base URL."""

    def _serve(self, handler) -> str:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


class Server(LocalHTTP):
    """A threaded http.server on 127.0.0.1 serving ``root``; records every request's path and
    Authorization header; paths in ``fail_once`` answer 503 the first time, ``redirect`` maps a
    path to the URL it answers 302 with."""

    def __init__(self, root: Path):
        self.root, self.requests, self.fail_once, self.redirect = root, [], set(), {}
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **k):
                super().__init__(*a, directory=str(server.root), **k)

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Authorization")))
                if self.path in server.fail_once:
                    server.fail_once.discard(self.path)
                    self.send_error(503, "try again")
                    return
                if self.path in server.redirect:
                    self.send_response(302)
                    self.send_header("Location", server.redirect[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                super().do_GET()

            def log_message(self, *args):
                pass

        self.base = self._serve(Handler)


@pytest.fixture
def site(tmp_path, monkeypatch):
    """(server, sources.yaml path, sources dict, parquet bytes), the mirror set through
    $NEGFREE_JUDGED_MIRROR, HF_HUB_OFFLINE (set by conftest) and HF_TOKEN unset."""
    root = tmp_path / "www"
    sources = {}
    for protocol, (repo, files) in GITHUB_FILES.items():
        section = {"repo": repo, "revision": REV[protocol], "files": {}}
        for role, (path, data) in files.items():
            f = root / repo / REV[protocol] / path
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(data)
            section["files"][role] = {"path": path, "url": f"{GH}/{repo}/{REV[protocol]}/{path}",
                                      "sha256": sha(data), "bytes": len(data)}
        sources[protocol] = section
    pq = parquet_bytes(tmp_path)
    f = root / "datasets/allenai/WildBench/resolve" / REV["hf"] / HF_PATH
    f.parent.mkdir(parents=True)
    f.write_bytes(pq)
    sources["wildbench"]["hf_dataset"] = {
        "id": "allenai/WildBench", "config": "v2", "split": "test", "revision": REV["hf"],
        "files": {"test_parquet": {"path": HF_PATH, "sha256": sha(pq), "bytes": None,
                                   "url": f"{HF}/datasets/allenai/WildBench/resolve/{REV['hf']}/{HF_PATH}"}}}
    src = tmp_path / "sources.yaml"
    src.write_text(yaml.safe_dump(sources, sort_keys=False))
    server = Server(root)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv(fetch.MIRROR_ENV, server.base)
    yield server, src, sources, pq
    server.close()


def run_cli(src, out, protocol="all", *extra):
    commands.main_fetch_judged_data(["--protocol", protocol, "--sources", str(src), "--out", str(out), *extra])


def rewrite(src, sources):
    src.write_text(yaml.safe_dump(sources, sort_keys=False))


# ==============================================================================================
def test_files_land_under_their_names_with_manifest_and_marker(site, tmp_path, capsys):
    server, src, sources, pq = site
    out = tmp_path / "judged"
    run_cli(src, out)
    for protocol, names in fetch.EXPECTED.items():
        pdir = out / protocol
        assert sorted(p.name for p in pdir.iterdir()) == sorted([*names, "manifest.json", ".fetched"])
        assert (pdir / ".fetched").read_bytes() == b""
        manifest = json.loads((pdir / "manifest.json").read_text())
        assert manifest["revision"] == REV[protocol] and manifest["protocol"] == protocol
        for role, (path, data) in GITHUB_FILES[protocol][1].items():
            name = local_name(protocol, role, path)
            if name is None:
                continue
            assert (pdir / name).read_bytes() == data
            rec = manifest["files"][name]
            assert rec["url"] == sources[protocol]["files"][role]["url"]
            assert (rec["sha256"], rec["bytes"], rec["verified"]) == (sha(data), len(data), True)
            assert rec["fetched_from"].startswith(server.base)
    wb = json.loads((out / "wildbench/manifest.json").read_text())
    assert wb["hf_dataset"]["revision"] == REV["hf"]
    assert wb["files"]["test_parquet.parquet"]["sha256"] == sha(pq)
    assert wb["files"]["questions.jsonl"]["rows"] == 2
    assert (out / "wildbench/test_parquet.parquet").read_bytes() == pq
    assert not list(out.rglob("*.part"))
    said = capsys.readouterr().out
    assert "mt_bench: 3 downloaded, 0 already in place" in said and "wildbench: 2 downloaded" in said


def test_a_second_run_downloads_nothing_and_touches_nothing(site, tmp_path, capsys):
    server, src, _, _ = site
    out = tmp_path / "judged"
    run_cli(src, out)
    n = len(server.requests)
    assert n == 10   # 3 + 3 + 2 (wildbench) + 2 (alpaca_eval's references, not its judge file)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    run_cli(src, out)
    assert len(server.requests) == n
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == stamps
    assert "arena_hard: 0 downloaded, 3 already in place" in capsys.readouterr().out


def test_a_wrong_sha256_stops_in_one_line_and_keeps_nothing(site, tmp_path):
    server, src, sources, _ = site
    out = tmp_path / "judged"
    wrong = "0" * 64
    sources["mt_bench"]["files"]["reference_answers"]["sha256"] = wrong
    rewrite(src, sources)
    with pytest.raises(SystemExit) as err:
        run_cli(src, out, "mt_bench")
    msg = str(err.value.code)
    observed = sha(GITHUB_FILES["mt_bench"][1]["reference_answers"][1])
    assert "\n" not in msg and msg.startswith("negfree fetch-judged-data: ")
    assert str(out / "mt_bench/reference_answers.jsonl") in msg and wrong in msg and observed in msg
    assert not (out / "mt_bench/reference_answers.jsonl").exists()
    assert not (out / "mt_bench/.fetched").exists() and not (out / "mt_bench/manifest.json").exists()
    assert not list(out.rglob("*.part")) and not list(out.rglob(".*.part"))


def test_a_file_in_place_with_wrong_bytes_is_replaced_and_the_marker_redone(site, tmp_path):
    server, src, _, _ = site
    out = tmp_path / "judged"
    run_cli(src, out, "arena_hard")
    target = out / "arena_hard/judge_config.yaml"
    target.write_bytes(b"tampered\n")
    n = len(server.requests)
    run_cli(src, out, "arena_hard")
    assert len(server.requests) == n + 1
    assert target.read_bytes() == GITHUB_FILES["arena_hard"][1]["judge_config"][1]
    assert (out / "arena_hard/.fetched").exists()


def test_the_parquet_becomes_jsonl_faithfully(site, tmp_path):
    _, src, _, pq = site
    out = tmp_path / "judged"
    run_cli(src, out, "wildbench")
    lines = (out / "wildbench/questions.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 3     # one object per line, no record split
    got = [json.loads(line) for line in lines[:-1]]
    want = json.loads(json.dumps(ROWS).replace("NaN", "null"))
    assert got == want
    assert got[0]["conversation_input"][0]["content"] == "hi \u2028 there"
    assert isinstance(got[1]["secondary_tags"], list) and got[0]["checklist"] == ROWS[0]["checklist"]
    assert (out / "wildbench/test_parquet.parquet").read_bytes() == pq
    rec = json.loads((out / "wildbench/manifest.json").read_text())["files"]["questions.jsonl"]
    assert rec["derived_from"] == "test_parquet.parquet"
    assert rec["sha256"] == sha((out / "wildbench/questions.jsonl").read_bytes())


def test_hf_token_is_sent_as_a_header_and_written_nowhere(site, tmp_path, monkeypatch, capsys):
    server, src, _, _ = site
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    out = tmp_path / "judged"
    run_cli(src, out, "wildbench")
    auth = {path: header for path, header in server.requests}
    hub = [p for p in auth if p.startswith("/datasets/")]
    assert hub and all(auth[p] == f"Bearer {TOKEN}" for p in hub)
    assert all(auth[p] is None for p in auth if p not in hub)   # never to GitHub
    for f in out.rglob("*"):
        if f.is_file():
            assert TOKEN.encode() not in f.read_bytes(), f
    assert TOKEN not in capsys.readouterr().out


def test_the_token_is_not_sent_on_a_redirect_to_another_host(site, tmp_path, monkeypatch):
    server, src, _, _ = site
    cdn = Server(server.root)     # another host (port) with the same files
    try:
        path = f"/datasets/allenai/WildBench/resolve/{REV['hf']}/{HF_PATH}"
        server.redirect[path] = cdn.base + path
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        run_cli(src, tmp_path / "judged", "wildbench")
        assert (path, f"Bearer {TOKEN}") in server.requests
        assert cdn.requests == [(path, None)]
    finally:
        cdn.close()


def test_hf_hub_offline_refuses_in_one_line(site, tmp_path, monkeypatch):
    server, src, _, _ = site
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "judged"
    with pytest.raises(SystemExit) as err:
        run_cli(src, out)
    msg = str(err.value.code)
    assert "\n" not in msg and "HF_HUB_OFFLINE=1" in msg and "needs the network" in msg
    assert server.requests == [] and not out.exists()


def test_an_unpinned_sha256_is_recorded_as_unverified_and_kept_on_rerun(site, tmp_path, capsys):
    server, src, sources, pq = site
    sources["wildbench"]["hf_dataset"]["files"]["test_parquet"]["sha256"] = None
    rewrite(src, sources)
    out = tmp_path / "judged"
    run_cli(src, out, "wildbench")
    files = json.loads((out / "wildbench/manifest.json").read_text())["files"]
    assert files["test_parquet.parquet"]["sha256"] == sha(pq) and files["test_parquet.parquet"]["verified"] is False
    assert files["questions.jsonl"]["verified"] is False and files["score_template.md"]["verified"] is True
    said = capsys.readouterr().out
    assert f"observed {sha(pq)}" in said and "recorded unverified: questions.jsonl, test_parquet.parquet" in said
    n = len(server.requests)
    run_cli(src, out, "wildbench")
    assert len(server.requests) == n


def test_transient_errors_are_retried_and_base_url_map_works(site, tmp_path, monkeypatch):
    server, src, sources, _ = site
    monkeypatch.delenv(fetch.MIRROR_ENV)
    repo, files = GITHUB_FILES["mt_bench"]
    path = f"/{repo}/{REV['mt_bench']}/{files['questions'][0]}"
    server.fail_once.add(path)
    res = fetch.fetch_judged("mt_bench", src, tmp_path / "judged", backoff=0.0,
                             base_url_map=[f"{GH}={server.base}", f"{HF}={server.base}"])
    assert res[0]["downloaded"] == 3
    assert [p for p, _ in server.requests].count(path) == 2
    server.fail_once.add(path)   # out of tries: one line, nothing kept
    target = tmp_path / "other/mt_bench/questions.jsonl"
    with pytest.raises(OSError, match="download failed after 1 attempt: HTTP 503"):
        fetch.fetch_judged("mt_bench", src, tmp_path / "other", retries=0,
                           base_url_map=[f"{GH}={server.base}"])
    assert not target.exists()


def test_mirror_map_forms():
    assert fetch.mirror_map(env={}) == []
    assert fetch.mirror_map(env={fetch.MIRROR_ENV: "http://m:1/"}) == [(GH, "http://m:1"), (HF, "http://m:1")]
    assert fetch.mirror_map(env={fetch.MIRROR_ENV: f"{HF}=http://h, {GH}=http://g"}) == [(HF, "http://h"),
                                                                                       (GH, "http://g")]
    assert fetch.map_url(f"{HF}/datasets/x", [(HF, "http://h")]) == "http://h/datasets/x"
    assert fetch.map_url("https://huggingface.company/x", [(HF, "http://h")]) == "https://huggingface.company/x"
    with pytest.raises(ValueError, match="expected FROM=TO"):
        fetch.mirror_map(["http://only"])


def test_the_command_is_registered():
    from negfree import cli

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert "fetch-judged-data" in sub.choices
