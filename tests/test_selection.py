"""groupsparse.select on X-form losses: refit optimality, exactness against brute force (hypothesis), the lower
bound never above the exact optimum, methods never worse than their warm start where they promise it, k choice,
and errors."""
import itertools

import numpy as np
import pytest
from hypothesis import given, settings, HealthCheck
from hypothesis import strategies as st

import groupsparse as gs
from groupsparse.selection import BudgetProblem, METHODS, choose_k, select, lower_bound


def _data(seed, n=40, sizes=(1, 3, 2, 4, 2, 3, 1, 2), kind="ls", rho=0.5):
    rng = np.random.default_rng(seed)
    p = sum(sizes)
    Z = rng.standard_normal((n, p))
    X = np.sqrt(1 - rho) * Z + np.sqrt(rho) * rng.standard_normal((n, 1))  # equicorrelated columns
    z = X[:, :6] @ rng.standard_normal(6)
    groups = gs.Groups.from_sizes(list(sizes))
    if kind == "ls":
        return gs.LeastSquares(X, z + rng.standard_normal(n)), groups
    if kind == "ls_icpt":
        return gs.LeastSquares(X, z + 2.0 + rng.standard_normal(n), fit_intercept=True), groups
    if kind == "logistic":
        yb = (rng.random(n) < 1 / (1 + np.exp(-0.7 * z))).astype(float)
        return gs.Logistic(X, yb, fit_intercept=True), groups
    yc = np.digitize(z + 0.5 * rng.standard_normal(n), np.quantile(z, [1 / 3, 2 / 3]))
    return gs.Multinomial(X, yc), groups


def _brute(loss, groups, k):
    bp = BudgetProblem(loss, groups)
    best = min((bp.refit(np.array(c))[1], c) for c in itertools.combinations(range(groups.n_groups), k))
    return best


@pytest.mark.parametrize("kind", ["ls", "ls_icpt", "logistic", "multinomial"])
def test_refit_gradient_vanishes_on_support(kind):
    loss, groups = _data(0, kind=kind)
    sol = select(loss, groups, 3, method="omp")
    bp = BudgetProblem(loss, groups)
    W, val = bp.refit(sol.support)
    G = loss.gradient(W.ravel()).reshape(W.shape)
    mask = bp.mask_np(sol.support)
    ridge = bp.refit_ridge * np.where(np.arange(W.shape[0]) < loss.n_features, 1.0, 0.0)[:, None]
    # LS: exact normal equations; GLMs: the Newton refit minimises loss + refit_ridge/2 ||W||^2
    assert np.max(np.abs((G + ridge * W)[mask])) < 1e-8
    assert abs(val - loss.value(W.ravel())) < 1e-12 * max(1, abs(val))
    assert abs(sol.objective - val) < 1e-9 * max(1, abs(val))
    assert sol.certificate_kind == "kkt" and len(sol.support) == 3


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), k=st.integers(1, 4), kind=st.sampled_from(["ls", "ls_icpt", "logistic"]),
       n_groups=st.integers(5, 10))
def test_exact_matches_brute_force(seed, k, kind, n_groups):
    rng = np.random.default_rng(seed)
    sizes = tuple(int(s) for s in rng.integers(1, 4, n_groups))
    loss, groups = _data(seed, n=30, sizes=sizes, kind=kind, rho=0.7)
    k = min(k, n_groups)
    bval, bsup = _brute(loss, groups, k)
    sol = select(loss, groups, k, method="exact")
    assert sol.objective <= bval + 1e-9 * max(1, abs(bval))
    assert sol.certificate_kind == "bound_gap" and sol.certificate == 0.0
    # local search is a 1-swap local optimum: never worse than OMP, and never better than the exact optimum
    ls = select(loss, groups, k, method="local_search")
    assert bval - 1e-9 * max(1, abs(bval)) <= ls.objective


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), k=st.integers(1, 3), icpt=st.booleans(), ridge=st.sampled_from([0.0, 0.3]))
def test_lower_bound_never_above_exact(seed, k, icpt, ridge):
    rng = np.random.default_rng(seed)
    n, sizes = 60, tuple(int(s) for s in rng.integers(1, 4, 7))
    X = rng.standard_normal((n, sum(sizes))) + 0.8 * rng.standard_normal((n, 1))
    y = X[:, :3] @ rng.standard_normal(3) + rng.standard_normal(n) + (3.0 if icpt else 0.0)
    loss = gs.LeastSquares(X, y, fit_intercept=icpt, ridge=ridge)
    groups = gs.Groups.from_sizes(list(sizes))
    bval, _ = _brute(loss, groups, k)
    lb, info = lower_bound(loss, groups, k)
    assert info["bound_kind"] == "perspective"
    assert lb <= bval + 1e-10 * max(1, abs(bval))
    # and it is not the trivial bound: it beats the unconstrained minimum
    full, _ = BudgetProblem(loss, groups).refit(np.arange(groups.n_groups))[1], None
    assert lb >= full - 1e-9


def test_bound_gap_certificate_and_gram_agree():
    loss, groups = _data(3, n=80)
    sol = select(loss, groups, 2, method="local_search", bound=True)
    assert sol.certificate_kind == "bound_gap"
    assert sol.certificate == pytest.approx(sol.objective - sol.lower_bound)
    assert 0 <= sol.lower_bound <= sol.objective
    H = loss.X.T @ loss.X / loss.n_samples
    B = loss.X.T @ loss.Y / loss.n_samples
    g = select(gs.GramLeastSquares(H, B, float(loss.Y[:, 0] @ loss.Y[:, 0]) / (2 * loss.n_samples)), groups, 2,
               method="local_search", bound=True)
    np.testing.assert_array_equal(g.support, sol.support)
    assert g.lower_bound == pytest.approx(sol.lower_bound, rel=1e-5)


# "obs" (and "obs+local_search") needs a Gram loss over B x B tiles: tests/test_selection_obs.py,
# tests/test_array_api_select.py; "bnb" needs a ridge > 0 and one output: tests/test_bnb.py; "newton" is for binary
# logistic only (its own tests)
@pytest.mark.parametrize("method", sorted(set(METHODS) - {"exact", "alg2", "obs", "obs+local_search", "bnb",
                                                          "newton"}))
@pytest.mark.parametrize("kind", ["ls", "logistic", "multinomial"])
def test_every_method_returns_a_feasible_refit(method, kind):
    loss, groups = _data(5, kind=kind)
    sol = select(loss, groups, 3, method=method)
    assert 1 <= len(sol.support) <= 3
    bp = BudgetProblem(loss, groups)  # its groups span all K classes for the multinomial loss
    assert np.all(bp.groups.norms(sol.coef)[np.setdiff1d(np.arange(groups.n_groups), sol.support)] == 0)
    assert sol.objective == pytest.approx(bp.refit(sol.support)[1], rel=1e-8, abs=1e-10)


def test_alg2_runs_and_improves_on_its_start():
    loss, groups = _data(7)
    om = select(loss, groups, 2, method="omp")
    a2 = select(loss, groups, 2, method="alg2", n_iter=3)
    assert a2.objective <= om.objective + 1e-12


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("icpt", [False, True])
def test_local_search_ends_at_a_one_swap_local_optimum(seed, icpt):
    """The exact swap formulas (block-inverse downdates) are right: no single swap, checked by explicit refits,
    improves the returned support -- and the result is never worse than group OMP's."""
    loss, groups = _data(seed, n=35, sizes=(2, 1, 3, 2, 2, 1, 3, 2, 1, 2), kind="ls_icpt" if icpt else "ls",
                         rho=0.8)
    k = 3
    sol = select(loss, groups, k, method="local_search")
    bp = BudgetProblem(loss, groups)
    for j in sol.support:
        for g in np.setdiff1d(np.arange(groups.n_groups), sol.support):
            T = np.union1d(np.setdiff1d(sol.support, [j]), [g])
            assert bp.refit(T)[1] >= sol.objective - 1e-10 * max(1, sol.objective)
    assert sol.objective <= select(loss, groups, k, method="omp").objective + 1e-12


def test_choose_k_criteria_find_the_planted_size():
    rng = np.random.default_rng(1)
    n, G, s = 200, 15, 3
    X = rng.standard_normal((n, G * s))
    beta = np.zeros(G * s)
    beta[:9] = rng.choice([-1.5, 1.5], 9)
    y = X @ beta + 0.5 * rng.standard_normal(n)
    groups = gs.Groups.from_sizes([s] * G)
    for crit in ["ebic", "gic", "cv"]:
        k, sol, scores = choose_k(X, y, groups, range(1, 8), criterion=crit)
        assert k == 3, (crit, scores)
        np.testing.assert_array_equal(sol.support, [0, 1, 2])


def test_errors():
    loss, groups = _data(0)
    with pytest.raises(ValueError, match=r"k: must be in \[1, 8\]"):
        select(loss, groups, 9)
    with pytest.raises(ValueError, match="k: must be in"):
        select(loss, groups, -1)
    with pytest.raises(ValueError, match="method: expected one of"):
        select(loss, groups, 2, method="lasso")
    with pytest.raises(ValueError, match="relax"):
        select(loss, groups, 2, method="iht", relax=0.5)
    with pytest.raises(ValueError, match="loss: expected"):
        select("not a loss", groups, 2)
