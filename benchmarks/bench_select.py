"""Budgeted group selection (issue 3): our methods vs abess group splicing, oracle-tuned group lasso / group MCP.

Instances (AR(1) designs, N(0,1) coefficients on k groups, benchmarks/common.py):
  I1: rho=0.8, n=400, 1000 groups of 5, k=10, SNR 3;   I2: rho=0.7, n=600, 1000 groups of 5, k=20, SNR 2.
Reported per method: mean support F1, median time, the fraction of instances whose found support has loss <= the
planted support's loss (both refit exactly), and the certified gap (objective - lower bound, bound.py).
Also: a binary logistic family on the I1 design vs abess LogisticRegression, a 3-class multinomial family on it vs
abess MultinomialRegression (feature groups: a group keeps its 5 features' coefficients of every class), and F1
against SNR for every method (plot benchmarks/results/select_f1_snr.png).  Everything in one process, same instances for every method.

    python benchmarks/bench_select.py            # full run (20 seeds, 6 for the slow extras; ~25 min on 2 busy cores)
    python benchmarks/bench_select.py --quick    # 3 seeds, smoke test
    nice -n 5 OMP_NUM_THREADS=1 python benchmarks/bench_select.py --logistic-only --seeds 20
                                                 # the logistic family alone, written into select.json's "logistic"
    nice -n 5 OMP_NUM_THREADS=1 python benchmarks/bench_select.py --multinomial-only --seeds 20
                                                 # the 3-class family alone, written into select.json's "multinomial"
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
import groupsparse as gs  # noqa: E402
from groupsparse.selection import BudgetProblem, lower_bound, select  # noqa: E402
from benchmarks.common import ar1_design, machine_info, planted, print_banner, write_json  # noqa: E402

INSTANCES = {"I1": dict(rho=0.8, n=400, G=1000, s=5, k=10, snr=3.0),
             "I2": dict(rho=0.7, n=600, G=1000, s=5, k=20, snr=2.0)}
OURS_ALL = ["local_search", "splicing", "omp", "ompr", "acdc", "sa++"]  # every seed (the acceptance figures)
OURS_FEW = ["iht", "arht", "htp", "sa"]  # slower: the first ``few`` seeds
LOGISTIC_OURS = ("newton", "splicing", "local_search", "omp")  # newton: IRLS-weighted splicing + Newton-model swaps
MULTINOMIAL_OURS = ("newton", "splicing", "omp")
MULTINOMIAL = dict(rho=0.8, n=600, G=1000, s=5, k=10, K=3, scale=0.5)


def f1(found, truth):
    a, b = set(np.asarray(found).tolist()), set(np.asarray(truth).tolist())
    return 2 * len(a & b) / max(len(a) + len(b), 1)


def make(inst, seed):
    rng = np.random.default_rng(seed)
    X = ar1_design(inst["n"], inst["G"], inst["s"], inst["rho"], rng)
    y, beta, act = planted(X, inst["G"], inst["s"], inst["k"], inst["snr"], rng)
    return X, y, beta, act


def run_abess(X, y, G, s, k, logistic=False, multinomial=False):
    import abess
    cls = (abess.MultinomialRegression if multinomial else abess.LogisticRegression if logistic
           else abess.LinearRegression)
    m = cls(support_size=k, group=np.repeat(np.arange(G), s))  # columns of a group adjacent and sorted
    t = time.perf_counter()
    m.fit(X, y)
    el = time.perf_counter() - t
    coef = np.asarray(m.coef_).reshape(X.shape[1], -1)  # multinomial: (p, K), a feature keeps all its classes
    return np.unique(np.flatnonzero(np.any(coef != 0, axis=1)) // s), el


def oracle_path(loss, groups, pen, act, k, n_lambdas=40, ratio=0.03):
    """Best support F1 over a decreasing lambda grid (warm starts), stopped once the support exceeds 3k."""
    lmax = gs.lambda_max(loss, pen, groups)
    warm, best, t = None, (0.0, None), time.perf_counter()
    for lam in lmax * np.geomspace(0.999, ratio, n_lambdas):
        sol = gs.solve(loss, pen.with_lam(lam), groups, tol=1e-5, warm_start=warm)
        warm = sol.coef
        sc = f1(sol.support, act)
        if sc > best[0]:
            best = (sc, sol.support)
        if len(sol.support) > 3 * k:
            break
    return best[0], time.perf_counter() - t


def regression(name, inst, seeds, few, rows, do_baselines):
    G, s, k = inst["G"], inst["s"], inst["k"]
    groups = gs.Groups.from_sizes([s] * G)
    rec = {m: {"f1": [], "time": [], "le_planted": [], "seeds": []} for m in
           OURS_ALL + OURS_FEW + ["abess", "group_lasso_oracle", "group_mcp_oracle"]}
    gaps = []
    for seed in seeds:
        X, y, beta, act = make(inst, seed)
        loss = gs.LeastSquares(X, y)
        bp = BudgetProblem(loss, groups)
        planted_loss = bp.refit(act)[1]
        for m in OURS_ALL + (OURS_FEW if seed < few else []):
            sol = select(loss, groups, k, method=m)
            _add(rec[m], seed, f1(sol.support, act), sol.info["time"], sol.objective <= planted_loss * (1 + 1e-12))
            if m == "local_search":
                t = time.perf_counter()
                lb, info = lower_bound(loss, groups, k)
                gaps.append({"seed": seed, "objective": sol.objective, "lower_bound": lb, "gap": sol.objective - lb,
                             "rel_gap": (sol.objective - lb) / sol.objective, "kind": info["bound_kind"],
                             "bound_time": time.perf_counter() - t})
        sa, ta = run_abess(X, y, G, s, k)
        _add(rec["abess"], seed, f1(sa, act), ta, bp.refit(sa)[1] <= planted_loss * (1 + 1e-12))
        if do_baselines and seed < few:
            for key, pen in (("group_lasso_oracle", gs.GroupLasso(1.0)), ("group_mcp_oracle", gs.GroupMCP(1.0, 3.0))):
                sc, tt = oracle_path(loss, groups, pen, act, k)
                _add(rec[key], seed, sc, tt, None)
        line = "  ".join(f"{m}={rec[m]['f1'][-1]:.2f}" for m in ("local_search", "abess", "omp", "acdc", "sa++"))
        print(f"{name} seed {seed}: {line}", flush=True)
    out = {m: _summary(r) for m, r in rec.items() if r["f1"]}
    out["certified_gap"] = {"median_rel_gap": float(np.median([g["rel_gap"] for g in gaps])),
                            "kind": gaps[0]["kind"], "per_seed": gaps}
    rows[name] = out
    return out


def _add(r, seed, f, t, le):
    r["seeds"].append(seed)
    r["f1"].append(float(f))
    r["time"].append(float(t))
    r["le_planted"].append(le)


def _summary(r):
    le = [v for v in r["le_planted"] if v is not None]
    return {"n_seeds": len(r["f1"]), "mean_f1": float(np.mean(r["f1"])), "median_time_s": float(np.median(r["time"])),
            "frac_loss_le_planted": float(np.mean(le)) if le else None, "f1": r["f1"], "time": r["time"]}


def small_bound(seeds):
    """Where the perspective relaxation has something to work with (n > p): certified gap of local search."""
    inst = dict(rho=0.8, n=400, G=60, s=5, k=10, snr=3.0)
    groups = gs.Groups.from_sizes([5] * 60)
    res = []
    for seed in seeds:
        X, y, beta, act = make(inst, seed)
        loss = gs.LeastSquares(X, y)
        t = time.perf_counter()
        sol = select(loss, groups, 10, method="local_search", bound=True)
        res.append({"seed": seed, "objective": sol.objective, "lower_bound": sol.lower_bound,
                    "rel_gap": sol.certificate / sol.objective, "kind": sol.info["bound_kind"],
                    "time": time.perf_counter() - t, "f1": f1(sol.support, act)})
    return {"instance": "rho=0.8, n=400, 60 groups of 5, k=10, SNR 3 (n > p)",
            "median_rel_gap": float(np.median([r["rel_gap"] for r in res])), "per_seed": res}


def logistic_family(seeds, scale=1.0):
    inst = dict(rho=0.8, n=600, G=1000, s=5, k=10)
    groups = gs.Groups.from_sizes([5] * 1000)
    rec = {m: {"f1": [], "time": [], "le_planted": [], "seeds": []} for m in LOGISTIC_OURS + ("abess",)}
    for seed in seeds:
        rng = np.random.default_rng(10_000 + seed)
        X = ar1_design(inst["n"], inst["G"], inst["s"], inst["rho"], rng)
        beta = np.zeros(X.shape[1])
        act = np.sort(rng.choice(inst["G"], inst["k"], replace=False))
        for g in act:
            beta[g * 5:(g + 1) * 5] = rng.standard_normal(5)
        yb = (rng.random(inst["n"]) < 1 / (1 + np.exp(-scale * (X @ beta)))).astype(float)
        loss = gs.Logistic(X, yb, fit_intercept=True)
        bp = BudgetProblem(loss, groups)
        pl = bp.refit(act)[1]
        for m in LOGISTIC_OURS:
            sol = select(loss, groups, inst["k"], method=m)
            _add(rec[m], seed, f1(sol.support, act), sol.info["time"], sol.objective <= pl * (1 + 1e-9))
        sa, ta = run_abess(X, yb, inst["G"], 5, inst["k"], logistic=True)
        _add(rec["abess"], seed, f1(sa, act), ta, bp.refit(sa)[1] <= pl * (1 + 1e-9))
        print(f"logistic seed {seed}: " + "  ".join(f"{m}={rec[m]['f1'][-1]:.2f}" for m in rec), flush=True)
    return {"instance": "rho=0.8, n=600, 1000 groups of 5, k=10, labels ~ Bernoulli(sigmoid(X beta)), intercept",
            **{m: _summary(r) for m, r in rec.items()}}


def multinomial_family(seeds, inst=MULTINOMIAL):
    """K classes, labels ~ softmax(scale X B) with B (p, K) N(0, 1) on the rows of k planted feature groups."""
    G, s, k, K = inst["G"], inst["s"], inst["k"], inst["K"]
    groups = gs.Groups.from_sizes([s] * G)
    rec = {m: {"f1": [], "time": [], "le_planted": [], "seeds": []} for m in MULTINOMIAL_OURS + ("abess",)}
    for seed in seeds:
        rng = np.random.default_rng(20_000 + seed)
        X = ar1_design(inst["n"], G, s, inst["rho"], rng)
        B = np.zeros((X.shape[1], K))
        act = np.sort(rng.choice(G, k, replace=False))
        for g in act:
            B[g * s:(g + 1) * s] = rng.standard_normal((s, K))
        y = np.argmax(inst["scale"] * (X @ B) + rng.gumbel(size=(inst["n"], K)), axis=1)  # softmax sampling
        loss = gs.Multinomial(X, y, fit_intercept=True, n_classes=K)
        bp = BudgetProblem(loss, groups)
        pl = bp.refit(act)[1]
        for m in MULTINOMIAL_OURS:
            sol = select(loss, groups, k, method=m)
            _add(rec[m], seed, f1(sol.support, act), sol.info["time"], sol.objective <= pl * (1 + 1e-9))
        sa, ta = run_abess(X, y, G, s, k, multinomial=True)
        _add(rec["abess"], seed, f1(sa, act), ta, bp.refit(sa)[1] <= pl * (1 + 1e-9))
        print(f"multinomial seed {seed}: " + "  ".join(f"{m}={rec[m]['f1'][-1]:.2f} ({rec[m]['time'][-1]:.2f}s)"
                                                       for m in rec), flush=True)
    return {"instance": (f"rho={inst['rho']}, n={inst['n']}, {G} groups of {s} features x {K} classes, k={k}, labels ~ "
                         f"softmax({inst['scale']} X B), B ~ N(0,1) on the planted groups' rows, intercept"),
            **{m: _summary(r) for m, r in rec.items()}}


def _print_family(name, res):
    for m, r in res.items():
        if isinstance(r, dict) and "mean_f1" in r:
            print(f"{name} {m:14s} F1 {r['mean_f1']:.3f}  time {r['median_time_s']:.3f}  "
                  f"loss<=planted {r['frac_loss_le_planted']:.2f}")


def snr_curve(snrs, seeds, out_png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    base = INSTANCES["I1"]
    methods = OURS_ALL + OURS_FEW + ["abess", "group_lasso_oracle", "group_mcp_oracle"]
    curves = {m: [] for m in methods}
    groups = gs.Groups.from_sizes([5] * base["G"])
    for snr in snrs:
        acc = {m: [] for m in methods}
        for seed in seeds:
            X, y, beta, act = make(dict(base, snr=snr), 500 + seed)
            loss = gs.LeastSquares(X, y)
            for m in OURS_ALL + OURS_FEW:
                acc[m].append(f1(select(loss, groups, base["k"], method=m).support, act))
            acc["abess"].append(f1(run_abess(X, y, base["G"], 5, base["k"])[0], act))
            acc["group_lasso_oracle"].append(oracle_path(loss, groups, gs.GroupLasso(1.0), act, base["k"])[0])
            acc["group_mcp_oracle"].append(oracle_path(loss, groups, gs.GroupMCP(1.0, 3.0), act, base["k"])[0])
        for m in methods:
            curves[m].append(float(np.mean(acc[m])))
        print(f"snr {snr}: " + "  ".join(f"{m}={curves[m][-1]:.2f}" for m in methods), flush=True)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m in methods:
        ax.plot(snrs, curves[m], marker="o", label=m, lw=2.5 if m in ("local_search", "abess", "sa++") else 1.2)
    ax.set_xscale("log")
    ax.set_xlabel("SNR")
    ax.set_ylabel(f"mean support F1 ({len(seeds)} seeds)")
    ax.set_title("I1 design (rho=0.8, n=400, 1000 groups of 5, k=10)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    print(f"wrote {out_png}")
    return {"snr": list(snrs), "n_seeds": len(seeds), "mean_f1": curves}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--few", type=int, default=6, help="seeds for the slow extras (SA, HTP, lasso/MCP paths)")
    ap.add_argument("--logistic-only", action="store_true",
                    help="run the logistic family alone (--seeds of them) and replace select.json's 'logistic' entry")
    ap.add_argument("--multinomial-only", action="store_true",
                    help="run the multinomial family alone (--seeds of them), replacing select.json's 'multinomial'")
    ap.add_argument("--multinomial-scale", type=float, default=MULTINOMIAL["scale"],
                    help="signal scale of the multinomial family (other than the default: stored under "
                         "'multinomial_scale<value>')")
    a = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    n_seeds, few = (3, 2) if a.quick else (a.seeds, a.few)
    info = machine_info()
    print_banner(info)
    root = os.path.dirname(os.path.abspath(__file__))
    if a.logistic_only or a.multinomial_only:
        import json
        path = os.path.join(root, "results", "select.json")
        with open(path) as f:
            payload = json.load(f)
        if a.logistic_only:
            key, res = "logistic", logistic_family(range(n_seeds))
        else:
            scale = a.multinomial_scale
            key = "multinomial" if scale == MULTINOMIAL["scale"] else f"multinomial_scale{scale:g}"
            res = multinomial_family(range(n_seeds), dict(MULTINOMIAL, scale=scale))
        payload[key] = dict(res, machine=info, command=" ".join(sys.argv))
        _print_family(key, payload[key])
        write_json(path, payload)
        return
    payload = {"machine": info, "instances": INSTANCES, "seeds": n_seeds, "few_seeds": few, "regression": {}}
    for name, inst in INSTANCES.items():
        out = regression(name, inst, range(n_seeds), few, payload["regression"], do_baselines=True)
        print(f"\n{name}: method, mean F1, median time (s), frac loss <= planted, seeds")
        for m, r in out.items():
            if m != "certified_gap":
                fr = "-" if r["frac_loss_le_planted"] is None else f"{r['frac_loss_le_planted']:.2f}"
                print(f"  {m:20s} {r['mean_f1']:.3f}  {r['median_time_s']:.3f}  {fr}  {r['n_seeds']}")
        print(f"  certified gap ({out['certified_gap']['kind']}): median relative "
              f"{out['certified_gap']['median_rel_gap']:.3f}\n")
    payload["bound_small"] = small_bound(range(min(5, n_seeds)))
    print("certified gap, n > p instance:", payload["bound_small"]["median_rel_gap"])
    payload["logistic"] = logistic_family(range(min(10, n_seeds)))
    _print_family("logistic", payload["logistic"])
    payload["multinomial"] = multinomial_family(range(min(10, n_seeds)))
    _print_family("multinomial", payload["multinomial"])
    payload["snr_curve"] = snr_curve([0.5, 1.0, 2.0, 5.0, 10.0], range(2),
                                     os.path.join(root, "results", "select_f1_snr.png"))
    write_json(os.path.join(root, "results", "select.json" if not a.quick else "select_quick.json"), payload)


if __name__ == "__main__":
    main()
