"""Parameters and FLOPs of a pruned model (block or N:M), per layer and in total.

Conventions (stated because published numbers differ by them):
* FLOPs are counted as multiply-accumulates (MACs) of Conv / Linear layers, the convention of the pruning papers
  that quote ResNet-50 at 4.1 "GFLOPs"; ``flops_x2`` (2 per MAC) is reported too.  BatchNorm, ReLU, pooling and
  residual additions are listed separately (``other_flops``: one op per output element for BN / ReLU / add, one per
  window element for pooling), not in ``flops``; residual additions are not counted.
* A pruned layer keeps the fraction of its weights that are non-zero, and the same fraction of its MACs (an N:M
  layer N/M: the sparse tensor-core view; a block layer its kept tiles); its zeros are not counted.
  Bias and BatchNorm parameters are counted in ``params`` (and separately as ``norm_bias_params``).
The layer densities come either from ``density={name: N/M}`` or, when not given, from the weights themselves
(fraction of non-zeros, after ``finalize``).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["count_params_flops", "FlopsReport"]


class FlopsReport(dict):
    def table(self, top: int | None = None) -> str:
        head = f"{'layer':<32} {'type':<8} {'params':>11} {'kept':>11} {'MACs':>13} {'kept MACs':>13} {'dens.':>6}"
        lines = [head, "-" * len(head)]
        rows = self["rows"] if top is None else self["rows"][:top]
        for r in rows:
            lines.append(f"{r['name'][:32]:<32} {r['type']:<8} {r['params']:>11,} {r['kept_params']:>11,} "
                         f"{r['macs']:>13,} {r['kept_macs']:>13,} {r['density']:>6.3f}")
        if top is not None and len(self["rows"]) > top:
            lines.append(f"... {len(self['rows']) - top} more layers")
        lines.append("-" * len(head))
        lines.append(f"total params {self['params']:,} (dense {self['dense_params']:,}; BN/bias {self['norm_bias_params']:,});"
                     f" conv/linear MACs {self['flops']:,} (dense {self['dense_flops']:,}); other ops "
                     f"{self['other_flops']:,}")
        return "\n".join(lines)


@torch.no_grad()
def count_params_flops(model: nn.Module, example: torch.Tensor, density: dict | None = None) -> FlopsReport:
    """Run ``model(example)`` (batch 1 expected) with hooks and count parameters and MACs per Conv / Linear."""
    rows, other = [], [0]
    mods = dict(model.named_modules())
    names = {id(m): n for n, m in mods.items()}
    hooks = []

    def weight_density(name, mod):
        if density is not None:
            return float(density.get(name, 1.0))
        w = mod.weight
        return float((w != 0).float().mean())

    def conv_hook(mod, inp, out):
        name = names[id(mod)]
        w = mod.weight
        per_out = w[0].numel()  # Cin/groups * prod(kernel)
        macs = out.numel() // out.shape[0] * per_out
        d = weight_density(name, mod)
        rows.append({"name": name, "type": type(mod).__name__, "params": w.numel(),
                     "kept_params": int(round(w.numel() * d)), "macs": int(macs), "kept_macs": int(round(macs * d)),
                     "density": d})

    def lin_hook(mod, inp, out):
        name = names[id(mod)]
        w = mod.weight
        tokens = out.numel() // out.shape[-1] // out.shape[0] if out.dim() >= 2 else 1  # per example
        macs = tokens * w.numel()
        d = weight_density(name, mod)
        rows.append({"name": name, "type": "Linear", "params": w.numel(), "kept_params": int(round(w.numel() * d)),
                     "macs": int(macs), "kept_macs": int(round(macs * d)), "density": d})

    def elem_hook(mod, inp, out):
        if isinstance(mod, (nn.MaxPool2d, nn.AvgPool2d)):
            k = mod.kernel_size if isinstance(mod.kernel_size, int) else mod.kernel_size[0]
            other[0] += out.numel() // out.shape[0] * k * k
        elif isinstance(mod, nn.AdaptiveAvgPool2d):
            other[0] += inp[0].numel() // inp[0].shape[0]
        else:
            other[0] += out.numel() // out.shape[0]

    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(lin_hook))
        elif isinstance(m, (nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            hooks.append(m.register_forward_hook(elem_hook))
    was = model.training
    model.eval()
    try:
        model(example)
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    w_ids = {id(mods[r["name"]].weight) for r in rows}
    rest = sum(p.numel() for p in model.parameters() if id(p) not in w_ids)
    params = sum(r["kept_params"] for r in rows) + rest
    dense_params = sum(r["params"] for r in rows) + rest
    macs = sum(r["kept_macs"] for r in rows)
    return FlopsReport(rows=rows, params=int(params), dense_params=int(dense_params), norm_bias_params=int(rest),
                       flops=int(macs), flops_x2=int(2 * macs), dense_flops=int(sum(r["macs"] for r in rows)),
                       other_flops=int(other[0]))
