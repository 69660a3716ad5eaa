"""Frozen Lake (ift.txt Sec. 5.3, Fig. 3), extended to every loss in negfree.losses.

    python -m negfree.toy.frozen_lake --out-dir results/toy/frozen_lake   # every method, 5 seeds
    negfree toy frozen-lake --methods sft,ift,dpo,orpo --seeds 2 --steps 100

Per seed: value iteration gives Q*; softmax(Q*/T) is the optimal table; an
"optimal" and a "base" network are fitted from one initialisation; every method
fine-tunes a copy of the base with its registry loss; each result is compared
with the optimal net (parameter MSE, the metric of the paper's figure and the
primary verdict), the optimal table (policy MSE) and by rollouts (success,
cells visited), at the last step and at the best checkpoint (ift.txt App. B.1).
Design and every choice of ours: docs/frozen_lake.md. The robustness study over
maps, steps, bases and negatives: negfree/toy/robustness.py.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from negfree.common.io import atomic_write_bytes, atomic_write_text, write_json
from negfree.losses import REGISTRY, get_method

from negfree.toy import plots
from negfree.toy.finetune import (FT_LR, N_NEGATIVES, NEGATIVE_SOURCES, build_data, finetune, negative_source,
                       resolved_hparams)
from negfree.toy.lake import (DEFAULT_MAP, Lake, Trajectories, build_lake, discounted_return, greedy_path, load_map,
                   rollout, soft_optimal_table, two_paths, value_iteration, visit_rates)
from negfree.toy.policies import BASES, PolicyNet, base_target, param_mse_blocks, reference_policies

PAPER_FIG3 = ("sft", "ift", "dpo", "orpo")   # the methods in ift.txt Fig. 3
PARAM_BLOCKS = ("mse_params", "mse_params_shared", "mse_params_path", "mse_params_offpath")
METRICS = ("mse_params", "mse_policy", "success_rate", "mean_return", "greedy_success", "greedy_optimal",
           "p_optimal_path", "cells_visited", "visit_mse", "mse_params_shared", "mse_params_path",
           "mse_params_offpath", "mse_params_best", "best_step_params", "mse_policy_best", "best_step_policy")
# ift.txt Sec. 5.3 / Fig. 3: "IFT performs much better than SFT and ORPO, but slightly worse than DPO"
# as (a, b, kind): a is closer to the optimum than b. Lower MSE is better.
PAPER_CLAIMS = (("dpo", "ift", "better"), ("ift", "orpo", "much_better"), ("ift", "sft", "much_better"))
CLAIM_CRITERIA = {
    "better": "lower mean over seeds",
    "much_better": "lower in every seed and mean(a) <= 0.9 * mean(b) [ours: the paper gives no threshold]"}


@dataclass(frozen=True)
class ToyConfig:
    """Every knob of a run; saved as config.json beside the results. [ours] unless a source is named."""

    map: str = DEFAULT_MAP      # built-in map name or path to a text map
    base: str = "long_way"      # base policy: long_way (noisy, prefers the long path) or uniform
    gamma: float = 0.95         # value-iteration discount: makes the short path strictly better
    temperature: float = 0.01   # optimal table = softmax(Q*/T); Q gaps between moves are ~0.04
    base_w_opt: float = 0.25    # base demonstrator: weight of the optimal table vs the long-way table
    base_noise: float = 0.2     # base demonstrator: weight of the uniform table
    steps: int = 200            # fine-tuning steps: SFT then fits the optimal path as well as pi* does
    lr: float = FT_LR           # Adam, constant, same for every method
    n_negatives: int = N_NEGATIVES  # B sampled negatives per step
    negatives: str = "auto"     # auto: the pair for ift.txt's DPO/ORPO, base samples for the rest
    episodes: int = 200         # sampled evaluation episodes per policy
    eval_every: int = 10        # learning-curve resolution = checkpoint spacing of the best-checkpoint protocol
    horizon: int = 0            # max steps per episode; 0 = twice the number of cells


@dataclass
class World:
    """What the map alone determines, shared by all seeds."""

    lake: Lake
    pi_opt: torch.Tensor     # softmax(Q*/T), [S, A]
    pi_base: torch.Tensor    # the base demonstrator's table
    optimal: list[int]
    suboptimal: list[int]
    horizon: int


def make_world(cfg: ToyConfig) -> World:
    lake = build_lake(load_map(cfg.map))
    q_star, _ = value_iteration(lake, cfg.gamma)
    pi_opt = soft_optimal_table(q_star, cfg.temperature)
    optimal, suboptimal = two_paths(lake, q_star)
    pi_base = base_target(lake, pi_opt, optimal, cfg.gamma, cfg.temperature, cfg.base_w_opt, cfg.base_noise,
                          cfg.base)
    horizon = cfg.horizon or 2 * lake.n_states
    return World(lake, pi_opt, pi_base, optimal, suboptimal, horizon)


def resolve_methods(methods) -> list[str]:
    """Method names (a list or a comma string) checked against the registry; None = every registered loss."""
    if methods is None:
        names = list(PAPER_FIG3) + [m for m in REGISTRY if m not in PAPER_FIG3]
    else:
        if isinstance(methods, str):
            methods = [m.strip() for m in methods.split(",") if m.strip()]
        names = list(dict.fromkeys(methods))
        if not names:
            raise ValueError("no method given")
    unknown = [m for m in names if m not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; known methods: {', '.join(REGISTRY)}")
    return names


# ------------------------------------------------------------------------ evaluation
def policy_mse(world: World, table: torch.Tensor) -> float:
    live = world.lake.live
    return float(((table[live] - world.pi_opt[live]) ** 2).mean())


def path_states(world: World) -> list[int]:
    return Trajectories.from_actions(world.lake, world.optimal).states[0].tolist()


def param_metrics(world: World, net: PolicyNet | None, opt_net: PolicyNet | None) -> dict:
    if net is None:
        return {k: float("nan") for k in PARAM_BLOCKS}
    return param_mse_blocks(net, opt_net, path_states(world))


def evaluate(world: World, cfg: ToyConfig, table: torch.Tensor, seed: int, opt_visits: np.ndarray | None,
             net: PolicyNet | None, opt_net: PolicyNet | None) -> tuple[dict, np.ndarray]:
    """Metrics of one policy table. The rollout generator depends on the seed only, so all
    policies of a seed meet the same random numbers."""
    lake = world.lake
    gen = torch.Generator().manual_seed(1_000_003 + seed)
    starts = torch.full((cfg.episodes,), lake.start, dtype=torch.long)
    sampled = rollout(lake, table, starts, world.horizon, gen)
    greedy = rollout(lake, table, starts[:1], world.horizon, None, greedy=True)
    visits = visit_rates(lake, sampled)
    _, greedy_actions = greedy_path(lake, table, world.horizon)
    states = Trajectories.from_actions(lake, world.optimal).states[0]
    row = {
        **param_metrics(world, net, opt_net),
        "mse_policy": policy_mse(world, table),
        "success_rate": float(sampled.reached.float().mean()),
        "mean_return": float(discounted_return(sampled, cfg.gamma).mean()),
        "greedy_success": float(greedy.reached[0]),
        "greedy_optimal": float(greedy_actions == world.optimal),
        "p_optimal_path": float(table[states, torch.tensor(world.optimal)].prod()),
        "cells_visited": int((visits > 0).sum()),
        "visit_mse": float(((visits - opt_visits) ** 2).mean()) if opt_visits is not None else 0.0,
    }
    return row, visits


def run_seed(world: World, cfg: ToyConfig, seed: int, methods: list[str], hparams: dict):
    """One seed: reference nets, the data, every method. Returns (result rows, visit rows, curve rows)."""
    lake = world.lake
    opt_net, base_net = reference_policies(lake, world.pi_opt, world.pi_base, seed)
    data = build_data(lake, base_net, Trajectories.from_actions(lake, world.optimal),
                      Trajectories.from_actions(lake, world.suboptimal), cfg.steps, cfg.n_negatives,
                      world.horizon, torch.Generator().manual_seed(seed))
    _, opt_visits = evaluate(world, cfg, world.pi_opt, seed, None, None, None)
    rows, visit_rows, curve_rows = [], [], []

    def record(name: str, role: str, net: PolicyNet, source: str | None):
        row, visits = evaluate(world, cfg, net.table(), seed, opt_visits, net, opt_net)
        rows.append({"method": name, "seed": seed, "role": role, "negatives": source or "none", **row})
        for r in range(lake.nrow):
            for c in range(lake.ncol):
                visit_rows.append({"method": name, "seed": seed, "row": r, "col": c,
                                   "cell": lake.desc[r][c], "visit_rate": float(visits[r, c])})

    record("optimal_net", "reference", opt_net, None)
    record("base", "reference", base_net, None)
    for row in rows:
        row.update(mse_params_best=row["mse_params"], best_step_params=0,
                   mse_policy_best=row["mse_policy"], best_step_policy=0)

    def point(name, step, net):
        return {"method": name, "seed": seed, "step": step, "mse_policy": policy_mse(world, net.table()),
                **param_metrics(world, net, opt_net)}

    for name in methods:
        method = get_method(name)
        source = negative_source(method, cfg.negatives)
        curve_rows.append(point(name, 0, base_net))

        def on_step(step, net, name=name):
            if step % cfg.eval_every == 0 or step == cfg.steps:
                curve_rows.append(point(name, step, net))

        net = finetune(method, base_net, lake, data, cfg.steps, cfg.negatives, cfg.n_negatives, cfg.lr,
                       hparams.get(name), callback=on_step)
        record(name, "fine-tuned", net, source)
        rows[-1].update(best_checkpoint([c for c in curve_rows if c["method"] == name and c["seed"] == seed]))
    return rows, visit_rows, curve_rows


def best_checkpoint(curve: list[dict]) -> dict:
    """ift.txt App. B.1: "select the results from the checkpoint with the best average score".

    Checkpoints are the curve's points after step 0 (every ``eval_every`` steps and the
    last); the score of each metric is the metric itself, so this is oracle early stopping
    on the optimum the toy knows, reported beside the last step, never instead of it.
    """
    points = [c for c in curve if c["step"] > 0]
    out = {}
    for metric in ("mse_params", "mse_policy"):
        best = min(points, key=lambda c: c[metric])
        out[f"{metric}_best"], out[f"best_step_{metric.split('_')[1]}"] = best[metric], best["step"]
    return out


# --------------------------------------------------------------------------- outputs
def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    order = list(dict.fromkeys(results.method))
    g = results.groupby("method", sort=False)
    out = g[list(METRICS)].agg(["mean", "std"])
    out.columns = [f"{m}_{s}" for m, s in out.columns]
    out.insert(0, "n_seeds", g.seed.nunique())
    out.insert(0, "negatives", g.negatives.first())
    out.insert(0, "role", g.role.first())
    return out.reindex(order).reset_index()


def table_markdown(table: pd.DataFrame, cfg: ToyConfig, n_seeds: int) -> str:
    cols = (("mse_params", "MSE params (paper)", 4), ("mse_params_shared", "MSE shared params", 4),
            ("mse_policy", "MSE policy", 4), ("success_rate", "success", 3),
            ("greedy_optimal", "greedy optimal", 2), ("cells_visited", "cells visited", 1),
            ("visit_mse", "visit MSE", 4), ("mse_params_best", "MSE params, best ckpt", 4),
            ("best_step_params", "its step", 0), ("mse_policy_best", "MSE policy, best ckpt", 4),
            ("best_step_policy", "its step", 0))
    head = "| method | negatives | " + " | ".join(c[1] for c in cols) + " |"
    lines = [f"Frozen Lake, map `{cfg.map}`, base `{cfg.base}`, {cfg.steps} steps, {n_seeds} seeds: "
             f"mean ± std over seeds. Best ckpt: the lowest value among checkpoints every {cfg.eval_every} "
             f"steps (ift.txt App. B.1).", "",
             head, "|" + "---|" * (len(cols) + 2)]
    for _, r in table.iterrows():
        cells = []
        for col, _, digits in cols:
            mean, std = r[f"{col}_mean"], r[f"{col}_std"]
            cells.append("n/a" if pd.isna(mean) else f"{mean:.{digits}f} ± {0 if pd.isna(std) else std:.{digits}f}")
        name = r.method if r.role == "fine-tuned" else f"*{r.method}*"
        lines.append(f"| {name} | {r.negatives} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def judge_claims(per_seed: pd.DataFrame) -> list[dict]:
    """PAPER_CLAIMS on one metric; ``per_seed``: index seed, a column per method (lower is better).

    All methods of a seed share its base and optimal nets, so claims are judged on
    per-seed (paired) values; the criteria are CLAIM_CRITERIA.
    """
    claims = []
    for a, b, kind in PAPER_CLAIMS:
        ma, mb = float(per_seed[a].mean()), float(per_seed[b].mean())
        diff = per_seed[a] - per_seed[b]
        held = ma < mb if kind == "better" else bool((diff < 0).all()) and ma <= 0.9 * mb
        claims.append({"claim": f"{a} {kind.replace('_', ' ')} than {b}", "held": bool(held),
                       a: {"mean": ma, "std": float(per_seed[a].std())},
                       b: {"mean": mb, "std": float(per_seed[b].std())},
                       "ratio": ma / mb if mb else None,
                       "seeds_where_lower": int((diff < 0).sum()), "n_seeds": int(len(diff))})
    return claims


def paper_ordering(results: pd.DataFrame) -> dict:
    """ift.txt Fig. 3 / Sec. 5.3: DPO better than IFT; IFT much better than ORPO and SFT (lower MSE is better).

    The verdict (``paper_ordering_holds``) is on the paper's metric, parameter MSE at the
    last step; the best checkpoint (App. B.1), shared-parameter MSE and policy MSE are
    judged beside it.
    """
    tuned = results[results.role == "fine-tuned"]
    missing = [m for m in PAPER_FIG3 if m not in set(tuned.method)]
    if missing:
        return {"evaluated": False, "reason": f"methods not run: {missing}"}
    report = {"evaluated": True, "criteria": dict(CLAIM_CRITERIA)}
    for metric in ("mse_params", "mse_params_best", "mse_params_shared", "mse_policy", "mse_policy_best"):
        per_seed = tuned.pivot(index="seed", columns="method", values=metric)
        claims = judge_claims(per_seed)
        report[metric] = {"claims": claims, "all_held": all(c["held"] for c in claims),
                          "ranking_best_first": sorted(PAPER_FIG3, key=lambda m: float(per_seed[m].mean()))}
    report["primary_metric"] = "mse_params"
    report["paper_ordering_holds"] = report["mse_params"]["all_held"]
    report["notes"] = {
        "mse_params": "primary: the metric of the paper's Fig. 3 caption, at the last step",
        "mse_params_best": "parameter MSE at the best checkpoint (ift.txt App. B.1; oracle: scored by itself)",
        "mse_params_shared": "parameter MSE over the hidden bias and output layer only (read by every cell)",
        "mse_policy": "MSE to the optimal state-action table at the last step",
        "mse_policy_best": "policy MSE at the best checkpoint"}
    return report


def _write_csv(path: Path, df: pd.DataFrame):
    atomic_write_text(path, df.to_csv(index=False))


def run_frozen_lake(out_dir, methods=None, seeds=5, steps: int = ToyConfig.steps, map_name: str = DEFAULT_MAP,
                    negatives: str = "auto", hparams: dict | None = None, **config) -> pd.DataFrame:
    """Run the toy and write fig3.{png,pdf,csv}, curves.csv, visits.{png,csv}, table.{csv,md},
    ordering.json, map.png and config.json into ``out_dir``. Returns the per-(method, seed) results.

    ``seeds``: a count (seeds 0..n-1) or a list. ``hparams``: per-method loss overrides,
    e.g. {"dpo": {"beta": 0.5}}. ``config``: any other ToyConfig field.
    """
    names = resolve_methods(methods)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("seeds: need at least one seed")
    if negatives not in NEGATIVE_SOURCES:
        raise ValueError(f"negatives={negatives!r} is not one of {list(NEGATIVE_SOURCES)}")
    if config.get("base", "long_way") not in BASES:
        raise ValueError(f"base={config['base']!r} is not one of {list(BASES)}")
    unknown = sorted(set(config) - set(ToyConfig.__dataclass_fields__))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; known: {', '.join(ToyConfig.__dataclass_fields__)}")
    cfg = replace(ToyConfig(), map=map_name, steps=int(steps), negatives=negatives, **config)
    if cfg.steps < 1:
        raise ValueError(f"steps={cfg.steps} must be >= 1")
    hparams = dict(hparams or {})
    stray = sorted(set(hparams) - set(names))
    if stray:
        raise ValueError(f"hparams given for method(s) {stray} that are not run")
    resolved = {m: resolved_hparams(get_method(m), hparams.get(m)) for m in names}   # fails before any work

    world = make_world(cfg)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny tensors: threads only add overhead, and one thread is reproducible
    try:
        rows, visit_rows, curve_rows = [], [], []
        for seed in seed_list:
            r, v, c = run_seed(world, cfg, seed, names, hparams)
            rows += r
            visit_rows += v
            curve_rows += c
    finally:
        torch.set_num_threads(threads)

    out = Path(out_dir)
    results, visits, curves = pd.DataFrame(rows), pd.DataFrame(visit_rows), pd.DataFrame(curve_rows)
    table = summary_table(results)
    _write_csv(out / "fig3.csv", results)
    _write_csv(out / "curves.csv", curves)
    _write_csv(out / "visits.csv", visits)
    _write_csv(out / "table.csv", table)
    atomic_write_text(out / "table.md", table_markdown(table, cfg, len(seed_list)))
    write_json(out / "ordering.json", paper_ordering(results))
    write_json(out / "config.json", {
        "config": asdict(cfg), "seeds": seed_list, "methods": names, "horizon": world.horizon,
        "map_rows": list(world.lake.desc), "optimal_actions": world.optimal, "suboptimal_actions": world.suboptimal,
        "hyperparameters": resolved,
        "negatives_by_method": {m: negative_source(get_method(m), cfg.negatives) for m in names},
        "versions": {"torch": torch.__version__, "pandas": pd.__version__}})
    highlight = tuple(m for m in PAPER_FIG3 if m in names)
    footer = (f"Frozen Lake map '{cfg.map}' ({world.lake.nrow}x{world.lake.ncol}), base '{cfg.base}', "
              f"{cfg.steps} Adam steps at lr {cfg.lr:g}, {len(seed_list)} seeds (bars: mean ± std over seeds; "
              f"curves: mean). {PolicyNet(world.lake.n_states).n_params()} parameters. Lower MSE is closer "
              f"to the optimal net/table. Orange bars, bold curves: the paper's four methods.")
    for fmt in ("png", "pdf"):
        atomic_write_bytes(out / f"fig3.{fmt}", plots.fig3(results, curves, names, highlight, footer, fmt))
    atomic_write_bytes(out / "visits.png", plots.visits_figure(world.lake, visits, ["optimal_net", "base"] + names))
    atomic_write_bytes(out / "map.png", plots.map_figure(world.lake, world.optimal, world.suboptimal))
    return results


# ------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="negfree toy frozen-lake", description=__doc__.splitlines()[0])
    p.add_argument("--out-dir", default="results/toy/frozen_lake", help="where every output goes")
    p.add_argument("--methods", default=None,
                   help="comma list of registry losses (default: all of them, the paper's four first)")
    p.add_argument("--seeds", type=int, default=5, help="number of seeds, 0..n-1 (default 5)")
    p.add_argument("--steps", type=int, default=ToyConfig.steps, help="fine-tuning steps per run")
    p.add_argument("--map", default=DEFAULT_MAP, help="built-in map name or a text file of S/F/H/G rows")
    p.add_argument("--negatives", default="auto", choices=NEGATIVE_SOURCES,
                   help="auto: the paper's pair for DPO/ORPO, base-policy samples for the rest")
    p.add_argument("--base", default="long_way", choices=BASES, help="the base policy fine-tuning starts from")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        names = resolve_methods(args.methods)
        if args.seeds < 1:
            raise ValueError(f"--seeds {args.seeds}: need at least one seed")
        if args.steps < 1:
            raise ValueError(f"--steps {args.steps}: must be >= 1")
        load_map(args.map)
    except ValueError as e:
        parser.error(str(e))
    run_frozen_lake(args.out_dir, names, args.seeds, args.steps, args.map, args.negatives, base=args.base)
    out = Path(args.out_dir)
    sys.stdout.write((out / "table.md").read_text())
    ordering = json.loads((out / "ordering.json").read_text())
    if ordering.get("evaluated"):
        sys.stdout.write(f"\npaper ordering (DPO < IFT << ORPO, SFT on mse_params) holds: "
                         f"{ordering['paper_ordering_holds']}\n")
    sys.stdout.write(f"outputs in {out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
