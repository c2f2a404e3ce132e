"""ASP-style pruning (NVIDIA apex ``ASP.prune_trained_model``), for N:M and, through the shared base, blocks.

Recipe: train dense; compute the N:M magnitude mask of the trained weights once (``m4n2_1d``'s exhaustive search
over the 6 patterns of a 2:4 group is the same as keeping the top-2 magnitudes, and top-N generalizes it to any N:M);
fine-tune with the mask fixed.  ASP patches the optimizer to mask gradients and weights around ``step``; here the
parametrization ``W * mask`` gives the same thing through autograd (pruned weights get zero gradient, the effective
weight is masked), and the stored pruned weights are zeroed at pruning time as ASP does (``Pruner.prune_to``).
ASP's channel-permutation search is not implemented.  Default coverage is ASP's rule (``presets.py``: out % 8 == 0
and in % 16 == 0).
"""
from __future__ import annotations

import torch

from ..pruners import Pruner

__all__ = ["ASPPruner"]


class ASPPruner(Pruner):
    """One-shot magnitude mask of the current (trained) weights, pruned weights zeroed, then fine-tuning with the
    mask fixed (any pattern: N of every M by ``|W|``, or the largest B x B blocks at ``sparsity``)."""

    method = "asp"
    default_preset = "asp"
    pair_is_nm = True

    def __init__(self, model, pattern="2:4", **kw):
        super().__init__(model, pattern, **kw)
        self.prune_to(self.sparsity, zero=True)

    @torch.no_grad()
    def recompute_masks(self) -> None:
        """ASP's ``compute_sparse_masks()`` again (its "non-standard usage"): new magnitude masks from the weights."""
        for p in self.params:
            p.mask.fill_(1.0)
        self.prune_to(self.sparsity)
