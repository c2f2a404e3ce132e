"""select(method='obs') and the core Gram refit (groupsparse.selection.obs): group OBS backward elimination over
B x B tiles is exact step by step (brute-force enumeration of single removals), the merged path is the best
single removal, numpy and torch (float64, float32, CUDA when present) choose the same supports, and the refit is
the exact least squares on any kept mask (block or N:M), chunked or not, full rank or not."""
import itertools

import numpy as np
import pytest

import groupsparse as gs
from groupsparse.selection import BudgetProblem
from groupsparse.selection.obs import gram_refit, obs_keep, obs_paths

torch = pytest.importorskip("torch")


def _gram(seed, p, K, rho=0.6, n=None):
    """A random correlated SPD H (p, p) and B (p, K) (least squares in Gram form)."""
    rng = np.random.default_rng(seed)
    n = n or 3 * p
    X = rng.standard_normal((n, p))
    X[:, 1:] += rho * X[:, :-1]  # neighbouring inputs correlated: OBS increments differ from plain scores
    Y = X @ rng.standard_normal((p, K)) + 0.5 * rng.standard_normal((n, K))
    return X.T @ X / n, X.T @ Y / n, float((Y * Y).sum()) / (2 * n)


def _value(bp, S):
    return bp.refit(np.asarray(sorted(S), dtype=np.int64))[1]  # the selection package's own refit


@pytest.mark.parametrize("seed", range(4))
def test_one_removal_is_the_brute_force_best(seed):
    """Removing one tile: the merged OBS paths pick the best of all G single removals (each increment is exact)."""
    H, B, c = _gram(seed, 8, 4)
    groups = gs.Groups.block_tiling((8, 4), 2)
    loss = gs.GramLeastSquares(H, B, c, ridge=0.01 * seed)
    bp = BudgetProblem(loss, groups)
    sol = gs.select(loss, groups, groups.n_groups - 1, method="obs")
    best = min(_value(bp, S) for S in itertools.combinations(range(groups.n_groups), groups.n_groups - 1))
    assert sol.objective == pytest.approx(best, rel=1e-10, abs=1e-12)
    assert sol.objective == pytest.approx(_value(bp, sol.support), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_single_column_block_path_is_greedy_by_enumeration(seed):
    """One column block (C = 1): every prefix of the OBS path is the greedy backward elimination found by
    enumerating all single removals with exact refits, and every increment is that refit's loss difference."""
    p, B = 12, 3
    H, Bm, c = _gram(seed + 10, p, B)
    groups = gs.Groups.block_tiling((p, B), B)
    bp = BudgetProblem(gs.GramLeastSquares(H, Bm, c), groups)
    order, incr = obs_paths(H, Bm, B, p // B - 1)
    S = set(range(p // B))
    prev = _value(bp, S)
    for s in range(p // B - 1):
        vals = {g: _value(bp, S - {g}) for g in S}
        g = min(vals, key=vals.get)
        assert int(order[0, s]) == g
        assert float(incr[0, s]) == pytest.approx(vals[g] - prev, rel=1e-9, abs=1e-12)
        S, prev = S - {g}, vals[g]
        sol = gs.select(gs.GramLeastSquares(H, Bm, c), groups, len(S), method="obs")
        assert set(sol.support.tolist()) == S
        assert sol.objective == pytest.approx(prev, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("seed", range(2))
def test_never_better_than_the_best_subset(seed):
    H, B, c = _gram(seed + 20, 6, 4)
    groups = gs.Groups.block_tiling((6, 4), 2)
    loss = gs.GramLeastSquares(H, B, c)
    bp = BudgetProblem(loss, groups)
    for k in range(1, groups.n_groups):
        sol = gs.select(loss, groups, k, method="obs")
        assert len(sol.support) == k
        best = min(_value(bp, S) for S in itertools.combinations(range(groups.n_groups), k))
        assert sol.objective >= best - 1e-10 * max(1.0, abs(best))


def _devices():
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def test_numpy_and_torch_choose_the_same_supports_on_50_instances():
    """float64 on numpy and torch (CPU): the same supports and refits (the same arithmetic in two namespaces)."""
    rng = np.random.default_rng(0)
    for seed in range(50):
        p, K, Bk = [(8, 8, 2), (12, 6, 3), (16, 8, 4), (8, 4, 1)][seed % 4]
        H, Bm, c = _gram(seed + 100, p, K)
        groups = gs.Groups.block_tiling((p, K), Bk)
        k = int(rng.integers(1, groups.n_groups))
        a = gs.select(gs.GramLeastSquares(H, Bm, c), groups, k, method="obs")
        b = gs.select(gs.GramLeastSquares(torch.tensor(H), torch.tensor(Bm), c), groups, k, method="obs")
        np.testing.assert_array_equal(a.support, b.support)
        np.testing.assert_allclose(a.coef, b.coef, rtol=0, atol=1e-10 * np.abs(a.coef).max())
        assert isinstance(b.info["coef_native"], torch.Tensor)


@pytest.mark.gpu
def test_cuda_float32_and_float64_match_numpy():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    for seed in range(10):
        H, Bm, c = _gram(seed + 200, 32, 16)
        groups = gs.Groups.block_tiling((32, 16), 4)
        a = gs.select(gs.GramLeastSquares(H, Bm, c), groups, 12, method="obs")
        b = gs.select(gs.GramLeastSquares(torch.tensor(H, device="cuda"), torch.tensor(Bm, device="cuda"), c),
                      groups, 12, method="obs")
        np.testing.assert_array_equal(a.support, b.support)
        assert b.info["coef_native"].device.type == "cuda"
        np.testing.assert_allclose(a.coef, b.coef, rtol=0, atol=1e-8 * np.abs(a.coef).max())


def test_float32_torch_selects_in_float64():
    """The path runs in float64 whatever the input dtype, so float32 inputs (rounded H, B) give the float64
    supports on a well-conditioned problem."""
    H, Bm, c = _gram(7, 16, 8, rho=0.3)
    groups = gs.Groups.block_tiling((16, 8), 2)
    a = gs.select(gs.GramLeastSquares(H, Bm, c), groups, 14, method="obs")
    b = gs.select(gs.GramLeastSquares(torch.tensor(H, dtype=torch.float32), torch.tensor(Bm, dtype=torch.float32),
                                      c), groups, 14, method="obs")
    np.testing.assert_array_equal(a.support, b.support)
    np.testing.assert_allclose(a.coef, b.coef, atol=1e-4 * np.abs(a.coef).max())


@pytest.mark.parametrize("device", _devices())
@pytest.mark.parametrize("kind", ["block", "nm"])
def test_gram_refit_is_least_squares_on_the_mask(kind, device):
    p, K = 16, 8
    H, Bm, _ = _gram(3, p, K)
    rng = np.random.default_rng(1)
    if kind == "block":
        kb = rng.random((p // 4, K // 4)) < 0.6
        keep = np.repeat(np.repeat(kb, 4, 0), 4, 1)
    else:  # 2 of every 4 rows of every column, each column its own row set
        keep = np.zeros((p, K), bool)
        for j in range(0, p, 4):
            for col in range(K):
                keep[j + rng.choice(4, 2, replace=False), col] = True
    ref = np.zeros((p, K))
    for col in range(K):
        r = np.flatnonzero(keep[:, col])
        ref[r, col] = np.linalg.solve(H[np.ix_(r, r)], Bm[r, col])
    Ht, Bt = torch.tensor(H, device=device), torch.tensor(Bm, device=device)
    outs = [gram_refit(H, Bm, keep), gram_refit(Ht, Bt, torch.tensor(keep)).cpu().numpy(),
            gram_refit(H, Bm, keep, chunk_bytes=1)]  # one row set per batch
    if kind == "block":
        outs.append(gram_refit(Ht, Bt, kb, block=4).cpu().numpy())
    for W in outs:
        np.testing.assert_allclose(W, ref, rtol=0, atol=1e-10 * np.abs(ref).max())
        assert np.all(W[~keep] == 0)
    W32 = gram_refit(Ht.float(), Bt.float(), keep)
    assert W32.dtype == torch.float32
    np.testing.assert_allclose(W32.cpu().numpy(), ref, atol=1e-3 * np.abs(ref).max())


def test_gram_refit_singular_support_is_the_min_norm_solution():
    """A kept row set on which H is singular (duplicated inputs) gets the minimum-norm least-squares solution of
    losses.psd_solve, on numpy and torch, never a jittered or NaN answer."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((40, 6))
    X[:, 3] = X[:, 2]
    H, Bm = X.T @ X / 40, X.T @ rng.standard_normal((40, 2)) / 40
    keep = np.ones((6, 2), bool)
    keep[5, 1] = False  # two row sets: both contain the duplicated pair
    for Hx, Bx in ((H, Bm), (torch.tensor(H), torch.tensor(Bm))):
        W = np.asarray(gram_refit(Hx, Bx, keep))
        for col in range(2):
            r = np.flatnonzero(keep[:, col])
            np.testing.assert_allclose(W[r, col], np.linalg.pinv(H[np.ix_(r, r)]) @ Bm[r, col], atol=1e-8)


def test_bad_input_names_the_argument():
    H, Bm, c = _gram(0, 8, 4)
    with pytest.raises(ValueError, match="groups: method 'obs' needs the B x B tiles"):
        gs.select(gs.GramLeastSquares(H, Bm, c), gs.Groups.from_sizes([3, 5]), 1, method="obs")
    with pytest.raises(ValueError, match="groups: method 'obs'"):  # 2 x 4 tiles are not square
        gs.select(gs.GramLeastSquares(H, Bm, c), gs.Groups.block_tiling((8, 4), (2, 4)), 2, method="obs")
    X = np.random.default_rng(0).standard_normal((20, 4))
    with pytest.raises(ValueError, match="loss: method 'obs' needs a GramLeastSquares"):
        gs.select(gs.LeastSquares(X, X[:, 0]), gs.Groups.from_sizes([1, 1, 1, 1]), 2, method="obs")
    with pytest.raises(ValueError, match="block: expected a positive integer dividing"):
        obs_paths(H, Bm, 3, 2)
    with pytest.raises(ValueError, match="n_remove: expected an integer"):
        obs_keep(H, Bm, 2, 9)
    with pytest.raises(ValueError, match="keep: expected shape"):
        gram_refit(H, Bm, np.ones((8, 3), bool))
