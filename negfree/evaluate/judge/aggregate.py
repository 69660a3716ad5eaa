"""Judge verdicts -> benchmark scores, with their uncertainty.

One function per reported number, each returning a plain JSON-serialisable dict with at least
``metric``, ``value``, ``n`` (the units the interval resamples over, or the judged items),
``failed`` (failed judgements, excluded), ``ci_low``/``ci_high`` and ``interval`` (its method,
unit, level and, for a bootstrap, rounds and seed). Numbers are plain floats; a value that is
not defined is None, with the reason beside it.

- :func:`arena_hard_score`: Arena-Hard-Auto v0.1 win rate against the baseline (GPT-4-0314).
- :func:`arena_hard_length_controlled`: its length-controlled variant (BNF's "LC").
- :func:`mt_bench_score`: MT-Bench single-answer grading, per turn and overall.
- :func:`wildbench_score`: WildBench v2 WB-Score (task macro) and the plain one.
- :func:`wildbench_elo`: WB-Elo, which one model's scores cannot give (returns None and why).
- :func:`alpaca_eval_winrate`: AlpacaEval 2 win rate and LC win rate, by alpaca_eval's own code.

How the papers report them (/work/shared/papers):
- AlpacaEval 2: LC win rate (dft.txt Fig. 2a, 5, 6: "length-controlled winning rate (LC)"
  and the average output length, 1359 vs 1449/1477/1868: AlpacaEval's ``avg_length``, in
  characters), win rate and LC win rate
  (ift.txt Table 2: "Alpaca-Eval-2 win-rate / lc win-rate").
- Arena-Hard v0.1: win rate (WR, %) against GPT-4-0314 judged by GPT-4 Turbo (asft.txt Tables
  1-3); WR and length-controlled win rate (LC, %) judged by GPT-4o-mini instead of GPT-4 Turbo
  (bnf.txt section 4 and footnote 2, Tables 4 and 6), mean answer length "AH" (bnf.txt Table 5).
- MT-Bench: single-answer grading 1-10 over 80 questions, judged by GPT-4 and GPT-4 Turbo
  (asft.txt Tables 1-3).
- WildBench: "Score" and "Elo" judged by GPT-4o (bnf.txt Tables 1, 4, 6), mean length "WB"
  (Table 5). The Score is the leaderboard's ``WB_score.task_macro``: BNF's base-model scores
  (Llama-3-8B-Instruct 29.2, Mistral-7B-Instruct-v0.2 25.6, Gemma-2-9b-it 42.7; the SimPO and
  DPO Gemma-2 checkpoints 53.3 and 53.2) are that column of WildBench's
  leaderboard/data_dir/all_stat_wildbench.-1.json (29.20, 25.63, 42.70, 53.28, 53.22), and
  their "WB" lengths (2975, 2832) its ``Length``, in characters.

Conventions of this module, [ours]: percentile bootstrap intervals (as the benchmarks' own
code uses for Arena-Hard and WB-Elo), 95% by default, seeded with numpy's
``default_rng(seed)`` so a result is reproduced exactly by its seed; Arena-Hard resamples
prompts (both games of a prompt together) unless ``resample="battle"`` asks for the
benchmark's own unit.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

from negfree.evaluate.judge.verdicts import arena_hard_label

__all__ = [
    "ARENA_HARD_BASELINE", "ARENA_HARD_ROUNDS", "ARENA_HARD_WEIGHT", "MT_BENCH_QUESTIONS",
    "WB_TASK_GROUPS", "WB_TASK_WEIGHTS",
    "alpaca_eval_winrate", "arena_hard_battles", "arena_hard_length_controlled", "arena_hard_score",
    "mt_bench_score", "wildbench_elo", "wildbench_score",
]

LEVEL = 0.95
SEED = 42              # Arena-Hard-Auto v0.1 utils_math.py seeds numpy with 42
BOOTSTRAP_ROUNDS = 1000
LN10 = math.log(10.0)


# ============================================================================ shared
def _check_common(level: float, rounds: int) -> None:
    if not (isinstance(level, (int, float)) and 0 < level < 1):
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")


def _percentiles(samples, level: float) -> tuple[float | None, float | None]:
    """The (1-level)/2 and (1+level)/2 percentiles (numpy's linear interpolation), ignoring NaN."""
    s = np.asarray(samples, dtype=float)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return None, None
    lo, hi = np.percentile(s, [50.0 * (1 - level), 50.0 * (1 + level)])
    return float(lo), float(hi)


def _bootstrap_interval(unit: str, level: float, rounds: int, seed: int, **extra) -> dict:
    return {"method": "bootstrap-percentile", "unit": unit, "level": float(level),
            "rounds": int(rounds), "seed": seed, **extra}


def _f(x) -> float | None:
    """A plain float, or None for a missing or non-finite number."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=float)))


def _fit_logistic(X: np.ndarray, y: np.ndarray, s: np.ndarray, C: float | None = None,
                  tol: float = 1e-12, max_iter: int = 200) -> np.ndarray:
    """Coefficients minimising  sum_i s_i * CE(y_i, sigmoid(x_i . b))  [+ |b|^2 / (2C)].

    Soft labels y in [0, 1] (a tie is 0.5), sample weights s >= 0, no intercept; with C it is
    the objective of scikit-learn's ``LogisticRegression(C=C, fit_intercept=False)`` (L2), up
    to the factor C. Newton's method with step halving; the data must not be separable when C
    is None (callers handle that case: the MLE is then at infinity)."""
    k = X.shape[1]
    reg = 0.0 if C is None else 1.0 / float(C)
    beta = np.zeros(k)

    def objective(b):
        z = X @ b
        return float(np.sum(s * (np.logaddexp(0.0, z) - y * z)) + 0.5 * reg * (b @ b))

    f = objective(beta)
    for _ in range(max_iter):
        p = _sigmoid(X @ beta)
        grad = X.T @ (s * (p - y)) + reg * beta
        hess = (X * (s * p * (1.0 - p))[:, None]).T @ X + reg * np.eye(k)
        step = np.linalg.lstsq(hess, grad, rcond=None)[0]
        t = 1.0
        while True:
            new = beta - t * step
            f_new = objective(new)
            if f_new <= f + 1e-12 * (1.0 + abs(f)) or t < 1e-8:
                break
            t *= 0.5
        beta, f = new, f_new
        if np.max(np.abs(t * step)) < tol * (1.0 + np.max(np.abs(beta))):
            break
    return beta


# ======================================================================== Arena-Hard
ARENA_HARD_BASELINE = "gpt-4-0314"
ARENA_HARD_WEIGHT = 3
ARENA_HARD_ROUNDS = 100

# The model's outcome (1 win, 0.5 tie, 0 loss) and whether the verdict is strong, by label,
# for the game where the model's answer was shown as assistant A, and as assistant B.
_AS_A = {"A>>B": (1.0, True), "A>B": (1.0, False), "A=B": (0.5, False),
         "B>A": (0.0, False), "B>>A": (0.0, True)}
_AS_B = {"A>>B": (0.0, True), "A>B": (0.0, False), "A=B": (0.5, False),
         "B>A": (1.0, False), "B>>A": (1.0, True)}
_SOURCE_AH = ("Arena-Hard-Auto v0.1 (github.com/lmarena/arena-hard-auto at 0489bf3, 2024-09-01): "
              "show_result.py, utils_math.py; Li et al. 2024, arXiv:2406.11939")


def arena_hard_battles(judgments: Sequence[Mapping[str, Any]], weight: int = ARENA_HARD_WEIGHT) -> dict:
    """The battles of the judged model against the baseline, from the model's side.

    ``judgments``: one mapping per prompt, in a fixed order, with
    - ``"model_as_a"``: the verdict label of the game where the model's answer was shown as
      assistant A and the baseline's as B (Arena-Hard-Auto's second game, ``games[1]``);
    - ``"model_as_b"``: the label of the game with the baseline as A and the model as B (its
      first game, ``games[0]``: gen_judgment.py puts the baseline first and swaps for game 2);
    each one of ``A>>B, A>B, A=B, B>A, B>>A`` (their synonyms B<<A etc. accepted), or None for
    a failed judgement. Both keys are required.

    Each judged game is one battle with outcome y (1 model wins, 0.5 tie, 0 baseline wins)
    and weight w: ``weight`` (3) for a strong verdict (>>), else 1. This is v0.1
    show_result.py ``get_battles_from_row``: a strong verdict is the same battle appended
    ``multiplier`` times (``--weight``, default 3); a tie is a battle won by neither
    (utils_math.py ``compute_mle_elo`` counts it as one win for each side over the battles
    duplicated); a game whose label is missing gets weight 0 and is dropped on its own, the
    prompt's other game kept (v2.0 drops the prompt when either game failed).

    Returns ``{"prompt", "y", "w"}`` (numpy arrays, one entry per judged game), ``failed``
    (games), ``n_prompts`` and ``counts`` (games by outcome for the model: win_much, win, tie,
    loss, loss_much).
    """
    if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
        raise ValueError(f"weight must be a positive integer (Arena-Hard's multiplier), got {weight!r}")
    if isinstance(judgments, (str, bytes, Mapping)) or not isinstance(judgments, Sequence):
        raise ValueError("judgments must be a sequence of {'model_as_a', 'model_as_b'} mappings, one per prompt")
    prompt, ys, ws, failed = [], [], [], 0
    counts = {"win_much": 0, "win": 0, "tie": 0, "loss": 0, "loss_much": 0}
    for i, j in enumerate(judgments):
        if not isinstance(j, Mapping) or "model_as_a" not in j or "model_as_b" not in j:
            raise ValueError(f"judgment {i}: needs the keys 'model_as_a' and 'model_as_b' (a label or None)")
        for key, table in (("model_as_b", _AS_B), ("model_as_a", _AS_A)):
            raw = j[key]
            if raw is None:
                failed += 1
                continue
            try:
                y, strong = table[arena_hard_label(raw)]
            except ValueError as err:
                raise ValueError(f"judgment {i} {key}: {err}") from None
            prompt.append(i)
            ys.append(y)
            ws.append(float(weight if strong else 1))
            counts[{1.0: "win", 0.5: "tie", 0.0: "loss"}[y] + ("_much" if strong else "")] += 1
    return {"prompt": np.asarray(prompt, dtype=int), "y": np.asarray(ys, dtype=float),
            "w": np.asarray(ws, dtype=float), "failed": failed, "n_prompts": len(judgments),
            "counts": counts}


def _resample_counts(rng, b: dict, resample: str, rounds: int) -> np.ndarray:
    """(rounds, games) multiplicities of each judged game in each bootstrap sample (fractional
    for "battle": the rows drawn of a game over its weight).

    ``"prompt"`` [ours]: prompts drawn with replacement, a prompt's games together (they share
    the prompt and both answers). ``"battle"``: Arena-Hard-Auto v0.1's unit,
    ``battles.sample(frac=1.0, replace=True)`` over the battle rows, where a strong verdict is
    ``weight`` rows drawn independently (utils_math.py ``get_bootstrap_result``)."""
    games = len(b["y"])
    if resample == "prompt":
        judged = np.unique(b["prompt"])
        pos = np.searchsorted(judged, b["prompt"])
        draws = rng.integers(0, len(judged), size=(rounds, len(judged)))
        per_prompt = np.stack([np.bincount(d, minlength=len(judged)) for d in draws])
        return per_prompt[:, pos].astype(float)
    if resample == "battle":
        reps = b["w"].astype(int)
        owner = np.repeat(np.arange(games), reps)
        draws = rng.integers(0, len(owner), size=(rounds, len(owner)))
        rows = np.stack([np.bincount(owner[d], minlength=games) for d in draws]).astype(float)
        return rows / b["w"]     # in games: w * multiplicity = the rows drawn
    raise ValueError(f"resample must be 'prompt' or 'battle', got {resample!r}")


def _ah_interval(level, rounds, seed, resample) -> dict:
    unit = "prompt" if resample == "prompt" else "battle"
    return _bootstrap_interval(unit, level, rounds, seed, point="fit on all the data",
                               note=("[ours] prompts resampled, both games together" if unit == "prompt" else
                                     "Arena-Hard-Auto v0.1's unit: battle rows, strong verdicts as "
                                     "`weight` rows"))


def _ah_fields(b: dict, n_games: int, lo: float, hi: float, level, rounds, seed, resample, weight, baseline) -> dict:
    """What the two Arena-Hard aggregations report alike: the interval, the counts, the settings."""
    return {"ci_low": lo, "ci_high": hi, "interval": _ah_interval(level, rounds, seed, resample),
            "n": int(len(np.unique(b["prompt"]))), "n_prompts": b["n_prompts"], "n_games": n_games,
            "failed": b["failed"], "failed_unit": "game", "counts": b["counts"], "weight": weight,
            "baseline": baseline}


def arena_hard_score(judgments: Sequence[Mapping[str, Any]], *, weight: int = ARENA_HARD_WEIGHT,
                     rounds: int = ARENA_HARD_ROUNDS, seed: int = SEED, level: float = LEVEL,
                     resample: str = "prompt", baseline: str = ARENA_HARD_BASELINE) -> dict:
    """Arena-Hard-Auto v0.1 "score": the model's win rate against the baseline, in percent.

    Definition (v0.1 show_result.py and utils_math.py): the battles of
    :func:`arena_hard_battles` (two games per prompt, a strong verdict counted ``weight``=3
    times, ties counted); a Bradley-Terry model fitted by logistic regression
    (``compute_mle_elo``: ``LogisticRegression(fit_intercept=False, penalty=None)``, ratings
    on the Elo scale, 400 * coefficient with base 10, baseline anchored at 1000); the score is
    the BT probability that the model beats the baseline (``get_win_rate_column``), x100; the
    95% interval is the 2.5 and 97.5 percentiles of the same over ``--num-rounds`` (default
    100) bootstrap samples.

    With the baseline as the only opponent, the BT win rate IS the weighted win rate with
    ties as half: the model has one free parameter d (its rating minus the baseline's, in
    units of 400 Elo), p = sigmoid(ln10 * d) is the same for every battle, and the likelihood
    sum_i w_i [y_i log p + (1 - y_i) log(1 - p)] is maximised at
    p = sum_i w_i y_i / sum_i w_i. Both are returned (``bt_win_rate`` from the fit,
    ``weighted_win_rate`` in closed form; they agree to rounding) and the bootstrap uses the
    closed form. When the model wins (loses) every battle the MLE is at infinity: the value is
    100 (0) and ``bt_rating`` is None.

    ``resample``: "prompt" [ours, default] or "battle" (the benchmark's); see
    :func:`_resample_counts`. ``n`` counts the prompts with at least one judged game;
    ``failed`` counts failed games.
    """
    _check_common(level, rounds)
    b = arena_hard_battles(judgments, weight)
    y, w = b["y"], b["w"]
    if len(y) == 0:
        raise ValueError("no judged game: every judgement failed")
    p = float(np.sum(w * y) / np.sum(w))
    if 0.0 < p < 1.0:
        d = float(_fit_logistic(np.full((len(y), 1), LN10), y, w)[0])
        bt = float(_sigmoid(LN10 * d))
        rating = 1000.0 + 400.0 * d
    else:
        bt, rating = p, None
    mult = _resample_counts(np.random.default_rng(seed), b, resample, rounds)
    samples = (mult @ (w * y)) / (mult @ w)
    lo, hi = _percentiles(100.0 * samples, level)
    return {
        "metric": "arena_hard_win_rate",
        "benchmark": "Arena-Hard-Auto v0.1",
        "value": 100.0 * bt,
        "unit": "percent",
        "bt_win_rate": 100.0 * bt,
        "weighted_win_rate": 100.0 * p,
        "bt_rating": _f(rating),
        **_ah_fields(b, int(len(y)), lo, hi, level, rounds, seed, resample, weight, baseline),
        "source": _SOURCE_AH,
    }


def _length_feature(judgments, model_lengths, baseline_lengths) -> np.ndarray:
    n = len(judgments)
    out = []
    for name, lengths in (("model_lengths", model_lengths), ("baseline_lengths", baseline_lengths)):
        arr = np.asarray(lengths, dtype=float) if lengths is not None else None
        if arr is None or arr.ndim != 1 or len(arr) != n:
            raise ValueError(f"{name}: needs one length per judgment ({n})")
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise ValueError(f"{name}: lengths must be finite and >= 0")
        out.append(arr)
    lm, lb = out
    return (lm - lb) / (lm + lb + 1.0)


def arena_hard_length_controlled(judgments: Sequence[Mapping[str, Any]], model_lengths: Sequence[float],
                                 baseline_lengths: Sequence[float], *, weight: int = ARENA_HARD_WEIGHT,
                                 rounds: int = ARENA_HARD_ROUNDS, seed: int = SEED, level: float = LEVEL,
                                 resample: str = "prompt", center: float | str = 0.0,
                                 scale: float | None = None, C: float = 1.0,
                                 length_unit: str = "tokens",
                                 baseline: str = ARENA_HARD_BASELINE) -> dict:
    """Arena-Hard length-controlled win rate (BNF's "LC"), in percent.

    Definition (Arena-Hard-Auto v0.1 ``show_result.py --length-control-only``, utils_math.py
    ``construct_style_matrices`` with the length element only and ``fit_bt``; the method of
    LMSYS's style-control blog post, 2024-08-28): the BT model of :func:`arena_hard_score`
    with one covariate per battle, the normalised length difference
    x = (L_model - L_baseline) / (L_model + L_baseline + 1), standardised as
    z = (x - center) / scale; fitted by L2-penalised logistic regression
    (``LogisticRegression(fit_intercept=False)``, C = 1, on the battles duplicated with a tie
    as one win and one loss, i.e. sample weight 2w and label 1/2 here); the LC win rate is the
    model's BT win probability at z = 0, sigmoid(ln10 * (c_model - c_baseline)), x100. The
    benchmark measures L in tokens of the answer (tiktoken's gpt-3.5-turbo encoding,
    ``conv_metadata.token_len``); give both lengths in the same unit (``length_unit`` is
    recorded). The interval: the same fit on ``rounds`` bootstrap samples (the covariate is
    not re-standardised, as in ``get_bootstrap_result_style_control``), its 2.5/97.5
    percentiles.

    BNF (bnf.txt section 4) names its Arena-Hard "LC" the "length-controlled win rate" without
    naming the option; [ours] we take it to be ``--length-control-only`` (``--style-control``
    adds three markdown counts, headers, lists and bold, as covariates, which this function
    does not: it needs only the answers' lengths).

    [ours] The benchmark standardises x by the mean and standard deviation over the battles
    of EVERY model in its judgment folder, so its LC depends on that pool, and z = 0 is the
    pool's mean length difference. With the judged model alone against the baseline,
    centring on the model's own mean would put z = 0 at its own average length and give back
    the plain win rate. By default, therefore, ``center`` is 0 (z = 0: both answers equally
    long) and ``scale`` the standard deviation of x over this model's battles (weighted as
    the battle rows; 1 if it is 0). To reproduce the benchmark's numbers pass the pool's
    ``center`` and ``scale``; ``center="battles"`` centres on this model's battles as the
    benchmark would with no other model.
    """
    _check_common(level, rounds)
    b = arena_hard_battles(judgments, weight)
    x_prompt = _length_feature(judgments, model_lengths, baseline_lengths)
    y, w = b["y"], b["w"]
    if len(y) == 0:
        raise ValueError("no judged game: every judgement failed")
    if not (isinstance(C, (int, float)) and C > 0):
        raise ValueError(f"C must be > 0, got {C!r}")
    x = x_prompt[b["prompt"]]
    mean = float(np.sum(w * x) / np.sum(w))
    if center == "battles":
        c0 = mean
    elif isinstance(center, (int, float)) and not isinstance(center, bool):
        c0 = float(center)
    else:
        raise ValueError(f"center must be a number or 'battles', got {center!r}")
    if scale is None:
        sd = math.sqrt(float(np.sum(w * (x - mean) ** 2) / np.sum(w)))
        s0 = sd if sd > 0 else 1.0
    else:
        if not (isinstance(scale, (int, float)) and scale > 0):
            raise ValueError(f"scale must be > 0, got {scale!r}")
        s0 = float(scale)
    z = (x - c0) / s0
    X = np.column_stack([np.full(len(y), LN10), np.full(len(y), -LN10), z])

    def lc(mult):
        beta = _fit_logistic(X, y, 2.0 * w * mult, C=C)
        return float(_sigmoid(LN10 * (beta[0] - beta[1]))), beta

    p_lc, beta = lc(np.ones(len(y)))
    mult = _resample_counts(np.random.default_rng(seed), b, resample, rounds)
    samples = [100.0 * lc(m)[0] for m in mult]
    lo, hi = _percentiles(samples, level)
    lm = np.asarray(model_lengths, dtype=float)
    lb = np.asarray(baseline_lengths, dtype=float)
    return {
        "metric": "arena_hard_lc_win_rate",
        "benchmark": "Arena-Hard-Auto v0.1, length control",
        "value": 100.0 * p_lc,
        "unit": "percent",
        "win_rate": 100.0 * float(np.sum(w * y) / np.sum(w)),
        "length_coef": float(beta[2]),
        "bt_rating_gap": float(400.0 * (beta[0] - beta[1])),
        **_ah_fields(b, int(len(y)), lo, hi, level, rounds, seed, resample, weight, baseline),
        "length_unit": length_unit,
        "mean_model_length": float(lm.mean()) if len(lm) else None,
        "mean_baseline_length": float(lb.mean()) if len(lb) else None,
        "center": c0, "scale": s0, "C": float(C),
        "center_rule": ("the model's own battles (the benchmark with no other model)" if center == "battles"
                        else "[ours] 0: equal lengths" if c0 == 0.0 else "given"),
        "source": _SOURCE_AH + "; LMSYS blog 'Does style matter?' (2024-08-28)",
    }


# ========================================================================== MT-Bench
MT_BENCH_QUESTIONS = 80
MT_BENCH_TURNS = 2
_SOURCE_MT = ("FastChat fastchat/llm_judge (github.com/lm-sys/FastChat): show_result.py "
              "display_result_single, common.py, README 'single-answer grading'; "
              "Zheng et al. 2023, arXiv:2306.05685")


def mt_bench_score(ratings: Sequence[Sequence[float | None]] | Mapping[Any, Sequence[float | None]], *,
                   rounds: int = BOOTSTRAP_ROUNDS, seed: int = SEED, level: float = LEVEL) -> dict:
    """MT-Bench single-answer grading: the mean rating (1-10) per turn and overall.

    ``ratings``: one sequence per question (a list, or a mapping question id -> ratings), the
    ratings of its turns in order (MT-Bench: 80 questions x 2 turns), each a number in
    [1, 10] or None for a failed judgement.

    Definition (FastChat fastchat/llm_judge/show_result.py ``display_result_single``; README:
    "For each turn, GPT-4 will give a score on a scale of 10. We then compute the average
    score on all turns"): judgements scored -1 (no rating parsed) are dropped; the turn-1 and
    turn-2 scores are the means of that turn's ratings; the overall score is the mean of ALL
    the remaining ratings (so with failures it is not the mean of the two turn means).

    Interval [ours]: percentile bootstrap over questions (a question's turns together: the
    second turn continues the first), ``rounds`` samples; FastChat reports none. ``failed``:
    failed ratings; ``n``: questions; ``full_set``: 80 questions of 2 turns each.
    """
    _check_common(level, rounds)
    rows = list(ratings.values()) if isinstance(ratings, Mapping) else ratings
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence) or not rows:
        raise ValueError("ratings must be a non-empty sequence (or mapping) of per-question rating lists")
    turns = None
    R = []
    for i, row in enumerate(rows):
        if isinstance(row, (str, bytes)) or not isinstance(row, Sequence) or not row:
            raise ValueError(f"question {i}: needs a non-empty list of turn ratings")
        if turns is None:
            turns = len(row)
        elif len(row) != turns:
            raise ValueError(f"question {i}: {len(row)} turns, the others have {turns}")
        vals = []
        for t, r in enumerate(row):
            if r is None:
                vals.append(math.nan)
                continue
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not 1.0 <= float(r) <= 10.0:
                raise ValueError(f"question {i} turn {t + 1}: rating {r!r} is not a number in [1, 10] (or None)")
            vals.append(float(r))
        R.append(vals)
    R = np.asarray(R, dtype=float)
    ok = np.isfinite(R).astype(float)
    if not ok.any():
        raise ValueError("no rating: every judgement failed")
    V = np.where(ok > 0, R, 0.0)
    Q = len(R)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, Q, size=(rounds, Q))
    mult = np.stack([np.bincount(d, minlength=Q) for d in draws]).astype(float)   # (rounds, Q)

    def ratio(num, den):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)

    per_turn = []
    for t in range(turns):
        n_t = int(ok[:, t].sum())
        value = float(V[:, t].sum() / n_t) if n_t else None
        lo, hi = _percentiles(ratio(mult @ V[:, t], mult @ ok[:, t]), level)
        per_turn.append({"turn": t + 1, "value": value, "ci_low": lo, "ci_high": hi,
                         "n": n_t, "failed": int(Q - n_t)})
    lo, hi = _percentiles(ratio(mult @ V.sum(1), mult @ ok.sum(1)), level)
    return {
        "metric": "mt_bench_score",
        "benchmark": "MT-Bench (single-answer grading)",
        "value": float(V.sum() / ok.sum()),
        "unit": "rating 1-10",
        "ci_low": lo, "ci_high": hi,
        "turns": per_turn,
        "interval": _bootstrap_interval("question", level, rounds, seed),
        "n": int(Q),
        "n_ratings": int(ok.sum()),
        "failed": int(ok.size - ok.sum()),
        "failed_unit": "rating",
        "full_set": bool(Q == MT_BENCH_QUESTIONS and turns == MT_BENCH_TURNS),
        "source": _SOURCE_MT,
    }


# ========================================================================= WildBench
#: WildBench's 12 task tags -> its 5 task groups (leaderboard/data_dir/_create_tables.py
#: ``task_group_new``).
WB_TASK_GROUPS = {
    "Information seeking": "Information/Advice seeking",
    "Creative Writing": "Creative Tasks",
    "Coding & Debugging": "Coding & Debugging",
    "Reasoning": "Planning & Reasoning",
    "Editing": "Creative Tasks",
    "Math": "Math & Data Analysis",
    "Planning": "Planning & Reasoning",
    "Brainstorming": "Creative Tasks",
    "Role playing": "Creative Tasks",
    "Advice seeking": "Information/Advice seeking",
    "Data Analysis": "Math & Data Analysis",
    "Others": "Creative Tasks",
}
#: The groups' weights in the task macro (leaderboard/data_dir/_create_tables.py
#: ``weights_by_task``, score mode); they sum to 4.75.
WB_TASK_WEIGHTS = {
    "Creative Tasks": 0.5,
    "Planning & Reasoning": 1.25,
    "Math & Data Analysis": 1.0,
    "Information/Advice seeking": 0.75,
    "Coding & Debugging": 1.25,
}
WB_TRUNCATED = "... (truncated)"
_WB_GROUPS = tuple(WB_TASK_WEIGHTS)
_SOURCE_WB = ("WildBench (github.com/allenai/WildBench): leaderboard/data_dir/_create_tables.py "
              "(score mode), leaderboard/data_dir/_merge_results.py (WB_score, WB_score.task_macro x10), "
              "evaluation/eval_template.score.v2.md; Lin et al. 2024, arXiv:2406.04770")


def _wb_groups(i: int, item: Mapping) -> list[str]:
    if "tags" in item:
        tags = item["tags"]
    elif "primary_tag" in item:
        tags = [item["primary_tag"], *(item.get("secondary_tags") or [])]
    else:
        raise ValueError(f"item {i}: needs 'tags' (primary tag then secondary tags) or 'primary_tag'")
    if isinstance(tags, str) or not isinstance(tags, Sequence) or not tags:
        raise ValueError(f"item {i}: 'tags' must be a non-empty list of WildBench task tags")
    unknown = [t for t in tags if t not in WB_TASK_GROUPS]
    if unknown:
        raise ValueError(f"item {i}: unknown WildBench task tag {unknown[0]!r}; known: {', '.join(WB_TASK_GROUPS)}")
    return sorted({WB_TASK_GROUPS[t] for t in tags})


def _wb_macro(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Task macro on the x10 scale from per-group score sums and counts, (..., 5) arrays; a
    group with no item drops out of the sum but not out of the total weight, as WildBench's
    code does."""
    W = np.array([WB_TASK_WEIGHTS[g] for g in _WB_GROUPS])
    with np.errstate(invalid="ignore", divide="ignore"):
        rescaled = np.where(counts > 0, (sums / np.where(counts > 0, counts, 1.0) - 5.0) * 2.0, 0.0)
    return 10.0 * (rescaled @ W) / W.sum()


def wildbench_score(items: Sequence[Mapping[str, Any]], *, rounds: int = BOOTSTRAP_ROUNDS, seed: int = SEED,
                    level: float = LEVEL) -> dict:
    """WildBench v2 WB-Score (the leaderboard's ``WB_score.task_macro``, BNF's "Score").

    ``items``: one mapping per task with ``"score"`` (the judge's 1-10 score, or None for a
    failed judgement), its task tags as ``"tags"`` (``primary_tag`` then ``secondary_tags``
    of the allenai/WildBench v2 dataset, or those two keys), and optionally ``"output"`` (the
    answer judged).

    Definition (leaderboard/data_dir/_create_tables.py, score mode, and _merge_results.py):
    - each task's tags are mapped to the 5 task groups (:data:`WB_TASK_GROUPS`) and
      de-duplicated: a task counts once in each of its groups;
    - a task whose answer ends with "... (truncated)" or is empty is left out of the groups
      (it still counts in the plain score); given only when ``output`` is;
    - per group, the mean score s_g is rescaled to (s_g - 5) * 2 (1..10 -> -8..10, a "fair"
      5 -> 0); WB-Score = sum_g w_g (s_g - 5) * 2 / sum of all 5 weights
      (:data:`WB_TASK_WEIGHTS`: 0.5, 1.25, 1, 0.75, 1.25), x10 on the leaderboard; the range
      is -80..100;
    - the plain ``WB_score`` is (mean score - 5) * 2 * 10 over all the scored tasks.
    The source of record is the leaderboard code above (BNF's numbers match it, see the module
    docstring); the WildBench paper (arXiv:2406.04770) introduces WB-Score but was not re-read
    here for these details. Judgements that failed to parse are dropped from every mean
    (WildBench's batch_results_format.py skips them) and counted in ``failed``.

    ``mean_length_chars``: the mean length in characters of the answers given in ``output``,
    the truncated and empty ones left out (the leaderboard's ``Length``, BNF Table 5 "WB").

    Interval [ours]: percentile bootstrap over tasks, ``rounds`` samples (the leaderboard
    reports none for WB-Score).
    """
    _check_common(level, rounds)
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence) or not items:
        raise ValueError("items must be a non-empty sequence of {'score', 'tags'} mappings")
    scores, member, failed, excluded, lengths = [], [], 0, 0, []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or "score" not in item:
            raise ValueError(f"item {i}: needs a 'score' (a number in [1, 10], or None)")
        groups = _wb_groups(i, item)
        s = item["score"]
        if s is None:
            failed += 1
            continue
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 1.0 <= float(s) <= 10.0:
            raise ValueError(f"item {i}: score {s!r} is not a number in [1, 10] (or None)")
        out = item.get("output")
        skip = isinstance(out, str) and (out.strip() == "" or out.strip().endswith(WB_TRUNCATED))
        excluded += skip
        if isinstance(out, str) and not skip:
            lengths.append(len(out.strip()))
        scores.append(float(s))
        member.append([0.0 if skip else float(g in groups) for g in _WB_GROUPS])
    if not scores:
        raise ValueError("no score: every judgement failed")
    s = np.asarray(scores)
    M = np.asarray(member).reshape(len(s), len(_WB_GROUPS))
    sums, counts = s @ M, M.sum(0)
    macro = float(_wb_macro(sums, counts))
    plain = (float(s.mean()) - 5.0) * 2.0 * 10.0
    n = len(s)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n, size=(rounds, n))
    mult = np.stack([np.bincount(d, minlength=n) for d in draws]).astype(float)
    lo, hi = _percentiles(_wb_macro(mult @ (M * s[:, None]), mult @ M), level)
    plo, phi = _percentiles((mult @ s / n - 5.0) * 20.0, level)
    groups = {g: {"value": _f((sums[k] / counts[k] - 5.0) * 20.0) if counts[k] else None,
                  "mean_score": _f(sums[k] / counts[k]) if counts[k] else None,
                  "n": int(counts[k]), "weight": WB_TASK_WEIGHTS[g]}
              for k, g in enumerate(_WB_GROUPS)}
    return {
        "metric": "wb_score_task_macro",
        "benchmark": "WildBench v2 (score mode)",
        "value": macro,
        "unit": "WB-Score, (s-5)*2*10, -80..100",
        "ci_low": lo, "ci_high": hi,
        "wb_score_plain": plain,
        "wb_score_plain_ci": [plo, phi],
        "mean_score": float(s.mean()),
        "groups": groups,
        "missing_groups": [g for k, g in enumerate(_WB_GROUPS) if counts[k] == 0],
        "interval": _bootstrap_interval("task", level, rounds, seed),
        "n": int(n),
        "n_items": len(items),
        "failed": int(failed),
        "failed_unit": "task",
        "excluded_from_groups": int(excluded),
        "mean_length_chars": float(np.mean(lengths)) if lengths else None,
        "source": _SOURCE_WB,
    }


def wildbench_elo(items: Sequence[Mapping[str, Any]] | None = None) -> dict:
    """WB-Elo: not computable from one model's judgements; returns value None and the reason.

    Definition (WildBench leaderboard/wb_elo.py, config in leaderboard/data_dir/
    wb_elo_results.json): for every task and every PAIR of models scored on it, a virtual vote
    from their WB-Scores (a win when the scores differ by >= ``margin`` 2, a tie when by
    <= ``tie_margin``; answers truncated or empty skipped; ``length_margin`` 1500 turns a
    vote into a tie when the answers' lengths differ by more); then online Elo updates (K=4)
    over the votes in random order, 128 rounds averaged, starting from and anchored to the
    LMSYS Chatbot Arena Elo (hard-en) of the ~40 models that have one (``dynamic`` with
    ``interval`` 100). BNF Table 1/4 report this "Elo".

    Our data hold one model's scores. The Elo needs the per-task scores of the other models
    by the same judge (GPT-4o-2024-05-13; WildBench's eval_results/) and their Arena Elos:
    with those it is defined, but it is then a property of that whole pool (adding or
    dropping a model moves it), and this module does not compute it.
    """
    n = len(items) if items is not None else 0
    return {
        "metric": "wb_elo",
        "benchmark": "WildBench v2",
        "value": None,
        "computable": False,
        "reason": ("WB-Elo is fitted on pairwise votes between many models on the same tasks, anchored "
                   "to their Chatbot Arena Elo (WildBench leaderboard/wb_elo.py); one model's scores hold "
                   "no pair. It needs every other model's per-task scores by the same judge and their "
                   "Arena Elos, and is then a property of that pool."),
        "ci_low": None, "ci_high": None,
        "interval": {"method": None, "level": None},
        "n": n,
        "failed": sum(1 for it in (items or []) if isinstance(it, Mapping) and it.get("score") is None),
        "source": "WildBench leaderboard/wb_elo.py",
    }


# ======================================================================== AlpacaEval
_SOURCE_AE = ("alpaca_eval 0.6.6: alpaca_eval/metrics/winrate.py get_winrate, "
              "alpaca_eval/metrics/glm_winrate.py get_length_controlled_winrate; "
              "Dubois et al. 2024, arXiv:2404.04475")


def alpaca_eval_winrate(preferences: Sequence[float | None] | None = None,
                        model_lengths: Sequence[int] | None = None,
                        reference_lengths: Sequence[int] | None = None, *,
                        annotations: Sequence[Mapping[str, Any]] | None = None,
                        instructions: Sequence[Mapping[str, Any]] | None = None,
                        reference: Sequence[Mapping[str, Any]] | None = None,
                        limit: int | None = None, lc: bool = True,
                        glm_name: str = "length_controlled_v1", strict_lc: bool = False,
                        level: float = LEVEL) -> dict:
    """AlpacaEval 2 win rate, its standard error, and the length-controlled win rate, computed
    by alpaca_eval's own functions.

    Inputs, either:
    - ``preferences`` as alpaca_eval stores them (1 = the reference output_1 preferred,
      2 = the model's output_2 preferred, 1.5 or 0 a draw, fractional for the weighted judge;
      None/NaN a failed annotation), with ``model_lengths`` and ``reference_lengths`` (answer
      lengths in CHARACTERS, as the LC model measures them), one per instruction in the
      AlpacaEval order; or
    - ``annotations``: alpaca_eval's annotation records (``preference``, ``output_1``,
      ``output_2``; ``generator_1``/``generator_2`` optional).

    Definitions (alpaca_eval 0.6.6):
    - win rate = mean of (preference - 1) x 100, draws 1/2, failed annotations dropped;
      standard error = its standard error of the mean (pandas ``sem``, ddof 1) x 100
      (metrics/winrate.py ``get_winrate``, helpers.py ``describe_head2head``);
    - LC win rate (metrics/glm_winrate.py ``get_length_controlled_winrate``, GLM
      ``length_controlled_v1``): a logistic GLM of the preference on
      tanh(length difference / its std), the instruction's difficulty and a model term,
      regularised towards the two "gamed" baselines; the LC win rate is the mean predicted
      preference with the length difference set to 0, x100. It downloads
      ``df_gamed.csv`` (instruction difficulties, gamed baselines) from the hub dataset
      tatsu-lab/alpaca_eval and indexes it by row position, so it is defined only on the full
      805-instruction set in its original order: the rule of
      :func:`negfree.evaluate.alpaca.lc_eligibility`, applied when ``instructions`` and
      ``reference`` (their records) are given; otherwise [ours] eligible iff there are 805
      preferences, their order taken on trust (``lc_reason`` says so).

    [ours] With ``preferences`` and lengths, the annotations passed to alpaca_eval hold
    placeholder texts of those lengths (the GLM reads only ``str.len()`` of the outputs).
    When LC is not defined, or ``lc`` is False, ``lc_win_rate`` is None and ``lc_reason``
    says why; when alpaca_eval fails (e.g. no network for the hub file) it is None with the
    error in ``lc_reason``, or the error is raised with ``strict_lc``. The interval [ours] is
    value +/- z * standard error (normal approximation), for both rates.
    """
    import pandas as pd

    from negfree.evaluate.alpaca import FULL_SET_SIZE, lc_eligibility

    if not (isinstance(level, (int, float)) and 0 < level < 1):
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if annotations is not None:
        if preferences is not None or model_lengths is not None or reference_lengths is not None:
            raise ValueError("give either annotations or preferences with lengths, not both")
        df = pd.DataFrame([dict(a) for a in annotations])
        for col in ("preference", "output_1", "output_2"):
            if col not in df.columns:
                raise ValueError(f"annotations: each needs {col!r}")
        df = df.reset_index(drop=True)
    else:
        if preferences is None or model_lengths is None or reference_lengths is None:
            raise ValueError("needs preferences, model_lengths and reference_lengths (or annotations)")
        n = len(preferences)
        if len(model_lengths) != n or len(reference_lengths) != n:
            raise ValueError(f"one model and one reference length per preference ({n})")
        for name, ls in (("model_lengths", model_lengths), ("reference_lengths", reference_lengths)):
            if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0 for v in ls):
                raise ValueError(f"{name}: lengths must be integers >= 0 (characters)")
        df = pd.DataFrame({"output_1": ["x" * int(v) for v in reference_lengths],
                           "output_2": ["x" * int(v) for v in model_lengths]})
        df["preference"] = list(preferences)
    if len(df) == 0:
        raise ValueError("no preference given")
    values = []
    for i, v in enumerate(df["preference"].tolist()):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            values.append(math.nan)
        elif (isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating))
              or not (v == 0 or 1 <= v <= 2)):
            raise ValueError(f"preference {i}: {v!r} is not in [1, 2] (or 0, a draw, or None)")
        else:
            values.append(float(v))
    prefs = pd.Series(values, dtype=float)
    df["preference"] = prefs
    df["generator_1"] = df["generator_1"] if "generator_1" in df.columns else "reference"
    df["generator_2"] = df["generator_2"] if "generator_2" in df.columns else "model"
    failed = int(prefs.isna().sum())
    if failed == len(df):
        raise ValueError("no preference: every annotation failed")

    from alpaca_eval.metrics import get_winrate

    plain = get_winrate(df[["preference"]].copy())
    wr, se = _f(plain["win_rate"]), _f(plain["standard_error"])
    z = NormalDist().inv_cdf(0.5 + level / 2)

    if instructions is not None and reference is not None:
        if len(instructions) != len(df):
            eligible, reason = False, f"{len(df)} preferences for {len(instructions)} instructions"
        else:
            eligible, reason = lc_eligibility(list(instructions), list(reference), limit)
    elif limit is not None and limit < len(df):
        eligible, reason = False, f"subset: first {limit} of {len(df)} instructions"
    elif len(df) == FULL_SET_SIZE:
        eligible, reason = True, (f"{FULL_SET_SIZE} preferences, taken to be the full set in its "
                                  f"original order (not checked: no instructions given)")
    else:
        eligible, reason = False, f"{len(df)} preferences, LC needs the full {FULL_SET_SIZE}-instruction set"
    lc_wr = lc_se = None
    if not lc:
        eligible, reason = False, "not asked (lc=False)"
    if eligible:
        from alpaca_eval.metrics import get_length_controlled_winrate

        try:
            out = get_length_controlled_winrate(df.copy(), glm_name=glm_name, save_weights_dir=None,
                                                is_add_glm_preference_inplace=False)
            lc_wr, lc_se = _f(out["length_controlled_winrate"]), _f(out["lc_standard_error"])
        except Exception as err:   # the hub file cannot be fetched offline, a GLM failure
            if strict_lc:
                raise
            reason = f"{reason}; alpaca_eval failed: {type(err).__name__}: {' '.join(str(err).split())[:300]}"
    lens = df["output_2"].astype(str).str.len()
    return {
        "metric": "alpaca_eval_win_rate",
        "benchmark": "AlpacaEval 2",
        "value": wr,
        "unit": "percent",
        "standard_error": se,
        "ci_low": _f(wr - z * se) if wr is not None and se is not None else None,
        "ci_high": _f(wr + z * se) if wr is not None and se is not None else None,
        "lc_win_rate": lc_wr,
        "lc_standard_error": lc_se,
        "lc_ci_low": _f(lc_wr - z * lc_se) if lc_wr is not None and lc_se is not None else None,
        "lc_ci_high": _f(lc_wr + z * lc_se) if lc_wr is not None and lc_se is not None else None,
        "lc_defined": lc_wr is not None,
        "lc_reason": reason,
        "glm_name": glm_name,
        "discrete_win_rate": _f(plain.get("discrete_win_rate")),
        "n_wins": int(plain["n_wins"]), "n_wins_base": int(plain["n_wins_base"]),
        "n_draws": int(plain["n_draws"]),
        "mean_length_chars": float(lens.mean()),
        "interval": {"method": "normal approximation: value +/- z * standard error [ours]",
                     "unit": "instruction", "level": float(level)},
        "n": int(plain["n_total"]),
        "n_items": int(len(df)),
        "failed": failed,
        "failed_unit": "annotation",
        "source": _SOURCE_AE,
    }

