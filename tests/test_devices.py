"""Device discipline on a CPU-only machine (issue 14): every registered method's loss, driven
through the loop's own micro-batch step (negfree.train.loop.forward_micro), with its inputs
on a second device and the loop's per-record state (DFT's log u, float64) on the CPU, as on
a GPU node. The second device is torch's ``meta`` device: it exists in every build, runs
shape logic only, and refuses an op that mixes it with CPU tensors ("Tensor on device meta
is not on the expected device cpu"), the bug that crashed DFT and DFT2 at step 1 on any GPU.

(torch's FakeTensorMode can create 'cuda' tensors on a CPU-only build, but aborts as soon as
autograd records an op on them, and a same-dtype ``.to('cuda')`` hits the missing CUDA
runtime: meta exercises the same device checks, with gradients.)"""
from contextlib import nullcontext

import pytest
import torch

import negfree.train.loop as loop
from negfree.losses import REGISTRY, LossInputs, Seq

N, B, T = 2, 2, 5
DEV = torch.device("meta")


def device_inputs(method) -> tuple[LossInputs, list]:
    """Per-token log-probs (with gradient), references and BNF's vocabulary term on DEV."""
    leaves = []

    def seq(*shape):
        tok = torch.empty(*shape, T, device=DEV, requires_grad=True)
        leaves.append(tok)
        mask = torch.empty(*shape, T, device=DEV)
        ref = torch.empty(*shape, T, device=DEV)
        plogp = torch.empty(*shape, T, device=DEV)
        return Seq(tok.sum(-1), mask.sum(-1), ref.sum(-1), tok, ref, plogp, mask, None)

    inp = LossInputs(pos=seq(N), neg=seq(N, B) if method.needs_negatives else None,
                     kl=seq(N) if method.needs_mismatched else None)
    return inp, leaves


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_loss_runs_on_the_device_with_the_loops_cpu_state(monkeypatch, name):
    method = REGISTRY[name]
    log_u = torch.zeros(8, dtype=torch.float64) if method.stateful else None   # as the loop keeps it
    inp, leaves = device_inputs(method)
    def fake_loss_inputs(model, raw_model, batch, method, hp, lu, chunk, chunked_head, packed=False, pack_capacity=None):
        assert lu is None or lu.device == DEV, "the loop handed the loss a state slice on the CPU"
        inp.log_u = lu   # what the real one does with it
        return inp

    monkeypatch.setattr(loop, "loss_inputs", fake_loss_inputs)
    _, out = loop.forward_micro(None, None, None, method, method.resolve({}), log_u, [3, 5],
                                {"logit_chunk": 4}, True, DEV, nullcontext, gather=lambda t: torch.cat([t, t]))
    assert out.loss.device == DEV
    out.loss.backward()
    assert all(x.grad is None or x.grad.device == DEV for x in leaves)
    if log_u is not None:   # the update the loop copies back into its CPU state
        assert out.log_u.device == DEV and out.log_u.shape == (N,)
