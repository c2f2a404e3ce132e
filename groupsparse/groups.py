"""Groups: a partition of coefficient indices into disjoint, non-empty groups.

One class serves the regression core (feature groups), multinomial problems (a group may span classes) and the
torch bridge (B x B tiles and N:M groups of weight matrices).  Indices refer to the flat coefficient vector.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._validation import _as_array, _is_bool, check_finite_array, check_index_set, check_positive_int

__all__ = ["Groups", "as_groups"]


@dataclass(frozen=True, eq=False)
class Groups:
    """A partition of ``range(n_features)`` into groups, held in CSR form (one flat index array and pointers), so
    that millions of single-weight groups (N:M over an LLM layer) cost a few arrays, not a Python object each.

    Attributes
    ----------
    weights : float array (n_groups,), the penalty multiplier of each group; default sqrt(group size).
        A weight of 0 marks an unpenalized group (an intercept, say).
    order, indptr : group g is ``order[indptr[g]:indptr[g + 1]]`` (sorted within each group); ``groups[g]``.
    label : the group id of each coefficient.
    indices : tuple of int arrays, one per group (views of ``order``, built on first use).
    """

    weights: np.ndarray
    n_features: int
    order: np.ndarray = field(repr=False)
    indptr: np.ndarray = field(repr=False)
    label: np.ndarray = field(repr=False)  # group id of each coefficient
    _views: list = field(default_factory=list, repr=False)  # the cached ``indices`` (empty until asked for)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_indices(cls, indices, n_features=None, weights=None) -> "Groups":
        """Build from a list of index lists.  Groups must be non-empty, disjoint and cover ``range(n_features)``."""
        if isinstance(indices, (str, bytes)) or not hasattr(indices, "__len__"):
            raise ValueError(f"groups: expected a list of index lists, got {indices!r}")
        idx = [_index_list(g, i) for i, g in enumerate(indices)]
        if len(idx) == 0:
            raise ValueError("groups: at least one group is required, got none")
        sizes = np.fromiter((g.size for g in idx), dtype=np.int64, count=len(idx))
        return cls._from_flat(np.concatenate(idx), sizes, n_features, weights)

    @classmethod
    def _from_flat(cls, flat, sizes, n_features=None, weights=None, checked=False) -> "Groups":
        """Groups of ``sizes`` consecutive entries of ``flat`` (any order within a group): every check of
        ``from_indices``, vectorised.  ``checked``: ``flat`` is known to be a partition sorted within groups."""
        flat = np.asarray(flat, dtype=np.int64)
        sizes = np.asarray(sizes, dtype=np.int64)
        if not checked:
            empty = np.flatnonzero(sizes == 0)
            if empty.size:
                raise ValueError(f"groups: group {int(empty[0])} is empty; every group needs at least one index")
        if n_features is None:
            n_features = int(flat.max()) + 1
        n_features = check_positive_int(n_features, "n_features")
        G = sizes.size
        indptr = np.concatenate([[0], np.cumsum(sizes)])
        seg = np.repeat(np.arange(G, dtype=np.int64), sizes)
        if not checked:
            if flat.min() < 0 or flat.max() >= n_features:
                raise ValueError(f"groups: indices must lie in [0, n_features={n_features}), got range "
                                 f"[{flat.min()}, {flat.max()}]")
            counts = np.bincount(flat, minlength=n_features)
            if np.any(counts > 1):
                dup = np.flatnonzero(counts > 1)[:5].tolist()
                raise ValueError(f"groups: groups overlap; indices {dup} belong to more than one group "
                                 "(overlapping groups are not supported)")
            if np.any(counts == 0):
                miss = np.flatnonzero(counts == 0)[:5].tolist()
                raise ValueError(f"groups: indices {miss} belong to no group; groups must cover all "
                                 f"{n_features} features (give them their own groups, with weight 0 if unpenalized)")
            inner = np.diff(flat) < 0  # a descent inside a group: sort within groups (one lexsort, not G sorts)
            inner[indptr[1:-1] - 1] = False
            if inner.any():
                flat = flat[np.lexsort((flat, seg))]
        flat.setflags(write=False)  # the groups' index views share it
        label = np.empty(n_features, dtype=np.int64)
        label[flat] = seg
        return cls(_group_weights(weights, sizes), int(n_features), flat, indptr, label)

    @classmethod
    def from_sizes(cls, sizes, weights=None) -> "Groups":
        """Consecutive groups of the given sizes: ``from_sizes([2, 3])`` is {0,1}, {2,3,4}."""
        s = _as_array(sizes, "sizes")
        if s.ndim != 1:
            raise ValueError(f"sizes: expected a 1-D list of group sizes, got shape {s.shape}")
        if s.size == 0:
            raise ValueError("sizes: at least one group size is required")
        if s.dtype.kind not in "iu":  # 2.5 would be truncated, True read as 1
            raise ValueError(f"sizes: group sizes must be integers, got {s[:5].tolist()}")
        s = s.astype(np.int64)
        if np.any(s <= 0):
            raise ValueError(f"sizes: group sizes must be >= 1, got {s[s <= 0][:5].tolist()}")
        n = int(s.sum())
        return cls._from_flat(np.arange(n, dtype=np.int64), s, n, weights, checked=True)

    @classmethod
    def from_labels(cls, labels, weights=None) -> "Groups":
        """One group per distinct label, in order of the sorted labels; columns may come in any order."""
        lab = _as_array(labels, "labels")
        if lab.ndim != 1:
            raise ValueError(f"labels: expected one label per feature (1-D), got shape {lab.shape}")
        if lab.size == 0:
            raise ValueError("labels: at least one label is required")
        if lab.dtype.kind == "f" and not np.all(np.isfinite(lab)):  # np.unique gives each NaN its own group
            raise ValueError("labels: contains NaN or inf")
        if lab.dtype.kind not in "biuUS":
            if lab.dtype.kind != "f" or not np.all(lab == np.round(lab)):
                raise ValueError(f"labels: expected integer or string labels, got dtype {lab.dtype} "
                                 f"({lab[:5].tolist()})")
        uniq, inv = np.unique(lab, return_inverse=True)
        order = np.argsort(inv.ravel(), kind="stable")  # stable: sorted within each group
        return cls._from_flat(order, np.bincount(inv.ravel(), minlength=uniq.size), lab.size, weights, checked=True)

    @classmethod
    def block_tiling(cls, shape, block, weights=None) -> "Groups":
        """The tiles of a row-major ``shape = (rows, cols)`` matrix by blocks ``block = (br, bc)`` (or one int B).

        Group ``i * (cols // bc) + j`` holds tile (i, j), i.e. rows i*br..(i+1)*br-1 and columns j*bc..(j+1)*bc-1
        of the matrix, as indices into ``matrix.ravel()``.  Blocks must tile the shape exactly; pad first otherwise.
        """
        rows, cols = _int_pair(shape, "shape", pair_only=True)
        br, bc = _int_pair(block, "block")
        if rows % br or cols % bc:
            raise ValueError(f"block: {br}x{bc} blocks do not tile a {rows}x{cols} matrix "
                             f"({rows} % {br} = {rows % br}, {cols} % {bc} = {cols % bc}); pad the matrix first")
        grid = np.arange(rows * cols).reshape(rows // br, br, cols // bc, bc).transpose(0, 2, 1, 3)
        G = (rows // br) * (cols // bc)  # row-major within a tile: each group's indices ascend
        return cls._from_flat(grid.reshape(-1), np.full(G, br * bc, dtype=np.int64), rows * cols, weights,
                              checked=True)

    # ------------------------------------------------------------------ properties
    @property
    def indices(self) -> tuple:
        """One index array per group (read-only views of ``order``), built on first use."""
        if not self._views:
            self._views.append(tuple(np.split(self.order, self.indptr[1:-1])))
        return self._views[0]

    @property
    def n_groups(self) -> int:
        return self.indptr.size - 1

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.indptr)

    def __len__(self) -> int:
        return self.n_groups

    def __iter__(self):
        return iter(self.indices)

    def __getitem__(self, g):
        if isinstance(g, (int, np.integer)) and not _is_bool(g):
            g = int(g) + (self.n_groups if g < 0 else 0)
            if not 0 <= g < self.n_groups:
                raise IndexError(f"group index out of range: {g} of {self.n_groups} groups")
            return self.order[self.indptr[g]:self.indptr[g + 1]]
        return self.indices[g]

    def __repr__(self) -> str:
        s = self.sizes
        return (f"Groups(n_groups={self.n_groups}, n_features={self.n_features}, "
                f"sizes={s.min()}..{s.max()})")

    @property
    def is_contiguous(self) -> bool:
        """True when the groups are consecutive index ranges in order (no permutation needed)."""
        return bool(np.array_equal(self.order, np.arange(self.n_features)))

    # ------------------------------------------------------------------ vectorized helpers
    def norms(self, beta) -> np.ndarray:
        """Euclidean norm of every group of a flat vector ``beta``."""
        b = np.asarray(beta, dtype=float)[self.order]
        return np.sqrt(np.add.reduceat(b * b, self.indptr[:-1]))

    def expand(self, per_group) -> np.ndarray:
        """Broadcast one value per group to one value per coefficient (in the original index order)."""
        return np.asarray(per_group)[self.label]

    def support(self, beta, tol: float = 0.0) -> np.ndarray:
        """Indices of the groups whose norm exceeds ``tol``."""
        return np.flatnonzero(self.norms(beta) > tol)

    def mask(self, selected) -> np.ndarray:
        """Boolean coefficient mask of the given group ids."""
        m = np.zeros(self.n_groups, dtype=bool)
        m[check_index_set(selected, "selected", self.n_groups)] = True  # -1 would wrap to the last group
        return m[self.label]

    def columns(self, selected) -> np.ndarray:
        """Sorted coefficient indices covered by the given group ids."""
        sel = check_index_set(selected, "selected", self.n_groups)
        m = np.zeros(self.n_groups, dtype=bool)
        m[sel] = True
        return np.flatnonzero(m[self.label])

    def subset(self, selected) -> "Groups":
        """The given groups, reindexed onto their own columns (in the order of ``columns(selected)``)."""
        cols = self.columns(selected)
        pos = np.full(self.n_features, -1, dtype=np.int64)
        pos[cols] = np.arange(cols.size)
        sel = _as_array(selected, "selected").ravel().astype(np.int64)  # checked by columns; order kept
        return Groups._from_flat(pos[self.order[self._gather(sel)]], self.sizes[sel], cols.size,
                                 self.weights[sel], checked=True)

    def with_weights(self, weights) -> "Groups":
        return Groups(_group_weights(weights, self.sizes), self.n_features, self.order, self.indptr, self.label)

    def _gather(self, sel):
        """Positions in ``order`` of the groups ``sel``, concatenated in that order."""
        sz = self.sizes[sel]
        return np.repeat(self.indptr[sel] - (np.cumsum(sz) - sz), sz) + np.arange(int(sz.sum()))

    def append(self, size: int, weight: float = 0.0) -> "Groups":
        """A copy with one more group of ``size`` new trailing indices (e.g. an unpenalized intercept)."""
        size = check_positive_int(size, "size")
        new = np.arange(self.n_features, self.n_features + size)
        return Groups._from_flat(np.concatenate([self.order, new]), np.append(self.sizes, size),
                                 self.n_features + size, np.append(self.weights, weight), checked=True)

    def expand_outputs(self, n_outputs: int) -> "Groups":
        """Feature groups to coefficient groups of a (n_features, n_outputs) matrix flattened row-major:
        each group takes its features' rows across all outputs (the usual multi-task / multinomial grouping)."""
        K = check_positive_int(n_outputs, "n_outputs")
        if K == 1:
            return self
        return Groups._from_flat((self.order[:, None] * K + np.arange(K)).ravel(), self.sizes * K,
                                 self.n_features * K, self.weights * np.sqrt(K), checked=True)


def _group_weights(weights, sizes):
    """The group weights, read-only: sqrt(size) by default, else finite, >= 0, one per group (named ``weights``)."""
    if weights is None:
        w = np.sqrt(sizes.astype(float))
    else:
        w = _as_array(weights, "weights")
        if w.ndim > 1 or w.size != sizes.size:
            raise ValueError(f"weights: expected {sizes.size} group weights (one per group), got shape {w.shape}")
        w = check_finite_array(w.ravel(), "weights", ndim=(1,)).copy()
        if np.any(w < 0):
            raise ValueError(f"weights: group weights must be >= 0 (0 leaves a group unpenalized), got "
                             f"{w[w < 0][:5].tolist()}")
    w.setflags(write=False)
    return w


def _index_list(g, i):
    """Group ``i`` of ``from_indices``: a 1-D list of integer indices."""
    arr = _as_array(g, f"groups: group {i}")
    if arr.ndim > 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise ValueError(f"groups: group {i} must be a list of integer indices, got {g!r}"[:200])
    return arr.ravel().astype(np.int64)


def _int_pair(v, name, pair_only=False):
    """(a, b) of positive ints from a pair, or (v, v) from one int (a block side)."""
    vals = (v, v) if (isinstance(v, (int, np.integer)) and not pair_only) else v
    try:
        vals = tuple(vals)
    except TypeError:
        vals = ()
    what = "(rows, cols)" if pair_only else "one int or a pair (rows, cols)"
    if len(vals) != 2:
        raise ValueError(f"{name}: expected {what} of positive integers, got {v!r}")
    for x in vals:
        if _is_bool(x) or not isinstance(x, (int, np.integer)) or x <= 0:
            raise ValueError(f"{name}: expected {what} of positive integers, got {v!r}")
    return int(vals[0]), int(vals[1])


GROUPS_RULE = ("a Groups; an int s (consecutive groups of s features); one label per feature (length n_features); "
               "a list of group sizes (consecutive groups, summing to n_features, any other length); or a list of "
               "index lists")


def as_groups(groups, n_features: int) -> Groups:
    """The ``groups`` argument of ``solve``, ``select`` and the estimators, read by one rule:

    - a ``Groups``: used as is;
    - an int ``s`` >= 1: consecutive groups of ``s`` features (``s`` must divide ``n_features``);
    - a flat sequence of length ``n_features``: one label per feature (any ints or strings; columns in any order),
      as scikit-learn's ``groups`` are labels;
    - a flat sequence of positive ints of any other length: consecutive group sizes, summing to ``n_features``;
    - a sequence of sequences: the index lists of the groups (``Groups.from_indices``).

    The one input that fits two readings, ``[1] * n_features`` (sizes: one group per feature; labels: a single
    group), is refused with an error that says how to write either.  Anything else is refused naming ``groups``.
    """
    n_features = check_positive_int(n_features, "n_features")
    if isinstance(groups, Groups):
        g = groups
    elif groups is None:
        raise ValueError(f"groups: required: {GROUPS_RULE}")
    elif isinstance(groups, (int, np.integer)) and not _is_bool(groups):
        size = int(groups)
        if size <= 0 or n_features % size:
            raise ValueError(f"groups: an int means consecutive groups of that size and must divide n_features="
                             f"{n_features}, got {groups}")
        g = Groups.from_sizes([size] * (n_features // size))
    elif hasattr(groups, "__len__") and not isinstance(groups, (str, bytes, dict, set, frozenset)):
        g = _groups_from_sequence(groups, n_features)
    else:  # floats (2.5 is no group size), bools, strings, unordered containers
        raise ValueError(f"groups: expected {GROUPS_RULE}; got {groups!r}")
    if g.n_features != n_features:
        raise ValueError(f"groups: cover {g.n_features} features but X has {n_features} columns")
    return g


def _groups_from_sequence(groups, n):
    items = list(groups)
    if len(items) == 0:
        raise ValueError(f"groups: is empty; expected {GROUPS_RULE}")
    nested = [hasattr(v, "__len__") and not isinstance(v, (str, bytes)) and np.asarray(v, object).ndim > 0
              for v in items]
    if all(nested):
        return Groups.from_indices(items, n)
    if any(nested):
        raise ValueError("groups: mixes lists and scalars; give one label per feature, a list of sizes, or a "
                         "list of index lists")
    arr = _as_array(items, "groups")
    if arr.dtype.kind == "b":
        raise ValueError("groups: booleans are neither group labels nor group sizes (a mask is not a grouping)")
    if arr.size == n:
        if n > 1 and arr.dtype.kind in "iu" and np.all(arr == 1):
            raise ValueError(f"groups: [1] * {n} reads both as {n} group sizes of 1 and as one label shared by "
                             f"all features; write groups=1 (one group per feature) or "
                             f"groups=Groups.from_labels(labels) / groups={n} (a single group)")
        try:
            return Groups.from_labels(arr)
        except ValueError as e:
            raise ValueError(f"groups: read as one label per feature: {e}") from None
    if arr.dtype.kind not in "iu":
        raise ValueError(f"groups: {arr.size} entries for {n} features: not one label per feature, and group "
                         f"sizes must be positive integers, got {arr[:5].tolist()}")
    if np.any(arr <= 0):
        raise ValueError(f"groups: read as group sizes ({arr.size} entries for {n} features); group sizes must be "
                         f">= 1, got {arr[arr <= 0][:5].tolist()}")
    if arr.sum() != n:
        raise ValueError(f"groups: cover {int(arr.sum())} features but X has {n} columns (read as {arr.size} "
                         f"group sizes; give sizes summing to {n}, or one label per feature)")
    return Groups.from_sizes(arr)
