"""bnf.txt Figs. 3-4 on WildBench prompts (Sec. 5.3: "1,000 questions from Wild-Bench"): the converter
`negfree judged-prompts` (WildBench v2 records -> {id, prompt: chat messages}), analysis.shifts.prompts
(negfree/jobs/dag.py Experiment.shifts), and the DAG: rule shift_prompts on the experiment's own
WildBench file or on the fetched one, and shift_figures reading its output. Offline; nothing fetched."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from negfree.evaluate import commands
from negfree.evaluate.judged.answers import write_prompt_file
from negfree.evaluate.judged.sources import read_wildbench_records
from negfree.jobs.dag import ConfigError, Dag
from negfree.report.shifts_data import read_prompts

ROOT = Path(__file__).resolve().parents[1]
DEMO_WB = ROOT / "configs/judged/demo/wildbench/wildbench_v2_test.jsonl"
MALFORMED_WB = ROOT / "tests/data/judged/malformed/wb_records.jsonl"


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ------------------------------------------------------------------------------ the converter
def test_converter_writes_history_then_last_query_per_session(tmp_path, capsys):
    out = tmp_path / "p.jsonl"
    commands.main_judged_prompts(["--benchmark", "wildbench", "--questions", str(DEMO_WB), "--out", str(out)])
    assert "4 of 4 prompts" in capsys.readouterr().out
    records = read_wildbench_records(DEMO_WB)
    got = _lines(out)
    assert [g["id"] for g in got] == [r.session_id for r in records]
    assert set(got[0]) == {"id", "prompt"}
    for g, r in zip(got, records):
        assert g["prompt"] == [*r.history, {"role": "user", "content": r.last_query}]
        # the whole recorded conversation, role and content only (WildBench adds e.g. 'language')
        assert g["prompt"] == [{"role": m["role"], "content": m["content"]} for m in r.conversation_input]
    assert any(len(g["prompt"]) > 1 and g["prompt"][1]["role"] == "assistant" for g in got)  # a history
    # what negfree shifts --data reads
    assert [p["prompt"] for p in read_prompts(out)] == [g["prompt"] for g in got]
    assert [p["id"] for p in read_prompts(out, limit=2)] == [r.session_id for r in records[:2]]


def test_converter_limit_takes_the_first_prompts(tmp_path):
    out = tmp_path / "sub" / "p.jsonl"        # the folder is made
    res = write_prompt_file("wildbench", DEMO_WB, out, limit=2)
    assert res["n"] == 2 and res["in_file"] == 4
    assert [g["id"] for g in _lines(out)] == [r.session_id for r in read_wildbench_records(DEMO_WB)[:2]]
    commands.main_judged_prompts(["--benchmark", "wildbench", "--questions", str(DEMO_WB), "--out", str(out),
                                  "--limit", "3"])
    assert len(_lines(out)) == 3
    with pytest.raises(ValueError, match="--limit must be >= 1"):
        write_prompt_file("wildbench", DEMO_WB, out, limit=0)


@pytest.mark.parametrize("questions, words", [
    (MALFORMED_WB, ":2: field 'primary_tag'"),
    (ROOT / "tests/data/judged/nope.jsonl", "does not exist"),
])
def test_bad_records_are_one_line_naming_the_file(tmp_path, questions, words):
    out = tmp_path / "p.jsonl"
    with pytest.raises(SystemExit) as e:
        commands.main_judged_prompts(["--benchmark", "wildbench", "--questions", str(questions), "--out", str(out)])
    msg = str(e.value)
    assert msg.startswith("negfree judged-prompts: ") and "\n" not in msg
    assert str(questions) in msg and words in msg
    assert not out.exists()


def test_cli_lists_the_command():
    proc = subprocess.run([sys.executable, "-m", "negfree.cli", "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0 and "judged-prompts" in proc.stdout


def test_shifts_answer_message_lists_with_their_history(tiny_model_dir, tmp_path):
    """negfree shifts renders a converted prompt (history included) with the chat template."""
    from transformers import AutoTokenizer

    from negfree.report.shifts_data import compute_shifts

    out = tmp_path / "p.jsonl"
    write_prompt_file("wildbench", DEMO_WB, out)
    recs = read_prompts(out)
    rows = compute_shifts(tiny_model_dir, [("same", Path(tiny_model_dir))], recs, max_new_tokens=3, batch_size=4)
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    for row, rec in zip(rows, recs):
        text = tok.apply_chat_template(rec["prompt"], tokenize=False, add_generation_prompt=True)
        assert row["id"] == rec["id"] and row["prompt_tokens"] == len(tok(text, add_special_tokens=False)["input_ids"])
        assert row["logp_model"] == row["logp_ref"]


# ------------------------------------------------------------------------- analysis.shifts.prompts
def _demo(prompts=None) -> dict:
    cfg = yaml.safe_load((ROOT / "configs/demo.yaml").read_text())
    if prompts is not None:
        cfg["analysis"]["shifts"]["prompts"] = prompts
    return cfg


@pytest.mark.parametrize("prompts, want", [(None, "test"), ("test", "test"), ("wildbench", "wildbench")])
def test_shifts_resolve_the_prompts(prompts, want):
    exp = Dag(_demo(prompts), ROOT).experiments["demo"]
    assert exp.shifts()["prompts"] == want


def test_a_bad_prompts_value_is_one_line_naming_the_key():
    with pytest.raises(ConfigError) as e:      # the schema: its report, one line per bad key
        Dag(_demo("alpaca"), ROOT)
    assert "analysis.shifts.prompts: 'alpaca' is not one of ['test', 'wildbench']" in str(e.value).splitlines()[-1]
    exp = Dag(_demo(), ROOT).experiments["demo"]                                     # Experiment.shifts itself
    exp.config["analysis"]["shifts"]["prompts"] = "alpaca"
    with pytest.raises(ConfigError, match=r"analysis\.shifts\.prompts: 'alpaca' is not one of test, wildbench") as e:
        exp.shifts()
    assert "\n" not in str(e.value)


def test_the_paper_config_uses_1000_wildbench_prompts_and_the_demo_its_test_prompts():
    dag = Dag({"experiments": ["configs/paper/bnf.yaml"]}, ROOT)
    sh = dag.experiments["bnf_llama3_main"].shifts()
    assert sh["prompts"] == "wildbench" and sh["limit"] == 1000
    assert sh["runs"] == ["method~bnf", "method~dpo", "method~ipo", "method~simpo"]     # bnf.txt Sec. 5.3's four
    assert dag.experiments["bnf_llama3_main"].judged.fetched["wildbench"]
    assert Dag(_demo(), ROOT).experiments["demo"].shifts()["prompts"] == "test"


# ------------------------------------------------------------------------------- the DAG (dry run)
def _dry_run(tmp_path: Path, cfg: dict) -> dict[str, str]:
    """`snakemake -n -p figures/demo/bnf/fig3.png` in an empty folder: rule name -> its printed block."""
    cfgfile = tmp_path / "cfg.yaml"
    cfgfile.write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEGFREE_SLURM_")}
    env["HF_HUB_OFFLINE"] = "1"
    proc = subprocess.run([sys.executable, "-m", "snakemake", "figures/demo/bnf/fig3.png", "-n", "-p",
                           "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path / "run"),
                           "--configfile", str(cfgfile)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    blocks = re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n)*(?:Shell command: .*\n)?)", out, re.M)
    got = {}
    for rule, block in blocks:
        got.setdefault(rule, block)
    return got


def _field(block: str, name: str) -> str:
    return re.search(rf"^    {name}: (.*)$", block, re.M).group(1)


def test_dry_run_reads_the_demos_own_wildbench_file(tmp_path):
    blocks = _dry_run(tmp_path, _demo("wildbench"))
    made = "work/analysis/demo/shifts/wildbench_prompts.jsonl"
    sp = blocks["shift_prompts"]
    assert _field(sp, "input").endswith("configs/judged/demo/wildbench/wildbench_v2_test.jsonl")
    assert _field(sp, "output") == made
    assert "judged-prompts --benchmark wildbench --questions " in sp and f"--out {made}" in sp
    assert "fetch_judged_data" not in blocks
    sf = blocks["shift_figures"]
    assert made in _field(sf, "input").split(", ") and f"--data {made}" in sf and "--limit 16" in sf
    assert "test.jsonl" not in _field(sf, "input")


def test_dry_run_without_own_files_waits_for_the_fetch(tmp_path):
    cfg = _demo("wildbench")
    del cfg["evaluate"]["judged"]["files"]["wildbench"]
    blocks = _dry_run(tmp_path, cfg)
    sp = blocks["shift_prompts"]
    assert _field(sp, "input") == "work/judged/wildbench/.fetched"
    assert "--questions work/judged/wildbench/questions.jsonl" in sp
    assert _field(blocks["fetch_judged_data"], "output") == "work/judged/wildbench/.fetched"   # planned, not run
    assert "work/analysis/demo/shifts/wildbench_prompts.jsonl" in _field(blocks["shift_figures"], "input")


def test_dry_run_of_the_demo_keeps_its_test_prompts(tmp_path):
    blocks = _dry_run(tmp_path, _demo())
    assert "shift_prompts" not in blocks
    assert any(p.endswith("/test.jsonl") for p in _field(blocks["shift_figures"], "input").split(", "))
