"""Group lasso: lambda_max and the KKT conditions at the solver's output.

Statements (theory_checks.md 6, [D✓]), P(beta) = L(beta) + lam sum_g w_g ||beta_g||:
- lambda_max = max_g ||grad_g L(0)|| / w_g (LS: max_g ||X_g^T y||/(n w_g); logistic with 0/1 labels and no
  intercept: max_g ||X_g^T (y - 1/2)||/(n w_g)); beta = 0 is optimal iff lam >= lambda_max.
- KKT: with c = -grad L(beta), c_g = lam w_g beta_g/||beta_g|| on active groups, ||c_g|| <= lam w_g on the others.

Checks per instance: ``groupsparse.lambda_max`` equals the formula (rtol 1e-12); ``groupsparse.solve`` returns
exactly 0 at lam = lambda_max (1 + 1e-6) and a nonzero solution at lambda_max (1 - 1e-3); at lam = ratio *
lambda_max the solver meets its contract (converged, certificate c <= tol max(1, P); that c really bounds
P(beta) - P* is checked in ``duality_gap``) and the KKT residuals of the returned beta (computed here) are below
the bound that c implies: ||beta - beta_hat|| <= delta = sqrt(2 c / mu) (mu: strong convexity, LS lambda_min(X^T X/n), logistic
min_i sigma'(x_i^T beta)/2 * lambda_min, n > p), so ||c_g - c_hat_g|| <= curv ||X_g|| ||X|| delta / n and, on
active groups, the unit direction moves by <= 2 delta / ||beta_g||.

Negative control: a deliberately broken solver (one outer iteration of one epoch) must be flagged.
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit

import groupsparse as gs

from . import _glasso as G
from .framework import Claim, Control, Outcome, register, seeds, st

SOURCE = "theory_checks.md 6 (KKT of the group lasso; grpreg check_rest_set [C])"
_strat = G.strategy(st, seeds)


def _check(params, broken=False):
    kind = params["loss"]
    X, y, groups, loss = G.instance(params)
    n = X.shape[0]
    lmax = G.lambda_max(kind, X, y, groups)
    lmax_lib = gs.lambda_max(loss, gs.GroupLasso(1.0), groups)
    s_lmax = 1e-12 * lmax - abs(lmax_lib - lmax)
    tol = 1e-12
    kw = dict(max_iter=1, max_epochs=1) if (broken and params["solver"] == "bcd") else (
        dict(max_iter=1) if broken else {})
    solve = lambda lam: gs.solve(loss, gs.GroupLasso(lam), groups, solver=params["solver"], tol=tol, **kw)
    zero_ok = not np.any(solve(lmax * (1 + 1e-6)).coef)
    nonzero_ok = bool(np.any(solve(lmax * (1 - 1e-3)).coef))
    lam = params["lam_ratio"] * lmax
    sol = solve(lam)
    beta = sol.coef
    P = G.primal(kind, X, y, groups, lam, beta)
    # the solver's contract: a certificate c >= P(beta) - P* (validated in ``duality_gap``) with c <= tol max(1, P)
    contract = tol * max(1.0, abs(P))
    s_contract = contract * (1 + 1e-9) - sol.certificate if sol.converged else -1.0
    c = max(float(sol.certificate), 0.0) + 1e-15 * max(1.0, abs(P))  # + rounding of P and D
    res, bn = G.kkt_residuals(kind, X, y, groups, lam, beta)
    curv = 1.0 if kind == "ls" else 0.25
    lmin = float(np.linalg.eigvalsh(X.T @ X / n)[0])
    mu = lmin if kind == "ls" else 0.5 * float(np.min(expit(X @ beta) * expit(-X @ beta))) * lmin
    delta = np.sqrt(2 * c / max(mu, 1e-300))
    Xn = np.linalg.norm(X, 2)
    bounds = np.empty(groups.n_groups)
    for g, idx in enumerate(groups.indices):
        cb = curv * np.linalg.norm(X[:, idx], 2) * Xn * delta / n
        if bn[g] > 0:
            cb += lam * groups.weights[g] * 2 * delta / max(bn[g] - delta, 1e-300) if bn[g] > delta else np.inf
        bounds[g] = cb
    # rounding floor: residuals are sums of O(p) products of O(|c|) numbers
    floor = 1e-13 * max(1.0, lam * float(np.max(groups.weights)))
    s_kkt = float(np.min(bounds + floor - res))
    scale = max(1.0, lmax)
    slack = min(s_lmax / scale, s_kkt / scale, s_contract)
    if not (zero_ok and nonzero_ok):
        slack = -1.0
    return Outcome(slack, dict(lambda_max=lmax, lambda_max_lib=lmax_lib, zero_at_lmax=zero_ok,
                               nonzero_below=nonzero_ok, certificate=float(sol.certificate), kkt_max=float(res.max()),
                               kkt_bound_min=float(bounds.min()), support=int(np.sum(bn > 0)), loss=kind))


register(Claim(
    name="group_lasso_kkt_lambda_max",
    title="Group lasso: λ_max formula, zero/nonzero around it, KKT at the solution",
    source=SOURCE, mark="D✓",
    statement="beta = 0 iff lam >= max_g ||grad_g L(0)||/w_g; the returned beta satisfies the group-lasso KKT "
              "conditions up to a bound derived from its duality gap",
    assumptions="LS or logistic (0/1 labels, no intercept), designs iid/equicorr/toeplitz/near_dup, t in 2..6 "
                "groups of size 1..4, n = p + 5..30, weights sqrt(size), lam/lambda_max in [0.05, 0.99], bcd/fista",
    strategy=_strat, check=_check,
    controls=[Control("broken solver (one outer iteration)", "a solver stopped after one iteration must be caught",
                      _strat, lambda p: _check(p, broken=True), budget=50)],
    under_test="groupsparse.lambda_max, groupsparse.solve(GroupLasso, solver='bcd'|'fista', tol=1e-12)",
    cost=0.5,
))
