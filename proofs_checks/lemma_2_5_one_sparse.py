"""SA++ Lemma 2.5: for strictly increasing q with q(0) = 0 and beta of group sparsity 1,
sum_i ||beta_i|| = q^{-1}( sum_i q(||beta_i||) ).

Statement (seqattn_pp.md 1.5, [P] v1-verbatim).  Only one term is nonzero and q(0) = 0, so the right side is
q^{-1}(q(a)) = a.  Subadditivity is not needed: x^2 and the Lambert-W q are included.

Evaluated by the library (``groupsparse.CompositePenalty(lam, q).value``, whose q^{-1} is a root solve) and
against lam * sum ||beta_i|| (the group-lasso value with unit weights), rtol 1e-12.

Negative control: two nonzero groups with a strictly concave q make the inequality of Lemma 2.4 strict, so
equality must fail.
"""
from __future__ import annotations

import numpy as np

import groupsparse as gs

from ._qfuncs import NOT_SUBADDITIVE, SUBADDITIVE
from .framework import Claim, Control, Outcome, register, seeds, st
from .lemma_2_4_subadditive import norms_of

SOURCE = "SA++ (arXiv 2402.17902v1) Lemma 2.5"
ALL_Q = {**SUBADDITIVE, **NOT_SUBADDITIVE}


def _strategy(qnames, n_active):
    return st.fixed_dictionaries({
        "seed": seeds(), "q": st.sampled_from(sorted(qnames)), "t": st.integers(2, 6),
        "n_active": n_active, "log10_scale": st.floats(-3.0, 3.0), "lam": st.floats(0.01, 10.0)})


def _check(params):
    q, _ = ALL_Q[params["q"]]
    a = norms_of(params)
    lam = params["lam"]
    lhs = lam * float(np.sum(a))
    rhs = gs.CompositePenalty(lam, q).value(a)
    # root solve to 4 eps relative, plus a few ulps in q and the sum: 1e-12 relative
    err = abs(rhs - lhs) / max(lhs, 1e-300)
    return Outcome(1e-12 - err, dict(lhs=lhs, rhs=rhs, rel_err=err))


register(Claim(
    name="lemma_2_5_one_sparse",
    title="Lemma 2.5: equality in Lemma 2.4 at group sparsity 1",
    source=SOURCE, mark="P",
    statement="q strictly increasing, q(0) = 0, ||beta||_group = 1 => Σ||β_i|| = q^{-1}(Σ q(||β_i||))",
    assumptions="q in {x, x^(1/2), x^(2/3), log(1+x), x+|sin x|/2, x^2, Lambert-W}; exactly one nonzero group "
                "of norm 1e-3..1e3; lam in [0.01, 10]",
    strategy=_strategy(ALL_Q, st.just(1)), check=_check,
    controls=[Control("two nonzero groups, concave q", "strict inequality of Lemma 2.4: equality must fail",
                      _strategy(["x^(1/2)", "log(1+x)", "x^(2/3)"], st.integers(2, 6)), _check, budget=20)],
    under_test="groupsparse.CompositePenalty.value",
    cost=0.05,
))
