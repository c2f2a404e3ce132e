"""REFERENCE scalar penalties, written from their published definitions and independent of groupsparse.penalties:
value rho(r; lw), slope rho'(r) for r > 0, slope at 0+, and the kinks where the 1-D prox objective is not smooth.

Definitions: group lasso lw r; MCP and SCAD as in grpreg (theory_checks.md 3.1, [C] grpreg src/grpreg.c); log-sum
lw log(1 + r/eps) (Candes, Wakin & Boyd 2008); bridge lw r^q (Frank & Friedman 1993); exp mask lw q(r) with
q(a) = W(2a^2)^2/4 + W(2a^2)/2 (SA++ Lemma 2.1); composite lam q^{-1}(rest + q(r)) (SA++ Eq. (1)).

``global_min`` is the reference 1-D minimiser: a fine grid on [0, r] (linear, geometric near 0 and the kinks),
then bounded Brent polishing around every grid local minimum.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import lambertw

import groupsparse as gs

from ._qfuncs import SUBADDITIVE

# q functions with a closed-form inverse and derivative (composite penalties): name -> (q, q_inv, dq)
COMPOSITE_Q = {
    "x^(1/2)": (SUBADDITIVE["x^(1/2)"][0], SUBADDITIVE["x^(1/2)"][1],
                lambda x: 0.5 / math.sqrt(x) if x > 0 else math.inf),
    "x^(2/3)": (SUBADDITIVE["x^(2/3)"][0], SUBADDITIVE["x^(2/3)"][1],
                lambda x: (2 / 3) * x ** (-1 / 3) if x > 0 else math.inf),
    "log(1+x)": (np.log1p, SUBADDITIVE["log(1+x)"][1], lambda x: 1.0 / (1.0 + x)),
}

RADIAL = ("group_lasso", "mcp", "scad", "log_sum", "bridge", "exp_mask")
ALL = RADIAL + ("sparse_group_lasso", "composite")


class Ref:
    """One penalty: the library object (``lib``) and the reference scalar pieces for lw = lam * w."""

    def __init__(self, kind, lam, a):
        """``a`` in [0, 1] picks the shape parameter: gamma (MCP 1.05..5, SCAD 2.05..6), eps, q, l1_ratio, q-func."""
        self.kind, self.lam = kind, lam
        if kind == "group_lasso":
            self.lib = gs.GroupLasso(lam)
        elif kind == "mcp":
            self.gamma = 1.05 + 4 * a
            self.lib = gs.GroupMCP(lam, self.gamma)
        elif kind == "scad":
            self.gamma = 2.05 + 4 * a
            self.lib = gs.GroupSCAD(lam, self.gamma)
        elif kind == "log_sum":
            self.eps = 10 ** (-1.5 + 2.5 * a)
            self.lib = gs.GroupLogSum(lam, self.eps)
        elif kind == "bridge":
            self.q = 0.1 + 0.8 * a
            self.lib = gs.GroupBridge(lam, self.q)
        elif kind == "exp_mask":
            self.lib = gs.ExpMaskPenalty(lam)
        elif kind == "sparse_group_lasso":
            self.alpha = a
            self.lib = gs.SparseGroupLasso(lam, a)
        elif kind == "composite":
            names = sorted(COMPOSITE_Q)
            self.qname = names[min(int(a * len(names)), len(names) - 1)]
            self.q, self.q_inv, self.dq = COMPOSITE_Q[self.qname]
            self.lib = gs.CompositePenalty(lam, self.q, q_inv=self.q_inv, dq=self.dq)
        else:
            raise ValueError(f"kind: unknown penalty {kind!r}")

    # ----- scalar reference pieces (radial penalties) -----
    def rho(self, r, lw):
        r = float(r)
        k = self.kind
        if k == "group_lasso":
            return lw * r
        if k == "mcp":
            g = self.gamma
            return lw * r - r * r / (2 * g) if r <= g * lw else g * lw * lw / 2
        if k == "scad":
            g = self.gamma
            if r <= lw:
                return lw * r
            if r <= g * lw:
                return (2 * g * lw * r - r * r - lw * lw) / (2 * (g - 1))
            return lw * lw * (g + 1) / 2
        if k == "log_sum":
            return lw * math.log1p(r / self.eps)
        if k == "bridge":
            return lw * r ** self.q
        if k == "exp_mask":
            W = float(np.real(lambertw(2 * r * r)))
            return lw * (W * W / 4 + W / 2)
        raise ValueError(k)

    def slope(self, r, lw):
        """rho'(r) for r > 0."""
        k = self.kind
        if k == "group_lasso":
            return lw
        if k == "mcp":
            return max(lw - r / self.gamma, 0.0)
        if k == "scad":
            g = self.gamma
            return lw if r <= lw else max(g * lw - r, 0.0) / (g - 1)
        if k == "log_sum":
            return lw / (self.eps + r)
        if k == "bridge":
            return lw * self.q * r ** (self.q - 1)
        if k == "exp_mask":
            return lw * float(np.real(lambertw(2 * r * r))) / r
        raise ValueError(k)

    def slope0(self, lw):
        """rho'(0+) (the radius of the subdifferential at 0)."""
        k = self.kind
        if k in ("group_lasso", "mcp", "scad"):
            return lw
        if k == "log_sum":
            return lw / self.eps
        if k == "bridge":
            return math.inf if lw > 0 else 0.0
        if k == "exp_mask":
            return 0.0
        raise ValueError(k)

    def kinks(self, lw):
        k = self.kind
        if k in ("mcp", "scad"):
            return [lw, 2 * lw, self.gamma * lw]
        return []

    # ----- whole penalty on a coefficient vector -----
    def value(self, beta, groups):
        beta = np.asarray(beta, float)
        norms = groups.norms(beta)
        if self.kind == "sparse_group_lasso":
            a = self.lam * self.alpha
            return a * float(np.sum(np.abs(beta))) + self.lam * (1 - self.alpha) * float(groups.weights @ norms)
        if self.kind == "composite":
            return self.lam * self.q_inv(sum(self.q(float(r)) for r in norms))
        return float(sum(self.rho(r, self.lam * w) for r, w in zip(norms, groups.weights)))

    def subdiff_distance(self, beta, grad, groups):
        """Per group: distance of -grad_g to the (Frechet) subdifferential of the penalty at beta_g."""
        beta, grad = np.asarray(beta, float), np.asarray(grad, float)
        norms = groups.norms(beta)
        out = np.empty(groups.n_groups)
        if self.kind == "composite":
            S = sum(self.q(float(r)) for r in norms)
            outer = self.lam / self.dq(self.q_inv(S)) if S > 0 else None
        for g, idx in enumerate(groups.indices):
            b, gr, lw = beta[idx], grad[idx], self.lam * groups.weights[g]
            if self.kind == "sparse_group_lasso":
                a, bw = self.lam * self.alpha, self.lam * (1 - self.alpha) * groups.weights[g]
                if norms[g] == 0:  # -grad in a [-1, 1]^d + bw Ball: distance ||soft(grad, a)|| - bw
                    out[g] = max(np.linalg.norm(np.sign(gr) * np.maximum(np.abs(gr) - a, 0)) - bw, 0.0)
                else:
                    v = gr + bw * b / norms[g]
                    res = np.where(b != 0, v + a * np.sign(b), np.sign(v) * np.maximum(np.abs(v) - a, 0))
                    out[g] = np.linalg.norm(res)
                continue
            if self.kind == "composite":
                if norms[g] == 0:
                    r0 = self.lam * (1.0 if S == 0 else self.dq(0.0) * outer / self.lam)
                    out[g] = max(np.linalg.norm(gr) - r0, 0.0)
                else:
                    out[g] = np.linalg.norm(gr + outer * self.dq(norms[g]) * b / norms[g])
                continue
            if norms[g] == 0:
                out[g] = max(np.linalg.norm(gr) - self.slope0(lw), 0.0)
            else:
                out[g] = np.linalg.norm(gr + self.slope(norms[g], lw) * b / norms[g])
        return out


def global_min(h, r, kinks=(), n=4001):
    """(argmin, min) of a continuous h on [0, r]: grid (linear + geometric near 0 + kinks), then bounded Brent
    polishing in the two cells around each of the (up to 6) best grid local minima."""
    if r <= 0:
        return 0.0, float(h(0.0))
    xs = np.unique(np.concatenate([np.linspace(0.0, r, n), r * np.geomspace(1e-14, 1e-1, 200),
                                   [k for k in kinks if 0 < k < r]]))
    hv = np.array([h(x) for x in xs])
    loc = np.flatnonzero((hv <= np.roll(hv, 1)) | (np.arange(xs.size) == 0))
    loc = loc[(loc == xs.size - 1) | (hv[loc] <= hv[np.minimum(loc + 1, xs.size - 1)])]
    best_x, best = float(xs[int(np.argmin(hv))]), float(hv.min())
    for i in loc[np.argsort(hv[loc])][:6]:
        lo, hi = xs[max(i - 1, 0)], xs[min(i + 1, xs.size - 1)]
        if hi <= lo:
            continue
        res = minimize_scalar(h, bounds=(lo, hi), method="bounded",
                              options=dict(xatol=1e-15 * max(1.0, hi), maxiter=500))
        if float(res.fun) < best:
            best_x, best = float(res.x), float(res.fun)
    return best_x, best
