"""The per-loss workspace of dense temporaries (reused from call to call on the CPU).

A reused buffer must never change a value or a gradient: not of the call that uses it, not of an
earlier call whose graph is still alive, not after pickling or copying the loss.
"""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from robustaug.losses import NoiseRobustDice, robust_loss
from robustaug.losses._common import Workspace

from .helpers import build, labels, logits

# losses whose analytic path draws temporaries from the workspace
USERS = ["nfl", "nnfl", "nfl_plus_rce", "nr_dice", "forward", "backward"]


def _kept(ws: Workspace) -> int:
    return sum(len(v) for v in ws._pool.values())


def _grad(loss, z, t, retain=False):
    z = z.detach().clone().requires_grad_(True)
    out = loss(z, t)
    out.backward(retain_graph=retain)
    return out.detach(), z.grad


@pytest.mark.parametrize("name", USERS)
@pytest.mark.parametrize("shape", [(40, 30), (3, 4, 6, 5)], ids=["NC", "NC65"])
def test_reused_buffers_give_the_values_of_a_fresh_loss(name, shape):
    c = shape[1]
    loss = build(name, c)
    for seed in range(4):  # same layout every call: from the second call on, buffers are reused
        z = logits(shape, seed=seed, scale=1.0 + 10.0 * (seed % 2))  # saturated every other call
        t = labels(shape[0], c, shape[2:], seed=seed)
        v1, g1 = _grad(loss, z, t)
        fresh = build(name, c)
        if hasattr(loss, "T"):
            fresh.load_state_dict(loss.state_dict())
        v2, g2 = _grad(fresh, z, t)
        assert torch.equal(v1, v2)
        assert torch.equal(g1, g2)
    if not (name == "nr_dice" and len(shape) > 2):  # (Dice on a grid has no dense temporaries)
        assert _kept(loss.workspace()), "the workspace kept nothing: the reuse was not tested"


@pytest.mark.parametrize("name", USERS)
def test_a_later_call_does_not_touch_an_earlier_graph(name):
    """Forward A, forward B (reusing A's temporaries), then both backwards (A's graph retained and
    run twice): each gradient equals that of a fresh loss."""
    c = 6
    loss = build(name, c)

    def fresh():
        f = build(name, c)
        f.load_state_dict(loss.state_dict())
        return f

    za, zb = logits((8, c), seed=1, scale=3.0), logits((8, c), seed=2, scale=20.0)
    ta, tb = labels(8, c, (), seed=1), labels(8, c, (), seed=2)
    ref_a, ref_b = _grad(fresh(), za, ta)[1], _grad(fresh(), zb, tb)[1]
    xa, xb = za.clone().requires_grad_(True), zb.clone().requires_grad_(True)
    out_a = loss(xa, ta)
    out_b = loss(xb, tb)
    out_a.backward(retain_graph=True)
    out_b.backward()
    out_a.backward()  # second backward through the retained graph: accumulates the same gradient
    torch.testing.assert_close(xa.grad, 2 * ref_a, rtol=0, atol=0)
    torch.testing.assert_close(xb.grad, ref_b, rtol=0, atol=0)


def test_pickle_and_deepcopy_drop_the_buffers():
    loss = robust_loss("nfl")
    z, t = logits((16, 5), seed=3), labels(16, 5, (), seed=3)
    _grad(loss, z, t)
    assert _kept(loss.workspace())
    for clone in (pickle.loads(pickle.dumps(loss)), copy.deepcopy(loss)):
        assert clone.workspace() is not loss.workspace()
        assert not _kept(clone.workspace())
        assert torch.equal(_grad(clone, z, t)[1], _grad(loss, z, t)[1])


def test_workspace_limits_bytes_and_layouts():
    ws = Workspace()
    ws.max_bytes = 3 * 4 * 100  # room for three (100,) float32 buffers
    a = [torch.empty(100) for _ in range(5)]
    ws.give(a)
    assert _kept(ws) == 3
    b = ws.take(torch.empty(100))
    assert any(b is x for x in a)
    assert ws.take(torch.empty(100, dtype=torch.float64)).dtype == torch.float64  # other key: new
    c = ws.take_new((100,), torch.float32, torch.device("cpu"))
    assert any(c is x for x in a)  # the same layout asked for by shape
    ws.give([torch.empty(7), torch.empty(8, dtype=torch.float64)])  # two more layouts: all fit
    assert _kept(ws) == 3 and len(ws._pool) == 3
    ws.give([torch.empty(250)])  # over the byte limit: only the layout given back now is kept
    assert _kept(ws) == 1 and ws._pool[ws._key(torch.empty(250))]
    ws.max_layouts = 2
    ws.give([torch.empty(3), torch.empty(4), torch.empty(5)])  # too many layouts: these only
    assert len(ws._pool) == 3 and _kept(ws) == 3
    ws.clear()
    assert not _kept(ws)


def test_inference_mode_buffers_are_not_reused_outside_it():
    """A tensor made under ``torch.inference_mode`` cannot be written in place outside it."""
    loss = NoiseRobustDice()
    z, t = logits((12, 4), seed=4), labels(12, 4, (), seed=4)
    with torch.inference_mode():
        loss(z, t)
    g = _grad(loss, z, t)[1]
    assert torch.equal(g, _grad(NoiseRobustDice(), z, t)[1])


def test_other_devices_keep_nothing():
    ws = Workspace()
    meta = torch.empty(10, device="meta")
    ws.give([meta])
    assert not _kept(ws)
