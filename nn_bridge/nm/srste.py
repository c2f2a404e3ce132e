"""SR-STE (Zhou et al., ICLR 2021) and the straight-through mask it shares with MaxQ.

Forward ``W_eff = W * S``; backward (the "sparse-refined" straight-through estimator of SR-STE, also in MaxQ's code)::

    dL/dW := dL/dW_eff + lambda * (1 - clamp(S, 0, 1)) * W

The gradient reaches every stored weight unchanged (pruned ones included, so they can grow back), and pruned
weights (S = 0) are additionally decayed towards zero so the mask stops flipping.  SR-STE uses the hard N:M mask
``S = E`` recomputed from |W| at every forward; MaxQ uses its soft mask (``maxq.py``), for which the clamp makes the
decay act on pruned weights only (kept ones have S >= 1).  lambda = 2e-4 is both papers' default.

As in SR-STE's code, the decay is added inside backward, so with a ``GradScaler`` it is added to the *scaled*
gradient (MaxQ adds it after ``unscale_``); with mixed precision either use ``decay`` values scaled accordingly or
keep the default fp32 / bf16 (no scaler) training.
"""
from __future__ import annotations

import torch

from ..masking import Mask
from ..pruners import Pruner

__all__ = ["MaskedSTE", "masked_ste", "SRSTEMask", "SRSTEPruner", "DEFAULT_DECAY"]

DEFAULT_DECAY = 2e-4


class MaskedSTE(torch.autograd.Function):
    """``W * S`` with the straight-through gradient plus the SR-STE decay on pruned weights."""

    @staticmethod
    def forward(ctx, w, s, decay: float):
        ctx.decay = float(decay)
        if ctx.decay:
            ctx.save_for_backward(w, s)
        return w * s

    @staticmethod
    def backward(ctx, g):
        if not ctx.decay:
            return g, None, None
        w, s = ctx.saved_tensors
        return g + ctx.decay * (1.0 - s.clamp(0.0, 1.0)) * w, None, None


def masked_ste(w: torch.Tensor, s: torch.Tensor, decay: float = DEFAULT_DECAY) -> torch.Tensor:
    return MaskedSTE.apply(w, s.to(w.dtype), decay)


class SRSTEMask(Mask):
    """SR-STE parametrization: the top-``k`` magnitude mask of every partition of the current weight (N of every
    window for N:M, the k largest blocks for B x B), recomputed at every forward, through :func:`masked_ste`."""

    dynamic = True

    def __init__(self, grouping, k: int, decay: float = DEFAULT_DECAY):
        super().__init__(grouping)
        self.k, self.decay = int(k), float(decay)

    def unit_mask(self, w):
        return self.grouping.topk_mask(self.grouping.unit_norms(w), self.k)

    mask = unit_mask  # the N:M parametrizations' name

    def forward(self, w):
        return masked_ste(w, self.grouping.expand(self.unit_mask(w)), self.decay)


class SRSTEPruner(Pruner):
    """SR-STE from scratch: the pattern from the first step, STE + decay (lambda = ``decay``)."""

    method = "srste"
    default_preset = "srste"
    pair_is_nm = True

    def __init__(self, model, pattern="2:4", *, decay: float = DEFAULT_DECAY, **kw):
        if not (decay >= 0):
            raise ValueError(f"decay: the SR-STE lambda must be >= 0, got {decay!r}")
        self.decay = float(decay)
        super().__init__(model, pattern, **kw)

    def make_param(self, grouping):
        return SRSTEMask(grouping, grouping.keep_per_partition(self.sparsity), self.decay)
