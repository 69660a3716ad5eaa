"""How the CSVs in this directory were made: parse the papers' plain text line by line.

Not imported by the package and not needed at run time: the CSVs are the transcription.
It is kept so that the transcription can be audited and redone:

    .venv/bin/python -m negfree.report.paper_numbers._transcribe [/work/shared/papers]

Every table row is read from a fixed line of the paper text, and the row label printed
there is asserted before any number is taken, so a different text fails loudly instead
of shifting cells. Numbers are copied as printed (the string, not a re-rounded float).
Cells the text does not give stay empty (see README.md).
"""
from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
COLUMNS = ["paper", "item", "model", "setting", "method", "metric", "value", "unit", "source"]

# dft.txt Open-LLM tables: printed column -> lm-eval style metric (protocol: dft.txt Table 7)
DFT_OPENLLM = [
    ("MMLU", "mmlu/acc"),
    ("TruthfulQA", "truthfulqa_mc2/acc"),
    ("HellaSwag", "hellaswag/acc_norm"),
    ("WinoGrande", "winogrande/acc"),
    ("GSM8K", "gsm8k/exact_match,strict-match"),
    ("ARC", "arc_challenge/acc_norm"),
    ("IFEval", "ifeval/prompt_level_strict_acc"),
    ("Avg.", "avg"),
]
DFT_METHODS = {"SFT": "sft", "SPIN": "spin", "SIMPO": "simpo", "SIMPO-SFT": "simpo_sft", "KTO": "kto",
               "ORPO": "orpo", "DPO-P": "dpo_p", "DFT": "dft", "DFT2": "dft2"}
MISTRAL = "Mistral-7B-v0.1"


class Paper:
    def __init__(self, root: Path, name: str):
        self.name = name
        self.lines = (root / f"{name}.txt").read_text(encoding="utf-8").split("\n")

    def line(self, n: int) -> str:
        return self.lines[n - 1]

    def cells(self, n: int, label: str | None = None) -> list[str]:
        """Tab-separated cells of line n (1-based); the first must start with ``label``."""
        cells = self.line(n).split("\t")
        if label is not None and not cells[0].replace(" ", "").startswith(label.replace(" ", "")):
            raise AssertionError(f"{self.name}.txt line {n}: expected row '{label}', got {cells[0]!r}")
        return cells


def row(paper, item, model, setting, method, metric, value, unit, source):
    value = value.strip()
    if value:
        float(value)   # must parse
    return dict(zip(COLUMNS, [paper, item, model, setting, method, metric, value, unit, source]))


# ----------------------------------------------------------------------------- dft.txt
def dft(p: Paper) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}

    # Table 1 (lines 298-302)
    assert p.cells(298)[1:] == ["GSM8K", "MATH"], p.line(298)
    t1 = [(299, "MetaMath-7B", "released:metamath-7b", "MetaMath-7B"),
          (300, "METAMATH-MISTRAL-7B", "released:metamath-mistral-7b", MISTRAL),
          (301, "DFT (MISTRAL-7B-BASE)", "dft", MISTRAL),
          (302, "DFT2 (MISTRAL-7B-BASE)", "dft2", MISTRAL)]
    rows = []
    for n, label, method, model in t1:
        c = p.cells(n, label)
        for (col, metric), v in zip([("GSM8K", "gsm8k_0shot/acc"), ("MATH", "math_0shot/acc")], c[1:]):
            rows.append(row("dft", "table1", model, "MetaMathQA", method, metric, v, "%",
                            f"dft.txt Table 1 (line {n}), row {label}, column {col}"))
    out["dft_table1.csv"] = rows

    def openllm(item, table, lines, setting_of, model=MISTRAL, first_value_col=1):
        rows = []
        for n, label, method in lines:
            c = p.cells(n, label)
            vals = c[first_value_col:]
            assert len(vals) == len(DFT_OPENLLM), (n, c)
            for (col, metric), v in zip(DFT_OPENLLM, vals):
                rows.append(row("dft", item, model, setting_of(n, c), method, metric, v, "%",
                                f"dft.txt {table} (line {n}), row {label}, column {col}"))
        return rows

    # Table 2 (lines 337-345)
    t2 = [(337 + i, lab, DFT_METHODS[lab]) for i, lab in
          enumerate(["SFT", "SPIN", "SIMPO", "SIMPO-SFT", "KTO", "ORPO", "DPO-P", "DFT", "DFT2"])]
    out["dft_table2.csv"] = openllm("table2", "Table 2", t2, lambda n, c: "UF;B=2")

    # Table 3 (lines 350-361): second column is the data pipeline
    t3 = [(350, "SFT→DPO", "sft->dpo"), (351, "SFT → Simpo", "sft->simpo"), (352, "SFT → RRHF", "sft->rrhf"),
          (353, "$SFT \\rightarrow R-DPO$", "sft->rdpo"), (354, "$SFT \\rightarrow CPO$", "sft->cpo"),
          (355, "SFT→IPO", "sft->ipo"), (356, "$SFT \\rightarrow KTO$", "sft->kto"),
          (357, "SFT→KTO", "sft->kto"), (358, "$SFT \\rightarrow DPO$", "sft->dpo"),
          (359, "SFT → Simpo", "sft->simpo"), (360, "DFT", "dft"), (361, "DFT2", "dft2")]

    def t3_setting(n, c):
        data = c[1]
        if "UC" in data:
            return "UC->UF"
        if data.count("UF") == 2:
            return "UF->UF"
        return "UF(x,y_w)"
    out["dft_table3.csv"] = openllm("table3", "Table 3", t3, t3_setting, first_value_col=2)

    # Table 4 (lines 366-369): all rows use the base model's self-play negatives
    t4 = [(366, "DFT", "dft"), (367, "DFT2", "dft2"), (368, "SFT→DPO", "sft->dpo"), (369, "SFT → Simpo", "sft->simpo")]
    out["dft_table4.csv"] = openllm(
        "table4", "Table 4", t4,
        lambda n, c: "UF->UF;negatives=self-play" if "SFT" in c[0] else "UF;negatives=self-play")

    # Table 8 (lines 535-539), gamma sweep; Fig. 2b plots its Avg. column
    t8 = [(535, "DFT W/ $\\gamma = 0.8$", "0.8"), (536, "DFT w/ $\\gamma = 0.85$", "0.85"),
          (537, "DFT w/ $\\gamma = 0.9$", "0.9"), (538, "DFT w/ $\\gamma = 0.95$", "0.95"),
          (539, "DFT w/ $\\gamma = 1$", "1")]
    gam = {n: g for n, _, g in t8}
    out["dft_table8.csv"] = openllm("table8", "Table 8", [(n, lab, "dft") for n, lab, _ in t8],
                                    lambda n, c: f"gamma={gam[n]}")

    # Table 9 (lines 564-585): SFT once, then blocks B = 1, 2, 4
    assert p.line(565).split() == ["B", "=", "1"] and p.line(572).split() == ["B", "=", "2"] \
        and p.line(579).split() == ["B", "=", "4"]
    t9 = [(564, "SFT", "sft")]
    for start in (566, 573, 580):
        t9 += [(start + i, lab, DFT_METHODS[lab]) for i, lab in
               enumerate(["SPIN", "SIMPO", "SIMPO-SFT", "KTO", "DFT", "DFT2"])]
    out["dft_table9.csv"] = openllm(
        "table9", "Table 9", t9,
        lambda n, c: "B=n/a" if n == 564 else f"B={1 if n < 572 else 2 if n < 579 else 4}")

    # Tables 10, 11 (other base models)
    out["dft_table10.csv"] = openllm("table10", "Table 10", [(606, "SFT", "sft"), (607, "DFT", "dft"), (608, "DFT2", "dft2")],
                                     lambda n, c: "UF", model="Qwen-2.5-0.5B")
    out["dft_table11.csv"] = openllm("table11", "Table 11", [(613, "SFT", "sft"), (614, "DFT", "dft"), (615, "DFT2", "dft2")],
                                     lambda n, c: "UF", model="Llama3-8B-instruct")

    # Table 12 (lines 663-666), sampling temperature of the negatives
    out["dft_table12.csv"] = openllm("table12", "Table 12",
                                     [(663, "0", "dft"), (664, "0.3", "dft"), (665, "0.7", "dft"), (666, "1.0", "dft")],
                                     lambda n, c: f"T={c[0]}")

    # Figures: only the numbers the text states
    l507 = p.line(507)
    assert "approximately 1.33 hours for both DFT methods" in l507
    out["dft_fig4.csv"] = [
        row("dft", "fig4", MISTRAL, "UF;4xA100-80G;excluded from Fig. 4", m, "negative_generation_time", "1.33", "hours",
            "dft.txt A.4 Training Costs (line 507): 'Generation time for negative samples (approximately 1.33 hours "
            "for both DFT methods) is not included'")
        for m in ("dft", "dft2")]

    l601 = p.line(601)
    assert "achieves the best performance (62.84%)" in l601 and "yield a lower score (62.35%)" in l601
    out["dft_fig7.csv"] = [
        row("dft", "fig7", MISTRAL, "strategy=chat_bad", "dft", "avg", "62.84", "%",
            "dft.txt Figure 7 caption (line 601): chat templates with adversarial ('Bad') system messages ... (62.84%)"),
        row("dft", "fig7", MISTRAL, "strategy=chat_good", "dft", "avg", "62.35", "%",
            "dft.txt Figure 7 caption (line 601): beneficial ('Good') system messages yield a lower score (62.35%)"),
    ]

    l310 = p.line(310)
    assert "average length of 1359" in l310 and "1449, 1477, 1868, respectively" in l310
    src = "dft.txt 7.1 AlpacaEval2 Results (line 310): "
    out["dft_fig5.csv"] = [
        row("dft", "fig5a", MISTRAL, "UF(x,y_w)", "dft(2)", "alpacaeval2/avg_length", "1359", "length",
            src + "'DFT(2) have much shorter lengths for the outputs with an average length of 1359'"),
        row("dft", "fig5a", MISTRAL, "pipeline=unstated", "sft->kto", "alpacaeval2/avg_length", "1449", "length",
            src + "'KTO, DPO, SimPO have average lengths of 1449, 1477, 1868, respectively' (KTO)"),
        row("dft", "fig5a", MISTRAL, "pipeline=unstated", "sft->dpo", "alpacaeval2/avg_length", "1477", "length",
            src + "'KTO, DPO, SimPO have average lengths of 1449, 1477, 1868, respectively' (DPO)"),
        row("dft", "fig5a", MISTRAL, "pipeline=unstated", "sft->simpo", "alpacaeval2/avg_length", "1868", "length",
            src + "'KTO, DPO, SimPO have average lengths of 1449, 1477, 1868, respectively' (SimPO)"),
    ]
    return out


# ----------------------------------------------------------------------------- asft.txt
def asft(p: Paper) -> dict[str, list[dict]]:
    out = {}
    model = "Llama3-8B-Instruct"
    rows = []
    cols = [("Arena-Hard WR (%)", "arena_hard/win_rate", "%"),
            ("MT-Bench GPT-4 Turbo", "mt_bench/score_gpt4_turbo", "score"),
            ("MT-Bench GPT-4", "mt_bench/score_gpt4", "score")]
    for i, (label, method) in enumerate([("SFT", "sft"), ("DPO", "dpo"), ("IPO", "ipo"), ("ORPO", "orpo"), ("ASFT", "asft")]):
        n = 235 + i
        c = p.cells(n, label)
        for (col, metric, unit), v in zip(cols, c[1:]):
            rows.append(row("asft", "table2", model, "UF", method, metric, v, unit,
                            f"asft.txt Table 2 (line {n}), row {label}, column {col}"))
    out["asft_table2.csv"] = rows

    rows = []
    cols = [("BLEU-4", "bleu4"), ("ROUGE-1", "rouge1"), ("ROUGE-2", "rouge2"), ("ROUGE-L", "rougeL")]
    dataset = None
    for n in range(260, 266):
        c = p.cells(n)
        if c[0]:
            dataset = c[0]
        label = c[1]
        assert c[2] == "Llama3-8B-Instruction", c
        method = {"SFT": "sft", "ORPO": "orpo", "ASFT": "asft"}[label]
        for (col, metric), v in zip(cols, c[3:]):
            rows.append(row("asft", "table3", model, dataset, method, metric, v, "score",
                            f"asft.txt Table 3 (line {n}), dataset {dataset}, row {label}, column {col}"))
    out["asft_table3.csv"] = rows

    l257 = p.line(257)
    assert "ASFT reduces time by 13% and decreases peak GPU memory usage by 16.7%" in l257
    src = ("asft.txt 5.2 Efficiency of ASFT (line 257): 'ASFT reduces time by 13% and decreases peak GPU memory "
           "usage by 16.7% compared to reference-dependent methods'")
    out["asft_fig2.csv"] = [
        row("asft", "fig2b", model, "UF;relative to reference-dependent methods (DPO in the caption)", "asft",
            "runtime_reduction", "13", "%", src),
        row("asft", "fig2b", model, "UF;relative to reference-dependent methods (DPO in the caption)", "asft",
            "peak_memory_reduction", "16.7", "%", src),
    ]
    return out


# ----------------------------------------------------------------------------- ift.txt
IFT_T3_METRICS = ["arc_challenge/acc_norm", "mmlu/acc", "truthfulqa_mc2/acc", "winogrande/acc",
                  "gsm8k/exact_match,strict-match", "avg"]


def ift(p: Paper) -> dict[str, list[dict]]:
    out = {}
    base = "Mistral-7B-v0.1"
    cols = [("Alpaca-Eval win-rate", "alpacaeval/win_rate"), ("Alpaca-Eval lc win-rate", "alpacaeval/lc_win_rate"),
            ("Alpaca-Eval-2 win-rate", "alpacaeval2/win_rate"), ("Alpaca-Eval-2 lc win-rate", "alpacaeval2/lc_win_rate")]
    spec = [(286, "Mistral-7B", "base", "none"),
            (288, "$+$ SFT", "sft", "UF"), (289, "$+$ DPO", "dpo", "UF"), (290, "$+$ ORPO", "orpo", "UF"),
            (291, "+ IFT", "ift", "UF"), (292, "Mistral-ORPO- α", "released:mistral-orpo-alpha", "UF"),
            (294, "$+$ SFT", "sft", "UC"), (295, "$+$ SFT $+$ SFT", "sft->sft", "UC->UF"),
            (296, "$+$ SFT $+$ DPO", "sft->dpo", "UC->UF"), (297, "$+$ SFT $+$ ORPO", "sft->orpo", "UC->UF"),
            (298, "+ SFT + IFT", "sft->ift", "UC->UF"), (299, "Zephyr-7B- β", "released:zephyr-7b-beta", "UC->UF")]
    assert "fine-tuning with UltraFeedback-60k" in p.line(287)
    assert "UltraChat-200 k + UltraFeedback-60 k sequentially" in p.line(293)
    rows = []
    for n, label, method, setting in spec:
        cells = [c.strip() for c in p.line(n).strip().strip("|").split("|")]
        if cells[0] != label:
            raise AssertionError(f"ift.txt line {n}: expected {label!r}, got {cells[0]!r}")
        volume = cells[3].replace(" ", "").replace("_", "")
        if volume:
            assert volume.endswith("k"), volume
            rows.append(row("ift", "table2", base, setting, method, "data_volume", volume[:-1], "k examples",
                            f"ift.txt Table 2 (line {n}), row {label}, column Data volume ('{cells[3]}')"))
        for (col, metric), v in zip(cols, cells[4:8]):
            note = ""
            if method.startswith("released:") and metric.startswith("alpacaeval"):
                note = " [position as laid out in the text; see README: ambiguous column]"
            rows.append(row("ift", "table2", base, setting, method, metric, v, "%",
                            f"ift.txt Table 2 (line {n}), row {label}, column {col}{note}"))
    out["ift_table2.csv"] = rows

    # Table 3: the text has the caption (line 301) but none of the table body -> every cell empty.
    assert p.line(301).startswith("Table 3: Evaluation on Open-LLM Leaderboard with chat template.")
    runs = [("sft", "UF"), ("dpo", "UF"), ("orpo", "UF"), ("ift", "UF"),
            ("sft", "UC"), ("sft->sft", "UC->UF"), ("sft->dpo", "UC->UF"), ("sft->orpo", "UC->UF"), ("sft->ift", "UC->UF")]
    out["ift_table3.csv"] = [
        row("ift", "table3", base, setting, method, metric, "", "%",
            "ift.txt Table 3 (caption line 301): table body absent from the text; cell left empty")
        for method, setting in runs for metric in IFT_T3_METRICS]
    return out


# ----------------------------------------------------------------------------- bnf.txt
BNF_T4 = [("Wild-Bench Elo", "wildbench/elo", "elo"), ("Wild-Bench Score", "wildbench/score", "score"),
          ("Arena-Hard LC (%)", "arena_hard/lc_win_rate", "%"), ("Arena-Hard WR(%)", "arena_hard/win_rate", "%"),
          ("GSM8K Acc (%)", "gsm8k/acc", "%"), ("MATH Acc (%)", "math_l5/acc", "%"),
          ("CRUX Acc (%)", "crux/acc", "%"), ("MMLU Acc (%)", "mmlu_redux/acc", "%")]
CELL = re.compile(r"^\s*([0-9.]+)\s*\((\d+)\)\s*$")
BNF_METHODS = {"Base": "base", "SLiC-HF": "slic_hf", "DPO": "dpo", "IPO": "ipo", "KTO": "kto", "ORPO": "orpo",
               "SimPO": "simpo", "BNF": "bnf"}


def bnf(p: Paper) -> dict[str, list[dict]]:
    out = {}
    rows = []
    blocks = [("Meta-Llama-3-8B-Instruct", 150, range(153, 161)),
              ("Mistral-7B-Instruct-v0.2", 162, range(165, 173)),
              ("Gemma-2-9b-It", 174, range(177, 181))]
    for model, header, lines in blocks:
        assert p.cells(header)[1] == model, p.line(header)
        for n in lines:
            c = p.cells(n)
            label = c[0]
            method = BNF_METHODS[label]
            for (col, metric, unit), cell in zip(BNF_T4, c[1:9]):
                m = CELL.match(cell)
                assert m, (n, cell)
                src = f"bnf.txt Table 4 (line {n}), block {model}, row {label}, column {col}"
                rows.append(row("bnf", "table4", model, "UF-pairs", method, metric, m.group(1), unit, src))
                rows.append(row("bnf", "table4", model, "UF-pairs", method, metric + "/rank", m.group(2), "rank",
                                src + " (rank in parentheses)"))
            rows.append(row("bnf", "table4", model, "UF-pairs", method, "avg_rank", c[9], "rank",
                            f"bnf.txt Table 4 (line {n}), block {model}, row {label}, column Average Rank"))
    out["bnf_table4.csv"] = rows

    rows = []
    assert p.cells(196)[1:] == ["Meta-Llama-3", "", "Mistral-7B", ""], p.line(196)
    assert p.cells(197)[1:] == ["WB", "AH", "WB", "AH"], p.line(197)
    cols = [("Meta-Llama-3-8B-Instruct", "Meta-Llama-3 WB", "wildbench/avg_length"),
            ("Meta-Llama-3-8B-Instruct", "Meta-Llama-3 AH", "arena_hard/avg_length"),
            ("Mistral-7B-Instruct-v0.2", "Mistral-7B WB", "wildbench/avg_length"),
            ("Mistral-7B-Instruct-v0.2", "Mistral-7B AH", "arena_hard/avg_length")]
    for n in range(198, 206):
        c = p.cells(n)
        label = c[0]
        for (model, col, metric), cell in zip(cols, c[1:5]):
            v = cell.replace("↓", "").replace("↑", "").strip()
            rows.append(row("bnf", "table5", model, "UF-pairs", BNF_METHODS[label], metric, v, "length",
                            f"bnf.txt Table 5 (line {n}), row {label}, column {col}"
                            f" (printed '{cell.strip()}')"))
    out["bnf_table5.csv"] = rows

    rows = []
    model = "Meta-Llama-3-8B-Instruct"
    assert p.cells(213)[1] == model, p.line(213)
    assert p.line(221).strip() == "Rank"
    for i, n in enumerate(range(216, 221)):
        c = p.cells(n)
        label = c[0]
        setting = "base" if label == "Base" else f"pairing={label}"
        method = "base" if label == "Base" else "bnf"
        for (col, metric, unit), cell in zip(BNF_T4, c[1:9]):
            m = CELL.match(cell)
            assert m, (n, cell)
            src = f"bnf.txt Table 6 (line {n}), row {label}, column {col}"
            rows.append(row("bnf", "table6", model, setting, method, metric, m.group(1), unit, src))
            rows.append(row("bnf", "table6", model, setting, method, metric + "/rank", m.group(2), "rank",
                            src + " (rank in parentheses)"))
        rank_line = 222 + i
        rows.append(row("bnf", "table6", model, setting, method, "avg_rank", p.line(rank_line).strip(), "rank",
                        f"bnf.txt Table 6 (line {rank_line}), Average Rank column printed below the table, "
                        f"value {i + 1} of 5 -> row {label}"))
    out["bnf_table6.csv"] = rows
    return out


def build(root: Path, out_dir: Path = HERE) -> dict[str, int]:
    files: dict[str, list[dict]] = {}
    for name, fn in (("dft", dft), ("asft", asft), ("ift", ift), ("bnf", bnf)):
        files.update(fn(Paper(root, name)))
    counts = {}
    for fname, rows in sorted(files.items()):
        with open(out_dir / fname, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        counts[fname] = len(rows)
    return counts


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/papers")
    for f, n in build(root).items():
        print(f"{f}: {n} rows")
