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
import sys

__all__ = ["main"]


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
    _, r = train_run(a.method, None if a.method == "dense" else a.pattern, a.seed, a.epochs, data,
                     dense_model=dense, layers=a.preset)
    print(json.dumps(r, indent=1, default=float))
    return 0


def _check(a):
    import torch

    from .groups import NMPattern, to_groups
    pat = NMPattern.parse(a.pattern)
    sd = torch.load(a.path, map_location="cpu", weights_only=True)
    if hasattr(sd, "state_dict"):
        sd = sd.state_dict()
    bad, n_checked = 0, 0
    for k, w in sd.items():
        if not k.endswith("weight") or w.dim() < 2 or w.shape[1] % pat.m:
            continue
        nz = (to_groups(w, pat.m) != 0).sum(1)
        viol = int((nz > pat.n).sum())
        n_checked += 1
        bad += viol > 0
        print(f"{k:<50} {str(tuple(w.shape)):>22}  {'OK' if viol == 0 else f'{viol} groups violate'}"
              f"  sparsity {float((w == 0).float().mean()):.3f}")
    print(f"{n_checked} tensors checked, {bad} not {pat}")
    return 1 if bad and a.strict else 0


def main(argv=None) -> int:
    from .presets import PRESETS
    ap = argparse.ArgumentParser(prog="python -m nn_bridge nm", description="N:M sparsity tools",
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("count", help="parameters and FLOPs of N:M ResNet-50")
    c.add_argument("--pattern", default="1:16")
    c.add_argument("--preset", default="maxq", choices=PRESETS)
    c.add_argument("--size", type=int, default=224)
    c.add_argument("--top", type=int, default=10, help="layers to list")
    c.add_argument("--json", action="store_true")
    d = sub.add_parser("digits", help="train on scikit-learn digits (CPU)")
    d.add_argument("--method", default="maxq", choices=["dense", "maxq", "srste", "asp"])
    d.add_argument("--pattern", default="2:4")
    d.add_argument("--preset", default="maxq", choices=PRESETS)
    d.add_argument("--epochs", type=int, default=30)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--threads", type=int, default=1)
    k = sub.add_parser("check", help="check the N:M pattern of a saved state_dict")
    k.add_argument("path")
    k.add_argument("--pattern", default="2:4")
    k.add_argument("--strict", action="store_true", help="exit 1 if any tensor violates the pattern")
    a = ap.parse_args(argv)
    try:
        return {"count": _count, "digits": _digits, "check": _check}[a.cmd](a)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
