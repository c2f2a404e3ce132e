"""Losses (datafits).  Coefficients form a (p, K) matrix W flattened row-major (index j*K + k), K = 1 for a single
output, so one ``Groups`` over p*K indices can tie a feature across classes or outputs.

- ``LeastSquares(X, y)``: (1/2n) ||Y - X W||_F^2, as skglm and glmnet scale it; y of shape (n,) or (n, K).
- ``Logistic(X, y)``: mean binary log-loss, labels in {0, 1}.
- ``Multinomial(X, y)``: mean multinomial log-loss over K classes (labels 0..K-1), W of shape (p, K).
- ``GramLeastSquares(H, B)``: 1/2 tr(W^T H W) - tr(W^T B) + c, the form layer-wise pruning produces; works on
  numpy arrays and torch tensors alike (array API).

Every loss has an optional ridge term (ridge/2)||W||^2; GLM losses take ``fit_intercept`` (an unpenalized
intercept per output).  X may be dense or scipy.sparse.  The solver talks to a loss through the small
row-block interface at the bottom of each class (``init_state``, ``grad_rows``, ``update_state``, ...).
"""
from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from scipy.special import expit, log_expit, xlogy

from ._validation import check_X, check_bool, check_finite_array, check_nonneg, check_positive_int, check_real

__all__ = ["Loss", "LeastSquares", "Logistic", "Multinomial", "GramLeastSquares"]


def _spectral_norm_sq(A) -> float:
    """Largest eigenvalue of A^T A for a dense or sparse block with few columns."""
    if sp.issparse(A):
        G = (A.T @ A).toarray()
    else:
        G = A.T @ A
    G = np.atleast_2d(G)
    if G.shape[0] == 1:
        return float(G[0, 0])
    return float(np.linalg.eigvalsh(G)[-1])


_CACHES = ("_block_lipschitz", "_col_blocks")  # per-loss caches: derived losses (restrict_rows) start without them


def _device(a):
    import array_api_compat
    return array_api_compat.device(a)


def _check_psd(xp, H):
    """H symmetric (to rounding relative to its size) and positive semidefinite: a named ValueError otherwise.
    PSD test: Cholesky of H + delta I with delta = max(1e-9, 10 p eps) max|H| (so singular Grams from few samples
    pass with their rounding, while an eigenvalue below -delta, e.g. an indefinite or negated H, fails)."""
    p = H.shape[0]
    if p == 0:
        return
    eps = float(xp.finfo(H.dtype).eps)  # float32 Grams (the bridge's) round 1e9 times coarser than float64
    Hf = xp.astype(H, xp.float64)
    scale = float(xp.max(xp.abs(Hf)))
    asym = float(xp.max(xp.abs(Hf - xp.permute_dims(Hf, (1, 0)))))
    if asym > 1e3 * eps * scale:
        raise ValueError(f"H: must be symmetric, got max |H - H^T| = {asym:.3g} (max |H| = {scale:.3g})")
    delta = max(1e-9, 10 * p * eps) * scale
    Hs = 0.5 * (Hf + xp.permute_dims(Hf, (1, 0))) + delta * xp.eye(p, dtype=xp.float64, device=_device(H))
    try:
        Lc = xp.linalg.cholesky(Hs)
        ok = bool(xp.all(xp.isfinite(Lc)))
    except Exception:  # numpy LinAlgError / torch's linalg error
        ok = False
    if not ok:
        raise ValueError("H: must be positive semidefinite (a Gram matrix X^T X / n); it has a negative eigenvalue")


def psd_solve(xp, A, Bm):
    """Min-norm solution of A X = Bm for a symmetric PSD float64 A in namespace xp (numpy or torch).

    Cholesky when its pivots show A well conditioned (pivot ratio above 1e-6, i.e. cond ~< 1e12 at the
    pivots), else an eigendecomposition pseudo-inverse that drops eigenvalues below n eps max eig: never a jittered
    solve, which moves the answer off the optimum."""
    n = A.shape[0]
    if n == 0:
        return Bm
    if Bm.ndim == 1:  # one right-hand side: solved as a column (the eigh branch below broadcasts by column)
        return xp.reshape(psd_solve(xp, A, xp.reshape(Bm, (n, 1))), (n,))
    try:
        Lc = xp.linalg.cholesky(A)
        d = xp.abs(xp.linalg.diagonal(Lc))
        ok = bool(xp.all(xp.isfinite(Lc))) and float(xp.min(d)) > 1e-6 * float(xp.max(d))
    except Exception:  # numpy LinAlgError / torch's linalg error
        ok = False
    if ok:
        if hasattr(Lc, "detach"):  # torch: triangular solves on the device
            import torch
            return torch.cholesky_solve(Bm, Lc)
        from scipy.linalg import cho_solve
        return cho_solve((Lc, True), Bm)
    w, V = xp.linalg.eigh(A)
    keep = w > n * np.finfo(float).eps * float(xp.max(xp.abs(w)))
    inv = xp.where(keep, 1.0 / xp.where(keep, w, 1.0), 0.0)
    return V @ (inv[:, None] * (xp.permute_dims(V, (1, 0)) @ Bm))


def _logsumexp_rows(Z):
    """log(sum(exp(Z), axis=1)), stable; plain numpy (scipy's logsumexp costs ~4x more per call at small K, and the
    multinomial refits call it a few times per Newton step)."""
    m = np.max(Z, axis=1)
    return m + np.log(np.sum(np.exp(Z - m[:, None]), axis=1))


def softmax_rows(Z):
    """Row-wise softmax of the (n, K) scores Z (the class probabilities of ``Multinomial``), stable."""
    return np.exp(Z - _logsumexp_rows(Z)[:, None])


def is_positive_definite(A) -> bool:
    """Whether the symmetric float matrix A (numpy array or torch tensor, on its device) is numerically positive
    definite: its Cholesky factorization succeeds with finite pivots.  (The bridge's check of an undamped
    calibration Gram; ``psd_solve`` handles the singular case itself.)"""
    if hasattr(A, "detach"):
        import torch
        L, info = torch.linalg.cholesky_ex(A)
        return int(info) == 0 and bool(torch.isfinite(L).all())
    try:
        return bool(np.all(np.isfinite(np.linalg.cholesky(A))))
    except np.linalg.LinAlgError:
        return False


class Loss:
    """Common interface.  ``n_features`` p, ``n_outputs`` K, ``n_coef`` = p*K (+K with an intercept)."""
    n_features: int
    n_outputs: int
    ridge: float = 0.0
    fit_intercept: bool = False
    has_dual = False

    @property
    def n_coef(self) -> int:
        return self.n_features * self.n_outputs

    @property
    def n_rows(self) -> int:
        """Rows of the internal coefficient matrix (features, plus one intercept row)."""
        return self.n_features + int(self.fit_intercept)

    def block_lipschitz_cache(self) -> dict:
        """(first row, stop row) -> Lipschitz constant of that contiguous row block, for this loss only: a path
        builds one Problem per lambda over the same loss and reuses them."""
        return self.__dict__.setdefault("_block_lipschitz", {})

    def _as_matrix(self, coef):
        W = np.asarray(coef, dtype=float)
        if W.size != self.n_rows * self.n_outputs:
            raise ValueError(f"coef: expected {self.n_rows * self.n_outputs} coefficients, got {W.size}")
        return W.reshape(self.n_rows, self.n_outputs)

    # Convenience on flat vectors (internal layout: features then intercept row)
    def value(self, coef) -> float:
        W = self._as_matrix(coef)
        return self.state_value(self.init_state(W), W)

    def gradient(self, coef) -> np.ndarray:
        W = self._as_matrix(coef)
        return self.full_grad(self.init_state(W), W).ravel()


def _check_ridge(ridge):
    return check_nonneg(ridge, "ridge")  # names 'abc', None, True or a list too


class _GLM(Loss):
    """A datafit F(X W) + ridge/2 ||W||^2 with F a mean over samples.  Subclasses define the link pieces."""
    has_dual = True
    curvature = 1.0  # sup of F's per-sample Hessian (times n): bounds the Lipschitz constants

    def __init__(self, X, y, fit_intercept=False, ridge=0.0):
        X = check_X(X)
        self.n_samples, self.n_features = X.shape
        self.Y = self._check_y(y, self.n_samples)
        self.n_outputs = self.Y.shape[1]
        self.fit_intercept = check_bool(fit_intercept, "fit_intercept")  # 'no' is not False
        self.ridge = _check_ridge(ridge)
        if self.fit_intercept:
            ones = np.ones((self.n_samples, 1))
            X = sp.hstack([X, ones], format="csc") if sp.issparse(X) else np.hstack([X, ones])
        if sp.issparse(X):
            X = X.tocsc()
        elif not X.flags.f_contiguous:
            X = np.asfortranarray(X)  # column blocks X[:, a:b] become contiguous views
        self.X = X

    # ----- link pieces (per subclass) -----
    def _check_y(self, y, n):
        raise NotImplementedError

    def raw_value(self, Z) -> float:
        raise NotImplementedError

    def raw_grad(self, Z):
        """dF/dZ, shape (n, K)."""
        raise NotImplementedError

    def conjugate(self, V) -> float:
        """F*(V) for V = s * raw_grad(Z), 0 <= s <= 1 (the dual points the solver builds)."""
        raise NotImplementedError

    # ----- row-block interface for the solvers -----
    def init_state(self, W):
        if not np.any(W):
            return np.zeros((self.n_samples, self.n_outputs))
        return np.asarray(self.X @ W, dtype=float).reshape(self.n_samples, self.n_outputs)

    def state_value(self, Z, W) -> float:
        v = self.raw_value(Z)
        if self.ridge:
            v += 0.5 * self.ridge * float(np.sum(W[: self.n_features] ** 2))
        return v

    def _ridge_rows(self, W, rows):
        if not self.ridge:
            return 0.0
        R = self.ridge * W[rows]
        if self.fit_intercept:  # the intercept row is never penalized
            ar = np.arange(self.n_rows)[rows]
            R[np.atleast_1d(ar) == self.n_features] = 0.0
        return R

    def grad_rows(self, Z, W, rows):
        g = self._cols(rows).T @ self.raw_grad(Z)
        g = np.asarray(g).reshape(-1, self.n_outputs)
        return g + self._ridge_rows(W, rows)

    def update_state(self, Z, rows, dW):
        Z += np.asarray(self._cols(rows) @ dW).reshape(Z.shape)

    def _cols(self, rows):
        """X[:, rows]; a sparse X's contiguous column blocks are sliced once and kept (slicing a CSC matrix costs
        more than the product with the block in a coordinate-descent epoch)."""
        if not (isinstance(rows, slice) and sp.issparse(self.X)):
            return self.X[:, rows]
        cache = self.__dict__.setdefault("_col_blocks", {})
        key = (rows.start, rows.stop)
        blk = cache.get(key)
        if blk is None:
            blk = cache[key] = self.X[:, rows]
        return blk

    def full_grad(self, Z, W):
        return self.grad_rows(Z, W, slice(None))

    def lipschitz_rows(self, rows) -> float:
        return self.curvature * _spectral_norm_sq(self.X[:, rows]) / self.n_samples + self.ridge

    def lipschitz_blocks(self, starts, size) -> np.ndarray:
        """Lipschitz constants of many equal-size contiguous row blocks at once (one batched eigvalsh)."""
        starts = np.asarray(starts)
        cols = (starts[:, None] + np.arange(size)).ravel()
        consecutive = bool(np.all(np.diff(cols) == 1))
        Xb = self.X[:, cols[0]:cols[-1] + 1] if consecutive else self.X[:, cols]
        Xb = Xb.toarray() if sp.issparse(Xb) else Xb
        Xb = Xb.reshape(self.n_samples, len(starts), size)
        Gm = np.einsum("nga,ngb->gab", Xb, Xb)
        return self.curvature * np.linalg.eigvalsh(Gm)[:, -1] / self.n_samples + self.ridge

    def max_coordinate_lipschitz(self) -> float:
        """Largest one-coefficient Lipschitz constant over the features (intercept column excluded)."""
        return self.curvature * float(np.max(self.column_norms()[: self.n_features])) ** 2 / self.n_samples

    def column_norms(self) -> np.ndarray:
        if sp.issparse(self.X):
            return np.sqrt(np.asarray(self.X.multiply(self.X).sum(axis=0)).ravel())
        return np.sqrt(np.einsum("ij,ij->j", self.X, self.X))

    def global_lipschitz(self) -> float:
        if sp.issparse(self.X) and min(self.X.shape) <= 64:  # svds needs k < min(shape); small: exact
            A = self.X.T @ self.X if self.X.shape[1] <= self.X.shape[0] else self.X @ self.X.T
            s = math.sqrt(max(float(np.linalg.eigvalsh(A.toarray())[-1]), 0.0))
        elif sp.issparse(self.X):
            from scipy.sparse.linalg import svds
            s = svds(self.X, k=1, return_singular_vectors=False)[0]
        else:
            s = np.linalg.norm(self.X, 2)
        return self.curvature * s * s / self.n_samples + self.ridge

    def restrict_rows(self, rows):
        """The same loss on a subset of coefficient rows (others fixed at 0); keeps the intercept if present."""
        new = self.__class__.__new__(self.__class__)
        # caches computed for this loss's columns (block Lipschitz constants) must not follow into the new loss
        new.__dict__.update({k: v for k, v in self.__dict__.items() if k not in _CACHES})
        rows = np.asarray(rows)
        new.X = self.X[:, rows]
        if not sp.issparse(new.X):
            new.X = np.asfortranarray(new.X)
        nf = int(np.sum(rows < self.n_features))
        new.n_features = nf
        new.fit_intercept = bool(self.fit_intercept and np.any(rows == self.n_features))
        return new

    def dual_value(self, Z, W, s) -> float:
        """Fenchel dual value at the point s * (raw_grad(Z), ridge W) (feasible when s passes the penalty's test)."""
        V = s * self.raw_grad(Z)
        d = -self.conjugate(V)
        if self.ridge:
            d -= 0.5 * s * s * self.ridge * float(np.sum(W[: self.n_features] ** 2))
        return d

    dual_modulus = 1.0  # strong concavity of the dual in V, times n (for gap-safe radii)

    def intercept_hessian(self, Z):
        """Hessian of the loss in the intercept (K x K); subclasses override."""
        return np.eye(self.n_outputs)

    def profile_intercept(self, Z, W, tol=1e-15, max_newton=50):
        """Set the intercept to its exact optimum for the current coefficients (Newton), in place.

        Afterwards the column sums of dF/dZ vanish, which is what makes s * dF/dZ a feasible dual point."""
        if not self.fit_intercept:
            return
        for _ in range(max_newton):
            g = self.raw_grad(Z).sum(axis=0)
            if np.max(np.abs(g)) <= tol:
                break
            db = -np.linalg.lstsq(self.intercept_hessian(Z), g, rcond=None)[0]
            W[-1] += db
            Z += db


class LeastSquares(_GLM):
    """(1/2n) ||Y - X W||^2 (+ ridge/2 ||W||^2).  y: (n,) or (n, K) real.  X, y are held as numpy / scipy arrays:
    torch tensors are copied to the host (float64); for a problem that stays on its device use the Gram form,
    ``GramLeastSquares`` (``solve``, ``solve_path`` and ``select`` run on it natively)."""
    curvature = 1.0
    dual_modulus = 1.0

    def _check_y(self, y, n):
        Y = check_finite_array(y, "y", ndim=(1, 2))
        Y = Y.reshape(Y.shape[0], -1)
        if Y.shape[0] != n:
            raise ValueError(f"y: has {Y.shape[0]} samples but X has {n} rows")
        return Y

    # The state is the residual R = X W - Y rather than X W: saves a subtraction per block update.
    def init_state(self, W):
        if not np.any(W):
            return -self.Y.copy()
        return np.asarray(self.X @ W, dtype=float).reshape(self.Y.shape) - self.Y

    def raw_value(self, R):
        return 0.5 * float(np.vdot(R, R)) / self.n_samples

    def raw_grad(self, R):
        return R / self.n_samples

    def grad_rows(self, R, W, rows):
        g = np.asarray(self._cols(rows).T @ R).reshape(-1, self.n_outputs) / self.n_samples
        return g + self._ridge_rows(W, rows) if self.ridge else g

    def conjugate(self, V):
        # F(Z) = 1/(2n)||Z - Y||^2  ->  F*(V) = <V, Y> + n/2 ||V||^2
        return float(np.vdot(V, self.Y)) + 0.5 * self.n_samples * float(np.vdot(V, V))

    def solve_rows(self, rows, cols=None):
        """Exact minimiser over the coefficient rows ``rows`` (the others at 0), for the outputs ``cols`` (default
        all), of the least-squares loss: min-norm solution by a complete orthogonal factorisation (LAPACK gelsy),
        never the normal equations, so it stays the optimum at cond(X) ~ 1e12.  The ridge enters as rows
        sqrt(n ridge) I.  With the intercept among ``rows`` the columns are centred, so the minimum norm is over the
        features alone."""
        rows = np.asarray(rows, dtype=np.int64)
        Y = self.Y if cols is None else self.Y[:, np.asarray(cols)]
        A = self.X[:, rows]
        d = np.where(rows < self.n_features, math.sqrt(self.n_samples * self.ridge), 0.0)
        if sp.issparse(A) and A.shape[0] * A.shape[1] > 2 ** 24:  # large sparse: LSMR, never densify
            from scipy.sparse.linalg import lsmr
            if self.ridge:
                A = sp.vstack([A, sp.diags(d)[d > 0]], format="csr")
                Y = np.vstack([Y, np.zeros((int(np.sum(d > 0)), Y.shape[1]))])
            return np.column_stack([lsmr(A, Y[:, k], atol=1e-15, btol=1e-15, conlim=1e16,
                                         maxiter=4 * max(A.shape))[0] for k in range(Y.shape[1])])
        A = A.toarray() if sp.issparse(A) else np.asarray(A)
        icpt = np.flatnonzero(rows == self.n_features) if self.fit_intercept else np.zeros(0, int)
        if icpt.size:  # centre instead: min-norm over the features only, the intercept fitted to what is left
            feat = np.flatnonzero(rows != self.n_features)
            mx, my = A[:, feat].mean(axis=0), Y.mean(axis=0)
            out = np.empty((rows.size, Y.shape[1]))
            out[feat] = self._lstsq(A[:, feat] - mx, Y - my, d[feat])
            out[icpt] = my - mx @ out[feat]
            return out
        return self._lstsq(A, Y, d)

    @staticmethod
    def _lstsq(A, Y, d):
        import scipy.linalg
        if A.shape[1] == 0:
            return np.zeros((0, Y.shape[1]))
        if np.any(d > 0):
            A = np.vstack([A, np.diag(d)[d > 0]])
            Y = np.vstack([Y, np.zeros((int(np.sum(d > 0)), Y.shape[1]))])
        # gelsy's default rank cut-off keeps a singular value of 1e-16 relative (exactly duplicated columns) and
        # returns a huge, wrong solution: cut at max(n, p) eps, as numpy's lstsq does
        return scipy.linalg.lstsq(A, Y, cond=max(A.shape) * np.finfo(float).eps, lapack_driver="gelsy",
                                  check_finite=False)[0]


class Logistic(_GLM):
    """Mean binary log-loss  (1/n) sum_i log(1 + e^{z_i}) - y_i z_i  with labels y in {0, 1}.  Like
    ``LeastSquares``, X and y are held as numpy / scipy arrays (torch tensors are copied to the host, float64)."""
    curvature = 0.25
    dual_modulus = 4.0

    def _check_y(self, y, n):
        Y = check_finite_array(y, "y", ndim=(1,))
        if Y.shape[0] != n:
            raise ValueError(f"y: has {Y.shape[0]} samples but X has {n} rows")
        bad = ~np.isin(Y, (0.0, 1.0))
        if np.any(bad):
            raise ValueError(f"y: binary labels must be in {{0, 1}}, got values {np.unique(Y[bad])[:5].tolist()}")
        return Y.reshape(-1, 1)

    def raw_value(self, Z):
        return float(np.mean(-log_expit(Z) + (1.0 - self.Y) * Z))  # log(1+e^z) - y z, stably

    def raw_grad(self, Z):
        return (expit(Z) - self.Y) / self.n_samples

    def intercept_hessian(self, Z):
        s = expit(Z)
        return np.atleast_2d(np.sum(s * (1 - s)) / self.n_samples)

    def conjugate(self, V):
        # f(z) = log(1+e^z) - y z: f*(a) = p log p + (1-p) log(1-p), p = a + y in [0, 1]; F*(V) = (1/n) sum f*(n V)
        P = np.clip(self.n_samples * V + self.Y, 0.0, 1.0)
        return float(np.sum(xlogy(P, P) + xlogy(1 - P, 1 - P))) / self.n_samples


class Multinomial(_GLM):
    """Mean multinomial log-loss with K classes: (1/n) sum_i logsumexp(z_i) - z_{i, y_i}.  W has shape (p, K).
    X and y are held as numpy / scipy arrays (torch tensors are copied to the host, float64)."""
    curvature = 0.5
    dual_modulus = 1.0

    def __init__(self, X, y, fit_intercept=False, ridge=0.0, n_classes=None):
        self._n_classes = None if n_classes is None else check_positive_int(n_classes, "n_classes", low=2)
        super().__init__(X, y, fit_intercept, ridge)

    def _check_y(self, y, n):
        Y = check_finite_array(y, "y", ndim=(1,))
        if Y.shape[0] != n:
            raise ValueError(f"y: has {Y.shape[0]} samples but X has {n} rows")
        if np.any(Y != np.round(Y)) or np.any(Y < 0):
            raise ValueError("y: multinomial labels must be integers 0..K-1 (encode them first)")
        K = int(Y.max()) + 1 if self._n_classes is None else int(self._n_classes)
        if K < 2:
            raise ValueError(f"y: multinomial needs at least 2 classes, got {K}")
        if Y.max() >= K:
            raise ValueError(f"y: label {int(Y.max())} is out of range for n_classes={K}")
        onehot = np.zeros((n, K))
        onehot[np.arange(n), Y.astype(int)] = 1.0
        return onehot

    def raw_value(self, Z):
        return float(np.mean(_logsumexp_rows(Z) - np.sum(Z * self.Y, axis=1)))

    def raw_grad(self, Z):
        P = softmax_rows(Z)
        return (P - self.Y) / self.n_samples

    def conjugate(self, V):
        P = np.clip(self.n_samples * V + self.Y, 0.0, 1.0)
        return float(np.sum(xlogy(P, P))) / self.n_samples

    def intercept_hessian(self, Z):
        P = softmax_rows(Z)
        return (np.diag(P.sum(axis=0)) - P.T @ P) / self.n_samples


def _gram_namespace(H, B):
    """The one array namespace of H and B, numpy or torch with one dtype and device: a named ValueError
    otherwise (a mix would either fail deep in a solver or silently copy one of them)."""
    from ._array import namespace
    kinds = {type(a).__module__.split(".")[0] for a in (H, B)}
    if not kinds <= {"numpy", "torch"} or not all(hasattr(a, "ndim") for a in (H, B)):
        raise ValueError(f"H, B: expected numpy arrays or torch tensors, got {type(H).__name__} and "
                         f"{type(B).__name__}")
    if len(kinds) > 1:
        raise ValueError(f"H, B: must both be numpy arrays or both torch tensors, got {type(H).__name__} and "
                         f"{type(B).__name__}")
    if "torch" in kinds:
        if H.dtype != B.dtype or H.dtype not in _torch_floats():
            raise ValueError(f"H, B: expected one floating dtype (torch.float32 or torch.float64), got {H.dtype} "
                             f"and {B.dtype}")
        if H.device != B.device:
            raise ValueError(f"H, B: must be on one device, got {H.device} and {B.device}")
    return namespace(H, B)


def _torch_floats():
    import torch
    return (torch.float32, torch.float64)


class GramLeastSquares(Loss):
    """1/2 tr(W^T H W) - tr(W^T B) + c (+ ridge/2 ||W||^2), H symmetric PSD (p, p), B (p, K).

    This is least squares in Gram form: with H = X^T X / n, B = X^T Y / n and c = ||Y||^2 / (2n) it equals
    ``LeastSquares(X, Y)``.  H and B may be numpy arrays or torch tensors (CPU or CUDA, float32 or float64, both
    of one kind, dtype and device); ``solve``, ``solve_path``, ``lambda_max`` and ``select`` keep them there.
    """

    def __init__(self, H, B, c=0.0, ridge=0.0):
        xp = _gram_namespace(H, B)
        if H.ndim != 2 or H.shape[0] != H.shape[1]:
            raise ValueError(f"H: must be a square matrix, got shape {tuple(H.shape)}")
        B2 = B if B.ndim == 2 else xp.reshape(B, (-1, 1))
        if B2.shape[0] != H.shape[0]:
            raise ValueError(f"B: has {B2.shape[0]} rows but H is {H.shape[0]} x {H.shape[0]}")
        if not bool(xp.all(xp.isfinite(H))):
            raise ValueError("H: must be finite (no NaN or inf)")
        if not bool(xp.all(xp.isfinite(B2))):
            raise ValueError("B: must be finite (no NaN or inf)")
        c = check_real(c, "c")
        if not math.isfinite(c):
            raise ValueError(f"c: must be a finite number, got {c!r}")
        _check_psd(xp, H)
        self.xp = xp
        self.H, self.B, self.c = H, B2, c
        self.n_features, self.n_outputs = int(H.shape[0]), int(B2.shape[1])
        self.ridge = _check_ridge(ridge)

    @classmethod
    def from_data(cls, X, Y, ridge=0.0):
        """Gram form of (1/2n)||Y - X W||^2."""
        n = X.shape[0]
        Y2 = Y.reshape(n, -1)
        return cls(X.T @ X / n, X.T @ Y2 / n, float((Y2 * Y2).sum()) / (2 * n), ridge)

    def _as_matrix(self, coef):
        return self.xp.reshape(coef, (self.n_features, self.n_outputs))

    def init_state(self, W):
        return self.H @ W

    def state_value(self, HW, W) -> float:
        xp = self.xp
        v = 0.5 * xp.sum(W * HW) - xp.sum(W * self.B) + self.c
        if self.ridge:
            v = v + 0.5 * self.ridge * xp.sum(W * W)
        return float(v)

    def grad_rows(self, HW, W, rows):
        g = HW[rows] - self.B[rows]
        return g + self.ridge * W[rows] if self.ridge else g

    def update_state(self, HW, rows, dW):
        HW += self.H[:, rows] @ dW

    def full_grad(self, HW, W):
        return self.grad_rows(HW, W, slice(None))

    def lipschitz_rows(self, rows) -> float:
        Hs = self.H[rows][:, rows] if not isinstance(rows, slice) else self.H[rows, rows]
        if Hs.ndim < 2:  # one row given as an int
            Hs = self.xp.reshape(Hs, (1, 1))
        return float(self.xp.linalg.eigvalsh(Hs)[-1]) + self.ridge

    def lipschitz_blocks(self, starts, size) -> np.ndarray:
        """Lipschitz constants of many equal-size contiguous row blocks at once (one batched eigvalsh of the
        diagonal blocks of H, where H lives); G numbers come back."""
        from ._array import to_numpy
        xp = self.xp
        idx = xp.asarray(np.asarray(starts, dtype=np.int64)[:, None] + np.arange(size), device=_device(self.H))
        blocks = self.H[idx[:, :, None], idx[:, None, :]]
        return np.asarray(to_numpy(xp.linalg.eigvalsh(blocks)[:, -1]), dtype=float) + self.ridge

    def global_lipschitz(self) -> float:
        return float(self.xp.linalg.eigvalsh(self.H)[-1]) + self.ridge

    def max_coordinate_lipschitz(self) -> float:
        return float(self.xp.max(self.xp.linalg.diagonal(self.H))) if self.n_features else 0.0

    def solve_rows(self, rows, cols=None):
        """Exact minimiser over the rows ``rows`` (others 0) for the outputs ``cols``: (H_rr + ridge) W = B_rc by
        ``psd_solve`` (min-norm where H_rr is singular), in float64 and in the array namespace of H."""
        xp = self.xp
        dev = _device(self.H)
        ri = xp.asarray(np.asarray(rows, dtype=np.int64), device=dev)
        ci = xp.asarray(np.arange(self.n_outputs) if cols is None else np.asarray(cols, dtype=np.int64), device=dev)
        A = xp.astype(self.H[ri[:, None], ri[None, :]], xp.float64)
        Bm = xp.astype(self.B[ri[:, None], ci[None, :]], xp.float64)
        if self.ridge:
            A = A + self.ridge * xp.eye(A.shape[0], dtype=A.dtype, device=dev)
        return psd_solve(xp, A, Bm)

    def restrict_rows(self, rows):
        rows = np.asarray(rows)
        return GramLeastSquares(self.H[rows][:, rows], self.B[rows], self.c, self.ridge)
