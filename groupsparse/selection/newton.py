"""Logistic budgeted selection (binary and multinomial) on the Newton (IRLS) model: weighted splicing and model swaps.

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

Multinomial (K classes, W of shape (rows, K); a feature group keeps all K class coefficients of its features).  The
Hessian is H = (1/n) sum_i x_i x_i^T (x) Omega_i with Omega_i = diag(P_i) - P_i P_i^T (P_i the softmax of row i),
and Omega_i 1 = 0: softmax is invariant to a common shift of the K scores, L(W + v 1^T) = L(W) for every v, so
every group block H_gg is singular (its null space holds u (x) 1 for all u) and the swap algebra above, which
inverts H_AA and H_gg, has no model to work with.  We remove the invariance instead of regularising it away: with
Q (K x (K-1)) an orthonormal basis of 1^perp (Q^T 1 = 0, Q^T Q = I), every W is W Q Q^T + (W 1/K) 1^T and the loss
only sees the first part, so the coefficients are taken as W = C Q^T with C of shape (rows, K-1):

    L(C Q^T) = L(W Q Q^T) = L(W),   grad_C = grad_W Q,   H_C = (1/n) sum_i x_i x_i^T (x) Q^T Omega_i Q,

and ridge/2 ||W||^2 = ridge/2 ||C||^2 on such W (Q orthonormal: the ridge stays isotropic; a reference class,
C = the first K-1 columns of W with the last fixed at 0, would penalise another representative than the refit's).
Q^T Omega_i Q is positive definite when every P_ia > 0 (Omega_i's only null vector is 1), so H_C is (for columns of
full rank) the nonsingular model that the binary formulas need, with the (row, class) coordinates of C in place of
the rows of b, a group's block of size |rows_g| (K-1).  Nothing is lost: the minimiser over W of L plus any ridge
> 0 (the refit's tiny ``refit_ridge``) has rows summing to 0 (the ridge's gradient cancels the loss's, whose rows
sum to 0), i.e. it is C* Q^T; the exact multinomial refits of ``refit.py`` run Newton in the same coordinates.
Binary logistic is the case K = 1, Q = [1], Omega_i = p_i (1 - p_i).  A verified swap's refit starts at the
model's minimiser on the new support (the first Newton iterate from b*).

The candidates are the ``n_candidates`` (default max(100, 8k)) unselected groups of largest weighted forward
sacrifice.  Cost per round (q = K - 1 classes for multinomial, 1 for binary): one n x p gradient, the G weighted
blocks (q^2 batched products, O(n G s^2 q^2)), the model swaps (O(n |A| q^2 (|A| + U s)) and k batched
U x sq x sq solves), and at most log2(exchange) + 2 + n_verify refits; at most ``max_iter`` rounds, and the search
stops at ``select``'s ``max_time``.  For least squares the weights are constant and the model is the loss itself:
that search is ``local_search`` (exact Gram sacrifices and swaps).
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit

from .._validation import check_positive_int
from ..losses import Logistic, Multinomial, softmax_rows
from .refit import softmax_basis

__all__ = ["newton_splicing"]

# the weighted blocks of every group are computed from one (G, s, n) copy of X's group columns up to this size
_X3_MAX_ENTRIES = 50_000_000


class _Weighted:
    """The IRLS curvature of a binary or multinomial logistic loss at a point, in the coordinates C = W Q (module
    docstring): per-sample weights (n, q, q), per-group blocks, cross products.  A coordinate is (row, class of
    C), flattened row-major, so a group's coordinates are contiguous."""

    def __init__(self, bp):
        loss = bp.loss
        self.bp = bp
        self.X = loss.X  # n x n_rows (the intercept, if any, is its last column of ones)
        self.n = loss.n_samples
        self.sparse = hasattr(self.X, "tocsc")
        self.R = bp._rows_np  # (G, r) row ids padded with n_rows
        self.ridge = float(loss.ridge)
        self.valid = self.R < bp.n_rows
        self.multi = bp.K > 1
        self.Q = softmax_basis(bp.K) if self.multi else np.ones((1, 1))  # (K, q), Q^T 1 = 0
        self.q = self.Q.shape[1]
        G, r = self.R.shape
        self.X3 = None
        if not self.sparse and G * r * self.n <= _X3_MAX_ENTRIES:
            Xp = np.concatenate([np.asarray(self.X), np.zeros((self.n, 1))], axis=1)
            self.X3 = np.ascontiguousarray(np.transpose(Xp[:, self.R], (1, 2, 0)))  # (G, r, n)

    def reduce(self, M):
        """(n_rows, K) coefficients or gradient -> its (n_rows, q) coordinates M Q."""
        return M @ self.Q

    def group_vecs(self, M):
        """(G, r q) blocks of an (n_rows, q) coordinate array (padding rows read 0)."""
        ext = np.concatenate([M, np.zeros((1, self.q))], axis=0)
        return ext[self.R].reshape(self.R.shape[0], -1)

    def weights(self, W):
        """(n, q, q): Q^T Omega_i Q / n at W (binary: p_i (1 - p_i) / n)."""
        rows = np.flatnonzero(np.any(W != 0, axis=1))
        Z = np.asarray(self.X[:, rows] @ W[rows]) if rows.size else np.zeros((self.n, self.bp.K))
        if not self.multi:
            P = expit(Z[:, 0])
            return (P * (1.0 - P) / self.n)[:, None, None]
        P = softmax_rows(Z)
        QP = P @ self.Q
        return (np.einsum("ia,ab,ac->ibc", P, self.Q, self.Q) - QP[:, :, None] * QP[:, None, :]) / self.n

    def cross(self, XA, XB, w):
        """H_AB (|A| q, |B| q) for the dense columns XA (n, |A|), XB (n, |B|), without the ridge."""
        q = self.q
        out = np.empty((XA.shape[1], q, XB.shape[1], q))
        for b in range(q):
            for c in range(q):
                out[:, b, :, c] = XA.T @ (XB * w[:, b, c][:, None])
        return out.reshape(XA.shape[1] * q, XB.shape[1] * q)

    def blocks(self, w):
        """(G, r q, r q): H_gg = sum_i x_ig x_ig^T (x) w_i + ridge I per group (padding coordinates: identity)."""
        G, r = self.R.shape
        q = self.q
        if q == 1 and self.X3 is None:  # scalar weights >= 0: the Gram blocks of X diag(sqrt(w)) (sparse stays sparse)
            from ._base import _block_grams
            sw = np.sqrt(w[:, 0, 0])
            Xs = self.X.multiply(sw[:, None]).tocsc() if self.sparse else np.asarray(self.X) * sw[:, None]
            B = _block_grams(Xs, self.R)
        else:
            B = np.empty((G, r, q, r, q))
            step = G if self.X3 is not None else max(1, _X3_MAX_ENTRIES // (10 * r * self.n))
            for lo in range(0, G, step):  # chunks of groups' columns, densified (q > 1 and no cached X3)
                X3 = self.X3[lo:lo + step] if self.X3 is not None else self._x3(self.R[lo:lo + step])
                for b in range(q):
                    for c in range(b, q):
                        B[lo:lo + step, :, b, :, c] = (X3 * w[:, b, c]) @ np.swapaxes(X3, 1, 2)
                        if c != b:  # H is symmetric: the (c, b) class block is the transpose
                            B[lo:lo + step, :, c, :, b] = np.swapaxes(B[lo:lo + step, :, b, :, c], 1, 2)
            B = B.reshape(G, r * q, r * q)
        eye = np.eye(r * q)
        v = np.repeat(self.valid, q, axis=1).astype(float)
        return B + self.ridge * eye * v[:, :, None] + eye * (1.0 - v)[:, :, None]

    def _x3(self, R):
        n = self.n
        cols = self.columns(np.minimum(R.ravel(), self.bp.n_rows - 1)) * (R.ravel() < self.bp.n_rows)
        return np.ascontiguousarray(np.transpose(cols.reshape(n, *R.shape), (1, 2, 0)))

    def columns(self, rows):
        Xr = self.X[:, rows]
        return Xr.toarray() if hasattr(Xr, "toarray") else np.asarray(Xr)


def _inv_blocks(B):
    """Batched inverse with a tiny relative jitter: collinear columns in a group still give finite scores."""
    r = B.shape[1]
    tr = np.trace(B, axis1=1, axis2=2)
    return np.linalg.inv(B + (1e-10 * tr / r + 1e-300)[:, None, None] * np.eye(r))


def _sacrifices(Wt, Hb, Hinv, W, D):
    """Weighted abess sacrifices: backward 1/2 b_g^T H_gg b_g and forward 1/2 d_g^T H_gg^-1 d_g, every group (W, D
    in the loss's (n_rows, K) layout)."""
    Bw, Bd = Wt.group_vecs(Wt.reduce(W)), Wt.group_vecs(Wt.reduce(D))
    bwd = 0.5 * np.einsum("gi,gij,gj->g", Bw, Hb, Bw)
    fwd = 0.5 * np.einsum("gi,gij,gj->g", Bd, Hinv, Bd)
    return bwd, fwd


def _model_swaps(Wt, S, W, grad, w, Hb, cand):
    """Predicted change of the Newton model for every swap (j in S out, c in cand in): (|S|, |cand|) array, and
    ``start(a, b)``: the model's minimiser on S - S[a] + cand[b] in the loss's (n_rows, K) layout -- the first Newton
    iterate of that support's refit from b*, where its exact refit starts (None when H_AA is singular)."""
    bp = Wt.bp
    nr, q = bp.n_rows, Wt.q
    rows_of = [Wt.R[g][Wt.R[g] < nr] for g in S]
    A = np.concatenate(rows_of + [bp.fixed_rows])
    Rc = Wt.R[cand]
    crow = Rc[Rc < nr]
    XA = Wt.columns(A)
    HAA = Wt.cross(XA, XA, w)
    HAA[np.diag_indices_from(HAA)] += np.repeat(np.where(A < bp.p, Wt.ridge, 0.0), q)
    HcA = Wt.cross(Wt.columns(crow), XA, w)
    try:
        Ginv = np.linalg.inv(HAA)
    except np.linalg.LinAlgError:
        return None, None
    C, Gc = Wt.reduce(W), Wt.reduce(grad)
    gA, gc = Gc[A].ravel(), Gc[crow].ravel()
    bA = C[A].ravel()
    # model: 1/2 b^T H b - q^T b with q = H b* - g; its minimiser on A is b* - H_AA^-1 g_A (= b* at a converged refit)
    beta = bA - Ginv @ gA
    r_c = (HcA @ bA - gc) - HcA @ beta  # negative model gradient on the candidates' coordinates at that minimiser
    E = HcA @ Ginv
    pad = crow.size * q  # row -> its q coordinates among the candidates' (padding -> one appended zero row)
    pos = np.full(nr + 1, -1, dtype=np.int64)
    pos[crow] = np.arange(crow.size)
    Pr = pos[Rc]
    P = np.where(Pr[:, :, None] >= 0, Pr[:, :, None] * q + np.arange(q), pad).reshape(cand.size, -1)
    ext = lambda M: np.concatenate([M, np.zeros((1,) + M.shape[1:])], axis=0)[P]
    HgA, Eg, rg = ext(HcA), ext(E), ext(r_c[:, None])[..., 0]
    base = Hb[cand] - Eg @ np.swapaxes(HgA, 1, 2)
    out = np.full((S.size, cand.size), np.inf)
    off = 0
    for a, rj in enumerate(rows_of):
        idx = np.arange(off, off + rj.size * q)
        off += rj.size * q
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
    qA, qc = HAA @ bA - gA, HcA @ bA - gc  # the model's linear term on A's and the candidates' coordinates
    offs = np.concatenate([[0], np.cumsum([rj.size * q for rj in rows_of])])
    coordA = (A[:, None] * q + np.arange(q)).ravel()  # coordinate -> (row, class of C) flat, row-major
    coordc = (crow[:, None] * q + np.arange(q)).ravel()

    def start(a, b):
        keep = np.r_[0:offs[a], offs[a + 1]:A.size * q]
        cc = P[b][P[b] < pad]
        Hcb = HcA[np.ix_(cc, keep)]
        HTT = np.block([[HAA[np.ix_(keep, keep)], Hcb.T], [Hcb, Hb[cand[b]][: cc.size, : cc.size]]])
        try:
            sol = np.linalg.solve(HTT, np.concatenate([qA[keep], qc[cc]]))
        except np.linalg.LinAlgError:
            return W
        Cn = np.zeros(nr * q)
        Cn[np.concatenate([coordA[keep], coordc[cc]])] = sol
        return Cn.reshape(nr, q) @ Wt.Q.T

    return out, start


def unsupported(bp):
    """Why 'newton' cannot search ``bp`` (a ValueError naming the argument), or None when it can."""
    if not isinstance(bp.loss, (Logistic, Multinomial)):
        return ValueError(f"loss: method='newton' is for Logistic or Multinomial, got {type(bp.loss).__name__} "
                          f"(least squares: 'local_search' swaps on the exact Gram)")
    if bp.K > 1 and not (bp.rect and bp._cols_np.shape[1] == bp.K and np.all(bp._cols_np == np.arange(bp.K))):
        return ValueError(f"groups: method='newton' on Multinomial takes feature groups (each group keeps all "
                          f"{bp.K} class coefficients of its features), not groups of single class coefficients")
    return None


def newton_splicing(bp, k, *, init=None, exchange=5, max_iter=100, n_candidates=None, n_verify=10, tol=1e-12,
                    history=None):
    """IRLS-weighted splicing with model swaps (module docstring).  Returns (W, S, value, n_rounds)."""
    err = unsupported(bp)
    if err is not None:
        raise err
    n_verify = check_positive_int(n_verify, "n_verify")
    Wt = _Weighted(bp)
    G = bp.G
    if init is None:  # abess's initial support: largest weighted forward sacrifice at the intercept-only refit
        W, val = bp.refit(np.zeros(0, dtype=np.int64))
        w = Wt.weights(W)
        Hb = Wt.blocks(w)
        _, fwd = _sacrifices(Wt, Hb, _inv_blocks(Hb), W, -bp.grad(W))
        S = bp.top(fwd, k)
        W, val = bp.refit(S, W)
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
            W2, v2 = bp.refit(S2, W)
            if v2 < val - tol * abs(val):
                W, S, val, improved = W2, S2, v2, True
                break
            C //= 2
        if not improved and U > 0:  # model swaps, verified by exact refits
            cand = bp.top(fwd, U, exclude=S)
            delta, start = _model_swaps(Wt, S, W, grad, w, Hb, cand)
            if delta is not None:
                flat = np.argsort(delta, axis=None, kind="stable")[:n_verify]
                for f in flat:  # refit even a swap the model calls useless: the model is only a model
                    j, c = np.unravel_index(f, delta.shape)
                    if not np.isfinite(delta[j, c]):
                        break
                    S2 = np.union1d(np.setdiff1d(S, [S[j]]), [cand[c]])
                    W2, v2 = bp.refit(S2, start(j, c))
                    if v2 < val - tol * abs(val):
                        W, S, val, improved = W2, S2, v2, True
                        break
        if history is not None:
            history.append(val)
        if not improved:
            break
    return W, S, val, rounds
