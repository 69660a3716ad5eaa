"""Paper-protocol evaluation on a cluster: no GPU-hours lost to reruns, downloads or silent holes.

- a task without results fails the job in one line (its record kept beside the output); a
  preflight skip does not;
- answered requests stay in lm-eval's request cache until the result is written, so a rerun
  of a killed or failed job asks the model nothing it already answered;
- the context is capped (4096, never above the model's own), which is what batch size 'auto'
  probes at;
- lm-eval's task data is fetched by a local rule on the submit host, and every evaluation job
  depends on it and runs with the hub off.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from negfree.evaluate import protocols as P
from negfree.evaluate.local import write_tasks

ROOT = Path(__file__).resolve().parents[1]
BROKEN = ("task: negfree_broken\ndataset_path: json\n"
          "dataset_kwargs:\n  data_files:\n    test: {missing}\n"
          "test_split: test\noutput_type: multiple_choice\ndoc_to_text: '{{{{question}}}}'\n"
          "doc_to_choice: choices\ndoc_to_target: label\nmetadata:\n  version: 1.0\n")


@pytest.fixture
def twin(embedded_dir, tmp_path):
    """A protocol over the offline twin's tasks plus one whose data file is missing."""
    tasks_dir = tmp_path / "tasks"
    write_tasks(embedded_dir / "test.jsonl", tasks_dir)
    (tasks_dir / "negfree_broken.yaml").write_text(BROKEN.format(missing=tmp_path / "nowhere.jsonl"))

    def make(*groups):
        calls = {"mc": P.Call("negfree_mc", False, metrics={"negfree_mc": "acc_norm,none"},
                              num_fewshot={"negfree_mc": 0}),
                 "broken": P.Call("negfree_broken", False, metrics={"negfree_broken": "acc,none"},
                                  num_fewshot={"negfree_broken": 0}),
                 "gen": P.Call("negfree_gen", True, metrics={"negfree_gen": "exact_match,strict-match"},
                               num_fewshot={"negfree_gen": 0})}
        return P.Protocol(name="tiny_twin", source="test", include_path=(str(tasks_dir),),
                          include_defaults=False, calls=tuple(calls[g] for g in groups))
    return make


def _fake_simple_evaluate(seen):
    """simple_evaluate without a model: 0.5 for every task; the broken group raises as lm-eval does."""
    def fake(model, tasks, **kw):
        seen.append({"max_length": model.max_length, "use_cache": kw.get("use_cache"), "group": tasks[0]})
        if tasks[0] == "negfree_broken":
            raise FileNotFoundError("Unable to find 'nowhere.jsonl'")
        key = {"negfree_mc": "acc_norm,none", "negfree_gen": "exact_match,strict-match"}[tasks[0]]
        return {"results": {tasks[0]: {key: 0.5}}, "n-samples": {tasks[0]: {"effective": 2}}, "samples": {}}
    return fake


# ------------------------------------------------------------------- silent failure
def test_task_without_results_fails_in_one_line_but_a_skip_does_not(twin, tiny_model_dir, tmp_path, monkeypatch):
    import lm_eval

    from negfree.evaluate.commands import main_evaluate

    seen = []
    monkeypatch.setattr(lm_eval, "simple_evaluate", _fake_simple_evaluate(seen), raising=False)
    monkeypatch.setitem(P.PROTOCOLS, "tiny_twin", twin("mc", "broken"))
    out = tmp_path / "eval" / "tiny_twin.json"
    args = ["--model", str(tiny_model_dir), "--out", str(out), "--protocol", "tiny_twin", "--device", "cpu",
            "--batch-size", "4", "--limit", "2"]
    with pytest.raises(SystemExit) as err:
        main_evaluate(args)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("negfree evaluate: protocol 'tiny_twin': no results for "
                                              "negfree_broken (FileNotFoundError: Unable to find 'nowhere.jsonl')")
    assert not out.exists()                       # nothing that looks like a result
    kept = json.loads(out.with_suffix(".failed.json").read_text())
    assert kept["tasks"]["negfree_mc"]["value"] == 0.5 and kept["tasks"]["negfree_broken"]["value"] is None
    assert [c["status"] for c in kept["calls"]] == ["ok", "failed"]

    # the same call skipped by preflight (IFEval without its resources): a hole, on purpose, exit 0
    monkeypatch.setattr(P, "preflight", lambda call, leaf_tasks=None:
                        "IFEval needs NLTK's punkt_tab data" if call.group == "negfree_broken" else None)
    main_evaluate(args)
    rec = json.loads(out.read_text())
    assert [c["status"] for c in rec["calls"]] == ["ok", "skipped"]
    assert rec["tasks"]["negfree_broken"]["value"] is None
    assert not out.with_suffix(".failed.json").exists()      # the earlier failure is gone with it


def test_max_length_is_capped_at_the_models_own(twin, tiny_model_dir, tmp_path, monkeypatch):
    """batch size 'auto' probes generation at HFLM.max_length: 4096 by default, never above the model's."""
    import lm_eval

    seen = []
    monkeypatch.setattr(lm_eval, "simple_evaluate", _fake_simple_evaluate(seen), raising=False)
    proto = twin("gen")
    own = json.loads((Path(tiny_model_dir) / "config.json").read_text())["max_position_embeddings"]
    assert P.DEFAULT_MAX_LENGTH == 4096 and 64 < own < 4096
    for asked, used in ((P.DEFAULT_MAX_LENGTH, own), (64, 64), (None, own)):
        rec = P.evaluate_protocol(tiny_model_dir, proto, tmp_path / f"{asked}.json", max_length=asked, cache=False)
        assert seen[-1]["max_length"] == used and rec["max_length"] == {"used": used, "model": own}
        assert seen[-1]["use_cache"] is None
    with pytest.raises(ValueError, match="max_length must be a positive number of tokens, got 0"):
        P.evaluate_protocol(tiny_model_dir, proto, tmp_path / "x.json", max_length=0)


# -------------------------------------------------------------------------- resume
def test_rerun_reuses_every_answered_request_then_drops_the_cache(twin, tiny_model_dir, tmp_path, monkeypatch):
    from lm_eval.models.huggingface import HFLM

    out = tmp_path / "eval" / "tiny_twin.json"
    with pytest.raises(P.EvaluationFailed, match="no results for negfree_broken"):
        P.evaluate_protocol(tiny_model_dir, twin("mc", "gen", "broken"), out, limit=2, batch_size=4)
    first = json.loads(out.with_suffix(".failed.json").read_text())
    assert list(out.with_suffix(".cache").glob("*/requests_rank0.db"))

    def no_model(self, *a, **k):
        raise AssertionError("the model was asked again")
    for method in ("loglikelihood", "generate_until", "_loglikelihood_tokens"):
        monkeypatch.setattr(HFLM, method, no_model)
    rec = P.evaluate_protocol(tiny_model_dir, twin("mc", "gen"), out, limit=2, batch_size=4)
    for task in ("negfree_mc", "negfree_gen"):
        assert rec["tasks"][task]["value"] == first["tasks"][task]["value"], task
    assert not out.with_suffix(".cache").exists() and not out.with_suffix(".failed.json").exists()


def test_cache_key_follows_the_checkpoint(tmp_path):
    """A retrained model at the same path never reads its predecessor's answers."""
    model = tmp_path / "final"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"old")
    out = tmp_path / "eval" / "p.json"
    first = Path(P._cache_prefix(True, out, str(model), 4096, "cuda:0"))
    first.parent.mkdir(parents=True)
    (first.parent / "requests_rank0.db").write_bytes(b"")
    other = out.with_suffix(".cache") / "notes"
    other.mkdir()
    assert Path(P._cache_prefix(True, out, str(model), 4096, "cuda:1")) == first   # same device kind
    (model / "model.safetensors").write_bytes(b"retrained")
    os.utime(model / "model.safetensors", ns=(1, 1))
    again = Path(P._cache_prefix(True, out, str(model), 4096, "cuda:0"))
    assert again != first and not first.parent.exists() and other.exists()
    assert P._cache_prefix(True, out, str(model), 2048, "cuda:0") != str(again)
    assert P._cache_prefix(False, out, str(model), 4096, "cpu") is None
    assert P._cache_prefix(tmp_path / "c", out, str(model), 4096, "cpu").startswith(str(tmp_path / "c"))


# --------------------------------------------------------------------- data fetch
def test_fetch_data_loads_each_call_offline_twin_is_a_no_op(twin, tmp_path, monkeypatch):
    from negfree.evaluate.commands import main_fetch_eval_data

    rec = P.fetch_data(twin("mc"), tmp_path / "m" / "tiny.json")
    assert rec["calls"] == [{"group": "negfree_mc", "status": "ok", "tasks": {
        "negfree_mc": {"dataset": ["json", None], "rows": {"test": 64}}}}]
    assert json.loads((tmp_path / "m" / "tiny.json").read_text())["protocol"] == "tiny_twin"

    main_fetch_eval_data(["--protocol", "offline", "--out", str(tmp_path / "offline.json")])
    assert json.loads((tmp_path / "offline.json").read_text())["calls"] == []

    with pytest.raises(P.EvaluationFailed, match="protocol 'tiny_twin': cannot fetch the data of 'negfree_broken'"):
        P.fetch_data(twin("mc", "broken"), tmp_path / "b.json")
    monkeypatch.setattr(P, "_missing_packages", lambda call, leaf_tasks=None:
                        "IFEval needs the Python packages langdetect" if call.group == "negfree_broken" else None)
    rec = P.fetch_data(twin("mc", "broken"), tmp_path / "b.json")
    assert [c["status"] for c in rec["calls"]] == ["ok", "skipped"]


def _dry_run(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-s", str(ROOT / "Snakefile"), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    return re.findall(r"^(?:local)?rule (\w+):\n((?:    .*\n)*)(?:Shell command: (.*)\n)?", out, re.M)


def test_slurm_dry_run_fetches_on_the_submit_host_before_every_evaluation(tmp_path):
    jobs = _dry_run("--profile", "slurm", "--directory", str(ROOT), "dft_table1", "dft_table2")
    fetches = {re.search(r"output: (\S+)", body).group(1) for rule, body, _ in jobs if rule == "fetch_eval_data"}
    assert fetches == {"work/lm_eval_data/openllm_dft.json", "work/lm_eval_data/math_zeroshot.json"}
    evals = [(rule, body, cmd) for rule, body, cmd in jobs if rule.startswith("evaluate_protocol")]
    assert {r for r, _, _ in evals} == {"evaluate_protocol", "evaluate_protocol_base", "evaluate_protocol_released"}
    for rule, body, cmd in evals:
        protocol = re.search(r"protocol=(\w+)", body).group(1)
        assert f"work/lm_eval_data/{protocol}.json" in re.search(r"input: (.*)", body).group(1), (rule, body)
        out = re.search(r"output: (\S+)", body).group(1)
        assert cmd.startswith("HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 "), cmd
        assert f"--cache {out[:-len('.json')]}.cache" in cmd, cmd

    # the demo's offline twin: the same wiring, its fetch only writes the marker
    jobs = _dry_run("-p", "--directory", str(tmp_path), "--configfile", str(ROOT / "configs/demo.yaml"))
    twins = [(rule, body) for rule, body, _ in jobs if rule in ("evaluate_run", "evaluate_base")]
    assert twins and all("work/lm_eval_data/offline.json" in body for _, body in twins)
    fetch = [c for rule, _, c in jobs if rule == "fetch_eval_data"]
    assert len(fetch) == 1 and "fetch-eval-data --protocol offline --out work/lm_eval_data/offline.json" in fetch[0]

    # local (submit host) under the Slurm profile; the evaluations are not (a dry run does not say which)
    script = ("import json, sys; from pathlib import Path; from snakemake.api import SnakemakeApi; "
              "from snakemake.settings.types import OutputSettings, ResourceSettings\n"
              "with SnakemakeApi(OutputSettings()) as api:\n"
              "    wf = api.workflow(resource_settings=ResourceSettings(), snakefile=Path(sys.argv[1]),"
              " workdir=Path(sys.argv[2]))._workflow\n"
              "    print(json.dumps(sorted(r.name for r in wf.rules if r.name in wf._localrules and r.group is None)))")
    proc = subprocess.run([sys.executable, "-c", script, str(ROOT / "Snakefile"), str(ROOT)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    local = set(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert "fetch_eval_data" in local and not {r for r in local if r.startswith("evaluate")}, local
