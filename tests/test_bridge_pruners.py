"""Training-time pruners: phase boundaries, exact sparsity, optimizer resets, SA++ attention and clipping,
PowerProp reparametrization, autocast and torch.compile."""
import math

import pytest
import torch

from groupsparse.schedules import exp_ramp
from nn_bridge.models import MLP
from nn_bridge.pruners import make_pruner

TOTAL = 100


def _train(model, pruner, opt, steps, record=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(16, 64, generator=g)
        y = torch.randn(16, 8, generator=g)
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        pruner.step()
        if record is not None:
            record(pruner)


def _setup(method, sparsity=0.75, opt="sgd", **kw):
    torch.manual_seed(0)
    m = MLP(64, 128, 8)  # fc1: 64x128 -> 128 blocks of 8; fc2: 128x128 -> 256 blocks; fc3 too small
    kw.setdefault("preset", "criteo")
    p = make_pruner(method, m, sparsity, 8, total_steps=TOTAL, min_blocks=100, **kw)
    o = (torch.optim.SGD(p.weight_parameters(), lr=0.01, momentum=0.9) if opt == "sgd"
         else torch.optim.Adam(p.weight_parameters(), lr=1e-3))
    p.bind(o)
    return m, p, o


def test_magnitude_dense_then_exact_topk_cut():
    m, p, o = _setup("magnitude", 0.75)
    assert [t.name for t in p.tilings] == ["fc1", "fc2"]
    _train(m, p, o, 79)
    assert all(float(q.mask.min()) == 1.0 for q in p.params)  # dense until 80% (criteo finetune = 20%)
    _train(m, p, o, 1, seed=1)  # the cut happens in this step's pruner.step(), after the weight update
    norms = [t.block_norms(m.get_submodule(t.name).parametrizations.weight.original.detach())
             for t in p.tilings]
    for q, t, nrm in zip(p.params, p.tilings, norms):
        assert int(q.mask.sum()) == round(0.25 * t.n_blocks)
        # kept blocks are exactly the largest-norm ones (stored weights are masked, not zeroed)
        kept_min = nrm[q.mask > 0].min()
        assert kept_min >= nrm[q.mask == 0].max()
    _train(m, p, o, 20, seed=2)
    rep = p.finalize()
    assert rep.block_sparsity == pytest.approx(0.75, abs=1e-12)
    assert [r["kept"] for r in rep.rows] == [32, 64]
    assert p.n_resets == 0


def test_acdc_phases_masks_and_momentum_reset():
    m, p, o = _setup("acdc", 0.9)
    kinds, resets, states = [], [], []

    def rec(pr):
        kinds.append(pr.phase.kind)
        resets.append(pr.n_resets)
        states.append(len(o.state))
        for q, t in zip(pr.params, pr.tilings):
            k = int(q.mask.sum())
            assert k == (t.n_blocks if pr.phase.kind == "dense" else round(0.1 * t.n_blocks))

    _train(m, p, o, TOTAL, record=rec)
    # criteo ACDC: 20% dense, 10 x (sparse 3%, dense 3%), 20% sparse -> 10 decompressions, each resets momentum
    n_decompress = sum(1 for a, b in zip(kinds[:-1], kinds[1:]) if a == "sparse" and b == "dense")
    assert n_decompress == 10
    assert p.n_resets == 10
    # right after a reset the optimizer holds no momentum buffers
    for i in range(1, TOTAL):
        if resets[i] > resets[i - 1]:
            assert states[i] == 0 and kinds[i] == "dense"
    assert kinds[-1] == "sparse"


def test_sapp_starts_as_identity_and_follows_exp_ramp_with_resets():
    torch.manual_seed(0)
    m0 = MLP(64, 128, 8)
    x = torch.randn(4, 64)
    ref = m0(x)
    m, p, o = _setup("sapp", 0.8, opt="adam")
    assert torch.allclose(m(x), ref, atol=1e-6)  # logits 0 -> A = 1: attaching changes nothing
    # logits are in the optimizer, in their own group with weight decay
    groups = [g for g in o.param_groups if any(q is p.params[0].logits for q in g["params"])]
    assert len(groups) == 1 and groups[0]["weight_decay"] == pytest.approx(1e-4)

    seen = []

    def rec(pr):
        seen.append((pr.step_count, pr.phase, [int(q.mask.sum()) for q in pr.params]))

    _train(m, p, o, TOTAL, record=rec)
    sched = p.schedule
    for step, ph, kept in seen:
        t = step / TOTAL
        if ph.kind == "sparsification" and step < TOTAL:
            s = exp_ramp((t - ph.start) / (ph.end - ph.start), 0.8)
            assert kept == [round((1 - s) * tl.n_blocks) for tl in p.tilings], (step, ph)
        elif ph.kind == "sparse":
            assert kept == [round(0.2 * tl.n_blocks) for tl in p.tilings]
        else:
            assert kept == [tl.n_blocks for tl in p.tilings]
    # one optimizer reset per phase boundary crossed
    n_boundaries = sum(1 for a, b in zip(seen[:-1], seen[1:]) if a[1] != b[1])
    n_boundaries += seen[0][1] != sched.phases[0]
    assert p.n_resets == n_boundaries == len(sched.phases) - 1


def test_sapp_attention_is_clipped_to_density_bounds():
    m, p, o = _setup("sapp", 0.75)
    q = p.params[0]
    with torch.no_grad():
        q.logits.zero_()
        q.logits[0] = 50.0  # softmax -> one-hot: unclipped A would be n = 128 and 0 elsewhere
    a = q.attention()
    assert float(a.max()) == pytest.approx(1 / 0.25) and float(a.min()) == pytest.approx(0.25)
    # the effective weight of block 0 is W * 4 exactly
    t = p.tilings[0]
    w = m.fc1.parametrizations.weight.original
    eff = m.fc1.weight
    blk0 = t.scale(torch.ones_like(w), torch.nn.functional.one_hot(torch.tensor(0), t.n_blocks).float()) > 0
    assert torch.allclose(eff[blk0], 4 * w[blk0])


def test_powerprop_reparametrization_preserves_function_and_scores_squared_norms():
    torch.manual_seed(0)
    m = MLP(64, 128, 8)
    x = torch.randn(4, 64)
    ref = m(x)
    w_ref = m.fc2.weight.detach().clone()
    p = make_pruner("powerprop", m, 0.5, 8, total_steps=10, min_blocks=100)
    assert torch.allclose(m(x), ref, atol=1e-5)
    t = p.tilings[1]
    b = m.fc2.parametrizations.weight.original
    # stored b has block norms sqrt(||W_block||); score is ||W_block|| = ||b_block||^2
    assert torch.allclose(t.block_norms(b.detach()) ** 2, t.block_norms(w_ref), rtol=1e-5)
    assert torch.allclose(p.scores()[1], t.block_norms(w_ref), rtol=1e-5)


def test_autocast_bf16_cpu():
    m, p, o = _setup("sapp", 0.5)
    with torch.no_grad():
        for q in p.params:
            q.logits.normal_(0, 0.3)
    x = torch.randn(16, 64)
    ref = m(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
        assert y.dtype == torch.bfloat16
        y.float().pow(2).sum().backward()
    # bf16 has 8 mantissa bits: relative error ~ 2^-8 per op, a few ops deep
    assert (y.float() - ref).abs().max() <= 0.05 * ref.abs().max()
    g = p.params[0].logits.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_torch_compile_matches_eager():
    torch.set_num_threads(1)
    m, p, o = _setup("sapp", 0.5)
    _train(m, p, o, 35)  # inside a sparse phase: masks and attention both active
    x = torch.randn(8, 64)
    ref = m(x)
    cm = torch.compile(m)
    y = cm(x)
    assert torch.allclose(y, ref, atol=1e-5)
    y.sum().backward()
    assert p.params[1].logits.grad.abs().sum() > 0
