"""Penalties, Problem and solvers: properties the other tests did not pin (issue 16: found by mutation testing,
``benchmarks/mutation.py``)."""
from __future__ import annotations

import numpy as np
import pytest

import groupsparse as gs


def test_composite_q_that_saturates_in_floating_point_is_accepted():
    # tanh(40 x) is strictly increasing, but tanh(40) and tanh(400) both round to 1.0: the validation samples q
    # at a few points and must accept ties there (it refuses only a decrease, or no increase at all)
    q = lambda x: np.tanh(40 * np.asarray(x, float))  # noqa: E731
    assert q(1.0) == q(10.0) == 1.0
    pen = gs.CompositePenalty(0.3, q, q_inv=lambda y: np.arctanh(np.asarray(y, float)) / 40)
    # the penalty is usable: lam q^{-1}(q(x)) = lam x below saturation
    assert pen.lam * pen.q_inv(pen.q(0.01)) == pytest.approx(0.3 * 0.01, rel=1e-12)


def _ls_instance(seed, n=120, sizes=(2, 3, 1, 2, 3, 2), K=1):
    rng = np.random.default_rng(seed)
    p = sum(sizes)
    X = rng.standard_normal((n, p))
    B = rng.standard_normal((p, K)) * (rng.random((p, 1)) < 0.5)
    Y = X @ B + 0.1 * rng.standard_normal((n, K))
    return X, (Y[:, 0] if K == 1 else Y), gs.Groups.from_sizes(list(sizes))


@pytest.mark.parametrize("seed", range(3))
def test_mcp_solve_converges_to_a_stationary_point(seed):
    # well-conditioned least squares (n = 120 >> p = 13): BCD must stop on its KKT test, not on an iteration cap,
    # and the point must satisfy MCP's stationarity, computed here from the penalty's definition:
    # rho(r) = lam w r - r^2 / (2 gamma) for r <= gamma lam w, so rho'(r) = max(lam w - r / gamma, 0) and the
    # subdifferential at 0 is the ball of radius lam w
    X, y, groups = _ls_instance(seed)
    n = X.shape[0]
    loss = gs.LeastSquares(X, y)
    lam_max = gs.lambda_max(loss, gs.GroupLasso(1.0), groups)
    lam, gamma = 0.3 * lam_max, 3.0
    sol = gs.solve(loss, gs.GroupMCP(lam, gamma=gamma), groups, tol=1e-10)
    assert sol.converged and sol.certificate_kind == "kkt"
    grad = X.T @ (X @ sol.coef - y) / n
    worst = 0.0
    for g, idx in enumerate(groups.indices):
        w = groups.weights[g]
        b, d = sol.coef[idx], grad[idx]
        r = np.linalg.norm(b)
        if r == 0:
            worst = max(worst, np.linalg.norm(d) - lam * w)
        else:
            worst = max(worst, np.linalg.norm(d + max(lam * w - r / gamma, 0.0) * b / r))
    assert worst <= 1e-6 * lam, worst


def test_coef_matrix_is_the_feature_by_output_layout():
    X, Y, groups = _ls_instance(0, K=3)
    sol = gs.solve(gs.LeastSquares(X, Y), gs.GroupLasso(0.05), groups)
    M = sol.coef_matrix(3)
    p = X.shape[1]
    assert M.shape == (p, 3)
    # coef is row-major over (feature, output): M[j, k] = coef[3 j + k]
    for j, k in ((0, 0), (0, 2), (p - 1, 1)):
        assert M[j, k] == sol.coef[3 * j + k]
