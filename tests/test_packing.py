"""Padding-free packing (issue 15): the rows of a micro-batch laid end to end in one row, with
position_ids restarting per sequence and no attention mask. Every architecture we allow
(negfree.common.logprobs.PACKABLE_MODELS) gives the padded path's per-token log-probs and gradients in
float64; so do the losses built on them (IFT's two passes, BNF's vocabulary term); the trainer
runs it and records it; an architecture we do not allow falls back to length bucketing."""
import json

import pytest
import torch
import transformers

from negfree.common.logprobs import (PACKABLE_MODELS, Packing, model_greedy_tokens, model_token_logprobs, pack_inputs,
                              packing_support, shift_for_causal_lm, token_logprobs)

pytestmark = pytest.mark.usefixtures("one_thread")

# model_type -> (config class, model class, extra config); Gemma-2 has no sdpa path in transformers 5.23
ARCHS = {"llama": ("LlamaConfig", "LlamaForCausalLM", {}),
         "mistral": ("MistralConfig", "MistralForCausalLM", {}),
         "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
         "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {}),
         "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", {"attn_implementation": "eager",
                                                          "final_logit_softcapping": 0.5, "sliding_window": 64})}


def _model(kind: str):
    cfg_cls, model_cls, extra = ARCHS[kind]
    torch.manual_seed(0)
    cfg = getattr(transformers, cfg_cls)(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                         max_position_embeddings=128, pad_token_id=0, bos_token_id=1,
                                         eos_token_id=2, **extra)
    return getattr(transformers, model_cls)(cfg).double()


def _batch(lengths=(11, 4, 8, 1, 9), starts=(5, 2, 3, 0, 6)):
    """Right-padded rows of the given lengths, answers from ``starts`` (a 1-token row too)."""
    g = torch.Generator().manual_seed(1)
    R, T = len(lengths), max(lengths)
    ids = torch.randint(3, 97, (R, T), generator=g)
    attn, answer = torch.zeros_like(ids), torch.zeros_like(ids)
    for i, (n, a) in enumerate(zip(lengths, starts)):
        attn[i, :n] = 1
        answer[i, a:n] = 1
        ids[i, n:] = 0
    labels, mask = shift_for_causal_lm(ids, answer)
    return ids, attn, answer, labels, mask.double()


def test_every_allowed_architecture_is_tested():
    assert set(ARCHS) == set(PACKABLE_MODELS)


def test_first_fit_decreasing_bins_by_hand():
    """Rows of 11, 4, 8, 1, 9 tokens, capacity 12: 11 + 1, then 9, then 8 + 4 -> 3 rows of 12
    positions (36 for 33 tokens; padding computes 5 x 11 = 55); one row: 33 positions. Tails get
    positions restarting at 0."""
    _, attn, *_ = _batch()
    pk = Packing(attn.bool(), 12)
    assert (pk.n_bins, pk.width) == (3, 12)
    assert pk.position_ids.tolist() == [list(range(11)) + [0], list(range(9)) + [0, 1, 2],
                                        list(range(4)) + list(range(8))]
    x = torch.arange(attn.numel()).view(attn.shape) * attn
    assert torch.equal(pk.unpack(pk.pack(x)), x)
    one = Packing(attn.bool())
    assert (one.n_bins, one.width) == (1, 33) and torch.equal(one.unpack(one.pack(x)), x)
    assert Packing(attn.bool(), 4).width == 11   # a capacity below the longest row is raised to it


@pytest.mark.parametrize("kind", sorted(ARCHS))
@pytest.mark.parametrize("chunked", [True, False])
@pytest.mark.parametrize("capacity", [None, 12])
def test_packed_equals_padded_values_and_gradients(kind, chunked, capacity):
    model = _model(kind)
    ids, attn, _, labels, mask = _batch()
    seen = []
    hook = model.model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["input_ids"].shape), with_kwargs=True)

    def run(packed):
        model.zero_grad()
        tok, plogp = model_token_logprobs(model, model, labels, mask, with_plogp=True, chunk=7, chunked_head=chunked,
                                          packed=packed, pack_capacity=capacity, input_ids=ids,
                                          attention_mask=attn)
        w = torch.linspace(0.5, 1.5, tok.numel(), dtype=tok.dtype).view_as(tok)
        ((tok * w).sum() + 0.3 * plogp.sum()).backward()
        return tok.detach(), plogp.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    tok_p, pl_p, g_p = run(True)
    tok_d, pl_d, g_d = run(False)
    hook.remove()
    packed_shape = [1, int(attn.sum())] if capacity is None else [3, 12]
    assert seen == [torch.Size(packed_shape), torch.Size(ids.shape)]   # the packed rows, then the padded grid
    tol = 1e-12 if kind != "gemma2" else 1e-7   # eager attention adds a finite mask value, not -inf
    assert (tok_p * (1 - mask)).abs().max() == 0 and (pl_p * (1 - mask)).abs().max() == 0
    assert torch.allclose(tok_p, tok_d, atol=tol, rtol=0)
    assert torch.allclose(pl_p, pl_d, atol=tol, rtol=0)
    for n in g_d:
        assert torch.allclose(g_p[n], g_d[n], atol=tol * 10, rtol=0), n


def test_without_restarting_positions_the_sequences_would_mix():
    """What makes packing exact is the position_ids restart: the same packed row with positions
    0..L-1 lets later sequences attend to earlier ones, and the log-probs change."""
    model = _model("llama")
    ids, attn, _, labels, mask = _batch()
    with torch.no_grad():
        padded, _ = model_token_logprobs(model, model, labels, mask, input_ids=ids, attention_mask=attn)
        inp, pk = pack_inputs({"input_ids": ids, "attention_mask": attn})
        inp["position_ids"] = torch.arange(inp["input_ids"].shape[1]).unsqueeze(0)
        flat, _ = token_logprobs(model(**inp).logits, pk.pack(labels), pk.pack(mask))
        mixed = pk.unpack(flat)
    assert (mixed - padded).abs().max() > 1e-3


@pytest.mark.parametrize("capacity", [None, 12])
def test_greedy_tokens_packed_equal_padded(capacity):
    model = _model("qwen2")
    ids, attn, answer, _, _ = _batch()
    _, before = shift_for_causal_lm(ids, answer)
    a = model_greedy_tokens(model, before, packed=False, input_ids=ids, attention_mask=attn)
    b = model_greedy_tokens(model, before, packed=True, pack_capacity=capacity, input_ids=ids, attention_mask=attn)
    assert torch.equal(a, b) and (a[before.bool()] >= 0).all() and (a[~before.bool()] == -1).all()


def test_left_padding_and_unknown_architectures_are_refused():
    ids, attn, *_ = _batch()
    with pytest.raises(ValueError, match="right-padded"):
        pack_inputs({"input_ids": ids, "attention_mask": attn.flip(1)})
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=97, n_embd=16, n_layer=1, n_head=2))
    assert "'gpt2' is not one of" in packing_support(gpt2)
    assert packing_support(_model("llama")) is None


@pytest.fixture(scope="module")
def data(scored_pool, tmp_path_factory):
    return scored_pool(tmp_path_factory.mktemp("packing"), negatives=2)


@pytest.mark.parametrize("method,capacity", [("dft", None), ("ift", None), ("bnf", None), ("dpo", None),
                                             ("ift", 1), ("bnf", 1)])
def test_losses_and_gradients_packed_equal_padded(tiny_model_dir, data, method, capacity):
    """The losses read the per-token grid: packed and padded micro-batches give the same loss and
    gradients (float64 model, the scored pool's references), IFT's greedy pass and BNF's vocabulary
    term included."""
    from negfree.common.models import load_model, load_tokenizer
    from negfree.data.schema import load_jsonl
    from negfree.losses import get_method
    from negfree.train.batch import collate, loss_inputs
    from negfree.train.loop import resolve_config
    from negfree.train.records import compact_references

    m = get_method(method)
    cfg = resolve_config({"method": method, "model": str(tiny_model_dir), "data": str(data), "out_dir": "-",
                          "num_negatives": 2, "max_len": 96})
    per_token = m.token_level and m.needs_reference
    recs = load_jsonl(data, transform=lambda r: compact_references(r, per_token))[:3]
    tok = load_tokenizer(tiny_model_dir)
    model = load_model(tiny_model_dir).double()
    batch = collate(tok, recs, [[0, 1]] * len(recs), cfg, [], use_ref=True)
    assert (batch.attn == 0).any()   # the padded path really pads
    log_u = torch.zeros(len(recs), dtype=torch.float64) if m.stateful else None

    def run(packed):
        model.zero_grad()
        inp = loss_inputs(model, model, batch, m, cfg["hparams"], log_u, 1024, True, packed, capacity)
        out = m.fn(inp, **cfg["hparams"])
        out.loss.backward()
        return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss_p, g_p = run(True)
    loss_d, g_d = run(False)
    assert torch.isfinite(loss_d) and loss_p == pytest.approx(float(loss_d), abs=1e-10)
    assert g_p.keys() == g_d.keys() and g_d
    for n in g_d:
        assert torch.allclose(g_p[n], g_d[n], atol=1e-9, rtol=0), n


def _train(out, model, data, **kw):
    from negfree.train.loop import train

    train({"method": "dft", "model": str(model), "data": str(data), "out_dir": str(out), "batch_size": 4,
           "micro_batch_size": 2, "max_steps": 3, "num_negatives": 2, "max_len": 96, "lr": 1e-4,
           "scheduler": "constant", "warmup_ratio": 0.0, **kw})
    read = lambda f: [json.loads(x) for x in (out / f).read_text().splitlines()]   # noqa: E731
    return read("metrics.jsonl"), read("perf.jsonl"), json.loads((out / "run_info.json").read_text())


def test_the_trainer_packs_and_says_so(tmp_path, tiny_model_dir, data):
    """Same metrics as the padded run (fp32: summation order), fewer positions computed (one
    packed row: exactly the real tokens; rows of the longest row's width: in between), and
    run_info.json records it."""
    m_pad, p_pad, i_pad = _train(tmp_path / "padded", tiny_model_dir, data)
    m_pk, p_pk, i_pk = _train(tmp_path / "packed", tiny_model_dir, data, packing=True)
    m_bin, p_bin, _ = _train(tmp_path / "bins", tiny_model_dir, data, packing=True, pack_capacity=1)
    assert i_pk["packing"] is True and i_pk["packing_unsupported"] is None and i_pad["packing"] is False
    assert i_pk["attn_implementation"] == "sdpa"
    for a, b, c in zip(m_pad, m_pk, m_bin):
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5) == c["grad_norm"]
        for x in (b, c):
            assert abs(a["loss"] - x["loss"]) <= 1e-6 * max(abs(a["loss"]), abs(a["logp_pos"]), abs(a["logp_neg"]))
    pos = lambda p: sum(r["padded_positions_rank0"] for r in p)   # noqa: E731
    assert pos(p_pk) == sum(m["tokens"] for m in m_pk) and pos(p_pk) <= pos(p_bin) < pos(p_pad)


def test_an_unsupported_architecture_falls_back_to_bucketing(tmp_path, tiny_model_dir, data, monkeypatch):
    import negfree.common.logprobs

    monkeypatch.setattr(negfree.common.logprobs, "PACKABLE_MODELS", frozenset({"mistral"}))
    _, _, info = _train(tmp_path / "fallback", tiny_model_dir, data, packing=True, max_steps=1)
    assert info["packing"] is False and info["length_bucketing"] is True
    assert "'llama' is not one of mistral" in info["packing_unsupported"]


@pytest.mark.parametrize("key,value,match", [("packing", "yes", "packing='yes' must be true or false"),
                                             ("pack_capacity", 0, "pack_capacity=0 must be null or an integer >= 1"),
                                             ("attn_implementation", "flash", "attn_implementation='flash' is not")])
def test_bad_packing_settings_name_the_key(tmp_path, tiny_model_dir, data, key, value, match):
    with pytest.raises(ValueError, match=match):
        _train(tmp_path / "bad", tiny_model_dir, data, **{key: value})
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("kernel", ["flash_attention_2", "flash_attention_3"])
def test_one_row_varlen_kernels_with_several_packed_rows_are_refused(kernel):
    """transformers reads packed sequences' boundaries for flash-attention only in a batch of one row:
    rows of pack_capacity tokens would attend across sequences. Refused, naming the remedy."""
    from negfree.train.loop import resolve_config

    base = {"method": "sft", "model": "m", "data": "d", "out_dir": "o", "packing": True}
    resolve_config({**base, "attn_implementation": kernel})                     # one packed row: right
    resolve_config({**base, "pack_capacity": 64, "attn_implementation": "flex_attention"})
    with pytest.raises(ValueError, match=f"pack_capacity=64 and attn_implementation={kernel} would attend across"):
        resolve_config({**base, "pack_capacity": 64, "attn_implementation": kernel})


def test_flex_attention_over_several_packed_rows_equals_padding():
    """flex_attention, the varlen kernel that stays right over several packed rows: its values equal
    the padded sdpa forward on the CPU. Its backward has no CPU kernel in torch 2.13 (make gpu-check
    trains with it on a GPU)."""
    ids, attn, _, labels, mask = _batch()
    padded = _model("llama").float().requires_grad_(False)
    flex = _model("llama").float().requires_grad_(False)
    flex.set_attn_implementation("flex_attention")
    got, _ = model_token_logprobs(flex, flex, labels, mask.float(), chunk=7, packed=True, pack_capacity=12,
                               input_ids=ids, attention_mask=attn)
    want, _ = model_token_logprobs(padded, padded, labels, mask.float(), chunk=7, input_ids=ids, attention_mask=attn)
    assert torch.allclose(got, want, atol=1e-5, rtol=0)
    assert (got * (1 - mask.float())).abs().max() == 0
