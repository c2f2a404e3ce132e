"""``python -m nn_bridge export``: store a pruned model's weights sparse, in one file.

  python -m nn_bridge export minilm-16x16 --pattern 16x16 --out minilm-16x16.bsr.pt
  python -m nn_bridge export model.safetensors --pattern 2:4 --out model.2of4.pt [--include "encoder.*"] [--strict]

The input is a saved state_dict (``.safetensors`` / ``.pt``) or a folder written by ``python -m nn_bridge oneshot``.
Every weight the pattern describes (``--include`` globs narrow them) is stored sparse when it has the pattern --
block: a BSR tensor (``torch.sparse_bsr``, the all-zero B x B blocks dropped); N:M: the N kept values of every
window of M inputs and their positions (uint8) -- and the rest is copied as it is (``nn_bridge.export``).  The
output is a ``torch.save`` file (``torch.load(..., weights_only=True)`` reads it);
``nn_bridge.export.load_exported_state`` turns it back into the dense state_dict, equal to the input.  ``--strict``:
an error when a chosen weight cannot be stored sparse (the reason is in the message).
"""
from __future__ import annotations

import sys

from ._cli_common import (ArgumentParser, pattern_arg, read_state_dict, run_cli, save_torch_file, select_weights,
                          writable_path)

__all__ = ["main", "build_parser"]

PROG = "python -m nn_bridge export"


def build_parser():
    ap = ArgumentParser(prog=PROG, description="Store a pruned model's weights sparse (BSR blocks, N:M compressed).")
    ap.add_argument("path", help="a saved state_dict (.safetensors/.pt) or an oneshot output folder")
    ap.add_argument("--pattern", type=pattern_arg, required=True, help="BxB blocks (e.g. 16x16) or N:M (e.g. 2:4)")
    ap.add_argument("--out", type=writable_path, required=True, help="the output file (torch.save)")
    ap.add_argument("--include", nargs="+", default=None, metavar="GLOB",
                    help="only weights whose name matches a glob (e.g. 'encoder.*')")
    ap.add_argument("--strict", action="store_true", help="error when a chosen weight cannot be stored sparse")
    return ap


def _nbytes(state) -> int:
    import torch
    n = 0
    for v in state.values():
        if not torch.is_tensor(v):
            continue
        if v.layout == torch.sparse_bsr:
            n += sum(t.numel() * t.element_size() for t in (v.values(), v.crow_indices(), v.col_indices()))
        else:
            n += v.numel() * v.element_size()
    return n


def _main(argv) -> int:
    a = build_parser().parse_args(argv)
    if not a.out:
        raise ValueError("--out: expected a file path, got ''")
    from .export import EXPORTED, export_state_dict, prunable_weights
    state = read_state_dict(a.path, "path")
    keys = select_weights(prunable_weights(state, a.pattern), a.include)
    if not keys:
        raise ValueError(f"{'--include' if a.include else 'path'}: no weight of {a.path!r} "
                         f"{'matching ' + ' '.join(a.include) + ' ' if a.include else ''}has the shape {a.pattern} "
                         f"describes")
    try:
        sd, status = export_state_dict(state, a.pattern, keys, strict=a.strict)
    except ValueError as e:  # --strict and a weight without the pattern: the message names the weight
        raise ValueError(f"--strict: {str(e).removeprefix('keys: ')}") from None
    save_torch_file(sd, a.out)
    done = [k for k, v in status.items() if v == EXPORTED]
    dense = {k: v for k, v in status.items() if v != EXPORTED}
    print(f"{len(done)} of {len(keys)} weights stored {a.pattern} sparse; {_nbytes(state):,} -> {_nbytes(sd):,} "
          f"bytes of tensors; saved: {a.out}")
    for k, why in list(dense.items())[:10]:
        print(f"  dense: {k}: {why}")
    if len(dense) > 10:
        print(f"  ... {len(dense) - 10} more left dense")
    return 0


def main(argv=None) -> int:
    """Exit code 0 on success; wrong arguments, an unreadable input or (``--strict``) a weight that cannot be stored
    sparse give one line ``python -m nn_bridge export: error: ...`` and exit 2 (``--debug``: the traceback)."""
    return run_cli(_main, argv, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
