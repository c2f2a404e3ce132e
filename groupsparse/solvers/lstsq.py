"""Unpenalized least squares (lam = 0, or every group of weight 0): the exact minimiser in one factorisation.

Here the duality gap carries no information (the dual scale is 0) and coordinate descent converges at the rate
of cond(X)^-2, so an iterative solve would either never certify or never finish; ``LeastSquares.solve_rows``
(gelsy, min-norm where X is singular) and ``GramLeastSquares.solve_rows`` give the optimum directly.  The
certificate is the KKT residual (the gradient norm) of the result, reported as is.
"""
from __future__ import annotations

import numpy as np

from .._array import to_numpy


def least_squares(prob, W0=None, tol=1e-8, verbose=False, **_ignored):
    loss = prob.loss
    sol = loss.solve_rows(np.arange(loss.n_rows))
    if prob.device is None:
        W = np.asarray(to_numpy(sol), float).reshape(loss.n_rows, prob.K)
    else:  # a Gram loss on its device: the solution stays there, in the loss's dtype
        W = prob.xp.reshape(prob.xp.astype(sol, prob.dtype), (loss.n_rows, prob.K))
    state = loss.init_state(W)
    kkt = float(np.max(prob.kkt(W, loss.full_grad(state, W))))
    if verbose:
        print(f"[lstsq] objective {prob.objective(state, W):.10g}  kkt {kkt:.3g}")
    return prob.solution(W, state, kkt, "kkt", True, 1, [], kkt=kkt, method="lstsq")
