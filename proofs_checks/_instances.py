"""Instance generators (theory_checks.md 0.2): numpy RNG seeded from a hypothesis-drawn integer.

Hypothesis draws a seed and a few sizes; everything else (designs, responses, group sizes) is generated here, so
an instance is reproducible from the params printed in the report.
"""
from __future__ import annotations

import numpy as np

import groupsparse as gs

DESIGNS = ("iid", "equicorr", "toeplitz", "near_dup")


def design(kind, n, p, rng, rho=0.5):
    """X (n x p) of the named kind: iid N(0,1); equicorr(rho); toeplitz(rho); near_dup (a duplicated column)."""
    if kind == "iid":
        return rng.standard_normal((n, p))
    if kind == "equicorr":
        c = rng.standard_normal((n, 1))
        return np.sqrt(1 - rho) * rng.standard_normal((n, p)) + np.sqrt(rho) * c
    if kind == "toeplitz":
        idx = np.arange(p)
        S = rho ** np.abs(idx[:, None] - idx[None, :])
        return rng.standard_normal((n, p)) @ np.linalg.cholesky(S).T
    if kind == "near_dup":
        X = rng.standard_normal((n, p))
        i, j = rng.choice(p, 2, replace=False)
        X[:, j] = X[:, i] + 1e-3 * rng.standard_normal(n)
        return X
    raise ValueError(f"design: unknown kind {kind!r}")


def kappa_design(n, p, kappa, rng):
    """X with X^T X / n having spectrum exactly linspace(1, kappa, p): every restricted condition number <= kappa."""
    Q, _ = np.linalg.qr(rng.standard_normal((n, p)))
    V, _ = np.linalg.qr(rng.standard_normal((p, p)))
    return np.sqrt(n) * Q @ np.diag(np.sqrt(np.linspace(1.0, kappa, p))) @ V.T


def fully_orthonormal(n, p, rng):
    """X^T X / n = I (needs n >= p)."""
    Q, _ = np.linalg.qr(rng.standard_normal((n, p)))
    return np.sqrt(n) * Q


def group_sizes(rng, t, lo=1, hi=3):
    return [int(s) for s in rng.integers(lo, hi + 1, size=t)]


def sparse_beta(rng, sizes, n_active, scale=1.0):
    """A coefficient vector with ``n_active`` random nonzero groups."""
    p = int(sum(sizes))
    beta = np.zeros(p)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    for g in rng.choice(len(sizes), size=min(n_active, len(sizes)), replace=False):
        beta[bounds[g]:bounds[g + 1]] = scale * rng.standard_normal(sizes[g])
    return beta


def unweighted(sizes):
    """Groups with unit weights: the paper's unweighted statements (SA++ Eq. (1)-(2))."""
    return gs.Groups.from_sizes(sizes, weights=np.ones(len(sizes)))


def group_norms(v, groups):
    return groups.norms(np.asarray(v, float))
