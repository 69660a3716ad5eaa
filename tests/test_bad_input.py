"""Bad input never ends in a traceback or a half-written run (issue 19).

Every case goes through the `negfree` entry point as a workflow rule calls it and must
(1) exit non-zero with one line ``negfree <command>: ...`` naming the culprit and
(2) leave no file that was not there before. The commands run in this process
(``cli.main``), so a failure is a SystemExit whose code is the line Python prints; the
read-only mount needs its own process. Data: 8 embedded records with pools of 3
negatives (other records' answers), scored once on the tiny model.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from negfree.cli import main
from negfree.data.schema import load_jsonl
from negfree.jobs.dag import ConfigError, Dag
from negfree.score.reference import score_records

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")
TRAIN_KEYS = {"batch_size": 2, "micro_batch_size": 2, "max_steps": 1, "num_negatives": 2, "max_len": 96,
              "lr": 1e-3, "scheduler": "constant", "warmup_ratio": 0.0}


@pytest.fixture(scope="module")
def raw(embedded_dir):
    recs = load_jsonl(embedded_dir / "train.jsonl")[:8]
    for i, r in enumerate(recs):
        r["negatives"] = [recs[(i + k) % len(recs)]["positive"] for k in (1, 2, 3)]
    return recs


@pytest.fixture(scope="module")
def scored(tiny_model_dir, raw, tmp_path_factory):
    path = tmp_path_factory.mktemp("bad_input") / "scored.jsonl"
    score_records(tiny_model_dir, raw, path, max_len=96)
    return load_jsonl(path)


def fails(argv, *culprits):
    """Run `negfree argv`; it must stop with one line naming every culprit. Returns the line."""
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    line = e.value.code
    assert isinstance(line, str) and line.startswith(f"negfree {argv[0]}: "), line
    assert "\n" not in line and "Traceback" not in line, line
    for c in culprits:
        assert str(c) in line, f"{c!r} not named in: {line}"
    return line


def tree(root):
    """Every path under ``root`` with its size and mtime: equal before and after = nothing written.
    A run directory's ``.lock`` names its last holder (negfree.train.checkpoint.RunLock), not an output."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else None
            for p in sorted(root.rglob("*")) if p.name != ".lock"}


def train_argv(model, data, out, method="dft", **keys):
    return [str(a) for a in ["train", "--method", method, "--model", model, "--data", data, "--out-dir", out,
                             "--train-json", json.dumps({**TRAIN_KEYS, **keys})]]


def score_argv(model, data, out):
    return [str(a) for a in ["score", "--model", model, "--data", data, "--out", out, "--max-len", 96]]


def edited(tmp_path, recs, fix, name="data.jsonl"):
    recs = json.loads(json.dumps(recs))   # a deep copy: the fixtures stay as they are
    fix(recs)
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))   # json.dumps writes NaN as NaN
    return path


# ----------------------------------------------------------------------------- the records
def test_an_empty_negative_is_refused_by_score_and_by_train(tmp_path, tiny_model_dir, raw, scored):
    """Decision (docs/training.md): an empty negative stops the run; it is not dropped."""
    def blank(recs):
        recs[2]["negatives"][1] = "  "
        if recs[2].get("ref"):
            recs[2]["ref"]["negatives"][1] = [-1.0]   # one value, as scoring the lone end token gives
    rid = raw[2]["id"]
    before = tree(tmp_path)
    fails(score_argv(tiny_model_dir, edited(tmp_path, raw, blank, "raw.jsonl"), tmp_path / "out.jsonl"),
          rid, "negative 1 is empty", "raw.jsonl")
    fails(train_argv(tiny_model_dir, edited(tmp_path, scored, blank), tmp_path / "run"),
          rid, "negative 1 is empty", "data.jsonl")
    assert set(tree(tmp_path)) == set(before) | {"raw.jsonl", "data.jsonl"}


def test_a_negative_edited_after_scoring_is_caught_before_the_first_write(tmp_path, tiny_model_dir, scored):
    def stale(recs):
        recs[6]["negatives"][2] += " and then some more words were added after scoring"
    fails(train_argv(tiny_model_dir, edited(tmp_path, scored, stale), tmp_path / "run"),
          scored[6]["id"], "(negative 2)", "reference log-probs for", "answer changed after scoring", "data.jsonl")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None], ids=["nan", "inf", "null"])
@pytest.mark.parametrize("which", ["one", "every"])
def test_a_non_finite_reference_is_refused_up_front(tmp_path, tiny_model_dir, scored, bad, which):
    """One bad record that no step visits (max_steps 1) stops the run as surely as all of them."""
    def poison(recs):
        for r in (recs[7:] if which == "one" else recs):
            r["ref"]["negatives"][0][1] = bad
    culprit = scored[7]["id"] if which == "one" else scored[0]["id"]
    fails(train_argv(tiny_model_dir, edited(tmp_path, scored, poison), tmp_path / "run"),
          culprit, "(negative 0)", f"reference log-prob 1 is {json.dumps(bad)}, not a finite number", "data.jsonl")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("how", ["invalid byte", "one latin-1 line"])
@pytest.mark.parametrize("command", ["train", "score"])
def test_undecodable_bytes_name_the_file_and_line(tmp_path, tiny_model_dir, scored, how, command):
    lines = [json.dumps(r, ensure_ascii=False).encode("utf-8") for r in scored]
    if how == "invalid byte":
        lines[2] = lines[2][:5] + b"\xff" + lines[2][5:]
        byte = "0xff"
    else:   # a record re-saved by a latin-1 editor: "é" is one byte 0xe9 there
        text = json.dumps({**scored[2], "positive": scored[2]["positive"] + " (café)"}, ensure_ascii=False)
        lines[2] = text.encode("latin-1")
        byte = "0xe9"
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    argv = train_argv(tiny_model_dir, path, tmp_path / "run") if command == "train" else \
        score_argv(tiny_model_dir, path, tmp_path / "out.jsonl")
    fails(argv, f"{path}:3", "not valid UTF-8", byte)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.jsonl"]


# ----------------------------------------------------------------------------- model and config
@pytest.mark.parametrize("command", ["train", "score", "generate", "evaluate", "alpaca-eval"])
def test_a_missing_model_directory_is_named(tmp_path, tiny_model_dir, embedded_dir, scored, command):
    data = edited(tmp_path, scored, lambda recs: None)
    missing = tmp_path / "models" / "no-such-model"
    instr = tmp_path / "instructions.json"
    instr.write_text(json.dumps([{"instruction": "Say hi.", "output": "Hi.", "generator": "ref"}]))
    argv = {
        "train": train_argv(missing, data, tmp_path / "out" / "run"),
        "score": score_argv(missing, data, tmp_path / "out" / "scored.jsonl"),
        "generate": ["generate", "--model", missing, "--data", data, "--out", tmp_path / "out" / "neg.jsonl",
                     "--num", 2],
        "evaluate": ["evaluate", "--model", missing, "--test", embedded_dir / "test.jsonl",
                     "--out", tmp_path / "out" / "eval.json"],
        "alpaca-eval": ["alpaca-eval", "--model", missing, "--instructions", instr, "--reference", instr,
                        "--out", tmp_path / "out" / "ae.json", "--annotator", "negfree_local_loglik",
                        "--judge-model", tiny_model_dir],
    }[command]
    fails(argv, f"model directory {missing} does not exist")
    assert not (tmp_path / "out").exists()


def test_invalid_yaml_config_names_the_file_and_line(tmp_path, tiny_model_dir, scored):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("train:\n  lr: 1e-5\n\tbatch_size: 2\n")
    fails(train_argv(tiny_model_dir, edited(tmp_path, scored, lambda r: None), tmp_path / "run")
          + ["--config", cfg], f"{cfg}:3", "invalid YAML")
    assert not (tmp_path / "run").exists()


def test_debug_switch_shows_the_original_error(tmp_path, tiny_model_dir, scored, monkeypatch):
    argv = train_argv(tmp_path / "nope", edited(tmp_path, scored, lambda r: None), tmp_path / "run")
    monkeypatch.setenv("NEGFREE_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="model directory .*nope does not exist"):
        main(argv)
    monkeypatch.delenv("NEGFREE_DEBUG")
    with pytest.raises(FileNotFoundError, match="model directory .*nope does not exist"):
        main(["--debug"] + argv)


# ----------------------------------------------------------------------------- read-only output
READONLY_SCRIPT = textwrap.dedent("""
    import json, sys
    from negfree.cli import main
    out = {}
    for name, argv in json.loads(sys.argv[1]).items():
        try:
            main(argv)
            out[name] = None
        except SystemExit as e:
            out[name] = e.code
    print(json.dumps(out))
""")


def test_a_read_only_output_location_is_refused_before_any_work(tmp_path, tiny_model_dir, scored):
    """A real read-only mount when root can make one (root ignores permission bits), else chmod."""
    data = edited(tmp_path, scored, lambda recs: None)
    ro = tmp_path / "ro"
    ro.mkdir()
    runs = {"train": train_argv(tiny_model_dir, data, ro / "run"),
            "score": score_argv(tiny_model_dir, data, ro / "sub" / "scored.jsonl")}
    py = [sys.executable, "-c", READONLY_SCRIPT, json.dumps(runs)]
    if os.geteuid() == 0:   # a private mount namespace: the read-only mount is this process's alone
        mount = f"mount --bind {ro} {ro} && mount -o remount,bind,ro {ro}"
        probe = subprocess.run(["unshare", "-m", "sh", "-c", mount], capture_output=True, text=True) \
            if shutil.which("unshare") else None
        if probe is None or probe.returncode != 0:
            pytest.skip("root without a mount namespace (unshare -m): no read-only mount to test on")
        cmd = ["unshare", "-m", "sh", "-c", mount + ' && exec "$@"', "sh", *py]
    else:
        ro.chmod(0o555)
        cmd = py
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    ro.chmod(0o755)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    lines = json.loads(p.stdout.strip().splitlines()[-1])
    for name, line in lines.items():
        assert line and line.startswith(f"negfree {name}: ") and "is not writable" in line, (name, line)
        assert str(ro) in line and "\n" not in line
    assert list(ro.iterdir()) == []


# ----------------------------------------------------------------------------- checkpoints
def test_a_corrupt_latest_checkpoint_is_named_and_the_previous_one_resumes(tmp_path, tiny_model_dir, scored,
                                                                         capsys):
    data = edited(tmp_path, scored, lambda recs: None)
    run = tmp_path / "run"
    argv = train_argv(tiny_model_dir, data, run, method="sft", max_steps=3, save_every=1, keep_checkpoints=2,
                      keep_checkpoints_at_end=True)
    main(argv)   # steps 1-3; checkpoints after steps 1 and 2 are kept
    whole = load_file(str(run / "final" / "model.safetensors"))
    ckpts = run / "checkpoints"
    assert (ckpts / "latest").read_text().strip() == "step-000002"
    weights = ckpts / "step-000002" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])   # a save cut short

    capsys.readouterr()
    main(argv)
    said = capsys.readouterr().out
    assert f"checkpoint {ckpts / 'step-000002'} is unreadable" in said and "step-000001" in said
    assert json.loads((run / "run_info.json").read_text())["resumed_from_step"] == 1
    again = load_file(str(run / "final" / "model.safetensors"))
    assert all(torch.equal(whole[k], again[k]) for k in whole)   # steps 2-3 redone from step 1: same weights

    for name in ("step-000001", "step-000002"):   # nothing readable left: stop, naming the newest
        w = ckpts / name / "model.safetensors"
        w.write_bytes(w.read_bytes()[:100])
    before = tree(tmp_path)
    fails(argv, f"checkpoint {ckpts / 'step-000002'} is unreadable", "no earlier readable one", f"remove {ckpts}")
    assert tree(tmp_path) == before


# ----------------------------------------------------------------------------- AlpacaEval's judge
def _alpaca_argv(tiny_model_dir, tmp_path):
    instr = tmp_path / "instructions.json"
    ref = tmp_path / "reference.json"
    items = [{"instruction": "What is 2 plus 3?"}, {"instruction": "Name a colour."}]
    instr.write_text(json.dumps(items))
    ref.write_text(json.dumps([{**i, "output": "Five. Red.", "generator": "ref"} for i in items]))
    return ["alpaca-eval", "--model", tiny_model_dir, "--instructions", instr, "--reference", ref,
            "--out", tmp_path / "out" / "alpaca_eval2.json", "--max-new-tokens", 4, "--device", "cpu"]


def test_alpaca_eval_without_an_api_key_is_one_line(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    fails(_alpaca_argv(tiny_model_dir, tmp_path), "needs OPENAI_API_KEY")
    assert not (tmp_path / "out").exists()


def test_an_unreachable_judge_is_one_line_and_leaves_no_outputs(tmp_path, tiny_model_dir, monkeypatch):
    pytest.importorskip("alpaca_eval")
    with socket.socket() as s:   # a port nobody listens on: connection refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-negfree-test-not-a-key")
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    fails(_alpaca_argv(tiny_model_dir, tmp_path), "the judge (weighted_alpaca_eval_gpt4_turbo) failed",
          "Connection")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_truncated_model_weights_are_named(tmp_path, tiny_model_dir, embedded_dir, scored, command):
    """The base model's weights cut short: one line naming the directory, and the evaluation's task
    files, written before the model is read, are removed again."""
    broken = tmp_path / "model"
    shutil.copytree(tiny_model_dir, broken)
    w = broken / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    before = tree(tmp_path)
    argv = train_argv(broken, edited(tmp_path, scored, lambda r: None), tmp_path / "out" / "run") \
        if command == "train" else ["evaluate", "--model", broken, "--test", embedded_dir / "test.jsonl",
                                    "--out", tmp_path / "out" / "eval.json", "--limit", 2]
    fails(argv, str(broken))
    assert not (tmp_path / "out").exists()
    assert {k: v for k, v in tree(tmp_path).items() if k != "data.jsonl"} == before


# -- config files (issue "a newcomer's first week", item 5) ------------------------------------
# A path a config points to that is not there: one line naming the config file, the dotted key and
# the path, from Dag (so before anything is planned), `snakemake -n` and `negfree plan` alike.
def _demo_config():
    return yaml.safe_load((ROOT / "configs/demo.yaml").read_text())


def _set(cfg, dotted, value):
    keys = dotted.split(".")
    for k in keys[:-1]:
        cfg = cfg.setdefault(k, {})
    cfg[keys[-1]] = value


def _alpaca(cfg, tmp_path):
    (tmp_path / "instr.json").write_text("[]")
    cfg["evaluate"]["protocols"] = ["offline", "alpaca_eval2"]
    cfg["evaluate"]["alpaca_eval"] = {"instructions": str(tmp_path / "instr.json"),
                                      "reference": str(tmp_path / "instr.json")}


MISSING_PATHS = [   # (dotted key, the missing value, what else the config needs for the key to be read)
    ("data.source", "configs/data/nope.yaml", lambda c, t: c["evaluate"].update(protocols=["openllm_dft"])),
    ("model.source", "work/models/no-such-checkpoint", None),
    ("released.ours.source", "work/no-such-release",
     lambda c, t: c["evaluate"].update(protocols=["openllm_dft"])),
    ("evaluate.alpaca_eval.instructions", "configs/no_instructions.json", _alpaca),
    ("evaluate.alpaca_eval.reference", "configs/no_reference.json", _alpaca),
    ("evaluate.alpaca_eval.judge_model", "work/no-judge", _alpaca),
    ("launch.accelerate_config", "configs/accelerate/nope.yaml", None),
]


@pytest.mark.parametrize("key,missing,prepare", MISSING_PATHS, ids=[k for k, *_ in MISSING_PATHS])
def test_a_missing_path_in_a_config_names_the_file_and_the_key(tmp_path, key, missing, prepare):
    cfg = _demo_config()
    if prepare:
        prepare(cfg, tmp_path)
    _set(cfg, key, missing)
    with pytest.raises(ConfigError) as e:
        Dag(cfg, ROOT, origin="configs/paper/x.yaml")
    assert str(e.value) == f"configs/paper/x.yaml: {key}: {missing} does not exist"


def test_a_missing_experiment_file_names_the_config_that_lists_it():
    with pytest.raises(ConfigError) as e:
        Dag({"experiments": ["configs/paper/dft.yaml", "configs/paper/nope.yaml"]}, ROOT, origin="configs/mine.yaml")
    assert str(e.value) == "configs/mine.yaml: experiments: configs/paper/nope.yaml does not exist"


def _bad_config_file(tmp_path):
    cfg = _demo_config()
    cfg["data"].update(name="nope", source="configs/data/nope.yaml")
    cfg["evaluate"]["protocols"] = ["openllm_dft"]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return tmp_path / "bad.yaml"


def test_snakemake_dry_run_of_a_bad_config_is_one_line_naming_file_and_key(tmp_path):
    bad = _bad_config_file(tmp_path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-s", str(ROOT / "Snakefile"), "--directory",
                           str(tmp_path), "--configfile", str(bad), "--cores", "1"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert out.strip().splitlines() == ["negfree: bad.yaml: data.source: configs/data/nope.yaml does not exist"], out
    assert "Traceback" not in out and "WorkflowError" not in out and "FileNotFoundError" not in out


def test_negfree_plan_of_a_bad_config_is_one_line_naming_file_and_key(tmp_path):
    bad = _bad_config_file(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["plan", "--configfile", str(bad), "--directory", str(ROOT)])
    assert e.value.code == f"negfree plan: {bad}: data.source: configs/data/nope.yaml does not exist"
