"""Each penalty's scalar prox is the global minimiser of its 1-D problem, for any step; values and slopes agree."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import groupsparse as gs
from groupsparse.penalties import exp_mask_q

PENALTIES = [
    gs.GroupLasso(0.7),
    gs.GroupMCP(0.7, gamma=3.0),
    gs.GroupMCP(0.7, gamma=1.5),
    gs.GroupSCAD(0.7, gamma=3.7),
    gs.GroupSCAD(0.7, gamma=2.2),
    gs.GroupLogSum(0.7, eps=0.3),
    gs.GroupLogSum(0.7, eps=2.0),
    gs.GroupBridge(0.7, q=0.5),
    gs.GroupBridge(0.7, q=2 / 3),
    gs.GroupBridge(0.7, q=0.2),
    gs.ExpMaskPenalty(0.7),
]


def _brute(pen, r, t, lw):
    """Fine grid on [0, r] plus local refinement: the reference minimum value (the prox lies in [0, r])."""
    xs = np.linspace(0.0, r, 200_001)
    obj = (xs - r) ** 2 / (2 * t) + np.asarray(pen.rho(xs, lw), float)
    i = int(np.argmin(obj))
    lo, hi = xs[max(i - 1, 0)], xs[min(i + 1, xs.size - 1)]
    xs2 = np.linspace(lo, hi, 20_001)
    obj2 = (xs2 - r) ** 2 / (2 * t) + np.asarray(pen.rho(xs2, lw), float)
    return float(obj2.min())


@pytest.mark.parametrize("pen", PENALTIES, ids=lambda p: repr(p))
@settings(max_examples=40, deadline=None)
@given(r=st.floats(0.0, 8.0), t=st.floats(0.05, 6.0), w=st.floats(0.2, 3.0))
def test_prox_is_global_minimiser(pen, r, t, w):
    lw = pen.lam * w
    x = pen.prox_scalar(r, t, lw)
    assert 0.0 <= x <= r + 1e-12
    fx = (x - r) ** 2 / (2 * t) + float(pen.rho(x, lw))
    ref = _brute(pen, r, t, lw)
    # the brute force is exact up to its grid: the prox value may not exceed it beyond rounding
    assert fx <= ref + 1e-9 * max(1.0, abs(ref))


def test_mcp_prox_large_step_is_hard_threshold():
    # t >= gamma: the scalar problem is concave on [0, gamma*lw]; skglm's formula returns 0 wrongly here
    pen = gs.GroupMCP(1.0, gamma=3.0)
    for r in (3.5, 3.7, 3.9):
        assert pen.prox_scalar(r, 4.0, 1.0) == r
    assert pen.prox_scalar(3.4, 4.0, 1.0) == 0.0  # below lw*sqrt(gamma*t) = sqrt(12) = 3.46


def test_log_sum_prox_near_degenerate_radicand():
    # skglm's bisection returns 0 here (NaN radicand); the true prox is nonzero (solver_anchors.md 5.5)
    pen = gs.GroupLogSum(1.0, eps=0.1463)
    for r, expected in [(1.8, 1.40), (2.5, 2.24), (3.0, 2.80), (4.0, 3.84)]:  # values as printed, 2 decimals
        x = pen.prox_scalar(r, 1.0, 0.6233)
        assert x == pytest.approx(expected, abs=0.02)
        assert (x - r) ** 2 / 2 + float(pen.rho(x, 0.6233)) <= _brute(pen, r, 1.0, 0.6233) + 1e-12


def test_bridge_half_matches_half_thresholding_closed_form():
    # Xu et al.'s half-thresholding: 0 below (3/2) u^(2/3), else (2/3) r (1 + cos((2/3) arccos(-(3^1.5/4) u r^-1.5)))
    pen = gs.GroupBridge(1.0, q=0.5)
    rng = np.random.default_rng(0)
    for _ in range(200):
        r, u = rng.uniform(0, 5), rng.uniform(0.01, 2)
        x = pen.prox_scalar(r, 1.0, u)
        if r > 1.5 * u ** (2 / 3) * 1.0001:
            ref = (2 / 3) * r * (1 + math.cos((2 / 3) * math.acos(-(3 ** 1.5 / 4) * u * r ** -1.5)))
            assert x == pytest.approx(ref, rel=1e-12)
        elif r < 1.5 * u ** (2 / 3) * 0.9999:
            assert x == 0.0


def test_slopes_match_finite_differences():
    r = np.linspace(0.05, 6, 97)
    for pen in PENALTIES:
        lw = pen.lam * 1.3
        h = 1e-6
        fd = (pen.rho(r + h, lw) - pen.rho(r - h, lw)) / (2 * h)
        ok = np.abs(fd - pen.drho(r, lw)) <= 1e-5 * np.maximum(1, np.abs(fd))
        # kinks of SCAD/MCP sit exactly on grid points only by accident; allow them out
        assert ok.mean() > 0.97, repr(pen)


def test_exp_mask_q_is_the_lemma_2_1_minimum():
    # q(a) = min_w w^2 + a^2 e^{-2w}  (Lemma 2.1's per-group identity)
    from scipy.optimize import minimize_scalar
    for a in [1e-3, 0.1, 0.5, 1, 2, 10, 100]:
        res = minimize_scalar(lambda w: w * w + a * a * math.exp(-2 * w), bounds=(-5, 10), method="bounded",
                              options={"xatol": 1e-12})
        assert float(exp_mask_q(a)) == pytest.approx(res.fun, rel=1e-8)


def test_sparse_group_lasso_prox_is_minimiser():
    pen = gs.SparseGroupLasso(0.5, l1_ratio=0.4)
    rng = np.random.default_rng(1)
    from scipy.optimize import minimize
    for _ in range(20):
        z = rng.standard_normal(4) * 2
        t, w = rng.uniform(0.2, 2), 2.0
        x = pen.prox_group(z, t, w)

        def f(v):
            return np.sum((v - z) ** 2) / (2 * t) + pen.lam * (pen.l1_ratio * np.abs(v).sum()
                                                             + (1 - pen.l1_ratio) * w * np.linalg.norm(v))
        best = min(minimize(f, x0, method="Powell", options={"xtol": 1e-12, "ftol": 1e-14}).fun
                   for x0 in [x + 1e-3, np.zeros(4), z])
        assert f(x) <= best + 1e-9


def test_composite_reduces_to_group_lasso_for_identity_q():
    # q(x) = x: lam * q^{-1}(sum q(r_g)) = lam * sum r_g, the (unweighted) group lasso
    comp = gs.CompositePenalty(0.3, q=lambda x: x, q_inv=lambda s: s, dq=lambda x: 1.0)
    for r, t, rest in [(2.0, 1.0, 0.5), (0.2, 1.0, 3.0), (1.0, 0.5, 0.0)]:
        assert comp.prox_given_rest(r, t, rest) == pytest.approx(max(r - t * 0.3, 0.0), abs=1e-12)


@pytest.mark.parametrize("bad", [
    (lambda: gs.GroupLasso(-1.0), "lam"),
    (lambda: gs.GroupLasso(float("nan")), "lam"),
    (lambda: gs.GroupMCP(1.0, gamma=1.0), "gamma"),
    (lambda: gs.GroupSCAD(1.0, gamma=2.0), "gamma"),
    (lambda: gs.GroupBridge(1.0, q=1.0), "q"),
    (lambda: gs.GroupLogSum(1.0, eps=0.0), "eps"),
    (lambda: gs.SparseGroupLasso(1.0, l1_ratio=1.5), "l1_ratio"),
    (lambda: gs.CompositePenalty(1.0, q=lambda x: x + 1), "q"),
])
def test_bad_parameters_are_named(bad):
    fn, name = bad
    with pytest.raises(ValueError, match=name):
        fn()
