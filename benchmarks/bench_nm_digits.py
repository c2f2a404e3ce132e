"""MaxQ vs SR-STE vs ASP-style N:M training on scikit-learn's digits (real data, CPU), against the dense model.

Protocol (``nn_bridge.nm.digits``): a conv-BN-ReLU CNN (stem and classifier dense, MaxQ's coverage, the same for all
methods); dense, MaxQ and SR-STE train ``--epochs`` epochs from scratch; ASP-style prunes the dense model of the
same seed one-shot by magnitude and fine-tunes it ``--epochs`` more epochs (ASP's recipe).  MaxQ: linear
incremental schedule over the first quarter of training, tau = 0.01, lambda = 2e-4 (SR-STE too).  Test accuracy on
a fixed stratified split of 597 images, after folding the masks (exact N:M checked).  One thread.

Usage: python -m benchmarks.bench_nm_digits [--epochs 30] [--seeds 0 1 2] [--patterns 2:4 1:4 1:16]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from benchmarks.bench_nm_common import banner, update_results
from nn_bridge.nm.digits import load_digits_split, train_run

METHODS = ("maxq", "srste", "asp")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--patterns", nargs="+", default=["2:4", "1:4", "1:16"])
    ap.add_argument("--plot", default="benchmarks/results/nm_digits.png")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    info = banner()
    data = load_digits_split()
    print(f"digits: {data[0].shape[0]} train / {data[2].shape[0]} test images, {a.epochs} epochs, seeds {a.seeds}")
    t0 = time.perf_counter()
    runs = []
    for seed in a.seeds:
        dense, r = train_run("dense", None, seed, a.epochs, data)
        runs.append(r)
        print(f"seed {seed} dense        acc {r['test_acc']:.4f}", flush=True)
        for pat in a.patterns:
            for meth in METHODS:
                _, r = train_run(meth, pat, seed, a.epochs, data, dense_model=dense)
                assert r["exact_nm"]
                runs.append(r)
                extra = f" (after one-shot prune {r['acc_after_prune']:.4f})" if meth == "asp" else ""
                print(f"seed {seed} {meth:6s} {pat:>5s} acc {r['test_acc']:.4f}{extra}", flush=True)
    wall = time.perf_counter() - t0

    def stats(meth, pat):
        v = np.array([r["test_acc"] for r in runs if r["method"] == meth and r["pattern"] == pat])
        return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "accs": v.tolist()}

    summary = {"dense": stats("dense", None)}
    print(f"\ntest accuracy, mean +- std over {len(a.seeds)} seeds (dense {summary['dense']['mean']:.4f} +- "
          f"{summary['dense']['std']:.4f}); total wall {wall:.0f} s")
    print("| pattern | " + " | ".join(METHODS) + " | dense |")
    print("|---|" + "---|" * (len(METHODS) + 1))
    for pat in a.patterns:
        summary[pat] = {m: stats(m, pat) for m in METHODS}
        print(f"| {pat} | " + " | ".join(f"{summary[pat][m]['mean']:.4f} +- {summary[pat][m]['std']:.4f}"
                                          for m in METHODS) + f" | {summary['dense']['mean']:.4f} |")
    cache = [r["mask_cache"] for r in runs if r["method"] == "maxq"]
    tot = {k: sum(c[k] for c in cache) for k in cache[0]} if cache else {}
    print("MaxQ mask cache over all runs (refresh='auto'):", tot)
    sps = {m: float(np.mean([r["sec_per_step"] for r in runs if r["method"] == m])) for m in ("dense",) + METHODS}
    print("mean seconds per training step (1 thread; ASP = fine-tuning steps):",
          {k: round(v * 1e3, 2) for k, v in sps.items()}, "ms")
    if a.plot:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            fig, ax = plt.subplots(figsize=(6, 3.5))
            x = np.arange(len(a.patterns))
            for i, m in enumerate(METHODS):
                ax.errorbar(x + (i - 1) * 0.15, [summary[p][m]["mean"] for p in a.patterns],
                            [summary[p][m]["std"] for p in a.patterns], fmt="o", capsize=3, label=m)
            ax.axhline(summary["dense"]["mean"], color="k", ls="--", lw=1, label="dense")
            ax.set_xticks(x, a.patterns)
            ax.set_ylabel("test accuracy")
            ax.set_title(f"digits CNN, {len(a.seeds)} seeds")
            ax.legend()
            fig.tight_layout()
            fig.savefig(a.plot, dpi=120)
            print("plot:", a.plot)
        except Exception as e:  # plotting is a convenience
            print("plot failed:", e)
    update_results("digits_training", {"info": info, "epochs": a.epochs, "seeds": a.seeds, "summary": summary,
                                       "runs": runs, "maxq_cache": tot, "sec_per_step": sps, "wall_s": wall})


if __name__ == "__main__":
    main()
