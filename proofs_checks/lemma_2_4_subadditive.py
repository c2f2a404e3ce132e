"""SA++ Lemma 2.4: for strictly increasing, subadditive q,  sum_i ||beta_i|| <= q^{-1}( sum_i q(||beta_i||) ).

Statement (seqattn_pp.md 1.5, [P] v1-verbatim).  Proof: q(sum a_i) <= sum q(a_i) by subadditivity; apply the
increasing q^{-1}.

Extra assumption needed (reported with a concrete counterexample): sum_i q(||beta_i||) must lie in the range of q,
e.g. q unbounded.  For the bounded, strictly increasing, subadditive (concave) q(x) = 1 - e^{-x}, two groups of
norm 1 give sum q = 1.264 > sup q = 1, so q^{-1} is undefined and the lemma's right-hand side does not exist.

The right-hand side is evaluated by the library (``groupsparse.CompositePenalty(1, q).value``, whose q^{-1} is a
bracketing root solve) and, where a closed form exists, independently; both must satisfy the inequality.

Negative controls: q(x) = x^2 and the Lemma 2.1 Lambert-W q (superadditive near 0) with >= 2 small nonzero
groups must violate it.
"""
from __future__ import annotations

import numpy as np

import groupsparse as gs

from ._qfuncs import BOUNDED, NOT_SUBADDITIVE, SUBADDITIVE
from .framework import Claim, Control, Outcome, register, seeds, st

SOURCE = "SA++ (arXiv 2402.17902v1) Lemma 2.4"


def _strategy(qnames, lo=-3.0, hi=3.0, min_active=1):
    return st.fixed_dictionaries({
        "seed": seeds(), "q": st.sampled_from(sorted(qnames)), "t": st.integers(2, 6),
        "n_active": st.integers(min_active, 6), "log10_scale": st.floats(lo, hi)})


def norms_of(params):
    rng = np.random.default_rng(params["seed"])
    t = params["t"]
    k = min(params["n_active"], t)
    a = np.zeros(t)
    a[rng.choice(t, k, replace=False)] = 10 ** params["log10_scale"] * rng.uniform(0.2, 1.0, size=k)
    return a


def _check(params, table):
    q, q_inv = table[params["q"]]
    a = norms_of(params)
    lhs = float(np.sum(a))
    rhs_lib = gs.CompositePenalty(1.0, q).value(a)  # library: q^{-1} by root solve
    rhs = [rhs_lib] + ([float(q_inv(sum(q(float(x)) for x in a)))] if q_inv is not None else [])
    # tolerance: q^{-1} is solved to 4 eps relative and the sums add a few ulps: 1e-12 relative is generous
    slack = min(r - lhs for r in rhs) + 1e-12 * max(1.0, lhs)
    return Outcome(slack, dict(lhs=lhs, rhs_lib=rhs_lib, rhs_closed=rhs[-1], norms=a.tolist()))


register(Claim(
    name="lemma_2_4_subadditive",
    title="Lemma 2.4: Σ||β_i|| <= q^{-1}(Σ q(||β_i||)) for subadditive q",
    source=SOURCE, mark="P",
    statement="q strictly increasing, subadditive => sum_i ||beta_i|| <= q^{-1}(sum_i q(||beta_i||))",
    assumptions="q in {x, x^(1/2), x^(2/3), log(1+x), x+|sin x|/2} (all unbounded, so Σq lies in the range of q); "
                "t in 2..6 groups, 1..t nonzero, norms 1e-3..1e3",
    strategy=_strategy(SUBADDITIVE), check=lambda p: _check(p, SUBADDITIVE),
    controls=[Control("q = x^2 (superadditive)", "two or more nonzero groups: Σa_i > sqrt(Σa_i^2)",
                      _strategy(["x^2"], min_active=2), lambda p: _check(p, NOT_SUBADDITIVE), budget=50),
              Control("Lambert-W q near 0", "the Lemma 2.1 q ~ a^2 is superadditive for small norms",
                      _strategy(["lambert_w_exp_mask"], lo=-3.0, hi=-0.5, min_active=2),
                      lambda p: _check(p, NOT_SUBADDITIVE), budget=50)],
    notes=["As printed, Lemma 2.4 needs an extra assumption: Σ_i q(||β_i||) must lie in the range of q (true when q "
           "is unbounded). See the counterexample."],
    counterexamples=lambda: _counterexamples(),
    under_test="groupsparse.CompositePenalty.value (q^{-1} by bracketing root solve)",
    cost=0.05,
))


def _counterexamples():
    out = []
    q, _ = BOUNDED["1-exp(-x)"]
    a = np.array([1.0, 1.0])
    s = float(q(1.0) * 2)
    try:
        gs.CompositePenalty(1.0, q).value(a)
        lib = "returned a value (it should not: q^{-1} is undefined)"
    except ValueError as e:
        lib = f"raises ValueError: {e}"
    out.append(("Lemma 2.4 needs Σq in the range of q",
                f"q(x) = 1 - e^(-x) is strictly increasing, concave (so subadditive) with q(0) = 0, but bounded by 1. "
                f"For β with two groups of norm 1: Σ q = {s:.6f} > sup q = 1, so q^(-1)(Σ q) does not exist and the "
                f"lemma's right-hand side is undefined. groupsparse.CompositePenalty(1, q).value([1, 1]) {lib}."))
    qw, _ = NOT_SUBADDITIVE["lambert_w_exp_mask"]
    a = np.array([0.1, 0.1])
    rhs = gs.CompositePenalty(1.0, qw).value(a)
    out.append(("The Lemma 2.1 (Lambert-W) q is not subadditive near 0",
                f"q(0.2) = {qw(0.2):.6f} > q(0.1) + q(0.1) = {2 * qw(0.1):.6f}; for β with two groups of norm 0.1, "
                f"Σ||β_i|| = 0.2 > q^(-1)(Σq) = {rhs:.6f}. So Lemma 2.4 (and Theorem 1.1) do not cover the penalty "
                f"that Lemma 2.1's exp mask induces."))
    return out
