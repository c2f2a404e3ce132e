"""Block masks as ``torch.nn.utils.parametrize`` parametrizations.

A parametrization keeps the model a normal ``nn.Module``: ``layer.weight`` is recomputed from
``layer.parametrizations.weight.original`` on access, its state (the 0/1 block mask, SA++ logits) is a buffer or
parameter of the parametrization and so lands in ``model.state_dict()``, and removing it with
``leave_parametrized=True`` bakes the effective weight.  All three variants share the 0/1 ``mask`` buffer (one
float per block, so the forward is one broadcast multiply):

* :class:`BlockMask`        -- ``W_eff = W * mask``                                (magnitude, ACDC)
* :class:`BlockPowerProp`   -- ``W_eff = W * ||W_block|| * mask``                  (block PowerPropagation)
* :class:`BlockAttention`   -- ``W_eff = W * clip(n * softmax(logits)) * mask``    (SequentialAttention++)
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from .tiling import LayerTiling

__all__ = ["BlockMask", "BlockPowerProp", "BlockAttention", "attach", "detach", "get_param", "PARAM_KINDS"]


class BlockMask(nn.Module):
    """0/1 mask per block (float buffer ``mask``, flat in ``Groups`` order)."""

    def __init__(self, tiling: LayerTiling):
        super().__init__()
        self.tiling = tiling
        self.register_buffer("mask", torch.ones(tiling.n_blocks))

    def factor(self, w):
        return self.mask

    def forward(self, w):
        return self.tiling.scale(w, self.factor(w))

    def score(self, w) -> torch.Tensor:
        """Block importance used for selection: Frobenius norm of the effective block."""
        return self.tiling.block_norms(w.detach())

    def effective(self, w):
        """Effective weight without the mask (what selection looks at)."""
        return w


class BlockPowerProp(BlockMask):
    """Block PowerPropagation (SA++ Lemma 2.3): the effective block is ``u_i = ||b_i|| b_i``.

    ``right_inverse`` maps an existing weight u to ``b_i = u_i / sqrt(||u_i||)`` so attaching it leaves the model's
    function unchanged.  Training ``b`` with weight decay is group-lasso on ``u``; importance is ``||u_i|| =
    ||b_i||^2``.
    """

    def factor(self, w):
        return self.tiling.block_norms(w).to(w.dtype) * self.mask

    def right_inverse(self, u):
        n = self.tiling.block_norms(u.detach())
        inv = torch.where(n > 0, n.clamp_min(1e-30).rsqrt(), torch.zeros_like(n))
        return self.tiling.scale(u, inv)

    def score(self, w):
        return self.tiling.block_sq_norms(w.detach())

    def effective(self, w):
        return self.tiling.scale(w, self.tiling.block_norms(w).to(w.dtype))


class BlockAttention(BlockMask):
    """SequentialAttention++: one logit per block, ``A = n_blocks * softmax(logits)`` multiplies the weight.

    Clipping (seqattn_pp.md 2.4 is ambiguous as printed, "[n*density, n/density]"): we read it for the mean-1
    rescaled attention of Algorithm 1, i.e. ``A`` is clipped to ``[density, 1/density]`` with ``density = 1 -
    target sparsity`` -- equivalently the raw softmax to ``[density/n, 1/(n*density)]``.  The printed bounds taken
    literally for ``A`` would exclude A = 1 (the uniform start) for any n > 1/density, so they cannot be meant for
    the rescaled A.  Clipping is a clamp in the forward: a clipped block gets no gradient through A (only weight
    decay moves its logit back).
    """

    def __init__(self, tiling: LayerTiling, density: float):
        super().__init__(tiling)
        self.density = float(density)
        self.logits = nn.Parameter(torch.zeros(tiling.n_blocks))

    def attention(self):
        a = self.logits.float().softmax(0) * self.tiling.n_blocks
        if self.density < 1.0:
            a = a.clamp(self.density, 1.0 / self.density)
        return a

    def factor(self, w):
        return self.attention() * self.mask

    def score(self, w):
        return self.logits.detach().float().clone()

    def effective(self, w):
        return self.tiling.scale(w, self.attention())


PARAM_KINDS = {"mask": BlockMask, "powerprop": BlockPowerProp, "attention": BlockAttention}


def attach(model: nn.Module, tilings, kind: str = "mask", **kw) -> list:
    """Register one block parametrization per tiling on ``<layer>.weight``; returns them in order.

    A tied weight (``t.tied``) gets the same parametrization object on every holder: one mask, one set of logits,
    and every holder sees the same effective weight."""
    if kind not in PARAM_KINDS:
        raise ValueError(f"kind: expected one of {sorted(PARAM_KINDS)}, got {kind!r}")
    out = []
    for t in tilings:
        for name in t.holders:
            if parametrize.is_parametrized(model.get_submodule(name), "weight"):
                raise ValueError(f"model: layer {name!r} already has a weight parametrization; one pruner per model")
        mod = model.get_submodule(t.name)
        p = PARAM_KINDS[kind](t, **kw).to(mod.weight.device)
        parametrize.register_parametrization(mod, "weight", p)
        w = original(model, t.name)
        for name in t.tied:
            # registering maps the shared tensor through right_inverse again (PowerProp): undo that second pass
            stored = w.detach().clone()
            parametrize.register_parametrization(model.get_submodule(name), "weight", p)
            with torch.no_grad():
                w.copy_(stored)
        out.append(p)
    return out


def get_param(model: nn.Module, name: str) -> BlockMask:
    return model.get_submodule(name).parametrizations.weight[0]


def original(model: nn.Module, name: str) -> torch.Tensor:
    return model.get_submodule(name).parametrizations.weight.original


def detach(model: nn.Module, tilings, bake: bool = True) -> None:
    """Remove the parametrizations; ``bake=True`` keeps the effective (masked) weight as a plain parameter.

    A tied weight is baked once (in place, through its first holder); the other holders then get the same
    Parameter back without applying the parametrization a second time."""
    for t in tilings:
        for i, name in enumerate(t.holders):
            mod = model.get_submodule(name)
            if parametrize.is_parametrized(mod, "weight"):
                parametrize.remove_parametrizations(mod, "weight", leave_parametrized=bake and i == 0)
