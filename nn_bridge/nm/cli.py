"""``python -m nn_bridge nm <command>`` (forwarded by ``nn_bridge.__main__`` to :func:`main`).

Commands:
  count   parameters and FLOPs of ResNet-50 (torchvision architecture) with a preset's N:M coverage
          e.g.  python -m nn_bridge nm count --pattern 1:16 --preset maxq
  digits  train dense / MaxQ / SR-STE / ASP-style on scikit-learn's digits (CPU) and print the test accuracy
          e.g.  python -m nn_bridge nm digits --method maxq --pattern 1:16 --epochs 30 --seed 0
  check   check the N:M pattern of every Linear / conv weight in a saved state_dict (``torch.save``)
          e.g.  python -m nn_bridge nm check model.pt --pattern 2:4
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Mapping

from .._cli_common import ArgumentParser, existing_file, load_torch_file, positive_int, run_cli

__all__ = ["main"]

PROG = "python -m nn_bridge nm"


def _pattern(text):
    """argparse type for --pattern: 'N:M' with 0 < N < M."""
    from .groups import NMPattern
    try:
        return NMPattern.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _count(a):
    import torch

    from .flops import count_params_flops
    from .groups import NMPattern
    from .presets import select_layers
    from .resnet import resnet50
    pat = NMPattern.parse(a.pattern)
    model = resnet50()
    names, skipped = select_layers(model, pat.m, a.preset)
    rep = count_params_flops(model, torch.zeros(1, 3, a.size, a.size), {n: pat.density for n in names})
    if a.json:
        print(json.dumps({k: v for k, v in rep.items() if k != "rows"}, indent=1))
        return 0
    print(rep.table(top=a.top))
    print(f"\nResNet-50, {pat} on {len(names)} layers ({a.preset} preset; dense: {', '.join(sorted(skipped))})")
    print(f"params: {rep['params'] - rep['norm_bias_params']:,} conv/linear weights "
          f"({rep['params']:,} with BN and biases); FLOPs: {rep['flops'] / 1e9:.3f} GMACs")
    return 0


def _digits(a):
    import torch

    from .digits import load_digits_split, train_run
    torch.set_num_threads(a.threads)
    data = load_digits_split()
    dense = None
    if a.method == "asp":
        dense, r = train_run("dense", None, a.seed, a.epochs, data)
        print(f"dense: test accuracy {r['test_acc']:.4f}")
    _, r = train_run(a.method, None if a.method == "dense" else str(a.pattern), a.seed, a.epochs, data,
                     dense_model=dense, layers=a.preset)
    print(json.dumps(r, indent=1, default=float))
    return 0


def _check(a):
    import torch

    from .groups import NMPattern, to_groups
    pat = NMPattern.parse(a.pattern)
    sd = load_torch_file(a.path, "path")
    if not isinstance(sd, Mapping):
        raise ValueError(f"path: {a.path!r} holds a {type(sd).__name__}, expected a state_dict (torch.save of "
                         f"model.state_dict())")
    bad, n_checked = 0, 0
    for k, w in sd.items():
        if (not isinstance(k, str) or not torch.is_tensor(w) or not k.endswith("weight") or w.dim() < 2
                or w.shape[1] % pat.m):
            continue
        nz = (to_groups(w, pat.m) != 0).sum(1)
        viol = int((nz > pat.n).sum())
        n_checked += 1
        bad += viol > 0
        print(f"{k:<50} {str(tuple(w.shape)):>22}  {'OK' if viol == 0 else f'{viol} groups violate'}"
              f"  sparsity {float((w == 0).float().mean()):.3f}")
    print(f"{n_checked} tensors checked, {bad} not {pat}")
    if a.strict and n_checked == 0:
        raise ValueError(f"--strict: no tensor of {a.path!r} was checked (no weight of 2+ dimensions whose input "
                         f"size is a multiple of M={pat.m})")
    return 1 if bad and a.strict else 0


def main(argv=None) -> int:
    """Exit code 0 on success (``check --strict``: 1 if a tensor violates the pattern); wrong arguments or an
    unreadable file give one line ``python -m nn_bridge nm: error: ...`` and exit 2 (``--debug``: the traceback)."""
    return run_cli(_main, argv, prog=PROG)


def _main(argv) -> int:
    from .presets import PRESETS
    ap = ArgumentParser(prog=PROG, description="N:M sparsity tools",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("count", help="parameters and FLOPs of N:M ResNet-50")
    c.add_argument("--pattern", type=_pattern, default="1:16")
    c.add_argument("--preset", default="maxq", choices=PRESETS)
    c.add_argument("--size", type=positive_int, default=224)
    c.add_argument("--top", type=positive_int, default=10, help="layers to list")
    c.add_argument("--json", action="store_true")
    d = sub.add_parser("digits", help="train on scikit-learn digits (CPU)")
    d.add_argument("--method", default="maxq", choices=["dense", "maxq", "srste", "asp"])
    d.add_argument("--pattern", type=_pattern, default="2:4")
    d.add_argument("--preset", default="maxq", choices=PRESETS)
    d.add_argument("--epochs", type=positive_int, default=30)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--threads", type=positive_int, default=1)
    k = sub.add_parser("check", help="check the N:M pattern of a saved state_dict")
    k.add_argument("path", type=existing_file)
    k.add_argument("--pattern", type=_pattern, default="2:4")
    k.add_argument("--strict", action="store_true",
                   help="exit 1 if any tensor violates the pattern, 2 if no tensor was checked")
    a = ap.parse_args(argv)
    return {"count": _count, "digits": _digits, "check": _check}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
