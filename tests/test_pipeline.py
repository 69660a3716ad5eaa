"""Generation, reference scoring and training of every registered method, end to end
on the tiny random model (seconds on CPU)."""
import json

import pytest
import torch

from negfree.data.schema import load_jsonl
from negfree.generate.negatives import generate_negatives
from negfree.losses import REGISTRY
from negfree.score.reference import score_records
from negfree.train.loop import train


@pytest.fixture(scope="module")
def scored(tiny_model_dir, embedded_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("scored")
    recs = load_jsonl(embedded_dir / "train.jsonl")[:8]
    m = generate_negatives(tiny_model_dir, recs, out / "neg.jsonl", num=3, temperature=1.0,
                           max_new_tokens=6, batch_size=4, seed=1)
    assert m["prompts"] == 8 and m["strategy"] == "chat_bad"
    score_records(tiny_model_dir, load_jsonl(out / "neg.jsonl"), out / "scored.jsonl", max_len=96)
    return out / "scored.jsonl"


def run(tmp_path, model, data, method, **kw):
    cfg = {"method": method, "model": str(model), "data": str(data), "out_dir": str(tmp_path / method),
           "batch_size": 2, "micro_batch_size": 2, "max_steps": 2, "num_negatives": 2, "max_len": 96,
           "lr": 1e-3, **kw}
    train(cfg)
    return [json.loads(line) for line in (tmp_path / method / "metrics.jsonl").read_text().splitlines()]


def test_generation_is_seeded_and_pools_have_num_answers(tiny_model_dir, embedded_dir, tmp_path, scored):
    recs = load_jsonl(embedded_dir / "train.jsonl")[:8]
    generate_negatives(tiny_model_dir, recs, tmp_path / "again.jsonl", num=3, temperature=1.0,
                       max_new_tokens=6, batch_size=4, seed=1)
    again = [json.loads(x)["negatives"] for x in (tmp_path / "again.jsonl").read_text().splitlines()]
    first = [json.loads(x)["negatives"] for x in (scored.parent / "neg.jsonl").read_text().splitlines()]
    assert again == first and all(len(n) == 3 for n in first)


@pytest.mark.parametrize("method", sorted(REGISTRY))
def test_every_method_trains(tmp_path, tiny_model_dir, scored, method):
    rows = run(tmp_path, tiny_model_dir, scored, method)
    assert len(rows) == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    assert (tmp_path / method / "final" / "model.safetensors").exists()
    if REGISTRY[method].stateful:
        assert (tmp_path / method / "final" / "dft_log_u.pt").exists()


def test_reference_log_probs_line_up_with_the_trainer(tmp_path, tiny_model_dir, scored):
    """Before the first update the policy is the reference: every DPO reward is exactly 0."""
    rows = run(tmp_path, tiny_model_dir, scored, "dpo", max_steps=1)
    assert abs(rows[0]["reward_chosen"]) < 1e-5 and abs(rows[0]["reward_rejected"]) < 1e-5
    assert rows[0]["loss"] == pytest.approx(torch.nn.functional.softplus(torch.tensor(0.0)).item(), abs=1e-6)


def test_dft_log_u_moves_from_zero(tmp_path, tiny_model_dir, scored):
    rows = run(tmp_path, tiny_model_dir, scored, "dft2")
    assert rows[0]["log_u"] != 0.0 and "dft_weight" in rows[0]


def test_bad_inputs_stop_with_one_clear_message(tmp_path, tiny_model_dir, scored):
    with pytest.raises(ValueError, match="unknown method 'dfft'"):
        run(tmp_path, tiny_model_dir, scored, "dfft")
    with pytest.raises(ValueError, match="B=4 negatives requested but the pool has 3"):
        run(tmp_path, tiny_model_dir, scored, "dft2", num_negatives=4)
    with pytest.raises(ValueError, match=r"gamma=1.5 is outside"):
        run(tmp_path, tiny_model_dir, scored, "dft", hparams={"gamma": 1.5})
    unscored = tmp_path / "unscored.jsonl"
    unscored.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "ref"}) + "\n"
                                for r in load_jsonl(scored)))
    with pytest.raises(ValueError, match="needs reference log-probs; run 'negfree score'"):
        run(tmp_path, tiny_model_dir, unscored, "dpo")
    with pytest.raises(ValueError, match="prompt has .* tokens, more than the limit 3"):
        run(tmp_path, tiny_model_dir, scored, "sft", max_prompt_len=3)
