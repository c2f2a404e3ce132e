"""Saving model + optimizer + pruner state mid-schedule and restoring it gives identical masks, logits, weights
and subsequent steps, for block and N:M pruners alike."""
import io

import pytest
import torch

from nn_bridge.models import MLP
from nn_bridge.pruners import make_pruner

TOTAL = 60


def _build(method, pattern="8x8"):
    torch.manual_seed(0)
    m = MLP(64, 128, 8)
    kw = {} if method in ("asp", "srste", "maxq") else dict(total_steps=TOTAL, preset="criteo")
    if method == "maxq":
        kw.update(steps_per_epoch=10, start=0, end=4, layers="all")
    if pattern == "8x8":
        kw.update(sparsity=0.75, min_blocks=100)
    p = make_pruner(method, m, pattern=pattern, **kw)
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


@pytest.mark.parametrize("method, pattern", [("sapp", "8x8"), ("acdc", "8x8"), ("powerprop", "8x8"),
                                             ("asp", "8x8"), ("sapp", "2:4"), ("acdc", "2:4"), ("srste", "2:4"),
                                             ("maxq", "2:4")])
def test_resume_mid_schedule_is_identical(method, pattern):
    m, p, o = _build(method, pattern)
    _run(m, p, o, 0, 27)  # mid-schedule (criteo: inside the alternating phases)
    buf = io.BytesIO()
    torch.save({"model": m.state_dict(), "opt": o.state_dict(), "pruner": p.state_dict()}, buf)
    _run(m, p, o, 27, TOTAL)
    ref_state = {k: v.clone() for k, v in m.state_dict().items()}
    ref_masks = p.masks()

    m2, p2, o2 = _build(method, pattern)
    buf.seek(0)
    ck = torch.load(buf)
    m2.load_state_dict(ck["model"])
    o2.load_state_dict(ck["opt"])
    p2.load_state_dict(ck["pruner"])
    assert p2.step_count == 27
    if hasattr(p, "phase"):
        assert p2.phase == p.schedule.phase(27 / TOTAL)
    _run(m2, p2, o2, 27, TOTAL)
    for a, b in zip(ref_masks, p2.masks()):
        assert torch.equal(a, b)
    st = m2.state_dict()
    assert set(st) == set(ref_state)
    for k in ref_state:
        assert torch.equal(st[k], ref_state[k]), k
    assert getattr(p2, "n_resets", 0) == getattr(p, "n_resets", 0)
    # the state names the pattern the way its kind always did
    assert ("block" in p.state_dict()) == (pattern == "8x8") and ("pattern" in p.state_dict()) == (pattern != "8x8")
    if method == "sapp":
        assert any(k.endswith("logits") for k in st)


def test_load_state_rejects_other_config():
    m, p, o = _build("sapp")
    st = p.state_dict()
    st["block"] = 16
    with pytest.raises(ValueError, match="state: saved block"):
        p.load_state_dict(st)
