r"""One-shot pruning of a large Gram-form least-squares layer in O(p^2 + pK) memory: sequential group OBS
(``seqobs``, SparseGPT's scheme lifted to groups), and the baselines SparseGPT and Wanda.

The problem.  A layer's reconstruction loss in Gram form is

    f(W^) = 1/2 tr(W^T H W^) - tr(W^T B) + c = 1/2 tr((W^ - W)^T H (W^ - W)) + const,     W = H^-1 B,

over W^ (p inputs x K outputs), H (p, p) symmetric positive definite (a damped calibration Gram), subject to a
sparsity pattern: at most k of the B x B blocks of W^ non-zero, or N non-zeros in every M consecutive rows of each
column (N:M along the input dimension).  The exact group OBS (Hassibi & Stork 1993, "Second order derivatives for
network pruning: Optimal Brain Surgeon"; its group form removes group g at the loss increase
1/2 w_g^T [(H^-1)_gg]^-1 w_g and re-optimizes all the other rows) needs a separate inverse per column block once
the column blocks' supports differ: O(C p^2) memory for C = K / B column blocks.

The sweep (Frantar & Alistarh 2023, "SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot",
Algorithm 1).  Visit the rows in a fixed order; a row, once visited, is frozen, so the rows that can still
compensate an error are the unvisited ones, F = {i, ..., p-1}, for every column alike.  All columns then share
the inverse of the trailing Gram H_FF, and these inverses come from one factor: with H^-1 = U^T U, U upper
triangular (``_upper_factor``), write H = V V^T with V = U^-1 (also upper).  V_ik = 0 for k < i, so
(V V^T)_FF = V_FF V_FF^T and

    (H_FF)^-1 = V_FF^-T V_FF^-1 = U_FF^T U_FF,

the trailing block of U: one O(p^3) factorisation serves every step.  Let g be the next h rows (the group
height: h = B for blocks, h = M for N:M, h = 1 for SparseGPT) and G = [(H_FF)^-1]_gg = U_gg^T U_gg (only rows g of
U have entries in the columns g).  For one column w (its current values on F) and a set D of rows of g to drop,
minimising the loss over the rows F \ D with w_D = 0 is the OBS step on F:

    increase  = 1/2 w_D^T (G_DD)^-1 w_D,
    update    dw_F = -[(H_FF)^-1]_{F,D} (G_DD)^-1 w_D = -U_{g,F}^T e,     e = U_gg y,  y_D = (G_DD)^-1 w_D, 0 off D,

and the increase equals 1/2 ||e||^2.  For a B x B block (D = all of g) this is e = U_gg^-T w_g and increase
1/2 ||U_gg^-T w_g||^2 -- the group OBS saliency 1/2 w_g^T [Hinv_gg]^-1 w_g with Hinv the inverse of the trailing
Gram.  The increases are exact given the frozen rows, so the loss of the result is f(W) + the sum of the recorded
increases (``cost``; tested), never below the exact refit on the same support (the sweep freezes visited rows
instead of re-optimizing them).

Lazy batches (SparseGPT section 3.4).  The update of rows far below g is deferred: rows are visited in windows of
``blocksize`` rows; inside a window updates are applied at once (h x blocksize x K per step), and the errors E of
the whole window are pushed to the rows after it in one product W[b:] -= U[a:b, b:]^T E.  Time O(p^3) for the
factor plus O(p^2 K) for the sweep; memory H, U, W and a window: O(p^2 + pK) (``memory_bytes``).

Choosing what to drop.
* Blocks (``seqobs(block=B, n_remove=...)``): a global threshold over all blocks would need the saliencies of rows
  not yet updated.  So each row block's number of drops is fixed before the sweep, and the blocks themselves are
  chosen when the sweep reaches the row block, by their saliency 1/2 ||U_gg^-T W_gj||^2 then (exact for the step).
  The counts (``budget``): ``'sequential'``
  -- each row block's share of the ``n_remove`` smallest saliencies computed at the start as the sweep will see
  them (G = U_gg^T U_gg); ``'obs'`` -- the same with the exact OBS first-step saliency (G = (H^-1)_gg, every other
  row free), which spreads the drops over all rows: the sweep alone compensates late drops less well (fewer rows
  follow them), but the supports are better once refit (``refit_iters``); ``'uniform'`` -- the budget spread over
  the windows of ``blocksize`` rows in proportion to their rows (cumulative rounding) and the blocks of a window
  chosen at its start, as SparseGPT's adaptive mask selection does on 128-row blocks.  On synthetic correlated
  layers (``benchmarks/bench_oneshot_scale.py``'s generator, 512x256 and 768x384, 16x16 at 50%) the relative
  output error was 0.222 / 0.214 for the exact group OBS with refit, 0.245 / 0.239 for 'sequential', 0.225 /
  0.218 for 'obs' + 20 CG iterations, 0.262 / 0.260 for 'uniform'.
  With one row block (p = B) every variant is the exact group OBS choice.
* N:M (``seqobs(nm=(N, M))``): g is one M-window; for every column the M - N rows to drop are the subset D with the
  smallest joint increase 1/2 w_D^T (G_DD)^-1 w_D, enumerated over the C(M, M-N) subsets (6 for 2:4); the kept rows
  of the window are re-optimized with the rest of F.  SparseGPT instead ranks single weights and freezes each row
  as it goes.
* SparseGPT (``sparsegpt``): h = 1; unstructured: in every 128-row window keep the (1 - s) fraction of its
  weights with the largest w^2 / [U_ii]^2 (``[H^-1]_cc`` of the paper's Algorithm 1 is the square of the factor's
  diagonal), computed at the window start; N:M: at every M-th row drop, per column, the M - N weights of the next
  M rows with the smallest w^2 / [U_ii]^2.  H is damped by 1% of its mean diagonal; dead inputs (H_ii = 0) get
  H_ii = 1 and zero weights, as in the paper's code.
* Wanda (Sun et al. 2023, "A Simple and Effective Pruning Approach for Large Language Models"): score
  |W_ij| ||X_j||_2 (||X_j||_2 ~ sqrt(H_jj)), compared per output (per column of W here): the s fraction with the
  smallest score dropped, or the M - N smallest of every M-window; no weight update.

Every function takes (H, W) arrays -- numpy, or torch tensors on any device, float32 or float64 -- and computes
in that namespace and dtype (array API; torch is never imported here).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from .._array import namespace
from .._validation import check_nonneg, check_positive_int

__all__ = ["seqobs", "sparsegpt", "wanda", "memory_bytes", "PrunedLayer", "ONESHOT_METHODS"]

ONESHOT_METHODS = ("seqobs", "sparsegpt", "wanda")
_MAX_SUBSETS = 4096  # N:M subset enumeration bound: C(M, M - N) subsets per window


@dataclass
class PrunedLayer:
    """A pruned layer: ``coef`` (p, K) in the input's namespace and dtype, ``keep`` (bool: (R, C) for B x B blocks,
    (p, K) otherwise), ``cost`` the loss increase 1/2 tr((coef - W)^T H (coef - W)) the method accounted for (the
    sum of its OBS increases; 0 for Wanda, which does not track it), ``method``."""
    coef: object
    keep: object
    cost: float
    method: str
    info: dict = field(default_factory=dict)


def memory_bytes(p: int, K: int, itemsize: int = 8) -> int:
    """Peak working memory of ``seqobs`` / ``sparsegpt`` on a (p, K) layer: H, its inverse and factor (3 p^2 while
    factoring) and W with a window buffer and the result (3 p K)."""
    return int((3 * p * p + 3 * p * K) * itemsize)


# ---------------------------------------------------------------------------------------------- checks
def _check_HW(H, W, name_w="W"):
    xp = namespace(H, W)
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"H: must be a square matrix, got shape {tuple(H.shape)}")
    if W.ndim != 2 or W.shape[0] != H.shape[0]:
        raise ValueError(f"{name_w}: expected shape ({H.shape[0]}, K) to match H, got {tuple(W.shape)}")
    if H.dtype != W.dtype or H.dtype not in (xp.float32, xp.float64):
        raise ValueError(f"H, {name_w}: expected the same float32 or float64 dtype, got {H.dtype} and {W.dtype}")
    if not bool(xp.all(xp.isfinite(H))):
        raise ValueError("H: must be finite (no NaN or inf)")
    if not bool(xp.all(xp.isfinite(W))):
        raise ValueError(f"{name_w}: must be finite (no NaN or inf)")
    return xp


def _check_pattern(sparsity, nm, p, block=None, n_remove=None):
    """Exactly one pattern: ``nm`` = (N, M) with M dividing p, or a sparsity in [0, 1) / ``n_remove``."""
    if nm is not None:
        if sparsity is not None or n_remove is not None:
            raise ValueError("nm: give either nm=(N, M) or a sparsity, not both")
        if not (isinstance(nm, (tuple, list)) and len(nm) == 2):
            raise ValueError(f"nm: expected a pair (N, M), got {nm!r}")
        m = check_positive_int(nm[1], "nm")
        n = check_positive_int(nm[0], "nm", low=0, high=m)
        if p % m:
            raise ValueError(f"nm: M={m} does not divide the {p} rows (inputs)")
        return n, m
    if n_remove is None:
        if sparsity is None:
            raise ValueError("sparsity: give a sparsity in [0, 1) or nm=(N, M)")
        from ..schedules import check_sparsity
        check_sparsity(sparsity)
    return None


def _upper_factor(xp, H):
    """U upper triangular with H^-1 = U^T U (the factor SparseGPT's Algorithm 1 calls Cholesky(H^-1)^T), from one
    Cholesky factorisation and one triangular inverse (2/3 p^3 flops, a third of inverting H): with J the order
    reversal, J H J = L L^T gives H^-1 = (J L^-1 J)^T (J L^-1 J) and J L^-1 J is upper triangular."""
    try:
        L = xp.linalg.cholesky(xp.flip(H, axis=(0, 1)))
        ok = bool(xp.all(xp.isfinite(L)))
    except Exception:  # numpy LinAlgError / torch's linalg error
        ok = False
    if not ok:
        raise ValueError("H: not positive definite (a singular Gram: fewer independent rows than inputs, or "
                         "constant inputs); add damping (damp > 0)")
    return xp.flip(_lower_inverse(xp, L), axis=(0, 1))


def _lower_inverse(xp, L):
    """L^-1 for a lower triangular L: LAPACK trtri (numpy) or a triangular solve (torch), else a general inverse."""
    import array_api_compat
    if array_api_compat.is_torch_array(L):
        import torch
        return torch.linalg.solve_triangular(L, torch.eye(L.shape[0], dtype=L.dtype, device=L.device), upper=False)
    if array_api_compat.is_numpy_array(L):
        from scipy.linalg import lapack
        trtri, = lapack.get_lapack_funcs(("trtri",), (L,))
        Linv, info = trtri(L, lower=1)
        if info == 0:
            return Linv
    return xp.linalg.inv(L)


def _device(a):
    import array_api_compat
    return array_api_compat.device(a)


def _smallest_mask(xp, score, n):
    """Bool mask of the ``n`` smallest entries of ``score`` (any shape; ties by position)."""
    flat = xp.reshape(score, (-1,))
    mask = xp.zeros(flat.shape, dtype=xp.bool, device=_device(score))
    if n > 0:
        mask[xp.argsort(flat, stable=True)[:n]] = True
    return xp.reshape(mask, score.shape)


def _smallest_per_column(xp, score, n_drop):
    """Bool mask (m, K) of the ``n_drop`` smallest entries of each column of ``score`` (m, K)."""
    ranks = xp.argsort(xp.argsort(score, axis=0, stable=True), axis=0, stable=True)
    return ranks < n_drop


def _share(n_total, a, b, p):
    """Drops due by row ``b`` minus those due by row ``a``: n_total spread over the rows by cumulative rounding
    (floor(x + 1/2), so the windows sum to n_total exactly and none gets more than its share rounded up)."""
    return (2 * n_total * b + p) // (2 * p) - (2 * n_total * a + p) // (2 * p)


# ---------------------------------------------------------------------------------------------- the sweep
def _sweep(xp, W, U, h, blocksize, window):
    """The lazy-batched sequential OBS sweep over the rows of W (modified in place).

    ``window(a, W1, U1)`` is called at the start of each window of rows [a, a + len(W1)) with the live window
    buffer and its block of U, and returns ``step(r, Wg, Ugg) -> (drop (h, K) bool, e (h, K))`` for the row block
    starting at row r of the window; the sweep applies W_F -= U_{g,F}^T e.  Returns the summed increase
    1/2 ||e||^2."""
    p, K = W.shape
    cost = 0.0
    for a in range(0, p, blocksize):
        b = min(a + blocksize, p)
        W1 = W[a:b, :]
        if hasattr(W1, "clone"):
            W1 = W1.clone()
        else:
            W1 = W1.copy()
        U1 = U[a:b, a:b]
        E1 = xp.zeros((b - a, K), dtype=W.dtype, device=_device(W))
        step = window(a, W1, U1)
        for r in range(0, b - a, h):
            drop, e = step(r, W1[r:r + h, :], U1[r:r + h, r:r + h])
            W1[r:, :] -= U1[r:r + h, r:].T @ e
            W1[r:r + h, :] = xp.where(drop, xp.zeros_like(e), W1[r:r + h, :])  # exact zeros, not rounding
            E1[r:r + h, :] = e
            cost += 0.5 * float(xp.sum(e * e))
        W[a:b, :] = W1
        if b < p:
            W[b:, :] -= U[a:b, b:].T @ E1
    return cost


def _prepare(xp, H, W, B, name="W"):
    """(U, W) : the factor of H^-1 and a working copy of the target (W, or H^-1 B when B is given)."""
    if (W is None) == (B is None):
        raise ValueError("W: give exactly one of W (the weights to approximate) or B (the Gram form's linear term; "
                         "W = H^-1 B)")
    U = _upper_factor(xp, H)
    if B is not None:
        W = U.T @ (U @ B)
    else:
        W = W.clone() if hasattr(W, "clone") else W.copy()
    return U, W


def seqobs(H, W=None, *, B=None, block=None, n_remove=None, sparsity=None, nm=None, blocksize: int = 128,
           budget: str = "sequential", refit_iters: int = 0):
    """Sequential group OBS (see the module docstring): prune the (p, K) ``W`` -- or the optimum H^-1 ``B`` of the
    Gram form -- to B x B blocks (``block``, with ``n_remove`` blocks dropped or a block ``sparsity``) or to N:M
    along the rows (``nm=(N, M)``), pushing each drop's error onto the rows not yet visited.

    ``H`` must be positive definite (damp it first).  ``blocksize``: rows per lazy-update window, rounded down to a
    multiple of the group height (at least one group).  ``budget`` (blocks; see the module docstring):
    ``'sequential'``, ``'obs'`` or ``'uniform'``.  ``refit_iters``: preconditioned conjugate-gradient iterations on
    the chosen support afterwards (each one product with H: O(p^2 K)), which lower the loss monotonically toward the
    exact refit; ``cost`` is then the loss of the result.  Returns a ``PrunedLayer`` (``keep`` (p/B, K/B) for
    blocks, (p, K) for N:M)."""
    xp = _check_HW(H, W if W is not None else B, "W" if W is not None else "B")
    p, K = H.shape[0], (W if W is not None else B).shape[1]
    blocksize = check_positive_int(blocksize, "blocksize")
    pat = _check_pattern(sparsity, nm, p, block, n_remove)
    if pat is None and block is None:
        raise ValueError("block: give the block side B (or nm=(N, M))")
    if budget not in ("sequential", "obs", "uniform"):
        raise ValueError(f"budget: expected 'sequential', 'obs' or 'uniform', got {budget!r}")
    refit_iters = check_positive_int(refit_iters, "refit_iters", low=0)
    dev = _device(H)
    Bg = None if not refit_iters else (B if B is not None else H @ W)  # the Gram form's linear term, for the refit
    if pat is not None:
        n, m = pat
        U, W = _prepare(xp, H, W, B)
        c0 = 0.5 * float(xp.sum(W * Bg)) if refit_iters else 0.0
        subsets = list(itertools.combinations(range(m), m - n))
        if len(subsets) > _MAX_SUBSETS:
            raise ValueError(f"nm: {nm} needs {len(subsets)} subsets per window (> {_MAX_SUBSETS}); use "
                             f"sparsegpt(nm=...) for such a pattern")
        bs = max(m, blocksize - blocksize % m)
        keep = xp.ones((p, K), dtype=xp.bool, device=dev)

        def window(a, W1, U1):
            def step(r, Wg, Ugg):
                G = Ugg.T @ Ugg
                best, choice, Y = None, None, None
                for i, S in enumerate(subsets):
                    if not S:
                        continue
                    idx = xp.asarray(S, device=dev)
                    GS = xp.linalg.inv(xp.take(xp.take(G, idx, axis=0), idx, axis=1))
                    WS = xp.take(Wg, idx, axis=0)
                    YS = GS @ WS
                    c = 0.5 * xp.sum(WS * YS, axis=0)
                    Yfull = xp.zeros_like(Wg)
                    Yfull[idx, :] = YS
                    if best is None:
                        best, choice, Y = c, xp.zeros(c.shape, dtype=xp.int64, device=dev), Yfull
                    else:
                        better = c < best
                        best = xp.where(better, c, best)
                        choice = xp.where(better, xp.full_like(choice, i), choice)
                        Y = xp.where(better[None, :], Yfull, Y)
                drop = xp.zeros(Wg.shape, dtype=xp.bool, device=dev)
                if Y is None:  # N = M: nothing to drop
                    return drop, xp.zeros_like(Wg)
                for i, S in enumerate(subsets):
                    for j in S:
                        drop[j, :] = drop[j, :] | (choice == i)
                keep[a + r:a + r + m, :] = ~drop
                return drop, Ugg @ Y
            return step

        cost = _sweep(xp, W, U, m, bs, window)
        del U
        if refit_iters:
            W, cost = _masked_cg(xp, H, Bg, W, keep, refit_iters, c0)
        return PrunedLayer(W, keep, cost, "seqobs", {"pattern": f"{n}:{m}", "blocksize": bs,
                                                     "refit_iters": refit_iters})

    Bk = check_positive_int(block, "block")
    if p % Bk or K % Bk:
        raise ValueError(f"block: {Bk} does not divide the ({p}, {K}) matrix")
    R, C = p // Bk, K // Bk
    if n_remove is None:
        n_remove = R * C - math.floor((1 - sparsity) * R * C + 0.5)
    n_remove = check_positive_int(n_remove, "n_remove", low=0, high=R * C)
    U, W = _prepare(xp, H, W, B)
    c0 = 0.5 * float(xp.sum(W * Bg)) if refit_iters else 0.0
    bs = max(Bk, blocksize - blocksize % Bk)
    keep = xp.ones((R, C), dtype=xp.bool, device=dev)

    def block_z(Wg, Uinv):  # U_gg^-T W_g and its per-column-block saliency 1/2 ||.||^2
        Z = Uinv.T @ Wg
        return Z, 0.5 * xp.sum(xp.reshape(Z * Z, (Bk, C, Bk)), axis=(0, 2))

    if budget != "uniform":  # each row block's count: its share of the n_remove smallest saliencies at the start
        Ud = xp.stack([U[i * Bk:(i + 1) * Bk, i * Bk:(i + 1) * Bk] for i in range(R)])
        Uinv0 = xp.linalg.inv(Ud)
        if budget == "sequential":  # as the sweep will see them: G = U_gg^T U_gg, the trailing Gram's inverse
            sal0 = xp.stack([block_z(W[i * Bk:(i + 1) * Bk, :], Uinv0[i])[1] for i in range(R)])
        else:  # 'obs': every other row free, G = (H^-1)_gg = U_{:g}^T U_{:g} (the exact OBS first step)
            Gf = xp.stack([U[:, i * Bk:(i + 1) * Bk].T @ U[:, i * Bk:(i + 1) * Bk] for i in range(R)])
            Lf = xp.linalg.inv(xp.linalg.cholesky(Gf))  # G = L L^T: w^T G^-1 w = ||L^-1 w||^2
            sal0 = xp.stack([block_z(W[i * Bk:(i + 1) * Bk, :], Lf[i].T)[1] for i in range(R)])
        per_row = [int(v) for v in xp.sum(xp.astype(_smallest_mask(xp, sal0, n_remove), xp.int64), axis=1)]
        del Ud, Uinv0, sal0

    def window(a, W1, U1):
        rw = W1.shape[0] // Bk
        Ud = xp.stack([U1[i * Bk:(i + 1) * Bk, i * Bk:(i + 1) * Bk] for i in range(rw)])
        Uinv = xp.linalg.inv(Ud)  # (rw, B, B): small triangular blocks
        if budget == "uniform":  # the window's share, chosen at its start (SparseGPT's adaptive mask selection)
            sal = xp.stack([block_z(W1[i * Bk:(i + 1) * Bk, :], Uinv[i])[1] for i in range(rw)])  # (rw, C)
            drop_blocks = _smallest_mask(xp, sal, _share(n_remove, a, a + W1.shape[0], p))
            keep[a // Bk:a // Bk + rw, :] = ~drop_blocks

        def step(r, Wg, Ugg):
            i = r // Bk
            Z, sal_i = block_z(Wg, Uinv[i])
            if budget == "uniform":
                d = drop_blocks[i]
            else:  # the row block's count, chosen now from its current rows
                d = _smallest_mask(xp, sal_i, per_row[a // Bk + i])
                keep[a // Bk + i, :] = ~d
            cols = xp.reshape(xp.broadcast_to(d[:, None], (C, Bk)), (K,))
            drop = xp.broadcast_to(cols[None, :], (Bk, K))
            return drop, xp.where(drop, Z, xp.zeros_like(Z))
        return step

    cost = _sweep(xp, W, U, Bk, bs, window)
    del U
    if refit_iters:
        full = xp.reshape(xp.broadcast_to(keep[:, None, :, None], (R, Bk, C, Bk)), (p, K))
        W, cost = _masked_cg(xp, H, Bg, W, full, refit_iters, c0, Bk)
    return PrunedLayer(W, keep, cost, "seqobs", {"pattern": f"{Bk}x{Bk}", "blocksize": bs, "n_remove": n_remove,
                                                 "budget": budget, "refit_iters": refit_iters})


def _masked_cg(xp, H, Bg, V, mask, iters, c0, block=None):
    """Preconditioned conjugate gradients, every column at once with its own step, on min 1/2 tr(V^T H V) -
    tr(V^T Bg) over V zero off ``mask`` (p, K), started at V.  Each iteration lowers the loss (CG on the restricted
    SPD system); the preconditioner is block Jacobi, H_gg^-1 on the B x B blocks (``block``, whose masks keep or
    drop whole row blocks of a column), else Jacobi (diag H).  Returns (V, the loss above the unrestricted optimum
    W*; ``c0`` = 1/2 tr(W*^T Bg))."""
    p, K = V.shape
    mk = xp.astype(mask, V.dtype)
    if block:
        R = p // block
        Dinv = xp.linalg.inv(xp.stack([H[i * block:(i + 1) * block, i * block:(i + 1) * block] for i in range(R)]))

        def precond(Rr):
            return xp.reshape(Dinv @ xp.reshape(Rr, (R, block, K)), (p, K))
    else:
        dinv = 1.0 / xp.linalg.diagonal(H)

        def precond(Rr):
            return dinv[:, None] * Rr
    Rr = mk * (Bg - H @ V)
    Z = precond(Rr)
    P = Z
    rz = xp.sum(Rr * Z, axis=0)
    tiny = xp.finfo(V.dtype).tiny
    for _ in range(iters):
        AP = mk * (H @ P)
        alpha = rz / xp.maximum(xp.sum(P * AP, axis=0), tiny)
        V = V + alpha[None, :] * P
        Rr = Rr - alpha[None, :] * AP
        Z = precond(Rr)
        rz_new = xp.sum(Rr * Z, axis=0)
        P = Z + (rz_new / xp.maximum(rz, tiny))[None, :] * P
        rz = rz_new
    # the loss above the unrestricted optimum W* = H^-1 Bg: 1/2 tr(V^T H V) - tr(V^T Bg) + 1/2 tr(W*^T Bg)
    return V, float(0.5 * xp.sum(V * (H @ V)) - xp.sum(V * Bg)) + c0


def _damp_dead(xp, H, W, damp):
    """SparseGPT's preprocessing: dead inputs (H_ii = 0) get H_ii = 1 and zero weights; H + damp mean(diag H) I."""
    d = xp.linalg.diagonal(H)
    dead = d == 0
    eye = xp.eye(H.shape[0], dtype=H.dtype, device=_device(H))
    H = H + eye * xp.astype(dead, H.dtype)[None, :]  # H_ii = 1 where it was 0
    W = xp.where(dead[:, None], xp.zeros_like(W), W)
    return H + (damp * float(xp.mean(xp.linalg.diagonal(H)))) * eye, W


def sparsegpt(H, W, *, sparsity=None, nm=None, blocksize: int = 128, damp: float = 0.01):
    """SparseGPT (Frantar & Alistarh 2023, Algorithm 1) on the (p inputs, K outputs) weights ``W`` with the
    calibration Gram ``H`` (X^T X up to scale): unstructured ``sparsity`` (exact count per ``blocksize``-row window,
    chosen at the window start by w^2 / [H^-1]_cc) or ``nm=(N, M)`` along the inputs; ``damp`` times the mean
    diagonal is added to H (0.01 in the paper).  Returns a ``PrunedLayer`` with a (p, K) keep mask."""
    xp = _check_HW(H, W)
    p, K = W.shape
    pat = _check_pattern(sparsity, nm, p)
    blocksize = check_positive_int(blocksize, "blocksize")
    damp = check_nonneg(damp, "damp")
    H, W = _damp_dead(xp, H, W, damp)
    U = _upper_factor(xp, H)
    dev = _device(H)
    keep = xp.ones((p, K), dtype=xp.bool, device=dev)
    if pat is not None:
        n, m = pat
        blocksize = max(m, blocksize - blocksize % m)
    n_total = None if pat is not None else p * K - math.floor((1 - sparsity) * p * K + 0.5)

    def window(a, W1, U1):
        d2 = xp.linalg.diagonal(U1) ** 2
        drop_w = None
        if pat is None:  # adaptive mask over the whole window, by the OBS saliency at its start
            drop_w = _smallest_mask(xp, W1 * W1 / d2[:, None], _share(n_total, a, a + W1.shape[0], p))
            keep[a:a + W1.shape[0], :] = ~drop_w
        state = {"drop": drop_w}

        def step(r, Wg, Ugg):
            if pat is not None and r % m == 0:  # the next M rows, as updated so far
                Wm = W1[r:r + m, :]
                dm = _smallest_per_column(xp, Wm * Wm / d2[r:r + m, None], m - n)
                keep[a + r:a + r + m, :] = ~dm
                state["drop"], state["r0"] = dm, r
            dr = state["drop"][r - state.get("r0", 0):r - state.get("r0", 0) + 1, :]
            return dr, xp.where(dr, Wg / Ugg[0, 0], xp.zeros_like(Wg))
        return step

    W = W.clone() if hasattr(W, "clone") else W.copy()
    cost = _sweep(xp, W, U, 1, blocksize, window)
    return PrunedLayer(W, keep, cost, "sparsegpt",
                       {"pattern": f"{pat[0]}:{pat[1]}" if pat else "unstructured", "blocksize": blocksize,
                        "damp": damp})


def wanda(H, W, *, sparsity=None, nm=None):
    """Wanda (Sun et al. 2023): score |W_ij| * ||X_j||_2 (sqrt(H_jj), the scale of H does not matter) per output;
    drop the ``sparsity`` fraction of each output's weights with the smallest score, or ``nm=(N, M)``: the M - N
    smallest of every M consecutive inputs.  No weight update.  Returns a ``PrunedLayer`` with a (p, K) mask."""
    xp = _check_HW(H, W)
    p, K = W.shape
    pat = _check_pattern(sparsity, nm, p)
    score = xp.abs(W) * xp.sqrt(xp.clip(xp.linalg.diagonal(H), 0.0, None))[:, None]
    if pat is None:
        drop = _smallest_per_column(xp, score, p - math.floor((1 - sparsity) * p + 0.5))
    else:
        n, m = pat
        s3 = xp.reshape(score, (p // m, m, K))
        ranks = xp.argsort(xp.argsort(s3, axis=1, stable=True), axis=1, stable=True)
        drop = xp.reshape(ranks < m - n, (p, K))
    return PrunedLayer(xp.where(drop, xp.zeros_like(W), W), ~drop, 0.0, "wanda",
                       {"pattern": f"{pat[0]}:{pat[1]}" if pat else "unstructured"})
