"""SA++ Lemma 2.1: the unnormalised softmax (exp) mask with an L2 penalty induces the Lambert-W penalty.

Statement (seqattn_pp.md 1.2, [P] v1-verbatim; lambda multiplies both terms, one logit per group):

    min_{w in R^t, beta in R^p}  L({exp(w_i) beta|T_i}) + lam (||w||^2 + ||beta||^2)
        =  min_u  L(u) + lam * sum_i q(||u|T_i||),   q(a) = W(2a^2)^2/4 + W(2a^2)/2   (W: Lambert W).

Pointwise form: min_w w^2 + a^2 exp(-2w) = q(a), attained at w = W(2a^2)/2.

Reduced side in the library: ``groupsparse.ExpMaskPenalty(lam)`` with unit group weights (``exp_mask_q``).

Caveat (reported, see lemma_2_4_subadditive and theorem_1_1_unique_sparse_min): q(a) ~ a^2 near 0, so q is
superadditive there and is NOT in Theorem 1.1's class; "log-sum regularisation" describes the tail only.

Negative control: the identity-mask convention (lam/2)(||w||^2 + ||beta||^2) gives a different penalty, so both the
pointwise and the whole-problem minima must disagree with q.
"""
from __future__ import annotations

import numpy as np
from scipy.special import lambertw

import groupsparse as gs
from groupsparse.penalties import exp_mask_q

from ._masks import LSProblem, pointwise_outcome, whole_problem_outcome
from .framework import Claim, Control, Outcome, register, seeds, st

SOURCE = "SA++ (arXiv 2402.17902v1) Lemma 2.1 and App. A"

_pw = st.fixed_dictionaries({"seed": seeds(), "log10_a": st.floats(-4.0, 3.0)})
_WS = np.linspace(-2.0, 12.0, 4001)  # w* = W(2a^2)/2 lies in [0, 6] for a <= 1e3


def _pointwise(params, c=1.0):
    a = 10.0 ** params["log10_a"]
    closed = float(exp_mask_q(a))
    # library's q vs an independent evaluation of the same formula (catches a wrong branch of W)
    W = float(np.real(lambertw(2 * a * a)))
    lib_err = abs(closed - (W * W / 4 + W / 2)) / max(closed, 1e-300)
    slack, info = pointwise_outcome(lambda w: c * (w * w + a * a * np.exp(-2 * w)), _WS, closed)
    info.update(a=a, lib_q_err=lib_err)
    return Outcome(min(slack, 1e-13 - lib_err), info)


register(Claim(
    name="lemma_2_1_exp_mask.pointwise",
    title="Lemma 2.1 exp mask = Lambert-W penalty (scalar form)",
    source=SOURCE, mark="P",
    statement="min_w w^2 + a^2 e^{-2w} = W(2a^2)^2/4 + W(2a^2)/2 for every a > 0",
    assumptions="a in [1e-4, 1e3]",
    strategy=_pw, check=_pointwise,
    controls=[Control("lam/2 convention", "(w^2 + a^2 e^{-2w})/2 instead of lam(...): must differ from q(a)",
                      _pw, lambda p: _pointwise(p, c=0.5), budget=20)],
    under_test="groupsparse.penalties.exp_mask_q vs scipy bounded scalar minimisation",
    cost=0.05,
))

_whole = st.fixed_dictionaries({
    "seed": seeds(), "n": st.integers(8, 12), "t": st.integers(3, 4), "lam_frac": st.floats(0.05, 0.9)})
N_STARTS = 12


def _whole_problem(params, c=1.0):
    rng = np.random.default_rng(params["seed"])
    sizes = [int(s) for s in rng.integers(1, 4, size=params["t"])]
    prob = LSProblem(rng, params["n"], sizes)
    lam = params["lam_frac"] * prob.gnorm0()
    lab, n_w, onehot = prob.label, prob.t, prob.onehot

    def u_of(Z):
        return np.exp(Z[:, :n_w])[:, lab] * Z[:, n_w:]

    def F_over_grad(Z):
        W, B = Z[:, :n_w], Z[:, n_w:]
        E = np.exp(W)
        U = E[:, lab] * B
        G = prob.gradL(U)
        val = prob.L(U) + c * lam * (np.sum(W * W, 1) + np.sum(B * B, 1))
        GW = E * ((G * B) @ onehot) + 2 * c * lam * W
        GB = E[:, lab] * G + 2 * c * lam * B
        return val, np.concatenate([GW, GB], axis=1)

    def F_red(u):
        return prob.L(u) + lam * float(np.sum(exp_mask_q(prob.norms(u))))

    def lift(u):  # w_g = W(2a^2)/2, beta_g = u_g exp(-w_g): the minimiser of the scalar problem
        a = prob.norms(u)
        w = np.real(lambertw(2 * a * a)) / 2
        return np.concatenate([w, u * np.exp(-w[lab])])

    slack, info = whole_problem_outcome(prob, F_over_grad, u_of, lift, F_red, gs.ExpMaskPenalty(lam), N_STARTS,
                                        rng, convex=False, tol=1e-10, from_zero=False)
    if c != 1.0:
        slack = info["c_slack"]
    info["lam"] = lam
    return Outcome(slack, info)


register(Claim(
    name="lemma_2_1_exp_mask.whole_problem",
    title="Lemma 2.1 exp mask = Lambert-W penalty (whole problem)",
    source=SOURCE, mark="P",
    statement="min_{w,beta} L(e^w∘beta) + lam(||w||^2+||beta||^2) = min_u L(u) + lam Σ_g q(||u_g||)",
    assumptions="L = (1/2n)||y - Xu||^2 + (1e-2/2)||u||^2, n in 8..12, t in 3..4 groups of size 1..3, unit "
                "weights, lam in (0.05, 0.9) * max_g ||grad_g L(0)||",
    strategy=_whole, check=_whole_problem,
    controls=[Control("lam/2 convention", "(lam/2)(||w||^2+||beta||^2) induces a different penalty: minima differ",
                      _whole, lambda p: _whole_problem(p, c=0.5), budget=30)],
    under_test="groupsparse.solve(LeastSquares(ridge), ExpMaskPenalty, tol=1e-10 KKT), polishing L-BFGS's best u",
    cost=4.0,
))
