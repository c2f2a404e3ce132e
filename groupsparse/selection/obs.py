r"""Group OBS backward elimination over a B x B block tiling of a Gram-form least-squares problem, and the exact
refit of any kept mask, on numpy arrays or torch tensors (CPU or CUDA; array API, torch is never imported here).

The problem is ``GramLeastSquares(H, B)``: f(W) = 1/2 tr(W^T H W) - tr(W^T B) + c over W (p, K), H SPD, the
groups the B x B tiles of W (``Groups.block_tiling((p, K), B)``).  The loss is separable over the column blocks of
W (they share H), so each column block has its own backward path:  start from the least-squares optimum
W* = H^-1 B and repeatedly remove the row block g whose removal raises the loss least, re-optimizing the other
rows exactly -- group Optimal Brain Surgeon (Hassibi & Stork 1993), increment 1/2 tr(W_g^T [(H^-1)_gg]^-1 W_g),
then a rank-B downdate of H^-1.  All column blocks run in lock step as one batched computation (``obs_paths``),
and the per-column paths are merged by their increments into the layer's loss curve (``merge_paths``): the first
n_remove entries say how many blocks each column block gives up (``obs_keep``).

``gram_refit`` is the exact least-squares solution on a kept mask (columns sharing a row set solved together,
equal-size row sets batched, in chunks that bound memory).  ``select(GramLeastSquares(H, B), groups, k,
method='obs')`` runs ``obs_keep`` and the selection package's exact refit.
"""
from __future__ import annotations

import math

import numpy as np

from .._array import namespace, to_numpy

__all__ = ["obs_paths", "obs_first_costs", "merge_paths", "obs_keep", "obs_keep_parts", "obs_steps",
           "obs_memory_bytes", "gram_refit", "obs"]


def _device(a):
    import array_api_compat
    return array_api_compat.device(a)


def _cholesky_ok(xp, A, pivots=True):
    """Batched lower Cholesky factors of the SPD stack A (..., n, n) and a host bool (...) saying which are usable:
    the factorization succeeded and, with ``pivots``, its pivot ratio is above 1e-6 (``losses.psd_solve``'s test
    for a solve); failed ones come back as identities."""
    n = A.shape[-1]
    batch = tuple(A.shape[:-2])
    if hasattr(A, "detach"):  # torch: one call, failures reported per matrix
        import torch
        L, info = torch.linalg.cholesky_ex(A)
        ok = to_numpy(info == 0)
    else:
        flat = np.reshape(A, (-1, n, n))
        L = np.empty_like(flat)
        ok = np.ones(flat.shape[0], dtype=bool)
        try:
            L[...] = np.linalg.cholesky(flat)
        except np.linalg.LinAlgError:  # locate the failures one by one
            for i in range(flat.shape[0]):
                try:
                    L[i] = np.linalg.cholesky(flat[i])
                except np.linalg.LinAlgError:
                    ok[i] = False
        L = np.reshape(L, A.shape)
        ok = np.reshape(ok, batch)
    if pivots and n:
        d = to_numpy(xp.abs(xp.linalg.diagonal(L)))
        with np.errstate(invalid="ignore"):
            ok &= np.isfinite(d).all(axis=-1) & (d.min(axis=-1) > 1e-6 * d.max(axis=-1))
    if ok.all():
        return L, ok
    eye = xp.eye(n, dtype=L.dtype, device=_device(L))
    okx = xp.asarray(ok, device=_device(L))
    return xp.where(okx[..., None, None], L, eye), ok


def _check_tiling(H, Bm, block):
    p, K = Bm.shape
    if H.shape != (p, p):
        raise ValueError(f"H: expected shape ({p}, {p}) to match B {tuple(Bm.shape)}, got {tuple(H.shape)}")
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or block < 1 or p % block or K % block:
        raise ValueError(f"block: expected a positive integer dividing both dimensions of B {tuple(Bm.shape)}, "
                         f"got {block!r}")
    return p // block, K // block


def obs_paths(H, Bm, block: int, n_steps: int, dtype=None, *, part=None, quota=None):
    """Greedy backward elimination of row blocks, independently in every column block, in lock step.

    H (p, p) SPD, Bm (p, K) with p, K multiples of ``block``.  Returns ``order`` (C, n_steps) -- the row block
    removed by each column block at each step -- and ``incr`` (C, n_steps), float64, the exact loss increase of
    each removal (the loss re-optimized over the remaining blocks of that column block), in H's namespace and
    device.  ``dtype``: the working precision (default float64).

    A partition budget: ``part`` (C, R) host ints, the part of every row block of every column block (a part lies
    in one column block), and ``quota`` (n_parts,) the removals each part takes; a removal then comes only from a
    part with quota left, and a column block with none left stops (``order`` -1 and ``incr`` 0 from there on).

    Each column block's H^-1 after s removals is H0^-1 - V V^T with V (p, B*s) (the rank-B downdates stacked), so
    nothing of size C x p x p is ever formed: a step costs O(C p B^2 s) and one shared p x p inverse is computed.
    """
    xp = namespace(H, Bm)
    _check_tiling(H, Bm, block)
    dt = xp.float64 if dtype is None else dtype
    return _paths(xp, _sym_inverse(xp, H, dt), Bm, block, n_steps, dt, part, quota)


def _sym_inverse(xp, H, dt):
    Hinv0 = xp.linalg.inv(xp.astype(H, dt))
    return 0.5 * (Hinv0 + xp.permute_dims(Hinv0, (1, 0)))


def _paths(xp, Hinv0, Bm, block, n_steps, dt, part=None, quota=None):
    """``obs_paths`` from the shared inverse ``Hinv0`` (p, p) in the working precision ``dt``."""
    B = block
    p, K = Bm.shape
    R, C = p // B, K // B
    n_steps = int(min(n_steps, R))
    dev = _device(Hinv0)
    left = None if part is None else np.array(quota, dtype=np.int64)
    M = xp.permute_dims(xp.reshape(Hinv0 @ xp.astype(Bm, dt), (p, C, B)), (1, 0, 2))  # (C, p, B): LS optimum
    M = xp.reshape(M, (C, R, B, B)) + 0  # a writable copy
    ar, cr = xp.arange(R, device=dev), xp.arange(C, device=dev)
    bb = xp.arange(B, device=dev)
    Dg = xp.permute_dims(xp.reshape(Hinv0, (R, B, R, B)), (0, 2, 1, 3))[ar, ar]  # (R, B, B) diagonal blocks
    D = xp.zeros((C, R, B, B), dtype=dt, device=dev) + Dg  # per column block
    V = xp.zeros((C, p, B * n_steps), dtype=dt, device=dev)
    removed = xp.zeros((C, R), dtype=xp.bool, device=dev)
    order = xp.full((C, n_steps), -1, dtype=xp.int64, device=dev)
    incr = xp.zeros((C, n_steps), dtype=xp.float64, device=dev)
    eye = xp.eye(B, dtype=dt, device=dev)
    act = None  # (C,) column blocks still removing (a partition budget), None: all
    for s in range(n_steps):
        if B == 1:  # single weights (N:M): the 1 x 1 "factors" elementwise, no batched factorisations
            d = D[..., 0, 0]
            okd = d > 0
            Linv = (1.0 / xp.sqrt(xp.where(okd, d, xp.ones_like(d))))[..., None, None]
            bad = removed | ~okd
        else:
            L, ok = _cholesky_ok(xp, xp.where(removed[:, :, None, None], eye, D), pivots=False)
            Linv = xp.linalg.inv(L)  # (C, R, B, B) small triangular blocks: D_g^-1 = Linv^T Linv
            bad = removed | xp.asarray(~ok, device=dev)
        Z = Linv @ M
        cost = 0.5 * xp.sum(Z * Z, axis=(2, 3))  # (C, R): 1/2 tr(M_g^T D_g^-1 M_g)
        if left is not None:  # parts whose quota is spent keep their blocks
            bad = bad | xp.asarray(left[part] <= 0, device=dev)
        cost = xp.where(bad, xp.full_like(cost, math.inf), cost)
        g = xp.argmin(cost, axis=1)  # (C,)
        gc = cost[cr, g]
        if left is not None:
            act_h = np.isfinite(to_numpy(gc))
            if not act_h.any():
                break
            np.subtract.at(left, part[np.flatnonzero(act_h), to_numpy(g)[act_h]], 1)
            act = xp.asarray(act_h, device=dev)
            g_rec, gc = xp.where(act, g, xp.full_like(g, -1)), xp.where(act, gc, xp.zeros_like(gc))
        else:
            g_rec = g
        order[:, s] = g_rec
        incr[:, s] = xp.astype(gc, xp.float64)
        cols = g[:, None] * B + bb  # (C, B)
        U = xp.permute_dims(Hinv0[:, cols], (1, 0, 2))  # (C, p, B): columns g of H0^-1 ...
        if s:
            Vs = V[:, :, :B * s]
            U = U - Vs @ xp.permute_dims(Vs[cr[:, None], cols, :], (0, 2, 1))  # ... minus V V^T
        Lgi = Linv[cr, g]  # (C, B, B), D_g^-1 = Lgi^T Lgi
        Vn = U @ xp.permute_dims(Lgi, (0, 2, 1))  # U Lg^-T
        if act is not None:  # a stopped column block: no downdate
            Vn = Vn * xp.astype(act, dt)[:, None, None]
        V[:, :, B * s:B * (s + 1)] = Vn
        dM = Vn @ (Lgi @ M[cr, g])  # U D_g^-1 M_g
        M = M - xp.reshape(dM, (C, R, B, B))
        Vb = xp.reshape(Vn, (C, R, B, B))
        D = D - Vb @ xp.permute_dims(Vb, (0, 1, 3, 2))
        if act is None:
            removed[cr, g] = True
            M[cr, g] = 0.0
        else:
            removed[cr, g] = removed[cr, g] | act
            M[cr, g] = xp.where(act[:, None, None], xp.zeros_like(M[cr, g]), M[cr, g])
    return order, incr


def obs_first_costs(H, Bm, block: int):
    """The loss increase of removing each block alone from the least-squares optimum (C, R), float64: the first
    step of ``obs_paths`` for every block, a cheap loss curve for allocating sparsity across layers."""
    xp = namespace(H, Bm)
    R, C = _check_tiling(H, Bm, block)
    B = block
    dev = _device(H)
    Hinv = xp.linalg.inv(xp.astype(H, xp.float64))
    M = xp.permute_dims(xp.reshape(Hinv @ xp.astype(Bm, xp.float64), (R, B, C, B)), (2, 0, 1, 3))  # (C, R, B, B)
    ar = xp.arange(R, device=dev)
    Dg = xp.permute_dims(xp.reshape(Hinv, (R, B, R, B)), (0, 2, 1, 3))[ar, ar]
    L, ok = _cholesky_ok(xp, 0.5 * (Dg + xp.permute_dims(Dg, (0, 2, 1))))
    if not ok.all():
        raise ValueError("H: the diagonal blocks of H^-1 are not positive definite (H is not SPD)")
    Z = xp.linalg.inv(L) @ M
    return 0.5 * xp.sum(Z * Z, axis=(2, 3))


def merge_paths(incr):
    """Merge per-column removal paths into one non-decreasing sequence of marginal costs.

    Increments along a path are made non-decreasing (running max), so sorting all (column, step) pairs by them
    (ties by step) takes a prefix of every column's path: the first m entries say how many blocks each column
    block gives up when the layer gives up m.  Returns (sorted marginal costs, column of each entry), host
    arrays of ``incr``'s namespace (a CPU tensor for a torch input).
    """
    xp = namespace(incr)
    adj = np.maximum.accumulate(to_numpy(incr).astype(np.float64), axis=1)
    C, S = adj.shape
    steps = np.broadcast_to(np.arange(S), (C, S)).reshape(-1)
    cols = np.broadcast_to(np.arange(C)[:, None], (C, S)).reshape(-1)
    key = np.lexsort((steps, adj.reshape(-1)))
    return xp.asarray(adj.reshape(-1)[key]), xp.asarray(cols[key])


def obs_steps(R: int, C: int, n_remove: int) -> int:
    """Lock-step path length of ``obs_paths`` for removing ``n_remove`` of R x C blocks: enough for an uneven split
    across column blocks (a column block gives up at most this many; the merge takes the rest elsewhere)."""
    return min(R, max(int(np.ceil(1.6 * n_remove / C)), int(np.ceil(n_remove / C)) + 2))


def obs_memory_bytes(p: int, K: int, block: int, n_remove: int) -> int:
    """Working memory of ``obs_keep`` + ``gram_refit`` on a (p, K) problem (float64): the stacked downdates V
    (C, p, B * steps) of ``obs_paths``, H^-1 and its copies, the per-column-block optimum and the refit."""
    R, C = p // block, K // block
    return 8 * (C * p * block * obs_steps(R, C, n_remove) + 3 * p * p + 4 * p * K)


def obs_keep(H, Bm, block: int, n_remove: int, n_steps=None):
    """Keep mask (R, C) (bool, on H's device) of the B x B blocks after removing ``n_remove`` of them by the merged
    group OBS paths.  ``n_steps``: the lock-step path length (default ``obs_steps``; R makes the merge exact)."""
    xp = namespace(H, Bm)
    R, C = _check_tiling(H, Bm, block)
    if isinstance(n_remove, bool) or not isinstance(n_remove, (int, np.integer)) or not 0 <= n_remove <= R * C:
        raise ValueError(f"n_remove: expected an integer in [0, {R * C}], got {n_remove!r}")
    keep = np.ones((R, C), dtype=bool)
    if n_remove:
        order, incr = obs_paths(H, Bm, block, obs_steps(R, C, n_remove) if n_steps is None else n_steps)
        _, col = merge_paths(incr)
        counts = np.bincount(to_numpy(col)[:n_remove], minlength=C)
        order = to_numpy(order)
        for j in range(C):
            keep[order[j, :counts[j]], j] = False
    return xp.asarray(keep, device=_device(H))


def obs_keep_parts(H, Bm, block: int, part, quota, chunk_bytes: float = 5e8):
    """Keep mask (R, C) of the B x B blocks under a partition budget: every column block runs its own OBS path
    (``obs_paths`` with ``part`` (R, C) host ints, the part of each block, every part inside one column block, and
    ``quota`` the removals of each part); column blocks are independent here, so they run in chunks whose stacked
    downdates stay under ``chunk_bytes``, all from one shared inverse of H."""
    xp = namespace(H, Bm)
    R, C = _check_tiling(H, Bm, block)
    part = np.asarray(part, dtype=np.int64)
    quota = np.asarray(quota, dtype=np.int64)
    per_col = np.array([int(quota[np.unique(part[:, j])].sum()) for j in range(C)])
    keep = np.ones((R, C), dtype=bool)
    if not per_col.any():
        return xp.asarray(keep, device=_device(H))
    dt = xp.float64
    Hinv0 = _sym_inverse(xp, H, dt)
    p = R * block
    steps = int(per_col.max())
    step_c = max(1, int(chunk_bytes // (8 * p * block * max(steps, 1) * 2)))
    for a in range(0, C, step_c):
        b = min(C, a + step_c)
        sub = Bm[:, a * block:b * block]
        order, _ = _paths(xp, Hinv0, sub, block, steps, dt, np.ascontiguousarray(part[:, a:b].T), quota)
        order = to_numpy(order)
        for j in range(b - a):
            o = order[j][order[j] >= 0]
            keep[o, a + j] = False
    return xp.asarray(keep, device=_device(H))


def gram_refit(H, Bm, keep, *, block=None, dtype=None, chunk_bytes: float = 2e8):
    """Exact least squares on a kept mask: W with W[~keep] = 0 and (H W - Bm)[keep] = 0, in H's namespace and device.

    ``keep``: bool (p, K), or (R, C) block mask with ``block`` (each entry a B x B tile).  Columns that share a row
    set are solved together (all B columns of a column block), row sets of equal size are batched (one Cholesky
    per set), ``chunk_bytes`` bounds the batch's gathered Grams.  A set whose Cholesky is unusable (H singular
    there) gets the min-norm pseudo-solve of ``losses.psd_solve``.  ``dtype``: working and output precision
    (default H's)."""
    from ..losses import psd_solve
    from .refit import _column_patterns
    xp = namespace(H, Bm)
    p, K = Bm.shape
    m = np.asarray(to_numpy(keep), dtype=bool)
    if block is not None:
        m = np.repeat(np.repeat(m, block, axis=0), block, axis=1)
    if m.shape != (p, K):
        raise ValueError(f"keep: expected shape ({p}, {K}) (or the block grid with block=), got {m.shape}")
    dev = _device(H)
    dt = H.dtype if dtype is None else dtype
    Hd, Bd = xp.astype(H, dt), xp.astype(Bm, dt)
    out = xp.zeros((p, K), dtype=dt, device=dev)
    by_size = {}
    for rows, cols in _column_patterns(m):
        if rows.size:
            by_size.setdefault((rows.size, cols.size), []).append((rows, cols))
    itemsize = 8 if dt == xp.float64 else 4
    for (s, nc), sets in by_size.items():
        step = max(1, int(chunk_bytes // (s * (s + nc) * itemsize)))
        for a in range(0, len(sets), step):
            part = sets[a:a + step]
            r = xp.asarray(np.stack([rw for rw, _ in part]), device=dev)   # (c, s)
            cc = xp.asarray(np.stack([cl for _, cl in part]), device=dev)  # (c, nc)
            Hs = Hd[r[:, :, None], r[:, None, :]]                          # (c, s, s)
            bs = Bd[r[:, :, None], cc[:, None, :]]                         # (c, s, nc)
            L, ok = _cholesky_ok(xp, Hs)
            if hasattr(L, "detach"):  # torch: triangular solves on the device
                import torch
                sol = torch.cholesky_solve(bs, L)
            else:  # the failed sets (identity factors here) are overwritten below
                eye = np.eye(s, dtype=Hs.dtype)
                sol = np.linalg.solve(np.where(ok[:, None, None], Hs, eye), bs)
            for i in np.flatnonzero(~ok):  # rank-deficient on this set: min-norm solution, never jittered
                sol[int(i)] = xp.astype(psd_solve(xp, xp.astype(Hs[int(i)], xp.float64),
                                                  xp.astype(bs[int(i)], xp.float64)), dt)
            out[r[:, :, None], cc[:, None, :]] = sol
    return out


# ---------------------------------------------------------------------------------------------- select()
def _tiling_of(bp):
    """(B, R, C, block row, block column of every group) when the groups of ``bp`` are the B x B tiles of the
    (p, K) coefficients, else a ValueError naming groups."""
    G, p, K = bp.G, bp.p, bp.K
    sizes = bp.groups.sizes
    B = int(math.isqrt(int(sizes[0]))) if G else 0
    msg = (f"groups: method 'obs' needs the B x B tiles of the ({p}, {K}) coefficients (Groups.block_tiling), "
           f"got {G} groups of sizes {sorted(set(int(s) for s in sizes))[:5]}")
    if not bp.rect or B < 1 or p % B or K % B or G != (p // B) * (K // B) or not np.all(sizes == B * B):
        raise ValueError(msg)
    rows, cols = bp._rows_np, bp._cols_np
    r0, c0 = rows[:, 0], cols[:, 0]
    if (rows.shape[1] != B or cols.shape[1] != B or np.any(r0 % B) or np.any(c0 % B)
            or np.any(rows != r0[:, None] + np.arange(B)) or np.any(cols != c0[:, None] + np.arange(B))):
        raise ValueError(msg)
    bi, bj = r0 // B, c0 // B
    if np.unique(bi * (K // B) + bj).size != G:
        raise ValueError(msg)
    return B, p // B, K // B, bi, bj


def obs(bp, k, history=None, steps=None):
    """``select`` method 'obs': merged group OBS backward elimination to k of the B x B tiles (``obs_keep``) on a
    ``GramLeastSquares`` loss (its ridge added to H), then the exact refit.  ``steps``: lock-step path length
    (default ``obs_steps``; the number of row blocks makes the merge over complete paths).

    Under a partition budget (``bp.budget_for(k)``; N:M is one over 1 x 1 tiles) every part must lie inside one
    column block of tiles; each column block then removes, greedily by the exact OBS increase, the groups its parts
    must give up, from parts with removals left (``obs_keep_parts``)."""
    if not bp.gram:
        raise ValueError(f"loss: method 'obs' needs a GramLeastSquares loss, got {type(bp.loss).__name__}")
    B, R, C, bi, bj = _tiling_of(bp)
    xp, loss = bp.xp, bp.loss
    H = loss.H
    if loss.ridge:
        H = H + loss.ridge * xp.eye(bp.p, dtype=H.dtype, device=bp.device)
    budget = bp.budget_for(k)
    if budget.partitioned:
        lab = budget._lab
        if np.unique(lab * C + bj).size != np.unique(lab).size:
            raise ValueError("k: method 'obs' needs every part of the partition budget inside one column block of "
                             f"the {B}x{B} tiles (N:M runs along the rows of a column)")
        part = np.empty((R, C), dtype=np.int64)
        part[bi, bj] = lab
        quota = np.bincount(lab) - budget._cap
        keep = to_numpy(obs_keep_parts(H, loss.B, B, part, quota))
    else:
        keep = to_numpy(obs_keep(H, loss.B, B, bp.G - k, n_steps=steps))
    S = np.flatnonzero(keep[bi, bj])
    W, val = bp.refit(S)
    if history is not None:
        history.append(val)
    return W, S, val, bp.G - k
