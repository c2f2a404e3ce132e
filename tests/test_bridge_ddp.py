"""Under DistributedDataParallel (2 CPU processes, gloo) every rank holds identical masks."""
import os
import socket
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nn_bridge.models import MLP
from nn_bridge.pruners import make_pruner


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)  # same init on both ranks (DDP also broadcasts rank 0's parameters)
    m = MLP(64, 128, 8)
    p = make_pruner("sapp", m, 0.75, 8, total_steps=40, min_blocks=100, preset="criteo")
    ddp = torch.nn.parallel.DistributedDataParallel(m)
    o = torch.optim.Adam(p.weight_parameters(), lr=1e-2)
    p.bind(o)
    g = torch.Generator().manual_seed(100 + rank)  # different data on each rank
    for _ in range(40):
        x, y = torch.randn(16, 64, generator=g), torch.randn(16, 8, generator=g)
        (ddp(x) - y).pow(2).mean().backward()
        o.step()
        o.zero_grad()
        p.step()
    torch.save({"masks": p.masks(), "logits": [q.logits.detach() for q in p.params]},
               os.path.join(out_dir, f"rank{rank}.pt"))
    dist.barrier()  # both ranks done before teardown: a rank leaving early can abort gloo's threads in the other
    dist.destroy_process_group()


def test_ddp_two_cpu_ranks_identical_masks():
    with tempfile.TemporaryDirectory() as d:
        mp.spawn(_worker, args=(2, _free_port(), d), nprocs=2, join=True)
        r0, r1 = (torch.load(os.path.join(d, f"rank{r}.pt")) for r in (0, 1))
    for a, b in zip(r0["masks"], r1["masks"]):
        assert torch.equal(a, b)
        assert int(a.sum()) == round(0.25 * a.numel())  # the run ended in the final sparse phase
    for a, b in zip(r0["logits"], r1["logits"]):
        assert torch.equal(a, b)
