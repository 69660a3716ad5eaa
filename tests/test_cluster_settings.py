"""A newcomer's first week on the cluster: settings that are unset or misspelt are said, resources
that survive a command-line `--set-resources`, runtime caps.

The pure logic (negfree/jobs/dag.py, next to CLUSTER_ENV) is tested directly; the workflow's use of it
(workflows/common.smk apply_cluster_settings and _check_cluster) through `snakemake -n --profile
slurm` on the repo's configs, and the refusal of GPU jobs without a partition through a real run
whose Slurm commands are fakes on PATH (nothing can be submitted: the fake sbatch records its calls
and fails).
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from negfree.jobs.dag import (CLUSTER_ENV, ConfigError, capped_runtime, clip_retries, clip_summary, cluster_resources,
                         cluster_settings, cluster_summary, gpu_partition_refusal, runtime_caps, unknown_cluster_vars)

ROOT = Path(__file__).resolve().parents[1]
UNSET = "unset: the cluster's default"
# the CPU rules' own sizes (workflows/*.smk resources:), as the profile's set-resources block had them
CPU_SIZES = {
    "prepare_model": {"mem_mb": 32000, "runtime": 60},
    "make_data": {"mem_mb": 4000, "runtime": 30, "cpus_per_task": 1},
    "summary_table": {"mem_mb": 4000, "runtime": 30, "cpus_per_task": 1},
    "bnf_fig1": {"mem_mb": 4000, "runtime": 30, "cpus_per_task": 1},
    "asft_fig1": {"mem_mb": 4000, "runtime": 30, "cpus_per_task": 1},
    "frozen_lake": {"mem_mb": 8000, "runtime": 120, "cpus_per_task": 4},
}


# -- the pure logic -----------------------------------------------------------------------------
def test_summary_names_every_setting_or_says_unset():
    line = cluster_summary({})
    assert "\n" not in line
    for label, var in (("account", "NEGFREE_SLURM_ACCOUNT"), ("GPU partition", "NEGFREE_SLURM_PARTITION_GPU"),
                       ("CPU partition", "NEGFREE_SLURM_PARTITION_CPU"), ("QoS", "NEGFREE_SLURM_QOS")):
        assert f"{label} {UNSET} ({var})" in line, line
    line = cluster_summary({"account": "acct", "partition_gpu": "default", "partition_cpu": "cpu", "qos": "high",
                            "max_runtime_gpu": "1440"})
    assert "account acct (NEGFREE_SLURM_ACCOUNT)" in line and "QoS high (NEGFREE_SLURM_QOS)" in line
    assert "GPU partition the cluster's default (NEGFREE_SLURM_PARTITION_GPU=default)" in line
    assert "CPU partition cpu (NEGFREE_SLURM_PARTITION_CPU)" in line
    assert "GPU jobs at most 1440 min (NEGFREE_SLURM_MAX_RUNTIME_GPU)" in line and UNSET not in line


def test_unknown_variables_get_the_nearest_known_name():
    env = {"NEGFREE_SLURM_PARTITION": "gpu_a100", "NEGFREE_SLURM_ACOUNT": "x", "NEGFREE_SLURM_WHATEVER": "1",
           "NEGFREE_SLURM_QOS": "high", "OTHER": "1"}
    lines = unknown_cluster_vars(env)
    assert len(lines) == 3 and all("\n" not in line for line in lines)
    assert "unknown NEGFREE_SLURM_PARTITION (did you mean NEGFREE_SLURM_PARTITION_GPU?)" in lines[1]
    assert "unknown NEGFREE_SLURM_ACOUNT (did you mean NEGFREE_SLURM_ACCOUNT?)" in lines[0]
    assert lines[2].startswith("unknown NEGFREE_SLURM_WHATEVER (known: NEGFREE_SLURM_ACCOUNT, ")
    assert unknown_cluster_vars({var: "1" for var in CLUSTER_ENV}) == []


def test_gpu_jobs_without_partition_are_refused_unless_default_is_said():
    msg = gpu_partition_refusal({}, {"train": 3, "score_reference": 1})
    assert msg and "\n" not in msg and "NEGFREE_SLURM_PARTITION_GPU is unset" in msg
    assert msg.startswith("4 GPU jobs (score_reference x1, train x3) have no partition")
    assert "NEGFREE_SLURM_PARTITION_GPU=default" in msg
    assert gpu_partition_refusal({"partition_gpu": "gpu"}, {"train": 3}) is None
    assert gpu_partition_refusal({"partition_gpu": "default"}, {"train": 3}) is None
    assert gpu_partition_refusal({}, {}) is None
    # `default` is said, not passed: no sbatch -p
    settings = cluster_settings({"NEGFREE_SLURM_PARTITION_GPU": "default", "NEGFREE_SLURM_PARTITION_CPU": "cpu"})
    assert "slurm_partition" not in cluster_resources(settings, gpu=True)
    assert cluster_resources(settings, gpu=False)["slurm_partition"] == "cpu"


def test_runtime_caps():
    caps = runtime_caps(cluster_settings({"NEGFREE_SLURM_MAX_RUNTIME_GPU": " 1440 ",
                                          "NEGFREE_SLURM_MAX_RUNTIME_CPU": "120"}))
    assert caps == {True: ("NEGFREE_SLURM_MAX_RUNTIME_GPU", 1440), False: ("NEGFREE_SLURM_MAX_RUNTIME_CPU", 120)}
    assert runtime_caps({}) == {}
    for bad in ("1d", "10", "-5", "90.5"):
        with pytest.raises(ConfigError, match=rf"^NEGFREE_SLURM_MAX_RUNTIME_CPU='{re.escape(bad)}' must be a whole "
                                              r"number of minutes >= 30 [^\n]*$"):
            runtime_caps({"max_runtime_cpu": bad})
    assert capped_runtime(4163, caps, True) == (1440, "NEGFREE_SLURM_MAX_RUNTIME_GPU")
    assert capped_runtime(300, caps, True) == (300, None)
    assert capped_runtime(240, caps, False) == (120, "NEGFREE_SLURM_MAX_RUNTIME_CPU")
    assert capped_runtime(240, {True: ("NEGFREE_SLURM_MAX_RUNTIME_GPU", 60)}, False) == (240, None)
    # retries of a clipped training job: its clipped attempts, on top of the user's retries for real failures
    assert clip_retries(4163, 1440, 3) == 3 + 3 and clip_retries(1441, 1440, 0) == 2
    line = clip_summary([("train", 4163, "NEGFREE_SLURM_MAX_RUNTIME_GPU", 1440),
                         ("train", 2000, "NEGFREE_SLURM_MAX_RUNTIME_GPU", 1440),
                         ("generate_negatives_shard", 1500, "NEGFREE_SLURM_MAX_RUNTIME_GPU", 1440)], {"train": 6})
    assert "\n" not in line
    assert line.startswith("runtime caps: 3 jobs (generate_negatives_shard x1, train x2), the largest asks 4163 min "
                           "(train), clipped to NEGFREE_SLURM_MAX_RUNTIME_GPU=1440")
    assert "train resumes from its checkpoints, retries raised to 6" in line
    assert "generate_negatives_shard cannot resume" in line
    assert clip_summary([]) is None


# -- through snakemake ----------------------------------------------------------------------------
def _env(**settings):
    """The caller's environment without any NEGFREE_SLURM_* of its own, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEGFREE_SLURM_")}
    venv_bin = str(Path(sys.executable).parent)
    return {**env, "PATH": f"{venv_bin}{os.pathsep}{env['PATH']}", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", **settings}


def _snakemake(tmp_path, *args, env, timeout=300):
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
                           str(tmp_path), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def _jobs(out):
    """(rule, {resource: value}, body) of every job a dry run prints."""
    jobs = []
    for rule, body in re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n)*)", out, re.M):
        res = re.search(r"^    resources: (.*)$", body, re.M)
        values = dict(kv.split("=", 1) for kv in res.group(1).split(", ")) if res else {}
        jobs.append((rule, values, body))
    return jobs


def _dry_run(tmp_path, *args, env, ok=True):
    rc, out = _snakemake(tmp_path, "-n", "--profile", "slurm", *args, env=env)
    if ok:
        assert rc == 0, out[-3000:]
    return out


def _line(out, start, contains=""):
    lines = [line for line in out.splitlines() if line.startswith(start) and contains in line]
    assert len(lines) == 1, (start, lines, out[-2000:])
    return lines[0]


PARTITIONS = dict(NEGFREE_SLURM_PARTITION_GPU="gpu_p", NEGFREE_SLURM_PARTITION_CPU="cpu_p")


def test_dry_run_says_the_settings_and_names_a_misspelt_variable(tmp_path):
    out = _dry_run(tmp_path, "dft_table2",
                   env=_env(NEGFREE_SLURM_PARTITION="gpu_a100", NEGFREE_SLURM_ACCOUNT="acct", NEGFREE_SLURM_QOS=""))
    line = _line(out, "Slurm jobs will use: ")
    assert "account acct (NEGFREE_SLURM_ACCOUNT)" in line
    for label, var in (("GPU partition", "PARTITION_GPU"), ("CPU partition", "PARTITION_CPU"), ("QoS", "QOS")):
        assert f"{label} {UNSET} (NEGFREE_SLURM_{var})" in line, line
    _line(out, "WARNING: unknown NEGFREE_SLURM_PARTITION (did you mean NEGFREE_SLURM_PARTITION_GPU?)")
    # (the GPU jobs that the misspelling leaves without a partition: test_gpu_jobs_without_partition)
    assert "have no partition: NEGFREE_SLURM_PARTITION_GPU is unset" in out
    # the local executor submits nothing to Slurm: no line
    rc, out = _snakemake(tmp_path, "-n", "--profile", "local", "bnf_fig1",
                         env=_env(NEGFREE_SLURM_PARTITION="gpu_a100"))
    assert rc == 0 and "Slurm jobs will use" not in out and "NEGFREE_SLURM_PARTITION" not in out, out[-2000:]


def test_gpu_jobs_without_partition(tmp_path):
    # a dry run warns, in one line, and goes on
    out = _dry_run(tmp_path, "dft_table2", env=_env(NEGFREE_SLURM_PARTITION_CPU="cpu_p"))
    warn = _line(out, "WARNING: ", "have no partition")
    assert re.match(r"WARNING: \d+ GPU jobs \(.*train x\d+.*\) have no partition: NEGFREE_SLURM_PARTITION_GPU is "
                    r"unset; .* \(a run without -n stops here\)$", warn), warn
    # the user says the cluster's default partition is fine: no warning, no -p on the GPU jobs
    out = _dry_run(tmp_path, "dft_table2", env=_env(NEGFREE_SLURM_PARTITION_GPU="default",
                                                     NEGFREE_SLURM_PARTITION_CPU="cpu_p"))
    assert "have no partition" not in out
    assert "GPU partition the cluster's default (NEGFREE_SLURM_PARTITION_GPU=default)" in out
    jobs = _jobs(out)
    gpu = [(r, v) for r, v, _ in jobs if int(v.get("gpu", 0)) > 0]
    assert gpu and all("slurm_partition" not in v for _, v in gpu), gpu[:2]
    assert all(v.get("slurm_partition") == "cpu_p" for r, v, _ in jobs
               if int(v.get("gpu", 0)) == 0 and r not in ("prepare_model", "make_data", "fetch_eval_data"))
    # a per-rule partition on the command line places those jobs; the others are still named
    out = _dry_run(tmp_path, "dft_table2", "--set-resources", "train:slurm_partition=X", env=_env())
    warn = _line(out, "WARNING: ", "have no partition")
    assert "train x" not in warn and "evaluate_protocol x" in warn, warn


def _fake_slurm(tmp_path):
    """A bin/ of Slurm commands that submit nothing: sbatch records its arguments and fails."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    calls = tmp_path / "slurm_calls.txt"
    for tool, body in {"sbatch": "exit 1", "squeue": "exit 0", "sacct": "exit 1", "sinfo": "exit 0",
                       "sacctmgr": "exit 0", "sshare": "exit 0",
                       "scontrol": "echo 'MinJobAge = 300 sec'; echo 'MaxArraySize = 1001'"}.items():
        (bin_dir / tool).write_text(f"#!/bin/sh\necho \"{tool} $*\" >> {calls}\n{body}\n")
        (bin_dir / tool).chmod(0o755)
    return bin_dir, calls


def test_a_real_run_refuses_gpu_jobs_without_partition_before_submitting(tmp_path):
    bin_dir, calls = _fake_slurm(tmp_path)
    env = _env(NEGFREE_SLURM_PARTITION_CPU="cpu_p")
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    work = tmp_path / "work"
    rc, out = _snakemake(work, "--profile", "slurm", "--configfile", str(ROOT / "configs" / "demo.yaml"),
                         "--retries", "0", "--slurm-init-seconds-before-status-checks", "1", env=env, timeout=600)
    assert rc != 0, out[-3000:]
    assert re.search(r"^    \d+ GPU jobs \(.*train x\d+.*\) have no partition: NEGFREE_SLURM_PARTITION_GPU is unset; "
                     r"export NEGFREE_SLURM_PARTITION_GPU=<your GPU partition>, or NEGFREE_SLURM_PARTITION_GPU=default "
                     r"to submit them to the cluster's default partition$", out, re.M), out[-3000:]
    assert "sbatch" not in (calls.read_text() if calls.exists() else ""), calls.read_text()
    assert not (work / "work").exists() and not (work / "results").exists()    # nothing ran, not even local rules


def _train_extra(jobs):
    return {v.get("slurm_extra") for r, v, _ in jobs if r == "train"}


def test_set_resources_on_the_command_line_keeps_the_rules_own(tmp_path):
    """`--set-resources train:slurm_partition=X` replaced the profile's whole set-resources block: the
    train jobs lost their early signal and the CPU rules their sizes. They live in the rules now."""
    env = _env(**PARTITIONS, NEGFREE_SLURM_EXTRA="--mail-type=FAIL")
    out = _dry_run(tmp_path / "papers", "dft_table2", "--set-resources", "train:slurm_partition=X", env=env)
    jobs = _jobs(out)
    assert _train_extra(jobs) == {"--signal=TERM@600 --mail-type=FAIL"}, _train_extra(jobs)
    assert {v.get("slurm_partition") for r, v, _ in jobs if r == "train"} == {"X"}
    seen = set()
    for rule, values, _ in jobs:
        if rule in CPU_SIZES:
            seen.add(rule)
            assert {k: int(values[k]) for k in CPU_SIZES[rule]} == CPU_SIZES[rule], (rule, values)
    assert seen == {"prepare_model", "make_data"}, seen
    # the demo: every CPU rule of the old block, and the per-rule override of a CPU rule keeps the rest
    out = _dry_run(tmp_path / "demo", "--configfile", str(ROOT / "configs" / "demo.yaml"), "--set-resources",
                   "train:slurm_partition=X", "frozen_lake:runtime=200", env=env)
    jobs = _jobs(out)
    assert _train_extra(jobs) == {"--signal=TERM@600 --mail-type=FAIL"}, _train_extra(jobs)
    seen = set()
    for rule, values, _ in jobs:
        if rule in CPU_SIZES:
            seen.add(rule)
            want = {**CPU_SIZES[rule], **({"runtime": 200} if rule == "frozen_lake" else {})}
            assert {k: int(values[k]) for k in want} == want, (rule, values)
    assert seen == set(CPU_SIZES), seen


def test_runtime_caps_clip_the_paper_dag(tmp_path):
    """NEGFREE_SLURM_MAX_RUNTIME_GPU=1440 on the five papers (configs/papers.yaml): no job asks more; one
    line says how many jobs were clipped and the largest ask; the training's retries cover the
    clipped attempts its largest job needs on top of the profile's 3."""
    out = _dry_run(tmp_path, env=_env(**PARTITIONS, NEGFREE_SLURM_MAX_RUNTIME_GPU="1440"))
    jobs = _jobs(out)
    runtimes = [(r, int(v["runtime"])) for r, v, _ in jobs if "runtime" in v]
    assert len(runtimes) > 300 and max(t for _, t in runtimes) == 1440, sorted(runtimes, key=lambda x: -x[1])[:3]
    line = _line(out, "runtime caps: ")
    m = re.fullmatch(r"runtime caps: (\d+) jobs \(train x\1\), the largest asks (\d+) min \(train\), clipped to "
                     r"NEGFREE_SLURM_MAX_RUNTIME_GPU=1440; train resumes from its checkpoints, retries raised to (\d+)",
                     line)
    assert m, line
    n, largest, retries = map(int, m.groups())
    assert n == sum(1 for r, t in runtimes if r == "train" and t == 1440) and largest > 1440
    assert retries == -(-largest // 1440) + 3
    assert "GPU jobs at most 1440 min (NEGFREE_SLURM_MAX_RUNTIME_GPU)" in _line(out, "Slurm jobs will use: ")

    # a CPU cap clips the CPU jobs only; a cap that is not a number of minutes stops the DAG in one line
    out = _dry_run(tmp_path, "--configfile", str(ROOT / "configs" / "demo.yaml"),
                   env=_env(**PARTITIONS, NEGFREE_SLURM_MAX_RUNTIME_CPU="60"))
    jobs = _jobs(out)
    assert {int(v["runtime"]) for r, v, _ in jobs if r == "frozen_lake"} == {60}
    assert all(int(v["runtime"]) <= 60 for r, v, _ in jobs if int(v.get("gpu", 0)) == 0)
    assert "frozen_lake x1" in _line(out, "runtime caps: ") and "cannot resume" in _line(out, "runtime caps: ")
    rc, out = _snakemake(tmp_path, "-n", "--profile", "slurm", env=_env(**PARTITIONS, NEGFREE_SLURM_MAX_RUNTIME_GPU="1d"))
    assert rc == 1 and out.strip().splitlines()[-1] == (
        "negfree: NEGFREE_SLURM_MAX_RUNTIME_GPU='1d' must be a whole number of minutes >= 30 (a clipped training job "
        "is signalled 10 minutes before its limit to checkpoint)"), out[-2000:]
