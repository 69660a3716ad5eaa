"""Reference scoring (negfree/score/reference.py): length-sorted batches under a token budget, shards,
resume, and the precision choice. The tiny model on the CPU, fp32: sorting only changes which
sequences share a batch and how far they are padded, so every value equals the unsorted,
record-order pass up to float rounding (another padded width changes the order of float sums:
1e-5 nats, not bit for bit); a sharded run and a resumed shard keep every sequence in the same
batch, so they give the very bytes of one pass."""
import json

import pytest
import torch

import negfree.score.reference as score
from negfree.common.batching import padded_positions, plan_batches
from negfree.common.models import inference_dtype
from negfree.data.schema import load_jsonl
from negfree.score.reference import assign_shards, gather_scores, score_records

pytestmark = pytest.mark.usefixtures("one_thread")
MAX_LEN = 96


@pytest.fixture(scope="module")
def raw(embedded_dir):
    """12 prompts, 3 negatives each of very different lengths (1 to 4 other answers joined)."""
    recs = load_jsonl(embedded_dir / "train.jsonl")[:12]
    for i, r in enumerate(recs):
        r["negatives"] = [" ".join(recs[(i + k + m) % len(recs)]["positive"] for m in range(1 + (i + k) % 4))
                          for k in (1, 2, 3)]
    return recs


@pytest.fixture(scope="module")
def unsorted(tiny_model_dir, raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("score") / "unsorted.jsonl"
    m = score_records(tiny_model_dir, raw, out, max_len=MAX_LEN, batch_size=5, sort=False)
    return out, m


def test_plan_batches_sorts_under_a_token_budget():
    """lengths 3, 9, 5, 9, 1 with 2 rows and 20 positions at most: longest first, ties by index ->
    [1, 3] (2 x 9 = 18), [2, 0] (2 x 5 = 10), [4]; unsorted: [0, 1], [2, 3], [4]."""
    lengths = [3, 9, 5, 9, 1]
    assert plan_batches(lengths, batch_size=2, max_batch_tokens=20) == [[1, 3], [2, 0], [4]]
    assert plan_batches(lengths, batch_size=2, sort=False) == [[0, 1], [2, 3], [4]]
    # a budget of 12 positions: 9 alone, 9 alone, then 5 and 3 (2 x 5 = 10), then 1
    assert plan_batches(lengths, batch_size=8, max_batch_tokens=12) == [[1], [3], [2, 0], [4]]
    assert padded_positions(lengths, [[1, 3], [2, 0], [4]]) == 18 + 10 + 1
    # shards: largest batch first to the least loaded shard
    assert assign_shards(lengths, [[1, 3], [2, 0], [4]], 2) == [0, 1, 1]


def test_sorted_and_sharded_equal_the_unsorted_pass(tiny_model_dir, raw, unsorted, tmp_path):
    ref_path, m0 = unsorted
    one = tmp_path / "sorted.jsonl"
    m1 = score_records(tiny_model_dir, raw, one, max_len=MAX_LEN, batch_size=5, max_batch_tokens=300)
    assert m1["padded_positions"] < m0["padded_positions"] and m1["real_tokens"] == m0["real_tokens"]
    a, b = load_jsonl(ref_path), load_jsonl(one)
    assert [r["id"] for r in b] == [r["id"] for r in raw]
    for x, y in zip(a, b):                      # same records, same values (fp32 on the CPU)
        for kind in ("positive", "mismatched"):
            assert torch.allclose(torch.tensor(x["ref"][kind]), torch.tensor(y["ref"][kind]), rtol=0, atol=1e-5)
        assert len(x["ref"]["negatives"]) == len(y["ref"]["negatives"]) == 3
        for u, v in zip(x["ref"]["negatives"], y["ref"]["negatives"]):
            assert torch.allclose(torch.tensor(u), torch.tensor(v), rtol=0, atol=1e-5)
    # three shards, gathered: the bytes of the one sorted pass
    parts = []
    for s in range(3):
        p = tmp_path / f"shard{s}.jsonl"
        ms = score_records(tiny_model_dir, raw, p, max_len=MAX_LEN, batch_size=5, max_batch_tokens=300,
                           shard=s, num_shards=3)
        assert ms["shard_batches"] >= 1
        parts.append(p)
    gathered = tmp_path / "gathered.jsonl"
    gather_scores(raw, parts[::-1], gathered)
    assert gathered.read_bytes() == one.read_bytes()
    with pytest.raises(ValueError, match="expected 0..2"):
        gather_scores(raw, parts[:2], tmp_path / "x.jsonl")


def test_a_resumed_shard_is_one_pass(tiny_model_dir, raw, tmp_path, monkeypatch):
    kw = dict(max_len=MAX_LEN, batch_size=4, max_batch_tokens=200, shard=1, num_shards=2)
    whole = tmp_path / "whole.jsonl"
    score_records(tiny_model_dir, raw, whole, **kw)
    real, calls = score.answer_token_logprobs, []

    def dies_on_third(*a, **k):                 # the job is killed during its third batch
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(score, "answer_token_logprobs", dies_on_third)
    out = tmp_path / "resumed.jsonl"
    with pytest.raises(KeyboardInterrupt):
        score_records(tiny_model_dir, raw, out, **kw)
    partial = score.partial_path(out)
    assert not out.exists() and len(partial.read_bytes().splitlines()) == 3   # header + 2 batches
    with partial.open("ab") as fh:               # and a half-written line
        fh.write(b'{"batch": 9, "val')
    monkeypatch.setattr(score, "answer_token_logprobs", real)
    m = score_records(tiny_model_dir, raw, out, **kw)
    assert m["resumed_batches"] == 2 and not partial.exists()
    assert out.read_bytes() == whole.read_bytes()


def test_a_progress_file_of_another_configuration_is_refused(tiny_model_dir, raw, tmp_path):
    out = tmp_path / "s.jsonl"
    score.partial_path(out).write_text(json.dumps({"format": score.PARTIAL_FORMAT, "config": {"max_len": 1}}) + "\n")
    with pytest.raises(ValueError, match="different configuration"):
        score_records(tiny_model_dir, raw, out, max_len=MAX_LEN)


def test_too_many_shards_are_refused(tiny_model_dir, raw, tmp_path):
    with pytest.raises(ValueError, match="use at most"):
        score_records(tiny_model_dir, raw[:2], tmp_path / "s.jsonl", max_len=MAX_LEN, batch_size=64,
                      shard=0, num_shards=3)


def test_bf16_autocast_only_on_cuda():
    """auto = the trainer's mixed_precision auto: bf16 on CUDA, plain fp32 elsewhere."""
    assert inference_dtype("cpu") is None
    assert inference_dtype("cuda") is torch.bfloat16 and inference_dtype("cuda:1") is torch.bfloat16
    assert inference_dtype("cuda", "fp32") is None and inference_dtype("cpu", "bf16") is torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        inference_dtype("cpu", "fp16")


def test_the_cli_scores_shards_and_gathers(tiny_model_dir, raw, unsorted, tmp_path):
    from negfree.cli import main
    from negfree.common.io import write_jsonl

    data = write_jsonl(tmp_path / "raw.jsonl", raw)
    common = ["score", "--model", tiny_model_dir, "--data", data, "--max-len", MAX_LEN, "--batch-size", 5,
              "--max-batch-tokens", 300]
    shards = []
    for s in range(2):
        shards.append(tmp_path / f"part{s}.jsonl")
        main([str(a) for a in common + ["--out", shards[-1], "--shard", s, "--num-shards", 2]])
    out = tmp_path / "scored.jsonl"
    main([str(a) for a in common + ["--out", out, "--from-shards", *shards]])
    one = tmp_path / "one.jsonl"
    main([str(a) for a in common + ["--out", one]])
    assert out.read_bytes() == one.read_bytes()
    assert json.loads((tmp_path / "scored.jsonl.manifest.json").read_text())["num_shards"] == 2


@pytest.mark.parametrize("per_token", [True, False])
def test_the_columnar_copy_reads_back_what_the_trainer_keeps(unsorted, raw, tmp_path, per_token):
    """write_reference_table + read_reference_table == compact_references on the JSON, value for
    value (float32 per token, float64 sums over the same float32 numbers); per-token values are
    read-only views into the memory map, not copies."""
    import copy

    import numpy as np

    from negfree.score.reference import read_reference_table, write_reference_table
    from negfree.train.records import compact_references

    scored = load_jsonl(unsorted[0])
    scored[3]["ref"] = None                                   # a record skipped as overlong
    write_reference_table(scored, tmp_path / "ref.arrow")
    bare = [{k: v for k, v in r.items() if k != "ref"} for r in scored]
    got = read_reference_table(tmp_path / "ref.arrow", bare, per_token)
    want = [compact_references(copy.deepcopy(r), per_token) for r in scored]
    assert got[3]["ref"] is None and want[3]["ref"] is None
    for g, w in zip(got, want):
        if w["ref"] is None:
            continue
        for kind in ("positive", "mismatched"):
            assert np.array_equal(np.asarray(g["ref"][kind]), np.asarray(w["ref"][kind]))
        assert len(g["ref"]["negatives"]) == len(w["ref"]["negatives"]) == 3
        for a, b in zip(g["ref"]["negatives"], w["ref"]["negatives"]):
            assert np.array_equal(np.asarray(a), np.asarray(b))
        if per_token:
            assert g["ref"]["positive"].dtype == np.float32 and not g["ref"]["positive"].flags.writeable
        else:
            assert g["ref"]["positive"] == w["ref"]["positive"]       # RefSum(total, n), exactly


def test_bf16_scoring_loads_bf16_weights(tiny_model_dir, raw, tmp_path, monkeypatch):
    """Where scoring computes in bf16 (CUDA by default; forced here on the CPU) the weights are
    loaded in bf16: fp32 weights under autocast keep a bf16 copy of each beside them (6 B/param)."""
    import negfree.common.models as models

    seen = []
    real = models.load_model
    monkeypatch.setattr(models, "load_model", lambda *a, **kw: seen.append(kw.get("dtype")) or real(*a, **kw))
    m = score_records(tiny_model_dir, raw[:4], tmp_path / "s.jsonl", max_len=MAX_LEN, precision="bf16")
    assert seen == [torch.bfloat16] and m["precision"] == "bf16"
    score_records(tiny_model_dir, raw[:4], tmp_path / "f.jsonl", max_len=MAX_LEN)
    assert seen == [torch.bfloat16, torch.float32]
