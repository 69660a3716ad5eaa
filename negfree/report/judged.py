"""The judged table of one experiment: every (run, judged protocol) result of negfree judged-eval
(and of negfree alpaca-eval, for AlpacaEval listed as judged), with its interval, its judge and
whether that judge is the paper's.

A number judged by another model than the paper's judge is marked in the table ("not the
paper's judge"), and an offline judge's numbers are labelled as meaningless for quality: they
show that the pipeline ran, nothing about the answers.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from negfree.common.io import atomic_write_text, read_json
from negfree.evaluate.alpaca import PROTOCOLS as ALPACA   # the results of negfree alpaca-eval
from negfree.report.html import write_markdown_page

COLUMNS = ("run", "protocol", "metric", "value", "ci_low", "ci_high", "n", "failed", "mean_length_chars",
           "judge", "judge_model", "paper_judge", "judge_note")
FORMAT = "negfree-judged-result/1"
# the protocol names the results carry (the benchmark's version) -> the DAG's (evaluate.judged.protocols)
DAG_NAME = {"arena_hard_v0.1": "arena_hard", "wildbench_v2": "wildbench", "mt_bench": "mt_bench"}


def _alpaca_row(res: dict, run: str) -> dict:
    """A result of negfree alpaca-eval: the win rate (length-controlled where defined) with
    +/- 1.96 alpaca_eval's standard error, judged by the protocol's annotator or a stand-in."""
    from negfree.evaluate.alpaca import JUDGE_MODELS, LOCAL_ANNOTATOR, OFFICIAL

    protocol = res["protocol"]
    paper = JUDGE_MODELS[OFFICIAL[protocol]]
    if res.get("annotator_config") == LOCAL_ANNOTATOR:
        note = ("OFFLINE stand-in (a local model's log-likelihood, not AlpacaEval's judge): the number says "
                "nothing about quality")
    elif res.get("annotator_is_alpaca_eval_judge"):
        note = "AlpacaEval's own judge"
    else:
        note = f"not AlpacaEval's judge ({paper})"
    value, se = res.get("win_rate"), res.get("standard_error")
    ci = (value - 1.96 * se, value + 1.96 * se) if value is not None and se is not None else (None, None)
    lc = res.get("win_rate_kind") == "length_controlled"
    return {"run": run, "protocol": protocol, "metric": "lc_win_rate" if lc else "win_rate", "value": value,
            "ci_low": ci[0], "ci_high": ci[1], "n": res.get("n"), "failed": res.get("n_unjudged"),
            "mean_length_chars": res.get("mean_length_chars"), "judge": res.get("annotator"),
            "judge_model": res.get("judge_model"), "paper_judge": paper, "judge_note": note}


def _row(path: str, run: str, paper_judges: dict[str, str]) -> dict:
    res = read_json(path)
    if isinstance(res, dict) and res.get("protocol") in ALPACA and "win_rate" in res:
        return _alpaca_row(res, run)
    if not isinstance(res, dict) or res.get("format") != FORMAT:
        raise ValueError(f"{path}: not a result of negfree judged-eval (format {FORMAT}) or negfree alpaca-eval")
    judge = res.get("judge") or {}
    protocol = res["protocol"]
    # the paper's judge(s) of the protocol: several where the paper reports it with several judges
    # ("model,model": each further one an extra judge of the same answers, eval/<protocol>@<model>.json)
    listed = paper_judges.get(DAG_NAME.get(protocol, protocol))
    papers = [str(m) for m in listed] if isinstance(listed, list) else [m for m in str(listed or "").split(",") if m]
    paper = judge.get("model") if judge.get("model") in papers else "/".join(papers)
    if res.get("judge_is_offline"):
        note = "OFFLINE judge (a hash, not a model): the number says nothing about quality"
    elif paper and judge.get("model") not in papers:
        note = f"not the paper's judge ({paper})"
    else:
        note = "the paper's judge" if paper else ""
    return {"run": run, "protocol": protocol, "metric": res["metric"], "value": res["value"],
            "ci_low": res.get("ci_low"), "ci_high": res.get("ci_high"), "n": res.get("n"),
            "failed": res.get("failed"), "mean_length_chars": (res.get("output_length") or {}).get("mean_chars"),
            "judge": judge.get("name"), "judge_model": judge.get("model"), "paper_judge": paper or "",
            "judge_note": note}


def _fmt(v, digits: int = 1) -> str:
    return "" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def judged_table(results: list[tuple[str, str]], out_csv: str | Path, out_md: str | Path, *,
                 paper_judges: dict[str, str] | None = None, scale: str | None = None) -> list[dict]:
    """``results``: (result JSON, run name) pairs; ``paper_judges``: protocol -> the paper's judge model."""
    rows = [_row(path, run, paper_judges or {}) for path, run in results]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out_csv, buf.getvalue())
    lines = ["# Judged protocols", ""]
    if scale:
        lines += [f"Scale: {scale}", ""]
    if any(r["judge_note"].startswith("OFFLINE judge") for r in rows):
        lines += ["**Offline judge:** these numbers come from negfree_offline_judge, a hash of the request and "
                  "not a model. They show that generation, judging, caching and aggregation ran end to end; "
                  "they say nothing about the answers' quality.", ""]
    if any(r["judge_note"].startswith("OFFLINE stand-in") for r in rows):
        lines += ["**AlpacaEval offline stand-in:** negfree_local_loglik runs alpaca_eval's own annotation "
                  "machinery, but its verdict prefers the answer with the higher mean log-probability under a "
                  "local model. It is not AlpacaEval's judge; its win rates say nothing about quality.", ""]
    if any(r["protocol"] in ALPACA for r in rows):
        lines += ["AlpacaEval's interval is the win rate +/- 1.96 times alpaca_eval's standard error; the other "
                  "protocols' are their benchmarks' own (bootstrap) intervals.", ""]
    lines += ["| run | protocol | metric | value | 95% interval | n | failed | mean length (chars) | judge | note |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ci = f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]" if r["ci_low"] is not None else ""
        lines.append(f"| {r['run']} | {r['protocol']} | {r['metric']} | {_fmt(r['value'])} | {ci} | {_fmt(r['n'])} | "
                     f"{_fmt(r['failed'])} | {_fmt(r['mean_length_chars'], 0)} | {r['judge']} | {r['judge_note']} |")
    write_markdown_page(out_md, "\n".join(lines) + "\n")
    return rows
