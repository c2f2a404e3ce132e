"""SA++ Lemma 2.2: an l1-regularised mask induces the group l_{2/3} quasi-norm.

Statement (seqattn_pp.md 1.3, [P] v1-verbatim):

    min_{w in R^t, beta in R^p}  L({w_i beta|T_i}) + lam (||w||_1 + ||beta||_2^2)
        =  min_u  L(u) + (3/2) 2^{1/3} lam * sum_i ||u|T_i||_2^{2/3}.

Pointwise form: min_{w > 0} w + a^2/w^2 = (3/2) 2^{1/3} a^{2/3}, attained at w = 2^{1/3} a^{2/3}.

Whole problem: the sign of w_i can be moved into beta_i, so w >= 0 loses nothing; L-BFGS then runs on w = v^2
(smooth, same minimum value).  Reduced side: ``groupsparse.GroupBridge(1.5 * 2**(1/3) * lam, q=2/3)``, unit weights.
q(x) = x^{2/3} is concave, strictly increasing, q(0) = 0: Theorem 1.1 applies to it.

Negative control: an L2 mask penalty (||w||_2^2 instead of ||w||_1) induces 2 lam ||u_g|| (group lasso), so the
minima must disagree with the l_{2/3} form.
"""
from __future__ import annotations

import numpy as np

import groupsparse as gs

from ._masks import LSProblem, pointwise_outcome, whole_problem_outcome
from .framework import Claim, Control, Outcome, register, seeds, st

SOURCE = "SA++ (arXiv 2402.17902v1) Lemma 2.2 and App. A"
C23 = 1.5 * 2.0 ** (1.0 / 3.0)

_pw = st.fixed_dictionaries({"seed": seeds(), "log10_a": st.floats(-4.0, 3.0)})
_WS = np.geomspace(1e-5, 1e4, 4001)  # w* = 2^{1/3} a^{2/3} lies in [2.7e-3, 126] for a in [1e-4, 1e3]


def _pointwise(params, l2=False):
    a = 10.0 ** params["log10_a"]
    h = (lambda w: w * w + a * a / (w * w)) if l2 else (lambda w: w + a * a / (w * w))
    slack, info = pointwise_outcome(h, _WS, C23 * a ** (2.0 / 3.0))
    info["a"] = a
    return Outcome(slack, info)


register(Claim(
    name="lemma_2_2_l1_mask.pointwise",
    title="Lemma 2.2 l1 mask = (3/2)2^{1/3} l_{2/3} penalty (scalar form)",
    source=SOURCE, mark="P",
    statement="min_{w>0} w + a^2/w^2 = (3/2) 2^{1/3} a^{2/3} for every a > 0",
    assumptions="a in [1e-4, 1e3]",
    strategy=_pw, check=_pointwise,
    controls=[Control("L2 mask penalty", "w^2 + a^2/w^2 (min 2a) compared with (3/2)2^{1/3}a^{2/3}: must differ",
                      _pw, lambda p: _pointwise(p, l2=True), budget=20)],
    under_test="closed form vs scipy bounded scalar minimisation (no library code involved)",
    cost=0.05,
))

_whole = st.fixed_dictionaries({
    "seed": seeds(), "n": st.integers(8, 12), "t": st.integers(3, 4), "lam_frac": st.floats(0.02, 0.5)})
N_STARTS = 2  # per support (all 2^t - 1 supports are enumerated; see _masks.whole_problem_outcome)


def _whole_problem(params, l2=False):
    rng = np.random.default_rng(params["seed"])
    sizes = [int(s) for s in rng.integers(1, 4, size=params["t"])]
    prob = LSProblem(rng, params["n"], sizes)
    lam = params["lam_frac"] * prob.gnorm0()
    lab, n_w, onehot = prob.label, prob.t, prob.onehot

    def u_of(Z):
        return (Z[:, :n_w] ** 2)[:, lab] * Z[:, n_w:]

    def F_over_grad(Z):
        V, B = Z[:, :n_w], Z[:, n_w:]
        Wm = V * V  # the mask w = v^2 >= 0
        U = Wm[:, lab] * B
        G = prob.gradL(U)
        if l2:
            mpen, dm = np.sum(Wm * Wm, 1), 2 * Wm
        else:
            mpen, dm = np.sum(Wm, 1), np.ones_like(Wm)
        val = prob.L(U) + lam * (mpen + np.sum(B * B, 1))
        GV = 2 * V * ((G * B) @ onehot + lam * dm)
        GB = Wm[:, lab] * G + 2 * lam * B
        return val, np.concatenate([GV, GB], axis=1)

    def F_red(u):
        return prob.L(u) + C23 * lam * float(np.sum(prob.norms(u) ** (2.0 / 3.0)))

    def lift(u):  # w = 2^{1/3} a^{2/3} (v = sqrt(w)), beta = u / w
        a = prob.norms(u)
        w = 2.0 ** (1.0 / 3.0) * a ** (2.0 / 3.0)
        wl = w[lab]
        return np.concatenate([np.sqrt(w), np.where(wl > 0, u / np.where(wl > 0, wl, 1.0), 0.0)])

    slack, info = whole_problem_outcome(prob, F_over_grad, u_of, lift, F_red, gs.GroupBridge(C23 * lam, q=2 / 3),
                                        N_STARTS, rng, convex=False, tol=1e-10, per_support=True)
    if l2:
        slack = info["c_slack"]
    info["lam"] = lam
    return Outcome(slack, info)


register(Claim(
    name="lemma_2_2_l1_mask.whole_problem",
    title="Lemma 2.2 l1 mask = l_{2/3} penalty (whole problem)",
    source=SOURCE, mark="P",
    statement="min_{w,beta} L(w∘beta) + lam(||w||_1+||beta||^2) = min_u L(u) + (3/2)2^{1/3} lam Σ_g ||u_g||^{2/3}",
    assumptions="L = (1/2n)||y - Xu||^2 + (1e-2/2)||u||^2, n in 8..12, t in 3..4 groups of size 1..3, unit "
                "weights, lam in (0.02, 0.5) * max_g ||grad_g L(0)||",
    strategy=_whole, check=_whole_problem,
    controls=[Control("L2 mask penalty", "lam(||w||^2+||beta||^2) induces group lasso, not l_{2/3}: minima differ",
                      _whole, lambda p: _whole_problem(p, l2=True), budget=30)],
    under_test="groupsparse.solve(LeastSquares(ridge), GroupBridge(q=2/3), tol=1e-10 KKT) from 0 and from "
               "L-BFGS's best u",
    cost=3.0,
))
