"""Group penalties  P(beta) = sum_g rho_{lam * w_g}(||beta_g||_2)  and their proximal operators.

Every penalty here is *radial* in each group except the sparse-group lasso (entrywise part) and the composite form
of Theorem 1.1 (not separable).  For a radial penalty the prox is prox(z) = rho_hat(||z||) z / ||z||, where
rho_hat is the prox of the scalar rho on [0, inf); so each class only states its scalar prox ``prox_scalar``,
value ``rho`` and slope ``drho``.  All proxes are exact global minimisers of the (possibly nonconvex) scalar
problem min_x (x - r)^2 / (2 t) + rho(x), for every step t > 0; see each docstring for how.

Group weights w_g come from ``Groups.weights`` (default sqrt(size)); lw = lam * w_g below.

Coefficient vectors may be numpy arrays or torch tensors (a ``GramLeastSquares`` solved on its device): the
``groups`` argument is then a ``GroupsOnDevice``, whose ``norms`` come back as host numbers, so the scalar work
(prox_scalar, slopes) stays on the host and the coefficient-sized work stays on the device.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq
from scipy.special import lambertw

from ._array import namespace, norm
from ._validation import check_callable, check_real

__all__ = ["Penalty", "GroupLasso", "SparseGroupLasso", "GroupMCP", "GroupSCAD", "GroupLogSum", "GroupBridge",
           "ExpMaskPenalty", "CompositePenalty", "exp_mask_q", "global_min_1d"]


def _vec(a):
    """A flat coefficient vector as given (device arrays stay where they are; lists become float arrays)."""
    return a if hasattr(a, "detach") else np.asarray(a, float)


def _check_lam(lam, name="lam"):
    v = check_real(lam, name)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name}: must be finite and >= 0, got {lam!r}")
    return v


def global_min_1d(h, dh, r, n_grid=96):
    """Global minimiser of a smooth h on [0, r]: sign changes of h' on a grid (geometric near 0, linear beyond),
    each root polished by Brent's method to machine precision, then the best of the roots and both ends.

    Used where a scalar prox has no closed form.  A root pair closer than the grid spacing (a near-tangent local
    minimum) can be missed; its objective is then within O(spacing^2 * h'') of a candidate that is compared.
    """
    if r <= 0:
        return 0.0
    grid = np.unique(np.concatenate([[0.0], r * np.geomspace(1e-12, 1e-2, 16), np.linspace(0.0, r, n_grid)]))
    d = np.array([dh(x) for x in grid[1:]])
    cands = [0.0, r]
    s = np.sign(d)
    for i in np.flatnonzero((s[:-1] < 0) & (s[1:] > 0)):  # h' from - to +: a local minimum in between
        a, b = grid[i + 1], grid[i + 2]
        cands.append(brentq(dh, a, b, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=200))
    vals = [h(x) for x in cands]
    return float(cands[int(np.argmin(vals))])


class Penalty:
    """Base class.  Subclasses define ``rho(r, lw)``, ``drho(r, lw)`` (slope for r > 0), ``drho0(lw)`` (slope at
    0+, may be inf) and ``prox_scalar(r, t, lw)``.  ``lam`` is the regularization strength."""

    convex = False
    separable = True
    name = "penalty"

    def __init__(self, lam):
        self.lam = _check_lam(lam)

    # ----- scalar pieces (override) -----
    def rho(self, r, lw):
        raise NotImplementedError

    def drho(self, r, lw):
        raise NotImplementedError

    def drho0(self, lw):
        return self.drho(np.zeros_like(np.asarray(lw, dtype=float)), lw)

    def prox_scalar(self, r: float, t: float, lw: float) -> float:
        raise NotImplementedError

    def prox_zero_radius(self, t, lw):
        """A radius (per group, vectorized) below which the scalar prox is certainly 0; 0 when unknown."""
        return np.zeros_like(np.asarray(lw, float))

    # ----- group level (radial by default) -----
    def value(self, norms, weights) -> float:
        return float(np.sum(self.rho(np.asarray(norms, float), self.lam * np.asarray(weights, float))))

    def prox_group(self, z, t, w):
        """prox of t * rho_{lam w}(||.||) at the block z (any shape)."""
        lw = self.lam * w
        if lw == 0:
            return z
        r = norm(z)
        if r == 0.0:
            return z * 0.0
        x = self.prox_scalar(r, t, lw)
        return z * (x / r)

    def prox_groups(self, z, t, groups, active):
        """``prox_group`` of every group g with ``active[g]`` at once, step t[g] (host array, one per group), on a
        flat vector z; the other groups' entries come back unchanged.  Radial: the G norms, the scalar prox on the
        host, one multiply of z by the per-group factors."""
        r = groups.norms(z)
        lw = self.lam * np.asarray(groups.weights, float)
        f = np.ones(r.size)
        for g in np.flatnonzero(active & (lw > 0)):
            f[g] = self.prox_scalar(r[g], t[g], lw[g]) / r[g] if r[g] > 0 else 0.0
        return z * groups.expand(f)

    def subdiff_distance(self, beta, grad, groups) -> np.ndarray:
        """Per group: distance of -grad_g to the (Frechet) subdifferential of the penalty at beta_g."""
        lw = self.lam * groups.weights
        norms = groups.norms(beta)
        gnorm = groups.norms(grad)
        out = np.maximum(gnorm - self.drho0(lw), 0.0)
        nz = norms > 0
        if np.any(nz):
            scale = np.zeros_like(norms)
            scale[nz] = self.drho(norms[nz], lw[nz]) / norms[nz]
            resid = _vec(grad) + groups.expand(scale) * _vec(beta)
            out[nz] = groups.norms(resid)[nz]
        return out

    def lambda_max(self, grad0_norms, weights) -> float:
        """Smallest lam for which beta = 0 satisfies the first-order conditions (for slopes linear in lam)."""
        pen = weights > 0
        d0 = self.with_lam(1.0).drho0(weights[pen])
        if np.any(np.isinf(d0)):
            raise ValueError(f"{self.name}: infinite slope at 0, so every point with a zero group is stationary "
                             "and lambda_max is undefined; give the lambdas explicitly")
        return float(np.max(grad0_norms[pen] / d0)) if np.any(pen) else 0.0

    def with_lam(self, lam) -> "Penalty":
        new = self.__class__.__new__(self.__class__)
        new.__dict__.update(self.__dict__)
        new.lam = _check_lam(lam)
        return new

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items() if not k.startswith("_"))
        return f"{self.__class__.__name__}({params})"


class GroupLasso(Penalty):
    """lam * sum_g w_g ||beta_g||.  Prox: block soft-thresholding."""
    convex = True
    name = "group_lasso"

    def rho(self, r, lw):
        return lw * r

    def drho(self, r, lw):
        return lw * np.ones_like(np.asarray(r, float))

    def drho0(self, lw):
        return np.asarray(lw, float)

    def prox_scalar(self, r, t, lw):
        return max(r - t * lw, 0.0)


class SparseGroupLasso(Penalty):
    """lam * ( l1_ratio * ||beta||_1 + (1 - l1_ratio) * sum_g w_g ||beta_g|| ).

    Prox: entrywise soft-thresholding at t*lam*l1_ratio, then block soft-thresholding at t*lam*(1-l1_ratio)*w_g
    (exact: the composition rule holds because the group norm is applied to a sign-preserving shrinkage)."""
    convex = True
    name = "sparse_group_lasso"

    def __init__(self, lam, l1_ratio=0.5):
        super().__init__(lam)
        v = check_real(l1_ratio, "l1_ratio")
        if not (0.0 <= v <= 1.0):
            raise ValueError(f"l1_ratio: must lie in [0, 1], got {l1_ratio!r}")
        self.l1_ratio = v

    def drho0(self, lw):  # only the group part; subdiff_distance below handles the entrywise part
        return np.asarray(lw, float) * (1 - self.l1_ratio)

    def value(self, norms, weights, beta=None, groups=None):
        raise TypeError("use value_beta for the sparse-group lasso: it is not a function of group norms alone")

    def value_beta(self, beta, groups):
        beta = _vec(beta)
        a = self.lam * self.l1_ratio
        l1 = float(namespace(beta).sum(namespace(beta).abs(beta)))
        return float(a * l1 + self.lam * (1 - self.l1_ratio) * groups.weights @ groups.norms(beta))

    @staticmethod
    def _soft(z, a):
        """Entrywise soft-thresholding at a (a scalar or one value per entry)."""
        xp = namespace(z)
        return xp.sign(z) * xp.clip(xp.abs(z) - a, min=0.0)

    def prox_group(self, z, t, w):
        u = self._soft(z, t * self.lam * self.l1_ratio)
        b = t * self.lam * (1 - self.l1_ratio) * w
        r = norm(u)
        if r <= b:
            return u * 0.0
        return u * (1 - b / r)

    def prox_groups(self, z, t, groups, active):
        t = np.where(active, t, 0.0)  # a zero step leaves a group as it is (soft(z, 0) = z exactly)
        u = self._soft(z, groups.expand(t * self.lam * self.l1_ratio))
        b = t * self.lam * (1 - self.l1_ratio) * np.asarray(groups.weights, float)
        r = groups.norms(u)
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.where(r > b, 1 - b / r, 0.0)
        return u * groups.expand(np.where(active, f, 1.0))

    def subdiff_distance(self, beta, grad, groups):
        beta, grad = _vec(beta), _vec(grad)
        xp = namespace(beta)
        a = self.lam * self.l1_ratio
        bw = self.lam * (1 - self.l1_ratio) * groups.weights
        norms = groups.norms(beta)
        out = np.maximum(groups.norms(self._soft(grad, a)) - bw, 0.0)  # zero groups: dist to a*[-1,1]^g + bw*ball
        nz = norms > 0
        if np.any(nz):
            scale = np.zeros_like(norms)
            scale[nz] = bw[nz] / norms[nz]
            base = grad + groups.expand(scale) * beta
            res = xp.where(beta != 0, base + a * xp.sign(beta), xp.clip(xp.abs(base) - a, min=0.0))
            out[nz] = groups.norms(res)[nz]
        return out

    def lambda_max(self, grad0, weights, groups=None):
        raise TypeError("sparse_group_lasso: lambda_max depends on the coefficients, not only group norms; "
                        "use groupsparse.lambda_max(loss, penalty, groups)")

    def dual_scale(self, grad, groups):
        """Largest s in (0, 1] with ||ST(s grad_g, lam*l1_ratio)|| <= lam (1 - l1_ratio) w_g for all groups."""
        a = self.lam * self.l1_ratio
        bw = self.lam * (1 - self.l1_ratio) * groups.weights

        def excess(s):
            st = np.maximum(np.abs(s * grad) - a, 0.0)
            return groups.norms(st) - bw

        if np.all(excess(1.0) <= 0):
            return 1.0
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if np.all(excess(mid) <= 0):
                lo = mid
            else:
                hi = mid
        return lo


class GroupMCP(Penalty):
    """Group minimax concave penalty: rho(r) = lw r - r^2/(2 gamma) for r <= gamma lw, gamma lw^2 / 2 beyond.

    Prox (firm thresholding), exact for every step t: if t < gamma, 0 for r <= t lw, (r - t lw)/(1 - t/gamma) up
    to gamma lw, r beyond; if t >= gamma the scalar problem is concave on [0, gamma lw] and the prox is hard
    thresholding at lw sqrt(gamma t) (the point where 0 and r tie)."""
    name = "group_mcp"

    def __init__(self, lam, gamma=3.0):
        super().__init__(lam)
        g = check_real(gamma, "gamma")
        if not (g > 1.0 and math.isfinite(g)):  # gamma = inf is the group lasso: use GroupLasso
            raise ValueError(f"gamma: group MCP needs a finite gamma > 1, got {gamma!r}")
        self.gamma = g

    def rho(self, r, lw):
        r = np.asarray(r, float)
        g = self.gamma
        return np.where(r <= g * lw, lw * r - r * r / (2 * g), 0.5 * g * lw * lw)

    def drho(self, r, lw):
        return np.maximum(lw - np.asarray(r, float) / self.gamma, 0.0)

    def drho0(self, lw):
        return np.asarray(lw, float)

    def prox_zero_radius(self, t, lw):
        t, lw = np.asarray(t, float), np.asarray(lw, float)
        g = self.gamma
        return np.where(t < g, t * lw, lw * np.sqrt(g * t))  # the two thresholds of prox_scalar

    def prox_scalar(self, r, t, lw):
        g = self.gamma
        if t < g:
            if r <= t * lw:
                return 0.0
            if r <= g * lw:
                return (r - t * lw) / (1.0 - t / g)
            return r
        return r if r > lw * math.sqrt(g * t) else 0.0


class GroupSCAD(Penalty):
    """Group SCAD: lw r (r <= lw); (2 gamma lw r - r^2 - lw^2) / (2 (gamma - 1)) (lw < r <= gamma lw);
    lw^2 (gamma + 1) / 2 beyond.  Prox: exact for every t by minimising the prox objective on each of the three
    pieces (each a 1-D quadratic, concave or convex) and keeping the best."""
    name = "group_scad"

    def __init__(self, lam, gamma=3.7):
        super().__init__(lam)
        g = check_real(gamma, "gamma")
        if not (g > 2.0 and math.isfinite(g)):  # gamma = inf makes the middle piece inf / inf
            raise ValueError(f"gamma: group SCAD needs a finite gamma > 2, got {gamma!r}")
        self.gamma = g

    def rho(self, r, lw):
        r = np.asarray(r, float)
        g = self.gamma
        mid = (2 * g * lw * r - r * r - lw * lw) / (2 * (g - 1))
        return np.where(r <= lw, lw * r, np.where(r <= g * lw, mid, 0.5 * lw * lw * (g + 1)))

    def drho(self, r, lw):
        r = np.asarray(r, float)
        g = self.gamma
        return np.where(r <= lw, lw, np.maximum(g * lw - r, 0.0) / (g - 1))

    def drho0(self, lw):
        return np.asarray(lw, float)

    def _rho1(self, x, lw):
        g = self.gamma
        if x <= lw:
            return lw * x
        if x <= g * lw:
            return (2 * g * lw * x - x * x - lw * lw) / (2 * (g - 1))
        return 0.5 * lw * lw * (g + 1)

    def prox_zero_radius(self, t, lw):
        # rho is concave from 0 to its cap C = lw^2 (gamma+1)/2 at gamma lw, so rho(x) >= min(x C/(gamma lw), C);
        # with that bound x^2/(2t) - x r/t + rho(x) >= 0 = its value at 0 whenever r is below both radii
        t, lw = np.asarray(t, float), np.asarray(lw, float)
        g = self.gamma
        return np.minimum(t * lw * (g + 1) / (2 * g), lw * np.sqrt(t * (g + 1)))

    def prox_scalar(self, r, t, lw):
        g = self.gamma
        cands = [0.0, min(max(r - t * lw, 0.0), lw), lw, g * lw, max(r, g * lw)]
        if 1.0 / t - 1.0 / (g - 1) > 0:  # middle piece convex: its stationary point, clipped
            cands.append(min(max(((g - 1) * r - t * g * lw) / (g - 1 - t), lw), g * lw))
        best, best_v = 0.0, math.inf
        for x in cands:
            v = (x - r) ** 2 / (2 * t) + self._rho1(x, lw)
            if v < best_v:
                best, best_v = x, v
        return best


class GroupLogSum(Penalty):
    """Group log-sum: lw log(1 + r / eps).  Prox: the larger root of the stationarity quadratic,
    x = (r - eps)/2 + sqrt((r + eps)^2/4 - t lw) (radicand clamped at 0), compared with x = 0."""
    name = "group_log_sum"

    def __init__(self, lam, eps=1.0):
        super().__init__(lam)
        e = check_real(eps, "eps")
        if not (e > 0 and math.isfinite(e)):
            raise ValueError(f"eps: must be a finite number > 0, got {eps!r}")
        self.eps = e

    def rho(self, r, lw):
        return lw * np.log1p(np.asarray(r, float) / self.eps)

    def drho(self, r, lw):
        return lw / (self.eps + np.asarray(r, float))

    def drho0(self, lw):
        return np.asarray(lw, float) / self.eps

    def prox_scalar(self, r, t, lw):
        e = self.eps
        disc = (r + e) ** 2 / 4 - t * lw
        if disc < 0:
            return 0.0
        x = (r - e) / 2 + math.sqrt(disc)
        if x <= 0:
            return 0.0
        fx = (x - r) ** 2 / (2 * t) + lw * math.log1p(x / e)
        return x if fx < r * r / (2 * t) else 0.0


class GroupBridge(Penalty):
    """Group bridge: lw ||beta_g||^q with 0 < q < 1 (q = 1/2, 2/3 included).

    Prox: the stationarity map phi(x) = x + t lw q x^(q-1) is convex on (0, inf) with its minimum at
    x0 = (t lw q (1-q))^(1/(2-q)); the candidate is the root of phi(x) = r on [x0, r] (Newton from r, monotone
    on the convex increasing branch), kept if it beats 0.  Slope at 0 is infinite: 0 is always stationary."""
    name = "group_bridge"

    def __init__(self, lam, q=0.5):
        super().__init__(lam)
        v = check_real(q, "q")
        if not (0.0 < v < 1.0):
            raise ValueError(f"q: group bridge needs 0 < q < 1, got {q!r}")
        self.q = v

    def rho(self, r, lw):
        return lw * np.power(np.asarray(r, float), self.q)

    def drho(self, r, lw):
        r = np.asarray(r, float)
        with np.errstate(divide="ignore"):
            return lw * self.q * np.power(r, self.q - 1)

    def drho0(self, lw):
        return np.where(np.asarray(lw, float) > 0, np.inf, 0.0)

    def prox_zero_radius(self, t, lw):
        q = self.q
        c = np.asarray(t, float) * np.asarray(lw, float) * q
        x0 = (c * (1 - q)) ** (1 / (2 - q))
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(c > 0, x0 + c * x0 ** (q - 1), 0.0)  # min of the stationarity map

    def prox_scalar(self, r, t, lw):
        q = self.q
        c = t * lw * q
        x0 = (c * (1 - q)) ** (1 / (2 - q))
        if r <= x0 + c * x0 ** (q - 1):  # r below min phi: no stationary point
            return 0.0
        x = r
        for _ in range(100):
            f = x + c * x ** (q - 1) - r
            fp = 1 + c * (q - 1) * x ** (q - 2)
            step = f / fp
            x_new = max(x - step, x0)
            if abs(x_new - x) <= 4e-16 * x:
                x = x_new
                break
            x = x_new
        fx = (x - r) ** 2 / (2 * t) + lw * x ** q
        return x if fx < r * r / (2 * t) else 0.0


def exp_mask_q(a):
    """Lemma 2.1's penalty q(a) = W(2a^2)^2/4 + W(2a^2)/2 (W: principal Lambert function); q'(a) = W(2a^2)/a."""
    w = np.real(lambertw(2 * np.asarray(a, float) ** 2))
    return w * w / 4 + w / 2


class ExpMaskPenalty(Penalty):
    """lam * sum_g w_g q(||beta_g||) with the exp-mask q of Lemma 2.1 (unnormalised softmax mask with an L2 term).

    q ~ a^2 near 0 (so this penalty alone never zeroes a group) and ~ log(a)^2 for large a (nonconvex tail).
    Prox: global 1-D minimisation of (x - r)^2/(2t) + lw q(x) on [0, r] by bracketing the roots of the derivative
    x - r + t lw W(2x^2)/x and polishing each with Brent's method (``global_min_1d``)."""
    name = "exp_mask"

    def rho(self, r, lw):
        return lw * exp_mask_q(r)

    def drho(self, r, lw):
        r = np.asarray(r, float)
        with np.errstate(invalid="ignore", divide="ignore"):
            d = np.real(lambertw(2 * r * r)) / r
        return lw * np.where(r > 0, d, 0.0)

    def drho0(self, lw):
        return np.zeros_like(np.asarray(lw, float))

    def prox_scalar(self, r, t, lw):
        def h(x):
            return (x - r) ** 2 / (2 * t) + lw * float(exp_mask_q(x))

        def dh(x):
            return (x - r) / t + lw * (float(np.real(lambertw(2 * x * x))) / x if x > 0 else 0.0)

        return global_min_1d(h, dh, r)


def _check_increasing(q):
    """q(0) = 0, and q finite and increasing at a few points of [0, 10] (a decreasing q made the solver fail deep
    inside with a TypeError)."""
    xs = [0.0, 1e-3, 1e-1, 1.0, 10.0]
    try:
        vals = [float(q(x)) for x in xs]
    except Exception as e:  # any error of the user's function, reported under the argument's name
        raise ValueError(f"q: calling q on [0, 10] failed with {type(e).__name__}: {e}") from None
    shown = [float(f"{v:.6g}") for v in vals]
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"q: must be finite on [0, inf), got q({xs}) = {shown}")
    if abs(vals[0]) > 1e-12:
        raise ValueError(f"q: must satisfy q(0) = 0, got q(0) = {vals[0]}")
    if not (all(b >= a for a, b in zip(vals, vals[1:])) and vals[-1] > vals[0]):
        raise ValueError(f"q: must be increasing on [0, inf), got q({xs}) = {shown}")


class CompositePenalty(Penalty):
    """Theorem 1.1's composite form  lam * q^{-1}( sum_g q(||beta_g||) )  for an increasing q with q(0) = 0.

    Not separable: block coordinate descent updates group g with C = sum_{h != g} q(||beta_h||) fixed, i.e. the
    scalar problem min_x (x - r)^2/(2t) + lam q^{-1}(C + q(x)), solved by ``global_min_1d``.  ``q_inv`` defaults
    to a bracketing root solve, ``dq`` to a central difference.  Group weights are not used (as in the paper)."""
    name = "composite"
    separable = False

    def __init__(self, lam, q, q_inv=None, dq=None):
        super().__init__(lam)
        check_callable(q, "q", "a callable increasing function with q(0) = 0")
        for name, f in (("q_inv", q_inv), ("dq", dq)):
            if f is not None:
                check_callable(f, name)
        _check_increasing(q)
        self.q, self._q_inv, self._dq = q, q_inv, dq

    def q_inv(self, s):
        if self._q_inv is not None:
            return float(self._q_inv(s))
        if s <= 0:
            return 0.0
        hi = 1.0
        while self.q(hi) < s:
            hi *= 2.0
            if hi > 1e300:
                raise ValueError("q: sum of q values lies outside the range of q (q^{-1} undefined)")
        return brentq(lambda x: self.q(x) - s, 0.0, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps)

    def dq(self, x):
        if self._dq is not None:
            return float(self._dq(x))
        h = 1e-6 * max(abs(x), 1e-6)
        lo = max(x - h, 0.0)
        return (self.q(x + h) - self.q(lo)) / (x + h - lo)

    def value(self, norms, weights=None):
        return self.lam * self.q_inv(float(np.sum([self.q(float(r)) for r in np.asarray(norms, float)])))

    def prox_given_rest(self, r, t, rest):
        """Exact prox of the group with the others' q-sum ``rest`` held fixed."""
        lam = self.lam
        h = lambda x: (x - r) ** 2 / (2 * t) + lam * self.q_inv(rest + self.q(x))
        dh = lambda x: (x - r) / t + lam * self.dq(x) / self.dq(self.q_inv(rest + self.q(x))) if x > 0 else -r / t
        return global_min_1d(h, dh, r)

    def subdiff_distance(self, beta, grad, groups):
        norms = groups.norms(beta)
        gnorm = groups.norms(grad)
        S = float(np.sum([self.q(float(r)) for r in norms]))
        denom = self.dq(self.q_inv(S)) if S > 0 else None
        out = np.empty(groups.n_groups)
        scale = np.zeros(groups.n_groups)
        for g in range(groups.n_groups):
            if norms[g] == 0:
                # at beta = 0 the penalty is lam ||beta_g|| along each group alone (q^-1(q(r)) = r): slope ratio 1
                slope0 = 1.0 if S == 0 else self.dq(0.0) / denom
                slope0 = self.lam * (np.inf if not np.isfinite(slope0) else slope0)
                out[g] = max(gnorm[g] - slope0, 0.0)
            else:
                scale[g] = self.lam * self.dq(norms[g]) / denom / norms[g]
        nz = norms > 0
        if np.any(nz):
            out[nz] = groups.norms(_vec(grad) + groups.expand(scale) * _vec(beta))[nz]
        return out

    def lambda_max(self, grad0_norms, weights):
        raise ValueError("composite: lambda_max is not defined in closed form; give the lambdas explicitly")
