"""Named regressions of issue 14 (core numerics): each failed (wrong answer, hang or crash) on dc95bd4.

Every call that used to hang runs under ``time_limit``; references are exact (lstsq, cvxpy, closed forms)."""
import itertools

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp
from conftest import time_limit

import groupsparse as gs


def _ls_objective(X, y, fit_intercept=False):
    """min (1/2n)||y - X b (- c)||^2 by lstsq: the exact reference for lam = 0."""
    A = np.column_stack([X, np.ones(len(y))]) if fit_intercept else X
    best = np.inf
    for driver in ("gelsd", "gelsy"):  # at cond 1e12 gelsd's default cutoff drops a direction gelsy keeps
        r = A @ scipy.linalg.lstsq(A, y, lapack_driver=driver)[0] - y
        best = min(best, 0.5 * float(r @ r) / len(y))
    return best


def _effective_cond(X):
    """Condition number on X's numerical range (duplicated or zero columns are exact, not ill-conditioned)."""
    s = np.linalg.svd(X, compute_uv=False)
    s = s[s > max(X.shape) * np.finfo(float).eps * s[0]]
    return s[0] / s[-1] if s.size else 1.0


def _data(seed=0, n=40, p=12):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    y = X[:, :3] @ np.array([1.0, -2.0, 1.5]) + 0.1 * rng.standard_normal(n)
    return X, y


def _ill_conditioned(seed=0, n=40, p=12, cond=1e12):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((n, p)))
    V, _ = np.linalg.qr(rng.standard_normal((p, p)))
    X = (U * np.geomspace(1.0, 1.0 / cond, p)) @ V.T
    y = X @ rng.standard_normal(p) + 0.1 * rng.standard_normal(n)
    return X, y


# ------------------------------------------------------------------------------------------- 1. step-size cache
def test_restrict_rows_does_not_reuse_the_parents_lipschitz_cache():
    X, y = _data()
    X[:, 0] *= 0.05  # the parent's block (0, 1) has a far smaller Lipschitz constant than column 4 alone
    loss = gs.LeastSquares(X, y)
    gs.solve(loss, gs.GroupLasso(0.05), gs.Groups.from_sizes([1] * 12))  # fills the parent's block cache
    # (key (0, 1) among others)
    sub = loss.restrict_rows([4])
    with time_limit(20):
        got = gs.solve(sub, gs.GroupLasso(0.001), [1])
    ref = gs.solve(gs.LeastSquares(X[:, [4]], y), gs.GroupLasso(0.001), [1])
    assert got.converged
    assert got.objective == pytest.approx(ref.objective, rel=1e-9)
    np.testing.assert_allclose(got.coef, ref.coef, rtol=1e-6)


# ------------------------------------------------------------------------------------------------- 3. lam = 0
def _lam0_cases():
    X, y = _data()
    Xd = X.copy()
    Xd[:, 5] = Xd[:, 4]
    Xz = X.copy()
    Xz[:, 7] = 0.0
    Xc, yc = _ill_conditioned()
    return {
        "duplicated_columns": (Xd, y, [3, 3, 3, 3]),
        "zero_column": (Xz, y, [3, 3, 3, 3]),
        "constant_y": (X, np.full(len(y), 2.5), [3, 3, 3, 3]),
        "X_times_1e8": (X * 1e8, y, [3, 3, 3, 3]),
        "X_times_1e-8": (X * 1e-8, y, [3, 3, 3, 3]),
        "size_1_groups": (X, y, gs.Groups.from_sizes([1] * 12)),
        "one_group": (X, y, [12]),
        "cond_1e12": (Xc, yc, [3, 3, 3, 3]),
    }


@pytest.mark.parametrize("case", sorted(_lam0_cases()))
@pytest.mark.parametrize("solver", ["bcd", "fista"])
def test_lam_zero_least_squares_terminates_at_the_lstsq_minimum(case, solver):
    X, y, sizes = _lam0_cases()[case]
    for fit_intercept in (False, True):
        loss = gs.LeastSquares(X, y, fit_intercept=fit_intercept)
        with time_limit(20):
            sol = gs.solve(loss, gs.GroupLasso(0.0), sizes, solver=solver)
        ref = _ls_objective(X, y, fit_intercept)
        assert sol.converged
        # the least-squares minimum to rounding: the residual of any backward-stable solver is determined to
        # eps cond(X) ||y|| only, so the objective ||r||^2 / 2n to about eps cond(X) ||r|| ||y|| / n (plus the
        # cancellation in ||y||^2 when y is large and constant)
        n = len(y)
        slack = 10 * np.finfo(float).eps * _effective_cond(X) * np.sqrt(2 * ref * n) * np.linalg.norm(y) / n
        assert abs(sol.objective - ref) <= slack + 1e-10 * (ref + 0.5 * float(y @ y) / n)


@pytest.mark.parametrize("pen", [gs.GroupMCP(0.0), gs.GroupSCAD(0.0), gs.GroupLogSum(0.0)])
def test_lam_zero_nonconvex_with_tiny_X_is_the_least_squares_minimum(pen):
    X, y = _data()
    X = X * 1e-8
    with time_limit(20):
        sol = gs.solve(gs.LeastSquares(X, y), pen, [3, 3, 3, 3])
    ref = _ls_objective(X, y)
    assert sol.converged and sol.objective == pytest.approx(ref, rel=1e-9)


def test_weight_zero_groups_only_is_the_least_squares_minimum():
    X, y = _ill_conditioned(cond=1e8)
    groups = gs.Groups.from_sizes([4, 4, 4], weights=[0.0, 0.0, 0.0])
    with time_limit(20):
        sol = gs.solve(gs.LeastSquares(X, y), gs.GroupLasso(1.0), groups)
    assert sol.converged and sol.objective == pytest.approx(_ls_objective(X, y), rel=1e-9)


def test_lam_zero_logistic_terminates_with_a_small_kkt_residual():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((80, 6))
    y = (rng.random(80) < 1 / (1 + np.exp(-X[:, 0]))).astype(float)
    with time_limit(30):
        sol = gs.solve(gs.Logistic(X, y, fit_intercept=True), gs.GroupLasso(0.0), [2, 2, 2])
    assert sol.converged and sol.certificate_kind == "kkt"
    g = gs.Logistic(X, y, fit_intercept=True).gradient(np.append(sol.coef, sol.intercept))
    assert np.max(np.abs(g)) <= 1e-7


def test_regressor_alpha_zero_and_a_cv_grid_with_zero_terminate():
    X, y = _data()
    with time_limit(30):
        m = gs.GroupSparseRegressor(groups=[3, 3, 3, 3], alpha=0.0).fit(X * 1e8, y * 1e8)
        cv = gs.GroupSparseRegressorCV(groups=[3, 3, 3, 3], lambdas=[0.1, 0.01, 0.0], cv=3).fit(X, y)
    pred = m.predict(X * 1e8)
    ref = _ls_objective(X * 1e8, y * 1e8, fit_intercept=True)
    assert 0.5 * np.mean((pred - y * 1e8) ** 2) == pytest.approx(ref, rel=1e-8)
    assert np.all(np.isfinite(cv.cv_scores_))


# ------------------------------------------------------------------------------------- 2. scale-invariant stops
def _rescaled(pen_factory, a, c):
    """Same problem with X -> a X, y -> c y; lam (and log-sum's eps) mapped so that beta' = (c / a) beta."""
    X, y = _data(1)
    base = gs.solve(gs.LeastSquares(X, y), pen_factory(1.0, 1.0), [3, 3, 3, 3], tol=1e-12)
    scaled = gs.solve(gs.LeastSquares(a * X, c * y), pen_factory(a, c), [3, 3, 3, 3], tol=1e-12)
    return base, scaled


PENALTIES = {
    # lam' for which penalty(beta') = c^2 penalty(beta) when beta' = (c/a) beta (the loss scales by c^2)
    "group_lasso": lambda a, c: gs.GroupLasso(0.3 * a * c),
    "sparse_group_lasso": lambda a, c: gs.SparseGroupLasso(0.3 * a * c, 0.5),
}
NONCONVEX = {  # y scaled only (a = 1): their shape parameters are in units of beta
    "mcp": lambda a, c: gs.GroupMCP(0.3 * c, 3.0),
    "scad": lambda a, c: gs.GroupSCAD(0.3 * c, 3.7),
    "log_sum": lambda a, c: gs.GroupLogSum(0.1 * c * c, 0.5 * c),
    "bridge": lambda a, c: gs.GroupBridge(0.1 * c ** 1.5, 0.5),
}


@pytest.mark.parametrize("name", sorted(PENALTIES) + sorted(NONCONVEX))
@pytest.mark.parametrize("c", [1e-8, 1e-4, 1e4, 1e8])
def test_rescaled_data_give_rescaled_coefficients(name, c):
    pens = dict(PENALTIES, **NONCONVEX)
    scales = [(1.0, c)] + ([(c, c), (c, 1.0)] if name in PENALTIES else [])
    for a, cc in scales:
        with time_limit(20):
            base, scaled = _rescaled(pens[name], a, cc)
        assert base.converged and scaled.converged
        np.testing.assert_array_equal(base.support, scaled.support)
        np.testing.assert_allclose(scaled.coef * (a / cc), base.coef, rtol=0, atol=1e-6 * np.abs(base.coef).max())


# -------------------------------------------------------------------------------------------- 4. bounded cost
def test_limits_return_unconverged_solutions_with_their_certificate():
    X, y = _ill_conditioned(cond=1e6)
    loss = gs.LeastSquares(X, y)
    lam = 1e-6 * gs.lambda_max(loss, gs.GroupLasso(1.0), [3, 3, 3, 3])
    with time_limit(20):
        a = gs.solve(loss, gs.GroupLasso(lam), [3, 3, 3, 3], max_iter=2, tol=1e-14)
        b = gs.solve(loss, gs.GroupMCP(lam), [3, 3, 3, 3], max_time=0.01, tol=1e-14)
        c = gs.solve(loss, gs.GroupLasso(lam), [3, 3, 3, 3], solver="fista", max_iter=5, tol=1e-14)
        d = gs.solve(loss, gs.GroupLasso(lam), [3, 3, 3, 3], max_epochs=3, tol=1e-14)
    for s in (a, b, c, d):
        assert not s.converged and np.isfinite(s.certificate) and s.certificate > 0
    assert a.n_iter == 2 and c.n_iter == 5 and d.info["epochs"] <= 3


def test_solve_path_max_time_bounds_the_whole_path():
    import time
    X, y = _ill_conditioned(n=200, p=120, cond=1e8)
    loss = gs.LeastSquares(X, y)
    t = time.perf_counter()
    with time_limit(30):
        sols = gs.solve_path(loss, gs.GroupMCP(1.0), [3] * 40, n_lambdas=30, lambda_min_ratio=1e-6, tol=1e-14,
                             max_time=0.2)
    assert time.perf_counter() - t < 5.0  # 0.2 s of solving plus one certificate per lambda left
    assert len(sols) == 30 and not sols[-1].converged and np.isfinite(sols[-1].certificate)


def test_mcp_on_ill_conditioned_data_and_scad_with_infinite_gamma_terminate():
    X, y = _ill_conditioned()
    loss = gs.LeastSquares(X, y)
    lam = 0.2 * gs.lambda_max(loss, gs.GroupMCP(1.0), [3, 3, 3, 3])
    with time_limit(60):
        sol = gs.solve(loss, gs.GroupMCP(lam), [3, 3, 3, 3])
    assert np.isfinite(sol.objective) and np.isfinite(sol.certificate)
    with time_limit(30):
        try:
            scad = gs.solve(gs.LeastSquares(*_data()), gs.GroupSCAD(0.1, gamma=np.inf), [3, 3, 3, 3])
        except ValueError as e:  # refusing gamma = inf is as good as solving it
            assert "gamma" in str(e)
        else:  # gamma = inf is the group lasso
            ref = gs.solve(gs.LeastSquares(*_data()), gs.GroupLasso(0.1), [3, 3, 3, 3], tol=1e-12)
            np.testing.assert_allclose(scad.coef, ref.coef, atol=1e-6)


# ----------------------------------------------------------------------------------------- 5. unpenalized groups
def _free_group_problem():
    X, y = _data(2, n=50, p=9)
    groups = gs.Groups.from_sizes([3, 3, 3], weights=[0.0, 1.0, 2.0])
    return X, y, groups


def test_weight_zero_group_matches_cvxpy_with_a_nonnegative_gap():
    cp = pytest.importorskip("cvxpy")
    X, y, groups = _free_group_problem()
    loss = gs.LeastSquares(X, y)
    lam = 0.3 * gs.lambda_max(loss, gs.GroupLasso(1.0), groups)
    with time_limit(20):
        sol = gs.solve(loss, gs.GroupLasso(lam), groups, tol=1e-10)
    b = cp.Variable(9)
    obj = cp.sum_squares(y - X @ b) / (2 * 50) + lam * sum(w * cp.norm(b[i]) for i, w in
                                                           zip(groups.indices, groups.weights) if w > 0)
    ref = cp.Problem(cp.Minimize(obj))
    ref.solve(solver=cp.CLARABEL, tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11)
    assert sol.converged and sol.certificate_kind == "duality_gap" and sol.certificate >= 0
    assert sol.objective == pytest.approx(ref.value, rel=1e-7)
    assert sol.objective - ref.value <= sol.certificate + 1e-9 * ref.value  # the gap bounds suboptimality


def test_lambda_max_fits_weight_zero_groups_first():
    X, y, groups = _free_group_problem()
    loss = gs.LeastSquares(X, y)
    lmax = gs.lambda_max(loss, gs.GroupLasso(1.0), groups)
    at = gs.solve(loss, gs.GroupLasso(1.0001 * lmax), groups, tol=1e-12)
    below = gs.solve(loss, gs.GroupLasso(0.99 * lmax), groups, tol=1e-12)
    np.testing.assert_array_equal(at.coef[3:], 0.0)
    np.testing.assert_allclose(at.coef[:3], scipy.linalg.lstsq(X[:, :3], y)[0], rtol=1e-6)
    assert np.any(below.coef[3:] != 0)  # lambda_max is the smallest such lambda


def test_path_gaps_are_never_negative():
    for seed in range(6):  # seed 1 printed a first gap of -4.4e-16 on dc95bd4
        rng = np.random.default_rng(seed)
        n, p = int(rng.integers(5, 60)), int(rng.integers(2, 12))
        X = rng.standard_normal((n, p)) * 10 ** rng.uniform(-3, 3)
        y = rng.standard_normal(n) * 10 ** rng.uniform(-3, 3) + rng.uniform(-5, 5)
        for fit_intercept in (False, True):
            sols = gs.solve_path(gs.LeastSquares(X, y, fit_intercept=fit_intercept), gs.GroupLasso(1.0),
                                 gs.Groups.from_sizes([1] * p), n_lambdas=3)
            assert all(s.certificate >= 0 for s in sols)


# ------------------------------------------------------------------------------- 6. nonconvex fixed-point stop
def test_mcp_size_one_groups_stop_at_a_fixed_point_of_the_exact_coordinate_update():
    # orthogonal columns with L_j = 0.04, gamma = 3: the step 1/L_j = 25 exceeds gamma, MCP's prox is a hard
    # threshold at lam sqrt(gamma / L_j), and each |grad_j(0)| = L_j |b_j| lies between lam sqrt(gamma L_j) and
    # lam: beta = 0 passes the subdifferential test (dc95bd4 stopped there) but one exact coordinate step lowers
    # the objective
    rng = np.random.default_rng(4)
    n, p, L, gamma, lam = 50, 6, 0.04, 3.0, 1.0
    Q, _ = np.linalg.qr(rng.standard_normal((n, p)))
    X = Q * np.sqrt(n * L)
    b = np.array([15.0, -12.0, 20.0, 0.0, 0.0, 0.0])
    y = X @ b + 0.01 * rng.standard_normal(n)
    loss, ones, pen = gs.LeastSquares(X, y), gs.Groups.from_sizes([1] * p), gs.GroupMCP(lam, gamma)
    with time_limit(20):
        sol = gs.solve(loss, pen, ones)
    assert sol.converged
    f = lambda v: loss.value(v) + pen.value(np.abs(v), np.ones(p))
    for j in range(p):  # exact minimisation over coordinate j (least squares is quadratic in b_j: prox, step 1/L_j)
        gj = X[:, j] @ (X @ sol.coef - y) / n
        z = sol.coef[j] - gj / L
        trial = sol.coef.copy()
        trial[j] = np.sign(z) * pen.prox_scalar(abs(z), 1.0 / L, lam)
        assert f(trial) >= f(sol.coef) - 1e-9 * abs(f(sol.coef))
    np.testing.assert_array_equal(sol.support, [0, 1, 2])


# ----------------------------------------------------------------------------------------- 7. exact refits
@pytest.mark.parametrize("method", ["splicing", "omp", "local_search"])
def test_select_refit_is_the_least_squares_optimum_at_cond_1e12(method):
    X, y = _ill_conditioned(n=60, p=12)
    sol = gs.select(gs.LeastSquares(X, y), [3, 3, 3, 3], 2, method=method)
    cols = np.concatenate([np.arange(3 * g, 3 * g + 3) for g in sol.support])
    assert sol.objective == pytest.approx(_ls_objective(X[:, cols], y), rel=1e-10)


# ------------------------------------------------------------------------------- 8. integer and sparse inputs
@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint16])
def test_lambda_max_is_the_same_for_integer_dense_csr_and_csc(dtype):
    rng = np.random.default_rng(5)
    X = (rng.integers(0, 50, size=(30, 6)) * (rng.random((30, 6)) < 0.5)).astype(dtype)
    y = rng.standard_normal(30)
    ref = gs.lambda_max(gs.LeastSquares(X.astype(float), y), gs.GroupLasso(1.0), [2, 2, 2])
    for A in (X, sp.csr_matrix(X), sp.csc_matrix(X), sp.csr_array(X)):
        got = gs.lambda_max(gs.LeastSquares(A, y), gs.GroupLasso(1.0), [2, 2, 2])
        assert got == pytest.approx(ref, rel=1e-12)


# ---------------------------------------------------------------------------------------- 9. sparse stays sparse
@pytest.mark.parametrize("method", ["splicing", "omp"])
def test_select_keeps_a_sparse_X_sparse(method):
    import tracemalloc
    rng = np.random.default_rng(6)
    n, p = 4000, 4000
    X = sp.random(n, p, density=5e-3, format="csr", random_state=7)  # dense copy: 128 MB
    y = X[:, :10] @ rng.standard_normal(10) + 0.01 * rng.standard_normal(n)
    loss = gs.LeastSquares(X, y)
    tracemalloc.start()
    try:
        with time_limit(60):
            sol = gs.select(loss, [4] * (p // 4), 3, method=method)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40e6, f"peak {peak / 1e6:.0f} MB: X was densified"
    assert sol.support.size == 3


# ---------------------------------------------------------------------------------------------- 10. crashes
def test_fista_check_every_zero_is_a_named_error():
    X, y = _data()
    with pytest.raises(ValueError, match="check_every"):
        gs.solve(gs.LeastSquares(X, y), gs.GroupLasso(0.1), [3, 3, 3, 3], solver="fista", check_every=0)


@pytest.mark.parametrize("init", [[99], [-1]])
@pytest.mark.parametrize("method", ["splicing", "omp", "iht", "ompr"])
def test_select_init_out_of_range_is_a_named_error(init, method):
    X, y = _data()
    with pytest.raises(ValueError, match="init"):
        gs.select(gs.LeastSquares(X, y), [3, 3, 3, 3], 2, method=method, init=init)


def test_unknown_stop_rule_is_a_named_error():
    X, y = _data()
    with pytest.raises(ValueError, match="stop"):
        gs.solve(gs.LeastSquares(X, y), gs.GroupLasso(0.1), [3, 3, 3, 3], stop="foo")


@pytest.mark.parametrize("shape,fit_intercept", [((1, 6), True), ((1, 6), False), ((20, 1), False), ((1, 1), False)])
def test_fista_on_tiny_sparse_X(shape, fit_intercept):
    rng = np.random.default_rng(8)
    X = rng.standard_normal(shape)
    y = rng.standard_normal(shape[0])
    sizes = gs.Groups.from_sizes([1] * shape[1])
    dense = gs.solve(gs.LeastSquares(X, y, fit_intercept=fit_intercept), gs.GroupLasso(0.01), sizes, tol=1e-12)
    with time_limit(20):
        got = gs.solve(gs.LeastSquares(sp.csr_matrix(X), y, fit_intercept=fit_intercept), gs.GroupLasso(0.01), sizes,
                       solver="fista", tol=1e-12)
    assert got.objective == pytest.approx(dense.objective, rel=1e-8, abs=1e-12)


# ---------------------------------------------------------------------------------------- 11. Gram form input
@pytest.mark.parametrize("bad,arg", [("asymmetric", "H"), ("indefinite", "H"), ("nan_c", "c"), ("nan_H", "H"),
                                     ("inf_B", "B")])
def test_gram_least_squares_refuses_bad_input(bad, arg):
    X, y = _data()
    H, B, c = X.T @ X / 40, X.T @ y / 40, float(y @ y) / 80
    if bad == "asymmetric":
        H = H + np.triu(np.full_like(H, 0.1), 1)
    elif bad == "indefinite":
        H = H - 0.5 * np.max(np.linalg.eigvalsh(H)) * np.eye(12)
    elif bad == "nan_c":
        c = float("nan")
    elif bad == "nan_H":
        H = H.copy()
        H[0, 0] = np.nan
    else:
        B = B.copy()
        B[1] = np.inf
    with pytest.raises(ValueError, match=f"^{arg}:"):
        gs.GramLeastSquares(H, B, c)


def test_gram_accepts_a_singular_gram_from_few_samples():
    rng = np.random.default_rng(9)
    X = rng.standard_normal((5, 12))  # rank 5 < 12: eigenvalues 0 up to rounding
    loss = gs.GramLeastSquares.from_data(X, rng.standard_normal(5))
    assert loss.n_features == 12


# ------------------------------------------------------------------------------------------ 4. select max_time
@pytest.mark.parametrize("method", ["splicing", "local_search", "omp", "ompr", "iht", "exact"])
def test_select_max_time_returns_the_best_so_far_unconverged(method):
    import time
    rng = np.random.default_rng(10)
    X = rng.standard_normal((300, 400))
    y = X[:, :40] @ rng.standard_normal(40) + rng.standard_normal(300)
    loss = gs.LeastSquares(X, y)
    t = time.perf_counter()
    with time_limit(30):
        sol = gs.select(loss, [2] * 200, 30, method=method, max_time=1e-3)
    assert time.perf_counter() - t < 10.0
    assert not sol.converged and sol.support.size <= 30
    # still an exact refit on whatever support it holds
    cols = np.concatenate([np.arange(2 * g, 2 * g + 2) for g in sol.support]) if sol.support.size else []
    assert sol.objective == pytest.approx(_ls_objective(X[:, cols], y) if len(cols) else 0.5 * y @ y / 300,
                                          rel=1e-9)


def test_lam_zero_with_exactly_duplicated_columns_and_tiny_y_is_the_lstsq_minimum():
    # found by tests/test_fuzz_core.py (deep): gelsy's default cut-off kept a 2e-16 singular value
    X = np.array([[-0.60965855, -1.27152018, -0.60965855], [-2.08432817, -0.16358852, -2.08432817],
                  [-0.19677778, 1.81862837, -0.19677778], [1.28434541, -0.26426237, 1.28434541],
                  [0.72382777, -0.24889357, 0.72382777]])
    y = np.array([-7.67303708e-09, 1.94084037e-09, 7.45037355e-09, -3.83023903e-09, -4.47976081e-09])
    sol = gs.solve(gs.LeastSquares(X, y), gs.GroupLasso(0.0), [2, 1])
    ref = _ls_objective(X, y)
    assert sol.objective <= ref * (1 + 1e-9)
    assert np.max(np.abs(sol.coef)) < 1e-6  # the min-norm solution, not +-2.7e6


@pytest.mark.parametrize("method", ["local_search", "exact"])
def test_swap_polishing_on_a_rank_deficient_support_does_not_crash(method):
    # found by tests/test_fuzz_core.py: n = 1 sample, a 2-group support -> H_AA singular (LinAlgError)
    X = np.array([[1.25730221e-09, -1.32104863e-09, 6.40422650e-09]])
    y = np.array([7.06727321e-09])
    ones = gs.Groups.from_sizes([1, 1, 1])
    with time_limit(20):
        sol = gs.select(gs.LeastSquares(X, y), ones, 2, method=method)
    assert sol.objective <= 1e-12 * float(y @ y)  # one sample: any nonzero column fits it exactly


@pytest.mark.parametrize("method", ["exact", "local_search", "splicing", "ompr"])
def test_select_improvements_are_relative_to_the_objective_scale(method):
    # found by tests/test_fuzz_core.py (deep): 'exact' pruned with an absolute 1e-12 at objectives of 4e-18 and
    # returned a support 3.7% worse than brute force, certified optimal
    rng = np.random.default_rng(11)
    X = rng.standard_normal((30, 8))
    y = X @ rng.standard_normal(8) + 0.5 * rng.standard_normal(30)
    ones = gs.Groups.from_sizes([1] * 8)
    for c in (1.0, 1e-9):
        sol = gs.select(gs.LeastSquares(X, c * y), ones, 4, method=method)
        base = gs.select(gs.LeastSquares(X, y), ones, 4, method=method)
        np.testing.assert_array_equal(sol.support, base.support)
        assert sol.objective == pytest.approx(c * c * base.objective, rel=1e-9)
    if method == "exact":
        best = min(_ls_objective(X[:, list(S)], 1e-9 * y) for S in itertools.combinations(range(8), 4))
        assert gs.select(gs.LeastSquares(X, 1e-9 * y), ones, 4, method="exact").objective <= best * (1 + 1e-9)


# -- found by the theory checks (proofs_checks.penalty_consistency) -------------------------------------------------

@pytest.mark.parametrize("l1_ratio", [0.0, 1e-30, 1e-9, 0.3, 1.0])
def test_sparse_group_lasso_lambda_max_at_small_l1_ratio(l1_ratio):
    """The bisection started from max|grad| / max(l1_ratio, 1e-300): ~1e269 at l1_ratio = 0 instead of the group
    lasso's value. lambda_max is the threshold: zeros at it, a nonzero just below."""
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = np.array([1.0, 2.0, 0.0])
    loss = gs.LeastSquares(X, y)
    lm = gs.lambda_max(loss, gs.SparseGroupLasso(1.0, l1_ratio=l1_ratio), [2])
    if l1_ratio < 1e-6:
        np.testing.assert_allclose(lm, gs.lambda_max(loss, gs.GroupLasso(1.0), [2]), rtol=1e-6)
    assert np.all(gs.solve(loss, gs.SparseGroupLasso(lm, l1_ratio=l1_ratio), [2]).coef == 0)
    assert np.any(gs.solve(loss, gs.SparseGroupLasso(0.99 * lm, l1_ratio=l1_ratio), [2]).coef != 0)


def test_composite_subdiff_distance_at_zero_uses_radius_lam():
    """At beta = 0 the composite lam q^-1(sum q(||beta_g||)) is lam ||beta_g|| along each group alone, so the
    distance of -grad to the subdifferential is max(||grad_g|| - lam, 0); it used lam q'(0) (inf for sqrt): 0."""
    pen = gs.CompositePenalty(1.0, q=np.sqrt)
    groups = gs.Groups.from_sizes([2, 1])
    d = pen.subdiff_distance(np.zeros(3), np.array([3.0, 0.0, 0.5]), groups)
    np.testing.assert_allclose(d, [2.0, 0.0])
