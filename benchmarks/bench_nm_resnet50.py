"""ResNet-50 (torchvision architecture) with MaxQ's layer coverage at N:M: parameters and FLOPs next to the paper.

MaxQ (CVPR 2024 abstract) quotes ResNet-50 1:16 at 3.52M parameters and 0.44 GFLOPs.  We count conv / linear MACs
("FLOPs" in the pruning papers' sense, dense ResNet-50 = 4.09G) with each N:M layer at N/M of its weights and MACs,
and print the variants of the accounting that could explain a difference.  CPU only, ~10 s.

Usage: python benchmarks/bench_nm_resnet50.py [--patterns 1:16 2:4 1:4 2:8]
"""
from __future__ import annotations

import argparse

import torch

from benchmarks.bench_nm_common import banner, update_results
from nn_bridge.flops import count_params_flops
from nn_bridge.nm.presets import select_layers
from nn_bridge.nm.resnet import resnet50

PAPER = {"1:16": {"params": 3.52e6, "flops": 0.44e9}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patterns", nargs="+", default=["1:16", "2:4", "1:4", "2:8"])
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    info = banner()
    model = resnet50()
    print("model:", type(model).__module__, type(model).__name__)
    x = torch.zeros(1, 3, 224, 224)
    dense = count_params_flops(model, x)
    print(f"dense: params {dense['dense_params']:,}, conv/linear MACs {dense['dense_flops']:,}")
    by = {r["name"]: r for r in dense["rows"]}
    rows = []
    for pat in a.patterns:
        n, m = (int(v) for v in pat.split(":"))
        names, skipped = select_layers(model, m, "maxq")
        rep = count_params_flops(model, x, {k: n / m for k in names})
        ds = [k for k in names if "downsample" in k]
        no_ds = count_params_flops(model, x, {k: n / m for k in names if k not in ds})
        row = {"pattern": pat, "sparse_layers": len(names), "dense_layers": sorted(skipped),
               "params_with_bn_bias": rep["params"], "params_weights_only": rep["params"] - rep["norm_bias_params"],
               "gmacs": rep["flops"] / 1e9, "gflops_2x": rep["flops_x2"] / 1e9,
               "gmacs_plus_bn_relu_pool": (rep["flops"] + rep["other_flops"]) / 1e9,
               "variant_dense_downsample": {"params_weights_only": no_ds["params"] - no_ds["norm_bias_params"],
                                            "gmacs": no_ds["flops"] / 1e9},
               "stem_gmacs": by["conv1"]["macs"] / 1e9, "fc_gmacs": by["fc"]["macs"] / 1e9}
        if pat in PAPER:
            row["paper"] = PAPER[pat]
        rows.append(row)
        print(f"\n{pat}: {len(names)} sparse convs (dense: {', '.join(sorted(skipped))})")
        print(f"  params: {row['params_weights_only']:,} conv/fc weights only; {row['params_with_bn_bias']:,} "
              f"with BN and biases" + (f"   | paper {PAPER[pat]['params'] / 1e6:.2f}M" if pat in PAPER else ""))
        print(f"  FLOPs: {row['gmacs']:.3f} GMACs ({row['gflops_2x']:.3f} G at 2 per MAC; "
              f"{row['gmacs_plus_bn_relu_pool']:.3f} G with BN/ReLU/pool ops)"
              + (f"   | paper {PAPER[pat]['flops'] / 1e9:.2f}G" if pat in PAPER else ""))
        print(f"  variant, downsample convs dense: {row['variant_dense_downsample']['params_weights_only']:,} "
              f"params, {row['variant_dense_downsample']['gmacs']:.3f} GMACs")
    update_results("resnet50_counts", {"info": info, "dense_params": dense["dense_params"],
                                       "dense_gmacs": dense["dense_flops"] / 1e9, "rows": rows},
                   **({"path": a.out} if a.out else {}))


if __name__ == "__main__":
    main()
