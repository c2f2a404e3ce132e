"""solve / solve_path / lambda_max on a GramLeastSquares of torch tensors give the numpy answer (the convex solvers
run on a float64 host copy) and hand the coefficients back in the input's array type; LeastSquares on tensors is
the numpy problem."""
import numpy as np
import pytest

import groupsparse as gs

torch = pytest.importorskip("torch")


def _gram(seed=0, n=60, p=12, K=3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    X[:, 1:] += 0.5 * X[:, :-1]
    Y = X[:, :4] @ rng.standard_normal((4, K)) + 0.3 * rng.standard_normal((n, K))
    return X, Y, X.T @ X / n, X.T @ Y / n, float((Y * Y).sum()) / (2 * n)


@pytest.mark.parametrize("penalty", [gs.GroupLasso(0.05), gs.GroupMCP(0.05, gamma=3.0)])
@pytest.mark.parametrize("solver", ["bcd", "fista"])
def test_torch_gram_solve_matches_numpy(penalty, solver):
    X, Y, H, B, c = _gram()
    groups = gs.Groups.from_sizes([3, 3, 3, 3])
    a = gs.solve(gs.GramLeastSquares(H, B, c), penalty, groups, solver=solver, tol=1e-10)
    b = gs.solve(gs.GramLeastSquares(torch.tensor(H), torch.tensor(B), c), penalty, groups, solver=solver,
                 tol=1e-10)
    np.testing.assert_allclose(b.coef, a.coef, rtol=0, atol=1e-8 * max(1.0, np.abs(a.coef).max()))
    assert b.objective == pytest.approx(a.objective, rel=1e-10)
    nat = b.info["coef_native"]
    assert isinstance(nat, torch.Tensor) and nat.dtype == torch.float64 and nat.device.type == "cpu"
    np.testing.assert_array_equal(nat.numpy(), b.coef)


def test_torch_gram_path_and_lambda_max_match_numpy():
    X, Y, H, B, c = _gram(1)
    groups = gs.Groups.from_sizes([4, 4, 4])
    pen = gs.GroupLasso(1.0)
    Ht, Bt = torch.tensor(H, dtype=torch.float32), torch.tensor(B, dtype=torch.float32)
    H32, B32 = Ht.double().numpy(), Bt.double().numpy()  # the float32 inputs, exactly, on the numpy side
    lm = gs.lambda_max(gs.GramLeastSquares(H32, B32, c), pen, groups)
    assert gs.lambda_max(gs.GramLeastSquares(Ht, Bt, c), pen, groups) == pytest.approx(lm, rel=1e-12)
    pa = gs.solve_path(gs.GramLeastSquares(H32, B32, c), pen, groups, n_lambdas=4, tol=1e-10)
    pb = gs.solve_path(gs.GramLeastSquares(Ht, Bt, c), pen, groups, n_lambdas=4, tol=1e-10)
    for a, b in zip(pa, pb):
        assert b.lam == a.lam
        np.testing.assert_allclose(b.coef, a.coef, rtol=0, atol=1e-8 * max(1.0, np.abs(a.coef).max()))
        assert b.info["coef_native"].dtype == torch.float32


def test_least_squares_on_tensors_is_the_numpy_problem():
    X, Y, *_ = _gram(2, K=1)
    groups = gs.Groups.from_sizes([3, 3, 3, 3])
    a = gs.solve(gs.LeastSquares(X, Y[:, 0]), gs.GroupLasso(0.05), groups, tol=1e-10)
    b = gs.solve(gs.LeastSquares(torch.tensor(X), torch.tensor(Y[:, 0])), gs.GroupLasso(0.05), groups, tol=1e-10)
    np.testing.assert_array_equal(a.coef, b.coef)
