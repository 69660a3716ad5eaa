"""Extension by convention (issue 16): a new workflows/*.smk joins `rule all` and the report.

A copy of the workflow (Snakefile, workflows/, with configs/ and report/ linked) gets two new rule
files and no other edit: the shipped example ablation (workflows/examples/frozen_lake_steps.smk)
and a one-line rule. Both appear in the dry run of the default target `all`; the one-line rule's
output, built, appears in `snakemake --report` with its category (a report of `all` would need the
whole demo built: a report shows the report-marked outputs of the target's DAG, which the dry run
shows it joins).
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

HELLO = '''
rule hello_ablation:
    output:
        report("results/ablations/hello.txt", category="Hello ablation", labels={"ablation": "hello"}),
    log:
        "logs/ablations/hello.log",
    shell:
        "echo hello-from-a-new-rule-file > {output}" + LOG


FINAL_TARGETS += ["results/ablations/hello.txt"]
'''


def _snakemake(copy, work, *args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args, "-s", str(copy / "Snakefile"), "--directory", str(work),
         "--configfile", str(ROOT / "configs" / "demo.yaml"), "--cores", "1"],
        cwd=copy, env=env, capture_output=True, text=True, timeout=300)


def test_new_rule_file_joins_all_and_report(tmp_path):
    copy, work = tmp_path / "repo", tmp_path / "work"
    copy.mkdir()
    shutil.copy(ROOT / "Snakefile", copy / "Snakefile")
    shutil.copytree(ROOT / "workflows", copy / "workflows")
    for d in ("configs", "report"):
        (copy / d).symlink_to(ROOT / d)
    shutil.copy(ROOT / "workflows" / "examples" / "frozen_lake_steps.smk", copy / "workflows")
    (copy / "workflows" / "hello.smk").write_text(HELLO)

    dry = _snakemake(copy, work, "-n")
    out = dry.stdout + dry.stderr
    assert dry.returncode == 0, out[-3000:]
    for rule, path in (("hello_ablation", "results/ablations/hello.txt"),
                       ("ablation_frozen_lake_steps", "results/ablations/frozen_lake/steps~50/fig3.png")):
        assert f"rule {rule}:" in out and path in out, (rule, out[-3000:])

    built = _snakemake(copy, work, "results/ablations/hello.txt")
    assert built.returncode == 0, built.stderr[-3000:]
    html = work / "report.html"
    # the report of `all` needs every file of the DAG (the whole demo); the dry run above shows the
    # rule is in that DAG, and the report of its own output shows it is marked for the report
    rep = _snakemake(copy, work, "results/ablations/hello.txt", "--report", str(html))
    assert rep.returncode == 0, rep.stderr[-3000:]
    text = html.read_text(errors="replace")
    assert "hello.txt" in text and "Hello ablation" in text
