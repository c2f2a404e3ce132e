"""N:M one-shot pruning from calibration data: each layer's Gram-form reconstruction with a budget of N per M-group.

The layer problem is the block patterns' (one driver for both: ``nn_bridge.oneshot.solve_layers``, its calibration
streams, Grams and damping in ``nn_bridge.calibration``; this module holds the N:M layer solver): with M_d the dense
GEMM matrix (inputs x outputs, ``tiling.weight_to_matrix``; conv rows in (kh, kw, Cin) order), X_p the layer's
inputs in the already-pruned model and X_d in the dense one,

    min_beta  1/2 tr(beta^T H beta) - tr(beta^T Bm) + c,   H = X_p^T X_p / n (damped),  Bm = (X_p^T X_d / n) M_d,

i.e. ``groupsparse.GramLeastSquares(H, Bm, c)``, subject to the N:M constraint: every M consecutive rows of a
column of beta (M consecutive inputs of an output -- for a conv, M consecutive input channels at one kernel
position, the NHWC groups of ``groups.py``) keep at most N non-zeros.  In the core this is the partition budget
``Budget.n_of_m(N, M, (p, K))`` over ``Groups.block_tiling((p, K), 1)`` (one group per weight, flattened
row-major), so the searches are ``groupsparse.select``'s; this module only picks the method and converts supports
to (p, K) keep masks.

Methods (``method``):

* ``'magnitude'``        -- top-N |w| of each group, no refit: the usual magnitude 2:4 baseline (the core's
  partitioned projection, ``Budget.pick``);
* ``'magnitude_refit'``  -- the magnitude support, then the exact refit (separates selection from refit);
* ``'obs'``              -- SparseGPT-style N:M Optimal Brain Surgeon (``sequential_obs.sparsegpt`` of groupsparse
  on the damped H, no further damping): sweep the inputs in order; at the start of each M-group choose, per output,
  the N weights with the largest OBS saliency w^2 / [U_ii]^2 (H^-1 = U^T U; the error of removing one weight given
  the later ones re-optimized), zero the rest and push the error onto the not-yet-visited inputs through U; then
  the exact refit on the chosen support.  Starts from the unconstrained optimum beta* = H^-1 Bm, which is exact
  for the objective since Bm = H beta*.
* ``'iht'`` (default)    -- ``groupsparse.select(method='iht', init=<the 'obs' support>, max_iter=iters)``: iterative
  hard thresholding (step 1/L, L = lambda_max(H); the projection keeps the N largest |.| of every window, the exact
  Euclidean projection onto the N:M set) from the 'obs' refit, returning the best exact refit it saw, so never
  worse on the calibration objective than ``'obs'`` (tested, with brute force on small layers).  ``rounds > 1``
  restarts from the best support while a round improves.
* ``'obs+local_search'`` -- the 'obs' support, then ``select(method='local_search')`` (exact in-window swaps while
  the loss falls), bounded by ``max_time`` seconds / ``max_swaps`` per layer;
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

import functools

import numpy as np
import torch
from torch import nn

from groupsparse import Budget, GramLeastSquares, Groups, select
from groupsparse._validation import check_positive_int
from groupsparse.selection.obs import gram_refit

from .groups import NMPattern, gemm_nm_groups

__all__ = ["nm_oneshot", "solve_nm_layer", "gram_nm_groups", "NMOneShotResult", "ONESHOT_METHODS"]

ONESHOT_METHODS = ("magnitude", "magnitude_refit", "obs", "iht", "obs+local_search", "seqobs", "sparsegpt", "wanda")
_SEQUENTIAL = ("seqobs", "sparsegpt", "wanda")  # groupsparse.selection.sequential_obs; the last two take the raw H


gram_nm_groups = gemm_nm_groups  # its older name here: the M-row windows of every column of a (p, K) matrix


@functools.lru_cache(maxsize=8)
def _core_problem(p: int, K: int, n: int, m: int):
    """(groups, budget) of the core for a (p, K) layer: one group per weight, N of every M rows of a column.
    Cached: a layer shape repeats across a network's blocks, and p*K groups take seconds to build."""
    return Groups.block_tiling((p, K), 1), Budget.n_of_m(n, m, (p, K)).bind(p * K)


def _keep(S, shape, device) -> torch.Tensor:
    """The (p, K) keep mask of a support of single-weight groups (group i*K + k is weight (i, k))."""
    kp = torch.zeros(shape[0] * shape[1], dtype=torch.bool, device=device)
    kp[torch.as_tensor(np.asarray(S, dtype=np.int64), device=device)] = True
    return kp.reshape(shape)


def _support(keep: torch.Tensor) -> np.ndarray:
    return np.flatnonzero(keep.reshape(-1).cpu().numpy())


@torch.no_grad()
def solve_nm_layer(H, Bm, n: int, m: int, *, method: str = "iht", Md=None, c: float = 0.0, rounds: int = 1,
                   iters: int = 30, max_time: float = 60.0, max_swaps=None):
    """Solve one layer's N:M Gram problem; returns (beta, keep, info) with info['objective'] (GramLeastSquares).

    ``Md`` (the dense matrix) is needed for the magnitude methods.  H must be positive definite (damped).
    'iht': ``rounds`` calls of ``select(method='iht', max_iter=iters)``, each from the best support so far (the
    first from 'obs'), stopping at the first that does not improve (``rounds=0``: 'obs').  'obs+local_search': the
    'obs' support, then ``select(method='local_search')``, bounded by ``max_time`` seconds / ``max_swaps`` per layer.
    """
    if method not in ONESHOT_METHODS:
        raise ValueError(f"method: expected one of {ONESHOT_METHODS}, got {method!r}")
    rounds, iters = check_positive_int(rounds, "rounds", low=0), check_positive_int(iters, "iters")
    p, K = Bm.shape
    if p % m:
        raise ValueError(f"M={m} does not divide the layer's {p} inputs")
    loss = GramLeastSquares(H, Bm, c)
    value = lambda b: loss.state_value(loss.init_state(b), b)  # noqa: E731
    hist = []
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
    groups, budget = _core_problem(p, K, n, m)
    if method.startswith("magnitude"):
        if Md is None:
            raise ValueError("Md: the magnitude methods need the dense matrix")
        keep = _keep(budget.pick(Md.abs().reshape(-1).double().cpu().numpy(), budget.total), (p, K), Bm.device)
        beta = gram_refit(H, Bm, keep) if method == "magnitude_refit" else Md.to(Bm.dtype) * keep
        return beta, keep, {"objective": value(beta), "history": hist}
    # SparseGPT's N:M sweep (no damping of its own: H is damped) from the unconstrained optimum H^-1 Bm
    from groupsparse.selection.sequential_obs import sparsegpt
    keep = sparsegpt(H, gram_refit(H, Bm, torch.ones_like(Bm, dtype=torch.bool)), nm=(n, m), damp=0.0).keep
    if method == "obs" or (method == "iht" and rounds == 0):
        beta = gram_refit(H, Bm, keep)
        hist.append(value(beta))
        return beta, keep, {"objective": hist[-1], "history": hist}
    if method == "iht":
        opts = dict(method="iht", init=_support(keep), max_iter=iters)
    else:  # 'obs+local_search'
        opts = dict(method="local_search", start=_support(keep), max_time=max_time,
                    **({} if max_swaps is None else {"max_swaps": max_swaps}))
        rounds = 1
    best = None
    for _ in range(rounds):
        sol = select(loss, groups, budget, **opts)
        beta = torch.reshape(sol.info["coef_native"], (p, K)).to(Bm.dtype)
        hist.append(value(beta))
        if best is not None and not hist[-1] < best[0]:
            break
        best = (hist[-1], beta, _keep(sol.support, (p, K), Bm.device))
        opts["init"] = sol.support  # the next round ('iht') starts from this one's support
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
