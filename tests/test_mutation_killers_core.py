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


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("frac", [0.1, 0.6])
def test_composite_log1p_solve_converges_to_a_stationary_point(seed, frac):
    # SA++ Eq. (1), lam q^{-1}(sum_g q(||beta_g||)) with q = log(1 + x): by the chain rule the gradient of the
    # penalty in a nonzero group is lam exp(S) / (1 + ||beta_g||) beta_g / ||beta_g|| (S = sum_h q(||beta_h||),
    # (q^{-1})' = exp), and at beta_g = 0 the subdifferential is the ball of radius lam exp(S) q'(0) = lam exp(S)
    X, y, groups = _ls_instance(seed)
    n = X.shape[0]
    loss = gs.LeastSquares(X, y)
    lam_max = gs.lambda_max(loss, gs.GroupLasso(1.0), groups)
    lam = frac * lam_max
    pen = gs.CompositePenalty(lam, np.log1p, q_inv=np.expm1, dq=lambda x: 1.0 / (1.0 + x))
    sol = gs.solve(loss, pen, groups, tol=1e-7)
    assert sol.converged and sol.certificate_kind == "kkt"
    grad = X.T @ (X @ sol.coef - y) / n
    norms = groups.norms(sol.coef)
    scale = lam * np.exp(np.sum(np.log1p(norms)))
    worst = 0.0
    for g, idx in enumerate(groups.indices):
        r, d = norms[g], grad[idx]
        worst = max(worst, np.linalg.norm(d) - scale if r == 0 else
                    np.linalg.norm(d + scale / (1 + r) * sol.coef[idx] / r))
    # tol = 1e-7 on the solver's own score; the gradient's scale is lambda_max (its norm at beta = 0)
    assert worst <= 1e-5 * lam_max, worst


@pytest.mark.parametrize("pen", [gs.GroupLasso(0.1), gs.GroupMCP(0.1, gamma=3.0)], ids=["lasso", "mcp"])
def test_warm_start_at_the_solution_certifies_at_the_first_iteration(pen):
    # warm_start / warm_intercept are the solution itself (solved to tol 1e-12): BCD's first certificate test
    # (duality gap or KKT residual at the start) already passes at tol 1e-8, so it stops there with the same point
    X, y, groups = _ls_instance(0, n=80)
    loss = gs.LeastSquares(X, y + 2.0, fit_intercept=True)
    sol = gs.solve(loss, pen, groups, tol=1e-12)
    again = gs.solve(loss, pen, groups, tol=1e-8, solver="bcd", warm_start=sol.coef,
                     warm_intercept=np.asarray(sol.intercept).reshape(1))
    assert again.n_iter == 1 and again.converged
    np.testing.assert_allclose(again.coef, sol.coef, rtol=0, atol=1e-10)
    np.testing.assert_allclose(again.intercept, sol.intercept, rtol=0, atol=1e-10)


@pytest.mark.parametrize("logistic", [False, True], ids=["ridge_ls", "logistic"])
def test_convex_solve_with_an_intercept_certifies_with_a_duality_gap(logistic):
    # a convex penalty, every feature group penalized, a free intercept: the dual point only has to be orthogonal to
    # the intercept column (1^T V = 0), so the solver certifies with a duality gap, and that gap bounds the true
    # suboptimality (against cvxpy)
    cp = pytest.importorskip("cvxpy")
    rng = np.random.default_rng(0)
    sizes, n = [2, 3, 1, 2], 60
    p = sum(sizes)
    X = rng.standard_normal((n, p))
    w = np.array([1.0, 1.5, 0.7, 1.2])
    groups = gs.Groups.from_sizes(sizes, weights=w)
    if logistic:
        y = (rng.random(n) < 1 / (1 + np.exp(-(0.5 * X @ rng.standard_normal(p) + 0.5)))).astype(float)
        loss = gs.Logistic(X, y, fit_intercept=True)
    else:
        y = X @ rng.standard_normal(p) + 0.3 * rng.standard_normal(n) + 3.0
        loss = gs.LeastSquares(X, y, ridge=0.1, fit_intercept=True)
    lam = 0.05
    sol = gs.solve(loss, gs.GroupLasso(lam), groups, tol=1e-10)
    assert sol.certificate_kind == "duality_gap" and sol.converged
    b, b0 = cp.Variable(p), cp.Variable()
    Z = X @ b + b0
    data = (cp.sum(cp.logistic(Z) - cp.multiply(y, Z)) / n if logistic
            else cp.sum_squares(y - Z) / (2 * n) + 0.05 * cp.sum_squares(b))
    ref = cp.Problem(cp.Minimize(data + sum(lam * w[g] * cp.norm2(b[idx]) for g, idx in enumerate(groups.indices))))
    ref.solve(solver=cp.CLARABEL)
    # weak duality: objective - optimum <= gap; cvxpy's own optimum is accurate to ~1e-8
    assert sol.objective - ref.value <= sol.certificate + 1e-7 * max(1.0, abs(ref.value))
