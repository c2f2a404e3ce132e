"""The one refit every selection method uses: the exact minimiser of the loss on a fixed group support.

* Least squares (``LeastSquares`` and ``GramLeastSquares``): the problem decouples by output column -- column k
  uses the rows R_k = {j : (j, k) selected} -- so the columns that share the same R_k are solved together (for
  B x B tiles, all B columns of a column block share their rows): in X form by the loss's exact ``solve_rows``, an
  orthogonal factorisation of X's columns (exact at cond 1e12, never jittered normal equations); in Gram form by
  ``obs.gram_refit`` -- row sets of equal size batched into one Cholesky call, an eigendecomposition pseudo-solve
  where a set is singular -- in float64 in the loss's array namespace (numpy, or torch on any device); the Gram
  value comes from L = c - 1/2 <W, B>, without another product with H.
* Logistic / multinomial: damped Newton on the free coefficients (exact Hessians, Armijo backtracking) with a tiny
  ridge ``refit_ridge`` (default 1e-8) so that separable data still has a finite refit.
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit

from ..losses import psd_solve, softmax_rows

__all__ = ["refit"]


def refit(bp, S, W0=None):
    """(W, value) minimising the loss of ``bp`` over the coefficients of groups ``S`` (others 0)."""
    if bp.quadratic:
        return _quadratic_refit(bp, S)
    return _newton_refit(bp, S, W0)


def _column_patterns(m):
    """Group the output columns of a boolean (rows, K) mask by identical row sets: [(rows, cols), ...]."""
    K = m.shape[1]
    if K == 1:
        return [(np.flatnonzero(m[:, 0]), np.array([0]))]
    packed = np.packbits(m, axis=0).T  # (K, ceil(rows/8))
    _, first, inv = np.unique(packed, axis=0, return_index=True, return_inverse=True)
    inv = np.asarray(inv).ravel()
    order = np.argsort(inv, kind="stable")
    bounds = np.flatnonzero(np.diff(inv[order])) + 1
    out = []
    for cols in np.split(order, bounds):
        out.append((np.flatnonzero(m[:, cols[0]]), cols))
    return out


def _quadratic_refit(bp, S):
    loss, xp = bp.loss, bp.xp
    m = bp.mask_np(S)
    if bp.gram:  # all column patterns at once: batched Cholesky per row-set size (obs.gram_refit), in float64
        from .obs import gram_refit
        if not hasattr(bp, "_H_refit"):
            H64 = xp.astype(loss.H, xp.float64)
            bp._H_refit = H64 + loss.ridge * xp.eye(bp.p, dtype=xp.float64, device=bp.device) if loss.ridge else H64
        Wf = gram_refit(bp._H_refit, loss.B, m, dtype=xp.float64)
        return xp.astype(Wf, bp.dtype), loss.c - 0.5 * float(xp.sum(Wf * xp.astype(loss.B, xp.float64)))
    W = bp.zeros()
    wb = 0.0  # <W, B> accumulated: L(W*) = c - 1/2 <W*, B> at the refit (Gram form)
    for rows, cols in _column_patterns(m):
        if rows.size == 0:
            continue
        sol = loss.solve_rows(rows, cols)  # exact (orthogonal factorisation / PSD pseudo-solve), float64
        if bp.gram:
            ri = xp.asarray(rows, dtype=xp.int64, device=bp.device)
            ci = xp.asarray(cols, dtype=xp.int64, device=bp.device)
            wb += float(xp.sum(sol * xp.astype(loss.B[ri[:, None], ci[None, :]], xp.float64)))
            W[ri[:, None], ci[None, :]] = xp.astype(sol, W.dtype)
        else:
            W[np.ix_(rows, cols)] = sol
    if bp.gram:
        return W, loss.c - 0.5 * wb
    # X form: the value from the residual on the support (no cancellation in c - <W, B>/2)
    rows = np.flatnonzero(m.any(axis=1))
    Rres = np.asarray(loss.X[:, rows] @ W[rows]).reshape(loss.Y.shape) - loss.Y
    val = 0.5 * float(np.vdot(Rres, Rres)) / loss.n_samples
    if loss.ridge:
        val += 0.5 * loss.ridge * float(np.sum(W[: bp.p] ** 2))
    return W, val


def _newton_refit(bp, S, W0=None, tol=1e-13, max_iter=100):
    loss = bp.loss
    m = bp.mask_np(S)
    rows = np.flatnonzero(m.any(axis=1))
    W = np.zeros((bp.n_rows, bp.K))
    if rows.size == 0:
        return W, bp.value(W)
    Xr = loss.X[:, rows]
    Xr = Xr.toarray() if hasattr(Xr, "toarray") else np.asarray(Xr)
    free = m[rows].ravel()
    Wr = np.zeros((rows.size, bp.K)) if W0 is None else np.array(W0[rows], dtype=float)
    Wr[~m[rows]] = 0.0
    pen = np.where(rows < bp.p, loss.ridge + bp.refit_ridge, 0.0)[:, None] * np.ones((1, bp.K))
    multi = bp.K > 1
    n = loss.n_samples
    # whole rows free (feature groups): Newton in the coordinates C = W Q of softmax_basis, where the Hessian is
    # definite (the common shift of the K scores, a null direction that forces the eigh pseudo-solve, is gone)
    Q = softmax_basis(bp.K) if multi and free.all() else None
    if Q is not None:
        Wr = Wr @ Q @ Q.T  # the loss is shift-invariant: only the ridge changes, and it drops

    def f(Wr):
        Z = Xr @ Wr
        return loss.raw_value(Z) + 0.5 * float(np.sum(pen * Wr * Wr)), Z

    val, Z = f(Wr)
    for it in range(max_iter):
        g = (Xr.T @ loss.raw_grad(Z) + pen * Wr).ravel()[free]
        if multi:
            P = softmax_rows(Z)
            Bs = np.eye(bp.K) if Q is None else Q
            Hm = _multinomial_hessian(Xr, P, Bs) + np.diag(np.repeat(pen[:, 0], Bs.shape[1]))
            if Q is None:
                Hf = Hm[np.ix_(free, free)]
                step = -psd_solve(_npxp(), Hf, g)
            else:
                sc = -psd_solve(_npxp(), Hm, (g.reshape(rows.size, bp.K) @ Q).ravel())
                step = (sc.reshape(rows.size, -1) @ Q.T).ravel()
        else:
            s = expit(Z[:, 0])
            Hm = (Xr * (s * (1 - s) / n)[:, None]).T @ Xr + np.diag(pen[:, 0])
            step = -psd_solve(_npxp(), Hm[np.ix_(free, free)], g)
        dec = -float(g @ step)
        if dec <= 2 * tol * max(1.0, abs(val)):
            break
        t = 1.0
        full = np.zeros(rows.size * bp.K)
        while True:
            full[free] = t * step
            newW = Wr + full.reshape(Wr.shape)
            new, Znew = f(newW)
            if new <= val - 0.25 * t * dec or t < 1e-10:
                break
            t *= 0.5
        if new > val:
            break
        Wr, val, Z = newW, new, Znew
    W[rows] = Wr
    return W, bp.value(W)


def _multinomial_hessian(Xr, P, Bs):
    """Hessian of the mean multinomial log-loss in the coordinates C = W Bs (Bs: (K, q); I, or softmax_basis):
    (1/n) sum_i x_i x_i^T (x) Bs^T (diag(P_i) - P_i P_i^T) Bs, coordinate (row, class) row-major, as q (q + 1) / 2 + 1
    BLAS products (einsum: 30x slower)."""
    n, m = Xr.shape
    q = Bs.shape[1]
    XP = (Xr[:, :, None] * (P @ Bs)[:, None, :]).reshape(n, m * q)
    H = -(XP.T @ XP).reshape(m, q, m, q)
    for c in range(q):
        for d in range(c, q):
            D = P @ (Bs[:, c] * Bs[:, d])
            if np.any(D):
                H[:, c, :, d] += Xr.T @ (Xr * D[:, None])
                if d != c:
                    H[:, d, :, c] = np.swapaxes(H[:, c, :, d], 0, 1)
    return H.reshape(m * q, m * q) / n


def softmax_basis(K):
    """(K, K-1) orthonormal basis Q of the vectors orthogonal to 1 (Q^T 1 = 0, Q^T Q = I): multinomial scores
    W and W Q Q^T give the same softmax, so C = W Q are coordinates without the shift direction."""
    from scipy.linalg import null_space
    return null_space(np.ones((1, int(K))))


def _npxp():
    import array_api_compat
    return array_api_compat.array_namespace(np.zeros(1))
