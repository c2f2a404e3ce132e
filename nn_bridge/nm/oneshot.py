"""N:M one-shot pruning from calibration data: each layer's Gram-form reconstruction with a budget of N per M-group.

The layer problem is the block one-shot path's (``nn_bridge.oneshot``, whose calibration machinery -- input capture,
Grams accumulated in float64, the dense/pruned forward order, damping -- is reused here): with M_d the dense GEMM
matrix (inputs x outputs, ``tiling.weight_to_matrix``; conv rows in (kh, kw, Cin) order), X_p the layer's inputs in
the already-pruned model and X_d in the dense one,

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

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from groupsparse import GramLeastSquares, Groups
from groupsparse._validation import check_nonneg
from groupsparse.selection.obs import gram_refit

from .groups import NMPattern
from .presets import select_layers
from .pruner import measure_nm

__all__ = ["nm_oneshot", "solve_nm_layer", "project_nm", "gram_nm_groups", "NMOneShotResult",
           "ONESHOT_METHODS"]

ONESHOT_METHODS = ("magnitude", "magnitude_refit", "obs", "iht", "seqobs", "sparsegpt", "wanda")
_SEQUENTIAL = ("seqobs", "sparsegpt", "wanda")  # groupsparse.selection.sequential_obs; the last two take the raw H


def gram_nm_groups(p: int, K: int, m: int) -> Groups:
    """The N:M groups of a (p, K) coefficient matrix flattened row-major (index i*K + k): group (j, k) holds rows
    j*M..j*M+M-1 of column k.  The definition the reshape-based projection below is tested against."""
    i = np.arange(p).reshape(p // m, 1, m)
    k = np.arange(K).reshape(1, K, 1)
    return Groups.from_indices(list((i * K + k).reshape(-1, m)), p * K)


def project_nm(beta: torch.Tensor, n: int, m: int, score: torch.Tensor | None = None):
    """(P_NM(beta), keep): keep the N largest ``score`` (default |beta|) in every M-row group of every column."""
    p, K = beta.shape
    s = (beta.abs() if score is None else score).reshape(p // m, m, K)
    idx = torch.topk(s, n, dim=1).indices
    keep = torch.zeros_like(s, dtype=torch.bool).scatter_(1, idx, True).reshape(p, K)
    return beta * keep, keep


@torch.no_grad()
def solve_nm_layer(H, Bm, n: int, m: int, *, method: str = "iht", Md=None, c: float = 0.0, rounds: int = 3,
                   iters: int = 30):
    """Solve one layer's N:M Gram problem; returns (beta, keep, info) with info['objective'] (GramLeastSquares).

    ``Md`` (the dense matrix) is needed for the magnitude methods.  H must be positive definite (damped).
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
    return best[1], best[2], {"objective": best[0], "history": hist}


@dataclass
class NMOneShotResult:
    model: nn.Module
    names: list
    pattern: NMPattern
    layer_rel_error: dict = field(default_factory=dict)  # name -> ||X_d M_d - X_p M^||^2 / ||X_d M_d||^2
    layer_seconds: dict = field(default_factory=dict)
    layer_method: dict = field(default_factory=dict)     # name -> the method that ran

    def report(self):
        return measure_nm(self.model, self.names, self.pattern)


def nm_oneshot(model: nn.Module, batches, pattern="2:4", *, method: str = "iht", layers="all", run=None,
               row_masks=None, damp: float = 0.01, blocks=None, solver_dtype=torch.float32, max_memory=None,
               device=None, progress: bool = True, **solver_kw) -> NMOneShotResult:
    """Prune ``model`` in place to N:M from calibration ``batches``, layer by layer in forward order, each layer
    against the dense model's output from the already-pruned inputs (see the module docstring).

    ``layers``: preset / names / predicate (``presets.select_layers``; Linear and Conv2d with groups=1).
    ``run(model, batch)``, ``row_masks`` and ``blocks`` (names of sequential submodules, e.g. transformer layers,
    whose inputs are cached so only one block is replayed per layer) as in ``nn_bridge.oneshot.oneshot_prune``,
    whose calibration streams and Gram accumulation are reused.  The pruned weights are written into the layers
    (plain parameters with exact zeros); a weight shared by several layers (tied) is solved once, on the stacked
    inputs of all of them.  ``batches`` are checked as in the block path (``nn_bridge.calibration``).  Grams are
    accumulated in float64; the layer solver runs in ``solver_dtype`` (float32 halves the refit cost; H is damped,
    so well conditioned).  ``max_memory`` (bytes): every method here works in O(p^2 + pK) memory, so a layer whose
    estimate exceeds it is an error before any work.  ``device``: run the layer solves there (the model stays).
    'sparsegpt' and 'wanda' get the raw Gram (SparseGPT damps it itself by 1% of its mean diagonal).
    """
    import time

    from nn_bridge import oneshot as block_oneshot
    from nn_bridge.calibration import check_batches
    from nn_bridge.tiling import matrix_to_weight, tie_groups, weight_to_matrix

    pat = NMPattern.parse(pattern)
    if method not in ONESHOT_METHODS:
        raise ValueError(f"method: expected one of {ONESHOT_METHODS}, got {method!r}")
    names, _ = select_layers(model, pat.m, layers)
    for nm_ in names:
        mod = model.get_submodule(nm_)
        if not (isinstance(mod, nn.Linear) or (isinstance(mod, nn.Conv2d) and mod.groups == 1)):
            raise ValueError(f"layers: one-shot handles Linear and Conv2d (groups=1) layers; {nm_!r} is "
                             f"{type(mod).__name__}")
    damp = check_nonneg(damp, "damp")
    if max_memory is not None:
        from groupsparse._validation import check_tol
        max_memory = check_tol(max_memory, "max_memory")
    dev = block_oneshot.solve_device(device)
    run = run or block_oneshot._default_run
    batches = check_batches(batches, model, run, row_masks)

    class _N:  # the block path's streams read .name and .holders (a tied weight: every module using it)
        def __init__(self, holders):
            self.name, self.holders = holders[0], holders

    groups = tie_groups(model, names, skip_shared=isinstance(layers, str))  # a preset leaves shared ones dense
    if not groups:
        raise ValueError(f"layers: every selected layer shares its weight with a module outside the selection "
                         f"({names}); nothing to prune")
    order = block_oneshot._forward_order(model, [_N(g) for g in groups], batches[0], run)
    for t in order:  # every layer fits max_memory, checked before any work
        w = model.get_submodule(t.name).weight
        block_oneshot.layer_method("seqobs", w[0].numel(), w.shape[0], 1, 0, max_memory)  # O(p^2 + pK) each
    dense = copy.deepcopy(model).eval()
    model.eval()
    st = (block_oneshot._PrefixStreams(model, dense, batches, run, row_masks) if blocks is None else
          block_oneshot._BlockStreams(model, dense, batches, run, row_masks, list(blocks)))
    gram = block_oneshot._Grams()
    res = NMOneShotResult(model, [t.name for t in order], pat)
    from tqdm.auto import tqdm
    with tqdm(total=len(order), desc=f"N:M one-shot {method}", disable=not progress) as bar:
        for group in st.groups(order):
            xd_all = st.dense_inputs([n for t in group for n in t.holders])
            for t in group:
                t0 = time.perf_counter()
                name = t.name
                mod, dmod = model.get_submodule(name), dense.get_submodule(name)
                # a tied weight is pruned once, fitted to all its holders: their rows stack into one Gram
                xp = [x for n in t.holders for x in st.pruned_inputs(n)]
                xs = list(zip(xp, [x for n in t.holders for x in xd_all[n]]))
                H, Cx = gram(xs, name)
                Md = weight_to_matrix(dmod.weight.detach()).double()
                Bm = Cx @ Md
                dt = solver_dtype
                Hd, Bm = block_oneshot._damped(H, Bm, Md, damp, name)  # ridge toward the dense weights
                # the solution is invariant to scaling H and Bm together: bring mean diag H near 1 (a power of 2,
                # exact) so that the float32 solver neither under- nor overflows on tiny or huge inputs
                sc = block_oneshot.pow2_scale(float(Hd.diagonal().mean()))
                Hd, Bm = Hd / sc, Bm / sc
                Hs = H / sc if method in ("sparsegpt", "wanda") else Hd
                dv = dev or Hd.device
                beta, keep, info = solve_nm_layer(Hs.to(dv, dt), Bm.to(dv, dt), pat.n, pat.m,
                                                  method=method, Md=Md.to(dv, dt), **solver_kw)
                beta = beta.to(Md.device)
                res.layer_method[name] = method
                with torch.no_grad():
                    w = mod.weight
                    w.copy_(matrix_to_weight(beta.to(w.dtype), tuple(w.shape)))
                Mh32, Md32 = beta.float(), Md.float()
                num = sum(float((xd @ Md32 - xp @ Mh32).double().pow(2).sum()) for xp, xd in xs)
                den = sum(float((xd @ Md32).double().pow(2).sum()) for xp, xd in xs)
                res.layer_rel_error[name] = num / max(den, 1e-30)
                res.layer_seconds[name] = time.perf_counter() - t0
                bar.update()
            st.advance()
    return res
