"""AlpacaEval 1 and 2 in the DAG: evaluate.alpaca_eval resolved (the fetched official files by
default, or the experiment's own), each protocol's annotator and reference, the generation jobs
sized by negfree plan, the official reference files fetched from a local mirror (127.0.0.1), an
OpenAI-compatible endpoint (a stub on 127.0.0.1) whose key is read from a named variable and
never written, the annotation cache across reruns, and an offline alpaca_eval1 run through
the local stand-in judge. No network, no API key."""
import http.server
import json
from pathlib import Path

import pytest
import yaml

from negfree.evaluate import alpaca as A
from negfree.evaluate import commands
from negfree.evaluate.judged import fetch
from negfree.jobs.dag import ConfigError, Dag
from test_judged_fetch import LocalHTTP, Server, sha

ROOT = Path(__file__).resolve().parents[1]
MARKER = "work/judged/alpaca_eval/.fetched"
AE1, AE2 = "work/judged/alpaca_eval/reference_ae1.json", "work/judged/alpaca_eval/reference_ae2.json"

# project-made instructions and reference outputs, in the official files' format
INSTRUCTIONS = ["What is the capital of France?", "Name a primary colour.", "What is 3 plus 4?"]
REF_AE1 = [{"dataset": "negfree_test", "instruction": i, "output": o, "generator": "text_davinci_003"}
           for i, o in zip(INSTRUCTIONS, ["Paris.", "Red.", "Seven."])]
REF_AE2 = [{"dataset": "negfree_test", "instruction": i, "output": o, "generator": "gpt4_1106_preview"}
           for i, o in zip(INSTRUCTIONS, ["The capital of France is Paris.", "Red is one.", "3 + 4 = 7."])]


def _demo(protocols, alpaca=None):
    cfg = yaml.safe_load((ROOT / "configs/demo.yaml").read_text())
    cfg["evaluate"]["protocols"] = ["offline", *protocols]
    cfg["evaluate"].pop("alpaca_eval")   # the demo's own files: dropped, so the fetched ones are read
    if alpaca is not None:
        cfg["evaluate"]["alpaca_eval"] = alpaca
    return cfg


def _exp(cfg):
    dag = Dag(cfg, ROOT, origin="configs/mine.yaml")
    return dag, next(iter(dag.experiments.values()))


# ---------------------------------------------------------------------------------- the DAG
def test_fetched_defaults_give_each_protocol_its_judge_and_reference():
    dag, exp = _exp(_demo(["alpaca_eval1", "alpaca_eval2"]))   # no evaluate.alpaca_eval at all
    for p in ("alpaca_eval1", "alpaca_eval2"):
        assert exp.generation_eval_inputs(p) == [MARKER]
    a1 = exp.generation_eval_args("alpaca_eval1", "method~dft2")
    a2 = exp.generation_eval_args("alpaca_eval2", "base~smollm2-135m-instruct")
    assert a1.startswith(f"--protocol alpaca_eval1 --instructions {AE1} --reference {AE1} --annotator alpaca_eval_gpt4")
    assert a2.startswith(f"--protocol alpaca_eval2 --instructions {AE2} --reference {AE2} "
                         f"--annotator weighted_alpaca_eval_gpt4_turbo")
    assert f"--cache-dir 'work/judge_cache/alpaca_eval/{exp.name}/method~dft2/alpaca_eval1'" in a1
    assert "--endpoint" not in a1 + a2 and "--judge-model" not in a1 + a2
    assert "--limit" not in a1   # evaluate.limit (the lm-eval protocols') does not cut AlpacaEval
    # fetched: true says the same; the experiment's own files are read instead when given
    _, same = _exp(_demo(["alpaca_eval1"], {"fetched": True, "max_new_tokens": 64}))
    assert same.generation_eval_inputs("alpaca_eval1") == [MARKER]
    assert same.generation_eval_args("alpaca_eval1").endswith("--max-new-tokens 64")


def test_own_files_local_judge_and_an_endpoint(tmp_path):
    for name, rows in (("i.json", REF_AE1), ("r1.json", REF_AE1), ("r2.json", REF_AE2)):
        (tmp_path / name).write_text(json.dumps(rows))
    own = {"instructions": str(tmp_path / "i.json"), "reference": str(tmp_path / "r2.json"),
           "reference_ae1": str(tmp_path / "r1.json"), "limit": 2}
    _, exp = _exp(_demo(["alpaca_eval1", "alpaca_eval2"], own))
    assert exp.generation_eval_inputs("alpaca_eval1") == [own["instructions"], own["reference_ae1"]]
    assert exp.generation_eval_inputs("alpaca_eval2") == [own["instructions"], own["reference"]]
    assert f"--reference {own['reference_ae1']} " in exp.generation_eval_args("alpaca_eval1")
    assert exp.generation_eval_args("alpaca_eval2").endswith("--limit 2")
    local = {"annotator": "negfree_local_loglik", "judge_model": str(tmp_path)}
    _, exp = _exp(_demo(["alpaca_eval1", "alpaca_eval2"], local))
    for p in ("alpaca_eval1", "alpaca_eval2"):
        assert f"--annotator negfree_local_loglik --judge-model {tmp_path}" in exp.generation_eval_args(p)
    ep = {"endpoint": {"base_url": "http://judge.internal:8000/v1", "api_key_env": "LAB_JUDGE_KEY"}}
    _, exp = _exp(_demo(["alpaca_eval1"], ep))
    args = exp.generation_eval_args("alpaca_eval1")
    assert "--endpoint-url http://judge.internal:8000/v1 --endpoint-key-env LAB_JUDGE_KEY" in args
    assert "--endpoint-model" not in args   # a gateway: each annotator asks its own model id
    ep["endpoint"].update(model="Qwen/Qwen2.5-72B-Instruct", api_key_env=None)
    _, exp = _exp(_demo(["alpaca_eval2"], ep))
    assert "--endpoint-model Qwen/Qwen2.5-72B-Instruct --endpoint-key-env ''" in exp.generation_eval_args("alpaca_eval2")


@pytest.mark.parametrize("alpaca,message", [
    ({"instructions": "configs/demo.yaml", "reference": "configs/demo.yaml"},
     "evaluate.alpaca_eval.reference_ae1: alpaca_eval1 needs text_davinci_003's outputs"),
    ({"fetched": True, "reference_ae1": "configs/demo.yaml"}, "fetched: true reads the official files"),
    ({"annotator": "weighted_alpaca_eval_gpt4_turbo"},
     "evaluate.alpaca_eval.annotator: weighted_alpaca_eval_gpt4_turbo is not alpaca_eval1's judge"),
    ({"annotator": "negfree_local_loglik"}, "evaluate.alpaca_eval.judge_model: annotator negfree_local_loglik"),
    ({"reference_ae1": "configs/no_ref.json"}, "evaluate.alpaca_eval.reference_ae1: configs/no_ref.json does not exist"),
])
def test_config_errors_name_the_key(alpaca, message):
    with pytest.raises(ConfigError, match="^configs/mine.yaml: ") as e:
        _exp(_demo(["alpaca_eval1"], alpaca))
    assert message in str(e.value)


def test_the_papers_list_alpaca_eval_and_plan_sizes_it():
    from negfree.jobs.resources import jobs_of, job_for

    dag = Dag(yaml.safe_load((ROOT / "configs/papers.yaml").read_text()), ROOT)
    dft, ift, ift_uc = (dag.experiments[n] for n in ("dft_uf", "ift_base_uf", "ift_uc"))
    assert "alpaca_eval2" in dft.protocols and "alpaca_eval1" not in dft.protocols
    for exp in (ift, ift_uc):
        assert {"alpaca_eval1", "alpaca_eval2"} <= set(exp.protocols)
        assert exp.generation_eval_inputs("alpaca_eval1") == [MARKER]
        assert "--fallback-template" in exp.generation_eval_args("alpaca_eval1")   # Mistral-7B-v0.1 has none
    jobs = {j.job: j for j in jobs_of(dag)}
    want = 805 * (64 + 2048)   # 805 instructions, [ours] 64 prompt tokens, max_new_tokens 2048
    for exp, protocols in ((dft, ["alpaca_eval2"]), (ift, ["alpaca_eval1", "alpaca_eval2"])):
        for who in [exp.base_run(), *exp.evaluated_runs(), *exp.released_runs()]:
            for p in protocols:
                j = jobs[f"{exp.run_dir(who)}/eval/{p}.json"]
                assert (j.rule, j.tokens, j.gpus) == ("evaluate_generation", want, exp.config["launch"]["gpus"]["evaluate"])
                assert j.est_gpu_hours > 0
    released = f"{dft.run_dir(dft.released_runs()[0])}/eval/alpaca_eval2.json"
    wc = {"exp": "dft_uf", "who": dft.released_runs()[0], "gen_protocol": "alpaca_eval2"}
    assert job_for(dag, "evaluate_generation", wc).est_gpu_hours == jobs[released].est_gpu_hours


# ---------------------------------------------------------------------------- the official files
def test_sources_yaml_pins_the_two_reference_files():
    meta, pins = fetch.load_pins(ROOT / "configs/judged/sources.yaml", "alpaca_eval")
    assert meta["repo"] == "tatsu-lab/alpaca_eval"
    by_name = {p.name: p for p in pins}
    assert sorted(by_name) == ["reference_ae1.json", "reference_ae2.json"]   # the judge files: record only
    assert by_name["reference_ae1.json"].url.endswith("/results/text_davinci_003/model_outputs.json")
    assert by_name["reference_ae2.json"].url.endswith("/results/gpt4_1106_preview/model_outputs.json")
    assert all(p.sha256 and p.bytes and not p.hub for p in pins)
    assert (AE1, AE2) == (A.FETCHED_FILES["alpaca_eval1"], A.FETCHED_FILES["alpaca_eval2"])
    assert A.FETCHED_MARKER == f"work/judged/alpaca_eval/{fetch.MARKER}"


def test_the_installed_annotators_are_the_pinned_ones():
    """alpaca_eval 0.6.6's annotator configs and prompts, which judge, have the sha256 that
    sources.yaml pins for them at alpaca_eval's GitHub revision (judge_config_ae1, ...)."""
    pytest.importorskip("alpaca_eval")
    files = yaml.safe_load((ROOT / "configs/judged/sources.yaml").read_text())["alpaca_eval"]["files"]
    pinned = {f["path"].split("evaluators_configs/", 1)[1]: f["sha256"] for f in files.values()
              if "evaluators_configs/" in f["path"]}
    installed = {**A.official_files(A.AE1_ANNOTATOR), **A.official_files(A.GPT4_ANNOTATOR)}
    assert installed == pinned


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A local mirror of GitHub's raw files with the two reference files (project-made contents)
    and a sources.yaml pinning them by sha256, like configs/judged/sources.yaml's block."""
    rev, repo = "f" * 40, "tatsu-lab/alpaca_eval"
    files = {"reference_outputs_ae1": ("results/text_davinci_003/model_outputs.json", REF_AE1),
             "reference_outputs_ae2": ("results/gpt4_1106_preview/model_outputs.json", REF_AE2),
             "judge_config_ae1": ("src/alpaca_eval/evaluators_configs/alpaca_eval_gpt4/configs.yaml", {"x": 1})}
    section = {"repo": repo, "revision": rev, "files": {}}
    for role, (path, rows) in files.items():
        data = (json.dumps(rows, indent=4) + "\n").encode()
        f = tmp_path / "www" / repo / rev / path
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data)
        section["files"][role] = {"path": path, "url": f"{fetch.GITHUB_RAW}/{repo}/{rev}/{path}",
                                  "sha256": sha(data), "bytes": len(data)}
    src = tmp_path / "sources.yaml"
    src.write_text(yaml.safe_dump({"alpaca_eval": section}, sort_keys=False))
    server = Server(tmp_path / "www")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv(fetch.MIRROR_ENV, server.base)
    yield server, src, section
    server.close()


def test_fetch_alpaca_eval_from_a_mirror(mirror, tmp_path, capsys):
    server, src, section = mirror
    out = tmp_path / "judged"
    commands.main_fetch_judged_data(["--protocol", "alpaca_eval", "--sources", str(src), "--out", str(out)])
    pdir = out / "alpaca_eval"
    assert sorted(p.name for p in pdir.iterdir()) == [".fetched", "manifest.json", "reference_ae1.json",
                                                       "reference_ae2.json"]
    assert [p for p, _ in server.requests] == [f"/{section['repo']}/{section['revision']}/{section['files'][r]['path']}"
                                               for r in ("reference_outputs_ae1", "reference_outputs_ae2")]
    manifest = json.loads((pdir / "manifest.json").read_text())
    for name, role in (("reference_ae1.json", "reference_outputs_ae1"), ("reference_ae2.json", "reference_outputs_ae2")):
        rec = manifest["files"][name]
        assert (rec["role"], rec["sha256"], rec["verified"]) == (role, section["files"][role]["sha256"], True)
    # each file is its protocol's instructions and reference, as negfree alpaca-eval reads them
    for p, rows in (("alpaca_eval1", REF_AE1), ("alpaca_eval2", REF_AE2)):
        got = A.read_instructions(pdir / Path(A.FETCHED_FILES[p]).name)
        assert got == rows and A.lc_eligibility(got, got, None, p)[0] is False   # 3, not 805
    assert "alpaca_eval: 2 downloaded, 0 already in place" in capsys.readouterr().out
    n = len(server.requests)
    commands.main_fetch_judged_data(["--protocol", "alpaca_eval", "--sources", str(src), "--out", str(out)])
    assert len(server.requests) == n   # verified files in place: nothing fetched again
    # a wrong pin: one line, nothing at the final name, no marker
    section["files"]["reference_outputs_ae2"]["sha256"] = "0" * 64
    src.write_text(yaml.safe_dump({"alpaca_eval": section}, sort_keys=False))
    with pytest.raises(SystemExit) as err:
        commands.main_fetch_judged_data(["--protocol", "alpaca_eval", "--sources", str(src),
                                         "--out", str(tmp_path / "other")])
    assert "sha256 mismatch" in str(err.value.code) and "\n" not in str(err.value.code)
    assert not (tmp_path / "other/alpaca_eval/reference_ae2.json").exists()
    assert not (tmp_path / "other/alpaca_eval/.fetched").exists()


def test_lc_recognises_the_official_805_in_order(monkeypatch):
    """The digest of AlpacaEval's 805 instructions in order (EVAL_SET_SHA256) is what LC asks for:
    a reordered or shortened set is refused, alpaca_eval1 never has LC."""
    full = [{"instruction": f"instruction {i}"} for i in range(805)]
    monkeypatch.setattr(A, "EVAL_SET_SHA256", A.instructions_sha256(full))
    assert A.lc_eligibility(full, full, None, "alpaca_eval2")[0] is True
    swapped = full[:]
    swapped[0], swapped[1] = swapped[1], swapped[0]
    assert A.lc_eligibility(swapped, swapped, None, "alpaca_eval2")[0] is False
    assert A.lc_eligibility(full, full, None, "alpaca_eval1")[0] is False


# ------------------------------------------------------------------------------ judges
def test_annotator_checks(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(A.AlpacaEvalError, match="annotator alpaca_eval_gpt4 \\(AlpacaEval 1's GPT-4 judge\\) needs "
                                                "OPENAI_API_KEY"):
        A.check_annotator(None, None, "alpaca_eval1")
    with pytest.raises(ValueError, match="weighted_alpaca_eval_gpt4_turbo is alpaca_eval2's judge"):
        A.check_annotator("weighted_alpaca_eval_gpt4_turbo", None, "alpaca_eval1")
    monkeypatch.setenv("LAB_KEY", "x")
    ep = {"base_url": "http://127.0.0.1:9/v1", "api_key_env": "LAB_KEY"}
    assert A.check_annotator(None, None, "alpaca_eval1", ep) == "alpaca_eval_gpt4"   # its key is LAB_KEY's
    with pytest.raises(A.AlpacaEvalError, match="needs OTHER_KEY in the environment \\(the key of the endpoint"):
        A.check_annotator(None, None, "alpaca_eval2", {**ep, "api_key_env": "OTHER_KEY"})
    with pytest.raises(ValueError, match="the NAME of the environment variable"):
        A.check_endpoint({**ep, "api_key_env": "sk-proj-a-key-pasted-here"})
    who = A.judge_identity("alpaca_eval_gpt4", endpoint={**ep, "model": "judge-x"})
    assert who["label"] == "alpaca_eval_gpt4@judge-x" and who["is_alpaca_eval_judge"] is False
    assert A.judge_identity("alpaca_eval_gpt4", endpoint=ep)["is_alpaca_eval_judge"] is True


def test_the_endpoint_client_config_names_the_variable_not_the_key(tmp_path, monkeypatch):
    pytest.importorskip("alpaca_eval")
    from alpaca_eval import utils

    secret = "sk-negfree-endpoint-test-never-written"
    monkeypatch.setenv("NEGFREE_TEST_JUDGE_KEY", secret)
    path = A.write_endpoint_annotator_config(tmp_path / "annotator", A.AE1_ANNOTATOR,
                                             {"base_url": "http://127.0.0.1:9/v1/", "model": "judge-x",
                                              "api_key_env": "NEGFREE_TEST_JUDGE_KEY"})
    cfg = yaml.safe_load(path.read_text())["alpaca_eval_gpt4"]
    official = yaml.safe_load((A.evaluators_dir() / "alpaca_eval_gpt4/configs.yaml").read_text())["alpaca_eval_gpt4"]
    assert cfg["fn_completion_parser"] == "ranking_parser" == official["fn_completion_parser"]
    assert Path(cfg["prompt_template"]).read_text() == (A.evaluators_dir() / official["prompt_template"]).read_text()
    kw = cfg["completions_kwargs"]
    assert (kw["model_name"], kw["max_tokens"], kw["temperature"], kw["requires_chatml"]) == ("judge-x", 100, 0, True)
    client_cfg = yaml.safe_load(Path(kw["client_config_path"]).read_text())
    assert client_cfg == {"default": [{"client_class": "negfree.evaluate.alpaca.openai_client",
                                       "base_url": "http://127.0.0.1:9/v1", "api_key_env": "NEGFREE_TEST_JUDGE_KEY"}]}
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert secret not in f.read_text(), f
    # alpaca_eval's own client loader makes an OpenAI client with the key from the variable
    (client,) = utils.get_all_clients(kw["client_config_path"], model_name="judge-x", default_client_class="openai.OpenAI",
                                      get_backwards_compatible_configs=None)
    assert client.api_key == secret and str(client.base_url).rstrip("/") == "http://127.0.0.1:9/v1"


class StubJudge(LocalHTTP):
    """An OpenAI-compatible chat endpoint on 127.0.0.1: AlpacaEval 1's ranking reply (the second
    output shown wins) or AlpacaEval 2's one-token reply with top log-probs. Records each request's
    model and Authorization header."""

    def __init__(self):
        self.requests = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append((self.path, body.get("model"), self.headers.get("Authorization")))
                choice = {"index": 0, "finish_reason": "stop", "logprobs": None,
                          "message": {"role": "assistant", "content":
                                      "[{'model': 'model_1', 'rank': 2}, {'model': 'model_2', 'rank': 1}]"}}
                if body.get("logprobs"):
                    top = [{"token": "M", "logprob": -0.2, "bytes": None}, {"token": "m", "logprob": -1.8, "bytes": None}]
                    choice["message"]["content"] = "M"
                    choice["logprobs"] = {"content": [{"token": "M", "logprob": -0.2, "bytes": None,
                                                       "top_logprobs": top}]}
                data = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": body.get("model"),
                                   "choices": [choice],
                                   "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.url = self._serve(Handler) + "/v1"


@pytest.mark.parametrize("protocol,reference", [("alpaca_eval1", REF_AE1), ("alpaca_eval2", REF_AE2)])
def test_the_official_annotators_through_an_endpoint_cached_across_reruns(protocol, reference, tiny_model_dir,
                                                                            tmp_path, monkeypatch):
    """The official annotator config (its prompt and parser) through a stub endpoint: the key goes
    in the Authorization header only, the model asked is the endpoint's, and a rerun asks nothing."""
    pytest.importorskip("alpaca_eval")
    secret = "sk-negfree-stub-key-never-written"
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("NEGFREE_TEST_JUDGE_KEY", secret)
    ref = tmp_path / "reference.json"
    ref.write_text(json.dumps(reference))
    stub = StubJudge()
    try:
        ep = {"base_url": stub.url, "model": "stub-judge", "api_key_env": "NEGFREE_TEST_JUDGE_KEY"}
        run = dict(protocol=protocol, endpoint=ep, cache_dir=tmp_path / "cache", max_new_tokens=6, batch_size=3,
                   name="tiny")
        out = tmp_path / "eval" / f"{protocol}.json"
        rec = A.evaluate_alpaca(tiny_model_dir, ref, ref, out, **run)
        assert len(stub.requests) == 3
        assert {(p, m, h) for p, m, h in stub.requests} == {("/v1/chat/completions", "stub-judge", f"Bearer {secret}")}
        assert rec["protocol"] == protocol and rec["annotator_config"] == A.OFFICIAL[protocol]
        assert rec["annotator"] == f"{A.OFFICIAL[protocol]}@stub-judge" and not rec["annotator_is_alpaca_eval_judge"]
        assert (rec["judge_endpoint"], rec["judge_api_key_env"]) == (stub.url, "NEGFREE_TEST_JUDGE_KEY")
        assert rec["reference_generator"] == A.REFERENCE_GENERATORS[protocol] and rec["reference_is_protocols"]
        assert rec["n_unjudged"] == 0 and rec["n_judgements_from_cache"] == 0 and rec["win_rate_kind"] == "plain"
        assert rec["metrics"][0]["task"] == protocol and 0 <= rec["win_rate"] <= 100
        ann = json.loads(out.with_suffix(".annotations.json").read_text())
        assert all(1 <= a["preference"] <= 2 for a in ann)
        # the rerun: every judgement from the cache, the same numbers
        again = A.evaluate_alpaca(tiny_model_dir, ref, ref, tmp_path / "again" / f"{protocol}.json", **run)
        assert len(stub.requests) == 3 and again["n_judgements_from_cache"] == 3
        # (alpaca_eval writes its cache with pandas' default 10 significant digits)
        assert again["win_rate"] == pytest.approx(rec["win_rate"], rel=1e-8)
        assert Path(rec["annotation_cache"]).parent == tmp_path / "cache"
    finally:
        stub.close()
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert secret not in f.read_text(errors="replace"), f


def test_a_swapped_reference_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-used")
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps(REF_AE2))
    with pytest.raises(ValueError, match="holds gpt4_1106_preview's outputs, alpaca_eval2's reference; alpaca_eval1 "
                                         "compares with text_davinci_003's"):
        A.evaluate_alpaca(tmp_path / "no_model", ref, ref, tmp_path / "out.json", protocol="alpaca_eval1")


def test_alpaca_eval1_offline_with_the_local_judge(tiny_model_dir, tmp_path, monkeypatch):
    """alpaca_eval1 end to end offline: the reference file is also the instructions file, the local
    stand-in answers in AlpacaEval 1's ranking format (alpaca_eval's ranking_parser reads it), the
    plain win rate; a rerun takes every judgement from the cache and never calls the judge."""
    pytest.importorskip("alpaca_eval")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    ref = tmp_path / "reference_ae1.json"
    ref.write_text(json.dumps(REF_AE1))
    run = dict(protocol="alpaca_eval1", annotator=A.LOCAL_ANNOTATOR, judge_model=tiny_model_dir, max_new_tokens=6,
               batch_size=3, name="tiny", cache_dir=tmp_path / "cache")
    out = tmp_path / "eval" / "alpaca_eval1.json"
    rec = A.evaluate_alpaca(tiny_model_dir, ref, ref, out, **run)
    assert json.loads(out.read_text()) == rec
    assert (rec["protocol"], rec["annotator"], rec["annotator_is_alpaca_eval_judge"]) == \
        ("alpaca_eval1", "negfree_local_loglik", False)
    assert rec["win_rate_kind"] == "plain" and "AlpacaEval 1 defines no length-controlled" in rec["lc_reason"]
    assert [m["task"] for m in rec["metrics"]] == ["alpaca_eval1"] * 2
    assert [m["metric"] for m in rec["metrics"]] == ["win_rate", "mean_length_chars"]
    cfg = yaml.safe_load((out.with_suffix(".work") / "annotator/configs.yaml").read_text())
    assert cfg["negfree_local_loglik"]["fn_completion_parser"] == "ranking_parser"
    ann = json.loads(out.with_suffix(".annotations.json").read_text())
    assert len(ann) == 3 and {a["preference"] for a in ann} <= {1.0, 2.0}
    assert all(a["generator_1"] == "text_davinci_003" for a in ann)
    assert rec["win_rate"] == pytest.approx(100 * sum(a["preference"] - 1 for a in ann) / 3)

    def no_judge(self, prompts, **_):
        raise AssertionError(f"the judge was asked {len(prompts)} prompt(s) despite the cache")

    monkeypatch.setattr(A.LoglikJudge, "__call__", no_judge)
    again = A.evaluate_alpaca(tiny_model_dir, ref, ref, tmp_path / "again" / "alpaca_eval1.json", **run)
    assert again["n_judgements_from_cache"] == 3 and again["win_rate"] == rec["win_rate"]


def test_a_half_written_cache_is_moved_aside_and_failures_asked_again(tmp_path):
    path = tmp_path / "annotations_x.json"
    path.write_text('[{"instruction": "a", "preference": 2.0}, {"instr')
    assert "moved to annotations_x.json.unreadable" in A._prepare_cache(path)
    assert not path.exists() and (tmp_path / "annotations_x.json.unreadable").exists()
    rows = [{"instruction": "a", "preference": 2.0}, {"instruction": "b", "preference": -1},
            {"instruction": "c", "preference": None}]
    path.write_text(json.dumps(rows))
    assert "2 failed judgement(s) dropped" in A._prepare_cache(path)
    assert json.loads(path.read_text()) == rows[:1]
    assert A._prepare_cache(path) is None


def test_the_cli_takes_the_protocol_and_the_endpoint():
    import argparse

    p = argparse.ArgumentParser()
    commands.add_alpaca_arguments(p)
    a = p.parse_args(["--model", "m", "--instructions", "i", "--reference", "r", "--out", "o", "--protocol",
                      "alpaca_eval1", "--endpoint-url", "http://h/v1", "--endpoint-key-env", "", "--cache-dir", "c"])
    assert (a.protocol, a.annotator, a.endpoint_url, a.endpoint_key_env, a.cache_dir) == \
        ("alpaca_eval1", None, "http://h/v1", "", "c")
    assert a.endpoint_model is None


# ------------------------------------------------- AlpacaEval listed under evaluate.judged
def test_alpaca_eval_listed_as_judged_runs_for_the_judged_runs_only():
    from negfree.jobs.resources import jobs_of

    cfg = yaml.safe_load((ROOT / "configs/demo.yaml").read_text())   # the demo lists both, on its own files
    dag, exp = _exp(cfg)
    j = exp.judged
    assert j.protocols == ["arena_hard", "mt_bench", "wildbench"] and j.alpaca == ["alpaca_eval1", "alpaca_eval2"]
    assert "alpaca_eval1" not in exp.protocols                      # not every evaluated run: the judged runs
    outs = j.outputs(exp.runs_root)
    assert [o for o in outs if "alpaca" in o] == [f"{exp.runs_root}/{r}/eval/{p}.json"
                                                  for p in j.alpaca for r in j.runs]
    gen = sorted(x.job for x in jobs_of(dag) if x.rule == "evaluate_generation" and "alpaca" in x.job)
    assert gen == sorted(o for o in outs if "alpaca" in o)
    assert dag.judge_costs()["demo"]["judge_usd"] == 0              # the local stand-in costs nothing
    # judge_model: base, the experiment's own model as the DAG prepares it (no path to exist beforehand)
    assert f"--judge-model {exp.model_dir} " in exp.generation_eval_args("alpaca_eval2", "method~sft")
    assert exp.generation_eval_inputs("alpaca_eval2")[-1] == f"{exp.model_dir}/config.json"
    # AlpacaEval's own judges on the fetched 805 instructions: priced per judged run (3 runs x 805 each)
    cfg["evaluate"].pop("alpaca_eval")
    dag, _ = _exp(cfg)
    c = dag.judge_costs()["demo"]
    cfg["evaluate"]["judged"]["protocols"] = j.protocols                # the offline-judged three alone
    without, _ = _exp(cfg)
    assert c["judgements"] - without.judge_costs()["demo"]["judgements"] == 2 * 3 * 805 and c["judge_usd"] > 0


@pytest.mark.parametrize("edit, words", [
    (lambda j: j.update(judges={"alpaca_eval2": "offline"}), "AlpacaEval's judge is its annotator"),
    (lambda j: j.update(protocols=["arena_hard", "alpaca_eval3"]), "alpaca_eval3"),
])
def test_a_bad_judged_alpaca_entry_is_one_line(edit, words):
    cfg = yaml.safe_load((ROOT / "configs/demo.yaml").read_text())
    edit(cfg["evaluate"]["judged"])
    with pytest.raises(ConfigError) as e:
        _exp(cfg)
    assert words in str(e.value)
