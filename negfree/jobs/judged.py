"""The judged protocols as jobs: which runs are judged on which benchmark, by which judge, from
which files (``evaluate.judged`` of an experiment, the judges of configs/judges.yaml).

For each (run, protocol) the workflow (workflows/judged.smk) makes two jobs:
``judged_answers`` (a GPU job: the run's answers on the benchmark's prompts, ``negfree
judged-answers``) and ``judged_eval`` (``negfree judged-eval``: the judge's verdicts, cached, and
the benchmark's score with its interval). ``judged_eval`` is a CPU job with an API or offline
judge, and a GPU job with a served one (``negfree serve-judge`` starts the server around it).
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PROTOCOLS = ("arena_hard", "mt_bench", "wildbench")
BENCHMARK = {"arena_hard": "arena-hard", "mt_bench": "mt-bench", "wildbench": "wildbench"}
# the official files each protocol reads: judged-eval's option -> the file's name in the fetched folder
# (negfree fetch-judged-data writes <out>/<protocol>/<name>, from configs/judged/sources.yaml)
FILES = {
    "arena_hard": {"questions": "questions.jsonl", "baseline": "baseline_answers.jsonl",
                   "judge_template": "judge_config.yaml"},
    "mt_bench": {"questions": "questions.jsonl", "reference": "reference_answers.jsonl",
                 "judge_template": "judge_prompts.jsonl"},
    "wildbench": {"questions": "questions.jsonl", "judge_template": "score_template.md"},
}
FETCHED = "work/judged"
JUDGES_FILE = "configs/judges.yaml"
BACKEND_KINDS = ("api", "served", "offline")
# full prompt sets: Arena-Hard v0.1 500 prompts, MT-Bench 80 questions x 2 turns, WildBench v2 1,024 tasks
PROMPTS = {"arena_hard": 500, "mt_bench": 80, "wildbench": 1024}
TURNS = {"arena_hard": 1, "mt_bench": 2, "wildbench": 1}
# answer lengths of negfree judged-answers (its defaults: FastChat's 1024 for MT-Bench, [ours] 4096 else)
MAX_NEW_TOKENS = {"arena_hard": 4096, "mt_bench": 1024, "wildbench": 4096}


class JudgedConfigError(ValueError):
    pass


@dataclass
class Judge:
    """The judge of one protocol of one experiment."""
    backend: str                 # a name under configs/judges.yaml backends
    kind: str                    # api | served | offline
    model: str                   # the model id asked (offline: negfree_offline_judge)
    paper_model: str | None      # the judge the paper used for this protocol
    base_url: str | None = None
    api_key_env: str | None = None
    gpus: int = 0                # served: the server's GPUs
    gpu_mem_gb: float = 0.0
    startup_min: float = 0.0
    params: float = 0.0          # served: the judge's parameters (its GPU-hours)
    concurrency: int = 4         # judgements in flight at once (negfree judged-eval --judge-concurrency)

    @property
    def is_papers(self) -> bool:
        """The paper's own judge (same model id, a real model)."""
        return self.kind != "offline" and self.paper_model is not None and self.model == self.paper_model


@dataclass
class Judged:
    """``evaluate.judged`` of one experiment, resolved."""
    protocols: list[str]
    runs: list[str]                               # run ids (base~<model> for the base model)
    files: dict[str, dict[str, str]]              # protocol -> judged-eval option -> path
    fetched: dict[str, bool]                      # protocol -> its files come from fetch-judged-data
    judges: dict[str, Judge]
    limit: int | None = None
    max_new_tokens: dict[str, int] = field(default_factory=dict)
    temperature: float = 0.0
    batch_size: int | None = None

    # -- paths --------------------------------------------------------------------------------
    def answers(self, runs_root: str, who: str, protocol: str) -> str:
        return f"{runs_root}/{who}/judged/{protocol}.answers.jsonl"

    def result(self, runs_root: str, who: str, protocol: str) -> str:
        return f"{runs_root}/{who}/eval/{protocol}.json"

    def outputs(self, runs_root: str) -> list[str]:
        return [self.result(runs_root, r, p) for p in self.protocols for r in self.runs]

    def inputs(self, protocol: str) -> list[str]:
        """What a judged job waits for: the experiment's own files, or the marker that negfree
        fetch-judged-data writes once every pinned file of the protocol is in place and verified."""
        if self.fetched[protocol]:
            return [f"{FETCHED}/{protocol}/.fetched"]
        return list(self.files[protocol].values())

    # -- command lines ------------------------------------------------------------------------
    def answers_args(self, protocol: str) -> str:
        args = [f"--benchmark {BENCHMARK[protocol]}", f"--questions {shlex.quote(self.files[protocol]['questions'])}",
                f"--max-new-tokens {self.max_new_tokens[protocol]}", f"--temperature {self.temperature}"]
        if self.limit:
            args.append(f"--limit {self.limit}")
        if self.batch_size:
            args.append(f"--batch-size {self.batch_size}")
        return " ".join(args)

    def eval_args(self, protocol: str, cache_dir: str) -> str:
        """negfree judged-eval's options but the answers, the output and the judge's URL of a served one."""
        f = self.files[protocol]
        args = [f"--benchmark {BENCHMARK[protocol]}", f"--cache-dir {shlex.quote(cache_dir)}"]
        args += [f"--{k.replace('_', '-')} {shlex.quote(v)}" for k, v in f.items()]
        if self.limit:
            args.append(f"--limit {self.limit}")
        j = self.judges[protocol]
        if j.kind == "offline":
            args.append("--judge offline")
        else:
            args += [f"--judge-model {shlex.quote(j.model)}", f"--judge-name {shlex.quote(j.backend + ':' + j.model)}",
                     f"--judge-concurrency {j.concurrency}"]
            if j.kind == "api":
                args.append(f"--judge-url {shlex.quote(j.base_url)}")
                if j.api_key_env:
                    args.append(f"--judge-key-env {j.api_key_env}")
            else:   # served: negfree serve-judge fills in the URL of the server it started
                args.append("--judge-url {judge_url}")
        return " ".join(args)


# without configs/judges.yaml (a tree of its own, a test's) only the offline judge is known
BUILT_IN = {"default": "offline", "backends": {"offline": {"kind": "offline"}}}


def load_judges(basedir: str | Path, origin: str = JUDGES_FILE) -> dict:
    path = Path(basedir) / JUDGES_FILE
    if not path.is_file():
        return BUILT_IN
    cfg = yaml.safe_load(path.read_text()) or {}
    for name, b in (cfg.get("backends") or {}).items():
        if (b or {}).get("kind") not in BACKEND_KINDS:
            raise JudgedConfigError(f"{JUDGES_FILE}: backends.{name}.kind must be one of {', '.join(BACKEND_KINDS)}")
    return cfg


def _judge(protocol: str, backend: str, judges: dict, paper: str | None, origin: str) -> Judge:
    backends = judges.get("backends") or {}
    if backend not in backends:
        raise JudgedConfigError(f"{origin}: evaluate.judged: judge {backend!r} is not a backend of {JUDGES_FILE} "
                                f"({', '.join(backends)})")
    b = backends[backend]
    papers = judges.get("paper_judges") or {}
    paper_model = (papers.get(paper) or papers.get("default") or {}).get(protocol)
    kind = b["kind"]
    if kind == "offline":
        return Judge(backend, kind, "negfree_offline_judge", paper_model)
    model = b.get("model") or (paper_model if kind == "api" else None)
    if not model:
        raise JudgedConfigError(f"{origin}: evaluate.judged: {JUDGES_FILE} backends.{backend}.model is not set "
                                f"(and no paper judge for {protocol})")
    if kind == "api":
        if not b.get("base_url"):
            raise JudgedConfigError(f"{origin}: evaluate.judged: {JUDGES_FILE} backends.{backend}.base_url is not "
                                    f"set (the OpenAI-compatible server's URL)")
        return Judge(backend, kind, model, paper_model, base_url=b["base_url"], api_key_env=b.get("api_key_env"),
                     concurrency=int(b.get("concurrency") or 4))
    if not b.get("params"):
        raise JudgedConfigError(f"{origin}: evaluate.judged: {JUDGES_FILE} backends.{backend}.params is not set "
                                f"(the served judge's parameter count: its GPU-hours)")
    return Judge(backend, kind, model, paper_model, gpus=int(b.get("gpus") or 1),
                 gpu_mem_gb=float(b.get("gpu_mem_gb") or 80), startup_min=float(b.get("startup_min") or 15),
                 params=float(b["params"]), concurrency=int(b.get("concurrency") or 32))


def judged_of(config: dict, origin: str, runs: list[str], aliases: dict, base_run: str,
              judges: dict | None, basedir: str | Path) -> Judged | None:
    """The experiment's ``evaluate.judged``, checked (None where it has none)."""
    j = (config.get("evaluate") or {}).get("judged")
    if not j:
        return None
    judges = judges if judges is not None else load_judges(basedir, origin)
    protocols = list(j.get("protocols") or PROTOCOLS)
    chosen = []
    for r in j.get("runs") or ["base", *runs]:
        run = base_run if r == "base" else aliases.get(r, r)
        if run != base_run and run not in runs:
            raise JudgedConfigError(f"{origin}: evaluate.judged.runs: {r!r} is not an evaluated run of this "
                                    f"experiment (runs: {', '.join(runs)})")
        chosen.append(run)
    files, fetched = {}, {}
    for p in protocols:
        given = (j.get("files") or {}).get(p)
        if given:
            missing = sorted(set(FILES[p]) - set(given))
            if missing:
                raise JudgedConfigError(f"{origin}: evaluate.judged.files.{p}: needs {', '.join(sorted(FILES[p]))} "
                                        f"(missing {', '.join(missing)})")
            for role, path in given.items():
                if not (Path(basedir) / path).is_file():
                    raise JudgedConfigError(f"{origin}: evaluate.judged.files.{p}.{role}: {path} does not exist")
            # a path of the config is the repository's: as the jobs see it from Snakemake's working directory
            files[p] = {k: os.path.relpath(Path(basedir).resolve() / given[k]) for k in FILES[p]}
            fetched[p] = False
        else:
            files[p], fetched[p] = {k: f"{FETCHED}/{p}/{name}" for k, name in FILES[p].items()}, True
    default = j.get("judge") or judges.get("default") or "paper"
    per = j.get("judges") or {}
    unknown = sorted(set(per) - set(protocols))
    if unknown:
        raise JudgedConfigError(f"{origin}: evaluate.judged.judges: {', '.join(unknown)} not among its protocols")
    chosen_judges = {p: _judge(p, per.get(p, default), judges, config.get("paper"), origin) for p in protocols}
    mnt = {p: int((j.get("max_new_tokens") or {}).get(p) or MAX_NEW_TOKENS[p])
           if isinstance(j.get("max_new_tokens"), dict) else int(j.get("max_new_tokens") or MAX_NEW_TOKENS[p])
           for p in protocols}
    return Judged(protocols, list(dict.fromkeys(chosen)), files, fetched, chosen_judges, limit=j.get("limit"),
                  max_new_tokens=mnt, temperature=float(j.get("temperature") or 0.0),
                  batch_size=j.get("batch_size"))
