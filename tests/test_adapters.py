"""Hub adapters on small hand-written files in each hub's schema (no download), and
pairing-ratio masking (bnf.txt Table 6)."""
import json

import pytest

from negfree.data.adapters import (ADAPTERS, ALPACA_PROMPT, apply_pairing_ratio, load_adapter,
                                   subsample_indices, use_pair_as_negatives)


def conv(user, answer):
    return [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]


def write(tmp_path, rows, fmt):
    tmp_path.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        import pandas as pd

        path = tmp_path / "rows.parquet"
        pd.DataFrame(rows).to_parquet(path)
    else:
        path = tmp_path / "rows.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def load(tmp_path, name, split, rows, fmt="jsonl", **kw):
    return load_adapter(name, split, path=write(tmp_path, rows, fmt), cache_dir=str(tmp_path / "cache"), **kw)


UF_ROWS = [{"prompt": f"Question {i}?", "prompt_id": f"{i:064x}",
            "chosen": conv(f"Question {i}?", f"Good answer {i}."),
            "rejected": conv(f"Question {i}?", f"Bad answer {i}."),
            "messages": conv(f"Question {i}?", f"Good answer {i}."),
            "score_chosen": 8.0, "score_rejected": 3.0} for i in range(5)]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_ultrafeedback_winner_is_positive_loser_in_pair(tmp_path, fmt):
    recs = load(tmp_path, "ultrafeedback", "train_prefs", UF_ROWS, fmt)
    assert len(recs) == 5
    r = recs[2]
    assert r["id"] == "ultrafeedback-train_prefs-0000002"
    assert r["prompt"] == [{"role": "user", "content": "Question 2?"}]
    assert r["positive"] == "Good answer 2." and r["negatives"] == []
    assert r["pair"] == {"chosen": "Good answer 2.", "rejected": "Bad answer 2."}
    assert r["meta"]["source"].startswith("HuggingFaceH4/ultrafeedback_binarized")
    assert r["meta"]["row"] == 2 and r["meta"]["prompt_id"] == f"{2:064x}"


def test_metamathqa_alpaca_prompt_and_answer(tmp_path):
    rows = [{"query": "What is 2 + 3?", "response": "2 + 3 = 5.\nThe answer is: 5",
             "type": "GSM_Rephrased", "original_question": "2+3?"}]
    (r,) = load(tmp_path, "metamathqa", "train", rows)
    text = r["prompt"][0]["content"]
    assert text == ("Below is an instruction that describes a task. Write a response that appropriately "
                    "completes the request.\n\n### Instruction:\nWhat is 2 + 3?\n\n### Response:")
    assert text == ALPACA_PROMPT.format(query="What is 2 + 3?")
    assert r["positive"] == "2 + 3 = 5.\nThe answer is: 5" and r["answer"] == "5"
    assert r["meta"]["template"] == "alpaca" and r["meta"]["type"] == "GSM_Rephrased"


def test_ultrachat_first_user_turn_and_first_reply(tmp_path):
    rows = [{"prompt": "Hi", "prompt_id": "a", "messages": [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "More?"}, {"role": "assistant", "content": "Sure."}]}]
    (r,) = load(tmp_path, "ultrachat", "train_sft", rows)
    assert r["prompt"] == [{"role": "user", "content": "Hi"}] and r["positive"] == "Hello!"
    assert "pair" not in r


def test_hh_rlhf_split_at_last_assistant_turn(tmp_path):
    head = "\n\nHuman: How do I bake bread?\n\nAssistant: What kind?\n\nHuman: Sourdough."
    rows = [{"chosen": head + "\n\nAssistant: Start with a starter.",
             "rejected": head + "\n\nAssistant: No idea."}]
    (r,) = load(tmp_path, "hh_rlhf", "train", rows)
    assert r["prompt"] == [{"role": "user", "content": "How do I bake bread?"},
                           {"role": "assistant", "content": "What kind?"},
                           {"role": "user", "content": "Sourdough."}]
    assert r["positive"] == "Start with a starter."
    assert r["pair"] == {"chosen": "Start with a starter.", "rejected": "No idea."}


def test_simpo_on_policy_sets_use_message_lists(tmp_path):
    rows = [{"prompt_id": "p0", "prompt": "Explain X.", "all_generated_responses": ["a", "b"],
             "all_rm_scores": [0.1, 0.2], "chosen": conv("Explain X.", "X is ..."),
             "rejected": conv("Explain X.", "I won't.")}]
    for name in ("simpo_llama3_armorm", "simpo_mistral_pairrm", "simpo_gemma2_armorm"):
        (r,) = load(tmp_path / name, name, "train", rows)
        assert r["positive"] == "X is ..." and r["pair"]["rejected"] == "I won't."
        assert r["meta"]["source"].startswith(ADAPTERS[name][0])


ALPACA_ROWS = [   # llamafactory/alpaca_en's schema (alpaca_data_en_52k.json): instruction, input, output
    {"instruction": "Give three tips for staying healthy.", "input": "",
     "output": "1. Eat well.\n2. Sleep.\n3. Move."},
    {"instruction": "Translate the sentence to French.", "input": "I like cheese.", "output": "J'aime le fromage."},
    {"instruction": "Name a colour.", "input": "   ", "output": "Blue."},
]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_alpaca_en_instruction_and_input_are_the_user_turn(tmp_path, fmt):
    recs = load(tmp_path, "alpaca_en", "train", ALPACA_ROWS, fmt)
    assert [r["id"] for r in recs] == [f"alpaca_en-train-{i:07d}" for i in range(3)]
    assert recs[0]["prompt"] == [{"role": "user", "content": "Give three tips for staying healthy."}]
    assert recs[1]["prompt"] == [{"role": "user", "content": "Translate the sentence to French.\nI like cheese."}]
    assert recs[2]["prompt"][0]["content"] == "Name a colour."            # a blank input adds nothing
    assert recs[1]["positive"] == "J'aime le fromage." and recs[1]["negatives"] == [] and "pair" not in recs[1]
    assert recs[0]["meta"]["source"].startswith("llamafactory/alpaca_en")
    with pytest.raises(ValueError, match="row 0: column 'output' is empty"):
        load(tmp_path / "bad", "alpaca_en", "train", [{"instruction": "Hi", "input": "", "output": " "}])


def test_alpaca_en_config_is_pinned_and_is_a_test_split(tmp_path):
    """configs/data/alpaca_en.yaml: a pinned hub commit, the hub's only split read as the test split;
    make_data on a local file in the hub schema writes an empty train split and the seeded test rows."""
    from pathlib import Path

    import yaml

    from negfree.data.adapters import make_from_config
    from negfree.data.schema import load_jsonl

    cfg = Path(__file__).resolve().parents[1] / "configs/data/alpaca_en.yaml"
    spec = yaml.safe_load(cfg.read_text())
    assert spec["hub_id"] == "llamafactory/alpaca_en" and len(spec["revision"]) == 40
    int(spec["revision"], 16)                                                  # a full commit hash
    assert spec["splits"] == {"test": "train"}
    m = make_from_config(cfg, tmp_path / "out", n_test=2, seed=0, path=write(tmp_path / "src", ALPACA_ROWS, "jsonl"))
    assert (tmp_path / "out/train.jsonl").read_text() == ""
    test = load_jsonl(tmp_path / "out/test.jsonl")
    assert [r["meta"]["row"] for r in test] == subsample_indices(3, 2, 0)
    assert m["revision"] == spec["revision"] and m["splits"] == {"train": None, "test": "train"}


def test_subsample_is_seeded_nested_and_in_hub_order(tmp_path):
    rows = UF_ROWS * 4        # 20 rows; ids come from row numbers, so duplicates are fine
    a = load(tmp_path, "ultrafeedback", "train_prefs", rows, n=5, seed=3)
    b = load(tmp_path, "ultrafeedback", "train_prefs", rows, n=5, seed=3)
    c = load(tmp_path, "ultrafeedback", "train_prefs", rows, n=5, seed=4)
    assert a == b and [r["id"] for r in a] != [r["id"] for r in c]
    rows_a = [r["meta"]["row"] for r in a]
    assert rows_a == sorted(rows_a) and len(set(rows_a)) == 5
    assert set(subsample_indices(20, 5, 3)) <= set(subsample_indices(20, 12, 3))
    with pytest.raises(ValueError, match="n=21 rows requested but the split has only 20"):
        subsample_indices(20, 21, 0)


def test_missing_column_names_dataset_and_column(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "rejected"} for r in UF_ROWS]
    with pytest.raises(ValueError, match=r"ultrafeedback .*missing column 'rejected'"):
        load(tmp_path, "ultrafeedback", "test_prefs", rows)


@pytest.mark.parametrize("name,split,row,column", [
    ("metamathqa", "train", {"query": "Q?", "response": "   "}, "response"),
    ("metamathqa", "train", {"query": "", "response": "A"}, "query"),
    ("hh_rlhf", "test", {"chosen": "\n\nHuman: Hi\n\nAssistant:", "rejected": "\n\nHuman: Hi\n\nAssistant: x"}, "chosen"),
    ("ultrafeedback", "train_prefs", {"chosen": conv("Q?", ""), "rejected": conv("Q?", "b")}, "chosen"),
])
def test_empty_prompt_or_answer_names_the_row(tmp_path, name, split, row, column):
    good = {"metamathqa": {"query": "Q?", "response": "A"},
            "hh_rlhf": {"chosen": "\n\nHuman: Hi\n\nAssistant: a", "rejected": "\n\nHuman: Hi\n\nAssistant: b"},
            "ultrafeedback": {"chosen": conv("Q?", "a"), "rejected": conv("Q?", "b")}}[name]
    with pytest.raises(ValueError, match=rf"split '{split}' row 1: .*{column}"):
        load(tmp_path, name, split, [good, row])


def test_bad_names_and_files(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset adapter 'uf'"):
        load_adapter("uf", "train")
    with pytest.raises(ValueError, match="unknown split 'train'"):
        load_adapter("ultrafeedback", "train")
    with pytest.raises(FileNotFoundError):
        load_adapter("ultrafeedback", "train_prefs", path=tmp_path / "nope.parquet")
    csv = tmp_path / "rows.csv"
    csv.write_text("a\n1\n")
    with pytest.raises(ValueError, match="must be .parquet, .json or .jsonl"):
        load_adapter("ultrafeedback", "train_prefs", path=csv)


# ---------------------------------------------------------------- pairing ratio
def pairs(n=400):
    return [{"id": f"r{i}", "prompt": [{"role": "user", "content": f"q{i}"}], "positive": f"good {i}",
             "negatives": [f"bad {i}"], "pair": {"chosen": f"good {i}", "rejected": f"bad {i}"}}
            for i in range(n)]


def test_pairing_ratio_extremes():
    recs = pairs(50)
    assert all(r["paired"] and r["positive"] and r["negatives"] for r in apply_pairing_ratio(recs, 1.0, 0))
    none = apply_pairing_ratio(recs, 0.0, 0)
    assert not any(r["paired"] for r in none)
    for r in none:
        assert r["pair"] is None
        if r["dropped"] == "positive":
            assert r["positive"] is None and r["negatives"] == [r["id"].replace("r", "bad ")]
        else:
            assert r["negatives"] == [] and r["positive"] == r["id"].replace("r", "good ")


def test_pairing_ratio_is_seeded_per_id_nested_and_about_right():
    recs = pairs()
    half = apply_pairing_ratio(recs, 0.5, seed=7)
    assert half == apply_pairing_ratio(recs, 0.5, seed=7)
    assert {r["id"]: r for r in half} == {r["id"]: r for r in apply_pairing_ratio(recs[::-1], 0.5, seed=7)}
    assert half != apply_pairing_ratio(recs, 0.5, seed=8)
    quarter = apply_pairing_ratio(recs, 0.25, seed=7)
    dropped_half = {r["id"] for r in half if not r["paired"]}
    dropped_quarter = {r["id"] for r in quarter if not r["paired"]}
    assert dropped_half <= dropped_quarter                 # lower ratio drops a superset
    # Binomial(400, 0.5): 200 +- 10 (sd); 4 sd bounds keep the test deterministic-safe
    assert 160 <= len(dropped_half) <= 240 and 260 <= len(dropped_quarter) <= 340
    sides = [r["dropped"] for r in quarter if not r["paired"]]
    assert 0.35 < sides.count("positive") / len(sides) < 0.65
    # the same record drops the same side at every ratio
    side_q = {r["id"]: r["dropped"] for r in quarter if not r["paired"]}
    assert all(side_q[r["id"]] == r["dropped"] for r in half if not r["paired"])


def test_pairing_ratio_bad_input():
    with pytest.raises(ValueError, match="pairing ratio 1.5"):
        apply_pairing_ratio(pairs(2), 1.5, 0)
    no_neg = [{"id": "x", "positive": "a", "negatives": []}]
    with pytest.raises(ValueError, match="record 'x'.*use_pair_as_negatives"):
        apply_pairing_ratio(no_neg, 0.5, 0)
    with pytest.raises(ValueError, match="already applied"):
        apply_pairing_ratio(apply_pairing_ratio(pairs(2), 0.5, 0), 0.5, 0)


def test_use_pair_as_negatives():
    recs = [{"id": "a", "positive": "good", "negatives": [], "pair": {"chosen": "good", "rejected": "bad"}}]
    assert use_pair_as_negatives(recs)[0]["negatives"] == ["bad"] and recs[0]["negatives"] == []
    with pytest.raises(ValueError, match="record 'b'.*'pair'"):
        use_pair_as_negatives([{"id": "b", "positive": "x", "negatives": []}])


def test_data_configs_name_known_adapters():
    """configs/data/*.yaml: every file names an adapter, its hub id and splits, and an n."""
    from pathlib import Path

    import yaml

    files = sorted((Path(__file__).resolve().parents[1] / "configs" / "data").glob("*.yaml"))
    # every adapter has a config; a config may be a second size of the same adapter (ultrachat_200k)
    assert set(ADAPTERS) <= {f.stem for f in files}
    assert {yaml.safe_load(f.read_text())["adapter"] for f in files} == set(ADAPTERS)
    for f in files:
        cfg = yaml.safe_load(f.read_text())
        hub_id, splits, _, _ = ADAPTERS[cfg["adapter"]]
        assert cfg["hub_id"] == hub_id, f
        assert set(cfg["splits"].values()) <= set(splits), f
        assert cfg["n"] is None or (isinstance(cfg["n"], int) and cfg["n"] > 0), f


def test_make_data_from_a_data_config_writes_splits_and_manifest(tmp_path):
    """The make_data rule's path for hub datasets, on a local file in the hub schema."""
    from negfree.data.adapters import make_from_config
    from negfree.data.schema import load_jsonl

    cfg = tmp_path / "uf.yaml"
    cfg.write_text("adapter: ultrafeedback\nhub_id: HuggingFaceH4/ultrafeedback_binarized\n"
                   "splits: {train: train_prefs, test: test_prefs}\nn: null\nseed: 0\n")
    local = write(tmp_path / "src", UF_ROWS, "jsonl")
    m = make_from_config(cfg, tmp_path / "out", n_train=3, n_test=2, seed=1, path=local)
    train, test = load_jsonl(tmp_path / "out/train.jsonl"), load_jsonl(tmp_path / "out/test.jsonl")
    assert len(train) == 3 and len(test) == 2
    assert [r["meta"]["row"] for r in train] == subsample_indices(5, 3, 1)
    assert m["files"]["train.jsonl"]["records"] == 3 and len(m["files"]["train.jsonl"]["sha256"]) == 64
    again = make_from_config(cfg, tmp_path / "again", n_train=3, n_test=2, seed=1, path=local)
    assert again["files"] == m["files"]                      # deterministic, byte for byte
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        make_from_config(tmp_path / "nope.yaml", tmp_path / "x")


def test_every_data_config_file_builds_through_make_data(tmp_path):
    """configs/data/*.yaml name adapters and splits that make_from_config accepts (no download:
    a missing local file must be the only complaint)."""
    from pathlib import Path

    from negfree.data.adapters import make_from_config

    for cfg in sorted((Path(__file__).resolve().parents[1] / "configs/data").glob("*.yaml")):
        with pytest.raises(FileNotFoundError, match="local data file"):
            make_from_config(cfg, tmp_path / cfg.stem, n_train=1, path=tmp_path / "absent.jsonl")


def test_hub_model_source_is_checked_and_fails_clearly_offline(tmp_path, monkeypatch):
    from negfree.common.models import prepare_model

    with pytest.raises(ValueError, match="hub:<org>/<name>"):
        prepare_model("hub:not-a-repo-id", tmp_path / "m")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="hub:org/model.*download failed"):
        prepare_model("hub:org/model", tmp_path / "m")
    assert not (tmp_path / "m").exists()                     # nothing that looks complete
