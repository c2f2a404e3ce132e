"""Set functions over groups and their exact constants, by enumeration (theory_checks.md 0.1, 0.3, 1.1, 1.5).

f(S) = L(0) - min{ L(beta) : supp(beta) in the union of the groups of S }, cached on all 2^t subsets (bitmasks).
Least squares refits use lstsq (exact up to ~1e-13); ridge-logistic refits use Newton to ||step|| < 1e-14.
The REFERENCE selection algorithms that the library is compared with also live here, written from their
definitions: best-gain greedy (forward regression) and plain group OMPR.
"""
from __future__ import annotations

from itertools import combinations

import numpy as np
from scipy.special import expit


class SetFunction:
    def __init__(self, X, y, groups, kind="ls", mu=0.0):
        self.X, self.y, self.groups, self.kind, self.mu = X, y, groups, kind, mu
        self.n, self.p = X.shape
        self.t = groups.n_groups
        self.cols = [np.asarray(groups.indices[g]) for g in range(self.t)]
        self._cache = {}
        self.L0 = self.loss(np.zeros(self.p))

    def loss(self, beta):
        z = self.X @ beta
        if self.kind == "ls":
            r = self.y - z
            return 0.5 * r @ r / self.n + 0.5 * self.mu * beta @ beta
        return float(np.mean(np.logaddexp(0.0, z) - self.y * z)) + 0.5 * self.mu * beta @ beta

    def columns(self, mask):
        ids = [g for g in range(self.t) if mask >> g & 1]
        return np.sort(np.concatenate([self.cols[g] for g in ids])) if ids else np.zeros(0, dtype=int)

    def refit(self, mask):
        cols = self.columns(mask)
        beta = np.zeros(self.p)
        if cols.size == 0:
            return beta
        A = self.X[:, cols]
        if self.kind == "ls" and self.mu == 0:
            beta[cols] = np.linalg.lstsq(A, self.y, rcond=None)[0]
            return beta
        if self.kind == "ls":
            beta[cols] = np.linalg.solve(A.T @ A / self.n + self.mu * np.eye(cols.size), A.T @ self.y / self.n)
            return beta
        b = np.zeros(cols.size)
        for _ in range(100):
            s = expit(A @ b)
            g = A.T @ (s - self.y) / self.n + self.mu * b
            H = (A * (s * (1 - s))[:, None]).T @ A / self.n + self.mu * np.eye(cols.size)
            step = np.linalg.solve(H, g)
            b -= step
            if np.linalg.norm(step) < 1e-14 * max(1.0, np.linalg.norm(b)):
                break
        beta[cols] = b
        return beta

    def f(self, mask):
        if mask not in self._cache:
            self._cache[mask] = self.L0 - self.loss(self.refit(mask))
        return self._cache[mask]

    def all_mask(self):
        return (1 << self.t) - 1

    def opt(self, k):
        best, arg = -np.inf, 0
        for S in combinations(range(self.t), k):
            m = to_mask(S)
            if self.f(m) > best:
                best, arg = self.f(m), m
        return best, arg

    def gamma(self, U_mask, k, atol=None):
        """Exact submodularity ratio gamma_{U,k}: min over L subset of U and S disjoint from L, 1 <= |S| <= k.
        Terms whose denominator is below 1e-9 f(all) are skipped (0/0 := 1, theory_checks 0.3)."""
        fall = self.f(self.all_mask())
        thr = 1e-9 * max(fall, 1e-300) if atol is None else atol
        Uids = [g for g in range(self.t) if U_mask >> g & 1]
        best = np.inf
        for r in range(len(Uids) + 1):
            for Lset in combinations(Uids, r):
                L = to_mask(Lset)
                fL = self.f(L)
                rest = [g for g in range(self.t) if not L >> g & 1]
                gains = {x: self.f(L | 1 << x) - fL for x in rest}
                for s in range(1, k + 1):
                    for S in combinations(rest, s):
                        den = self.f(L | to_mask(S)) - fL
                        if den < thr:
                            continue
                        best = min(best, sum(gains[x] for x in S) / den)
        return 1.0 if best == np.inf else best

    def grad(self, beta):
        z = self.X @ beta
        r = (z - self.y) if self.kind == "ls" else (expit(z) - self.y)
        return self.X.T @ r / self.n + self.mu * beta


def to_mask(ids):
    m = 0
    for g in ids:
        m |= 1 << int(g)
    return m


def from_mask(m, t):
    return [g for g in range(t) if m >> g & 1]


def greedy(sf, k, worst=False):
    """REFERENCE best-gain greedy (forward regression with refit); ``worst`` picks the smallest gain (control)."""
    S = 0
    for _ in range(k):
        rest = [g for g in range(sf.t) if not S >> g & 1]
        gains = [sf.f(S | 1 << g) for g in rest]
        S |= 1 << rest[int(np.argmin(gains) if worst else np.argmax(gains))]
    return S


def restricted_constants(X, groups, s):
    """m^grp_s = min over unions T of <= s groups of lambda_min(X_T^T X_T / n) (0 if |T| > n);
    M~^grp = max_g lambda_max(X_g^T X_g / n)."""
    n = X.shape[0]
    t = groups.n_groups
    m = np.inf
    for r in range(1, min(s, t) + 1):
        for T in combinations(range(t), r):
            cols = np.concatenate([groups.indices[g] for g in T])
            if cols.size > n:
                m = 0.0
                continue
            m = min(m, float(np.linalg.eigvalsh(X[:, cols].T @ X[:, cols] / n)[0]))
    Mt = max(float(np.linalg.eigvalsh(X[:, groups.indices[g]].T @ X[:, groups.indices[g]] / n)[-1])
             for g in range(t))
    return max(m, 0.0), Mt
