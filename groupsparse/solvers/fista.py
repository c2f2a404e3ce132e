"""Proximal gradient with FISTA momentum and adaptive restart, on the full problem.

Step 1/L with L the global Lipschitz constant.  Momentum restarts when the objective goes up (O'Donoghue and
Candes' function-value scheme), which also keeps the method monotone for nonconvex penalties: a momentum step
that does not lower the objective is replaced by a plain proximal gradient step from the current point.
"""
from __future__ import annotations

import time

import numpy as np

from .._array import copy
from .._validation import check_positive_int


def fista(prob, W0=None, tol=1e-8, max_iter=20_000, check_every=10, max_time=None, verbose=False, stop="auto"):
    """Stopping rules as in ``bcd`` (relative to ``Problem.scales``), tested every ``check_every`` iterations and
    at the last one; at most ``max_iter`` iterations and ``max_time`` seconds (then converged=False)."""
    check_every = check_positive_int(check_every, "check_every")
    loss = prob.loss
    W = prob.zeros() if W0 is None else prob.native(W0)
    Lg = max(loss.global_lipschitz(), 1e-300)  # X = 0: any step is exact
    t = 1.0 / Lg
    convex = prob.has_gap and stop != "kkt"
    needs_fixpoint = prob.penalty is not None and not prob.penalty.convex and not prob.unpenalized
    gap_floor, kkt_scale = prob.scales()
    kkt_stop = max(tol * kkt_scale, prob.kkt_floor())
    Y, theta = copy(W), 1.0
    state = loss.init_state(W)
    obj = prob.objective(state, W)
    history, t0 = [], time.perf_counter()
    deadline = None if max_time is None else t0 + max_time
    cert, converged, it = np.inf, False, 0
    for it in range(1, max_iter + 1):
        sY = loss.init_state(Y)
        W_new = prob.prox_all(Y - t * loss.full_grad(sY, Y), t, W)
        s_new = loss.init_state(W_new)
        o_new = prob.objective(s_new, W_new)
        if o_new > obj:  # restart: plain prox-gradient step from W
            theta = 1.0
            W_new = prob.prox_all(W - t * loss.full_grad(state, W), t, W)
            s_new = loss.init_state(W_new)
            o_new = prob.objective(s_new, W_new)
        theta_new = 0.5 * (1 + np.sqrt(1 + 4 * theta * theta))
        Y = W_new + ((theta - 1) / theta_new) * (W_new - W)
        W, state, obj, theta = W_new, s_new, o_new, theta_new
        out_of_time = deadline is not None and time.perf_counter() >= deadline
        if it % check_every == 0 or it == max_iter or out_of_time:
            if loss.has_dual:
                loss.profile_intercept(state, W)
                obj = prob.objective(state, W)
            G = loss.full_grad(state, W)
            if convex:
                gap = prob.duality_gap(state, W, G, obj)[0]
                cert = max(gap, 0.0)  # a valid dual point: a negative gap is rounding
                done = gap <= max(tol * abs(obj), gap_floor)
            else:
                kkt = prob.kkt(W, G)
                if needs_fixpoint:
                    kkt = np.maximum(kkt, prob.fixpoint_scores(W, G))
                cert = float(np.max(kkt))
                done = cert <= kkt_stop
            history.append({"iter": it, "time": time.perf_counter() - t0, "objective": obj, "certificate": cert})
            if verbose:
                print(f"[fista] iter {it}: objective {obj:.10g} certificate {cert:.3g}")
            if done:
                converged = True
                break
            if out_of_time:
                break
    kind = "duality_gap" if convex else "kkt"
    return prob.solution(W, state, cert, kind, converged, it, history,
                         kkt=float(np.max(prob.kkt(W, loss.full_grad(state, W)))))
