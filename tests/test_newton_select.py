"""select(method='newton'): binary logistic selection on the IRLS (Newton) model.  The model's swap predictions are
the exact minima of the quadratic model, the weighted sacrifices are abess's formulas on the weighted Gram, the
result is a local optimum under single swaps, it matches enumeration where the problem is easy, and bad input is
named."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit

import groupsparse as gs
from groupsparse.selection import BudgetProblem, select
from groupsparse.selection.newton import _inv_blocks, _model_swaps, _sacrifices, _Weighted

from conftest import examples_scale, time_limit


def _instance(seed, n, sizes, n_active, scale=2.0, ridge=0.0, intercept=True):
    rng = np.random.default_rng(seed)
    sizes = [int(s) for s in sizes]
    p = sum(sizes)
    X = rng.standard_normal((n, p))
    X[:, 1:] += 0.5 * X[:, :-1]  # correlated neighbours across groups
    starts = np.concatenate([[0], np.cumsum(sizes)])
    beta = np.zeros(p)
    for g in rng.choice(len(sizes), min(n_active, len(sizes)), replace=False):
        beta[starts[g]:starts[g + 1]] = rng.standard_normal(sizes[g])
    y = (rng.random(n) < expit(scale * (X @ beta) + 0.3)).astype(float)
    return X, gs.Logistic(X, y, ridge=ridge, fit_intercept=intercept), gs.Groups.from_sizes(sizes)


def _rows(bp, S):
    return np.concatenate([bp.groups.indices[g] for g in S] + [bp.fixed_rows]).astype(np.int64)


@pytest.mark.parametrize("ridge,intercept", [(0.0, True), (0.05, True), (0.05, False)])
def test_weighted_sacrifices_and_model_swaps_are_the_model_exactly(ridge, intercept):
    X, loss, groups = _instance(3, 60, [2, 1, 3, 2, 2, 1, 3], 3, ridge=ridge, intercept=intercept)
    bp = BudgetProblem(loss, groups)
    S = np.array([0, 2, 4])
    W, _ = bp.refit(S)
    Wt = _Weighted(bp)
    w = Wt.weights(W)
    # IRLS weights p (1 - p) / n at the refit, from the user's coefficients and intercept
    z = X @ W[: bp.p, 0] + (W[bp.p, 0] if intercept else 0.0)
    np.testing.assert_allclose(w[:, 0, 0], expit(z) * (1 - expit(z)) / X.shape[0], rtol=1e-12)
    grad = bp.grad(W)
    Hb = Wt.blocks(w)
    bwd, fwd = _sacrifices(Wt, Hb, _inv_blocks(Hb), W, -grad)
    # the full weighted Hessian of the loss (intercept column last, unpenalised)
    Xf = np.column_stack([X, np.ones(X.shape[0])]) if intercept else X
    H = Xf.T @ (Xf * w[:, 0, 0][:, None])
    H[np.arange(bp.p), np.arange(bp.p)] += ridge
    for g in range(bp.G):
        ig = groups.indices[g]
        Hg = H[np.ix_(ig, ig)]
        assert bwd[g] == pytest.approx(0.5 * W[ig, 0] @ Hg @ W[ig, 0], rel=1e-9, abs=1e-15)
        assert fwd[g] == pytest.approx(0.5 * grad[ig, 0] @ np.linalg.solve(Hg, grad[ig, 0]), rel=1e-7)
    # the model swap of j out, c in: the minimum of the quadratic model over the new support minus over S
    cand = np.setdiff1d(np.arange(bp.G), S)
    delta, start = _model_swaps(Wt, S, W, grad, w, Hb, cand)
    q = H @ W[:, 0] - grad[:, 0]  # the model is 1/2 b^T H b - q^T b + const

    def model_min(T):
        r = _rows(bp, T)
        return -0.5 * q[r] @ np.linalg.solve(H[np.ix_(r, r)], q[r])

    base = model_min(S)
    scale = abs(base) + 1.0
    for a, j in enumerate(S):
        for b, c in enumerate(cand):
            T = np.union1d(np.setdiff1d(S, [j]), [c])
            assert delta[a, b] == pytest.approx(model_min(T) - base, abs=1e-9 * scale)


@settings(max_examples=int(10 * examples_scale()))
@given(seed=st.integers(0, 10_000), G=st.integers(4, 8), smax=st.integers(1, 3), k=st.integers(1, 3),
       ridge=st.sampled_from([0.0, 0.01]), intercept=st.booleans())
def test_newton_is_a_single_swap_local_optimum(seed, G, smax, k, ridge, intercept):
    """With every swap of the neighbourhood refit (n_candidates = G - k, n_verify >= k (G - k)) the answer has no
    improving single swap (brute force over all of them)."""
    k = min(k, G - 1)
    sizes = np.random.default_rng(seed).integers(1, smax + 1, size=G)
    _, loss, groups = _instance(seed, 50, sizes, 3, ridge=ridge, intercept=intercept)
    with time_limit(60):
        sol = select(loss, groups, k, method="newton", n_candidates=G - k, n_verify=k * (G - k))
    S = np.asarray(sol.support)
    assert S.size == k
    bp = BudgetProblem(loss, groups)
    assert sol.objective == pytest.approx(bp.refit(S)[1], rel=1e-10)  # the reported value is the exact refit
    for j in S:
        for c in np.setdiff1d(np.arange(G), S):
            v = bp.refit(np.union1d(np.setdiff1d(S, [j]), [c]))[1]
            # acceptance needs a relative drop of 1e-12; Newton refits agree to ~1e-13 from different starts
            assert v >= sol.objective * (1 - 1e-9)


@pytest.mark.parametrize("case", [("binary", s) for s in range(5)] + [("multinomial", s) for s in range(4)])
def test_newton_matches_enumeration_on_easy_instances(case):
    """Strong signal, n >> p: the best 3 groups is found (the minimum over all supports): binary, 3 of 10 groups;
    multinomial with 3 classes, 3 of 9 feature groups."""
    kind, seed = case
    if kind == "binary":
        _, loss, groups = _instance(seed, 400, [2] * 10, 3, scale=3.0)
    else:
        _, loss, groups = _multinomial_instance(seed, 300, [2] * 9, 3, K=3, scale=2.5)
    G = groups.n_groups
    bp = BudgetProblem(loss, groups)
    best = min(bp.refit(np.array(T))[1] for T in itertools.combinations(range(G), 3))
    with time_limit(60):
        sol = select(loss, groups, 3, method="newton")
    assert sol.objective <= best * (1 + 1e-9)


def test_newton_stops_at_max_time():
    _, loss, groups = _instance(0, 200, [3] * 40, 5)
    with time_limit(30):
        sol = select(loss, groups, 5, method="newton", max_time=1e-9)
    assert len(sol.support) == 5 and not sol.converged


def test_newton_bad_input_is_named():
    X, loss, groups = _instance(0, 40, [2] * 5, 2)
    with pytest.raises(ValueError, match="n_verify"):
        select(loss, groups, 2, method="newton", n_verify=0)
    with pytest.raises(ValueError, match="n_verify"):
        select(loss, groups, 2, method="newton", n_verify=2.5)
    y = np.arange(40) % 3
    with pytest.raises(ValueError, match="loss: method='newton'"):
        select(gs.LeastSquares(X, X[:, 0]), groups, 2, method="newton")


def test_newton_sparse_X_same_answer():
    import scipy.sparse as sp
    X, loss, groups = _instance(4, 80, [2, 3, 1, 2, 2, 3, 2, 1, 2, 2], 3)
    X = np.where(np.abs(X) < 0.5, 0.0, X)  # a real sparsity pattern
    y = loss.Y[:, 0]
    dense = select(gs.Logistic(X, y, fit_intercept=True), groups, 3, method="newton")
    sparse = select(gs.Logistic(sp.csr_matrix(X), y, fit_intercept=True), groups, 3, method="newton")
    np.testing.assert_array_equal(dense.support, sparse.support)
    assert sparse.objective == pytest.approx(dense.objective, rel=1e-9)


def test_multinomial_refit_with_intercept_is_stationary():
    """The multinomial refit with an intercept (whose K class intercepts are a singular direction of the Hessian:
    softmax is invariant to a common shift) reaches the minimum on its support: the gradient on the support's
    coefficients and the intercept vanishes, and no random perturbation on the support lowers the loss."""
    rng = np.random.default_rng(0)
    n, K = 120, 3
    X = rng.standard_normal((n, 8))
    y = np.argmax(X[:, :3] @ rng.standard_normal((3, K)) + rng.gumbel(size=(n, K)), axis=1)
    loss = gs.Multinomial(X, y, fit_intercept=True)
    bp = BudgetProblem(loss, gs.Groups.from_sizes([2] * 4))
    S = np.array([0, 2])
    W, val = bp.refit(S)
    m = bp.mask_np(S)
    g = bp.grad(W)
    # the refit minimises loss + refit_ridge/2 ||W||^2: its gradient on the support is -refit_ridge W (~1e-8)
    assert np.max(np.abs(g[m] + bp.refit_ridge * np.where(np.arange(bp.n_rows)[:, None] < bp.p, W, 0.0)[m])) < 1e-9
    for _ in range(20):
        D = rng.standard_normal(W.shape) * m * 1e-3
        assert bp.value(W + D) >= val - 1e-12


# ---------------------------------------------------------------- multinomial (feature groups over K classes)
def _multinomial_instance(seed, n, sizes, n_active, K=3, scale=1.5, ridge=0.0, intercept=True):
    rng = np.random.default_rng(seed)
    sizes = [int(s) for s in sizes]
    p = sum(sizes)
    X = rng.standard_normal((n, p))
    X[:, 1:] += 0.5 * X[:, :-1]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    B = np.zeros((p, K))
    for g in rng.choice(len(sizes), min(n_active, len(sizes)), replace=False):
        B[starts[g]:starts[g + 1]] = rng.standard_normal((sizes[g], K))
    y = np.argmax(scale * X @ B + rng.gumbel(size=(n, K)), axis=1)  # softmax sampling (Gumbel-max)
    return X, gs.Multinomial(X, y, ridge=ridge, fit_intercept=intercept, n_classes=K), gs.Groups.from_sizes(sizes)


@pytest.mark.parametrize("K,ridge,intercept", [(3, 0.0, True), (4, 0.05, True), (2, 0.0, False)])
def test_multinomial_model_is_the_softmax_hessian_without_its_shift_direction(K, ridge, intercept):
    """In the coordinates C = W Q (Q orthonormal, Q^T 1 = 0) the weighted blocks are the exact Hessian blocks
    sum_i x x^T (x) Q^T (diag P_i - P_i P_i^T) Q / n, the sacrifices are abess's formulas on them, and every model
    swap is the exact change of the minimum of the quadratic model (brute-force solves on the full Hessian)."""
    X, loss, groups = _multinomial_instance(5, 90, [2, 1, 3, 2, 2, 1], 3, K=K, ridge=ridge, intercept=intercept)
    bp = BudgetProblem(loss, groups)
    S = np.array([0, 3])
    W, _ = bp.refit(S)
    Wt = _Weighted(bp)
    Q = Wt.Q
    assert Q.shape == (K, K - 1)
    np.testing.assert_allclose(Q.T @ Q, np.eye(K - 1), atol=1e-14)
    np.testing.assert_allclose(Q.T @ np.ones(K), 0.0, atol=1e-14)
    w = Wt.weights(W)
    Xf = np.column_stack([X, np.ones(X.shape[0])]) if intercept else X
    Z = Xf @ W
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    n, nr, q = X.shape[0], bp.n_rows, K - 1
    H = sum(np.kron(np.outer(Xf[i], Xf[i]), Q.T @ (np.diag(P[i]) - np.outer(P[i], P[i])) @ Q) for i in range(n)) / n
    H[np.arange(bp.p * q), np.arange(bp.p * q)] += ridge  # feature rows come first; the intercept row is free
    assert np.linalg.eigvalsh(H).min() > 0  # no shift direction left
    grad = bp.grad(W)
    gC, cC = (grad @ Q).ravel(), (W @ Q).ravel()
    Hb = Wt.blocks(w)
    bwd, fwd = _sacrifices(Wt, Hb, _inv_blocks(Hb), W, -grad)
    coords = lambda rows: (np.asarray(rows)[:, None] * q + np.arange(q)).ravel()
    for g in range(bp.G):
        ig = coords(groups.indices[g])
        Hg = H[np.ix_(ig, ig)]
        s = Hg.shape[0]
        np.testing.assert_allclose(Hb[g][:s, :s], Hg, rtol=1e-10, atol=1e-14)
        assert bwd[g] == pytest.approx(0.5 * cC[ig] @ Hg @ cC[ig], rel=1e-9, abs=1e-15)
        assert fwd[g] == pytest.approx(0.5 * gC[ig] @ np.linalg.solve(Hg, gC[ig]), rel=1e-7, abs=1e-15)
    cand = np.setdiff1d(np.arange(bp.G), S)
    delta, start = _model_swaps(Wt, S, W, grad, w, Hb, cand)
    qv = H @ cC - gC

    def model_min(T):
        r = coords(np.concatenate([groups.indices[g] for g in T] + [bp.fixed_rows]))  # feature rows, intercept
        return -0.5 * qv[r] @ np.linalg.solve(H[np.ix_(r, r)], qv[r])

    base = model_min(S)
    for a, j in enumerate(S):
        for b, c in enumerate(cand):
            T = np.union1d(np.setdiff1d(S, [j]), [c])
            assert delta[a, b] == pytest.approx(model_min(T) - base, abs=1e-9 * (abs(base) + 1.0))
            # the refit's start: the model's minimiser on T (rows summing to 0 over the classes), 0 off T
            r = coords(np.concatenate([groups.indices[g] for g in T] + [bp.fixed_rows]))
            W0 = start(a, b)
            np.testing.assert_allclose(W0.sum(axis=1), 0.0, atol=1e-10)
            C0 = (W0 @ Q).ravel()
            np.testing.assert_allclose(C0[r], np.linalg.solve(H[np.ix_(r, r)], qv[r]), rtol=1e-7, atol=1e-9)
            assert not np.any(np.delete(C0, r))


@settings(max_examples=int(8 * examples_scale()), deadline=None)
@given(seed=st.integers(0, 10_000), G=st.integers(4, 7), smax=st.integers(1, 2), k=st.integers(1, 3),
       K=st.integers(2, 4), ridge=st.sampled_from([0.0, 0.01]), intercept=st.booleans())
def test_multinomial_newton_is_a_single_swap_local_optimum(seed, G, smax, k, K, ridge, intercept):
    k = min(k, G - 1)
    sizes = np.random.default_rng(seed).integers(1, smax + 1, size=G)
    _, loss, groups = _multinomial_instance(seed, 60, sizes, 3, K=K, ridge=ridge, intercept=intercept)
    with time_limit(60):
        sol = select(loss, groups, k, method="newton", n_candidates=G - k, n_verify=k * (G - k))
    S = np.asarray(sol.support)
    assert S.size == k
    bp = BudgetProblem(loss, groups)
    assert sol.objective == pytest.approx(bp.refit(S)[1], rel=1e-10)
    for j in S:
        for c in np.setdiff1d(np.arange(G), S):
            assert bp.refit(np.union1d(np.setdiff1d(S, [j]), [c]))[1] >= sol.objective * (1 - 1e-9)


def test_multinomial_newton_bad_input_is_named():
    X, loss, groups = _multinomial_instance(0, 40, [2] * 4, 2, K=3, intercept=False)
    with pytest.raises(ValueError, match="groups: method='newton' on Multinomial"):  # single class coefficients
        select(loss, gs.Groups.from_sizes([1] * (8 * 3)), 2, method="newton")
    with pytest.raises(ValueError, match="y: multinomial needs at least 2 classes"):
        select(gs.Multinomial(X, np.zeros(40)), groups, 2, method="newton")
    with time_limit(30):
        sol = select(loss, groups, 2, method="newton", max_time=1e-9)
    assert len(sol.support) == 2 and not sol.converged


@pytest.mark.parametrize("K", [1, 3])
def test_weighted_blocks_same_on_every_path(K, monkeypatch):
    """The per-group blocks from the cached (G, s, n) columns and from chunks of densified columns (large or sparse
    X) are the same matrices."""
    import groupsparse.selection.newton as nt
    if K == 1:
        _, loss, groups = _instance(2, 70, [2, 3, 1, 2], 2)
    else:
        _, loss, groups = _multinomial_instance(2, 70, [2, 3, 1, 2], 2, K=K, ridge=0.1)
    bp = BudgetProblem(loss, groups)
    W, _ = bp.refit(np.array([1, 3]))
    ref = _Weighted(bp)
    assert ref.X3 is not None
    w = ref.weights(W)
    B0 = ref.blocks(w)
    monkeypatch.setattr(nt, "_X3_MAX_ENTRIES", 150)  # no cached columns; chunks of one group
    Wt = _Weighted(bp)
    assert Wt.X3 is None
    B2 = Wt.blocks(w)
    np.testing.assert_allclose(B2, B0, rtol=1e-12, atol=1e-15)


def test_default_method_depends_on_the_loss():
    """select's default is 'newton' for binary Logistic (the best on bench_select's logistic family), 'splicing'
    for least squares and Multinomial (and for a partition budget, which 'newton' does not take)."""
    from groupsparse.selection import Budget, default_method
    X, loss, groups = _instance(7, 150, [2] * 12, 3)
    with time_limit(60):
        dflt, auto, newton = (select(loss, groups, 3, **m) for m in ({}, {"method": "auto"}, {"method": "newton"}))
    assert dflt.info["method"] == auto.info["method"] == "newton"
    np.testing.assert_array_equal(dflt.support, newton.support)
    assert dflt.objective == newton.objective
    ls = gs.LeastSquares(X, X[:, 0] + X[:, 5])
    assert select(ls, groups, 2).info["method"] == "splicing"
    _, mloss, mgroups = _multinomial_instance(7, 80, [2] * 6, 2)
    assert select(mloss, mgroups, 2).info["method"] == "splicing"
    part = Budget(1, np.repeat(np.arange(4), 3))  # at most one group of each 3
    assert default_method(loss, part) == "splicing"
    sol = select(loss, groups, part)
    assert sol.info["method"] == "splicing" and len(sol.support) <= 4


def test_multinomial_newton_sparse_X_same_answer():
    """Sparse X takes the chunked-columns path for the class-coupled blocks: same support and objective as dense."""
    import scipy.sparse as sp
    X, loss, groups = _multinomial_instance(4, 90, [2, 3, 1, 2, 2, 3, 2, 1], 3, K=3)
    X = np.where(np.abs(X) < 0.5, 0.0, X)
    y = np.argmax(loss.Y, axis=1)
    with time_limit(60):
        dense = select(gs.Multinomial(X, y, fit_intercept=True), groups, 3, method="newton")
        sparse = select(gs.Multinomial(sp.csr_matrix(X), y, fit_intercept=True), groups, 3, method="newton")
    np.testing.assert_array_equal(dense.support, sparse.support)
    assert sparse.objective == pytest.approx(dense.objective, rel=1e-9)
