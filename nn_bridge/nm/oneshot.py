"""N:M one-shot pruning from calibration data: each layer's Gram-form reconstruction with a budget of N per M-group.

The layer problem is the block patterns' (one driver for both: ``nn_bridge.oneshot.solve_layers``, its calibration
streams, Grams and damping in ``nn_bridge.calibration``; this module holds the N:M layer solver): with M_d the dense
GEMM matrix (inputs x outputs, ``tiling.weight_to_matrix``; conv rows in (kh, kw, Cin) order), X_p the layer's
inputs in the already-pruned model and X_d in the dense one,

    min_beta  1/2 tr(beta^T H beta) - tr(beta^T Bm) + c,   H = X_p^T X_p / n (damped),  Bm = (X_p^T X_d / n) M_d,

i.e. ``groupsparse.GramLeastSquares(H, Bm, c)``, subject to the N:M constraint: every M consecutive rows of a
column of beta (M consecutive inputs of an output -- for a conv, M consecutive input channels at one kernel
position, the NHWC groups of ``groups.py``) keep at most N non-zeros.  Unlike the block path's budget of k groups
this is a *per-group* budget, which ``groupsparse.select`` does not express, so the solver lives here; the columns
are independent given H and are solved together as one matrix.

Methods (``method``):

* ``'magnitude'``        -- top-N |w| of each group, no refit: the usual magnitude 2:4 baseline;
* ``'magnitude_refit'``  -- the magnitude support, then the exact refit (separates selection from refit);
* ``'obs'``              -- SparseGPT-style N:M Optimal Brain Surgeon (``sequential_obs.sparsegpt`` of groupsparse
  on the damped H, no further damping): sweep the inputs in order; at the start of each M-group choose, per output,
  the N weights with the largest OBS saliency w^2 / [U_ii]^2 (H^-1 = U^T U; the error of removing one weight given
  the later ones re-optimized), zero the rest and push the error onto the not-yet-visited inputs through U; then
  the exact refit on the chosen support.  Starts from the unconstrained optimum beta* = H^-1 Bm, which is exact
  for the objective since Bm = H beta*.
* ``'iht'`` (default)    -- starts from the ``'obs'`` solution and alternates rounds of iterative hard
  thresholding (beta <- P_NM(beta - grad / L), step 1/L with L = lambda_max(H); P_NM keeps the N largest |.| of
  every group, the exact Euclidean projection onto the N:M set) with exact refits, keeping the best iterate.  With
  step 1/L every IHT step does not increase the objective (majorization), and a refit can only lower it, so the
  result is never worse on the calibration objective than ``'obs'`` (tested, with brute force on small layers).
* ``'seqobs'``           -- the scalable sequential OBS of ``groupsparse.selection.sequential_obs`` (per M-window and
  output the drop subset of least joint OBS increase, error pushed to the later inputs through one shared factor,
  then preconditioned CG on the support; O(p^2 + pK) memory, no per-output refit);
* ``'sparsegpt'`` / ``'wanda'`` -- the papers' N:M methods (Frantar & Alistarh 2023; Sun et al. 2023) on the raw
  calibration Gram and the dense weights.

The exact refit (``groupsparse.selection.obs.gram_refit``) solves H[S_k, S_k] beta_S = Bm[S_k, k] for every output
k with its own support S_k (batched Cholesky, in chunks of outputs).  ``c = ||X_d M_d||^2 / 2n`` makes the objective
the layer's reconstruction error / 2, so ``objective / c`` is the relative output error reported per layer.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from groupsparse import GramLeastSquares, Groups
from groupsparse.selection.obs import gram_refit

from .groups import NMPattern, gemm_nm_groups

__all__ = ["nm_oneshot", "solve_nm_layer", "project_nm", "gram_nm_groups", "NMOneShotResult",
           "ONESHOT_METHODS"]

ONESHOT_METHODS = ("magnitude", "magnitude_refit", "obs", "iht", "obs+local_search", "seqobs", "sparsegpt", "wanda")
_SEQUENTIAL = ("seqobs", "sparsegpt", "wanda")  # groupsparse.selection.sequential_obs; the last two take the raw H


gram_nm_groups = gemm_nm_groups  # its older name here: the windows the projection below is tested against


def project_nm(beta: torch.Tensor, n: int, m: int, score: torch.Tensor | None = None):
    """(P_NM(beta), keep): keep the N largest ``score`` (default |beta|) in every M-row group of every column."""
    p, K = beta.shape
    s = (beta.abs() if score is None else score).reshape(p // m, m, K)
    idx = torch.topk(s, n, dim=1).indices
    keep = torch.zeros_like(s, dtype=torch.bool).scatter_(1, idx, True).reshape(p, K)
    return beta * keep, keep


@torch.no_grad()
def solve_nm_layer(H, Bm, n: int, m: int, *, method: str = "iht", Md=None, c: float = 0.0, rounds: int = 3,
                   iters: int = 30, max_time: float = 60.0, max_swaps=None):
    """Solve one layer's N:M Gram problem; returns (beta, keep, info) with info['objective'] (GramLeastSquares).

    ``Md`` (the dense matrix) is needed for the magnitude methods.  H must be positive definite (damped).
    'obs+local_search': the 'obs' support, then ``groupsparse.select(method='local_search')`` under
    ``Budget.n_of_m`` (exact swaps inside the windows while the loss falls), bounded by ``max_time`` seconds /
    ``max_swaps`` per layer.
    """
    if method not in ONESHOT_METHODS:
        raise ValueError(f"method: expected one of {ONESHOT_METHODS}, got {method!r}")
    p, K = Bm.shape
    if p % m:
        raise ValueError(f"M={m} does not divide the layer's {p} inputs")
    loss = GramLeastSquares(H, Bm, c)
    value = lambda b: loss.state_value(loss.init_state(b), b)  # noqa: E731
    hist = []
    if method.startswith("magnitude"):
        if Md is None:
            raise ValueError("Md: the magnitude methods need the dense matrix")
        beta, keep = project_nm(Md.to(Bm.dtype), n, m)
        if method == "magnitude_refit":
            beta = gram_refit(H, Bm, keep)
        return beta, keep, {"objective": value(beta), "history": hist}
    if method in _SEQUENTIAL:
        from groupsparse.selection import sequential_obs
        from nn_bridge.oneshot import SEQOBS_OPTIONS
        if method == "seqobs":
            r = sequential_obs.seqobs(H, B=Bm, nm=(n, m), refit_iters=SEQOBS_OPTIONS["refit_iters"])
        elif Md is None:
            raise ValueError(f"Md: {method!r} needs the dense matrix")
        else:
            r = getattr(sequential_obs, method)(H, Md.to(H.dtype), nm=(n, m))
        return r.coef, r.keep, {"objective": value(r.coef), "history": hist}
    # SparseGPT's N:M sweep (no damping of its own: H is damped) from the unconstrained optimum H^-1 Bm
    from groupsparse.selection.sequential_obs import sparsegpt
    keep = sparsegpt(H, gram_refit(H, Bm, torch.ones_like(Bm, dtype=torch.bool)), nm=(n, m), damp=0.0).keep
    beta = gram_refit(H, Bm, keep)
    best = (value(beta), beta, keep)
    hist.append(best[0])
    if method == "iht":
        L = loss.global_lipschitz()
        for _ in range(rounds):
            b = best[1]
            for _ in range(iters):
                HW = loss.init_state(b)
                b, kp = project_nm(b - loss.full_grad(HW, b) / L, n, m)
            b = gram_refit(H, Bm, kp)
            v = value(b)
            hist.append(v)
            if v < best[0] - 1e-12 * abs(best[0]):
                best = (v, b, kp)
            else:
                break
    elif method == "obs+local_search":
        from groupsparse import Budget, select
        start = np.flatnonzero(keep.reshape(-1).cpu().numpy())  # group i*K + k is weight (i, k)
        caps = {"max_time": max_time, **({} if max_swaps is None else {"max_swaps": max_swaps})}
        sol = select(loss, Groups.block_tiling((p, K), 1), Budget.n_of_m(n, m, (p, K)), method="local_search",
                     start=start, **caps)
        kp = torch.zeros(p * K, dtype=torch.bool, device=Bm.device)
        kp[torch.as_tensor(sol.support, device=Bm.device)] = True
        kp = kp.reshape(p, K)
        b = gram_refit(H, Bm, kp)
        v = value(b)
        hist.append(v)
        if v < best[0]:
            best = (v, b, kp)
    return best[1], best[2], {"objective": best[0], "history": hist}


def nm_oneshot(model: nn.Module, batches, pattern="2:4", *, method: str = "iht", layers="all", **kw):
    """Deprecated: ``nn_bridge.oneshot.solve_layers(model, batches, pattern, method=..., include=layers, ...)``
    (the one driver; same options and an ``OneShotResult`` with ``layer_rel_error``, ``layer_method``,
    ``layer_seconds``, ``report()``), or ``nn_bridge.oneshot_prune(model, batches, "2:4")`` for the reported,
    savable result."""
    import warnings

    from nn_bridge.oneshot import solve_layers
    warnings.warn("nn_bridge.nm.oneshot.nm_oneshot is deprecated; use nn_bridge.oneshot_prune(model, batches, "
                  "'N:M') or nn_bridge.oneshot.solve_layers", DeprecationWarning, stacklevel=2)
    pat = NMPattern.parse(pattern)  # here a pair (N, M) means N:M; its errors name pattern
    return solve_layers(model, batches, pat, method=method, include=layers, **kw)


def __getattr__(name):
    if name == "NMOneShotResult":  # the one result class of the driver
        from nn_bridge.oneshot import OneShotResult
        return OneShotResult
    raise AttributeError(name)
