"""Fuzzing the core (issue 14): numerical edge cases for solve, solve_path, select and the estimators, each result
checked against an exact reference under a per-call time limit, plus the scale-equivariance property.

Edge cases drawn: n = 1, p >> n, duplicated and zero columns, constant y, X and y scaled by 1e-8..1e8, cond(X) up
to 1e12, float32 and integer X, CSR / CSC, C / F order, lam = 0, lam >= lambda_max, an intercept or not.
References: cvxpy (convex, solved on the rescaled problem so that its accuracy does not depend on the scale and
mapped back exactly), scipy's lstsq (lam = 0), brute force over all supports (select), the prox-gradient fixed
point (nonconvex).  Outcomes are counted: inputs tried, clear errors (a ValueError naming its argument), wrong
results, hangs and crashes; with GROUPSPARSE_FUZZ_STATS=1 the counts go to benchmarks/results/fuzz_core_<profile>.json.

    pytest tests/test_fuzz_core.py                               # "ci" profile (< 60 s)
    pytest tests/test_fuzz_core.py --hypothesis-profile=deep     # 20x the examples
"""
from __future__ import annotations

import itertools
import json
import os
import re
import time

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp
from conftest import Hang, examples_scale, time_limit
from hypothesis import given, settings
from hypothesis import strategies as st

import groupsparse as gs
from groupsparse.problem import Problem

cp = pytest.importorskip("cvxpy")

MAX_TIME = 5.0  # the library's own limit, passed to every solve: a hard instance returns converged=False
LIMIT = 20.0  # seconds per checked call (references included): past it the call counts as a hang
TALLY = {"inputs": 0, "clear_errors": 0, "wrong_results": 0, "hangs": 0, "crashes": 0}
_NAMED = re.compile(r"^[A-Za-z_][\w\[\]., ']*: ")  # "argument: what is wrong"


def _n(k):
    return max(1, int(k * examples_scale()))


@pytest.fixture(scope="module", autouse=True)
def _write_tally():
    t0 = time.perf_counter()
    yield
    if os.environ.get("GROUPSPARSE_FUZZ_STATS"):
        profile = "ci" if examples_scale() == 1 else "deep" if examples_scale() == 20 else "custom"
        out = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "results", f"fuzz_core_{profile}.json")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w") as f:
            json.dump(dict(TALLY, profile=profile, seconds=round(time.perf_counter() - t0, 1)), f, indent=1)


def _run(check):
    """Count one input and its outcome: ``check`` returns normally (right result) or raises."""
    TALLY["inputs"] += 1
    try:
        with time_limit(LIMIT):
            return check()
    except Hang:
        TALLY["hangs"] += 1
        raise
    except AssertionError:
        TALLY["wrong_results"] += 1
        raise
    except ValueError as e:
        if _NAMED.match(str(e)):
            TALLY["clear_errors"] += 1
            return None
        TALLY["crashes"] += 1
        raise
    except Exception:
        TALLY["crashes"] += 1
        raise


# --------------------------------------------------------------------------------------------------- instances
@st.composite
def instances(draw, max_n=30, max_p=24, allow_sparse=True):
    """(X in its drawn storage, the same X as float64 dense, y, group sizes, fit_intercept, description)."""
    seed = draw(st.integers(0, 2 ** 31 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.sampled_from([1, 2, 5, 12, max_n]))
    p = draw(st.sampled_from([1, 3, 8, max_p]))
    edge = draw(st.sampled_from(["plain", "duplicated", "zero_column", "constant_y", "ill", "integer", "float32"]))
    X = rng.standard_normal((n, p))
    if edge == "ill" and min(n, p) > 1:
        U, _ = np.linalg.qr(rng.standard_normal((n, min(n, p))))
        V, _ = np.linalg.qr(rng.standard_normal((p, min(n, p))))
        X = (U * np.geomspace(1, 10.0 ** -draw(st.sampled_from([4, 8, 12])), min(n, p))) @ V.T
    if edge == "duplicated" and p > 1:
        X[:, -1] = X[:, 0]
    if edge == "zero_column":
        X[:, rng.integers(p)] = 0.0
    if edge == "integer":
        X = np.round(3 * X)
    y = X[:, : min(p, 3)] @ rng.standard_normal(min(p, 3)) + 0.3 * rng.standard_normal(n)
    if edge == "constant_y":
        y = np.full(n, float(rng.normal()))
    X = X * 10.0 ** draw(st.sampled_from([-8, -3, 0, 0, 3, 8]))
    y = y * 10.0 ** draw(st.sampled_from([-8, -3, 0, 0, 3, 8]))
    cuts = np.sort(rng.choice(np.arange(1, p), size=min(p - 1, int(rng.integers(0, p))), replace=False)) if p > 1 \
        else np.zeros(0, int)
    sizes = np.diff(np.concatenate([[0], cuts, [p]])).tolist()
    fit_intercept = draw(st.booleans())
    storage = draw(st.sampled_from(["C", "F"] + (["csr", "csc"] if allow_sparse else [])))
    Xs = X.astype(np.float32) if edge == "float32" else (X.astype(np.int64) if edge == "integer" and
                                                          np.all(X == np.round(X)) else X)
    Xdense = np.asarray(Xs, dtype=float)
    if storage == "F":
        Xs = np.asfortranarray(Xs)
    elif storage in ("csr", "csc"):
        Xs = sp.csr_matrix(Xs) if storage == "csr" else sp.csc_matrix(Xs)
    desc = dict(seed=seed, n=n, p=p, edge=edge, sizes=sizes, fit_intercept=fit_intercept, storage=storage)
    return Xs, Xdense, y, sizes, fit_intercept, desc


def _null_value(X, y, fit_intercept):
    """The loss at beta = 0 (intercept fitted), plus the rounding level of ||y||^2 / 2n: the scale of every
    objective comparison (y constant with an intercept makes the first term 0 but not the references' errors)."""
    r = y - (y.mean() if fit_intercept else 0.0)
    return 0.5 * float(r @ r) / len(y) + 1e-12 * 0.5 * float(y @ y) / len(y) + 1e-300


def _lstsq_value(X, y, fit_intercept):
    """min (1/2n)||y - X b (- c)||^2: the intercept by centring (a ones column next to columns of size 1e-8 would
    make the rank cut-off drop them), the best of two LAPACK drivers."""
    if fit_intercept:
        X, y = X - X.mean(axis=0), y - y.mean()
    best = 0.5 * float(y @ y) / len(y)
    if X.shape[1] and np.any(X):
        # rank cut-off max(n, p) eps (as numpy's lstsq): scipy's default eps keeps a rounding-level singular value
        # of duplicated columns and returns ~1e14 coefficients whose residual is worse than the minimum
        cut = max(X.shape) * np.finfo(float).eps
        for driver in ("gelsd", "gelsy"):
            r = X @ scipy.linalg.lstsq(X, y, cond=cut, lapack_driver=driver)[0] - y
            best = min(best, 0.5 * float(r @ r) / len(y))
    return best


def _lstsq_slack(X, y, fit_intercept, ref):
    """How far two backward-stable least-squares solvers may disagree on the minimum: the residual is determined to
    eps cond(X) ||y|| only (cond on X's numerical range), so the objective to eps cond ||r|| ||y|| / n."""
    if fit_intercept:
        X, y = X - X.mean(axis=0), y - y.mean()
    sv = np.linalg.svd(X, compute_uv=False) if X.size else np.zeros(0)
    sv = sv[sv > max(X.shape) * np.finfo(float).eps * (sv[0] if sv.size else 0.0)]
    cond = sv[0] / sv[-1] if sv.size else 1.0
    n = len(y)
    return 10 * np.finfo(float).eps * cond * np.sqrt(2 * max(ref, 0.0) * n) * np.linalg.norm(y) / n


def _cvx_value(X, y, sizes, weights, lam, fit_intercept, l1_ratio=None):
    """Optimal objective by cvxpy, solved on X / a, y / c (lam / (a c)) and mapped back by c^2: exact in exact
    arithmetic, and it keeps the conic solver in its comfortable range whatever the drawn scales."""
    a = float(np.max(np.abs(X))) or 1.0
    c = float(np.max(np.abs(y))) or 1.0
    Xn, yn, lamn = X / a, y / c, lam / (a * c)
    n, p = X.shape
    b = cp.Variable(p)
    fit = Xn @ b + (cp.Variable() if fit_intercept else 0.0)
    obj = cp.sum_squares(yn - fit) / (2 * n)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    pen = 0
    for g, w in enumerate(weights):
        blk = b[int(starts[g]): int(starts[g + 1])]
        if l1_ratio is None:
            pen = pen + lamn * w * cp.norm(blk, 2)
        else:
            pen = pen + lamn * (l1_ratio * cp.norm(blk, 1) + (1 - l1_ratio) * w * cp.norm(blk, 2))
    prob = cp.Problem(cp.Minimize(obj + pen))
    try:
        prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12, max_iter=500)
    except cp.error.SolverError:
        return None
    if prob.status not in ("optimal", "optimal_inaccurate"):
        return None
    # (value, its accuracy): Clarabel's objective is good to ~1e-7 of the normalised problem's scale (seen: 3e-7 on
    # n = 1, p = 24), so 1e-6 c^2; the bugs this suite is for moved objectives by percents
    return float(prob.value) * c * c, 1e-6 * c * c


# ----------------------------------------------------------------------------------------------- solve (convex)
@settings(max_examples=_n(40))
@given(inst=instances(), lam_factor=st.sampled_from([0.0, 1e-3, 0.1, 0.5, 1.0, 2.0]),
       penalty=st.sampled_from(["group_lasso", "sparse_group_lasso"]), solver=st.sampled_from(["bcd", "fista"]))
def test_fuzz_solve_convex_matches_cvxpy_or_lstsq(inst, lam_factor, penalty, solver):
    Xs, X, y, sizes, fit_intercept, desc = inst

    def check():
        loss = gs.LeastSquares(Xs, y, fit_intercept=fit_intercept)
        groups = gs.Groups.from_sizes(sizes)
        make = (lambda lam: gs.GroupLasso(lam)) if penalty == "group_lasso" else \
            (lambda lam: gs.SparseGroupLasso(lam, 0.5))
        lmax = gs.lambda_max(loss, make(1.0), groups)
        lam = lam_factor * lmax
        sol = gs.solve(loss, make(lam), groups, solver=solver, tol=1e-10, max_time=MAX_TIME)
        scale = _null_value(X, y, fit_intercept)
        assert np.isfinite(sol.objective) and np.all(np.isfinite(sol.coef)) and sol.certificate >= 0
        if lam == 0:
            ref = _lstsq_value(X, y, fit_intercept)
            assert sol.converged
            assert sol.objective - ref <= 1e-6 * scale + _lstsq_slack(X, y, fit_intercept, ref), desc
            return
        # lambda_max at rounding level (y fitted by the intercept alone): the threshold itself is noise
        trivial = lmax <= 1e-9 * float(np.max(np.abs(X)) * np.max(np.abs(y)))
        if lam_factor >= 1.0 and sol.converged and not trivial:  # beta = 0 is the optimum
            if lam_factor > 1.0 and solver == "bcd":  # block soft-thresholding lands on it exactly
                assert np.all(sol.coef == 0), desc
            # FISTA (momentum): 0 up to the tolerance; at the threshold itself the objective is flat to second
            # order in beta, so a relative gap tol allows |beta| ~ sqrt(tol) of its scale
            coef_scale = (np.max(np.abs(y)) or 1.0) / (np.max(np.abs(X)) or 1.0)
            assert np.max(np.abs(sol.coef)) <= (1e-4 if lam_factor == 1.0 else 1e-7) * coef_scale, desc
        found = _cvx_value(X, y, sizes, groups.weights, lam, fit_intercept, None if penalty == "group_lasso" else 0.5)
        if found is None:
            return
        ref, acc = found
        # cvxpy's optimum is a lower bound up to its accuracy; a converged gap bounds our suboptimality
        assert sol.objective >= ref - 1e-7 * scale - acc, desc
        if sol.converged:
            assert sol.objective - ref <= sol.certificate + 1e-7 * scale + acc, desc

    _run(check)


# ------------------------------------------------------------------------------------------- solve (nonconvex)
@settings(max_examples=_n(30))
@given(inst=instances(max_p=12), lam_factor=st.sampled_from([0.0, 0.05, 0.3, 1.0, 1.5]),
       penalty=st.sampled_from(["mcp", "scad", "log_sum", "bridge"]))
def test_fuzz_solve_nonconvex_ends_at_a_fixed_point(inst, lam_factor, penalty):
    Xs, X, y, sizes, fit_intercept, desc = inst

    def check():
        loss = gs.LeastSquares(Xs, y, fit_intercept=fit_intercept)
        groups = gs.Groups.from_sizes(sizes)
        lmax = gs.lambda_max(loss, gs.GroupLasso(1.0), groups)
        lam = lam_factor * lmax
        pen = {"mcp": gs.GroupMCP(lam, 3.0), "scad": gs.GroupSCAD(lam, 3.7), "log_sum": gs.GroupLogSum(lam, 1.0),
               "bridge": gs.GroupBridge(lam, 0.5)}[penalty]
        sol = gs.solve(loss, pen, groups, tol=1e-9, max_time=MAX_TIME)
        assert np.isfinite(sol.objective) and np.all(np.isfinite(sol.coef))
        scale = _null_value(X, y, fit_intercept)
        if lam == 0:  # never above lstsq's minimum (below it: the reference's own rank cut-off)
            ref = _lstsq_value(X, y, fit_intercept)
            assert sol.converged, desc
            assert sol.objective - ref <= 1e-6 * scale + _lstsq_slack(X, y, fit_intercept, ref), desc
            return
        if not sol.converged:
            return
        # a converged point is a fixed point of the exact block prox-gradient map: no block step lowers the
        # objective by more than the tolerance allows
        prob = Problem(loss, pen, groups)
        W = prob.from_user(sol.coef, sol.intercept)
        st_ = loss.init_state(W)
        G = loss.full_grad(st_, W)
        f0 = prob.objective(st_, W)
        L = prob.lipschitz
        for g in range(groups.n_groups):
            rows = prob.rows[g]
            trial = W.copy()
            trial[rows] = prob.prox(g, W[rows] - G[rows] / L[g], 1.0 / L[g])
            assert prob.objective(loss.init_state(trial), trial) >= f0 - 1e-7 * scale, desc

    _run(check)


# --------------------------------------------------------------------------------------------------- solve_path
@settings(max_examples=_n(15))
@given(inst=instances(max_p=12))
def test_fuzz_path_solutions_agree_with_cold_solves(inst):
    Xs, X, y, sizes, fit_intercept, desc = inst

    def check():
        loss = gs.LeastSquares(Xs, y, fit_intercept=fit_intercept)
        groups = gs.Groups.from_sizes(sizes)
        sols = gs.solve_path(loss, gs.GroupLasso(1.0), groups, n_lambdas=6, lambda_min_ratio=1e-3, tol=1e-10,
                             max_time=MAX_TIME)
        scale = _null_value(X, y, fit_intercept)
        assert np.all(sols[0].coef == 0)
        for s in sols:
            assert s.certificate >= 0 and np.isfinite(s.objective)
            cold = gs.solve(loss, gs.GroupLasso(s.lam), groups, tol=1e-10, max_time=MAX_TIME)
            if s.converged and cold.converged:
                assert abs(s.objective - cold.objective) <= s.certificate + cold.certificate + 1e-9 * scale, desc

    _run(check)


# ------------------------------------------------------------------------------------------------------- select
@settings(max_examples=_n(25))
@given(inst=instances(max_p=10), method=st.sampled_from(["splicing", "omp", "local_search", "exact", "iht"]),
       k_frac=st.floats(0.01, 1.0))
def test_fuzz_select_refits_exactly_and_exact_is_brute_force(inst, method, k_frac):
    Xs, X, y, sizes, fit_intercept, desc = inst

    def check():
        loss = gs.LeastSquares(Xs, y, fit_intercept=fit_intercept)
        G = len(sizes)
        k = max(1, int(round(k_frac * G)))
        sol = gs.select(loss, gs.Groups.from_sizes(sizes), k, method=method)
        starts = np.concatenate([[0], np.cumsum(sizes)])
        cols = lambda S: np.concatenate([np.arange(starts[g], starts[g + 1]) for g in S]) if len(S) else \
            np.zeros(0, int)
        scale = _null_value(X, y, fit_intercept)
        assert sol.support.size <= k
        # the refit is the least-squares optimum on its support
        Xs_ = X[:, cols(sol.support)]
        ref = _lstsq_value(Xs_, y, fit_intercept)
        assert abs(sol.objective - ref) <= 1e-7 * scale + _lstsq_slack(Xs_, y, fit_intercept, ref), desc
        # the enumeration's values carry the same eps cond(X) rounding as any lstsq: two supports within it tie
        vals = {S: _lstsq_value(X[:, cols(S)], y, fit_intercept) for S in itertools.combinations(range(G), k)}
        S_best = min(vals, key=vals.get)
        best = vals[S_best]
        tie = 1e-7 * scale + _lstsq_slack(X[:, cols(S_best)], y, fit_intercept, best)
        assert sol.objective >= best - tie, desc
        if method == "exact":
            assert sol.objective <= best + tie + _lstsq_slack(Xs_, y, fit_intercept, ref), desc

    _run(check)


# --------------------------------------------------------------------------------------------------- estimators
@settings(max_examples=_n(12))
@given(inst=instances(max_p=10), alpha_factor=st.sampled_from([0.0, 0.01, 0.3, 1.0]))
def test_fuzz_regressor_is_the_core_solution(inst, alpha_factor):
    Xs, X, y, sizes, fit_intercept, desc = inst

    def check():
        groups = gs.Groups.from_sizes(sizes)
        loss = gs.LeastSquares(X, y, fit_intercept=fit_intercept)
        alpha = alpha_factor * gs.lambda_max(loss, gs.GroupLasso(1.0), groups)
        m = gs.GroupSparseRegressor(groups=groups, alpha=alpha, fit_intercept=fit_intercept, tol=1e-10,
                                    max_iter=1000).fit(Xs, y)
        pred = m.predict(Xs)
        value = 0.5 * float(np.sum((y - pred) ** 2)) / len(y) + alpha * float(
            groups.weights @ groups.norms(np.ravel(m.coef_)))
        scale = _null_value(X, y, fit_intercept)
        lsq = _lstsq_value(X, y, fit_intercept)
        found = (lsq, _lstsq_slack(X, y, fit_intercept, lsq)) if alpha == 0 else \
            _cvx_value(X, y, sizes, groups.weights, alpha, fit_intercept)
        if found is not None:
            ref, acc = found
            assert value >= ref - 1e-7 * scale - acc and value - ref <= 1e-6 * scale + acc, desc

    _run(check)


# -------------------------------------------------------------------------------------------- scale equivariance
def _equivariant_penalty(name, a, c):
    """lam (and log-sum's eps) such that penalty(beta') = c^2 penalty(beta) for beta' = (c/a) beta."""
    return {"group_lasso": lambda: gs.GroupLasso(0.2 * a * c),
            "sparse_group_lasso": lambda: gs.SparseGroupLasso(0.2 * a * c, 0.3),
            "mcp": lambda: gs.GroupMCP(0.2 * c, 3.0),          # gamma is in units of beta: y scaled only (a = 1)
            "scad": lambda: gs.GroupSCAD(0.2 * c, 3.7),
            "log_sum": lambda: gs.GroupLogSum(0.05 * c * c, 0.5 * c),
            "bridge": lambda: gs.GroupBridge(0.05 * c ** 1.5, 0.5)}[name]()


@settings(max_examples=_n(30))
@given(seed=st.integers(0, 10_000), name=st.sampled_from(["group_lasso", "sparse_group_lasso", "mcp", "scad",
                                                         "log_sum", "bridge"]),
       log_a=st.integers(-8, 8), log_c=st.integers(-8, 8), fit_intercept=st.booleans())
def test_fuzz_rescaled_data_give_rescaled_coefficients(seed, name, log_a, log_c, fit_intercept):
    rng = np.random.default_rng(seed)
    n, sizes = 40, [2, 3, 1, 4, 2]
    X = rng.standard_normal((n, 12))
    y = X[:, :5] @ rng.standard_normal(5) + 0.3 * rng.standard_normal(n) + 1.0
    convex = name in ("group_lasso", "sparse_group_lasso")
    a, c = (10.0 ** log_a if convex else 1.0), 10.0 ** log_c

    def check():
        solve = lambda A, b, pen: gs.solve(gs.LeastSquares(A, b, fit_intercept=fit_intercept), pen, sizes,
                                           tol=1e-12, max_time=MAX_TIME)
        base = solve(X, y, _equivariant_penalty(name, 1.0, 1.0))
        scaled = solve(a * X, c * y, _equivariant_penalty(name, a, c))
        assert base.converged and scaled.converged
        assert scaled.objective / c ** 2 == pytest.approx(base.objective, rel=1e-7)
        np.testing.assert_allclose(scaled.coef * (a / c), base.coef, rtol=0,
                                   atol=1e-5 * max(np.abs(base.coef).max(), 1e-12))

    _run(check)


def test_fuzz_counts_are_consistent():
    """Runs last in this file: every input either passed, raised a clear error, or failed its test above."""
    assert TALLY["wrong_results"] == TALLY["hangs"] == TALLY["crashes"] == 0, TALLY
