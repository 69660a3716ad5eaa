"""Training-log figures and the claims ledger, on real runs of the trainer on the tiny model.

The runs are short (3 steps) but real: every number the figures and the ledger use is
read back here from the run files and compared with what they wrote."""
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from negfree.report.claims import (COLUMNS, CONTRADICTED, INCONCLUSIVE, MIN_SEEDS, NOT_CHECKABLE, REPRODUCED,
                                   VERIFIED, band_verdict, claims_ledger, combine, Judged, sign_verdict, t_interval)
from negfree.report.training import training_figures
from negfree.toy.frozen_lake import run_frozen_lake
from negfree.train.loop import train

ROOT = Path(__file__).resolve().parents[1]
SCALE = "test scale: tiny random Llama, 8 prompts, 3 steps, CPU"
# method -> lr (minorsft.txt Fig. 1: SFT at 1e-5, SFT-using-DPO and MinorSFT at 2e-5)
METHODS = {"sft": 1e-5, "dft": 1e-3, "dft2": 1e-3, "simpo": 1e-3, "sft_dpo": 2e-5, "minorsft": 2e-5,
           "asft": 1e-3, "orpo": 1e-3, "dpo": 1e-3}


SEEDED = ("sft", "dft", "simpo", "asft", "orpo", "minorsft", "sft_dpo")   # the training-dynamics claims' methods


def _train(tiny_model_dir, data, out_dir, method, seed=0, **kw):
    train({"method": method, "model": str(tiny_model_dir), "data": str(data), "out_dir": str(out_dir),
           "batch_size": 4, "micro_batch_size": 4, "max_steps": 3, "epochs": 2, "num_negatives": 2, "max_len": 96,
           "lr": METHODS[method], "scheduler": "constant", "warmup_ratio": 0.0, "seed": seed, **kw})


@pytest.fixture(scope="module")
def scored(scored_pool, tmp_path_factory):
    """12 records with pools of 3 negatives (B = 2 draws from them per seed), scored."""
    return scored_pool(tmp_path_factory.mktemp("training_report"), n=12, negatives=3)


@pytest.fixture(scope="module")
def runs_root(tiny_model_dir, scored):
    root = scored.parent / "runs"
    for method in METHODS:
        _train(tiny_model_dir, scored, root / f"method~{method}", method)
    return root


@pytest.fixture(scope="module")
def seeded_root(tiny_model_dir, scored):
    """Seeds 0-2 of the dynamics methods (the workflow's replicates: method~M/seed~S), one seed of the others,
    every run with a held-out probe set of 4 records measured at every step."""
    root = scored.parent / "seeded"
    for method in METHODS:
        for seed in (0, 1, 2) if method in SEEDED else (0,):
            _train(tiny_model_dir, scored, root / (f"method~{method}" + (f"/seed~{seed}" if seed else "")), method,
                   seed, probe_records=4)
    return root


def rows(run_dir, name="metrics.jsonl"):
    return [json.loads(x) for x in (run_dir / name).read_text().splitlines()]


@pytest.fixture(scope="module")
def figures(runs_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("figs")
    training_figures(runs_root, out, SCALE)
    return out


def test_figures_exist_and_csvs_hold_the_logged_numbers(figures, runs_root):
    for key in ("dft/fig3", "dft/fig4", "minorsft/fig1", "asft/fig2"):
        for ext in ("png", "pdf", "csv"):
            assert (figures / f"{key}.{ext}").stat().st_size > 0, (key, ext)
    fig3 = pd.read_csv(figures / "dft/fig3.csv")
    for method in ("dft", "sft", "simpo"):
        logged = rows(runs_root / f"method~{method}")
        got = fig3[(fig3.method == method) & (fig3.series == "logp_pos_per_token")]
        assert list(got.step) == [r["step"] for r in logged] == [1, 2, 3]
        assert list(got.value) == [r["logp_pos_per_token"] for r in logged]   # exact, not approx
    neg = fig3[(fig3.method == "dft") & (fig3.series == "logp_neg_per_token")]
    assert list(neg.value) == [r["logp_neg_per_token"] for r in rows(runs_root / "method~dft")]
    # SFT trains without negatives: its missing negative curve is named, not drawn
    note = fig3[(fig3.method == "sft") & (fig3.series == "logp_neg_per_token")].note
    assert note.str.startswith("missing").all() and len(note) == 1

    dev = pd.read_csv(figures / "minorsft/fig1.csv")
    for method in ("sft", "sft_dpo", "minorsft"):
        got = dev[(dev.method == method) & (dev.series == "deviation")]
        assert list(got.value) == [r["deviation"] for r in rows(runs_root / f"method~{method}")]

    fig2 = pd.read_csv(figures / "asft/fig2.csv")
    for method in ("asft", "orpo"):
        got = fig2[(fig2.method == method) & (fig2.series == "a:likelihood_margin")]
        assert list(got.value) == [r["likelihood_margin"] for r in rows(runs_root / f"method~{method}")]
    fig4 = pd.read_csv(figures / "dft/fig4.csv")
    for method in METHODS:
        t = json.loads((runs_root / f"method~{method}/timing.json").read_text())
        got = fig4[fig4.method == method].set_index("series").value
        assert got["timing_seconds_per_step"] == t["seconds_per_step"]
        assert got["timing_peak_memory_mb"] == t["peak_memory_mb"]
        perf = rows(runs_root / f"method~{method}", "perf.jsonl")
        assert got["perf_max_peak_memory_mb"] == max(p["peak_memory_mb"] for p in perf)
    # the paper's two-stage SFT->DPO has no run: named, with no number
    miss = fig4[fig4.method == "sft->dpo"]
    assert len(miss) == 1 and miss.note.iloc[0].startswith("missing") and pd.isna(miss.value.iloc[0])


def test_figures_are_byte_reproducible_and_missing_methods_are_named(runs_root, figures, tmp_path):
    again = tmp_path / "again"
    training_figures(runs_root, again, SCALE)
    for key in ("dft/fig3", "minorsft/fig1"):
        for ext in ("png", "pdf", "csv"):
            assert (again / f"{key}.{ext}").read_bytes() == (figures / f"{key}.{ext}").read_bytes(), (key, ext)
    # with only two runs, the others are named as missing in the CSVs
    only = tmp_path / "only"
    training_figures([runs_root / "method~sft", runs_root / "method~dft"], only, SCALE)
    fig2 = pd.read_csv(only / "asft/fig2.csv")
    assert set(fig2.method) == {"asft", "orpo", "dpo"} and fig2.note.str.startswith("missing").all()
    assert fig2.value.isna().all()


def _timed_run(d, method, seconds_per_step, steps, processes=8):
    """A run directory as the trainer leaves it, reduced to what Fig. 4 reads (timing.json)."""
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"method": method, "lr": 1e-6}))
    (d / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 1.0}) + "\n")
    (d / "timing.json").write_text(json.dumps({
        "method": method, "steps": steps, "steps_this_session": steps, "wall_seconds": seconds_per_step * steps,
        "seconds_per_step": seconds_per_step, "peak_memory_mb": 1000.0, "processes": processes}))


def test_dft_fig4_pipeline_bar_is_the_sum_of_its_two_stages(tmp_path):
    """dft.txt A.4: SFT->DPO and SFT->SimPO cost an SFT phase (2 epochs) plus a PO phase (1 epoch); the
    starting run is found by the pipeline's path (init~sft, or init~<experiment>.sft in another root)."""
    from negfree.report.runs import find_runs
    from negfree.report.training import dft_fig4

    runs = tmp_path / "runs"
    root = runs / "dft_uf"
    _timed_run(root / "method~sft", "sft", 2.0, 1800)                              # 1 h
    _timed_run(root / "method~dft", "dft", 3.0, 2400)                              # 2 h
    _timed_run(root / "method~dft/gamma~0.9", "dft", 9.0, 2400)                    # a sweep point: no bar
    _timed_run(root / "method~dpo/init~sft/strategy~pair", "dpo", 1.8, 1000)       # 0.5 h
    _timed_run(root / "method~dpo/init~sft/negatives~base", "dpo", 3.6, 1000)      # 1 h
    _timed_run(root / "method~simpo/init~sft/strategy~pair", "simpo", 0.9, 2000)   # 0.5 h
    df = dft_fig4(find_runs(root), tmp_path / "fig/fig4.png", SCALE)
    assert (tmp_path / "fig/fig4.png").stat().st_size > 0
    total = df[df.series == "total_train_hours"].set_index("run").value.astype(float)
    assert total["method~dpo/init~sft/strategy~pair"] == pytest.approx(1.5)
    assert total["method~dpo/init~sft/negatives~base"] == pytest.approx(2.0)
    assert total["method~simpo/init~sft/strategy~pair"] == pytest.approx(1.5)
    assert total["method~dft"] == pytest.approx(2.0) and total["method~sft"] == pytest.approx(1.0)
    assert "method~dft/gamma~0.9" not in total.index                               # Fig. 4 compares methods
    pairs = df[df.run == "method~dpo/init~sft/strategy~pair"].set_index("series").value.astype(float)
    assert pairs["stage1_train_hours"] == pytest.approx(1.0) and pairs["stage2_train_hours"] == pytest.approx(0.5)
    assert pairs["total_gpu_hours"] == pytest.approx(1.5 * 8)
    assert not df[df.method.isin(["sft->dpo", "sft->simpo"])].note.str.startswith("missing").any()

    # a pipeline from another experiment's SFT (ift.yaml: init ift_uc.sft) reads that experiment's run
    _timed_run(runs / "ift_uc/method~sft", "sft", 4.0, 900)                       # 1 h
    _timed_run(runs / "ift_base_uf/method~dpo/init~ift_uc.sft", "dpo", 1.8, 1000)  # 0.5 h
    df = dft_fig4(find_runs(runs / "ift_base_uf"), tmp_path / "ift/fig4.png", SCALE)
    got = df[(df.method == "sft->dpo") & (df.series == "total_train_hours")]
    assert got.value.astype(float).tolist() == [pytest.approx(1.5)]
    # a starting run without timing.json: named, no number
    (runs / "ift_uc/method~sft/timing.json").unlink()
    dft_fig4(find_runs(runs / "ift_base_uf"), tmp_path / "ift2/fig4.png", SCALE)
    df = pd.read_csv(tmp_path / "ift2/fig4.csv")
    got = df[(df.method == "sft->dpo") & (df.series == "total_train_hours")]
    assert len(got) == 1 and got.note.iloc[0].startswith("missing") and "ift_uc/method~sft" in got.note.iloc[0]
    assert pd.isna(got.value.iloc[0])


def _fake_run(d, method, values):
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps({"method": method, "lr": METHODS[method]}))
    (d / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "deviation": v}) + "\n"
                                             for s, v in enumerate(values, 1)))


@pytest.mark.parametrize("ran", [("sft",), ("sft", "minorsft"), ("sft", "sft_dpo", "minorsft")])
def test_minorsft_fig1_names_the_methods_that_did_not_run(tmp_path, monkeypatch, ran):
    """The demo trains SFT only: the figure says which of the paper's three methods it draws and
    which did not run at this scale, from the runs it finds (nothing hard-coded, nothing filled in)."""
    from negfree.report import training
    from negfree.report.runs import find_runs

    for i, m in enumerate(ran):
        _fake_run(tmp_path / "runs" / f"method~{m}", m, [0.1 * i, 0.2 * i])
    texts = []
    monkeypatch.setattr(training, "save_figure", lambda fig, png: texts.extend(
        t.get_text() for t in fig.findobj(match=lambda o: hasattr(o, "get_text"))))
    df = training.minorsft_fig1(find_runs(tmp_path / "runs"), tmp_path / "fig1.png", SCALE)
    title = next(t for t in texts if t.startswith("minorsft.txt Fig. 1"))
    assert f"drawn: {', '.join(ran)}" in title
    not_run = [m for m in ("sft", "sft_dpo", "minorsft") if m not in ran]
    if not_run:
        assert f"not run at this scale: {', '.join(not_run)}" in title
    else:
        assert "not run" not in title
    drawn = df[df.value.astype(str) != ""]
    assert set(drawn.method) == set(ran)        # the absent methods are rows with a note, no number
    assert set(df.method) - set(drawn.method) == set(not_run)


@pytest.fixture(scope="module")
def frozen_lake(tmp_path_factory):
    """A short real Frozen Lake run (3 seeds, 15 steps) of the four methods ift.txt Fig. 3 compares."""
    out = tmp_path_factory.mktemp("frozen_lake")
    run_frozen_lake(out, methods=["sft", "ift", "dpo", "orpo"], seeds=3, steps=15, episodes=40, eval_every=5)
    return out


@pytest.fixture(scope="module")
def ledger(seeded_root, frozen_lake, tmp_path_factory):
    out = tmp_path_factory.mktemp("ledger")
    df = claims_ledger(ROOT / "configs/claims.yaml", seeded_root, frozen_lake, out / "claims.csv", out / "claims.md",
                       SCALE)
    return df.set_index("id"), out


def probe(root, method, seed):
    return rows(root / (f"method~{method}" + (f"/seed~{seed}" if seed else "")), "probe.jsonl")


def by_rule(lo, hi, want_negative):
    if (hi < 0) if want_negative else (lo > 0):
        return REPRODUCED
    return CONTRADICTED if ((lo > 0) if want_negative else (hi < 0)) else INCONCLUSIVE


def r6(x):
    return float(f"{x:.6g}")


def test_statistics_against_closed_forms():
    # t interval of [1, 2, 3]: mean 2, sd 1, t_{0.975, 2} = 4.302652729749464
    m, lo, hi = t_interval([1.0, 2.0, 3.0])
    half = 4.302652729749464 / 3 ** 0.5
    assert m == 2.0 and lo == pytest.approx(2 - half, rel=1e-9) and hi == pytest.approx(2 + half, rel=1e-9)
    assert sign_verdict(-3, -1, True) == REPRODUCED and sign_verdict(1, 3, True) == CONTRADICTED
    assert sign_verdict(-1, 1, True) == INCONCLUSIVE and sign_verdict(1, 3, False) == REPRODUCED
    assert band_verdict(-0.1, 0.1, -0.2, 0.2) == REPRODUCED and band_verdict(0.3, 0.5, -0.2, 0.2) == CONTRADICTED
    assert band_verdict(0.1, 0.5, -0.2, 0.2) == INCONCLUSIVE
    # one contradicted part contradicts; a missing part leaves a claim open; all reproduced -> reproduced
    parts = [Judged(REPRODUCED, "a", slack=1.0), Judged(CONTRADICTED, "b"), Judged(NOT_CHECKABLE, "c", "why")]
    assert combine(parts).verdict == CONTRADICTED and combine(parts[::2]).verdict == NOT_CHECKABLE
    assert combine([Judged(REPRODUCED, slack=2.0, estimate=1), Judged(REPRODUCED, slack=0.5, estimate=2)]).estimate == 2


def test_ledger_has_kinds_seeds_and_intervals(ledger):
    df, out = ledger
    claims = yaml.safe_load((ROOT / "configs/claims.yaml").read_text())["claims"]
    assert list(df.index) == [c["id"] for c in claims]
    csv = pd.read_csv(out / "claims.csv")
    assert list(csv.columns) == COLUMNS
    impl, emp = df[df.kind == "implementation"], df[df.kind == "empirical"]
    assert len(impl) == 12 and (impl.verdict == VERIFIED).all()
    assert set(emp.verdict) <= {REPRODUCED, CONTRADICTED, INCONCLUSIVE, NOT_CHECKABLE}
    judged = emp[emp.verdict != NOT_CHECKABLE]
    assert len(judged) >= 5 and (judged.n_seeds >= MIN_SEEDS).all()
    assert (judged.ci_low <= judged.estimate).all() and (judged.estimate <= judged.ci_high).all()
    assert (emp[emp.verdict == NOT_CHECKABLE].reason.str.len() > 0).all()
    md = (out / "claims.md").read_text()
    for v in (REPRODUCED, CONTRADICTED, INCONCLUSIVE, NOT_CHECKABLE):
        assert f"| {v} | {int((emp.verdict == v).sum())} |" in md


def test_paired_interval_and_verdict_match_a_hand_computation(ledger, seeded_root):
    from scipy import stats
    df, _ = ledger
    # dft.fig3.neg_logp_vs_sft: per seed, DFT's probe delta of logp_neg minus SFT's; t interval over 3 seeds
    d = []
    for seed in (0, 1, 2):
        delta = {m: r6(probe(seeded_root, m, seed)[-1]["logp_neg"] - probe(seeded_root, m, seed)[0]["logp_neg"])
                 for m in ("dft", "sft")}
        d.append(delta["dft"] - delta["sft"])
    m = sum(d) / 3
    half = stats.t.ppf(0.975, 2) * pd.Series(d).std() / 3 ** 0.5
    r = df.loc["dft.fig3.neg_logp_vs_sft"]
    assert r.n_seeds == 3 and r.estimate == pytest.approx(m, rel=1e-5)
    assert r.ci_low == pytest.approx(m - half, rel=1e-4, abs=1e-9) and r.ci_high == pytest.approx(m + half, rel=1e-4, abs=1e-9)
    assert r.verdict == by_rule(r.ci_low, r.ci_high, True) and "paired by seed" in r.measurement
    # trend: DFT's probe logp_neg, last - first, over seeds
    x = [r6(probe(seeded_root, "dft", s)[-1]["logp_neg"] - probe(seeded_root, "dft", s)[0]["logp_neg"]) for s in (0, 1, 2)]
    r = df.loc["dft.fig3.neg_logp_decreases"]
    assert r.estimate == pytest.approx(sum(x) / 3, rel=1e-5) and r.verdict == by_rule(r.ci_low, r.ci_high, True)
    # every_step: the worst step (steps 1-3; step 0 is the reference) of minorsft/sft_dpo minus sft, per seed
    r = df.loc["minorsft.fig1.deviation_below_sft"]
    worst = {}
    for a in ("minorsft", "sft_dpo"):
        w = [max(probe(seeded_root, a, s)[k]["deviation"] - probe(seeded_root, "sft", s)[k]["deviation"]
                 for k in (1, 2, 3)) for s in (0, 1, 2)]
        worst[a] = sum(w) / 3
    assert r.verdict in (REPRODUCED, CONTRADICTED, INCONCLUSIVE) and r.n_seeds == 3
    assert any(r.estimate == pytest.approx(v, rel=1e-4, abs=1e-9) for v in worst.values())


def test_fewer_than_three_seeds_wall_clock_cpu_memory_and_missing_runs_are_not_checkable(ledger, runs_root,
                                                                                           seeded_root, tmp_path):
    df, _ = ledger
    r = df.loc["dft.fig4.dft2_costlier_than_sft"]          # timing on CPU: shown, not judged
    assert r.verdict == NOT_CHECKABLE and "the papers' costs are GPU costs" in r.reason
    assert "timing/step_seconds (final) method=dft2: seed 0" in r.measurement
    r = df.loc["asft.fig2a.margin_above_orpo"]
    assert "part not checkable" not in r.reason
    r = df.loc["dft.fig3.pos_logp_dft_like_sft_simpo_down"]  # simpo ran 3 seeds here; dft2 one: not needed
    assert r.n_seeds == 3
    assert "wall clock" in df.loc["dft.fig4.dft2_comparable_to_sft_dpo", "reason"]
    assert "reference in the loop" in df.loc["asft.fig2b.runtime_below_dpo", "reason"]
    assert "needs an accelerator" in df.loc["asft.fig2b.memory_below_dpo", "reason"]
    assert "paper-benchmark" in df.loc["dft.table2.beats_sft_avg", "reason"]
    assert "judge" in df.loc["ift.table2.best_from_base", "reason"]
    assert "narrowed:" in df.loc["bnf.table4.lowest_alignment_tax", "reason"]
    assert "no run of method=ift" in df.loc["ift.b1.training_cost", "reason"]
    one = claims_ledger(ROOT / "configs/claims.yaml", runs_root, None, tmp_path / "c.csv", tmp_path / "c.md",
                        SCALE).set_index("id")                  # one seed, no probe set
    r = one.loc["dft.fig3.neg_logp_decreases"]
    assert r.verdict == NOT_CHECKABLE and "train.probe_records is 0" in r.reason
    r = one.loc["ift.fig3.frozen_lake_ordering"]
    assert r.verdict == NOT_CHECKABLE and "fig3.csv does not exist" in r.reason


def test_same_inputs_same_bytes(ledger, seeded_root, frozen_lake, tmp_path):
    _, out = ledger
    claims_ledger(ROOT / "configs/claims.yaml", seeded_root, frozen_lake, tmp_path / "c.csv", tmp_path / "c.md", SCALE)
    assert (tmp_path / "c.csv").read_bytes() == (out / "claims.csv").read_bytes()


def test_frozen_lake_claims_are_paired_over_seeds_and_the_study_is_read(ledger, frozen_lake, seeded_root, tmp_path):
    df, _ = ledger
    fl = pd.read_csv(frozen_lake / "fig3.csv")
    cells = fl.pivot_table(index="seed", columns="method", values="cells_visited")
    r = df.loc["ift.fig3.exploration_beyond_sft"]
    assert r.n_seeds == 3 and r.scale.startswith("Frozen Lake toy: 3 seeds")
    diffs = {m: (cells[m] - cells["sft"]) for m in ("dpo", "orpo", "ift")}
    assert any(r.estimate == pytest.approx(d.mean(), rel=1e-5, abs=1e-9) for d in diffs.values())
    assert df.loc["ift.fig3.frozen_lake_ordering", "verdict"] != NOT_CHECKABLE
    # the robustness study: the fraction of settings and its Wilson interval, judged against 1/2
    lake = tmp_path / "lake"
    lake.mkdir()
    (lake / "fig3.csv").write_bytes((frozen_lake / "fig3.csv").read_bytes())
    pd.DataFrame([{"claim": "paper ordering (all three claims)", "metric": "mse_params", "protocol": "final",
                   "primary": True, "fraction": 0.1, "ci_low": 0.04, "ci_high": 0.2, "n_holds": 5, "n_settings": 48},
                  {"claim": "ift much better than sft", "metric": "mse_params", "protocol": "final", "primary": True,
                   "fraction": 0.55, "ci_low": 0.4, "ci_high": 0.7, "n_holds": 26, "n_settings": 48}]
                 ).to_csv(lake / "robustness_claims.csv", index=False)
    (lake / "robustness_config.json").write_text(json.dumps({"grid": {
        "maps": ["a", "b", "c", "d"], "steps": [50, 100, 200], "bases": ["x", "y"], "negatives": ["s", "t"],
        "n_seeds": 5, "methods": ["sft", "ift", "dpo", "orpo"]}}))
    got = claims_ledger(ROOT / "configs/claims.yaml", seeded_root, lake, tmp_path / "c.csv", tmp_path / "c.md",
                        SCALE).set_index("id")
    r = got.loc["ift.fig3.ordering_robust_across_settings"]
    assert (r.verdict, r.estimate, r.ci_low, r.ci_high, r.n_seeds) == (CONTRADICTED, 0.1, 0.04, 0.2, 5)
    assert "5 of 48 settings" in r.measurement and "4 maps x steps [50, 100, 200] x 2 bases" in r.measurement
    elsewhere = tmp_path / "study.csv"          # --robustness: a study outside the Frozen Lake directory
    (lake / "robustness_claims.csv").rename(elsewhere)
    got = claims_ledger(ROOT / "configs/claims.yaml", seeded_root, lake, tmp_path / "c.csv", tmp_path / "c.md",
                        SCALE, robustness=elsewhere).set_index("id")
    assert got.loc["ift.fig3.ordering_robust_across_settings", "estimate"] == 0.1
    assert got.loc["ift.fig3.ift_beats_sft_across_settings", "verdict"] == INCONCLUSIVE
    assert "does not exist" in df.loc["ift.fig3.ordering_robust_across_settings", "reason"]
