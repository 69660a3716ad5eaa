"""`negfree serve-judge`: an open-weights judge served for the length of one job.

    negfree serve-judge --model Qwen/Qwen2.5-72B-Instruct --gpus 4 -- \\
        negfree judged-eval ... --judge-model Qwen/Qwen2.5-72B-Instruct --judge-url {judge_url}

It starts an OpenAI-compatible server on 127.0.0.1 at a free port (vLLM's, from .venv-vllm when it
exists: `make setup-vllm`), waits until ``GET /v1/models`` answers (at most ``--startup-min``),
runs the command with ``{judge_url}`` replaced by the server's URL, and stops the server (its
whole process group) whatever the command's outcome. The command's exit status is returned; the
server's failure to start is one line naming its exit status or the time waited. Its output goes
to this job's log. ``--server-cmd`` replaces the server's command line (a template with
``{python}``, ``{model}``, ``{port}``, ``{gpus}``): another server, or a stub in the tests.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

VLLM_SERVER = ("{python} -m vllm.entrypoints.openai.api_server --model {model} --served-model-name {model} "
               "--host 127.0.0.1 --port {port} --tensor-parallel-size {gpus}")
VLLM_PYTHON = ".venv-vllm/bin/python"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # 127.0.0.1 never through a proxy


def _ready(url: str) -> bool:
    try:
        with _DIRECT.open(f"{url}/models", timeout=5) as r:
            return r.status == 200 and "data" in json.loads(r.read() or b"{}")
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _stop(proc: subprocess.Popen, grace_s: float = 30.0) -> None:
    """The server's whole process group (vLLM's tensor-parallel workers too), even if its leader has exited."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def _raise_on_signal(signum, frame):
    raise SystemExit(128 + signum)   # Slurm's or Snakemake's SIGTERM: the finally below stops the server


def serve_and_run(model: str, command: list[str], *, gpus: int = 1, startup_min: float = 15.0,
                  server_cmd: str | None = None, poll_s: float = 2.0) -> int:
    if not command:
        raise ValueError("serve-judge: no command after --")
    python = VLLM_PYTHON if Path(VLLM_PYTHON).exists() else sys.executable
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    argv = shlex.split((server_cmd or VLLM_SERVER).format(python=python, model=model, port=port, gpus=gpus))
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_on_signal)
    server = subprocess.Popen(argv, start_new_session=True)
    try:
        deadline = time.monotonic() + startup_min * 60
        while not _ready(url):
            if server.poll() is not None:
                raise ValueError(f"serve-judge: the judge server ({argv[0]} ... {model}) exited with status "
                                 f"{server.returncode} before answering")
            if time.monotonic() > deadline:
                raise ValueError(f"serve-judge: the judge server ({model}) did not answer {url}/models within "
                                 f"{startup_min:g} min")
            time.sleep(poll_s)
        print(f"serve-judge: {model} answers at {url}", file=sys.stderr, flush=True)
        return subprocess.run([a.replace("{judge_url}", url) for a in command]).returncode
    finally:
        _stop(server)
