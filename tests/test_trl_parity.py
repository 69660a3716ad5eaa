"""negfree's losses against TRL's own loss code (TRL 1.16.0, the `dev` extra's pin).

Every method TRL implements is checked, values and gradients, float64:
sft, dpo, ipo, kto (DPOTrainer, KTOTrainer, SFTTrainer) and cpo, simpo, simpo_sft, the
hinge of slic_hf (CPOTrainer), orpo (ORPOTrainer). Nothing is skipped: each TRL loss
runs without a model.

How TRL is called (no TRL formula is re-typed here):
- Each trainer object is made with ``cls.__new__(cls)`` (no ``__init__``: no model,
  tokenizer or dataset) and given only the attributes its loss code reads (``trainer``).
- DPOTrainer._compute_loss, KTOTrainer._compute_loss and SFTTrainer.compute_loss take the
  per-token log-probs from the model's fused LM head (``model(..., fused_lm_head=True)``,
  a ``FusedCausalLMOutput``). ``FusedHead`` stands in for that model and returns given
  per-token log-probs, so TRL and negfree read the same tensors; gradients are compared on them.
- CPOTrainer and ORPOTrainer (trl.experimental) take logits: their get_batch_loss_metrics
  runs on ``LogitsModel``, which returns given logits; negfree takes the per-token
  log-probs from the same logits with its one extractor (negfree.common.logprobs.token_logprobs).
  Gradients are compared on the logits, so the extraction is checked too.

Convention differences, each asserted as exactly the documented difference
(docs/methods.md), never loosened into a tolerance:
- ipo: TRL divides each log-ratio by its completion length; ours uses sums. Ours fed
  S/|y| and S0/|y| equals TRL.
- the NLL term of cpo, simpo_sft and slic_hf: TRL's is the token mean over the batch,
  ours the per-sequence mean -Sbar(y_w) averaged over prompts. Equal for equal answer
  lengths; otherwise TRL = ours + (token mean - sequence mean).
- orpo: TRL's NLL term also covers the prompt tokens (``orpo chosen nll loss is
  computed over the full prompt and response``); ours only the answer, as the IFT
  authors' ORPO. With a one-token prompt (never a target) the two agree.
- slic_hf: TRL's hinge is relu(1 - beta x); ours max(0, delta - x). TRL at beta equals
  beta times ours at delta = 1/beta.
- TRL's ORPO casts the log-probs to float32 for the odds term: compared at 1e-6.
"""
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("trl", reason="TRL is installed by `make setup` (pyproject dev extra)")
from trl import DPOTrainer, KTOTrainer, SFTTrainer  # noqa: E402
from trl.experimental.cpo import CPOTrainer  # noqa: E402
from trl.experimental.orpo import ORPOTrainer  # noqa: E402
from trl.trainer.utils import FusedCausalLMOutput  # noqa: E402

from negfree.common.logprobs import token_logprobs  # noqa: E402
from negfree.losses import LossInputs, Seq, get_method  # noqa: E402

D = torch.float64
ACCELERATOR = SimpleNamespace(device=torch.device("cpu"), gather=lambda x: x, gather_for_metrics=lambda x: x,
                              parallelism_config=None)


def trainer(cls, **attrs):
    """An instance of a TRL trainer class without __init__, holding only what its loss code reads."""
    obj = cls.__new__(cls)
    base = dict(model=SimpleNamespace(training=True), accelerator=ACCELERATOR, aux_loss_enabled=False,
                _metrics=defaultdict(lambda: defaultdict(list)), _total_train_tokens=0, _tp_size=1,
                args=SimpleNamespace())
    vars(obj).update({**base, **attrs})
    return obj


class FusedHead:
    """Stand-in for a model patched by TRL's add_fused_lm_head: for the input_ids it was given,
    returns those per-token log-probs (0 where the label is -100), as TRL's fused head does."""

    def __init__(self, *pairs):
        self.pairs = pairs                       # (input_ids [R, T+1], per-token log-probs [R, T])

    def __call__(self, input_ids, labels, fused_lm_head=False, **_):
        assert fused_lm_head
        tok = next(lp for ids, lp in self.pairs if ids.shape == input_ids.shape and torch.equal(ids, input_ids))
        mask = labels[:, 1:] != -100
        zeros = torch.zeros(mask.shape, dtype=D)
        return FusedCausalLMOutput(log_probs=tok * mask, entropy=zeros, mean_logits=zeros,
                                   is_top1=torch.zeros_like(mask), label_mask=mask)


class LogitsModel:
    """Stand-in for a causal LM that returns given logits for the given input_ids."""

    def __init__(self, input_ids, logits):
        self.input_ids, self.logits = input_ids, logits

    def __call__(self, input_ids, **_):
        assert torch.equal(input_ids, self.input_ids)
        return SimpleNamespace(logits=self.logits)


def grads(loss, leaves):
    return torch.autograd.grad(loss, leaves)


def assert_same(ours, theirs, leaves, rel=1e-12):
    assert ours.item() == pytest.approx(theirs.item(), rel=rel, abs=1e-14)
    for g_ours, g_trl in zip(grads(ours, leaves), grads(theirs, leaves)):
        torch.testing.assert_close(g_ours, g_trl, rtol=rel, atol=1e-14)


# ------------------------------------------------------- per-token data (DPO, KTO, SFT)
def answer_mask(lengths, T):
    return (torch.arange(T) < torch.tensor(lengths).unsqueeze(-1)).to(D)


def per_token(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return (-3.0 * torch.rand(*shape, generator=g, dtype=D) - 0.05).requires_grad_()


def fused_inputs(mask, fill):
    """input_ids, attention_mask and completion_mask for rows whose answer mask (over the T
    predicted positions) is ``mask``: one prompt token in front, then the answer, then padding."""
    R = mask.shape[0]
    completion = torch.cat([torch.zeros(R, 1, dtype=torch.long), mask.long()], dim=1)
    attention = completion.clone()
    attention[:, 0] = 1
    return torch.full_like(completion, fill), attention, completion


def seq(tok, mask, ref=None):
    return Seq((tok * mask).sum(-1), mask.sum(-1), ref=ref)


@pytest.fixture
def pairs():
    """N = 3 prompts, answers of unequal lengths (sum vs mean conventions matter)."""
    T = 5
    mw, ml = answer_mask([5, 2, 4], T), answer_mask([3, 5, 1], T)
    tw, tl = per_token((3, T), 0), per_token((3, T), 1)
    g = torch.Generator().manual_seed(2)
    rw = (tw.detach() * mw).sum(-1) + torch.randn(3, generator=g, dtype=D)
    rl = (tl.detach() * ml).sum(-1) + torch.randn(3, generator=g, dtype=D)
    return SimpleNamespace(mw=mw, ml=ml, tw=tw, tl=tl, rw=rw, rl=rl)


def trl_dpo(p, loss_type, beta):
    mask = torch.cat([p.mw, p.ml])
    ids, attention, completion = fused_inputs(mask, 1)
    inputs = {"input_ids": ids, "attention_mask": attention, "completion_mask": completion,
              "ref_chosen_logps": p.rw, "ref_rejected_logps": p.rl}
    obj = trainer(DPOTrainer, loss_types=[loss_type], loss_weights=[1.0], beta=beta, label_smoothing=0.0,
                  ld_alpha=None, precompute_ref_logps=True, f_divergence_type="reverse_kl", use_weighting=False)
    return obj._compute_loss(FusedHead((ids, torch.cat([p.tw, p.tl]))), inputs, return_outputs=False)


def our_pair(p, per_token_mean=False):
    w, l = seq(p.tw, p.mw, p.rw), seq(p.tl, p.ml, p.rl)
    if per_token_mean:                       # S/|y| and S0/|y|: TRL's IPO convention
        w, l = Seq(w.logp / w.length, w.length, w.ref / w.length), Seq(l.logp / l.length, l.length, l.ref / l.length)
    neg = Seq(l.logp.unsqueeze(-1), l.length.unsqueeze(-1), ref=l.ref.unsqueeze(-1))
    return LossInputs(pos=w, neg=neg)


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_equals_trl_sigmoid(pairs, beta):
    ours = get_method("dpo")(our_pair(pairs), beta=beta).loss
    assert_same(ours, trl_dpo(pairs, "sigmoid", beta), (pairs.tw, pairs.tl))


def test_ipo_differs_from_trl_only_by_length_normalisation(pairs):
    """TRL: ((rho_w/|y_w| - rho_l/|y_l|) - 1/(2 tau))^2; ours: the same on sums (docs/methods.md)."""
    theirs = trl_dpo(pairs, "ipo", 0.1)
    summed = get_method("ipo")(our_pair(pairs), tau=0.1).loss
    assert abs(summed.item() - theirs.item()) > 1e-3          # unequal lengths: the conventions differ
    ours = get_method("ipo")(our_pair(pairs, per_token_mean=True), tau=0.1).loss
    assert_same(ours, theirs, (pairs.tw, pairs.tl))


def test_sft_equals_trl_dpo_sft_term(pairs):
    """DPOTrainer's loss_type 'sft': token mean of -log p over the chosen answers of the batch."""
    ours = get_method("sft")(LossInputs(pos=seq(pairs.tw, pairs.mw))).loss
    assert_same(ours, trl_dpo(pairs, "sft", 0.1), (pairs.tw,))


def test_sft_equals_trl_sft_trainer(pairs):
    ids, attention, completion = fused_inputs(pairs.mw, 1)
    inputs = {"input_ids": ids, "attention_mask": attention, "labels": ids.masked_fill(completion == 0, -100)}
    obj = trainer(SFTTrainer, compute_loss_func=None, label_smoother=None,
                  args=SimpleNamespace(loss_type="nll", average_tokens_across_devices=False))
    theirs = obj.compute_loss(FusedHead((ids, pairs.tw)), inputs)
    ours = get_method("sft")(LossInputs(pos=seq(pairs.tw, pairs.mw))).loss
    assert_same(ours, theirs, (pairs.tw,))


# ------------------------------------------------------------------------------- KTO
@pytest.mark.parametrize("kl_shift", [0.7, -5.0])   # z0 > 0, and z0 clamped to 0
def test_kto_equals_trl(kl_shift):
    """N = 3 desirable, N x B = 6 undesirable (B = 2): both average over all 9 examples;
    z0 = max(0, mean over the mismatched pairs of S - S0), detached, in both."""
    N, B, T = 3, 2, 4
    mw, ml = answer_mask([4, 2, 3], T), answer_mask([1, 4, 3, 2, 4, 3], T).view(N, B, T)
    mk = answer_mask([3, 4, 2], T)
    tw, tl = per_token((N, T), 3), per_token((N, B, T), 4)
    tk = per_token((N, T), 5).detach()
    g = torch.Generator().manual_seed(6)
    rw = (tw.detach() * mw).sum(-1) + torch.randn(N, generator=g, dtype=D)
    rl = (tl.detach() * ml).sum(-1) + torch.randn(N, B, generator=g, dtype=D)
    rk = (tk * mk).sum(-1) - kl_shift + 0.1 * torch.randn(N, generator=g, dtype=D)
    beta, ld, lu = 0.1, 1.33, 1.0

    mask = torch.cat([mw, ml.reshape(N * B, T)])
    ids, attention, completion = fused_inputs(mask, 1)
    kl_ids, kl_attention, kl_completion = fused_inputs(mk, 2)
    inputs = {"input_ids": ids, "attention_mask": attention, "completion_mask": completion,
              "label": torch.tensor([True] * N + [False] * (N * B)),
              "KL_input_ids": kl_ids, "KL_attention_mask": kl_attention, "KL_completion_mask": kl_completion,
              "ref_logps": torch.cat([rw, rl.reshape(-1)]), "ref_KL_logps": rk}
    obj = trainer(KTOTrainer, loss_type="kto", beta=beta, desirable_weight=ld, undesirable_weight=lu,
                  calculate_KL=True, precompute_ref_logps=True)
    model = FusedHead((ids, torch.cat([tw, tl.reshape(N * B, T)])), (kl_ids, tk))
    theirs = obj._compute_loss(model, inputs, return_outputs=False)

    inp = LossInputs(pos=seq(tw, mw, rw), neg=seq(tl, ml, rl), kl=seq(tk, mk, rk))
    out = get_method("kto")(inp, beta=beta, lambda_d=ld, lambda_u=lu)
    assert out.metrics["kl_z0"].item() == pytest.approx(obj._metrics["train"]["kl"][-1], rel=1e-12, abs=1e-15)
    assert_same(out.loss, theirs, (tw, tl))


# -------------------------------------------------- logits data (CPO / SimPO / ORPO)
def logits_batch(prompt_len, len_w, len_l, seed, V=7):
    """chosen_* / rejected_* rows as TRL's CPO/ORPO collators make them (labels -100 on the
    prompt and the padding), the logits both sides read, and our per-token log-probs of them."""
    N = len(len_w)
    L = prompt_len + max(len_w + len_l)
    g = torch.Generator().manual_seed(seed)
    batch = {}
    for side, lens in (("chosen", len_w), ("rejected", len_l)):
        ids = torch.randint(0, V, (N, L), generator=g)
        used = torch.arange(L) < prompt_len + torch.tensor(lens).unsqueeze(-1)
        labels = ids.masked_fill(~used, -100)
        labels[:, :prompt_len] = -100
        batch.update({f"{side}_input_ids": ids.masked_fill(~used, 0), f"{side}_attention_mask": used.long(),
                      f"{side}_labels": labels})
    ids = torch.cat([batch["chosen_input_ids"], batch["rejected_input_ids"]])
    logits = torch.randn(2 * N, L, V, generator=g, dtype=D).requires_grad_()
    labels = torch.cat([batch["chosen_labels"], batch["rejected_labels"]])[:, 1:]
    mask = (labels != -100).to(D)
    tok, _ = token_logprobs(logits[:, :-1], labels.clamp(min=0), mask)
    w, l = Seq(tok[:N].sum(-1), mask[:N].sum(-1)), Seq(tok[N:].sum(-1), mask[N:].sum(-1))
    inp = LossInputs(pos=w, neg=Seq(l.logp.unsqueeze(-1), l.length.unsqueeze(-1)))
    return SimpleNamespace(batch=batch, ids=ids, logits=logits, inp=inp, tok=tok, mask=mask, N=N)


def trl_cpo(d, loss_type, beta, cpo_alpha, simpo_gamma=0.0):
    obj = trainer(CPOTrainer, loss_type=loss_type, beta=beta, cpo_alpha=cpo_alpha, simpo_gamma=simpo_gamma,
                  alpha=0.0, label_smoothing=0.0, is_encoder_decoder=False, pad_token_id=0)
    loss, _ = obj.get_batch_loss_metrics(LogitsModel(d.ids, d.logits), d.batch)
    return loss


def nll_gap(d):
    """TRL's NLL on y_w (token mean over the batch) minus ours (mean over prompts of -Sbar(y_w))."""
    w = d.inp.pos
    return -w.logp.sum() / w.length.sum() + (w.logp / w.length).mean()


EQUAL = dict(prompt_len=2, len_w=[3, 3, 3], len_l=[2, 4, 3])     # equal chosen lengths: NLL conventions agree
UNEQUAL = dict(prompt_len=2, len_w=[4, 1, 3], len_l=[2, 4, 3])


@pytest.mark.parametrize("lengths", [EQUAL, UNEQUAL], ids=["equal", "unequal"])
def test_cpo_equals_trl_up_to_the_nll_convention(lengths):
    d = logits_batch(seed=10, **lengths)
    theirs = trl_cpo(d, "sigmoid", beta=0.1, cpo_alpha=1.0)
    ours = get_method("cpo")(d.inp, beta=0.1).loss
    if lengths is EQUAL:
        assert nll_gap(d).abs().item() < 1e-14
    else:
        assert nll_gap(d).abs().item() > 1e-3
    assert_same(ours + nll_gap(d), theirs, (d.logits,))


@pytest.mark.parametrize("beta,ratio", [(2.0, 0.8), (10.0, 0.5)])
def test_simpo_equals_trl_cpo_simpo(beta, ratio):
    """TRL's simpo_gamma is the margin gamma itself; ours is gamma_beta_ratio * beta."""
    d = logits_batch(seed=11, **UNEQUAL)
    theirs = trl_cpo(d, "simpo", beta=beta, cpo_alpha=0.0, simpo_gamma=ratio * beta)
    ours = get_method("simpo")(d.inp, beta=beta, gamma_beta_ratio=ratio).loss
    assert_same(ours, theirs, (d.logits,))


def test_simpo_sft_equals_trl_cpo_simpo_with_nll():
    d = logits_batch(seed=12, **UNEQUAL)
    theirs = trl_cpo(d, "simpo", beta=2.0, cpo_alpha=1.0, simpo_gamma=1.6)
    ours = get_method("simpo_sft")(d.inp, beta=2.0, gamma_beta_ratio=0.8, sft_weight=1.0).loss
    assert_same(ours + nll_gap(d), theirs, (d.logits,))


@pytest.mark.parametrize("lengths", [EQUAL, UNEQUAL], ids=["equal", "unequal"])
def test_slic_hf_hinge_equals_trl_cpo_hinge(lengths):
    """beta 1, delta 1: relu(1 - (S_w - S_l)) in both; TRL's cpo_alpha is our lam."""
    d = logits_batch(seed=13, **lengths)
    margins = (d.inp.pos.logp.unsqueeze(-1) - d.inp.neg.logp).detach()
    assert (margins < 1).any()                                   # the hinge is active somewhere
    theirs = trl_cpo(d, "hinge", beta=1.0, cpo_alpha=0.1)
    ours = get_method("slic_hf")(d.inp, delta=1.0, lam=0.1).loss
    assert_same(ours + 0.1 * nll_gap(d), theirs, (d.logits,))


def test_slic_hf_trl_beta_is_our_delta_inverse():
    """relu(1 - beta x) = beta * relu(1/beta - x): TRL at beta 0.5 = 0.5 x ours at delta 2."""
    d = logits_batch(seed=14, **UNEQUAL)
    theirs = trl_cpo(d, "hinge", beta=0.5, cpo_alpha=0.0)
    ours = 0.5 * get_method("slic_hf")(d.inp, delta=2.0, lam=0.0).loss
    assert_same(ours, theirs, (d.logits,))


def trl_orpo(d, beta):
    obj = trainer(ORPOTrainer, beta=beta, is_encoder_decoder=False, padding_value=0)
    loss, _ = obj.get_batch_loss_metrics(LogitsModel(d.ids, d.logits), d.batch)
    return loss


def test_orpo_equals_trl_when_the_prompt_is_one_token():
    """A one-token prompt is never a target, so TRL's prompt+answer NLL is the answer NLL;
    equal chosen lengths make the token and sequence means agree."""
    d = logits_batch(seed=15, prompt_len=1, len_w=[3, 3, 3], len_l=[2, 4, 3])
    theirs = trl_orpo(d, 0.1)
    ours = get_method("orpo")(d.inp, lam=0.1).loss
    assert_same(ours, theirs, (d.logits,), rel=1e-6)          # TRL's odds term runs in float32


def test_orpo_trl_adds_the_prompt_tokens_to_the_nll():
    """TRL: NLL over every attended token of y_w's row after the first (prompt + answer), token
    mean over the batch; ours: -Sbar(y_w) over the answer. TRL = ours + (that NLL - ours)."""
    d = logits_batch(seed=16, prompt_len=3, len_w=[4, 1, 3], len_l=[2, 4, 3])
    N = d.N
    attended = d.batch["chosen_attention_mask"][:, 1:].to(D)
    full_tok, _ = token_logprobs(d.logits[:N, :-1], d.batch["chosen_input_ids"][:, 1:], attended)
    full_nll = -full_tok.sum() / attended.sum()
    gap = full_nll + (d.inp.pos.logp / d.inp.pos.length).mean()
    assert gap.abs().item() > 1e-3
    theirs = trl_orpo(d, 0.1)
    ours = get_method("orpo")(d.inp, lam=0.1).loss
    assert_same(ours + gap, theirs, (d.logits,), rel=1e-6)
