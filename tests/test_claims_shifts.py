"""The claims ledger on shift/ and score/ claims, read from the summary CSVs of ``negfree shifts``
(shifts_summary.csv) and ``negfree score-dist`` (fig1_summary.csv), given with ``--shifts`` /
``--score-dist``. Each holds one value per model, from one training seed: the ledger shows the
values beside the claim and does not judge them. The CSVs are small synthetic ones written here."""
from pathlib import Path

import pandas as pd
import pytest
import yaml

from negfree.report.claims import FILE_METRICS, NOT_CHECKABLE, Context, evaluate_claim, main_claims

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = ROOT / "configs/claims.yaml"
SCALE = "test scale: synthetic summary CSVs"
SHIFT_IDS = ["bnf.fig3.smallest_loglik_shift", "bnf.fig3.logit_shift_above_dpo_ipo", "bnf.fig3.lowest_gini",
             "bnf.fig4.centralised_token_shifts"]
SCORE_ID = "dft.fig1.sampled_negatives_score_higher"

# one row per model, the numbers chosen so that every shift/ claim holds
GOOD = {
    #        abs_loglik abs_ll/tok abs_logit abs_logit/tok gini  central extreme l1
    "bnf":   (1.0, 0.01, 30.0, 0.30, 0.20, 0.90, 0.10, 0.15),
    "dpo":   (5.0, 0.05, 20.0, 0.20, 0.40, 0.80, 0.20, 0.00),
    "ipo":   (4.0, 0.04, 10.0, 0.10, 0.35, 0.82, 0.18, 0.10),
    "simpo": (9.0, 0.09, 40.0, 0.40, 0.50, 0.60, 0.40, 0.60),
}


def shifts_csv(path, values=GOOD, anchor="dpo", drop=()):
    rows = []
    for m, (all_, allt, alo, alot, g, cen, ext, l1) in values.items():
        rows.append({"model": m, "n_sequences": 16, "n_tokens": 400, "mean_response_tokens": 25.0,
                     "eos_fraction": 1.0, "loglik": -all_, "abs_loglik": all_, "loglik_per_token": -allt,
                     "abs_loglik_per_token": allt, "abs_logit": alo, "abs_logit_per_token": alot,
                     "token_loglik": -allt, "token_abs_logit": alot, "gini_logit": g, "gini_logit_pooled": g + 0.1,
                     "bin_anchor": anchor, "bins_central_mass": cen, "bins_extreme_mass": ext,
                     "bins_l1_from_uniform": l1})
    pd.DataFrame(rows).drop(columns=list(drop)).to_csv(path, index=False)
    return path


def score_csv(path, pools=(("Sampling (T=0.7)", -1.2), ("Random (T=5.0)", -9.5))):
    pd.DataFrame([{"pool": label, "source": f"work/{i}.jsonl", "prompts": 16, "negatives": 16, "mean": mean,
                   "std": 0.5, "median": mean, "min": mean - 1, "max": mean + 1, "mean_n_tokens": 30.0}
                  for i, (label, mean) in enumerate(pools)]).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def claims():
    return {c["id"]: c for c in yaml.safe_load(CLAIMS.read_text())["claims"]}


def ledger(claims, shifts=None, score_dist=None, ids=SHIFT_IDS + [SCORE_ID]):
    """The ledger rows of the given claims, evaluated without runs or Frozen Lake outputs."""
    ctx = Context([], None, SCALE, shifts=shifts, score_dist=score_dist)
    return pd.DataFrame([evaluate_claim(ctx, claims[i]) for i in ids]).set_index("id")


def test_every_shift_and_score_metric_of_the_claims_is_mapped_onto_a_column(claims):
    used = set()

    def walk(c):
        for m in [c.get("metric")] + list(c.get("metrics") or []):
            if m and m.startswith(("shift/", "score/")):
                used.add(m)
        for sub in c.get("checks", []):
            walk(sub)
    for c in claims.values():
        walk(c["check"])
    assert used and used <= set(FILE_METRICS)
    cols = set(pd.read_csv(shifts_csv(Path("/tmp") / "negfree_cols.csv")).columns)
    assert {col for src, col in FILE_METRICS.values() if src == "shifts"} <= cols


def test_one_seed_is_shown_not_judged(claims, tmp_path):
    df = ledger(claims, shifts_csv(tmp_path / "s.csv"), score_csv(tmp_path / "f.csv"))
    assert (df.verdict == NOT_CHECKABLE).all() and (df.kind == "empirical").all() and (df.n_seeds == 1).all()
    assert df.reason.str.contains("one analysis of one training seed").all()
    r = df.loc["bnf.fig3.lowest_gini"]
    assert "shift/gini_logit: bnf 0.2, dpo 0.4, ipo 0.35, simpo 0.5" in r.measurement
    assert "score/s_theta: Sampling (T=0.7) -1.2, Random (T=5.0) -9.5" in df.loc[SCORE_ID, "measurement"]


def test_missing_file_row_or_column_is_named(claims, tmp_path):
    r = ledger(claims).loc["bnf.fig3.lowest_gini"]
    assert r.verdict == NOT_CHECKABLE and "needs negfree shifts's summary (not given)" in r.reason
    r = ledger(claims, shifts=tmp_path / "nowhere.csv").loc["bnf.fig3.lowest_gini"]
    assert f"({tmp_path / 'nowhere.csv'})" in r.reason
    no_ipo = shifts_csv(tmp_path / "s.csv", {m: v for m, v in GOOD.items() if m != "ipo"})
    r = ledger(claims, shifts=no_ipo).loc["bnf.fig3.lowest_gini"]
    assert "no single row for method 'ipo'" in r.reason and "bnf 0.2" in r.measurement
    r = ledger(claims, shifts=shifts_csv(tmp_path / "t.csv", drop=("gini_logit",))).loc["bnf.fig3.lowest_gini"]
    assert "has no column 'gini_logit'" in r.reason
    two = score_csv(tmp_path / "two.csv", (("Sampling (T=0.7)", -1.0), ("sampling (T=1.0)", -2.0), ("Random", -9.0)))
    r = ledger(claims, score_dist=two).loc[SCORE_ID]
    assert "no single row for pool 'sampling'" in r.reason


def test_cli_writes_the_ledger_with_the_files(tmp_path):
    sh, sc = shifts_csv(tmp_path / "shifts_summary.csv"), score_csv(tmp_path / "fig1_summary.csv")
    main_claims(["--claims", str(CLAIMS), "--runs-root", str(tmp_path / "no_runs"), "--frozen-lake",
                 str(tmp_path / "no_fl"), "--scale", SCALE, "--out-csv", str(tmp_path / "b.csv"), "--out-md",
                 str(tmp_path / "b.md"), "--shifts", str(sh), "--score-dist", str(sc)])
    b = pd.read_csv(tmp_path / "b.csv").set_index("id")
    assert "bnf 1, dpo 5" in b.loc["bnf.fig3.smallest_loglik_shift", "measurement"]
    assert "## Empirical claims" in (tmp_path / "b.md").read_text()
