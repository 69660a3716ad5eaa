"""configs/targets.yaml against shared/design/targets.md and paper_numbers/index.yaml, and the
`negfree targets` command (four statuses, placeholder pages, config errors). Offline, fast."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from negfree.cli import main as cli_main
from negfree.report.targets import TargetsError, load_targets, report

ROOT = Path(__file__).resolve().parents[1]
TARGETS_YAML = ROOT / "configs" / "targets.yaml"
TARGETS_MD = ROOT.parent / "shared" / "design" / "targets.md"
INDEX = ROOT / "negfree" / "report" / "paper_numbers" / "index.yaml"


def _row_id(paper: str, label: str) -> str:
    """'Table 8, Fig 2b' -> 'table8_fig2b'; 'Table 10, 11' -> 'table10_table11'."""
    parts, kind = [], None
    for tok in (t.strip() for t in label.split(",")):
        m = re.fullmatch(r"(?:(Table|Fig)\s+)?(\w+)", tok)
        assert m, f"unparsed targets.md row label {label!r}"
        kind = (m.group(1) or kind).lower()
        parts.append(f"{kind}{m.group(2)}")
    return f"{paper}/{'_'.join(parts)}"


def targets_md_ids(text: str) -> list[str]:
    ids, paper = [], None
    for line in text.splitlines():
        m = re.match(r"##\s+(\w+)\.txt", line)
        if m:
            paper = m.group(1)
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if paper and line.startswith("|") and cells[0] not in ("id",) and not set(cells[0]) <= set("-"):
            ids.append(_row_id(paper, cells[0]))
    return ids


def yaml_ids() -> list[str]:
    return [t.id for t in load_targets(TARGETS_YAML)]


def test_targets_yaml_matches_targets_md():
    if not TARGETS_MD.is_file():
        pytest.skip(f"{TARGETS_MD} not readable from here: targets.md consistency not checked")
    md = targets_md_ids(TARGETS_MD.read_text(encoding="utf-8"))
    assert len(md) == len(set(md)) == 27
    ours = yaml_ids()
    assert sorted(set(md) - set(ours)) == [], "targets.md rows missing from configs/targets.yaml"
    assert sorted(set(ours) - set(md)) == [], "configs/targets.yaml ids that are no targets.md row"


def test_targets_yaml_matches_paper_numbers_index():
    index = yaml.safe_load(INDEX.read_text(encoding="utf-8"))["items"]
    ours = yaml_ids()
    assert len(ours) == len(set(ours))
    assert set(ours) == set(index)


def test_targets_yaml_patterns_are_workflow_outputs():
    for t in load_targets(TARGETS_YAML):
        for f in t.files:
            assert re.fullmatch(r"(results/tables/\{exp\}/(paper|sweep)~[\w~]+\.md"
                                r"|figures/\{exp\}/(dft|bnf|minorsft|asft|sweeps)/\w+\.png"
                                r"|figures/(bnf|asft|ift)/fig\d\.png)", f), (t.id, f)
            if "paper~" in f:   # paper table files are named after the paper item
                assert f.split("paper~")[1].startswith(t.paper + "_"), (t.id, f)


def _write(path: Path, text: str = "x\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_four_statuses_and_placeholders(tmp_path, capsys):
    cfg = tmp_path / "targets.yaml"
    cfg.write_text(yaml.safe_dump({"version": 1, "items": [
        {"id": "dft/table2", "what": "seven benchmarks", "files": ["results/tables/{exp}/paper~dft_table2.md"]},
        {"id": "bnf/table4", "what": "QA and reasoning", "files": ["results/tables/{exp}/paper~bnf_table4.md"],
         "missing": "The judge columns need a paid judge."},
        {"id": "dft/fig3", "what": "log-likelihood curves", "files": ["figures/{exp}/dft/fig3.png"]},
        {"id": "asft/table2", "what": "Arena-Hard", "missing": "Needs a paid LLM judge."},
        {"id": "bnf/fig1", "what": "gradient magnitudes", "files": ["figures/bnf/fig1.png"]},
    ]}))
    _write(tmp_path / "results/tables/e1/paper~dft_table2.md")
    _write(tmp_path / "results/tables/e2/paper~dft_table2.md")
    _write(tmp_path / "results/tables/e2/paper~bnf_table4.md")
    _write(tmp_path / "figures/bnf/fig1.png")
    cli_main(["targets", "--targets", str(cfg), "--experiments", "e1", "e2", "e3",
              "--out-md", "results/tables/targets.md", "--placeholders-dir", "results/tables/placeholders",
              "--root", str(tmp_path)])
    assert "5 items: 2 built, 1 partly built, 1 not built yet, 1 placeholder" in capsys.readouterr().out
    md = (tmp_path / "results/tables/targets.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ") and "/" in line}
    assert "| built |" in rows["dft/table2"]
    assert "[e1/paper~dft_table2.md](e1/paper~dft_table2.md)" in rows["dft/table2"]
    assert "e2/paper~dft_table2.md" in rows["dft/table2"] and "e3" not in rows["dft/table2"]
    assert "| partly built |" in rows["bnf/table4"] and "(placeholders/bnf_table4.md)" in rows["bnf/table4"]
    assert "| not built yet |" in rows["dft/fig3"] and "`snakemake dft`" in rows["dft/fig3"]
    assert "| placeholder |" in rows["asft/table2"] and "(placeholders/asft_table2.md)" in rows["asft/table2"]
    assert "| built |" in rows["bnf/fig1"] and "(../../figures/bnf/fig1.png)" in rows["bnf/fig1"]
    phs = sorted(p.name for p in (tmp_path / "results/tables/placeholders").iterdir())
    assert phs == ["asft_table2.md", "bnf_table4.md"]
    page = (tmp_path / "results/tables/placeholders/asft_table2.md").read_text()
    assert "asft/table2" in page and "Arena-Hard" in page and "Needs a paid LLM judge." in page
    assert not re.search(r"\d", page.replace("asft/table2", "").replace("asft_table2", ""))  # no numbers


def test_real_config_runs_on_empty_tree(tmp_path):
    statuses = report(load_targets(TARGETS_YAML), ["dft_uf"], "t.md", "ph", root=tmp_path)
    assert len(statuses) == 27
    assert set(statuses.values()) <= {"not built yet", "placeholder"}
    n_missing = sum(t.missing is not None for t in load_targets(TARGETS_YAML))
    assert len(list((tmp_path / "ph").iterdir())) == n_missing


@pytest.mark.parametrize("item, message", [
    ({"id": "dft/table2", "what": "x", "files": ["a.md"], "colour": "red"}, "'dft/table2': unknown key(s) colour"),
    ({"id": "dft/table2", "what": "x"}, "'dft/table2': has neither 'files' nor 'missing'"),
    ({"id": "dft/table2", "what": "x", "files": []}, "'dft/table2': has neither 'files' nor 'missing'"),
    ({"id": "dft/table2", "files": ["a.md"]}, "'dft/table2': 'what'"),
    ({"id": "table2", "what": "x", "files": ["a.md"]}, "'id' must be 'paper/item'"),
])
def test_config_errors(tmp_path, item, message):
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump({"items": [item]}))
    with pytest.raises(TargetsError, match=re.escape(message)):
        load_targets(cfg)
    with pytest.raises(SystemExit, match=re.escape(message)):  # one line from the CLI, no traceback
        cli_main(["targets", "--targets", str(cfg), "--experiments", "e", "--out-md", str(tmp_path / "o.md"),
                  "--placeholders-dir", str(tmp_path / "ph")])


def test_duplicate_and_unknown_top_level(tmp_path):
    cfg = tmp_path / "t.yaml"
    item = {"id": "dft/table2", "what": "x", "files": ["a.md"]}
    cfg.write_text(yaml.safe_dump({"items": [item, item]}))
    with pytest.raises(TargetsError, match="'dft/table2': duplicate id"):
        load_targets(cfg)
    cfg.write_text(yaml.safe_dump({"items": [item], "extra": 1}))
    with pytest.raises(TargetsError, match="unknown top-level key"):
        load_targets(cfg)
