"""The chunked output head (negfree.common.logprobs.model_token_logprobs) computes exactly what the
full-logits path computes, values and gradients of every parameter, without a
[rows x length x vocab] tensor; architectures it does not know take the full path."""
import pytest
import torch
from transformers import Gemma2Config, Gemma2ForCausalLM, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from negfree.common.logprobs import (hidden_states_as_logits, model_greedy_tokens, model_token_logprobs,
                              plain_output_head, shift_for_causal_lm, token_logprobs)


def _llama(tied: bool):
    torch.manual_seed(0)
    if tied == "gemma2":   # final-logit soft-capping (30 in Gemma-2; 0.5 here so tanh bends the logits)
        cfg = Gemma2Config(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=2, head_dim=16,
                           final_logit_softcapping=0.5, attn_implementation="eager")
        return Gemma2ForCausalLM(cfg).double()
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=tied)
    return LlamaForCausalLM(cfg).double()


def _batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 97, (3, 11), generator=g)
    attn = torch.ones_like(ids)
    attn[2, 8:] = 0                                   # right padding
    answer = torch.zeros_like(ids)
    answer[0, 4:] = 1
    answer[1, 6:] = 1
    answer[2, 5:8] = 1
    labels, mask = shift_for_causal_lm(ids, answer)
    return ids, attn, answer, labels, mask.double()


@pytest.mark.parametrize("tied", [False, True, "gemma2"])
@pytest.mark.parametrize("with_plogp", [False, True])
def test_chunked_head_equals_full_logits_values_and_gradients(tied, with_plogp):
    model = _llama(tied)
    ids, attn, _, labels, mask = _batch()

    def grads(chunked):
        model.zero_grad()
        tok, plogp = model_token_logprobs(model, model, labels, mask, with_plogp=with_plogp, chunk=5,
                                          chunked_head=chunked, input_ids=ids, attention_mask=attn)
        loss = (tok * torch.linspace(0.5, 1.5, tok.numel(), dtype=tok.dtype).view_as(tok)).sum()
        if with_plogp:
            loss = loss + 0.3 * plogp.sum()
        loss.backward()
        return tok.detach(), None if plogp is None else plogp.detach(), \
            {n: p.grad.clone() for n, p in model.named_parameters()}

    tok_c, pl_c, g_c = grads(True)
    tok_f, pl_f, g_f = grads(False)
    assert torch.allclose(tok_c, tok_f, atol=1e-12)
    if with_plogp:
        assert torch.allclose(pl_c, pl_f, atol=1e-12)
    assert g_c.keys() == g_f.keys()
    for n in g_c:
        assert torch.allclose(g_c[n], g_f[n], atol=1e-10), n
    assert model.get_output_embeddings().__class__.__name__ == "Linear"   # head restored
    if tied == "gemma2":
        assert plain_output_head(model) is not None and model.config.final_logit_softcapping == 0.5


def test_no_vocabulary_sized_tensor_for_the_batch():
    """The model's own forward returns hidden states, and the projection only ever sees
    answer positions (chunk by chunk)."""
    model = _llama(False)
    ids, attn, _, labels, mask = _batch()
    seen = []
    orig = torch.nn.functional.linear

    def spy(x, w, b=None):
        if w.shape[0] == 97:
            seen.append(tuple(x.shape))
        return orig(x, w, b)

    torch.nn.functional.linear = spy
    try:
        model_token_logprobs(model, model, labels, mask, chunk=4, input_ids=ids, attention_mask=attn)
    finally:
        torch.nn.functional.linear = orig
    n_answer = int(mask.sum())
    assert all(s[0] <= 4 and len(s) == 2 for s in seen), seen        # [chunk, hidden] rows only
    assert sum(s[0] for s in seen) == n_answer                        # only answer positions


def test_greedy_tokens_match_full_argmax_at_the_asked_positions():
    model = _llama(False)
    ids, attn, answer, _, mask = _batch()
    full = model(input_ids=ids, attention_mask=attn).logits.argmax(-1)
    got = model_greedy_tokens(model, mask, chunk=3, input_ids=ids, attention_mask=attn)
    assert torch.equal(got[mask.bool()], full[mask.bool()])
    assert (got[~mask.bool()] == -1).all()


def test_unlisted_architecture_takes_the_full_logits_path():
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=97, n_embd=32, n_layer=1, n_head=2, n_positions=32,
                                      bos_token_id=0, eos_token_id=0)).double().eval()
    assert plain_output_head(gpt2) is None
    ids, attn, _, labels, mask = _batch()
    tok, _ = model_token_logprobs(gpt2, gpt2, labels, mask, input_ids=ids, attention_mask=attn)
    ref, _ = token_logprobs(gpt2(input_ids=ids, attention_mask=attn).logits, labels, mask)
    assert torch.equal(tok, ref)


def test_head_is_restored_when_the_forward_raises():
    model = _llama(False)
    name, head = plain_output_head(model)
    with pytest.raises(RuntimeError):
        with hidden_states_as_logits(model, name):
            raise RuntimeError("boom")
    assert getattr(model, name) is head
