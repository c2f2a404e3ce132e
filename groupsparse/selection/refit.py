"""The one refit every selection method uses: the exact minimiser of the loss on a fixed group support.

* Least squares (``LeastSquares`` and ``GramLeastSquares``): the normal equations decouple by output column --
  column k uses the rows R_k = {j : (j, k) selected} -- so the columns that share the same R_k are solved together
  with one Cholesky factorisation (for B x B tiles, all B columns of a column block share their rows).  Solves run
  in float64 in the loss's array namespace (numpy, or torch on any device); the value comes from the normal
  equations, L = c - 1/2 <W, B>, without another product with H.
* Logistic / multinomial: damped Newton on the free coefficients (exact Hessians, Armijo backtracking) with a tiny
  ridge ``refit_ridge`` (default 1e-8) so that separable data still has a finite refit.
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit, logsumexp

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


def _spd_solve(xp, A, Bm):
    """Solve A X = Bm for symmetric PSD A (float64): Cholesky, with a tiny relative jitter when singular."""
    n = A.shape[0]
    eye = xp.eye(n, dtype=A.dtype, device=_dev(A))
    scale = float(xp.max(xp.abs(A))) if n else 1.0
    for jitter in (0.0, 1e-12, 1e-9, 1e-6):
        try:
            Lc = xp.linalg.cholesky(A + (jitter * scale) * eye) if jitter else xp.linalg.cholesky(A)
        except Exception:  # numpy LinAlgError / torch linalg error
            continue
        if not bool(xp.all(xp.isfinite(Lc))):
            continue
        return _chol_solve(xp, Lc, Bm)
    return xp.linalg.pinv(A) @ Bm


def _chol_solve(xp, Lc, Bm):
    if hasattr(Lc, "detach"):  # torch: triangular solves on the device
        import torch
        return torch.cholesky_solve(Bm, Lc)
    from scipy.linalg import cho_solve
    return cho_solve((Lc, True), Bm)


def _dev(a):
    import array_api_compat
    return array_api_compat.device(a)


def _quadratic_refit(bp, S):
    loss, xp = bp.loss, bp.xp
    m = bp.mask_np(S)
    W = bp.zeros()
    wb = 0.0  # <W, B> accumulated: L(W*) = c - 1/2 <W*, B> at the refit
    rows_last = None
    gram = bp.gram
    if not gram:
        X, n = loss.X, loss.n_samples
        Y = loss.Y
    for rows, cols in _column_patterns(m):
        if rows.size == 0:
            continue
        if gram:
            ri = xp.asarray(rows, dtype=xp.int64, device=bp.device)
            ci = xp.asarray(cols, dtype=xp.int64, device=bp.device)
            A = xp.astype(loss.H[ri[:, None], ri[None, :]], xp.float64)
            Bm = xp.astype(loss.B[ri[:, None], ci[None, :]], xp.float64)
        else:
            Xr = X[:, rows]
            Xr = Xr.toarray() if hasattr(Xr, "toarray") else np.asarray(Xr)
            A = Xr.T @ Xr / n
            Bm = Xr.T @ Y[:, cols] / n
        if loss.ridge:
            d = np.full(rows.size, loss.ridge)
            d[rows >= bp.p] = 0.0  # the intercept row is never penalized
            A = A + xp.asarray(np.diag(d), dtype=A.dtype, device=_dev(A)) if gram else A + np.diag(d)
        sol = _spd_solve(xp, A, Bm)
        rows_last = rows
        wb += float(xp.sum(sol * Bm))
        if gram:
            W[ri[:, None], ci[None, :]] = xp.astype(sol, W.dtype)
        else:
            W[np.ix_(rows, cols)] = sol
    if gram:
        c = loss.c
    else:
        c = 0.5 * float(np.vdot(loss.Y, loss.Y)) / loss.n_samples
    if gram:
        return W, c - 0.5 * wb
    # X-form: the residual on the support is cheap and avoids the cancellation in c - <W,B>/2
    if loss.n_outputs == 1 and rows_last is not None:  # one pattern: reuse its columns
        Rres = (Xr @ sol).reshape(loss.Y.shape) - loss.Y
    else:
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

    def f(Wr):
        Z = Xr @ Wr
        return loss.raw_value(Z) + 0.5 * float(np.sum(pen * Wr * Wr)), Z

    val, Z = f(Wr)
    for it in range(max_iter):
        g = (Xr.T @ loss.raw_grad(Z) + pen * Wr).ravel()[free]
        if multi:
            P = np.exp(Z - logsumexp(Z, axis=1, keepdims=True))
            XP = Xr[:, :, None] * P[:, None, :]  # (n, m, K)
            Hm = -np.einsum("ija,ilb->jalb", XP, XP) / n
            diag = np.einsum("ij,ia,il->jal", Xr, P, Xr) / n
            mm = rows.size
            Hm[:, np.arange(bp.K), :, np.arange(bp.K)] += np.transpose(diag, (1, 0, 2))
            Hm = Hm.reshape(mm * bp.K, mm * bp.K)
        else:
            s = expit(Z[:, 0])
            Hm = (Xr * (s * (1 - s) / n)[:, None]).T @ Xr
        Hm = Hm + np.diag(pen.ravel())
        Hf = Hm[np.ix_(free, free)]
        step = -_spd_solve(_npxp(), Hf, g)
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


def _npxp():
    import array_api_compat
    return array_api_compat.array_namespace(np.zeros(1))
