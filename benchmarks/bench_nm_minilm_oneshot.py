"""One-shot 2:4 of every encoder Linear of the pretrained MiniLM-L6: solver-based vs magnitude, same sentences.

Setup of the block issue's benchmark (``bench_bridge_minilm_oneshot``, whose sentence cutting, tokenization and
embedding functions are imported so both use the very same data): 256 calibration sentences and 512 other
evaluation sentences from CPython's ``pydoc_data.topics``; metric = mean cosine similarity between the pruned and
the dense mean-pooled, L2-normalized embeddings.  All 36 encoder Linears (6 layers x q, k, v, attention output,
intermediate, output) get 2:4 through the one one-shot driver (``nn_bridge.oneshot.solve_layers``).  Methods
(``nn_bridge.nm.oneshot``): magnitude (no refit), magnitude_refit, obs
(SparseGPT-style N:M OBS + exact refit), iht (the default: ``groupsparse.select(method='iht')`` started from the
obs support under ``Budget.n_of_m``, the best exact refit seen), seqobs (the scalable sequential OBS: joint drop
subsets per window, CG on the support), sparsegpt and wanda (the papers' 2:4 methods).

Usage: python -m benchmarks.bench_nm_minilm_oneshot [--methods magnitude magnitude_refit obs iht] [--pattern 2:4]
       (the run reported in RESULTS.md: --methods magnitude iht, on a shared, heavily loaded 2-core machine)
       [--refine-steps 512 --refine-lr 3e-4]  (block reconstruction after each encoder layer, N:M masks fixed)
"""
from __future__ import annotations

import argparse
import copy
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

from benchmarks.bench_bridge_minilm_oneshot import batches, embed, load, sentences
from benchmarks.bench_nm_common import banner, update_results
from nn_bridge.oneshot import solve_layers


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", nargs="+",
                    default=["magnitude", "magnitude_refit", "obs", "iht", "seqobs", "sparsegpt", "wanda"])
    ap.add_argument("--pattern", default="2:4")
    ap.add_argument("--n-calib", type=int, default=256)
    ap.add_argument("--n-eval", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-blocks", dest="blocks", action="store_false",
                    help="re-run the model prefix per layer instead of replaying one cached encoder layer")
    ap.add_argument("--rounds", type=int, default=1,
                    help="select('iht') calls of the 'iht' method, each from the best support so far")
    ap.add_argument("--ls-max-time", type=float, default=60.0,
                    help="seconds of swaps per layer for 'obs+local_search'")
    ap.add_argument("--refine-steps", type=int, default=0,
                    help="Adam steps of block reconstruction per encoder layer after its layers are pruned (0: none)")
    ap.add_argument("--refine-lr", type=float, default=3e-4, help="learning rate of --refine-steps")
    ap.add_argument("--tag", default="", help="suffix of the results key (keeps earlier rows in results/nm.json)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    info = banner()
    tok, dense = load()
    sents = sentences()
    calib_s, eval_s = sents[:a.n_calib], sents[a.n_calib:a.n_calib + a.n_eval]
    assert not set(calib_s) & set(eval_s)
    cal, ev = batches(tok, calib_s), batches(tok, eval_s)
    masks = [b["attention_mask"].bool() for b in cal]
    ref = embed(dense, ev)
    info.update(n_calib=len(calib_s), n_eval=len(eval_s), calib_tokens=int(sum(int(m.sum()) for m in masks)))
    print(f"calibration {len(calib_s)} sentences ({info['calib_tokens']} tokens), evaluation {len(eval_s)}")
    rows = []
    for meth in a.methods:
        model = copy.deepcopy(dense)
        t0 = time.perf_counter()
        res = solve_layers(model, cal, a.pattern, method=meth, include=lambda n: n.startswith("encoder."),
                           row_masks=masks, progress=False,
                           blocks=[f"encoder.layer.{i}" for i in range(6)] if a.blocks else None,
                           refine_steps=a.refine_steps, refine_lr=a.refine_lr,
                           **({"rounds": a.rounds} if meth == "iht" else
                              {"max_time": a.ls_max_time} if meth == "obs+local_search" else {}))
        secs = time.perf_counter() - t0
        rep = res.report()
        assert rep["exact_nm"] and rep["n_layers"] == 36
        cos = float((embed(model, ev) * ref).sum(-1).mean())
        errs = res.layer_rel_error
        name = meth + (f"+refine{a.refine_steps}" if a.refine_steps else "")
        rows.append({"method": name, "cosine": cos, "seconds": secs, "weight_sparsity": rep["weight_sparsity"],
                     "mean_layer_rel_error": sum(errs.values()) / len(errs),
                     "layer_rel_error": {k: round(v, 5) for k, v in errs.items()},
                     "block_rel_error_before_after_refine": {k: [round(x, 5) for x in v]
                                                             for k, v in res.block_error.items()}})
        print(f"{a.pattern} {name:16s} cosine {cos:.4f}  mean layer rel. error {rows[-1]['mean_layer_rel_error']:.4f}"
              f"  time {secs:6.1f}s", flush=True)
    print("\n| method | mean cosine (pruned vs dense) | mean layer rel. error | time (s) |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['cosine']:.4f} | {r['mean_layer_rel_error']:.4f} | {r['seconds']:.0f} |")
    info.update(ls_max_time=a.ls_max_time, refine_steps=a.refine_steps, refine_lr=a.refine_lr)
    update_results("minilm_oneshot_" + a.pattern.replace(":", "of") + a.tag,
                   {"info": info, "pattern": a.pattern, "rows": rows})


if __name__ == "__main__":
    main()
