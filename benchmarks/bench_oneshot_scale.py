"""Full-scale one-shot pruning of single Linear layers of LLM shapes: time, peak memory and layer error.

One Linear per shape (in -> out) 768->3072, 3072->768, 2048->8192, 8192->2048, 4096->11008, 11008->4096, calibrated
on 4096 tokens of correlated synthetic activations (AR(1) along the features, rho = 0.8, plus a rank-16 common
part and log-normal feature scales with 1% outlier features x 5, as LLM activations have), dense weights
N(0, 1/in).  Patterns 16x16 blocks at 50% and 2:4.  Methods (``groupsparse.selection.sequential_obs``):

* ``seqobs``    -- sequential group OBS, the sweep alone (the scalable method: one factor of H^-1, O(p^2 + pK)
  memory, O(p^3 + p^2 K) time);
* ``seqobs_cg`` -- the bridge's setting (``nn_bridge.oneshot.SEQOBS_OPTIONS``: row-block budgets by the exact OBS
  saliency, then 20 preconditioned CG iterations on the support, ~40 p^2 K more flops; below ``--cg-max-flops``);
* ``obs``       -- the exact path: block group OBS backward elimination + exact refit (``nn_bridge.oneshot``, one
  p x p system per column block) or, for 2:4, the N:M driver's 'obs' (SparseGPT-style selection + exact refit per
  output); only where its memory estimate fits ``--exact-max-gb`` and p <= ``--exact-max-p``;
* ``sparsegpt`` -- SparseGPT (unstructured 50% beside 16x16, 2:4 beside 2:4), ``wanda`` -- Wanda, likewise.

All methods see the same H = X^T X / n, damped by 1% of its mean diagonal (SparseGPT's damping, which it applies
itself; the others get the damped H).  Every shape runs in its own subprocess (data and Gram formed once), and
each (pattern, method) gets its own peak-RSS mark (VmHWM, reset through /proc/self/clear_refs before the solve; it
includes the H and W that every method holds).  Relative layer error = ||X (W - W^)||_F / ||X W||_F on the
calibration tokens (through the undamped H).  Reported: wall time of the solve (``seconds``), its CPU time
(``cpu_s``: on a shared machine the wall time is not the solve's own), the Gram product (``gram_s``), peak RSS, the
load average.

Usage: nice -n 5 python -m benchmarks.bench_oneshot_scale [--device cpu|cuda] [--shapes 768x3072 ...] [--quick]
       [--patterns 16x16 2:4] [--methods seqobs obs sparsegpt wanda] [--out benchmarks/results/oneshot_scale.json]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

import numpy as np

SHAPES = ["768x3072", "3072x768", "2048x8192", "8192x2048", "4096x11008", "11008x4096"]
QUICK = ["256x512", "512x256"]
METHODS = ["seqobs", "seqobs_cg", "obs", "sparsegpt", "wanda"]
OUT = "benchmarks/results/oneshot_scale.json"


def make_layer(p, K, n, seed=0):
    """Calibration inputs X (n, p) and dense GEMM weights W (p, K), float32 numpy (built in row chunks)."""
    from scipy.signal import lfilter
    rng = np.random.default_rng(seed)
    rho = 0.8
    A = rng.standard_normal((16, p)).astype(np.float32) * 0.5
    scale = np.exp(rng.normal(0.0, 0.5, p)).astype(np.float32)
    scale[rng.choice(p, max(1, p // 100), replace=False)] *= 5.0
    X = np.empty((n, p), np.float32)
    for a in range(0, n, 512):
        b = min(n, a + 512)
        E = rng.standard_normal((b - a, p), dtype=np.float32)
        X[a:b] = lfilter([math.sqrt(1 - rho * rho)], [1.0, -rho], E, axis=1).astype(np.float32)
        X[a:b] += rng.standard_normal((b - a, 16), dtype=np.float32) @ A
    X *= scale
    W = (rng.standard_normal((p, K), dtype=np.float32) / np.float32(math.sqrt(p)))
    return X, W


def exact_obs_bytes(p, K, B=16, sparsity=0.5):
    """Memory estimate of the exact block path (``nn_bridge.oneshot.obs_paths``: the stacked downdates V of every
    column block, C x p x B*steps float64, plus H^-1 and the refit) and of the N:M refit."""
    from nn_bridge.oneshot import obs_memory_bytes
    return obs_memory_bytes(p, K, B, int(round(sparsity * (p // B) * (K // B))))


def _peak_rss_reset():
    """Reset the kernel's peak-RSS mark of this process (VmHWM; /proc/self/clear_refs, Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_gb():
    """VmHWM of this process (GB): the peak since the last reset; else getrusage's lifetime peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def _solve(m, nm, H, Hd, W, K, p):
    from groupsparse.selection.sequential_obs import seqobs, sparsegpt, wanda
    pat = {"nm": (2, 4)} if nm else {"sparsity": 0.5}
    if m == "seqobs":  # the sweep alone
        return (seqobs(Hd, W, nm=(2, 4)) if nm else seqobs(Hd, W, block=16, sparsity=0.5)).coef
    if m == "seqobs_cg":  # the bridge's setting (nn_bridge.oneshot.SEQOBS_OPTIONS)
        from nn_bridge.oneshot import SEQOBS_OPTIONS
        if nm:
            return seqobs(Hd, W, nm=(2, 4), refit_iters=SEQOBS_OPTIONS["refit_iters"]).coef
        return seqobs(Hd, W, block=16, sparsity=0.5, **SEQOBS_OPTIONS).coef
    if m == "sparsegpt":
        return sparsegpt(H, W, **pat).coef
    if m == "wanda":
        return wanda(H, W, **pat).coef
    if m == "obs" and nm:
        from nn_bridge.nm.oneshot import solve_nm_layer
        return solve_nm_layer(Hd, Hd @ W, 2, 4, method="obs")[0]
    if m == "obs":
        from nn_bridge.oneshot import _select_layer
        from nn_bridge.tiling import LayerTiling
        t = LayerTiling("layer", (K, p), 16)
        Hd64 = Hd.double()
        return _select_layer(Hd64, Hd64 @ W.double(), t, t.n_blocks - int(round(0.5 * t.n_blocks)), "obs")[1]
    raise ValueError(f"method: unknown {m!r}")


def worker(job):
    """One shape: the data and its Gram once, then every (pattern, method) with its own peak-RSS mark."""
    import torch
    torch.set_num_threads(job["threads"])
    dev = torch.device(job["device"])
    p, K = job["p"], job["K"]
    X, W = make_layer(p, K, job["tokens"])
    t0 = time.perf_counter()
    Xt = torch.from_numpy(X).to(dev)
    del X
    H = (Xt.T @ Xt) / Xt.shape[0]
    del Xt
    H = 0.5 * (H + H.T)
    W = torch.from_numpy(W).to(dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    gram_s = time.perf_counter() - t0
    Hd = H + 0.01 * H.diagonal().mean() * torch.eye(p, dtype=H.dtype, device=dev)
    for pat, m in job["runs"]:
        reset = _peak_rss_reset()
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        ru = resource.getrusage(resource.RUSAGE_SELF)
        cpu0 = ru.ru_utime + ru.ru_stime  # CPU seconds of the solve: the wall time on a shared machine is not its own
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        try:
            What = _solve(m, pat == "2:4", H, Hd, W, K, p)
        except Exception as e:  # one failing method does not hide the others
            print("RESULT " + json.dumps({"pattern": pat, "method": m, "status": f"failed: {e!r}"[:500]}), flush=True)
            continue
        if dev.type == "cuda":
            torch.cuda.synchronize()
        secs = time.perf_counter() - t0
        ru = resource.getrusage(resource.RUSAGE_SELF)
        out = {"pattern": pat, "method": m, "status": "ok", "seconds": secs, "gram_s": gram_s,
               "cpu_s": ru.ru_utime + ru.ru_stime - cpu0, "loadavg": load, "peak_rss_gb": _peak_rss_gb(),
               "peak_rss_is": "this solve (VmHWM reset before it)" if reset else "process lifetime (ru_maxrss)"}
        D = What.to(W.dtype) - W  # the error through H in the working dtype, summed in float64
        out["rel_error"] = math.sqrt(float((D * (H @ D)).double().sum()) / float((W * (H @ W)).double().sum()))
        out["weight_sparsity"] = float((What == 0).sum()) / What.numel()
        if dev.type == "cuda":
            out["peak_cuda_gb"] = torch.cuda.max_memory_allocated() / 1e9
        del What, D
        print("RESULT " + json.dumps(out), flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", nargs="+", default=None, help="in x out, e.g. 11008x4096")
    ap.add_argument("--quick", action="store_true", help=f"small shapes {QUICK} and 1024 tokens")
    ap.add_argument("--patterns", nargs="+", default=["16x16", "2:4"], choices=["16x16", "2:4"])
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    ap.add_argument("--tokens", type=int, default=None, help="calibration tokens (default 4096; --quick 1024)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--exact-max-p", type=int, default=3072)
    ap.add_argument("--exact-max-gb", type=float, default=5.0)
    ap.add_argument("--cg-max-flops", type=float, default=2e12,
                    help="run seqobs_cg (20 CG iterations, ~40 p^2 K flops) only below this")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per shape (one subprocess)")
    ap.add_argument("--out", default=OUT)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        return worker(json.loads(a.worker))
    if a.device.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            raise SystemExit("device: 'cuda' asked but torch.cuda.is_available() is False")
    from benchmarks.common import machine_info, print_banner, write_json
    info = machine_info(("numpy", "scipy", "torch", "groupsparse"))
    print_banner(info)
    info["loadavg_start"] = os.getloadavg()
    print("load average:", " ".join(f"{x:.2f}" for x in info["loadavg_start"]))
    shapes = a.shapes or (QUICK if a.quick else SHAPES)
    tokens = a.tokens or (1024 if a.quick else 4096)
    rows = []
    for shape in shapes:
        p, K = (int(v) for v in shape.lower().split("x"))
        runs = []
        for pat in a.patterns:
            for m in a.methods:
                base = {"shape": shape, "in": p, "out": K, "pattern": pat, "method": m, "tokens": tokens,
                        "device": a.device,
                        "sparsegpt_wanda_pattern": ("50% unstructured" if pat == "16x16" and m in ("sparsegpt", "wanda")
                                                    else pat)}
                skip = None
                if m == "obs":
                    est = exact_obs_bytes(p, K) if pat == "16x16" else 8 * (p * p + 3 * p * K)
                    if p > a.exact_max_p or est > a.exact_max_gb * 1e9:
                        skip = f"skipped (exact: p={p}, estimate {est / 1e9:.1f} GB)"
                if m == "seqobs_cg" and 40.0 * p * p * K > a.cg_max_flops:
                    skip = f"skipped (20 CG iterations ~ {40.0 * p * p * K:.1e} flops > --cg-max-flops)"
                if skip:
                    rows.append(dict(base, status=skip))
                    print(f"{shape:>11} {pat:>5} {m:>9}: {skip}", flush=True)
                else:
                    runs.append(base)
        if not runs:
            continue
        job = dict(p=p, K=K, runs=[(r["pattern"], r["method"]) for r in runs], tokens=tokens, device=a.device,
                   threads=a.threads)
        got = {}
        try:
            proc = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_oneshot_scale", "--worker",
                                     json.dumps(job)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            t_end = time.time() + a.timeout
            for line in proc.stdout:  # results as they come (a later method may time out)
                if line.startswith("RESULT "):
                    r = json.loads(line[7:])
                    got[(r["pattern"], r["method"])] = r
                    row = next(x for x in runs if (x["pattern"], x["method"]) == (r["pattern"], r["method"]))
                    row.update(r)
                    if r["status"] == "ok":
                        print(f"{shape:>11} {r['pattern']:>5} {r['method']:>9}: {r['seconds']:8.1f} s (cpu "
                              f"{r['cpu_s']:.0f} s, gram {r['gram_s']:.1f} s), peak RSS {r['peak_rss_gb']:.2f} GB, "
                              f"rel. error {r['rel_error']:.4f}, sparsity {r['weight_sparsity']:.3f}, "
                              f"load {r['loadavg']:.1f}", flush=True)
                    else:
                        print(f"{shape:>11} {r['pattern']:>5} {r['method']:>9}: {r['status']}", flush=True)
                if time.time() > t_end:
                    proc.kill()
                    break
            proc.wait(timeout=max(1.0, t_end - time.time()))
            err = proc.stderr.read()
        except subprocess.TimeoutExpired:
            proc.kill()
            err = "timeout"
        for r in runs:
            if (r["pattern"], r["method"]) not in got:
                r["status"] = "not finished" if err == "timeout" or time.time() > t_end else "failed"
                r["error"] = err[-1000:]
                print(f"{shape:>11} {r['pattern']:>5} {r['method']:>9}: {r['status']} {err[-300:]}", flush=True)
        rows.extend(runs)
    info["loadavg_end"] = os.getloadavg()
    write_json(a.out, {"machine": info, "tokens": tokens, "rows": rows})


if __name__ == "__main__":
    main()
