"""Saving model + optimizer + pruner state mid-schedule and restoring it gives identical masks, logits, weights
and subsequent steps."""
import io

import pytest
import torch

from nn_bridge.models import MLP
from nn_bridge.pruners import make_pruner

TOTAL = 60


def _build(method):
    torch.manual_seed(0)
    m = MLP(64, 128, 8)
    p = make_pruner(method, m, 0.75, 8, total_steps=TOTAL, min_blocks=100, preset="criteo")
    o = torch.optim.Adam(p.weight_parameters(), lr=1e-2)
    p.bind(o)
    return m, p, o


def _run(m, p, o, start, stop):
    for step in range(start, stop):
        g = torch.Generator().manual_seed(1000 + step)  # data depends on the step only
        x, y = torch.randn(16, 64, generator=g), torch.randn(16, 8, generator=g)
        (m(x) - y).pow(2).mean().backward()
        o.step()
        o.zero_grad()
        p.step()


@pytest.mark.parametrize("method", ["sapp", "acdc", "powerprop"])
def test_resume_mid_schedule_is_identical(method):
    m, p, o = _build(method)
    _run(m, p, o, 0, 27)  # mid-schedule (criteo: inside the alternating phases)
    buf = io.BytesIO()
    torch.save({"model": m.state_dict(), "opt": o.state_dict(), "pruner": p.state_dict()}, buf)
    _run(m, p, o, 27, TOTAL)
    ref_state = {k: v.clone() for k, v in m.state_dict().items()}
    ref_masks = p.masks()

    m2, p2, o2 = _build(method)
    buf.seek(0)
    ck = torch.load(buf)
    m2.load_state_dict(ck["model"])
    o2.load_state_dict(ck["opt"])
    p2.load_state_dict(ck["pruner"])
    assert p2.step_count == 27 and p2.phase == p.schedule.phase(27 / TOTAL)
    _run(m2, p2, o2, 27, TOTAL)
    for a, b in zip(ref_masks, p2.masks()):
        assert torch.equal(a, b)
    st = m2.state_dict()
    assert set(st) == set(ref_state)
    for k in ref_state:
        assert torch.equal(st[k], ref_state[k]), k
    assert p2.n_resets == p.n_resets
    if method == "sapp":
        assert any(k.endswith("logits") for k in st)


def test_load_state_rejects_other_config():
    m, p, o = _build("sapp")
    st = p.state_dict()
    st["block"] = 16
    with pytest.raises(ValueError, match="state: saved block"):
        p.load_state_dict(st)
