"""ASP-style N:M pruning (NVIDIA apex ``ASP.prune_trained_model``, maxq_nm.md 3.2).

Recipe: train dense; compute the N:M magnitude mask of the trained weights once (``m4n2_1d``'s exhaustive search
over the 6 patterns of a 2:4 group is the same as keeping the top-2 magnitudes, and top-N generalizes it to any N:M);
fine-tune with the mask fixed.  ASP patches the optimizer to mask gradients and weights around ``step``; here the
parametrization ``W * mask`` gives the same thing through autograd (pruned weights get zero gradient, the effective
weight is masked), and the stored pruned weights are zeroed at pruning time as ASP does.  ASP's channel-permutation
search is not implemented.  Default coverage is ASP's rule (``presets.py``: out % 8 == 0 and in % 16 == 0).
"""
from __future__ import annotations

import torch

from .groups import nm_mask
from .pruner import NMParametrization, NMPruner, zero_pruned_

__all__ = ["FixedNMMask", "ASPPruner"]


class FixedNMMask(NMParametrization):
    """A fixed 0/1 N:M mask (a persistent buffer, so ``state_dict`` resumes it)."""

    def __init__(self, shape, n, m, mask: torch.Tensor):
        super().__init__(shape, n, m)
        self.register_buffer("fixed", mask.detach().to(torch.bool).clone())

    def mask(self, w):
        return self.fixed


class ASPPruner(NMPruner):
    """One-shot N:M magnitude mask of the current (trained) weights, then fine-tuning with the mask fixed."""

    method = "asp"
    default_preset = "asp"

    def make_param(self, name, module):
        w = module.weight.detach()
        mask = nm_mask(w, self.pattern.n, self.pattern.m)
        with torch.no_grad():
            zero_pruned_(module.weight, mask)
        return FixedNMMask(tuple(w.shape), self.pattern.n, self.pattern.m, mask)

    @torch.no_grad()
    def recompute_masks(self) -> None:
        """ASP's ``compute_sparse_masks()`` again (its "non-standard usage"): new magnitude masks from the weights."""
        for name, p in zip(self.names, self.params):
            w = self.original(name)
            p.fixed.copy_(nm_mask(w, p.n, p.m))
