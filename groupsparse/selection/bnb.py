"""Certified budgeted selection by branch and bound (the L0L2 problem with a group budget).

    min_b  L(X b + b0) + ridge/2 ||b||^2   subject to at most k nonzero groups b_g,

with L the least-squares or logistic loss and ``ridge`` the loss's own ridge (``LeastSquares(X, y, ridge=...)``).
Best-first search over groups (a node fixes some groups in, F, and some out; the rest, C, are free), as in l0bnb
(Hazimeh, Mazumder & Saab 2022) and its grouped version L0Group (Hazimeh, Mazumder & Radchenko 2023), but with
the group *budget* instead of an L0 penalty.

Node bound: the perspective relaxation of the ridge term, z_g in [0, 1] with sum_C z_g <= m = k - |F|,

    R = min_b  L(X b + b0) + ridge/2 sum_F ||b_g||^2 + ridge/2 sum_C ||b_g||^2 / z_g.

Its Fenchel dual has a closed form: for ANY dual point V with 1^T V = 0 (intercept) and c = -X^T V,

    R >= -L*(V) - 1/(2 ridge) [ sum_F ||c_g||^2 + (sum of the m largest ||c_g||^2 over g in C) ],     (D)

(the conjugate of min_z ridge/2 sum ||b_g||^2/z_g is the top-m sum: the squared k-support norm, Argyriou,
Foygel & Srebro 2012).  So every node bound is (D) at V = grad L at the current primal point -- valid whether or
not the relaxation solver converged, never an unconverged primal value.  The relaxation itself is solved by
warm-started accelerated proximal gradient (FISTA with function restarts): the loss and the fixed groups' ridge
are the smooth part, the free groups' ridge/2 min_z sum ||b_g||^2 / z_g is the prox (for fixed z the prox is a
shrinkage t z / (z + step ridge); the best z is clip(theta t - step ridge, 0, 1) with sum z = m); the relaxation's
primal value (the squared k-support norm form) gives the gap that stops the node.  (It replaced a block
coordinate descent on the Lagrangian whose budget multiplier was re-set every pass: on the root of
benchmarks/bench_bnb.py's I1 seed 0 that stalled at a bound of 16.19 after 100 passes, 3.8 s; FISTA gives 17.09
in 0.5 s.)

Box (``max_coef`` = M, l0bnb's big-M |b_i| <= M): with ||b_g|| <= M in the problem the free groups' term is
min{ridge/2 ||b_g||^2 / z_g : ||b_g|| <= M z_g} (big-M + perspective, as in l0bnb's relaxation) and in (D)
||c_g||^2 / (2 ridge) becomes its conjugate, quadratic up to ||c_g|| = ridge M and linear, M ||c_g|| - ridge M^2 / 2,
beyond: never larger, so the bound can only rise; it does once the budget multiplier exceeds ridge M^2 / 2.  The
prox and the fixed groups' projection keep FISTA inside the box; incumbents are refit inside it.  The certificate
is then for the boxed problem (l0bnb's M, 1.2 x its warm start's largest |coefficient|, is a heuristic too, so its
certificate is for its boxed problem).  Without ``max_coef`` the bounds still use the box that every solution
better than the incumbent satisfies, M = sqrt(2 incumbent / ridge) (both losses are >= 0): valid for the unboxed
problem, but binding only where the budget multiplier exceeds the incumbent's value, which it rarely does.

Screening by the bound (l0bnb's idea, from the same dual point): forcing a free group g outside the top m into
the support raises (D) by a_(m) - a_g (a_g = ||c_g||^2 / (2 ridge)), forcing a top-m group out raises it by
a_g - a_(m+1); a group whose forced bound reaches the cutoff is fixed out / in at that node.

Incumbents: ``local_search`` (least squares) or ``newton`` (logistic: ``newton.py``) at the root, then the refit of every node's
rounded relaxed support (F and the m free groups of largest relaxed norm).  A node is pruned when its bound is
>= incumbent - gap_tol |incumbent|; the search stops when the smallest open bound says the same, or at
``max_time`` / ``max_nodes``, returning the incumbent and the valid gap so far.
"""
from __future__ import annotations

import heapq
import math
import time

import numpy as np
from scipy.special import expit

from .._validation import check_bool, check_nonneg, check_positive_int, check_tol

__all__ = ["bnb"]


class _Relaxation:
    """Data and the block solves of the node relaxations (one output: least squares or binary logistic)."""

    def __init__(self, bp):
        loss = bp.loss
        X = loss.X  # with an intercept its last column is the ones column: the features are the first p
        self.sparse = hasattr(X, "tocsc")
        self.X = X.tocsc()[:, : bp.p] if self.sparse else np.asarray(X)[:, : bp.p]
        self.loss = loss
        self.n = loss.n_samples
        self.p = bp.p
        self.y = np.asarray(loss.Y[:, 0], dtype=float)
        self.lam = float(loss.ridge)
        self.icpt = bool(loss.fit_intercept)
        self.ls = bp.quadratic
        self.G = bp.G
        self.idx = [np.asarray(i, dtype=np.int64) for i in bp.groups.indices]
        smax = max(i.size for i in self.idx)
        self.gidx = np.full((self.G, smax), self.p, dtype=np.int64)  # padding reads an extra zero
        for g, i in enumerate(self.idx):
            self.gidx[g, : i.size] = i
        self.label = np.full(self.p, self.G, dtype=np.int64)  # feature -> its group
        for g, i in enumerate(self.idx):
            self.label[i] = g

    def group_sq(self, c):
        """||c_g||^2 for every group of a (p,) vector."""
        ext = np.append(c, 0.0)[self.gidx]
        return np.einsum("gs,gs->g", ext, ext)

    # -------------------------------------------------------------- loss, dual point
    def value(self, z):
        if self.ls:
            r = z - self.y
            return 0.5 * float(r @ r) / self.n
        return float(self.loss.raw_value(z[:, None]))

    def dual_point(self, z):
        """(V, L*(V)): V = grad L(z), moved onto {1^T V = 0} when there is an intercept, staying in dom L*."""
        if self.ls:
            V = (z - self.y) / self.n
            if self.icpt:
                V = V - V.mean()
            return V, float(V @ self.y) + 0.5 * self.n * float(V @ V)
        P = expit(z)
        if self.icpt:  # rescale P (or 1 - P) so that sum P = sum y: stays in [0, 1] = dom of the conjugate
            sy, sp = float(self.y.sum()), float(P.sum())
            if sp > sy:
                P = P * (sy / sp)
            elif sp < sy:
                P = 1.0 - (1.0 - P) * ((self.n - sy) / max(self.n - sp, 1e-300))
        V = (P - self.y) / self.n
        return V, float(self.loss.conjugate(V[:, None]))

    def fit_intercept(self, z, b0):
        """Exact (least squares) or a few Newton steps (logistic) on the intercept; returns (z, b0)."""
        if not self.icpt:
            return z, b0
        if self.ls:
            s = float(np.mean(self.y - z))
            return z + s, b0 + s
        for _ in range(3):
            P = expit(z)
            gr = float(np.mean(P - self.y))
            h = float(np.mean(P * (1 - P)))
            if abs(gr) <= 1e-15 or h <= 0:
                break
            s = -gr / h
            z, b0 = z + s, b0 + s
        return z, b0


def _ksupport(t, m):
    """min { 1/2 sum t_g^2 / z_g : sum z <= m, 0 <= z <= 1 } (the squared k-support norm / 2), its z and the
    threshold tau of z = min(1, t / tau) (0 when at most m groups are nonzero: every z is 1)."""
    z = np.zeros_like(t)
    nz = t > 0
    if np.count_nonzero(nz) <= m:
        z[nz] = 1.0
        return 0.5 * float(t @ t), z, 0.0
    order = np.argsort(-t, kind="stable")
    ts = t[order]
    tail = np.cumsum(ts[::-1])[::-1]  # tail[j] = sum_{i >= j} ts[i]
    best, bj, btau = np.inf, m - 1, 0.0
    for j in range(m):  # j groups clipped at z = 1, the rest z = t / tau with sum z = m
        tau = tail[j] / (m - j)
        if ts[j] <= tau * (1 + 1e-12):  # feasible: z <= 1 for the unclipped
            v = float(ts[:j] @ ts[:j]) + tail[j] * tau
            if v < best:
                best, bj, btau = v, j, tau
    zs = np.minimum(1.0, ts / btau)
    zs[:bj] = 1.0
    z[order] = zs
    return 0.5 * best, z, btau


def _clip_root(sa, cs, lo_add, m):
    """theta > 0 with  sum_g clip(theta s_g - lo, 0, 1) = m,  lo = ``lo_add`` (s sorted ascending ``sa``, ``cs``
    its prefix sums): the total is piecewise linear and increasing in theta; exact by its kinks."""
    hi_add = 1.0 + lo_add

    def total(theta):  # sum_g clip(theta s_g - lo, 0, 1) for an array of theta, by two binary searches
        i_in = np.searchsorted(sa, lo_add / theta, side="right")  # s > lo / theta: z > 0
        i_sat = np.searchsorted(sa, hi_add / theta, side="left")  # s >= (1 + lo) / theta: z = 1
        return theta * (cs[i_sat] - cs[i_in]) - lo_add * (i_sat - i_in) + (sa.size - i_sat), i_in, i_sat

    bps = np.unique(np.concatenate([lo_add / sa, hi_add / sa]))  # the kinks of the piecewise-linear total
    tot, _, _ = total(bps)
    j = int(np.searchsorted(tot, m, side="left"))  # first kink with total >= m (the last kink has total > m)
    lo = bps[j - 1] if j > 0 else 0.0
    _, i_in, i_sat = total(np.array([0.5 * (lo + bps[j])]))  # the sets on the piece (lo, bps[j]]
    i_in, i_sat = int(i_in[0]), int(i_sat[0])
    act = cs[i_sat] - cs[i_in]
    return (m - (sa.size - i_sat) + lo_add * (i_sat - i_in)) / act if act > 0 else bps[j]


def _ksupport_prox(s, lam, m, M=np.inf):
    """Group norms of the prox of  lam * min{1/2 sum t_g^2 / z_g : z in [0, 1], sum z <= m, t_g <= M z_g}  at
    norms s >= 0 (M = inf: no box).  For fixed z the minimiser is t = min(s z / (z + lam), M z); the best z is
    clip(theta s - lam, 0, 1) with theta setting sum z = m (the budget binds once more than m norms are > 0) --
    while theta >= 1 / M, i.e. the budget multiplier mu = lam / (2 theta^2) <= lam M^2 / 2, where the box does
    not bind at the optimal z; past it (a large multiplier) the box binds on every z in (0, 1) and
    z = clip(s / M - c, 0, 1) with c = lam / 2 + mu / M^2 >= lam setting sum z = m (the stationarity of
    1/2 (M z - s)^2 + lam M^2 z / 2 + mu z)."""
    pos = s > 0
    if np.count_nonzero(pos) <= m:
        return np.minimum(s / (1.0 + lam), M)
    sa = np.sort(s[pos])
    cs = np.concatenate([[0.0], np.cumsum(sa)])
    theta = _clip_root(sa, cs, lam, m)
    z = np.zeros_like(s)
    if theta * M >= 1.0:
        z[pos] = np.clip(theta * s[pos] - lam, 0.0, 1.0)
    else:  # the box binds: z = clip(s / M - c, 0, 1)
        c = _clip_offset(sa / M, cs / M, m)
        z[pos] = np.clip(s[pos] / M - c, 0.0, 1.0)
    t = s * z / (z + lam)
    return np.minimum(t, M * z) if np.isfinite(M) else t


def _clip_offset(u, cu, m):
    """c with  sum_g clip(u_g - c, 0, 1) = m  (u sorted ascending, ``cu`` its prefix sums; the total is piecewise
    linear and decreasing in c, kinks at u_g and u_g - 1)."""
    def total(c):
        i_in = np.searchsorted(u, c, side="right")  # u > c: positive
        i_sat = np.searchsorted(u, c + 1.0, side="left")  # u >= c + 1: clipped at 1
        return (cu[i_sat] - cu[i_in]) - c * (i_sat - i_in) + (u.size - i_sat), i_in, i_sat

    bps = np.unique(np.concatenate([u, u - 1.0]))
    tot, _, _ = total(bps)  # decreasing along bps
    j = int(np.searchsorted(-tot, -m, side="left"))  # first kink with total <= m
    j = min(max(j, 1), bps.size - 1)
    _, i_in, i_sat = total(np.array([0.5 * (bps[j - 1] + bps[j])]))
    i_in, i_sat = int(i_in[0]), int(i_sat[0])
    cnt = i_sat - i_in
    return ((cu[i_sat] - cu[i_in]) + (u.size - i_sat) - m) / cnt if cnt > 0 else bps[j]


class _Node:
    __slots__ = ("lb", "depth", "F", "C", "coef_idx", "coef_val", "b0")

    def __init__(self, lb, depth, F, C, coef_idx, coef_val, b0):
        self.lb, self.depth, self.F, self.C = lb, depth, F, C
        self.coef_idx, self.coef_val, self.b0 = coef_idx, coef_val, b0

    def __lt__(self, other):  # best first; deeper first among equal bounds
        return (self.lb, -self.depth) < (other.lb, -other.depth)


def bnb(bp, k, *, max_time=60.0, max_nodes=100_000, gap_tol=1e-4, init=None, progress=None, history=None,
        max_passes=200, node_tol=1e-7, max_coef=None, trace=None):
    """Branch and bound (module docstring).  ``max_coef`` = M > 0 adds the box ||b_g|| <= M to the problem (l0bnb's
    big-M, which is part of l0bnb's problem): the bounds, the relaxations and the incumbents' refits are then those
    of the boxed problem, and the certificate is for it.  Returns (W, S, value, n_nodes, info) with info holding
    the proven ``lower_bound``, the relative ``gap`` = (value - lower_bound) / |value|, ``n_nodes``, ``status``
    ('optimal', 'time_limit' or 'node_limit'), ``max_coef`` and ``implied_max_coef`` (the box every solution at
    least as good as the final incumbent satisfies, which the bounds used).  ``trace``: a list that gets
    (seconds, nodes, proven lower bound, incumbent) about every second and at the end (the gap-against-time
    curve; each bound is as valid as the final one)."""
    max_time = check_tol(max_time, "max_time")
    if max_coef is not None:
        max_coef = check_tol(max_coef, "max_coef")
    max_nodes = check_positive_int(max_nodes, "max_nodes")
    gap_tol = check_nonneg(gap_tol, "gap_tol")
    if progress is not None:
        progress = check_bool(progress, "progress")
    if trace is not None and not callable(getattr(trace, "append", None)):
        raise ValueError(f"trace: expected a list (or None), got {type(trace).__name__}")
    if bp.K != 1:
        raise ValueError("loss: method='bnb' supports LeastSquares with one output and binary Logistic "
                         "(multinomial / multi-output budgets are not implemented)")
    if bp.gram:
        raise ValueError("loss: method='bnb' needs the data matrix (LeastSquares or Logistic), not a "
                         "GramLeastSquares")
    if not bp.loss.ridge > 0:
        raise ValueError("ridge: method='bnb' needs the loss's ridge > 0 (the perspective relaxation is the ridge "
                         "term; without it the bound is vacuous): use e.g. LeastSquares(X, y, ridge=1e-3), or "
                         "method='exact' for a handful of groups")
    t0 = time.perf_counter()
    rx = _Relaxation(bp)
    G = bp.G
    cache = {}

    def refit(S):
        S = np.unique(np.asarray(S, dtype=np.int64))
        key = S.tobytes()
        if key not in cache:
            W, v = bp.refit(S)
            if max_coef is not None:  # the boxed problem: a refit outside the box is not feasible
                W, v = _box_refit(rx, bp, S, W, v, max_coef)
            # a GLM refit carries the tiny refit ridge: report the loss value at that point (an upper bound)
            cache[key] = (W, float(v), S)
        return cache[key]

    # incumbent: the library's best heuristic
    if bp.quadratic:
        from .local_search import local_search
        W, S, ub, _ = local_search(bp, k, init=init)
    else:
        from .newton import newton_splicing
        W, S, ub, _ = newton_splicing(bp, k, init=init)
    if max_coef is not None:
        W, ub, S = refit(S)
    inc = [W, np.sort(np.asarray(S, dtype=np.int64)), float(ub)]

    def box():
        """The box on ||b_g|| the node relaxations use: the user's, and the one every b at least as good as the
        incumbent satisfies (both losses are >= 0, so ridge/2 ||b||^2 <= objective <= incumbent); a bound
        computed with it is a bound on every node solution that could improve the incumbent, so it is valid."""
        return min(max_coef if max_coef is not None else np.inf, math.sqrt(2.0 * max(inc[2], 0.0) / rx.lam))

    def offer(S):
        Wt, v, St = refit(S)
        if v < inc[2]:
            inc[:] = [Wt, St, v]
            if history is not None:
                history.append(v)

    def cutoff():  # less the rounding margin taken off the final bound, so that a pruned search's gap is <= gap_tol
        return inc[2] - gap_tol * abs(inc[2]) + 2e-12 * max(1.0, abs(inc[2]))

    lam = rx.lam
    root = _Node(-np.inf, 0, np.zeros(0, np.int64), np.ones(G, dtype=bool),
                 np.zeros(0, np.int64), np.zeros(0), 0.0)
    heap = [root]
    pruned_min = np.inf  # smallest bound among pruned nodes (each was >= the cutoff of its time)
    n_nodes = 0
    status = "optimal"
    bar, last_bar, last_trace = None, t0, t0

    def proven():
        """The global lower bound: the smallest open or pruned bound (or the incumbent).  The dual bound is computed
        in floating point: a relative 1e-12 margin covers its rounding; both losses (least squares, log-loss) and
        the ridge are nonnegative, so 0 is a bound too."""
        lower = min(min((h.lb for h in heap), default=np.inf), pruned_min, inc[2])
        return max(lower - 1e-12 * max(1.0, abs(lower)), 0.0)

    while heap:
        if n_nodes >= max_nodes:
            status = "node_limit"
            break
        if time.perf_counter() - t0 > max_time:
            status = "time_limit"
            break
        node = heapq.heappop(heap)
        if node.lb >= cutoff():
            pruned_min = min(pruned_min, node.lb)
            continue
        n_nodes += 1
        children, lb = _process(rx, node, k, lam, box(), offer, cutoff, refit, max_passes, node_tol, t0, max_time)
        if not children:
            pruned_min = min(pruned_min, lb)
        for ch in children:
            heapq.heappush(heap, ch)
        now = time.perf_counter()
        if trace is not None and now - last_trace > 1.0:
            last_trace = now
            trace.append((now - t0, n_nodes, float(proven()), inc[2]))
        if progress is not False and now - last_bar > 1.0:
            last_bar = now
            if bar is None and now - t0 > 2.0:
                from tqdm.auto import tqdm
                bar = tqdm(desc="bnb nodes", unit="node", disable=None if progress is None else not progress)
            if bar is not None:
                bar.update(n_nodes - bar.n)
                bar.set_postfix(bound=f"{proven():.6g}", incumbent=f"{inc[2]:.6g}",
                                open=len(heap), refresh=False)
    if bar is not None:
        bar.update(n_nodes - bar.n)
        bar.close()
    lower = proven()
    if trace is not None:
        trace.append((time.perf_counter() - t0, n_nodes, float(lower), inc[2]))
    gap = max(inc[2] - lower, 0.0) / max(abs(inc[2]), 1e-300)
    info = {"lower_bound": float(lower), "gap": float(gap), "n_nodes": n_nodes, "status": status,
            "open_nodes": len(heap), "gap_tol": gap_tol, "max_coef": max_coef, "implied_max_coef": box()}
    return inc[0], inc[1], inc[2], n_nodes, info


def _box_refit(rx, bp, S, W, v, M, max_iter=5000):
    """(W, value) of the refit on the groups S under ||b_g|| <= M: the unboxed refit (W, v) when it is inside the
    box (it is then the boxed optimum too), else accelerated projected gradient (FISTA with function restarts) on
    S's coefficients and the intercept, from W projected.  The ridge makes the problem strongly convex, so it
    converges linearly; the value is that of the feasible point it ends at (an upper bound either way)."""
    S = np.asarray(S, dtype=np.int64)
    Wn = np.asarray(W, dtype=float)
    if S.size == 0 or max(float(np.linalg.norm(Wn[rx.idx[g], 0])) for g in S) <= M:
        return W, v
    cols = np.concatenate([rx.idx[g] for g in S])
    gid = np.repeat(np.arange(S.size), [rx.idx[g].size for g in S])
    Xs = rx.X[:, cols]
    Xs = Xs.toarray() if rx.sparse else np.asarray(Xs)
    Xa = np.hstack([Xs, np.ones((rx.n, 1))]) if rx.icpt else Xs
    L = (1.0 if rx.ls else 0.25) * float(np.linalg.norm(Xa, 2)) ** 2 / rx.n + rx.lam

    def project(x):
        nr = np.sqrt(np.bincount(gid, weights=x * x, minlength=S.size))
        return x * np.minimum(1.0, M / np.where(nr > 0, nr, 1.0))[gid]

    def objective(x, x0):
        return rx.value(Xs @ x + x0) + 0.5 * rx.lam * float(x @ x)

    x = project(Wn[cols, 0])
    x0 = float(Wn[bp.p, 0]) if rx.icpt else 0.0
    u, u0, tk, f = x, x0, 1.0, objective(x, x0)
    for _ in range(max_iter):
        zu = Xs @ u + u0
        r = (zu - rx.y) / rx.n if rx.ls else (expit(zu) - rx.y) / rx.n
        xn = project(u - (Xs.T @ r + rx.lam * u) / L)
        x0n = u0 - float(r.sum()) / L if rx.icpt else 0.0
        fn = objective(xn, x0n)
        if fn > f:  # restart the momentum from the last (better) point
            u, u0, tk = x, x0, 1.0
            continue
        step = float(np.linalg.norm(xn - x)) + abs(x0n - x0)
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * tk * tk))
        beta = (tk - 1.0) / t_new
        u, u0 = xn + beta * (xn - x), x0n + beta * (x0n - x0)
        x, x0, tk, f = xn, x0n, t_new, fn
        if step <= 1e-13 * max(1.0, float(np.linalg.norm(x))):
            break
    Wb = np.zeros_like(Wn)
    Wb[cols, 0] = x
    if rx.icpt:
        Wb[bp.p, 0] = x0
    return Wb, bp.value(Wb)


class _WorkSet:
    """The groups a node's relaxation is solved on (the fixed ones, the nonzero ones, the strongest free ones by
    the dual point), with their columns of X gathered once: (n, |columns|) products instead of (n, p)."""

    def __init__(self, rx, mask, Fset):
        self.mask = mask.copy()
        self.groups = np.flatnonzero(mask)
        sizes = np.array([rx.idx[g].size for g in self.groups], dtype=np.int64)
        self.cols = np.concatenate([rx.idx[g] for g in self.groups])
        self.gid = np.repeat(np.arange(self.groups.size), sizes)  # work column -> position in groups
        self.fixed = Fset[self.groups]
        self.fcols = self.fixed[self.gid]
        Xw = rx.X[:, self.cols]
        self.X = Xw.tocsc() if rx.sparse else np.ascontiguousarray(Xw)
        # the step of the node's FISTA: the Lipschitz constant of the work set's columns (and the intercept),
        # far below the global one (I1: ~100 of 1000 groups; l0bnb's problem: ~100 of 10000 features)
        from ._base import _glm_lipschitz
        rows = np.append(self.cols, rx.p) if rx.icpt else self.cols
        self.L = _glm_lipschitz(rx.loss.restrict_rows(rows))


def _fista(rx, ws, b, b0, z, mom, m, lam, M, n_iter):
    """``n_iter`` accelerated proximal gradient steps (FISTA, Beck & Teboulle 2009, with O'Donoghue & Candes'
    function restart) on the node relaxation restricted to the work set ``ws`` (the other groups stay 0),
    L(Xb + b0) + ridge/2 sum_F ||b_g||^2 + ridge Omega_m(b_C),  Omega_m(b) = min{1/2 sum ||b_g||^2 / z_g :
    z in [0, 1], sum z <= m}: the loss and the fixed groups' ridge are the smooth part (step 1 / (curvature ||X_w||^2
    / n + ridge), X_w the work set's columns), Omega_m is the prox (``_ksupport_prox``).  The intercept is a
    smooth coordinate (its column is in X's norm).  ``mom`` carries the momentum between calls on the same work
    set (None: start at b).  With a box M (< inf) the fixed groups are projected onto ||b_g|| <= M and the prox is
    that of Omega_m with t_g <= M z_g.  Returns (b, b0, z, mom)."""
    L, Xw, gid, fc = ws.L, ws.X, ws.gid, ws.fcols
    free = ~ws.fixed
    nw = ws.groups.size

    def norms(x):
        return np.sqrt(np.bincount(gid, weights=x * x, minlength=nw))

    def objective(x, zx):
        return (rx.value(zx) + 0.5 * lam * float(np.sum(x[fc] ** 2))
                + lam * _ksupport(np.where(free, norms(x), 0.0), m)[0])

    if mom is None:
        xw = b[ws.cols]
        # the first step is a plain prox-gradient step, a descent step; its start may lie outside the box
        # (a wider box's warm start, a group screened in) where objective() is no upper bound
        mom = (xw, b0, z, 1.0, np.inf)
    u, u0, zu, tk, f_prev = mom
    x_prev, x0_prev, z_prev = b[ws.cols], b0, z  # the last iterate (u is the extrapolated point)
    for _ in range(n_iter):
        r = (zu - rx.y) / rx.n if rx.ls else (expit(zu) - rx.y) / rx.n
        g = np.asarray(Xw.T @ r).ravel()
        g[fc] += lam * u[fc]
        v = u - g / L
        v0 = u0 - float(r.sum()) / L if rx.icpt else 0.0
        sv = norms(v)
        t = _ksupport_prox(np.where(free, sv, 0.0), lam / L, m, M)
        t = np.where(free, t, np.minimum(sv, M))
        scale = t / np.where(sv > 0, sv, 1.0)
        x = v * scale[gid]
        zx = np.asarray(Xw @ x).ravel() + v0
        f = objective(x, zx)
        if f > f_prev:  # function restart: drop the momentum, keep the better point
            u, u0, zu, tk = x_prev, x0_prev, z_prev, 1.0
            continue
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * tk * tk))
        beta = (tk - 1.0) / t_new
        u, u0, zu = x + beta * (x - x_prev), v0 + beta * (v0 - x0_prev), zx + beta * (zx - z_prev)
        x_prev, x0_prev, z_prev, tk, f_prev = x, v0, zx, t_new, f
    out = np.zeros(rx.p)
    out[ws.cols] = x_prev
    return out, x0_prev, z_prev, (u, u0, zu, tk, f_prev)


def _conj(s2, lam, M):
    """The conjugate of ridge/2 t^2 on 0 <= t <= M at s = sqrt(s2): s^2 / (2 ridge) up to s = ridge M, then
    linear, M s - ridge M^2 / 2 (M = inf: no box).  It replaces ||c_g||^2 / (2 ridge) in the bound (D) under a box:
    the top-m sum is then the conjugate of the big-M + perspective term min{ridge/2 t^2 / z + mu z : t <= M z}."""
    if not np.isfinite(M):
        return s2 / (2 * lam)
    s = np.sqrt(s2)
    return np.where(s <= lam * M, s2 / (2 * lam), M * s - 0.5 * lam * M * M)


def _process(rx, node, k, lam, M, offer, cutoff, refit, max_passes, node_tol, t0, max_time):
    """Bound node (and screen, round, branch).  Returns (children, node bound)."""
    G, p = rx.G, rx.p
    Fset = np.zeros(G, dtype=bool)
    Fset[node.F] = True
    C = node.C.copy()
    m = k - int(Fset.sum())
    if m <= 0 or int(C.sum()) <= m:  # leaf: the best completion uses every allowed group
        S = np.concatenate([node.F, np.flatnonzero(C)]) if m > 0 else node.F
        _, v, _ = refit(S)
        offer(S)
        return [], v
    b = np.zeros(p)
    b[node.coef_idx] = node.coef_val
    b0 = float(node.b0)
    keep = np.zeros(p + 1, dtype=bool)  # coefficients of allowed groups (padding slot excluded)
    for g in np.flatnonzero(Fset | C):
        keep[rx.idx[g]] = True
    b[~keep[:p]] = 0.0
    nzc = np.flatnonzero(b)
    z = (np.asarray(rx.X[:, nzc] @ b[nzc]).ravel() if nzc.size else np.zeros(rx.n)) + b0
    z, b0 = rx.fit_intercept(z, b0)
    lb_best = node.lb
    cols, Xc = None, None
    zfrac = None
    mom, ws = None, None
    cap = np.inf  # the smallest cutoff a screening used: the bound of what screening removed
    for it in range(max_passes):
        allowed = np.flatnonzero(Fset | C)
        # full gradient on the allowed groups' columns (a column copy once the allowed set is small)
        acols = np.concatenate([rx.idx[g] for g in allowed])
        if acols.size * 2 < p:
            if cols is None or cols.size != acols.size or not np.array_equal(cols, acols):
                cols = acols
                Xc = rx.X[:, cols]
        else:
            cols, Xc = None, None
        V, Fstar = rx.dual_point(z)
        c = np.zeros(p)
        if cols is None:
            c[:] = -np.asarray(rx.X.T @ V).ravel()
            c[~keep[:p]] = 0.0
        else:
            c[cols] = -np.asarray(Xc.T @ V).ravel()
        a = _conj(rx.group_sq(c), lam, M)
        aC = np.where(C, a, -np.inf)
        nC = int(C.sum())
        if nC <= m:  # screening left no choice: leaf
            S = np.concatenate([np.flatnonzero(Fset), np.flatnonzero(C)])
            _, v, _ = refit(S)
            offer(S)
            return [], min(max(v, lb_best), cap)
        top = np.argpartition(-aC, m)[: m + 1]
        top = top[np.argsort(-aC[top], kind="stable")]
        am, am1 = aC[top[m - 1]], aC[top[m]]
        lb = -Fstar - float(a[Fset].sum()) - float(aC[top[:m]].sum())
        lb_best = max(lb_best, lb)
        cut = cutoff()
        if lb_best >= cut:
            return [], min(lb_best, cap)
        # screening from this dual point
        out = C & (lb + am - a >= cut)
        out[top[:m]] = False
        fin = np.zeros(G, dtype=bool)
        tm = top[:m]
        fin[tm[lb + aC[tm] - am1 >= cut]] = True
        changed = False
        if out.any() or fin.any():  # every solution screened away has value >= cut: the node's bound is <= cut
            cap = min(cap, cut)
        if out.any():
            changed = True
            C &= ~out
            for g in np.flatnonzero(out):
                ig = rx.idx[g]
                keep[ig] = False
                if np.any(b[ig]):
                    z -= np.asarray(rx.X[:, ig] @ b[ig]).ravel()
                    b[ig] = 0.0
        if fin.any():
            changed = True
            Fset |= fin
            C &= ~fin
            m -= int(fin.sum())
            if m <= 0 or int(C.sum()) <= m:
                S = np.concatenate([np.flatnonzero(Fset), np.flatnonzero(C)]) if m > 0 else np.flatnonzero(Fset)
                _, v, _ = refit(S)
                offer(S)
                return [], min(max(v, lb_best), cap)
        if changed:
            mom = None  # the node changed: restart the momentum
            continue  # recompute the bound with the reduced node
        # primal value of the relaxation (an upper bound on R) and the relaxed z
        t = np.sqrt(rx.group_sq(b))
        tF = t[Fset]
        ks, zC, _ = _ksupport(np.where(C, t, 0.0), m)
        primal = rx.value(z) + 0.5 * lam * float(tF @ tF) + lam * ks
        if np.isfinite(M) and (t.max() > M * (1 + 1e-9) or float(t[C].sum()) > M * m * (1 + 1e-9)):
            primal = np.inf  # outside the box (a wider box's warm start, a group screened in): not an upper bound yet
        zfrac = zC
        # converged, or the relaxation is surely below the cutoff (no pruning here: branch with a fair bound)
        if ((np.isfinite(primal) and primal - lb <= max(node_tol * max(1.0, abs(primal)), 0.25 * (cut - primal)))
                or time.perf_counter() - t0 > max_time):
            break
        # the work set: fixed and nonzero groups, the 2m + 20 free groups of largest a_g and any free group
        # within 10% of the m-th largest (the prox can only make these nonzero soon); it only grows in a node
        want = Fset | (C & (t > 0)) | (C & (a >= 0.9 * am))
        if C.sum() > 2 * m + 20:
            want[np.argpartition(-aC, 2 * m + 20)[: 2 * m + 20]] = True
        want &= Fset | C
        if (ws is None or np.any(want & ~ws.mask) or np.any(ws.mask & ~(Fset | C))
                or np.any(ws.fixed != Fset[ws.groups])):
            ws = _WorkSet(rx, want if ws is None else want | (ws.mask & (Fset | C)), Fset)
            mom = None
        b, b0, z, mom = _fista(rx, ws, b, b0, z, mom, m, lam, M, 20)
    # incumbent from rounding: F and the m free groups of largest relaxed norm (ties by the gradient)
    t = np.sqrt(rx.group_sq(b))
    score = np.where(C, t + 1e-12 * np.sqrt(np.maximum(a, 0.0)), -np.inf)
    pick = np.argpartition(-score, m - 1)[:m]
    offer(np.concatenate([np.flatnonzero(Fset), pick]))
    if lb_best >= cutoff():
        return [], min(lb_best, cap)
    # branch on the most fractional free group (else the free group of largest relaxed norm)
    frac = np.where(C, np.minimum(zfrac, 1.0 - zfrac), -1.0) if zfrac is not None else np.full(G, -1.0)
    g = int(np.argmax(frac)) if frac.max() > 1e-6 else int(np.argmax(np.where(C, t + 1e-12 * a, -np.inf)))
    nz = np.flatnonzero(b)
    C2 = C.copy()
    C2[g] = False
    Fin = np.flatnonzero(Fset)
    d = node.depth + 1
    child_in = _Node(lb_best, d, np.append(Fin, g), C2, nz, b[nz], b0)
    bo = b.copy()
    bo[rx.idx[g]] = 0.0
    nzo = np.flatnonzero(bo)
    child_out = _Node(lb_best, d, Fin, C2.copy(), nzo, bo[nzo], b0)
    return [child_in, child_out], min(lb_best, cap)
