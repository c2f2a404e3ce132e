"""Hard thresholding: group IHT with a relaxed budget, and adaptively regularized hard thresholding (ARHT).

* Group IHT (Blumensath & Davies 2009; Jain, Tewari & Kar 2014, theory_checks.md 2.1-2.2): W <- H_k'(W - eta
  grad), eta = 1/L with L the global Lipschitz constant, so every step is a descent step (descent lemma, 2.1).
  The budget may be relaxed to k' >= k (the guarantees need k' ~ kappa^2 k); the k'-support is then pruned back
  to k by backward sacrifices (smallest loss increase first, refitting in halving rounds), and refit.
  ``pursuit=True`` refits after every projection (hard thresholding pursuit, Foucart 2011).
* ARHT (Axiotis & Sviridenko, ICML 2020 / arXiv 2204.08274; theory_checks.md 2.3): IHT on
  L(W) + rho/2 sum_g c_g ||W_g||^2 with adaptive per-group weights.  The paper's exact weight rule and constants
  were NOT FOUND (digest 2.3), so this is a documented reconstruction of the idea: a group's weight halves every
  iteration it stays in the support and is reset to 1 when it leaves, so incumbent groups are progressively
  unregularized while newcomers pay for entering (the regularizer damps support oscillation, which is what
  lets the method work with a smaller relaxed budget than IHT).  The final refit removes the regularizer.

With a partition budget (N:M) the projection keeps the largest groups of every part (``BudgetProblem.project``,
the exact Euclidean projection onto the partitioned set) and the budget is not relaxed (``select`` checks relax=1).

Both return the best exact refit they saw among the warm start ``init`` (when it fits the budget k), every HTP
step within k and the final support, so a warm start (OBS, say) is never made worse.  At relax=1 IHT and HTP
already guarantee it (step 1/L: each projected step lowers the loss from the feasible refit of ``init``, and the
final refit lowers it again); with relax > 1 the pruning back to k can end far above the start (+66% on a
10-feature instance of the tests), and ARHT descends its regularized objective, not the loss.
``bp.info['best_refit']`` says which refit was returned ('init', 'last', or an HTP step).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["iht", "arht", "prune_to"]


def prune_to(bp, k, S, W):
    """Shrink support S to k groups by backward sacrifices (drop the cheapest half of the excess, refit, repeat)."""
    S = np.asarray(S, dtype=np.int64)
    while S.size > k:
        excess = S.size - k
        drop_n = max(1, excess // 2) if excess > 2 else excess
        b = bp.backward(W)[S]
        S = np.sort(S[np.argsort(b, kind="stable")[drop_n:]])
        W, _ = bp.refit(S)
    return S


class _Best:
    """The best exact refit seen of a support within the budget k: (value, W, S, where)."""

    def __init__(self, k):
        self.k, self.value, self.W, self.S, self.where = k, np.inf, None, None, None

    def offer(self, W, S, value, where):
        if len(S) <= self.k and value < self.value:
            self.value, self.W, self.S, self.where = value, W, np.asarray(S, dtype=np.int64), where


def _iterate(bp, k, kk, *, max_iter, tol, pursuit, init, best=None, reg=None, history=None):
    """The raw iteration (proofs_checks tests it as is); ``best``, a ``_Best``, collects the refits it sees."""
    best = _Best(k) if best is None else best
    eta = 1.0 / bp.lipschitz
    xp = bp.xp
    if init is not None and len(init):
        S0 = np.sort(np.asarray(init, dtype=np.int64)[:kk])
        W, v0 = bp.refit(S0)
        best.offer(W, S0, v0, "init")
    else:
        W = bp.zeros()
    S_prev = None
    stable, patience = 0, 10
    c = np.ones(bp.G)
    it = 0
    for it in range(1, max_iter + 1):
        D = bp.grad(W)
        if reg is not None:  # ARHT: gradient of rho/2 sum c_g ||W_g||^2
            D = D + reg * W * bp.expand(c)
        V = W - eta * D
        Wn, S = bp.project(V, kk)
        if pursuit:
            Wn, v = bp.refit(S)
            best.offer(Wn, S, v, it)
        diff = float(xp.sum((Wn - W) ** 2))
        nrm = float(xp.sum(Wn * Wn))
        W = Wn
        if reg is not None:
            inS = np.zeros(bp.G, dtype=bool)
            inS[S] = True
            c = np.where(inS, c * 0.5, 1.0)
        if history is not None:
            history.append(len(S))
        # only the support matters (a refit follows): stop once it is stable and the steps are small
        stable = stable + 1 if (S_prev is not None and np.array_equal(S, S_prev)) else 0
        if stable >= patience and diff <= tol * tol * max(nrm, 1e-300):
            break
        S_prev = S
        if bp.time_up():
            break
    return W, S, it


def iht(bp, k, *, relax=1.0, max_iter=300, tol=1e-3, pursuit=False, init=None, history=None):
    """Group IHT at budget k' = ceil(relax * k), pruned to k and refit; the best refit seen (module docstring).
    Returns (W, S, value, n_iter)."""
    kk = _relaxed(bp, k, relax)
    best = _Best(k)
    W, S, it = _iterate(bp, k, kk, max_iter=max_iter, tol=tol, pursuit=pursuit, init=init, best=best,
                        history=history)
    return _finish(bp, k, kk, W, S, it, best, refit_done=pursuit)


def _finish(bp, k, kk, W, S, it, best, refit_done=False):
    """Prune the last support to k (relaxed budget), refit it (unless HTP's last step did), and return the best
    refit seen."""
    if kk > k:
        W, _ = bp.refit(S)
        S = prune_to(bp, k, S, W)
    elif refit_done and best.W is not None:
        bp.info["best_refit"] = "last" if best.where == it else best.where
        return best.W, best.S, best.value, it
    W, val = bp.refit(S)
    best.offer(W, S, val, "last")
    bp.info["best_refit"] = best.where
    return best.W, best.S, best.value, it


def arht(bp, k, *, relax=1.0, rho=None, max_iter=300, tol=1e-3, init=None, history=None):
    """Adaptively regularized group IHT (see module docstring).  ``rho`` defaults to L/10."""
    kk = _relaxed(bp, k, relax)
    rho = 0.1 * bp.lipschitz if rho is None else float(rho)
    best = _Best(k)
    W, S, it = _iterate(bp, k, kk, max_iter=max_iter, tol=tol, pursuit=False, init=init, best=best, reg=rho,
                        history=history)
    return _finish(bp, k, kk, W, S, it, best)


def _relaxed(bp, k, relax):
    if not (relax >= 1.0):
        raise ValueError(f"relax: the relaxed budget k' = relax * k needs relax >= 1, got {relax!r}")
    return min(bp.G, int(math.ceil(relax * k)))
