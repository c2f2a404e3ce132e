"""The N:M pruner interface, mirroring ``nn_bridge.pruners.BlockPruner`` (same life cycle, same parametrization
style) so block and N:M methods are driven by the same training loop::

    pruner = make_nm_pruner("maxq", model, "1:16", steps_per_epoch=len(loader), start=0, end=30)
    opt = torch.optim.SGD(model.parameters(), ...)
    pruner.bind(opt)
    for epoch ...:
        for x, y in loader:
            loss(model(x), y).backward(); opt.step(); opt.zero_grad()
            pruner.step()                      # one training step done (MaxQ advances its epoch schedule)
    report = pruner.finalize()                 # fold masks into the weights, check the exact N:M pattern

Each sparsified layer's weight carries a ``torch.nn.utils.parametrize`` parametrization (an :class:`NMParametrization`)
whose forward maps the stored dense weight to the effective one; removing it with ``leave_parametrized=True``
folds the mask in.  The block pruner's base class is tied to B x B tilings and phase schedules, so N:M methods share
its interface rather than its code.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from groupsparse._validation import check_positive_int

from ..pruners import check_state_keys
from ..tiling import tie_groups
from .groups import NMPattern, to_groups
from .presets import select_layers

__all__ = ["NMParametrization", "NMPruner", "NMReport", "measure_nm"]


class NMParametrization(nn.Module):
    """Base parametrization of one weight: knows its shape and N:M pattern; subclasses define ``forward``."""

    def __init__(self, shape, n: int, m: int):
        super().__init__()
        self.shape, self.n, self.m = tuple(shape), int(n), int(m)

    def mask(self, w) -> torch.Tensor:
        """The weight-shaped multiplier (0/1 for hard masks, MaxQ's soft S) for the stored weight ``w``."""
        raise NotImplementedError

    def forward(self, w):
        return w * self.mask(w).to(w.dtype)

    @torch.no_grad()
    def fold(self, w) -> torch.Tensor:
        """The final effective weight (what finalize bakes); exact N:M."""
        return w * self.mask(w).to(w.dtype)


class NMReport(dict):
    """Per-layer N:M check and overall sparsity of a finalized model (a dict, so it serializes to JSON)."""

    def table(self) -> str:
        head = f"{'layer':<36} {'shape':>20} {'groups':>8} {'viol.':>6} {'sparsity':>9}"
        lines = [head, "-" * len(head)]
        for r in self["rows"]:
            lines.append(f"{r['name'][:36]:<36} {str(tuple(r['shape'])):>20} {r['n_groups']:>8} "
                         f"{r['violations']:>6} {r['sparsity']:>9.4f}")
        lines.append(f"pattern {self['pattern']}: {self['n_layers']} layers, weight sparsity of pruned layers "
                     f"{self['weight_sparsity']:.4f}, exact N:M: {self['exact_nm']}")
        return "\n".join(lines)


@torch.no_grad()
def measure_nm(model: nn.Module, names, pattern) -> NMReport:
    """Read the pattern off the current effective weights (what is, not what was asked)."""
    pat = NMPattern.parse(pattern)
    rows, tot, zer = [], 0, 0
    for name in names:
        w = model.get_submodule(name).weight
        nz = (to_groups(w, pat.m) != 0).sum(1)
        rows.append({"name": name, "shape": list(w.shape), "n_groups": int(nz.numel()),
                     "violations": int((nz > pat.n).sum()), "sparsity": float((w == 0).float().mean())})
        tot += w.numel()
        zer += int((w == 0).sum())
    return NMReport(pattern=str(pat), rows=rows, n_layers=len(rows), weight_sparsity=zer / max(tot, 1),
                    exact_nm=all(r["violations"] == 0 for r in rows))


class NMPruner:
    """Base of the N:M training-time methods.

    Parameters
    ----------
    model : module to prune (bare, before DDP).  Parametrizations are attached at construction.
    pattern : 'N:M' string, (n, m) or NMPattern.
    layers : a preset of ``presets.PRESETS`` (default: the method's paper), a list of module names or a predicate.

    Modules sharing one weight Parameter (tied weights) are one prunable tensor: ``names`` lists its first holder,
    ``tied[name]`` the others, which get the same parametrization (one mask, folded once).
    """

    method = "base"
    default_preset = "all"

    def __init__(self, model: nn.Module, pattern="2:4", *, layers=None):
        from torch.nn.parallel import DistributedDataParallel
        if isinstance(model, DistributedDataParallel):
            raise ValueError("model: attach the pruner to the bare module before wrapping it in DDP")
        self.pattern = NMPattern.parse(pattern)
        self.model = model
        names, self.skipped = select_layers(model, self.pattern.m,
                                            self.default_preset if layers is None else layers)
        groups = tie_groups(model, names, skip_shared=isinstance(layers, str) or layers is None)
        for name in set(names) - {n for g in groups for n in g}:
            self.skipped[name] = "its weight is shared with a module outside the selection (left dense)"
        if not groups:
            raise ValueError(f"model: no layer to sparsify with {self.pattern}; left dense: {self.skipped}")
        self.names = [g[0] for g in groups]
        self.tied = {g[0]: g[1:] for g in groups if len(g) > 1}
        self.params = []
        for holders in groups:
            for name in holders:
                if parametrize.is_parametrized(model.get_submodule(name), "weight"):
                    raise ValueError(f"model: layer {name!r} already has a weight parametrization; one pruner per "
                                     f"model")
            mod = model.get_submodule(holders[0])
            p = self.make_param(holders[0], mod).to(mod.weight.device)
            for name in holders:  # N:M parametrizations have no right_inverse: the shared tensor is untouched
                parametrize.register_parametrization(model.get_submodule(name), "weight", p, unsafe=True)
            self.params.append(p)
        self.optimizer = None
        self.step_count = 0
        self.finalized = False

    # ------------------------------------------------------------------ hooks
    def make_param(self, name: str, module: nn.Module) -> NMParametrization:
        raise NotImplementedError

    def bind(self, optimizer) -> "NMPruner":
        self.optimizer = optimizer
        return self

    def step(self) -> None:
        """One training step done (call after ``optimizer.step()``)."""
        self.step_count += 1

    # ------------------------------------------------------------------ access
    def original(self, name: str) -> torch.Tensor:
        return self.model.get_submodule(name).parametrizations.weight.original

    @torch.no_grad()
    def masks(self) -> list:
        """Current weight-shaped multipliers of every layer (hard 0/1, or MaxQ's soft S)."""
        return [p.mask(self.original(n)).detach().clone() for p, n in zip(self.params, self.names)]

    def state_dict(self) -> dict:
        return {"method": self.method, "pattern": str(self.pattern), "layers": list(self.names),
                "step": self.step_count}

    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict()``'s output; a state with missing or unexpected keys, or of another method,
        pattern or layer list, is a ValueError naming ``state``."""
        check_state_keys(state, self.state_dict(), ("method", "pattern", "layers"))
        self.step_count = check_positive_int(state["step"], "state['step']", low=0)

    # ------------------------------------------------------------------ end of training
    def report(self) -> NMReport:
        return measure_nm(self.model, self.names, self.pattern)

    @torch.no_grad()
    def finalize(self) -> NMReport:
        """Fold each layer's mask into its weight (plain parameter again) and check the exact N:M pattern."""
        if self.finalized:
            raise RuntimeError("finalize: already finalized")
        for name, p in zip(self.names, self.params):
            mod = self.model.get_submodule(name)
            w = p.fold(self.original(name))
            parametrize.remove_parametrizations(mod, "weight", leave_parametrized=False)
            mod.weight.data.copy_(w)
            for other in self.tied.get(name, ()):  # the shared Parameter is folded already: just unwrap it
                parametrize.remove_parametrizations(self.model.get_submodule(other), "weight",
                                                    leave_parametrized=False)
        self.params, self.finalized = [], True
        rep = self.report()
        if not rep["exact_nm"]:
            bad = [r["name"] for r in rep["rows"] if r["violations"]]
            raise AssertionError(f"finalize: layers {bad} violate {self.pattern} after folding (a bug)")
        return rep


def zero_pruned_(w: torch.Tensor, mask: torch.Tensor) -> None:
    """In-place ``w *= mask`` (ASP's post-step masking)."""
    w.mul_(mask.to(w.dtype))
