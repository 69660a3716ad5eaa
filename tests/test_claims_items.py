"""The claims ledger's second source of uncertainty: intervals over test items, for runs trained once.

The statistics are checked against hand computations (a paired bootstrap redone directly with the
same seed; the Agresti-Min and Wilson intervals in closed form). The ledger is checked on a mock
cluster run: run directories as the workflow lays them out, each with lm-eval results and per-sample
files written as negfree/evaluate/protocols.py writes them (its own ``_sample_row`` and
``summarize``), for the paper configs' single-seed runs, with the paper-table rows of
configs/paper/dft.yaml."""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from negfree.evaluate.local import _sample_row
from negfree.evaluate.protocols import PROTOCOLS, summarize
from negfree.report import items
from negfree.report.claims import (COLUMNS, CONTRADICTED, INCONCLUSIVE, NOT_CHECKABLE, REPRODUCED, SEEDS, TEST_ITEMS,
                                   claims_ledger, main_claims, paper_rows_of)

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = ROOT / "configs/claims.yaml"
SCALE = "test scale: a mock cluster run (per-sample files only)"
Z = 1.959963984540054          # the normal 0.975 quantile


# ----------------------------------------------------------------------------- statistics by hand
def test_paired_bootstrap_matches_a_direct_computation():
    """Two benchmarks of 7 and 5 items (binary and fractional scores): the average over benchmarks of
    a - b, items resampled within each benchmark, both models together, seed 0."""
    a1, b1 = np.array([1, 1, 0, 1, 0, 1, 1.]), np.array([0, 1, 0, 1, 1, 0, 0.])
    a2, b2 = np.array([.9, .2, .6, .4, .7]), np.array([.5, .3, .6, .1, .2])
    n_boot = 500
    rng = np.random.default_rng(0)
    i1 = rng.integers(0, 7, size=(n_boot, 7))
    i2 = rng.integers(0, 5, size=(n_boot, 5))
    direct = ((a1[i1].mean(1) - b1[i1].mean(1)) + (a2[i2].mean(1) - b2[i2].mean(1))) / 2
    want = (((a1.mean() - b1.mean()) + (a2.mean() - b2.mean())) / 2, *np.percentile(direct, [2.5, 97.5]))

    def stat(means):
        return ((means[0][:, 0] - means[0][:, 1]) + (means[1][:, 0] - means[1][:, 1])) / 2
    got = items.bootstrap([np.c_[a1, b1], np.c_[a2, b2]], stat, n_boot=n_boot, seed=0)
    assert got == pytest.approx(want, rel=1e-12)
    # drawing the indices in small row chunks draws the same numbers
    assert items.bootstrap([np.c_[a1, b1], np.c_[a2, b2]], stat, n_boot=n_boot, seed=0, chunk=3 * 14) == \
        pytest.approx(want, rel=1e-12)
    # the same through the ledger's column comparison (a mean of two unit-1 columns, bootstrap by default)
    A = [items.Column("k1", "p", Path("a"), list(range(7)), a1.reshape(-1, 1)),
         items.Column("k2", "p", Path("a"), list(range(5)), a2.reshape(-1, 1))]
    B = [items.Column("k1", "p", Path("b"), list(range(7)), b1.reshape(-1, 1)),
         items.Column("k2", "p", Path("b"), list(range(5)), b2.reshape(-1, 1))]
    old = items.BOOT_N
    try:
        items.BOOT_N = n_boot
        iv = items.compare(A, B)
    finally:
        items.BOOT_N = old
    assert (iv.estimate, iv.low, iv.high) == pytest.approx(want, rel=1e-12) and iv.n_items == 12


def test_binary_intervals_against_their_closed_forms():
    # 60 items: a right and b wrong on 9, the reverse on 3, both right on 30, both wrong on 18
    a = np.array([1] * 9 + [0] * 3 + [1] * 30 + [0] * 18, dtype=float)
    b = np.array([0] * 9 + [1] * 3 + [1] * 30 + [0] * 18, dtype=float)
    d, lo, hi = items.paired_binary_interval(a, b)
    m = 62.0                                      # Agresti-Min: 0.5 added to each of the 4 cells
    p10, p01 = 9.5 / m, 3.5 / m
    half = Z * math.sqrt((p10 + p01 - (p10 - p01) ** 2) / m)
    assert d == pytest.approx(6 / 60) and lo == pytest.approx(p10 - p01 - half, rel=1e-9)
    assert hi == pytest.approx(p10 - p01 + half, rel=1e-9)
    # Wilson: 39 of 60
    p, lo, hi = items.wilson_interval(a)
    centre = (39 / 60 + Z ** 2 / 120) / (1 + Z ** 2 / 60)
    half = Z * math.sqrt(39 / 60 * 21 / 60 / 60 + Z ** 2 / (4 * 3600)) / (1 + Z ** 2 / 60)
    assert p == pytest.approx(0.65) and (lo, hi) == pytest.approx((centre - half, centre + half), rel=1e-9)


# ----------------------------------------------------------------------------- a mock cluster run
def lm_eval_sample(doc_id: int, task: str, filt: str, metric: str, score: float, generate: bool) -> dict:
    """One entry of lm-eval's ``results["samples"][task]`` (log_samples=True), as simple_evaluate returns it."""
    doc = {"question": f"q{doc_id}", "choices": ["a", "b", "c", "d"], "answer": "a"}
    if generate:
        args, resps, filtered = [[f"Q{doc_id}", {"until": ["\n"]}]], [["The answer is 4"]], ["4"]
    else:
        args = [[f"Q{doc_id}", f" {c}"] for c in doc["choices"]]
        resps = [[(-1.0 - k, k == 0)] for k in range(4)]
        filtered = [(-1.0 - k, k == 0) for k in range(4)]
    return {"doc_id": doc_id, "doc": doc, "target": 0, "arguments": args, "resps": resps, "filtered_resps": filtered,
            "filter": filt, "metrics": [metric], metric: score}


def write_protocol_eval(run_dir: Path, protocol: str, scores: dict, limit=None, n_shot: dict | None = None) -> Path:
    """``<run>/eval/<protocol>.json`` and its samples file, as evaluate_protocol writes them: per task
    (a group as {leaf: scores}) the per-item scores of the protocol's metric; every filter lm-eval logs."""
    proto = PROTOCOLS[protocol]
    results_by_call, calls, rows = {}, [], []
    for call in proto.calls:
        res = {"results": {}, "n-samples": {}, "samples": {}}
        shots = {}
        for task, key in call.metrics.items():
            metric, _, filt = key.partition(",")
            leaves = scores[task] if isinstance(scores[task], dict) else {task: scores[task]}
            pooled = []
            for leaf, xs in leaves.items():
                gen = metric == "exact_match"
                filters = ["strict-match", "flexible-extract"] if task == "gsm8k" else [filt]
                res["samples"][leaf] = [lm_eval_sample(i, leaf, f, metric, float(x) if f == filt else 1.0 - float(x), gen)
                                        for f in filters for i, x in enumerate(xs)]
                res["n-samples"][leaf] = {"original": len(xs), "effective": len(xs)}
                res["results"][leaf] = {key: float(np.mean(xs))}
                shots[leaf] = (n_shot or {}).get(task, call.num_fewshot[task])
                pooled += list(xs)
            res["results"][task] = {key: float(np.mean(pooled)), f"{metric}_stderr,{filt}": 0.01}
        results_by_call[call.group] = res
        calls.append({"group": call.group, "apply_chat_template": call.chat_template, "fewshot_as_multiturn": False,
                      "status": "ok", "error": None, "n_shot": shots})
        for task, samples in res["samples"].items():
            rows += [{"call": call.group, **_sample_row(task, s)} for s in samples]
    summary = summarize(proto, results_by_call)
    out = run_dir / "eval" / f"{protocol}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"model": str(run_dir / "final"), "protocol": protocol, "tasks": summary["tasks"],
              "aggregate": summary["aggregate"], "calls": calls, "limit": limit, "seed": 1234,
              "samples": out.with_suffix(".samples.jsonl").name}
    out.with_suffix(".samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out.write_text(json.dumps(record, indent=2))
    return out


def write_run(root: Path, run: str, method: str, seed: int = 0) -> Path:
    d = root / run
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps({"method": method, "seed": seed, "lr": 2e-6}))
    (d / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 1.0}) + "\n")
    return d


OPENLLM = ["arc_challenge", "hellaswag", "truthfulqa_mc2", "mmlu", "winogrande", "gsm8k", "ifeval"]


def openllm_scores(rng, n: int, p: float, flip=None) -> dict:
    """Per task n binary items (TruthfulQA MC2: fractions), MMLU as two leaf tasks; ``flip``: a
    function (task, scores) -> scores that makes the other model."""
    out = {}
    for t in OPENLLM:
        x = (rng.random(n) < p).astype(float) if t != "truthfulqa_mc2" else np.round(rng.random(n), 3)
        out[t] = {"mmlu_abstract_algebra": x[: n // 2], "mmlu_anatomy": x[n // 2:]} if t == "mmlu" else x
    return out


def better(scores: dict, k: int, rng) -> dict:
    """The same items with k more right answers per task (TruthfulQA: +0.2 on k items)."""
    out = {}
    for t, x in scores.items():
        if isinstance(x, dict):
            out[t] = {leaf: v for leaf, v in better(x, k // 2, rng).items()}
            continue
        y = x.copy()
        if t == "truthfulqa_mc2":
            idx = rng.choice(len(y), k, replace=False)
            y[idx] = np.minimum(1.0, y[idx] + 0.2)
        else:
            wrong = np.flatnonzero(y == 0)
            y[rng.choice(wrong, min(k, len(wrong)), replace=False)] = 1.0
        out[t] = y
    return out


def dft_rows(root: Path) -> list[dict]:
    """The paper-table rows of configs/paper/dft.yaml, with the run directories under ``root``."""
    from negfree.jobs.dag import Experiment

    exp = Experiment(yaml.safe_load((ROOT / "configs/paper/dft.yaml").read_text()), "dft.yaml")
    return [{**r, "run_dir": str(root / Path(r["run_dir"]).relative_to(exp.runs_root))} for r in paper_rows_of(exp)]


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory):
    """dft_uf as the cluster leaves it: sft, dft, dft2 trained once, each evaluated under openllm_dft.
    DFT gets 40 more right answers per task than SFT (of 300), DFT2 the same answers as SFT but one."""
    root = tmp_path_factory.mktemp("runs") / "dft_uf"
    rng = np.random.default_rng(7)
    sft = openllm_scores(rng, 300, 0.55)
    dft = better(sft, 40, rng)
    dft2 = {t: ({leaf: v.copy() for leaf, v in x.items()} if isinstance(x, dict) else x.copy()) for t, x in sft.items()}
    dft2["arc_challenge"][np.flatnonzero(dft2["arc_challenge"] == 0)[0]] = 1.0
    for method, scores in (("sft", sft), ("dft", dft), ("dft2", dft2)):
        write_protocol_eval(write_run(root, f"method~{method}", method), "openllm_dft", scores)
    out = tmp_path_factory.mktemp("ledger")
    df = claims_ledger(CLAIMS, root, None, out / "claims.csv", out / "claims.md", SCALE, paper_rows=dft_rows(root))
    return df.set_index("id"), out, root


def test_samples_files_have_the_format_protocols_writes(cluster_run):
    _, _, root = cluster_run
    rec = json.loads((root / "method~sft/eval/openllm_dft.json").read_text())
    rows = [json.loads(x) for x in (root / "method~sft/eval/openllm_dft.samples.jsonl").read_text().splitlines()]
    assert {"call", "task", "doc_id", "id", "filter", "target", "prompt", "response", "filtered_response",
            "metrics"} <= set(rows[0])
    assert {r["filter"] for r in rows if r["task"] == "gsm8k"} == {"strict-match", "flexible-extract"}
    col = items.column(root / "method~sft", "mmlu/acc")[0]          # the group: its two leaves pooled
    assert len(col.ids) == 300 and col.value == pytest.approx(100 * rec["tasks"]["mmlu"]["value"])
    assert len(items.column(root / "method~sft", "avg")) == 7


def test_single_seed_paper_claims_get_test_item_verdicts(cluster_run):
    df, out, _ = cluster_run
    r = df.loc["dft.table2.beats_sft_avg"]       # dft: many items better; dft2: one item on one task
    assert r.verdict == INCONCLUSIVE and r.uncertainty == TEST_ITEMS and r.n_seeds == 1
    assert "over test items only: holds for these trained models" in r.reason
    assert "not training noise" in r.reason and "paired bootstrap" in r.measurement
    r = df.loc["dft.table2.beats_sft_except_mmlu"]   # dft vs sft on 6 benchmarks, 40 items each
    assert r.verdict == REPRODUCED and r.uncertainty == TEST_ITEMS and r.ci_low > 0
    r = df.loc["dft.table2.selfplay_po_not_above_sft"]
    assert r.verdict == NOT_CHECKABLE and "method~spin (the paper-table row of method=spin)" in r.reason
    assert r.uncertainty == ""
    csv = pd.read_csv(out / "claims.csv")
    assert list(csv.columns) == COLUMNS and "uncertainty" in COLUMNS
    judged = csv[csv.verdict.isin([REPRODUCED, CONTRADICTED, INCONCLUSIVE])]
    assert set(judged.uncertainty) <= {SEEDS, TEST_ITEMS, "settings"} and (judged.uncertainty == TEST_ITEMS).sum() >= 2
    md = (out / "claims.md").read_text()
    assert "| empirical verdict | claims | over seeds | over test items | over settings |" in md
    n = int(((csv.verdict == REPRODUCED) & (csv.uncertainty == TEST_ITEMS)).sum())
    assert f"| reproduced | {int((csv.verdict == REPRODUCED).sum())} | 0 | {n} | 0 |" in md
    assert "| dft.table2.beats_sft_avg | inconclusive | test_items |" in md


def test_the_verdict_follows_how_many_items_differ(tmp_path):
    """Two methods on two tasks (GSM8K, ARC), one training seed each: a claim is inconclusive when
    the models differ on 3 items, reproduced when on 60, contradicted the other way round."""
    claims = tmp_path / "claims.yaml"
    claims.write_text(yaml.safe_dump({"version": 1, "claims": [{
        "id": "dft.test.two_tasks", "paper": "dft", "statement": "DFT beats SFT on GSM8K and ARC.",
        "source": "dft.txt Table 2", "needs": {"targets": ["dft/table2"], "runs": ["sft", "dft"]},
        "check": {"kind": "compare", "metrics": ["gsm8k/exact_match,strict-match", "arc_challenge/acc_norm"],
                  "a": {"method": "dft"}, "b": {"method": "sft"}, "expect": "a > b"}}]}))
    rng = np.random.default_rng(3)
    base = {t: (rng.random(400) < 0.5).astype(float) for t in OPENLLM}
    base["mmlu"] = {"mmlu_anatomy": base["mmlu"]}

    def ledger(k_up: int, k_down: int, name: str):
        root = tmp_path / name
        other = {t: (x.copy() if not isinstance(x, dict) else x) for t, x in base.items()}
        for t in ("gsm8k", "arc_challenge"):
            wrong, right = np.flatnonzero(base[t] == 0), np.flatnonzero(base[t] == 1)
            other[t][wrong[:k_up]] = 1.0
            other[t][right[:k_down]] = 0.0
        write_protocol_eval(write_run(root, "method~sft", "sft"), "openllm_dft", base)
        write_protocol_eval(write_run(root, "method~dft", "dft"), "openllm_dft", other)
        df = claims_ledger(claims, root, None, tmp_path / f"{name}.csv", tmp_path / f"{name}.md", SCALE)
        return df.set_index("id").loc["dft.test.two_tasks"]

    few = ledger(3, 0, "few")
    assert few.verdict == INCONCLUSIVE and few.uncertainty == TEST_ITEMS and few.ci_low < 0 < few.ci_high
    assert "Agresti-Min paired interval over the 400 test items" in few.measurement
    # by hand: 3 of 400 items a right and b wrong, none the reverse, in percent
    m = 402
    p10, p01 = 3.5 / m, 0.5 / m
    half = Z * math.sqrt((p10 + p01 - (p10 - p01) ** 2) / m)
    assert few.estimate == pytest.approx(0.75) and few.ci_low == pytest.approx(100 * (p10 - p01 - half), rel=1e-5)
    many = ledger(60, 0, "many")
    assert many.verdict == REPRODUCED and many.uncertainty == TEST_ITEMS and many.ci_low > 0
    worse = ledger(0, 60, "worse")
    assert worse.verdict == CONTRADICTED and worse.ci_high < 0


def test_three_seeds_are_judged_over_seeds(cluster_run, tmp_path):
    """Replicates (method~X/seed~S, evaluated as configs/seeds.yaml makes them) move the verdict to seeds."""
    import shutil

    _, _, src = cluster_run
    root = tmp_path / "dft_uf"
    shutil.copytree(src, root)
    rng = np.random.default_rng(11)
    for method, p in (("sft", 0.50), ("dft", 0.60)):
        for seed in (1, 2):
            write_protocol_eval(write_run(root, f"method~{method}/seed~{seed}", method, seed), "openllm_dft",
                                openllm_scores(rng, 300, p))
    df = claims_ledger(CLAIMS, root, None, tmp_path / "c.csv", tmp_path / "c.md", SCALE,
                       paper_rows=dft_rows(root)).set_index("id")
    r = df.loc["dft.table2.beats_sft_except_mmlu"]
    assert r.uncertainty == SEEDS and r.n_seeds == 3 and "3 seeds paired by seed" in r.measurement
    assert "over test items only" not in r.reason
    r = df.loc["dft.table2.beats_sft_avg"]        # dft2 has one seed: its part stays over test items
    assert set(r.uncertainty.split("+")) == {SEEDS, TEST_ITEMS}


def test_paper_values_within_tolerance_and_refused_where_protocols_differ(cluster_run, tmp_path):
    df, _, root = cluster_run
    r = df.loc["dft.table2.value_sft"]
    assert r.verdict in (CONTRADICTED, INCONCLUSIVE, REPRODUCED) and r.uncertainty == TEST_ITEMS
    assert "the paper's 61.79 +- 1" in r.measurement and "bootstrap" in r.measurement
    ours = np.mean([c.value for c in items.column(root / "method~sft", "avg")])
    assert r.estimate == pytest.approx(ours, rel=1e-5)
    # the mock scores are far from the paper's: the whole interval lies outside the band
    assert (r.ci_high < 61.79 - 1 or r.ci_low > 61.79 + 1) == (r.verdict == CONTRADICTED)
    # a subset of the items, or another shot count: no verdict, and the reason says which
    rng = np.random.default_rng(5)
    for name, kw, why in (("limit", {"limit": 100}, "first 100 items"),
                          ("shots", {"n_shot": {"gsm8k": 8}}, "a different shot count on gsm8k: ours [8], the paper's 5")):
        d = tmp_path / name
        write_protocol_eval(write_run(d, "method~sft", "sft"), "openllm_dft", openllm_scores(rng, 100, 0.6), **kw)
        got = claims_ledger(CLAIMS, d, None, tmp_path / f"{name}.csv", tmp_path / f"{name}.md", SCALE,
                            paper_rows=dft_rows(d)).set_index("id").loc["dft.table2.value_sft"]
        assert got.verdict == NOT_CHECKABLE and "the protocols differ" in got.reason and why in got.reason, got.reason


def test_cli_reads_the_paper_rows(cluster_run, tmp_path, capsys):
    _, _, root = cluster_run
    main_claims(["--claims", str(CLAIMS), "--runs-root", str(root), "--frozen-lake", str(tmp_path / "none"),
                 "--scale", SCALE, "--out-csv", str(tmp_path / "c.csv"), "--out-md", str(tmp_path / "c.md"),
                 "--paper-rows", json.dumps(dft_rows(root))])
    got = pd.read_csv(tmp_path / "c.csv").set_index("id")
    assert got.loc["dft.table2.beats_sft_except_mmlu", "uncertainty"] == TEST_ITEMS
    assert "test_items" in capsys.readouterr().out


def test_paper_rows_of_the_dft_config_name_the_runs():
    rows = dft_rows(Path("/r"))
    t2 = {r["method"]: r["run_dir"] for r in rows if r["item"] == "dft/table2"}
    assert t2["dft"] == "/r/method~dft" and t2["kto"].startswith("/r/method~kto/lr~5e-06/num_negatives~2")
    g = [r for r in rows if r["item"] == "dft/table8_fig2b" and r["setting"] == "gamma=0.85"]
    assert {r["run_dir"] for r in g} == {"/r/method~dft"}      # the sweep point is the main run (an alias)


# ----------------------------------------------------------------------------- other per-item sources
def test_textsim_per_item_scores_recompute_the_corpus_scores(tmp_path):
    from negfree.evaluate.textsim import score

    preds = ["the cat sat on the mat", "a dog runs fast today", "hello there friend", "it rains in spring here"]
    refs = ["the cat sat on a mat", "the dog runs quickly today", "hello there my friend", "it rains in spring"]
    out = tmp_path / "method~asft/eval/textsim.json"
    out.parent.mkdir(parents=True)
    out.with_suffix(".predictions.jsonl").write_text("".join(
        json.dumps({"i": i, "prediction": p, "reference": r, "n_tokens": 5}) + "\n" for i, (p, r) in enumerate(zip(preds, refs))))
    scores = score(preds, refs)
    out.write_text(json.dumps({"protocol": "textsim_alpaca_en", "scores": scores, "n": 4,
                               "predictions": out.with_suffix(".predictions.jsonl").name}))
    for m in ("bleu4", "rouge1", "rougeL"):
        col = items.column(tmp_path / "method~asft", m)[0]
        assert col.value == pytest.approx(scores[m], rel=1e-9) and len(col.ids) == 4


def test_judged_win_rates_use_the_judges_per_item_preferences(tmp_path):
    out = tmp_path / "method~ift/eval/alpaca_eval2.json"
    out.parent.mkdir(parents=True)
    prefs = [2.0, 1.0, 2.0, 2.0, 1.0]
    out.with_suffix(".annotations.json").write_text(json.dumps(
        [{"instruction": f"i{k}", "preference": p} for k, p in enumerate(prefs)]))
    out.write_text(json.dumps({"protocol": "alpaca_eval2", "annotator": "negfree_local_loglik", "n": 5,
                               "annotations": out.with_suffix(".annotations.json").name}))
    col = items.column(tmp_path / "method~ift", "alpacaeval2/win_rate")[0]
    assert col.value == pytest.approx(60.0) and col.binary
    with pytest.raises(items.NoItems, match="length control"):
        items.column(tmp_path / "method~ift", "alpacaeval2/lc_win_rate")


def test_the_offline_twin_comparisons_are_shown_labelled(tmp_path):
    """The demo's seed-based ledger gains a labelled section of test-item comparisons on the offline twin."""
    root = tmp_path / "demo"
    rng = np.random.default_rng(2)
    for method in ("sft", "dft"):
        d = write_run(root, f"method~{method}", method)
        out = d / "eval/negfree_offline.json"
        out.parent.mkdir()
        rows, tasks = [], {}
        for task, metric, filt in (("negfree_mc", "acc", "none"), ("negfree_gen", "exact_match", "strict-match")):
            x = (rng.random(32) < (0.3 if method == "sft" else 0.9)).astype(float)
            rows += [_sample_row(task, lm_eval_sample(i, task, filt, metric, v, task == "negfree_gen"))
                     for i, v in enumerate(x)]
            tasks[task] = {f"{metric},{filt}": float(x.mean())}
        out.with_suffix(".samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        out.write_text(json.dumps({"protocol": "negfree_offline", "tasks": tasks,
                                   "n_samples": {t: {"effective": 32} for t in tasks}}))
    claims_ledger(CLAIMS, root, None, tmp_path / "c.csv", tmp_path / "c.md", SCALE)
    md = (tmp_path / "c.md").read_text()
    assert "## Offline twin: test-item comparisons (shown, not claims)" in md
    assert "| dft - sft | negfree_mc acc (%) |" in md and "dft higher" in md
    csv = pd.read_csv(tmp_path / "c.csv")
    assert not csv.id.str.contains("offline").any()      # shown, never a claim's row


# ----------------------------------------------------------------------------- the seeds preset
def test_seeds_preset_trains_and_evaluates_the_headline_runs():
    from negfree.jobs.dag import ConfigError, Dag

    demo = yaml.safe_load((ROOT / "configs/demo.yaml").read_text())
    demo["replicates"] = {"seeds": [0, 1, 2], "methods": ["sft", "simpo"]}       # trained only
    preset = {"seeds": [0, 1, 2], "runs": {"demo": ["sft", "dft"], "not_loaded": ["x"]}}
    exp = Dag({**demo, "seeds": preset}, ROOT).experiments["demo"]
    assert exp.evaluated_replicates == ["method~sft/seed~1", "method~sft/seed~2", "method~dft/seed~1",
                                        "method~dft/seed~2"]
    ev = exp.evaluated_runs()
    assert set(exp.evaluated_replicates) <= set(ev) and not {"method~simpo/seed~1", "method~simpo/seed~2"} & set(ev)
    assert exp.run_specs["method~dft/seed~2"]["train"]["seed"] == 2
    for bad, msg in (({"seeds": [0, 1], "runs": {"demo": ["kto"]}}, r"seeds preset.methods: \['kto'\] not among"),
                     ({"seeds": [], "runs": {"demo": ["sft"]}}, "seeds.seeds"),
                     ({"seeds": [1], "methods": ["sft"]}, "seeds: a mapping")):
        with pytest.raises(ConfigError, match=msg):
            Dag({**demo, "seeds": bad}, ROOT)


def test_the_seeds_preset_names_the_paper_configs_headline_runs():
    """configs/seeds.yaml with configs/papers.yaml (as `--configfile configs/papers.yaml configs/seeds.yaml`
    merges them): every experiment it names is loaded and gets its 3 seeds."""
    from negfree.jobs.dag import Dag

    preset = yaml.safe_load((ROOT / "configs/seeds.yaml").read_text())
    dag = Dag({**yaml.safe_load((ROOT / "configs/papers.yaml").read_text()), **preset}, ROOT)
    assert set(preset["seeds"]["runs"]) <= set(dag.experiments)
    papers = {dag.experiments[e].paper() for e in preset["seeds"]["runs"]}
    assert papers == {"dft", "ift", "asft", "bnf"}
    for name, methods in preset["seeds"]["runs"].items():
        assert dag.experiments[name].evaluated_replicates == [f"method~{m}/seed~{s}" for m in methods for s in (1, 2)]
    assert {"dft", "sft"} <= set(preset["seeds"]["runs"]["dft_uf"])
    assert {"ift", "sft", "dpo"} <= set(preset["seeds"]["runs"]["ift_base_uf"])
    assert {"asft", "dpo", "orpo"} <= set(preset["seeds"]["runs"]["asft_llama3_uf"])
    assert {"bnf", "dpo", "simpo"} <= set(preset["seeds"]["runs"]["bnf_llama3_main"])


def test_plan_prints_the_seeds_preset_cost_per_paper(capsys):
    import argparse

    from negfree.jobs.dag import Dag
    from negfree.jobs.plan import main, seeds_preset_cost
    from negfree.jobs.resources import jobs_of

    args = dict(directory=str(ROOT), configfile=None, gpu=None, json=False, by_paper=False)
    assert main(argparse.Namespace(**args)) == 0
    text = capsys.readouterr().out
    tail = text[text.index("seeds preset (configs/seeds.yaml"):]
    assert "not included above" in tail
    cfg = yaml.safe_load((ROOT / "configs/papers.yaml").read_text())
    preset = yaml.safe_load((ROOT / "configs/seeds.yaml").read_text())
    cost = seeds_preset_cost(cfg, preset, ROOT)
    assert set(cost) == {"dft", "ift", "asft", "bnf"}
    for paper, p in cost.items():
        line = next(ln for ln in tail.splitlines() if ln.split()[:1] == [paper])
        assert line.split()[1:5] == [str(p["runs"]), str(p["jobs"]), f"{p['gpu_hours']:.1f}",
                                     f"{p['train_gpu_hours']:.1f}"]
        assert p["runs"] == 3 * 2 * len(p["experiments"]) and p["jobs"] >= 2 * p["runs"]   # train + evaluate each
    # planned with the preset, the DAG's GPU-hours are those without it plus the preset's
    with_preset = sum(j.est_gpu_hours for j in jobs_of(Dag({**cfg, **preset}, ROOT)))
    without = sum(j.est_gpu_hours for j in jobs_of(Dag(cfg, ROOT)))
    assert with_preset - without == pytest.approx(sum(p["gpu_hours"] for p in cost.values()), abs=0.5)
    assert main(argparse.Namespace(**{**args, "seeds": "configs/seeds.yaml"})) == 0
    assert "trained and evaluated; included above)" in capsys.readouterr().out


def test_bleu_rouge_ordering_across_two_experiments_and_the_base_model(tmp_path):
    """asft.txt Table 3 (ASFT > ORPO > SFT = the untrained instruct model, on BLEU-4 and ROUGE-1/2/L, on
    HH-RLHF and UltraFeedback): two experiments, read through both configs' paper_tables rows from one
    experiment's ledger; textsim's per-item scores; the base model is one of the sides."""
    from negfree.evaluate.textsim import score
    from negfree.jobs.dag import Experiment

    rng = np.random.default_rng(4)
    words = "the a cat dog sat ran on in mat park today quickly slowly red blue big small".split()
    refs = [" ".join(rng.choice(words, 12)) for _ in range(60)]

    def answer(ref: str, keep: float) -> str:
        return " ".join(w if rng.random() < keep else str(rng.choice(words)) for w in ref.split())

    rows = []
    for cfg_file, exp_name in (("asft.yaml", "asft_llama3_uf"), ("asft_hh.yaml", "asft_llama3_hh")):
        exp = Experiment(yaml.safe_load((ROOT / "configs/paper" / cfg_file).read_text()), cfg_file)
        root = tmp_path / exp_name
        rows += [{**r, "run_dir": str(root / Path(r["run_dir"]).relative_to(exp.runs_root))} for r in paper_rows_of(exp)]
        for run, keep in (("base~meta-llama-3-8b-instruct", 0.2), ("method~orpo", 0.6), ("method~asft", 0.95)):
            d = write_run(root, run, run.split("~")[1]) if run.startswith("method") else root / run
            out = d / "eval/textsim.json"
            out.parent.mkdir(parents=True)
            preds = [answer(r, keep) for r in refs]
            out.with_suffix(".predictions.jsonl").write_text("".join(
                json.dumps({"i": i, "prediction": p, "reference": r, "n_tokens": 12}) + "\n"
                for i, (p, r) in enumerate(zip(preds, refs))))
            out.write_text(json.dumps({"protocol": "textsim_alpaca_en", "scores": score(preds, refs), "n": 60,
                                       "predictions": out.with_suffix(".predictions.jsonl").name}))
    df = claims_ledger(CLAIMS, tmp_path / "asft_llama3_uf", None, tmp_path / "c.csv", tmp_path / "c.md", SCALE,
                       paper_rows=rows).set_index("id")
    r = df.loc["asft.table3.beats_orpo_and_sft"]
    assert r.verdict == REPRODUCED and r.uncertainty == TEST_ITEMS, (r.verdict, r.reason, r.measurement[:500])
    assert "asft_llama3_hh/method~asft" in r.measurement and "base~meta-llama-3-8b-instruct" in r.measurement
    assert "bleu4 (textsim_alpaca_en/bleu4)" in r.measurement


def test_argmax_over_a_sweep_judges_the_winner_against_each_printed_value(cluster_run, tmp_path):
    """dft.txt Table 12 (T = 0.7 best of 0, 0.3, 0.7, 1.0): the winner against each other value, over test
    items. Fig. 7 prints 2 of its 4 strategies: the best of all four is not judged on the two."""
    import shutil

    _, _, src = cluster_run
    root = tmp_path / "dft_uf"
    shutil.copytree(src, root)
    sft = items.column(root / "method~sft", "avg")            # reuse SFT's items: a worse model than DFT
    scores = {}
    for c in sft:
        task = c.source.split("/")[1]
        x = c.values[:, 0].copy()
        scores[task] = {"mmlu_abstract_algebra": x[:150], "mmlu_anatomy": x[150:]} if task == "mmlu" else x
    for run in ("method~dft/temperature~0.0", "method~dft/temperature~0.3", "method~dft/temperature~1.0",
                "method~dft/strategy~chat_good"):
        write_protocol_eval(write_run(root, run, "dft"), "openllm_dft", scores)
    df = claims_ledger(CLAIMS, root, None, tmp_path / "c.csv", tmp_path / "c.md", SCALE,
                       paper_rows=dft_rows(root)).set_index("id")
    r = df.loc["dft.table12.temperature_07_best"]
    assert r.verdict == REPRODUCED and r.uncertainty == TEST_ITEMS and "argmax over T = 0.7 against [0.0, 0.3, 1.0]" \
        in r.measurement
    r = df.loc["dft.fig7.adversarial_system_prompt_best"]
    assert r.verdict == NOT_CHECKABLE and "direct, chat of the paper's values" in r.reason
    assert "have no paper-table row (no printed number)" in r.reason


def test_a_judged_claim_is_judged_only_with_the_papers_judge(tmp_path):
    """The hook for judged benchmarks: AlpacaEval 2's plain win rate per item is the judge's preference;
    two models judged against the same reference are paired by instruction. The offline stand-in
    judge gives no verdict; GPT-4 Turbo's preferences do (over test items)."""
    claims = tmp_path / "claims.yaml"
    claims.write_text(yaml.safe_dump({"version": 1, "claims": [{
        "id": "ift.test.judged", "paper": "ift", "statement": "IFT wins more often than SFT on AlpacaEval 2.",
        "source": "ift.txt Table 2", "needs": {"targets": ["ift/table2"], "runs": ["sft", "ift"]}, "requires": ["judge"],
        "check": {"kind": "compare", "metric": "alpacaeval2/win_rate", "a": {"method": "ift"}, "b": {"method": "sft"},
                  "expect": "a > b"}}]}))
    rng = np.random.default_rng(1)
    wins = {"sft": (rng.random(805) < 0.10), "ift": None}
    wins["ift"] = wins["sft"] | (rng.random(805) < 0.15)

    def ledger(annotator):
        root = tmp_path / annotator
        for m, w in wins.items():
            out = write_run(root, f"method~{m}", m) / "eval/alpaca_eval2.json"
            out.parent.mkdir()
            out.with_suffix(".annotations.json").write_text(json.dumps(
                [{"instruction": f"instruction {k}", "preference": 2.0 if x else 1.0} for k, x in enumerate(w)]))
            out.write_text(json.dumps({"protocol": "alpaca_eval2", "annotator": annotator, "n": 805,
                                       "annotations": out.with_suffix(".annotations.json").name}))
        return claims_ledger(claims, root, None, tmp_path / "c.csv", tmp_path / "c.md", SCALE).set_index("id").iloc[0]

    r = ledger("weighted_alpaca_eval_gpt4_turbo")
    assert r.verdict == REPRODUCED and r.uncertainty == TEST_ITEMS and "805 test items" in r.measurement
    r = ledger("negfree_local_loglik")
    assert r.verdict == NOT_CHECKABLE and "needs a paid LLM judge" in r.reason
    assert "judged by negfree_local_loglik, not AlpacaEval 2's GPT-4 Turbo judge" in r.reason
