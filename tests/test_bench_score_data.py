"""`negfree bench data` and `negfree bench score`: their fixed JSON keys, on small inputs."""
import json

import pytest

from negfree.bench.data import KEYS
from negfree.cli import main
from negfree.common.batching import ratios, synthetic_rows

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bench_data_keys_and_hand_computed_ratios(tmp_path):
    """Two records of rows [4, 2] and [3, 3], micro-batches of 1 prompt: trained as padded, 4 x 2 +
    3 x 2 = 14 positions for 12 tokens; packed, the 12 tokens. Attention (query-key pairs):
    padded 2 x 16 + 2 x 9 = 50; packed with a dense mask 36 + 36 = 72; varlen 16 + 4 + 9 + 9 = 38.
    Scoring (with each record's positive again as KTO's mismatched answer) sequences 4, 2, 4,
    3, 3, 3 in one unsorted batch of 8: 6 x 4 = 24 for 19."""
    st = {"micro_batch_size": 1, "score_batch_size": 8, "score_max_batch_tokens": 100, "seed": 0, "max_len": 6}
    r = ratios([[4, 2], [3, 3]], st)
    assert r["padding_ratio_train_before"] == r["padding_ratio_train_after"] == round(14 / 12, 4)
    assert r["padding_ratio_train_bucketed"] == round(14 / 12, 4)
    assert r["attention_ratio_packed_dense"] == round(72 / 50, 4)
    assert r["attention_ratio_packed_varlen"] == round(38 / 50, 4)
    # packed rows of max_len = 6 tokens: [4, 2] and [3, 3] each fill one, 12 positions, 36 + 36 pairs;
    # of 4 tokens: [4], [2] and [3], [3]: 2 x 4 + 2 x 3 = 14 positions, 16 + 4 + 9 + 9 = 38 pairs
    assert r["padding_ratio_train_packed_capacity"] == 1.0 and r["attention_ratio_packed_capacity"] == round(72 / 50, 4)
    r4 = ratios([[4, 2], [3, 3]], {**st, "packing": True, "pack_capacity": 4})
    assert r4["padding_ratio_train_after"] == r4["padding_ratio_train_packed_capacity"] == round(14 / 12, 4)
    assert r4["attention_ratio_packed_capacity"] == round(38 / 50, 4)
    assert r["padding_ratio_score_before"] == round(24 / 19, 4)
    assert r["padding_ratio_score_after"] == round(24 / 19, 4)   # one batch either way (6 x 4 <= 100)
    assert ratios([[4, 2], [3, 3]], {**st, "packing": True})["padding_ratio_train_after"] == 1.0
    rows = synthetic_rows(100, 2, 1024, 320)
    assert len(rows) == 100 and all(len(x) == 3 and max(x) <= 1024 for x in rows)
    # configs/paper/dft.yaml packs: the trainer computes the real tokens only
    main(["bench", "data", "--no-embedded", "--records", "512", "--json", str(tmp_path / "d.json")])
    out = json.loads((tmp_path / "d.json").read_text())
    assert set(KEYS) <= set(out) and "notes" in out and out["settings"]["packing"] is True
    assert out["padding_ratio_score_after"] <= 1.05 < out["padding_ratio_score_before"]
    assert out["padding_ratio_train_after"] == 1.0 < out["padding_ratio_train_bucketed"] < \
        out["padding_ratio_train_before"]
    assert out["attention_ratio_packed_varlen"] < 1 < out["attention_ratio_packed_dense"]


def test_bench_score_key(tmp_path, tiny_model_dir):
    main(["bench", "score", "--model", str(tiny_model_dir), "--prompts", "4", "--max-len", "128",
          "--json", str(tmp_path / "s.json")])
    out = json.loads((tmp_path / "s.json").read_text())
    assert out["speedup_vs_unsorted"] > 0 and out["rows"]["sorted"]["padded_positions"] <= \
        out["rows"]["unsorted"]["padded_positions"]
    assert out["max_abs_diff_sorted_vs_unsorted"] < 1e-4
