"""Reference log-probs held compactly by the trainer (issue 14): per-sequence sums for
sequence-level losses, float32 arrays for BNF, instead of ~32-byte Python floats on every
process. The losses must read the same values either way."""
import copy
import tracemalloc

import numpy as np
import pytest
import torch

from negfree.common.batching import RefSum
from negfree.common.io import write_jsonl
from negfree.common.models import load_model, load_tokenizer
from negfree.data.schema import load_jsonl
from negfree.losses import get_method
from negfree.train.batch import collate, loss_inputs
from negfree.train.loop import resolve_config
from negfree.train.records import compact_references


@pytest.fixture(scope="module")
def scored(scored_pool, tmp_path_factory):
    return scored_pool(tmp_path_factory.mktemp("compact"), n=4, negatives=2)


@pytest.mark.parametrize("name", ["dpo", "kto", "bnf"])
def test_compact_references_give_the_losses_the_same_values(tiny_model_dir, scored, name):
    method = get_method(name)
    per_token = method.token_level and method.needs_reference
    plain = load_jsonl(scored)
    small = load_jsonl(scored, transform=lambda r: compact_references(r, per_token))
    kinds = {type(v) for r in small for v in [r["ref"]["positive"], *r["ref"]["negatives"]]}
    assert kinds == ({np.ndarray} if per_token else {RefSum})
    cfg = resolve_config({"method": name, "model": "m", "data": "d", "out_dir": "o", "max_len": 96,
                          "num_negatives": 2})
    tok, model = load_tokenizer(tiny_model_dir), load_model(tiny_model_dir, device="cpu")
    negs = [[0, 1]] * 4
    kl = [plain[(i + 1) % 4] for i in range(4)] if method.needs_mismatched else []
    with torch.no_grad():
        a = loss_inputs(model, model, collate(tok, plain, negs, cfg, kl, True), method, cfg["hparams"], None, 64)
        b = loss_inputs(model, model, collate(tok, small, negs, cfg, kl, True), method, cfg["hparams"], None, 64)
    for x, y in [(a.pos, b.pos), (a.neg, b.neg)] + ([(a.kl, b.kl)] if a.kl is not None else []):
        torch.testing.assert_close(x.ref, y.ref, rtol=1e-6, atol=1e-5)   # a float64 sum vs a float32 row sum
        if per_token:
            assert torch.equal(x.tok_ref, y.tok_ref)
    la, lb = method.fn(a, **cfg["hparams"]).loss, method.fn(b, **cfg["hparams"]).loss
    assert float(la) == pytest.approx(float(lb), rel=1e-6, abs=1e-6)


def test_compaction_happens_line_by_line_and_shrinks_memory(tmp_path):
    """300 records x 4 answers x 200 reference values: the compacted load holds a small fraction
    of what the JSON floats take; a NaN is left as it is, for check_references to name."""
    rows = [{"id": f"r{i}", "prompt": [{"role": "user", "content": "q"}], "positive": "a", "negatives": ["b", "c"],
             "ref": {"positive": [-1.0 - i / 7] * 200, "negatives": [[-2.0] * 200, [-3.0] * 200],
                     "mismatched": [-4.0] * 200}} for i in range(300)]
    rows[5]["ref"]["negatives"][1][3] = float("nan")
    write_jsonl(tmp_path / "s.jsonl", rows)

    def peak(transform):
        tracemalloc.start()
        recs = load_jsonl(tmp_path / "s.jsonl", transform=transform)
        size = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return recs, size

    _, big = peak(None)
    recs, small = peak(lambda r: compact_references(r, per_token=False))
    assert small < big / 5, (small, big)
    assert recs[0]["ref"]["positive"] == RefSum(-200.0, 200)
    assert isinstance(recs[5]["ref"]["negatives"][1], list)          # the NaN stays visible
    assert recs[5]["ref"]["negatives"][1][3] is None   # negfree's JSON writer stores NaN as null
    assert copy.deepcopy(recs[1]["ref"]["negatives"][0]) == RefSum(-400.0, 200)
