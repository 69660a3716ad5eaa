"""The judged protocols as jobs: which runs are judged on which benchmark, by which judge, from
which files (``evaluate.judged`` of an experiment, the judges of configs/judges.yaml).

For each (run, protocol) the workflow (workflows/judged.smk) makes two jobs:
``judged_answers`` (a GPU job: the run's answers on the benchmark's prompts, ``negfree
judged-answers``) and ``judged_eval`` (``negfree judged-eval``: the judge's verdicts, cached, and
the benchmark's score with its interval). ``judged_eval`` never takes a GPU: with an API judge it
waits on the network, with the offline judge it hashes, and with a served judge it copies.

A served judge (kind ``served``) is one job per experiment and backend, ``judged_serve``
(``Judged.serve_command``): ``negfree serve-judge`` starts the server once on the judge's GPUs,
waits until it answers, runs ``negfree judged-eval`` for every (run, protocol) the backend judges
(into ``work/judged_served/<exp>/<run>/<protocol>.json``, through the same judgement cache
``work/judge_cache/<exp>/<run>/<protocol>``, so only pending judgements reach the server), and
stops it; its marker ``work/judged_served/<exp>/<backend>.done`` is what each ``judged_eval``
waits for before copying its result into the run's ``eval/``.

``api_jobs`` of configs/judges.yaml (``compute``, the default, or ``submit_host``) says where the
``judged_eval`` jobs run; ``submit_host``, for clusters whose compute nodes cannot reach the
internet, makes them local rules of the workflow (``Judged.api_jobs``).

Extra judges: where configs/judges.yaml ``paper_judges.<paper>.<protocol>`` is a list, the first model is
the protocol's judge and each further model M judges the same answers once more (asft's MT-Bench: GPT-4
and GPT-4 Turbo, asft.txt Table 1), through the same API backend: one more ``judged_eval`` per run, its
wildcard ``<protocol>@<M>``, into ``eval/<protocol>@<M>.json`` with its own cache
``work/judge_cache/<exp>/<run>/<protocol>@<M>`` (``Judged.extra``). A served judge, an endpoint with a
fixed model and the offline judge have none.
"""
from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PROTOCOLS = ("arena_hard", "mt_bench", "wildbench")
# AlpacaEval 1 and 2 may be listed too: their answers and judging are one job, rule evaluate_generation
# (negfree alpaca-eval), and their judge is evaluate.alpaca_eval's annotator (or its endpoint), not a
# backend of configs/judges.yaml; listing them here puts them in the judged table, for the judged runs.
ALPACA = ("alpaca_eval1", "alpaca_eval2")
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
# where the judged_eval jobs run (configs/judges.yaml api_jobs): on the compute nodes, or on the submit
# host (a local rule) where the compute nodes cannot reach an API
API_JOBS = ("compute", "submit_host")
JUDGE_CACHE = "work/judge_cache"      # <exp>/<run>/<protocol>: the judgements, content-addressed
SERVED = "work/judged_served"         # a served judge's results and markers (rule judged_serve)
# configs/judges.yaml paper_judges.<paper>.<protocol> may list several models: the first judges the protocol
# (eval/<protocol>.json), each further model M judges the same answers again, eval/<protocol>@<M>.json
# (negfree.report.paper_table.EXTRA_JUDGE_SEP: the paper table and the claims read them by that name)
EXTRA_SEP = "@"
EXTRA_MODEL_RE = r"[A-Za-z0-9][A-Za-z0-9._-]*"     # a model id that is safe in a file name and a wildcard
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
    alpaca: list[str] = field(default_factory=list)   # AlpacaEval protocols judged for ``runs`` (ALPACA)
    mt_bench_category_temperatures: bool = True       # FastChat's per-category sampling of MT-Bench answers
    api_jobs: str = "compute"                          # configs/judges.yaml api_jobs (API_JOBS)
    # protocol -> its extra judges: the same answers judged again by each further model that configs/judges.yaml
    # paper_judges lists for the protocol (an API backend without a fixed model only: ``_extra_judges``)
    extra: dict[str, list[Judge]] = field(default_factory=dict)

    # -- the protocol's judge, or an extra one: "<protocol>" or "<protocol>@<model>" ---------
    @staticmethod
    def split(judged: str) -> tuple[str, str | None]:
        """"mt_bench@gpt-4-1106-preview" -> ("mt_bench", "gpt-4-1106-preview"); "mt_bench" -> ("mt_bench", None)."""
        protocol, sep, model = judged.partition(EXTRA_SEP)
        return protocol, (model if sep else None)

    def judge_of(self, judged: str) -> Judge:
        """The judge of a protocol (its own) or of "<protocol>@<model>" (its extra judge ``model``)."""
        protocol, model = self.split(judged)
        if model is None:
            return self.judges[protocol]
        for j in self.extra.get(protocol, []):
            if j.model == model:
                return j
        raise JudgedConfigError(f"evaluate.judged: {model!r} is no extra judge of {protocol} "
                                f"(configs/judges.yaml paper_judges)")

    def judgings(self) -> list[str]:
        """Every judging: each protocol, then "<protocol>@<model>" for each of its extra judges."""
        return [*self.protocols, *(f"{p}{EXTRA_SEP}{j.model}" for p in self.protocols for j in self.extra.get(p, []))]

    # -- paths --------------------------------------------------------------------------------
    def answers(self, runs_root: str, who: str, protocol: str) -> str:
        return f"{runs_root}/{who}/judged/{protocol}.answers.jsonl"

    def result(self, runs_root: str, who: str, protocol: str) -> str:
        """``protocol``: a protocol, or "<protocol>@<model>" (an extra judge's result of the same answers)."""
        return f"{runs_root}/{who}/eval/{protocol}.json"

    def outputs(self, runs_root: str) -> list[str]:
        return [self.result(runs_root, r, p) for p in [*self.judgings(), *self.alpaca] for r in self.runs]

    def inputs(self, protocol: str) -> list[str]:
        """What a judged job waits for: the experiment's own files, or the marker that negfree
        fetch-judged-data writes once every pinned file of the protocol is in place and verified."""
        if self.fetched[protocol]:
            return [f"{FETCHED}/{protocol}/.fetched"]
        return list(self.files[protocol].values())

    @staticmethod
    def cache_dir(exp_name: str, who: str, protocol: str) -> str:
        """The judgement cache of one (run, protocol); ``protocol`` "<protocol>@<model>": an extra judge's own
        (its key names the judge, but a cache has one writing process at a time, and Snakemake may run
        both judgings at once)."""
        return f"{JUDGE_CACHE}/{exp_name}/{who}/{protocol}"

    # a served judge: one job per (experiment, backend), rule judged_serve
    def served_backends(self) -> dict[str, list[str]]:
        """backend -> the protocols it judges, for the judges of kind served."""
        out: dict[str, list[str]] = {}
        for p in self.protocols:
            if self.judges[p].kind == "served":
                out.setdefault(self.judges[p].backend, []).append(p)
        return out

    def served_pairs(self, backend: str) -> list[tuple[str, str]]:
        """The (run, protocol) pairs that the served ``backend`` judges, in the order its job judges them."""
        return [(who, p) for p in self.served_backends().get(backend, []) for who in self.runs]

    @staticmethod
    def served_result(exp_name: str, who: str, protocol: str) -> str:
        """Where the served judge's job writes a (run, protocol)'s result (its judgements JSONL beside it)."""
        return f"{SERVED}/{exp_name}/{who}/{protocol}.json"

    @staticmethod
    def served_marker(exp_name: str, backend: str) -> str:
        return f"{SERVED}/{exp_name}/{backend}.done"

    def serve_inputs(self, runs_root: str, backend: str) -> list[str]:
        """What the served judge's job waits for: every answers file it judges and its protocols' files."""
        pairs = self.served_pairs(backend)
        files = [f for p in dict.fromkeys(p for _, p in pairs) for f in self.inputs(p)]
        return [self.answers(runs_root, who, p) for who, p in pairs] + list(dict.fromkeys(files))

    # -- command lines ------------------------------------------------------------------------
    def answers_args(self, protocol: str) -> str:
        args = [f"--benchmark {BENCHMARK[protocol]}", f"--questions {shlex.quote(self.files[protocol]['questions'])}",
                f"--max-new-tokens {self.max_new_tokens[protocol]}", f"--temperature {self.temperature}"]
        if self.limit:
            args.append(f"--limit {self.limit}")
        if self.batch_size:
            args.append(f"--batch-size {self.batch_size}")
        if protocol == "mt_bench" and self.mt_bench_category_temperatures:
            args.append("--mt-bench-category-temperatures")
        return " ".join(args)

    def eval_args(self, protocol: str, cache_dir: str) -> str:
        """negfree judged-eval's options but the answers, the output and the judge's URL of a served one.
        ``protocol`` "<protocol>@<model>": the extra judge ``model`` on the protocol's files."""
        j = self.judge_of(protocol)
        protocol = self.split(protocol)[0]
        f = self.files[protocol]
        args = [f"--benchmark {BENCHMARK[protocol]}", f"--cache-dir {shlex.quote(cache_dir)}"]
        args += [f"--{k.replace('_', '-')} {shlex.quote(v)}" for k, v in f.items()]
        if self.limit:
            args.append(f"--limit {self.limit}")
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

    def served_judge(self, backend: str) -> tuple[Judge, list[tuple[str, str]]]:
        """The served ``backend``'s judge and the (run, protocol) pairs it judges (none: a one-line error)."""
        pairs = self.served_pairs(backend)
        if not pairs:
            raise JudgedConfigError(f"evaluate.judged: no protocol is judged by the served backend {backend!r}")
        return self.judges[pairs[0][1]], pairs

    def serve_command(self, runs_root: str, exp_name: str, backend: str, negfree_cmd: str,
                      server_cmd: str | None = None) -> str:
        """The shell command of rule judged_serve: ONE ``negfree serve-judge`` (the server started once, on
        the judge's GPUs) around a bash script (set -e) that runs ``negfree judged-eval`` for every (run,
        protocol) the served ``backend`` judges, each into its ``served_result`` through its own
        ``cache_dir``: what is judged already is a cache hit, only the pending judgements reach the
        server. ``negfree_cmd``: how the job calls negfree (the workflow's NEGFREE, shell-quoted
        already). ``server_cmd``: serve-judge's --server-cmd (another server than vLLM; the tests' stub)."""
        judge, pairs = self.served_judge(backend)
        steps = ["set -e"]
        for who, p in pairs:
            out = self.served_result(exp_name, who, p)
            steps.append(f"mkdir -p {shlex.quote(os.path.dirname(out))}")
            steps.append(f"{negfree_cmd} judged-eval --answers {shlex.quote(self.answers(runs_root, who, p))} "
                         f"--out {shlex.quote(out)} --run {shlex.quote(who)} "
                         + self.eval_args(p, self.cache_dir(exp_name, who, p)))
        serve = (f"{negfree_cmd} serve-judge --model {shlex.quote(judge.model)} --gpus {judge.gpus} "
                 f"--startup-min {judge.startup_min:g}")
        if server_cmd:
            serve += f" --server-cmd {shlex.quote(server_cmd)}"
        return f"{serve} -- bash -c {shlex.quote('; '.join(steps))}"

    def served_copy_command(self, exp_name: str, who: str, protocol: str, out: str) -> str:
        """judged_eval of a served judge: the copy of what judged_serve wrote, its judgements JSONL first
        (the result names it by file name, so the copy beside ``out`` stays consistent), then the result."""
        src, dst, jsonl = Path(self.served_result(exp_name, who, protocol)), Path(out), ".judgements.jsonl"
        return (f"cp {shlex.quote(str(src.with_suffix(jsonl)))} {shlex.quote(str(dst.with_suffix(jsonl)))} && "
                f"cp {shlex.quote(str(src))} {shlex.quote(str(dst))}")


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
    if (cfg.get("api_jobs") or "compute") not in API_JOBS:      # unset or null: compute
        raise JudgedConfigError(f"{JUDGES_FILE}: api_jobs must be one of {', '.join(API_JOBS)} "
                                f"(got {cfg.get('api_jobs')!r})")
    return cfg


def _judge(protocol: str, backend: str, judges: dict, paper: str | None, origin: str) -> Judge:
    backends = judges.get("backends") or {}
    if backend not in backends:
        raise JudgedConfigError(f"{origin}: evaluate.judged: judge {backend!r} is not a backend of {JUDGES_FILE} "
                                f"({', '.join(backends)})")
    b = backends[backend]
    paper_model = paper_models(judges, paper, protocol)[0]
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


def paper_models(judges: dict, paper: str | None, protocol: str) -> list[str | None]:
    """The judge models configs/judges.yaml paper_judges lists for a paper's protocol: one, or a list (the
    protocol's judge first, then its extra judges); [None] where it names none."""
    papers = judges.get("paper_judges") or {}
    got = (papers.get(paper) or papers.get("default") or {}).get(protocol)
    models = [str(m) for m in got] if isinstance(got, list) else [got]
    return models or [None]


def _extra_judges(protocol: str, backend: str, judges: dict, paper: str | None, origin: str) -> list[Judge]:
    """The extra judges of a protocol: each model after the first that paper_judges lists for it, asked through
    the protocol's backend. Only an API backend without a fixed model (the ``paper`` one) can ask another
    model: a served judge, an endpoint that serves one model and the offline judge have no extra judges (the
    paper table leaves their columns empty, with the reason)."""
    b = (judges.get("backends") or {})[backend]
    extra = paper_models(judges, paper, protocol)[1:]
    if b["kind"] != "api" or b.get("model") or not extra:
        return []
    out = []
    for m in dict.fromkeys(extra):
        if not re.fullmatch(EXTRA_MODEL_RE, m):
            raise JudgedConfigError(f"{origin}: {JUDGES_FILE} paper_judges.{paper}.{protocol}: {m!r} cannot name a "
                                    f"result file (letters, digits, '.', '_', '-')")
        base = _judge(protocol, backend, judges, paper, origin)
        out.append(Judge(backend, "api", m, m, base_url=base.base_url, api_key_env=base.api_key_env,
                         concurrency=base.concurrency))
    return out


def judged_of(config: dict, origin: str, runs: list[str], aliases: dict, base_run: str,
              judges: dict | None, basedir: str | Path) -> Judged | None:
    """The experiment's ``evaluate.judged``, checked (None where it has none)."""
    j = (config.get("evaluate") or {}).get("judged")
    if not j:
        return None
    judges = judges if judges is not None else load_judges(basedir, origin)
    listed = list(j.get("protocols") or PROTOCOLS)
    unknown = [p for p in listed if p not in PROTOCOLS + ALPACA]
    if unknown:
        raise JudgedConfigError(f"{origin}: evaluate.judged.protocols: {unknown[0]!r} is not a judged protocol "
                                f"({', '.join(PROTOCOLS + ALPACA)})")
    protocols = [p for p in listed if p in PROTOCOLS]
    alpaca = [p for p in listed if p in ALPACA]
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
    if set(per) & set(ALPACA):
        raise JudgedConfigError(f"{origin}: evaluate.judged.judges: AlpacaEval's judge is its annotator; set "
                                f"evaluate.alpaca_eval.annotator (or .endpoint) instead")
    unknown = sorted(set(per) - set(protocols))
    if unknown:
        raise JudgedConfigError(f"{origin}: evaluate.judged.judges: {', '.join(unknown)} not among its protocols")
    chosen_judges = {p: _judge(p, per.get(p, default), judges, config.get("paper"), origin) for p in protocols}
    extra = {p: e for p in protocols
             if (e := _extra_judges(p, per.get(p, default), judges, config.get("paper"), origin))}
    mnt = {p: int((j.get("max_new_tokens") or {}).get(p) or MAX_NEW_TOKENS[p])
           if isinstance(j.get("max_new_tokens"), dict) else int(j.get("max_new_tokens") or MAX_NEW_TOKENS[p])
           for p in protocols}
    return Judged(protocols, list(dict.fromkeys(chosen)), files, fetched, chosen_judges, limit=j.get("limit"),
                  max_new_tokens=mnt, temperature=float(j.get("temperature") or 0.0),
                  batch_size=j.get("batch_size"), alpaca=alpaca,
                  mt_bench_category_temperatures=j.get("mt_bench_category_temperatures", True) is not False,
                  api_jobs=judges.get("api_jobs") or "compute", extra=extra)
