"""Achieved sparsity, per layer and overall, read from the weights themselves (so it reports what is, not what
was asked), for both patterns in one report.

A pattern is a budget over units, read through the grouping protocol (``nn_bridge.grouping``): a ``B x B`` block
pattern counts tiles of the GEMM matrix and puts one budget on the whole layer (at most k tiles not all-zero, k
given per layer in ``budgets`` when known); an ``N:M`` pattern counts single weights and puts a budget of N on
every window of M consecutive inputs.  Every row therefore has the same fields:

* ``n_groups`` / ``kept`` / ``kept_fraction`` -- groups (tiles, or weights), those not zero, and their ratio;
* ``n_partitions`` / ``budget`` / ``violations`` -- the partitions the budget applies to (1 layer, or its windows),
  the budget (k or N; ``None`` for a block layer whose k was not given) and how many partitions exceed it;
* ``weight_sparsity`` -- zero weights / weights; block rows also carry ``n_blocks`` and ``block_sparsity``.

``exact`` is the pattern check: no partition over its budget.  With an ``example`` input the report also counts
parameters and multiply-accumulates of the whole model (``nn_bridge.flops``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["SparsityReport", "measure", "measure_weights", "finalize_model"]

_LEGACY_KEYS = {"exact_nm": "exact"}  # the N:M report's name for the pattern check


@dataclass
class SparsityReport:
    """What :func:`measure` read off the weights.  Attributes, or dict-style ``rep["weight_sparsity"]`` (the keys of
    :meth:`to_dict`; the N:M report was a dict)."""
    rows: list = field(default_factory=list)  # one dict per pruned layer (module docstring)
    kept_fraction: float = 1.0   # kept groups / groups, over the pruned layers
    weight_sparsity: float = 0.0  # zero weights / weights, over the pruned layers
    model_sparsity: float = 0.0   # zero weights / weights, over every Linear and Conv weight of the model
    pattern: str = ""             # "16x16" or "2:4"
    exact: bool = True            # no partition holds more non-zero groups than its budget
    flops: dict | None = None     # params / MACs summary (nn_bridge.flops) when measured with an example input
    model_scope: str = "whole model (all Linear/Conv weights)"  # what model_sparsity counts
    skipped: dict = field(default_factory=dict)  # layer -> why it was left dense (a pruner's preset, a misfit)

    @property
    def is_block(self) -> bool:
        return "x" in self.pattern

    @property
    def block_sparsity(self) -> float:
        """Zero tiles / tiles over the pruned layers (block patterns; for N:M, zero weights / weights)."""
        return 1.0 - self.kept_fraction

    @property
    def n_layers(self) -> int:
        return len(self.rows)

    def __getitem__(self, key):
        return self.to_dict()[_LEGACY_KEYS.get(key, key)]

    def table(self) -> str:
        unit = "tiles" if self.is_block else "weights"
        head = (f"{'layer':<40} {'shape':>18} {unit:>9} {'kept':>9} {'kept frac':>9} {'weight sp.':>10} "
                f"{'over budget':>11}")
        lines = [f"pattern {self.pattern}", head, "-" * len(head)]
        for r in self.rows:
            lines.append(f"{r['name'][:40]:<40} {str(tuple(r['shape'])):>18} {r['n_groups']:>9} {r['kept']:>9} "
                         f"{r['kept_fraction']:>9.4f} {r['weight_sparsity']:>10.4f} {r['violations']:>11}")
        lines.append("-" * len(head))
        lines.append(f"{'pruned layers':<40} {'':>18} {sum(r['n_groups'] for r in self.rows):>9} "
                     f"{sum(r['kept'] for r in self.rows):>9} {self.kept_fraction:>9.4f} "
                     f"{self.weight_sparsity:>10.4f} {sum(r['violations'] for r in self.rows):>11}")
        lines.append(f"{self.model_scope[:40]:<40} {'':>18} {'':>9} {'':>9} {'':>9} {self.model_sparsity:>10.4f}")
        if self.is_block and all(r["budget"] is None for r in self.rows):
            lines.append("pattern check: no tile budget given (nothing to check beyond the counts above)")
        else:
            rule = "no layer keeps more tiles than its budget" if self.is_block else "every window of M holds <= N " \
                                                                                      "non-zeros"
            lines.append(f"pattern check ({rule}): {'OK' if self.exact else 'VIOLATED'}")
        if self.skipped:
            lines.append("left dense: " + "; ".join(f"{k} ({v})" for k, v in self.skipped.items()))
        if self.flops:
            f = self.flops
            lines.append(f"params {f['params']:,} (dense {f['dense_params']:,}); conv/linear MACs {f['flops']:,} "
                         f"(dense {f['dense_flops']:,})")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        d = {"pattern": self.pattern, "rows": [dict(r, shape=list(r["shape"])) for r in self.rows],
             "n_layers": self.n_layers, "kept_fraction": self.kept_fraction, "weight_sparsity": self.weight_sparsity,
             "model_sparsity": self.model_sparsity, "exact": self.exact}
        if self.is_block:
            d["block_sparsity"] = self.block_sparsity
        if self.flops is not None:
            d["flops"] = dict(self.flops)
        if self.skipped:
            d["skipped"] = dict(self.skipped)
        return d


def _row(g, w, budget) -> dict:
    """One layer's counts through the grouping protocol (``nn_bridge.grouping``): units, partitions, budget."""
    nz = g.unit_norms(w) > 0
    per_part = g.partitions(nz).sum(1)
    kept = int(nz.sum())
    row = {"n_groups": g.n_groups, "kept": kept, "n_partitions": int(per_part.numel()), "budget": budget,
           "violations": 0 if budget is None else int((per_part > budget).sum())}
    if hasattr(g, "block"):  # the block report's names, kept for its readers
        row.update(n_blocks=g.n_groups, block_sparsity=1.0 - kept / g.n_groups)
    return row


def _groupings(layers, pattern, shapes):
    """[(name, grouping)] and the pattern's name, from groupings (tilings) or from names + pattern (``shapes``:
    name -> weight shape; a block pattern pads layers its blocks do not tile)."""
    from .grouping import Grouping, parse_pattern
    layers = list(layers)
    if layers and all(isinstance(g, Grouping) for g in layers):
        pats = {str(g.pattern) for g in layers}
        if pattern is not None or len(pats) > 1:
            raise ValueError(f"pattern: groupings carry their pattern; got pattern={pattern!r} with "
                             f"{sorted(pats)}")
        return [(g.name, g) for g in layers], pats.pop()
    if pattern is None:
        raise ValueError("pattern: layer names need a pattern ('16x16' or '2:4'); groupings carry their own")
    pat = parse_pattern(pattern)
    if not all(isinstance(n, str) for n in layers):
        raise ValueError("layers: expected groupings (LayerTiling, NMGrouping), or module names (str) with a pattern")
    pad = {"pad": True} if hasattr(pat, "block") else {}
    return [(n, pat.grouping(n, tuple(shapes(n)), **pad)) for n in layers], str(pat)


def _measure(named, pname, budgets, all_weights) -> SparsityReport:
    """``named``: [(name, weight, grouping)]; ``all_weights``: every weight of the model (its overall sparsity)."""
    budgets = dict(budgets or {})
    rows, n_g, k_g, n_w, z_w = [], 0, 0, 0, 0
    for name, w, g in named:
        row = _row(g, w.detach(), budgets.get(name, g.keep_per_partition() if g.pattern.sparsity else None))
        zeros = int((w == 0).sum())
        rows.append({"name": name, "shape": tuple(w.shape), **row, "kept_fraction": row["kept"] / row["n_groups"],
                     "weight_sparsity": zeros / w.numel()})
        n_g, k_g, n_w, z_w = n_g + row["n_groups"], k_g + row["kept"], n_w + w.numel(), z_w + zeros
    tot = sum(w.numel() for w in all_weights)
    ztot = sum(int((w == 0).sum()) for w in all_weights)
    return SparsityReport(rows, k_g / max(n_g, 1), z_w / max(n_w, 1), ztot / max(tot, 1), pname,
                          all(r["violations"] == 0 for r in rows))


@torch.no_grad()
def measure(model: nn.Module, layers, pattern=None, budgets: dict | None = None, example=None) -> SparsityReport:
    """Sparsity of the model's current effective weights and the pattern check.

    ``layers``: the pruned layers' groupings (``LayerTiling`` / ``NMGrouping``), or their module names with
    ``pattern`` (``"16x16"``, ``(16, 16)``, ``"2:4"``).  ``budgets``: {name: most tiles kept} for block layers
    (their pattern check).
    ``example``: an input of batch 1 to count parameters and MACs (``report.flops``).
    """
    pairs, pname = _groupings(layers, pattern, lambda n: model.get_submodule(n).weight.shape)
    named = [(name, model.get_submodule(name).weight, g) for name, g in pairs]
    everything = [m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    rep = _measure(named, pname, budgets, everything)
    if example is not None:
        from .flops import count_params_flops
        rep.flops = {k: v for k, v in count_params_flops(model, example).items() if k != "rows"}
    return rep


@torch.no_grad()
def measure_weights(weights, pattern, budgets: dict | None = None, all_weights=None,
                    scope: str = "all weights measured") -> SparsityReport:
    """The same report for weights without their model (a saved state_dict): ``weights`` maps names to tensors;
    every one of them is measured (the caller picks those the pattern applies to).  ``model_sparsity`` counts
    ``all_weights`` (default: ``weights``), described by ``scope`` in the table."""
    pairs, pname = _groupings(list(weights), pattern, lambda n: weights[n].shape)
    rep = _measure([(n, weights[n], g) for n, g in pairs], pname, budgets,
                   list(weights.values()) if all_weights is None else list(all_weights))
    rep.model_scope = scope
    return rep


def finalize_model(model: nn.Module, tilings) -> SparsityReport:
    """Bake the block parametrizations into plain weights and measure the achieved sparsity."""
    from . import masking
    masking.detach(model, tilings, bake=True)
    return measure(model, tilings)
