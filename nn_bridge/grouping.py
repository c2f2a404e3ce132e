"""One grouping protocol for both sparsity patterns: which *units* of a weight a mask keeps or prunes, and the budget.

A pattern is parsed once (:func:`parse_pattern`): ``"16x16"`` / ``(16, 16)`` -> ``tiling.BlockPattern`` (B x B
blocks of the GEMM matrix, at a sparsity the caller chooses), ``"2:4"`` -> ``nm.groups.NMPattern`` (N kept of every
M consecutive inputs, sparsity 1 - N/M).  ``pattern.grouping(name, weight_shape)`` gives the layer's grouping, a
:class:`Grouping`:

==================  ==========================================  ==========================================
                    ``tiling.BlockTiling`` (B x B)              ``nm.groups.NMGrouping`` (N:M)
==================  ==========================================  ==========================================
unit                one block of the GEMM matrix                one weight
``unit_shape``      (n_blocks,), ``Groups.block_tiling`` order  the weight's shape
``partitions(x)``   (1, n_blocks): one budget per layer          (n_windows, M): one budget per window
budget              round((1 - s) n_blocks) of the partition     N of every window
==================  ==========================================  ==========================================

The mask parametrization (``masking``), the pruner base (``pruners``) and the report speak this protocol only: a
unit-shaped score or 0/1 mask, ``topk_mask`` to meet the budget, ``scale(w, per_unit)`` to apply it.
``to_matrix`` / ``groups()`` / ``partition_groups()`` hand the same structure to ``groupsparse`` as ``Groups`` over
the GEMM matrix flattened row-major (``tiling.weight_to_matrix``), where the one-shot driver solves it.

:func:`find_layers` is the one layer finder for both patterns (presets, include / exclude, tied weights).
"""
from __future__ import annotations

import math
import numbers
import re
from dataclasses import replace

import torch
from torch import nn

__all__ = ["Grouping", "parse_pattern", "find_layers", "choose_layers", "check_model", "PATTERN_RULE"]

PATTERN_RULE = "'BxB' (e.g. '16x16'), a (B, B) pair or 'N:M' (e.g. '2:4')"


class Grouping:
    """Base of the per-layer groupings (see the module docstring); subclasses are frozen dataclasses with at least
    ``name``, ``weight_shape`` and ``tied`` and define the unit geometry."""

    name: str
    weight_shape: tuple
    tied: tuple

    @property
    def holders(self) -> tuple:
        """Every module name using this weight: ``name`` first, then ``tied`` (one mask, shared)."""
        return (self.name,) + tuple(self.tied)

    @property
    def matrix_shape(self) -> tuple:
        """(inputs, outputs) of the layer's GEMM matrix (``tiling.weight_to_matrix``)."""
        s = self.weight_shape
        return (math.prod(s[1:]), s[0])

    @property
    def n_weights(self) -> int:
        return math.prod(self.weight_shape)

    @property
    def n_groups(self) -> int:
        """Number of units a mask decides on."""
        return math.prod(self.unit_shape)

    # ------------------------------------------------------------------ unit geometry (subclasses)
    @property
    def unit_shape(self) -> tuple:
        raise NotImplementedError

    def partitions(self, x: torch.Tensor) -> torch.Tensor:
        """Unit-shaped ``x`` -> (P, U): one row per partition that carries its own budget."""
        raise NotImplementedError

    def from_partitions(self, y: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`partitions`."""
        raise NotImplementedError

    def keep_per_partition(self, sparsity=None) -> int:
        """Units kept in every partition at ``sparsity`` (None: the pattern's own, N:M only)."""
        raise NotImplementedError

    def budget(self, sparsity=None):
        """The same budget for ``groupsparse.select(loss, self.groups(), self.budget(s))``: an int k for blocks,
        a partition ``Budget`` for N:M."""
        raise NotImplementedError

    def unit_sq_norms(self, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def unit_norms(self, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def scale(self, w: torch.Tensor, per_unit: torch.Tensor) -> torch.Tensor:
        """``w`` with every unit multiplied by ``per_unit`` (the parametrizations' forward)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared
    def to_matrix(self, w: torch.Tensor) -> torch.Tensor:
        """The weight as its (inputs x outputs) GEMM matrix, the layout of ``groups()`` (``weight_to_matrix``)."""
        from .tiling import weight_to_matrix
        return weight_to_matrix(w)

    def from_matrix(self, m: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_matrix` for this layer's weight shape."""
        from .tiling import matrix_to_weight
        return matrix_to_weight(m, self.weight_shape)

    def expand(self, per_unit: torch.Tensor) -> torch.Tensor:
        """A weight-shaped tensor holding each unit's value."""
        ones = torch.ones(self.weight_shape, dtype=per_unit.dtype, device=per_unit.device)
        return self.scale(ones, per_unit)

    def topk_mask(self, scores: torch.Tensor, k: int) -> torch.Tensor:
        """0/1 unit mask (scores' dtype) keeping the ``k`` highest ``scores`` of every partition."""
        parts = self.partitions(scores)
        new = torch.zeros_like(parts)
        if parts.shape[0] == 1:  # one budget per layer: the flat top-k (same picks as before the unification)
            new[0, torch.topk(parts[0], k, sorted=False).indices] = 1.0
        else:
            new.scatter_(1, torch.topk(parts, k, dim=1, sorted=False).indices, 1.0)
        return self.from_partitions(new)

    def violations(self, w: torch.Tensor, sparsity=None) -> int:
        """Partitions of ``w`` with more non-zero units than the budget at ``sparsity`` (0: the pattern holds)."""
        nz = self.partitions(self.unit_norms(w.detach()) > 0).sum(1)
        return int((nz > self.keep_per_partition(sparsity)).sum())


def parse_pattern(pattern):
    """``tiling.BlockPattern`` for ``"16x16"`` / ``(16, 16)``, ``nm.groups.NMPattern`` for ``"2:4"`` / ``(2, 4)``
    given as ``NMPattern``; pattern objects pass through.  Every error names ``pattern``."""
    from .nm.groups import NMPattern
    from .tiling import BlockPattern
    if isinstance(pattern, (BlockPattern, NMPattern)):
        return pattern
    if isinstance(pattern, (tuple, list)) and len(pattern) == 2 and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in pattern):
        text = f"{pattern[0]}x{pattern[1]}"
    elif isinstance(pattern, str):
        text = pattern.strip()
    else:
        raise ValueError(f"pattern: expected {PATTERN_RULE}, got {pattern!r}")
    m = re.fullmatch(r"(\d+)\s*[xX]\s*(\d+)", text)
    if m:
        r, c = int(m.group(1)), int(m.group(2))
        if r != c or r < 1:
            raise ValueError(f"pattern: blocks must be square with a side >= 1 (e.g. '16x16'), got {pattern!r}")
        return BlockPattern(r)
    if re.fullmatch(r"\d+\s*:\s*\d+", text):
        return NMPattern.parse(text)  # its errors name pattern
    raise ValueError(f"pattern: expected {PATTERN_RULE}, got {pattern!r}")


def check_model(model) -> None:
    """An ``nn.Module`` whose weights hold values: a lazy module's uninitialized parameter or a 'meta' tensor (a
    shape without values) has nothing to prune."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    tensors = [*model.named_parameters(), *model.named_buffers()]
    lazy = next((n for n, t in tensors if nn.parameter.is_lazy(t)), None)
    if lazy is not None:
        raise ValueError(f"model: {lazy!r} is not initialized yet (a lazy module); run the model once on a batch "
                         f"first")
    meta = next((n for n, t in tensors if t.is_meta), None)
    if meta is not None:
        raise ValueError(f"model: {meta!r} is on the 'meta' device (a shape without values); materialize the weights "
                         f"first (e.g. model.to_empty(device='cpu'), then load_state_dict)")


def choose_layers(model: nn.Module, pattern, *, layers=None, include=None, exclude=(), min_blocks: int = 100,
                  pad: bool = False, arg: str = "pattern", untileable: str = "error") -> tuple:
    """({name: grouping}, skipped, explicit): :func:`find_layers` before tied weights are merged (each holder of a
    shared weight is listed); ``explicit`` tells whether the user named the layers (``layers`` or ``include``).
    ``exclude`` may also be a predicate.  ``untileable='skip'``: in an automatic choice, a layer B x B blocks do not
    tile (no ``pad``) is left dense with its reason instead of being an error."""
    from .nm.presets import PRESETS, candidates, preset_layers
    from .tiling import BlockPattern
    check_model(model)
    pat = parse_pattern(pattern)
    if untileable not in ("error", "skip"):
        raise ValueError(f"untileable: expected 'error' or 'skip', got {untileable!r}")
    layers = "all" if layers is None else layers
    if isinstance(layers, str) and layers not in PRESETS:
        raise ValueError(f"layers: expected a preset in {PRESETS}, a list of module names or a predicate, "
                         f"got {layers!r}")
    cands = [(n, mod) for n, mod in candidates(model) if pat.accepts(mod)]
    skipped = {}
    strict = not isinstance(layers, str)
    if strict:
        mods = dict(model.named_modules())
        names = [n for n, _ in cands if layers(n)] if callable(layers) else list(layers)
        for n in names:
            if n not in mods:
                raise ValueError(f"layers: model has no module named {n!r}")
        chosen = [(n, mods[n]) for n in names]
    else:
        chosen = preset_layers(cands, layers, skipped)
    out = {}
    for name, mod in chosen:
        if include is not None and not (include(name) if callable(include) else name in include):
            continue
        if exclude(name) if callable(exclude) else name in exclude:
            continue
        g, reason = None, None
        if untileable == "skip" and not (strict or pad) and isinstance(pat, BlockPattern) and pat.accepts(mod):
            g = pat.grouping(name, tuple(mod.weight.shape))
            if g.needs_padding:
                r, c = g.matrix_shape
                reason = f"{pat} blocks do not tile its {r}x{c} GEMM matrix"
        if reason is None:
            g, reason = pat.fit(name, mod, min_blocks=min_blocks, pad=pad, arg=arg)
        if reason is None:
            out[name] = g
        elif strict:  # the user named this layer: say why the pattern cannot prune it
            raise ValueError(f"{arg}: {pat} does not fit layer {name!r} ({reason})")
        else:
            skipped[name] = reason
    return out, skipped, strict or include is not None


def find_layers(model: nn.Module, pattern, *, layers=None, include=None, exclude=(), min_blocks: int = 100,
                pad: bool = False, arg: str = "pattern") -> tuple:
    """(groupings, skipped): the layers of ``model`` to prune with ``pattern`` and {name: reason} of those left dense.

    ``layers``: a preset of ``nm.presets.PRESETS`` (default 'all'), or an explicit list of module names / a
    predicate -- an explicit choice the pattern cannot cover is an error naming ``arg`` (the argument the pattern
    came in: ``pattern``, or ``block`` for the B of older calls), the pattern and the layer.  ``include`` (names or
    a predicate) / ``exclude`` (names) only filter the automatic choice.  A layer the pattern does not fit is left
    dense with its reason (fewer than ``min_blocks`` blocks, M not dividing its inputs), except B x B blocks that do
    not tile it without ``pad``: an error naming ``arg`` and the layer (``choose_layers(untileable='skip')`` leaves
    it dense instead).  Modules sharing one weight Parameter give
    one grouping (``tied``); a weight that a module outside the choice also uses is left dense in an automatic
    choice and an error (naming ``include`` / ``layers``) in an explicit one."""
    from .tiling import tie_groups
    out, skipped, explicit = choose_layers(model, pattern, layers=layers, include=include, exclude=exclude,
                                           min_blocks=min_blocks, pad=pad, arg=arg)
    if out:
        groups = tie_groups(model, list(out), "include" if include is not None else "layers",
                            skip_shared=not explicit)
        for name in set(out) - {n for g in groups for n in g}:
            skipped[name] = "its weight is shared with a module outside the selection (left dense)"
        out = [replace(out[g[0]], tied=g[1:]) for g in groups]
    if not out:
        raise ValueError(f"model: no prunable layer for pattern {parse_pattern(pattern)} (layers={layers!r}); "
                         f"left dense: {skipped or 'no Linear/Conv layer found'}")
    return out, skipped
