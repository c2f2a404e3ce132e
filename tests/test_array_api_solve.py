"""solve / solve_path / lambda_max on a GramLeastSquares of torch tensors run on the tensors' device and dtype
(the generic BCD and FISTA in the array API) and give the numpy answer; H is never copied to the host."""
import math

import numpy as np
import pytest

import groupsparse as gs
from conftest import time_limit
from groupsparse.problem import Problem

torch = pytest.importorskip("torch")

P, K, SIZES = 24, 3, [3] * 8  # p > K and no group of size K, so the guard can tell H's blocks from W
PENALTIES = [gs.GroupLasso(0.05), gs.SparseGroupLasso(0.05, l1_ratio=0.3), gs.GroupMCP(0.05, gamma=3.0),
             gs.GroupSCAD(0.05), gs.GroupLogSum(0.05), gs.GroupBridge(0.05, q=0.5)]


def _gram(seed=0, n=80, p=P, k=K):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    X[:, 1:] += 0.5 * X[:, :-1]
    Y = X[:, :4] @ rng.standard_normal((4, k)) + 0.3 * rng.standard_normal((n, k))
    return X.T @ X / n, X.T @ Y / n, float((Y * Y).sum()) / (2 * n)


def _tensors(H, B, dtype=torch.float64, device="cpu"):
    return torch.tensor(H, dtype=dtype, device=device), torch.tensor(B, dtype=dtype, device=device)


@pytest.fixture
def no_host_copy_of_H(monkeypatch):
    """Fail on any tensor that reaches the host through __array__, and record every .numpy() transfer of more
    than G numbers (the per-iteration budget): a solve may bring home its (p, K) coefficients, once, and small
    systems whose size does not grow with p; no block of H (group sizes 3, so 3 x 3 or 9 x 9) and not H."""
    big = []
    real = torch.Tensor.numpy

    def numpy(self, *a, **k):
        if self.numel() > len(SIZES):
            big.append(tuple(self.shape))
        return real(self, *a, **k)

    def refuse(self, *a, **k):
        raise AssertionError(f"np.asarray on a tensor of shape {tuple(self.shape)}: a silent host copy")

    monkeypatch.setattr(torch.Tensor, "numpy", numpy)
    monkeypatch.setattr(torch.Tensor, "__array__", refuse)
    return big


@pytest.mark.parametrize("penalty", PENALTIES, ids=lambda p: p.name)
@pytest.mark.parametrize("solver", ["bcd", "fista"])
def test_torch_float64_solve_is_the_numpy_solve(penalty, solver, no_host_copy_of_H):
    H, B, c = _gram()
    groups = gs.Groups.from_sizes(SIZES)
    a = gs.solve(gs.GramLeastSquares(H, B, c), penalty, groups, solver=solver, tol=1e-10)
    with time_limit(60):
        b = gs.solve(gs.GramLeastSquares(*_tensors(H, B), c), penalty, groups, solver=solver, tol=1e-10)
    # the Solution's coefficients once; else only BCD's Anderson system (5 x 5, the default 5 differences)
    assert no_host_copy_of_H.count((P, K)) == 1 and set(no_host_copy_of_H) <= {(P, K), (5, 5)}
    assert a.converged and b.converged and b.certificate_kind == a.certificate_kind
    assert b.objective == pytest.approx(a.objective, rel=1e-8)
    np.testing.assert_array_equal(b.support, a.support)
    assert 0 < a.support.size < len(SIZES)  # lam leaves a real selection to agree on
    np.testing.assert_allclose(b.coef, a.coef, rtol=0, atol=1e-6 * np.abs(a.coef).max())
    nat = b.info["coef_native"]
    assert isinstance(nat, torch.Tensor) and nat.dtype == torch.float64 and nat.device.type == "cpu"
    np.testing.assert_array_equal(nat.numpy(), b.coef)


def _true_kkt(H, B, c, penalty, groups, coef):
    """Max KKT residual of ``coef`` measured in float64 numpy (gradient H W - B exactly as the data say)."""
    prob = Problem(gs.GramLeastSquares(H, B, c), penalty, groups)
    W = coef.reshape(P, K)
    return float(np.max(prob.kkt(W, H @ W - B))), prob


@pytest.mark.parametrize("penalty", PENALTIES[:4], ids=lambda p: p.name)
@pytest.mark.parametrize("solver", ["bcd", "fista"])
def test_torch_float32_solve_within_rounding(penalty, solver):
    """float32 on the float32-rounded data (H32 exactly, compared in float64).  The float32 solve stops at
    max(tol * scale, kkt_floor); its gradient H W - B carries at most p eps32 (|H||W| + |B|) per entry
    (a length-p dot product), so its true KKT residual is below that floor plus sqrt(group size) times the
    entry error.  The support must match where the margins are far above it."""
    H, B, c = _gram(1)
    Ht, Bt = _tensors(H, B, torch.float32)
    H32, B32 = Ht.double().numpy(), Bt.double().numpy()
    groups = gs.Groups.from_sizes(SIZES)
    a = gs.solve(gs.GramLeastSquares(H32, B32, c), penalty, groups, solver=solver, tol=1e-10)
    with time_limit(60):
        f = gs.solve(gs.GramLeastSquares(Ht, Bt, c), penalty, groups, solver=solver, tol=1e-10)
    assert f.converged and f.info["coef_native"].dtype == torch.float32
    np.testing.assert_array_equal(f.support, a.support)
    kkt, prob = _true_kkt(H32, B32, c, penalty, groups, f.coef)
    eps32 = float(np.finfo(np.float32).eps)
    W = np.abs(f.coef.reshape(P, K))
    entry = P * eps32 * float(np.max(np.abs(H32) @ W + np.abs(B32)))
    assert kkt <= Problem(gs.GramLeastSquares(Ht, Bt, c), penalty, groups).kkt_floor() \
        + math.sqrt(max(SIZES) * K) * entry
    if isinstance(penalty, gs.GroupLasso):  # strongly convex on the support: the coefficients follow
        S = prob.groups.columns(a.support) // K
        mu = float(np.linalg.eigvalsh(H32[np.ix_(np.unique(S), np.unique(S))])[0])
        assert np.linalg.norm(f.coef - a.coef) <= 2 * math.sqrt(len(SIZES)) * kkt / mu + 1e-9


def test_torch_path_and_lambda_max_match_numpy():
    H, B, c = _gram(2)
    groups = gs.Groups.from_sizes(SIZES)
    pen = gs.GroupLasso(1.0)
    lm = gs.lambda_max(gs.GramLeastSquares(H, B, c), pen, groups)
    assert gs.lambda_max(gs.GramLeastSquares(*_tensors(H, B), c), pen, groups) == pytest.approx(lm, rel=1e-12)
    pa = gs.solve_path(gs.GramLeastSquares(H, B, c), pen, groups, n_lambdas=5, tol=1e-10)
    pb = gs.solve_path(gs.GramLeastSquares(*_tensors(H, B), c), pen, groups, n_lambdas=5, tol=1e-10)
    for a, b in zip(pa, pb):
        assert b.lam == a.lam and b.converged
        assert b.objective == pytest.approx(a.objective, rel=1e-8)
        np.testing.assert_array_equal(b.support, a.support)
        assert b.info["coef_native"].dtype == torch.float64


def test_torch_float32_lambda_max_and_sparse_group_lasso_lambda_max():
    """lambda_max is max_g ||B_g|| / w_g here: in float32 a norm of s entries is within (s/2 + 1) eps32 relative."""
    H, B, c = _gram(3)
    Ht, Bt = _tensors(H, B, torch.float32)
    H32, B32 = Ht.double().numpy(), Bt.double().numpy()
    groups = gs.Groups.from_sizes(SIZES)
    tol = (max(SIZES) * K / 2 + 1) * float(np.finfo(np.float32).eps)
    for pen in (gs.GroupLasso(1.0), gs.GroupMCP(1.0)):
        lm = gs.lambda_max(gs.GramLeastSquares(H32, B32, c), pen, groups)
        assert gs.lambda_max(gs.GramLeastSquares(Ht, Bt, c), pen, groups) == pytest.approx(lm, rel=tol)
    sgl = gs.SparseGroupLasso(1.0, l1_ratio=0.4)  # bisection on the device; same result in float64
    lm = gs.lambda_max(gs.GramLeastSquares(H, B, c), sgl, groups)
    assert gs.lambda_max(gs.GramLeastSquares(*_tensors(H, B), c), sgl, groups) == pytest.approx(lm, rel=1e-12)


def test_torch_unpenalized_and_warm_start_stay_on_device(no_host_copy_of_H):
    H, B, c = _gram(4)
    Ht, Bt = _tensors(H, B)
    groups = gs.Groups.from_sizes(SIZES)
    ls = gs.solve(gs.GramLeastSquares(Ht, Bt, c), gs.GroupLasso(0.0), groups)  # exact least squares
    np.testing.assert_allclose(ls.coef, np.linalg.solve(H, B).ravel(), rtol=1e-9, atol=1e-12)
    first = gs.solve(gs.GramLeastSquares(Ht, Bt, c), gs.GroupLasso(0.05), groups, tol=1e-10)
    again = gs.solve(gs.GramLeastSquares(Ht, Bt, c), gs.GroupLasso(0.05), groups, tol=1e-10,
                     warm_start=first.info["coef_native"])
    assert again.n_iter == 1 and again.objective == pytest.approx(first.objective, rel=1e-12)
    with pytest.raises(ValueError, match="warm_start"):
        gs.solve(gs.GramLeastSquares(Ht, Bt, c), gs.GroupLasso(0.05), groups,
                 warm_start=torch.full((P * K,), float("nan"), dtype=torch.float64))


def test_least_squares_on_tensors_is_the_numpy_problem():
    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((50, 12)), rng.standard_normal(50)
    groups = gs.Groups.from_sizes([3, 3, 3, 3])
    a = gs.solve(gs.LeastSquares(X, y), gs.GroupLasso(0.05), groups, tol=1e-10)
    b = gs.solve(gs.LeastSquares(torch.tensor(X), torch.tensor(y)), gs.GroupLasso(0.05), groups, tol=1e-10)
    np.testing.assert_array_equal(a.coef, b.coef)


def test_gram_bad_array_mixes_are_named():
    H, B, _ = _gram()
    Ht, Bt = _tensors(H, B)
    with pytest.raises(ValueError, match="H, B: must both be numpy arrays or both torch tensors"):
        gs.GramLeastSquares(Ht, B)
    with pytest.raises(ValueError, match="H, B: must both be numpy arrays or both torch tensors"):
        gs.GramLeastSquares(H, Bt)
    with pytest.raises(ValueError, match="H, B: expected one floating dtype"):
        gs.GramLeastSquares(Ht, Bt.float())
    with pytest.raises(ValueError, match="H, B: expected one floating dtype"):
        gs.GramLeastSquares(Ht.half(), Bt.half())
    with pytest.raises(ValueError, match="H, B: must be on one device"):
        gs.GramLeastSquares(Ht, torch.empty(B.shape, dtype=torch.float64, device="meta"))
    with pytest.raises(ValueError, match="H, B: expected numpy arrays or torch tensors"):
        gs.GramLeastSquares(H.tolist(), B)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("solver", ["bcd", "fista"])
def test_cuda_solve_matches_cpu(dtype, solver):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    H, B, c = _gram(6)
    groups = gs.Groups.from_sizes(SIZES)
    pen = gs.GroupMCP(0.05)
    cpu = gs.solve(gs.GramLeastSquares(*_tensors(H, B, dtype), c), pen, groups, solver=solver, tol=1e-10)
    with time_limit(120):
        gpu = gs.solve(gs.GramLeastSquares(*_tensors(H, B, dtype, "cuda"), c), pen, groups, solver=solver,
                       tol=1e-10)
    nat = gpu.info["coef_native"]
    assert nat.device.type == "cuda" and nat.dtype == dtype and gpu.converged
    np.testing.assert_array_equal(gpu.support, cpu.support)
    rel = 1e-10 if dtype == torch.float64 else 1e-4  # float32: reduction order differs between devices
    assert gpu.objective == pytest.approx(cpu.objective, rel=rel)


@pytest.mark.parametrize("groups", [gs.Groups.block_tiling((P, K), (4, 1)), gs.Groups.block_tiling((P, K), 1),
                                    gs.Groups.from_labels(np.random.default_rng(7).integers(0, 10, P * K))],
                         ids=["tiles", "single_weights", "scattered"])
@pytest.mark.parametrize("solver", ["bcd", "fista"])
def test_torch_partial_row_groups_match_numpy(groups, solver):
    """Groups that take part of a row (tiles of the (p, K) matrix, N:M's single weights) or scattered rows: the
    masked and gathered block updates give the numpy answer."""
    H, B, c = _gram(8)
    lmax = gs.lambda_max(gs.GramLeastSquares(H, B, c), gs.GroupLasso(1.0), groups)
    for pen in (gs.GroupLasso(0.3 * lmax), gs.GroupMCP(0.3 * lmax)):
        a = gs.solve(gs.GramLeastSquares(H, B, c), pen, groups, solver=solver, tol=1e-10)
        with time_limit(60):
            b = gs.solve(gs.GramLeastSquares(*_tensors(H, B), c), pen, groups, solver=solver, tol=1e-10)
        assert a.converged and b.converged
        assert b.objective == pytest.approx(a.objective, rel=1e-8)
        np.testing.assert_array_equal(b.support, a.support)
        assert 0 < a.support.size < groups.n_groups


def test_torch_composite_penalty_bcd_matches_numpy():
    # not separable: BCD's per-group prox with the others' q-sum, the block on the device
    H, B, c = _gram(9)
    groups = gs.Groups.from_sizes(SIZES)
    pen = gs.CompositePenalty(0.02, q=np.log1p)
    # tol 1e-8: the default dq is a central difference (relative step 1e-6), so KKT residuals below ~1e-9 are
    # within its error and which side of them a run ends on is rounding
    a = gs.solve(gs.GramLeastSquares(H, B, c), pen, groups, tol=1e-8)
    with time_limit(60):
        b = gs.solve(gs.GramLeastSquares(*_tensors(H, B), c), pen, groups, tol=1e-8)
    assert a.converged and b.converged
    assert b.objective == pytest.approx(a.objective, rel=1e-8)
    np.testing.assert_array_equal(b.support, a.support)


def test_torch_unpenalized_group_lambda_max_and_solve_match_numpy():
    # a weight-0 group is fitted exactly first (solve_rows on the device), then the slope test runs on the rest
    H, B, c = _gram(10)
    w = np.full(len(SIZES), math.sqrt(3.0))
    w[0] = 0.0
    groups = gs.Groups.from_sizes(SIZES, weights=w)
    for pen in (gs.GroupLasso(1.0), gs.SparseGroupLasso(1.0, l1_ratio=0.3), gs.GroupMCP(1.0)):
        lm = gs.lambda_max(gs.GramLeastSquares(H, B, c), pen, groups)
        assert gs.lambda_max(gs.GramLeastSquares(*_tensors(H, B), c), pen, groups) == pytest.approx(lm, rel=1e-12)
        a = gs.solve(gs.GramLeastSquares(H, B, c), pen.with_lam(lm / 5), groups, tol=1e-10)
        b = gs.solve(gs.GramLeastSquares(*_tensors(H, B), c), pen.with_lam(lm / 5), groups, tol=1e-10)
        assert b.objective == pytest.approx(a.objective, rel=1e-8)
        np.testing.assert_array_equal(b.support, a.support)
        assert 0 in a.support and a.support.size < len(SIZES)
