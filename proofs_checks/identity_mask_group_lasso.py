"""Identity mask with an L2 penalty = group lasso (SA++ Sec. 1.2, attributed to Hoff 2017 and Axiotis & Yasuda 2023).

Statement (seqattn_pp.md 1.1, [P] v1-verbatim; note the lambda/2):

    min_{w in R^t, beta in R^p}  L({w_i beta|T_i}) + (lam/2)(||w||^2 + ||beta||^2)
        =  min_{u in R^p}  L(u) + lam * sum_i ||u|T_i||_2 .

Pointwise form (AM-GM, theory_checks.md 4.1 [D✓]): for a = ||u_g|| > 0, min_{w != 0} (w^2 + a^2/w^2)/2 = a, attained
at w^2 = a.

Checks: ``identity_mask_group_lasso.pointwise`` (a on a log grid 1e-4..1e3) and
``identity_mask_group_lasso.whole_problem`` (multi-start L-BFGS on the overparameterised objective vs
``groupsparse.solve(LeastSquares, GroupLasso(lam))`` with unit group weights; see ``_masks``).

Negative controls: drop the 1/2 (values 2x off); one scalar per *coordinate* instead of per group (the reduced
penalty becomes the l1 norm, which differs from the group norm on non-axis-aligned groups).
"""
from __future__ import annotations

import numpy as np

import groupsparse as gs

from ._masks import LSProblem, pointwise_outcome, whole_problem_outcome
from .framework import Claim, Control, Outcome, register, seeds, st

SOURCE = "SA++ (Yasuda et al. 2024, arXiv 2402.17902v1) Sec. 1.2; Hoff 2017"

# ---------------------------------------------------------------- pointwise
_pw = st.fixed_dictionaries({"seed": seeds(), "log10_a": st.floats(-4.0, 3.0)})
_WS = np.geomspace(1e-4, 1e4, 4001)  # independent of the closed form: covers w* = sqrt(a) for a in [1e-4, 1e3]


def _pointwise(params, half=True):
    a = 10.0 ** params["log10_a"]
    c = 0.5 if half else 1.0
    slack, info = pointwise_outcome(lambda w: c * (w * w + a * a / (w * w)), _WS, a)
    info["a"] = a
    return Outcome(slack, info)


register(Claim(
    name="identity_mask_group_lasso.pointwise",
    title="Identity mask + L2 = group lasso (scalar AM-GM form)",
    source=SOURCE, mark="P (statement), D✓ (proof)",
    statement="min_w (w^2 + a^2/w^2)/2 = a for every a > 0",
    assumptions="a in [1e-4, 1e3]",
    strategy=_pw, check=_pointwise,
    controls=[Control("drop the 1/2", "min_w (w^2 + a^2/w^2) compared with a: must be 2x off",
                      _pw, lambda p: _pointwise(p, half=False), budget=20)],
    under_test="closed form vs scipy bounded scalar minimisation (no library code involved)",
    cost=0.05,
))


# ---------------------------------------------------------------- whole problem
_whole = st.fixed_dictionaries({
    "seed": seeds(), "n": st.integers(8, 12), "t": st.integers(3, 4), "lam_frac": st.floats(0.05, 0.9)})

N_STARTS = 12


def _build(params):
    rng = np.random.default_rng(params["seed"])
    sizes = [int(s) for s in rng.integers(1, 4, size=params["t"])]
    prob = LSProblem(rng, params["n"], sizes)
    lam = params["lam_frac"] * prob.gnorm0()
    return rng, prob, lam


def _whole_problem(params, per_coordinate=False):
    rng, prob, lam = _build(params)
    lab = prob.label if not per_coordinate else np.arange(prob.p)
    n_w = prob.t if not per_coordinate else prob.p
    onehot = np.eye(n_w)[lab]

    def u_of(Z):
        return Z[:, :n_w][:, lab] * Z[:, n_w:]

    def F_over_grad(Z):
        W, B = Z[:, :n_w], Z[:, n_w:]
        U = W[:, lab] * B
        G = prob.gradL(U)
        val = prob.L(U) + 0.5 * lam * (np.sum(W * W, 1) + np.sum(B * B, 1))
        GW = (G * B) @ onehot + lam * W
        GB = W[:, lab] * G + lam * B
        return val, np.concatenate([GW, GB], axis=1)

    def F_red(u):
        return prob.L(u) + lam * float(np.sum(prob.norms(u)))

    def lift(u):  # w_g = sqrt(||u_g||), beta_g = u_g / w_g: the AM-GM equality case
        a = np.sqrt(np.bincount(lab, weights=u * u, minlength=n_w))
        w = np.sqrt(a)
        wl = w[lab]
        b = np.where(wl > 0, u / np.where(wl > 0, wl, 1.0), 0.0)
        return np.concatenate([w, b])

    slack, info = whole_problem_outcome(prob, F_over_grad, u_of, lift, F_red, gs.GroupLasso(lam), N_STARTS, rng,
                                        convex=True, n_w=n_w)
    if per_coordinate:  # the lift and (a) are for the per-group map; (c) is the statement that must fail
        slack = info["c_slack"]
    info["lam"] = lam
    return Outcome(slack, info)


register(Claim(
    name="identity_mask_group_lasso.whole_problem",
    title="Identity mask + L2 = group lasso (whole problem)",
    source=SOURCE, mark="P",
    statement="min_{w,beta} L(w∘beta) + (lam/2)(||w||^2+||beta||^2) = min_u L(u) + lam Σ_g ||u_g||",
    assumptions="L = (1/2n)||y - Xu||^2 + (1e-2/2)||u||^2, n in 8..12, t in 3..4 groups of size 1..3, unit "
                "weights, lam in (0.05, 0.9) * max_g ||grad_g L(0)||",
    strategy=_whole, check=_whole_problem,
    controls=[Control("one scalar per coordinate",
                      "u_j = w_j beta_j induces lam*||u||_1, not the group norm: minima must differ",
                      _whole, lambda p: _whole_problem(p, per_coordinate=True), budget=30)],
    under_test="groupsparse.solve(LeastSquares(ridge), GroupLasso, solver='bcd', tol=1e-13)",
    cost=3.0,
))
