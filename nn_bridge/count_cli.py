"""``python -m nn_bridge count``: what a pattern leaves of a model -- parameters and FLOPs, or the per-layer report.

  python -m nn_bridge count --pattern 2:4 [--layers maxq] [--size 224]        # ResNet-50 with the pattern
  python -m nn_bridge count --pattern 16x16 --sparsity 0.5                     # ResNet-50, 16x16 blocks at 50%
  python -m nn_bridge count model.pt --pattern 2:4 [--include GLOB] [--strict]   # a saved model: report + check

Without a file: torchvision's ResNet-50 architecture (``nn_bridge.nm.resnet``) with the pattern on the layers it
covers (N:M: the ``--layers`` preset; blocks: the layers the blocks tile, at ``--sparsity``), counted by
``nn_bridge.flops`` (multiply-accumulates; the pruned layers keep their kept fraction).  With a file (a
``.safetensors`` / ``.pt`` state_dict, or a folder written by ``python -m nn_bridge oneshot``): every weight the
pattern describes, measured by ``nn_bridge.report`` -- kept fraction per layer and the pattern check (N:M: every
window of M holds at most N non-zeros; blocks with ``--sparsity``: no layer keeps more tiles than ``1 - sparsity``
of them).  ``--strict``: exit 1 when the check fails, 2 when nothing was checked.
"""
from __future__ import annotations

import json
import sys

from ._cli_common import (ArgumentParser, fraction_in_0_1, given_options, pattern_arg, positive_int,
                          read_state_dict, run_cli, select_weights)

__all__ = ["main", "build_parser"]

PROG = "python -m nn_bridge count"


def build_parser():
    from .nm.presets import PRESETS
    ap = ArgumentParser(prog=PROG, description="Parameters / FLOPs, or the sparsity report of a saved model, under "
                                               "a pattern.")
    ap.add_argument("path", nargs="?", default=None,
                    help="a saved state_dict (.safetensors/.pt) or an oneshot output folder; none: ResNet-50")
    ap.add_argument("--pattern", type=pattern_arg, required=True, help="BxB blocks (e.g. 16x16) or N:M (e.g. 2:4)")
    ap.add_argument("--sparsity", type=fraction_in_0_1, default=None,
                    help="block patterns: fraction of blocks removed (ResNet-50 count; the check of a saved model)")
    ap.add_argument("--layers", default="maxq", choices=PRESETS, help="ResNet-50, N:M: which layers get it")
    ap.add_argument("--min-blocks", type=positive_int, default=100, help="ResNet-50, blocks: smaller layers stay dense")
    ap.add_argument("--size", type=positive_int, default=224, help="ResNet-50: input image size")
    ap.add_argument("--top", type=positive_int, default=10, help="layers to list")
    ap.add_argument("--include", nargs="+", default=None, metavar="GLOB",
                    help="saved model: only weights whose name matches a glob (e.g. 'encoder.*')")
    ap.add_argument("--json", action="store_true", help="print JSON instead of tables")
    ap.add_argument("--strict", action="store_true",
                    help="saved model: exit 1 if the pattern check fails, 2 if no weight was checked")
    return ap


def _resnet(a) -> int:
    import torch

    from .flops import count_params_flops
    from .grouping import find_layers
    from .nm.resnet import resnet50
    model = resnet50()
    p = a.pattern
    if hasattr(p, "block"):
        if a.sparsity is None:
            raise ValueError(f"--sparsity: the block pattern {p} needs a sparsity in [0, 1) to count, e.g. 0.5")
        found, skipped = find_layers(model, p, min_blocks=a.min_blocks, pad=True)
        density = {}
        for g in found:
            if g.needs_padding:
                skipped[g.name] = f"{p} blocks do not tile it"
            else:
                density[g.name] = g.keep_per_partition(a.sparsity) / g.n_groups
        what = f"{p} blocks at sparsity {a.sparsity:g}"
    else:
        if a.sparsity is not None and abs(a.sparsity - p.sparsity) > 1e-9:
            raise ValueError(f"--sparsity: the N:M pattern {p} fixes the sparsity at {p.sparsity:g}; leave it out")
        found, skipped = find_layers(model, p, layers=a.layers)
        density = {g.name: p.density for g in found}
        what = f"{p} ({a.layers} preset)"
    rep = count_params_flops(model, torch.zeros(1, 3, a.size, a.size), density)
    if a.json:
        print(json.dumps({k: v for k, v in rep.items() if k != "rows"}, indent=1))
        return 0
    print(rep.table(top=a.top))
    print(f"\nResNet-50, {what} on {len(density)} layers (dense: {', '.join(sorted(skipped)) or 'none'})")
    print(f"params: {rep['params'] - rep['norm_bias_params']:,} conv/linear weights "
          f"({rep['params']:,} with BN and biases); FLOPs: {rep['flops'] / 1e9:.3f} GMACs")
    return 0


def _saved(a) -> int:
    from .export import prunable_weights
    from .report import measure_weights
    state = read_state_dict(a.path, "path")
    keys = select_weights(prunable_weights(state, a.pattern), a.include)
    if not keys:
        msg = (f"no tensor of {a.path!r} was checked (no weight{' matching --include' if a.include else ''} of 2+ "
               f"dimensions"
               + (f" whose input size is a multiple of M={a.pattern.m})" if hasattr(a.pattern, "m") else
                  " that is 2-D or 4-D)"))
        if a.strict:
            raise ValueError(f"--strict: {msg}")
        print(msg)
        return 0
    budgets, note = None, ""
    if hasattr(a.pattern, "block") and a.sparsity is not None:
        budgets = {k: a.pattern.grouping(k, tuple(state[k].shape), pad=True).keep_per_partition(a.sparsity)
                   for k in keys}
        ran = _oneshot_layers(a.path, a.pattern, a.sparsity)
        if ran is not None:  # the run's own budgets: its allocation's per-layer sparsity, none for layers left dense
            budgets = {k: a.pattern.grouping(k, tuple(state[k].shape), pad=True).keep_per_partition(ran[k])
                       for k in keys if k in ran}
            note = (f" (budgets: each layer's block sparsity in report.json, {len(keys) - len(budgets)} layers the "
                    f"run left dense not checked)")
    # the file's overall sparsity: every floating weight of 2+ dimensions (Linear, conv, embedding tables)
    mats = [w for k, w in state.items() if k.endswith("weight") and w.is_floating_point() and w.dim() >= 2]
    rep = measure_weights({k: state[k] for k in keys}, a.pattern, budgets, mats, "whole file (all 2-D+ weights)")
    bad = sum(r["violations"] > 0 for r in rep.rows)
    if a.json:
        print(json.dumps(rep.to_dict(), indent=1))
    else:
        print(rep.table())
        print(f"{len(keys)} tensors checked, {bad} not {a.pattern}"
              + (" (no --sparsity: the block budget is not checked)" if hasattr(a.pattern, "block")
                 and budgets is None else note))
    return 1 if bad and a.strict else 0


def _oneshot_layers(path, pattern, sparsity):
    """{weight key: block sparsity} of the layers a ``python -m nn_bridge oneshot`` folder's report.json says the
    run pruned at ``pattern`` and target ``sparsity`` (its allocation may spread the sparsity unevenly, and it may
    leave layers dense), or None for any other file."""
    import os
    rpath = os.path.join(os.fspath(path), "report.json")
    if not os.path.isfile(rpath):
        return None
    try:
        with open(rpath) as f:
            rep = json.load(f)
        if rep.get("pattern") != str(pattern) or abs(float(rep.get("sparsity")) - sparsity) > 1e-9:
            return None
        return {r["name"] + ".weight": float(r["block_sparsity"]) for r in rep["layers"]}
    except (OSError, ValueError, TypeError, KeyError):  # not a report this tool wrote: the uniform budget
        return None


# options one mode reads and the other ignores: given to the other, an error naming them
_RESNET_ONLY = ("--layers", "--min-blocks", "--size", "--top")
_SAVED_ONLY = ("--include", "--strict")


def _main(argv) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    given = given_options(argv, parser)
    mode = "the ResNet-50 count (no file)" if a.path is not None else "the check of a saved model (a file)"
    for opt in sorted(given & set(_RESNET_ONLY if a.path is not None else _SAVED_ONLY)):
        raise ValueError(f"{opt}: only {mode} reads it; this run would ignore it")
    return _resnet(a) if a.path is None else _saved(a)


def main(argv=None) -> int:
    """Exit code 0 on success (``--strict``: 1 if a layer breaks the pattern); wrong arguments or an unreadable
    file give one line ``python -m nn_bridge count: error: ...`` and exit 2 (``--debug``: the traceback)."""
    return run_cli(_main, argv, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
