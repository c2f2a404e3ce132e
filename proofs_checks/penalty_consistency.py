"""Value, prox, subdifferential and lambda_max of every penalty agree with each other and with the definitions.

Statements (definitions; theory_checks.md 3.1 and 6):
- value: P(beta) = sum_g rho(||beta_g||; lam w_g) (sparse-group lasso: lam (alpha ||beta||_1 + (1 - alpha)
  sum_g w_g ||beta_g||); composite: lam q^{-1}(sum_g q(||beta_g||))), also as the solvers see it
  (``Problem.objective`` = loss + penalty, unpenalized groups excluded).
- subdifferential distance: dist(-grad_g, dP_g(beta)), with dP_g = rho'(||beta_g||) beta_g/||beta_g|| on nonzero
  groups and the ball of radius rho'(0+) on zero groups (Frechet subdifferential), at random (beta, grad).
- prox optimality: x = prox_{tP}(z) is stationary for its prox problem, i.e. dist(-(x - z)/t, dP(x)) = 0, measured
  by the library's own ``subdiff_distance`` / ``Problem.kkt`` (value, prox and subdifferential must agree).
- lambda_max = max_g ||grad_g L(0)|| / (w_g rho'(0+; 1)) for penalties whose slope at 0 is linear in lam (group
  lasso, MCP, SCAD, log-sum); sparse-group lasso: the smallest lam with ||soft(grad_g, lam alpha)|| <=
  lam (1 - alpha) w_g for all g (root of a decreasing function, by brentq here); with an intercept, L(0) means the
  intercept-only optimum.  The library's KKT residual at beta = 0 is 0 at lam = lambda_max (1 + 1e-6) and positive
  at (1 - 1e-3); for the convex penalties the solver returns 0 above and a nonzero beta below.

Under test: ``Penalty.value`` / ``value_beta``, ``subdiff_distance``, ``prox_group``, ``Problem.objective``,
``Problem.kkt``, ``groupsparse.lambda_max``, ``groupsparse.solve``.  Reference: ``_refpen`` (written from the
definitions, independent of groupsparse.penalties).

Negative control: the reference MCP evaluated with gamma + 0.5 (a wrong constant in the value) must disagree.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit

import groupsparse as gs
from groupsparse.problem import Problem

from ._refpen import ALL, Ref
from .framework import Claim, Control, Outcome, register, seeds, st

SOURCE = "definitions (value, Frechet subdifferential, prox optimality, lambda_max); theory_checks.md 3.1, 6"

# continuous parameters from the seeded generator (see penalty_prox)
_strat = st.fixed_dictionaries({"seed": seeds(), "kind": st.sampled_from(("all",) + ALL), "t": st.integers(2, 6),
                                "unpen": st.booleans()})


def _blocks(rng, t):
    sizes = [int(s) for s in rng.integers(1, 4, size=t)]
    w = rng.uniform(0.3, 2.5, size=t)
    return sizes, gs.Groups.from_sizes(sizes, weights=w)


def _check(params, wrong_gamma=False):
    """One penalty, or every penalty in turn for kind 'all' (each with its own generator): the worst slack."""
    if params["kind"] == "all":
        outs = [_check(dict(params, kind=k, seed=params["seed"] + i), wrong_gamma) for i, k in enumerate(ALL)]
        worst = min(outs, key=lambda o: o.slack)
        return Outcome(worst.slack, dict(worst.info, all_kinds=True))
    rng = np.random.default_rng(params["seed"])
    params = dict(params, log10_lam=rng.uniform(-1.3, 0.5), a=rng.uniform(0.0, 1.0), log10_t=rng.uniform(-2.0, 1.5))
    lam, step = 10 ** params["log10_lam"], 10 ** params["log10_t"]
    ref = Ref(params["kind"], lam, params["a"])
    if wrong_gamma:  # control: a reference MCP with a wrong constant
        ref = Ref("mcp", lam, params["a"])
        ref.gamma += 0.5
    pen = ref.lib
    sizes, groups = _blocks(rng, params["t"])
    p = groups.n_features
    scale = 3 * lam * rng.uniform(0.2, 2.0)
    beta = rng.standard_normal(p) * scale * groups.expand(rng.random(groups.n_groups) < 0.6)
    beta[rng.random(p) < 0.15] = 0.0  # exact zeros inside active groups (sparse-group lasso)
    grad = rng.standard_normal(p) * lam * rng.uniform(0.1, 3.0)
    slacks, info = [], dict(kind=ref.kind)
    # (a) value, directly and through Problem.objective (an unpenalized group is excluded from the penalty)
    v_lib = pen.value_beta(beta, groups) if ref.kind == "sparse_group_lasso" else (
        pen.value(groups.norms(beta)) if ref.kind == "composite" else pen.value(groups.norms(beta), groups.weights))
    v_ref = ref.value(beta, groups)
    sv = max(1.0, abs(v_ref))
    slacks.append(1e-11 - abs(v_lib - v_ref) / sv)
    X = rng.standard_normal((p + 3, p))
    y = rng.standard_normal(p + 3)
    loss = gs.LeastSquares(X, y)
    wts = groups.weights.copy()
    if params["unpen"] and ref.kind != "composite":
        wts[0] = 0.0
    g2 = gs.Groups.from_sizes(sizes, weights=wts)
    prob = Problem(loss, pen, g2)
    W = prob.from_user(beta)
    obj = prob.objective(loss.init_state(W), W)
    keep = g2.expand(wts > 0)
    r = y - X @ beta
    obj_ref = 0.5 * r @ r / X.shape[0] + (ref.value(beta * keep, g2) if ref.kind != "composite" else v_ref)
    slacks.append(1e-11 - abs(obj - obj_ref) / max(1.0, abs(obj_ref)))
    info.update(value_lib=v_lib, value_ref=v_ref, objective=obj, objective_ref=obj_ref)
    # (b) subdifferential distance at a random (beta, grad), and Problem.kkt (unpenalized: the gradient norm)
    d_lib = np.asarray(pen.subdiff_distance(beta, grad, groups), float)
    d_ref = ref.subdiff_distance(beta, grad, groups)
    sg = max(1.0, float(np.max(groups.norms(grad))), lam * float(np.max(groups.weights)))
    slacks.append(1e-10 - float(np.max(np.abs(d_lib - d_ref))) / sg)
    if ref.kind != "composite":
        G = grad.reshape(-1, 1)
        k_lib = prob.kkt(W, G)
        k_ref = ref.subdiff_distance(beta * keep, grad, g2)
        k_ref[wts == 0] = g2.norms(grad)[wts == 0]
        slacks.append(1e-10 - float(np.max(np.abs(k_lib - k_ref))) / sg)
    info.update(subdiff_lib=d_lib.tolist(), subdiff_ref=d_ref.tolist())
    # (c) prox output is stationary for its prox problem (library's own subdifferential), group by group
    z = beta + step * grad
    x = np.zeros(p)
    if ref.kind == "composite":
        norms = groups.norms(z)
        for g, idx in enumerate(groups.indices):  # one block at a time, the others at their current value
            xb = beta.copy()
            rest = sum(ref.q(float(v)) for h, v in enumerate(groups.norms(xb)) if h != g)
            rr = float(norms[g])
            xb[idx] = z[idx] * (pen.prox_given_rest(rr, step, rest) / rr) if rr > 0 else 0.0
            dist = pen.subdiff_distance(xb, (xb - z) / step, groups)[g]
            slacks.append(1e-7 - dist / max(1.0, rr / step))  # the 1-D root is polished to 4 eps; dq is exact
    else:
        for g, idx in enumerate(groups.indices):
            x[idx] = pen.prox_group(z[idx], step, groups.weights[g])
        dist = np.asarray(pen.subdiff_distance(x, (x - z) / step, groups), float)
        sz = max(1.0, float(np.max(groups.norms(z))) / step)
        # the scalar proxes are closed forms or Newton/Brent roots at machine precision: 1e-9 relative
        slacks.append(1e-9 - float(np.max(dist)) / sz)
        info["prox_stationarity"] = float(np.max(dist))
    # (d) lambda_max and the solution around it
    if ref.kind in ("group_lasso", "mcp", "scad", "log_sum", "sparse_group_lasso"):
        slacks.append(_lambda_max_slack(ref, rng, info))
    return Outcome(min(slacks), info)


def _lambda_max_slack(ref, rng, info):
    n, t = 30, int(rng.integers(2, 5))
    sizes, groups = _blocks(rng, t)
    p = groups.n_features
    X = rng.standard_normal((n, p)) + rng.standard_normal(p)  # nonzero column means: the intercept matters
    icpt = bool(rng.random() < 0.5)
    if rng.random() < 0.5:
        y = X @ rng.standard_normal(p) + 2.0 + rng.standard_normal(n)
        loss = gs.LeastSquares(X, y, fit_intercept=icpt)
        r0 = y - (y.mean() if icpt else 0.0)
    else:
        y = (rng.random(n) < expit(X[:, 0] + 0.5)).astype(float)
        loss = gs.Logistic(X, y, fit_intercept=icpt)
        r0 = y - (y.mean() if icpt else 0.5)
    c = groups.norms(X.T @ r0 / n)  # ||grad_g L(0)||, the intercept at its optimum
    pen = ref.lib.with_lam(1.0)
    if ref.kind == "sparse_group_lasso":
        al = ref.alpha
        c_full = X.T @ r0 / n

        def excess(lam, g):
            idx = groups.indices[g]
            return np.linalg.norm(np.maximum(np.abs(c_full[idx]) - lam * al, 0)) - lam * (1 - al) * groups.weights[g]

        if al == 1.0:  # the lasso: lambda_max = max_j |grad_j L(0)|
            lmax = float(np.max(np.abs(c_full)))
        else:  # excess(., g) decreases strictly and is < 0 at hi (the group-lasso value over 1 - alpha)
            hi = 2 * float(np.max(c / groups.weights)) / (1 - al) + 1e-300
            lmax = max(brentq(lambda lam: excess(lam, g), 0.0, hi, xtol=1e-15, rtol=1e-15)
                       if excess(0.0, g) > 0 else 0.0 for g in range(t))
    else:
        slope1 = np.array([Ref(ref.kind, 1.0, 0.0).slope0(w) if ref.kind != "log_sum" else w / ref.eps
                           for w in groups.weights])
        lmax = float(np.max(c / slope1))
    lib = gs.lambda_max(loss, pen, groups)
    # a constant y (one class) is fitted by the intercept alone: the gradient there is 0 up to rounding, so is
    # lambda_max; the library's own intercept fit leaves that rounding (~1e-15), nothing else is checkable
    gscale = float(np.max(np.abs(X))) * float(np.max(np.abs(y))) + 1e-300
    if lmax <= 1e-12 * gscale:
        info.update(lambda_max=lmax, lambda_max_lib=lib, degenerate=True)
        return 1e-9 - abs(lib - lmax) / gscale
    s = 1e-9 - abs(lib - lmax) / max(lmax, 1e-300)
    # beta = 0 (intercept at its optimum) is stationary exactly from lambda_max on: the library's KKT residual
    # there is 0 just above and positive just below
    W = np.zeros((p + int(icpt), 1))
    if icpt:
        W[-1] = np.mean(y) if isinstance(loss, gs.LeastSquares) else np.log(np.mean(y) / (1 - np.mean(y)))
    kkt = lambda lam: float(np.max(Problem(loss, pen.with_lam(lam), groups).kkt(
        W, loss.full_grad(loss.init_state(W), W))[:t]))
    k_above, k_below = kkt(lmax * (1 + 1e-6)), kkt(lmax * (1 - 1e-3))
    info.update(lambda_max=lmax, lambda_max_lib=lib, kkt_above=k_above, kkt_below=k_below)
    if k_above > 1e-12 * lmax or not k_below > 0:
        s = min(s, -1.0)
    if ref.lib.convex:  # convex: 0 is the solution iff lam >= lambda_max, and the solver must find it
        above = gs.solve(loss, pen.with_lam(lmax * (1 + 1e-6)), groups, tol=1e-10)
        below = gs.solve(loss, pen.with_lam(lmax * (1 - 1e-3)), groups, tol=1e-10)
        info.update(zero_above=not np.any(above.coef), nonzero_below=bool(np.any(below.coef)))
        if np.any(above.coef) or not np.any(below.coef):
            s = min(s, -1.0)
    return s


register(Claim(
    name="penalty_consistency",
    title="penalty value, subdifferential, prox and lambda_max agree with the definitions and each other",
    source=SOURCE, mark="D✓",
    statement="P = sum rho(||beta_g||) (closed forms); subdiff_distance = dist(-grad, dP); prox outputs are "
              "stationary (library subdifferential); lambda_max = max_g ||grad_g L(0)|| / (w_g rho'(0+; 1))",
    assumptions="every penalty class (as in penalty_prox), 2..6 groups of size 1..3, weights 0.3..2.5 (one group "
                "unpenalized at random), steps 0.01..30; lambda_max on LS/logistic, with/without intercept",
    strategy=_strat, check=_check,
    controls=[Control("MCP with a wrong gamma", "the reference MCP value with gamma + 0.5 must disagree",
                      st.fixed_dictionaries({"seed": seeds(), "kind": st.just("mcp"), "t": st.integers(2, 6),
                                             "unpen": st.booleans()}),
                      lambda p: _check(p, wrong_gamma=True), budget=50)],
    under_test="Penalty.value / value_beta / subdiff_distance / prox_group, Problem.objective / kkt, "
               "groupsparse.lambda_max, groupsparse.solve",
    cost=2.0,  # kind "all": every penalty per instance
))

