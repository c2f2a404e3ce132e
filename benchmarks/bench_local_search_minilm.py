"""What local search adds on top of OBS on MiniLM-L6 (issue 11): per-layer objective before/after the swaps and the
end-to-end embedding cosine, at 16x16 blocks (30%) and 2:4.

Same data and split as ``benchmarks/bench_bridge_minilm_oneshot.py`` (256 calibration sentences, the next 512 for
evaluation, max 128 tokens; metric: mean cosine between the pruned and the dense mean-pooled embeddings).  Each
pattern is pruned twice through the bridge's public one-shot API, ``nn_bridge.oneshot_prune(..., method=...)``:
with ``'obs'`` and with ``'obs+local_search'`` (``groupsparse.select``: the OBS support, then exact swaps while the
layer's loss falls -- the combinatorial step of SequentialAttention++).  In the local-search run every layer's
``select`` call is observed (a pass-through wrapper records the Solution it returns: the OBS start's objective
``info['start_objective']``, the final objective, the number of swaps and the layer's unconstrained optimum
f* = -1/2 tr(B^T H^-1 B) of the same Gram problem); the per-layer gain is reported as the fraction of the pruning
loss f(OBS) - f* that the swaps recover.  ``rel_error`` per layer (the bridge's report) is given for both runs
(those differ also through the inputs, which earlier layers change).

A pattern the driver does not route to ``groupsparse.select`` (the N:M driver's own method list) is recorded as
refused, with its error, and the run goes on.

Usage:  nice -n 5 python benchmarks/bench_local_search_minilm.py [--patterns 16x16 2:4] [--sparsity 0.3]
        [--allocation loss] [--damp 0.1] [--layer-cap 1.5] [--refine-steps 0] [--threads 2]
        [--out benchmarks/results/local_search.json]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.bench_bridge_minilm_oneshot import batches, embed, load, sentences  # noqa: E402


class SelectRecorder:
    """Wraps ``groupsparse.select`` (the attribute the bridge calls) and records, per call, what the Solution says;
    the answer is returned unchanged."""

    def __init__(self):
        import groupsparse
        self.mod, self.orig, self.calls = groupsparse, groupsparse.select, []

    def __enter__(self):
        def select(loss, groups, k, method="splicing", **kw):
            t0 = time.perf_counter()
            sol = self.orig(loss, groups, k, method=method, **kw)
            rec = {"method": method, "shape": list(loss.B.shape), "seconds": time.perf_counter() - t0,
                   "objective": sol.objective, "start_objective": sol.info.get("start_objective"),
                   "swaps": sum(len(m["drop"]) for m in sol.info.get("moves", []))}
            H = loss.H.double()
            if loss.ridge:
                H = H + loss.ridge * torch.eye(H.shape[0], dtype=H.dtype)
            B = loss.B.double()
            rec["optimum"] = loss.c - 0.5 * float((B * torch.linalg.solve(H, B)).sum())
            self.calls.append(rec)
            return sol
        self.mod.select = select
        return self

    def __exit__(self, *exc):
        self.mod.select = self.orig


def run(dense, cal, masks, ev, ref, pattern, sparsity, method, a, layers):
    import nn_bridge
    model = copy.deepcopy(dense)
    kw = dict(include=["encoder.*"], blocks=layers, damp=a.damp, progress=False, row_masks=masks, min_blocks=1)
    if "x" in pattern:
        kw.update(allocation=a.allocation, max_layer_sparsity=min(0.9, a.layer_cap * sparsity),
                  refine_steps=a.refine_steps)
    t0 = time.perf_counter()
    with SelectRecorder() as rec:
        res = nn_bridge.oneshot_prune(model, cal, pattern, sparsity if "x" in pattern else None, method=method, **kw)
    secs = time.perf_counter() - t0
    cos = float((embed(model, ev) * ref).sum(-1).mean())
    return {"pattern": pattern, "sparsity": sparsity, "method": method, "cosine": cos, "seconds": secs,
            "layers": [{"name": r["name"], "rel_error": r["rel_error"], "weight_sparsity": r["weight_sparsity"]}
                       for r in res.layers],
            "select_calls": rec.calls}


@torch.no_grad()
def nm_layer_study(dense, cal, masks, globs, n, m, damp, max_time, threads):
    """The N:M layer problems of the dense model, solved by ``groupsparse.select`` directly: for every Linear
    matching ``globs``, H = X^T X / t over the real calibration tokens reaching it in the dense model, damped as the
    bridge damps it (H + damp mean(diag H) I), Bm = H M (M = W^T, the dense GEMM matrix, so the optimum is M and
    c = 1/2 tr(M^T H M) makes the objective the layer's output error / 2), under ``Budget.n_of_m(n, m, (p, K))``.
    The start is the bridge's N:M 'obs' support (``nm.oneshot``: SparseGPT's N:M OBS sweep on H from the optimum,
    ``sequential_obs.sparsegpt(H, M, nm, damp=0)``), refit exactly; then ``select(method='local_search',
    start=that support, max_time=...)``.  (``select(method='obs')`` under the partition budget -- greedy backward
    OBS per column -- costs O(K p^3) and is too slow for the 1536-input layers on this machine.)  Returns one row
    per layer: objective / c before and after the swaps, the swaps, seconds."""
    import fnmatch

    import groupsparse as gs
    from groupsparse.selection import Budget
    names = [nm for nm, mod in dense.named_modules()
             if isinstance(mod, torch.nn.Linear) and any(fnmatch.fnmatchcase(nm, g) for g in globs)]
    grams, count = {nm: 0.0 for nm in names}, [0]
    cur = {}

    def hook(name):
        def f(mod, inp, out):
            x = inp[0][cur["mask"]].double()
            grams[name] = grams[name] + x.T @ x
        return f
    hs = [dense.get_submodule(nm).register_forward_hook(hook(nm)) for nm in names]
    try:
        for b, mk in zip(cal, masks):
            cur["mask"] = mk
            dense(**b)
            count[0] += int(mk.sum())
    finally:
        for h in hs:
            h.remove()
    rows = []
    for nm in names:
        M = dense.get_submodule(nm).weight.detach().double().T.contiguous()  # (p inputs, K outputs)
        H = grams[nm] / count[0]
        H = H + damp * float(torch.diagonal(H).mean()) * torch.eye(H.shape[0], dtype=H.dtype)
        Bm = H @ M
        c = 0.5 * float((M * Bm).sum())
        loss = gs.GramLeastSquares(H, Bm, c)
        groups = gs.Groups.block_tiling(tuple(M.shape), 1)
        budget = Budget.n_of_m(n, m, tuple(M.shape))
        row = {"name": nm, "shape": list(M.shape)}
        t0 = time.perf_counter()
        from groupsparse.selection import sequential_obs
        keep = sequential_obs.sparsegpt(H, M, nm=(n, m), damp=0.0).keep
        start = np.flatnonzero(keep.numpy().ravel())  # group i*K + k is weight (i, k)
        ob = gs.select(loss, groups, budget, method="local_search", start=start, max_swaps=0)  # its exact refit
        row["obs_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        ls = gs.select(loss, groups, budget, method="local_search", start=ob.support, max_time=max_time)
        row.update(ls_seconds=time.perf_counter() - t0, obs_rel=ob.objective / c, ls_rel=ls.objective / c,
                   swaps=sum(len(mv["drop"]) for mv in ls.info["moves"]), converged=ls.converged)
        rows.append(row)
        print(f"  {nm:45s} {tuple(M.shape)}  OBS sweep + refit {row['obs_rel']:.5f} -> local search {row['ls_rel']:.5f} "
              f"({row['swaps']} swaps, obs {row['obs_seconds']:.0f} s + {row['ls_seconds']:.0f} s"
              f"{'' if ls.converged else ', stopped by max_time'})", flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patterns", nargs="+", default=["16x16", "2:4"])
    ap.add_argument("--sparsity", type=float, default=0.3, help="block patterns: the fraction of blocks removed")
    ap.add_argument("--allocation", default="loss")
    ap.add_argument("--damp", type=float, default=0.1)
    ap.add_argument("--layer-cap", type=float, default=1.5)
    ap.add_argument("--refine-steps", type=int, default=0)
    ap.add_argument("--methods", nargs="+", default=["obs", "obs+local_search"])
    ap.add_argument("--nm-study-layers", nargs="*", default=["encoder.layer.0.*"],
                    help="globs of the Linears whose dense-model N:M problems are solved directly (per-layer "
                         "objective before/after the swaps) when the driver refuses 'obs+local_search' for N:M")
    ap.add_argument("--nm-max-time", type=float, default=120.0, help="seconds per layer for the local search")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/local_search.json")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    import transformers
    tok, dense = load()
    sents = sentences()
    cal, ev = batches(tok, sents[:256]), batches(tok, sents[256:256 + 512])
    masks = [b["attention_mask"].bool() for b in cal]
    layers = [f"encoder.layer.{i}" for i in range(len(dense.encoder.layer))]
    ref = embed(dense, ev)
    info = {"machine": platform.platform(), "cpu_threads": a.threads, "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__, "n_calib": 256, "n_eval": 512,
            "damp": a.damp, "allocation": a.allocation, "layer_cap": a.layer_cap, "refine_steps": a.refine_steps,
            "command": "python benchmarks/bench_local_search_minilm.py " + " ".join(sys.argv[1:] if argv is None
                                                                                 else argv)}
    print(json.dumps(info, indent=1), flush=True)
    rows = []  # earlier rows of this file are kept unless this run redoes them (one pattern per run is fine)
    if a.out and os.path.exists(a.out):
        with open(a.out) as f:
            rows = json.load(f).get("rows", [])
    for pattern in a.patterns:
        for method in a.methods:
            try:
                row = run(dense, cal, masks, ev, ref, pattern, a.sparsity, method, a, layers)
            except ValueError as e:  # e.g. a driver that does not hand this pattern's layers to groupsparse.select
                row = {"pattern": pattern, "method": method, "refused": str(e)}
                print(f"{pattern} {method}: refused: {e}", flush=True)
            else:
                calls = [c for c in row["select_calls"] if c["start_objective"] is not None]
                gains = [(c["start_objective"] - c["objective"]) / max(c["start_objective"] - c["optimum"], 1e-300)
                         for c in calls]
                row["recovered_fraction"] = {"mean": float(np.mean(gains)) if gains else None,
                                             "max": float(np.max(gains)) if gains else None}
                print(f"{pattern} {method:18s} cosine={row['cosine']:.4f} time={row['seconds']:.1f}s"
                      + (f" swaps={sum(c['swaps'] for c in calls)} recovered mean {np.mean(gains):.4f} max "
                         f"{np.max(gains):.4f}" if gains else ""), flush=True)
            rows = [r for r in rows if (r.get("pattern"), r.get("method"), r.get("study"))
                    != (row["pattern"], row["method"], None)] + [row]
            if "refused" in row and ":" in pattern and a.nm_study_layers:
                n, m = (int(v) for v in pattern.split(":"))
                print(f"{pattern}: per-layer study on the dense model's layer problems ({a.nm_study_layers})",
                      flush=True)
                rows = [r for r in rows if not (r.get("pattern") == pattern and r.get("study"))]
                rows.append({"pattern": pattern, "study": "dense-model layer problems, select directly",
                             "damp": a.damp, "layers": nm_layer_study(dense, cal, masks, a.nm_study_layers, n, m,
                                                                       a.damp, a.nm_max_time, a.threads)})
            if a.out:
                with open(a.out, "w") as f:
                    json.dump({"info": info, "rows": rows}, f, indent=1)  # info: of the latest run


if __name__ == "__main__":
    main()
