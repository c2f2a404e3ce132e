"""The solver-side view of (loss, penalty, groups): per-group row blocks, step sizes, objective and certificates.

Solvers (block coordinate descent, FISTA, the selection methods) share this one place for the bookkeeping, so
each of them is only its iteration.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ._array import GroupsOnDevice, device, namespace, norm, to_numpy
from ._validation import check_finite_array
from .groups import Groups, as_groups
from .losses import Loss
from .penalties import CompositePenalty, Penalty, SparseGroupLasso


@dataclass
class Solution:
    """Result of ``solve``, ``solve_path`` (one per lambda) and ``select``.

    coef        : flat coefficients, length p*K (row-major over (feature, output)); the intercept is separate.
    intercept   : (K,) intercept, or None without one.
    support     : ids of the groups with a nonzero coefficient.
    objective   : loss + penalty at coef (loss alone for a budget problem).
    certificate : duality gap (convex penalty), max KKT residual (nonconvex), or objective - lower bound (budget).
    certificate_kind : 'duality_gap', 'kkt', or 'bound_gap'.
    """
    coef: np.ndarray
    intercept: np.ndarray | None
    support: np.ndarray
    objective: float
    certificate: float
    certificate_kind: str
    converged: bool
    n_iter: int
    lam: float | None = None
    lower_bound: float | None = None
    history: list = field(default_factory=list, repr=False)
    info: dict = field(default_factory=dict, repr=False)

    def coef_matrix(self, n_outputs: int) -> np.ndarray:
        return self.coef.reshape(-1, n_outputs)

    def __repr__(self):
        return (f"Solution(objective={self.objective:.6g}, support={self.support.size} groups, "
                f"{self.certificate_kind}={self.certificate:.3g}, converged={self.converged}, n_iter={self.n_iter})")


def _row_layout(g: Groups, K: int):
    """Per group: its rows of W (``_Rows``) and ``sel``, None when the group takes whole rows, else a
    (n_rows_g, K) bool mask of its entries within them (``_Selections``).  Vectorised over the groups and built
    lazily per group (N:M layouts have p*K one-entry groups): the indices are sorted within a group, so the row
    ids of each group's slice of ``g.order`` are nondecreasing.  Also returns whether every group takes whole
    rows."""
    first, stop = g.indptr[:-1], g.indptr[1:]
    r = g.order // K
    new_row = np.ones(r.size, dtype=np.int64)
    new_row[1:] = r[1:] != r[:-1]
    new_row[first] = 1
    n_rows = np.add.reduceat(new_row, first)
    whole = (stop - first) == n_rows * K
    rows = _Rows(r, first, stop, n_rows)
    return rows, _Selections(g, K, rows, whole), bool(whole.all())


class _Sequence:
    """Read-only sequence of per-group items, each built by ``_item`` (and kept) when first asked for."""

    def __len__(self):
        return self._n

    def __iter__(self):
        return (self[i] for i in range(self._n))

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        i = range(self._n)[i]  # bounds and negative ids as a list's
        out = self._cache.get(i)
        if out is None and i not in self._cache:
            out = self._cache[i] = self._item(i)
        return out


class _Rows(_Sequence):
    """Rows of W of each group: ``slice(start, stop)`` when contiguous, else the sorted row ids."""

    def __init__(self, r, first, stop, n_rows):
        self.start, self.stop = r[first], r[stop - 1] + 1
        self.contiguous = self.stop - self.start == n_rows
        self.all_contiguous = bool(self.contiguous.all())
        self._r, self._first, self._end, self._n, self._cache = r, first, stop, first.size, {}

    def _item(self, i):
        if self.contiguous[i]:
            return slice(int(self.start[i]), int(self.stop[i]))
        return np.unique(self._r[self._first[i]:self._end[i]])


class _Selections(_Sequence):
    def __init__(self, g: Groups, K: int, rows: _Rows, whole):
        self._g, self._K, self._rows, self._whole, self._n, self._cache = g, K, rows, whole, whole.size, {}

    def _item(self, i):
        if self._whole[i]:
            return None
        idx, r = self._g[i], self._rows[i]
        r = np.arange(r.start, r.stop) if isinstance(r, slice) else r
        m = np.zeros((r.size, self._K), dtype=bool)
        m[np.searchsorted(r, idx // self._K), idx % self._K] = True
        return m


class Problem:
    """Internal layout: coefficient matrix W of shape (n_rows, K) with n_rows = p (+1 intercept row).

    W, the loss state and gradients live in the loss's array namespace (``xp``: numpy, or torch for a
    ``GramLeastSquares`` of tensors, on its device and dtype).  Per-group numbers (norms, step sizes, prox
    shrink factors, certificates) are host float64 arrays of G entries: ``group_norms`` reduces on the device and
    ``gview.expand`` sends one number per group back."""

    def __init__(self, loss: Loss, penalty: Penalty | None, groups):
        if not isinstance(loss, Loss):
            raise ValueError(f"loss: expected a groupsparse loss (LeastSquares, Logistic, ...), got {type(loss).__name__}")
        if penalty is not None and not isinstance(penalty, Penalty):
            raise ValueError(f"penalty: expected a groupsparse penalty (GroupLasso, GroupMCP, ...), "
                             f"got {type(penalty).__name__}")
        K = loss.n_outputs
        user = groups if isinstance(groups, Groups) else as_groups(groups, loss.n_features)
        if user.n_features == loss.n_features and K > 1:
            user = user.expand_outputs(K)  # feature groups: each takes its features across all outputs
        if user.n_features != loss.n_coef:
            raise ValueError(f"groups: cover {user.n_features} coefficients but the loss has {loss.n_coef} "
                             f"({loss.n_features} features x {K} outputs)")
        self.user_groups = user
        self.groups = user.append(K, 0.0) if loss.fit_intercept else user
        self.loss, self.penalty, self.K = loss, penalty, K
        H = getattr(loss, "H", None)
        if H is not None and not isinstance(H, np.ndarray):  # a GramLeastSquares of torch tensors
            self.xp, self.dtype, self.device = namespace(H), H.dtype, device(H)
            self.gview = GroupsOnDevice(self.groups, self.xp, self.dtype, self.device)
        else:
            self.xp, self.dtype, self.device = namespace(np.zeros(0)), np.float64, None
            self.gview = self.groups
        self.n_user_groups = user.n_groups
        g = self.groups
        self.weights = np.asarray(g.weights, float)
        self.penalized = self.weights > 0
        self.rows, self.sel, self.whole_rows = _row_layout(g, K)
        self._lips = np.full(g.n_groups, np.nan)
        pen = penalty
        # lam = 0 or no penalized group: the problem is the loss alone (the dual scale would be 0, the gap useless)
        self.unpenalized = pen is None or pen.lam == 0 or not np.any(self.penalized)
        # weight-0 groups other than the intercept: a dual point must be orthogonal to their columns
        icpt = g.n_groups - 1 if loss.fit_intercept else -1
        self.free_groups = np.array([i for i in np.flatnonzero(~self.penalized) if i != icpt], dtype=np.int64)
        self.has_gap = bool(pen is not None and pen.convex and loss.has_dual and not self.unpenalized
                            and (self.free_groups.size == 0 or self._projectable()))

    def _projectable(self) -> bool:
        """Least squares without ridge, whole-row free groups: the dual point can be projected (``_dual_point``)."""
        from .losses import LeastSquares
        return (isinstance(self.loss, LeastSquares) and not self.loss.ridge
                and all(self.sel[g] is None for g in self.free_groups))

    def free_rows(self) -> np.ndarray:
        """Coefficient rows never penalized: weight-0 groups and the intercept row (whole rows only)."""
        rows = np.arange(self.loss.n_rows)
        out = [rows[self.rows[g]] for g in np.flatnonzero(~self.penalized) if self.sel[g] is None]
        return np.unique(np.concatenate(out)) if out else np.zeros(0, dtype=np.int64)

    def scales(self):
        """(gap floor, gradient scale), computed once per problem.  Stopping rules compare with these, so rescaling
        the data (and lam with it) never changes when a solver stops, and no rule has an absolute part:
        - gap floor: 16 eps * loss(0), the rounding level of a duality gap; convex solves stop on
          gap <= max(tol * |objective|, floor);
        - gradient scale: the largest group gradient norm at the null model (beta = 0, intercept fitted), at least
          sqrt(2 loss(null) max_j L_j), the bound on any one-coefficient gradient there (so that y orthogonal to
          X still has a scale); KKT and fixed-point residuals stop at tol times it."""
        if not hasattr(self, "_scales"):
            loss = self.loss
            W = self.zeros()
            st = loss.init_state(W)
            f_raw = abs(float(loss.state_value(st, W)))
            if loss.has_dual:
                loss.profile_intercept(st, W)
            f0 = max(float(loss.state_value(st, W)), 0.0)
            gmax = float(np.max(self.group_norms(loss.full_grad(st, W))))
            lcol = float(loss.max_coordinate_lipschitz())
            self._scales = (16 * np.finfo(float).eps * f_raw, max(gmax, math.sqrt(2 * f0 * lcol)))
        return self._scales

    def kkt_floor(self) -> float:
        """The rounding level of a KKT residual in the problem's dtype: a gradient entry is a sum over the rows
        (error ~ sqrt(n_rows) eps of the gradient scale), a group norm adds sqrt(group size).  Negligible in
        float64 (1e-13 relative for a thousand rows); it is what lets float32 solves stop."""
        eps = float(self.xp.finfo(self.dtype).eps)
        size = int(self.groups.sizes.max())
        return 4 * eps * math.sqrt(self.loss.n_rows * size) * self.scales()[1]

    # ----- step sizes (computed lazily: most groups never enter a working set) -----
    def lipschitz_of(self, ids) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        todo = ids[np.isnan(self._lips[ids])]
        if todo.size:
            # contiguous blocks are cached on the loss: a path builds one Problem per lambda over the same X
            cache = self.loss.block_lipschitz_cache()
            batch = [g for g in todo if isinstance(self.rows[g], slice) and self.sel[g] is None]
            for g in batch:
                self._lips[g] = cache.get((self.rows[g].start, self.rows[g].stop), np.nan)
            batch = [g for g in batch if np.isnan(self._lips[g])]
            sizes = {self.rows[g].stop - self.rows[g].start for g in batch}
            if hasattr(self.loss, "lipschitz_blocks") and len(sizes) == 1 and len(batch) > 1:
                vals = self.loss.lipschitz_blocks([self.rows[g].start for g in batch], sizes.pop())
                self._lips[batch] = np.maximum(vals, 1e-300)
            for g in todo:
                if np.isnan(self._lips[g]):
                    self._lips[g] = max(self.loss.lipschitz_rows(self.rows[g]), 1e-300)
            for g in batch:
                cache[(self.rows[g].start, self.rows[g].stop)] = self._lips[g]
        return self._lips

    @property
    def lipschitz(self) -> np.ndarray:
        return self.lipschitz_of(np.arange(self.groups.n_groups))

    # ----- layout -----
    def zeros(self):
        if self.device is None:
            return np.zeros((self.loss.n_rows, self.K))
        return self.xp.zeros((self.loss.n_rows, self.K), dtype=self.dtype, device=self.device)

    def native(self, W):
        """A copy of the coefficient matrix W (host, or already in the namespace) in the problem's namespace,
        dtype and device."""
        if self.device is None:
            return np.array(W, dtype=float)
        if not hasattr(W, "detach"):
            W = np.asarray(W, dtype=float)
        return self.xp.asarray(W, dtype=self.dtype, device=self.device, copy=True)

    def group_norms(self, W) -> np.ndarray:
        """Norm of every group of W (any namespace), as a host float64 array."""
        return self.gview.norms(self.xp.reshape(W, (-1,)))

    def from_user(self, coef, intercept=None):
        if hasattr(coef, "detach") and self.device is not None:  # a tensor warm start for a device problem
            if intercept is not None:
                raise ValueError("warm_intercept: given, but the loss has no intercept (a Gram loss)")
            c = self.xp.reshape(coef, (-1,))
            if c.shape[0] != self.loss.n_coef:
                raise ValueError(f"warm_start: expected {self.loss.n_coef} coefficients, got {c.shape[0]}")
            if not bool(self.xp.all(self.xp.isfinite(c))):
                raise ValueError("warm_start: contains NaN or inf")
            return self.native(self.xp.reshape(c, (self.loss.n_rows, self.K)))  # Gram: no intercept row
        W = np.zeros((self.loss.n_rows, self.K))
        c = check_finite_array(coef, "warm_start", ndim=(1, 2)).ravel()
        if c.size != self.loss.n_coef:
            raise ValueError(f"warm_start: expected {self.loss.n_coef} coefficients, got {c.size}")
        W[: self.loss.n_features] = c.reshape(-1, self.K)
        if intercept is not None:
            if not self.loss.fit_intercept:  # silently dropping it would hide a mismatched loss
                raise ValueError("warm_intercept: given, but the loss has no intercept (fit_intercept=False)")
            b = check_finite_array(np.atleast_1d(intercept), "warm_intercept", ndim=(1,))
            if b.size != self.K:
                raise ValueError(f"warm_intercept: expected {self.K} value(s), one per output, got {b.size}")
            W[-1] = b
        return self.native(W)

    def split(self, W):
        p = self.loss.n_features
        if self.device is not None:  # a Gram loss: no intercept row
            return np.asarray(to_numpy(W), dtype=float).ravel(), None
        coef = np.array(W[:p], dtype=float).ravel()
        icpt = np.array(W[p], dtype=float) if self.loss.fit_intercept else None
        return coef, icpt

    def mask(self, g):
        """``sel[g]`` in the problem's namespace and on its device (sent once per group), or None."""
        m = self.sel[g]
        if m is None or self.device is None:
            return m
        cache = self.__dict__.setdefault("_masks", {})
        if g not in cache:
            cache[g] = self.xp.asarray(m, device=self.device)
        return cache[g]

    def block(self, W, g):
        v = W[self.rows[g]]
        return v if self.sel[g] is None else v[self.mask(g)]

    # ----- objective and certificates -----
    def penalty_value(self, W) -> float:
        if self.penalty is None:
            return 0.0
        beta = self.xp.reshape(W, (-1,))
        if not np.all(self.penalized):
            beta = beta * self.gview.expand(self.penalized)
        if isinstance(self.penalty, SparseGroupLasso):
            return self.penalty.value_beta(beta, self.gview)
        norms = self.gview.norms(beta)
        if isinstance(self.penalty, CompositePenalty):
            return self.penalty.value(norms[self.penalized])
        return self.penalty.value(norms[self.penalized], self.weights[self.penalized])

    def objective(self, state, W) -> float:
        return self.loss.state_value(state, W) + self.penalty_value(W)

    def kkt(self, W, G) -> np.ndarray:
        """Per group: distance of -gradient to the penalty's subdifferential (unpenalized: the gradient norm)."""
        beta, grad = self.xp.reshape(W, (-1,)), self.xp.reshape(G, (-1,))
        gv = self.gview
        if self.penalty is None:
            out = np.zeros(self.groups.n_groups)
        elif isinstance(self.penalty, CompositePenalty):
            out = self.penalty.subdiff_distance(beta * gv.expand(self.penalized), grad, gv)
        else:
            out = self.penalty.subdiff_distance(beta, grad, gv)
        if not np.all(self.penalized):
            out[~self.penalized] = gv.norms(grad)[~self.penalized]
        return out

    def duality_gap(self, state, W, G, primal, extra_state=None):
        """Gap at the best of the dual points s * dF/dZ built from ``state`` and, when given, from an
        extrapolated ``extra_state`` (celer's dual extrapolation); s is the largest feasible scale.
        Returns (gap, V, s) or (nan, None, 0) when the loss has no dual (Gram form) or the penalty is not convex.
        With an intercept, call loss.profile_intercept first so that V sums to zero."""
        if self.penalty is None or not self.penalty.convex or not self.loss.has_dual:
            return np.nan, None, 0.0
        if not self.has_gap:
            return np.nan, None, 0.0
        best = self._dual_point(self.loss.raw_grad(state), G, W)
        if (extra_state is not None and not self.loss.fit_intercept and not self.loss.ridge
                and not self.free_groups.size):
            V2 = self.loss.raw_grad(extra_state)
            cand = self._dual_point(V2, self.loss.full_grad(extra_state, W), W)
            if cand[0] > best[0]:
                best = cand
        dual, V, s = best
        return primal - dual, V, s

    def _dual_point(self, V, XtV, W):
        """(dual value, V, s) at s * V, with X^T V (plus the ridge part) given as ``XtV``."""
        loss = self.loss
        Xg = XtV.copy()
        if self.free_groups.size:  # project V onto the complement of the free columns: X_free^T V = 0
            Q, XtQ = self._free_basis()
            c = Q.T @ V
            V = V - Q @ c
            Xg = Xg - XtQ @ c
        if loss.fit_intercept:
            Xg[-1] = 0.0
        pen = self.penalized
        if isinstance(self.penalty, SparseGroupLasso):
            s = self.penalty.dual_scale(Xg.ravel() * self.groups.expand(pen), self.groups)
        else:
            gn = self.groups.norms(Xg.ravel())[pen]
            lw = self.penalty.lam * self.weights[pen]
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(gn > 0, lw / gn, np.inf)
            s = float(min(1.0, ratio.min())) if ratio.size else 1.0
        dual = -loss.conjugate(s * V)
        if loss.ridge:
            dual -= 0.5 * s * s * loss.ridge * float(np.sum(W[: loss.n_features] ** 2))
        return dual, V, s

    def _free_basis(self):
        """Orthonormal basis Q of the free columns (weight-0 groups and the intercept) and X^T Q, computed once."""
        if not hasattr(self, "_fb"):
            import scipy.linalg
            import scipy.sparse as sp
            X = self.loss.X
            A = X[:, self.free_rows()]
            A = A.toarray() if sp.issparse(A) else np.asarray(A)
            Q, R, _ = scipy.linalg.qr(A, mode="economic", pivoting=True)
            d = np.abs(np.diag(R))
            rank = int(np.sum(d > max(A.shape) * np.finfo(float).eps * (d[0] if d.size else 0.0)))
            Q = Q[:, :rank]
            self._fb = (Q, np.asarray(X.T @ Q))  # XtV is X^T V: no 1/n here
        return self._fb

    def fixpoint_scores(self, W, G, groups=None) -> np.ndarray:
        """L_g * ||beta_g - prox_g(beta_g - grad_g / L_g)||: zero exactly at fixed points of the prox-gradient map
        (the working-set score; unlike the subdifferential it also sees groups that a nonconvex prox can move)."""
        ids = np.arange(self.groups.n_groups) if groups is None else np.asarray(groups)
        L = self.lipschitz_of(ids)[ids]
        out = np.zeros(len(ids))
        composite = isinstance(self.penalty, CompositePenalty)
        norms = self.group_norms(W)[ids]
        todo = np.ones(len(ids), dtype=bool)
        if self.penalty is not None and not composite:  # zero groups whose prox input is inside the zero radius
            lw = self.penalty.lam * self.weights[ids]
            rz = self.penalty.prox_zero_radius(1.0 / L, lw)
            gn = self.group_norms(G)[ids] / L
            todo = (norms > 0) | (gn > rz) | ~self.penalized[ids]
        if not composite:  # one prox of the groups to score, all at once
            Lall = np.ones(self.groups.n_groups)
            Lall[ids] = L
            active = np.zeros(self.groups.n_groups, dtype=bool)
            active[ids[todo]] = True
            Z = W - G / self.xp.reshape(self.gview.expand(Lall), W.shape)
            new = self.prox_all(Z, 1.0 / Lall, W, active)
            out[todo] = L[todo] * self.group_norms(new - W)[ids[todo]]
            return out
        rest = self.composite_rest(W)
        for i in np.flatnonzero(todo):
            g = ids[i]
            b = self.block(W, g)
            gg = G[self.rows[g]] if self.sel[g] is None else G[self.rows[g]][self.mask(g)]
            z = b - gg / L[i]
            new = self.prox(g, z, 1.0 / L[i], b, rest)
            out[i] = L[i] * norm(new - b)
        return out

    def prox_all(self, Z, t, W_old, active=None):
        """The prox of the groups with ``active`` (default all) at once, steps ``t`` (a number, or one per group);
        the other groups' rows of Z come back unchanged.  Separable penalties: ``Penalty.prox_groups`` (the work
        on Z stays in its namespace); the composite penalty: group by group with the others' q-sum."""
        n = self.groups.n_groups
        active = self.penalized.copy() if active is None else active & self.penalized
        if self.penalty is None or not np.any(active):
            return self.xp.asarray(Z, copy=True)
        t = np.broadcast_to(np.asarray(t, float), (n,))
        if not isinstance(self.penalty, CompositePenalty):
            new = self.penalty.prox_groups(self.xp.reshape(Z, (-1,)), t, self.gview, active)
            return self.xp.reshape(new, Z.shape)
        out = self.xp.asarray(Z, copy=True)
        rest = self.composite_rest(W_old)
        for g in np.flatnonzero(active):
            rows, sel = self.rows[g], self.mask(g)
            z = Z[rows] if sel is None else Z[rows][sel]
            old = W_old[rows] if sel is None else W_old[rows][sel]
            new = self.prox(g, z, t[g], old, rest)
            if sel is None:
                out[rows] = new
            else:
                blk = out[rows]
                blk[sel] = new
                out[rows] = blk
        return out

    def prox(self, g, z, t, old=None, rest=None):
        if not self.penalized[g] or self.penalty is None:
            return z
        if isinstance(self.penalty, CompositePenalty):
            r = norm(z)
            if r == 0:
                return z * 0
            pen = self.penalty
            qold = pen.q(norm(old)) if old is not None else 0.0
            others = max(rest - qold, 0.0)  # the running q-sum can drift below 0 by rounding
            new = z * (pen.prox_given_rest(r, t, others) / r)
            if old is not None:
                # ties between distant global minimisers would make BCD flip forever: keep the current block
                # unless the move strictly lowers the block objective
                h = lambda v: norm(v - z) ** 2 / (2 * t) + pen.lam * pen.q_inv(others + pen.q(norm(v)))
                ho, hn = h(old), h(new)
                jump = norm(new - old) > 0.1 * max(norm(old), norm(new))
                if hn > ho or (jump and hn >= ho - 1e-12 * abs(ho)):
                    return old
            return new
        return self.penalty.prox_group(z, t, self.weights[g])

    def composite_rest(self, W) -> float:
        norms = self.group_norms(W)
        return float(sum(self.penalty.q(float(r)) for r in norms[self.penalized]))

    def support(self, W, tol=0.0):
        n = self.group_norms(W)[: self.n_user_groups]
        return np.flatnonzero(n > tol)

    def solution(self, W, state, certificate, kind, converged, n_iter, history, lam=None, **info):
        """The ``Solution`` at W; on a device problem, ``info['coef_native']`` holds the flat coefficients in the
        loss's namespace, dtype and device (``coef`` is their float64 host copy)."""
        coef, icpt = self.split(W)
        if self.device is not None:
            info["coef_native"] = self.xp.reshape(self.xp.asarray(W, copy=True), (-1,))
        return Solution(coef, icpt, self.support(W), self.objective(state, W), float(certificate), kind,
                        bool(converged), int(n_iter), lam, history=history, info=info)
