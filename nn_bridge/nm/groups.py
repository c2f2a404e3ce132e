"""N:M groups of torch weights: the one convention, built as ``groupsparse.Groups``.

Convention (the definition)
---------------------------
An N:M pattern keeps at most N non-zeros in every group of M *consecutive input features* of one output:

* ``nn.Linear`` weight ``W`` (out, in): group ``(o, j)`` is ``W[o, j*M:(j+1)*M]`` -- M consecutive inputs of a row,
  the layout cuSPARSELt / ``to_sparse_semi_structured`` compress.
* ``nn.Conv2d`` weight ``W`` (Cout, Cin/g, kh, kw): group ``(o, h, w, j)`` is ``W[o, j*M:(j+1)*M, h, w]`` -- M
  consecutive input channels at a fixed output channel and kernel position.  This is NHWC order: in a
  channels-last weight (``W.permute(0, 2, 3, 1)``) the groups are contiguous, which is how sparse tensor cores
  read an implicit-GEMM conv (K x CRS with C fastest), as in SR-STE's ``Sparse_NHWC``, NVIDIA ASP's ``m4n2_1d``
  and MaxQ (Xiang et al., CVPR 2024).  ``Conv1d``/``Conv3d`` follow the same rule (input channels last).

Group ids run in the order of ``W.permute(0, *spatial, 1).reshape(-1, M)``: output channel, then kernel position,
then channel block.  :func:`nm_groups` builds the definition as a ``Groups`` of flat indices into ``W.ravel()``;
:func:`to_groups` / :func:`from_groups` are the fast reshape equivalents used in every hot path (tested equal).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from groupsparse import Groups

from ..grouping import Grouping

__all__ = ["NMPattern", "NMGrouping", "check_nm", "check_layer", "to_groups", "from_groups", "nm_groups",
           "gemm_nm_groups", "nm_mask", "nm_violations", "is_nm", "GROUPABLE_TYPES"]

GROUPABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class NMPattern:
    """N:M with 0 < N < M: keep N of every M consecutive inputs."""
    n: int
    m: int

    def __post_init__(self):
        check_nm(self.n, self.m)

    @property
    def density(self) -> float:
        return self.n / self.m

    @property
    def sparsity(self) -> float:
        return 1.0 - self.n / self.m

    def __str__(self) -> str:
        return f"{self.n}:{self.m}"

    @classmethod
    def parse(cls, text) -> "NMPattern":
        """'2:4' -> NMPattern(2, 4); an NMPattern or an (n, m) pair pass through.  Errors name ``pattern``."""
        if isinstance(text, NMPattern):
            return text
        if isinstance(text, (tuple, list)) and len(text) == 2:
            n, m = text
        else:
            parts = str(text).split(":")
            if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
                raise ValueError(f"pattern: expected 'N:M' with integers 0 < N < M, e.g. '2:4', got {text!r}")
            n, m = int(parts[0]), int(parts[1])
        try:
            return cls(n, m)
        except ValueError as e:
            raise ValueError(f"pattern: {text!r} is not an N:M pattern ({e})") from None

    # ------------------------------------------------------------------ the pattern protocol (grouping.py)
    def accepts(self, module: nn.Module) -> bool:
        """nn.Linear and nn.Conv1d/2d/3d (not transposed convs): weights with a grouped input dimension."""
        return isinstance(module, GROUPABLE_TYPES) and not isinstance(module, _TRANSPOSED)

    def grouping(self, name: str, weight_shape, tied=(), pad: bool = False) -> "NMGrouping":
        return NMGrouping(name, tuple(weight_shape), self.n, self.m, tuple(tied))

    def fit(self, name: str, module: nn.Module, *, min_blocks: int = 100, pad: bool = False,
            arg: str = "pattern") -> tuple:
        """(grouping, None), or (None, why the layer cannot carry the pattern)."""
        why = layer_misfit(module, self.m)
        return (None, why) if why else (self.grouping(name, module.weight.shape), None)


def check_nm(n, m) -> tuple:
    """Validate N and M: integers with 0 < N < M (N >= M would not prune anything)."""
    try:
        ni, mi = int(n), int(m)
    except (TypeError, ValueError):
        raise ValueError(f"N:M: N and M must be integers, got N={n!r}, M={m!r}") from None
    if ni != n or mi != m:
        raise ValueError(f"N:M: N and M must be integers, got N={n!r}, M={m!r}")
    if mi < 2:
        raise ValueError(f"N:M: M must be >= 2, got M={mi}")
    if not (0 < ni < mi):
        raise ValueError(f"N:M: need 0 < N < M (N kept of every M); got N={ni}, M={mi}"
                         + (" -- N >= M keeps every weight, nothing would be pruned" if ni >= mi else ""))
    return ni, mi


def _grouped_dim(shape) -> int:
    """Size of the grouped (input) dimension of a Linear/conv weight shape."""
    return int(shape[1])


_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def layer_misfit(module: nn.Module, m: int):
    """Why ``module`` cannot carry an N:M pattern with group size ``m`` (a sentence), or None when it can."""
    if not isinstance(module, GROUPABLE_TYPES) or isinstance(module, _TRANSPOSED):
        return (f"N:M groups are defined for nn.Linear and nn.Conv1d/2d/3d weights (groups of consecutive input "
                f"channels); got {type(module).__name__}, which cannot be grouped")
    return shape_misfit(tuple(module.weight.shape), m)


def shape_misfit(shape, m: int):
    if len(shape) < 2:
        return f"N:M needs a weight with an input dimension (2-D or more), got shape {shape}"
    c = _grouped_dim(shape)
    if c % m:
        return (f"M={m} does not divide the grouped input dimension {c} of weight shape {shape} "
                f"({c} % {m} = {c % m}); choose an M that divides it or leave this layer dense")
    return None


def check_layer(module: nn.Module, m: int, name: str = "layer") -> None:
    """Raise a clear ValueError (naming the layer) when ``module`` cannot carry an N:M pattern with group size m."""
    why = layer_misfit(module, m)
    if why:
        raise ValueError(f"{name}: {why}")


def check_shape(shape, m: int, name: str = "weight") -> None:
    why = shape_misfit(shape, m)
    if why:
        raise ValueError(f"{name}: {why}")


def to_groups(w: torch.Tensor, m: int) -> torch.Tensor:
    """Weight -> (n_groups, M) matrix of its N:M groups (a view for Linear, a permuted copy for convs)."""
    check_shape(tuple(w.shape), m)
    if w.dim() == 2:
        return w.reshape(-1, m)
    perm = (0,) + tuple(range(2, w.dim())) + (1,)
    return w.permute(perm).reshape(-1, m)


def from_groups(g: torch.Tensor, shape) -> torch.Tensor:
    """Inverse of :func:`to_groups` for a weight of ``shape``."""
    shape = tuple(shape)
    if len(shape) == 2:
        return g.reshape(shape)
    nhwc = (shape[0],) + shape[2:] + (shape[1],)
    inv = (0, len(shape) - 1) + tuple(range(1, len(shape) - 1))
    return g.reshape(nhwc).permute(inv)


def nm_groups(shape, m: int) -> Groups:
    """The N:M groups of a weight of ``shape`` as a ``groupsparse.Groups`` over ``W.ravel()`` (the definition).

    Built by explicit index arithmetic (not by :func:`to_groups`) so that the test comparing them checks two
    independent derivations.  Group g = ((o * prod(spatial) + pos) * (C / M) + j) holds the flat indices of
    ``W[o, j*M + t, *pos]`` for t = 0..M-1.
    """
    shape = tuple(int(s) for s in shape)
    check_shape(shape, m)
    cout, c = shape[0], shape[1]
    spatial = shape[2:]
    npos = int(np.prod(spatial)) if spatial else 1
    # flat index of W[o, ch, pos] in row-major order = (o * C + ch) * npos + pos
    o = np.arange(cout)[:, None, None, None]
    pos = np.arange(npos)[None, :, None, None]
    j = np.arange(c // m)[None, None, :, None]
    t = np.arange(m)[None, None, None, :]
    flat = (o * c + j * m + t) * npos + pos
    return Groups.from_indices(list(flat.reshape(-1, m)), int(np.prod(shape)))


def gemm_nm_groups(p: int, K: int, m: int) -> Groups:
    """The N:M windows of a (p, K) GEMM matrix flattened row-major (index i*K + k): window (j, k) holds rows
    j*M..j*M+M-1 of column k -- the partition of an N:M budget in ``groupsparse``'s coefficient layout."""
    i = np.arange(p).reshape(p // m, 1, m)
    k = np.arange(K).reshape(1, K, 1)
    return Groups.from_indices(list((i * K + k).reshape(-1, m)), p * K)


@dataclass(frozen=True)
class NMGrouping(Grouping):
    """The N:M grouping of one layer's weight (a ``grouping.Grouping`` whose units are single weights, budgeted
    N per window of M consecutive inputs; windows in :func:`to_groups` order)."""
    name: str
    weight_shape: tuple
    n: int
    m: int
    tied: tuple = ()

    def __post_init__(self):
        check_nm(self.n, self.m)
        check_shape(self.weight_shape, self.m, self.name)

    @property
    def pattern(self) -> NMPattern:
        return NMPattern(self.n, self.m)

    @property
    def unit_shape(self) -> tuple:
        return tuple(self.weight_shape)

    def partitions(self, x: torch.Tensor) -> torch.Tensor:
        return to_groups(x, self.m)

    def from_partitions(self, y: torch.Tensor) -> torch.Tensor:
        return from_groups(y, self.weight_shape)

    def keep_per_partition(self, sparsity=None) -> int:
        """N at the pattern's sparsity (None); round((1 - s) M) on the way there (a pruning schedule's ramp)."""
        if sparsity is None:
            return self.n
        return max(int(round((1.0 - float(sparsity)) * self.m)), self.n)

    def unit_sq_norms(self, w: torch.Tensor) -> torch.Tensor:
        x = w.detach()
        return (x.float() if x.dtype in (torch.float16, torch.bfloat16) else x).square()

    def unit_norms(self, w: torch.Tensor) -> torch.Tensor:
        x = w.detach()
        return (x.float() if x.dtype in (torch.float16, torch.bfloat16) else x).abs()

    def scale(self, w: torch.Tensor, per_unit: torch.Tensor) -> torch.Tensor:
        return w * per_unit.to(w.dtype)

    def groups(self) -> Groups:
        """One size-1 group per entry of the (inputs x outputs) GEMM matrix, row-major (the budget is per window:
        :meth:`partition_groups`)."""
        return Groups.block_tiling(self.matrix_shape, 1)

    def partition_groups(self) -> Groups:
        """The windows over the GEMM matrix flattened row-major (:func:`gemm_nm_groups`)."""
        p, K = self.matrix_shape
        return gemm_nm_groups(p, K, self.m)

    def budget(self, sparsity=None):
        """``groupsparse.select``'s budget over :meth:`groups`: N (or a ramp's count) kept in every window."""
        from groupsparse.selection import Budget
        return Budget.n_of_m(self.keep_per_partition(sparsity), self.m, self.matrix_shape)


def nm_mask(w: torch.Tensor, n: int, m: int, score: torch.Tensor | None = None) -> torch.Tensor:
    """Boolean weight-shaped N:M mask keeping the N largest ``score`` (default |w|) of every group (the grouping's
    one top-N-per-window projection, ``Grouping.topk_mask``)."""
    g = NMGrouping("w", tuple(w.shape), n, m)
    s = g.unit_norms(w) if score is None else score.detach()
    return g.topk_mask(s.float() if s.dtype in (torch.float16, torch.bfloat16) else s, n).bool()


def nm_violations(w: torch.Tensor, n: int, m: int) -> int:
    """Number of groups with more than N non-zeros (0 means ``w`` satisfies the N:M pattern)."""
    nz = (to_groups(w.detach(), m) != 0).sum(1)
    return int((nz > n).sum())


def is_nm(w: torch.Tensor, n: int, m: int, exact: bool = False) -> bool:
    """True when every group has at most N non-zeros (``exact``: exactly N, as MaxQ's export asserts)."""
    nz = (to_groups(w.detach(), m) != 0).sum(1)
    return bool((nz == n).all()) if exact else bool((nz <= n).all())
