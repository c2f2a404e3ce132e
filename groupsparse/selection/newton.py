"""Binary logistic budgeted selection on the Newton (IRLS) model: weighted splicing and model swaps.

At the exact refit b* of a support S the log-loss is replaced by its second-order model (the IRLS weighted least
squares problem of Newton's method)

    m(b) = L(b*) + g^T (b - b*) + 1/2 (b - b*)^T H (b - b*),   H = X^T diag(w) X + ridge I,  w_i = p_i (1 - p_i) / n,

and the search is done on m with every move checked by an exact refit:

* Splicing (abess, Zhu et al. PNAS 2020 / Zhang et al. 2023 for groups) with the *weighted* sacrifices of abess's
  GLM version: backward 1/2 b_g^T H_gg b_g for a selected group, forward 1/2 d_g^T H_gg^-1 d_g (d = -g) for an
  unselected one; exchange the C weakest for the C strongest, exact Newton refit (``refit.py``) of the new support,
  keep it if the loss drops, else halve C.  Where splicing stalls:
* model swaps: the change of m under every single swap (drop j in S, add a candidate c) at once, by the
  block-inverse downdate of the support (the formula of ``local_search.swap_polish`` on the weighted Gram):
      m(A \\ j) = m(A) + 1/2 b_j^T T_j b_j,   T_j = ((H_AA^-1)_jj)^-1,
      m(A \\ j + c) = m(A \\ j) - 1/2 d^T M^-1 d,   d = r_c + E_cj T_j b_j,   M = H_cc - E_c H_cA^T + E_cj T_j E_cj^T,
  E = H_:A H_AA^-1, r the model's negative gradient at its minimiser on A.  The ``n_verify`` best predicted swaps
  are refit exactly (whatever their predicted sign: the model is only a model) and the first that lowers the loss
  is taken; then splicing again.  So the result is a local optimum under the single swaps it refit: with
  ``n_candidates = G - k`` and ``n_verify >= k (G - k)``, under every single swap.

The candidates are the ``n_candidates`` (default max(100, 8k)) unselected groups of largest weighted forward
sacrifice.  Cost per round: one n x p gradient, the G weighted blocks (one batched product, O(n G s^2)), the model
swaps (O(n |A| (|A| + U s)) and k batched U x s x s solves), and at most log2(exchange) + 2 + n_verify refits;
at most ``max_iter`` rounds, and the search stops at ``select``'s ``max_time``.  For least squares the weights are
constant and the model is the loss itself: that search is ``local_search`` (exact Gram sacrifices and swaps).
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit

from .._validation import check_positive_int
from ..losses import Logistic

__all__ = ["newton_splicing"]

# the weighted blocks of every group are computed from one (G, s, n) copy of X's group columns up to this size
_X3_MAX_ENTRIES = 50_000_000


class _Weighted:
    """The IRLS curvature of a binary logistic loss at a point: weights, per-group blocks, cross products."""

    def __init__(self, bp):
        loss = bp.loss
        self.bp = bp
        self.X = loss.X  # n x n_rows (the intercept, if any, is its last column of ones)
        self.n = loss.n_samples
        self.sparse = hasattr(self.X, "tocsc")
        self.R = bp._rows_np  # (G, r) row ids padded with n_rows
        self.ridge = float(loss.ridge)
        self.valid = self.R < bp.n_rows
        G, r = self.R.shape
        self.X3 = None
        if not self.sparse and G * r * self.n <= _X3_MAX_ENTRIES:
            Xp = np.concatenate([np.asarray(self.X), np.zeros((self.n, 1))], axis=1)
            self.X3 = np.ascontiguousarray(np.transpose(Xp[:, self.R], (1, 2, 0)))  # (G, r, n)

    def weights(self, W):
        rows = np.flatnonzero(W[:, 0])
        z = np.asarray(self.X[:, rows] @ W[rows, 0]).ravel() if rows.size else np.zeros(self.n)
        P = expit(z)
        return P * (1.0 - P) / self.n

    def blocks(self, w):
        """(G, r, r): H_gg = X_g^T diag(w) X_g + ridge I per group (padding: identity)."""
        if self.X3 is not None:
            B = (self.X3 * w) @ np.swapaxes(self.X3, 1, 2)
        else:
            from ._base import _block_grams
            sw = np.sqrt(w)
            Xs = self.X.multiply(sw[:, None]).tocsc() if self.sparse else np.asarray(self.X) * sw[:, None]
            B = _block_grams(Xs, self.R)
        eye = np.eye(self.R.shape[1])
        v = self.valid.astype(float)
        return B + self.ridge * eye * v[:, :, None] + eye * (1.0 - v)[:, :, None]

    def columns(self, rows):
        Xr = self.X[:, rows]
        return Xr.toarray() if hasattr(Xr, "toarray") else np.asarray(Xr)


def _inv_blocks(B):
    """Batched inverse with a tiny relative jitter: collinear columns in a group still give finite scores."""
    r = B.shape[1]
    tr = np.trace(B, axis1=1, axis2=2)
    return np.linalg.inv(B + (1e-10 * tr / r + 1e-300)[:, None, None] * np.eye(r))


def _sacrifices(Wt, Hb, Hinv, W, D):
    """Weighted abess sacrifices: backward 1/2 b_g^T H_gg b_g and forward 1/2 d_g^T H_gg^-1 d_g, every group."""
    ext = lambda M: np.append(M[:, 0], 0.0)[Wt.R]  # (G, r) blocks, padding 0
    Bw, Bd = ext(W), ext(D)
    bwd = 0.5 * np.einsum("gi,gij,gj->g", Bw, Hb, Bw)
    fwd = 0.5 * np.einsum("gi,gij,gj->g", Bd, Hinv, Bd)
    return bwd, fwd


def _model_swaps(Wt, S, W, grad, w, Hb, cand):
    """Predicted change of the Newton model for every swap (j in S out, c in cand in): (|S|, |cand|) array."""
    bp = Wt.bp
    nr = bp.n_rows
    rows_of = [Wt.R[g][Wt.R[g] < nr] for g in S]
    A = np.concatenate(rows_of + [bp.fixed_rows])
    Rc = Wt.R[cand]
    crow = Rc[Rc < nr]
    XA = Wt.columns(A)
    XwA = XA * w[:, None]
    HAA = XA.T @ XwA
    HAA[np.diag_indices_from(HAA)] += np.where(A < bp.p, Wt.ridge, 0.0)
    HcA = Wt.columns(crow).T @ XwA
    try:
        Ginv = np.linalg.inv(HAA)
    except np.linalg.LinAlgError:
        return None
    gA, gc = grad[A, 0], grad[crow, 0]
    bA = W[A, 0]
    # model: 1/2 b^T H b - q^T b with q = H b* - g; its minimiser on A is b* - H_AA^-1 g_A (= b* at a converged refit)
    beta = bA - Ginv @ gA
    r_c = (HcA @ bA - gc) - HcA @ beta  # negative model gradient on the candidates' rows at that minimiser
    E = HcA @ Ginv
    pos = np.full(nr + 1, crow.size, dtype=np.int64)  # row -> position among the candidates' rows (pad -> 0 row)
    pos[crow] = np.arange(crow.size)
    P = pos[Rc]
    ext = lambda M: np.concatenate([M, np.zeros((1,) + M.shape[1:])], axis=0)[P]
    HgA, Eg, rg = ext(HcA), ext(E), ext(r_c[:, None])[..., 0]
    base = Hb[cand] - Eg @ np.swapaxes(HgA, 1, 2)
    out = np.full((S.size, cand.size), np.inf)
    off = 0
    for a, rj in enumerate(rows_of):
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
        out[a] = 0.5 * float(bj @ Tj @ bj) - 0.5 * np.einsum("gi,gi->g", dd, sol)
    return out


def newton_splicing(bp, k, *, init=None, exchange=5, max_iter=100, n_candidates=None, n_verify=10, tol=1e-12,
                    history=None):
    """IRLS-weighted splicing with model swaps (module docstring).  Returns (W, S, value, n_rounds)."""
    if not isinstance(bp.loss, Logistic):
        raise ValueError(f"loss: method='newton' is for binary Logistic, got {type(bp.loss).__name__} (least "
                         f"squares: 'local_search' swaps on the exact Gram; Multinomial: 'splicing')")
    n_verify = check_positive_int(n_verify, "n_verify")
    Wt = _Weighted(bp)
    G = bp.G
    if init is None:  # abess's initial support: largest weighted forward sacrifice at the intercept-only refit
        W, val = bp.refit(np.zeros(0, dtype=np.int64))
        w = Wt.weights(W)
        Hb = Wt.blocks(w)
        _, fwd = _sacrifices(Wt, Hb, _inv_blocks(Hb), W, -bp.grad(W))
        S = bp.top(fwd, k)
        W, val = bp.refit(S)
    else:
        S = np.unique(np.asarray(init, dtype=np.int64))
        if S.size < k:
            from .greedy import omp
            W, S, val, _ = omp(bp, k, init=S, score="sacrifice")
        else:
            W, val = bp.refit(S[:k])
            S = S[:k]
    S = np.sort(S)
    U = min(G - S.size, int(n_candidates or max(100, 8 * k)))
    cmax = max(0, min(int(exchange), S.size, G - S.size))
    rounds = 0
    for rounds in range(1, max_iter + 1):
        if cmax == 0 or bp.time_up():
            break
        grad = bp.grad(W)
        w = Wt.weights(W)
        Hb = Wt.blocks(w)
        bwd, fwd = _sacrifices(Wt, Hb, _inv_blocks(Hb), W, -grad)
        improved = False
        # splicing on the weighted sacrifices
        order_in = S[np.argsort(bwd[S], kind="stable")]
        C = cmax
        while C >= 1:
            add = bp.top(fwd, C, exclude=S)
            S2 = np.union1d(np.setdiff1d(S, order_in[:C]), add)
            W2, v2 = bp.refit(S2)
            if v2 < val - tol * abs(val):
                W, S, val, improved = W2, S2, v2, True
                break
            C //= 2
        if not improved and U > 0:  # model swaps, verified by exact refits
            cand = bp.top(fwd, U, exclude=S)
            delta = _model_swaps(Wt, S, W, grad, w, Hb, cand)
            if delta is not None:
                flat = np.argsort(delta, axis=None, kind="stable")[:n_verify]
                for f in flat:  # refit even a swap the model calls useless: the model is only a model
                    j, c = np.unravel_index(f, delta.shape)
                    if not np.isfinite(delta[j, c]):
                        break
                    S2 = np.union1d(np.setdiff1d(S, [S[j]]), [cand[c]])
                    W2, v2 = bp.refit(S2)
                    if v2 < val - tol * abs(val):
                        W, S, val, improved = W2, S2, v2, True
                        break
        if history is not None:
            history.append(val)
        if not improved:
            break
    return W, S, val, rounds
