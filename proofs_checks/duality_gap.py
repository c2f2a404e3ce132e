"""Group lasso duality gap: weak duality everywhere, zero at the optimum.

Statements (theory_checks.md 6, [D✓]).  LS: D(u) = (1/2n)(||y||^2 - ||y - u||^2), feasible iff
||X_g^T u||/n <= lam w_g; from any beta, u = r min(1, lam / max_g ||X_g^T r||/(n w_g)) is feasible and
G(beta, u) = P(beta) - D(u) >= (1/2n)||y - X beta - u||^2 >= 0.  Logistic (labels +-1): D(theta) =
-(1/n) sum [a_i log a_i + (1 - a_i) log(1 - a_i)], a_i = n theta_i y_i; G >= 0.  At the optimum the gap is 0.

Checks per instance: (i) weak duality at 5 random beta (LS also the completed-square bound), by the formulas
here and by the library's own certificate (``groupsparse.problem.Problem.duality_gap``, which must never be
negative: a negative certificate would let a solver stop early); (ii) at ``groupsparse.solve``'s output: the reported certificate c is
<= tol * max(1, P) (the stopping contract), is a valid bound (the other solver, polished to 1e-15 from there,
finds no point better than P - c), and the residual-based gap computed here is <= c + a bound on
D* - D(u(beta)) derived from ||beta - beta_hat|| <= sqrt(2c/mu) (so the gap reaches 0 at the optimum).

Negative controls: the gap computed with w_g = 1 while the solver used sqrt(p_g) (must be visibly nonzero at the
"optimum"); the optimum perturbed by 1e-3 in one active group (the gap must exceed the tolerance).
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit

import groupsparse as gs
from groupsparse.problem import Problem

from . import _glasso as G
from .framework import Claim, Control, Outcome, register, seeds, st

SOURCE = "theory_checks.md 6 (Fenchel dual of the group lasso, LS and logistic)"
_strat = G.strategy(st, seeds)


def _lib_gap(loss, lam, groups, beta):
    prob = Problem(loss, gs.GroupLasso(lam), groups)
    W = prob.from_user(beta)
    state = loss.init_state(W)
    Gr = loss.full_grad(state, W)
    primal = prob.objective(state, W)
    return prob.duality_gap(state, W, Gr, primal)[0], primal


def _check(params, control=None):
    kind = params["loss"]
    X, y, groups, loss = G.instance(params)
    n = X.shape[0]
    rng = np.random.default_rng(params["seed"] + 1)
    lmax = G.lambda_max(kind, X, y, groups)
    lam = params["lam_ratio"] * lmax
    slacks = []
    for _ in range(5):
        beta = rng.standard_normal(X.shape[1]) * rng.uniform(0.01, 2.0) * (rng.random(X.shape[1]) < 0.7)
        gap, P, u = G.gap(kind, X, y, groups, lam, beta)
        lib_gap, lib_P = _lib_gap(loss, lam, groups, beta)
        floor = 1e-12 * max(1.0, abs(P))  # rounding in P and D
        lower = 0.0
        if kind == "ls":
            r = y - X @ beta - u
            lower = 0.5 * r @ r / n
        # the library's certificate takes the best of its dual points, one of which is this module's: so
        # 0 <= lib_gap <= gap (weak duality and consistency)
        slacks += [gap - lower + floor, lib_gap + floor, gap - lib_gap + floor, floor - abs(lib_P - P)]
    tol = 1e-12
    sol = gs.solve(loss, gs.GroupLasso(lam), groups, solver=params["solver"], tol=tol)
    beta = sol.coef.copy()
    P_sol = G.primal(kind, X, y, groups, lam, beta)
    floor = 1e-14 * max(1.0, abs(P_sol))  # rounding of P and D (O(1) sums of O(n p) products)
    if control is not None:  # the controls: the gap at (a corrupted view of) the optimum must be ~ 0, and is not
        weights = np.ones(groups.n_groups) if control == "unit_weights" else None
        if control == "perturb":
            act = groups.support(beta)
            beta[groups.indices[int(act[0]) if act.size else 0]] += 1e-3
        g, P, _ = G.gap(kind, X, y, groups, lam, beta, weights)
        return Outcome(tol * max(1.0, abs(P)) + floor - g, dict(gap=g))
    # (ii-a) the certificate is a valid suboptimality bound: no point does better than P(beta) - c.  The witness
    # beta' is the other solver polished to tol 1e-15 from beta.
    other = "fista" if params["solver"] == "bcd" else "bcd"
    beta2 = gs.solve(loss, gs.GroupLasso(lam), groups, solver=other, tol=1e-15, warm_start=beta,
                     max_iter=20_000 if other == "fista" else 200).coef
    P2 = G.primal(kind, X, y, groups, lam, beta2)
    s_valid = sol.certificate + floor - (P_sol - P2)
    s_contract = tol * max(1.0, abs(P_sol)) * (1 + 1e-9) - sol.certificate if sol.converged else -1.0
    # (ii-b) the gap reaches 0: this module's residual-based gap g(beta) is at most c plus D* - D(u(beta)), and
    # the latter is bounded through ||beta - beta_hat|| <= delta = sqrt(2 c / mu) (strong convexity, n > p)
    g, _, u = G.gap(kind, X, y, groups, lam, beta)
    excess = _dual_excess(kind, X, y, groups, lam, beta, u, max(sol.certificate, 0.0) + floor)
    s_zero = max(sol.certificate, 0.0) + excess + floor - g
    worst_weak = min(slacks)
    return Outcome(min(worst_weak, s_valid, s_contract, s_zero),
                   dict(gap_residual_dual=g, certificate=float(sol.certificate), excess_bound=excess,
                        polish_improvement=P_sol - P2, weak_duality_slack=worst_weak, loss=kind))


def _dual_excess(kind, X, y, groups, lam, beta, u, c):
    """Upper bound on D* - D(u(beta)) given P(beta) - P* <= c (derivation in the comments)."""
    n = X.shape[0]
    z = X @ beta
    lmin = float(np.linalg.eigvalsh(X.T @ X / n)[0])
    Xn = np.linalg.norm(X, 2)
    if kind == "ls":
        delta = np.sqrt(2 * c / max(lmin, 1e-300))
        r = y - z
        # u = s r, u_hat = r_hat: ||u - u_hat|| <= ||r - r_hat|| + (1 - s)||r||, ||r - r_hat|| <= ||X|| delta;
        # D* - D(u) = (||y - u||^2 - ||y - u_hat||^2)/(2n) <= ||u - u_hat|| (2||y - u|| + ||u - u_hat||)/(2n)
        s = float(np.linalg.norm(u) / max(np.linalg.norm(r), 1e-300))
        du = Xn * delta + (1 - s) * np.linalg.norm(r)
        return du * (2 * np.linalg.norm(y - u) + du) / (2 * n)
    sig = expit(X @ beta)
    mu = 0.5 * float(np.min(sig * (1 - sig))) * lmin  # local curvature (halved: beta is within delta of beta_hat)
    delta = np.sqrt(2 * c / max(mu, 1e-300))
    ys = 2 * y - 1
    a = np.clip(n * u * ys, 0.0, 1.0)
    a_raw = expit(-ys * z)
    s = float(np.max(a / np.maximum(a_raw, 1e-300)))
    # a_hat = sigma(-y z_hat): ||a - a_hat|| <= ||X|| delta / 4 + (1 - s) ||a_raw||; D = -(1/n) sum h(a_i) with
    # |h'(a)| = |logit a| <= ||z||_inf + ||X|| delta + |log s| + 1 on the segment
    da = Xn * delta / 4 + (1 - s) * np.linalg.norm(a_raw)
    M = np.max(np.abs(z)) + Xn * delta + abs(np.log(max(s, 1e-300))) + 1.0
    return M * np.sqrt(n) * da / n


register(Claim(
    name="duality_gap",
    title="Group lasso duality gap >= 0 everywhere, -> 0 at the solver's optimum",
    source=SOURCE, mark="D✓",
    statement="P(beta) - D(u(beta)) >= (LS: (1/2n)||y - X beta - u||^2) >= 0 for every beta; = 0 at the optimum",
    assumptions="LS or logistic (0/1 labels, no intercept), designs iid/equicorr/toeplitz/near_dup, t in 2..6 "
                "groups of size 1..4, n = p + 5..30, weights sqrt(size), lam/lambda_max in [0.05, 0.99]",
    strategy=_strat, check=_check,
    controls=[Control("gap with unit weights", "solver used sqrt(p_g); a gap computed with w_g = 1 is not zero",
                      _strat, lambda p: _check(p, "unit_weights"), budget=50),
              Control("perturbed optimum", "one active group moved by 1e-3: the gap exceeds the tolerance",
                      _strat, lambda p: _check(p, "perturb"), budget=50)],
    under_test="groupsparse.solve(GroupLasso, tol=1e-12) and its duality-gap certificate (Problem.duality_gap)",
    cost=0.3,
))
