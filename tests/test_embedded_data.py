"""The embedded dataset is deterministic, split cleanly, and every answer checks out."""
import json
import re

import pytest

from negfree.data.embedded import FACTS, evaluate_expression, make_embedded
from negfree.data.schema import load_jsonl


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    out = tmp_path_factory.mktemp("embedded")
    manifest = make_embedded(out, n_train=256, n_test=64, seed=0)
    return out, manifest


def test_same_seed_gives_identical_bytes(embedded, tmp_path):
    out, manifest = embedded
    again = make_embedded(tmp_path, n_train=256, n_test=64, seed=0)
    for name in ("train.jsonl", "test.jsonl", "manifest.json"):
        assert (out / name).read_bytes() == (tmp_path / name).read_bytes(), name
    assert again == manifest


def test_other_seed_gives_other_data(embedded, tmp_path):
    out, _ = embedded
    make_embedded(tmp_path, n_train=256, n_test=64, seed=1)
    assert (out / "train.jsonl").read_bytes() != (tmp_path / "train.jsonl").read_bytes()


def test_manifest_counts_and_mix(embedded):
    out, manifest = embedded
    assert manifest == json.loads((out / "manifest.json").read_text())
    train, test = load_jsonl(out / "train.jsonl"), load_jsonl(out / "test.jsonl")
    assert (len(train), len(test)) == (256, 64)
    assert manifest["counts"]["train"] == {"arith": 179, "fact": 77}   # round(0.3*256)=77
    assert manifest["counts"]["test"] == {"arith": 45, "fact": 19}     # round(0.3*64)=19
    assert not any(tmp.name.endswith(".tmp") for tmp in out.iterdir())


def test_train_and_test_share_no_prompt_and_no_fact(embedded):
    out, _ = embedded
    train, test = load_jsonl(out / "train.jsonl"), load_jsonl(out / "test.jsonl")
    question = lambda r: r["prompt"][0]["content"]  # noqa: E731
    assert not {question(r) for r in train} & {question(r) for r in test}
    fact = lambda r: (r["meta"]["category"], r["meta"]["subject"])  # noqa: E731
    assert not ({fact(r) for r in train if r["kind"] == "fact"}
                & {fact(r) for r in test if r["kind"] == "fact"})
    ids = [r["id"] for r in train + test]
    assert len(ids) == len(set(ids))


def test_answers_verify_and_label_points_at_answer(embedded):
    out, _ = embedded
    table = {(c, s): a for c, s, a in FACTS}
    for rec in load_jsonl(out / "train.jsonl") + load_jsonl(out / "test.jsonl"):
        assert rec["choices"][rec["label"]] == rec["answer"]
        assert len(rec["choices"]) == len(set(rec["choices"])) == 4
        assert rec["negatives"] == [] and rec["prompt"][0]["role"] == "user"
        if rec["kind"] == "arith":
            assert str(evaluate_expression(rec["meta"]["expression"])) == rec["answer"]
            assert rec["positive"].endswith(f"The answer is {rec['answer']}.")
            working = re.search(r"(\d[\d +*-]*) = (\d+)", rec["positive"])
            assert working and working.group(1) == rec["meta"]["expression"]
            assert all(c.isdigit() for c in rec["choices"])
        else:
            meta = rec["meta"]
            assert table[(meta["category"], meta["subject"])] == rec["answer"]
            assert rec["positive"].startswith(rec["answer"] + " ")
            same_category = {a for c, _, a in FACTS if c == meta["category"]}
            assert set(rec["choices"]) <= same_category


def test_evaluate_expression_precedence():
    """2 * 3 + 4 = 10 and 9 - 2 * 3 = 3: multiplication binds first."""
    assert evaluate_expression("2 * 3 + 4") == 10
    assert evaluate_expression("9 - 2 * 3") == 3
    with pytest.raises(ValueError, match="2 / 3"):
        evaluate_expression("2 / 3")


def test_bad_sizes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="n_test"):
        make_embedded(tmp_path, n_train=4, n_test=0)


GOOD = {"id": "x-1", "prompt": [{"role": "user", "content": "hi"}], "positive": "hello"}


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_load_jsonl_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_jsonl(tmp_path / "nope.jsonl")


def test_load_jsonl_bad_json_names_line(tmp_path):
    path = _write(tmp_path / "d.jsonl", [json.dumps(GOOD), "{not json"])
    with pytest.raises(ValueError, match=r"d\.jsonl:2: invalid JSON"):
        load_jsonl(path)


@pytest.mark.parametrize("column", ["id", "prompt", "positive"])
def test_load_jsonl_missing_column_names_it(tmp_path, column):
    bad = {k: v for k, v in GOOD.items() if k != column}
    path = _write(tmp_path / "d.jsonl", [json.dumps(GOOD | {"id": "ok"}), json.dumps(bad)])
    with pytest.raises(ValueError, match=rf"d\.jsonl:2: missing required column '{column}'"):
        load_jsonl(path)


@pytest.mark.parametrize("column,value", [
    ("positive", ""), ("positive", "   "), ("prompt", []),
    ("prompt", [{"role": "user", "content": ""}]),
])
def test_load_jsonl_empty_values_name_id_and_column(tmp_path, column, value):
    path = _write(tmp_path / "d.jsonl", [json.dumps(GOOD | {column: value})])
    with pytest.raises(ValueError, match=rf"d\.jsonl:1 \(id='x-1'\): column '{column}'"):
        load_jsonl(path)


def test_load_jsonl_duplicate_id(tmp_path):
    path = _write(tmp_path / "d.jsonl", [json.dumps(GOOD), json.dumps(GOOD)])
    with pytest.raises(ValueError, match=r"d\.jsonl:2: duplicate id 'x-1' \(first on line 1\)"):
        load_jsonl(path)
