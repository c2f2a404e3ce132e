"""Training-time block pruning of a Criteo-shaped click model (issue 5, benchmark 6b; SA++ paper Table 2 layout).

Model: nn_bridge.models.ClickModel (13 numeric + 26 categorical features, embedding width 10 -> 390-wide input,
three 400-wide ReLU layers, sigmoid output); only fc1 (390 x 400 as the GEMM matrix) is pruned, with B x B blocks
(B = 20 does not divide 390: the matrix is zero-padded to 400 x 400, tiling.py's stated policy; sparsity counts
blocks of the padded grid).  Data: nn_bridge.models.ClickTeacher (a fixed random teacher that uses 12 of the 39
feature blocks; see its docstring), streamed -- every step draws a fresh batch, so rows seen = steps x batch.
Optimizer: Adam, learning rate decaying exponentially from 2e-2 to 3e-4 (the paper's), SA++/ACDC with the paper's
Criteo schedules (groupsparse.schedules.sapp_criteo / acdc_criteo); magnitude and PowerProp train dense and cut
at 80% then fine-tune.  Metric: validation log loss on held-out rows, mean over seeds.

The full grid of the issue is the default (4 methods x B in {5, 10, 20} x 5 sparsities x 3 seeds):
    python benchmarks/bench_bridge_criteo.py
``--cells B:s ...`` replaces the blocks x sparsities product by an explicit list of (block, sparsity) cells.
What RESULTS.md reports (the full grid, 256 rows per step on CPU; about an hour on one core):
    python benchmarks/bench_bridge_criteo.py --batch 256 --threads 1
Every method sees the same stream for a given seed (batch of step t drawn with seed 10000 * seed + t) and is
evaluated on the same validation rows.  The table is laid out like the paper's Table 2: rows block size x
sparsity, columns methods, mean +- std (sample std) over seeds.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time

import torch
import torch.nn.functional as F

from nn_bridge.models import ClickModel, ClickTeacher
from nn_bridge.pruners import make_pruner

METHODS = ["magnitude", "powerprop", "acdc", "sapp"]


def run_one(method, block, sparsity, seed, steps, batch, teacher, val, lr0=2e-2, lr1=3e-4):
    torch.manual_seed(seed)
    model = ClickModel()
    pruner = None
    if method != "dense":
        pruner = make_pruner(method, model, sparsity, block, total_steps=steps, preset="criteo", pad=True,
                             include=["fc1"])
        params = pruner.weight_parameters()
    else:
        params = model.parameters()
    opt = torch.optim.Adam(params, lr=lr0)
    if pruner is not None:
        pruner.bind(opt)
    gamma = (lr1 / lr0) ** (1.0 / max(steps - 1, 1))
    for step in range(steps):
        for gr in opt.param_groups:
            gr["lr"] = lr0 * gamma ** step
        xn, xc, y = teacher.sample(batch, 10_000 * seed + step)
        loss = F.binary_cross_entropy_with_logits(model(xn, xc), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        if pruner is not None:
            pruner.step()
    achieved = 0.0
    if pruner is not None:
        achieved = pruner.finalize().block_sparsity
    with torch.no_grad():
        xn, xc, y = val
        vl = float(F.binary_cross_entropy_with_logits(model(xn, xc), y))
    return vl, achieved


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", nargs="+", default=METHODS)
    ap.add_argument("--blocks", type=int, nargs="+", default=[5, 10, 20])
    ap.add_argument("--sparsities", type=float, nargs="+", default=[0.9, 0.95, 0.97, 0.98, 0.99])
    ap.add_argument("--cells", nargs="+", default=None, metavar="B:s",
                    help="explicit (block, sparsity) cells, e.g. 10:0.95; overrides --blocks x --sparsities")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--n-val", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/bridge.json")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.cells:
        try:
            cells = [(int(c.split(":")[0]), float(c.split(":")[1])) for c in a.cells]
        except (IndexError, ValueError):
            ap.error(f"--cells: expected BLOCK:SPARSITY items such as 10:0.95, got {a.cells}")
    else:
        cells = [(B, s) for B in a.blocks for s in a.sparsities]
    teacher = ClickTeacher(seed=1234)
    val = teacher.sample(a.n_val, seed=999_999_999)
    info = {"machine": platform.platform(), "cpu_threads": a.threads, "python": platform.python_version(),
            "torch": torch.__version__, "steps": a.steps, "batch": a.batch, "train_rows": a.steps * a.batch,
            "n_val": a.n_val, "teacher_active_features": teacher.active_features,
            "bayes_val_logloss": teacher.bayes_logloss(*val)}
    print(json.dumps(info, indent=1), flush=True)
    rows = []
    for seed in a.seeds:
        t0 = time.perf_counter()
        vl, _ = run_one("dense", 0, 0.0, seed, a.steps, a.batch, teacher, val)
        rows.append({"method": "dense", "block": None, "sparsity": 0.0, "seed": seed, "val_logloss": vl,
                     "seconds": time.perf_counter() - t0})
        print(f"dense seed={seed} val_logloss={vl:.4f}", flush=True)
    for B, s in cells:
        for m in a.methods:
            for seed in a.seeds:
                t0 = time.perf_counter()
                vl, ach = run_one(m, B, s, seed, a.steps, a.batch, teacher, val)
                rows.append({"method": m, "block": B, "sparsity": s, "seed": seed, "val_logloss": vl,
                             "achieved_block_sparsity": ach, "seconds": time.perf_counter() - t0})
                print(f"{m:10s} B={B:2d} s={s:.2f} seed={seed} val_logloss={vl:.4f} achieved={ach:.4f} "
                      f"({rows[-1]['seconds']:.0f}s)", flush=True)

    def stats(sel):
        v = torch.tensor([r["val_logloss"] for r in rows if sel(r)], dtype=torch.float64)
        if not len(v):
            return math.nan, math.nan
        return float(v.mean()), float(v.std()) if len(v) > 1 else 0.0

    dense, dense_sd = stats(lambda r: r["method"] == "dense")
    print(f"\nValidation log loss, mean +- std over {len(a.seeds)} seed(s); dense {dense:.4f} +- {dense_sd:.4f}; "
          f"teacher (Bayes) {info['bayes_val_logloss']:.4f}")
    print("| block | sparsity | " + " | ".join(a.methods) + " |")
    print("|---|---|" + "---|" * len(a.methods))
    table = []
    for B, s in cells:
        ms = {m: stats(lambda r, m=m: r["method"] == m and r["block"] == B and r["sparsity"] == s)
              for m in a.methods}
        table.append({"block": B, "sparsity": s, **{m: {"mean": v[0], "std": v[1]} for m, v in ms.items()}})
        best = min(v[0] for v in ms.values())
        print(f"| {B}x{B} | {s:.0%} | " + " | ".join(
            ("**{:.4f}** ± {:.4f}" if v[0] == best else "{:.4f} ± {:.4f}").format(*v) for v in ms.values()) + " |")
    seconds = sum(r["seconds"] for r in rows)
    print(f"total training time {seconds:.0f} s over {len(rows)} runs")
    if a.out:
        data = json.load(open(a.out)) if os.path.exists(a.out) else {}
        data["criteo_training"] = {"info": info, "dense_val_logloss": dense, "dense_val_logloss_std": dense_sd,
                                   "cells": cells, "table": table, "rows": rows, "total_seconds": seconds,
                                   "command": "python benchmarks/bench_bridge_criteo.py " + " ".join(
                                       argv if argv is not None else __import__("sys").argv[1:])}
        os.makedirs(os.path.dirname(a.out), exist_ok=True)
        json.dump(data, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
