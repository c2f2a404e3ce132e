"""MiniLM-L6 2:4: the core's N:M IHT against the bridge's IHT loop from before issue 11, layer by layer and end to end.

Before issue 11 the bridge had its own N:M IHT loop: from the SparseGPT-style 'obs' support, exactly ``iters`` = 30
steps ``b <- P_NM(b - (H b - Bm) / L)`` (L = lambda_max(H)), a float32 batched-Cholesky refit of the last support,
and the better of that refit and the start.  Since then ``method='iht'`` is ``groupsparse.select(method='iht')``
(the same step, refits in float64, and it stops early once the support has been stable for 10 steps).  This script
reproduces the old loop (``reference``) and swaps it into the one-shot driver, so both run on the very same streams:

* ``--variant all``: on every layer's problem (H, Bm) -- the stream follows the reference -- the objective of 'obs',
  of the core's 'iht', of the core's 'iht' without its early stop (``tol`` ~ 0: all 30 steps) and of the reference;
* ``--variant core | core_full | reference``: the end-to-end cosine with that solver in every layer.

Same data as ``bench_nm_minilm_oneshot`` (256 calibration / 512 evaluation sentences, its functions).  Usage:
    python -m benchmarks.bench_nm_iht_reference --variant all
"""
from __future__ import annotations

import argparse
import copy
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

import nn_bridge.nm.oneshot as nmo
from benchmarks.bench_bridge_minilm_oneshot import batches, embed, load, sentences
from benchmarks.bench_nm_common import banner, update_results
from groupsparse import select
from nn_bridge.oneshot import solve_layers

_SOLVE = nmo.solve_nm_layer


def _project(beta, n, m):
    """Keep the n largest |beta| of every m consecutive inputs, per output."""
    p, K = beta.shape
    idx = torch.topk(beta.abs().reshape(p // m, m, K), n, dim=1).indices
    keep = torch.zeros((p // m, m, K), dtype=torch.bool, device=beta.device).scatter_(1, idx, True).reshape(p, K)
    return beta * keep, keep


def _refit32(H, Bm, keep, chunk_bytes=2e8):
    """The old loop's refit: least squares on each output's support, batched Cholesky in H's dtype."""
    p, K = Bm.shape
    s = int(keep[:, 0].sum())
    rows = torch.argsort((~keep).to(torch.int8), dim=0, stable=True)[:s].t()
    out = torch.zeros_like(Bm)
    step = max(1, int(chunk_bytes // max(s * s * H.element_size(), 1)))
    for a in range(0, K, step):
        r = rows[a:a + step]
        cols = torch.arange(a, a + r.shape[0], device=H.device)
        L, _ = torch.linalg.cholesky_ex(H[r[:, :, None], r[:, None, :]])
        out[r, cols[:, None]] = torch.cholesky_solve(Bm[r, cols[:, None]].unsqueeze(-1), L).squeeze(-1)
    return out


def _value(H, Bm, b):
    return float((0.5 * (b.double() * (H.double() @ b.double())).sum() - (Bm.double() * b.double()).sum()))


@torch.no_grad()
def _solver(variant, H, Bm, n, m, keep0, iters):
    if variant == "core":
        b, keep, _ = _SOLVE(H, Bm, n, m, method="iht", iters=iters)
        return b, keep
    if variant == "core_full":  # the core's iteration without the early stop (tol ~ 0: every one of the 30 steps)
        groups, budget = nmo._core_problem(*Bm.shape, n, m)
        sol = select(nmo.GramLeastSquares(H, Bm), groups, budget, method="iht", init=nmo._support(keep0),
                     max_iter=iters, tol=1e-150)
        return (torch.reshape(sol.info["coef_native"], Bm.shape).to(Bm.dtype),
                nmo._keep(sol.support, Bm.shape, Bm.device))
    b = start = _refit32(H, Bm, keep0)  # 'reference': the pre-issue-11 loop
    L = float(torch.linalg.eigvalsh(H)[-1])
    for _ in range(iters):
        b, keep = _project(b - (H @ b - Bm) / L, n, m)
    b = _refit32(H, Bm, keep)
    return (b, keep) if _value(H, Bm, b) < _value(H, Bm, start) else (start, keep0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", choices=["all", "core", "core_full", "reference"], default="all")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    info = banner()
    layers = []

    def solve(H, Bm, n, m, *, method="iht", iters=30, **kw):
        if method != "iht":
            return _SOLVE(H, Bm, n, m, method=method, iters=iters, **kw)
        b0, keep0, _ = _SOLVE(H, Bm, n, m, method="obs")
        names = ("core", "core_full", "reference") if a.variant == "all" else (a.variant,)
        out = {v: _solver(v, H, Bm, n, m, keep0, iters) for v in names}
        row = {"obs": _value(H, Bm, b0), **{v: _value(H, Bm, b) for v, (b, _) in out.items()}}
        layers.append(row)
        b, keep = out["reference" if a.variant == "all" else a.variant]
        return b, keep, {"objective": row[names[-1]], "history": []}

    nmo.solve_nm_layer = solve  # the driver imports it at call time
    tok, dense = load()
    sents = sentences()
    cal, ev = batches(tok, sents[:256]), batches(tok, sents[256:768])
    masks = [b["attention_mask"].bool() for b in cal]
    ref = embed(dense, ev)
    model = copy.deepcopy(dense)
    t0 = time.perf_counter()
    try:
        res = solve_layers(model, cal, "2:4", method="iht", include=lambda n: n.startswith("encoder."),
                           row_masks=masks, progress=False, blocks=[f"encoder.layer.{i}" for i in range(6)])
    finally:
        nmo.solve_nm_layer = _SOLVE
    cos = float((embed(model, ev) * ref).sum(-1).mean())
    errs = res.layer_rel_error
    out = {"info": info, "variant": a.variant, "cosine": cos, "seconds": time.perf_counter() - t0,
           "mean_layer_rel_error": sum(errs.values()) / len(errs), "layers": layers}
    print(f"2:4 iht variant {a.variant}: cosine {cos:.4f}, mean layer rel. error {out['mean_layer_rel_error']:.5f}")
    if a.variant == "all":
        # objective gains over 'obs' (the objective is 1/2 <b, H b> - <Bm, b>: only differences mean something)
        gain = {v: sum(r["obs"] - r[v] for r in layers) for v in ("core", "core_full", "reference")}
        worst = {v: max(r[v] - r["reference"] for r in layers) for v in ("core", "core_full")}
        out.update(gain_over_obs=gain, worst_layer_excess_over_reference=worst)
        print(f"summed objective gain over obs, {len(layers)} layers: " +
              ", ".join(f"{v} {g:.5g}" for v, g in gain.items()))
        print("largest per-layer excess over the reference: " + ", ".join(f"{v} {g:.3g}" for v, g in worst.items()))
    update_results("minilm_2of4_iht_reference_" + a.variant, out)


if __name__ == "__main__":
    main()
