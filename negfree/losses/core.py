"""The loss registry and the tensors every loss reads.

A loss is a small pure function ``fn(inp: LossInputs, **hparams) -> LossOutput``.
It never sees a model: the trainer (or a figure, or a test) computes per-token
log-probs once with :mod:`negfree.common.logprobs` and packs them here. Everything the
rest of the suite needs to know about a loss (does it need a reference? does it
need negatives? is it token-level? which hyperparameters, with which paper
defaults?) is declared once, in its :class:`Method` entry, and asked of the
registry. No other module lists method names.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Callable

import torch
from torch import Tensor


# --------------------------------------------------------------------------- inputs
@dataclass
class Seq:
    """Log-prob statistics of a set of answers: shape [N] (one per prompt) or [N, B].

    ``logp`` is S(y) = sum_t l_t over answer tokens (with gradient); ``length`` is |y|;
    ``ref`` is S0(y) under the frozen reference (precomputed, no gradient).
    Token-level losses also read, with a trailing time axis T:
    ``tok`` (l_t, with gradient), ``tok_ref`` (log pi_0(y_t), no gradient),
    ``tok_plogp`` (sum_v sg[p_v] log p_v per position, gradient through log p_v)
    and ``mask`` (1 on answer tokens). ``valid`` (same shape as ``logp``) marks
    answers that are present; absent ones (pairing-ratio masking) count for nothing.
    """

    logp: Tensor
    length: Tensor
    ref: Tensor | None = None
    tok: Tensor | None = None
    tok_ref: Tensor | None = None
    tok_plogp: Tensor | None = None
    mask: Tensor | None = None
    valid: Tensor | None = None

    @property
    def mean(self) -> Tensor:
        """Sbar(y) = S(y) / |y|, the length-normalised log-likelihood."""
        return self.logp / self.length

    def rho(self, method: str) -> Tensor:
        """S(y) - S0(y), the implicit reward before beta."""
        return self.logp - require(self.ref, method, "reference log-probs (S0)")


@dataclass
class LossInputs:
    """Everything a loss may read for one mini-batch of N prompts."""

    pos: Seq                      # the target / preferred answers, [N]
    neg: Seq | None = None        # B negatives (or dispreferred answers) per prompt, [N, B]
    log_u: Tensor | None = None   # DFT estimator state for these N examples, [N]
    kl: Seq | None = None         # KTO: answers paired with a mismatched prompt, [N]
    gather: Callable[[Tensor], Tensor] | None = None   # concatenates a tensor over processes (None: one
                                                       # process); KTO's z0 is a mean over all of them


@dataclass
class LossOutput:
    loss: Tensor                                   # scalar, to be minimised
    metrics: dict[str, Tensor] = field(default_factory=dict)  # detached scalars
    log_u: Tensor | None = None                    # updated DFT state, [N]


def require(value, method: str, what: str):
    if value is None:
        raise ValueError(f"method '{method}' needs {what}, but the batch has none")
    return value


def masked_mean(x: Tensor, valid: Tensor | None, dim=None) -> Tensor:
    """Mean of x over ``dim`` counting only valid entries (all when valid is None)."""
    if valid is None:
        return x.mean() if dim is None else x.mean(dim)
    v = valid.to(x.dtype)
    if dim is None:
        return (x * v).sum() / v.sum().clamp_min(1)
    return (x * v).sum(dim) / v.sum(dim).clamp_min(1)


def pair_mean(per_pair: Tensor, neg: Seq) -> Tensor:
    """Pairwise losses with B negatives average over the B pairs (dft.txt Eq. 14),
    then over prompts. ``per_pair`` has shape [N, B]."""
    return masked_mean(per_pair, neg.valid)


def log1mexp(x: Tensor) -> Tensor:
    """log(1 - exp(x)) for x < 0, accurate on both sides of -log 2."""
    return torch.where(x > -math.log(2.0), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def detached_metrics(**kw: Tensor) -> dict[str, Tensor]:
    return {k: v.detach().float().mean() for k, v in kw.items() if v is not None and v.numel()}


# ------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class HParam:
    """One hyperparameter: its paper default, where that default comes from, and
    the interval it must lie in (``lo``/``hi`` None = unbounded)."""

    default: object
    source: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = True
    hi_open: bool = False
    choices: tuple | None = None

    def check(self, method: str, name: str, value):
        if self.choices is not None:
            if value not in self.choices:
                raise ValueError(f"{method}: {name}={value!r} is not one of {list(self.choices)}")
            return value
        if isinstance(self.default, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{method}: {name}={value!r} must be true or false")
            return value
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{method}: {name}={value!r} is not a number") from None
        if not math.isfinite(v):
            raise ValueError(f"{method}: {name}={value!r} must be finite")
        bad_lo = self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo)
        bad_hi = self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi)
        if bad_lo or bad_hi:
            lo = "-inf" if self.lo is None else self.lo
            hi = "inf" if self.hi is None else self.hi
            interval = f"{'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"
            raise ValueError(f"{method}: {name}={value} is outside {interval}")
        return v

    def describe_interval(self) -> str:
        if self.choices is not None:
            return "{" + ", ".join(map(str, self.choices)) + "}"
        if isinstance(self.default, bool):
            return "{true, false}"
        lo = "-inf" if self.lo is None else self.lo
        hi = "inf" if self.hi is None else self.hi
        return f"{'(' if self.lo_open else '['}{lo}, {hi}{')' if self.hi_open else ']'}"


@dataclass(frozen=True)
class Method:
    """A registered loss and the facts the trainer, the data stage and the docs ask."""

    name: str
    fn: Callable[..., LossOutput]
    paper: str                      # where the loss is defined (file / equation)
    summary: str
    needs_reference: bool           # reads S0 (precomputed reference log-probs)
    needs_negatives: bool           # reads B negatives / dispreferred answers per prompt
    pairwise: bool                  # compares the positive with each negative
    token_level: bool               # reads per-token tensors, not only sequence sums
    hyperparameters: dict[str, HParam] = field(default_factory=dict)
    stateful: bool = False          # keeps per-example state (DFT's log u)
    needs_mismatched: bool = False  # KTO's KL term: answers under a mismatched prompt
    two_pass: bool = False          # IFT: the trainer runs the fused-embedding forward
    vocab_term: bool = False        # BNF: reads sum_v sg[p_v] log p_v per position (tok_plogp)
    reduction: str = "prompts"      # how the loss averages a batch: over "prompts", or over answer "tokens"
    unpaired: bool = False          # accepts records with one side dropped (Seq.valid = 0; bnf.txt Table 6)

    def resolve(self, overrides: dict | None = None) -> dict:
        """Paper defaults updated by ``overrides``; unknown names and bad values raise."""
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(self.hyperparameters))
        if unknown:
            known = ", ".join(self.hyperparameters) or "none"
            raise ValueError(f"{self.name}: unknown hyperparameter(s) {unknown}; known: {known}")
        out = {}
        for name, hp in self.hyperparameters.items():
            out[name] = hp.check(self.name, name, overrides.get(name, hp.default))
        return out

    def __call__(self, inp: LossInputs, **hparams) -> LossOutput:
        out = self.fn(inp, **self.resolve(hparams))
        if not torch.isfinite(out.loss):
            raise FloatingPointError(f"method '{self.name}' produced a non-finite loss ({out.loss.item()})")
        return out

    def describe(self) -> dict:
        return {
            "name": self.name,
            "summary": self.summary,
            "paper": self.paper,
            "needs_reference": self.needs_reference,
            "needs_negatives": self.needs_negatives,
            "pairwise": self.pairwise,
            "token_level": self.token_level,
            "stateful": self.stateful,
            "needs_mismatched": self.needs_mismatched,
            "two_pass": self.two_pass,
            "vocab_term": self.vocab_term,
            "reduction": self.reduction,
            "unpaired": self.unpaired,
            "hyperparameters": {k: hp.default for k, hp in self.hyperparameters.items()},
            "hyperparameter_sources": {k: hp.source for k, hp in self.hyperparameters.items()},
            "hyperparameter_ranges": {k: hp.describe_interval() for k, hp in self.hyperparameters.items()},
        }


REGISTRY: dict[str, Method] = {}


def register(name: str, **facts):
    """Decorator: ``@register("dpo", paper=..., needs_reference=True, ...)``."""

    def wrap(fn):
        if name in REGISTRY:
            raise RuntimeError(f"loss '{name}' registered twice")
        doc = (fn.__doc__ or "").strip().splitlines()
        REGISTRY[name] = Method(name=name, fn=fn, summary=doc[0] if doc else "", **facts)
        return fn

    return wrap


def get_method(name: str) -> Method:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method '{name}'; known methods: {', '.join(REGISTRY)}") from None


SEQ_FIELDS = tuple(f.name for f in fields(Seq))
