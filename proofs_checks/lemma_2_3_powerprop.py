"""SA++ Lemma 2.3: group PowerPropagation with weight decay is the group lasso.

Statement (seqattn_pp.md 1.4, [P] v1-verbatim; the unused w in the paper's min is dropped):

    min_{beta in R^p}  L({||beta|T_i||_2 beta|T_i}) + lam ||beta||_2^2  =  min_u  L(u) + lam * sum_i ||u|T_i||_2 .

Pointwise form (exact algebra): u_g = ||beta_g|| beta_g gives ||u_g|| = ||beta_g||^2, and the map is a bijection
with inverse beta_g = u_g / sqrt(||u_g||).

Whole problem: L-BFGS on beta vs ``groupsparse.solve(LeastSquares, GroupLasso(lam))`` (unit weights).

Negative control: element-wise PowerPropagation u_j = |beta_j| beta_j turns lam ||beta||^2 into lam ||u||_1, which
is not the group norm on groups of size > 1.
"""
from __future__ import annotations

import numpy as np

import groupsparse as gs

from ._masks import LSProblem, whole_problem_outcome
from .framework import Claim, Control, Outcome, register, seeds, st

SOURCE = "SA++ (arXiv 2402.17902v1) Lemma 2.3 and Sec. 1.2"

_pw = st.fixed_dictionaries({"seed": seeds(), "d": st.integers(1, 6), "log10_scale": st.floats(-4.0, 3.0)})


def _pointwise(params, elementwise=False):
    rng = np.random.default_rng(params["seed"])
    b = 10.0 ** params["log10_scale"] * rng.standard_normal(params["d"])
    nb = np.linalg.norm(b)
    u = np.abs(b) * b if elementwise else nb * b
    pen_over = nb * nb  # ||beta_g||^2 (the weight decay of this group)
    pen_red = np.linalg.norm(u)  # ||u_g||
    inv = u / np.sqrt(np.linalg.norm(u)) if np.linalg.norm(u) > 0 else u * 0
    scale = max(pen_over, 1e-300)
    # exact algebra: only rounding (a few ulps of each quantity) is allowed
    e1 = abs(pen_over - pen_red) / scale
    e2 = np.linalg.norm(inv - b) / max(nb, 1e-300)
    return Outcome(1e-13 - max(e1, e2), dict(norm_beta_sq=pen_over, norm_u=pen_red, inverse_err=e2))


register(Claim(
    name="lemma_2_3_powerprop.pointwise",
    title="Lemma 2.3 group PowerProp: ||(||b|| b)|| = ||b||^2, bijective",
    source=SOURCE, mark="P",
    statement="u = ||b|| b  =>  ||u|| = ||b||^2, and b = u / sqrt(||u||)",
    assumptions="b in R^d, d in 1..6, scale 1e-4..1e3",
    strategy=_pw, check=_pointwise,
    controls=[Control("element-wise powerprop", "u_j = |b_j| b_j: ||u|| != ||b||^2 for d > 1",
                      _pw, lambda p: _pointwise(p, elementwise=True), budget=30)],
    under_test="algebra (no library code involved)",
    cost=0.02,
))

_whole = st.fixed_dictionaries({
    "seed": seeds(), "n": st.integers(8, 12), "t": st.integers(3, 4), "lam_frac": st.floats(0.05, 0.9)})
N_STARTS = 12


def _whole_problem(params, elementwise=False):
    rng = np.random.default_rng(params["seed"])
    sizes = [int(s) for s in rng.integers(1, 4, size=params["t"])]
    prob = LSProblem(rng, params["n"], sizes)
    lam = params["lam_frac"] * prob.gnorm0()
    lab = prob.label if not elementwise else np.arange(prob.p)
    onehot = np.eye(lab.max() + 1)[lab]

    def u_of(Z):
        R = np.sqrt((Z * Z) @ onehot)[:, lab]
        return R * Z

    def F_over_grad(Z):
        R = np.sqrt((Z * Z) @ onehot)
        U = R[:, lab] * Z
        G = prob.gradL(U)
        dot = (Z * G) @ onehot
        ratio = np.where(R > 0, dot / np.where(R > 0, R, 1.0), 0.0)
        GZ = R[:, lab] * G + Z * ratio[:, lab] + 2 * lam * Z
        return prob.L(U) + lam * np.sum(Z * Z, 1), GZ

    def F_red(u):
        return prob.L(u) + lam * float(np.sum(prob.norms(u)))

    def lift(u):  # beta_g = u_g / sqrt(||u_g||)
        a = np.sqrt(np.bincount(lab, weights=u * u, minlength=lab.max() + 1))[lab]
        return np.where(a > 0, u / np.sqrt(np.where(a > 0, a, 1.0)), 0.0)

    slack, info = whole_problem_outcome(prob, F_over_grad, u_of, lift, F_red, gs.GroupLasso(lam), N_STARTS, rng,
                                        convex=True, n_w=0)
    if elementwise:
        slack = info["c_slack"]
    info["lam"] = lam
    return Outcome(slack, info)


register(Claim(
    name="lemma_2_3_powerprop.whole_problem",
    title="Lemma 2.3 group PowerProp + weight decay = group lasso (whole problem)",
    source=SOURCE, mark="P",
    statement="min_beta L({||beta_g|| beta_g}) + lam ||beta||^2 = min_u L(u) + lam Σ_g ||u_g||",
    assumptions="L = (1/2n)||y - Xu||^2 + (1e-2/2)||u||^2, n in 8..12, t in 3..4 groups of size 1..3, unit "
                "weights, lam in (0.05, 0.9) * max_g ||grad_g L(0)||",
    strategy=_whole, check=_whole_problem,
    controls=[Control("element-wise powerprop", "u_j = |b_j| b_j induces lam ||u||_1: minima differ",
                      _whole, lambda p: _whole_problem(p, elementwise=True), budget=30)],
    under_test="groupsparse.solve(LeastSquares(ridge), GroupLasso, tol=1e-13)",
    cost=2.0,
))
