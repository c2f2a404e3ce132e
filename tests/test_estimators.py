"""scikit-learn estimators: conformance (check_estimator), agreement with the core solver, CV choice, probabilities."""
import importlib.util
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import check_estimator

import groupsparse as gs
from groupsparse import (GroupSparseClassifier, GroupSparseClassifierCV, GroupSparseRegressor,
                         GroupSparseRegressorCV)

SIZES = [3, 1, 4, 2, 5]


def _data(n=120, seed=0, n_targets=None):
    rng = np.random.default_rng(seed)
    p = sum(SIZES)
    X = rng.normal(size=(n, p)) + 2.0  # uncentered on purpose: the intercept must be handled exactly
    beta = np.zeros(p)
    beta[:3] = [1.5, -1.0, 0.5]     # group 0
    beta[4:8] = [0.0, 2.0, -1.0, 1.0]  # group 2
    if n_targets is None:
        y = X @ beta + 0.7 + 0.3 * rng.normal(size=n)
    else:
        y = np.column_stack([X @ (beta * (k + 1)) + k for k in range(n_targets)]) + 0.3 * rng.normal(size=(n, n_targets))
    return X, y, beta


@pytest.mark.parametrize("est", [GroupSparseRegressor(), GroupSparseClassifier(),
                                 GroupSparseRegressorCV(n_lambdas=5, cv=2),
                                 GroupSparseClassifierCV(n_lambdas=3, cv=2)],
                         ids=lambda e: type(e).__name__)
def test_check_estimator(est):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = check_estimator(est, on_fail=None)
    failed = [(r["check_name"], repr(r["exception"])[:200]) for r in res if r["status"] == "failed"]
    assert not failed, failed
    skipped = {r["check_name"] for r in res if r["status"] != "passed"}
    allowed = {"check_array_api_input"}  # skipped without SCIPY_ARRAY_API
    if importlib.util.find_spec("pandas") is None:  # the DataFrame half of these checks needs pandas
        allowed |= {"check_regressor_data_not_an_array", "check_classifier_data_not_an_array"}
    assert skipped <= allowed, skipped


@pytest.mark.parametrize("penalty,params", [("group_lasso", {}), ("mcp", {"gamma": 2.5}),
                                            ("scad", {"gamma": 3.7}), ("sparse_group_lasso", {"l1_ratio": 0.3})])
def test_regressor_equals_core_solve(penalty, params):
    X, y, _ = _data()
    alpha = 0.05
    est = GroupSparseRegressor(groups=SIZES, penalty=penalty, alpha=alpha, tol=1e-10, **params).fit(X, y)
    pen = {"group_lasso": gs.GroupLasso, "mcp": gs.GroupMCP, "scad": gs.GroupSCAD,
           "sparse_group_lasso": gs.SparseGroupLasso}[penalty](alpha, **params)
    sol = gs.solve(gs.LeastSquares(X, y, fit_intercept=True), pen, SIZES, tol=1e-10)
    np.testing.assert_allclose(est.coef_, sol.coef, atol=1e-6)
    np.testing.assert_allclose(est.intercept_, sol.intercept[0], atol=1e-6)
    np.testing.assert_allclose(est.predict(X), X @ sol.coef + sol.intercept[0], atol=1e-5)
    np.testing.assert_array_equal(est.support_, sol.support)
    assert set(est.support_) == {0, 2}  # the true groups, at this alpha
    assert est.n_iter_ >= 1


def test_groups_as_labels_equal_sizes():
    X, y, _ = _data()
    labels = np.repeat(np.arange(len(SIZES)), SIZES)
    perm = np.random.default_rng(1).permutation(X.shape[1])
    a = GroupSparseRegressor(groups=SIZES, alpha=0.1, tol=1e-10).fit(X, y)
    b = GroupSparseRegressor(groups=labels[perm], alpha=0.1, tol=1e-10).fit(X[:, perm], y)  # columns shuffled
    np.testing.assert_allclose(b.coef_, a.coef_[perm], atol=1e-7)
    c = GroupSparseRegressor(groups=gs.Groups.from_sizes(SIZES), alpha=0.1, tol=1e-10).fit(X, y)
    np.testing.assert_allclose(c.coef_, a.coef_, atol=1e-9)


def test_groups_none_is_lasso():
    # one group per feature: the KKT conditions of the lasso  |x_j^T r / n| <= alpha, = alpha sign(b_j) if b_j != 0
    X, y, _ = _data()
    est = GroupSparseRegressor(alpha=0.2, tol=1e-12).fit(X, y)
    r = y - est.predict(X)
    g = (X - X.mean(0)).T @ r / len(y)
    nz = est.coef_ != 0
    np.testing.assert_allclose(g[nz], 0.2 * np.sign(est.coef_[nz]), atol=1e-6)
    assert np.all(np.abs(g[~nz]) <= 0.2 + 1e-6)
    np.testing.assert_array_equal(est.support_, np.flatnonzero(nz))


def test_multi_target_regressor_groups_span_targets():
    X, Y, _ = _data(n_targets=3)
    est = GroupSparseRegressor(groups=SIZES, alpha=0.1, tol=1e-10).fit(X, Y)
    assert est.coef_.shape == (3, X.shape[1]) and est.intercept_.shape == (3,)
    sol = gs.solve(gs.LeastSquares(X, Y, fit_intercept=True), gs.GroupLasso(0.1), SIZES, tol=1e-10)
    np.testing.assert_allclose(est.coef_, sol.coef.reshape(-1, 3).T, atol=1e-6)
    # a group is zero for all targets at once
    for g in gs.Groups.from_sizes(SIZES):
        block = est.coef_[:, g]
        assert np.all(block == 0) or np.all(np.linalg.norm(block, axis=1) > 0)
    assert est.predict(X).shape == Y.shape


def test_sparse_X_same_as_dense():
    X, y, _ = _data()
    X[np.abs(X - 2) < 0.5] = 0.0
    a = GroupSparseRegressor(groups=SIZES, alpha=0.05, tol=1e-10).fit(X, y)
    b = GroupSparseRegressor(groups=SIZES, alpha=0.05, tol=1e-10).fit(sp.csr_matrix(X), y)
    np.testing.assert_allclose(b.coef_, a.coef_, atol=1e-6)
    np.testing.assert_allclose(b.predict(sp.csr_matrix(X)), a.predict(X), atol=1e-5)


def _clf_data(n_classes, n=150, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, sum(SIZES)))
    W = np.zeros((sum(SIZES), n_classes))
    W[:3] = rng.normal(size=(3, n_classes)) * 2
    W[8:10] = rng.normal(size=(2, n_classes)) * 2
    y = np.argmax(X @ W + rng.gumbel(size=(n, n_classes)), axis=1)
    names = np.array(["cat", "dog", "eel", "fox"])[:n_classes]
    return X, names[y], y


def test_binary_classifier_equals_core_logistic():
    X, y_str, y = _clf_data(2)
    est = GroupSparseClassifier(groups=SIZES, alpha=0.02, tol=1e-10).fit(X, y_str)
    sol = gs.solve(gs.Logistic(X, y.astype(float), fit_intercept=True), gs.GroupLasso(0.02), SIZES, tol=1e-10)
    assert list(est.classes_) == ["cat", "dog"]
    assert est.coef_.shape == (1, X.shape[1])
    np.testing.assert_allclose(est.coef_[0], sol.coef, atol=1e-6)
    z = X @ sol.coef + sol.intercept[0]
    np.testing.assert_allclose(est.decision_function(X), z, atol=1e-5)
    P = est.predict_proba(X)
    np.testing.assert_allclose(P[:, 1], 1 / (1 + np.exp(-z)), atol=1e-6)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(est.predict(X), est.classes_[(z > 0).astype(int)])
    assert est.score(X, y_str) > 0.8


def test_multinomial_classifier_groups_span_classes():
    X, y_str, y = _clf_data(4)
    est = GroupSparseClassifier(groups=SIZES, alpha=0.02, tol=1e-10).fit(X, y_str)
    sol = gs.solve(gs.Multinomial(X, y.astype(float), fit_intercept=True, n_classes=4), gs.GroupLasso(0.02),
                   SIZES, tol=1e-10)
    assert est.coef_.shape == (4, X.shape[1])
    np.testing.assert_allclose(est.coef_, sol.coef.reshape(-1, 4).T, atol=1e-6)
    P = est.predict_proba(X)
    assert P.shape == (len(y), 4)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)
    assert np.all(P >= 0)
    np.testing.assert_array_equal(est.predict(X), est.classes_[np.argmax(P, axis=1)])
    for g in gs.Groups.from_sizes(SIZES):  # a group is in or out for all classes at once
        block = est.coef_[:, g]
        assert np.all(block == 0) or np.linalg.norm(block) > 0
    assert set(est.support_) >= {0}


def test_regressor_cv_picks_best_lambda_and_refits():
    X, y, _ = _data()
    est = GroupSparseRegressorCV(groups=SIZES, n_lambdas=12, cv=3, tol=1e-10).fit(X, y)
    assert est.lambdas_.shape == (12,) and np.all(np.diff(est.lambdas_) < 0)
    assert est.cv_scores_.shape == (12,) and est.cv_fold_scores_.shape == (3, 12)
    np.testing.assert_allclose(est.cv_scores_, est.cv_fold_scores_.mean(axis=0))
    assert est.lambda_ in est.lambdas_
    assert est.cv_scores_[est.best_index_] == np.max(est.cv_scores_)
    assert est.lambda_ == est.lambdas_[est.best_index_]
    # the chosen model is the full-data fit at lambda_
    ref = GroupSparseRegressor(groups=SIZES, alpha=est.lambda_, tol=1e-10).fit(X, y)
    np.testing.assert_allclose(est.coef_, ref.coef_, atol=1e-6)
    np.testing.assert_allclose(est.coef_path_[est.best_index_, 0], est.coef_, atol=0)
    # a fold score recomputed by hand (KFold(3), no shuffling, as check_cv builds it)
    from sklearn.model_selection import KFold
    train, test = next(KFold(3).split(X))
    m = GroupSparseRegressor(groups=SIZES, alpha=est.lambdas_[5], tol=1e-10).fit(X[train], y[train])
    assert abs(m.score(X[test], y[test]) - est.cv_fold_scores_[0, 5]) < 1e-5
    assert set(est.support_) >= {0, 2}  # CV favours prediction: the true groups, maybe a few more


def test_cv_explicit_grid_and_scoring():
    X, y, _ = _data()
    grid = [0.001, 1.0, 0.1, 0.01]
    est = GroupSparseRegressorCV(groups=SIZES, lambdas=grid, cv=3, scoring="neg_mean_squared_error").fit(X, y)
    np.testing.assert_allclose(est.lambdas_, sorted(grid, reverse=True))
    assert np.all(est.cv_scores_ <= 0)
    assert est.cv_scores_[est.best_index_] == np.max(est.cv_scores_)


def test_classifier_cv_binary_and_multiclass():
    for K in (2, 3):
        X, y_str, _ = _clf_data(K)
        est = GroupSparseClassifierCV(groups=SIZES, n_lambdas=8, cv=3).fit(X, y_str)
        assert est.cv_scores_[est.best_index_] == np.max(est.cv_scores_)
        assert np.all((est.cv_scores_ >= 0) & (est.cv_scores_ <= 1))  # accuracy
        np.testing.assert_allclose(est.predict_proba(X).sum(axis=1), 1.0, atol=1e-12)
        assert set(est.predict(X)) <= set(est.classes_)


@pytest.mark.parametrize("penalty,params", [("log_sum", {"eps": 0.5}), ("bridge", {"q": 0.5}),
                                            ("exp_mask", {})])
def test_other_penalties_fit_and_cv_grid(penalty, params):
    X, y, _ = _data(n=80)
    est = GroupSparseRegressorCV(groups=SIZES, penalty=penalty, n_lambdas=4, cv=2, lambda_min_ratio=0.1,
                                 **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    lmax_gl = gs.lambda_max(gs.LeastSquares(X - X.mean(0), y, fit_intercept=True), gs.GroupLasso(1.0), SIZES)
    if penalty != "log_sum":  # no lambda_max of their own: the group lasso's sets the scale
        np.testing.assert_allclose(est.lambdas_[0], lmax_gl, rtol=1e-8)
    assert np.all(np.isfinite(est.coef_)) and est.score(X, y) > 0.5


def test_params_untouched_and_clone():
    est = GroupSparseRegressor(groups=[2, 3], penalty="mcp", alpha=0.3, gamma=4.0)
    assert est.get_params()["groups"] == [2, 3] and est.get_params()["gamma"] == 4.0
    c = clone(est)
    assert c.get_params() == est.get_params()
