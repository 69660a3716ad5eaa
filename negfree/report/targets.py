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
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..io import atomic_write_text
from .html import write_markdown_page

ITEM_KEYS = {"id", "what", "files", "missing"}
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
        out.append(Target(name, raw["what"].strip(), list(files), missing.strip() if missing else None))
    return out


def expand(pattern: str, experiments: list[str]) -> list[str]:
    if "{exp}" not in pattern:
        return [pattern]
    return [pattern.replace("{exp}", e) for e in experiments]


def build_command(t: Target) -> str:
    """What builds a declared file: the per-item rule for paper tables, else the paper's target."""
    rules = sorted({Path(f).name[len("paper~"):-len(".md")] for f in t.files
                    if Path(f).name.startswith("paper~") and f.endswith(".md")})
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
            f"- **What is missing**: {t.missing}\n")


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
    p.add_argument("--targets", default="configs/targets.yaml")
    p.add_argument("--experiments", nargs="+", required=True, metavar="EXP",
                   help="experiment names substituted for {exp} in the file patterns")
    p.add_argument("--out-md", default="results/tables/targets.md")
    p.add_argument("--placeholders-dir", default="results/tables/placeholders")
    p.add_argument("--root", default=".", help="directory the file patterns are relative to (default: .)")
    a = p.parse_args(argv)
    targets = load_targets(a.targets)
    statuses = report(targets, a.experiments, a.out_md, a.placeholders_dir, root=a.root)
    counts = ", ".join(f"{sum(v == s for v in statuses.values())} {s}" for s in STATUSES)
    print(f"{len(statuses)} items: {counts}")
    print(f"wrote {Path(a.root) / a.out_md} and placeholders under {Path(a.root) / a.placeholders_dir}")
