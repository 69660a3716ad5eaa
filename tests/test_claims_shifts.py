"""The claims ledger on shift/ and score/ claims, read from the summary CSVs of ``negfree shifts``
(shifts_summary.csv) and ``negfree score-dist`` (fig1_summary.csv), given with ``--shifts`` /
``--score-dist``. The CSVs are small synthetic ones written here; no model, no run."""
from pathlib import Path

import pandas as pd
import pytest
import yaml

from negfree.report.claims import (FILE_METRICS, NOT_CHECKABLE, NOT_REPRODUCED, REPRODUCED, Context, evaluate_claim,
                                   main_claims, metric_unavailable)

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
    def walk(c):
        yield c
        for s in c.get("checks", []):
            yield from walk(s)
    used = {m for c in claims.values() for chk in walk(c["check"])
            for m in (chk.get("metrics") or [chk.get("metric")]) if m and m.startswith(("shift/", "score/"))}
    assert used and used <= set(FILE_METRICS)
    assert FILE_METRICS["shift/dpo_bins_central_mass"].column == "bins_central_mass"
    assert FILE_METRICS["shift/dpo_bins_central_mass"].anchor == "dpo"
    assert FILE_METRICS["score/s_theta"].column == "mean"


def test_reproduced_with_the_values_in_the_measurement(claims, tmp_path):
    sh, sc = shifts_csv(tmp_path / "shifts_summary.csv"), score_csv(tmp_path / "fig1_summary.csv")
    df = ledger(claims, sh, sc)
    assert (df.verdict == REPRODUCED).all(), df[["verdict", "reason"]].to_dict("index")
    for cid in SHIFT_IDS:
        assert df.loc[cid, "reason"] == f"from {sh} (written by negfree shifts)"
        assert str(sh) in df.loc[cid, "scale"] and "bnf 16 responses" in df.loc[cid, "scale"]
    m = df.loc["bnf.fig3.smallest_loglik_shift", "measurement"]
    assert "shift/abs_loglik (shifts_summary.csv column 'abs_loglik', lower is better): bnf 1 < ipo 4 < dpo 5 < " \
           "simpo 9" in m and "held" in m
    m = df.loc["bnf.fig3.logit_shift_above_dpo_ipo", "measurement"]
    assert "bnf 30 > dpo 20: yes" in m and "bnf 0.3 > ipo 0.1: yes" in m
    m = df.loc["bnf.fig3.lowest_gini", "measurement"]
    assert "over the 4 listed methods" in m and "argmin bnf (expected bnf, strictly): yes" in m
    m = df.loc["bnf.fig4.centralised_token_shifts", "measurement"]
    assert "bins anchored on dpo" in m and "bnf 0.9 > 0.8: yes" in m and "simpo 0.4 > 0.2: yes" in m
    assert "ipo 0.1 < 0.2: yes" in m
    r = df.loc[SCORE_ID]
    assert "score/s_theta (fig1_summary.csv column 'mean'): Sampling (T=0.7) -1.2 > Random (T=5.0) -9.5: yes" \
        in r.measurement
    assert r.reason == f"from {sc} (written by negfree score-dist)" and "16 negatives" in r.scale


def test_not_reproduced(claims, tmp_path):
    bad = dict(GOOD)
    bad["bnf"] = (9.5, 0.095, 5.0, 0.05, 0.60, 0.70, 0.30, 0.40)   # largest shift, smallest logit, highest Gini
    bad["ipo"] = (4.0, 0.04, 10.0, 0.10, 0.35, 0.60, 0.40, 0.50)   # far from uniform
    sh = shifts_csv(tmp_path / "s.csv", bad)
    sc = score_csv(tmp_path / "f.csv", (("Sampling (T=0.7)", -9.0), ("Random (T=5.0)", -1.0)))
    df = ledger(claims, sh, sc)
    assert (df.verdict == NOT_REPRODUCED).all(), df[["verdict", "reason"]].to_dict("index")
    assert "violated" in df.loc["bnf.fig3.smallest_loglik_shift", "measurement"]
    assert "argmin ipo (expected bnf, strictly): no" in df.loc["bnf.fig3.lowest_gini", "measurement"]
    assert "bnf 0.7 > 0.8: no" in df.loc["bnf.fig4.centralised_token_shifts", "measurement"]
    assert "Sampling (T=0.7) -9 > Random (T=5.0) -1: no" in df.loc[SCORE_ID, "measurement"]


def test_a_missing_method_leaves_its_side_not_checkable(claims, tmp_path):
    demo = {m: v for m, v in GOOD.items() if m != "ipo"}           # the demo trains no ipo
    sh = shifts_csv(tmp_path / "s.csv", demo)
    df = ledger(claims, sh)
    for cid in ("bnf.fig3.smallest_loglik_shift", "bnf.fig3.logit_shift_above_dpo_ipo",
                "bnf.fig4.centralised_token_shifts"):
        assert df.loc[cid, "verdict"] == NOT_CHECKABLE, cid
        assert f"no row for method 'ipo' in {sh} (its models: bnf, dpo, simpo)" in df.loc[cid, "reason"], cid
    # the sides that exist are still measured
    assert "bnf=30" in df.loc["bnf.fig3.logit_shift_above_dpo_ipo", "measurement"]
    assert "bnf 0.9 > 0.8: yes" in df.loc["bnf.fig4.centralised_token_shifts", "measurement"]
    # the Gini claim lists the paper's four methods: without ipo it is not judged on three
    r = df.loc["bnf.fig3.lowest_gini"]
    assert r.verdict == NOT_CHECKABLE and "ipo" in r.reason
    # a row labelled by run name (two runs of one method) is not taken for the method
    renamed = pd.read_csv(shifts_csv(tmp_path / "r.csv")).replace({"model": {"bnf": "method~bnf~lr~1e-6"}})
    renamed.to_csv(tmp_path / "r.csv", index=False)
    r = ledger(claims, tmp_path / "r.csv").loc["bnf.fig3.logit_shift_above_dpo_ipo"]
    assert r.verdict == NOT_CHECKABLE and "no row for method 'bnf'" in r.reason


def test_wrong_bin_anchor_or_missing_column_is_named(claims, tmp_path):
    sh = shifts_csv(tmp_path / "s.csv", anchor="bnf")
    df = ledger(claims, sh)
    r = df.loc["bnf.fig4.centralised_token_shifts"]
    assert r.verdict == NOT_CHECKABLE
    assert f"shift/dpo_bins_central_mass needs bins anchored on 'dpo'; the bins in {sh} are anchored on 'bnf'" \
        in r.reason
    assert df.loc["bnf.fig3.smallest_loglik_shift", "verdict"] == REPRODUCED   # other columns unaffected

    sh = shifts_csv(tmp_path / "g.csv", drop=["gini_logit", "bin_anchor"])
    df = ledger(claims, sh)
    assert df.loc["bnf.fig3.lowest_gini", "verdict"] == NOT_CHECKABLE
    assert f"{sh} has no column 'gini_logit' (needed for shift/gini_logit)" in df.loc["bnf.fig3.lowest_gini", "reason"]
    assert f"{sh} has no column 'bin_anchor'" in df.loc["bnf.fig4.centralised_token_shifts", "reason"]


def test_score_pools_are_matched_by_label_prefix_and_never_guessed(claims, tmp_path):
    lower = score_csv(tmp_path / "a.csv", (("sampling", -1.0), ("random", -5.0)))
    ok = ledger(claims, score_dist=lower, ids=[SCORE_ID])
    assert ok.loc[SCORE_ID, "verdict"] == REPRODUCED               # the CLI's own lower-case labels
    sc = score_csv(tmp_path / "b.csv", (("Sampling (T=0.7)", -1.0),))
    r = ledger(claims, score_dist=sc, ids=[SCORE_ID]).loc[SCORE_ID]
    assert r.verdict == NOT_CHECKABLE and f"no row for pool labelled 'Random...' (pool=random_high_temperature) " \
        f"in {sc} (its pools: Sampling (T=0.7))" in r.reason
    assert "Sampling (T=0.7)=-1" in r.measurement
    sc = score_csv(tmp_path / "c.csv", (("Sampling (T=0.7)", -1.0), ("Sampling (T=0.9)", -1.1), ("Random", -5.0)))
    r = ledger(claims, score_dist=sc, ids=[SCORE_ID]).loc[SCORE_ID]
    assert r.verdict == NOT_CHECKABLE
    assert "2 rows for pool labelled 'Sampling...'" in r.reason and "ambiguous" in r.reason


def test_absent_arguments_leave_the_claims_as_before(claims, tmp_path):
    before = ledger(claims)
    for cid in SHIFT_IDS + [SCORE_ID]:
        r = before.loc[cid]
        assert r.verdict == NOT_CHECKABLE and r.scale == SCALE and r.measurement == ""
    assert "the project produces no shift/ measurements" in before.loc["bnf.fig3.lowest_gini", "reason"]
    assert "the project produces no score/ measurements" in before.loc[SCORE_ID, "reason"]
    no_files = Context([], None, SCALE)
    assert metric_unavailable("shift/abs_logit", {}) == metric_unavailable("shift/abs_logit", {}, no_files)
    # one file given: the other family is untouched
    only = ledger(claims, shifts=shifts_csv(tmp_path / "s.csv"))
    assert only.loc[SCORE_ID].to_dict() == before.loc[SCORE_ID].to_dict()
    # a file named but not there
    r = ledger(claims, shifts=tmp_path / "nowhere.csv").loc["bnf.fig3.lowest_gini"]
    assert r.verdict == NOT_CHECKABLE and r.reason.startswith(f"--shifts {tmp_path / 'nowhere.csv'} does not exist")


def test_cli_arguments_and_the_rest_of_the_ledger(tmp_path):
    sh, sc = shifts_csv(tmp_path / "shifts_summary.csv"), score_csv(tmp_path / "fig1_summary.csv")
    base = ["--claims", str(CLAIMS), "--runs-root", str(tmp_path / "no_runs"),
            "--frozen-lake", str(tmp_path / "no_fl"), "--scale", SCALE]
    main_claims(base + ["--out-csv", str(tmp_path / "a.csv"), "--out-md", str(tmp_path / "a.md")])
    main_claims(base + ["--out-csv", str(tmp_path / "b.csv"), "--out-md", str(tmp_path / "b.md"),
                        "--shifts", str(sh), "--score-dist", str(sc)])
    a, b = (pd.read_csv(tmp_path / f"{x}.csv").set_index("id") for x in "ab")
    changed = [i for i in a.index if not a.loc[i].equals(b.loc[i])]
    assert sorted(changed) == sorted(SHIFT_IDS + [SCORE_ID])
    assert (b.loc[changed, "verdict"] == REPRODUCED).all()
    md_a, md_b = (tmp_path / "a.md").read_text(), (tmp_path / "b.md").read_text()
    assert "Shift analysis" not in md_a
    assert f"Shift analysis (shift/ claims): `{sh}`." in md_b and f"s_theta pools (score/ claims): `{sc}`." in md_b


def test_argmin_over_listed_values_needs_every_one(claims, tmp_path):
    """Without ``values`` the argmin runs over the file's rows (as above); with them, each must be there."""
    claim = {**claims["bnf.fig3.lowest_gini"]}
    claim["check"] = {**claim["check"], "values": ["bnf", "dpo", "ipo", "simpo"]}
    ctx = Context([], None, SCALE, shifts=shifts_csv(tmp_path / "s.csv", {m: v for m, v in GOOD.items() if m != "ipo"}))
    r = evaluate_claim(ctx, claim)
    assert r["verdict"] == NOT_CHECKABLE and "no row for method 'ipo'" in r["reason"]
    r = evaluate_claim(Context([], None, SCALE, shifts=shifts_csv(tmp_path / "t.csv")), claim)
    assert r["verdict"] == REPRODUCED and "over the 4 listed methods" in r["measurement"]
