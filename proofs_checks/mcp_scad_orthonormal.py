"""Group MCP and SCAD: closed-form (firm) thresholding under orthonormal design.

Statements (theory_checks.md 3.1-3.3, [C] grpreg src/grpreg.c ``F``/``Fs``/``MCP``, [D✓] re-derived):
with X_g^T X_g / n = I the group problem is  min_b (1/2)||z - b||^2 + rho(||b||; lam_g, gamma),  z = X_g^T r_{-g}/n,
and its solution is b = len(||z||) z/||z|| with

    MCP  (gamma > 1): len = 0 if r <= lam; gamma/(gamma-1) (r - lam) if lam < r <= gamma lam; r beyond.
    SCAD (gamma > 2): len = (r - lam)_+ if r <= 2 lam; ((gamma-1)/(gamma-2)) (r - gamma lam/(gamma-1)) if
                      2 lam < r <= gamma lam; r beyond.

The scalar objective s^2/2 + rho(s) is strictly convex iff gamma > 1 (MCP) / gamma > 2 (SCAD), so the minimiser
is unique.  With a fully orthonormal X (X^T X / n = I) the whole objective separates by group, z_g = X_g^T y / n,
and the global minimiser is the formula applied group by group (this contains the finite-sample oracle
statement 3.4(a): strong groups come back as their OLS value, weak ones as exactly 0).

Checks: ``.threshold`` compares the formula (written here from grpreg), the library's ``prox_scalar`` (step 1)
and a brute-force global minimisation; ``.solver`` compares ``groupsparse.solve`` on a fully orthonormal design
with the formula group by group.

Negative controls: a prox step t >= gamma (nonconvex scalar problem: the convex-case formula is no longer the
minimiser); a deliberately broken solver (its MCP/SCAD prox replaced by soft thresholding).
"""
from __future__ import annotations

import numpy as np

import groupsparse as gs

from ._instances import fully_orthonormal
from .framework import Claim, Control, Outcome, register, seeds, st

SOURCE = "Breheny & Huang 2015 (grpreg src/grpreg.c F, Fs, MCP); theory_checks.md 3.2-3.3"


def rho(pen, s, lam, gamma):
    """MCP / SCAD of s >= 0 (theory_checks 3.1), written independently of groupsparse.penalties."""
    s = np.asarray(s, float)
    if pen == "mcp":
        return np.where(s <= gamma * lam, lam * s - s * s / (2 * gamma), gamma * lam * lam / 2)
    mid = (2 * gamma * lam * s - s * s - lam * lam) / (2 * (gamma - 1))
    return np.where(s <= lam, lam * s, np.where(s <= gamma * lam, mid, lam * lam * (gamma + 1) / 2))


def firm(pen, r, lam, gamma, t=1.0):
    """The closed-form length (convex case) for step t; t = 1 is the orthonormal-design formula."""
    if pen == "mcp":
        if r <= t * lam:
            return 0.0
        if r <= gamma * lam:
            return (r - t * lam) / (1 - t / gamma)
        return r
    if r <= lam + t * lam:  # (r - t lam)_+ up to lam (1 + t); t = 1: 2 lam
        return max(r - t * lam, 0.0)
    if r <= gamma * lam:
        return ((gamma - 1) * r - t * gamma * lam) / (gamma - 1 - t)
    return r


_thr = st.fixed_dictionaries({
    "seed": seeds(), "pen": st.sampled_from(["mcp", "scad"]), "lam": st.floats(0.1, 2.0),
    "r_over_lam": st.floats(0.0, 6.0), "gamma_excess": st.floats(0.05, 3.0)})


def _gamma(params):
    return (1.0 if params["pen"] == "mcp" else 2.0) + params["gamma_excess"]


def _threshold(params, t=1.0):
    pen, lam, gamma = params["pen"], params["lam"], _gamma(params)
    r = params["r_over_lam"] * lam
    x_formula = firm(pen, r, lam, gamma, t)
    P = gs.GroupMCP(lam, gamma) if pen == "mcp" else gs.GroupSCAD(lam, gamma)
    x_lib = P.prox_scalar(r, t, lam) if t == 1.0 else x_formula
    h = lambda x: (x - r) ** 2 / (2 * t) + rho(pen, x, lam, gamma)
    # brute force on [0, r] (the minimiser never exceeds r): a 20001-point grid plus the kinks lam, 2lam, gamma lam
    grid = np.concatenate([np.linspace(0.0, max(r, 1e-12), 20001), [lam, 2 * lam, gamma * lam]])
    grid = grid[grid <= max(r, 0.0)]
    hmin = float(np.min(h(grid)))
    scale = max(1.0, r * r)
    # the formula must be a global minimiser: h(formula) <= min over the grid (exact up to rounding, 1e-12)
    opt = hmin - float(h(x_formula)) + 1e-12 * scale
    agree = 1e-12 * max(1.0, r) - abs(x_lib - x_formula)  # library prox vs formula: both closed forms
    return Outcome(min(opt, agree), dict(r=r, lam=lam, gamma=gamma, pen=pen, formula=x_formula, lib=x_lib,
                                         h_formula=float(h(x_formula)), h_grid_min=hmin))


register(Claim(
    name="mcp_scad_orthonormal.threshold",
    title="MCP/SCAD firm thresholding = exact scalar minimiser (= library prox)",
    source=SOURCE, mark="C, D✓",
    statement="argmin_s (s - r)^2/2 + rho(s) is the firm-threshold formula (MCP gamma>1, SCAD gamma>2)",
    assumptions="lam in [0.1, 2], r in [0, 6 lam], gamma in (1.05, 4] (MCP) / (2.05, 5] (SCAD), step t = 1",
    strategy=_thr, check=_threshold,
    controls=[Control("nonconvex step t >= gamma", "step t = 1.5 gamma: the convex-case formula is not the minimiser",
                      _thr, lambda p: _threshold(p, t=1.5 * _gamma(p)), budget=100)],
    under_test="groupsparse.GroupMCP/GroupSCAD.prox_scalar",
    cost=0.1,
))

class _SoftProx:
    """Deliberately broken penalty for the negative control: the MCP/SCAD value with a soft-thresholding prox
    (forgets the gamma/(gamma-1) rescaling): a plausible prox bug the check must catch."""

    def __new__(cls, P):
        broken = P.__class__.__new__(type("Broken" + P.__class__.__name__, (P.__class__,),
                                          {"prox_scalar": lambda self, r, t, lw: max(r - t * lw, 0.0)}))
        broken.__dict__.update(P.__dict__)
        return broken


_sol = st.fixed_dictionaries({
    "seed": seeds(), "pen": st.sampled_from(["mcp", "scad"]), "t": st.integers(2, 6), "lam_frac": st.floats(0.1, 0.9),
    "gamma_excess": st.floats(0.05, 3.0), "solver": st.sampled_from(["bcd", "fista"])})


def _solver(params, broken=False):
    rng = np.random.default_rng(params["seed"])
    sizes = [int(s) for s in rng.integers(1, 4, size=params["t"])]
    p = sum(sizes)
    n = p + int(rng.integers(2, 10))
    X = fully_orthonormal(n, p, rng)
    groups = gs.Groups.from_sizes(sizes)  # default weights sqrt(size): lam_g = lam * w_g
    beta = np.zeros(p)
    beta[: sizes[0]] = 3 * rng.standard_normal(sizes[0])
    y = X @ (beta + 0.3 * rng.standard_normal(p)) + 0.1 * rng.standard_normal(n)
    z = X.T @ y / n
    zn = groups.norms(z)
    pen, gamma = params["pen"], _gamma(params)
    lam = params["lam_frac"] * float(np.max(zn / groups.weights))
    P = gs.GroupMCP(lam, gamma) if pen == "mcp" else gs.GroupSCAD(lam, gamma)
    tol = 1e-12
    if broken:
        P = _SoftProx(P)
    sol = gs.solve(gs.LeastSquares(X, y), P, groups, solver=params["solver"], tol=tol)
    expect = np.zeros(p)
    for g, idx in enumerate(groups.indices):
        r = zn[g]
        if r > 0:
            expect[idx] = z[idx] * firm(pen, r, lam * groups.weights[g], gamma) / r
    err = float(np.linalg.norm(sol.coef - expect))
    # the solver stops at KKT residual <= tol * max(1, max_g ||grad_g L(0)||); the separable problem is strongly
    # convex with modulus m = 1 - 1/gamma (MCP) or 1 - 1/(gamma - 1) (SCAD), so ||coef - expect|| <= residual / m
    # (x sqrt(t) groups, x 10 for the different residual norms of the two solvers)
    m = 1 - 1 / gamma if pen == "mcp" else 1 - 1 / (gamma - 1)
    bound = 10 * np.sqrt(len(sizes)) * tol * max(1.0, float(np.max(zn))) / m
    return Outcome(bound - err, dict(err=err, bound=bound, support=sol.support.tolist(), converged=sol.converged,
                                     certificate=sol.certificate))


register(Claim(
    name="mcp_scad_orthonormal.solver",
    title="MCP/SCAD solver on orthonormal design = group-wise firm thresholding",
    source=SOURCE, mark="C, D✓",
    statement="X^T X/n = I => the unique global minimiser of LS + group MCP/SCAD is firm(z_g), z_g = X_g^T y/n",
    assumptions="fully orthonormal X (n > p), t in 2..6 groups of size 1..3, weights sqrt(size), gamma > 1.05 (MCP) "
                "/ > 2.05 (SCAD), lam in (0.1, 0.9) * max_g ||z_g||/w_g; solver bcd or fista, tol 1e-12",
    strategy=_sol, check=_solver,
    controls=[Control("broken prox (soft thresholding)", "a solver whose MCP/SCAD prox is soft thresholding",
                      _sol, lambda p: _solver(p, broken=True), budget=50)],
    under_test="groupsparse.solve(LeastSquares, GroupMCP/GroupSCAD, solver='bcd'|'fista')",
    cost=0.5,
))
