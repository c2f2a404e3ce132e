"""Differentiable group importance: Sequential Attention, SequentialAttention++ and SA++'s Algorithm 2.

All three train coefficients beta and one logit per group jointly on  J = L(a(l) * beta) + lam/2 (||beta||^2 +
||l||^2)  (the mask a multiplies its whole group; weight decay on beta *and* the logits, SA++ App. C.1), with
plain gradient steps (``_train``).  The importance of a group is its logit.

* Sequential Attention (Yasuda et al., ICLR 2023; seqattn_pp.md 4.1): selected groups get mask 1, the others
  share m * softmax(l) over the m unselected ones (mean 1); after ``steps`` gradient steps the unselected group with
  the largest logit is selected, the logits are reset and the selected support is refit.  For least squares it
  is an adaptation of OMP (4.2).
* SequentialAttention++ for regression (Yasuda, Axiotis et al., NeurIPS 2024, Algorithm 1 / digest 2.6): dense
  phase (all groups, a = G softmax(l)); sparsification phase over normalized time tau in (0, 1], keeping the top
  (1 - sparsity(tau)) G groups by logit with sparsity(tau) = ``schedules.exp_ramp(tau, 1 - k/G, c=4)``, pruned
  groups masked to 0; sparse phase: support = the top-k logits, trained to convergence (the exact refit).  With
  ``n_cycles`` > 1 the dense phase restarts from the sparse solution (the paper's alternation).
* Algorithm 2 (SA++ App. B, theory_checks.md 2.4): OMPR via nonconvex regularization.  The subproblem
  argmin L(b) + lam q^-1(sum_{g not in S} q(||b_g||)) with q(x) = log(1 + x) (strictly increasing,
  subadditive, q(0) = 0) is solved by the core (``CompositePenalty``, groups in S unpenalized) with lam just
  below the value at which a group outside S enters; the outside group of largest norm enters, the group of S
  of smallest norm in the subproblem solution leaves.  |S| = k throughout; the best support seen is returned.
"""
from __future__ import annotations

import math

import numpy as np

from ..schedules import exp_ramp

__all__ = ["sequential_attention", "sequential_attention_pp", "ompr_nonconvex"]


def _softmax_mask(logits, active):
    """m * softmax(l) over the active groups (mean 1 there), 0 elsewhere; also the probabilities."""
    a = np.zeros_like(logits)
    p = np.zeros_like(logits)
    if active.any():
        z = logits[active] - logits[active].max()
        e = np.exp(z)
        p[active] = e / e.sum()
        a[active] = active.sum() * p[active]
    return a, p


def _scale(bp):
    """lam_max of the group lasso at the empty refit: the scale of the gradients (sets the weight decay)."""
    W0, _ = bp.refit(np.zeros(0, dtype=np.int64))
    return W0, float(np.sqrt(bp.group_sq(bp.grad(W0)).max())) + 1e-300


def _train(bp, beta, logits, fixed, active, steps, lam, lr, xp):
    """Gradient steps on J with mask a = 1 on ``fixed`` groups and m softmax(l) over ``active`` ones.

    beta takes the safe step 1/(L max(a)^2 + lam) (J is that smooth in beta); the logits take normalized steps
    of length ``lr`` (their gradient scale changes by orders of magnitude along the run).  Plain gradient steps,
    not Adam: Adam's per-coordinate normalization erases the gradient-magnitude ranking that makes attention
    behave like OMP (Yasuda et al. 2023, 4.2)."""
    L = bp.lipschitz
    for _ in range(int(steps)):
        a_soft, p = _softmax_mask(logits, active)
        a = np.where(fixed, 1.0, a_soft)
        A = bp.expand(a)
        if bp.loss.fit_intercept:  # the intercept row is never masked
            A = A + _intercept_ones(bp)
        D = bp.grad(A * beta)
        s = bp.group_dot(beta, D)  # dJ/da_g
        gl = np.zeros_like(logits)
        if active.any():
            m = active.sum()
            ps = p[active]
            gl[active] = m * ps * (s[active] - float(ps @ s[active]))
        gl += lam * logits
        beta = beta - (A * D + lam * beta) / (L * max(float(a.max()), 1.0) ** 2 + lam)
        gmax = float(np.abs(gl).max())
        if gmax > 0:
            logits = logits - lr * gl / gmax
    return beta, logits


def _intercept_ones(bp):
    M = np.zeros((bp.n_rows, bp.K))
    M[bp.fixed_rows] = 1.0
    return bp.asarray(M) if bp.gram else M


def sequential_attention(bp, k, *, steps=15, lr=0.2, lam_ratio=0.02, per_step=1, init=None, history=None):
    """Sequential Attention, ``per_step`` groups selected per round.  Returns (W, S, value, n_rounds)."""
    xp = bp.xp
    W, scale = _scale(bp)
    lam = lam_ratio * scale
    S = np.zeros(0, dtype=np.int64) if init is None else np.unique(np.asarray(init, dtype=np.int64))[:k]
    if S.size:
        W, _ = bp.refit(S)
    rounds = 0
    while S.size < k:
        fixed = np.zeros(bp.G, dtype=bool)
        fixed[S] = True
        logits = np.zeros(bp.G)
        beta = W + 0.0
        beta, logits = _train(bp, beta, logits, fixed, ~fixed, steps, lam, lr, xp)
        add = bp.top(logits, min(per_step, k - S.size), exclude=S)
        S = np.union1d(S, add)
        W, val = bp.refit(S)
        rounds += 1
        if history is not None:
            history.append(val)
    W, val = bp.refit(S)
    return W, S, val, rounds


def sequential_attention_pp(bp, k, *, dense_steps=50, sparsification_steps=50, n_cycles=1, lr=0.05,
                            lam_ratio=0.02, c=4.0, init=None, history=None):
    """SequentialAttention++ for regression (module docstring).  Returns (W, S, value, n_steps)."""
    xp = bp.xp
    W, scale = _scale(bp)
    lam = lam_ratio * scale
    G = bp.G
    target = 1.0 - k / G
    logits = np.zeros(G)
    beta = W + 0.0
    none = np.zeros(G, dtype=bool)
    best = None
    for cyc in range(int(n_cycles)):
        # dense phase
        active = np.ones(G, dtype=bool)
        beta, logits = _train(bp, beta, logits, none, active, dense_steps, lam, lr, xp)
        # sparsification phase: prune by logits on the exp_ramp schedule
        T = max(1, int(sparsification_steps))
        for t in range(1, T + 1):
            keep = max(k, int(math.ceil((1.0 - exp_ramp(t / T, target, c)) * G - 1e-9)))
            if keep < active.sum():
                ranked = np.where(active, logits, -np.inf)
                active = np.zeros(G, dtype=bool)
                active[bp.top(ranked, keep)] = True
                beta = beta * bp.expand(active.astype(float)) + _intercept_part(bp, beta)
            beta, logits = _train(bp, beta, logits, none, active, 1, lam, lr, xp)
        # sparse phase: top-k logits, trained to convergence on the support
        S = bp.top(np.where(active, logits, -np.inf), k)
        W, val = bp.refit(S)
        if history is not None:
            history.append(val)
        if best is None or val < best[2]:
            best = (W, S, val)
        # the next dense phase restarts from the sparse solution, in mask units (a = 1 at uniform logits)
        beta = W + 0.0
        logits = np.zeros(G)
    return best[0], best[1], best[2], int(n_cycles) * (int(dense_steps) + int(sparsification_steps))


def _intercept_part(bp, beta):
    if not bp.loss.fit_intercept:
        return 0.0
    return beta * _intercept_ones(bp)


def ompr_nonconvex(bp, k, *, n_iter=None, init=None, lam_factor=0.9, tol=1e-8, history=None):
    """SA++ Algorithm 2 (module docstring); X-form losses (it calls the core's BCD on a composite penalty)."""
    from ..api import solve
    from ..groups import Groups
    from ..penalties import CompositePenalty
    from .greedy import omp
    if bp.gram:
        raise ValueError("method: 'alg2' needs an X-form loss (LeastSquares, Logistic, Multinomial)")
    if init is None or len(init) != k:
        _, S, _, _ = omp(bp, k, init=init)
    else:
        S = np.unique(np.asarray(init, dtype=np.int64))
    W, val = bp.refit(S)
    best = (W, S, val)
    n_iter = 2 * k if n_iter is None else int(n_iter)
    pen = CompositePenalty(1.0, np.log1p, q_inv=np.expm1, dq=lambda x: 1.0 / (1.0 + x))
    g = bp.groups
    it = 0
    for it in range(1, n_iter + 1):
        out = np.setdiff1d(np.arange(bp.G), S)
        gn = np.sqrt(bp.group_sq(bp.grad(W)))
        lam = lam_factor * float(gn[out].max())  # "lambda sufficiently large": just below the entry value
        w = np.ones(bp.G)
        w[S] = 0.0  # groups of S are not penalized
        sol = solve(bp.loss, pen.with_lam(lam), Groups.from_indices(g.indices, g.n_features, w), tol=tol,
                    warm_start=np.asarray(W[: bp.p]).ravel(),
                    warm_intercept=W[bp.p] if bp.loss.fit_intercept else None)
        norms = g.norms(sol.coef)
        i = out[np.argmax(norms[out])]
        j = S[np.argmin(norms[S])]
        S = np.union1d(np.setdiff1d(S, [j]), [i])
        W, val = bp.refit(S)
        if history is not None:
            history.append(val)
        if val < best[2] - 1e-12 * abs(best[2]):
            best = (W, S, val)
        elif i == j:
            break
    return best[0], best[1], best[2], it
