"""Certified budgeted selection (issue 13): select(method='bnb') against l0bnb, and on the selection benchmark.

(a) l0bnb's own problem, size-1 groups: ``l0bnb.gen_synthetic(n=1000, p=10000, supp_size=10, rho=0.1, snr=5)``,
    data centered and normalised as ``l0bnb.fit_path`` does, lambda_2 = 0.01 (its default).  l0bnb solves
    1/2 ||y - X b||^2 + lambda_0 ||b||_0 + lambda_2 ||b||^2 with |b_i| <= M; its fit with 10 nonzeros is
    ``fit_path`` at a lambda_0 set as in ``l0bnb_case``.  We solve the budget form 1/(2n) ||y - X b||^2 +
    ridge/2 ||b||^2, ||b||_0 <= 10, ridge = 2 lambda_2 / n (the same objective / n) with l0bnb's box
    (max_coef = M: the same problem) and without it.  An L0-penalised optimum with 10 nonzeros is a k = 10
    budget optimum (F(b) + lambda_0 ||b||_0 >= F(b*) + 10 lambda_0 for every b, so F(b) >= F(b*) when
    ||b||_0 <= 10).  Compared: the objective without the lambda_0 term (times n, l0bnb's scale), time, and each
    side's certificate.  ``--readme S``: l0bnb's README example itself (``fit_path``'s automatic grid), S s at most.
(b) bench_select.py's I1 / I2 families (AR(1) designs, 1000 groups of 5) with LeastSquares(X, y, ridge=r),
    r = 1e-3 x the mean column norm squared (the literal reading: 1e-3 x mean ||X_j||^2 ~ 0.4 here, i.e. 0.4 x the
    Hessian diagonal ||X_j||^2 / n), 60 s each; and the scale-free reading r = 1e-3 x mean ||X_j||^2 / n on the
    first seed of each family.
(d) ``l0bnb_hard``: l0bnb itself (its ``BNBTree``) on I1's design as 5000 single features at (b)'s ridge rule in
    its scaling, lambda_0 chosen for ~50 nonzeros, against ours at the same budget (its docstring).

    nice -n 10 python benchmarks/bench_bnb.py           # the full run (~30 min on 2 busy cores)
    nice -n 10 python benchmarks/bench_bnb.py --only-a  # (a) only, the JSON's other figures kept
    nice -n 10 python benchmarks/bench_bnb.py --only-b  # (b) only, (a)'s figures kept (~15 min)
    nice -n 10 python benchmarks/bench_bnb.py --hardness 300  # (c) only: I1 seed 0's gap against time, 300 s,
                                                              # and SCIP on the same MIQP for 120 s
    nice -n 10 python benchmarks/bench_bnb.py --readme 900   # l0bnb's README example, 15 min at most
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_bnb.py --l0bnb-hard 60  # (d) only: l0bnb on I1's design
                                                              # (3 seeds, + 300 s on seed 0; ~22 min)
    python benchmarks/bench_bnb.py --quick              # smoke test (small sizes, short limits)
"""
from __future__ import annotations

import argparse
import json
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


def _l0bnb():
    if not hasattr(np, "Inf"):  # l0bnb 1.0.0 (its latest release) uses np.Inf, an alias NumPy 2.0 removed
        np.Inf = np.inf
    import l0bnb
    return l0bnb


class _SolveLog:
    """Records every ``BNBTree.solve`` that ``l0bnb.fit_path`` makes (lambda_0, M, time, gap, nodes, solution):
    fit_path returns neither the gap nor the time.  ``cap`` (s, overall) shortens the time limit of the solves
    that start near it, so that a path that would run for hours returns what it did so far."""

    def __init__(self, cap=None):
        import l0bnb.regpath as rp
        self.rp, self.orig, self.records, self.cap, self.t0 = rp, rp.BNBTree.solve, [], cap, time.perf_counter()
        log = self

        def solve(tree, l0, l2, m, **kw):
            if log.cap is not None:
                kw["time_limit"] = max(min(kw.get("time_limit", 3600), log.cap - (time.perf_counter() - log.t0)), 1)
            t = time.perf_counter()
            sol = log.orig(tree, l0, l2, m, **kw)
            log.records.append({"lambda_0": float(l0), "M": float(m), "time_s": time.perf_counter() - t,
                                "time_limit": kw.get("time_limit"), "nnz": int(np.count_nonzero(sol.beta)),
                                "gap": float(sol.gap), "cost": float(sol.cost), "nodes": int(tree.number_of_nodes),
                                "support": np.flatnonzero(sol.beta).tolist(), "beta": sol.beta})
            r = log.records[-1]
            print(f"  l0bnb solve: lambda_0 {r['lambda_0']:.6g} M {r['M']:.4g}: {r['time_s']:.1f}s, {r['nnz']} "
                  f"nonzeros, gap {r['gap']:.3g}, {r['nodes']} nodes", flush=True)
            if log.cap is not None and time.perf_counter() - log.t0 >= log.cap:
                raise TimeoutError(f"overall cap of {log.cap} s reached")
            return sol

        rp.BNBTree.solve = solve

    def close(self):
        self.rp.BNBTree.solve = self.orig
        return [{k: v for k, v in r.items() if k != "beta"} for r in self.records]


def readme_path(cap):
    """l0bnb's README example verbatim -- gen_synthetic(n=1000, p=10000, supp_size=10, rho=0.1, snr=5) and
    fit_path(X, y, lambda_2=0.01, max_nonzeros=10) -- each solve logged, stopped at ``cap`` seconds overall.  The
    first solve includes numba's compilation (the warm-up alone is timed separately)."""
    l0bnb = _l0bnb()
    x, y, _ = l0bnb.gen_synthetic(n=1000, p=10000, supp_size=10, rho=0.1, snr=5)
    t = time.perf_counter()
    l0bnb.BNBTree(x[:, :20] / np.linalg.norm(x[:, :20], axis=0), y / np.linalg.norm(y)).solve(
        0.01, 0.01, 1.0, gap_tol=1e-2, time_limit=5)
    warm = time.perf_counter() - t
    log = _SolveLog(cap)
    t = time.perf_counter()
    try:
        l0bnb.fit_path(x, y, lambda_2=0.01, max_nonzeros=10)
        stopped = None
    except TimeoutError as e:
        stopped = str(e)
    out = {"warmup_call_s (numba compile + a 20-column solve, 5 s at most)": warm, "solves": log.close(),
           "total_s": time.perf_counter() - t, "stopped": stopped}
    print(f"(readme) {len(out['solves'])} solves in {out['total_s']:.0f}s; stopped: {stopped}", flush=True)
    return out


def l0bnb_case(n, p, l0bnb_time, our_time):
    """(a): both sides in this process on the same data.  lambda_0 is set between the loss decreases of the 10th
    and 11th feature of the budget path (local search at k = 9, 10, 11), where the L0 penalty's optimum has 10
    nonzeros (``readme_path``: the automatic grid descends from 1 nonzero by ~5% per lambda_0, each a full
    branch and bound), and l0bnb's fit there is its ``fit_path(lambda_0_grid=[lambda_0],
    lambda_0_grid_warm_start=<that support>)`` (its documented route when the automatic grid does not reach the
    wanted number of nonzeros): big-M = 1.2 x the warm start's largest |coefficient|, gap_tol 1e-2 (its default).
    Ours: k = 10 with the same ridge, (i) with the same box max_coef = M (l0bnb's problem), (ii) without it."""
    l0bnb = _l0bnb()
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

    def f(b):  # l0bnb's objective without the lambda_0 term
        r = yc - xc @ b
        return 0.5 * float(r @ r) + lam2 * float(b @ b)

    # warm-ups (numba compilation on l0bnb's side, first imports on ours; 5 s at most) are timed apart, not counted
    t = time.perf_counter()
    l0bnb.BNBTree(xc[:, :20], yc).solve(lam0, lam2, 0.3, gap_tol=1e-2, time_limit=5)
    warm_l0bnb = time.perf_counter() - t
    select(gs.LeastSquares(xc[:, :50], yc, ridge=0.1, fit_intercept=False), gs.Groups.from_sizes([1] * 50), 2,
           method="bnb", max_time=20, max_coef=1.0)
    log = _SolveLog()
    t = time.perf_counter()
    l0bnb.fit_path(x, y, lambda_2=lam2, lambda_0_grid=[lam0], lambda_0_grid_warm_start=heur[10].support.tolist(),
                   gap_tol=1e-2, time_limit=l0bnb_time)
    t_fit = time.perf_counter() - t
    rec = log.records[0]
    beta = rec["beta"]
    M = rec["M"]
    l0 = {"fit_path_time_s": t_fit, "solve_time_s": rec["time_s"], "time_limit_s": l0bnb_time,
          "objective": f(beta), "l0_objective": rec["cost"], "gap": rec["gap"], "nnz": rec["nnz"],
          "nodes": rec["nodes"], "support": rec["support"], "M": M, "max_abs_coef": float(np.abs(beta).max()),
          "certified_gap_tol_1e-2": rec["gap"] <= 1e-2, "numba_warmup_s": warm_l0bnb}
    log.close()
    print(f"(a) l0bnb fit_path at lambda_0 {lam0:.6g}: {t_fit:.1f}s objective {l0['objective']:.10g} "
          f"nnz {l0['nnz']} gap {rec['gap']:.3g} ({rec['nodes']} nodes; numba warm-up {warm_l0bnb:.1f}s)", flush=True)
    k = 10
    ours = {}
    for name, kw in (("boxed", {"max_coef": M}), ("unboxed", {})):
        t = time.perf_counter()
        sol = select(loss, groups, k, method="bnb", gap_tol=1e-4, max_time=our_time, progress=False, **kw)
        el = time.perf_counter() - t
        ours[name] = {"time_s": el, "objective": sol.objective * n, "lower_bound": sol.lower_bound * n,
                      "gap": sol.info["gap"], "status": sol.info["status"], "n_nodes": sol.info["n_nodes"],
                      "support": sol.support.tolist(), "certified": sol.info["certified"],
                      "max_abs_coef": float(np.abs(sol.coef).max()), "max_coef": sol.info["max_coef"],
                      "implied_max_coef": sol.info["implied_max_coef"],
                      "rel_diff_vs_l0bnb": (sol.objective * n - l0["objective"]) / l0["objective"],
                      "time_ratio_vs_l0bnb_fit": el / t_fit}
        o = ours[name]
        print(f"(a) ours k={k} {name}: {el:.1f}s objective {o['objective']:.10g} gap {o['gap']:.3g} "
              f"({o['status']}, {o['n_nodes']} nodes); rel diff vs l0bnb {o['rel_diff_vs_l0bnb']:.2e}; "
              f"time ratio {o['time_ratio_vs_l0bnb_fit']:.3g}", flush=True)
    return {"setting": f"gen_synthetic(n={n}, p={p}, supp_size=10, rho=0.1, snr=5, seed=1), lambda_2={lam2}, "
                       f"lambda_0={lam0:.6g}, M={M:.6g}, k={k}, ridge = 2 lambda_2 / n",
            "lambda_0": lam0, "l0bnb_fit": l0, "ours": ours, "local_search_k9_10_11": fk,
            "true_support": np.flatnonzero(b_true).tolist()}


def _curve(trace, every=10.0):
    """(seconds, nodes, relative gap) about every ``every`` s of a bnb trace, and its last entry."""
    out, nxt = [], 0.0
    for i, (t, nodes, lb, inc) in enumerate(trace):
        if t >= nxt or i == len(trace) - 1:
            out.append((round(t, 1), nodes, (inc - lb) / inc))
            nxt = t + every
    return out


def _scip_solve_logged(prob, cp, params):
    """prob.solve(SCIP, verbose) with the solver's C-level stdout captured (its bounds are only in its log):
    (log, status); cvxpy raises SolverError when SCIP stops without a feasible point, which is a status here."""
    import tempfile
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+") as tmp:
        os.dup2(tmp.fileno(), 1)
        try:
            prob.solve(solver=cp.SCIP, verbose=True, scip_params=params)
            status = prob.status
        except cp.error.SolverError as e:
            status = f"SolverError: {e}"
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        tmp.seek(0)
        return tmp.read(), status


def hardness(max_time, scip_time=120.0):
    """(c) How hard I1 seed 0 is: bnb's proven gap against time and nodes over ``max_time`` s, and SCIP (through
    cvxpy) on the same MIQP -- 1/(2n) ||y - X b - b0||^2 + ridge/2 ||b||^2, |b_j| <= M z_g(j), sum z <= k, z binary,
    with the valid big-M M = sqrt(2 f(local search) / ridge) (every better b has ridge/2 ||b||^2 <= f) -- for
    ``scip_time`` s, as a general solver's reference."""
    inst = INSTANCES["I1"]
    G, s, k = inst["G"], inst["s"], inst["k"]
    X, y, _, _ = make(inst, 0)
    n = X.shape[0]
    ridge = 1e-3 * float(np.mean(np.sum(X * X, axis=0)))
    loss, groups = gs.LeastSquares(X, y, ridge=ridge), gs.Groups.from_sizes([s] * G)
    trace = []
    t = time.perf_counter()
    sol = select(loss, groups, k, method="bnb", gap_tol=1e-4, max_time=max_time, trace=trace, progress=False)
    out = {"instance": "I1 seed 0", "ridge": ridge, "bnb": {
        "time_s": time.perf_counter() - t, "objective": sol.objective, "lower_bound": sol.lower_bound,
        "gap": sol.info["gap"], "n_nodes": sol.info["n_nodes"], "open_nodes": sol.info["open_nodes"],
        "curve (s, nodes, gap)": _curve(trace)}, "uptime": os.popen("uptime").read().strip()}
    print(f"(c) bnb I1 seed 0, {max_time:.0f}s: gap {sol.info['gap']:.4g}, {sol.info['n_nodes']} nodes; curve "
          + " ".join(f"({a},{b},{c:.4f})" for a, b, c in out["bnb"]["curve (s, nodes, gap)"]), flush=True)
    try:
        import cvxpy as cp
        M = np.sqrt(2 * select(loss, groups, k, method="local_search").objective / ridge) * (1 + 1e-9)
        b, b0, z = cp.Variable(X.shape[1]), cp.Variable(), cp.Variable(G, boolean=True)
        prob = cp.Problem(cp.Minimize(cp.sum_squares(y - X @ b - b0) / (2 * n) + ridge / 2 * cp.sum_squares(b)),
                          [cp.abs(b) <= M * z[np.repeat(np.arange(G), s)], cp.sum(z) <= k])
        log, status = _scip_solve_logged(prob, cp, {"limits/gap": 1e-4, "limits/time": scip_time})
        bounds = {}
        for line in log.splitlines():  # SCIP's final statistics (cvxpy returns neither bound)
            for key in ("Primal Bound", "Dual Bound", "Solving Nodes", "Solving Time (sec)"):
                if line.startswith(key) and ":" in line:
                    bounds[key] = float(line.split(":", 1)[1].split()[0])
        primal, dual = bounds.get("Primal Bound"), bounds.get("Dual Bound")
        finite = all(v is not None and abs(v) < 1e19 for v in (primal, dual))  # SCIP's 1e20 is its infinity
        out["scip"] = {"status": status, "time_limit_s": scip_time, **bounds,
                       "gap": (primal - dual) / abs(primal) if finite else None}
    except Exception as e:  # say exactly why (not installed, or failed)
        out["scip"] = {"error": f"{type(e).__name__}: {e}"}
    print("(c) SCIP:", out["scip"], flush=True)
    return out


def _lower_hull_vertex(F, target):
    """The vertex of the lower convex hull of the points (k, F[k]) nearest ``target`` and the open interval of
    lambda_0 (the slopes of its two hull edges) on which it minimises F[k] + lambda_0 k among these points."""
    ks = sorted(F)
    hull = []
    for kk in ks:  # Andrew's monotone chain, lower part
        while len(hull) >= 2 and ((F[hull[-1]] - F[hull[-2]]) * (kk - hull[-2])
                                  >= (F[kk] - F[hull[-2]]) * (hull[-1] - hull[-2])):
            hull.pop()
        hull.append(kk)
    inner = hull[1:-1]  # an end point has only one edge
    v = min(inner, key=lambda kk: abs(kk - target))
    i = hull.index(v)
    left = (F[hull[i - 1]] - F[v]) / (v - hull[i - 1])
    right = (F[v] - F[hull[i + 1]]) / (hull[i + 1] - v)
    return v, left, right


def l0bnb_hard(seconds, long_seconds, seeds, target=50, m_factor=1.5):
    """(d) l0bnb on issue 13's I1 design, single features (no groups): ``make(INSTANCES['I1'], seed)``'s 5000
    columns, centered and normalised as ``l0bnb.fit_path`` does (its ``process_data``); both sides get that data.
    Ridge: (b)'s rule, 1e-3 x the mean column norm squared, on this data (unit columns): our ridge = 1e-3 with the
    1/(2n) loss, i.e. l0bnb's lambda_2 = n x 1e-3 / 2 on its 1/2 ||y - X b||^2 + lambda_2 ||b||^2 (= n x ours).
    lambda_0: local search (ours) at every k in target +- 15 gives F_k (l0bnb's scale); the lower convex hull
    vertex of (k, F_k) nearest ``target`` is the L0 penalty's minimiser among these supports for lambda_0 between
    its two hull slopes, and lambda_0 = their geometric mean.  M = ``m_factor`` x the largest |coefficient| of that
    support's ridge fit (l0bnb's docs use 1.2 x the warm start's; not a proof); the provable box is
    sqrt((UB - lambda_0) / lambda_2) (any nonzero b_j of a better solution has lambda_2 b_j^2 + lambda_0 <= UB),
    run once on the first seed for ``seconds``.  l0bnb: ``BNBTree.solve(lambda_0, lambda_2, M, gap_tol=1e-4,
    warm_start=<that support's fit>, time_limit=seconds)`` (and ``long_seconds`` on the first seed).  Ours: the
    budget form at k = l0bnb's nonzero count, ``select(..., method='bnb', gap_tol=1e-4, max_time=seconds)``,
    without a box and with l0bnb's (``max_coef=M``), and without a box for ``long_seconds`` on the first seed.
    Gaps: l0bnb's is relative to its L0 objective F + lambda_0 ||b||_0, ours to F; ``abs_gap`` (both in l0bnb's
    scale) and l0bnb's ``gap_on_F`` compare them."""
    l0bnb = _l0bnb()
    from l0bnb.regpath import process_data

    def uptime():
        return os.popen("uptime").read().strip()

    t = time.perf_counter()  # numba's compilation, timed apart
    xw = np.random.default_rng(0).standard_normal((50, 20))
    l0bnb.BNBTree(xw / np.linalg.norm(xw, axis=0), xw[:, 0] / np.linalg.norm(xw[:, 0])).solve(
        0.01, 0.01, 1.0, gap_tol=1e-2, time_limit=5)
    out = {"numba_warmup_s": time.perf_counter() - t, "per_seed": []}
    for seed in seeds:
        X, y, *_ = make(INSTANCES["I1"], seed)
        n, p = X.shape
        xc, yc, *_ = process_data(X, y, True, True)
        xc = np.asfortranarray(xc)
        lam2 = n * 1e-3 / 2
        loss, groups = gs.LeastSquares(xc, yc, ridge=2 * lam2 / n, fit_intercept=False), gs.Groups.from_sizes([1] * p)

        def f(b):  # l0bnb's objective without the lambda_0 term
            r = yc - xc @ b
            return 0.5 * float(r @ r) + lam2 * float(b @ b)

        heur = {kk: select(loss, groups, kk, method="local_search") for kk in range(target - 15, target + 16)}
        v, left, right = _lower_hull_vertex({kk: h.objective * n for kk, h in heur.items()}, target)
        lam0 = float(np.sqrt(left * right))
        ws = heur[v].coef
        ub = f(ws) + lam0 * v
        M = m_factor * float(np.abs(ws).max())
        M_proof = float(np.sqrt((ub - lam0) / lam2))
        row = {"seed": seed, "n": n, "p": p, "lambda_2": lam2, "our_ridge": 2 * lam2 / n, "lambda_0": lam0,
               "hull_vertex_k": v, "lambda_0_interval": [right, left], "M": M, "M_provable": M_proof,
               "warm_start_F": f(ws), "warm_start_l0_objective": ub, "l0bnb": {}, "ours": {}}
        runs = [("limit", seconds, M)]
        if seed == seeds[0]:
            runs += [("long", long_seconds, M)] if long_seconds else []
            runs += [("provable_M", seconds, M_proof)]
        for name, tl, m in runs:
            tree = l0bnb.BNBTree(xc, yc)
            t = time.perf_counter()
            sol = tree.solve(lam0, lam2, m, gap_tol=1e-4, warm_start=ws, time_limit=tl)
            el = time.perf_counter() - t
            nnz = int(np.count_nonzero(sol.beta))
            row["l0bnb"][name] = {
                "time_limit_s": tl, "M": m, "time_s": el, "gap": float(sol.gap), "proved": bool(sol.gap <= 1e-4),
                "nodes": int(tree.number_of_nodes), "open_nodes": tree.bfs_queue.qsize() + tree.dfs_queue.qsize(),
                "completed_levels": min(tree.levels) if tree.levels else None, "nnz": nnz,
                "l0_objective": float(sol.cost), "F": f(sol.beta), "abs_gap": float(sol.gap) * float(sol.cost),
                "gap_on_F": float(sol.gap) * float(sol.cost) / f(sol.beta),  # on our scale (relative to F)
                "support_equals_warm_start": bool(np.array_equal(np.flatnonzero(sol.beta), heur[v].support)),
                "uptime": uptime()}
            r = row["l0bnb"][name]
            print(f"(d) seed {seed} l0bnb [{name}] lambda_0 {lam0:.4g} lambda_2 {lam2:.4g} M {m:.4g}: {el:.1f}s "
                  f"gap {r['gap']:.4g} ({r['nodes']} nodes, {r['open_nodes']} open, {r['completed_levels']} levels "
                  f"done) nnz {nnz} F {r['F']:.8g}; {r['uptime']}", flush=True)
        k = row["l0bnb"]["limit"]["nnz"]
        ours_runs = [("unboxed", seconds, {}), ("boxed", seconds, {"max_coef": M})]
        if seed == seeds[0] and long_seconds:
            ours_runs.append(("unboxed_long", long_seconds, {}))
        for name, tl, kw in ours_runs:
            t = time.perf_counter()
            sol = select(loss, groups, k, method="bnb", gap_tol=1e-4, max_time=tl, progress=False, **kw)
            el = time.perf_counter() - t
            row["ours"][name] = {"k": k, "time_limit_s": tl, "time_s": el, "gap": sol.info["gap"], "status": sol.info["status"],
                                 "n_nodes": sol.info["n_nodes"], "open_nodes": sol.info["open_nodes"],
                                 "F": sol.objective * n, "lower_bound": sol.lower_bound * n,
                                 "abs_gap": (sol.objective - sol.lower_bound) * n, "uptime": uptime()}
            r = row["ours"][name]
            print(f"(d) seed {seed} ours k={k} {name}: {el:.1f}s gap {r['gap']:.4g} ({r['status']}, {r['n_nodes']} "
                  f"nodes) F {r['F']:.8g}; {r['uptime']}", flush=True)
        out["per_seed"].append(row)
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
        trace = []
        sol = select(loss, groups, k, method="bnb", gap_tol=1e-4, max_time=max_time, trace=trace)
        el = time.perf_counter() - t
        heur = select(loss, groups, k, method="local_search")
        root = select(loss, groups, k, method="bnb", max_nodes=1, max_time=max_time)  # the root relaxation alone
        rows.append({"seed": seed, "ridge": ridge, "time_s": el, "objective": sol.objective,
                     "lower_bound": sol.lower_bound, "gap": sol.info["gap"], "status": sol.info["status"],
                     "n_nodes": sol.info["n_nodes"], "open_nodes": sol.info["open_nodes"],
                     "proven": sol.info["gap"] <= 1e-4, "f1": f1(sol.support, act),
                     "local_search_objective": heur.objective, "root_gap": root.info["gap"],
                     "curve (s, nodes, gap)": _curve(trace)})
        r = rows[-1]
        print(f"(b) {name} seed {seed} ridge {ridge:.4g}: gap {r['gap']:.3g} ({r['status']}, {r['n_nodes']} nodes, "
              f"{r['open_nodes']} open, {el:.1f}s; root gap {r['root_gap']:.3g}) objective {r['objective']:.8g} "
              f"(local search {heur.objective:.8g}) F1 {r['f1']:.2f}", flush=True)
    return {"n_proven": int(sum(r["proven"] for r in rows)), "n_seeds": len(rows),
            "median_gap": float(np.median([r["gap"] for r in rows])), "per_seed": rows}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only-a", action="store_true", help="rerun (a) only, keeping the other figures of the JSON")
    ap.add_argument("--only-b", action="store_true", help="rerun (b) only, keeping the other figures of the JSON")
    ap.add_argument("--hardness", type=float, default=None, metavar="SECONDS",
                    help="run (c) only (I1 seed 0's gap against time for SECONDS, and SCIP for 120 s)")
    ap.add_argument("--readme", type=float, default=None, metavar="SECONDS",
                    help="run l0bnb's README example (fit_path's automatic grid) for at most SECONDS instead")
    ap.add_argument("--l0bnb-time", type=float, default=600.0, help="l0bnb's time limit in (a) (default 600 s)")
    ap.add_argument("--l0bnb-hard", type=float, default=None, metavar="SECONDS",
                    help="run (d) only: l0bnb and ours on I1's design as single features, SECONDS per solve")
    ap.add_argument("--l0bnb-long", type=float, default=300.0, metavar="SECONDS",
                    help="(d): l0bnb's longer run on the first seed (default 300 s; 0 skips it)")
    args = ap.parse_args()
    info = machine_info(packages=("numpy", "scipy", "numba", "groupsparse", "l0bnb", "cvxpy", "PySCIPOpt"))
    print_banner(info)
    out = OUT if not args.quick else OUT.replace(".json", "_quick.json")
    res = {"machine": info, "command": " ".join(sys.argv)}
    if (args.only_a or args.only_b or args.readme is not None or args.hardness is not None
            or args.l0bnb_hard is not None) and os.path.exists(out):
        with open(out) as fh:
            res = dict(json.load(fh), machine=info)
    if args.readme is not None:
        res["l0bnb_readme_path"] = dict(readme_path(args.readme), machine=info, command=" ".join(sys.argv))
        write_json(out, res)
        return
    if args.l0bnb_hard is not None:
        seeds = (0,) if args.quick else (0, 1, 2)
        res["l0bnb_on_I1_design"] = dict(l0bnb_hard(args.l0bnb_hard, 0 if args.quick else args.l0bnb_long, seeds),
                                         machine=info, command=" ".join(sys.argv))
        write_json(out, res)
        return
    if args.hardness is not None:
        res["hardness"] = dict(hardness(args.hardness), machine=info, command=" ".join(sys.argv))
        write_json(out, res)
        return
    n, p, tl = (300, 1000, 20) if args.quick else (1000, 10000, args.l0bnb_time)
    if not args.only_b:
        try:
            res["l0bnb"] = dict(l0bnb_case(n, p, tl, 120 if not args.quick else 20), command=" ".join(sys.argv))
        except Exception as e:  # say exactly why (not installed, or failed)
            res["l0bnb"] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
            print("(a) l0bnb failed:", res["l0bnb"]["error"], flush=True)
    if not args.only_a:
        seeds = range(1) if args.quick else range(5)
        mt = 10 if args.quick else 60
        res["select_families"] = {name: select_family(name, inst, seeds, mt, relative=False)
                                  for name, inst in INSTANCES.items()}
        res["select_families_relative_ridge"] = {name: select_family(name, inst, range(1), mt, relative=True)
                                                 for name, inst in INSTANCES.items()}
        res["select_families_command"] = " ".join(sys.argv)
    write_json(out, res)


if __name__ == "__main__":
    main()
