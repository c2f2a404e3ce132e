"""Independent group-lasso formulas (theory_checks.md 6, [D✓]) for least squares and logistic regression:
primal, a feasible dual point built from any beta, dual value, lambda_max, KKT residuals.  Nothing here calls
groupsparse, so the library's solvers and certificates are checked against it."""
from __future__ import annotations

import numpy as np
from scipy.special import expit, log1p, xlogy

import groupsparse as gs

from ._instances import DESIGNS, design


def instance(params):
    """LS or logistic (labels 0/1, no intercept) with default sqrt(size) weights; n > p (strong convexity for LS)."""
    rng = np.random.default_rng(params["seed"])
    sizes = [int(s) for s in rng.integers(1, 5, size=params["t"])]
    p = sum(sizes)
    n = p + params["extra_n"]
    X = design(params["design"], n, p, rng, rho=0.5)
    groups = gs.Groups.from_sizes(sizes)
    beta = np.zeros(p)
    beta[: sizes[0]] = rng.standard_normal(sizes[0])
    if len(sizes) > 2:
        beta[sizes[0] + sizes[1]: sizes[0] + sizes[1] + sizes[2]] = rng.standard_normal(sizes[2])
    z = X @ beta
    if params["loss"] == "ls":
        y = z + 0.5 * rng.standard_normal(n)
        loss = gs.LeastSquares(X, y)
    else:
        y = (rng.random(n) < expit(z)).astype(float)
        loss = gs.Logistic(X, y)
    return X, y, groups, loss


def group_norms(groups, v):
    return groups.norms(np.asarray(v, float))


def primal(kind, X, y, groups, lam, beta):
    n = X.shape[0]
    z = X @ beta
    pen = lam * float(groups.weights @ group_norms(groups, beta))
    if kind == "ls":
        r = y - z
        return 0.5 * r @ r / n + pen
    ys = 2 * y - 1
    return float(np.mean(np.logaddexp(0.0, -ys * z))) + pen


def lambda_max(kind, X, y, groups):
    n = X.shape[0]
    v = y if kind == "ls" else (y - 0.5)  # -grad L(0) * n: LS X^T y; logistic X^T (y01 - 1/2) = X^T y± / 2
    return float(np.max(group_norms(groups, X.T @ v) / (n * groups.weights)))


def dual_point(kind, X, y, groups, lam, beta, weights=None):
    """A feasible dual point from beta (rescaled residual) and its dual value."""
    n = X.shape[0]
    w = groups.weights if weights is None else weights
    z = X @ beta
    if kind == "ls":
        u = y - z
        c = group_norms(groups, X.T @ u) / (n * w)
        u = u * min(1.0, lam / max(float(np.max(c)), 1e-300))
        return u, (y @ y - (y - u) @ (y - u)) / (2 * n)
    ys = 2 * y - 1
    theta = ys * expit(-ys * z) / n
    c = group_norms(groups, X.T @ theta) / w
    theta = theta * min(1.0, lam / max(float(np.max(c)), 1e-300))
    a = np.clip(n * theta * ys, 0.0, 1.0)
    return theta, -float(np.sum(xlogy(a, a) + xlogy(1 - a, 1 - a))) / n


def gap(kind, X, y, groups, lam, beta, weights=None):
    P = primal(kind, X, y, groups, lam, beta)
    u, D = dual_point(kind, X, y, groups, lam, beta, weights)
    return P - D, P, u


def correlations(kind, X, y, beta):
    """c = -grad L(beta) (X^T r / n for LS)."""
    n = X.shape[0]
    z = X @ beta
    r = (y - z) if kind == "ls" else (y - expit(z))
    return X.T @ r / n


def kkt_residuals(kind, X, y, groups, lam, beta):
    c = correlations(kind, X, y, beta)
    bn = group_norms(groups, beta)
    out = np.empty(groups.n_groups)
    for g, idx in enumerate(groups.indices):
        lw = lam * groups.weights[g]
        if bn[g] > 0:
            out[g] = np.linalg.norm(c[idx] - lw * beta[idx] / bn[g])
        else:
            out[g] = max(np.linalg.norm(c[idx]) - lw, 0.0)
    return out, bn


def strategy(st, seeds):
    return st.fixed_dictionaries({
        "seed": seeds(), "loss": st.sampled_from(["ls", "logistic"]), "design": st.sampled_from(DESIGNS),
        "t": st.integers(2, 6), "extra_n": st.integers(5, 30), "lam_ratio": st.floats(0.05, 0.99),
        "solver": st.sampled_from(["bcd", "fista"])})
