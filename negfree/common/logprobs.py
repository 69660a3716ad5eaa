"""The one place per-token log-probs are taken.

``logits`` [R, T, V] come from a causal LM; ``labels`` [R, T] hold at position t the
token that logits[:, t] predicts (already shifted), ``mask`` [R, T] is 1 on answer
tokens. Only answer positions are processed, in chunks of ``chunk`` positions,
each under activation checkpointing: the fp32 log-softmax of one chunk exists at
a time, in the forward and again in the backward, never a [tokens x vocab] fp32
tensor for the whole batch.

``model_token_logprobs`` goes one step further for models whose logits are exactly
``lm_head(hidden)`` (``PLAIN_HEAD_MODELS``): the model returns its last hidden
states, and the output projection is applied inside each chunk, at answer
positions only. No [rows x length x vocab] tensor exists at all, and prompt and
padding positions never pay for the vocabulary projection. Gemma-2's final-logit
soft-capping, cap * tanh(logits / cap), is applied in each chunk after the projection
(the model's own capping is off while its head is swapped out). Other architectures
(logit scaling) and sharded training (FSDP, whose parameters exist only inside the
wrapped forward) take the full-logits path.

Padding-free packing (``packed=True``, architectures in ``PACKABLE_MODELS``): the real tokens
of the right-padded rows are laid end to end in one row (or, with ``pack_capacity``, in rows of
that many tokens, first-fit decreasing), with ``position_ids`` restarting at 0 for each sequence
and no attention mask. transformers (masking_utils) reads the restarts as
sequence boundaries and builds a block-diagonal causal mask, or hands the boundaries to a
varlen kernel (flash-attention; flex attention skips the masked blocks). One packed row spends
no position on padding (rows of ``pack_capacity`` only their tails), and values and gradients
equal the padded path (tests/test_packing.py, float64).
The per-token results are laid back on the padded [R, T] grid, so the losses never see the
difference. With sdpa or eager attention the block-diagonal mask is dense: one packed row
costs (sum of lengths)^2 query-key pairs instead of rows x longest^2; rows of ``pack_capacity``
= the longest row never cost more than padding (``negfree bench data`` reports all three).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

# model_type values whose causal-LM forward computes logits = lm_head(last hidden state)
# and nothing else (checked in transformers' modeling files; no soft-capping, no scaling)...
PLAIN_HEAD_MODELS = frozenset({"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe",
                               "olmo", "olmo2", "phi3"})
# ...and those whose forward then soft-caps them with config.final_logit_softcapping (Gemma2ForCausalLM)
SOFTCAP_HEAD_MODELS = frozenset({"gemma2"})
# model_type values whose decoder builds its causal mask with transformers' create_causal_mask, which
# detects packed sequences from position_ids when attention_mask is None (checked in the modeling
# files of transformers 5.23; each is tested packed = padded in tests/test_packing.py)
PACKABLE_MODELS = frozenset({"llama", "mistral", "qwen2", "qwen3", "gemma2"})


def packing_support(model) -> str | None:
    """None when ``model`` can be trained packed, else why not (one line)."""
    kind = getattr(getattr(model, "config", None), "model_type", None)
    if kind not in PACKABLE_MODELS:
        return (f"model_type {kind!r} is not one of {', '.join(sorted(PACKABLE_MODELS))}, whose packed "
                f"forward is tested equal to the padded one")
    return None


def pack_bins(lengths: list[int], capacity: int | None = None) -> list[list[int]]:
    """Which rows share each packed row: all of them (``capacity`` None), or first-fit decreasing
    into rows of ``capacity`` tokens, raised to the longest row when it is shorter."""
    if capacity is None:
        return [list(range(len(lengths)))]
    cap = max(int(capacity), max(lengths, default=1))
    bins: list[list[int]] = []
    fill: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        b = next((b for b in range(len(bins)) if fill[b] + lengths[i] <= cap), None)
        if b is None:
            bins.append([])
            fill.append(0)
            b = len(bins) - 1
        bins[b].append(i)
        fill[b] += lengths[i]
    return bins


class Packing:
    """Where each real token of right-padded rows ([R, T], ``keep``) sits once packed: rows are
    laid end to end in ``n_bins`` packed rows of ``width`` positions, first-fit decreasing by length
    when ``capacity`` (tokens per packed row, at least the longest row) is given, else all in
    one. Each packed row's unused tail gets positions restarting at 0, a block of its own that no
    real token sees."""

    def __init__(self, keep: Tensor, capacity: int | None = None):
        if keep.any() and not bool((keep[:, :-1] | ~keep[:, 1:]).all()):
            raise ValueError("packing needs right-padded rows (a real token follows a padding position)")
        self.keep = keep
        lengths = keep.sum(1).tolist()
        bins = pack_bins(lengths, capacity)
        fill = [sum(lengths[i] for i in b) for b in bins]
        self.n_bins, self.width = len(bins), max(max(fill), 1)
        start = [0] * len(lengths)
        pos = torch.zeros(self.n_bins, self.width, dtype=torch.long)
        for b, rows in enumerate(bins):
            at = 0
            for i in sorted(rows):
                start[i] = b * self.width + at
                pos[b, at:at + lengths[i]] = torch.arange(lengths[i])
                at += lengths[i]
            pos[b, at:] = torch.arange(self.width - at)
        # flat packed index of every real token, in keep's (row-major) order
        self.src = torch.cat([torch.arange(n) + s for n, s in zip(lengths, start)]).to(keep.device) if lengths \
            else torch.zeros(0, dtype=torch.long, device=keep.device)
        self.position_ids = pos.to(keep.device)

    def pack(self, x: Tensor, fill: float = 0) -> Tensor:
        """[R, T, ...] -> [n_bins, width, ...]: the real positions moved, ``fill`` elsewhere."""
        out = x.new_full((self.n_bins * self.width, *x.shape[2:]), fill)
        out = out.index_put((self.src,), x[self.keep])
        return out.view(self.n_bins, self.width, *x.shape[2:])

    def unpack(self, y: Tensor, fill: float = 0) -> Tensor:
        """[n_bins, width] -> [R, T]: each real position's value back, ``fill`` at padding."""
        out = y.new_full(self.keep.shape, fill)
        return out.masked_scatter(self.keep, y.reshape(-1).index_select(0, self.src))


def pack_inputs(inputs: dict, capacity: int | None = None) -> tuple[dict, Packing]:
    """The packed form of right-padded ``inputs`` (input_ids or inputs_embeds, attention_mask):
    position_ids restarting per sequence, no attention mask, no KV cache (a cache would hide the
    packing from the mask builder); and the :class:`Packing` that maps results back."""
    pk = Packing(inputs["attention_mask"].bool(), capacity)
    out = {"position_ids": pk.position_ids, "use_cache": False}
    if "input_ids" in inputs:
        out["input_ids"] = pk.pack(inputs["input_ids"], fill=0)
    if "inputs_embeds" in inputs:
        out["inputs_embeds"] = pk.pack(inputs["inputs_embeds"])
    return out, pk


def plain_output_head(model) -> tuple[str, nn.Linear] | None:
    """(attribute name, output Linear) when ``model``'s logits are exactly that Linear of its
    last hidden state, else None."""
    cfg = getattr(model, "config", None)
    if getattr(cfg, "model_type", None) not in PLAIN_HEAD_MODELS | SOFTCAP_HEAD_MODELS:
        return None
    head = model.get_output_embeddings()
    if not isinstance(head, nn.Linear):
        return None
    name = next((n for n, m in model.named_children() if m is head), None)
    return None if name is None else (name, head)


def output_softcap(model) -> float | None:
    """The final-logit soft-capping constant of a SOFTCAP_HEAD_MODELS model (None: no capping)."""
    cfg = getattr(model, "config", None)
    if getattr(cfg, "model_type", None) not in SOFTCAP_HEAD_MODELS:
        return None
    return getattr(cfg, "final_logit_softcapping", None)


@contextmanager
def hidden_states_as_logits(model, name: str):
    """While inside, ``model(...).logits`` holds the last hidden states [R, T, H] (the model's own
    soft-capping, which would otherwise squash them, is off)."""
    head = getattr(model, name)
    cap = output_softcap(model)
    setattr(model, name, nn.Identity())
    if cap is not None:
        model.config.final_logit_softcapping = None
    try:
        yield head
    finally:
        setattr(model, name, head)
        if cap is not None:
            model.config.final_logit_softcapping = cap


def _project(hidden: Tensor, weight: Tensor | None, bias: Tensor | None, softcap: float | None = None) -> Tensor:
    if weight is None:
        return hidden
    logits = nn.functional.linear(hidden, weight, bias)
    return logits if softcap is None else softcap * torch.tanh(logits / softcap)


def _chunk_stats(logits: Tensor, weight: Tensor | None, bias: Tensor | None, targets: Tensor, with_plogp: bool,
                 softcap: float | None = None):
    logits = _project(logits, weight, bias, softcap)
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()   # one chunk at a time; float64 stays float64 (tests)
    lse = torch.logsumexp(logits, dim=-1)
    tok = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse
    if not with_plogp:
        return tok, torch.zeros_like(tok)
    logp = logits - lse.unsqueeze(-1)
    plogp = (logp.detach().exp() * logp).sum(-1)   # sum_v sg[p_v] log p_v (BNF's vocabulary term)
    return tok, plogp


def token_logprobs(logits: Tensor, labels: Tensor, mask: Tensor, *, with_plogp: bool = False,
                   chunk: int = 1024, head: nn.Linear | None = None,
                   softcap: float | None = None) -> tuple[Tensor, Tensor | None]:
    """Per-token log pi(y_t | prefix) at answer positions (0 elsewhere), shape [R, T].

    With ``with_plogp`` also returns sum_v sg[p_v] log p_v per position, the only
    vocabulary-wide quantity BNF needs. With ``head``, ``logits`` are hidden states
    and ``head`` is applied chunk by chunk (then ``softcap``, when given).
    """
    if logits.shape[:2] != labels.shape or labels.shape != mask.shape:
        raise ValueError(f"shape mismatch: logits {tuple(logits.shape)}, labels {tuple(labels.shape)}, "
                         f"mask {tuple(mask.shape)}")
    flat_mask = mask.reshape(-1).bool()
    idx = flat_mask.nonzero(as_tuple=True)[0]
    flat_logits = logits.reshape(-1, logits.shape[-1])
    flat_labels = labels.reshape(-1)
    toks, plogps = [], []
    weight, bias = (head.weight, head.bias) if head is not None else (None, None)
    need_grad = torch.is_grad_enabled() and (logits.requires_grad or (weight is not None and weight.requires_grad))
    for start in range(0, idx.numel(), chunk):
        sel = idx[start:start + chunk]
        args = (flat_logits.index_select(0, sel), weight, bias, flat_labels.index_select(0, sel), with_plogp,
                softcap)
        if need_grad:
            tok, plogp = checkpoint(_chunk_stats, *args, use_reentrant=False)
        else:
            tok, plogp = _chunk_stats(*args)
        toks.append(tok)
        plogps.append(plogp)
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    out_tok = logits.new_zeros(flat_labels.shape, dtype=dtype)
    out_plogp = logits.new_zeros(flat_labels.shape, dtype=dtype)
    if toks:
        out_tok = out_tok.index_put((idx,), torch.cat(toks))
        out_plogp = out_plogp.index_put((idx,), torch.cat(plogps))
    return out_tok.view_as(labels), (out_plogp.view_as(labels) if with_plogp else None)


def _forward(model, raw_model, chunked_head: bool, inputs: dict) -> tuple[Tensor, nn.Linear | None]:
    """(``model(**inputs)`` output, None), or (its last hidden states, the output head) when
    ``chunked_head`` asks for it and ``plain_output_head(raw_model)`` allows it."""
    found = plain_output_head(raw_model) if chunked_head else None
    if found is None:
        return model(**inputs).logits, None
    with hidden_states_as_logits(raw_model, found[0]) as head:
        return model(**inputs).logits, head


def model_token_logprobs(model, raw_model, labels: Tensor, mask: Tensor, *, with_plogp: bool = False,
                         chunk: int = 1024, chunked_head: bool = True, packed: bool = False,
                         pack_capacity: int | None = None, **inputs) -> tuple[Tensor, Tensor | None]:
    """``token_logprobs`` of ``model(**inputs)``. ``model`` is what is trained (possibly
    DDP-wrapped), ``raw_model`` its module; ``chunked_head`` asks for the hidden-state
    path, taken when ``plain_output_head(raw_model)`` allows it. ``packed``: one forward over
    the padding-free packed rows (``pack_inputs``: one row, or rows of ``pack_capacity`` tokens);
    the results come back on the [R, T] grid."""
    pk = None
    if packed:
        inputs, pk = pack_inputs(inputs, pack_capacity)
        labels, mask = pk.pack(labels), pk.pack(mask)
    out, head = _forward(model, raw_model, chunked_head, inputs)
    tok, plogp = token_logprobs(out, labels, mask, with_plogp=with_plogp, chunk=chunk, head=head,
                                softcap=output_softcap(raw_model) if head is not None else None)
    if pk is None:
        return tok, plogp
    return pk.unpack(tok), (pk.unpack(plogp) if plogp is not None else None)


@torch.no_grad()
def model_greedy_tokens(model, positions: Tensor, *, chunk: int = 1024, chunked_head: bool = True,
                        packed: bool = False, pack_capacity: int | None = None, **inputs) -> Tensor:
    """argmax_v of the logits at ``positions`` (a [R, T] mask), -1 elsewhere; the vocabulary
    projection only at those positions when the model allows it. ``packed``: as in
    :func:`model_token_logprobs`."""
    if packed:
        inp, pk = pack_inputs(inputs, pack_capacity)
        return pk.unpack(model_greedy_tokens(model, pk.pack(positions), chunk=chunk, chunked_head=chunked_head,
                                             **inp), fill=-1)
    out, head = _forward(model, model, chunked_head, inputs)
    flat = out.reshape(-1, out.shape[-1])
    idx = positions.reshape(-1).bool().nonzero(as_tuple=True)[0]
    guess = torch.full((flat.shape[0],), -1, dtype=torch.long, device=out.device)
    w, b = (head.weight, head.bias) if head is not None else (None, None)
    cap = output_softcap(model) if head is not None else None   # monotone, so the argmax is the same
    for start in range(0, idx.numel(), chunk):
        sel = idx[start:start + chunk]
        guess[sel] = _project(flat.index_select(0, sel), w, b, cap).argmax(-1)
    return guess.view(positions.shape)


def shift_for_causal_lm(input_ids: Tensor, answer_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Labels and mask aligned with logits: logits[:, t] predicts input_ids[:, t + 1]."""
    labels = torch.zeros_like(input_ids)
    labels[:, :-1] = input_ids[:, 1:]
    mask = torch.zeros_like(answer_mask)
    mask[:, :-1] = answer_mask[:, 1:]
    return labels, mask


def answer_logit_slice(answer_start: int, length: int) -> slice:
    """Logits at position t predict token t+1, so answer token k of a sequence whose
    answer starts at ``answer_start`` sits at logit position answer_start - 1 + k."""
    return slice(answer_start - 1, length - 1)
