"""The judged protocols as jobs (negfree/jobs/judged.py, workflows/judged.smk): which runs, which judge,
which command; the judge dollars and GPU-hours of `negfree plan`; the budget cap; the served judge's
start and stop (negfree serve-judge, against the stub server), one serving job per experiment and
backend (judged_serve) and its dry run; api_jobs: submit_host; the judged table."""
import json
import os
import re
import shlex
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
    # asft: 6 judged runs (base + 5) x (Arena-Hard 500 prompts x 2 games + MT-Bench 80 x 2 turns, judged twice:
    # by GPT-4 and again by GPT-4 Turbo)
    assert costs["asft"]["judgements"] == 6 * (500 * 2 + 80 * 2 + 80 * 2)
    assert costs["asft"]["judge_usd"] > 0 and costs["bnf"]["judge_usd"] > 0 and not costs["asft"]["unpriced"]
    jobs = jobs_of(dag)
    answers = [j for j in jobs if j.rule == "judged_answers"]
    assert len(answers) == sum(len(e.judged.runs) * len(e.judged.protocols) for e in dag.experiments.values())
    assert all(j.gpus >= 1 and j.est_gpu_hours > 0 for j in answers)
    assert not [j for j in jobs if j.rule == "judged_eval"]      # an API judge takes no GPU


TURBO = "gpt-4-1106-preview"


def test_asft_mt_bench_is_judged_again_by_gpt4_turbo(tmp_path):
    """configs/judges.yaml paper_judges.asft.mt_bench lists gpt-4 then gpt-4-1106-preview: one more judging
    of the same answers per run, its own result file and cache, priced at GPT-4 Turbo's price."""
    from negfree.jobs.resources import job_for, judged_work

    dag = _papers(tmp_path)
    exp = dag.experiments["asft_llama3_uf"]
    j = exp.judged
    assert j.judges["mt_bench"].model == "gpt-4" and j.judges["mt_bench"].paper_model == "gpt-4"
    assert [x.model for x in j.extra["mt_bench"]] == [TURBO] and "arena_hard" not in j.extra
    extra = j.extra["mt_bench"][0]
    assert extra.kind == "api" and extra.backend == "paper" and extra.is_papers
    assert j.judge_of(f"mt_bench@{TURBO}") is extra and j.judgings() == ["arena_hard", "mt_bench", f"mt_bench@{TURBO}"]
    assert not dag.experiments["bnf_llama3_main"].judged.extra       # bnf lists one judge per protocol
    outs = set(j.outputs(exp.runs_root))
    for who in j.runs:
        assert f"{exp.runs_root}/{who}/eval/mt_bench@{TURBO}.json" in outs
        assert f"{exp.runs_root}/{who}/eval/mt_bench.json" in outs
    assert len(outs) == 3 * len(j.runs)
    who = j.runs[0]
    cache = j.cache_dir(exp.name, who, f"mt_bench@{TURBO}")
    assert cache == f"work/judge_cache/asft_llama3_uf/{who}/mt_bench@{TURBO}" != j.cache_dir(exp.name, who, "mt_bench")
    args = j.eval_args(f"mt_bench@{TURBO}", cache)
    assert f"--judge-model {TURBO}" in args and f"--judge-name paper:{TURBO}" in args
    assert f"--cache-dir {shlex.quote(cache)}" in args and "--benchmark mt-bench" in args
    assert "--judge-url https://api.openai.com/v1" in args and "--judge-key-env OPENAI_API_KEY" in args
    assert "--questions work/judged/mt_bench/questions.jsonl" in args
    assert "--judge-model gpt-4 " in j.eval_args("mt_bench", j.cache_dir(exp.name, who, "mt_bench")) + " "
    # the resources of its judged_eval job (judged.smk asks NF.estimate for the wildcard mt_bench@<model>)
    job = job_for(dag, "judged_eval", {"exp": exp.name, "who": who, "judged": f"mt_bench@{TURBO}"})
    assert job.gpus == 0 and job.job == f"{exp.runs_root}/{who}/eval/mt_bench@{TURBO}.json"
    assert job.mem_mb() > 0 and job.runtime_min() > 0
    # the dollars: exactly runs x MT-Bench's judged_work at GPT-4 Turbo's price more than with one judge
    one = _papers(tmp_path / "one", judges_edit=lambda c: c["paper_judges"]["asft"].update(mt_bench="gpt-4"))
    assert not one.experiments["asft_llama3_uf"].judged.extra
    w = judged_work(exp, "mt_bench")
    price = yaml.safe_load((tmp_path / "configs/judges.yaml").read_text())["prices_usd_per_million_tokens"][TURBO]
    assert price == [10.0, 30.0]
    per_run = (w["judge_in"] * 10.0 + w["judge_out"] * 30.0) / 1e6
    two, single = dag.judge_costs()["asft"], one.judge_costs()["asft"]
    assert two["judgements"] - single["judgements"] == len(j.runs) * w["judgements"] == 6 * 160
    assert two["judge_input_tokens"] - single["judge_input_tokens"] == len(j.runs) * w["judge_in"]
    assert two["judge_usd"] - single["judge_usd"] == pytest.approx(len(j.runs) * per_run, abs=0.02)
    assert two["judge_usd_left"] == two["judge_usd"]
    # its own result and cache count for what is left to judge
    done = tmp_path / j.result(exp.runs_root, who, f"mt_bench@{TURBO}")
    done.parent.mkdir(parents=True)
    done.write_text("{}")
    assert dag.judge_costs()["asft"]["judge_usd_left"] == pytest.approx(two["judge_usd"] - per_run, abs=0.02)


@pytest.mark.parametrize("backend", ["served", "offline"])
def test_a_non_api_judge_asks_no_extra_judge(tmp_path, backend):
    dag = _papers(tmp_path, judges_edit=lambda c: c.update(default=backend))
    j = dag.experiments["asft_llama3_uf"].judged
    assert j.judges["mt_bench"].kind == backend and j.extra == {}
    assert j.judgings() == ["arena_hard", "mt_bench"]
    assert not any("@" in o for o in j.outputs(dag.experiments["asft_llama3_uf"].runs_root))


def test_an_endpoint_with_its_own_model_asks_no_extra_judge(tmp_path):
    def edit(c):
        c["backends"]["endpoint"].update(base_url="http://judge.internal:8000/v1", model="some/judge")
        c["default"] = "endpoint"
    j = _papers(tmp_path, judges_edit=edit).experiments["asft_llama3_uf"].judged
    assert j.judges["mt_bench"].model == "some/judge" and j.extra == {}


def _bnf_served(tmp_path, judges_edit=None):
    return _papers(tmp_path, judges_edit=judges_edit,
                   bnf_edit=lambda c: c["evaluate"]["judged"].update(judges={"wildbench": "served"}))


def test_a_served_judge_is_one_gpu_job_per_experiment_with_one_start_up(tmp_path):
    from negfree.jobs.resources import BW_EFFICIENCY, GPUS, MFU_FORWARD, judged_eval_job, judged_work, launch_of

    dag = _bnf_served(tmp_path)
    exp = dag.experiments["bnf_llama3_main"]
    judge = exp.judged.judges["wildbench"]
    assert judge.kind == "served" and judge.gpus == 4 and not judge.is_papers
    assert exp.judged.served_backends() == {"served": ["wildbench"]}
    jobs = [j for j in jobs_of(dag) if j.experiment == "bnf_llama3_main"]
    serve = [j for j in jobs if j.rule == "judged_serve"]
    assert len(serve) == 1 and serve[0].gpus == 4 and serve[0].job == "work/judged_served/bnf_llama3_main/served.done"
    assert not [j for j in jobs if j.rule == "judged_eval"]        # judged_eval takes no GPU, whatever the judge
    assert all(judged_eval_job(exp, who, p, dag.basedir).gpus == 0 for p in exp.judged.protocols
               for who in exp.judged.runs)
    # by hand: ONE start-up, then per judged run the judge's prefill at MFU_FORWARD and its replies decoded
    # at the bandwidth bound of its weights (32 in flight), over its 4 GPUs
    w, gpu = judged_work(exp, "wildbench"), GPUS[launch_of(exp)["gpu_type"]]
    per_run_s = (2 * 72.7e9 * w["judge_in"] / (MFU_FORWARD * gpu.bf16_tflops * 1e12 * 4)
                 + w["judge_out"] / 32 * 2 * 72.7e9 / (BW_EFFICIENCY * gpu.hbm_tbps * 1e12 * 4))
    runs = len(exp.judged.runs)
    hours = 15 / 60 + runs * per_run_s / 3600
    assert runs >= 10 and serve[0].est_gpu_hours == pytest.approx(4 * hours, abs=0.01)
    assert serve[0].runtime_min() >= hours * 60
    # what a job per run cost before: a start-up each (runs - 1 start-ups saved, on 4 GPUs)
    assert runs * 4 * (15 / 60 + per_run_s / 3600) - serve[0].est_gpu_hours == pytest.approx(4 * (runs - 1) * 15 / 60,
                                                                                            abs=0.01)
    # the served judge costs no API dollars: only Arena-Hard is priced for bnf_llama3_main now
    assert dag.judge_costs()["bnf"]["judge_usd"] < _papers(tmp_path / "b").judge_costs()["bnf"]["judge_usd"]


def _commands(script: str) -> list[list[str]]:
    """The simple commands of a `bash -c` script of commands separated by `;`."""
    lex = shlex.shlex(script, posix=True, punctuation_chars=";")
    lex.whitespace_split = True
    out = [[]]
    for tok in lex:
        if tok == ";":
            out.append([])
        else:
            out[-1].append(tok)
    return [c for c in out if c]


def test_the_served_judge_judges_every_run_inside_one_serve_judge(tmp_path):
    dag = _bnf_served(tmp_path)
    exp = dag.experiments["bnf_llama3_main"]
    j = exp.judged
    argv = shlex.split(j.serve_command(exp.runs_root, exp.name, "served", "NF"))
    cut = argv.index("--")
    assert argv[:cut] == ["NF", "serve-judge", "--model", "Qwen/Qwen2.5-72B-Instruct", "--gpus", "4",
                          "--startup-min", "15"]
    assert argv[cut + 1:cut + 3] == ["bash", "-c"] and len(argv) == cut + 4   # ONE serve-judge around one script
    cmds = _commands(argv[-1])
    assert cmds[0] == ["set", "-e"] and not [c for c in cmds if "serve-judge" in c]
    evals = [c for c in cmds if c[:2] == ["NF", "judged-eval"]]
    assert len(evals) == len(j.runs)                              # once per judged run, Arena-Hard (API) not here
    for c in evals:
        opt = {c[i]: c[i + 1] for i in range(2, len(c) - 1) if c[i].startswith("--")}
        who = opt["--run"]
        assert opt["--judge-url"] == "{judge_url}" and opt["--benchmark"] == "wildbench"
        assert opt["--judge-model"] == "Qwen/Qwen2.5-72B-Instruct"
        assert opt["--judge-name"] == "served:Qwen/Qwen2.5-72B-Instruct"
        assert opt["--cache-dir"] == f"work/judge_cache/bnf_llama3_main/{who}/wildbench"   # today's cache
        assert opt["--out"] == f"work/judged_served/bnf_llama3_main/{who}/wildbench.json"
        assert opt["--answers"] == f"results/runs/bnf_llama3_main/{who}/judged/wildbench.answers.jsonl"
    assert [c[c.index("--run") + 1] for c in evals] == j.runs
    assert j.serve_inputs(exp.runs_root, "served") == (
        [f"results/runs/bnf_llama3_main/{who}/judged/wildbench.answers.jsonl" for who in j.runs]
        + ["work/judged/wildbench/.fetched"])
    # judged_eval of a served judge copies the result and its judgements JSONL (named by the result)
    assert j.served_copy_command("bnf_llama3_main", "method~bnf", "wildbench",
                                 "results/runs/bnf_llama3_main/method~bnf/eval/wildbench.json") == (
        "cp 'work/judged_served/bnf_llama3_main/method~bnf/wildbench.judgements.jsonl' "
        "'results/runs/bnf_llama3_main/method~bnf/eval/wildbench.judgements.jsonl' && "
        "cp 'work/judged_served/bnf_llama3_main/method~bnf/wildbench.json' "
        "'results/runs/bnf_llama3_main/method~bnf/eval/wildbench.json'")


def test_the_served_judge_end_to_end_with_one_server_start_then_all_cached(tmp_path):
    """Two runs' Arena-Hard answers (the demo's project-made files) judged by the served judge's command,
    the stub server in vLLM's place: one server start for both runs; a rerun asks the server nothing."""
    from negfree.jobs.judged import Judge, Judged

    demo = ROOT / "configs/judged/demo/arena_hard"
    files = {"questions": str(demo / "question.jsonl"), "baseline": str(demo / "model_answer/negfree-baseline.jsonl"),
             "judge_template": str(demo / "judge_config.yaml")}
    judge = Judge("served", "served", "stub-judge", None, gpus=1, startup_min=0.5, params=1e9, concurrency=2)
    runs = ["base~tiny", "method~dpo"]
    j = Judged(["arena_hard"], runs, {"arena_hard": files}, {"arena_hard": False}, {"arena_hard": judge},
               max_new_tokens={"arena_hard": 8})
    qids = [json.loads(line)["question_id"] for line in Path(files["questions"]).read_text().splitlines()]
    for who in runs:
        f = tmp_path / j.answers("results/runs/tiny", who, "arena_hard")
        f.parent.mkdir(parents=True)
        f.write_text("".join(json.dumps({"question_id": q, "turns": [f"{who} answers {i}"], "model": who,
                                         "settings": {}}) + "\n" for i, q in enumerate(qids)))
    verdicts = shlex.quote(json.dumps({n: ["ok", "My final verdict is: [[A>B]]"] for n in range(1, 41)}))
    server = (f"{sys.executable} {STUB} --port {{port}} --port-file {tmp_path}/port --log {tmp_path}/log --script "
              + verdicts.replace("{", "{{").replace("}", "}}"))   # serve-judge formats {port}: braces doubled
    cmd = j.serve_command("results/runs/tiny", "tiny", "served", f"{shlex.quote(sys.executable)} -m negfree.cli",
                          server_cmd=server)

    def run():
        r = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, r.stderr[-3000:]
        assert r.stderr.count("serve-judge: stub-judge answers at") == 1        # one server start for both runs
        return {who: json.loads((tmp_path / j.served_result("tiny", who, "arena_hard")).read_text()) for who in runs}

    first = run()
    log = [json.loads(line) for line in (tmp_path / "log").read_text().splitlines()]
    # 3 prompts x 2 games x 2 runs, all to one server process (its request counter never restarts)
    assert sorted(r["n"] for r in log) == list(range(1, 13)) and {r["model"] for r in log} == {"stub-judge"}
    for who, res in first.items():
        assert res["run"] == who and res["judge"]["model"] == "stub-judge"
        assert res["judge"]["name"] == "served:stub-judge"
        assert res["judge"]["offline"] is False and res["judge_usage"]["requests_sent"] == 6
        assert (tmp_path / j.served_result("tiny", who, "arena_hard")).with_suffix(".judgements.jsonl").is_file()
        assert res["judgements"] == "arena_hard.judgements.jsonl"
    # judged_eval's copy into the run's eval/
    out = tmp_path / j.result("results/runs/tiny", "method~dpo", "arena_hard")
    out.parent.mkdir(parents=True)
    subprocess.run(["bash", "-c", j.served_copy_command("tiny", "method~dpo", "arena_hard", str(out))], check=True,
                   cwd=tmp_path)
    assert json.loads(out.read_text()) == first["method~dpo"]
    assert (out.parent / first["method~dpo"]["judgements"]).read_text() == \
        (tmp_path / j.served_result("tiny", "method~dpo", "arena_hard")).with_suffix(".judgements.jsonl").read_text()
    # a rerun (a run added, a failed job retried): everything is a cache hit, the server is asked nothing
    again = run()
    assert len((tmp_path / "log").read_text().splitlines()) == 12
    assert all(r["judge_usage"]["cached"] == 6 and r["judge_usage"]["requests_sent"] == 0 for r in again.values())
    assert all(again[who]["value"] == first[who]["value"] for who in runs)


def test_api_jobs_on_the_submit_host_is_read_and_checked(tmp_path):
    assert _papers(tmp_path / "a").experiments["bnf_llama3_main"].judged.api_jobs == "compute"   # the default
    dag = _papers(tmp_path / "b", judges_edit=lambda j: j.update(api_jobs="submit_host"))
    assert {e.judged.api_jobs for e in dag.experiments.values()} == {"submit_host"}
    with pytest.raises(ConfigError, match="api_jobs must be one of compute, submit_host") as e:
        _papers(tmp_path / "c", judges_edit=lambda j: j.update(api_jobs="login"))
    assert "configs/judges.yaml" in str(e.value) and "'login'" in str(e.value) and "\n" not in str(e.value)


def _line(out: str, start: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith(start)]
    assert len(lines) == 1, (start, lines)
    return lines[0]


@pytest.mark.parametrize("api_jobs", ["compute", "submit_host"])
def test_the_workflow_plans_one_judged_serve_job_and_cpu_judged_eval_jobs(tmp_path, api_jobs):
    """`snakemake -n --profile slurm` on bnf's judged table, its WildBench judged by the served judge: one
    judged_serve GPU job; every judged_eval a CPU job (the served ones copies), submitted with api_jobs:
    compute, a local rule (the submit host) with api_jobs: submit_host."""
    import shutil

    for item in ("Snakefile", "workflows", "report", "configs"):   # a copy: configs/judges.yaml is the workflow's
        (shutil.copytree if (ROOT / item).is_dir() else shutil.copy)(ROOT / item, tmp_path / item)
    for f, edit in (("configs/judges.yaml", lambda j: j.update(api_jobs=api_jobs)),
                    ("configs/paper/bnf.yaml",
                     lambda c: c["evaluate"]["judged"].update(judges={"wildbench": "served"}))):
        cfg = yaml.safe_load((tmp_path / f).read_text())
        edit(cfg)
        (tmp_path / f).write_text(yaml.safe_dump(cfg))
    # a dry run prints local rules as `rule`: the copy says which rules are local (as common.smk reads them)
    with open(tmp_path / "Snakefile", "a") as f:
        f.write('\nprint("LOCAL RULES:", " ".join(sorted(workflow._localrules)))\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEGFREE_SLURM_")}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}", HF_HUB_OFFLINE="1",
               NEGFREE_SLURM_PARTITION_GPU="gpu_p", NEGFREE_SLURM_PARTITION_CPU="cpu_p")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "results/tables/bnf_llama3_main/judged.md", "-n",
                           "--profile", "slurm", "-s", str(tmp_path / "Snakefile"), "--directory", str(tmp_path),
                           "--configfile", str(tmp_path / "configs/paper/bnf.yaml")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    runs = len(Dag(yaml.safe_load((tmp_path / "configs/paper/bnf.yaml").read_text()), tmp_path).experiments[
        "bnf_llama3_main"].judged.runs)
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out[out.index("Job stats"):], re.M))
    assert counts["judged_serve"] == "1" and counts["judged_eval"] == str(2 * runs), counts
    blocks = re.findall(r"^((?:local)?rule (\w+):\n(?:    .*\n)*(?:Shell command: .*\n)?)", out, re.M)
    serve = [b for b, rule in blocks if rule == "judged_serve"]
    assert len(serve) == 1 and serve[0].startswith("rule judged_serve:")     # submitted, on the GPU partition
    assert re.search(r"\bgpu=4\b", serve[0]) and "slurm_partition=gpu_p" in serve[0]
    assert serve[0].count("serve-judge") == 1 and serve[0].count("judged-eval") == runs
    evals = [b for b, rule in blocks if rule == "judged_eval"]
    assert len(evals) == 2 * runs
    local = _line(out, "LOCAL RULES:").split()[2:]
    assert ("judged_eval" in local) == (api_jobs == "submit_host") and "judged_serve" not in local
    assert all(re.search(r"\bgpu=0\b", b) and "slurm_partition=cpu_p" in b for b in evals)
    wild = [b for b in evals if "/eval/wildbench.json" in b]
    assert len(wild) == runs
    assert all("work/judged_served/bnf_llama3_main/served.done" in b and "Shell command: cp " in b for b in wild)
    assert not any("served.done" in b or "Shell command: cp " in b for b in evals if b not in wild)


def test_the_workflow_judges_asft_mt_bench_again_with_gpt4_turbo(tmp_path):
    """`snakemake -n` on asft's judged table and its Table 2: per judged run a judged_eval of
    mt_bench@gpt-4-1106-preview reading the run's MT-Bench answers (no answers job of its own), with its
    own cache; the paper table reads both MT-Bench results."""
    import shutil

    for item in ("Snakefile", "workflows", "report", "configs"):
        (shutil.copytree if (ROOT / item).is_dir() else shutil.copy)(ROOT / item, tmp_path / item)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEGFREE_SLURM_")}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}", HF_HUB_OFFLINE="1")
    exp = "asft_llama3_uf"
    proc = subprocess.run([sys.executable, "-m", "snakemake", f"results/tables/{exp}/judged.md",
                           f"results/tables/{exp}/paper~asft_table2.md", "-n", "-p", "-s",
                           str(tmp_path / "Snakefile"), "--directory", str(tmp_path),
                           "--configfile", str(tmp_path / "configs/paper/asft.yaml")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    runs = Dag(yaml.safe_load((tmp_path / "configs/paper/asft.yaml").read_text()),
               tmp_path).experiments[exp].judged.runs
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out[out.index("Job stats"):], re.M))
    assert counts["judged_eval"] == str(3 * len(runs)) and counts["judged_answers"] == str(2 * len(runs)), counts
    blocks = re.findall(r"^((?:local)?rule (\w+):\n(?:    .*\n)*(?:\n?(?:.*judged-eval.*)\n)?)", out, re.M)
    turbo = [b for b, rule in blocks if rule == "judged_eval" and f"eval/mt_bench@{TURBO}.json" in b]
    assert len(turbo) == len(runs), out[-3000:]
    for who, b in zip(sorted(runs), sorted(turbo, key=lambda b: re.search(r"runs/[^/]+/(.+?)/eval/", b).group(1))):
        assert f"input: results/runs/{exp}/{who}/judged/mt_bench.answers.jsonl" in b, b
        cache = shlex.quote(f"work/judge_cache/{exp}/{who}/mt_bench@{TURBO}")
        assert f"--judge-model {TURBO}" in b and f"--cache-dir {cache}" in b, b
    # the judged table and the paper table read both results of every judged run
    def inputs(block: str) -> str:
        return _line(block, "    input:")

    table = inputs(next(b for b, rule in blocks if rule == "judged_table"))
    assert table.count(f"mt_bench@{TURBO}.json") == len(runs) and table.count("/eval/mt_bench.json") == len(runs)
    paper = [inputs(b) for b, _ in blocks if "paper~asft_table2.md" in _line(b, "    output:")]
    assert len(paper) == 1 and f"/eval/mt_bench@{TURBO}.json" in paper[0] and "/eval/mt_bench.json" in paper[0]


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


def test_the_budget_counts_only_what_is_left_to_judge(tmp_path):
    """A rerun pays only for what is not judged yet: a (run, protocol) whose result exists costs nothing,
    one whose cache holds half its judgements costs half (hand-computed from judged_work and the price)."""
    from negfree.jobs.resources import judged_work

    dag = _papers(tmp_path, judges_edit=lambda j: j.update(budget_usd=10))
    before = dag.judge_costs()["bnf"]
    assert before["judge_usd_left"] == before["judge_usd"]          # nothing judged yet
    exp = dag.experiments["bnf_llama3_main"]
    j, (r1, r2) = exp.judged, exp.judged.runs[:2]
    w = judged_work(exp, "arena_hard")
    price = yaml.safe_load((tmp_path / "configs/judges.yaml").read_text())["prices_usd_per_million_tokens"]["gpt-4o-mini"]
    per_run = (w["judge_in"] * price[0] + w["judge_out"] * price[1]) / 1e6
    done = tmp_path / j.result(exp.runs_root, r1, "arena_hard")
    done.parent.mkdir(parents=True)
    done.write_text("{}")
    cache = tmp_path / f"work/judge_cache/{exp.name}/{r2}/arena_hard"
    cache.mkdir(parents=True)
    cache.joinpath("judgements.jsonl").write_text('{"k": 1}\n' * (w["judgements"] // 2) + '{"cut')   # a killed line
    after = dag.judge_costs()["bnf"]
    assert after["judge_usd"] == before["judge_usd"]
    assert after["judge_usd_left"] == pytest.approx(before["judge_usd"] - 1.5 * per_run, abs=0.02)
    msg = dag.judge_budget_refusal({})
    left = sum(c["judge_usd_left"] for c in dag.judge_costs().values())   # bnf's and asft's
    assert f"${left:,.2f} of API judging not yet done (bnf ${after['judge_usd_left']:,.2f}" in msg and "\n" not in msg
