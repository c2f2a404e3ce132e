"""Block coordinate descent with working sets, Anderson acceleration and gap-safe screening.

Outer loop (as in skglm and celer): score every group by its prox-gradient fixed-point residual, solve the
problem restricted to a working set (the support plus the worst violators, doubling in size), and stop on the
duality gap (convex penalties) or the KKT residual (nonconvex).  Inner loop: cyclic exact block prox steps with
step 1/L_g, the loss state (X W, or H W in Gram form) updated incrementally, and Anderson extrapolation of the
working-set coefficients every ``anderson`` epochs, kept only when it lowers the objective (safe for nonconvex
penalties).  For the group lasso and sparse-group lasso, gap-safe rules drop groups proven zero at the optimum.
"""
from __future__ import annotations

import math
import time

import numpy as np

from .._array import copy, namespace, norm, to_numpy
from ..losses import LeastSquares
from ..penalties import CompositePenalty, GroupLasso, Penalty, SparseGroupLasso
from . import _jit


def _fast_blocks(prob):
    """Per-group column views for the common case (dense least squares, one output, contiguous groups, a radial
    separable penalty), or None.  The fast epoch below then does two BLAS-1/2 calls and a scalar prox per group."""
    if not hasattr(prob, "_fast"):
        loss, pen = prob.loss, prob.penalty
        ok = (isinstance(loss, LeastSquares) and prob.K == 1 and not loss.ridge and isinstance(loss.X, np.ndarray)
              and prob.whole_rows and prob.rows.all_contiguous
              and pen is not None and pen.separable and type(pen).prox_group is Penalty.prox_group)
        prob._fast = None
        if ok:
            X = loss.X
            jit = None
            if _jit.group_lasso_epoch is not None and type(pen) is GroupLasso and X.flags.f_contiguous:
                jit = (prob.rows.start.astype(np.int64), prob.rows.stop.astype(np.int64))
            prob._fast = ([X[:, r] for r in prob.rows], [(r.start, r.stop) for r in prob.rows],
                          pen.lam * prob.weights, 1.0 / loss.n_samples, jit)
    return prob._fast


def _bcd_epoch_fast(prob, fast, W, state, ws, L):
    Xs, bounds, lws, inv_n, jit = fast
    w, r = W[:, 0], state[:, 0]  # views
    if jit is not None:  # w and r are views: the kernel writes through to W and state
        return _jit.group_lasso_epoch(prob.loss.X, jit[0], jit[1], np.asarray(ws, dtype=np.int64), w, r,
                                      np.asarray(L, dtype=float), np.asarray(lws, dtype=float), inv_n)
    prox = prob.penalty.prox_scalar
    worst = 0.0
    for g in ws:
        a, b = bounds[g]
        Xg, Lg = Xs[g], L[g]
        old = w[a:b]
        z = old - (r @ Xg) * (inv_n / Lg)
        lw = lws[g]
        if lw == 0.0:
            new = z
        else:
            nz = math.sqrt(z @ z)
            new = z * (prox(nz, 1.0 / Lg, lw) / nz) if nz > 0.0 else z * 0.0
        d = new - old
        step = math.sqrt(d @ d)
        if step == 0.0:
            continue
        if Lg * step > worst:
            worst = Lg * step
        w[a:b] = new
        r += Xg @ d
    return worst


def _bcd_epoch(prob, W, state, ws, L, rest):
    """One cyclic pass over the groups in ``ws``; returns the largest L_g * ||step_g|| (a fixed-point residual).
    Generic path: W and the state in the loss's namespace (numpy, or torch on its device), two scalars per group
    to the host (the block's norm for its prox, and its step)."""
    if rest is None:
        fast = _fast_blocks(prob)
        if fast is not None:
            return _bcd_epoch_fast(prob, fast, W, state, ws, L)
    loss = prob.loss
    composite = rest is not None
    worst = 0.0
    for g in ws:
        rows, sel = prob.rows[g], prob.mask(g)
        G = loss.grad_rows(state, W, rows)
        old_full = W[rows]
        if sel is None:
            old = old_full
            z = old - G / L[g]
        else:
            old = old_full[sel]
            z = old - G[sel] / L[g]
        new = prob.prox(g, z, 1.0 / L[g], old, rest[0] if composite else None)
        d = new - old
        step = norm(d)
        if step == 0.0:
            continue
        worst = max(worst, L[g] * step)
        if sel is None:
            dW = d
        else:
            dW = prob.xp.zeros_like(old_full)
            dW[sel] = d
        if composite:
            q = prob.penalty.q
            rest[0] += q(norm(new)) - q(norm(old))
        W[rows] = old_full + dW
        loss.update_state(state, rows, dW)
    return worst


def _anderson(history):
    """Anderson extrapolation of the last iterates (``history``: flat arrays of one namespace), or None when
    ill-conditioned.  The small (m x m) system is solved on the host."""
    xp = namespace(history[0])
    X = xp.stack(history)
    U = X[1:] - X[:-1]
    C = np.asarray(to_numpy(U @ U.T), dtype=float)
    try:
        z = np.linalg.solve(C + 1e-12 * np.trace(C) * np.eye(C.shape[0]) / C.shape[0], np.ones(C.shape[0]))
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(z)) or abs(z.sum()) < 1e-300:
        return None
    c = z / z.sum()
    if isinstance(X, np.ndarray):
        return c @ X[1:]
    return xp.asarray(c, dtype=X.dtype, device=X.device) @ X[1:]


def _ws_rows(prob, ws):
    rows = [np.arange(prob.loss.n_rows)[prob.rows[g]] for g in ws]
    return np.unique(np.concatenate(rows)) if rows else np.zeros(0, int)


def bcd(prob, W0=None, tol=1e-8, max_iter=200, max_epochs=50_000, max_time=None, p0=10, anderson=5,
        screening=True, verbose=False, stop="auto"):
    """Solve ``prob`` (a ``Problem``) from W0.  ``tol`` is relative (``Problem.scales``): convex penalties stop on
    gap <= max(tol * |objective|, rounding floor); nonconvex ones (and stop='kkt', lam = 0, or a convex problem
    without a valid dual point) on max KKT residual <= tol * gradient scale, where for nonconvex penalties the
    residual also includes the prox-gradient fixed-point residual: a stopping point is a fixed point of the block
    update, not only a point of the Frechet subdifferential.  Cost is bounded: at most ``max_iter`` outer
    iterations and ``max_epochs`` epochs in all, and ``max_time`` seconds when given; a solve that stops on a
    limit returns converged=False with its certificate."""
    loss = prob.loss
    W = prob.zeros() if W0 is None else prob.native(W0)
    state = loss.init_state(W)
    n_groups = prob.groups.n_groups
    convex = prob.has_gap and stop != "kkt"
    screenable = (convex and isinstance(prob.penalty, (GroupLasso, SparseGroupLasso)) and screening
                  and not loss.ridge and not prob.free_groups.size)
    active = np.ones(n_groups, dtype=bool)  # False once gap-safe screening proves the group zero
    composite = isinstance(prob.penalty, CompositePenalty)
    # a nonconvex prox can move a group that satisfies the subdifferential test (zero is always stationary for
    # infinite slopes; MCP's hard threshold when 1/L_g > gamma): stop on the fixed point of the block update too
    needs_fixpoint = prob.penalty is not None and not prob.penalty.convex and not prob.unpenalized
    gap_floor, kkt_scale = prob.scales()
    kkt_stop = max(tol * kkt_scale, prob.kkt_floor())
    history, t0, n_epochs = [], time.perf_counter(), 0
    deadline = None if max_time is None else t0 + max_time
    ws_size = p0
    cert, kind, converged = np.inf, ("duality_gap" if convex else "kkt"), False
    it = 0
    extra = None  # extrapolated loss state from the last inner solve (dual extrapolation)
    prev_ws, prev_inner_tol = None, np.inf
    stopped = "max_iter"
    for it in range(1, max_iter + 1):
        if loss.has_dual:
            loss.profile_intercept(state, W)
        G = loss.full_grad(state, W)
        primal = prob.objective(state, W)
        kkt = prob.kkt(W, G)
        if convex:
            gap, V, s = prob.duality_gap(state, W, G, primal, extra)
            cert = max(gap, 0.0)  # a valid dual point: a negative gap is rounding
            done = gap <= max(tol * abs(primal), gap_floor)
            if screenable and V is not None and gap > 0:
                radius = np.sqrt(2 * gap / (loss.n_samples * loss.dual_modulus))
                _screen(prob, W, G, s, radius, active)
        else:
            if needs_fixpoint:
                kkt = np.maximum(kkt, prob.fixpoint_scores(W, G))
            cert = float(np.max(kkt))
            done = cert <= kkt_stop
        history.append({"iter": it, "time": time.perf_counter() - t0, "objective": primal,
                        "certificate": cert, "ws_size": int(min(ws_size, active.sum())), "epochs": n_epochs})
        if verbose:
            print(f"[bcd] iter {it}: objective {primal:.10g}  {kind} {cert:.3g}  ws {history[-1]['ws_size']}")
        if done:
            converged, stopped = True, "tol"
            break
        if n_epochs >= max_epochs:
            stopped = "max_epochs"
            break
        if deadline is not None and time.perf_counter() >= deadline:
            stopped = "max_time"
            break
        if it == max_iter:
            break
        # working set: support plus the worst fixed-point violators among the unscreened groups
        scores = np.where(active, kkt, -np.inf)
        nz = prob.group_norms(W) > 0
        scores[nz & active] = np.inf
        ws_size = int(min(max(ws_size, 2 * int(nz.sum())), active.sum()))
        ws = np.sort(np.argsort(-scores, kind="stable")[:ws_size])
        ws = ws[(scores[ws] > 0) | nz[ws]]  # groups satisfying their optimality condition need no visit
        # inner solve on the working set, to a fraction of the current outer violation
        inner_tol = 0.3 * float(np.max(np.where(active, kkt, 0)))
        if prev_ws is not None and np.array_equal(ws, prev_ws):
            # same working set as last time: the outer loop only waits for precision, so ask for much more
            inner_tol = min(inner_tol, 1e-2 * prev_inner_tol)
        # ... but never below what the outer test can see (rounding), so an inner solve always ends
        inner_tol = max(inner_tol, 1e-3 * tol * kkt_scale, prob.kkt_floor(), 1e-300)
        prev_ws, prev_inner_tol = ws, inner_tol
        L = prob.lipschitz_of(ws)
        epochs, extra = _inner(prob, W, state, ws, L, inner_tol, max_epochs - n_epochs, anderson, composite, convex,
                               deadline)
        n_epochs += epochs
        state = _refresh_state(prob, W)  # incremental updates drift by rounding
    G = loss.full_grad(state, W)
    kkt_final = prob.kkt(W, G)
    if needs_fixpoint:
        kkt_final = np.maximum(kkt_final, prob.fixpoint_scores(W, G))
    kkt_final = float(np.max(kkt_final))
    return prob.solution(W, state, cert, kind, converged, it, history, epochs=n_epochs, kkt=kkt_final,
                         screened=int((~active).sum()), stopped=stopped)


def _inner(prob, W, state, ws, L, inner_tol, max_epochs, anderson, composite, keep_states=False, deadline=None):
    """BCD epochs on the working set (at most ``max_epochs``, and until ``deadline``); returns (epochs,
    extrapolated loss state or None)."""
    loss = prob.loss
    rows = _ws_rows(prob, ws)
    rest = [prob.composite_rest(W)] if composite else None
    past, states = [], []
    epoch = 0
    best, best_epoch = np.inf, 0
    for epoch in range(1, max_epochs + 1):
        worst = _bcd_epoch(prob, W, state, ws, L, rest)
        if keep_states and anderson:
            states.append(copy(prob.xp.reshape(state, (-1,))))
            del states[:-(anderson + 1)]
        if worst <= inner_tol or (deadline is not None and time.perf_counter() >= deadline):
            break
        if worst < 0.5 * best:
            best, best_epoch = worst, epoch
        elif epoch - best_epoch >= _STALL_EPOCHS:
            break  # no halving of the step in that long: rounding in the running state; the outer loop refreshes it

        if anderson:
            past.append(copy(prob.xp.reshape(W[rows], (-1,))))
            if len(past) == anderson + 1:
                extra = _anderson(past)
                past = []
                if extra is not None:
                    W_try = copy(W)
                    W_try[rows] = prob.xp.reshape(extra, (-1, W.shape[1]))
                    st_try = loss.init_state(W_try)
                    o_try = prob.objective(st_try, W_try)
                    o_cur = prob.objective(state, W)
                    if o_try < o_cur:
                        W[...] = W_try
                        state[...] = st_try
                        if composite:
                            rest[0] = prob.composite_rest(W)
                        states.clear()  # the state sequence jumped: restart its extrapolation
    extra = None
    if len(states) == anderson + 1:
        e = _anderson(states)
        extra = None if e is None else prob.xp.reshape(e, state.shape)
    return epoch, extra


_STALL_EPOCHS = 500  # inner epochs without halving the largest step before the outer loop takes over


def _refresh_state(prob, W):
    """Recompute the loss state from the nonzero rows only (W is zero elsewhere)."""
    loss = prob.loss
    if not hasattr(loss, "X"):
        return loss.init_state(W)
    rows = np.flatnonzero(np.any(W != 0, axis=1))
    # gathering many columns of X copies them: past a quarter of them, one full product is cheaper
    if 4 * rows.size >= W.shape[0]:
        return loss.init_state(W)
    state = loss.init_state(np.zeros_like(W))
    if rows.size:
        loss.update_state(state, rows, W[rows])
    return state


def _screen(prob, W, G, s, radius, active):
    """Gap-safe rule: a zero group with ||X_g^T theta|| + radius ||X_g|| < lam w_g is zero at every optimum.

    theta = s dF/dZ is the feasible dual point; X^T theta = s G (screening runs without ridge).  ||X_g||_F bounds
    the spectral norm and is cheap for all groups at once."""
    loss, pen, groups = prob.loss, prob.penalty, prob.groups
    if not hasattr(prob, "_xnorm_g"):
        sq = np.append(loss.column_norms() ** 2, 0.0)
        rows = np.arange(loss.n_rows)
        prob._xnorm_g = np.array([np.sqrt(sq[rows[r]].sum()) for r in prob.rows])
    a = s * G.ravel()
    zero = groups.norms(W.ravel()) == 0
    if isinstance(pen, SparseGroupLasso):
        shrunk = np.maximum(np.abs(a) + radius * groups.expand(prob._xnorm_g) - pen.lam * pen.l1_ratio, 0)
        lhs = groups.norms(shrunk)
        bound = pen.lam * (1 - pen.l1_ratio) * prob.weights
    else:
        lhs = groups.norms(a) + radius * prob._xnorm_g
        bound = pen.lam * prob.weights
    active &= ~(zero & prob.penalized & (lhs < bound))
