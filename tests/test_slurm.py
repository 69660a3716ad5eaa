"""The workflow on a real Slurm, and the HTML report.

`test_tiny_dag_through_slurm` starts a single-node Slurm on this machine
(tests/slurm/start_slurm.sh: Debian packages slurm-wlm + munge, no accounting) and
runs the repo's own Snakefile with the literal `snakemake --profile slurm` from the
repo root, on the tiny model and a tiny config (the one of tests/test_dag.py). Only
what cannot fit a 2-CPU test node is overridden on the command line (resources, the
first status-check delay, retries). It checks that every job went through sbatch
(job ids in snakemake's log, Slurm's own record of them in squeue, a per-job Slurm
log), that the results are complete, and renders `snakemake --report` on them.
Where Slurm cannot be installed or started (not root, no apt, no Debian), it is
skipped with the reason.

The Slurm run is the newcomer's: the venv is not on PATH (jobs call the project's Python by its
absolute path), and the account and partitions come from the user's environment
(NEGFREE_SLURM_ACCOUNT / _PARTITION_GPU / _PARTITION_CPU, workflows/common.smk); `scontrol show
job` must show them on every submitted job, with the job's own memory and time limit.

`test_report_has_every_caption` renders the report on the cheap part of the DAG
(analytic figures and the Frozen Lake toy) without Slurm; the summary table's
caption is checked in the Slurm test, where the whole DAG runs.
"""
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
START = ROOT / "tests" / "slurm" / "start_slurm.sh"

# One distinctive phrase of each caption in report/*.rst, as it appears in the HTML.
CAPTIONS = {
    "summary_table": "Summary table of experiment",
    "bnf_fig1": "BNF paper, Figure 1 (analytic)",
    "asft_fig1": "ASFT paper, Figure 1 (analytic)",
    "ift_fig3": "IFT paper, Figure 3 on the Frozen Lake toy",
    "visits": "Frozen Lake visit map",
    "workflow": "reproduces five papers on fine-tuning LLMs without preference data",
}


def _env():
    venv_bin = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
            "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


# The user's cluster settings for the Slurm test: an account (accepted without accounting) and
# two partitions that the test creates on the one node.
ACCOUNT, PART_GPU, PART_CPU = "negfree_acct", "negfree_gpu", "negfree_cpu"


def _env_no_venv(**extra):
    """The environment of a user who never activated the venv: its bin/ is not on PATH."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if p and Path(p).resolve() != Path(venv_bin).resolve())
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    return {**env, "PATH": path, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", **extra}


def _render_report(workdir, cfgfile, targets=()):
    html = workdir / "results" / "report.html"
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *targets, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
         "--configfile", str(cfgfile), "--report", str(html)],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert html.stat().st_size > 10_000
    return html.read_text(errors="replace")


@pytest.fixture(scope="module")
def slurm():
    """A running Slurm (started here if needed), or a visible skip saying why not."""
    if shutil.which("bash") is None:
        pytest.skip("no bash to run tests/slurm/start_slurm.sh")
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.skip(f"no Slurm on this machine: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
    print(f"start_slurm.sh: {time.monotonic() - t0:.0f} s; {proc.stderr.strip()}")
    for tool in ("sbatch", "squeue", "scontrol"):
        assert shutil.which(tool), f"{tool} missing although start_slurm.sh succeeded"
    # the user's partitions: created on the one node if this Slurm lacks them
    have = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=30).stdout.split()
    for part in (PART_GPU, PART_CPU):
        if part not in have:
            made = subprocess.run(["scontrol", "create", f"PartitionName={part}", "Nodes=ALL", "MaxTime=INFINITE",
                                   "State=UP"], capture_output=True, text=True, timeout=30)
            assert made.returncode == 0, f"cannot create partition {part}: {made.stderr}"
    return True


def _scontrol_job(job_id: str) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, (job_id, out.stderr)
    return dict(f.split("=", 1) for f in out.stdout.split() if "=" in f)


def test_tiny_dag_through_slurm(tmp_path, tiny_dag_config, slurm):
    cfgfile = tmp_path / "cfg.yaml"
    cfgfile.write_text(yaml.safe_dump(tiny_dag_config, sort_keys=False))
    cmd = [sys.executable, "-m", "snakemake", "--profile", "slurm",      # = `snakemake --profile slurm`
           "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path), "--configfile", str(cfgfile),
           # a 2-CPU test node: small jobs, no GPU, fast polling
           "--default-resources", "mem_mb=1500", "runtime=20", "cpus_per_task=1",
           # (GPU rules size themselves per job from the experiment's launch: section; here: CPU, 1 core;
           # the CPU rules size themselves in their resources: directives, frozen_lake 4 cores: 1 here)
           "--set-resources", *[f"{r}:{k}" for r in ("generate_negatives", "score_reference", "train",
                                                     "evaluate_run", "evaluate_base", "score_dist_pool",
                                                     "score_distribution", "shift_figures")
                                for k in ("gpu=0", "cpus_per_task=1")],
           *[f"{r}:{k}" for r in ("summary_table", "bnf_fig1", "asft_fig1", "frozen_lake")
             for k in ("mem_mb=1500", "runtime=20", "cpus_per_task=1")],
           "--slurm-init-seconds-before-status-checks", "2",
           # more jobs than CPUs: Slurm queues the ready ones and starts each as a CPU frees
           "--jobs", "8", "--retries", "0", "--latency-wait", "10"]
    env = _env_no_venv(NEGFREE_SLURM_ACCOUNT=ACCOUNT, NEGFREE_SLURM_PARTITION_GPU=PART_GPU,
                       NEGFREE_SLURM_PARTITION_CPU=PART_CPU)
    assert shutil.which("negfree", path=env["PATH"]) is None, "the venv must be off PATH for this test"
    cmd += ["--slurm-status-command", "squeue"]     # this Slurm has no accounting database
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    elapsed = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    logs = "\n".join(f"== {p}\n{p.read_text(errors='replace')[-1500:]}"
                     for p in sorted((tmp_path / ".snakemake" / "slurm_logs").rglob("*.log"))) \
        if (tmp_path / ".snakemake" / "slurm_logs").exists() else ""
    assert proc.returncode == 0, out[-5000:] + logs[-5000:]
    print(f"tiny DAG through Slurm: {elapsed:.0f} s")
    assert "Using profile slurm" in out
    # the Slurm executor is seen: one line says what the jobs use (workflows/common.smk _check_cluster)
    assert re.search(rf"^Slurm jobs will use: account {ACCOUNT} \(NEGFREE_SLURM_ACCOUNT\), GPU partition {PART_GPU} "
                     rf"\(NEGFREE_SLURM_PARTITION_GPU\), CPU partition {PART_CPU} \(NEGFREE_SLURM_PARTITION_CPU\), QoS "
                     r"unset: the cluster's default \(NEGFREE_SLURM_QOS\)$", out, re.M), out[-3000:]

    # every job went through sbatch, each with its own Slurm job id, except the target `all` and the
    # local rules (prepare_model, make_data, fetch_eval_data: downloads happen on the submit host)
    submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", out))
    stats = re.search(r"Job stats:\n(.*?)\n\s*total\s+(\d+)", out, re.S)
    assert stats, out[-3000:]
    n_jobs = int(stats.group(2))
    counts = dict((r, int(n)) for r, n in re.findall(r"^(\w+)\s+(\d+)$", stats.group(1), re.M))
    n_local = counts.get("prepare_model", 0) + counts.get("make_data", 0) + counts.get("fetch_eval_data", 0)
    assert n_local == 3, counts
    assert len(submitted) == n_jobs - 1 - n_local >= 10, (len(submitted), n_jobs, out[-3000:])
    slurm_ids = sorted(set(submitted.values()), key=int)
    assert len(slurm_ids) == len(submitted)

    # the user's account and partition reached every submitted job, and each kept its own memory and
    # time limit (the profile's and the rules' resources were not replaced). The GPU rules run with
    # gpu=0 here, so every job goes to the CPU partition (the GPU partition: the dry-run test).
    for job_id in slurm_ids:
        job = _scontrol_job(job_id)
        print(f"scontrol show job {job_id}: JobName={job.get('JobName')} Account={job.get('Account')} "
              f"Partition={job.get('Partition')} MinMemoryNode={job.get('MinMemoryNode')} "
              f"TimeLimit={job.get('TimeLimit')}")
        assert job.get("Account") == ACCOUNT and job.get("Partition") == PART_CPU, job
        assert job.get("TimeLimit") not in (None, "UNLIMITED", "Partition_Limit"), job
        assert job.get("MinMemoryNode", "0") not in ("0", "0M"), job

    # Slurm's own record (no accounting: squeue keeps finished jobs for MinJobAge)
    sq = subprocess.run(["squeue", "--states=all", "--noheader", "--format=%i %T", "--jobs", ",".join(slurm_ids)],
                        capture_output=True, text=True, timeout=60)
    states = dict(line.split() for line in sq.stdout.strip().splitlines())
    assert set(states) == set(slurm_ids) and set(states.values()) == {"COMPLETED"}, (sq.stdout, sq.stderr)

    # one Slurm log per job (the profile keeps logs of successful jobs)
    slurm_logs = {p.stem for p in (tmp_path / ".snakemake" / "slurm_logs").rglob("*.log")}
    assert set(slurm_ids) <= slurm_logs, (slurm_ids, slurm_logs)
    rule_dirs = {p.name for p in (tmp_path / ".snakemake" / "slurm_logs").iterdir()}
    for rule in ("rule_generate_negatives", "rule_score_reference", "rule_train",
                 "rule_evaluate_run", "rule_summary_table", "rule_frozen_lake"):
        assert rule in rule_dirs, rule_dirs
    assert not {"rule_prepare_model", "rule_make_data", "rule_fetch_eval_data"} & rule_dirs, rule_dirs

    # per-attempt logs: <log>.attempt1, and <log> links to it
    train_log = tmp_path / "logs/demo/train/method~dft2.log"
    assert train_log.is_symlink() and train_log.resolve().name == "method~dft2.log.attempt1", train_log
    assert train_log.read_text().strip(), "empty train log"

    # complete results
    import pandas as pd
    table = pd.read_csv(tmp_path / "results/tables/demo/summary.csv")
    assert list(table["model"]) == ["base", "dft2"] and table["mc_acc"].notna().all()
    for f in ("figures/bnf/fig1.png", "figures/asft/fig1.png", "figures/ift/fig3.png",
              "results/toy/frozen_lake/visits.png", "results/runs/demo/method~dft2/final/model.safetensors"):
        assert (tmp_path / f).stat().st_size > 0, f

    # the HTML report of the whole run carries every caption
    html = _render_report(tmp_path, cfgfile)
    for name, phrase in CAPTIONS.items():
        assert phrase in html, f"caption of {name} missing from the report"
    assert "summary.md" in html and "visits.png" in html


def test_report_has_every_caption(tmp_path):
    """Without Slurm: the figure rules run locally, the report shows them with their captions."""
    cfgfile = tmp_path / "cfg.yaml"
    cfg = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    cfg["toy"] = {"frozen_lake": {"seeds": 1, "steps": 10, "methods": ["sft"]}}
    cfgfile.write_text(yaml.safe_dump(cfg, sort_keys=False))
    targets = ["figures/bnf/fig1.png", "figures/asft/fig1.png", "figures/ift/fig3.png"]
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", *targets, "--profile", "local", "--cores", "2",
         "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path), "--configfile", str(cfgfile)],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Using profile local" in proc.stdout + proc.stderr
    html = _render_report(tmp_path, cfgfile, targets)
    for name in ("bnf_fig1", "asft_fig1", "ift_fig3", "visits", "workflow"):
        assert CAPTIONS[name] in html, f"caption of {name} missing from the report"
    # the images themselves are embedded
    for img in ("fig1.png", "fig3.png", "visits.png"):
        assert img in html


def test_slurm_profile_dry_run_is_fast_and_requests_gpus(tmp_path):
    """`snakemake -n --profile slurm` on the demo config: seconds, and GPU stages ask for `gpu`, never `tasks`."""
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--profile", "slurm", "-s", str(ROOT / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(ROOT / "configs" / "demo.yaml")],
        cwd=ROOT, env=_env_no_venv(NEGFREE_SLURM_ACCOUNT=ACCOUNT, NEGFREE_SLURM_PARTITION_GPU=PART_GPU,
                                   NEGFREE_SLURM_PARTITION_CPU=PART_CPU, NEGFREE_SLURM_QOS="high",
                                   NEGFREE_SLURM_EXTRA="--mail-type=FAIL"),
        capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "Using profile slurm" in out
    assert elapsed < 60, f"dry run took {elapsed:.0f} s"
    print(f"snakemake -n --profile slurm: {elapsed:.1f} s")
    resources = {}
    for rule, res in re.findall(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", out, re.M):
        resources.setdefault(rule, set()).add(res)
    for rule in ("generate_negatives", "score_reference", "train", "evaluate_run", "evaluate_base"):
        assert rule in resources, (rule, sorted(resources))
        assert all(re.search(r"\bgpu=1\b", r) for r in resources[rule]), (rule, resources[rule])
    for rule in ("make_data", "summary_table", "bnf_fig1", "asft_fig1", "frozen_lake"):
        assert all("gpu=" not in r for r in resources[rule]), (rule, resources[rule])
    # the user's settings (NEGFREE_SLURM_*) joined every rule's own resources
    for rule, rs in resources.items():
        for r in rs:
            part = PART_GPU if re.search(r"\bgpu=[1-9]", r) else PART_CPU
            assert f"slurm_account={ACCOUNT}" in r and f"slurm_partition={part}" in r and "qos=high" in r, (rule, r)
            assert re.search(r"\bmem_mb=\d+", r) and re.search(r"\bruntime=\d+", r), (rule, r)
    # the user's extra flags follow the train rule's own early signal, not replace it
    assert all("slurm_extra=--signal=TERM@600 --mail-type=FAIL" in r for r in resources["train"])
    assert all("slurm_extra=--mail-type=FAIL" in r for r in resources["make_data"])
    assert not any(re.search(r"\btasks=", r) for rs in resources.values() for r in rs)
