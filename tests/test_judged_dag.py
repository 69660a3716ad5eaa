"""The judged protocols as jobs (negfree/jobs/judged.py, workflows/judged.smk): which runs, which judge,
which command; the judge dollars and GPU-hours of `negfree plan`; the budget cap; the served judge's
start and stop (negfree serve-judge, against the stub server); the judged table."""
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from negfree.jobs.dag import ConfigError, Dag
from negfree.jobs.resources import jobs_of

ROOT = Path(__file__).resolve().parents[1]
STUB = ROOT / "tests" / "judge_stub.py"


def _papers(tmp_path, judges_edit=None, bnf_edit=None):
    """configs/papers.yaml's bnf experiments over a copy of configs/ (judges.yaml edited as asked)."""
    import shutil

    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    j = yaml.safe_load((tmp_path / "configs/judges.yaml").read_text())
    if judges_edit:
        judges_edit(j)
    (tmp_path / "configs/judges.yaml").write_text(yaml.safe_dump(j))
    if bnf_edit:
        f = tmp_path / "configs/paper/bnf.yaml"
        c = yaml.safe_load(f.read_text())
        bnf_edit(c)
        f.write_text(yaml.safe_dump(c))
    return Dag({"experiments": ["configs/paper/bnf.yaml", "configs/paper/asft.yaml"]}, tmp_path, "test")


def test_the_papers_judge_through_the_api_with_the_papers_models(tmp_path):
    dag = _papers(tmp_path)
    bnf = dag.experiments["bnf_llama3_main"]
    j = bnf.judged
    assert j.protocols == ["arena_hard", "wildbench"] and j.runs[0] == "base~meta-llama-3-8b-instruct"
    assert j.runs[1:] == bnf.evaluated_runs()
    assert j.judges["arena_hard"].model == "gpt-4o-mini" and j.judges["wildbench"].model == "gpt-4o-2024-05-13"
    assert all(x.is_papers for x in j.judges.values())
    args = j.eval_args("arena_hard", "work/judge_cache/x")
    assert "--judge-url https://api.openai.com/v1" in args and "--judge-key-env OPENAI_API_KEY" in args
    assert "--judge-model gpt-4o-mini" in args and "--questions work/judged/arena_hard/questions.jsonl" in args
    assert "--baseline work/judged/arena_hard/baseline_answers.jsonl" in args
    assert j.inputs("arena_hard") == ["work/judged/arena_hard/.fetched"]   # the fetched, verified files
    asft = dag.experiments["asft_llama3_uf"].judged
    assert asft.judges["arena_hard"].model == "gpt-4-1106-preview" and asft.judges["mt_bench"].model == "gpt-4"


def test_plan_prices_the_api_judges_and_sizes_the_answer_jobs(tmp_path):
    dag = _papers(tmp_path)
    costs = dag.judge_costs()
    # asft: 6 judged runs (base + 5) x (Arena-Hard 500 prompts x 2 games + MT-Bench 80 x 2 turns)
    assert costs["asft"]["judgements"] == 6 * (500 * 2 + 80 * 2)
    assert costs["asft"]["judge_usd"] > 0 and costs["bnf"]["judge_usd"] > 0 and not costs["asft"]["unpriced"]
    jobs = jobs_of(dag)
    answers = [j for j in jobs if j.rule == "judged_answers"]
    assert len(answers) == sum(len(e.judged.runs) * len(e.judged.protocols) for e in dag.experiments.values())
    assert all(j.gpus >= 1 and j.est_gpu_hours > 0 for j in answers)
    assert not [j for j in jobs if j.rule == "judged_eval"]      # an API judge takes no GPU


def test_a_served_judge_is_a_gpu_job_wrapped_in_serve_judge(tmp_path):
    dag = _papers(tmp_path, bnf_edit=lambda c: c["evaluate"]["judged"].update(judges={"wildbench": "served"}))
    exp = dag.experiments["bnf_llama3_main"]
    judge = exp.judged.judges["wildbench"]
    assert judge.kind == "served" and judge.gpus == 4 and not judge.is_papers
    assert "--judge-url {judge_url}" in exp.judged.eval_args("wildbench", "c")
    served = [j for j in jobs_of(dag) if j.rule == "judged_eval" and j.experiment == "bnf_llama3_main"]
    assert len(served) == len(exp.judged.runs) and all(j.gpus == 4 and j.est_gpu_hours > 1 for j in served)
    # the served judge costs no API dollars: only Arena-Hard is priced for bnf_llama3_main now
    assert dag.judge_costs()["bnf"]["judge_usd"] < _papers(tmp_path / "b").judge_costs()["bnf"]["judge_usd"]


def test_the_budget_cap_refuses_in_one_line(tmp_path):
    dag = _papers(tmp_path, judges_edit=lambda j: j.update(budget_usd=10))
    msg = dag.judge_budget_refusal({})
    assert msg and "over the judge budget $10.00" in msg and "\n" not in msg
    assert dag.judge_budget_refusal({"NEGFREE_JUDGE_BUDGET_USD": "100000"}) is None
    assert "not a number" in dag.judge_budget_refusal({"NEGFREE_JUDGE_BUDGET_USD": "ten"})
    assert _papers(tmp_path / "b").judge_budget_refusal({}) is None        # no cap set


@pytest.mark.parametrize("edit, words", [
    (lambda j: j.update(judge="nope"), "judge 'nope' is not a backend"),
    (lambda j: j.update(runs=["base", "method~nope"]), "'method~nope' is not an evaluated run"),
    (lambda j: j.update(files={"arena_hard": {"questions": "configs/nope.jsonl"}}), "needs baseline"),
    (lambda j: j.update(judges={"mt_bench": "offline"}), "mt_bench not among its protocols"),
])
def test_a_bad_judged_config_is_one_line_naming_it(tmp_path, edit, words):
    with pytest.raises(ConfigError, match="evaluate.judged") as e:
        _papers(tmp_path, bnf_edit=lambda c: edit(c["evaluate"]["judged"]))
    assert words in str(e.value) and "\n" not in str(e.value)


def test_an_endpoint_without_its_url_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="backends.endpoint.base_url is not set"):
        _papers(tmp_path, bnf_edit=lambda c: c["evaluate"]["judged"].update(judge="endpoint"))


def _serve(tmp_path, inner: list[str], server: str | None = None, startup_min: float = 0.5):
    server = server or f"{sys.executable} {STUB} --port {{port}} --port-file {tmp_path}/port --log {tmp_path}/log"
    return subprocess.run([sys.executable, "-m", "negfree.cli", "serve-judge", "--model", "stub", "--startup-min",
                           str(startup_min), "--server-cmd", server, "--", *inner],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def _answers(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_serve_judge_runs_the_command_against_the_server_then_stops_it(tmp_path):
    probe = ("import json,sys,urllib.request; u=sys.argv[1]; "
             "print(json.dumps({'url': u, 'models': json.load(urllib.request.urlopen(u + '/models'))})); sys.exit(3)")
    r = _serve(tmp_path, [sys.executable, "-c", probe, "{judge_url}"])
    assert r.returncode == 3, r.stderr                     # the command's status
    out = json.loads(r.stdout)
    port = int((tmp_path / "port").read_text())
    assert out["url"] == f"http://127.0.0.1:{port}/v1" and out["models"]["data"]
    assert not _answers(port)                              # the server is gone


def test_serve_judge_fails_in_one_line_when_the_server_dies_or_never_answers(tmp_path):
    r = _serve(tmp_path, ["true"], server=f"{sys.executable} -c 'import sys; sys.exit(7)'")
    assert r.returncode == 1 and "exited with status 7 before answering" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = _serve(tmp_path, ["true"], server="sleep 60", startup_min=0.02)
    assert r.returncode == 1 and "did not answer" in r.stderr


def test_the_judged_table_marks_offline_and_other_judges(tmp_path):
    from negfree.report.judged import judged_table

    def result(name, model, offline):
        f = tmp_path / f"{name}.json"
        f.write_text(json.dumps({"format": "negfree-judged-result/1", "protocol": "arena_hard_v0.1",
                                 "metric": "arena_hard_win_rate", "value": 51.5, "ci_low": 40.0, "ci_high": 60.0,
                                 "n": 500, "failed": 0, "judge": {"name": name, "model": model},
                                 "judge_is_offline": offline, "output_length": {"mean_chars": 1234.0}}))
        return str(f)

    rows = judged_table([(result("paper:gpt-4o-mini", "gpt-4o-mini", False), "method~bnf"),
                         (result("served:qwen", "Qwen/Qwen2.5-72B-Instruct", False), "method~dpo"),
                         (result("negfree_offline_judge", "negfree_offline_judge", True), "base~x")],
                        tmp_path / "t.csv", tmp_path / "t.md", paper_judges={"arena_hard": "gpt-4o-mini"})
    assert [r["judge_note"] for r in rows][:2] == ["the paper's judge", "not the paper's judge (gpt-4o-mini)"]
    assert rows[2]["judge_note"].startswith("OFFLINE")
    md = (tmp_path / "t.md").read_text()
    assert "| method~bnf | arena_hard_v0.1 | arena_hard_win_rate | 51.5 | [40.0, 60.0] | 500 |" in md
    assert "Offline judge" in md and (tmp_path / "t.html").exists()
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="not a result of negfree judged-eval"):
        judged_table([(str(bad), "r")], tmp_path / "u.csv", tmp_path / "u.md")


def test_plan_prices_alpaca_eval_with_its_own_annotators(tmp_path):
    import shutil

    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    dag = Dag({"experiments": ["configs/paper/ift_uc.yaml", "configs/paper/ift.yaml"]}, tmp_path, "test")
    exps = list(dag.experiments.values())
    assert all({"alpaca_eval1", "alpaca_eval2"} <= set(e.protocols) for e in exps)
    runs = sum(1 + len(e.evaluated_runs()) + len(e.released_runs()) for e in exps)
    cost = dag.judge_costs()["ift"]
    assert cost["judgements"] == 2 * 805 * runs
    # AlpacaEval 1: gpt-4 at $30/$60 per M, 1500 in + 60 out; AlpacaEval 2: gpt-4-1106-preview at $10/$30, 1150 + 1
    by_hand = 805 * runs * ((1500 * 30 + 60 * 60) + (1150 * 10 + 1 * 30)) / 1e6
    assert cost["judge_usd"] == pytest.approx(by_hand, abs=0.02)
