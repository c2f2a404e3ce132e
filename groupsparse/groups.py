"""Groups: a partition of coefficient indices into disjoint, non-empty groups.

One class serves the regression core (feature groups), multinomial problems (a group may span classes) and the
torch bridge (B x B tiles and N:M groups of weight matrices).  Indices refer to the flat coefficient vector.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Groups"]


@dataclass(frozen=True, eq=False)
class Groups:
    """A partition of ``range(n_features)`` into groups.

    Attributes
    ----------
    indices : tuple of int arrays, one per group (sorted within each group).
    weights : float array (n_groups,), the penalty multiplier of each group; default sqrt(group size).
        A weight of 0 marks an unpenalized group (an intercept, say).
    """

    indices: tuple
    weights: np.ndarray
    n_features: int
    # Derived, cached: a permutation that makes groups contiguous, and the CSR-style pointers into it.
    order: np.ndarray = field(repr=False)
    indptr: np.ndarray = field(repr=False)
    label: np.ndarray = field(repr=False)  # group id of each coefficient

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_indices(cls, indices, n_features=None, weights=None) -> "Groups":
        """Build from a list of index lists.  Groups must be non-empty, disjoint and cover ``range(n_features)``."""
        idx = [np.asarray(g, dtype=np.int64).ravel() for g in indices]
        if len(idx) == 0:
            raise ValueError("groups: at least one group is required, got none")
        for i, g in enumerate(idx):
            if g.size == 0:
                raise ValueError(f"groups: group {i} is empty; every group needs at least one index")
        allidx = np.concatenate(idx)
        if n_features is None:
            n_features = int(allidx.max()) + 1
        if allidx.min() < 0 or allidx.max() >= n_features:
            raise ValueError(f"groups: indices must lie in [0, {n_features}), got range "
                             f"[{allidx.min()}, {allidx.max()}]")
        counts = np.bincount(allidx, minlength=n_features)
        if np.any(counts > 1):
            dup = np.flatnonzero(counts > 1)[:5].tolist()
            raise ValueError(f"groups: groups overlap; indices {dup} belong to more than one group "
                             "(overlapping groups are not supported)")
        if np.any(counts == 0):
            miss = np.flatnonzero(counts == 0)[:5].tolist()
            raise ValueError(f"groups: indices {miss} belong to no group; groups must cover all "
                             f"{n_features} features (give them their own groups, with weight 0 if unpenalized)")
        idx = tuple(np.sort(g) for g in idx)
        sizes = np.array([g.size for g in idx], dtype=np.int64)
        if weights is None:
            w = np.sqrt(sizes.astype(float))
        else:
            w = np.asarray(weights, dtype=float).ravel()
            if w.shape != (len(idx),):
                raise ValueError(f"weights: expected {len(idx)} group weights, got shape {w.shape}")
            if not np.all(np.isfinite(w)) or np.any(w < 0):
                raise ValueError("weights: group weights must be finite and >= 0")
        order = np.concatenate(idx)
        indptr = np.concatenate([[0], np.cumsum(sizes)])
        label = np.empty(n_features, dtype=np.int64)
        label[order] = np.repeat(np.arange(len(idx)), sizes)
        w.setflags(write=False)
        return cls(idx, w, int(n_features), order, indptr, label)

    @classmethod
    def from_sizes(cls, sizes, weights=None) -> "Groups":
        """Consecutive groups of the given sizes: ``from_sizes([2, 3])`` is {0,1}, {2,3,4}."""
        s = np.asarray(sizes).ravel()
        if s.size == 0:
            raise ValueError("sizes: at least one group size is required")
        if not np.issubdtype(s.dtype, np.integer) and not np.all(s == np.round(s)):
            raise ValueError(f"sizes: group sizes must be integers, got {s[:5]}")
        s = s.astype(np.int64)
        if np.any(s <= 0):
            raise ValueError(f"sizes: group sizes must be >= 1, got {s[s <= 0][:5].tolist()}")
        bounds = np.concatenate([[0], np.cumsum(s)])
        return cls.from_indices([np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:])],
                                int(bounds[-1]), weights)

    @classmethod
    def from_labels(cls, labels, weights=None) -> "Groups":
        """One group per distinct label, in order of the sorted labels; columns may come in any order."""
        lab = np.asarray(labels).ravel()
        if lab.size == 0:
            raise ValueError("labels: at least one label is required")
        uniq, inv = np.unique(lab, return_inverse=True)
        order = np.argsort(inv, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(inv, minlength=uniq.size))])
        return cls.from_indices([order[a:b] for a, b in zip(bounds[:-1], bounds[1:])], lab.size, weights)

    @classmethod
    def block_tiling(cls, shape, block, weights=None) -> "Groups":
        """The tiles of a row-major ``shape = (rows, cols)`` matrix by blocks ``block = (br, bc)`` (or one int B).

        Group ``i * (cols // bc) + j`` holds tile (i, j), i.e. rows i*br..(i+1)*br-1 and columns j*bc..(j+1)*bc-1
        of the matrix, as indices into ``matrix.ravel()``.  Blocks must tile the shape exactly; pad first otherwise.
        """
        if len(tuple(shape)) != 2:
            raise ValueError(f"shape: expected (rows, cols), got {shape!r}")
        rows, cols = (int(v) for v in shape)
        br, bc = (int(block), int(block)) if np.isscalar(block) else (int(v) for v in block)
        if rows <= 0 or cols <= 0:
            raise ValueError(f"shape: dimensions must be positive, got {shape!r}")
        if br <= 0 or bc <= 0:
            raise ValueError(f"block: block sides must be positive, got {block!r}")
        if rows % br or cols % bc:
            raise ValueError(f"block: {br}x{bc} blocks do not tile a {rows}x{cols} matrix "
                             f"({rows} % {br} = {rows % br}, {cols} % {bc} = {cols % bc}); pad the matrix first")
        grid = np.arange(rows * cols).reshape(rows // br, br, cols // bc, bc).transpose(0, 2, 1, 3)
        return cls.from_indices(list(grid.reshape(-1, br * bc)), rows * cols, weights)

    # ------------------------------------------------------------------ properties
    @property
    def n_groups(self) -> int:
        return len(self.indices)

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.indptr)

    def __len__(self) -> int:
        return self.n_groups

    def __iter__(self):
        return iter(self.indices)

    def __getitem__(self, g):
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
        m[np.asarray(selected, dtype=np.int64)] = True
        return m[self.label]

    def columns(self, selected) -> np.ndarray:
        """Sorted coefficient indices covered by the given group ids."""
        sel = np.asarray(selected, dtype=np.int64)
        if sel.size == 0:
            return np.zeros(0, dtype=np.int64)
        return np.sort(np.concatenate([self.indices[g] for g in sel]))

    def subset(self, selected) -> "Groups":
        """The given groups, reindexed onto their own columns (in the order of ``columns(selected)``)."""
        cols = self.columns(selected)
        pos = np.full(self.n_features, -1, dtype=np.int64)
        pos[cols] = np.arange(cols.size)
        sel = np.asarray(selected, dtype=np.int64)
        return Groups.from_indices([pos[self.indices[g]] for g in sel], cols.size, self.weights[sel])

    def with_weights(self, weights) -> "Groups":
        return Groups.from_indices(self.indices, self.n_features, weights)

    def append(self, size: int, weight: float = 0.0) -> "Groups":
        """A copy with one more group of ``size`` new trailing indices (e.g. an unpenalized intercept)."""
        new = np.arange(self.n_features, self.n_features + size)
        return Groups.from_indices(list(self.indices) + [new], self.n_features + size,
                                   np.append(self.weights, weight))

    def expand_outputs(self, n_outputs: int) -> "Groups":
        """Feature groups to coefficient groups of a (n_features, n_outputs) matrix flattened row-major:
        each group takes its features' rows across all outputs (the usual multi-task / multinomial grouping)."""
        K = int(n_outputs)
        if K == 1:
            return self
        return Groups.from_indices([(g[:, None] * K + np.arange(K)).ravel() for g in self.indices],
                                   self.n_features * K, self.weights * np.sqrt(K))


def as_groups(groups, n_features: int) -> Groups:
    """Accept a Groups, a list of sizes, or one label per feature; check it covers ``n_features``."""
    if isinstance(groups, Groups):
        g = groups
    elif groups is None:
        raise ValueError("groups: required (a Groups, a list of group sizes, or one label per feature)")
    elif np.isscalar(groups):
        size = int(groups)
        if size <= 0 or n_features % size:
            raise ValueError(f"groups: an int means equal groups of that size and must divide n_features="
                             f"{n_features}, got {groups}")
        g = Groups.from_sizes([size] * (n_features // size))
    else:
        arr = np.asarray(groups)
        if arr.ndim == 1 and arr.size == n_features:  # one label per column (all-ones too: one group)
            g = Groups.from_labels(arr)
        elif arr.size == 0 or (np.issubdtype(arr.dtype, np.integer)
                               and (arr.min() > 0 or arr.sum() == n_features)):
            g = Groups.from_sizes(arr)  # from_sizes names a bad size; a wrong total is caught below
        else:
            raise ValueError(f"groups: {arr.size} entries are neither one label per column ({n_features}) nor "
                             f"positive group sizes")
    if g.n_features != n_features:
        raise ValueError(f"groups: cover {g.n_features} features but X has {n_features} columns")
    return g
