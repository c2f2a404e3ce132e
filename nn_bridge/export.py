"""Export of block-sparse Linear layers to torch's block-sparse-row (BSR) format.

The B x B tiles of the GEMM matrix ``W.T`` (tiling.py) are the transposes of the B x B tiles of the stored
``(out, in)`` weight, so ``weight.to_sparse_bsr((B, B))`` stores exactly the kept blocks (all-zero tiles are
dropped) and ``y = W_bsr @ x.T`` is the layer without the zero blocks.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from .tiling import LayerTiling, check_block

__all__ = ["BSRLinear", "to_bsr_linear", "export_bsr"]


class BSRLinear(nn.Module):
    """A Linear whose weight is a BSR tensor (inference only)."""

    def __init__(self, weight_bsr: torch.Tensor, bias, in_features: int, out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight", weight_bsr)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @property
    def n_stored_blocks(self) -> int:
        return int(self.weight.values().shape[0])

    def forward(self, x):
        lead = x.shape[:-1]
        y = (self.weight @ x.reshape(-1, self.in_features).t().to(self.weight.dtype)).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)


def to_bsr_linear(linear: nn.Linear, block) -> BSRLinear:
    """A BSRLinear computing the same function as ``linear`` (whose weight is already block sparse, baked)."""
    B = check_block(block)
    if not isinstance(linear, nn.Linear):
        raise ValueError(f"linear: expected an nn.Linear, got {type(linear).__name__}")
    out_f, in_f = linear.weight.shape
    if out_f % B or in_f % B:
        raise ValueError(f"block: {B}x{B} blocks do not tile a {out_f}x{in_f} Linear weight; BSR export needs exact "
                         "tiling (padded layers stay dense)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "BSR support is in beta"
        w = linear.weight.detach().to_sparse_bsr((B, B))
    return BSRLinear(w, linear.bias, in_f, out_f)


def export_bsr(model: nn.Module, tilings) -> dict:
    """Replace every tiled Linear of ``model`` (already finalized) by its BSRLinear; returns {name: BSRLinear}."""
    done = {}
    for t in tilings:
        for name in t.holders:  # every holder of a tied weight (each keeps its own bias)
            mod = model.get_submodule(name)
            if not isinstance(mod, nn.Linear) or t.needs_padding:
                continue
            new = to_bsr_linear(mod, t.block)
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
            done[name] = new
    return done
