"""select(method='bnb'): the proven optimum is the brute-force optimum, every reported gap is a valid gap, a MIQP
solver agrees on a 60-group instance, bad input is named, and every method says which certificate it carries."""
from __future__ import annotations

import importlib.util
import itertools
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import groupsparse as gs
from groupsparse.selection import BudgetProblem, select

from conftest import examples_scale, time_limit


def _instance(seed, n, sizes, n_active, logistic=False, intercept=True, ridge=0.1):
    rng = np.random.default_rng(seed)
    p = int(sum(sizes))
    X = rng.standard_normal((n, p))
    X[:, 1:] += 0.5 * X[:, :-1]  # correlated neighbours: the relaxation is not trivially tight
    beta = np.zeros(p)
    beta[rng.choice(p, min(n_active, p), replace=False)] = rng.standard_normal(min(n_active, p))
    eta = X @ beta
    if logistic:
        y = (rng.random(n) < 1 / (1 + np.exp(-2 * eta))).astype(float)
        loss = gs.Logistic(X, y, ridge=ridge, fit_intercept=intercept)
    else:
        y = eta + 0.5 * rng.standard_normal(n)
        loss = gs.LeastSquares(X, y, ridge=ridge, fit_intercept=intercept)
    return loss, gs.Groups.from_sizes(list(sizes))


def _brute(loss, groups, k):
    """min over every support of exactly k groups of the exact refit (supports of k groups dominate smaller ones:
    the refit value is non-increasing in the support)."""
    bp = BudgetProblem(loss, groups)
    return min(bp.refit(np.array(S))[1] for S in itertools.combinations(range(bp.G), k))


@settings(max_examples=int(12 * examples_scale()))
@given(seed=st.integers(0, 10_000), G=st.integers(3, 9), smax=st.integers(1, 3), k=st.integers(1, 3),
       ridge=st.sampled_from([0.01, 0.1, 1.0]), intercept=st.booleans())
def test_bnb_equals_brute_force(seed, G, smax, k, ridge, intercept):
    k = min(k, G)
    sizes = np.random.default_rng(seed).integers(1, smax + 1, size=G)
    loss, groups = _instance(seed, 40, sizes, 4, intercept=intercept, ridge=ridge)
    best = _brute(loss, groups, k)
    with time_limit(60):
        sol = select(loss, groups, k, method="bnb", gap_tol=1e-9)
    assert sol.info["certified"] == "optimal" and sol.info["status"] == "optimal"
    # the proven optimum is the optimum (refits are exact to rounding), and the bound never exceeds it
    assert sol.objective <= best * (1 + 1e-9) + 1e-12
    assert sol.lower_bound <= best * (1 + 1e-10) + 1e-12
    assert len(sol.support) <= k


@settings(max_examples=int(12 * examples_scale()))
@given(seed=st.integers(0, 10_000), max_nodes=st.integers(1, 3), ridge=st.sampled_from([0.003, 0.03]))
def test_bnb_early_stop_gap_is_valid(seed, max_nodes, ridge):
    """Stopped after a few nodes, the reported lower bound is below the true optimum, so the reported relative
    gap is at least the true one."""
    loss, groups = _instance(seed, 30, [2] * 12, 8, ridge=ridge)
    k = 4
    best = _brute(loss, groups, k)
    with time_limit(60):
        sol = select(loss, groups, k, method="bnb", max_nodes=max_nodes, gap_tol=1e-9)
    true_gap = (sol.objective - best) / sol.objective
    assert sol.lower_bound <= best * (1 + 1e-10) + 1e-12
    assert sol.info["gap"] >= true_gap - 1e-12
    assert sol.info["n_nodes"] <= max_nodes
    if sol.info["status"] != "optimal":
        assert sol.info["status"] == "node_limit"


def _brute_boxed(loss, groups, k, M):
    """min over every support of exactly k groups of the refit under ||b_g|| <= M, each a small convex program
    (cvxpy / Clarabel at 1e-10 tolerances; a solver independent of bnb's projected-gradient refit)."""
    import cvxpy as cp
    X, y, n = np.asarray(loss.X)[:, : loss.n_features], loss.Y[:, 0], loss.n_samples
    best = np.inf
    for S in itertools.combinations(range(groups.n_groups), k):
        b, b0 = cp.Variable(X.shape[1]), cp.Variable()
        eta = X @ b + (b0 if loss.fit_intercept else 0.0)
        data = (cp.sum(cp.logistic(eta) - cp.multiply(y, eta)) if isinstance(loss, gs.Logistic)
                else 0.5 * cp.sum_squares(eta - y)) / n
        off = np.setdiff1d(np.arange(X.shape[1]), np.concatenate([groups.indices[g] for g in S]))
        cons = [cp.norm(b[groups.indices[g]]) <= M for g in S] + ([b[off] == 0] if off.size else [])
        prob = cp.Problem(cp.Minimize(data + loss.ridge / 2 * cp.sum_squares(b)), cons)
        with warnings.catch_warnings():  # 'optimal_inaccurate' at these tolerances is still ~1e-9 accurate
            warnings.simplefilter("ignore")
            prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
        assert prob.status in ("optimal", "optimal_inaccurate")
        best = min(best, prob.value)
    return best


@settings(max_examples=int(6 * examples_scale()))
@given(seed=st.integers(0, 10_000), G=st.integers(3, 7), smax=st.integers(1, 2), k=st.integers(1, 3),
       shrink=st.sampled_from([0.2, 0.5, 0.9]), intercept=st.booleans(), logistic=st.booleans(),
       max_nodes=st.sampled_from([1, 2, None]))
def test_bnb_boxed_equals_brute_force(seed, G, smax, k, shrink, intercept, logistic, max_nodes):
    """max_coef = M: the proven optimum is the brute-force optimum of the boxed problem (M a fraction of the
    unboxed optimum's largest group norm, so the box binds), and a search stopped after 1-2 nodes reports a lower
    bound below it (a reported gap >= the true gap)."""
    pytest.importorskip("cvxpy")
    k = min(k, G)
    sizes = np.random.default_rng(seed).integers(1, smax + 1, size=G)
    loss, groups = _instance(seed, 40, sizes, 4, logistic=logistic, intercept=intercept, ridge=0.05)
    free = select(loss, groups, k, method="exact")
    M = shrink * float(np.max([np.linalg.norm(free.coef[i]) for i in groups.indices]))
    if not M > 0:
        return
    best = _brute_boxed(loss, groups, k, M)
    kw = {"gap_tol": 1e-9} if max_nodes is None else {"gap_tol": 1e-9, "max_nodes": max_nodes}
    with time_limit(60):
        sol = select(loss, groups, k, method="bnb", max_coef=M, **kw)
    # the answer is feasible for the boxed problem, and its value is the value at its coefficients
    assert max(np.linalg.norm(sol.coef[i]) for i in groups.indices) <= M * (1 + 1e-9)
    # Clarabel's tolerance (~1e-9 relative here) bounds the agreement
    tol = 1e-7 * abs(best) + 1e-10
    assert sol.lower_bound <= best + tol
    assert sol.info["gap"] >= (sol.objective - best) / sol.objective - 1e-7
    if max_nodes is None:
        assert sol.info["certified"] == "optimal"
        assert abs(sol.objective - best) <= tol + 1e-9 * abs(best)


@pytest.mark.parametrize("seed", [0, 1])
def test_bnb_logistic_equals_brute_force(seed):
    loss, groups = _instance(seed, 60, [2] * 8, 4, logistic=True, ridge=0.05)
    k = 2
    best = _brute(loss, groups, k)
    with time_limit(60):
        sol = select(loss, groups, k, method="bnb", gap_tol=1e-8)
    assert sol.info["certified"] == "optimal"
    # GLM refits carry the 1e-8 refit ridge: values agree to ~1e-8 * ||w||^2
    assert sol.objective <= best + 1e-7
    assert sol.lower_bound <= best + 1e-9


def test_bnb_time_limit_returns_incumbent_and_valid_bound():
    loss, groups = _instance(3, 50, [2] * 14, 10, ridge=0.002)
    best = _brute(loss, groups, 5)
    with time_limit(60):
        sol = select(loss, groups, 5, method="bnb", max_time=1e-3, gap_tol=1e-9)
    assert sol.info["status"] in ("time_limit", "optimal")
    assert sol.lower_bound <= best * (1 + 1e-10)
    assert sol.objective >= best * (1 - 1e-12)
    assert len(sol.support) == 5


def test_bnb_trace_is_a_valid_gap_curve():
    """trace: every recorded (seconds, nodes, bound, incumbent) has bound <= the true optimum <= incumbent (the
    curve's gaps are valid gaps, whichever entries a machine's speed produces), and the last is the answer."""
    loss, groups = _instance(4, 30, [2] * 16, 10, ridge=0.001)  # ~300 nodes, ~1 s: a periodic entry or two
    best = _brute(loss, groups, 6)
    tr = []
    with time_limit(60):
        sol = select(loss, groups, 6, method="bnb", gap_tol=1e-9, trace=tr, progress=False)
    assert tr[-1][1:] == (sol.info["n_nodes"], sol.lower_bound, sol.objective)
    for (t, nodes, _, inc), (t2, nodes2, _, inc2) in zip(tr, tr[1:]):
        assert t <= t2 and nodes <= nodes2 and inc2 <= inc
    for _, _, lb, inc in tr:
        assert 0.0 <= lb <= best * (1 + 1e-10) + 1e-12
        assert inc >= best * (1 - 1e-12)


def test_certificate_kind_of_every_method():
    loss, groups = _instance(0, 40, [2] * 6, 4, ridge=0.1)
    assert select(loss, groups, 2, method="splicing").info["certified"] == "none"
    assert select(loss, groups, 2, method="exact").info["certified"] == "optimal"
    sol = select(loss, groups, 2, method="bnb", max_nodes=1, gap_tol=1e-12)
    assert sol.info["certified"] in ("optimal", "lower_bound")
    assert (sol.info["certified"] == "optimal") == (sol.info["gap"] <= 1e-12 + 1e-11)
    b = select(loss, groups, 2, method="splicing", bound=True)
    assert b.info["certified"] in ("lower_bound", "optimal") and b.info["gap"] >= 0


@pytest.mark.parametrize("kw, name", [({"max_time": -1}, "max_time"), ({"max_nodes": 0}, "max_nodes"),
                                      ({"gap_tol": "x"}, "gap_tol"), ({"progress": "yes"}, "progress"),
                                      ({"max_nodes": 2.5}, "max_nodes"), ({"max_coef": 0}, "max_coef"),
                                      ({"max_coef": -1.0}, "max_coef"), ({"max_coef": float("nan")}, "max_coef"),
                                      ({"max_coef": "big"}, "max_coef"), ({"max_coef": np.inf}, "max_coef"),
                                      ({"trace": "x"}, "trace")])
def test_bnb_bad_options_named(kw, name):
    loss, groups = _instance(0, 20, [1] * 5, 2, ridge=0.1)
    with pytest.raises(ValueError, match=name):
        select(loss, groups, 2, method="bnb", **kw)


def test_bnb_refuses_what_it_cannot_certify():
    loss, groups = _instance(0, 20, [1] * 5, 2, ridge=0.0)
    with pytest.raises(ValueError, match="ridge"):
        select(loss, groups, 2, method="bnb")
    rng = np.random.default_rng(0)
    multi = gs.Multinomial(rng.standard_normal((30, 4)), rng.integers(0, 3, 30), ridge=0.1)
    with pytest.raises(ValueError, match="loss"):
        select(multi, 2, 1, method="bnb")


def _scip_available():
    if importlib.util.find_spec("pyscipopt") is None:
        return False
    import cvxpy as cp
    return "SCIP" in cp.installed_solvers()


@pytest.mark.skipif(not _scip_available(), reason="pyscipopt (SCIP through cvxpy) is not installed")
def test_bnb_agrees_with_scip_miqp_60_groups():
    """The budgeted ridge least-squares MIQP with a valid big-M solved by SCIP, against bnb.  Any optimum b* has
    ridge/2 ||b*||^2 <= f(b*) <= f(b) for every feasible b, so |b*_j| <= sqrt(2 f(b) / ridge) at bnb's point b:
    the big-M cuts off no optimum whatever bnb got right or wrong."""
    import cvxpy as cp
    G, k, n, ridge = 60, 3, 80, 0.3
    loss, groups = _instance(7, n, [1] * G, 4, intercept=False, ridge=ridge)
    X, y = loss.X, loss.Y[:, 0]
    with time_limit(60):
        sol = select(loss, groups, k, method="bnb", gap_tol=1e-7)
    assert sol.info["certified"] == "optimal"
    M = np.sqrt(2 * sol.objective / ridge) * (1 + 1e-9)
    b = cp.Variable(G)
    z = cp.Variable(G, boolean=True)
    obj = cp.sum_squares(y - X @ b) / (2 * n) + ridge / 2 * cp.sum_squares(b)
    prob = cp.Problem(cp.Minimize(obj), [cp.abs(b) <= M * z, cp.sum(z) <= k])
    with time_limit(60):
        prob.solve(solver=cp.SCIP, scip_params={"limits/gap": 1e-9, "limits/time": 50})
    assert prob.status == "optimal"
    # SCIP's own feasibility / optimality tolerances (~1e-6 relative) bound the agreement
    assert abs(sol.objective - prob.value) <= 1e-6 * abs(prob.value)
    assert set(np.flatnonzero(z.value > 0.5)) == set(sol.support.tolist())


def test_bnb_sparse_X_same_answer():
    import scipy.sparse as sp
    loss, groups = _instance(5, 40, [2] * 8, 4, ridge=0.05)
    X = np.asarray(loss.X[:, :16])
    X[np.abs(X) < 0.7] = 0.0
    y = loss.Y[:, 0]
    dense = select(gs.LeastSquares(X, y, ridge=0.05), groups, 3, method="bnb", gap_tol=1e-9)
    sparse = select(gs.LeastSquares(sp.csr_matrix(X), y, ridge=0.05), groups, 3, method="bnb", gap_tol=1e-9)
    assert sparse.info["certified"] == "optimal"
    assert set(sparse.support.tolist()) == set(dense.support.tolist())
    assert abs(sparse.objective - dense.objective) <= 1e-9 * dense.objective


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("boxed", [False, True])
def test_ksupport_prox_is_the_prox(seed, boxed):
    """The node solver's prox of lam * min{1/2 sum t_g^2 / z_g : z in [0, 1], sum z <= m} (and with the box
    t_g <= M z_g, M drawn so that it binds on some groups) equals cvxpy's."""
    cp = pytest.importorskip("cvxpy")
    from groupsparse.selection.bnb import _ksupport, _ksupport_prox
    rng = np.random.default_rng(seed)
    G, m, lam = 9, int(rng.integers(1, 5)), float(rng.choice([0.01, 0.3, 2.0]))
    s = np.abs(rng.standard_normal(G)) * (rng.random(G) < 0.8)
    M = float(rng.uniform(0.1, 1.0)) * s.max() if boxed else np.inf
    t, z = cp.Variable(G), cp.Variable(G)
    obj = 0.5 * cp.sum_squares(t - s) + lam * 0.5 * cp.sum(cp.hstack([cp.quad_over_lin(t[g], z[g]) for g in range(G)]))
    cons = [z >= 0, z <= 1, cp.sum(z) <= m] + ([t <= M * z] if boxed else [])
    prob = cp.Problem(cp.Minimize(obj), cons)
    prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    mine = _ksupport_prox(s, lam, m, M)
    np.testing.assert_allclose(mine, t.value, atol=2e-5)
    # feasible: t_g <= M and sum t_g <= M m are what t_g <= M z_g, sum z <= m allow
    assert mine.max() <= M * (1 + 1e-12) and mine.sum() <= M * m * (1 + 1e-12)
    # and its objective is no worse than the interior-point optimum (up to that solver's tolerance); on that set
    # the boxed penalty is the unboxed one (the unboxed optimal z = min(1, t / tau) has tau <= M)
    val = 0.5 * float(np.sum((mine - s) ** 2)) + lam * _ksupport(mine, m)[0]
    assert val <= prob.value + 1e-7


@pytest.mark.parametrize("seed,logistic,M", [(0, False, np.inf), (1, False, np.inf), (2, True, np.inf),
                                             (3, True, np.inf), (1, False, 1.0), (2, False, 0.3), (3, True, 0.5)])
def test_root_bound_reaches_the_perspective_relaxation(seed, logistic, M):
    """At p > n, with a cutoff 1e-3 above the root relaxation's value (cvxpy), the node solver gets within its
    stopping rule (1/4 of the distance to the cutoff) -- or prunes, reporting at most the cutoff (what screening
    removed is only known to be >= it).  The Lagrangian BCD it replaced stalled 5% below on I1.  With a box
    ||b_g|| <= M (M < inf) the relaxation is the big-M + perspective one, ||b_g|| <= M z_g (M binds in these
    cases: the boxed relaxation's value is 1.4x to 10x the unboxed one).  The boxed cases found a stall: a start
    outside the box (a group screened in lowers the budget) made every FISTA step look like an ascent."""
    cp = pytest.importorskip("cvxpy")
    from groupsparse.selection import bnb as B
    sizes, k, ridge = [2, 3, 2, 2, 3, 2, 2, 3, 2, 2, 3, 2], 3, 0.05
    loss, groups = _instance(seed, 20, sizes, 6, logistic=logistic, intercept=False, ridge=ridge)
    X, y, n = np.asarray(loss.X), loss.Y[:, 0], loss.n_samples
    b, z = cp.Variable(X.shape[1]), cp.Variable(len(sizes))
    data = (cp.sum(cp.logistic(X @ b) - cp.multiply(y, X @ b)) if logistic else 0.5 * cp.sum_squares(X @ b - y)) / n
    persp = cp.hstack([cp.quad_over_lin(b[idx], z[g]) for g, idx in enumerate(groups.indices)])
    box = [cp.norm(b[idx]) <= M * z[g] for g, idx in enumerate(groups.indices)] if np.isfinite(M) else []
    prob = cp.Problem(cp.Minimize(data + ridge / 2 * cp.sum(persp)), [z >= 0, z <= 1, cp.sum(z) <= k] + box)
    prob.solve(solver=cp.CLARABEL)
    R = prob.value
    bp = BudgetProblem(loss, groups)
    rx = B._Relaxation(bp)

    def root_bound(cut, passes):
        root = B._Node(-np.inf, 0, np.zeros(0, np.int64), np.ones(bp.G, bool), np.zeros(0, np.int64), np.zeros(0),
                       0.0)
        with time_limit(60):
            return B._process(rx, root, k, ridge, M, lambda S: None, lambda: cut,
                              lambda S: (None, np.inf, None), passes, 1e-9, 0.0, np.inf)[1]

    cut = R + 1e-3 * abs(R)
    lb = root_bound(cut, 2000)
    assert R - 1e-3 * abs(R) <= lb <= cut
