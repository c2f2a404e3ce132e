"""2:4 export speedup of Linear layers (``nn_bridge.export``) against dense, same run: 4096^3 and 8192^3,
fp16 and bf16.  Needs an NVIDIA GPU with compute capability >= 8.0; without CUDA it prints that the measurement was
not taken and exits 0.

For each shape (tokens M, in K, out N) and dtype: a 2:4-pruned Linear is exported with
``to_semi_structured_linear`` (output checked against the masked dense layer), then dense ``F.linear`` and the
sparse layer are timed with CUDA events (median of ``--reps`` after ``--warmup``).  With cuSPARSELt the best
``alg_id`` is also searched (``torch._cslt_sparse_mm_search``) and timed through ``torch._cslt_sparse_mm`` -- the
default alg_id=0 is known to be slow for many shapes (maxq_nm.md 4.2 / 4.6).  Reference on an H100 (issue 6):
PyTorch's own 2:4 path 0.19x at 4096^3 and 1.24x at 8192^3 in fp16.

Usage: python -m benchmarks.bench_nm_export [--sizes 4096 8192] [--reps 100]
"""
from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from benchmarks.bench_nm_common import banner, update_results


def _time(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        out.append(a.elapsed_time(b))
    return statistics.median(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192])
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--reps", type=int, default=100)
    a = ap.parse_args(argv)
    info = banner()
    if not torch.cuda.is_available():
        print("NOT MEASURED: no CUDA device. torch's 2:4 kernels need an NVIDIA GPU with compute capability >= 8.0; "
              "run this script there.")
        return 0
    from nn_bridge.nm import nm_mask
    from nn_bridge.export import to_semi_structured_linear
    torch.backends.cuda.matmul.allow_tf32 = False
    rows = []
    for n in a.sizes:
        for dtype in (torch.float16, torch.bfloat16):
            torch.manual_seed(0)
            lin = torch.nn.Linear(n, n, bias=False, device="cuda", dtype=dtype)
            with torch.no_grad():
                lin.weight.mul_(nm_mask(lin.weight, 2, 4).to(dtype))
            x = torch.randn(n, n, device="cuda", dtype=dtype)
            sp = to_semi_structured_linear(lin)
            t_dense = _time(lambda: F.linear(x, lin.weight), a.warmup, a.reps)
            t_sparse = _time(lambda: sp(x), a.warmup, a.reps)
            row = {"size": n, "dtype": str(dtype).replace("torch.", ""), "dense_ms": t_dense, "sparse_ms": t_sparse,
                   "speedup": t_dense / t_sparse}
            try:  # cuSPARSELt with a searched algorithm
                comp = torch._cslt_compress(lin.weight.detach().contiguous())
                alg = torch._cslt_sparse_mm_search(comp, x.t().contiguous())
                t_alg = _time(lambda: torch._cslt_sparse_mm(comp, x.t().contiguous(), alg_id=alg), a.warmup, a.reps)
                row.update(best_alg_id=int(alg), sparse_best_alg_ms=t_alg, speedup_best_alg=t_dense / t_alg)
            except Exception as e:  # CUTLASS backend, or the private API changed
                row["alg_search"] = f"unavailable: {type(e).__name__}: {e}"[:200]
            rows.append(row)
            print(f"{n}^3 {row['dtype']}: dense {t_dense:.3f} ms, 2:4 {t_sparse:.3f} ms -> {row['speedup']:.2f}x"
                  + (f"; best alg_id {row['best_alg_id']}: {row['speedup_best_alg']:.2f}x" if "best_alg_id" in row
                     else ""), flush=True)
    update_results("export_speedup_gpu", {"info": info, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
