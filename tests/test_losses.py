"""Every loss against hand-computed values and the papers' closed-form gradients.

Numbers are float64 so that agreement can be asserted tightly. Each test's
docstring writes the arithmetic out.
"""
import math

import pytest
import torch

from negfree.common.logprobs import token_logprobs
from negfree.losses import REGISTRY, LossInputs, Seq, dft_update_log_u, get_method, ift_token_weights

D = torch.float64


def t(*x, grad=False):
    return torch.tensor(x, dtype=D, requires_grad=grad)


def sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def logsig(x):
    return -math.log1p(math.exp(-x))


# ----------------------------------------------------------------------- registry facts
def test_registry_flags_match_the_issue():
    ref = {"dft", "minorsft", "sft_dpo", "bnf", "dpo", "spin", "ipo", "dpo_p", "rdpo", "minor_dpo", "kto"}
    free = {"sft", "dft2", "asft", "ift", "simpo", "simpo_sft", "cpo", "orpo", "slic_hf", "rrhf"}
    assert set(REGISTRY) == ref | free
    for name, m in REGISTRY.items():
        assert m.needs_reference == (name in ref), name
    assert {n for n, m in REGISTRY.items() if not m.needs_negatives} == {"sft", "minorsft", "sft_dpo", "ift"}
    assert {n for n, m in REGISTRY.items() if m.token_level} == {"ift", "bnf"}


def test_bad_names_and_hyperparameters_name_the_culprit():
    with pytest.raises(ValueError, match="unknown method 'dpoo'"):
        get_method("dpoo")
    with pytest.raises(ValueError, match=r"gamma=0.0 is outside \(0.0, 1.0\]"):
        get_method("dft").resolve({"gamma": 0.0})
    with pytest.raises(ValueError, match="gamma=1.5"):
        get_method("dft2").resolve({"gamma": 1.5})
    with pytest.raises(ValueError, match="tau=-1"):
        get_method("dft").resolve({"tau": -1})
    with pytest.raises(ValueError, match="tau=0"):
        get_method("dft2").resolve({"tau": 0})
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['betta'\]"):
        get_method("dpo").resolve({"betta": 0.1})
    with pytest.raises(ValueError, match="must be finite"):
        get_method("dpo").resolve({"beta": float("nan")})
    assert get_method("dft").resolve({"gamma": 1.0})["gamma"] == 1.0   # gamma = 1 is allowed


def test_missing_inputs_name_what_is_missing():
    inp = LossInputs(pos=Seq(t(-1.0), t(1.0)))
    with pytest.raises(ValueError, match="'dpo' needs negatives"):
        get_method("dpo")(inp)
    with pytest.raises(ValueError, match="'minorsft' needs reference log-probs"):
        get_method("minorsft")(inp)


def test_nan_loss_is_refused():
    inp = LossInputs(pos=Seq(t(float("nan")), t(1.0)))
    with pytest.raises(FloatingPointError, match="'sft'"):
        get_method("sft")(inp)


# --------------------------------------------------------------------------------- SFT
def test_sft_is_token_mean_nll():
    """S = (-2, -6), |y| = (2, 4): loss = 8 / 6."""
    out = get_method("sft")(LossInputs(pos=Seq(t(-2.0, -6.0), t(2.0, 4.0))))
    assert out.loss.item() == pytest.approx(8 / 6)


def one_token(p_y: float, vocab: int = 5, rest=None):
    """Logits z over a small vocabulary with softmax(z)[0] = p_y (the answer token is 0)."""
    rest = rest or [1.0] * (vocab - 1)
    others = torch.tensor(rest, dtype=D)
    others = (1 - p_y) * others / others.sum()
    z = torch.log(torch.cat([torch.tensor([p_y], dtype=D), others])).view(1, 1, -1)
    return z.clone().requires_grad_(True)


def seq_from_logits(z, ref_logp=None, plogp=True):
    tok, pl = token_logprobs(z, torch.zeros(z.shape[:2], dtype=torch.long), torch.ones(z.shape[:2]), with_plogp=plogp)
    mask = torch.ones_like(tok)
    ref = None if ref_logp is None else torch.full_like(tok, ref_logp)
    return Seq(tok.sum(-1), mask.sum(-1), None if ref is None else ref.sum(-1), tok, ref, pl, mask)


@pytest.mark.parametrize("p", [0.05, 0.3, 0.7, 0.99])
def test_nll_gradient_is_one_minus_p(p):
    z = one_token(p)
    get_method("sft")(LossInputs(pos=seq_from_logits(z, plogp=False))).loss.backward()
    assert abs(z.grad[0, 0, 0].item()) == pytest.approx(1 - p, rel=1e-9)


# --------------------------------------------------------------------------------- DFT
def test_dft_log_space_update_equals_linear_update():
    """u' = (1-g) u + g mean_j exp(d_j): g = 0.85, u = 0.5, d = (-1, -3)."""
    g, u, d = 0.85, 0.5, [-1.0, -3.0]
    lin = (1 - g) * u + g * (math.exp(d[0]) + math.exp(d[1])) / 2
    got = dft_update_log_u(t(math.log(u)), t(d).view(1, 2), g)
    assert got.item() == pytest.approx(math.log(lin), rel=1e-12)


def test_dft_log_space_update_is_finite_where_linear_underflows():
    """log u = -1e4, d = -1e4 + (1, -1): u' = e^-1e4 ((1-g) + g cosh(1)), which is 0 in float64."""
    g = 0.9
    got = dft_update_log_u(t(-1e4), t(-1e4 + 1, -1e4 - 1).view(1, 2), g)
    assert math.exp(-1e4) == 0.0  # the linear form cannot represent it
    expected = -1e4 + math.log((1 - g) + g * math.cosh(1.0))
    assert torch.isfinite(got).all() and got.item() == pytest.approx(expected, rel=1e-12)


def dft_batch(tau_free=False):
    pos = Seq(t(-4.0, -9.0, grad=True), t(2.0, 3.0), ref=t(-5.0, -8.0))
    neg = Seq(t([-6.0, -3.0], [-10.0, -7.0], grad=True), t([3.0, 2.0], [5.0, 4.0]),
              ref=t([-5.0, -2.5], [-11.0, -6.0]))
    return LossInputs(pos=pos, neg=neg, log_u=t(0.0, -2.0))


def test_dft_gradient_is_eq8():
    """dL/dS(y_i) = -1/N, dL/dS(y'_ij) = (1/N)(1/B) exp(S'/tau) / P0(y') / u_new (dft.txt Eq. 8)."""
    tau, g = 0.8, 0.85
    inp = dft_batch()
    out = get_method("dft")(inp, tau=tau, gamma=g)
    out.loss.backward()
    N, B = 2, 2
    for i in range(N):
        ratios = [math.exp(inp.neg.logp[i, j].item() / tau - inp.neg.ref[i, j].item()) for j in range(B)]
        u_new = (1 - g) * math.exp(inp.log_u[i].item()) + g * sum(ratios) / B
        assert out.log_u[i].item() == pytest.approx(math.log(u_new), rel=1e-12)
        assert inp.pos.logp.grad[i].item() == pytest.approx(-1 / N)
        for j in range(B):
            assert inp.neg.logp.grad[i, j].item() == pytest.approx(ratios[j] / (N * B * u_new), rel=1e-10)


def test_dft_gamma_one_is_plain_minibatch_weighting():
    """gamma = 1: u_new = mean_j exp(d_j), so w_j = B softmax(d)_j, whatever u was."""
    inp = dft_batch()
    out = get_method("dft")(inp, tau=1.0, gamma=1.0)
    out.loss.backward()
    d = (inp.neg.logp / 1.0 - inp.neg.ref).detach()
    w = 2 * torch.softmax(d, dim=-1)
    assert torch.allclose(inp.neg.logp.grad, w / (2 * 2), rtol=1e-12)
    assert torch.allclose(out.log_u, torch.logsumexp(d, -1) - math.log(2), rtol=1e-12)


def test_dft2_gradient_is_eq13():
    """DFT2: d = Sbar'/tau; dL/dS(y) = -1/(N|y|), dL/dS(y') = exp(Sbar'/tau)/(N B u_new |y'|)."""
    tau, g = 0.3, 0.9
    inp = dft_batch()
    out = get_method("dft2")(inp, tau=tau, gamma=g)
    out.loss.backward()
    for i in range(2):
        e = [math.exp(inp.neg.logp[i, j].item() / inp.neg.length[i, j].item() / tau) for j in range(2)]
        u_new = (1 - g) * math.exp(inp.log_u[i].item()) + g * sum(e) / 2
        assert inp.pos.logp.grad[i].item() == pytest.approx(-1 / (2 * inp.pos.length[i].item()))
        for j in range(2):
            expect = e[j] / (2 * 2 * u_new * inp.neg.length[i, j].item())
            assert inp.neg.logp.grad[i, j].item() == pytest.approx(expect, rel=1e-10)


# ---------------------------------------------------------------------------- MinorSFT
def test_minorsft_gradient_is_eq7():
    """dL/dS = -(1/N) (2/m) sigma(-beta (S - S0)) (minorsft.txt Eq. 7)."""
    beta = 0.04
    pos = Seq(t(-4.0, -30.0, grad=True), t(2.0, 10.0), ref=t(-5.0, -20.0))
    get_method("minorsft")(LossInputs(pos=pos), beta=beta).loss.backward()
    for i in range(2):
        r = pos.logp[i].item() - pos.ref[i].item()
        assert pos.logp.grad[i].item() == pytest.approx(-(2 / pos.length[i].item()) * sig(-beta * r) / 2, rel=1e-12)


def test_sft_dpo_value_and_deviation_metric():
    """-log sigma(0.5 * 1) for r = 1; deviation = mean((S - S0)/|y|) = 1/2."""
    out = get_method("sft_dpo")(LossInputs(pos=Seq(t(-4.0), t(2.0), ref=t(-5.0))), beta=0.5)
    assert out.loss.item() == pytest.approx(-logsig(0.5))
    assert out.metrics["deviation"].item() == pytest.approx(0.5)


# -------------------------------------------------------------------------------- ASFT
@pytest.mark.parametrize("x1,x2", [(0.3, 0.6), (0.9, 0.1), (0.05, 0.95)])
def test_asft_align_gradient_is_eq18(x1, x2):
    """L_align on one-token answers: dL/dx1 = -1/x1, dL/dx2 = 1/(1-x2) (asft.txt Eq. 18 / 22)."""
    p = t(x1, x2, grad=True)
    logp = torch.log(p)
    pos = Seq(logp[:1], t(1.0))
    neg = Seq(logp[1:].view(1, 1), t(1.0).view(1, 1))
    out = get_method("asft")(LossInputs(pos=pos, neg=neg), beta=1.0)
    # the full loss adds -log x1 (the SFT term): subtract its gradient -1/x1
    out.loss.backward()
    assert p.grad[0].item() + 1 / x1 == pytest.approx(-1 / x1, rel=1e-5)
    assert p.grad[1].item() == pytest.approx(1 / (1 - x2), rel=1e-5)


def test_asft_value_with_two_negatives():
    """Sbar_w = -0.5, Sbar_l = (-1, -2), beta = 0.1:
    0.5 + 0.1 * (0.5 + mean(-log(1-e^-1), -log(1-e^-2)))."""
    pos = Seq(t(-1.0), t(2.0))
    neg = Seq(t([-2.0, -6.0]), t([2.0, 3.0]))
    out = get_method("asft")(LossInputs(pos=pos.__class__(pos.logp.view(1), pos.length.view(1)),
                                         neg=Seq(neg.logp.view(1, 2), neg.length.view(1, 2))), beta=0.1)
    a = 0.5 + (-math.log(1 - math.exp(-1)) - math.log(1 - math.exp(-2))) / 2
    assert out.loss.item() == pytest.approx(0.5 + 0.1 * a, rel=1e-6)


# --------------------------------------------------------------------------------- IFT
def ift_inputs(tok_losses, mask=None):
    tok = -t(*tok_losses).view(1, -1)
    tok.requires_grad_(True)
    mask = torch.ones_like(tok) if mask is None else t(*mask).view(1, -1)
    return tok, LossInputs(pos=Seq((tok * mask).sum(-1), mask.sum(-1), tok=tok, mask=mask))


def test_ift_limit_is_sequence_mean_sft():
    """ift.txt Eq. 22 with decay 0 (propagation='paper'): weights 1, loss = mean_t L_t per sequence."""
    tok, inp = ift_inputs([1.0, 2.0, 3.0, 0.0], mask=[1, 1, 1, 0])
    out = get_method("ift")(inp, lam=0.0, decay=0.0, propagation="paper")
    assert out.loss.item() == pytest.approx(2.0, rel=1e-12)
    out.loss.backward()
    assert torch.allclose(tok.grad, -t(1, 1, 1, 0).view(1, -1) / 3)


def test_ift_decay_zero_is_sequence_mean_sft_in_the_authors_propagation_too():
    """The authors' get_cumsum_weight returns all-ones weights when gamma == 0, so
    decay 0 is sequence-mean SFT: L = (1, 2, 3) gives (1 + 2 + 3) / 3 = 2.0 (not
    sum L^2 / sum L = 14/6 = 2.333), gradient -1/3 on each token."""
    tok, inp = ift_inputs([1.0, 2.0, 3.0])
    out = get_method("ift")(inp, lam=0.0, decay=0.0, propagation="reference")
    assert out.loss.item() == pytest.approx(2.0, rel=1e-12)
    out.loss.backward()
    assert torch.allclose(tok.grad, -t(1, 1, 1).view(1, -1) / 3)
    w = ift_token_weights(t(1.0, 2.0, 3.0, 0.0).view(1, -1), t(1, 1, 1, 0).view(1, -1), 0.0, "reference")
    assert w.tolist() == [[1.0, 1.0, 1.0, 0.0]]


def test_ift_reference_propagation_hand_value():
    """Authors' code, decay 0.5, L = (1, 2, 3): R = (2.75, 3.5, 3)/3, w = 3 R / sum R,
    loss = sum w L / 3 = (2.75 + 7 + 9) / 9.25."""
    _, inp = ift_inputs([1.0, 2.0, 3.0])
    out = get_method("ift")(inp, lam=0.2, decay=0.5, propagation="reference")
    assert out.loss.item() == pytest.approx((2.75 + 7 + 9) / 9.25, rel=1e-12)


def test_ift_weights_have_mean_one_and_ignore_padding():
    w = ift_token_weights(t(1.0, 4.0, 2.0, 9.0).view(1, -1), t(1, 1, 1, 0).view(1, -1), 0.95, "reference")
    assert w[0, 3].item() == 0.0 and w[0, :3].mean().item() == pytest.approx(1.0)


# --------------------------------------------------------------------------------- BNF
@pytest.mark.parametrize("p,q", [(0.1, 0.4), (0.3, 0.3), (0.6, 0.2), (0.95, 0.5), (0.02, 0.9)])
def test_bnf_gradient_is_eq9_both_branches(p, q):
    """|dL/dz_y| = p (1-q)/q if p < q else 1 - p (bnf.txt Eq. 9, |y| = 1, label +1)."""
    z = one_token(p, rest=[1.0, 2.0, 3.0, 4.0])
    seq = seq_from_logits(z, ref_logp=math.log(q))
    get_method("bnf")(LossInputs(pos=seq)).loss.backward()
    expected = p * (1 - q) / q if p < q else 1 - p
    assert abs(z.grad[0, 0, 0].item()) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_bnf_gradient_on_other_tokens_is_eq8():
    """dL/dz_t = p_t - f_t with f_t = (1 - f_y)/(1 - p_y) p_t for t != y (bnf.txt Eq. 6, 8)."""
    p, q = 0.2, 0.5
    z = one_token(p, rest=[1.0, 2.0, 3.0, 4.0])
    get_method("bnf")(LossInputs(pos=seq_from_logits(z, ref_logp=math.log(q)))).loss.backward()
    probs = torch.softmax(z.detach(), -1)[0, 0]
    f_y = p / q
    for k in range(1, 5):
        target = (1 - f_y) / (1 - p) * probs[k].item()
        assert z.grad[0, 0, k].item() == pytest.approx(probs[k].item() - target, rel=1e-9)


def test_bnf_negative_label_flips_the_gradient():
    z = one_token(0.6)
    seq = seq_from_logits(z, ref_logp=math.log(0.3))
    neg = Seq(*(x.view(1, 1, *x.shape[1:]) if x is not None else None for x in
                (seq.logp, seq.length, seq.ref, seq.tok, seq.tok_ref, seq.tok_plogp, seq.mask)))
    zero = Seq(t(0.0), t(1.0), t(0.0), t(0.0).view(1, 1), t(0.0).view(1, 1), t(0.0).view(1, 1), t(0.0).view(1, 1))
    get_method("bnf")(LossInputs(pos=zero, neg=neg)).loss.backward()
    assert z.grad[0, 0, 0].item() == pytest.approx(+(1 - 0.6), rel=1e-9)   # pushes z_y down


# ---------------------------------------------------------------------- pairwise baselines
def pair(sw=-4.0, sl=(-6.0, -5.0), rw=-4.5, rl=(-5.0, -5.5), lw=2.0, ll=(3.0, 2.0)):
    pos = Seq(t(sw), t(lw), ref=t(rw))
    neg = Seq(t(*sl).view(1, -1), t(*ll).view(1, -1), ref=t(*rl).view(1, -1))
    return LossInputs(pos=Seq(pos.logp.view(1), pos.length.view(1), pos.ref.view(1)), neg=neg)


# rho_w = 0.5, rho_l = (-1, 0.5), Delta = (1.5, 0); Sbar_w = -2, Sbar_l = (-2, -2.5)
PAIR_CASES = {
    "dpo": ({"beta": 0.1}, (-logsig(0.15) - logsig(0.0)) / 2),
    "spin": ({"beta": 0.1}, (-logsig(0.15) - logsig(0.0)) / 2),
    "ipo": ({"tau": 0.5}, ((1.5 - 1.0) ** 2 + (0.0 - 1.0) ** 2) / 2),
    "dpo_p": ({"beta": 0.1, "lam": 50.0}, (-logsig(0.15) - logsig(0.0)) / 2),   # S > S0: no penalty
    "rdpo": ({"beta": 0.1, "alpha": 0.5}, (-logsig(0.15 - 0.5) - logsig(0.0)) / 2),  # + alpha (|y_w|-|y_l|), = (-1, 0)
    "minor_dpo": ({"beta": 0.1}, (-logsig(0.1 * (0.5 - 0.0)) - logsig(0.1 * (0.5 - 0.5))) / 2),
    "simpo": ({"beta": 2.0, "gamma_beta_ratio": 0.5}, (-logsig(0 - 1) - logsig(1.0 - 1)) / 2),
    "simpo_sft": ({"beta": 2.0, "gamma_beta_ratio": 0.5, "sft_weight": 1.0},
                  (-logsig(-1) - logsig(0.0)) / 2 + 2.0),
    "cpo": ({"beta": 0.1}, (-logsig(0.2) - logsig(0.1)) / 2 + 2.0),
    "slic_hf": ({"delta": 1.0, "lam": 0.1}, (0.0 + 0.0) / 2 + 0.2),  # margins 2 and 1 >= delta
    "rrhf": ({}, (0.0 + 0.0) / 2 + 2.0),
}


@pytest.mark.parametrize("name", sorted(PAIR_CASES))
def test_pairwise_hand_values(name):
    hp, expected = PAIR_CASES[name]
    assert get_method(name)(pair(), **hp).loss.item() == pytest.approx(expected, rel=1e-10)


def test_dpo_p_penalty_applies_when_positive_falls_below_reference():
    """S(y_w) = -5 < S0 = -4.5: penalty 0.5; Delta = (-0.5+1, -0.5-0.5) = (0.5, -1)."""
    inp = pair(sw=-5.0)
    got = get_method("dpo_p")(inp, beta=0.1, lam=2.0).loss.item()
    assert got == pytest.approx((-logsig(0.1 * (0.5 - 1.0)) - logsig(0.1 * (-1.0 - 1.0))) / 2, rel=1e-10)


def test_rdpo_length_term_enters_with_a_plus():
    """R-DPO's reward is beta log(pi/pi_ref) + alpha |y|, so the loss is
    -log sigma(beta Delta + alpha (|y_w| - |y_l|)). S(y_w) = -50, |y_w| = 100, S(y_l) = -40,
    |y_l| = 50, references equal to the policy (Delta = 0), beta 0.1, alpha 0.01:
    -log sigma(0.01 * 50) = -log sigma(0.5) = 0.474 (DPO: log 2 = 0.693; the old minus sign: 0.974)."""
    inp = LossInputs(pos=Seq(t(-50.0), t(100.0), ref=t(-50.0)),
                     neg=Seq(t(-40.0).view(1, 1), t(50.0).view(1, 1), ref=t(-40.0).view(1, 1)))
    got = get_method("rdpo")(inp, beta=0.1, alpha=0.01).loss.item()
    assert got == pytest.approx(-logsig(0.5), rel=1e-12) and round(got, 3) == 0.474
    assert get_method("dpo")(inp, beta=0.1).loss.item() == pytest.approx(math.log(2), rel=1e-12)


def test_orpo_hand_value():
    """log-odds of p = e^Sbar; Sbar_w = -2, Sbar_l = (-2, -2.5)."""
    lo = lambda s: s - math.log(1 - math.exp(s))
    expected = 2.0 + 0.1 * ((-logsig(lo(-2) - lo(-2))) + (-logsig(lo(-2) - lo(-2.5)))) / 2
    assert get_method("orpo")(pair(), lam=0.1).loss.item() == pytest.approx(expected, rel=1e-10)


def test_kto_hand_value():
    """z0 = max(0, mean(S-S0) of mismatched) = max(0, (1 - 3)/2) = 0;
    loss = [ld (1-sig(b*0.5)) + lu ((1-sig(b*1)) + (1-sig(-b*0.5)))] / 3."""
    inp = pair()
    inp.kl = Seq(t(-3.0, -7.0), t(1.0, 1.0), ref=t(-4.0, -4.0))
    b, ld, lu = 0.1, 1.5, 1.0
    expected = (ld * (1 - sig(b * 0.5)) + lu * ((1 - sig(b * 1.0)) + (1 - sig(-b * 0.5)))) / 3
    assert get_method("kto")(inp, beta=b, lambda_d=ld, lambda_u=lu).loss.item() == pytest.approx(expected, rel=1e-10)
    inp.kl = None
    with pytest.raises(ValueError, match="mismatched"):
        get_method("kto")(inp)


def test_pairwise_valid_mask_drops_absent_negatives():
    inp = pair()
    inp.neg.valid = torch.tensor([[True, False]])
    assert get_method("dpo")(inp, beta=0.1).loss.item() == pytest.approx(-logsig(0.15), rel=1e-10)


# ---------------------------------------------------------------------------- logprobs
def test_chunked_logprobs_match_full_log_softmax_and_its_gradient():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=g, dtype=D, requires_grad=True)
    labels = torch.randint(0, 11, (3, 7), generator=g)
    mask = (torch.rand(3, 7, generator=g) > 0.3).to(D)
    tok, plogp = token_logprobs(logits, labels, mask, with_plogp=True, chunk=4)
    full = torch.log_softmax(logits, -1)
    ref_tok = full.gather(-1, labels.unsqueeze(-1)).squeeze(-1) * mask
    ref_plogp = (full.detach().exp() * full).sum(-1) * mask
    assert torch.allclose(tok.double(), ref_tok, atol=1e-6)
    assert torch.allclose(plogp.double(), ref_plogp, atol=1e-6)
    (tok.sum() + plogp.sum()).backward()
    g1 = logits.grad.clone()
    logits.grad = None
    (ref_tok.sum() + ref_plogp.sum()).backward()
    assert torch.allclose(g1, logits.grad, atol=1e-6)
