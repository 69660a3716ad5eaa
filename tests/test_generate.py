"""Negative generation: per-sample seeds (batch and shard invariance), resume after a kill,
the sampler's distribution, the vLLM request format, and the generation benchmark."""
import json
import sys
import types

import pytest
import torch

from negfree.generate import negatives as gen
from negfree.common.fingerprint import model_fingerprint
from negfree.common.models import load_model, load_tokenizer
from negfree.data.schema import load_jsonl
from negfree.generate.negatives import (_next_tokens, decode, generate_negatives, partial_path, sample_seed)

KW = dict(num=2, temperature=1.0, max_new_tokens=6, seed=1, progress=False)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def recs(embedded_dir):
    return load_jsonl(embedded_dir / "train.jsonl")[:6]


@pytest.fixture(scope="module")
def reference(tiny_model_dir, recs, tmp_path_factory):
    """One uninterrupted run (batch 4) that the other tests compare against."""
    out = tmp_path_factory.mktemp("ref") / "neg.jsonl"
    manifest = generate_negatives(tiny_model_dir, recs, out, batch_size=4, **KW)
    return out.read_bytes(), manifest


def test_batch_size_does_not_change_the_pool(tiny_model_dir, recs, reference, tmp_path):
    data, manifest = reference
    generate_negatives(tiny_model_dir, recs, tmp_path / "b1.jsonl", batch_size=1, **KW)
    assert (tmp_path / "b1.jsonl").read_bytes() == data
    rows = [json.loads(x) for x in data.splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in recs]
    assert all(len(r["negatives"]) == 2 and r["negatives"][0] != r["negatives"][1] for r in rows)
    assert all({k: v for k, v in r.items() if k != "negatives"} == {k: v for k, v in s.items() if k != "negatives"}
               for r, s in zip(rows, recs))


def test_manifest_hashes_and_counts(tiny_model_dir, recs, reference, tmp_path):
    import hashlib

    data, m = reference
    assert m["sha256"]["output"] == hashlib.sha256(data).hexdigest()
    assert m["sha256"]["model"] == model_fingerprint(tiny_model_dir)
    assert m["prompts"] == 6 and m["negatives"] == 12 and m["resumed_prompts"] == 0
    assert m["seed"] == 1 and m["strategy"] == "chat_bad" and m["temperature"] == 1.0
    assert 0 < m["generated_tokens"] <= 6 * 2 * 6
    other = generate_negatives(tiny_model_dir, recs[:5], tmp_path / "x.jsonl", batch_size=4, **KW)
    assert other["sha256"]["input_records"] != m["sha256"]["input_records"]


def test_shards_partition_the_work(tiny_model_dir, recs, reference, tmp_path):
    whole = reference[0].splitlines(keepends=True)
    for i in range(2):
        generate_negatives(tiny_model_dir, recs, tmp_path / f"s{i}.jsonl", batch_size=2, shard=i, num_shards=2, **KW)
        assert (tmp_path / f"s{i}.jsonl").read_bytes().splitlines(keepends=True) == whole[i::2]
    # the gather job: record order again, the bytes of one pass, whatever order the parts come in
    m = gen.gather_generated(recs, [tmp_path / "s1.jsonl", tmp_path / "s0.jsonl"], tmp_path / "all.jsonl")
    assert (tmp_path / "all.jsonl").read_bytes() == reference[0] and m["num_shards"] == 2
    with pytest.raises(ValueError, match="expected each of 3 shards once"):
        gen.gather_generated(recs, [tmp_path / "s0.jsonl", tmp_path / "s1.jsonl", tmp_path / "s1.jsonl"],
                             tmp_path / "x.jsonl")
    with pytest.raises(ValueError, match="is not record"):
        gen.gather_generated(recs[::-1], [tmp_path / "s0.jsonl", tmp_path / "s1.jsonl"], tmp_path / "x.jsonl")


def test_killed_run_resumes_to_the_same_bytes(tiny_model_dir, recs, reference, tmp_path, monkeypatch):
    out = tmp_path / "neg.jsonl"
    real = gen.TransformersBackend.sample
    calls = []

    def dies_on_second_batch(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real(self, *a, **k)

    monkeypatch.setattr(gen.TransformersBackend, "sample", dies_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        generate_negatives(tiny_model_dir, recs, out, batch_size=2, **KW)
    assert not out.exists() and not (tmp_path / "neg.jsonl.manifest.json").exists()
    part = partial_path(out)
    assert part.name == "neg.partial.jsonl" and len(part.read_bytes().splitlines()) == 1 + 2
    # a kill in the middle of a write leaves half a line: it is dropped, not trusted
    with part.open("ab") as fh:
        fh.write(b'{"id": "arith-')
    monkeypatch.setattr(gen.TransformersBackend, "sample", real)
    m = generate_negatives(tiny_model_dir, recs, out, batch_size=4, **KW)
    assert m["resumed_prompts"] == 2 and m["prompts"] == 6
    assert out.read_bytes() == reference[0] and not part.exists()


def test_partial_from_another_configuration_is_refused(tiny_model_dir, recs, tmp_path, monkeypatch):
    out = tmp_path / "neg.jsonl"
    monkeypatch.setattr(gen.TransformersBackend, "sample", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        generate_negatives(tiny_model_dir, recs, out, batch_size=2, **KW)
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"neg.partial.jsonl: .*different configuration \(temperature\)"):
        generate_negatives(tiny_model_dir, recs, out, batch_size=2, **{**KW, "temperature": 0.5})


def test_greedy_repeats_and_very_high_temperature_works(tiny_model_dir, recs, tmp_path):
    generate_negatives(tiny_model_dir, recs[:3], tmp_path / "g.jsonl", batch_size=3, **{**KW, "temperature": 0})
    greedy = load_jsonl(tmp_path / "g.jsonl")
    assert all(len(set(r["negatives"])) == 1 and len(r["negatives"]) == 2 for r in greedy)
    m = generate_negatives(tiny_model_dir, recs[:3], tmp_path / "hot.jsonl", batch_size=3,
                           **{**KW, "temperature": 3.0})
    hot = load_jsonl(tmp_path / "hot.jsonl")
    assert m["temperature"] == 3.0 and m["prompts"] == 3
    assert [r["negatives"] for r in hot] != [r["negatives"] for r in greedy]


def test_greedy_decode_matches_transformers_generate(tiny_model_dir, recs):
    """The KV-cache loop with left padding reproduces HF greedy decoding token for token."""
    tok, model = load_tokenizer(tiny_model_dir), load_model(tiny_model_dir).eval()
    texts = [tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in recs[:3]]
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert len({len(i) for i in ids}) > 1                  # different lengths: padding is exercised
    ours = decode(model, ids, [0] * 3, temperature=0, max_new_tokens=8, eos_ids={tok.eos_token_id},
                  pad_id=tok.pad_token_id)
    tok.padding_side = "left"
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    hf = model.generate(**enc, do_sample=False, max_new_tokens=8, pad_token_id=tok.pad_token_id,
                        eos_token_id=tok.eos_token_id)[:, enc["input_ids"].shape[1]:]
    for o, h in zip(ours, hf.tolist()):
        assert o == h[:len(o)]


def test_shared_prefill_of_repeated_prompts_matches_separate_rows(tiny_model_dir, recs):
    """Rows that repeat a prompt share one prefill (KV cache copied); each row still samples alone."""
    tok, model = load_tokenizer(tiny_model_dir), load_model(tiny_model_dir).eval()
    a, b = [tok(tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True),
                add_special_tokens=False)["input_ids"] for r in recs[:2]]
    kw = dict(temperature=1.0, max_new_tokens=8, eos_ids={tok.eos_token_id}, pad_id=tok.pad_token_id)
    together = decode(model, [a, b, a, a], [11, 12, 13, 14], **kw)
    alone = [decode(model, [p], [s], **kw)[0] for p, s in zip([a, b, a, a], [11, 12, 13, 14])]
    assert together == alone and together[0] != together[2]


def test_sampler_follows_temperature_top_k_top_p():
    """logits log([.5, .3, .15, .05]): T=1, top_k=3 renormalises to [.5, .3, .15]/.95;
    top_p=0.7 keeps [.5, .3] -> [.625, .375]; T=2 flattens to sqrt(p)/sum sqrt(p)."""
    p = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = p.log().repeat(4000, 1)
    gens = [torch.Generator().manual_seed(sample_seed(0, "x", j)) for j in range(4000)]

    def freq(**kw):
        t = _next_tokens(logits, gens, **kw)
        return torch.bincount(t, minlength=4).double() / len(t)

    f = freq(temperature=1.0, top_k=3, top_p=1.0)
    assert f[3] == 0 and torch.allclose(f[:3], p[:3].double() / 0.95, atol=0.03)
    f = freq(temperature=1.0, top_k=None, top_p=0.7)
    assert f[2:].sum() == 0 and torch.allclose(f[:2], torch.tensor([0.625, 0.375], dtype=torch.float64), atol=0.03)
    f = freq(temperature=2.0, top_k=0, top_p=1.0)
    assert torch.allclose(f, (p.sqrt() / p.sqrt().sum()).double(), atol=0.03)
    assert (_next_tokens(logits[:3], gens[:3], temperature=0, top_k=50, top_p=1.0) == 0).all()


def test_per_sample_seeds_are_distinct_and_stable():
    assert sample_seed(0, "a", 0) == sample_seed(0, "a", 0)
    seeds = {sample_seed(s, r, j) for s in range(3) for r in ("a", "b") for j in range(3)}
    assert len(seeds) == 18 and all(0 <= s < 2 ** 63 for s in seeds)


@pytest.mark.parametrize("kw,match", [
    (dict(num=0), "num=0"), (dict(temperature=-1), "temperature=-1"), (dict(top_p=0), "top_p=0"),
    (dict(shard=2, num_shards=2), "shard=2, num_shards=2"), (dict(backend="tgi"), "unknown backend 'tgi'"),
    (dict(strategy_name="evil"), "unknown prompting strategy 'evil'"),
])
def test_bad_arguments(tiny_model_dir, recs, tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        generate_negatives(tiny_model_dir, recs, tmp_path / "x.jsonl", **{**KW, **kw})


def test_bad_records(tiny_model_dir, recs, tmp_path):
    with pytest.raises(ValueError, match=f"record '{recs[0]['id']}': duplicate id"):
        generate_negatives(tiny_model_dir, [recs[0], recs[0]], tmp_path / "x.jsonl", **KW)
    with pytest.raises(ValueError, match="record 1: column 'id'"):
        generate_negatives(tiny_model_dir, [recs[0], {"prompt": "hi"}], tmp_path / "x.jsonl", **KW)
    with pytest.raises(ValueError, match="shard 3 of 4 gets no records"):
        generate_negatives(tiny_model_dir, recs[:2], tmp_path / "x.jsonl", shard=3, num_shards=4, **KW)


# ---------------------------------------------------------------- vLLM
def test_vllm_missing_is_a_clear_error(tiny_model_dir, recs, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="backend 'vllm' needs a CUDA GPU.*make setup-vllm"):
        generate_negatives(tiny_model_dir, recs, tmp_path / "x.jsonl", backend="vllm", **KW)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "vllm", None)          # import vllm -> ImportError
    with pytest.raises(ValueError, match="backend 'vllm' needs the vllm package.*make setup-vllm"):
        generate_negatives(tiny_model_dir, recs, tmp_path / "x.jsonl", backend="vllm", **KW)
    assert not (tmp_path / "x.jsonl").exists()


def test_backend_auto_is_vllm_only_where_it_can_run(tiny_model_dir, recs, tmp_path, monkeypatch):
    """auto: transformers on this CPU machine (the manifest says so), vllm where a CUDA GPU and
    the package are, transformers on a GPU without the package."""
    import importlib.util

    m = generate_negatives(tiny_model_dir, recs[:1], tmp_path / "a.jsonl", backend="auto", **KW)
    assert m["backend"] == "transformers"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else real(name, *a))
    assert gen.resolve_backend("auto") == "transformers"         # no CUDA here
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert gen.resolve_backend("auto") == "vllm"
    assert gen.resolve_backend("transformers") == "transformers"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    assert gen.resolve_backend("auto") == "transformers"
    with pytest.raises(ValueError, match="unknown backend 'vllm2'"):
        generate_negatives(tiny_model_dir, recs, tmp_path / "x.jsonl", backend="vllm2", **KW)


def test_auto_falls_back_to_transformers_for_a_temperature_vllm_refuses(tiny_model_dir, recs, tmp_path, monkeypatch):
    """vLLM's SamplingParams takes temperature <= 2 only: with vLLM available, auto keeps it for
    T = 1 and samples dft.txt Fig. 1's T = 5 pool with transformers, the manifest saying why."""
    monkeypatch.setattr(gen, "vllm_missing", lambda: None)          # a CUDA GPU and the package
    assert gen.choose_backend("auto", temperature=1.0) == ("vllm", "a CUDA GPU and the vllm package are present")
    assert gen.resolve_backend("auto", temperature=2.0) == "vllm"
    reason = "vllm allows temperature <= 2, asked 5.0"
    assert gen.choose_backend("auto", temperature=5.0) == ("transformers", reason)
    m = generate_negatives(tiny_model_dir, recs[:2], tmp_path / "hot.jsonl", backend="auto", batch_size=2,
                           **{**KW, "temperature": 5.0})
    assert m["backend"] == "transformers" and m["backend_reason"] == reason
    written = json.loads((tmp_path / "hot.jsonl.manifest.json").read_text())
    assert written["backend"] == "transformers" and written["backend_reason"] == reason
    # sharded: the gather job's manifest carries the reason too
    for i in range(2):
        generate_negatives(tiny_model_dir, recs[:2], tmp_path / f"s{i}.jsonl", backend="auto", shard=i,
                           num_shards=2, **{**KW, "temperature": 5.0})
    g = gen.gather_generated(recs[:2], [tmp_path / "s0.jsonl", tmp_path / "s1.jsonl"], tmp_path / "all.jsonl")
    assert g["backend"] == "transformers" and g["backend_reason"] == reason and "backend_per_shard" not in g


def test_naming_vllm_for_a_temperature_it_refuses_stops_before_any_file(tiny_model_dir, recs, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace())   # vLLM "installed": the limit alone refuses
    with pytest.raises(ValueError) as err:
        generate_negatives(tiny_model_dir, recs, tmp_path / "out" / "x.jsonl", backend="vllm",
                           **{**KW, "temperature": 5.0})
    msg = str(err.value)
    assert "\n" not in msg and "backend 'vllm'" in msg and "temperature <= 2, asked 5.0" in msg
    assert not (tmp_path / "out").exists()
    assert gen.backend_refusal("vllm", temperature=2.0) is None
    assert gen.backend_refusal("transformers", temperature=50.0) is None


def test_dtype_auto_is_bf16_only_on_cuda():
    assert gen.generation_dtype("transformers", "cpu") == "float32"
    assert gen.generation_dtype("transformers", "cuda") == "bfloat16"
    assert gen.generation_dtype("transformers", "cuda:0", "auto") == "bfloat16"
    assert gen.generation_dtype("transformers", "cuda", "fp32") == "float32"
    assert gen.generation_dtype("vllm", "cuda") == "bfloat16"
    with pytest.raises(ValueError, match="dtype"):
        gen.generation_dtype("transformers", "cpu", "int8")


def test_vllm_requests_use_token_ids_max_tokens_and_per_sample_seeds(tiny_model_dir, recs, tmp_path, monkeypatch):
    """A stand-in vllm module records what the backend asks for: pre-rendered token ids (no
    second BOS or template), max_tokens = max_new_tokens (vLLM's default is 16), one seed each."""
    seen = {}

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    class LLM:
        def __init__(self, **kw):
            seen["init"] = kw

        def generate(self, prompts, params, use_tqdm=True):
            seen.setdefault("prompts", []).extend(prompts)
            seen.setdefault("params", []).extend(p.kw for p in params)
            done = types.SimpleNamespace
            return [done(outputs=[done(text=f" answer {p.kw['seed'] % 97} ", token_ids=[5, 6, 7])]) for p in params]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)   # the stand-in needs no GPU
    m = generate_negatives(tiny_model_dir, recs[:3], tmp_path / "v.jsonl", backend="vllm", batch_size=2,
                           **{**KW, "max_new_tokens": 320})
    tok = load_tokenizer(tiny_model_dir)
    text = tok.apply_chat_template([{"role": "system", "content": gen.BAD_SYSTEM}] + recs[0]["prompt"],
                                   tokenize=False, add_generation_prompt=True)
    assert seen["prompts"][0] == {"prompt_token_ids": tok(text, add_special_tokens=False)["input_ids"]}
    assert len(seen["params"]) == 3 * 2
    assert all(p["max_tokens"] == 320 and p["top_k"] == 50 and p["temperature"] == 1.0 for p in seen["params"])
    assert [p["seed"] for p in seen["params"]] == [sample_seed(1, r["id"], j) for r in recs[:3] for j in range(2)]
    rows = load_jsonl(tmp_path / "v.jsonl")
    assert rows[0]["negatives"] == [f"answer {sample_seed(1, recs[0]['id'], j) % 97}" for j in range(2)]
    assert m["backend"] == "vllm" and m["generated_tokens"] == 3 * 2 * 3


# ---------------------------------------------------------------- benchmark
def test_bench_generate_reports_both_modes(tiny_model_dir, tmp_path):
    from negfree.bench.generate import main

    res = main(["--model", str(tiny_model_dir), "--prompts", "4", "--max-new-tokens", "4", "--vllm",
                "--json", str(tmp_path / "bench.json")])
    assert json.loads((tmp_path / "bench.json").read_text()) == res
    modes = {r["mode"]: r for r in res["rows"]}
    assert modes["batched"]["batch_size"] == 4 and modes["one_at_a_time"]["batch_size"] == 1
    assert modes["batched"]["generated_tokens"] == modes["one_at_a_time"]["generated_tokens"] > 0
    assert res["identical_outputs"] is True
    assert res["speedup_batched_vs_one_at_a_time"] == round(
        modes["batched"]["tokens_per_second"] / modes["one_at_a_time"]["tokens_per_second"], 2)
    assert "skipped" in modes["vllm"] or modes["vllm"]["generated_tokens"] > 0
    with pytest.raises(ValueError, match="--prompts must be >= 1"):
        main(["--model", str(tiny_model_dir), "--prompts", "0"])


def test_pair_strategy_uses_the_rejected_answer_and_needs_num_1(tmp_path):
    from negfree.data.schema import load_jsonl
    from negfree.generate.negatives import pair_negatives

    recs = [{"id": f"r{i}", "prompt": [{"role": "user", "content": f"q{i}"}], "positive": f"good {i}",
             "negatives": [], "pair": {"chosen": f"good {i}", "rejected": f"bad {i}"}} for i in range(3)]
    m = pair_negatives(recs, tmp_path / "neg.jsonl")
    out = load_jsonl(tmp_path / "neg.jsonl")
    assert [r["negatives"] for r in out] == [["bad 0"], ["bad 1"], ["bad 2"]] and m["prompts"] == 3
    with pytest.raises(ValueError, match="num=2"):
        pair_negatives(recs, tmp_path / "x.jsonl", num=2)
    with pytest.raises(ValueError, match="record 'r0'.*pair"):
        pair_negatives([{**recs[0], "pair": None}], tmp_path / "y.jsonl")
