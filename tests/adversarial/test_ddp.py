"""DDP: a 2-process gloo RobustLoss step gives the single-process gradients on the full batch."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import robustaug.adversarial as adv


def _model() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                             nn.Linear(4 * 36, 3))


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.rand(8, 1, 6, 6, generator=g), torch.randint(0, 3, (8,), generator=g)


def _threat():
    return adv.Linf(eps=0.1, steps=3, random_start=False)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = nn.parallel.DistributedDataParallel(_model())
        x, y = _data()
        xs, ys = x.chunk(world)[rank], y.chunk(world)[rank]
        rl = adv.RobustLoss(model, method="pgd_at", threat=_threat(), seed=0)
        rl(xs, ys).backward()
        if rank == 0:
            torch.save([p.grad.clone() for p in model.module.parameters()], out)
        # TRADES does two forwards through the DDP wrapper before one backward: must not raise
        model.zero_grad()
        adv.RobustLoss(model, method="trades", threat=_threat(), seed=0)(xs, ys).backward()
        assert all(p.grad is not None for p in model.parameters())
        dist.barrier()  # both ranks finish before either tears its gloo group down
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_gradients_equal_single_process(tmp_path):
    assert dist.is_available(), "torch.distributed is part of every Linux/macOS torch build"
    out = str(tmp_path / "g.pt")
    mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    got = torch.load(out)
    model = _model()
    x, y = _data()
    adv.RobustLoss(model, method="pgd_at", threat=_threat(), seed=0)(x, y).backward()
    for g, p in zip(got, model.parameters()):
        assert torch.allclose(g, p.grad, atol=1e-6)
