"""Layer coverage: which layers of a model get the N:M pattern, matching each paper's choice.

Coverage changes published numbers (SR-STE sparsifies the 7x7 stem, MaxQ does not), so it is a
named, explicit choice:

* ``maxq``  -- every groupable layer except the stem (the first conv / Linear in module order) and the classifier
  (the last Linear); downsample (1x1 shortcut) convs *are* sparse.  MaxQ's ``imagenet_resnet.py``.
* ``srste`` -- every groupable layer except the classifier (the stem is sparse when M divides its input channels;
  a 3-channel RGB stem cannot be grouped and stays dense).  SR-STE's ``SparseConv`` everywhere, fc dense.
* ``asp``   -- every Linear / Conv2d with ``out % 8 == 0`` and ``in % 16 == 0`` (NVIDIA ASP's skip rule), classifier
  included.
* ``all``   -- every groupable layer.

A preset silently leaves dense (and lists in ``skipped`` with the reason) layers whose input dimension M does not
divide; an explicit list of names raises instead, since the user asked for that layer.
"""
from __future__ import annotations

from torch import nn

from .groups import _TRANSPOSED, GROUPABLE_TYPES, NMPattern

__all__ = ["PRESETS", "select_layers", "candidates", "preset_layers"]

PRESETS = ("maxq", "srste", "asp", "all")


def candidates(model):
    """(name, module) of every module of ``model`` with a weight an N:M or block pattern can group, in order."""
    return [(name, mod) for name, mod in model.named_modules()
            if isinstance(mod, GROUPABLE_TYPES) and not isinstance(mod, _TRANSPOSED)]


def select_layers(model: nn.Module, m: int, layers="all") -> tuple:
    """(names, skipped): the layers to sparsify with group size ``m`` and {name: reason} of those left dense
    (``grouping.choose_layers`` for an N:M pattern; tied holders each listed).

    ``layers`` is a preset name (see module docstring), a list of module names, or a predicate name -> bool.
    """
    from ..grouping import choose_layers
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    chosen, skipped, _ = choose_layers(model, NMPattern(1, m), layers=layers)
    if not chosen:
        raise ValueError(f"model: no layer to sparsify with M={m} (layers={layers!r}); left dense: "
                         f"{skipped or 'no Linear/Conv layer found'}")
    return list(chosen), skipped


def preset_layers(cands, preset, skipped) -> list:
    """The (name, module) of ``cands`` a preset sparsifies; the others go to ``skipped`` with the reason."""
    if preset == "all":
        return cands
    if preset == "asp":
        out = []
        for n, mod in cands:
            o, i = mod.weight.shape[0], mod.weight.shape[1]
            if o % 8 or i % 16:
                skipped[n] = f"ASP rule: out % 8 == 0 and in % 16 == 0 required, weight is {tuple(mod.weight.shape)}"
            else:
                out.append((n, mod))
        return out
    linears = [n for n, mod in cands if isinstance(mod, nn.Linear)]
    classifier = linears[-1] if linears else None
    stem = cands[0][0] if cands and preset == "maxq" else None
    out = []
    for n, mod in cands:
        if n == classifier:
            skipped[n] = f"{preset} preset: classifier stays dense"
        elif n == stem:
            skipped[n] = f"{preset} preset: stem stays dense"
        else:
            out.append((n, mod))
    return out
