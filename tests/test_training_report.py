"""Training-log figures and the claims ledger, on real runs of the trainer on the tiny model.

The runs are short (3 steps) but real: every number the figures and the ledger use is
read back here from the run files and compared with what they wrote."""
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from negfree.data.embedded import load_jsonl
from negfree.io import write_jsonl
from negfree.report.claims import NOT_CHECKABLE, NOT_REPRODUCED, REPRODUCED, claims_ledger
from negfree.report.training import training_figures
from negfree.score import score_records
from negfree.toy.frozen_lake import run_frozen_lake
from negfree.train.loop import train

ROOT = Path(__file__).resolve().parents[1]
SCALE = "test scale: tiny random Llama, 8 prompts, 3 steps, CPU"
# method -> lr (minorsft.txt Fig. 1: SFT at 1e-5, SFT-using-DPO and MinorSFT at 2e-5)
METHODS = {"sft": 1e-5, "dft": 1e-3, "dft2": 1e-3, "simpo": 1e-3, "sft_dpo": 2e-5, "minorsft": 2e-5,
           "asft": 1e-3, "orpo": 1e-3, "dpo": 1e-3}


@pytest.fixture(scope="module")
def runs_root(tiny_model_dir, embedded_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("training_report")
    recs = load_jsonl(embedded_dir / "train.jsonl")[:8]
    for i, r in enumerate(recs):
        r["negatives"] = [recs[(i + k) % len(recs)]["positive"] for k in (1, 2)]
    write_jsonl(out / "neg.jsonl", recs)
    score_records(tiny_model_dir, recs, out / "scored.jsonl", max_len=96)
    root = out / "runs"
    for method, lr in METHODS.items():
        train({"method": method, "model": str(tiny_model_dir), "data": str(out / "scored.jsonl"),
               "out_dir": str(root / f"method~{method}"), "batch_size": 4, "micro_batch_size": 4, "max_steps": 3,
               "epochs": 2, "num_negatives": 2, "max_len": 96, "lr": lr, "scheduler": "constant",
               "warmup_ratio": 0.0})
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


@pytest.fixture(scope="module")
def frozen_lake(tmp_path_factory):
    """A short real Frozen Lake run (2 seeds, 15 steps) of the four methods ift.txt Fig. 3 compares."""
    out = tmp_path_factory.mktemp("frozen_lake")
    run_frozen_lake(out, methods=["sft", "ift", "dpo", "orpo"], seeds=2, steps=15, episodes=40, eval_every=5)
    return out


@pytest.fixture(scope="module")
def ledger(runs_root, frozen_lake, tmp_path_factory):
    out = tmp_path_factory.mktemp("ledger")
    df = claims_ledger(ROOT / "configs/claims.yaml", runs_root, frozen_lake, out / "claims.csv", out / "claims.md",
                       SCALE)
    return df.set_index("id"), out


def test_ledger_covers_every_claim_with_a_known_verdict(ledger):
    df, out = ledger
    claims = yaml.safe_load((ROOT / "configs/claims.yaml").read_text())["claims"]
    assert list(df.index) == [c["id"] for c in claims]
    assert set(df.verdict) <= {REPRODUCED, NOT_REPRODUCED, NOT_CHECKABLE}
    assert (df[df.verdict == NOT_CHECKABLE].reason.str.len() > 0).all()
    csv = pd.read_csv(out / "claims.csv")
    assert list(csv.columns) == ["id", "paper", "statement", "source", "measurement", "scale", "verdict", "reason"]
    md = (out / "claims.md").read_text()
    head = md.split("| id |")[0]
    for v in (REPRODUCED, NOT_REPRODUCED, NOT_CHECKABLE):
        assert f"| {v} | {int((df.verdict == v).sum())} |" in head


def test_compare_and_trend_verdicts_match_a_hand_computation(ledger, runs_root):
    df, _ = ledger
    asft, orpo = rows(runs_root / "method~asft"), rows(runs_root / "method~orpo")
    expect = REPRODUCED if asft[-1]["likelihood_margin"] > orpo[-1]["likelihood_margin"] else NOT_REPRODUCED
    assert df.loc["asft.fig2a.margin_above_orpo", "verdict"] == expect
    assert repr(asft[-1]["likelihood_margin"])[:6] in df.loc["asft.fig2a.margin_above_orpo", "measurement"]

    dft = rows(runs_root / "method~dft")
    delta = dft[-1]["logp_neg"] - dft[0]["logp_neg"]
    assert df.loc["dft.fig3.neg_logp_decreases", "verdict"] == (REPRODUCED if delta < 0 else NOT_REPRODUCED)

    # every_step, steps 2..3 (step 1 is logged before the first update)
    sft, mnr, sdp = (rows(runs_root / f"method~{m}") for m in ("sft", "minorsft", "sft_dpo"))
    held = all(a[i]["deviation"] < sft[i]["deviation"] for a in (mnr, sdp) for i in (1, 2))
    assert df.loc["minorsft.fig1.deviation_below_sft", "verdict"] == (REPRODUCED if held else NOT_REPRODUCED)

    t = {m: json.loads((runs_root / f"method~{m}/timing.json").read_text()) for m in ("sft", "dft2")}
    ok = t["dft2"]["wall_seconds"] > t["sft"]["wall_seconds"]
    assert df.loc["dft.fig4.dft2_costlier_than_sft", "verdict"] == (REPRODUCED if ok else NOT_REPRODUCED)


def test_missing_runs_and_out_of_scope_claims_are_not_checkable(ledger, runs_root, tmp_path):
    df, _ = ledger
    assert "no run of method=ift" in df.loc["ift.b1.training_cost", "reason"]
    only = claims_ledger(ROOT / "configs/claims.yaml", [runs_root / "method~sft", runs_root / "method~dft"], None,
                         tmp_path / "c.csv", tmp_path / "c.md", SCALE).set_index("id")
    for cid, missing in (("asft.fig2a.margin_above_orpo", "asft"), ("dft.fig4.dft2_costlier_than_sft", "dft2"),
                         ("minorsft.fig1.deviation_below_sft", "minorsft")):
        assert only.loc[cid, "verdict"] == NOT_CHECKABLE and f"no run of method={missing}" in only.loc[cid, "reason"]
    r = df.loc["dft.fig3.neg_logp_vs_sft"]   # SFT saw no negatives, so it logs no logp_neg
    assert r.verdict == NOT_CHECKABLE and "no 'logp_neg'" in r.reason
    r = df.loc["asft.fig2b.runtime_below_dpo"]   # DPO reads precomputed reference log-probs
    assert r.verdict == NOT_CHECKABLE and "reference in the loop" in r.reason
    assert df.loc["asft.fig2b.memory_below_dpo", "verdict"] == NOT_CHECKABLE
    assert "judge" in df.loc["ift.table2.best_from_base", "reason"]
    assert "paper-benchmark" in df.loc["dft.table2.beats_sft_avg", "reason"]
    assert df.loc["dft.fig4.dft2_comparable_to_sft_dpo", "verdict"] == NOT_CHECKABLE


def test_registry_analytic_and_frozen_lake_claims_evaluate(ledger, frozen_lake, runs_root, tmp_path):
    df, _ = ledger
    for cid in ("asft.sec4.no_reference_model", "bnf.sec3.no_extra_hyperparameters_unpaired"):
        assert df.loc[cid, "verdict"] == REPRODUCED and "negfree methods --json" in df.loc[cid, "measurement"]
    analytic = [c for c in df.index if df.loc[c, "scale"].startswith("analytic")]
    assert len(analytic) == 12 and (df.loc[analytic, "verdict"] == REPRODUCED).all()
    fl = pd.read_csv(frozen_lake / "fig3.csv").groupby("method").mean(numeric_only=True)
    held = all(fl.cells_visited[m] > fl.cells_visited["sft"] for m in ("dpo", "orpo", "ift"))
    assert df.loc["ift.fig3.exploration_beyond_sft", "verdict"] == (REPRODUCED if held else NOT_REPRODUCED)
    p = fl.mse_params   # tiers [[dpo], [ift], [orpo, sft]], lower is better
    held = p["dpo"] < p["ift"] < min(p["orpo"], p["sft"])
    assert df.loc["ift.fig3.frozen_lake_ordering", "verdict"] == (REPRODUCED if held else NOT_REPRODUCED)
    # without Frozen Lake outputs those claims are not checkable, and say why
    df2 = claims_ledger(ROOT / "configs/claims.yaml", runs_root, tmp_path / "nowhere", tmp_path / "c.csv",
                        tmp_path / "c.md", SCALE).set_index("id")
    r = df2.loc["ift.fig3.frozen_lake_ordering"]
    assert r.verdict == NOT_CHECKABLE and "fig3.csv does not exist" in r.reason
