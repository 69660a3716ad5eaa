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


# -- the `missing` sentences against the configs (configs/targets.yaml `needs`) ------------------
def _check(items: list[dict], tmp_path: Path) -> list[str]:
    """check_targets on these items against the repository's configs."""
    from negfree.report.targets import check_targets

    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"items": items}))
    return check_targets(load_targets(path), ROOT)


def test_every_missing_sentence_agrees_with_the_configs():
    """configs/targets.yaml as committed: every `missing` phrase that states a fact about the configs is
    backed by a `needs` entry, every entry holds for configs/papers.yaml, configs/data and the schema."""
    from negfree.report.targets import check_targets

    targets = load_targets(TARGETS_YAML)
    assert check_targets(targets, ROOT) == []
    assert all(t.needs for t in targets if t.missing)         # every placeholder sentence is backed
    # the items this project declares for the cluster say nothing is missing
    done = {t.id: t for t in targets}
    for item in ("dft/table1", "dft/table3", "asft/table3", "dft/fig4"):
        assert done[item].files and done[item].missing is None, item


# The texts configs/targets.yaml had before the configs declared what they said was missing: each
# is contradicted by today's configs (or states a fact with nothing to check it), and fails.
OLD_TABLE1 = ("The MetaMath-7B and MetaMath-Mistral-7B rows are released checkpoints of Yu et al. (2024) that the "
              "paper copies; no experiment evaluates them (configs/paper/dft_metamath.yaml), so only the DFT and "
              "DFT2 rows are ours.")
OLD_ASFT3 = ("The UltraFeedback rows are scored against UF's test answers, not the paper's alpaca_en test set (no "
             "data config provides it); the HH-RLHF rows need a second experiment that is not declared.")


@pytest.mark.parametrize("item, expect", [
    ({"id": "dft/table1", "what": "x", "files": ["a.md"], "missing": OLD_TABLE1,
      "needs": [{"unevaluated": "meta-math/MetaMath-Mistral-7B"}]},
     ["need {'unevaluated': 'meta-math/MetaMath-Mistral-7B'} (no experiment evaluates the checkpoint "
      "hub:meta-math/MetaMath-Mistral-7B (as its model or under released:)) is false: an experiment of "
      "configs/papers.yaml evaluates hub:meta-math/MetaMath-Mistral-7B"]),
    ({"id": "dft/table1", "what": "x", "files": ["a.md"], "missing": OLD_TABLE1},
     ["'missing' says 'no experiment evaluates' but lists no need unevaluated"]),
    ({"id": "dft/table3", "what": "x", "files": ["a.md"],
      "missing": "The UC->UF rows are released checkpoints, which no experiment evaluates.",
      "needs": [{"unevaluated": "princeton-nlp/Mistral-7B-Base-SFT-SimPO"}]},
     ["evaluates hub:princeton-nlp/Mistral-7B-Base-SFT-SimPO"]),
    ({"id": "asft/table3", "what": "x", "files": ["a.md"], "missing": OLD_ASFT3,
      "needs": [{"no_experiment_on": "configs/data/hh_rlhf.yaml"}, {"no_data_config": "llamafactory/alpaca_en"}]},
     ["trains on configs/data/hh_rlhf.yaml", "a configs/data/*.yaml file provides llamafactory/alpaca_en"]),
    ({"id": "dft/fig2a_fig5", "what": "x", "missing": "AlpacaEval 2 is not a DAG protocol yet.",
      "needs": [{"no_protocol": "alpaca_eval2"}]},
     ["alpaca_eval2 is a protocol of the DAG"]),
    ({"id": "asft/table2", "what": "x", "missing": "The runs are declared in configs/paper/nope.yaml.",
      "needs": [{"declared_in": "configs/paper/nope.yaml"}]},
     ["names configs/paper/nope.yaml, which does not exist", "configs/paper/nope.yaml is not listed"]),
    ({"id": "minorsft/fig2", "what": "x", "missing": "No FinanceIQ task exists. Nor a grid.",
      "needs": [{"no_lm_eval_task": "ceval"}]},
     ["the installed lm-eval has a task named like ceval", "one sentence"]),
])
def test_a_missing_sentence_the_configs_contradict_fails(item, expect, tmp_path):
    problems = _check([item], tmp_path)
    assert problems and all(any(e in p for p in problems) for e in expect), problems
    assert all(p.startswith(item["id"] + ": ") for p in problems)


def test_needs_are_validated_and_printed(tmp_path):
    cfg = tmp_path / "t.yaml"
    for needs, msg in (([{"colour": "red"}], "must be a one-key mapping"), ({"no_protocol": "x"}, "must be a list")):
        cfg.write_text(yaml.safe_dump({"items": [{"id": "asft/table2", "what": "x", "missing": "No judge.",
                                                  "needs": needs}]}))
        with pytest.raises(TargetsError, match=msg):
            load_targets(cfg)
    cfg.write_text(yaml.safe_dump({"items": [{"id": "asft/table2", "what": "x", "files": ["a.md"],
                                              "needs": [{"no_protocol": "x"}]}]}))
    with pytest.raises(TargetsError, match="'needs' backs a 'missing' sentence"):
        load_targets(cfg)
    # the placeholder page says what was checked; the CLI's --check stops on a contradiction
    item = {"id": "dft/fig2a_fig5", "what": "AlpacaEval 2", "missing": "AlpacaEval 2 is not a DAG protocol yet.",
            "needs": [{"no_protocol": "alpaca_eval2"}]}
    cfg.write_text(yaml.safe_dump({"items": [item]}))
    report(load_targets(cfg), ["e"], "t.md", "ph", root=tmp_path)
    page = (tmp_path / "ph/dft_fig2a_fig5.md").read_text()
    assert "**Checked against the configs**: the DAG has no evaluation protocol alpaca_eval2" in page
    with pytest.raises(SystemExit, match="alpaca_eval2 is a protocol of the DAG"):
        cli_main(["targets", "--check", "--targets", str(cfg), "--experiments", "e", "--out-md",
                  str(tmp_path / "o.md"), "--placeholders-dir", str(tmp_path / "ph2")])
