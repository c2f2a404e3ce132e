"""Bad input gets a clear error naming the argument, through the low-level API and through the estimators."""
import numpy as np
import pytest

import groupsparse as gs
from groupsparse import (GroupLasso, GroupMCP, GroupSCAD, Groups, GroupSparseClassifier, GroupSparseClassifierCV,
                         GroupSparseRegressor, GroupSparseRegressorCV, LeastSquares, Logistic, Multinomial)

rng = np.random.default_rng(0)
X = rng.normal(size=(30, 6))
y = X[:, 0] + 0.1 * rng.normal(size=30)
yb = (y > 0).astype(float)


def _with(a, i, v):
    a = np.array(a, dtype=float)
    a.flat[i] = v
    return a


# ---------------------------------------------------------------- low level: losses, penalties, Groups, solve
@pytest.mark.parametrize("make", [LeastSquares, Logistic, Multinomial])
def test_loss_mismatched_shapes(make):
    with pytest.raises(ValueError, match=r"^y: has 29 samples but X has 30 rows"):
        make(X, yb[:-1])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_loss_nan_inf(bad):
    with pytest.raises(ValueError, match=r"^X: contains NaN or inf"):
        LeastSquares(_with(X, 3, bad), y)
    with pytest.raises(ValueError, match=r"^X: contains NaN or inf"):
        Logistic(_with(X, 3, bad), yb)
    with pytest.raises(ValueError, match=r"^y: contains NaN or inf"):
        LeastSquares(X, _with(y, 0, bad))
    with pytest.raises(ValueError, match=r"^y: contains NaN or inf"):
        Logistic(X, _with(yb, 0, bad))


def test_loss_wrong_dimensions_and_empty():
    with pytest.raises(ValueError, match=r"^X: expected 2 dimensions"):
        LeastSquares(y, y)
    with pytest.raises(ValueError, match=r"^X: is empty"):
        LeastSquares(np.zeros((0, 3)), np.zeros(0))
    with pytest.raises(ValueError, match=r"^ridge: must be a finite number >= 0"):
        LeastSquares(X, y, ridge=-1.0)


@pytest.mark.parametrize("labels", [2 * yb - 1, yb + 1, yb * 0.5])
def test_logistic_labels_not_binary(labels):
    with pytest.raises(ValueError, match=r"^y: binary labels must be in \{0, 1\}"):
        Logistic(X, labels)


def test_multinomial_labels():
    with pytest.raises(ValueError, match=r"^y: multinomial labels must be integers 0..K-1"):
        Multinomial(X, yb - 1)
    with pytest.raises(ValueError, match=r"^y: multinomial needs at least 2 classes"):
        Multinomial(X, np.zeros(30))


def test_groups_empty_overlapping_uncovered():
    with pytest.raises(ValueError, match=r"^groups: group 1 is empty"):
        Groups.from_indices([[0, 1], [], [2, 3, 4, 5]])
    with pytest.raises(ValueError, match=r"^groups: groups overlap; indices \[2\]"):
        Groups.from_indices([[0, 1, 2], [2, 3, 4, 5]])
    with pytest.raises(ValueError, match=r"^groups: indices \[5\] belong to no group"):
        Groups.from_indices([[0, 1, 2], [3, 4]], n_features=6)
    with pytest.raises(ValueError, match=r"^groups: at least one group is required"):
        Groups.from_indices([])
    with pytest.raises(ValueError, match=r"^sizes: group sizes must be >= 1"):
        Groups.from_sizes([2, 0, 4])
    with pytest.raises(ValueError, match=r"^sizes: at least one group size is required"):
        Groups.from_sizes([])
    with pytest.raises(ValueError, match=r"^labels: at least one label is required"):
        Groups.from_labels([])


def test_solve_groups_mismatch():
    loss = LeastSquares(X, y)
    with pytest.raises(ValueError, match=r"^groups: cover 4 features but X has 6 columns"):
        gs.solve(loss, GroupLasso(0.1), [2, 2])
    with pytest.raises(ValueError, match=r"^groups: cover 7 coefficients but the loss has 6"):
        gs.solve(loss, GroupLasso(0.1), Groups.from_sizes([3, 4]))
    with pytest.raises(ValueError, match=r"^groups: is empty"):
        gs.solve(loss, GroupLasso(0.1), [])


@pytest.mark.parametrize("make", [GroupLasso, GroupMCP, GroupSCAD, gs.GroupLogSum, gs.GroupBridge,
                                  gs.ExpMaskPenalty, gs.SparseGroupLasso])
@pytest.mark.parametrize("lam", [-0.1, np.nan, np.inf])
def test_penalty_lambda(make, lam):
    with pytest.raises(ValueError, match=r"^lam: must be finite and >= 0"):
        make(lam)


@pytest.mark.parametrize("gamma", [1.0, 0.5, 0.0, -2.0, np.nan])
def test_mcp_gamma(gamma):
    with pytest.raises(ValueError, match=r"^gamma: group MCP needs a finite gamma > 1"):
        GroupMCP(0.1, gamma=gamma)


@pytest.mark.parametrize("gamma", [2.0, 1.5, np.nan])
def test_scad_gamma(gamma):
    with pytest.raises(ValueError, match=r"^gamma: group SCAD needs (a finite )?gamma > 2"):
        GroupSCAD(0.1, gamma=gamma)


def test_other_shape_parameters():
    with pytest.raises(ValueError, match=r"^q: group bridge needs 0 < q < 1"):
        gs.GroupBridge(0.1, q=1.0)
    with pytest.raises(ValueError, match=r"^eps: must be a finite number > 0"):
        gs.GroupLogSum(0.1, eps=0.0)
    with pytest.raises(ValueError, match=r"^l1_ratio: must lie in \[0, 1\]"):
        gs.SparseGroupLasso(0.1, l1_ratio=1.5)


def test_solve_options():
    loss = LeastSquares(X, y)
    with pytest.raises(ValueError, match=r"^tol: must be a positive finite number"):
        gs.solve(loss, GroupLasso(0.1), [6], tol=-1)
    with pytest.raises(ValueError, match=r"^penalty: expected a groupsparse penalty"):
        gs.solve(loss, "group_lasso", [6])
    with pytest.raises(ValueError, match=r"^loss: expected a groupsparse loss"):
        gs.solve(X, GroupLasso(0.1), [6])
    with pytest.raises(ValueError, match=r"^warm_start: expected 6 coefficients, got 3"):
        gs.solve(loss, GroupLasso(0.1), [6], warm_start=np.zeros(3))
    with pytest.raises(ValueError, match=r"^solver: expected one of"):
        gs.solve(loss, GroupLasso(0.1), [6], solver="newton")
    with pytest.raises(ValueError, match=r"^lambdas: must be a non-empty 1-D sequence of finite values >= 0"):
        gs.solve_path(loss, GroupLasso(0.1), [6], lambdas=[0.1, -1.0])


# ---------------------------------------------------------------- the same through the estimators
ESTIMATORS = [GroupSparseRegressor, GroupSparseClassifier, GroupSparseRegressorCV, GroupSparseClassifierCV]


def _y_for(cls):
    return yb if "Classifier" in cls.__name__ else y


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_estimator_mismatched_shapes(cls):
    with pytest.raises(ValueError, match=r"^y: has 29 samples but X has 30 rows"):
        cls().fit(X, _y_for(cls)[:-1])
    est = cls(groups=[3, 3]).fit(X, _y_for(cls)) if "CV" not in cls.__name__ else \
        cls(groups=[3, 3], n_lambdas=3, cv=2).fit(X, _y_for(cls))
    with pytest.raises(ValueError, match=r"X has 5 features, but \w+ is expecting 6 features"):
        est.predict(X[:, :5])


@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_estimator_nan_inf(cls, bad):
    with pytest.raises(ValueError, match=r"Input X contains (NaN|infinity)"):
        cls().fit(_with(X, 4, bad), _y_for(cls))
    with pytest.raises(ValueError, match=r"Input y contains (NaN|infinity)"):
        cls().fit(X, _with(_y_for(cls), 4, bad))


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_estimator_groups(cls):
    Xy = (X, _y_for(cls))
    with pytest.raises(ValueError, match=r"^groups: cover 5 features but X has 6 columns"):
        cls(groups=[2, 3]).fit(*Xy)
    with pytest.raises(ValueError, match=r"^groups: .*group sizes must be >= 1"):
        cls(groups=[2, 0, 4]).fit(*Xy)
    with pytest.raises(ValueError, match=r"^groups: is empty"):
        cls(groups=[]).fit(*Xy)
    with pytest.raises(ValueError, match=r"^groups: cover 7 (features|coefficients) but"):
        cls(groups=Groups.from_sizes([3, 4])).fit(*Xy)


@pytest.mark.parametrize("cls", [GroupSparseRegressor, GroupSparseClassifier])
def test_estimator_alpha_and_penalty_parameters(cls):
    Xy = (X, _y_for(cls))
    for alpha in (-0.1, np.nan, np.inf, "big"):
        with pytest.raises(ValueError, match=r"^alpha: "):
            cls(alpha=alpha).fit(*Xy)
    with pytest.raises(ValueError, match=r"^gamma: group MCP needs a finite gamma > 1"):
        cls(penalty="mcp", gamma=1.0).fit(*Xy)
    with pytest.raises(ValueError, match=r"^gamma: group SCAD needs (a finite )?gamma > 2"):
        cls(penalty="scad", gamma=2.0).fit(*Xy)
    with pytest.raises(ValueError, match=r"^gamma: expected a real number"):
        cls(penalty="mcp", gamma="3").fit(*Xy)
    with pytest.raises(ValueError, match=r"^q: group bridge needs 0 < q < 1"):
        cls(penalty="bridge", q=2.0).fit(*Xy)
    with pytest.raises(ValueError, match=r"^eps: must be a finite number > 0"):
        cls(penalty="log_sum", eps=-1.0).fit(*Xy)
    with pytest.raises(ValueError, match=r"^l1_ratio: must lie in \[0, 1\]"):
        cls(penalty="sparse_group_lasso", l1_ratio=-0.5).fit(*Xy)
    with pytest.raises(ValueError, match=r"^penalty: expected one of \['bridge', 'exp_mask', 'group_lasso'"):
        cls(penalty="lasso").fit(*Xy)
    with pytest.raises(ValueError, match=r"^tol: must be a positive finite number"):
        cls(tol=0).fit(*Xy)
    with pytest.raises(ValueError, match=r"^max_iter: must be an integer >= 1"):
        cls(max_iter=0).fit(*Xy)
    with pytest.raises(ValueError, match=r"^fit_intercept: expected True or False"):
        cls(fit_intercept="yes").fit(*Xy)
    with pytest.raises(ValueError, match=r"^ridge: must be a finite number >= 0"):
        cls(ridge=-1).fit(*Xy)
    with pytest.raises(ValueError, match=r"^solver: expected one of"):
        cls(solver="newton").fit(*Xy)


@pytest.mark.parametrize("cls", [GroupSparseRegressorCV, GroupSparseClassifierCV])
def test_cv_parameters(cls):
    Xy = (X, _y_for(cls))
    with pytest.raises(ValueError, match=r"^lambdas: must be a non-empty 1-D sequence of finite values >= 0"):
        cls(lambdas=[0.1, -0.1]).fit(*Xy)
    with pytest.raises(ValueError, match=r"^lambdas: "):
        cls(lambdas=[]).fit(*Xy)
    with pytest.raises(ValueError, match=r"^n_lambdas: must be an integer >= 1"):
        cls(n_lambdas=0).fit(*Xy)
    with pytest.raises(ValueError, match=r"^lambda_min_ratio: must lie in \(0, 1\)"):
        cls(lambda_min_ratio=1.5).fit(*Xy)
    with pytest.raises(ValueError, match=r"^gamma: group MCP needs a finite gamma > 1"):
        cls(penalty="mcp", gamma=0.9).fit(*Xy)
    with pytest.raises(ValueError, match=r"^scoring: "):
        cls(scoring=3).fit(*Xy)


@pytest.mark.parametrize("cls", [GroupSparseClassifier, GroupSparseClassifierCV])
def test_classifier_targets(cls):
    # any two labels work (encoded to {0, 1} before the binary logistic loss) ...
    est = cls().fit(X, np.where(yb > 0, "yes", "no"))
    assert list(est.classes_) == ["no", "yes"]
    # ... but a continuous target or a single class is refused, naming y / the class
    with pytest.raises(ValueError, match=r"Unknown label type: .*continuous"):
        cls().fit(X, y)
    with pytest.raises(ValueError, match=r"^y: needs samples of at least 2 classes"):
        cls().fit(X, np.ones(30))


# ---------------------------------------------------------------- gaps found by this file, since fixed in the core
def test_warm_start_nan():
    with pytest.raises(ValueError, match=r"^warm_start: "):
        gs.solve(LeastSquares(X, y), GroupLasso(0.1), [6], warm_start=np.full(6, np.nan))


def test_multinomial_label_out_of_range():
    with pytest.raises(ValueError, match=r"^y: "):
        Multinomial(X, yb * 3, n_classes=2)


def test_group_labels_wrong_length():
    with pytest.raises(ValueError, match=r"^groups: .*(6|columns)"):
        gs.solve(LeastSquares(X, y), GroupLasso(0.1), [0, 0, 1, 1])


def test_complex_X():
    with pytest.raises(ValueError, match=r"^X: "):
        LeastSquares(X + 1j, y)


def test_gamma_not_a_number():
    with pytest.raises(ValueError, match=r"^gamma: "):
        GroupMCP(0.1, gamma="a")
