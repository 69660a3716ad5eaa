"""The vLLM environment (issue 15): configs/vllm-env.txt, what `make setup-vllm` installs into
.venv-vllm for the generation rules.

- It resolves: pip resolves the file for this interpreter without installing anything
  (``pip install --dry-run --report``), and gets exactly its pins. A pin bump that vLLM, torch
  and transformers cannot satisfy together fails here. Needs the package registry (these
  machines reach it); skipped, with the reason, only when pip cannot reach it at all.
- It is enough: negfree is installed there without its dependencies, so `negfree generate`
  must run with none of the packages the file leaves out (snakemake, lm-eval, accelerate, ...).
- Why it is separate from .venv is in the file's header (numpy: mistral_common vs the Slurm
  plugin); that conflict was found with the same pip command and is not re-run here (pip
  backtracks for over 10 minutes before giving up)."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV_FILE = ROOT / "configs/vllm-env.txt"
UNREACHABLE = ("Failed to establish a new connection", "Temporary failure in name resolution",
               "NewConnectionError", "Network is unreachable")
# importable in .venv, absent from .venv-vllm (nothing in configs/vllm-env.txt pulls them in)
LEFT_OUT = ["snakemake", "lm_eval", "alpaca_eval", "accelerate", "pandas", "matplotlib", "gymnasium", "trl",
            "jsonschema", "scipy", "gguf"]


def _pins() -> dict[str, str]:
    pins = {}
    for line in ENV_FILE.read_text().splitlines():
        m = re.match(r"\s*([A-Za-z0-9_.\-]+)==([^\s#]+)", line)
        if m:
            pins[m.group(1).lower()] = m.group(2)
    return pins


def test_the_vllm_environment_resolves(tmp_path):
    pins = _pins()
    assert {"vllm", "torch", "transformers"} <= set(pins)
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report",
           str(report), "-r", str(ENV_FILE)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    if proc.returncode and any(s in out for s in UNREACHABLE):
        pytest.skip("the package registry is unreachable from here: " + out.strip().splitlines()[-1][:200])
    errors = [ln for ln in out.splitlines() if "is ignored" not in ln]
    assert proc.returncode == 0, "\n".join(errors[-30:])
    got = {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"]
           for i in json.loads(report.read_text())["install"]}
    for name, version in pins.items():
        assert got.get(name) == version, (name, got.get(name), version)
    assert {"jinja2", "pyyaml", "tqdm", "safetensors", "tokenizers"} <= set(got)   # chat templates, loading


def test_generate_runs_without_what_the_vllm_environment_leaves_out(tmp_path, tiny_model_dir, embedded_dir):
    """`negfree generate` as the generation rules call it, with every left-out package made
    unimportable: it must not need them (.venv-vllm installs negfree with --no-deps)."""
    script = tmp_path / "run.py"
    script.write_text("import sys\n"
                      f"for m in {LEFT_OUT!r}:\n    sys.modules[m] = None\n"
                      "from negfree.cli import main\nmain(sys.argv[1:])\n")
    out = tmp_path / "neg.jsonl"
    proc = subprocess.run([sys.executable, str(script), "generate", "--model", str(tiny_model_dir), "--data",
                           str(embedded_dir / "train.jsonl"), "--out", str(out), "--num", "2", "--max-new-tokens",
                           "4", "--limit", "2", "--backend", "auto", "--dtype", "auto"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 2 and all(len(r["negatives"]) == 2 for r in rows)
