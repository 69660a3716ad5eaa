"""How robust is ift.txt's Frozen Lake ordering? A grid over maps, step counts, base policies and negatives.

    python -m negfree.toy.robustness --out-dir results/toy/frozen_lake           # the full grid (~18 min CPU, 1 core)
    python -m negfree.toy.robustness --maps two_paths,bend --steps 50,100 --seeds 5 --methods sft,ift,dpo,orpo
    snakemake frozen_lake_robustness                                             # the same, as a target

Every (map, base, seed) fits its own optimal and base nets and samples one data
pool; every method is fine-tuned once per negative source up to the largest step
count and read at each step count on the way (a step count is a point of one
curve, so the grid costs the longest run, not their sum). Methods that take no
negatives run once and stand in both negative settings.

A *setting* is one (map, steps, base, negatives). In each, every claim of
PAPER_CLAIMS is judged over the seeds with frozen_lake.judge_claims (paired;
the criteria of ordering.json). Per claim, metric and protocol:
fraction of settings where it holds, its 95% Wilson score interval over
settings, and a verdict by the CI rule (``verdict``). Outputs, in ``out_dir``:

- robustness.csv: one row per (map, steps, base, negatives, method, seed);
- robustness_settings.csv: one row per (setting, metric, protocol, claim): held or not;
- robustness_claims.csv: the per-claim summary a claims ledger can read;
- robustness_ranks.csv and robustness.png (+ .pdf): the figure and its data;
- robustness.md: the claims table; robustness_config.json: the grid, hparams, versions.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd
import torch

from negfree.common.io import atomic_write_bytes, atomic_write_text, write_json
from negfree.losses import get_method

from negfree.toy import plots
from negfree.toy.finetune import build_data, finetune, negative_source, resolved_hparams
from negfree.toy.frozen_lake import (PAPER_CLAIMS, PAPER_FIG3, ToyConfig, evaluate, judge_claims, make_world, param_metrics,
                          policy_mse, resolve_methods)
from negfree.toy.lake import MAPS, Trajectories, load_map
from negfree.toy.policies import BASES, reference_policies

# The full grid [ours]. Maps: two with a straight optimal path, two with turns (lake.py).
GRID = {
    "maps": ("two_paths", "small", "bend", "stairs"),
    "steps": (50, 100, 200),                   # points of one curve; 200 is the default run's length
    "bases": BASES,                            # long_way (prefers the sub-optimal path), uniform
    "negatives": ("suboptimal", "sampled"),    # ift.txt App. B.2's pair; samples of the base (Sec. 5.3)
    "seeds": 5,
    "methods": None,                           # None = every registered method
}
KEYS = ("map", "steps", "base", "negatives")   # a setting
COLUMNS = KEYS + ("method", "seed", "neg_used", "mse_params", "mse_params_shared", "mse_params_path",
                  "mse_params_offpath", "mse_policy", "success_rate", "mse_params_best", "best_step_params",
                  "mse_policy_best", "best_step_policy", "base_mse_params", "base_mse_policy", "base_success_rate")
# (metric column, protocol): the paper's metric first; 'best' = best checkpoint (ift.txt App. B.1)
JUDGED = (("mse_params", "final"), ("mse_params_best", "best"), ("mse_params_shared", "final"),
          ("mse_policy", "final"), ("mse_policy_best", "best"))
PRIMARY = ("mse_params", "final")
ALL_CLAIMS = "paper ordering (all three claims)"
Z95 = 1.959963984540054


# ------------------------------------------------------------------------ statistics
def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n (Wilson 1927); (0, 1) for n = 0.

    centre = (p + z^2/2n) / (1 + z^2/n), half = z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n).
    """
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def verdict(ci_low: float, ci_high: float) -> str:
    """The CI rule: reproduced if the CI lies above 1/2, contradicted if below, else inconclusive.

    'Holds in most settings' is the claim a single-setting paper result implies when
    read as general; a CI that straddles 1/2 cannot tell that apart from a coin flip.
    """
    if ci_low > 0.5:
        return "reproduced"
    if ci_high < 0.5:
        return "contradicted"
    return "inconclusive"


# ---------------------------------------------------------------------------- grid
def run_grid(maps=GRID["maps"], steps=GRID["steps"], bases=GRID["bases"], negatives=GRID["negatives"],
             seeds=GRID["seeds"], methods=GRID["methods"], eval_every: int = 10, episodes: int = 200,
             log=None) -> pd.DataFrame:
    """Rows of robustness.csv (COLUMNS), in grid order."""
    steps = sorted({int(s) for s in steps})
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    names = resolve_methods(methods)
    _check_grid(maps, steps, bases, negatives, seed_list, eval_every)
    rows = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny tensors; one thread is faster and reproducible
    try:
        for map_name in maps:
            for base in bases:
                cfg = replace(ToyConfig(), map=map_name, base=base, steps=steps[-1], eval_every=eval_every,
                              episodes=episodes)
                world = make_world(cfg)
                for seed in seed_list:
                    rows += _run_one(world, cfg, seed, names, steps, negatives)
                    if log:
                        log(f"map={map_name} base={base} seed={seed}: {len(rows)} rows")
    finally:
        torch.set_num_threads(threads)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _check_grid(maps, steps, bases, negatives, seed_list, eval_every):
    for m in maps:
        load_map(m)
    bad = [b for b in bases if b not in BASES]
    if bad:
        raise ValueError(f"bases {bad} unknown; known: {list(BASES)}")
    bad = [n for n in negatives if n not in ("suboptimal", "sampled")]
    if bad:
        raise ValueError(f"negatives {bad} unknown; the grid compares 'suboptimal' and 'sampled'")
    if not (maps and steps and bases and negatives and seed_list):
        raise ValueError("every grid axis needs at least one value")
    if steps[0] < 1 or any(s % eval_every for s in steps):
        raise ValueError(f"steps {steps}: each must be a positive multiple of eval_every={eval_every}")


def _run_one(world, cfg: ToyConfig, seed: int, names: list[str], steps: list[int], negatives) -> list[dict]:
    lake = world.lake
    opt_net, base_net = reference_policies(lake, world.pi_opt, world.pi_base, seed)
    data = build_data(lake, base_net, Trajectories.from_actions(lake, world.optimal),
                      Trajectories.from_actions(lake, world.suboptimal), steps[-1], cfg.n_negatives,
                      world.horizon, torch.Generator().manual_seed(seed))
    base_row, _ = evaluate(world, cfg, base_net.table(), seed, None, base_net, opt_net)
    base_cols = {f"base_{k}": base_row[k] for k in ("mse_params", "mse_policy", "success_rate")}
    rows = []
    for name in names:
        method = get_method(name)
        sources = list(negatives) if method.needs_negatives else [None]
        for source in sources:
            at = {}
            curve = []

            def on_step(step, net):
                if step % cfg.eval_every == 0:
                    curve.append({"step": step, "mse_policy": policy_mse(world, net.table()),
                                  "mse_params": param_metrics(world, net, opt_net)["mse_params"]})
                if step in steps:
                    at[step], _ = evaluate(world, cfg, net.table(), seed, None, net, opt_net)

            finetune(method, base_net, lake, data, steps[-1], source or "auto", cfg.n_negatives, cfg.lr,
                     callback=on_step)
            for n_steps in steps:
                upto = [c for c in curve if c["step"] <= n_steps]
                bp = min(upto, key=lambda c: c["mse_params"])
                bq = min(upto, key=lambda c: c["mse_policy"])
                r = at[n_steps]
                for setting in ([source] if source else list(negatives)):
                    rows.append({"map": cfg.map, "steps": n_steps, "base": cfg.base, "negatives": setting,
                                 "method": name, "seed": seed, "neg_used": source or "none",
                                 **{k: r[k] for k in ("mse_params", "mse_params_shared", "mse_params_path",
                                                      "mse_params_offpath", "mse_policy", "success_rate")},
                                 "mse_params_best": bp["mse_params"], "best_step_params": bp["step"],
                                 "mse_policy_best": bq["mse_policy"], "best_step_policy": bq["step"],
                                 **base_cols})
    return rows


# ------------------------------------------------------------------------- summaries
def settings_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, metric, protocol, claim): whether it held over the setting's seeds."""
    out = []
    for key, g in df.groupby(list(KEYS), sort=False):
        for metric, protocol in JUDGED:
            per_seed = g.pivot(index="seed", columns="method", values=metric)
            claims = judge_claims(per_seed)
            base = dict(zip(KEYS, key), metric=metric.removesuffix("_best"), protocol=protocol,
                        n_seeds=len(per_seed))
            for c in claims:
                out.append({**base, "claim": c["claim"], "held": c["held"], "ratio": c["ratio"]})
            out.append({**base, "claim": ALL_CLAIMS, "held": all(c["held"] for c in claims), "ratio": float("nan")})
    return pd.DataFrame(out)


def claims_summary(settings: pd.DataFrame) -> pd.DataFrame:
    """robustness_claims.csv: per (claim, metric, protocol), the fraction of settings where it holds."""
    rows = []
    for (claim, metric, protocol), g in settings.groupby(["claim", "metric", "protocol"], sort=False):
        k, n = int(g.held.sum()), len(g)
        lo, hi = wilson_interval(k, n)
        rows.append({"claim": claim, "metric": metric, "protocol": protocol,
                     "primary": (metric, protocol) == ("mse_params", "final"),
                     "fraction": k / n, "ci_low": lo, "ci_high": hi, "ci_method": "wilson_95_over_settings",
                     "n_holds": k, "n_settings": n, "verdict": verdict(lo, hi),
                     "setting": "(map, steps, base, negatives); held = judged over the setting's seeds, paired"})
    return pd.DataFrame(rows)


def mean_ranks(df: pd.DataFrame) -> pd.DataFrame:
    r = df.groupby(list(KEYS) + ["seed"])["mse_params"].rank(method="average")
    out = df.assign(rank=r).groupby("method", sort=False)["rank"].agg(["mean", "std"])
    out.columns = ["mean_rank", "std_rank"]
    return out.sort_values("mean_rank").reset_index()


def claims_markdown(claims: pd.DataFrame, grid: dict, n_rows: int) -> str:
    lines = [f"Frozen Lake robustness: {grid['n_settings']} settings = maps {list(grid['maps'])} x steps "
             f"{list(grid['steps'])} x bases {list(grid['bases'])} x negatives {list(grid['negatives'])}; "
             f"{grid['n_seeds']} seeds per setting; {len(grid['methods'])} methods; {n_rows} rows.",
             "Fraction of settings where the claim holds, 95% Wilson interval over settings; verdict: "
             "reproduced if the lower bound > 0.5, contradicted if the upper bound < 0.5, else inconclusive.", "",
             "| claim | metric | protocol | fraction | 95% CI | settings | verdict |", "|---|---|---|---|---|---|---|"]
    for r in claims.itertuples():
        star = " (primary)" if r.primary else ""
        lines.append(f"| {r.claim} | {r.metric}{star} | {r.protocol} | {r.fraction:.2f} | "
                     f"[{r.ci_low:.2f}, {r.ci_high:.2f}] | {r.n_holds}/{r.n_settings} | {r.verdict} |")
    return "\n".join(lines) + "\n"


def run_robustness(out_dir, maps=GRID["maps"], steps=GRID["steps"], bases=GRID["bases"],
                   negatives=GRID["negatives"], seeds=GRID["seeds"], methods=GRID["methods"],
                   eval_every: int = 10, episodes: int = 200, log=None) -> pd.DataFrame:
    """Run the grid and write every output into ``out_dir``; returns robustness.csv's frame."""
    names = resolve_methods(methods)
    missing = [m for m in PAPER_FIG3 if m not in names]
    if missing:
        raise ValueError(f"the robustness study judges the paper's claims and needs {list(PAPER_FIG3)}; "
                         f"missing {missing}")
    df = run_grid(maps, steps, bases, negatives, seeds, names, eval_every, episodes, log)
    write_outputs(df, out_dir, eval_every, episodes)
    return df


def merge(csvs, out_dir, eval_every: int = 10, episodes: int = 200) -> pd.DataFrame:
    """Join robustness.csv files of disjoint parts of one grid (e.g. one process per map) and summarise."""
    df = pd.concat([pd.read_csv(c) for c in csvs], ignore_index=True)
    dup = df.duplicated(list(KEYS) + ["method", "seed"])
    if dup.any():
        raise ValueError(f"merge: {int(dup.sum())} rows appear in more than one part, e.g. "
                         f"{df[dup].iloc[0][list(KEYS) + ['method', 'seed']].to_dict()}")
    write_outputs(df, out_dir, eval_every, episodes)
    return df


def write_outputs(df: pd.DataFrame, out_dir, eval_every: int, episodes: int) -> None:
    """Every file of the study from the rows of robustness.csv."""
    names = list(dict.fromkeys(df.method))
    missing = [m for m in PAPER_FIG3 if m not in names]
    if missing:
        raise ValueError(f"the robustness study judges the paper's claims and needs {list(PAPER_FIG3)}; "
                         f"missing {missing}")
    maps, steps, bases, negatives = (list(dict.fromkeys(df[k])) for k in KEYS)
    cells = df.groupby(list(KEYS)).size()
    if len(cells) != len(maps) * len(steps) * len(bases) * len(negatives):
        raise ValueError(f"the rows cover {len(cells)} settings, not the full product of their axes")
    settings = settings_table(df)
    claims = claims_summary(settings)
    ranks = mean_ranks(df)
    seed_list = sorted(df.seed.unique().tolist())
    grid = {"maps": maps, "steps": sorted(int(s) for s in steps), "bases": bases,
            "negatives": list(negatives), "seeds": seed_list, "n_seeds": len(seed_list), "methods": names,
            "n_settings": int(settings[list(KEYS)].drop_duplicates().shape[0]),
            "eval_every": eval_every, "episodes": episodes}
    out = Path(out_dir)
    atomic_write_text(out / "robustness.csv", df.to_csv(index=False))
    atomic_write_text(out / "robustness_settings.csv", settings.to_csv(index=False))
    atomic_write_text(out / "robustness_claims.csv", claims.to_csv(index=False))
    atomic_write_text(out / "robustness_ranks.csv", ranks.to_csv(index=False))
    atomic_write_text(out / "robustness.md", claims_markdown(claims, grid, len(df)))
    write_json(out / "robustness_config.json", {
        "grid": grid, "toy_config": asdict(ToyConfig()), "claims": [list(c) for c in PAPER_CLAIMS],
        "verdict_rule": "reproduced if ci_low > 0.5; contradicted if ci_high < 0.5; else inconclusive",
        "ci": "Wilson score interval, 95%, over settings (map, steps, base, negatives)",
        "hyperparameters": {m: resolved_hparams(get_method(m)) for m in names},
        "negatives_by_method": {m: [negative_source(get_method(m), n) or "none" for n in negatives] for m in names},
        "versions": {"torch": torch.__version__, "pandas": pd.__version__}})
    footer = (f"{grid['n_settings']} settings: maps {grid['maps']} x steps {grid['steps']} x bases {grid['bases']} "
              f"x negatives {grid['negatives']}; {len(seed_list)} seeds each; {len(names)} methods. "
              f"Claim held in a setting: judged over its seeds (paired; 'much better' = lower in every seed and "
              f"<= 0.9x the mean). Best = best checkpoint every {eval_every} steps (ift.txt App. B.1).")
    prim = claims[claims.metric.isin(["mse_params", "mse_policy"])]
    for fmt in ("png", "pdf"):
        atomic_write_bytes(out / f"robustness.{fmt}", plots.robustness_figure(prim, ranks, footer, fmt))


# ------------------------------------------------------------------------------- CLI
def _csv(kind):
    def parse(text):
        return tuple(kind(x.strip()) for x in text.split(",") if x.strip())
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m negfree.toy.robustness", description=__doc__.splitlines()[0])
    p.add_argument("--out-dir", default="results/toy/frozen_lake")
    p.add_argument("--maps", type=_csv(str), default=GRID["maps"], help=f"comma list of {', '.join(MAPS)} or files")
    p.add_argument("--steps", type=_csv(int), default=GRID["steps"], help="comma list of step counts")
    p.add_argument("--bases", type=_csv(str), default=GRID["bases"], help=f"comma list of {', '.join(BASES)}")
    p.add_argument("--negatives", type=_csv(str), default=GRID["negatives"], help="suboptimal,sampled")
    p.add_argument("--seeds", type=int, default=GRID["seeds"], help="number of seeds, 0..n-1")
    p.add_argument("--methods", default=None, help="comma list (default: every registered method)")
    p.add_argument("--merge", nargs="+", metavar="CSV", default=None,
                   help="instead of running: join these robustness.csv parts and write every summary")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.seeds < 1:
        parser.error(f"--seeds {a.seeds}: need at least one seed")
    try:
        if a.merge:
            merge(a.merge, a.out_dir)
        else:
            run_robustness(a.out_dir, a.maps, a.steps, a.bases, a.negatives, a.seeds, a.methods,
                           log=lambda m: print(m, file=sys.stderr, flush=True))
    except ValueError as e:
        parser.error(str(e))
    sys.stdout.write((Path(a.out_dir) / "robustness.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
