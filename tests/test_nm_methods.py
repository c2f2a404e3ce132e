"""MaxQ, SR-STE and ASP-style: mask values against a transcription of the authors' code, the exact cache, schedule,
gradient rules, folding to an exact N:M pattern for every layer type."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from groupsparse.schedules import maxq_dense_fraction
from nn_bridge.nm import ASPPruner, MaxQPruner, SRSTEPruner, is_nm, maxq_mask, nm_mask, to_groups
from nn_bridge.nm.maxq import MaxQMask
from nn_bridge.nm.srste import masked_ste


# ---------------------------------------------------------------- a literal transcription of maxq_nm.md 1.3
def _axis_soft_ref(X, s, tau):
    idx = int(s * X.shape[1])
    srt, order = X.sort(1)
    thr = srt[:, idx - 1:idx + 1].mean(1, keepdim=True)
    keep = torch.ones_like(X).scatter(1, order[:, :idx], 0)
    return keep * torch.sigmoid((X - thr) / tau)


def _maxq_ref(W, N, M, p, tau=1e-2):
    A = W.detach().abs()
    Cout, Cin, k, _ = A.shape
    G = A.permute(0, 2, 3, 1).reshape(-1, M)
    L = torch.ones_like(G).scatter(1, torch.argsort(G, dim=1)[:, :M - N], 0)
    nd = int(p * G.shape[0])
    L[torch.argsort(G.sum(1))[:nd]] = 1
    L = L.reshape(Cout, k, k, Cin).permute(0, 3, 1, 2)
    s = (M - N) / M
    F = _axis_soft_ref(A.flatten(1), s, tau).reshape_as(A)
    P = _axis_soft_ref(A.reshape(Cout * Cin, k * k).T, s, tau).T.reshape_as(A) if k == 3 else 0
    return L * (1 + F + P)


@pytest.mark.parametrize("shape", [(16, 32, 3, 3), (32, 16, 1, 1)])
@pytest.mark.parametrize("nm", [(2, 4), (1, 4), (1, 16)])
@pytest.mark.parametrize("p", [0.0, 0.37, 1.0])
def test_maxq_mask_matches_authors_code(shape, nm, p):
    torch.manual_seed(1)
    W = torch.randn(shape) * 0.05  # ImageNet-like magnitudes, so the tau = 0.01 sigmoid is not a pure step
    S = maxq_mask(W, *nm, p=p)
    R = _maxq_ref(W, *nm, p)
    torch.testing.assert_close(S, R, atol=1e-6, rtol=0)
    top = 3.0 if shape[2] == 3 else 2.0
    assert float(S.max()) <= top and float(S[S > 0].min()) >= 1.0
    # dense groups: exactly int(p * n_groups) groups beyond the N:M pattern kept whole
    n, m = nm
    ng = W.numel() // m
    full = int((to_groups(S, m) > 0).all(1).sum())
    assert full == int(p * ng)


def test_maxq_dense_groups_are_smallest_l1():
    torch.manual_seed(0)
    W = torch.randn(8, 16, 3, 3)
    S = maxq_mask(W, 1, 4, p=0.25)
    G, SG = to_groups(W.abs(), 4), to_groups(S, 4)
    dense = (SG > 0).all(1)
    assert float(G.sum(1)[dense].max()) <= float(G.sum(1)[~dense].min())


def test_maxq_cache_is_exact_and_cheap():
    """'auto' refresh: after small weight moves S equals the full recompute and no sort ran; big moves recompute."""
    torch.manual_seed(0)
    W = torch.randn(16, 32, 3, 3) * 0.05
    prm = MaxQMask(W.shape, 2, 4, refresh="auto")
    prm.set_dense_fraction(0.3)
    prm.mask(W)
    for step in range(20):
        W = W + 1e-7 * torch.randn_like(W)
        S = prm.mask(W)
        torch.testing.assert_close(S, maxq_mask(W, 2, 4, p=0.3), atol=1e-6, rtol=0)
    assert prm.n_soft > 0
    soft0 = prm.n_soft
    for step in range(5):
        W = W + 1e-2 * torch.randn_like(W)  # flips choices: must recompute, still exact
        torch.testing.assert_close(prm.mask(W), maxq_mask(W, 2, 4, p=0.3), atol=1e-6, rtol=0)
    assert prm.n_soft == soft0 and prm.n_full >= 6
    prm.set_dense_fraction(0.1)  # schedule move -> full recompute
    full = prm.n_full
    torch.testing.assert_close(prm.mask(W), maxq_mask(W, 2, 4, p=0.1), atol=1e-6, rtol=0)
    assert prm.n_full == full + 1


def test_maxq_refresh_every_k_reuses():
    W = torch.randn(8, 16, 3, 3)
    prm = MaxQMask(W.shape, 2, 4, refresh=3)
    S0 = prm.mask(W)
    W2 = W + 0.5 * torch.randn_like(W)
    assert torch.equal(prm.mask(W2), S0) and torch.equal(prm.mask(W2), S0)
    torch.testing.assert_close(prm.mask(W2), maxq_mask(W2, 2, 4))  # 4th call: recompute
    assert (prm.n_full, prm.n_reuse) == (2, 2)


def test_schedule_values_and_pruner_epochs():
    # linear 0..30 as in the authors' ImageNet scripts
    assert maxq_dense_fraction(0, 0, 30) == 1.0
    assert maxq_dense_fraction(15, 0, 30) == pytest.approx(0.5)
    assert maxq_dense_fraction(30, 0, 30) == 0.0
    assert maxq_dense_fraction(10, 0, 20, "cubic") == pytest.approx(0.125)
    assert maxq_dense_fraction(10, 0, 20, "cos") == pytest.approx(math.cos(math.pi / 4))
    sch = 1 - np.exp(-0.05 * np.arange(20))
    assert maxq_dense_fraction(7, 0, 20, "exp") == pytest.approx(1 - sch[7] / sch[-1])
    assert maxq_dense_fraction(5, 0, 0) == 0.0
    model = nn.Sequential(nn.Conv2d(16, 16, 3), nn.Conv2d(16, 16, 3))
    pr = MaxQPruner(model, "1:4", steps_per_epoch=2, start=0, end=4, layers="all")
    ps = []
    for _ in range(10):
        ps.append(pr.params[0].p)
        pr.step()
    assert ps == [1.0, 1.0, 0.75, 0.75, 0.5, 0.5, 0.25, 0.25, 0.0, 0.0]


def test_ste_and_srste_decay_gradients():
    torch.manual_seed(0)
    w2 = torch.randn(4, 8, 3, 3, requires_grad=True)
    S = maxq_mask(w2, 1, 4)
    c = torch.randn_like(w2)
    lam = 0.1
    (masked_ste(w2, S, lam) * c).sum().backward()
    expected = c + lam * (1 - S.clamp(0, 1)) * w2.detach()
    torch.testing.assert_close(w2.grad, expected)
    # pruned weights: gradient c + lam*w; kept (S >= 1): exactly c, not c*S (straight-through)
    pr = S == 0
    torch.testing.assert_close(w2.grad[pr], (c + lam * w2.detach())[pr])
    torch.testing.assert_close(w2.grad[~pr], c[~pr])
    # SR-STE pruner end-to-end through the parametrization
    lin = nn.Sequential(nn.Linear(8, 4))
    pruner = SRSTEPruner(lin, "2:4", decay=0.05, layers="all")
    x = torch.randn(5, 8)
    lin(x).sum().backward()
    W = pruner.original("0").detach()
    E = nm_mask(W, 2, 4).float()
    torch.testing.assert_close(pruner.original("0").grad, x.sum(0).expand(4, 8) + 0.05 * (1 - E) * W)


def _models():
    return {
        "linear": (nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 8)), torch.randn(6, 32)),
        "conv3x3": (nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 16, 3)),
                    torch.randn(2, 16, 6, 6)),
        "conv1x1": (nn.Sequential(nn.Conv2d(16, 16, 1), nn.Conv2d(16, 32, 1, stride=2)), torch.randn(2, 16, 5, 5)),
        "conv1d": (nn.Sequential(nn.Conv1d(16, 16, 3)), torch.randn(2, 16, 9)),
    }


@pytest.mark.parametrize("method", ["maxq", "srste", "asp"])
@pytest.mark.parametrize("kind", ["linear", "conv3x3", "conv1x1", "conv1d"])
@pytest.mark.parametrize("nm", [(2, 4), (1, 16)])
def test_finalize_exact_nm_every_layer_type(method, kind, nm):
    torch.manual_seed(0)
    model, x = _models()[kind]
    cls = {"maxq": MaxQPruner, "srste": SRSTEPruner, "asp": ASPPruner}[method]
    kw = dict(steps_per_epoch=1, start=0, end=2) if method == "maxq" else {}
    pr = cls(model, nm, layers="all", **kw)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(4):
        model(x).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
        pr.step()
    with torch.no_grad():
        before = model(x)
    eff = [pr.original(n).detach() * m for n, m in zip(pr.names, pr.masks())]
    rep = pr.finalize()
    assert rep["exact_nm"] and rep["n_layers"] == len(pr.names)
    for name, e in zip(pr.names, eff):
        w = model.get_submodule(name).weight
        assert isinstance(w, nn.Parameter)
        assert is_nm(w, *nm, exact=True)
        torch.testing.assert_close(w.detach(), e)
    with torch.no_grad():
        torch.testing.assert_close(model(x), before)  # folding leaves the function unchanged (p = 0 by now)


def test_maxq_fold_before_schedule_end_warns_and_is_exact():
    model = nn.Sequential(nn.Conv2d(16, 16, 3))
    pr = MaxQPruner(model, "2:4", steps_per_epoch=10, start=0, end=5, layers="all")
    with pytest.warns(UserWarning, match="dense"):
        rep = pr.finalize()
    assert rep["exact_nm"]


def test_asp_mask_fixed_and_zero_gradient():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8))
    W0 = model[0].weight.detach().clone()
    pr = ASPPruner(model, "2:4", layers="all")
    mask = nm_mask(W0, 2, 4)
    assert torch.equal(pr.params[0].mask.bool(), mask)
    assert torch.equal(pr.original("0").detach(), W0 * mask)  # pruned weights zeroed, as ASP does
    x = torch.randn(4, 16)
    model(x).sum().backward()
    g = pr.original("0").grad
    assert bool((g[~mask] == 0).all()) and bool((g[mask] != 0).all())
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    for _ in range(3):
        opt.step()
        opt.zero_grad()
        model(x).sum().backward()
    assert torch.equal(pr.params[0].mask.bool(), mask)
    assert bool((model[0].weight[~mask] == 0).all())


def test_pruner_state_roundtrip_and_errors():
    model = nn.Sequential(nn.Conv2d(16, 16, 3))
    pr = MaxQPruner(model, "2:4", steps_per_epoch=3, start=0, end=3, layers="all")
    for _ in range(4):
        pr.step()
    st = pr.state_dict()
    model2 = nn.Sequential(nn.Conv2d(16, 16, 3))
    pr2 = MaxQPruner(model2, "2:4", steps_per_epoch=3, start=0, end=3, layers="all")
    pr2.load_state_dict(st)
    assert pr2.epoch == 1 and pr2.params[0].p == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="parametrization"):
        SRSTEPruner(model, "2:4", layers="all")
    with pytest.raises(ValueError, match="pattern"):
        SRSTEPruner(nn.Linear(8, 8), "2-4")
    with pytest.raises(ValueError, match="refresh"):
        MaxQPruner(nn.Sequential(nn.Conv2d(16, 16, 3)), "2:4", refresh="never", layers="all")
    with pytest.raises(ValueError, match="start/end"):
        MaxQPruner(nn.Sequential(nn.Conv2d(16, 16, 3)), "2:4", start=5, end=2, layers="all")
