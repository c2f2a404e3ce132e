"""Solver correctness: against cvxpy, closed forms, and each other; certificates; paths and checkpoints."""
import numpy as np
import pytest
import scipy.sparse as sp

import groupsparse as gs


def _instance(seed, n=60, sizes=(1, 3, 2, 5, 4, 8, 2), kind="ls"):
    rng = np.random.default_rng(seed)
    p = sum(sizes)
    X = rng.standard_normal((n, p))
    beta = np.zeros(p)
    beta[: sizes[0] + sizes[1]] = rng.standard_normal(sizes[0] + sizes[1])
    z = X @ beta
    if kind == "ls":
        y = z + 0.5 * rng.standard_normal(n)
    else:
        y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(float)
    return X, y, gs.Groups.from_sizes(sizes)


def _cvxpy_group_lasso(X, y, groups, lam, kind):
    cp = pytest.importorskip("cvxpy")
    n, p = X.shape
    b = cp.Variable(p)
    if kind == "ls":
        fit = cp.sum_squares(y - X @ b) / (2 * n)
    else:
        z = X @ b
        fit = cp.sum(cp.logistic(z) - cp.multiply(y, z)) / n
    pen = sum(lam * w * cp.norm(b[idx], 2) for idx, w in zip(groups.indices, groups.weights))
    prob = cp.Problem(cp.Minimize(fit + pen))
    prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    return prob.value


@pytest.mark.parametrize("kind", ["ls", "logistic"])
@pytest.mark.parametrize("seed", range(4))
def test_group_lasso_matches_cvxpy(kind, seed):
    X, y, groups = _instance(seed, kind=kind)
    loss = gs.LeastSquares(X, y) if kind == "ls" else gs.Logistic(X, y)
    lam = 0.2 * gs.lambda_max(loss, gs.GroupLasso(1.0), groups)
    sol = gs.solve(loss, gs.GroupLasso(lam), groups, tol=1e-10)
    ref = _cvxpy_group_lasso(X, y, groups, lam, kind)
    assert sol.converged and sol.certificate_kind == "duality_gap"
    assert 0 <= sol.certificate <= 1e-9
    assert sol.objective == pytest.approx(ref, rel=1e-6)
    assert sol.objective >= ref - 1e-7  # cvxpy's optimum is a lower bound up to its tolerance


def test_fista_agrees_with_bcd_and_gap_is_a_bound():
    X, y, groups = _instance(7)
    loss = gs.LeastSquares(X, y)
    lam = 0.1 * gs.lambda_max(loss, gs.GroupLasso(1.0), groups)
    a = gs.solve(loss, gs.GroupLasso(lam), groups, solver="bcd", tol=1e-11)
    b = gs.solve(loss, gs.GroupLasso(lam), groups, solver="fista", tol=1e-11)
    assert a.objective == pytest.approx(b.objective, rel=1e-9)
    np.testing.assert_allclose(a.coef, b.coef, atol=1e-5)
    # a loose solve's gap must bound its suboptimality
    c = gs.solve(loss, gs.GroupLasso(lam), groups, solver="fista", tol=1e-3)
    assert c.objective - a.objective <= c.certificate + 1e-12


def test_lambda_max_gives_zero_and_just_below_gives_argmax_group():
    X, y, groups = _instance(3)
    loss = gs.LeastSquares(X, y)
    lmax = gs.lambda_max(loss, gs.GroupLasso(1.0), groups)
    assert gs.solve(loss, gs.GroupLasso(lmax * 1.0001), groups).support.size == 0
    sol = gs.solve(loss, gs.GroupLasso(lmax * 0.999), groups, tol=1e-12)
    grad0 = groups.norms(X.T @ y / len(y)) / groups.weights
    assert sol.support.tolist() == [int(np.argmax(grad0))]


def _orthonormal_instance(seed, sizes=(2, 3, 1, 4)):
    """Design with X_g^T X_g / n = I within each group (QR of random blocks), groups mutually orthogonal."""
    rng = np.random.default_rng(seed)
    n, p = 40, sum(sizes)
    Q, _ = np.linalg.qr(rng.standard_normal((n, p)))
    X = Q * np.sqrt(n)
    y = X @ rng.standard_normal(p) * 0.7 + rng.standard_normal(n)
    return X, y, gs.Groups.from_sizes(sizes, weights=np.ones(len(sizes)))


@pytest.mark.parametrize("seed", range(3))
def test_orthonormal_design_gives_firm_and_scad_thresholding(seed):
    X, y, groups = _orthonormal_instance(seed)
    z = X.T @ y / len(y)  # the unpenalized solution, group by group
    lam = 0.6
    for pen in [gs.GroupMCP(lam, gamma=3.0), gs.GroupSCAD(lam, gamma=3.7), gs.GroupLasso(lam)]:
        sol = gs.solve(gs.LeastSquares(X, y), pen, groups, tol=1e-13)
        expected = np.zeros_like(z)
        for idx in groups.indices:
            r = np.linalg.norm(z[idx])
            expected[idx] = z[idx] * (pen.prox_scalar(r, 1.0, lam) / r if r > 0 else 0)
        np.testing.assert_allclose(sol.coef, expected, atol=1e-10)


@pytest.mark.parametrize("pen", [gs.GroupMCP(0.08), gs.GroupSCAD(0.08), gs.GroupLogSum(0.05, 0.5),
                                 gs.GroupBridge(0.05, 0.5), gs.ExpMaskPenalty(0.05)], ids=repr)
@pytest.mark.parametrize("kind", ["ls", "logistic"])
def test_nonconvex_kkt_residual_at_exit(pen, kind):
    X, y, groups = _instance(11, kind=kind)
    loss = gs.LeastSquares(X, y) if kind == "ls" else gs.Logistic(X, y)
    sol = gs.solve(loss, pen, groups, tol=1e-9)
    assert sol.certificate_kind == "kkt" and sol.converged
    assert sol.certificate <= 1e-6
    # independent check of the certificate: recompute the residual from the gradient
    grad = loss.gradient(sol.coef)
    assert np.max(pen.subdiff_distance(sol.coef, grad, groups)) <= 1e-6


def test_sparse_X_matches_dense_and_intercept_is_exact():
    X, y, groups = _instance(5)
    Xs = sp.csr_matrix(np.where(np.abs(X) > 0.8, X, 0.0))
    lam = 0.05
    a = gs.solve(gs.LeastSquares(Xs, y + 3, fit_intercept=True), gs.GroupLasso(lam), groups, tol=1e-11)
    b = gs.solve(gs.LeastSquares(Xs.toarray(), y + 3, fit_intercept=True), gs.GroupLasso(lam), groups, tol=1e-11)
    np.testing.assert_allclose(a.coef, b.coef, atol=1e-7)
    # with an intercept, least squares equals the problem on centred data
    Xd = Xs.toarray()
    c = gs.solve(gs.LeastSquares(Xd - Xd.mean(0), y - y.mean()), gs.GroupLasso(lam), groups, tol=1e-11)
    np.testing.assert_allclose(a.coef, c.coef, atol=1e-7)
    assert a.intercept[0] == pytest.approx((y + 3).mean() - Xd.mean(0) @ a.coef, abs=1e-7)


def test_gram_form_equals_data_form():
    X, y, groups = _instance(2)
    lam = 0.05
    for pen in [gs.GroupLasso(lam), gs.GroupMCP(lam)]:
        a = gs.solve(gs.LeastSquares(X, y), pen, groups, tol=1e-12, stop="kkt")
        b = gs.solve(gs.GramLeastSquares.from_data(X, y), pen, groups, tol=1e-12)
        np.testing.assert_allclose(a.coef, b.coef, atol=1e-8)
        assert a.objective == pytest.approx(b.objective, rel=1e-10)


def test_multinomial_group_spanning_classes_matches_cvxpy():
    cp = pytest.importorskip("cvxpy")
    rng = np.random.default_rng(0)
    n, p, K = 80, 6, 3
    X = rng.standard_normal((n, p))
    y = rng.integers(0, K, n)
    groups = gs.Groups.from_sizes([2, 2, 2])  # feature groups, each spans all K classes
    lam = 0.03
    sol = gs.solve(gs.Multinomial(X, y), gs.GroupLasso(lam), groups, tol=1e-11)
    W = cp.Variable((p, K))
    Z = X @ W
    Y = np.eye(K)[y]
    fit = (cp.sum(cp.log_sum_exp(Z, axis=1)) - cp.sum(cp.multiply(Y, Z))) / n
    w = np.sqrt(2 * K)  # expanded groups carry sqrt(K) times the feature-group weight
    pen = sum(lam * w * cp.norm(cp.vec(W[2 * g:2 * g + 2, :], order="C"), 2) for g in range(3))
    prob = cp.Problem(cp.Minimize(fit + pen))
    prob.solve(solver=cp.CLARABEL)
    assert sol.objective == pytest.approx(prob.value, rel=1e-6)


def test_path_warm_starts_and_checkpoint_resume(tmp_path):
    X, y, groups = _instance(9)
    loss = gs.LeastSquares(X, y)
    full = gs.solve_path(loss, gs.GroupMCP(1.0), groups, n_lambdas=8, tol=1e-10)
    assert full[0].support.size == 0 and full[-1].support.size > 0
    assert all(a.lam > b.lam for a, b in zip(full[:-1], full[1:]))
    ck = tmp_path / "path.pkl"
    lams = [s.lam for s in full]
    first = gs.solve_path(loss, gs.GroupMCP(1.0), groups, lambdas=lams[:4], tol=1e-10)
    # simulate a stop after 4 lambdas: write the checkpoint as the path would have, then resume the full grid
    from groupsparse.api import _checkpoint_key, _save_checkpoint
    key = _checkpoint_key(ck, loss, gs.GroupMCP(1.0), groups, np.asarray(lams), solver="auto", tol=1e-10)
    _save_checkpoint(ck, np.asarray(lams), first, key)  # the fingerprint solve_path computes for this call
    resumed = gs.solve_path(loss, gs.GroupMCP(1.0), groups, lambdas=lams, tol=1e-10, checkpoint=str(ck))
    for a, b in zip(full, resumed):
        np.testing.assert_allclose(a.coef, b.coef, atol=1e-12)
    with pytest.raises(ValueError, match="checkpoint"):
        gs.solve_path(loss, gs.GroupMCP(1.0), groups, lambdas=lams[:3], checkpoint=str(ck))


def test_composite_penalty_solves_and_matches_group_lasso_for_identity():
    X, y, groups = _instance(4, sizes=(2, 2, 3))
    g1 = gs.Groups.from_sizes([2, 2, 3], weights=np.ones(3))
    comp = gs.CompositePenalty(0.1, q=lambda x: x, q_inv=lambda s: s, dq=lambda x: 1.0)
    a = gs.solve(gs.LeastSquares(X, y), comp, g1, tol=1e-10)
    b = gs.solve(gs.LeastSquares(X, y), gs.GroupLasso(0.1), g1, tol=1e-12)
    np.testing.assert_allclose(a.coef, b.coef, atol=1e-7)
    sq = gs.CompositePenalty(0.1, q=np.sqrt, q_inv=lambda s: s * s)
    c = gs.solve(gs.LeastSquares(X, y), sq, g1, tol=1e-9)
    assert c.converged and c.certificate <= 1e-6


@pytest.mark.parametrize("make, name", [
    (lambda X, y: gs.LeastSquares(X, y[:-1]), "y"),
    (lambda X, y: gs.LeastSquares(np.where(X > 2, np.nan, X), y), "X"),
    (lambda X, y: gs.LeastSquares(X, np.full_like(y, np.inf)), "y"),
    (lambda X, y: gs.Logistic(X, y * 2 + 1), "y"),
    (lambda X, y: gs.LeastSquares(X, y, ridge=-1), "ridge"),
])
def test_bad_loss_input_is_named(make, name):
    X, y, _ = _instance(0)
    with pytest.raises(ValueError, match=name):
        make(X, y)


def test_bad_groups_and_options_are_named():
    X, y, groups = _instance(0)
    loss = gs.LeastSquares(X, y)
    with pytest.raises(ValueError, match="groups"):
        gs.solve(loss, gs.GroupLasso(0.1), [3, 3])  # covers 6 of 25 features
    with pytest.raises(ValueError, match="overlap"):
        gs.Groups.from_indices([[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="empty"):
        gs.Groups.from_indices([[0, 1], []])
    with pytest.raises(ValueError, match="solver"):
        gs.solve(loss, gs.GroupLasso(0.1), groups, solver="newton")
    with pytest.raises(ValueError, match="tol"):
        gs.solve(loss, gs.GroupLasso(0.1), groups, tol=-1)
    with pytest.raises(ValueError, match="penalty"):
        gs.solve(loss, "lasso", groups)
    with pytest.raises(ValueError, match="block"):
        gs.Groups.block_tiling((10, 12), 4)


def test_multi_output_and_ridge_match_cvxpy():
    cp = pytest.importorskip("cvxpy")
    rng = np.random.default_rng(3)
    n, p, K = 50, 8, 3
    X = rng.standard_normal((n, p))
    Y = X[:, :2] @ rng.standard_normal((2, K)) + 0.3 * rng.standard_normal((n, K))
    groups = gs.Groups.from_sizes([2, 2, 4])  # feature groups, expanded over the K outputs
    lam, ridge = 0.05, 0.1
    sol = gs.solve(gs.LeastSquares(X, Y, ridge=ridge), gs.GroupLasso(lam), groups, tol=1e-12)
    assert sol.certificate_kind == "duality_gap" and sol.certificate <= 1e-10
    W = cp.Variable((p, K))
    w = np.sqrt(np.array([2, 2, 4]) * K)
    bounds = [0, 2, 4, 8]
    pen = sum(lam * w[g] * cp.norm(cp.vec(W[bounds[g]:bounds[g + 1], :], order="C"), 2) for g in range(3))
    obj = cp.sum_squares(Y - X @ W) / (2 * n) + ridge / 2 * cp.sum_squares(W) + pen
    prob = cp.Problem(cp.Minimize(obj))
    prob.solve(solver=cp.CLARABEL)
    assert sol.objective == pytest.approx(prob.value, rel=1e-6)
    # the same problem in Gram form reaches the same coefficients
    g = gs.solve(gs.GramLeastSquares.from_data(X, Y, ridge=ridge), gs.GroupLasso(lam), groups, tol=1e-12)
    np.testing.assert_allclose(g.coef, sol.coef, atol=1e-7)


def test_sparse_group_lasso_matches_cvxpy():
    cp = pytest.importorskip("cvxpy")
    X, y, groups = _instance(8)
    pen = gs.SparseGroupLasso(0.08, l1_ratio=0.3)
    sol = gs.solve(gs.LeastSquares(X, y), pen, groups, tol=1e-11)
    n, p = X.shape
    b = cp.Variable(p)
    reg = pen.lam * (pen.l1_ratio * cp.norm1(b) + (1 - pen.l1_ratio) *
                     sum(w * cp.norm(b[idx], 2) for idx, w in zip(groups.indices, groups.weights)))
    prob = cp.Problem(cp.Minimize(cp.sum_squares(y - X @ b) / (2 * n) + reg))
    prob.solve(solver=cp.CLARABEL)
    assert sol.objective == pytest.approx(prob.value, rel=1e-6)
    assert 0 <= sol.certificate <= 1e-9


def test_gap_safe_screening_never_removes_an_active_group():
    X, y, groups = _instance(12, n=80, sizes=(3,) * 12)
    loss = gs.LeastSquares(X, y)
    lam = 0.3 * gs.lambda_max(loss, gs.GroupLasso(1.0), groups)
    a = gs.solve(loss, gs.GroupLasso(lam), groups, tol=1e-12, screening=True)
    b = gs.solve(loss, gs.GroupLasso(lam), groups, tol=1e-12, screening=False)
    np.testing.assert_allclose(a.coef, b.coef, atol=1e-8)
    assert a.info["screened"] > 0


def test_jit_epoch_kernel_matches_numpy_epoch(monkeypatch):
    """The group-lasso epoch kernel (run here as plain Python, the code numba compiles) and the numpy epoch take
    the same steps; with numba present, whole solves agree with and without it."""
    from groupsparse.problem import Problem
    import importlib
    from groupsparse.solvers import _jit
    bcd_mod = importlib.import_module("groupsparse.solvers.bcd")  # the module (the package exports the function)
    rng = np.random.default_rng(3)
    X = np.asfortranarray(rng.normal(size=(60, 24)))
    y = X[:, :6] @ rng.normal(size=6) + 0.1 * rng.normal(size=60)
    loss, groups = gs.LeastSquares(X, y), gs.Groups.from_sizes([4] * 6)
    prob = Problem(loss, gs.GroupLasso(0.05), groups)
    Xs, bounds, lws, inv_n, _ = bcd_mod._fast_blocks(prob)
    numpy_fast = (Xs, bounds, lws, inv_n, None)
    ws = np.array([0, 2, 3, 5])
    L = prob.lipschitz_of(ws)
    W1, W2 = prob.zeros(), prob.zeros()
    W1[:8, 0] = W2[:8, 0] = rng.normal(size=8)
    s1, s2 = loss.init_state(W1), loss.init_state(W2)
    starts = np.array([a for a, _ in bounds]); stops = np.array([b for _, b in bounds])
    for _ in range(3):
        r1 = bcd_mod._bcd_epoch_fast(prob, numpy_fast, W1, s1, ws, L)
        r2 = _jit._group_lasso_epoch(X, starts, stops, ws, W2[:, 0], s2[:, 0], L, lws, inv_n)
        assert r1 == pytest.approx(r2, rel=1e-12)
    np.testing.assert_allclose(W2, W1, atol=1e-12)
    np.testing.assert_allclose(s2, s1, atol=1e-12)
    if _jit.group_lasso_epoch is None:
        return
    a = gs.solve(loss, gs.GroupLasso(0.05), groups, tol=1e-12)
    monkeypatch.setattr(_jit, "group_lasso_epoch", None)
    b = gs.solve(loss, gs.GroupLasso(0.05), groups, tol=1e-12)
    np.testing.assert_allclose(a.coef, b.coef, atol=1e-9)


def _layout_by_group(groups, K):
    """The per-group definition of Problem's row layout: rows of W (a slice when contiguous) and the mask of the
    group's entries within them (None for whole rows)."""
    rows, sel = [], []
    for idx in groups.indices:
        r = np.unique(idx // K)
        rows.append(slice(int(r[0]), int(r[-1]) + 1) if r[-1] - r[0] + 1 == r.size else r)
        m = np.zeros((r.size, K), dtype=bool)
        m[np.searchsorted(r, idx // K), idx % K] = True
        sel.append(None if m.all() else m)
    return rows, sel


@pytest.mark.parametrize("K", [1, 2, 3])
def test_problem_row_layout_matches_per_group_definition(K):
    from groupsparse.problem import Problem
    rng = np.random.default_rng(K)
    p = 12
    cases = [gs.Groups.block_tiling((p, K), 1), gs.Groups.block_tiling((p, K), (3, 1)),
             gs.Groups.from_sizes([K] * p), gs.Groups.from_indices([np.arange(p * K)])]
    for _ in range(6):  # random labels: gaps between rows, partial rows, mixed sizes
        cases.append(gs.Groups.from_labels(np.unique(rng.integers(0, 9, p * K), return_inverse=True)[1]))
    H = np.eye(p)
    for g in cases:
        prob = Problem(gs.GramLeastSquares(H, np.ones((p, K))), None, g)
        rows, sel = _layout_by_group(g, K)
        assert len(prob.rows) == len(prob.sel) == g.n_groups
        for a, b in zip(rows, prob.rows):
            assert a == b if isinstance(a, slice) else np.array_equal(a, b) and not isinstance(b, slice)
        for a, b in zip(sel, prob.sel):
            assert (a is None and b is None) or np.array_equal(a, b)
        assert prob.whole_rows == all(s is None for s in sel)
        assert prob.rows[-1] == rows[-1] if isinstance(rows[-1], slice) else np.array_equal(prob.rows[-1], rows[-1])


def test_problem_layout_of_many_single_weight_groups_is_lazy():
    # N:M over a (p, K) matrix: p*K one-entry groups; nothing per group is built until a solver asks for it
    from groupsparse.problem import Problem
    p, K = 64, 48
    prob = Problem(gs.GramLeastSquares(np.eye(p), np.ones((p, K))), None, gs.Groups.block_tiling((p, K), 1))
    assert not prob.rows._cache and not prob.sel._cache and not prob.whole_rows
    g = 5 * K + 7  # weight (5, 7)
    assert prob.rows[g] == slice(5, 6) and np.flatnonzero(prob.sel[g][0]).tolist() == [7]


def test_psd_solve_one_rhs_and_singular():
    """psd_solve with a 1-D right-hand side equals the column solve, on both branches (a well-conditioned A takes
    Cholesky, a singular one the eigh pseudo-inverse, which once broadcast a 1-D rhs to an (n, n) matrix)."""
    from groupsparse.losses import psd_solve
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 6))
    for A in (X.T @ X, X[:, :3].T @ X[:, :3] * 0 + np.outer(X[0, :3], X[0, :3])):  # PD, then rank one
        b = A @ rng.standard_normal(A.shape[0])  # in the range, so the min-norm solution solves A x = b
        x1 = psd_solve(np, A, b)
        x2 = psd_solve(np, A, b[:, None])
        assert x1.shape == b.shape
        np.testing.assert_allclose(x1, x2[:, 0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(A @ x1, b, rtol=1e-8, atol=1e-8 * np.abs(b).max())


def test_multinomial_value_grad_match_scipy_logsumexp():
    """The numpy log-sum-exp of Multinomial equals scipy's, also for large logits (no overflow)."""
    from scipy.special import logsumexp
    from groupsparse.losses import _logsumexp_rows
    rng = np.random.default_rng(1)
    Z = rng.standard_normal((50, 4)) * np.array([1.0, 10.0, 300.0, 1000.0])
    np.testing.assert_allclose(_logsumexp_rows(Z), logsumexp(Z, axis=1), rtol=1e-13)
