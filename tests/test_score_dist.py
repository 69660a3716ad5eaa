"""dft.txt Fig. 1 (`negfree score-dist`): the score of a negative against an independent forward
pass, the output files and their columns, byte-reproducible figures, and bad inputs."""
import json
import shutil

import pandas as pd
import pytest
import torch

from negfree.cli import main as cli
from negfree.data.schema import load_jsonl
from negfree.generate.negatives import generate_negatives
from negfree.report import score_dist as sd
from negfree.report.score_dist_data import CSV_COLUMNS


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pools(tiny_model_dir, embedded_dir, tmp_path_factory):
    """Two pools written by `negfree generate`: usual sampling (0.7) and a very high temperature (5.0)."""
    recs = load_jsonl(embedded_dir / "train.jsonl")[:4]
    d = tmp_path_factory.mktemp("pools")
    for name, t in (("sampling", 0.7), ("random", 5.0)):
        generate_negatives(tiny_model_dir, recs, d / f"{name}.jsonl", num=2, temperature=t, max_new_tokens=6,
                           seed=3, progress=False)
    return d


@pytest.fixture(scope="module")
def made(tiny_model_dir, pools, tmp_path_factory):
    out = tmp_path_factory.mktemp("fig")
    cli(["score-dist", "--model", str(tiny_model_dir), "--pool", f"sampling={pools / 'sampling.jsonl'}",
         "--pool", f"random={pools / 'random.jsonl'}", "--limit", "3", "--out-root", str(out),
         "--scale", "tiny random Llama, 3 prompts x 2 negatives"])
    return out


def _independent_score(model_dir, messages, answer):
    """Sbar by hand: chat template, one full forward pass, log-softmax and a gather."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    p = tok(text, add_special_tokens=False)["input_ids"]
    a = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([p + a])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].double()
    logp = torch.log_softmax(logits[:-1], dim=-1).gather(-1, ids[0, 1:].unsqueeze(-1)).squeeze(-1)
    ans = logp[len(p) - 1:]
    assert ans.numel() == len(a)
    return ans.mean().item(), len(a), ans.sum().item()


def test_score_equals_an_independent_forward_pass(tiny_model_dir, pools, made):
    df = pd.read_csv(made / "dft" / "fig1.csv")
    recs = load_jsonl(pools / "random.jsonl")
    for i, j in ((0, 0), (2, 1)):
        row = df[(df.pool == "random") & (df.prompt_index == i) & (df.negative_index == j)].iloc[0]
        score, n, total = _independent_score(tiny_model_dir, recs[i]["prompt"], recs[i]["negatives"][j])
        assert row.n_tokens == n
        assert row.score == pytest.approx(score, abs=1e-5)
        assert row.logp_sum == pytest.approx(total, abs=1e-4)
        assert row.record_id == recs[i]["id"]


def test_outputs_and_columns(made, pools):
    out = made / "dft"
    for name in ("fig1.png", "fig1.pdf", "fig1.csv", "fig1_summary.csv"):
        assert (out / name).stat().st_size > 0, name
    df = pd.read_csv(out / "fig1.csv")
    assert list(df.columns) == CSV_COLUMNS
    assert len(df) == 2 * 3 * 2                                      # pools x --limit prompts x negatives
    assert list(dict.fromkeys(df.pool)) == ["sampling", "random"]
    assert sorted(set(df.prompt_index)) == [0, 1, 2] and sorted(set(df.negative_index)) == [0, 1]
    assert (df.n_tokens >= 1).all() and (df.score <= 0).all()
    assert (df.score * df.n_tokens - df.logp_sum).abs().max() < 1e-4
    s = pd.read_csv(out / "fig1_summary.csv")
    assert list(s.columns) == sd.SUMMARY_COLUMNS
    assert list(s.pool) == ["sampling", "random"] and list(s.negatives) == [6, 6] and list(s.prompts) == [3, 3]
    for r in s.itertuples():
        d = df[df.pool == r.pool].score
        assert r.mean == pytest.approx(d.mean()) and r.std == pytest.approx(d.std(ddof=1))
    assert s.source.iloc[0].endswith("sampling.jsonl")
    assert (out / "fig1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "fig1.pdf").read_bytes()[:5] == b"%PDF-"


def test_figures_are_byte_reproducible(made, tmp_path):
    df = pd.read_csv(made / "dft" / "fig1.csv")
    summary = sd.summarize(df)
    pngs = []
    for k in range(2):
        pngs.append(sd.plot_fig1(df, summary, tmp_path / str(k) / "fig1.png", "scale text", model="m"))
    assert pngs[0].read_bytes() == pngs[1].read_bytes()
    assert pngs[0].with_suffix(".pdf").read_bytes() == pngs[1].with_suffix(".pdf").read_bytes()


def test_fallback_template(tiny_model_dir, pools, tmp_path):
    """A tokenizer without a chat template needs --fallback-template (the Zephyr-style one)."""
    bare = tmp_path / "bare"
    shutil.copytree(tiny_model_dir, bare)
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((bare / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(cfg))
    args = ["score-dist", "--model", str(bare), "--pool", f"s={pools / 'sampling.jsonl'}", "--limit", "1",
            "--out-root", str(tmp_path / "o"), "--scale", "x"]
    with pytest.raises(SystemExit, match="no chat template"):
        cli(args)
    cli(args + ["--fallback-template"])
    df = pd.read_csv(tmp_path / "o" / "dft" / "fig1.csv")
    assert len(df) == 2 and df.score.notna().all()


def _cli_error(args) -> str:
    with pytest.raises(SystemExit) as e:
        cli(["score-dist"] + args)
    return str(e.value.code)


def test_bad_inputs(tiny_model_dir, pools, tmp_path):
    base = ["--model", str(tiny_model_dir), "--out-root", str(tmp_path), "--scale", "x"]
    msg = _cli_error(base + ["--pool", f"a={tmp_path / 'nope.jsonl'}"])
    assert msg.startswith("negfree score-dist:") and "nope.jsonl" in msg and "'a'" in msg
    for bad in ("just_a_path.jsonl", "=x.jsonl", "label="):
        msg = _cli_error(base + ["--pool", bad])
        assert "LABEL=NEGATIVES.jsonl" in msg and bad in msg
    good = f"a={pools / 'sampling.jsonl'}"
    assert "twice" in _cli_error(base + ["--pool", good, "--pool", good])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("".join(json.dumps({**r, "negatives": []}) + "\n"
                             for r in load_jsonl(pools / "sampling.jsonl")))
    msg = _cli_error(base + ["--pool", good, "--pool", f"e={empty}"])
    assert "'e'" in msg and "no negatives" in msg
    data_only = tmp_path / "data_only.jsonl"
    data_only.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "negatives"}) + "\n"
                                 for r in load_jsonl(pools / "sampling.jsonl")))
    assert "'negatives'" in _cli_error(base + ["--pool", f"d={data_only}"])
    assert "--limit" in _cli_error(base + ["--pool", good, "--limit", "0"])
    assert not (tmp_path / "dft").exists()          # nothing written by a failed call
