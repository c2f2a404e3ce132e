"""The budget problem  min L(W)  s.t.  at most k groups of W nonzero,  as every selection method sees it.

``BudgetProblem`` wraps a core loss and ``Groups`` once and gives the methods the few primitives they share, so
each method is only its search logic (and no method has its own refit, projection or scoring):

* ``value(W)``, ``grad(W)``: the loss and its gradient on the internal (n_rows, K) coefficient matrix.
* ``refit(S)``: the exact minimiser of L on the coefficients of the groups in S (``refit.py``).
* ``group_sq(M)``: squared Euclidean norm of every group of a (n_rows, K) array -> host numpy (G,).
* ``backward(W)`` / ``forward(D)``: abess-style "sacrifices" (Zhu et al. 2020; solver_anchors.md section 2):
  the loss increase from deleting group g, 1/2 tr(W_g^T Phi_g W_g), and the loss decrease from adding group g
  alone, 1/2 tr(D_g^T Phi_g^{-1} D_g), with Phi_g the Hessian block of group g (exact for least squares; the
  curvature bound for the GLMs).  For groups that are not "row set x column set" rectangles Phi_g is replaced by
  its Lipschitz constant times the identity.
* ``project(V, k)``: top-k groups by norm (the hard-thresholding operator H_k).

Heavy work (matrix products, gathers, solves) stays in the array namespace of the loss (numpy, or torch on any
device for ``GramLeastSquares``); combinatorial bookkeeping (supports, scores of G groups) runs in numpy on the
host, which costs one transfer of G numbers per step.
"""
from __future__ import annotations

import time

import numpy as np

from .._array import namespace, to_numpy
from ..losses import GramLeastSquares, LeastSquares, Logistic, Multinomial
from ..problem import Problem, Solution

__all__ = ["BudgetProblem", "Budget"]


class Budget:
    """How many groups a support may hold: at most ``n`` groups in each part of ``partition`` (one label per group,
    any ints or strings), or at most ``n`` groups overall when ``partition`` is None (``select``'s int k).

    N:M sparsity is the partitioned budget over single coefficients: ``Budget.n_of_m(n, m, (p, K))`` with the
    groups ``Groups.block_tiling((p, K), 1)`` (one group per coefficient of the (p, K) matrix, flattened row-major)
    keeps at most N of every M consecutive rows of each column -- N of every M consecutive inputs of each output,
    the pattern the bridge's N:M one-shot prunes to (``nn_bridge.nm.oneshot``: its groups are the M-row windows of
    a column, its budget N per window).  A part smaller than ``n`` keeps all its groups.

    ``select`` binds the budget to the groups (``bind``); the methods then ask it for feasible additions
    (``pick``) and swaps (``swap_ok``)."""

    def __init__(self, n, partition=None):
        self.n = n
        self.partition = partition
        self._lab = None

    @classmethod
    def n_of_m(cls, n, m, shape) -> "Budget":
        """N:M along the rows of a (p, K) coefficient matrix, one group per coefficient (see the class docstring)."""
        from ..groups import _int_pair
        from .._validation import check_positive_int
        p, K = _int_pair(shape, "shape", pair_only=True)
        m = check_positive_int(m, "m")
        n = check_positive_int(n, "n", low=1, high=m)
        if p % m:
            raise ValueError(f"m: M={m} does not divide the {p} rows (inputs) of shape {(p, K)}; pad first")
        labels = ((np.arange(p)[:, None] // m) * K + np.arange(K)[None, :]).ravel()
        return cls(n, labels)

    @property
    def partitioned(self) -> bool:
        return self.partition is not None

    def __repr__(self) -> str:
        if self._lab is None or not self.partitioned:
            return f"Budget({self.n!r}{'' if self.partition is None else ', partition=...'})"
        return f"Budget({self.n}, {self._cap.size} parts, total {self.total})"

    def bind(self, n_groups: int) -> "Budget":
        """A copy checked against ``n_groups`` groups, with its per-group part ids and per-part capacities."""
        G = int(n_groups)
        n = self.n
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
            raise ValueError(f"k: expected an integer number of groups (or a Budget), got {n!r}")
        if self.partition is None:
            if n <= 0 or n > G:
                raise ValueError(f"k: must be in [1, {G}] (the number of groups), got {n}")
            lab = np.zeros(G, dtype=np.int64)
        else:
            if n <= 0:
                raise ValueError(f"k: a partition budget keeps n >= 1 groups per part, got {n}")
            from .._validation import _as_array
            arr = _as_array(self.partition, "partition")
            if arr.ndim != 1 or arr.size != G:
                raise ValueError(f"partition: expected one label per group ({G} groups), got shape {arr.shape}")
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise ValueError("partition: contains NaN or inf")
            lab = np.unique(arr, return_inverse=True)[1].ravel().astype(np.int64)
        out = Budget(int(n), self.partition)
        out._lab = lab
        size = np.bincount(lab)
        out._cap = np.minimum(int(n), size)
        out._total = int(out._cap.sum())
        # parts of one size (N:M windows): their members as a (parts, size) table, ids ascending in a row, so that
        # pick ranks every part at once (p*K single-weight groups per layer; a global sort each IHT step was slow)
        out._members = (np.argsort(lab, kind="stable").reshape(size.size, -1)
                        if self.partition is not None and np.all(size == size[0]) else None)
        return out

    @property
    def total(self) -> int:
        """The most groups a feasible support holds."""
        return self._total

    def counts(self, S) -> np.ndarray:
        return np.bincount(self._lab[np.asarray(S, dtype=np.int64)], minlength=self._cap.size)

    def feasible(self, S) -> bool:
        return bool(np.all(self.counts(S) <= self._cap))

    def room(self, S) -> np.ndarray:
        """Per group: its part holds fewer than its capacity in S (so adding it keeps S feasible)."""
        return (self.counts(S) < self._cap)[self._lab]

    def pick(self, scores, m, base=(), exclude=None) -> np.ndarray:
        """Up to ``m`` groups outside ``base`` (and ``exclude``) with the largest scores (ties by lower id), such
        that ``base`` plus them stays feasible; sorted ids."""
        base = np.asarray(base, dtype=np.int64)
        out = base if exclude is None else np.union1d(base, np.asarray(exclude, dtype=np.int64))
        if not self.partitioned:
            return top_k(scores, min(int(m), self.total - base.size), out)
        s = np.asarray(scores, float)
        G = s.size
        free = np.ones(G, dtype=bool)
        free[out] = False
        if self._members is not None:
            return self._pick_equal_parts(s, free, m, base)
        order = np.lexsort((np.arange(G), -s))
        order = order[free[order]]
        part = self._lab[order]
        pos = np.argsort(part, kind="stable")  # score order kept inside each part
        sp = part[pos]
        rank = np.empty(order.size, dtype=np.int64)
        rank[pos] = np.arange(order.size) - np.searchsorted(sp, sp, side="left")
        left = self._cap - self.counts(base)
        return np.sort(order[rank < left[part]][: max(int(m), 0)])

    def _pick_equal_parts(self, s, free, m, base) -> np.ndarray:
        """``pick`` over parts of one size: the same picks (best scores of each part up to its room, ties by lower
        id, then the best ``m`` of those overall), ranked per row of the members table."""
        mem = self._members
        # per part: free groups first, then by score descending; lexsort is stable, so ties keep the lower id
        sm = s[mem]
        rank = (np.argsort(-sm, axis=1, kind="stable") if free.all() else
                np.lexsort((-sm, ~free[mem]), axis=-1))
        left = (self._cap - self.counts(base))[:, None]
        ids = np.take_along_axis(mem, rank, axis=1)
        chosen = ids[(np.arange(mem.shape[1])[None, :] < left) & free[ids]]
        if chosen.size > max(int(m), 0):
            chosen = chosen[np.lexsort((chosen, -s[chosen]))[: max(int(m), 0)]]
        sel = np.zeros(s.size, dtype=bool)  # sorted ids in O(G): cheaper than sorting them
        sel[chosen] = True
        return np.flatnonzero(sel)

    def swap_ok(self, S, drop, add) -> np.ndarray:
        """(len(drop), len(add)) bool: S - {j} + {g} is feasible (same part, or g's part has room in S)."""
        drop, add = np.asarray(drop, dtype=np.int64), np.asarray(add, dtype=np.int64)
        if not self.partitioned:
            return np.ones((drop.size, add.size), dtype=bool)
        return (self._lab[drop][:, None] == self._lab[add][None, :]) | self.room(S)[add][None, :]


def top_k(scores, k, exclude=None) -> np.ndarray:
    """Ids of the k largest scores (ties broken by lower id), ignoring ``exclude``; sorted."""
    s = np.asarray(scores, float).copy()
    if exclude is not None and len(exclude):
        s[np.asarray(exclude, dtype=np.int64)] = -np.inf
    k = min(int(k), s.size)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    idx = np.argpartition(-s, k - 1)[:k] if k < s.size else np.arange(s.size)
    return np.sort(idx[np.argsort(-s[idx], kind="stable")][:k])


class BudgetProblem:
    """Solver-side view of a budgeted problem (see module docstring).  Groups are those of the user (intercept
    excluded: an intercept is always fitted when the loss has one)."""

    def __init__(self, loss, groups, refit_ridge: float | None = None):
        if not isinstance(loss, (LeastSquares, Logistic, Multinomial, GramLeastSquares)):
            raise ValueError(f"loss: expected LeastSquares, Logistic, Multinomial or GramLeastSquares, got "
                             f"{type(loss).__name__}")
        self.loss = loss
        self.prob = Problem(loss, None, groups)  # expands feature groups over K outputs, checks coverage
        self.groups = self.prob.user_groups
        self.G = self.groups.n_groups
        self.K = loss.n_outputs
        self.n_rows = loss.n_rows
        self.p = loss.n_features
        self.gram = isinstance(loss, GramLeastSquares)
        self.quadratic = isinstance(loss, (GramLeastSquares, LeastSquares))
        if self.gram:
            self.xp = loss.xp
            self.device = _device(loss.H)
            self.dtype = loss.H.dtype
        else:
            self.xp = namespace(np.zeros(1))
            self.device = None
            self.dtype = np.float64
        # GLM refits add a tiny ridge so that separable data still has a finite refit (Newton, refit.py)
        self.refit_ridge = (0.0 if self.quadratic else 1e-8) if refit_ridge is None else float(refit_ridge)
        self._layout()
        self._phi = None
        self._lip = None
        self.n_refits = 0
        self.deadline = None  # perf_counter() time past which the search loops stop (select's max_time)
        self.budget = None  # select's bound Budget (a partition budget changes what the methods may add and swap)
        self.info = {}  # what a method reports beyond (W, S, value, n_iter): select adds it to Solution.info
        self.timed_out = False

    # ------------------------------------------------------------------ layout
    def _layout(self):
        g = self.groups
        K = self.K
        sizes = g.sizes
        smax = int(sizes.max())
        # padded gather indices into the flat (n_rows*K) coefficients; padding points at one extra zero slot
        pad = self.n_rows * K
        gidx = np.full((self.G, smax), pad, dtype=np.int64)
        # group i's sorted indices are order[indptr[i]:indptr[i+1]]: one scatter, not a loop over the groups
        gidx[np.repeat(np.arange(self.G), sizes), np.arange(g.order.size) - np.repeat(g.indptr[:-1], sizes)] = g.order
        self._gidx_np = gidx
        self._gidx = self.asarray(gidx.ravel(), integer=True)
        self.equal_sizes = bool(np.all(sizes == smax))
        # rectangles: group = rows x cols of the (p, K) matrix (feature groups, tiles, N:M groups all are)
        rows, cols, rect = [], [], True
        single = np.zeros(1, dtype=np.int64)
        if K > 1 and self.equal_sizes:  # one vectorized pass (N:M's single weights are p*K groups)
            R, C, rect = _rect_layout(gidx, K, self.n_rows)
        else:
            for idx in (g.indices if K > 1 else ()):
                r, c = np.unique(idx // K), np.unique(idx % K)
                if r.size * c.size != idx.size:
                    rect = False
                    break
                rows.append(r)
                cols.append(c)
            if K == 1:  # every group is a column of rows: no per-group analysis needed
                rows, cols = list(g.indices), [single] * self.G
            if rect:
                rmax = max(r.size for r in rows)
                cmax = max(c.size for c in cols)
                R = np.full((self.G, rmax), self.n_rows, dtype=np.int64)  # pad row: an extra zero row
                C = np.full((self.G, cmax), K, dtype=np.int64)            # pad col: an extra zero column
                for i, (r, c) in enumerate(zip(rows, cols)):
                    R[i, : r.size] = r
                    C[i, : c.size] = c
        self.rect = rect
        if rect:
            self._rows_np, self._cols_np = R, C
            self._rows = self.asarray(R, integer=True)
            self._cols = self.asarray(C, integer=True)
        # coefficient mask of each group, host side, for supports -> masks
        self._label = g.label  # flat coef -> group
        self.fixed_rows = np.array([self.p], dtype=np.int64) if self.loss.fit_intercept else np.zeros(0, np.int64)

    def time_up(self) -> bool:
        """True once past ``deadline`` (and remembered in ``timed_out``): each method's loops check it per step."""
        if self.deadline is not None and time.perf_counter() >= self.deadline:
            self.timed_out = True
        return self.timed_out

    def asarray(self, a, integer=False):
        xp = self.xp
        if self.gram:
            dt = xp.int64 if integer else self.dtype
            return xp.asarray(np.ascontiguousarray(a), dtype=dt, device=self.device)
        return np.asarray(a, dtype=np.int64 if integer else float)

    # ------------------------------------------------------------------ loss
    def zeros(self):
        if self.gram:
            return self.xp.zeros((self.n_rows, self.K), dtype=self.dtype, device=self.device)
        return np.zeros((self.n_rows, self.K))

    def _state(self, W):
        """The loss's state (X W, or H W) computed from the nonzero rows only: supports are small."""
        if self.gram:
            return self.loss.init_state(W)
        rows = np.flatnonzero(np.any(W != 0, axis=1))
        if rows.size * 4 >= self.n_rows:
            return self.loss.init_state(W)
        return self.loss.restrict_rows(rows).init_state(W[rows])

    def value(self, W) -> float:
        return float(self.loss.state_value(self._state(W), W))

    def grad(self, W):
        return self.loss.full_grad(self._state(W), W)

    def value_grad(self, W):
        st = self._state(W)
        return float(self.loss.state_value(st, W)), self.loss.full_grad(st, W)

    @property
    def lipschitz(self) -> float:
        """Global Lipschitz constant of the gradient (the safe IHT step is its inverse)."""
        if self._lip is None:
            L = float(self.loss.global_lipschitz()) if self.gram else _glm_lipschitz(self.loss)
            self._lip = max(L, 1e-300)  # X = 0: the gradient is 0 and any step is exact
        return self._lip

    # ------------------------------------------------------------------ groups
    def _gather(self, M):
        """(G, smax) blocks of M (padded with zeros)."""
        xp = self.xp
        flat = xp.reshape(M, (-1,))
        ext = xp.concat([flat, xp.zeros(1, dtype=flat.dtype, device=self.device) if self.gram
                         else np.zeros(1)])
        return xp.reshape(xp.take(ext, self._gidx), self._gidx_np.shape)

    def group_sq(self, M) -> np.ndarray:
        """Squared Euclidean norm of every group of M, as a host float64 array (G,)."""
        blocks = self._gather(M)
        return to_numpy(self.xp.sum(blocks * blocks, axis=1)).astype(float)

    def group_dot(self, A, B) -> np.ndarray:
        """<A_g, B_g> for every group (host float64 (G,))."""
        return to_numpy(self.xp.sum(self._gather(A * B), axis=1)).astype(float)

    def expand(self, per_group):
        """One value per group to the (n_rows, K) coefficient layout (intercept row: 0), in the loss's array type."""
        full = np.zeros(self.n_rows * self.K)
        full[: self.p * self.K] = np.asarray(per_group, float)[self._label]
        full = full.reshape(self.n_rows, self.K)
        return self.asarray(full) if self.gram else full

    def mask_np(self, S) -> np.ndarray:
        """Host boolean (n_rows, K) mask of the coefficients of groups S (plus the intercept row)."""
        sel = np.zeros(self.G + 1, dtype=bool)
        sel[np.asarray(S, dtype=np.int64)] = True
        m = np.zeros(self.n_rows * self.K, dtype=bool)
        m[: self.p * self.K] = sel[self._label]
        m = m.reshape(self.n_rows, self.K)
        if self.fixed_rows.size:
            m[self.fixed_rows] = True
        return m

    def mask(self, S):
        m = self.mask_np(S)
        if self.gram:
            return self.xp.asarray(m, dtype=self.dtype, device=self.device)
        return m.astype(float)

    def top(self, scores, k, exclude=None) -> np.ndarray:
        """Ids of the k largest scores (ties broken by lower id), ignoring ``exclude``."""
        return top_k(scores, k, exclude)

    def budget_for(self, k) -> Budget:
        """The budget a method searches under for its k: ``select``'s partition budget when it was given one (its
        total is k), else at most k groups overall."""
        if self.budget is not None and self.budget.partitioned:
            if k != self.budget.total:
                raise ValueError(f"k: {k} groups asked of a partition budget that holds {self.budget.total}")
            return self.budget
        return Budget(int(k)).bind(self.G)

    def project(self, V, k):
        """H_k(V): the best feasible support of k groups by norm (``budget_for(k)``; top k without a partition)
        and the intercept row.  Returns (V masked, support)."""
        S = self.budget_for(k).pick(self.group_sq(V), k)
        return V * self.mask(S), S

    # ------------------------------------------------------------------ curvature blocks (sacrifices)
    def _phi_blocks(self):
        """Phi_g (rows_g x rows_g) per group and its inverse, padded with identity (rectangular groups)."""
        if self._phi is not None:
            return self._phi
        loss = self.loss
        R = self._rows_np
        G, r = R.shape
        valid = R < self.n_rows
        if self.gram:
            xp = self.xp
            Hext = xp.concat([xp.concat([loss.H, xp.zeros((self.p, 1), dtype=self.dtype, device=self.device)], axis=1),
                              xp.zeros((1, self.p + 1), dtype=self.dtype, device=self.device)], axis=0)
            Rt = self._rows
            Phi = Hext[Rt[:, :, None], Rt[:, None, :]]
            Phi = xp.astype(Phi, xp.float64)
            eye = xp.eye(r, dtype=xp.float64, device=self.device)
            V = xp.asarray(valid, dtype=xp.float64, device=self.device)
            Phi = Phi + loss.ridge * eye * V[:, :, None] + eye * (1.0 - V)[:, :, None]
        else:
            X = loss.X
            n = loss.n_samples
            # unique row sets share one block (all classes of a feature group, all tiles of a row block)
            if self.K == 1:  # one output: every group has its own rows
                uniq, inv = R, np.arange(G)
            else:
                uniq, inv = np.unique(R, axis=0, return_inverse=True)
                inv = np.asarray(inv).ravel()
            blocks = loss.curvature * _block_grams(X, uniq) / n
            vu = (uniq < self.n_rows).astype(float)
            blocks += loss.ridge * np.eye(r) * vu[:, :, None] + np.eye(r) * (1.0 - vu)[:, :, None]
            Phi = blocks[inv]
            V = valid.astype(float)
        xp = self.xp
        # a pseudo-inverse-like regularised inverse: groups with collinear columns still get finite scores
        tr = xp.sum(xp.linalg.diagonal(Phi) if hasattr(xp.linalg, "diagonal") else
                    xp.stack([Phi[:, i, i] for i in range(r)], axis=1), axis=1)
        eps = 1e-10 * tr / r + 1e-300
        eye = xp.eye(r, dtype=Phi.dtype, device=self.device) if self.gram else np.eye(r)
        Pinv = xp.linalg.inv(Phi + eps[:, None, None] * eye)
        self._phi = (Phi, Pinv)
        return self._phi

    def _blocks3(self, M):
        """(G, r, c) rectangles of M (padding rows/cols read zeros)."""
        xp = self.xp
        if self.gram:
            Mx = xp.concat([M, xp.zeros((self.n_rows, 1), dtype=M.dtype, device=self.device)], axis=1)
            Mx = xp.concat([Mx, xp.zeros((1, self.K + 1), dtype=M.dtype, device=self.device)], axis=0)
            Mx = xp.astype(Mx, xp.float64)
        else:
            Mx = np.zeros((self.n_rows + 1, self.K + 1))
            Mx[: self.n_rows, : self.K] = M
        return Mx[self._rows[:, :, None], self._cols[:, None, :]]

    def backward(self, W) -> np.ndarray:
        """Loss increase from zeroing each group, to second order: 1/2 tr(W_g^T Phi_g W_g)."""
        if not self.rect:
            return 0.5 * self._scalar_lips() * self.group_sq(W)
        Phi, _ = self._phi_blocks()
        B = self._blocks3(W)
        return 0.5 * to_numpy(self.xp.sum(B * (Phi @ B), axis=(1, 2))).astype(float)

    def forward(self, D) -> np.ndarray:
        """Loss decrease from adding each group alone at gradient D, to second order: 1/2 tr(D_g^T Phi_g^-1 D_g)."""
        if not self.rect:
            return 0.5 * self.group_sq(D) / self._scalar_lips()
        _, Pinv = self._phi_blocks()
        B = self._blocks3(D)
        return 0.5 * to_numpy(self.xp.sum(B * (Pinv @ B), axis=(1, 2))).astype(float)

    def _scalar_lips(self):
        if not hasattr(self, "_slips"):
            self._slips = np.array([max(self.loss.lipschitz_rows(r), 1e-300)
                                    for r in self.prob.rows[: self.G]])
        return self._slips

    # ------------------------------------------------------------------ refit and results
    def refit(self, S, W0=None):
        """Exact minimiser of the loss over the coefficients of groups S.  Returns (W, value)."""
        from .refit import refit
        self.n_refits += 1
        return refit(self, np.asarray(S, dtype=np.int64), W0)

    def stationarity(self, W, S) -> float:
        """Largest gradient norm over the selected groups (0 at an exact refit): the 'kkt' certificate."""
        S = np.asarray(S, dtype=np.int64)
        if S.size == 0:
            return 0.0
        return float(np.sqrt(self.group_sq(self.grad(W))[S].max()))

    def solution(self, W, S, value, n_iter, method, converged=True, lower_bound=None, history=None, **info):
        """A ``Solution`` with numpy coefficients; the native array goes to ``info['coef_native']``."""
        S = np.sort(np.asarray(S, dtype=np.int64))
        Wn = to_numpy(W).astype(float)
        coef = Wn[: self.p].ravel().copy()
        icpt = Wn[self.p].copy() if self.loss.fit_intercept else None
        if lower_bound is None:
            cert, kind = self.stationarity(W, S), "kkt"
        else:
            cert, kind = max(float(value) - float(lower_bound), 0.0), "bound_gap"
        info = dict(info, method=method, coef_native=W[: self.p] if self.gram else None, n_refits=self.n_refits)
        # which certificate this Solution carries: 'none', a proven 'lower_bound' (relative gap), or 'optimal'
        # (gap within the method's gap_tol: 'exact' has lower bound = value, 'bnb' its own tolerance)
        info["gap"] = None if lower_bound is None else cert / max(abs(float(value)), 1e-300)
        info["certified"] = ("none" if lower_bound is None else
                             "optimal" if info["gap"] <= info.get("gap_tol", 0.0) + 1e-11 else "lower_bound")  # + rounding
        if self.gram:
            info["coef_native"] = self.xp.reshape(W[: self.p], (-1,))
        return Solution(coef, icpt, S, float(value), float(cert), kind, bool(converged), int(n_iter),
                        None, lower_bound if lower_bound is None else float(lower_bound),
                        history=history or [], info=info)


def _unique_rows(A, pad):
    """Per row of the int array A (G, s): its distinct values ascending, left-justified, padded with ``pad`` (> every
    value), trimmed to the widest row; and the count of distinct values per row."""
    A = np.sort(A, axis=1)
    dup = np.zeros(A.shape, dtype=bool)
    dup[:, 1:] = A[:, 1:] == A[:, :-1]
    A = np.sort(np.where(dup, pad, A), axis=1)
    n = A.shape[1] - dup.sum(axis=1)
    return A[:, : int(n.max())], n


def _rect_layout(gidx, K, n_rows):
    """(rows (G, rmax) padded with n_rows, columns (G, cmax) padded with K, all rectangles?) of equal-size groups
    given by their flat indices ``gidx`` (G, s) into the row-major (p, K) coefficients."""
    R, nr = _unique_rows(gidx // K, n_rows)
    C, nc = _unique_rows(gidx % K, K)
    return R, C, bool(np.all(nr * nc == gidx.shape[1]))


def _block_grams(X, R):
    """(U, r, r) Gram blocks X[:, R_u]^T X[:, R_u] for the padded column sets R (U, r); index X.shape[1] reads a
    zero column.  A sparse X stays sparse: entry (a, b) of every block is one column-wise product of two gathers,
    O(r^2 nnz) work and O(U r^2) memory, where densifying would cost n x p."""
    import scipy.sparse as sp
    n, m = X.shape
    if not sp.issparse(X):
        Xpad = np.concatenate([X, np.zeros((n, 1))], axis=1)
        X3 = np.ascontiguousarray(np.transpose(Xpad[:, R], (1, 2, 0)))  # (U, r, n)
        return X3 @ np.swapaxes(X3, 1, 2)  # batched BLAS
    Xpad = sp.hstack([X, sp.csc_matrix((n, 1))], format="csc")
    cols = [Xpad[:, R[:, a]] for a in range(R.shape[1])]
    U, r = R.shape
    out = np.empty((U, r, r))
    for a in range(r):
        for b in range(a, r):
            v = np.asarray(cols[a].multiply(cols[b]).sum(axis=0)).ravel()
            out[:, a, b] = out[:, b, a] = v
    return out


def _device(a):
    import array_api_compat
    return array_api_compat.device(a)


def _glm_lipschitz(loss) -> float:
    """curvature * ||X||_2^2 / n + ridge by Lanczos (a dense SVD of X is needlessly slow); the 1e-6 relative
    margin covers Lanczos' tolerance, so 1/L stays a safe (descent) step."""
    from scipy.sparse.linalg import LinearOperator, eigsh
    X = loss.X
    n, m = X.shape
    if min(n, m) <= 64:
        s2 = float(np.linalg.eigvalsh(np.asarray((X.T @ X).toarray() if hasattr(X, "toarray") else X.T @ X))[-1])
    else:
        op = LinearOperator((m, m), matvec=lambda v: X.T @ (X @ v), dtype=float)
        s2 = float(eigsh(op, k=1, which="LA", tol=1e-10, return_eigenvectors=False,
                         v0=np.ones(m))[0]) * (1 + 1e-6)
    return loss.curvature * s2 / loss.n_samples + loss.ridge
