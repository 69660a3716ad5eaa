"""negfree shifts (bnf.txt Fig. 3/4): the Gini coefficient, the decile bins, the per-token
shifts against a direct full forward pass, the output files and the bad-input messages.
Everything on the tiny random model; no network."""
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from negfree.cli import main as cli_main
from negfree.report import shifts as S
from negfree.report.shifts_data import compute_shifts


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def perturbed_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with two weights perturbed: a stand-in fine-tuned checkpoint."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("perturbed")
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        w = model.model.layers[0].mlp.down_proj.weight
        w.add_(0.5 * torch.randn(w.shape, generator=g))
        h = model.lm_head.weight
        h.add_(0.2 * torch.randn(h.shape, generator=g))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(tiny_model_dir)).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def records(embedded_dir):
    from negfree.data.schema import load_jsonl

    recs = [{"id": r["id"], "prompt": r["prompt"]} for r in load_jsonl(Path(embedded_dir) / "test.jsonl")[:3]]
    recs.append({"id": "plain-string", "prompt": "What is 2 + 3?"})   # a bare string prompt works too
    return recs


def _write_jsonl(path: Path, recs) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


# ----------------------------------------------------------------------------- (1) Gini, bins
def _gini_pairs(x):
    x = np.asarray(x, dtype=float)
    return sum(abs(a - b) for a, b in itertools.product(x, x)) / (2 * len(x) ** 2 * x.mean())


def test_gini_hand_values():
    assert S.gini([3.0, 3.0, 3.0, 3.0]) == pytest.approx(0.0, abs=1e-12)
    for n in (2, 5, 10):
        assert S.gini([0.0] * (n - 1) + [7.0]) == pytest.approx((n - 1) / n, abs=1e-12)
    # [1, 2, 3, 4]: sum over ordered pairs |xi - xj| = 20; 20 / (2 * 16 * 2.5) = 0.25
    assert S.gini([4.0, 1.0, 3.0, 2.0]) == pytest.approx(0.25, abs=1e-12)
    # [0, 0, 1, 3]: ordered pairs sum = 2 * (1 + 3 + 1 + 3 + 2) = 20; 20 / (2 * 16 * 1) = 0.625
    assert S.gini([0.0, 1.0, 0.0, 3.0]) == pytest.approx(0.625, abs=1e-12)
    assert S.gini([0.0, 0.0, 0.0]) == 0.0        # nothing shifted: no inequality
    assert S.gini([5.0]) == 0.0
    x = np.random.default_rng(0).exponential(size=17)
    assert S.gini(x) == pytest.approx(_gini_pairs(x), abs=1e-12)
    with pytest.raises(ValueError, match="non-negative"):
        S.gini([1.0, -0.5])
    with pytest.raises(ValueError, match="no values"):
        S.gini([])


def test_sequence_shifts_hand_values():
    s = S.sequence_shifts([-1.0, -2.0], [-1.5, -1.0], [3.0, 1.0], [1.0, 1.0])
    # dl = [0.5, -1.0], dz = [2.0, 0.0]
    assert s == pytest.approx({"n_tokens": 2, "loglik": -0.5, "abs_loglik": 0.5, "abs_logit": 2.0, "logit": 2.0,
                               "loglik_per_token": -0.25, "abs_logit_per_token": 1.0, "gini_logit": 0.5})


def test_decile_bins():
    anchor = np.arange(100, dtype=float)
    edges = S.anchor_edges(anchor)
    assert edges[0] == 0 and edges[-1] == 99 and len(edges) == 11
    counts, frac = S.bin_fractions(anchor, edges)
    assert counts.tolist() == [10] * 10 and frac.sum() == pytest.approx(1.0)
    # outer bins are open-ended; a value on an inner edge goes to the bin above it
    assert S.bin_of([-1e9, 1e9, edges[1], edges[1] - 1e-9], edges).tolist() == [0, 9, 1, 0]


# ----------------------------------------------------------------------------- (2) identical model
def test_identical_model_gives_exactly_zero_shifts(tiny_model_dir, records):
    rows = compute_shifts(tiny_model_dir, [("same", Path(tiny_model_dir))], records, max_new_tokens=8,
                          batch_size=3)
    assert len(rows) == len(records)
    for r in rows:
        assert 1 <= len(r["tokens"]) <= 8
        assert r["logp_model"] == r["logp_ref"] and r["logit_model"] == r["logit_ref"]
    fig3 = S.fig3_table(rows)
    cols = ["loglik", "abs_loglik", "abs_logit", "logit", "loglik_per_token", "abs_logit_per_token", "gini_logit"]
    assert (fig3[cols].to_numpy() == 0).all()


# ----------------------------------------------------------------------------- (3) perturbed model
def test_perturbed_model_matches_direct_forward(tiny_model_dir, perturbed_dir, records):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = compute_shifts(tiny_model_dir, [("pert", Path(perturbed_dir))], records, max_new_tokens=8,
                          batch_size=4, chunk=3)   # a small chunk: the chunk loop is exercised
    fig3 = S.fig3_table(rows)
    assert (fig3.abs_logit > 0).all() and (fig3.abs_loglik > 0).any()

    # Independent: the chat template applied by the tokenizer, one full forward per model.
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    pert = AutoModelForCausalLM.from_pretrained(str(perturbed_dir), dtype=torch.float32).eval()
    ref = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32).eval()
    for k in (0, len(records) - 1):
        row, rec = rows[k], records[k]
        msgs = [{"role": "user", "content": rec["prompt"]}] if isinstance(rec["prompt"], str) else rec["prompt"]
        prompt = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        assert row["prompt_tokens"] == len(p_ids)
        ids = torch.tensor([p_ids + row["tokens"]])
        P, T = len(p_ids), len(row["tokens"])
        with torch.no_grad():
            zs = {name: m(input_ids=ids).logits[0, P - 1:P - 1 + T].double() for name, m in
                  (("model", pert), ("ref", ref))}
        y = torch.tensor(row["tokens"])
        for name, z in zs.items():
            chosen = z.gather(-1, y[:, None])[:, 0]
            logp = torch.log_softmax(z, -1).gather(-1, y[:, None])[:, 0]
            np.testing.assert_allclose(row[f"logit_{name}"], chosen.numpy(), atol=1e-4, rtol=0)
            np.testing.assert_allclose(row[f"logp_{name}"], logp.numpy(), atol=1e-4, rtol=0)
        # greedy: every generated token is (up to float noise) the fine-tuned model's argmax
        assert (zs["model"].max(-1).values - zs["model"].gather(-1, y[:, None])[:, 0]).max() < 1e-4
        dl = (torch.log_softmax(zs["model"], -1) - torch.log_softmax(zs["ref"], -1)).gather(-1, y[:, None])[:, 0]
        dz = (zs["model"] - zs["ref"]).gather(-1, y[:, None])[:, 0]
        assert fig3.loglik[k] == pytest.approx(dl.sum().item(), abs=1e-4)
        assert fig3.abs_logit[k] == pytest.approx(dz.abs().sum().item(), abs=1e-4)
        assert fig3.gini_logit[k] == pytest.approx(_gini_pairs(dz.abs().numpy()) if T > 1 else 0.0, abs=1e-4)


# ----------------------------------------------------------------------------- (4) outputs via the CLI
def test_cli_writes_figures_and_tables(tiny_model_dir, perturbed_dir, records, tmp_path, capsys):
    data = _write_jsonl(tmp_path / "test.jsonl", records)
    outs = []
    for run in ("a", "b"):
        out = tmp_path / run
        cli_main(["shifts", "--reference", str(tiny_model_dir), "--model", f"bnf={perturbed_dir}",
                  "--model", f"dpo={perturbed_dir}", "--model", f"same={tiny_model_dir}", "--data", str(data),
                  "--limit", "3", "--max-new-tokens", "6", "--out-root", str(out), "--scale", "tiny test, 3 prompts"])
        outs.append(out / "bnf")
    assert "fig3: wrote" in capsys.readouterr().out
    files = ["fig3.png", "fig3.pdf", "fig3.csv", "fig4.png", "fig4.pdf", "fig4.csv", "shifts_summary.csv",
             "shifts_tokens.jsonl"]
    for f in files:
        assert (outs[0] / f).stat().st_size > 0
        assert (outs[0] / f).read_bytes() == (outs[1] / f).read_bytes(), f"{f} is not byte-reproducible"
    assert not list(outs[0].glob(".*"))   # no temporary leftovers

    fig3 = pd.read_csv(outs[0] / "fig3.csv")
    assert list(fig3.columns) == S.FIG3_COLUMNS and len(fig3) == 9
    assert fig3.groupby("model").size().to_dict() == {"bnf": 3, "dpo": 3, "same": 3}
    fig4 = pd.read_csv(outs[0] / "fig4.csv")
    assert list(fig4.columns) == S.FIG4_COLUMNS and len(fig4) == 30
    assert set(fig4.anchor) == {"dpo"}   # the paper's anchor, picked by label
    assert fig4.groupby("model").fraction.sum().to_numpy() == pytest.approx([1.0, 1.0, 1.0])
    summary = pd.read_csv(outs[0] / "shifts_summary.csv")
    assert list(summary.columns) == S.SUMMARY_COLUMNS and summary.model.tolist() == ["bnf", "dpo", "same"]
    same = summary.set_index("model").loc["same"]
    assert same.abs_loglik == 0 and same.abs_logit == 0 and same.gini_logit == 0
    # bnf and dpo are the same checkpoint: same responses, same shifts, and bnf fills dpo's bins alike
    b, d = summary.set_index("model").loc["bnf"], summary.set_index("model").loc["dpo"]
    assert b.abs_logit == d.abs_logit > 0 and b.bins_l1_from_uniform == d.bins_l1_from_uniform
    tokens = [json.loads(x) for x in (outs[0] / "shifts_tokens.jsonl").read_text().splitlines()]
    assert len(tokens) == 9 and all(len(t["logp_model"]) == len(t["tokens"]) for t in tokens)


# ----------------------------------------------------------------------------- (5) bad input
def _fails(argv, tmp_path, match):
    with pytest.raises(SystemExit) as e:
        cli_main(["shifts", *argv, "--out-root", str(tmp_path / "out"), "--scale", "s"])
    msg = str(e.value.code)
    assert msg.startswith("negfree shifts: ") and match in msg, msg
    assert "\n" not in msg


def test_bad_input_messages(tiny_model_dir, records, tmp_path):
    data = _write_jsonl(tmp_path / "ok.jsonl", records)
    ref = ["--reference", str(tiny_model_dir)]
    ok_model = ["--model", f"m={tiny_model_dir}"]
    _fails([*ref, "--model", f"m={tmp_path / 'nope'}", "--data", str(data)], tmp_path,
           f"--model m: model directory {tmp_path / 'nope'} does not exist")
    _fails(["--reference", str(tmp_path / "gone"), *ok_model, "--data", str(data)], tmp_path,
           f"--reference: model directory {tmp_path / 'gone'} does not exist")
    (tmp_path / "empty_dir").mkdir()
    _fails([*ref, "--model", f"m={tmp_path / 'empty_dir'}", "--data", str(data)], tmp_path, "no config.json")
    _fails([*ref, "--model", str(tiny_model_dir), "--data", str(data)], tmp_path,
           f"--model '{tiny_model_dir}' must look like LABEL=MODEL_DIR")
    _fails([*ref, "--model", f"={tiny_model_dir}", "--data", str(data)], tmp_path, "must look like LABEL=MODEL_DIR")
    _fails([*ref, *ok_model, *ok_model, "--data", str(data)], tmp_path, "label 'm' is given twice")
    no_prompt = _write_jsonl(tmp_path / "no_prompt.jsonl", [{"id": "a", "prompt": "hi"}, {"id": "b", "question": "x"}])
    _fails([*ref, *ok_model, "--data", str(no_prompt)], tmp_path, f"{no_prompt}:2: missing required column 'prompt'")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    _fails([*ref, *ok_model, "--data", str(empty)], tmp_path, f"--data: {empty} has no records")
    _fails([*ref, *ok_model, "--data", str(tmp_path / "missing.jsonl")], tmp_path, "does not exist")
    _fails([*ref, *ok_model, "--data", str(data), "--bin-anchor", "dpo"], tmp_path,
           "--bin-anchor 'dpo' is not one of the --model labels (m)")
    _fails([*ref, *ok_model, "--data", str(data), "--limit", "0"], tmp_path, "--limit 0 must be >= 1")
