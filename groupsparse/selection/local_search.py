"""Swap local search: abess-style splicing, then exact best-swap polishing.

* Splicing (Zhu, Wen, Zhang, Wang & Wang, PNAS 2020; group version Zhang et al. 2023; solver_anchors.md 2):
  exchange the C selected groups with the smallest backward sacrifice for the C unselected groups with the
  largest forward sacrifice, refit on the new support only, keep it if the loss drops; otherwise halve C.
  One refit per attempted exchange (never per candidate).
* Exact swap polishing (least squares with one output, X or Gram form): the exact loss of every single swap
  (drop j in S, add g outside) is computed at once from one column block H[:, A] of the Gram matrix and the
  inverse of H_AA, by the block-inverse downdate of the support:
      L(A \\ j) = L(A) + 1/2 beta_j^T T_j beta_j,             T_j = ((H_AA^-1)_jj)^-1
      L(A \\ j + g) = L(A \\ j) - 1/2 d^T M^-1 d,
      d = r_g + E_gj T_j beta_j,   M = Phi_g - E_g H_gA^T + E_gj T_j E_gj^T,   E = H_:A H_AA^-1,
  with r the negative gradient at the refit.  Cost per sweep: one n x |C| x |A| product (X form) and k batched
  |g| x |g| solves over the candidate groups C; the best improving swap is applied until none improves, so the
  result is a 1-swap local optimum over C ("exhaustive local search", Axiotis & Sviridenko 2020) -- over all
  groups when C is all of them (the default up to 200 groups; ``n_candidates`` otherwise).
"""
from __future__ import annotations

import numpy as np

from .._array import to_numpy

__all__ = ["splice", "swap_polish", "local_search", "abess_init"]


def abess_init(bp, k):
    """The k groups with the largest forward sacrifice at the empty-support refit (abess's initial support)."""
    W0, _ = bp.refit(np.zeros(0, dtype=np.int64))
    return bp.top(bp.forward(bp.grad(W0)), k)


def splice(bp, k, S, W, val, *, exchange=5, max_iter=100, tol=1e-12, history=None):
    """abess splicing from support S (refit W, value val).  Returns (W, S, val, n_iter)."""
    S = np.sort(np.asarray(S, dtype=np.int64))
    cmax = max(0, min(int(exchange), S.size, bp.G - S.size))
    it = 0
    for it in range(1, max_iter + 1):
        if cmax == 0 or bp.time_up():
            break
        bwd = bp.backward(W)[S]
        fwd = bp.forward(bp.grad(W))
        order_in = S[np.argsort(bwd, kind="stable")]
        improved = False
        C = cmax
        while C >= 1:
            add = bp.top(fwd, C, exclude=S)
            S2 = np.union1d(np.setdiff1d(S, order_in[:C]), add)
            W2, v2 = bp.refit(S2)
            if v2 < val - tol * abs(val):
                W, S, val, improved = W2, S2, v2, True
                break
            C //= 2
        if history is not None:
            history.append(val)
        if not improved:
            break
    return W, S, val, it


def can_polish(bp) -> bool:
    return bp.quadratic and bp.K == 1 and bp.rect


def _hcols(bp, A, rows):
    """H[rows, A] of the (ridge-free) Hessian and b[rows] = -grad(0)[rows], as numpy (one output)."""
    loss = bp.loss
    if bp.gram:
        xp = bp.xp
        ai = xp.asarray(A, dtype=xp.int64, device=bp.device)
        ri = xp.asarray(rows, dtype=xp.int64, device=bp.device)
        return (to_numpy(xp.astype(loss.H[ri[:, None], ai[None, :]], xp.float64)),
                to_numpy(xp.astype(loss.B[ri, 0], xp.float64)))
    X, n = loss.X, loss.n_samples
    if not hasattr(bp, "_b_lin"):
        bp._b_lin = np.asarray(X.T @ loss.Y[:, 0]).ravel() / n
    XA = X[:, A]
    XA = XA.toarray() if hasattr(XA, "toarray") else XA
    Xr = X[:, rows]
    Xr = Xr.toarray() if hasattr(Xr, "toarray") else Xr
    return np.asarray(Xr.T @ XA) / n, bp._b_lin[rows]


def swap_polish(bp, k, S, W, val, *, n_candidates=None, max_iter=50, tol=1e-12, history=None):
    """Apply the best exact single swap while it lowers the loss (module docstring).  (W, S, val, n_swaps).

    The groups that may enter are the ``n_candidates`` (default max(100, 8k)) unselected groups with the largest
    forward sacrifice at the current refit (abess's "important search" idea): the cost of a sweep is then
    independent of the number of groups.  ``n_candidates=bp.G`` checks the whole 1-swap neighbourhood."""
    S = np.sort(np.asarray(S, dtype=np.int64))
    Phi, _ = bp._phi_blocks()
    Phi = to_numpy(Phi)
    R = bp._rows_np  # (G, r) padded with n_rows
    nr = bp.n_rows
    ridge = bp.loss.ridge
    U = bp.G if n_candidates is None and bp.G <= 200 else int(n_candidates or max(100, 8 * k))
    swaps = 0
    for _ in range(max_iter):
        if S.size == 0 or S.size == bp.G or bp.time_up():
            break
        cand = bp.top(bp.forward(bp.grad(W)), min(U, bp.G - S.size), exclude=S)
        rows_of = [R[g][R[g] < nr] for g in S]
        A = np.concatenate(rows_of + [bp.fixed_rows])
        Rc = R[cand]
        crow = Rc[Rc < nr]
        need = np.concatenate([A, crow])
        HA, b = _hcols(bp, A, need)
        pos = np.full(nr + 1, need.size, dtype=np.int64)  # row -> position in ``need``; padding -> zero row
        pos[need] = np.arange(need.size)
        GA = HA[: A.size].copy()
        d = np.where(A < bp.p, ridge, 0.0)
        GA[np.diag_indices_from(GA)] += d
        try:
            Ginv = np.linalg.inv(GA)
        except np.linalg.LinAlgError:  # a rank-deficient support (n < its size): the swap algebra needs H_AA^-1
            break
        beta = Ginv @ b[: A.size]
        r = b - HA @ beta  # negative gradient (outside A)
        E = HA @ Ginv
        ext = lambda M: np.concatenate([M, np.zeros((1,) + M.shape[1:])], axis=0)
        P = pos[Rc]
        HgA, Eg, rg = ext(HA)[P], ext(E)[P], ext(r[:, None])[P][..., 0]
        base = Phi[cand] - Eg @ np.swapaxes(HgA, 1, 2)
        best = (val, None, None)
        off = 0
        for j, rj in zip(S, rows_of):
            idx = np.arange(off, off + rj.size)
            off += rj.size
            try:
                Tj = np.linalg.inv(Ginv[np.ix_(idx, idx)])
            except np.linalg.LinAlgError:
                continue
            bj = beta[idx]
            Ej = Eg[:, :, idx]
            M = base + (Ej @ Tj) @ np.swapaxes(Ej, 1, 2)
            dd = rg + Ej @ (Tj @ bj)
            try:
                sol = np.linalg.solve(M, dd[..., None])[..., 0]
            except np.linalg.LinAlgError:
                sol = np.einsum("gij,gj->gi", np.linalg.pinv(M), dd)
            gain = 0.5 * np.einsum("gi,gi->g", dd, sol)
            c = int(np.argmax(gain))
            new = val + 0.5 * float(bj @ Tj @ bj) - gain[c]
            if new < best[0]:
                best = (new, j, int(cand[c]))
        if best[1] is None or not best[0] < val - tol * abs(val):
            break
        S2 = np.union1d(np.setdiff1d(S, [best[1]]), [best[2]])
        W2, v2 = bp.refit(S2)
        if not v2 < val:  # numerical safety: the predicted value must be realised
            break
        W, S, val = W2, S2, v2
        swaps += 1
        if history is not None:
            history.append(val)
    return W, S, val, swaps


def local_search(bp, k, *, init=None, exchange=5, max_iter=100, polish=True, n_candidates=None, history=None):
    """Splicing from ``init`` (default: abess's initial support), then exact swap polishing where available,
    alternating until neither improves.  Returns (W, S, value, n_iter)."""
    S = abess_init(bp, k) if init is None else np.unique(np.asarray(init, dtype=np.int64))
    if S.size < k:  # complete a short warm start greedily
        from .greedy import omp
        W, S, val, _ = omp(bp, k, init=S, score="sacrifice")
    else:
        S = S[:k] if S.size > k else S
        W, val = bp.refit(S)
    total = 0
    for _ in range(20):
        W, S, val, n1 = splice(bp, k, S, W, val, exchange=exchange, max_iter=max_iter, history=history)
        total += n1
        if not (polish and can_polish(bp)):
            break
        W, S, val, n2 = swap_polish(bp, k, S, W, val, n_candidates=n_candidates, history=history)
        total += n2
        if n2 == 0 or bp.time_up():
            break
    return W, S, val, total
