"""Where each item of shared/design/targets.md can be opened: `negfree targets`.

configs/targets.yaml lists every table and figure of the five papers (one entry per row of
targets.md) with the files the workflow writes for it (``files``, patterns with ``{exp}``)
and/or one sentence on what the project cannot build (``missing``). This command expands
``{exp}`` over the given experiments, keeps the paths that exist, and writes

* one markdown table (item, what, status, files), status one of
    built          files exist, nothing declared missing
    partly built   files exist and ``missing`` is set
    not built yet  files declared, none exists yet (the command that builds them is named)
    placeholder    no files declared: only the placeholder page exists
* for every item with ``missing``, PLACEHOLDERS_DIR/<paper>_<item>.md: the item, what the paper
  shows and what is missing, and nothing else (no numbers are made up here).

``missing`` is prose; beside it, ``needs`` lists the facts the prose relies on in a form checked
against the configs (:func:`check_targets`, run by tests/test_targets.py and ``negfree targets
--check``), each a one-key mapping (NEED_KINDS): e.g. ``{unevaluated: meta-math/MetaMath-7B-V1.0}``
(no experiment of configs/papers.yaml evaluates that checkpoint) fails once an experiment does.
A phrase of the prose that states such a fact ("no experiment evaluates", "no DAG protocol",
"declared in configs/paper/x.yaml", ... PHRASES) must come with its need, and every config path
the prose names must exist, so the index cannot say what the configs contradict.
"""
from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from negfree.common.io import atomic_write_text
from negfree.report.html import write_markdown_page

ITEM_KEYS = {"id", "what", "files", "missing", "needs"}
TOP_KEYS = {"version", "items"}
STATUSES = ("built", "partly built", "not built yet", "placeholder")


class TargetsError(ValueError):
    """A malformed configs/targets.yaml (the message names the item)."""


@dataclass
class Target:
    id: str
    what: str
    files: list[str] = field(default_factory=list)
    missing: str | None = None
    needs: list[dict] = field(default_factory=list)

    @property
    def paper(self) -> str:
        return self.id.split("/", 1)[0]

    @property
    def stem(self) -> str:
        return self.id.replace("/", "_")


def load_targets(path: str | Path) -> list[Target]:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise TargetsError(f"{path}: expected a mapping with an 'items:' list")
    extra = set(data) - TOP_KEYS
    if extra:
        raise TargetsError(f"{path}: unknown top-level key(s) {', '.join(sorted(extra))} (allowed: "
                           f"{', '.join(sorted(TOP_KEYS))})")
    out: list[Target] = []
    seen: set[str] = set()
    for n, raw in enumerate(data["items"], 1):
        name = raw.get("id") if isinstance(raw, dict) else None
        where = f"{path}: item {name!r}" if name else f"{path}: item #{n}"
        if not isinstance(raw, dict):
            raise TargetsError(f"{where}: expected a mapping")
        unknown = set(raw) - ITEM_KEYS
        if unknown:
            raise TargetsError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (allowed: "
                               f"{', '.join(sorted(ITEM_KEYS))})")
        if not isinstance(name, str) or "/" not in name:
            raise TargetsError(f"{where}: 'id' must be 'paper/item' (e.g. dft/table2)")
        if name in seen:
            raise TargetsError(f"{where}: duplicate id")
        seen.add(name)
        if not isinstance(raw.get("what"), str) or not raw["what"].strip():
            raise TargetsError(f"{where}: 'what' (a short phrase) is required")
        files = raw.get("files") or []
        if not isinstance(files, list) or not all(isinstance(f, str) and f for f in files):
            raise TargetsError(f"{where}: 'files' must be a list of path patterns")
        missing = raw.get("missing")
        if missing is not None and (not isinstance(missing, str) or not missing.strip()):
            raise TargetsError(f"{where}: 'missing' must be one sentence")
        if not files and not missing:
            raise TargetsError(f"{where}: has neither 'files' nor 'missing' (every item needs one of them)")
        needs = raw.get("needs") or []
        if needs and not missing:
            raise TargetsError(f"{where}: 'needs' backs a 'missing' sentence; this item has none")
        if not isinstance(needs, list):
            raise TargetsError(f"{where}: 'needs' must be a list of one-key mappings ({', '.join(NEED_KINDS)})")
        for need in needs:
            if not isinstance(need, dict) or len(need) != 1 or next(iter(need)) not in NEED_KINDS:
                raise TargetsError(f"{where}: need {need!r} must be a one-key mapping, the key one of "
                                   f"{', '.join(NEED_KINDS)}")
        out.append(Target(name, raw["what"].strip(), list(files), missing.strip() if missing else None,
                          list(needs)))
    return out


# -- the facts a `missing` sentence relies on, checked against the configs -----------------
# kind -> what it asserts (the placeholder page prints it; check_targets verifies it)
NEED_KINDS = {
    "unevaluated": "no experiment evaluates the checkpoint hub:{0} (as its model or under released:)",
    "no_experiment_on": "no experiment trains on {0}",
    "no_data_config": "no configs/data/*.yaml provides the hub dataset {0}",
    "no_protocol": "the DAG has no evaluation protocol {0} (evaluate.protocols in configs/schema)",
    "unlisted_protocol": "the DAG has the protocol {0} but no experiment lists it under evaluate.protocols",
    "task_unused": "no protocol of negfree/evaluate/protocols.py runs the lm-eval task {0}",
    "lm_eval_task": "the installed lm-eval has a task {0}",
    "no_lm_eval_task": "the installed lm-eval has no task {0}",
    "declared_in": "{0} is an experiment of configs/papers.yaml",
    "paper_rows": "the paper prints {0[count]} rows of {0[item]} (negfree/report/paper_numbers)",
    "private_data": "private data: {0} (not checkable against the configs)",
    "judged": "{0[experiment]} judges {0[protocols]} (evaluate.judged.protocols)",
    "paper_judge": "configs/judges.yaml paper_judges names one judge for {0[paper]}'s {0[protocol]}: {0[judge]}",
    "not_computable": "negfree/evaluate/judge/aggregate.py {0}() gives no value from one model's results",
    "no_lc": "negfree/evaluate/alpaca.py defines no length-controlled win rate for the protocol {0}, whatever the "
             "instructions (lc_eligibility)",
    "no_sweep_figure": "no analysis.sweep_figures entry of {0[experiment]} plots a column of {0[metric]}",
}
# a phrase of the prose (case-insensitive) -> the need kinds, one of which must back it
PHRASES = [
    (r"no experiment evaluates|not evaluated", ("unevaluated",)),
    (r"not declared|needs? a second experiment|no experiment trains", ("no_experiment_on",)),
    (r"no data config|no configs/data|set is configured", ("no_data_config",)),
    (r"not a dag protocol|no dag protocol|has no protocol|no protocol", ("no_protocol",)),
    (r"no experiment lists|lists? no experiment", ("unlisted_protocol",)),
    (r"\bnot run\b", ("task_unused", "no_protocol", "unlisted_protocol")),
    (r"lm-eval task|lm_eval", ("lm_eval_task", "no_lm_eval_task")),
    (r"declared in", ("declared_in",)),
    (r"private", ("private_data",)),
    (r"prints? values for|prints? only", ("paper_rows",)),
    (r"judged in the dag|are judged|is judged", ("judged",)),
    (r"one judge", ("paper_judge",)),
    (r"not computable", ("not_computable",)),
    (r"defines? no length-controlled", ("no_lc",)),
    (r"no sweep figure", ("no_sweep_figure",)),
]
CONFIG_PATH = re.compile(r"configs/[\w./-]+\.ya?ml")


def _norm(name: str) -> str:
    """wild_bench, Wild-Bench and wildbench are one protocol name."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def describe_need(need: dict) -> str:
    (kind, value), = need.items()
    if isinstance(value, dict):
        value = {k: ", ".join(map(str, v)) if isinstance(v, list) else v for k, v in value.items()}
    return NEED_KINDS[kind].format(value)


@dataclass
class ConfigFacts:
    """What the configs of one DAG declare, read from the YAML files alone (no job is planned)."""
    evaluated: set[str]          # hub ids of base models and released checkpoints
    trained_on: set[str]         # data.source files
    listed_protocols: set[str]   # evaluate.protocols of every experiment
    experiment_files: set[str]
    data_hub_ids: set[str]       # hub_id of every configs/data/*.yaml
    protocols: set[str]          # the schema's evaluate.protocols enum
    lm_eval_tasks: list[str]     # the installed lm-eval's task names (its tasks/ tree)
    protocol_tasks: set[str]     # lm-eval tasks the DAG's protocols run
    judged_protocols: set[str] = field(default_factory=set)    # the schema's evaluate.judged.protocols enum
    judged: dict[str, set[str]] = field(default_factory=dict)  # experiment file -> its evaluate.judged.protocols
    paper_judges: dict = field(default_factory=dict)           # configs/judges.yaml paper_judges
    sweep_figure_metrics: dict[str, list[str]] = field(default_factory=dict)  # file -> analysis.sweep_figures metrics

    @classmethod
    def read(cls, root: str | Path = ".", papers: str = "configs/papers.yaml") -> "ConfigFacts":
        root = Path(root)
        files = (yaml.safe_load((root / papers).read_text()) or {}).get("experiments") or []
        evaluated, trained, listed, judged, figures = set(), set(), set(), {}, {}
        for f in files:
            c = yaml.safe_load((root / f).read_text()) or {}
            figures[f] = [str((e or {}).get("metric")) for e in
                          (((c.get("analysis") or {}).get("sweep_figures")) or {}).values()]
            j = (c.get("evaluate") or {}).get("judged")
            if j:
                judged[f] = set(j.get("protocols") or [])
            sources = [(c.get("model") or {}).get("source")] + [
                (r or {}).get("source") for r in (c.get("released") or {}).values()]
            evaluated |= {s[len("hub:"):].split("@")[0] for s in sources if isinstance(s, str) and s.startswith("hub:")}
            trained.add((c.get("data") or {}).get("source", "embedded"))
            listed |= set((c.get("evaluate") or {}).get("protocols") or [])
        hub_ids = {(yaml.safe_load(p.read_text()) or {}).get("hub_id") for p in (root / "configs/data").glob("*.yaml")}
        schema = yaml.safe_load((root / "configs/schema/config.schema.yaml").read_text())
        ev = schema["properties"]["evaluate"]["properties"]
        protocols = set(ev["protocols"]["items"]["enum"])
        judged_protocols = set(ev["judged"]["properties"]["protocols"]["items"]["enum"])
        for f, ps in judged.items():          # evaluate.judged without protocols: every judged protocol
            judged[f] = ps or set(judged_protocols)
        judges = root / "configs/judges.yaml"
        paper_judges = (((yaml.safe_load(judges.read_text()) or {}).get("paper_judges") or {})
                        if judges.is_file() else {})
        return cls(evaluated, trained, listed, set(files), hub_ids - {None}, protocols, _lm_eval_tasks(),
                   _protocol_tasks(), judged_protocols, judged, paper_judges, figures)


def _lm_eval_tasks() -> list[str]:
    """Task and group names of the installed lm-eval: its tasks/ tree's directories and YAML files."""
    try:
        import lm_eval
    except ImportError:
        return []
    tasks = Path(lm_eval.__file__).parent / "tasks"
    return sorted({p.stem.lower() for p in tasks.rglob("*") if p.is_dir() or p.suffix == ".yaml"})


def _protocol_tasks() -> set[str]:
    from negfree.evaluate.protocols import PROTOCOLS

    return {t.lower() for p in PROTOCOLS.values() for call in p.calls for t in [call.group, *call.metrics]}


def check_need(need: dict, facts: ConfigFacts) -> str | None:
    """None if the fact holds, else why it does not."""
    (kind, v), = need.items()
    if kind == "unevaluated" and v in facts.evaluated:
        return f"an experiment of configs/papers.yaml evaluates hub:{v}"
    if kind == "no_experiment_on" and v in facts.trained_on:
        return f"an experiment of configs/papers.yaml trains on {v}"
    if kind == "no_data_config" and v in facts.data_hub_ids:
        return f"a configs/data/*.yaml file provides {v}"
    if kind == "no_protocol" and v in facts.protocols:
        return f"{v} is a protocol of the DAG (configs/schema evaluate.protocols)"
    if kind == "no_protocol" and _norm(v) in {_norm(p) for p in facts.judged_protocols}:
        return f"{v} is a judged protocol of the DAG (configs/schema evaluate.judged.protocols)"
    if kind == "judged":
        ps = [v["protocols"]] if isinstance(v.get("protocols"), str) else list(v.get("protocols") or [])
        if v.get("experiment") not in facts.experiment_files:
            return f"{v.get('experiment')} is not an experiment of configs/papers.yaml"
        lacking = [p for p in ps if p not in facts.judged.get(v["experiment"], set())]
        if not ps or lacking:
            return f"{v['experiment']} does not judge {', '.join(lacking) or '(no protocol named)'}"
    if kind == "paper_judge":
        got = (facts.paper_judges.get(v.get("paper")) or {}).get(v.get("protocol"))
        if got != v.get("judge"):
            return f"configs/judges.yaml paper_judges.{v.get('paper')}.{v.get('protocol')} is {got!r}"
    if kind == "not_computable":
        from negfree.evaluate.judge import aggregate

        fn = getattr(aggregate, str(v), None)
        try:
            says = callable(fn) and fn().get("computable", True) is False
        except (TypeError, ValueError, AttributeError):
            says = False
        if not says:
            return f"negfree/evaluate/judge/aggregate.py {v}() is not a function that says it cannot compute"
    if kind == "no_lc":
        from negfree.evaluate.alpaca import FULL_SET_SIZE, PROTOCOLS, lc_eligibility

        if v not in PROTOCOLS:
            return f"{v} is no AlpacaEval protocol (negfree/evaluate/alpaca.py PROTOCOLS)"
        full = [{"instruction": f"instruction {k}"} for k in range(FULL_SET_SIZE)]
        got = {lc_eligibility(x, x, None, v) for x in ([{"instruction": "one"}], full)}
        if len(got) != 1 or next(iter(got))[0]:
            return f"negfree/evaluate/alpaca.py lc_eligibility decides {v}'s LC win rate by the instructions given"
    if kind == "no_sweep_figure":
        exp, metric = v.get("experiment"), str(v.get("metric"))
        if exp not in facts.experiment_files:
            return f"{exp} is not an experiment of configs/papers.yaml"
        hits = [m for m in facts.sweep_figure_metrics.get(exp, []) if metric in m]
        if hits:
            return f"{exp} draws the sweep figure metric {hits[0]!r}"
    if kind == "unlisted_protocol":
        if v not in facts.protocols:
            return f"{v} is no protocol of the DAG at all (say no_protocol)"
        if v in facts.listed_protocols:
            return f"an experiment of configs/papers.yaml lists the protocol {v}"
    if kind == "task_unused" and any(t == v.lower() or t.startswith(v.lower()) for t in facts.protocol_tasks):
        return f"a protocol of negfree/evaluate/protocols.py runs the lm-eval task {v}"
    if kind in ("lm_eval_task", "no_lm_eval_task"):
        has = any(v.lower() in t for t in facts.lm_eval_tasks)
        if kind == "lm_eval_task" and not has:
            return f"the installed lm-eval has no task named like {v}"
        if kind == "no_lm_eval_task" and has:
            return f"the installed lm-eval has a task named like {v}"
    if kind == "declared_in" and v not in facts.experiment_files:
        return f"{v} is not listed in configs/papers.yaml"
    if kind == "paper_rows":
        from negfree.report import paper_numbers

        rows = (paper_numbers.info(v["item"]) or {}).get("rows") or []
        if len(rows) != v["count"]:
            return f"the paper prints {len(rows)} rows of {v['item']}, not {v['count']}"
    if kind == "private_data" and not str(v).strip():
        return "private_data needs the paper's statement (section) as its value"
    return None


def check_targets(targets: list[Target], root: str | Path = ".", facts: ConfigFacts | None = None) -> list[str]:
    """Every way the ``missing`` sentences disagree with the configs, one line each (empty: none)."""
    facts = facts or ConfigFacts.read(root)
    problems = []
    for t in targets:
        if not t.missing:
            continue
        kinds = {next(iter(n)) for n in t.needs}
        text = t.missing.lower()
        for pattern, need_kinds in PHRASES:
            m = re.search(pattern, text)
            if m and not kinds & set(need_kinds):
                problems.append(f"{t.id}: 'missing' says {m.group(0)!r} but lists no need "
                                f"{' / '.join(need_kinds)} to check it against the configs")
        for path in CONFIG_PATH.findall(t.missing):
            if not (Path(root) / path).is_file():
                problems.append(f"{t.id}: 'missing' names {path}, which does not exist")
        for need in t.needs:
            why = check_need(need, facts)
            if why:
                problems.append(f"{t.id}: need {need!r} ({describe_need(need)}) is false: {why}")
        if re.search(r"[a-z)\]]\. [A-Z]", t.missing) or not t.missing.endswith("."):
            problems.append(f"{t.id}: 'missing' must be one sentence ending with a full stop")
    return problems


def expand(pattern: str, experiments: list[str]) -> list[str]:
    if "{exp}" not in pattern:
        return [pattern]
    return [pattern.replace("{exp}", e) for e in experiments]


def build_command(t: Target) -> str:
    """What builds a declared file: the per-item rule for paper tables and for the figure items that
    have one (negfree/jobs/dag.py FIGURE_ITEMS), else the paper's target."""
    from negfree.common.naming import FIGURE_ITEMS, item_file

    rules = sorted({Path(f).name[len("paper~"):-len(".md")] for f in t.files
                    if Path(f).name.startswith("paper~") and f.endswith(".md")})
    rules += [item_file(t.id)] if t.id in FIGURE_ITEMS else []
    cmds = [f"`snakemake {r}`" for r in rules] + [f"`snakemake {t.paper}`"]
    return " or ".join(cmds) + " (on the cluster)"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _link(target: Path, base: Path) -> str:
    rel = os.path.relpath(target, base)
    return f"[{_cell(rel)}]({rel.replace(' ', '%20')})"


def placeholder_text(t: Target) -> str:
    return (f"# {t.id}: what is missing\n\n"
            f"- **Item**: {t.id} ({t.paper}.txt)\n"
            f"- **What the paper shows**: {t.what}\n"
            f"- **What is missing**: {t.missing}\n"
            + "".join(f"- **Checked against the configs**: {describe_need(n)}\n" for n in t.needs))


def report(targets: list[Target], experiments: list[str], out_md: str | Path,
           placeholders_dir: str | Path, root: str | Path = ".") -> dict[str, str]:
    """Write the table and the placeholder pages; return {id: status}."""
    root = Path(root)
    out_md = root / out_md if not Path(out_md).is_absolute() else Path(out_md)
    ph_dir = root / placeholders_dir if not Path(placeholders_dir).is_absolute() else Path(placeholders_dir)
    base = out_md.parent
    statuses: dict[str, str] = {}
    rows = []
    for t in targets:
        existing = [p for pat in t.files for p in expand(pat, experiments) if (root / p).is_file()]
        links = [_link(root / p, base) for p in existing]
        if t.missing:
            ph = ph_dir / f"{t.stem}.md"
            atomic_write_text(ph, placeholder_text(t))
        if existing:
            status = "partly built" if t.missing else "built"
        elif t.files:
            status = "not built yet"
            links.append(f"none yet: {build_command(t)}")
        else:
            status = "placeholder"
        if t.missing:
            links.append(f"missing: {_link(ph, base)}")
        statuses[t.id] = status
        rows.append(f"| {t.id} | {_cell(t.what)} | {status} | {'<br>'.join(links)} |")
    counts = {s: sum(v == s for v in statuses.values()) for s in STATUSES}
    head = ("# Reproduction targets: where each table and figure is\n\n"
            f"Experiments: {', '.join(experiments) or '(none)'}. "
            + ", ".join(f"{n} {s}" for s, n in counts.items()) + ".\n"
            "Status: built = the workflow's files exist; partly built = they exist and part of the item "
            "is missing (see its placeholder page); not built yet = the workflow declares the files but "
            "none exists here; placeholder = the project cannot build it (the page says what is missing).\n\n"
            "| item | what | status | files |\n|---|---|---|---|\n")
    write_markdown_page(out_md, head + "\n".join(rows) + "\n")
    return statuses


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="negfree targets",
                                description="every item of targets.md: the files the workflow built for it, "
                                            "or a placeholder naming what is missing")
    p.add_argument("--targets", default="configs/targets.yaml", help="the list of items (default: configs/targets.yaml)")
    p.add_argument("--experiments", nargs="+", required=True, metavar="EXP",
                   help="experiment names substituted for {exp} in the file patterns")
    p.add_argument("--out-md", default="results/tables/targets.md",
                   help="the status table as markdown (an HTML page beside it)")
    p.add_argument("--placeholders-dir", default="results/tables/placeholders",
                   help="where each item with a missing part gets a page naming what is missing")
    p.add_argument("--root", default=".", help="directory the file patterns are relative to (default: .)")
    p.add_argument("--check", action="store_true",
                   help="first check every 'missing' sentence and its 'needs' against configs/papers.yaml, "
                        "configs/data and the schema (read from the working directory); stop on a contradiction")
    a = p.parse_args(argv)
    targets = load_targets(a.targets)
    problems = check_targets(targets) if a.check else []
    if problems:
        raise TargetsError(f"{a.targets} disagrees with the configs: " + "; ".join(problems))
    statuses = report(targets, a.experiments, a.out_md, a.placeholders_dir, root=a.root)
    counts = ", ".join(f"{sum(v == s for v in statuses.values())} {s}" for s in STATUSES)
    print(f"{len(statuses)} items: {counts}")
    print(f"wrote {Path(a.root) / a.out_md} and placeholders under {Path(a.root) / a.placeholders_dir}")
