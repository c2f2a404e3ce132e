"""Masks as ``torch.nn.utils.parametrize`` parametrizations, one family for B x B blocks and N:M.

A parametrization keeps the model a normal ``nn.Module``: ``layer.weight`` is recomputed from
``layer.parametrizations.weight.original`` on access, its state (the 0/1 unit mask, SA++ logits) is a buffer or
parameter of the parametrization and so lands in ``model.state_dict()``, and :func:`detach` bakes the effective
weight.  Every variant works on the units of a ``grouping.Grouping`` (a block, or one weight of an N:M window) and
multiplies each unit by one factor, ``W_eff = grouping.scale(W, factor(W))``:

* :class:`Mask`           -- ``factor = mask``                                 (magnitude, ACDC, ASP)
* :class:`PowerPropMask`  -- ``factor = ||W_unit|| * mask``                    (PowerPropagation)
* :class:`AttentionMask`  -- ``factor = clip(n * softmax(logits)) * mask``     (SequentialAttention++)
* a *dynamic* mask (``dynamic = True``: SR-STE, MaxQ in ``nn_bridge.nm``) has no buffer: ``unit_mask(W)`` is
  recomputed from the weight at every forward.
``BlockMask`` / ``BlockPowerProp`` / ``BlockAttention`` are the names from before N:M shared them.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = ["Mask", "PowerPropMask", "AttentionMask", "BlockMask", "BlockPowerProp", "BlockAttention", "attach",
           "detach", "get_param", "original", "PARAM_KINDS"]


class Mask(nn.Module):
    """0/1 mask per unit of ``grouping`` (float buffer ``mask`` of ``grouping.unit_shape``), or, for a dynamic
    subclass, a mask recomputed from the weight by ``unit_mask``."""

    dynamic = False

    def __init__(self, grouping):
        super().__init__()
        self.grouping = grouping
        if not self.dynamic:
            self.register_buffer("mask", torch.ones(grouping.unit_shape))

    @property
    def tiling(self):
        """The grouping under its block-only name."""
        return self.grouping

    def unit_mask(self, w) -> torch.Tensor:
        """The unit-shaped mask now (0/1; MaxQ's is soft)."""
        return self.mask

    def factor(self, w) -> torch.Tensor:
        """Per-unit multiplier of the stored weight ``w`` in the forward."""
        return self.unit_mask(w)

    def forward(self, w):
        return self.grouping.scale(w, self.factor(w))

    def score(self, w) -> torch.Tensor:
        """Unit importance used for selection: the norm of the stored unit."""
        return self.grouping.unit_norms(w.detach())

    def effective(self, w):
        """Effective weight without the mask (what selection looks at)."""
        return w

    @torch.no_grad()
    def fold(self, w) -> torch.Tensor:
        """The weight :func:`detach` bakes."""
        return self.forward(w)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kw):
        # ASP's fixed N:M mask was a bool buffer 'fixed' (weight-shaped) before one mask served every pattern
        old = state_dict.pop(prefix + "fixed", None)
        if old is not None and prefix + "mask" not in state_dict and not self.dynamic:
            state_dict[prefix + "mask"] = old.to(self.mask.dtype).reshape(self.mask.shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kw)


class PowerPropMask(Mask):
    """PowerPropagation (SA++ Lemma 2.3): the effective unit is ``u_i = ||b_i|| b_i`` (for N:M units,
    ``|b| b``).

    ``right_inverse`` maps an existing weight u to ``b_i = u_i / sqrt(||u_i||)`` so attaching it leaves the model's
    function unchanged.  Training ``b`` with weight decay is group-lasso on ``u``; importance is ``||u_i|| =
    ||b_i||^2``.
    """

    def factor(self, w):
        return self.grouping.unit_norms(w).to(w.dtype) * self.mask

    def right_inverse(self, u):
        n = self.grouping.unit_norms(u.detach())
        inv = torch.where(n > 0, n.clamp_min(1e-30).rsqrt(), torch.zeros_like(n))
        return self.grouping.scale(u, inv)

    def score(self, w):
        return self.grouping.unit_sq_norms(w.detach())

    def effective(self, w):
        return self.grouping.scale(w, self.grouping.unit_norms(w).to(w.dtype))


class AttentionMask(Mask):
    """SequentialAttention++: one logit per unit, ``A = n_units * softmax(logits)`` multiplies the weight.

    Clipping (the SA++ paper, Section 2.4, is ambiguous as printed, "[n*density, n/density]"): we read it for the
    mean-1 rescaled attention of Algorithm 1, i.e. ``A`` is clipped to ``[density, 1/density]`` with ``density =
    1 - target sparsity`` -- equivalently the raw softmax to ``[density/n, 1/(n*density)]``.  The printed bounds
    taken literally for ``A`` would exclude A = 1 (the uniform start) for any n > 1/density, so they cannot be
    meant for the rescaled A.  Clipping is a clamp in the forward: a clipped unit gets no gradient through A (only
    weight decay moves its logit back).
    """

    def __init__(self, grouping, density: float):
        super().__init__(grouping)
        self.density = float(density)
        self.logits = nn.Parameter(torch.zeros(grouping.n_groups))

    def attention(self):
        a = self.logits.float().softmax(0) * self.grouping.n_groups
        if self.density < 1.0:
            a = a.clamp(self.density, 1.0 / self.density)
        return a.reshape(self.grouping.unit_shape)

    def factor(self, w):
        return self.attention() * self.mask

    def score(self, w):
        return self.logits.detach().float().clone().reshape(self.grouping.unit_shape)

    def effective(self, w):
        return self.grouping.scale(w, self.attention())


BlockMask, BlockPowerProp, BlockAttention = Mask, PowerPropMask, AttentionMask

PARAM_KINDS = {"mask": Mask, "powerprop": PowerPropMask, "attention": AttentionMask}


def attach(model: nn.Module, groupings, kind="mask", **kw) -> list:
    """Register one parametrization per grouping on ``<layer>.weight``; returns them in order.

    ``kind``: a name of ``PARAM_KINDS`` (built with ``**kw``) or a callable ``grouping -> Mask``.  A tied weight
    (``g.tied``) gets the same parametrization object on every holder: one mask, one set of logits, and every
    holder sees the same effective weight."""
    if not callable(kind) and kind not in PARAM_KINDS:
        raise ValueError(f"kind: expected one of {sorted(PARAM_KINDS)}, got {kind!r}")
    make = kind if callable(kind) else (lambda g: PARAM_KINDS[kind](g, **kw))
    out = []
    for g in groupings:
        for name in g.holders:
            if parametrize.is_parametrized(model.get_submodule(name), "weight"):
                raise ValueError(f"model: layer {name!r} already has a weight parametrization; one pruner per model")
        mod = model.get_submodule(g.name)
        p = make(g).to(mod.weight.device)
        # registering moves 'weight' behind 'bias' in the module's parameters: detach puts it back
        p.param_order = {name: list(model.get_submodule(name)._parameters) for name in g.holders}
        # the forward keeps the weight's shape and dtype by construction; unsafe skips the check's extra forward
        # (a full MaxQ recompute per layer)
        parametrize.register_parametrization(mod, "weight", p, unsafe=True)
        w = original(model, g.name)
        for name in g.tied:
            # registering maps the shared tensor through right_inverse again (PowerProp): undo that second pass
            stored = w.detach().clone()
            parametrize.register_parametrization(model.get_submodule(name), "weight", p, unsafe=True)
            with torch.no_grad():
                w.copy_(stored)
        out.append(p)
    return out


def get_param(model: nn.Module, name: str) -> Mask:
    return model.get_submodule(name).parametrizations.weight[0]


def original(model: nn.Module, name: str) -> torch.Tensor:
    return model.get_submodule(name).parametrizations.weight.original


@torch.no_grad()
def detach(model: nn.Module, groupings, bake: bool = True) -> None:
    """Remove the parametrizations; ``bake=True`` keeps the folded weight (``Mask.fold``) in the same Parameter.

    A tied weight is baked once (in place); every holder then gets the same Parameter back."""
    for g in groupings:
        mod = model.get_submodule(g.name)
        if not parametrize.is_parametrized(mod, "weight"):
            continue
        prm = get_param(model, g.name)
        w = prm.fold(original(model, g.name)) if bake else None
        order = getattr(prm, "param_order", {})
        for name in g.holders:
            holder = model.get_submodule(name)
            if parametrize.is_parametrized(holder, "weight"):
                parametrize.remove_parametrizations(holder, "weight", leave_parametrized=False)
            if set(order.get(name, ())) == set(holder._parameters):  # the state_dict's key order as before attach
                holder._parameters = {k: holder._parameters[k] for k in order[name]}
        if bake:
            mod.weight.copy_(w)
