"""Certified lower bound on the best k-group objective  min{L(b) : at most k nonzero groups}.

Perspective relaxation (Ceria & Soares 1999; Gunluk & Linderoth 2010; "eigenvalue perspective" of Dong, Chen &
Linderoth 2015 for least squares): split the Hessian H + ridge I = (H + ridge I - delta I) + delta I with
delta = lambda_min(H) + ridge >= 0.  For a k-sparse b with indicator z in {0,1}^G, ||b_g||^2 = ||b_g||^2 / z_g,
so relaxing z to {0 <= z <= 1, sum z <= k} gives the convex program

    min_{b, z}  1/2 b^T (H + ridge I - delta I) b - <B, b> + c + delta/2 sum_g ||b_g||^2 / z_g,

whose optimum is <= the best k-group objective (solved with cvxpy / Clarabel; a small margin covers the solver
tolerance).  When delta = 0 (p > n without a ridge: every block diagonal split of a singular H is 0) the
relaxation says nothing beyond the unconstrained minimum, which is then returned: the bound is valid but weak,
and ``info['bound_kind']`` says so.  Least squares with one output (X or Gram form); logistic / multinomial get
the trivial bound 0 (both losses are nonnegative).
"""
from __future__ import annotations

import numpy as np

from .._array import to_numpy

__all__ = ["lower_bound"]


def _centered_Xy(loss, p):
    """Dense feature columns and target of a one-output least-squares loss, centered when it fits an intercept
    (which profiles the intercept out)."""
    X = loss.X[:, :p]
    X = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
    y = loss.Y[:, 0]
    if loss.fit_intercept:
        X = X - X.mean(axis=0)
        y = y - y.mean()
    return X, y, loss.n_samples


def _gram(bp):
    """(H, b, c) of the feature part of a one-output least-squares loss, intercept profiled out (numpy)."""
    loss = bp.loss
    if bp.gram:
        return to_numpy(loss.H).astype(float), to_numpy(loss.B)[:, 0].astype(float), float(loss.c)
    X, y, n = _centered_Xy(loss, bp.p)
    return X.T @ X / n, X.T @ y / n, float(y @ y) / (2 * n)


def _unconstrained(bp):
    """min over all coefficients (a valid, weak bound): least squares via lstsq."""
    loss = bp.loss
    if bp.gram:
        H, b, c = _gram(bp)
        H = H + loss.ridge * np.eye(H.shape[0])
        w = np.linalg.lstsq(H, b, rcond=None)[0]
        return c - 0.5 * float(w @ b)
    X, y, n = _centered_Xy(loss, bp.p)
    if loss.ridge:
        Xa = np.vstack([X, np.sqrt(n * loss.ridge) * np.eye(X.shape[1])])
        ya = np.concatenate([y, np.zeros(X.shape[1])])
        w = np.linalg.lstsq(Xa, ya, rcond=None)[0]
        r = ya - Xa @ w
    else:
        w = np.linalg.lstsq(X, y, rcond=None)[0]
        r = y - X @ w
    return max(0.5 * float(r @ r) / n, 0.0)


def lower_bound(bp, k, max_features=3000):
    """(lower bound, info) for the best k-group objective of ``bp`` (see module docstring)."""
    if not bp.quadratic or bp.K != 1:
        if bp.quadratic:
            return _unconstrained_multi(bp), {"bound_kind": "unconstrained"}
        return 0.0, {"bound_kind": "trivial (loss >= 0)"}
    n_samples = getattr(bp.loss, "n_samples", None)
    if (n_samples is not None and bp.p > n_samples and not bp.loss.ridge) or bp.p > max_features:
        return _unconstrained(bp), {"bound_kind": "unconstrained (no strongly convex part: p > n, no ridge)"
                                    if bp.p <= max_features or not bp.loss.ridge else "unconstrained (too large)"}
    H, b, c = _gram(bp)
    ridge = bp.loss.ridge
    evals, evecs = np.linalg.eigh(H)
    delta = max(float(evals[0]), 0.0) + ridge
    if delta <= 1e-10 * max(1.0, float(evals[-1])):
        return _unconstrained(bp), {"bound_kind": "unconstrained (lambda_min(H) = 0, no ridge)"}
    import cvxpy as cp
    m = H.shape[0]
    F = np.sqrt(np.maximum(evals + ridge - delta, 0.0))[:, None] * evecs.T
    beta = cp.Variable(m)
    z = cp.Variable(bp.G)
    persp = [cp.quad_over_lin(beta[idx], z[g]) for g, idx in enumerate(bp.groups.indices)]
    obj = 0.5 * cp.sum_squares(F @ beta) - b @ beta + c + 0.5 * delta * cp.sum(cp.hstack(persp))
    prob = cp.Problem(cp.Minimize(obj), [z >= 0, z <= 1, cp.sum(z) <= k])
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-9, tol_gap_rel=1e-9, tol_feas=1e-9)
    if prob.status not in ("optimal", "optimal_inaccurate") or prob.value is None:
        return _unconstrained(bp), {"bound_kind": f"unconstrained (relaxation solve: {prob.status})"}
    val = float(prob.value)
    # covers the interior-point tolerance on the relaxation's optimum (wider when Clarabel reports inaccuracy)
    margin = (1e-7 if prob.status == "optimal" else 1e-4) * (1.0 + abs(val))
    lb = max(val - margin, _unconstrained(bp))
    return lb, {"bound_kind": "perspective", "delta": delta}


def _unconstrained_multi(bp):
    loss = bp.loss
    if bp.gram:
        H = to_numpy(loss.H).astype(float) + loss.ridge * np.eye(bp.p)
        B = to_numpy(loss.B).astype(float)
        Wm = np.linalg.lstsq(H, B, rcond=None)[0]
        return float(loss.c) - 0.5 * float(np.sum(Wm * B))
    X = loss.X
    X = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
    Wm = np.linalg.lstsq(X, loss.Y, rcond=None)[0]
    R = loss.Y - X @ Wm
    return 0.5 * float(np.sum(R * R)) / loss.n_samples if not loss.ridge else 0.0
