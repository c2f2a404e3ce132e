"""Shared machinery for the mask identities (SA++ Sec. 1.2 and Lemmas 2.1-2.3), pointwise and whole-problem.

Whole-problem form: minimise the overparameterised objective  F_over(w, beta) = L(u(w, beta)) + Pen(w, beta)  by
multi-start L-BFGS (scipy), and the reduced objective  F_red(u) = L(u) + lam * sum_g q(||u_g||)  with groupsparse
(its solver, its penalty classes, unit group weights as in the paper).  Three things are asserted per instance:

(a) the pointwise inequality behind every identity, F_over(z) >= F_red(u(z)), at every L-BFGS end point;
(b) the lift of groupsparse's reduced solution attains equality, F_over(lift(u_red)) = F_red(u_red);
(c) the two minima agree: min over random-start L-BFGS runs = reduced optimum found by groupsparse (rtol 1e-6,
    theory_checks.md T4.2).  For a convex reduced problem the groupsparse value is certified by its duality gap,
    so L-BFGS below it would contradict either the identity or the solver.

L(u) = (1/2n)||y - X u||^2 + (ridge/2)||u||^2 with a small ridge (strictly convex, as the paper's setting asks).
"""
from __future__ import annotations

from itertools import combinations

import numpy as np

import groupsparse as gs

from ._instances import unweighted


class LSProblem:
    def __init__(self, rng, n, sizes, ridge=1e-2):
        self.sizes = list(sizes)
        self.p = int(sum(sizes))
        self.t = len(sizes)
        self.n = n
        self.X = rng.standard_normal((n, self.p))
        beta = rng.standard_normal(self.p) * (rng.random(self.p) < 0.6)
        self.y = self.X @ beta + 0.5 * rng.standard_normal(n)
        self.ridge = ridge
        self.groups = unweighted(self.sizes)
        self.label = self.groups.label
        self.onehot = np.eye(self.t)[self.label]  # (p, t): group-sum as a matrix product (batched)
        self.loss = gs.LeastSquares(self.X, self.y, ridge=ridge)

    def L(self, u):
        """Loss of u (p,) or of each row of U (K, p)."""
        r = u @ self.X.T - self.y
        return 0.5 * np.sum(r * r, axis=-1) / self.n + 0.5 * self.ridge * np.sum(u * u, axis=-1)

    def gradL(self, u):
        return (u @ self.X.T - self.y) @ self.X / self.n + self.ridge * u

    def norms(self, u):
        """Group norms of u (p,) -> (t,), or of each row of U (K, p) -> (K, t)."""
        u = np.asarray(u, float)
        sq = (u * u) @ self.onehot
        return np.sqrt(sq)

    def gnorm0(self):
        """max_g ||grad_g L(0)||: the scale of lam."""
        return float(np.max(self.norms(self.gradL(np.zeros(self.p)))))


def multistart_lbfgs(fun_grad, Z0, iters=2000, m=8, gtol=1e-9):
    """Multi-start L-BFGS, all starts advanced together (a batched two-loop recursion with per-start Armijo
    backtracking; an update is skipped when the curvature s.y is not positive).  ``fun_grad(Z)`` takes the starts as
    rows of Z (K, d) and returns (values (K,), gradients (K, d)).  Returns (values, end points).

    Written here rather than calling scipy per start because scipy's per-iteration overhead dominates on these
    tiny problems (10-20 variables) and the full run needs >= 1000 instances x 12 starts.  Values are compared at
    rtol 1e-6 and the value error at a point with gradient g is O(||g||^2 / curvature) (curvature >= ridge = 1e-2), so
    gtol 1e-9 is ample."""
    with np.errstate(over="ignore", invalid="ignore"):  # trial steps may overflow (exp masks): Armijo rejects them
        return _lbfgs(fun_grad, Z0, iters, m, gtol)


def _lbfgs(fun_grad, Z0, iters, m, gtol):
    Z = np.array(Z0, dtype=float)
    K, d = Z.shape
    f, G = fun_grad(Z)
    S, Y = np.zeros((m, K, d)), np.zeros((m, K, d))
    rho = np.zeros((m, K))
    n_mem = np.zeros(K, dtype=int)
    head = 0
    active = np.ones(K, dtype=bool)
    for _ in range(iters):
        gn = np.sqrt(np.sum(G * G, axis=1))
        active &= gn > gtol * np.maximum(1.0, np.abs(f))
        if not active.any():
            break
        # two-loop recursion (entries with rho == 0 are empty memory slots and contribute nothing)
        q = G.copy()
        alpha = np.zeros((m, K))
        order = [(head - 1 - i) % m for i in range(m)]
        for j in order:
            alpha[j] = rho[j] * np.sum(S[j] * q, axis=1)
            q -= alpha[j][:, None] * Y[j]
        last = (head - 1) % m
        yy = np.sum(Y[last] * Y[last], axis=1)
        gamma = np.where((rho[last] > 0) & (yy > 0), 1.0 / np.maximum(rho[last] * yy, 1e-300), 1.0 / np.maximum(gn, 1.0))
        r = gamma[:, None] * q
        for j in reversed(order):
            beta = rho[j] * np.sum(Y[j] * r, axis=1)
            r += (alpha[j] - beta)[:, None] * S[j]
        D = -r
        slope = np.sum(D * G, axis=1)
        bad = slope >= 0  # not a descent direction: restart memory with steepest descent
        if bad.any():
            D[bad] = -G[bad]
            slope[bad] = -gn[bad] ** 2
            rho[:, bad] = 0.0
        t = np.ones(K)
        todo = active.copy()
        Zn = Z.copy(); fn = f.copy(); Gn = G.copy()
        for _ls in range(40):
            if not todo.any():
                break
            Zt = Z[todo] + t[todo, None] * D[todo]
            ft, Gt = fun_grad(Zt)
            ok = ft <= f[todo] + 1e-4 * t[todo] * slope[todo]
            idx = np.flatnonzero(todo)
            acc = idx[ok]
            Zn[acc], fn[acc], Gn[acc] = Zt[ok], ft[ok], Gt[ok]
            todo[acc] = False
            t[idx[~ok]] *= 0.5
        stuck = todo  # no decrease found in 40 halvings: converged to rounding
        # stalled at rounding level: the decrease is invisible and the gradient already small (value error
        # O(||g||^2 / curvature) <= 1e-12 / 1e-2, far below the rtol 1e-6 the values are compared at)
        stalled = (f - fn <= 1e-14 * np.maximum(1.0, np.abs(f))) & (gn < 1e-6)
        active &= ~(stuck | stalled)
        s_ = Zn - Z
        y_ = Gn - G
        sy = np.sum(s_ * y_, axis=1)
        upd = active & (sy > 1e-300)
        S[head][upd], Y[head][upd] = s_[upd], y_[upd]
        rho[head] = np.where(upd, 1.0 / np.where(upd, sy, 1.0), 0.0)
        head = (head + 1) % m
        Z, f, G = Zn, fn, Gn
    return f, Z


def reduced_solve(prob, penalty, warm_starts, tol):
    """The best groupsparse solution over the warm starts."""
    sols = [gs.solve(prob.loss, penalty, prob.groups, tol=tol, warm_start=w0) for w0 in warm_starts]
    return min(sols, key=lambda s: s.objective)


def whole_problem_outcome(prob, F_over_grad, u_of, lift, F_red, penalty, n_starts, rng, convex,
                          tol=1e-13, rtol=1e-6, n_w=None, from_zero=True, per_support=False):
    """Run (a), (b), (c) above; returns (slack, info).  ``n_w``: number of mask variables (t, or 0).
    ``F_over_grad`` and ``u_of`` work on a batch of points (rows); ``lift`` maps one u to one point.

    ``per_support``: for penalties with infinite slope at 0 (l_{2/3}), every zero group is a local minimum on both
    sides, so random starts land on arbitrary supports.  Then both minima are taken over all 2^t - 1 supports
    (theory_checks T4.2: "enumerating supports and multistarting within each support"): the L-BFGS starts of
    support S are zero outside S, which is invariant (the gradient of those coordinates vanishes there), and the
    reduced side is solved by groupsparse on the loss restricted to S."""
    n_w = prob.t if n_w is None else n_w
    dim = n_w + prob.p
    supports = [list(S) for k in range(1, prob.t + 1) for S in combinations(range(prob.t), k)]
    if per_support:
        starts = []
        for S in supports:
            # multistart inside S around the lift of the least-squares fit on S (random shrink and jitter): a
            # start near 0 in some group of S would just fall into that group's zero local minimum
            cols = prob.groups.columns(S)
            u_ls = np.zeros(prob.p)
            u_ls[cols] = np.linalg.lstsq(prob.X[:, cols], prob.y, rcond=None)[0]
            keep = np.zeros(dim, dtype=bool)
            keep[n_w:] = np.isin(prob.label, S)
            if n_w:
                keep[np.array(S)] = True
            base = np.array([lift(u_ls * rng.uniform(0.2, 1.2)) for _ in range(n_starts)])
            Z = base * (1 + 0.3 * rng.standard_normal(base.shape))
            starts.append(Z * keep)
        starts = np.concatenate(starts)
    else:
        starts = 10 ** rng.uniform(-1.5, 0.5, size=(n_starts, 1)) * rng.standard_normal((n_starts, dim))
    vals, pts = multistart_lbfgs(F_over_grad, starts)
    scale = max(1.0, abs(prob.L(np.zeros(prob.p))))
    # (a) pointwise inequality at every end point: exact algebra, so only rounding (1e-12 relative) is allowed
    a_slack = float(np.min(vals - np.array([F_red(u) for u in u_of(pts)]))) / scale + 1e-12
    # reduced side: groupsparse from zero and from the best L-BFGS point (for nonconvex penalties)
    best_i = int(np.argmin(vals))
    u_lb = u_of(pts[best_i:best_i + 1])[0]
    # nonconvex reduced problem: also polish L-BFGS's best point with groupsparse (a lower value there would mean
    # the L-BFGS point is not even a local minimiser of the reduced problem)
    warm = [None] if convex else ([None, u_lb] if from_zero else [u_lb])
    sol = reduced_solve(prob, penalty, warm, tol)
    u_red = sol.coef
    f_red = F_red(u_red)
    lib_consistency = abs(sol.objective - f_red) / scale  # the library's objective vs ours: same function
    if per_support:
        for S in supports:
            cols = prob.groups.columns(S)
            sub = gs.solve(prob.loss.restrict_rows(cols), penalty, prob.groups.subset(S), tol=tol,
                           warm_start=np.linalg.lstsq(prob.X[:, cols], prob.y, rcond=None)[0])
            u = np.zeros(prob.p)
            u[cols] = sub.coef
            fu = F_red(u)
            lib_consistency = max(lib_consistency, abs(sub.objective - fu) / scale)
            if fu < f_red:
                u_red, f_red = u, fu
    # (b) lift of the groupsparse optimum
    z_lift = lift(u_red)
    b_slack = 1e-10 - abs(float(F_over_grad(z_lift[None, :])[0][0]) - f_red) / scale
    # (c) minima agree (random starts only; the lift is not used as a start)
    min_over = float(vals[best_i])
    c_slack = rtol - abs(min_over - f_red) / scale
    info = dict(min_over=min_over, f_red=f_red, a_slack=a_slack, b_slack=b_slack, c_slack=c_slack,
                lib_objective_mismatch=lib_consistency, certificate=float(sol.certificate),
                certificate_kind=sol.certificate_kind, support=np.flatnonzero(prob.norms(u_red) > 0).tolist(),
                starts_at_min=int(np.sum(np.abs(vals - f_red) / scale <= rtol)), n_starts=n_starts)
    slack = min(a_slack, b_slack, c_slack, 1e-10 - lib_consistency)
    return slack, info


def pointwise_outcome(h, ws, closed, rtol=1e-8):
    """1-D form: min_w h(w) over [lo, hi] vs its closed form.

    Two-sided: the closed form must be a lower bound on a dense grid (up to 1e-13 relative: rounding in h), and a
    bounded scalar minimiser started independently of the closed form must reach it to rtol (theory_checks T4.1)."""
    from scipy.optimize import minimize_scalar
    grid = ws.size
    hv = np.array([h(w) for w in ws])
    i = int(np.argmin(hv))
    a, b = ws[max(i - 1, 0)], ws[min(i + 1, grid - 1)]
    res = minimize_scalar(h, bounds=(a, b), method="bounded", options=dict(xatol=1e-14 * max(1, abs(ws[i]))))
    m = min(float(res.fun), float(hv[i]))
    scale = max(abs(closed), 1e-300)
    lower = (hv.min() - closed) / scale + 1e-13  # closed form is the infimum: nothing below it
    attain = rtol - abs(m - closed) / scale
    return min(lower, attain), dict(closed=closed, numeric=m, lower_slack=lower, attain_slack=attain)
