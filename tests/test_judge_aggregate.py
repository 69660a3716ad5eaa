"""Judge-reply parsers and the benchmark aggregations (negfree.evaluate.judge.verdicts/aggregate),
on hand-computed fixtures. Offline: alpaca_eval's hub download is replaced by a local file."""
import json
import math

import numpy as np
import pytest

from negfree.evaluate.judge import aggregate as A
from negfree.evaluate.judge.verdicts import (ARENA_HARD_LABELS, AmbiguousVerdict, MalformedVerdict,
                                             parse_arena_hard, parse_mt_bench, parse_wildbench_score)


def _json_ok(result: dict) -> None:
    json.dumps(result, allow_nan=False)   # plain, JSON-serialisable, no NaN
    for key in ("metric", "value", "n", "failed", "interval"):
        assert key in result
    assert "level" in result["interval"] and "method" in result["interval"]


# =============================================================================== parsers
def test_parse_arena_hard_valid_and_repeated():
    for label in ARENA_HARD_LABELS:
        assert parse_arena_hard(f"Reasoning...\nMy final verdict is: [[{label}]]") == label
    # the same label twice counts once (the benchmark's get_score: one distinct match)
    assert parse_arena_hard("[[B>A]] because ... so [[B>A]]") == "B>A"
    # a synonym written the other way round is the same verdict, also beside its canonical form
    assert parse_arena_hard("[[B<A]]") == "A>B"
    assert parse_arena_hard("[[A>B]] ... [[B<A]]") == "A>B"


@pytest.mark.parametrize("reply, exc", [
    ("[[A>B]] at first, but on reflection [[B>A]]", AmbiguousVerdict),  # two different labels
    ("Assistant A is better.", MalformedVerdict),                         # no label
    ("[[A>>>B]]", MalformedVerdict),                                      # not one of the five
    ("[[A > B]]", MalformedVerdict),                                      # spaces: no match
    ("[[]]", MalformedVerdict),
])
def test_parse_arena_hard_malformed(reply, exc):
    with pytest.raises(exc):
        parse_arena_hard(reply)
    assert issubclass(exc, ValueError)   # the client retries on ValueError


def test_parse_mt_bench():
    assert parse_mt_bench("The answer is fine. Rating: [[7]]") == 7.0
    assert parse_mt_bench("Rating: [[8.5]]") == 8.5
    assert parse_mt_bench("[[3]] ... later [[9]]") == 3.0           # FastChat: the first match
    assert parse_mt_bench("Rating: [6]") == 6.0                     # FastChat's backup pattern
    assert parse_mt_bench("Rating: [[10]]") == 10.0 and parse_mt_bench("[[1]]") == 1.0
    with pytest.raises(MalformedVerdict):
        parse_mt_bench("Rating: [6]", allow_single_brackets=False)
    for bad in ("Rating: [[11]]", "Rating: [[0]]", "Rating: 7", "[[7/10]]", "[[seven]]"):
        with pytest.raises(ValueError):
            parse_mt_bench(bad)


def test_parse_wildbench_score():
    whole = '{"strengths": "clear", "weaknesses": "none", "score": "7"}'
    assert parse_wildbench_score(whole) == 7.0
    fenced = 'Analysis...\n```json\n{\n  "strengths": "a",\n  "weaknesses": "b",\n  "score": 8\n}\n```\nDone.'
    assert parse_wildbench_score(fenced) == 8.0
    assert parse_wildbench_score('Here: {"strengths": "x", "score": "7.5"} end') == 7.5
    # not valid JSON (unescaped quotes): the benchmark's regular expression
    assert parse_wildbench_score('{"strengths": "says "hi" well", "score": "6"}') == 6.0
    # the same score twice is fine
    assert parse_wildbench_score('```json\n{"score": "5"}\n```\n```json\n{"score": 5}\n```') == 5.0
    with pytest.raises(AmbiguousVerdict):
        parse_wildbench_score('```json\n{"score": "5"}\n```\n```json\n{"score": "9"}\n```')
    for bad in ('{"score": "[1~10]"}', '{"score": "11"}', '{"score": 0}', '{"score": true}',
                '{"strengths": "good"}', "no json at all", '{"score": null}'):
        with pytest.raises(ValueError):
            parse_wildbench_score(bad)


# ============================================================================ Arena-Hard
# 4 prompts. Outcome y for the model (1 win, .5 tie, 0 loss), weight w (3 for >>, else 1):
#   P1  model_as_a A>>B -> y=1 w=3 | model_as_b B>A  -> y=1  w=1
#   P2  model_as_a A=B  -> .5   w=1 | model_as_b A=B  -> .5   w=1
#   P3  model_as_a B>A  -> y=0 w=1 | model_as_b A>B  -> y=0  w=1
#   P4  model_as_a A>B  -> y=1 w=1 | model_as_b B>>A -> y=1  w=3
# sum w = 4+2+2+4 = 12; sum w*y = 4 + 1 + 0 + 4 = 9; weighted win rate = 9/12 = 75 %.
# BT with one opponent: sigmoid(ln10 d) = 0.75 -> d = log10(3) -> rating 1000 + 400 log10(3) = 1190.85
FOUR = [
    {"model_as_a": "A>>B", "model_as_b": "B>A"},
    {"model_as_a": "A=B", "model_as_b": "A=B"},
    {"model_as_a": "B>A", "model_as_b": "A>B"},
    {"model_as_a": "A>B", "model_as_b": "B>>A"},
]


def test_arena_hard_hand_computed():
    r = A.arena_hard_score(FOUR)
    _json_ok(r)
    assert r["weighted_win_rate"] == pytest.approx(75.0)
    assert r["bt_win_rate"] == pytest.approx(75.0, abs=1e-9)
    assert r["value"] == pytest.approx(75.0, abs=1e-9)
    assert r["bt_rating"] == pytest.approx(1000 + 400 * math.log10(3), abs=1e-6)
    assert r["counts"] == {"win_much": 2, "win": 2, "tie": 2, "loss": 2, "loss_much": 0}
    assert (r["n"], r["n_prompts"], r["n_games"], r["failed"]) == (4, 4, 8, 0)
    assert r["weight"] == 3 and r["interval"]["rounds"] == 100 and r["interval"]["level"] == 0.95


def test_arena_hard_weight_one_and_failed_games():
    # weight 1: sum w = 8, sum w*y = 1+1 + .5+.5 + 0+0 + 1+1 = 5 -> 62.5 %
    assert A.arena_hard_score(FOUR, weight=1)["value"] == pytest.approx(62.5)
    # P5 both games failed (dropped, prompt not counted), P6 one game failed, the other a loss:
    # sum w = 12 + 1 = 13, sum w*y = 9 -> 9/13
    more = FOUR + [{"model_as_a": None, "model_as_b": None}, {"model_as_a": None, "model_as_b": "A>B"}]
    r = A.arena_hard_score(more)
    assert r["value"] == pytest.approx(100 * 9 / 13)
    assert (r["n"], r["n_prompts"], r["n_games"], r["failed"]) == (5, 6, 9, 3)


def test_arena_hard_all_wins_and_bad_input():
    r = A.arena_hard_score([{"model_as_a": "A>B", "model_as_b": "B>>A"}] * 3)
    assert r["value"] == 100.0 and r["bt_rating"] is None and r["ci_low"] == r["ci_high"] == 100.0
    with pytest.raises(ValueError):
        A.arena_hard_score([{"model_as_a": "A>B"}])                       # missing key
    with pytest.raises(ValueError):
        A.arena_hard_score([{"model_as_a": "A>>>B", "model_as_b": "A=B"}])  # unknown label
    with pytest.raises(ValueError):
        A.arena_hard_score([{"model_as_a": None, "model_as_b": None}])     # nothing judged
    with pytest.raises(ValueError):
        A.arena_hard_score(FOUR, resample="question")


def _random_judgments(n, seed, p=(0.25, 0.25, 0.2, 0.2, 0.1)):
    rng = np.random.default_rng(seed)
    labels = list(ARENA_HARD_LABELS)
    return [{"model_as_a": labels[rng.choice(5, p=p)], "model_as_b": labels[rng.choice(5, p=p[::-1])]}
            for _ in range(n)]


def test_arena_hard_bt_equals_weighted_win_rate():
    for seed in range(5):
        r = A.arena_hard_score(_random_judgments(200, seed), rounds=10)
        assert r["bt_win_rate"] == pytest.approx(r["weighted_win_rate"], abs=1e-8)


def test_arena_hard_bt_matches_the_benchmarks_logistic_regression():
    """compute_mle_elo of Arena-Hard-Auto v0.1: baseline as model_a (+ln10), model as model_b
    (-ln10), strong verdicts as 3 rows, the battles duplicated with a tie as one win + one loss,
    no intercept, unpenalised (a huge C here); win rate = 1 / (1 + 10^(c_base - c_model))."""
    sk = pytest.importorskip("sklearn.linear_model")
    J = _random_judgments(300, 7)
    b = A.arena_hard_battles(J)
    rows = np.repeat(1.0 - b["y"], b["w"].astype(int))             # the baseline's outcome
    n = len(rows)
    X = np.zeros((2 * n, 2))
    X[:, 0], X[:, 1] = math.log(10), -math.log(10)
    Y = np.concatenate([rows, rows])
    Y = np.where(Y == 0.5, 0.0, Y)
    Y[:n][rows == 0.5] = 1.0
    lr = sk.LogisticRegression(fit_intercept=False, C=1e12, tol=1e-12, max_iter=10000).fit(X, Y)
    c_base, c_model = lr.coef_[0]
    official = 100 / (1 + 10 ** (c_base - c_model))
    assert A.arena_hard_score(J, rounds=5)["value"] == pytest.approx(official, abs=1e-4)


def test_arena_hard_bootstrap_contains_point_and_is_seeded():
    J = _random_judgments(150, 3)
    r1 = A.arena_hard_score(J, seed=11)
    r2 = A.arena_hard_score(J, seed=11)
    r3 = A.arena_hard_score(J, seed=12)
    assert r1["ci_low"] < r1["value"] < r1["ci_high"]
    assert (r1["ci_low"], r1["ci_high"]) == (r2["ci_low"], r2["ci_high"])
    assert (r1["ci_low"], r1["ci_high"]) != (r3["ci_low"], r3["ci_high"])
    small = A.arena_hard_score(FOUR, rounds=200)
    assert small["ci_low"] <= 75.0 <= small["ci_high"]
    battle = A.arena_hard_score(J, resample="battle", rounds=50)
    assert battle["interval"]["unit"] == "battle" and battle["interval"]["rounds"] == 50
    assert battle["ci_low"] < battle["value"] < battle["ci_high"]
    assert battle["value"] == r1["value"]        # the point estimate does not depend on the resampling


def test_arena_hard_battle_bootstrap_is_the_benchmarks():
    """resample="battle": the battle rows (a strong verdict as 3 rows) drawn with replacement,
    the win rate of each sample (ties 1/2), its 2.5 and 97.5 percentiles."""
    J = _random_judgments(80, 9)
    b = A.arena_hard_battles(J)
    rows = np.repeat(b["y"], b["w"].astype(int))
    draws = np.random.default_rng(4).integers(0, len(rows), size=(60, len(rows)))
    lo, hi = np.percentile(100 * rows[draws].mean(1), [2.5, 97.5])
    r = A.arena_hard_score(J, resample="battle", rounds=60, seed=4)
    assert (r["ci_low"], r["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    lc = A.arena_hard_length_controlled(J, [100] * 80, [100] * 80, resample="battle", rounds=20, seed=4)
    assert lc["ci_low"] < lc["value"] < lc["ci_high"]


# ------------------------------------------------------------------ length control
def test_arena_hard_lc_equal_lengths_is_the_penalised_bt():
    """Equal lengths: z = 0 everywhere, so the length coefficient is 0 and the fit is the BT
    of the 4 prompts with the benchmark's L2 penalty (C=1) on c_model and c_base.
    By symmetry c_base = -c_model, d = c_model - c_base, penalty d^2/4, and the optimum solves
    d/2 + ln10 * sum_i 2 w_i (p - y_i) = 0  ->  ln10 * (24 p - 18) = -d/2,  p = sigmoid(ln10 d):
    slightly below the 75 % of the unpenalised fit."""
    r = A.arena_hard_length_controlled(FOUR, [300] * 4, [300] * 4)
    _json_ok(r)
    p = r["value"] / 100
    d = r["bt_rating_gap"] / 400
    assert math.log(10) * (24 * p - 18) + d / 2 == pytest.approx(0.0, abs=1e-9)
    assert p == pytest.approx(1 / (1 + 10 ** -d), abs=1e-12)
    assert 70.0 < r["value"] < 75.0
    assert r["length_coef"] == pytest.approx(0.0, abs=1e-9)
    assert r["win_rate"] == pytest.approx(75.0)
    assert r["center"] == 0.0 and r["scale"] == 1.0   # the std of x is 0 here


def test_arena_hard_lc_removes_a_length_advantage():
    # 20 prompts where the model's answer is twice as long and wins both games; 20 of equal
    # length where it wins one game and loses the other: WR = (40 + 20) / 80 = 75 %, but at
    # equal length the model wins half its battles, so LC is near 50 % and the judge's
    # length coefficient is positive.
    J = [{"model_as_a": "A>B", "model_as_b": "B>A"}] * 20 + [{"model_as_a": "A>B", "model_as_b": "A>B"}] * 20
    lm, lb = [600] * 20 + [400] * 20, [300] * 20 + [400] * 20
    r = A.arena_hard_length_controlled(J, lm, lb, rounds=30)
    assert r["win_rate"] == pytest.approx(75.0)
    assert 45.0 < r["value"] < 55.0 and r["length_coef"] > 0
    # centred on its own battles (the benchmark with no other model) it gives back ~ the WR
    own = A.arena_hard_length_controlled(J, lm, lb, rounds=30, center="battles")
    assert abs(own["value"] - 75.0) < abs(r["value"] - 75.0)
    with pytest.raises(ValueError):
        A.arena_hard_length_controlled(J, lm[:-1], lb)
    with pytest.raises(ValueError):
        A.arena_hard_length_controlled(J, lm, lb, center="pool")


def test_arena_hard_lc_matches_the_benchmarks_fit_bt():
    """fit_bt + construct_style_matrices(length only) of Arena-Hard-Auto v0.1 for the model and
    the baseline, with our center (0) and scale: LogisticRegression(fit_intercept=False), C=1."""
    sk = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(5)
    J = _random_judgments(120, 5)
    lm, lb = rng.integers(50, 900, 120), rng.integers(50, 900, 120)
    r = A.arena_hard_length_controlled(J, lm.tolist(), lb.tolist(), rounds=5)
    b = A.arena_hard_battles(J)
    reps = b["w"].astype(int)
    y_base = np.repeat(1.0 - b["y"], reps)                       # battles: a = baseline, b = model
    pa = np.repeat(b["prompt"], reps)
    x = (lb[pa] - lm[pa]) / (lb[pa] + lm[pa] + 1)                # (a - b) / (a + b + 1)
    n = len(y_base)
    X = np.zeros((2 * n, 3))
    X[:, 0], X[:, 1] = math.log(10), -math.log(10)
    X[:, 2] = np.concatenate([x, x]) / r["scale"]
    Y = np.concatenate([y_base, y_base])
    Y = np.where(Y == 0.5, 0.0, Y)
    Y[:n][y_base == 0.5] = 1.0
    lr = sk.LogisticRegression(fit_intercept=False, tol=1e-12, max_iter=10000).fit(X, Y)
    c_base, c_model, gamma = lr.coef_[0]
    assert r["value"] == pytest.approx(100 / (1 + 10 ** (c_base - c_model)), abs=1e-5)
    assert r["length_coef"] == pytest.approx(gamma, abs=1e-5)   # same sign: x flips with the sides


# ============================================================================== MT-Bench
def test_mt_bench_hand_computed():
    # Q1 [8, 6], Q2 [9, failed], Q3 [7, 5]
    # turn 1: (8+9+7)/3 = 8.0; turn 2: (6+5)/2 = 5.5; overall over the 5 ratings: 35/5 = 7.0
    # (not the mean of the turn means, 6.75: FastChat averages all the ratings)
    r = A.mt_bench_score([[8, 6], [9, None], [7, 5]], rounds=200)
    _json_ok(r)
    assert r["value"] == pytest.approx(7.0)
    t1, t2 = r["turns"]
    assert (t1["value"], t1["n"], t1["failed"]) == (pytest.approx(8.0), 3, 0)
    assert (t2["value"], t2["n"], t2["failed"]) == (pytest.approx(5.5), 2, 1)
    assert (r["n"], r["n_ratings"], r["failed"], r["full_set"]) == (3, 5, 1, False)
    assert r["ci_low"] <= r["value"] <= r["ci_high"]
    assert r["interval"]["unit"] == "question"
    by_id = A.mt_bench_score({81: [8, 6], 82: [9, None], 83: [7, 5]}, rounds=200)
    assert (by_id["value"], by_id["ci_low"], by_id["ci_high"]) == (r["value"], r["ci_low"], r["ci_high"])


def test_mt_bench_full_set_interval_and_errors():
    rng = np.random.default_rng(0)
    ratings = [[float(rng.integers(1, 11)), float(rng.integers(1, 11))] for _ in range(80)]
    r1 = A.mt_bench_score(ratings, seed=3)
    assert r1["full_set"] and r1["n_ratings"] == 160 and r1["failed"] == 0
    assert r1["ci_low"] < r1["value"] < r1["ci_high"]
    assert r1["value"] == pytest.approx(np.mean(ratings))
    assert A.mt_bench_score(ratings, seed=3)["ci_low"] == r1["ci_low"]
    for bad in ([[8, 11]], [[8, 0]], [[8, 6], [7]], [], [[None, None]], [["8", 6]]):
        with pytest.raises(ValueError):
            A.mt_bench_score(bad)


# ============================================================================= WildBench
WB_ITEMS = [
    {"score": 8, "tags": ["Coding & Debugging"]},
    {"score": 6, "tags": ["Math", "Data Analysis"]},                        # one group, counted once
    {"score": 4, "tags": ["Creative Writing", "Editing", "Information seeking"]},
    {"score": 9, "primary_tag": "Reasoning", "secondary_tags": ["Planning"]},
    {"score": 7, "tags": ["Advice seeking"]},
    {"score": None, "tags": ["Math"]},                                      # failed judgement
    {"score": 10, "tags": ["Coding & Debugging"], "output": "def f(): ... (truncated)"},
]


def test_wildbench_hand_computed():
    # Groups (the truncated answer left out of them, the failed one out of everything):
    #   Coding [8] -> (8-5)*2 = 6      Math & DA [6] -> 2        Creative [4] -> -2
    #   Info/Advice [4, 7] -> 5.5 -> 1  Planning & Reasoning [9] -> 8
    # macro = (0.5*-2 + 1.25*8 + 1*2 + 0.75*1 + 1.25*6) / 4.75 = 19.25 / 4.75 = 4.0526..., x10
    # plain = (mean(8,6,4,9,7,10) - 5) * 2 * 10 = (44/6 - 5) * 20 = 46.67
    r = A.wildbench_score(WB_ITEMS, rounds=300)
    _json_ok(r)
    assert r["value"] == pytest.approx(10 * 19.25 / 4.75)
    assert r["wb_score_plain"] == pytest.approx((44 / 6 - 5) * 20)
    g = r["groups"]
    assert [g[k]["value"] for k in ("Coding & Debugging", "Math & Data Analysis", "Creative Tasks",
                                    "Information/Advice seeking", "Planning & Reasoning")] == \
        [pytest.approx(v) for v in (60, 20, -20, 10, 80)]
    assert g["Information/Advice seeking"]["n"] == 2 and g["Creative Tasks"]["n"] == 1
    assert (r["n"], r["n_items"], r["failed"], r["excluded_from_groups"]) == (6, 7, 1, 1)
    assert r["missing_groups"] == []
    assert r["mean_length_chars"] is None                      # only the truncated answer was given
    with_out = [dict(it, output="x" * 10 * (i + 1)) if "output" not in it else it for i, it in enumerate(WB_ITEMS)]
    # the scored, untruncated answers: items 1-5 with 10..50 characters -> 30 (item 6 failed)
    assert A.wildbench_score(with_out, rounds=10)["mean_length_chars"] == pytest.approx(30.0)
    assert r["ci_low"] <= r["value"] <= r["ci_high"]
    assert A.wildbench_score(WB_ITEMS, rounds=300)["ci_high"] == r["ci_high"]


def test_wildbench_missing_group_and_errors():
    # one Coding task scored 10: the other groups are missing and drop out of the sum but not
    # out of the total weight (WildBench's code): 1.25 * 10 / 4.75 * 10 = 26.3
    r = A.wildbench_score([{"score": 10, "tags": ["Coding & Debugging"]}], rounds=20)
    assert r["value"] == pytest.approx(125 / 4.75)
    assert len(r["missing_groups"]) == 4
    for bad in ([{"score": 11, "tags": ["Math"]}], [{"score": 5, "tags": ["Cooking"]}],
                [{"score": 5}], [{"score": None, "tags": ["Math"]}], []):
        with pytest.raises(ValueError):
            A.wildbench_score(bad)


def test_wildbench_elo_is_not_computable_from_one_model():
    r = A.wildbench_elo(WB_ITEMS)
    _json_ok(r)
    assert r["value"] is None and r["computable"] is False and "pair" in r["reason"]
    assert r["failed"] == 1


# ============================================================================ AlpacaEval
def test_alpaca_eval_win_rates():
    pytest.importorskip("alpaca_eval")
    ones = A.alpaca_eval_winrate([2.0] * 5, [100] * 5, [80] * 5)
    _json_ok(ones)
    assert ones["value"] == 100.0 and ones["standard_error"] == 0.0
    assert ones["lc_win_rate"] is None and "805" in ones["lc_reason"]
    assert A.alpaca_eval_winrate([1.0] * 5, [100] * 5, [80] * 5)["value"] == 0.0
    # [2, 1, 1.5, 2, 1.75, failed] -> (1, 0, .5, 1, .75): mean .65 -> 65 %;
    # deviations .35 -.65 -.15 .35 .1, squares sum .7, var .7/4 = .175, se = sqrt(.175/5) = 18.708 %
    mixed = A.alpaca_eval_winrate([2, 1, 1.5, 2, 1.75, None], [10, 20, 30, 40, 50, 60], [5] * 6)
    assert mixed["value"] == pytest.approx(65.0)
    assert mixed["standard_error"] == pytest.approx(100 * math.sqrt(0.175 / 5))
    assert (mixed["n"], mixed["failed"], mixed["n_draws"], mixed["n_wins"], mixed["n_wins_base"]) == (5, 1, 1, 3, 1)
    assert mixed["mean_length_chars"] == pytest.approx(35.0)
    assert mixed["ci_low"] == pytest.approx(65 - 1.959964 * mixed["standard_error"], abs=1e-4)
    # 0 is a draw for alpaca_eval
    assert A.alpaca_eval_winrate([0, 2], [1, 1], [1, 1])["value"] == pytest.approx(75.0)
    for bad in ([2.5], [-1], ["2"]):
        with pytest.raises(ValueError):
            A.alpaca_eval_winrate(bad, [1], [1])
    with pytest.raises(ValueError):
        A.alpaca_eval_winrate([2, 1], [1], [1, 1])


def _fake_gamed(tmp_path, n=805, seed=0):
    """A stand-in for alpaca_eval's hub file df_gamed.csv (two 'gamed' baselines with an
    instruction difficulty per instruction), so the LC code runs offline."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    diff = rng.normal(size=n)
    rows = [{"model": m, "index": i, "instruction_difficulty": float(diff[i]),
             "preference": float(rng.uniform()), "std_delta_len": float(rng.normal()),
             "not_gamed_baseline": False}
            for m in ("gamed_verbose", "gamed_concise") for i in range(n)]
    path = tmp_path / "df_gamed.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_alpaca_eval_lc_calls_alpaca_eval(tmp_path, monkeypatch):
    pytest.importorskip("alpaca_eval")
    import pandas as pd
    from alpaca_eval.metrics import glm_winrate

    path = _fake_gamed(tmp_path)
    monkeypatch.setattr(glm_winrate, "hf_hub_download", lambda **_: str(path))
    rng = np.random.default_rng(1)
    prefs = np.where(rng.uniform(size=805) < 0.7, 2.0, 1.0).tolist()
    ml, rl = rng.integers(100, 2000, 805).tolist(), rng.integers(100, 2000, 805).tolist()
    r = A.alpaca_eval_winrate(prefs, ml, rl)
    _json_ok(r)
    assert r["lc_defined"] and "not checked" in r["lc_reason"]
    df = pd.DataFrame({"output_1": ["x" * v for v in rl], "output_2": ["x" * v for v in ml],
                       "preference": prefs, "generator_1": "reference", "generator_2": "model"})
    direct = glm_winrate.get_length_controlled_winrate(df, save_weights_dir=None)
    assert r["lc_win_rate"] == pytest.approx(direct["length_controlled_winrate"])
    assert r["value"] == pytest.approx(100 * np.mean(np.array(prefs) - 1))
    # the eligibility rule of negfree.evaluate.alpaca: reference not in the instructions' order
    instr = [{"instruction": f"q{i}"} for i in range(805)]
    ref = list(reversed(instr))
    off = A.alpaca_eval_winrate(prefs, ml, rl, instructions=instr, reference=ref)
    assert off["lc_win_rate"] is None and "order" in off["lc_reason"]
    # 805 instructions in their own order but not AlpacaEval's set: LC reads each instruction's difficulty by
    # its position in that set, so it is refused (negfree.evaluate.alpaca checks the set's sha256)
    other = A.alpaca_eval_winrate(prefs, ml, rl, instructions=instr, reference=instr)
    assert other["lc_win_rate"] is None and "not AlpacaEval's set" in other["lc_reason"]
    assert A.alpaca_eval_winrate(prefs, ml, rl, limit=100)["lc_win_rate"] is None
    assert A.alpaca_eval_winrate(prefs, ml, rl, lc=False)["lc_win_rate"] is None


def test_alpaca_eval_lc_offline_failure(monkeypatch):
    pytest.importorskip("alpaca_eval")
    from alpaca_eval.metrics import glm_winrate

    def offline(**_):
        raise OSError("no network")

    monkeypatch.setattr(glm_winrate, "hf_hub_download", offline)
    r = A.alpaca_eval_winrate([2.0, 1.0] * 402 + [2.0], [10] * 805, [10] * 805)
    assert r["lc_win_rate"] is None and "no network" in r["lc_reason"]
    assert r["value"] == pytest.approx(100 * 403 / 805)
    with pytest.raises(OSError):
        A.alpaca_eval_winrate([2.0] * 805, [10] * 805, [10] * 805, strict_lc=True)
