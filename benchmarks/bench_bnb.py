"""Certified budgeted selection (issue 13): select(method='bnb') against l0bnb, and on the selection benchmark.

(a) l0bnb's own problem, size-1 groups: ``l0bnb.gen_synthetic(n=1000, p=10000, supp_size=10, rho=0.1, snr=5)``,
    data centered and normalised as ``l0bnb.fit_path`` does, lambda_2 = 0.01 (its default).  l0bnb solves
    1/2 ||y - X b||^2 + lambda_0 ||b||_0 + lambda_2 ||b||^2 with |b_i| <= M (``BNBTree.solve``; lambda_0 and M
    as in ``l0bnb_case``); we solve the budget form 1/(2n) ||y - X b||^2 + ridge/2 ||b||^2, ||b||_0 <= k,
    ridge = 2 lambda_2 / n (the same objective / n, no big-M) with k = l0bnb's number of nonzeros.  Compared:
    objective without the lambda_0 term (times n, l0bnb's scale), time, and each side's certificate.
(b) bench_select.py's I1 / I2 families (AR(1) designs, 1000 groups of 5) with LeastSquares(X, y, ridge=r),
    r = 1e-3 x the mean column norm squared (the literal reading: 1e-3 x mean ||X_j||^2 ~ 0.4 here, i.e. 0.4 x the
    Hessian diagonal ||X_j||^2 / n), 60 s each; and the scale-free reading r = 1e-3 x mean ||X_j||^2 / n on the
    first seed of each family.

    nice -n 10 python benchmarks/bench_bnb.py           # the full run (~20 min on 2 busy cores)
    python benchmarks/bench_bnb.py --quick              # smoke test (small sizes, short limits)
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
import groupsparse as gs  # noqa: E402
from groupsparse.selection import select  # noqa: E402
from benchmarks.bench_select import INSTANCES, f1, make  # noqa: E402
from benchmarks.common import machine_info, print_banner, write_json  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "results", "bnb.json")


def _ours(xc, yc, lam2, k, max_time):
    n, p = xc.shape
    loss = gs.LeastSquares(xc, yc, ridge=2 * lam2 / n, fit_intercept=False)
    t = time.perf_counter()
    ours = select(loss, gs.Groups.from_sizes([1] * p), k, method="bnb", gap_tol=1e-4, max_time=max_time)
    return ours, time.perf_counter() - t


def l0bnb_case(n, p, max_time):
    """(a): both sides in this process on the same data.  l0bnb.fit_path's automatic lambda_0 grid spent its
    per-lambda_0 time limit on every lambda_0 of the 1-nonzero end of the path on smaller versions of this
    problem (n=300, p=1000: 6 lambda_0's x 20 s; n=60, p=200: 22 x 30 s, still 1 nonzero), so lambda_0 is set
    directly: between the loss decreases of the 10th and 11th feature of the budget path (local search at
    k = 9, 10, 11), where the L0 penalty's optimum has 10 nonzeros; big-M = 1.2 x the warm start's largest
    |coefficient| (fit_path's rule), warm start = local search's k = 10 solution."""
    if not hasattr(np, "Inf"):  # l0bnb 1.0.0 (its latest release) uses np.Inf, an alias NumPy 2.0 removed
        np.Inf = np.inf
    import l0bnb
    from l0bnb.regpath import process_data
    x, y, b_true = l0bnb.gen_synthetic(n, p, supp_size=10, rho=0.1, snr=5, seed=1)
    lam2 = 0.01
    xc, yc, *_ = process_data(x, y, True, True)
    xc = np.asfortranarray(xc)
    loss = gs.LeastSquares(xc, yc, ridge=2 * lam2 / n, fit_intercept=False)
    groups = gs.Groups.from_sizes([1] * p)
    heur = {kk: select(loss, groups, kk, method="local_search") for kk in (9, 10, 11)}
    fk = {kk: h.objective * n for kk, h in heur.items()}
    d10, d11 = fk[9] - fk[10], fk[10] - fk[11]
    lam0 = float(np.sqrt(d10 * d11)) if d10 > d11 > 0 else 0.5 * d10
    warm = heur[10].coef.copy()
    M = 1.2 * float(np.max(np.abs(warm)))

    def f(b):  # l0bnb's objective without the lambda_0 term
        r = yc - xc @ b
        return 0.5 * float(r @ r) + lam2 * float(b @ b)

    # warm-up (numba compilation on both sides is not timed)
    l0bnb.BNBTree(xc[:, :50], yc).solve(lam0, lam2, M, gap_tol=1e-2, time_limit=20)
    select(gs.LeastSquares(xc[:, :50], yc, ridge=0.1, fit_intercept=False), gs.Groups.from_sizes([1] * 50), 2,
           method="bnb", max_time=20)
    singles = {}
    for gt in (1e-2, 1e-4):
        tree = l0bnb.BNBTree(xc, yc)
        t = time.perf_counter()
        sol = tree.solve(lam0, lam2, M, gap_tol=gt, warm_start=warm, time_limit=max_time)
        singles[str(gt)] = {"time_s": time.perf_counter() - t, "objective": f(sol.beta),
                            "nnz": int(np.count_nonzero(sol.beta)), "gap": float(sol.gap),
                            "support": np.flatnonzero(sol.beta).tolist()}
        print(f"(a) l0bnb gap_tol {gt}: {singles[str(gt)]['time_s']:.1f}s objective {f(sol.beta):.10g} "
              f"nnz {singles[str(gt)]['nnz']} gap {float(sol.gap):.3g}", flush=True)
    k = singles["0.0001"]["nnz"] or 10
    ours, t_ours = _ours(xc, yc, lam2, k, max_time)
    obj_ours = ours.objective * n
    out = {"setting": f"gen_synthetic(n={n}, p={p}, supp_size=10, rho=0.1, snr=5, seed=1), lambda_2={lam2}, "
                      f"lambda_0={lam0:.6g}, M={M:.6g}, k={k}, ridge = 2 lambda_2 / n",
           "l0bnb_single_solve": singles,
           "ours": {"time_s": t_ours, "objective": obj_ours, "lower_bound": ours.lower_bound * n,
                    "gap": ours.info["gap"], "status": ours.info["status"], "n_nodes": ours.info["n_nodes"],
                    "support": ours.support.tolist(), "certified": ours.info["certified"]},
           "local_search_k9_10_11": fk, "true_support": np.flatnonzero(b_true).tolist()}
    ref = singles["0.0001"]["objective"]
    out["rel_diff_vs_l0bnb_1e-4"] = (obj_ours - ref) / ref
    print(f"(a) ours k={k}: {t_ours:.1f}s objective {obj_ours:.10g} gap {ours.info['gap']:.3g} "
          f"({ours.info['status']}, {ours.info['n_nodes']} nodes); rel diff vs l0bnb {out['rel_diff_vs_l0bnb_1e-4']:.2e}",
          flush=True)
    return out


def select_family(name, inst, seeds, max_time, relative):
    G, s, k = inst["G"], inst["s"], inst["k"]
    groups = gs.Groups.from_sizes([s] * G)
    rows = []
    for seed in seeds:
        X, y, beta, act = make(inst, seed)
        col2 = float(np.mean(np.sum(X * X, axis=0)))
        ridge = 1e-3 * col2 / (X.shape[0] if relative else 1.0)
        loss = gs.LeastSquares(X, y, ridge=ridge)
        t = time.perf_counter()
        sol = select(loss, groups, k, method="bnb", gap_tol=1e-4, max_time=max_time)
        el = time.perf_counter() - t
        heur = select(loss, groups, k, method="local_search")
        root = select(loss, groups, k, method="bnb", max_nodes=1, max_time=max_time)  # the root relaxation alone
        rows.append({"seed": seed, "ridge": ridge, "time_s": el, "objective": sol.objective,
                     "lower_bound": sol.lower_bound, "gap": sol.info["gap"], "status": sol.info["status"],
                     "n_nodes": sol.info["n_nodes"], "open_nodes": sol.info["open_nodes"],
                     "proven": sol.info["gap"] <= 1e-4, "f1": f1(sol.support, act),
                     "local_search_objective": heur.objective, "root_gap": root.info["gap"]})
        r = rows[-1]
        print(f"(b) {name} seed {seed} ridge {ridge:.4g}: gap {r['gap']:.3g} ({r['status']}, {r['n_nodes']} nodes, "
              f"{r['open_nodes']} open, {el:.1f}s; root gap {r['root_gap']:.3g}) objective {r['objective']:.8g} "
              f"(local search {heur.objective:.8g}) F1 {r['f1']:.2f}", flush=True)
    return {"n_proven": int(sum(r["proven"] for r in rows)), "n_seeds": len(rows),
            "median_gap": float(np.median([r["gap"] for r in rows])), "per_seed": rows}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    info = machine_info(packages=("numpy", "scipy", "numba", "groupsparse", "l0bnb", "cvxpy", "PySCIPOpt"))
    print_banner(info)
    res = {"machine": info, "command": " ".join(sys.argv)}
    n, p, tl = (300, 1000, 20) if args.quick else (1000, 10000, 120)
    try:
        res["l0bnb"] = l0bnb_case(n, p, tl)
    except Exception as e:  # say exactly why (not installed, or failed)
        res["l0bnb"] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        print("(a) l0bnb failed:", res["l0bnb"]["error"], flush=True)
    seeds = range(1) if args.quick else range(5)
    mt = 10 if args.quick else 60
    res["select_families"] = {name: select_family(name, inst, seeds, mt, relative=False)
                              for name, inst in INSTANCES.items()}
    res["select_families_relative_ridge"] = {name: select_family(name, inst, range(1), mt, relative=True)
                                             for name, inst in INSTANCES.items()}
    write_json(OUT if not args.quick else OUT.replace(".json", "_quick.json"), res)


if __name__ == "__main__":
    main()
