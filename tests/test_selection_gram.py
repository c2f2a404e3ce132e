"""groupsparse.select on GramLeastSquares (the torch bridge's layer-wise problem): numpy and torch paths agree,
refits are exact (gradient 0 on the support), the batched column-pattern refit equals per-column solves."""
import numpy as np
import pytest

import groupsparse as gs
from groupsparse.selection import select, BudgetProblem

torch = pytest.importorskip("torch")


def _tiled(seed, p=24, K=16, b=4, n=80, k=6):
    """A layer-like Gram problem: H = X^T X / n, B = H M for a block-sparse M plus noise in the targets."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) @ (np.eye(p) + 0.3 * rng.standard_normal((p, p)))
    groups = gs.Groups.block_tiling((p, K), b)
    M = np.zeros(p * K)
    for g in rng.choice(groups.n_groups, k, replace=False):
        M[groups.indices[g]] = rng.standard_normal(b * b)
    Y = X @ M.reshape(p, K) + 0.3 * rng.standard_normal((n, K))
    H, B = X.T @ X / n, X.T @ Y / n
    return H, B, float((Y * Y).sum()) / (2 * n), groups, k


@pytest.mark.parametrize("method,opts", [("iht", {}), ("omp", {"batch": 2}), ("local_search", {}),
                                         ("omp", {"score": "sacrifice"}), ("htp", {})])
def test_torch_equals_numpy(method, opts):
    H, B, c, groups, k = _tiled(0)
    a = select(gs.GramLeastSquares(H, B, c), groups, k, method=method, **opts)
    b = select(gs.GramLeastSquares(torch.tensor(H), torch.tensor(B), c), groups, k, method=method, **opts)
    np.testing.assert_array_equal(a.support, b.support)
    np.testing.assert_allclose(a.coef, b.coef, atol=1e-10)
    assert abs(a.objective - b.objective) <= 1e-10 * max(1, abs(a.objective))
    assert isinstance(b.info["coef_native"], torch.Tensor) and isinstance(b.coef, np.ndarray)
    np.testing.assert_allclose(b.info["coef_native"].numpy(), a.coef, atol=1e-10)
    assert len(a.support) == k


def test_gram_refit_is_exact_and_batched():
    """Gradient of the Gram loss vanishes on the selected coefficients; the value matches the loss; and the
    per-pattern batched solve equals a column-by-column least-squares solve."""
    H, B, c, groups, k = _tiled(1)
    loss = gs.GramLeastSquares(H, B, c)
    bp = BudgetProblem(loss, groups)
    S = np.array([0, 3, 5, 9, 17, 20])
    W, val = bp.refit(S)
    grad = loss.gradient(W.ravel())
    mask = groups.mask(S)
    assert np.max(np.abs(grad[mask])) < 1e-10
    assert np.all(W.ravel()[~mask] == 0)
    assert abs(val - loss.value(W.ravel())) < 1e-10
    m = mask.reshape(H.shape[0], -1)
    for col in range(m.shape[1]):
        r = np.flatnonzero(m[:, col])
        ref = np.linalg.solve(H[np.ix_(r, r)], B[r, col]) if r.size else np.zeros(0)
        np.testing.assert_allclose(W[r, col], ref, atol=1e-10)


def test_gram_float32_torch_runs_and_matches_in_float64_refit():
    H, B, c, groups, k = _tiled(2)
    a = select(gs.GramLeastSquares(H, B, c), groups, k, method="omp", batch=3)
    b = select(gs.GramLeastSquares(torch.tensor(H, dtype=torch.float32), torch.tensor(B, dtype=torch.float32), c),
               groups, k, method="omp", batch=3)
    np.testing.assert_array_equal(a.support, b.support)
    np.testing.assert_allclose(a.coef, b.coef, atol=1e-4)


def test_local_search_not_worse_than_omp_on_gram():
    for seed in range(3):
        H, B, c, groups, k = _tiled(seed + 10, k=5)
        loss = gs.GramLeastSquares(H, B, c)
        ls = select(loss, groups, k, method="local_search")
        om = select(loss, groups, k, method="omp")
        assert ls.objective <= om.objective + 1e-10


def test_bad_input_errors():
    H, B, c, groups, k = _tiled(3)
    loss = gs.GramLeastSquares(H, B, c)
    with pytest.raises(ValueError, match="k: must be in"):
        select(loss, groups, 0)
    with pytest.raises(ValueError, match="k: must be in"):
        select(loss, groups, groups.n_groups + 1)
    with pytest.raises(ValueError, match="method: expected one of .*local_search"):
        select(loss, groups, 2, method="nope")
    with pytest.raises(ValueError, match="k: expected an integer"):
        select(loss, groups, 2.5)
