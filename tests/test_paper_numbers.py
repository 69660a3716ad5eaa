"""The transcribed paper numbers (negfree/report/paper_numbers/) and the claims ledger
(configs/claims.yaml): structure, spot checks against the paper text, internal
consistency of the printed tables, and every ledger check that can be evaluated on the
paper's own numbers. Offline, pandas + pyyaml only, well under a second."""
from __future__ import annotations

import math
import operator
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from negfree.report import paper_numbers as pn

ROOT = Path(__file__).resolve().parents[1]
PN_DIR = ROOT / "negfree" / "report" / "paper_numbers"
CLAIMS = ROOT / "configs" / "claims.yaml"
PAPERS = ("dft", "minorsft", "asft", "ift", "bnf")

# one id per row of /work/shared/design/targets.md, in its order
TARGET_IDS = [
    "dft/table1", "dft/table2", "dft/table3", "dft/table4", "dft/table8_fig2b", "dft/table9_fig6",
    "dft/table10_table11", "dft/table12", "dft/fig1", "dft/fig2a_fig5", "dft/fig3", "dft/fig4", "dft/fig7",
    "minorsft/fig1", "minorsft/fig2",
    "asft/fig1", "asft/table2", "asft/table3", "asft/fig2",
    "ift/table2", "ift/table3", "ift/fig3",
    "bnf/fig1", "bnf/table4", "bnf/table5", "bnf/table6", "bnf/fig3_fig4",
]
OPEN7 = ["mmlu/acc", "truthfulqa_mc2/acc", "hellaswag/acc_norm", "winogrande/acc",
         "gsm8k/exact_match,strict-match", "arc_challenge/acc_norm", "ifeval/prompt_level_strict_acc"]


def csv_files():
    return sorted(PN_DIR.glob("*.csv"))


def index():
    return yaml.safe_load((PN_DIR / "index.yaml").read_text(encoding="utf-8"))["items"]


# ----------------------------------------------------------------------------- structure
@pytest.mark.parametrize("path", csv_files(), ids=lambda p: p.name)
def test_csv_columns_and_values(path):
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(raw.columns) == pn.COLUMNS
    assert len(raw) > 0
    paper, item = path.stem.split("_", 1)
    assert paper in PAPERS
    assert (raw.paper == paper).all()
    assert raw["item"].map(lambda s: s.startswith(item[:4])).all()
    for col in ("model", "setting", "method", "metric", "unit", "source"):
        assert (raw[col].str.strip() != "").all(), f"{path.name}: empty {col}"
    assert raw.source.str.startswith(f"{paper}.txt ").all()
    for v in raw.value:
        if v != "":
            float(v)   # every non-empty cell parses
    df = pn.read_csv(path)
    assert df.value.dtype == float
    key = ["item", "model", "setting", "method", "metric"]
    dup = df[df.duplicated(key, keep=False)]
    assert dup.empty, dup


def test_index_covers_targets_and_files():
    idx = index()
    assert list(idx) == TARGET_IDS
    assert pn.items() == TARGET_IDS
    referenced = set()
    for iid, e in idx.items():
        assert e["paper"] == iid.split("/")[0]
        for key in ("targets_row", "caption", "metrics", "metric_labels", "runs", "files", "numbers_in_text"):
            assert key in e, (iid, key)
        assert len(e["metrics"]) == len(e["metric_labels"]), iid
        assert e["methods"], iid
        for f in e["files"]:
            assert (PN_DIR / f).is_file(), (iid, f)
            referenced.add(f)
        assert bool(e["files"]) == e["numbers_in_text"] or iid == "ift/table3", iid
        df = pn.load(iid)
        if e["files"]:
            metrics = {m[:-5] if m.endswith("/rank") else m for m in df.metric}
            assert metrics <= set(e["metrics"]), (iid, metrics - set(e["metrics"]))
            rows = [(r["item"], r["model"], r["setting"], r["method"]) for r in e["rows"]]
            got = list(dict.fromkeys(zip(df["item"], df.model, df.setting, df.method)))
            assert got == rows, iid
        else:
            assert df.empty and list(df.columns) == pn.COLUMNS
    assert referenced == {p.name for p in csv_files()}


def test_aliases_filter():
    assert set(pn.load("dft/fig2b").metric) == {"avg"}
    assert len(pn.load("dft/fig2b")) == 5
    assert set(pn.load("dft/table11").model) == {"Llama3-8B-instruct"}
    assert len(pn.load("dft/table10_table11")) == len(pn.load("dft/table10")) + len(pn.load("dft/table11"))
    assert pn.load("dft/fig6").empty
    assert pn.info("dft/table8")["targets_row"] == "Table 8, Fig 2b"
    with pytest.raises(KeyError):
        pn.load("dft/table99")


def test_empty_cells_are_exactly_the_known_ones():
    empty = pd.concat([pn.read_csv(p) for p in csv_files()])
    empty = empty[empty.value.isna()]
    # ift.txt has Table 3's caption but not its body: 9 runs x 6 metrics
    assert len(empty[(empty.paper == "ift") & (empty["item"] == "table3")]) == 54
    # ift.txt Table 2: released checkpoints have two blank cells each (lines 292, 299)
    t2 = empty[(empty.paper == "ift") & (empty["item"] == "table2")]
    assert sorted(zip(t2.method, t2.metric)) == sorted(
        (m, k) for m in ("released:mistral-orpo-alpha", "released:zephyr-7b-beta")
        for k in ("alpacaeval/lc_win_rate", "alpacaeval2/win_rate"))
    assert len(empty) == 58


# ----------------------------------------------------------------------------- spot checks
# (item, selection, expected value, where it is printed in /work/shared/papers)
SPOT = [
    ("dft/table1", dict(method="dft", metric="gsm8k_0shot/acc"), 79.15,
     "dft.txt l.301 'DFT (MISTRAL-7B-BASE)\t79.15\t28.34'"),
    ("dft/table1", dict(method="dft2", metric="math_0shot/acc"), 28.62,
     "dft.txt l.302 'DFT2 (MISTRAL-7B-BASE)\t78.77\t28.62'"),
    ("dft/table2", dict(method="simpo", metric="gsm8k/exact_match,strict-match"), 2.58,
     "dft.txt l.339 'SIMPO\t62.39\t52.08\t83.89\t78.14\t2.58\t61.86\t18.85\t51.40'"),
    ("dft/table2", dict(method="orpo", metric="ifeval/prompt_level_strict_acc"), 53.41,
     "dft.txt l.342 'ORPO\t62.26\t48.26\t83.07\t79.16\t45.41\t62.20\t53.41\t61.97'"),
    ("dft/table3", dict(method="sft->kto", setting="UF->UF", metric="avg"), 63.04,
     "dft.txt l.357 'SFT→KTO\t$UF \\rightarrow UF$\t... 51.94\t63.04'"),
    ("dft/table3", dict(method="sft->rrhf", setting="UC->UF", metric="gsm8k/exact_match,strict-match"), 0.45,
     "dft.txt l.352 'SFT → RRHF\t$UC \\rightarrow UF$\t56.40\t43.70\t80.37\t77.51\t0.45\t...'"),
    ("dft/table4", dict(method="sft->simpo", metric="truthfulqa_mc2/acc"), 66.47,
     "dft.txt l.369 'SFT → Simpo\t60.59\t66.47\t85.65\t...'"),
    ("dft/table8", dict(setting="gamma=1", metric="avg"), 52.45,
     "dft.txt l.539 'DFT w/ $\\gamma = 1$\t59.46\t45.38\t80.54\t76.64\t22.14\t63.05\t19.96\t52.45'"),
    ("dft/table9", dict(method="kto", setting="B=4", metric="hellaswag/acc_norm"), 82.06,
     "dft.txt l.583 'KTO\t60.99\t49.87\t82.06\t78.61\t41.62\t61.86\t40.11\t59.30'"),
    ("dft/table9", dict(method="dft2", setting="B=4", metric="arc_challenge/acc_norm"), 65.02,
     "dft.txt l.585 'DFT2\t61.78\t53.67\t83.35\t77.90\t45.64\t65.02\t48.80\t62.31'"),
    ("dft/table10", dict(method="dft", metric="gsm8k/exact_match,strict-match"), 35.56,
     "dft.txt l.607 'DFT\t47.49\t42.77\t51.30\t56.59\t35.56\t36.43\t17.38\t41.07'"),
    ("dft/table11", dict(method="dft2", metric="ifeval/prompt_level_strict_acc"), 71.71,
     "dft.txt l.615 'DFT2\t65.40\t56.03\t78.96\t75.45\t74.60\t63.82\t71.71\t69.42'"),
    ("dft/table12", dict(setting="T=1.0", metric="avg"), 62.69,
     "dft.txt l.666 '1.0\t62.04\t52.32\t83.90\t78.61\t45.94\t64.25\t51.76\t62.69'"),
    ("dft/fig7", dict(setting="strategy=chat_good", metric="avg"), 62.35,
     "dft.txt l.601 Figure 7 caption '... yield a lower score (62.35%)'"),
    ("dft/fig4", dict(method="dft", metric="negative_generation_time"), 1.33,
     "dft.txt l.507 '(approximately 1.33 hours for both DFT methods)'"),
    ("dft/fig5", dict(method="sft->simpo", metric="alpacaeval2/avg_length"), 1868,
     "dft.txt l.310 'KTO, DPO, SimPO have average lengths of 1449, 1477, 1868, respectively'"),
    ("asft/table2", dict(method="asft", metric="arena_hard/win_rate"), 32.5, "asft.txt l.239 'ASFT\t32.5\t7.05\t8.05'"),
    ("asft/table2", dict(method="dpo", metric="mt_bench/score_gpt4_turbo"), 7.08, "asft.txt l.236 'DPO\t31.8\t7.08\t8.03'"),
    ("asft/table3", dict(method="sft", setting="HH-RLHF", metric="bleu4"), 23.7,
     "asft.txt l.260 'HH-RLHF\tSFT\tLlama3-8B-Instruction\t23.7\t32.70\t13.51\t14.56'"),
    ("asft/table3", dict(method="asft", setting="UltraFeedback", metric="rougeL"), 34.98,
     "asft.txt l.265 '\tASFT\tLlama3-8B-Instruction\t42.43\t46.60\t25.38\t34.98'"),
    ("asft/fig2", dict(metric="peak_memory_reduction"), 16.7,
     "asft.txt l.257 'decreases peak GPU memory usage by 16.7%'"),
    ("ift/table2", dict(method="sft->ift", metric="alpacaeval2/lc_win_rate"), 14.34,
     "ift.txt l.298 '| + SFT + IFT | | Х | 260 _k | 88.37 | 81.29 | 10.26 | 14.34 |'"),
    ("ift/table2", dict(method="dpo", setting="UF", metric="alpacaeval/win_rate"), 74.00,
     "ift.txt l.289 '| $+$ DPO | | | 120k | 74.00 | 73.12 | 9.73 | 8.58 |'"),
    ("ift/table2", dict(method="sft->sft", metric="data_volume"), 260, "ift.txt l.295 '| $+$ SFT $+$ SFT | | х | 260k |'"),
    ("bnf/table4", dict(model="Meta-Llama-3-8B-Instruct", method="dpo", metric="wildbench/elo"), 1155,
     "bnf.txt l.155 'DPO\t1155 (1)\t39.5 (1)\t60.4 (1)\t62.2 (1)\t70.5 (6)\t8.5 (5)\t31.8 (8)\t56.4 (7)\t3.75'"),
    ("bnf/table4", dict(model="Mistral-7B-Instruct-v0.2", method="ipo", metric="crux/acc/rank"), 1,
     "bnf.txt l.168 'IPO\t1121 (7)\t26.9 (7)\t25.4 (7)\t26.1 (7)\t35.8 (7)\t3.6 (2)\t28.3 (1)\t50.7 (8)\t5.75'"),
    ("bnf/table4", dict(model="Gemma-2-9b-It", method="bnf", metric="wildbench/score"), 53.2,
     "bnf.txt l.180 'BNF\t1186 (1)\t53.2(2)\t77.5 (1)\t80.8 (2)\t88.0 (2)\t21.8 (1)\t45.3 (1)\t72.7 (2)\t1.50'"),
    ("bnf/table4", dict(model="Gemma-2-9b-It", method="bnf", metric="avg_rank"), 1.50, "bnf.txt l.180 (last cell)"),
    ("bnf/table5", dict(model="Mistral-7B-Instruct-v0.2", method="ipo", metric="wildbench/avg_length"), 3431,
     "bnf.txt l.201 'IPO\t2843 ↓\t547 ↓\t3431 ↑\t545 ↑'"),
    ("bnf/table6", dict(setting="pairing=0%", metric="gsm8k/acc"), 80.1,
     "bnf.txt l.217 '0%\t1146 (4)\t36.0 (4)\t49.3 (4)\t48.4 (4)\t80.1 (1)\t9.4 (2)\t35.6 (4)\t62.2 (2)'"),
    ("bnf/table6", dict(setting="pairing=100%", metric="avg_rank"), 2.5, "bnf.txt l.226 '2.5' (5th Average Rank value)"),
]


@pytest.mark.parametrize("item,sel,expected,where", SPOT, ids=[f"{s[0]}:{s[2]}" for s in SPOT])
def test_spot_cells(item, sel, expected, where):
    df = pn.load(item)
    for k, v in sel.items():
        df = df[df[k] == v]
    assert len(df) == 1, (item, sel, where)
    assert df.value.iloc[0] == pytest.approx(expected, abs=1e-9), where
    assert pn.lookup(item, sel["method"], sel["metric"], sel.get("setting"), sel.get("model")) == pytest.approx(expected) \
        if "method" in sel else True


def test_stated_differences_match_tables():
    """Numbers the text states as differences agree with the transcribed tables."""
    def avg(item, method):
        return pn.lookup(item, method, "avg")
    # dft.txt App. B.4 l.589/591: gains 0.44 / 0.54 (Qwen) and 1.88 / 1.86 (Llama3) over SFT
    assert avg("dft/table10", "dft") - avg("dft/table10", "sft") == pytest.approx(0.44, abs=1e-6)
    assert avg("dft/table10", "dft2") - avg("dft/table10", "sft") == pytest.approx(0.54, abs=1e-6)
    assert avg("dft/table11", "dft") - avg("dft/table11", "sft") == pytest.approx(1.88, abs=1e-6)
    assert avg("dft/table11", "dft2") - avg("dft/table11", "sft") == pytest.approx(1.86, abs=1e-6)
    # dft.txt l.292: GSM8K 79.15% and MATH 28.62% as the best 7B results
    t1 = pn.load("dft/table1")
    assert t1[t1.metric == "gsm8k_0shot/acc"].value.max() == 79.15
    assert t1[t1.metric == "math_0shot/acc"].value.max() == 28.62
    # bnf.txt Sec. 5.2: 0% pairing vs base +6.8 WB score, +12.3 AH WR, +1.6 GSM8K, +2.6 MATH
    t6 = pn.load("bnf/table6")

    def b6(setting, metric):
        return t6[(t6.setting == setting) & (t6.metric == metric)].value.item()
    for metric, gain in [("wildbench/score", 6.8), ("arena_hard/win_rate", 12.3), ("gsm8k/acc", 1.6), ("math_l5/acc", 2.6)]:
        assert b6("pairing=0%", metric) - b6("base", metric) == pytest.approx(gain, abs=1e-6), metric
    # asft.txt Sec. 5.2: ASFT vs SFT Arena-Hard '48% improvement in WR'
    assert pn.lookup("asft/table2", "asft", "arena_hard/win_rate") / pn.lookup("asft/table2", "sft", "arena_hard/win_rate") \
        == pytest.approx(1.48, abs=0.005)


def test_printed_averages_are_consistent():
    """Avg. = mean of the 7 benchmarks (dft tables); Average Rank = mean of ranks and ranks
    follow the values (bnf). A failure here means a mis-transcribed cell."""
    for item in ("dft/table2", "dft/table3", "dft/table4", "dft/table8", "dft/table9", "dft/table10_table11", "dft/table12"):
        df = pn.load(item)
        for key, g in df.groupby(["item", "model", "setting", "method"], sort=False):
            v = g.set_index("metric").value
            assert round(v[OPEN7].mean(), 2) == pytest.approx(v["avg"], abs=0.011), (item, key)
    for item in ("bnf/table4", "bnf/table6"):
        df = pn.load(item)
        for key, g in df.groupby(["model", "setting", "method"], sort=False):
            ranks = g[g.metric.str.endswith("/rank")].value
            assert len(ranks) == 8
            assert ranks.mean() == pytest.approx(g[g.metric == "avg_rank"].value.item(), abs=0.0051), (item, key)
        vals = df[~df.metric.str.contains("rank")]
        rk = df[df.metric.str.endswith("/rank")].assign(metric=lambda d: d.metric.str[:-5])
        m = vals.merge(rk, on=["model", "setting", "method", "metric"], suffixes=("", "_rank"))
        for key, g in m.groupby(["model", "metric"]):
            expect = g.value.rank(ascending=False, method="min").to_numpy()
            assert (expect == g.value_rank.to_numpy()).all(), (item, key)


# ----------------------------------------------------------------------------- claims ledger
KINDS = {"compare", "trend", "close", "ratio", "argmax", "argmin", "ordering", "monotone", "top_drop", "robustness",
         "threshold", "analytic", "registry", "all", "paper_value"}


def claims():
    return yaml.safe_load(CLAIMS.read_text(encoding="utf-8"))["claims"]


def _walk(check):
    yield check
    for sub in check.get("checks", []):
        yield from _walk(sub)


def test_claims_schema():
    cs = claims()
    ids = [c["id"] for c in cs]
    assert len(ids) == len(set(ids))
    idx = index()
    for c in cs:
        for key in ("id", "paper", "statement", "source", "check", "needs"):
            assert key in c, (c.get("id"), key)
        assert c["paper"] in PAPERS and c["id"].startswith(c["paper"] + ".")
        assert c["source"].startswith(c["paper"] + ".txt")
        assert c["needs"]["targets"], c["id"]
        for t in c["needs"]["targets"]:
            assert t in idx, (c["id"], t)
        assert "runs" in c["needs"]
        for chk in _walk(c["check"]):
            assert chk["kind"] in KINDS, (c["id"], chk["kind"])
            for k in ("paper_item", "b_item"):
                if k in chk:
                    pn.resolve(chk[k])
    required = ["dft.fig3.neg_logp_vs_sft", "dft.table8.gamma1_worse", "dft.table9.b2_beats_b1",
                "dft.table12.temperature_07_best", "dft.fig7.adversarial_system_prompt_best",
                "dft.table2.beats_sft_avg", "dft.fig4.dft2_cheaper_than_dft", "minorsft.fig1.deviation_below_sft",
                "asft.fig2a.margin_above_orpo", "asft.fig2b.runtime_below_dpo", "asft.fig2b.memory_below_dpo",
                "ift.table2.best_from_base", "ift.fig3.frozen_lake_ordering", "bnf.fig3.smallest_loglik_shift",
                "bnf.fig3.lowest_gini", "bnf.table6.unpaired_beats_base", "bnf.fig1.bnf_gradient_peaks_at_reference"]
    assert set(required) <= set(ids)


# -- a small evaluator of the ledger's checks on the paper numbers
OPS = {">": operator.gt, "<": operator.lt, ">=": operator.ge, "<=": operator.le}


def _as_list(x):
    return x if isinstance(x, list) else [x]


def _value(df, sel, metric):
    d = df
    for k, v in sel.items():
        d = d[d[k] == v]
    m = re.fullmatch(r"mean_of\((.*)\)", metric)
    if m:
        vals = [_value(df, sel, part) for part in m.group(1).split(",")]
        return None if any(v is None for v in vals) else sum(vals) / len(vals)
    d = d[d.metric == metric]
    if d.empty:
        return None
    assert len(d) == 1, (sel, metric, d)
    return float(d.value.iloc[0])


def _sweep_value(df, sweep):
    if sweep == "method":
        return df.method
    vals = df.setting.str.extract(rf"(?:^|;){re.escape(sweep)}=([^;]+)")[0]
    return vals.map(lambda s: float(s) if isinstance(s, str) and re.fullmatch(r"[0-9.]+", s) else s)


def _evaluate(chk, df, b_df, extra):
    kind = chk["kind"]
    metrics = chk.get("metrics") or [chk.get("metric")]
    out = []
    if kind == "compare":
        m = re.fullmatch(r"a\s*(<=|>=|<|>)\s*(?:([0-9.]+)\s*\*\s*)?b", chk["expect"])
        op, scale = OPS[m.group(1)], float(m.group(2) or 1)
        for metric in metrics:
            for a in _as_list(chk["a"]):
                for b in _as_list(chk["b"]):
                    va, vb = _value(df, {**a, **extra}, metric), _value(b_df, {**b, **extra}, metric)
                    if va is not None and vb is not None:
                        out.append(op(va, scale * vb))
    elif kind == "close":
        for metric in metrics:
            for b in _as_list(chk["b"]):
                va, vb = _value(df, {**chk["a"], **extra}, metric), _value(b_df, {**b, **extra}, metric)
                tol = chk.get("abs_tol", chk.get("rel_tol", 0) * abs(vb))
                out.append(abs(va - vb) <= tol)
    elif kind == "ratio":
        va, vb = _value(df, {**chk["a"], **extra}, metrics[0]), _value(b_df, {**chk["b"], **extra}, metrics[0])
        out.append(math.isclose(va / vb, chk["expect_approx"], rel_tol=chk["rel_tol"]))
    elif kind in ("argmax", "argmin"):
        d = df
        for k, v in {**chk.get("select", {}), **extra}.items():
            d = d[d[k] == v]
        d = d[d.metric == metrics[0]].assign(_sw=lambda x: _sweep_value(x, chk["sweep"]))
        best = d.loc[d.value.idxmax() if kind == "argmax" else d.value.idxmin(), "_sw"]
        if "expect_in" in chk:
            lo, hi = chk["expect_in"]
            out.append(lo <= best <= hi)
        else:
            out.append(best == chk["expect"])
    elif kind == "ordering":
        sign = 1 if chk.get("lower_is_better") else -1
        for metric in metrics:
            tiers = [[sign * _value(df, {"method": m, **extra}, metric) for m in tier] for tier in chk["expect"]]
            out += [max(t1) < min(t2) for t1, t2 in zip(tiers, tiers[1:])]
    elif kind == "monotone":
        for metric in metrics:
            seq = [_value(df, {**chk["select"], "setting": f"{chk['sweep']}={v}", **extra}, metric) for v in chk["values"]]
            pairs = list(zip(seq, seq[1:]))
            out.append(all(x <= y for x, y in pairs) if chk["expect"] == "non_decreasing" else all(x >= y for x, y in pairs))
    elif kind == "top_drop":
        drops = {m: _value(df, chk["a"], m) - _value(df, chk["b"], m) for m in chk["metrics"]}
        top = sorted(drops, key=drops.get, reverse=True)[: chk["k"]]
        out.append(set(top) == set(chk["expect"]))
    elif kind == "threshold":
        for metric in metrics:
            for sel in _as_list(chk["select"]):
                v = _value(df, {**sel, **extra}, metric)
                if v is not None:
                    out.append(OPS[chk["op"]](v, chk["value"]))
    elif kind == "paper_value":      # the paper against itself: every selected cell must be printed
        for metric in metrics:
            for sel in _as_list(chk["select"]):
                out.append(_value(df, {**sel, **extra}, metric) is not None)
    else:
        raise AssertionError(f"cannot evaluate kind {kind} on paper numbers")
    return out


def _paper_checks():
    for c in claims():
        parent = c["check"].get("paper_item")
        for chk in _walk(c["check"]):
            if chk["kind"] == "all":
                continue
            item = chk.get("paper_item", parent)
            if item:
                yield pytest.param(c["id"], chk, item, id=f"{c['id']}:{chk['kind']}")


@pytest.mark.parametrize("cid,chk,item", list(_paper_checks()))
def test_claim_holds_on_paper_numbers(cid, chk, item):
    """A ledger check evaluated with the paper's own numbers must hold: this validates the
    encoding of the check (selectors, settings, metric keys) and the transcription."""
    df = pn.load(item)
    b_df = pn.load(chk["b_item"]) if "b_item" in chk else df
    combos = [{}]
    for key, values in (chk.get("for_each") or {}).items():
        combos = [{**c, key: v} for c in combos for v in values]
    results = []
    for extra in combos:
        got = _evaluate(chk, df, b_df, extra)
        assert got, (cid, extra, "no paper numbers matched the check's selectors")
        results += got
    assert all(results), (cid, results)


def test_some_claims_evaluate_on_paper_numbers():
    assert len(list(_paper_checks())) >= 25
