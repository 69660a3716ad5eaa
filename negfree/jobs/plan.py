"""`negfree plan`: the sizing of every GPU job of a DAG (negfree/jobs/resources.py), per job and
per paper, before anything is submitted.

    negfree plan                                  # configs/papers.yaml, A100-80GB
    negfree plan --configfile configs/paper/bnf.yaml --gpu h100-80gb --json
    negfree plan --seeds configs/seeds.yaml       # the DAG with the seeds preset (3 seeds of the headline runs)
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import yaml

from negfree.jobs.dag import Dag
from negfree.jobs.resources import SAFETY, Job, jobs_of


def by_paper(jobs: list[Job], baseline: list[Job] | None = None) -> dict[str, dict]:
    """Per paper: jobs, GPU-hours (training's share), the largest per-GPU peak, the disk its jobs
    leave and the largest scratch peak of one training run; with ``baseline``
    (``jobs_of(..., before=True)``, the same jobs) also the baseline's GPU-hours."""
    papers: dict[str, dict] = {}
    for j in jobs:
        p = papers.setdefault(j.paper or j.experiment, {"jobs": 0, "gpu_hours": 0.0, "max_gpu_mem_gb": 0.0,
                                                        "train_gpu_hours": 0.0, "disk_gb": 0.0,
                                                        "max_scratch_peak_gb": 0.0})
        p["jobs"] += 1
        p["gpu_hours"] = round(p["gpu_hours"] + j.est_gpu_hours, 1)
        p["train_gpu_hours"] = round(p["train_gpu_hours"] + (j.est_gpu_hours if j.rule == "train" else 0), 1)
        p["max_gpu_mem_gb"] = max(p["max_gpu_mem_gb"], j.est_peak_gpu_mem_gb)
        p["disk_gb"] = round(p["disk_gb"] + j.est_disk_gb, 2)
        p["max_scratch_peak_gb"] = max(p["max_scratch_peak_gb"], j.est_scratch_peak_gb)
    for j in baseline or []:
        p = papers[j.paper or j.experiment]
        p["baseline_gpu_hours"] = round(p.get("baseline_gpu_hours", 0.0) + j.est_gpu_hours, 1)
    return papers



def _total(jobs: list[Job]) -> dict:
    """The per-paper sums over every job of the DAG."""
    return {"jobs": len(jobs), "gpu_hours": round(sum(j.est_gpu_hours for j in jobs), 1),
            "train_gpu_hours": round(sum(j.est_gpu_hours for j in jobs if j.rule == "train"), 1),
            "max_gpu_mem_gb": max((j.est_peak_gpu_mem_gb for j in jobs), default=0.0),
            "disk_gb": round(sum(j.est_disk_gb for j in jobs), 2),
            "max_scratch_peak_gb": max((j.est_scratch_peak_gb for j in jobs), default=0.0)}



SEEDS_PRESET = "configs/seeds.yaml"



def seeds_preset_cost(cfg: dict, preset: dict, root: Path, gpu_type: str | None = None,
                      origin: str = "config") -> dict[str, dict]:
    """What the seeds preset (configs/seeds.yaml) adds to a DAG, per paper: the replicate runs, the
    extra GPU jobs (their training and their evaluations; the pools and reference scores are shared),
    their GPU-hours (training's share) and the share of the paper's GPU-hours without the preset."""
    without = {j.job: j for j in jobs_of(Dag({k: v for k, v in cfg.items() if k != "seeds"}, root, origin), gpu_type)}
    dag = Dag({**cfg, "seeds": preset["seeds"]}, root, origin)
    extra = [j for j in jobs_of(dag, gpu_type) if j.job not in without]
    out: dict[str, dict] = {}
    for exp in dag.experiments.values():
        if exp.evaluated_replicates:
            p = out.setdefault(exp.paper() or exp.name, {"experiments": {}, "runs": 0, "jobs": 0, "gpu_hours": 0.0,
                                                         "train_gpu_hours": 0.0, "base_gpu_hours": 0.0})
            p["experiments"][exp.name] = sorted({r.split("/")[0].split("~")[1] for r in exp.evaluated_replicates})
            p["runs"] += len(exp.evaluated_replicates)
    for j in extra:
        p = out[j.paper or j.experiment]
        p["jobs"] += 1
        p["gpu_hours"] = round(p["gpu_hours"] + j.est_gpu_hours, 1)
        p["train_gpu_hours"] = round(p["train_gpu_hours"] + (j.est_gpu_hours if j.rule == "train" else 0), 1)
    for j in without.values():
        if (j.paper or j.experiment) in out:
            p = out[j.paper or j.experiment]
            p["base_gpu_hours"] = round(p["base_gpu_hours"] + j.est_gpu_hours, 1)
    return out



def _print_seeds_preset(cost: dict, preset_file: str, seeds: list, included: bool) -> None:
    print(f"\nseeds preset ({preset_file}: seeds {seeds} of the runs behind each paper's headline claims, trained and "
          f"evaluated; {'included above' if included else 'not included above, opt-in: --configfile <config> ' + preset_file}"
          ")")
    print(f"  {'paper':<10} {'extra runs':>10} {'extra jobs':>10} {'extra GPU-h':>12} {'of which train':>15} "
          f"{'vs without':>11}  runs (experiment: methods)")
    for paper, p in cost.items():
        share = f"+{100 * p['gpu_hours'] / p['base_gpu_hours']:.0f}%" if p["base_gpu_hours"] else ""
        runs = "; ".join(f"{e}: {', '.join(m)}" for e, m in p["experiments"].items())
        print(f"  {paper:<10} {p['runs']:>10} {p['jobs']:>10} {p['gpu_hours']:>12.1f} {p['train_gpu_hours']:>15.1f} "
              f"{share:>11}  {runs}")
    print(f"  {'total':<10} {sum(p['runs'] for p in cost.values()):>10} {sum(p['jobs'] for p in cost.values()):>10} "
          f"{sum(p['gpu_hours'] for p in cost.values()):>12.1f} "
          f"{sum(p['train_gpu_hours'] for p in cost.values()):>15.1f}")



def main(args) -> int:
    root = Path(args.directory or ".").resolve()
    configfile = args.configfile or "configs/papers.yaml"
    cfg = yaml.safe_load((root / configfile).read_text())
    preset_file = getattr(args, "seeds", None)
    preset = yaml.safe_load((root / (preset_file or SEEDS_PRESET)).read_text()) \
        if preset_file or (root / SEEDS_PRESET).is_file() else None
    if preset_file:
        cfg = {**cfg, "seeds": preset["seeds"]}
    dag = Dag(cfg, root, origin=configfile)
    jobs = jobs_of(dag, args.gpu)
    cost = seeds_preset_cost(cfg, preset, root, args.gpu, configfile) if preset else None
    if args.json:
        rows = [{**asdict(j), "runtime_min": j.runtime_min(), "mem_mb": j.mem_mb()} for j in jobs]
        # the plain list is what consumers read (tests/test_plan.py); --by-paper opts into an object
        obj = {"jobs": rows, "papers": by_paper(jobs), "total": _total(jobs)}
        judges = dag.judge_costs()
        if judges:
            obj["judges"] = judges
        if cost is not None:
            obj["seeds_preset"] = {"file": preset_file or SEEDS_PRESET, "included": bool(preset_file), "papers": cost}
        print(json.dumps(obj if getattr(args, "by_paper", False) else rows, indent=1))
        return 0
    gpu = args.gpu or "each experiment's launch.gpu_type"
    print(f"{len(jobs)} GPU jobs, on {gpu}; estimates (negfree/jobs/resources.py), Slurm asks x{SAFETY}; disk in GB left "
          f"by each job")
    print(f"{'rule':<26} {'experiment':<18} {'gpus':>4} {'Mtok':>8} {'GPU GB':>7} {'host GB':>8} {'GPU-h':>8} "
          f"{'disk GB':>8}  job")
    for j in sorted(jobs, key=lambda j: (j.paper or "", j.experiment, j.rule, j.job)):
        print(f"{j.rule:<26} {j.experiment:<18} {j.gpus:>4} {j.tokens / 1e6:>8.1f} {j.est_peak_gpu_mem_gb:>7.1f} "
              f"{j.est_host_mem_gb:>8.1f} {j.est_gpu_hours:>8.2f} {j.est_disk_gb:>8.2f}  {j.job}")
    baseline = jobs_of(dag, args.gpu, before=True)
    print(f"\n{'paper':<12} {'jobs':>5} {'GPU-hours':>10} {'of which train':>15} {'max GB/GPU':>11} "
          f"{'baseline GPU-h':>15} {'disk GB':>9} {'max run scratch GB':>19}")
    for paper, p in by_paper(jobs, baseline).items():
        print(f"{paper:<12} {p['jobs']:>5} {p['gpu_hours']:>10.1f} {p['train_gpu_hours']:>15.1f} "
              f"{p['max_gpu_mem_gb']:>11.1f} {p['baseline_gpu_hours']:>15.1f} {p['disk_gb']:>9.1f} "
              f"{p['max_scratch_peak_gb']:>19.1f}")
    t = _total(jobs)
    print(f"{'total':<12} {len(jobs):>5} {t['gpu_hours']:>10.1f} {t['train_gpu_hours']:>15.1f} "
          f"{t['max_gpu_mem_gb']:>11.1f} {sum(j.est_gpu_hours for j in baseline):>15.1f} {t['disk_gb']:>9.1f} "
          f"{t['max_scratch_peak_gb']:>19.1f}")
    print("disk: what the jobs leave (final weights, pools, scored pools, evaluation samples); scratch: the most "
          "one training run holds while it runs ((keep_checkpoints + 1) checkpoints + final/)")
    print("baseline: the DAG without packing, bucketing, sorted scoring or bf16 inference (padded training micro-batches, scoring in record order, fp32 without TF32 "
          "for scoring, generation and evaluation); padding factors: negfree bench data's arithmetic per experiment")
    if cost is not None:
        _print_seeds_preset(cost, preset_file or SEEDS_PRESET, preset["seeds"]["seeds"], bool(preset_file))
    judges = dag.judge_costs()
    if judges:
        _print_judges(dag, jobs, judges)
    return 0


def _print_judges(dag, jobs: list[Job], costs: dict[str, dict]) -> None:
    """The judged protocols per paper: judgements, judge tokens, API dollars, GPU-hours of answers and of a
    served judge, and the budget line."""
    print("\njudged protocols (evaluate.judged, AlpacaEval): API dollars at configs/judges.yaml's prices (an "
          "estimate: negfree/jobs/resources.py JUDGED_TOKENS, ALPACA_JUDGE)")
    print(f"  {'paper':<10} {'judgements':>10} {'judge Min':>10} {'judge Mout':>10} {'API $':>10} "
          f"{'answers GPU-h':>14} {'served judge GPU-h':>19}  judges")
    for paper, c in costs.items():
        mine = [j for j in jobs if (j.paper or j.experiment) == paper]
        ans = sum(j.est_gpu_hours for j in mine if j.rule == "judged_answers"
                  or (j.rule == "evaluate_generation" and "/eval/alpaca_eval" in j.job))
        served = sum(j.est_gpu_hours for j in mine if j.rule == "judged_serve")   # one job per served backend
        exps = [e for e in dag.experiments.values() if (e.paper() or e.name) == paper]
        # a protocol's judge, then its extra judges (the same answers judged again): "mt_bench: paper:gpt-4 + paper:..."
        judges = sorted({f"{p}: " + " + ".join(f"{x.backend}:{x.model}" for x in [j, *e.judged.extra.get(p, [])])
                         for e in exps if e.judged for p, j in e.judged.judges.items()}
                        | {f"{p}: {e.alpaca_eval(p)['annotator']}" for e in exps
                           for p in [*e.protocols, *(e.judged.alpaca if e.judged else [])] if p.startswith("alpaca_eval")})
        unpriced = f" (no price for {', '.join(c['unpriced'])})" if c["unpriced"] else ""
        left = f" (${c['judge_usd_left']:,.2f} not yet judged)" if c["judge_usd_left"] < c["judge_usd"] else ""
        print(f"  {paper:<10} {c['judgements']:>10} {c['judge_input_tokens'] / 1e6:>10.2f} "
              f"{c['judge_output_tokens'] / 1e6:>10.2f} {c['judge_usd']:>10.2f} {ans:>14.1f} {served:>19.1f}  "
              f"{'; '.join(judges)}{unpriced}{left}")
    budget = dag.judge_budget_refusal(os.environ, costs)
    if budget:
        print(f"  OVER BUDGET: {budget}")

