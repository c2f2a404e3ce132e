"""select on torch tensors is select on numpy (issue 11): 'obs', 'local_search', 'obs+local_search' under an overall
budget (B x B tiles) and under the N:M partition budget (``Budget.n_of_m`` over single weights) give the same
supports and objectives in both namespaces; the local search ends at a single-swap optimum (brute force); partition
budgets are honoured (and refused by name where a method cannot)."""
import itertools

import numpy as np
import pytest

import groupsparse as gs
from conftest import time_limit
from groupsparse.selection import PARTITION_METHODS, Budget, BudgetProblem, select

torch = pytest.importorskip("torch")


def _gram(seed, p, K):
    """A layer-like Gram problem with correlated inputs: H = X^T X / n, B = X^T Y / n, c = ||Y||^2 / 2n."""
    rng = np.random.default_rng(seed)
    n = 3 * p
    X = rng.standard_normal((n, p))
    X[:, 1:] += 0.6 * X[:, :-1]
    Y = X @ rng.standard_normal((p, K)) + 0.5 * rng.standard_normal((n, K))
    return X.T @ X / n, X.T @ Y / n, float((Y * Y).sum()) / (2 * n)


# (p, K, B) tiles with an overall budget, or (p, K, (n, m)) single weights with an N:M budget
_CONFIGS = [(8, 8, 2), (12, 6, 3), (16, 8, 4), (8, 4, 1), (8, 3, (2, 4)), (12, 4, (1, 4)), (16, 2, (2, 8))]
_METHODS = ("obs", "local_search", "obs+local_search")


def _instance(seed):
    p, K, pat = _CONFIGS[seed % len(_CONFIGS)]
    H, Bm, c = _gram(seed + 300, p, K)
    if isinstance(pat, tuple):
        return H, Bm, c, gs.Groups.block_tiling((p, K), 1), Budget.n_of_m(pat[0], pat[1], (p, K))
    groups = gs.Groups.block_tiling((p, K), pat)
    return H, Bm, c, groups, int(np.random.default_rng(seed).integers(1, groups.n_groups))


def _same(a, b):
    np.testing.assert_array_equal(a.support, b.support)
    scale = max(1.0, abs(a.objective))
    assert abs(a.objective - b.objective) <= 1e-10 * scale
    np.testing.assert_allclose(b.coef, a.coef, rtol=0, atol=1e-9 * max(1.0, np.abs(a.coef).max()))


def _torch_matches_numpy(device, dtype=torch.float64, n_instances=50):
    for seed in range(n_instances):
        H, Bm, c, groups, k = _instance(seed)
        for method in _METHODS:
            a = select(gs.GramLeastSquares(H, Bm, c), groups, k, method=method)
            b = select(gs.GramLeastSquares(torch.tensor(H, dtype=dtype, device=device),
                                           torch.tensor(Bm, dtype=dtype, device=device), c), groups, k, method=method)
            _same(a, b)
            nat = b.info["coef_native"]
            assert isinstance(nat, torch.Tensor) and nat.device.type == device and nat.dtype == dtype


def test_torch_float64_equals_numpy_on_50_instances():
    with time_limit(120):
        _torch_matches_numpy("cpu")


@pytest.mark.gpu
def test_cuda_float64_equals_numpy_on_50_instances():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    with time_limit(300):
        _torch_matches_numpy("cuda")


def test_float32_tensors_select_in_float64():
    """float32 inputs: paths, swaps and refits run in float64 on the rounded H and B, so they pick what numpy
    picks on the same rounded data."""
    for seed in range(6):
        H, Bm, c, groups, k = _instance(seed)
        H32, B32 = H.astype(np.float32), Bm.astype(np.float32)
        a = select(gs.GramLeastSquares(H32.astype(float), B32.astype(float), c), groups, k, method="obs+local_search")
        b = select(gs.GramLeastSquares(torch.tensor(H32), torch.tensor(B32), c), groups, k, method="obs+local_search")
        np.testing.assert_array_equal(a.support, b.support)
        assert abs(a.objective - b.objective) <= 1e-10 * max(1.0, abs(a.objective))  # computed in float64
        # the coefficients come back in the input's float32: rounded once
        np.testing.assert_allclose(b.coef, a.coef, rtol=0, atol=2 * 2.0 ** -24 * np.abs(a.coef).max())
        assert b.info["coef_native"].dtype == torch.float32


def _feasible_swaps(groups, budget, S):
    b = budget.bind(groups.n_groups)
    for j in S:
        for g in np.setdiff1d(np.arange(groups.n_groups), S):
            S2 = np.union1d(np.setdiff1d(S, [j]), [g])
            if b.feasible(S2):
                yield S2


@pytest.mark.parametrize("seed", range(7))
def test_local_search_ends_at_a_single_swap_optimum(seed):
    """No feasible single swap (any kept group for any dropped one, refit exactly) lowers the objective of the
    local search's answer: the exact swap algebra over column blocks misses none (tiles with K > 1, N:M)."""
    H, Bm, c, groups, k = _instance(seed)
    loss = gs.GramLeastSquares(H, Bm, c)
    budget = k if isinstance(k, Budget) else Budget(k)
    with time_limit(60):
        sol = select(loss, groups, k, method="local_search")
        bp = BudgetProblem(loss, groups)
        best = min((bp.refit(S2)[1] for S2 in _feasible_swaps(groups, budget, sol.support)), default=np.inf)
    assert best >= sol.objective - 1e-10 * max(1.0, abs(sol.objective))


@pytest.mark.parametrize("seed", range(4))
def test_exact_under_an_nm_budget_is_the_enumerated_optimum(seed):
    """N:M: the loss separates over columns and windows share nothing across columns, so enumerating every column's
    choice of N rows per window gives the optimum; 'exact' (partitioned branch and bound) must reach it, and every
    other method stays within the budget and above it."""
    p, K, n, m = 8, 2, 2, 4
    H, Bm, c = _gram(seed + 50, p, K)
    loss = gs.GramLeastSquares(H, Bm, c)
    groups = gs.Groups.block_tiling((p, K), 1)
    budget = Budget.n_of_m(n, m, (p, K))
    best = c
    for col in range(K):
        vals = []
        for combo in itertools.product(itertools.combinations(range(m), n), repeat=p // m):
            rows = np.concatenate([np.array(s) + w * m for w, s in enumerate(combo)])
            vals.append(-0.5 * Bm[rows, col] @ np.linalg.solve(H[np.ix_(rows, rows)], Bm[rows, col]))
        best += min(vals)
    with time_limit(60):
        ex = select(loss, groups, budget, method="exact")
        assert abs(ex.objective - best) <= 1e-10 * max(1.0, abs(best))
        for method in PARTITION_METHODS:
            sol = select(loss, groups, budget, method=method)
            kept = np.zeros(p * K, dtype=bool)
            kept[sol.support] = True
            assert np.all(kept.reshape(p // m, m, K).sum(axis=1) <= n), method
            assert sol.objective >= best - 1e-10 * max(1.0, abs(best)), method
            assert sol.objective == pytest.approx(BudgetProblem(loss, groups).refit(sol.support)[1], rel=1e-10)


def test_local_search_reports_its_moves_and_respects_max_swaps():
    H, Bm, c = _gram(7, 16, 8)
    loss = gs.GramLeastSquares(H, Bm, c)
    groups = gs.Groups.block_tiling((16, 8), 1)
    budget = Budget.n_of_m(2, 4, (16, 8))
    start = select(loss, groups, budget, method="obs")
    sol = select(loss, groups, budget, method="obs+local_search")
    assert sol.info["start"] == "obs" and sol.info["start_objective"] == pytest.approx(start.objective, rel=1e-12)
    objs = [start.objective] + [mv["objective"] for mv in sol.info["moves"]]
    assert len(objs) > 1  # this instance's OBS support is not a local optimum
    assert all(b < a for a, b in zip(objs, objs[1:]))  # every accepted move lowers the objective
    assert sol.history == [mv["objective"] for mv in sol.info["moves"]]
    assert objs[-1] == pytest.approx(sol.objective, rel=1e-12)
    for cap in (0, 1, 3):
        capped = select(loss, groups, budget, method="local_search", start=start.support, max_swaps=cap)
        assert sum(len(mv["drop"]) for mv in capped.info["moves"]) <= cap
        if cap == 0:
            np.testing.assert_array_equal(capped.support, start.support)
        assert capped.objective <= start.objective + 1e-12 * abs(start.objective)


def test_budget_bad_input_names_the_argument():
    H, Bm, c = _gram(1, 8, 4)
    loss = gs.GramLeastSquares(H, Bm, c)
    ones = gs.Groups.block_tiling((8, 4), 1)
    nm = Budget.n_of_m(2, 4, (8, 4))
    with pytest.raises(ValueError, match="partition: expected one label per group"):
        select(loss, ones, Budget(2, [0, 1, 2]), method="omp")
    with pytest.raises(ValueError, match="k: method 'sa' takes an overall budget"):
        select(loss, ones, nm, method="sa")
    with pytest.raises(ValueError, match="k: method 'obs' needs every part"):
        select(loss, ones, Budget(2, np.arange(32) // 8), method="obs")  # parts of 8 consecutive ids span columns
    with pytest.raises(ValueError, match="relax:"):
        select(loss, ones, nm, method="iht", relax=2)
    with pytest.raises(ValueError, match="init: holds more groups of one part"):
        select(loss, ones, nm, method="local_search", init=[0, 4, 8])  # rows 0-2 of column 0: 3 of one window
    with pytest.raises(ValueError, match="start:"):
        select(loss, ones, nm, method="local_search", start="nonsense")
    with pytest.raises(ValueError, match="start: method 'sa' does not honour"):
        select(loss, ones, nm, method="local_search", start="sa")
    with pytest.raises(ValueError, match="max_swaps:"):
        select(loss, ones, nm, method="local_search", max_swaps=-1)
    with pytest.raises(ValueError, match="n: must be in"):
        Budget.n_of_m(5, 4, (8, 4))
    with pytest.raises(ValueError, match="m: M=3 does not divide"):
        Budget.n_of_m(2, 3, (8, 4))
    with pytest.raises(ValueError, match="k: expected an integer"):
        select(loss, ones, Budget("2"), method="omp")
    with pytest.raises(ValueError, match="k: a partition budget keeps n >= 1"):
        select(loss, ones, Budget(0, np.zeros(32)), method="omp")
