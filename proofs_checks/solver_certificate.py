"""Every solver's certificate bounds its true suboptimality, at every iterate it may return.

Statement (weak duality, theory_checks.md 6, [D✓]): for a convex penalty the certificate is a duality gap
P(beta) - D(u) with u dual-feasible, hence >= P(beta) - P*.  For the group lasso and the sparse-group lasso with
least squares or logistic losses (with or without intercept and ridge), solved by ``bcd`` and ``fista`` with any
tolerance and iteration cap (early stops included: the bound must hold at unconverged points too):
- certificate >= P(beta) - P* - eps_ref, P* from cvxpy (Clarabel, gap 1e-10) on these small problems, eps_ref =
  1e-7 (1 + |P*|) (the reference's own accuracy);
- the reported objective is P(beta) computed here independently (rtol 1e-10), and the certificate is a duality gap
  (certificate_kind 'duality_gap': a KKT residual does not bound P - P*);
- a converged solve meets its contract: certificate <= tol * max(1, |P|) (+ the library's rounding floor), and with
  the default iteration limits these small problems converge.
For nonconvex penalties (MCP, SCAD, and SA++'s composite lam q^{-1}(sum q(||beta_g||)) from a random start) the
certificate is a KKT residual, and block coordinate descent's objective history never increases: the one reported at the output
(``info['kkt']``) must be >= the largest subdifferential distance at beta computed independently (``_refpen``), and
a converged solve must have that distance <= 1e3 tol times the gradient scale at 0 (the library's own scale
may differ by a data-dependent factor).

Negative control: a "certificate" equal to a tenth of the true gap (P - D)/10 at an early-stopped iterate must
fall below P - P* somewhere.
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit

import groupsparse as gs

from ._instances import design
from ._refpen import Ref
from .framework import Claim, Control, Outcome, register, seeds, st

SOURCE = "weak duality (theory_checks.md 6); reference optimum by cvxpy"

_strat = st.fixed_dictionaries({
    "seed": seeds(), "loss": st.sampled_from(["ls", "logistic"]), "pen": st.sampled_from(["group_lasso", "sgl"]),
    "solver": st.sampled_from(["bcd", "fista"]), "icpt": st.booleans(), "ridge": st.sampled_from([0.0, 0.0, 0.05]),
    "t": st.integers(2, 5), "max_iter": st.sampled_from([1, 2, 3, 5, None])})


def _instance(params):
    rng = np.random.default_rng(params["seed"])
    sizes = [int(s) for s in rng.integers(1, 4, size=params["t"])]
    groups = gs.Groups.from_sizes(sizes)
    p = groups.n_features
    n = p + int(rng.integers(5, 25))
    X = design("equicorr", n, p, rng, rho=0.4) + (0.5 * rng.standard_normal(p) if params["icpt"] else 0.0)
    beta = np.zeros(p)
    beta[groups.indices[0]] = rng.standard_normal(sizes[0])
    z = X @ beta + (1.0 if params["icpt"] else 0.0)
    ridge, icpt = params["ridge"], params["icpt"]
    if params["loss"] == "ls":
        y = z + 0.5 * rng.standard_normal(n)
        loss = gs.LeastSquares(X, y, fit_intercept=icpt, ridge=ridge)
    else:
        y = (rng.random(n) < expit(z)).astype(float)
        loss = gs.Logistic(X, y, fit_intercept=icpt, ridge=ridge)
    return rng, X, y, groups, loss


def primal(kind, X, y, b, b0, ridge, pen_value):
    z = X @ b + b0
    data = 0.5 * np.mean((y - z) ** 2) if kind == "ls" else float(np.mean(np.logaddexp(0.0, z) - y * z))
    return data + 0.5 * ridge * b @ b + pen_value


def reference_optimum(kind, X, y, groups, lam, alpha, ridge, icpt):
    import cvxpy as cp
    n, p = X.shape
    b = cp.Variable(p)
    b0 = cp.Variable() if icpt else 0.0
    z = X @ b + b0
    data = cp.sum_squares(y - z) / (2 * n) if kind == "ls" else cp.sum(cp.logistic(z) - cp.multiply(y, z)) / n
    pen = lam * (1 - alpha) * sum(w * cp.norm2(b[idx]) for w, idx in zip(groups.weights, groups.indices))
    if alpha:
        pen = pen + lam * alpha * cp.norm1(b)
    prob = cp.Problem(cp.Minimize(data + 0.5 * ridge * cp.sum_squares(b) + pen))
    prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    return float(prob.value)


def _check(params, weaken=False):
    rng, X, y, groups, loss = _instance(params)
    params = dict(params, lam_ratio=rng.uniform(0.05, 0.9), log10_tol=rng.uniform(-10.0, -2.0))
    kind, icpt, ridge = params["loss"], params["icpt"], params["ridge"]
    alpha = float(rng.uniform(0.1, 0.9)) if params["pen"] == "sgl" else 0.0
    ref = Ref("sparse_group_lasso" if alpha else "group_lasso", 1.0, alpha)
    lmax = gs.lambda_max(loss, ref.lib, groups)
    lam = params["lam_ratio"] * lmax
    ref = Ref(ref.kind, lam, alpha)
    tol = 10 ** params["log10_tol"]
    kw = {} if params["max_iter"] is None else dict(max_iter=params["max_iter"])
    sol = gs.solve(loss, ref.lib, groups, solver=params["solver"], tol=tol, **kw)
    b0 = float(sol.intercept[0]) if icpt else 0.0
    P = primal(kind, X, y, sol.coef, b0, ridge, ref.value(sol.coef, groups))
    Pstar = reference_optimum(kind, X, y, groups, lam, alpha, ridge, icpt)
    eps_ref = 1e-7 * (1 + abs(Pstar))
    cert = float(sol.certificate)
    if weaken:
        cert = cert / 10
    scale = max(1.0, abs(P))
    slacks = [cert - (P - Pstar) + eps_ref,                     # the certificate bounds the suboptimality
              1e-10 - abs(sol.objective - P) / scale,           # the reported objective is P(beta)
              1.0 if sol.certificate_kind == "duality_gap" else -1.0]  # convex: a gap, not a KKT residual
    if sol.converged and not weaken:
        slacks.append(tol * scale * (1 + 1e-9) + 1e-12 * scale - cert)
    if params["max_iter"] is None and not sol.converged and not weaken:
        slacks.append(-1.0)  # with the default limits these small convex problems must converge
    return Outcome(min(slacks) if not weaken else slacks[0] + (0.0 if P - Pstar > 1e3 * eps_ref else 1.0),
                   dict(P=P, P_star=Pstar, certificate=float(sol.certificate), kind=sol.certificate_kind,
                        converged=sol.converged, n_iter=sol.n_iter, subopt=P - Pstar))


register(Claim(
    name="solver_certificate.convex",
    title="duality-gap certificate >= P(beta) - P* at every returned iterate (bcd, fista)",
    source=SOURCE, mark="D✓",
    statement="solve(...).certificate >= P(beta) - P* (weak duality), objective = P(beta), converged => "
              "certificate <= tol max(1, |P|)",
    assumptions="LS or logistic (0/1), with/without intercept, ridge 0 or 0.05, group lasso or sparse-group lasso "
                "(l1_ratio 0.1..0.9), 2..5 groups of size 1..3, n = p + 5..25, lam/lambda_max 0.05..0.9, tol "
                "1e-10..1e-2, max_iter 1, 2, 3, 5 or default",
    strategy=_strat, check=_check,
    controls=[Control("certificate / 10", "a tenth of the gap at an early-stopped iterate must undercut P - P*",
                      _strat, lambda p: _check(p, weaken=True), budget=60)],
    under_test="groupsparse.solve(solver='bcd'|'fista') certificate (Problem.duality_gap), objective",
    cost=1.0,
))


_nc = st.fixed_dictionaries({
    "seed": seeds(), "loss": st.sampled_from(["ls", "logistic"]), "pen": st.sampled_from(["mcp", "scad", "composite"]),
    "solver": st.sampled_from(["bcd", "fista"]), "icpt": st.just(False), "ridge": st.sampled_from([0.0, 0.05]),
    "t": st.integers(2, 5)})


def _kkt_check(params, scale_wrong=1.0):
    rng, X, y, groups, loss = _instance(params)
    params = dict(params, lam_ratio=rng.uniform(0.1, 0.9), a=rng.uniform(0.0, 1.0))
    composite = params["pen"] == "composite"
    warm = None
    if composite:  # SA++ Eq. (1): unit weights, lam a fraction of the largest gradient norm, from a random start
        groups = gs.Groups.from_sizes(groups.sizes.tolist(), weights=np.ones(groups.n_groups))
        lam = params["lam_ratio"] * float(np.max(groups.norms(loss.gradient(np.zeros(X.shape[1])))))
        warm = rng.standard_normal(X.shape[1])
    else:
        lam = params["lam_ratio"] * gs.lambda_max(loss, Ref(params["pen"], 1.0, params["a"]).lib, groups)
    ref = Ref(params["pen"], lam, params["a"])
    cap = dict(max_iter=30) if params["solver"] == "bcd" else dict(max_iter=3000)  # bounded cost, converged or not
    sol = gs.solve(loss, ref.lib, groups, solver=params["solver"], tol=1e-9, warm_start=warm, **cap)  # stop "auto"
    grad = loss.gradient(sol.coef)
    dist = float(np.max(ref.subdiff_distance(sol.coef, grad, groups))) * scale_wrong
    sg = max(1.0, float(np.max(groups.norms(loss.gradient(np.zeros(X.shape[1]))))))
    kkt = float(sol.info["kkt"])  # the KKT residual at the returned beta (the certificate may be one step older)
    info = dict(certificate=float(sol.certificate), kkt_lib=kkt, kkt_ref=dist, converged=sol.converged,
                kind=sol.certificate_kind)
    # the library's residual may include the prox fixed-point residual (>= the subdifferential distance)
    slacks = [kkt - dist + 1e-12 * sg,
              1.0 if sol.certificate_kind == "kkt" else -1.0]  # nonconvex: no duality gap exists
    # block coordinate descent with exact block minimisation (and extrapolation kept only when it lowers the
    # objective) never increases the objective: the outer history is monotone
    objs = np.array([h["objective"] for h in sol.history])
    if params["solver"] == "bcd" and objs.size > 1:
        slacks.append(float(np.min(objs[:-1] - objs[1:])) + 1e-12 * max(1.0, float(np.max(np.abs(objs)))))
    if sol.converged:  # the stopping test: residual <= tol x a gradient scale (the library picks the scale: 1e3 room)
        slacks.append(1e-6 * sg - dist)
    return Outcome(min(slacks), info)


register(Claim(
    name="solver_certificate.kkt",
    title="nonconvex penalties: the KKT certificate bounds the true subdifferential distance at the output",
    source=SOURCE, mark="D✓",
    statement="solve(MCP|SCAD|composite) (default stop) reports a KKT residual >= max_g dist(-grad_g L, dP_g(beta)) at "
              "its output (reference subdifferential); when converged that distance is <= 1e3 tol x the gradient "
              "scale; bcd's objective never increases",
    assumptions="LS or logistic, no intercept, ridge 0 or 0.05, MCP gamma 1.05..5 / SCAD 2.05..6, 2..5 groups, "
                "lam/lambda_max 0.1..0.9, tol 1e-9, capped at 30 (bcd) / 3000 (fista) iterations",
    strategy=_nc, check=_kkt_check,
    controls=[Control("residual x 1e4", "a reference residual inflated 1e4x must exceed the certificate", _nc,
                      lambda p: _kkt_check(p, scale_wrong=1e4), budget=60)],
    under_test="groupsparse.solve(GroupMCP|GroupSCAD|CompositePenalty, solver='bcd'|'fista', ) certificate, "
               "Problem.kkt, Problem.prox (composite tie guard)",
    cost=0.5,
))
