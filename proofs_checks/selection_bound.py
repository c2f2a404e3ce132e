"""The certified lower bound of ``select(..., bound=True)`` never exceeds the best k-group objective.

Statement (``groupsparse/selection/bound.py``: perspective relaxation, Ceria & Soares 1999; Gunluk & Linderoth
2010; Dong, Chen & Linderoth 2015): with H = X^T X / n (centred with an intercept), delta = lambda_min(H) + ridge,
    min_{b, z} 1/2 b^T (H + ridge I - delta I) b - <X^T y / n, b> + c + delta/2 sum_g ||b_g||^2 / z_g,
    0 <= z <= 1, sum z <= k
is a convex relaxation of min{L(b) : at most k nonzero groups}, so its value is <= OPT_k; the library also never
reports less than the unconstrained minimum (a valid bound); with delta = 0 (p > n, no ridge) it is that minimum.

Checks: lower_bound <= OPT_k (enumeration of all k-group supports, exact refits) + 1e-9 scale;
lower_bound >= the unconstrained minimum - 1e-9 scale; lower_bound agrees with the relaxation solved here by
cvxpy (|difference| <= 2e-6 (1 + |value|): the library subtracts a 1e-7 solver margin); certificate = objective -
lower_bound; the same for the Gram form (``GramLeastSquares.from_data``) and ``selection.lower_bound``.  With a
ridge, ``select(method='bnb')`` (certified branch and bound): its lower bound <= OPT_k <= its objective, and =
OPT_k when it reports 'optimal'.  Two outputs (feature groups spanning both): lower_bound <= OPT_k.

Negative control: the relaxation without the perspective term (delta = 0 always: the unconstrained bound) must be
strictly below the library's bound on some instance (the library's bound is not the trivial one).
"""
from __future__ import annotations

from itertools import combinations

import numpy as np

import groupsparse as gs
from groupsparse.selection import lower_bound as lib_lower_bound

from ._instances import design
from .framework import Claim, Control, Outcome, register, seeds, st

SOURCE = "perspective relaxation (Ceria & Soares 1999; Dong, Chen & Linderoth 2015); groupsparse/selection/bound.py"

_strat = st.fixed_dictionaries({
    "seed": seeds(), "design": st.sampled_from(["iid", "equicorr", "toeplitz"]), "t": st.integers(3, 7),
    "k": st.integers(1, 3), "extra_n": st.integers(-6, 30), "ridge": st.sampled_from([0.0, 0.0, 1e-2, 0.2]),
    "icpt": st.booleans(), "gram": st.booleans(), "method": st.sampled_from(["splicing", "omp", "local_search"])})


def _ref_values(X, y, groups, k, ridge, icpt):
    """(OPT_k, unconstrained minimum, relaxation value or None) for the feature part (intercept profiled out)."""
    n, p = X.shape
    if icpt:
        X, y = X - X.mean(axis=0), y - y.mean()
    H, b, c = X.T @ X / n, X.T @ y / n, y @ y / (2 * n)

    def refit(cols):
        if cols.size == 0:
            return c
        A = H[np.ix_(cols, cols)] + ridge * np.eye(cols.size)
        w = np.linalg.lstsq(A, b[cols], rcond=None)[0]
        return c - 0.5 * w @ b[cols]

    opt = min(refit(groups.columns(S)) for S in combinations(range(groups.n_groups), k))
    unc = max(refit(np.arange(p)), 0.0) if ridge == 0 else refit(np.arange(p))
    ev = np.linalg.eigvalsh(H)
    delta = max(ev[0], 0.0) + ridge
    if delta <= 1e-10 * max(1.0, ev[-1]) or (p > n and ridge == 0):
        return opt, unc, None
    import cvxpy as cp
    M = H + (ridge - delta) * np.eye(p)
    M = 0.5 * (M + M.T)
    beta, z = cp.Variable(p), cp.Variable(groups.n_groups)
    persp = cp.hstack([cp.quad_over_lin(beta[idx], z[g]) for g, idx in enumerate(groups.indices)])
    obj = 0.5 * cp.quad_form(beta, cp.psd_wrap(M)) - b @ beta + c + 0.5 * delta * cp.sum(persp)
    prob = cp.Problem(cp.Minimize(obj), [z >= 0, z <= 1, cp.sum(z) <= k])
    prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    return opt, unc, (float(prob.value) if prob.status == "optimal" else None)


def _check(params, trivial=False):
    rng = np.random.default_rng(params["seed"])
    sizes = [int(s) for s in rng.integers(1, 3, size=params["t"])]
    groups = gs.Groups.from_sizes(sizes)
    p = groups.n_features
    n = max(p + params["extra_n"], 4)
    X = design(params["design"], n, p, rng, rho=0.6) + (rng.standard_normal(p) if params["icpt"] else 0.0)
    beta = np.zeros(p)
    for g in rng.choice(len(sizes), size=min(2, len(sizes)), replace=False):
        beta[groups.indices[g]] = rng.standard_normal(sizes[g])
    y = X @ beta + 0.5 * rng.standard_normal(n) + (3.0 if params["icpt"] else 0.0)
    k = min(params["k"], params["t"] - 1)
    ridge, icpt = params["ridge"], params["icpt"]
    if params["gram"] and not icpt:
        loss = gs.GramLeastSquares.from_data(X, y, ridge=ridge)
    else:
        loss = gs.LeastSquares(X, y, ridge=ridge, fit_intercept=icpt)
    opt, unc, relax = _ref_values(X, y, groups, k, ridge, icpt)
    sol = gs.select(loss, groups, k, method=params["method"], bound=True)
    lb = float(sol.lower_bound)
    scale = max(1.0, abs(opt))
    info = dict(lower_bound=lb, opt=opt, unconstrained=unc, relaxation=relax, objective=sol.objective,
                certificate=sol.certificate, kind=sol.info.get("bound_kind"))
    if trivial:  # control: the trivial (unconstrained) bound must be visibly weaker than the library's somewhere
        # the claim "lower_bound = the unconstrained minimum" must fail: the perspective term adds something
        return Outcome(unc + 1e-6 * scale - lb, info)
    slacks = [opt + 1e-9 * scale - lb,                                   # a valid bound
              lb - unc + 1e-9 * scale,                                   # never below the trivial bound
              1e-12 * scale - abs(sol.certificate - max(sol.objective - lb, 0.0))]
    lb2, _ = lib_lower_bound(loss, groups, k)
    slacks.append(1e-9 * scale - abs(float(lb2) - lb))
    if ridge > 0 and not (params["gram"] and not icpt):  # certified branch and bound (needs a ridge, X form)
        bb = gs.select(loss, groups, k, method="bnb")
        info.update(bnb_objective=bb.objective, bnb_lower_bound=bb.lower_bound, bnb_status=bb.info.get("certified"))
        slacks += [opt + 1e-9 * scale - float(bb.lower_bound),   # its proven bound is a bound
                   bb.objective - opt + 1e-9 * scale]            # and its support is feasible
        if bb.info.get("certified") == "optimal":
            slacks.append(1e-7 * scale - (bb.objective - opt))  # proven optimal (gap_tol default): = OPT_k
    if relax is not None:  # the library's bound is the relaxation's value (minus its 1e-7 margin) or the trivial one
        slacks.append(2e-6 * (1 + abs(relax)) - abs(lb - max(relax, unc)))
    # two outputs (feature groups span both): the library's bound (the unconstrained minimum) <= OPT_k, which is
    # the best k-group support for the sum of the two outputs' refits
    Y2 = np.column_stack([y, X @ rng.standard_normal(p) + rng.standard_normal(n)])
    loss2 = gs.LeastSquares(X, Y2, ridge=ridge, fit_intercept=icpt)
    opt2 = min(sum(_ref_values_opt(X, Y2[:, j], groups, S, ridge, icpt) for j in range(2))
               for S in combinations(range(groups.n_groups), k))
    lb_multi = float(gs.select(loss2, groups, k, method="omp", bound=True).lower_bound)
    slacks.append(opt2 + 1e-9 * max(1.0, abs(opt2)) - lb_multi)
    info.update(opt_two_outputs=opt2, lower_bound_two_outputs=lb_multi)
    return Outcome(min(slacks), info)


def _ref_values_opt(X, y, groups, S, ridge, icpt):
    """Refit value of support S for one output (intercept profiled out)."""
    n = X.shape[0]
    if icpt:
        X, y = X - X.mean(axis=0), y - y.mean()
    cols = groups.columns(list(S))
    A = X[:, cols].T @ X[:, cols] / n + ridge * np.eye(cols.size)
    b = X[:, cols].T @ y / n
    return y @ y / (2 * n) - 0.5 * b @ np.linalg.lstsq(A, b, rcond=None)[0]


register(Claim(
    name="selection_bound",
    title="select(bound=True): lower bound <= best k-group value, = the perspective relaxation",
    source=SOURCE, mark="D✓",
    statement="unconstrained min <= lower_bound <= OPT_k; lower_bound = perspective relaxation value; certificate = "
              "objective - lower_bound",
    assumptions="least squares (X or Gram form), ridge 0/1e-2/0.2, with/without intercept, t in 3..7 groups of "
                "size 1..2, k in 1..3, n = p - 6 .. p + 30 (p > n included), designs iid/equicorr/toeplitz",
    strategy=_strat, check=_check,
    controls=[Control("trivial bound", "the unconstrained minimum must be strictly weaker than the library's bound "
                      "somewhere", _strat, lambda p: _check(p, trivial=True), budget=30)],
    under_test="groupsparse.select(..., bound=True), groupsparse.selection.lower_bound (selection/bound.py), "
               "select(method='bnb')",
    cost=2.0,  # cvxpy relaxation, enumeration and branch and bound per instance
))
