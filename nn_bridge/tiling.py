"""Block tiling of torch weights: which layers are prunable and how their weights map to B x B blocks.

Convention (the one place it is defined)
----------------------------------------
Every prunable weight is seen as a ``rows x cols`` matrix M whose rows are the layer's inputs and whose columns
are its outputs, i.e. the matrix of an implicit GEMM ``Y = X @ M``:

* ``nn.Linear`` weight ``W`` of shape (out, in):        ``M = W.T``                               (in x out)
* ``nn.Conv2d`` weight ``W`` of shape (Cout, Cin, kh, kw): ``M = W.permute(2, 3, 1, 0).reshape(kh*kw*Cin, Cout)``
  (Conv1d / Conv3d alike: kernel positions row-major, input channels fastest)

Row ``(h * kw + w) * Cin + c`` of a conv's M is kernel tap (h, w), input channel c: the order in which a
channels-last (NHWC) implicit GEMM reads its im2col rows; with a channels-last weight the reshape is a view.
Block ``(i, j)`` covers rows ``i*B..(i+1)*B-1`` and columns ``j*B..(j+1)*B-1`` of M, and its id is
``i * (cols // B) + j`` -- exactly ``groupsparse.Groups.block_tiling((rows, cols), B)``, which is the definition;
the torch reductions below (a reshape to (rows/B, B, cols/B, B)) are a fast equivalent, tested against it.

Shapes B does not divide: an error naming ``block`` unless ``pad=True``, in which case M is zero-padded at the
bottom/right to the next multiple of B (padded entries are structural zeros and are never counted as weights).
Layers with fewer than ``min_blocks`` blocks (default 100, as in SequentialAttention++) stay dense.

Tied weights (modules sharing one weight ``Parameter``, e.g. tied input/output projections) are one prunable
tensor: one tiling, named after the first module that holds it, with the other holders in ``tied``.  It gets one
mask, shared by every holder (``masking.attach``), and counts once in the sparsity.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
from torch import nn

from groupsparse import Groups
from groupsparse._validation import check_positive_int
from groupsparse.schedules import check_sparsity

from .grouping import Grouping, find_layers

__all__ = ["BlockPattern", "BlockTiling", "LayerTiling", "find_prunable", "check_block", "allocate_keep",
           "keep_count", "weight_to_matrix", "matrix_to_weight", "tie_groups"]

PRUNABLE_TYPES = (nn.Linear, nn.Conv2d)


def check_block(block) -> int:
    """B of the B x B blocks: an integer >= 1 (not a bool, a float or a string)."""
    if isinstance(block, bool) or not isinstance(block, numbers.Integral) or block <= 0:
        raise ValueError(f"block: expected a positive int (the side B of the B x B blocks), got {block!r}")
    return int(block)


def keep_count(sparsity: float, n_blocks: int) -> int:
    """Blocks kept of ``n_blocks`` at block sparsity ``sparsity``: round((1 - s) n), the one rounding rule of the
    bridge (training-time pruners and one-shot alike)."""
    return int(round((1.0 - sparsity) * n_blocks))


def weight_to_matrix(w: torch.Tensor) -> torch.Tensor:
    """The (inputs x outputs) GEMM matrix of a Linear (2-D) or conv (3-D to 5-D) weight (see module docstring: a
    conv's rows run over kernel positions, then input channels fastest)."""
    if w.dim() == 2:
        return w.t()
    if 3 <= w.dim() <= 5:
        return w.permute(*range(2, w.dim()), 1, 0).reshape(-1, w.shape[0])
    raise ValueError(f"weight: expected a 2-D (Linear) or 3-D to 5-D (Conv1d/2d/3d) weight, got shape "
                     f"{tuple(w.shape)}")


def matrix_to_weight(m: torch.Tensor, shape) -> torch.Tensor:
    """Inverse of :func:`weight_to_matrix` for a weight of ``shape``."""
    shape = tuple(shape)
    if len(shape) == 2:
        return m.t()
    d = len(shape)
    return m.reshape(*shape[2:], shape[1], shape[0]).permute(d - 1, d - 2, *range(d - 2))


@dataclass(frozen=True)
class BlockPattern:
    """B x B blocks of every layer's GEMM matrix (``"16x16"``); the sparsity is the caller's choice."""
    block: int

    def __post_init__(self):
        try:
            check_block(self.block)
        except ValueError as e:
            raise ValueError(f"pattern: {e}") from None

    sparsity = None  # a block pattern does not fix the sparsity

    def __str__(self) -> str:
        return f"{self.block}x{self.block}"

    def accepts(self, module: nn.Module) -> bool:
        """Linear and Conv2d with groups=1 (a grouped / depthwise conv is not one GEMM: left dense)."""
        return isinstance(module, PRUNABLE_TYPES) and not (isinstance(module, nn.Conv2d) and module.groups != 1)

    def grouping(self, name: str, weight_shape, tied=(), pad: bool = False) -> "BlockTiling":
        return BlockTiling(name, tuple(weight_shape), self.block, pad, tuple(tied))

    def fit(self, name: str, module: nn.Module, *, min_blocks: int = 100, pad: bool = False,
            arg: str = "pattern") -> tuple:
        """(tiling, None), or (None, why it is left dense); B not tiling it without ``pad`` is an error naming
        ``arg`` (the argument the pattern came in) and the layer."""
        if not self.accepts(module):
            return None, f"{type(module).__name__} is not a Linear or a Conv2d with groups=1 (not one GEMM)"
        t = self.grouping(name, module.weight.shape, pad=pad)
        if t.n_blocks < int(min_blocks):
            return None, f"{t.n_blocks} blocks of {self} < min_blocks={min_blocks}"
        if t.needs_padding and not pad:
            B = self.block
            r, c = t.matrix_shape
            raise ValueError(f"{arg}: {B}x{B} blocks do not tile layer {name!r} (GEMM matrix {r}x{c}: "
                             f"{r} % {B} = {r % B}, {c} % {B} = {c % B}); pass pad=True to zero-pad it, "
                             f"choose a block that divides both, or exclude the layer")
        return t, None


@dataclass(frozen=True)
class BlockTiling(Grouping):
    """The B x B tiling of one layer's weight (a ``grouping.Grouping`` whose units are the blocks).  ``name`` is
    the module's qualified name in the model; ``tied`` the other modules holding the same weight Parameter (they
    share this tiling's mask)."""
    name: str
    weight_shape: tuple
    block: int
    pad: bool = False
    tied: tuple = ()

    @property
    def pattern(self) -> BlockPattern:
        return BlockPattern(self.block)

    # ---------------------------------------------------------------- geometry
    @property
    def padded_shape(self) -> tuple:
        B = self.block
        r, c = self.matrix_shape
        return (math.ceil(r / B) * B, math.ceil(c / B) * B)

    @property
    def grid(self) -> tuple:
        r, c = self.padded_shape
        return (r // self.block, c // self.block)

    @property
    def n_blocks(self) -> int:
        g = self.grid
        return g[0] * g[1]

    @property
    def needs_padding(self) -> bool:
        return self.padded_shape != self.matrix_shape

    # ---------------------------------------------------------------- the grouping protocol
    @property
    def unit_shape(self) -> tuple:
        return (self.n_blocks,)

    def partitions(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(1, -1)  # one budget over the layer's blocks

    def from_partitions(self, y: torch.Tensor) -> torch.Tensor:
        return y.reshape(-1)

    def keep_per_partition(self, sparsity=None) -> int:
        if sparsity is None:
            raise ValueError(f"sparsity: a {self.block}x{self.block} block pattern needs a target sparsity")
        return keep_count(sparsity, self.n_blocks)

    def unit_sq_norms(self, w: torch.Tensor) -> torch.Tensor:
        return self.block_sq_norms(w)

    def unit_norms(self, w: torch.Tensor) -> torch.Tensor:
        return self.block_norms(w)

    def groups(self) -> Groups:
        """The blocks as a ``groupsparse.Groups`` over the (padded) matrix flattened row-major."""
        return Groups.block_tiling(self.padded_shape, self.block)

    def partition_groups(self):
        """None: one budget over all the blocks of the layer."""
        return None

    def budget(self, sparsity=None) -> int:
        """``groupsparse.select``'s budget over :meth:`groups`: k blocks of the layer."""
        return self.keep_per_partition(sparsity)

    def block_sizes(self, device=None) -> torch.Tensor:
        """Number of real (non-padding) weights in each block, flat (n_blocks,)."""
        r, c = self.matrix_shape
        pr, pc = self.padded_shape
        B = self.block
        rs = torch.full((pr // B,), B, device=device)
        cs = torch.full((pc // B,), B, device=device)
        rs[-1] = r - (pr - B)
        cs[-1] = c - (pc - B)
        return (rs[:, None] * cs[None, :]).reshape(-1)

    # ---------------------------------------------------------------- tensor ops
    def _blocked(self, w: torch.Tensor) -> torch.Tensor:
        """Weight -> (R, B, C, B) blocked view of its (padded) GEMM matrix."""
        m = weight_to_matrix(w)
        r, c = self.matrix_shape
        pr, pc = self.padded_shape
        if (pr, pc) != (r, c):
            m = torch.nn.functional.pad(m, (0, pc - c, 0, pr - r))
        R, C = self.grid
        return m.reshape(R, self.block, C, self.block)

    def block_sq_norms(self, w: torch.Tensor) -> torch.Tensor:
        """Squared Frobenius norm of every block, flat (n_blocks,), in ``Groups`` order (float32 or wider)."""
        x = self._blocked(w)
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return x.pow(2).sum(dim=(1, 3)).reshape(-1)

    def block_norms(self, w: torch.Tensor) -> torch.Tensor:
        return self.block_sq_norms(w).sqrt()

    def scale(self, w: torch.Tensor, per_block: torch.Tensor) -> torch.Tensor:
        """``w`` with every block multiplied by ``per_block`` (flat, n_blocks): the parametrizations' forward.

        Broadcasts over the blocked view instead of materializing a weight-sized mask.
        """
        R, C = self.grid
        x = self._blocked(w) * per_block.reshape(R, 1, C, 1).to(w.dtype)
        r, c = self.matrix_shape
        m = x.reshape(R * self.block, C * self.block)
        if self.needs_padding:
            m = m[:r, :c]
        return matrix_to_weight(m, self.weight_shape)



#: the name before block and N:M shared one grouping protocol (kept: B, C and users construct it)
LayerTiling = BlockTiling


def tie_groups(model: nn.Module, names, arg: str = "layers", skip_shared: bool = False) -> list:
    """``names`` grouped by the weight Parameter they hold: a list of tuples in order of first appearance (a name
    whose weight nobody else among ``names`` holds is a 1-tuple).

    A Parameter that some module outside ``names`` also uses (e.g. an LM head tied to the input embedding) cannot
    be pruned for some of its users only: with ``skip_shared`` the names holding it are left out (left dense, as
    for an automatic choice of layers), otherwise it is an error naming ``arg`` (an explicit choice)."""
    names = list(names)
    by_id, order = {}, []
    for n in names:
        key = id(model.get_submodule(n).weight)
        if key not in by_id:
            by_id[key] = []
            order.append(key)
        by_id[key].append(n)
    chosen = set(names)
    for n, mod in model.named_modules():
        for pname, w in mod._parameters.items():
            if w is None or id(w) not in by_id or (n in chosen and pname == "weight"):
                continue
            if skip_shared:
                by_id[id(w)] = []
                continue
            where = f"{n}.{pname}" if n else pname
            raise ValueError(f"{arg}: {where!r} shares its weight with {by_id[id(w)][0]!r}; select both or neither "
                             f"(a tied weight is pruned once, for all its users)")
    return [tuple(by_id[k]) for k in order if by_id[k]]


def find_prunable(model: nn.Module, block, *, min_blocks: int = 100, pad: bool = False, include=None,
                  exclude=()) -> list:
    """The tilings of every Linear / Conv2d of ``model`` with at least ``min_blocks`` B x B blocks: the B x B case
    of ``grouping.find_layers`` (``include``: names or a predicate restricting the search).

    Raises ValueError naming ``block`` when a candidate layer's shape is not a multiple of B and ``pad`` is False,
    and naming ``model`` when nothing is left to prune.
    """
    B = check_block(block)
    check_positive_int(min_blocks, "min_blocks")
    return find_layers(model, BlockPattern(B), include=include, exclude=exclude, min_blocks=min_blocks,
                       pad=pad, arg="block")[0]


def allocate_keep(tilings, sparsity, scope: str = "uniform", scores=None) -> list:
    """Number of blocks to keep in each layer for a target block sparsity.

    ``uniform``: every layer keeps round((1 - s) * n_blocks) (the SA++ paper's choice).  ``global``: the
    ``round((1 - s) * total)`` blocks with the highest ``scores`` (a list of per-layer score tensors) across layers.
    """
    s = check_sparsity(sparsity)
    if scope == "uniform":
        return [keep_count(s, t.n_blocks) for t in tilings]
    if scope != "global":
        raise ValueError(f"scope: expected 'uniform' or 'global', got {scope!r}")
    if scores is None:
        raise ValueError("scores: global allocation needs one score tensor per layer")
    total = sum(t.n_blocks for t in tilings)
    k = keep_count(s, total)
    flat = torch.cat([sc.detach().float().reshape(-1).cpu() for sc in scores])
    owner = torch.cat([torch.full((t.n_blocks,), i) for i, t in enumerate(tilings)])
    top = torch.topk(flat, k, sorted=False).indices if k > 0 else torch.zeros(0, dtype=torch.long)
    counts = torch.bincount(owner[top], minlength=len(tilings))
    return [int(c) for c in counts]
