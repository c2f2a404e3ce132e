"""The core's convex solvers on a GramLeastSquares of torch tensors (on the tensors' device, in their dtype) against
the same problem in numpy, in one run: time (best of 3), objective, support and certificate per solver and penalty.

    python benchmarks/bench_core_torch.py            # CPU tensors (and CUDA ones when a GPU is there)

Problem: AR(1)-correlated design (rho 0.5), n = 4000, p = 512 features in 64 groups of 8, K = 16 outputs, 8 groups
active; H = X^T X / n, B = X^T Y / n; lambda = lambda_max / 10; tol 1e-8 (relative KKT residual: a Gram loss has no
duality gap).  Writes benchmarks/results/core_torch.json.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import groupsparse as gs  # noqa: E402
from benchmarks.common import machine_info, print_banner, write_json  # noqa: E402

RESULTS = os.path.join(os.path.dirname(__file__), "results", "core_torch.json")


def problem(seed=0, n=4000, p=512, K=16, size=8, active=8):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    X[:, 1:] += 0.5 * X[:, :-1]
    W = np.zeros((p, K))
    W[: active * size] = rng.standard_normal((active * size, K))
    Y = X @ W + rng.standard_normal((n, K))
    return X.T @ X / n, X.T @ Y / n, float((Y * Y).sum()) / (2 * n), gs.Groups.from_sizes([size] * (p // size))


def best_of(f, repeat=3):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t)
    return min(times), out


def main():
    import torch
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    info = machine_info()
    print_banner(info)
    H, B, c, groups = problem()
    kinds = {"numpy float64": lambda: gs.GramLeastSquares(H, B, c)}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        for dt in (torch.float64, torch.float32):
            kinds[f"torch {dev} {str(dt).split('.')[1]}"] = \
                lambda dev=dev, dt=dt: gs.GramLeastSquares(torch.tensor(H, dtype=dt, device=dev),
                                                           torch.tensor(B, dtype=dt, device=dev), c)
    lmax = gs.lambda_max(gs.GramLeastSquares(H, B, c), gs.GroupLasso(1.0), groups)
    rows = []
    for pen in (gs.GroupLasso(lmax / 10), gs.GroupMCP(lmax / 10)):
        for solver in ("bcd", "fista"):
            ref = None
            for name, make in kinds.items():
                loss = make()
                t, sol = best_of(lambda: gs.solve(loss, pen, groups, solver=solver, tol=1e-8))
                ref = sol if ref is None else ref
                row = {"penalty": pen.name, "solver": solver, "arrays": name, "time_s": t,
                       "objective": sol.objective, "rel_objective_vs_numpy": (sol.objective - ref.objective)
                       / abs(ref.objective), "same_support": bool(np.array_equal(sol.support, ref.support)),
                       "support": int(sol.support.size), "kkt": sol.certificate, "n_iter": sol.n_iter,
                       "converged": sol.converged}
                rows.append(row)
                print(f"{pen.name:12s} {solver:5s} {name:20s} {t:7.3f} s  objective {sol.objective:.10g} "
                      f"(rel {row['rel_objective_vs_numpy']:+.1e})  support {sol.support.size} "
                      f"same={row['same_support']}  kkt {sol.certificate:.2g}  converged {sol.converged}")
    write_json(RESULTS, {"machine": info, "problem": __doc__.split("\n\n")[2].replace("\n", " "),
                         "threads": torch.get_num_threads(), "rows": rows})


if __name__ == "__main__":
    main()
