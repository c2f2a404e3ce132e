"""Achieved sparsity, per layer and overall, read from the weights themselves (so it reports what is, not what
was asked)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["SparsityReport", "measure", "finalize_model"]


@dataclass
class SparsityReport:
    rows: list = field(default_factory=list)  # one dict per pruned layer
    block_sparsity: float = 0.0     # zero blocks / blocks, over the pruned layers
    weight_sparsity: float = 0.0    # zero weights / weights, over the pruned layers
    model_sparsity: float = 0.0     # zero weights / weights, over every Linear and Conv2d weight of the model

    def table(self) -> str:
        head = f"{'layer':<40} {'shape':>18} {'blocks':>7} {'kept':>7} {'block sp.':>9} {'weight sp.':>10}"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            lines.append(f"{r['name'][:40]:<40} {str(tuple(r['shape'])):>18} {r['n_blocks']:>7} {r['kept']:>7} "
                         f"{r['block_sparsity']:>9.4f} {r['weight_sparsity']:>10.4f}")
        lines.append("-" * len(head))
        lines.append(f"{'pruned layers':<40} {'':>18} {sum(r['n_blocks'] for r in self.rows):>7} "
                     f"{sum(r['kept'] for r in self.rows):>7} {self.block_sparsity:>9.4f} {self.weight_sparsity:>10.4f}")
        lines.append(f"{'whole model (all Linear/Conv2d weights)':<40} {'':>18} {'':>7} {'':>7} {'':>9} "
                     f"{self.model_sparsity:>10.4f}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"rows": [dict(r, shape=list(r["shape"])) for r in self.rows], "block_sparsity": self.block_sparsity,
                "weight_sparsity": self.weight_sparsity, "model_sparsity": self.model_sparsity}


@torch.no_grad()
def measure(model: nn.Module, tilings) -> SparsityReport:
    """Sparsity of the model's current effective weights: a block counts as pruned when all its entries are 0."""
    rows, nb, kb, nw, zw = [], 0, 0, 0, 0
    for t in tilings:
        w = model.get_submodule(t.name).weight
        kept = int((t.block_sq_norms(w) > 0).sum())
        zeros = int((w == 0).sum())
        rows.append({"name": t.name, "shape": t.weight_shape, "n_blocks": t.n_blocks, "kept": kept,
                     "block_sparsity": 1.0 - kept / t.n_blocks, "weight_sparsity": zeros / w.numel()})
        nb, kb, nw, zw = nb + t.n_blocks, kb + kept, nw + w.numel(), zw + zeros
    tot, ztot = 0, 0
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            w = m.weight
            tot += w.numel()
            ztot += int((w == 0).sum())
    return SparsityReport(rows, 1.0 - kb / max(nb, 1), zw / max(nw, 1), ztot / max(tot, 1))


def finalize_model(model: nn.Module, tilings) -> SparsityReport:
    """Bake the block parametrizations into plain weights and measure the achieved sparsity."""
    from . import masking
    masking.detach(model, tilings, bake=True)
    return measure(model, tilings)
