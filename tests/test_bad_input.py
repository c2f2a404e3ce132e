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


# ---------------------------------------------------------------- issue 14: inputs accepted, coerced or unnamed
def test_issue14_groups_all_ones_is_not_silently_one_group():
    """groups=[1]*p was read as labels (one group) although a list of sizes is documented: it fits both readings,
    so it is refused, and each unambiguous spelling gives what it says."""
    loss = LeastSquares(X, y)
    with pytest.raises(ValueError, match=r"^groups: \[1\] \* 6 reads both as 6 group sizes of 1 and as one label"):
        gs.solve(loss, GroupLasso(0.1), [1] * 6)
    with pytest.raises(ValueError, match=r"^groups: \[1\] \* 6 reads both"):
        GroupSparseRegressor(groups=[1] * 6).fit(X, y)
    singles = gs.solve(loss, GroupLasso(0.05), 1, tol=1e-12)
    lasso = gs.solve(loss, GroupLasso(0.05), Groups.from_sizes([1] * 6), tol=1e-12)
    np.testing.assert_array_equal(singles.coef, lasso.coef)
    one = gs.solve(loss, GroupLasso(0.05), 6, tol=1e-12)
    assert one.support.tolist() == [0]  # a single group holding every feature
    # sizes (any length but p) and labels (length p) keep their meaning; README's sizes list still works
    a = gs.solve(loss, GroupLasso(0.05), [2, 4], tol=1e-12)
    b = gs.solve(loss, GroupLasso(0.05), ["a", "a", "b", "b", "b", "b"], tol=1e-12)
    c = gs.solve(loss, GroupLasso(0.05), [[0, 1], [2, 3, 4, 5]], tol=1e-12)
    np.testing.assert_array_equal(a.coef, b.coef)
    np.testing.assert_array_equal(a.coef, c.coef)


@pytest.mark.parametrize("groups,match", [
    (2.5, r"^groups: expected a Groups; an int s"), (True, r"^groups: expected"), ("3", r"^groups: expected"),
    ([2.5, 3.5], r"^groups: 2 entries for 6 features"), ([[0, 1], 2], r"^groups: mixes lists and scalars"),
    ([0, 0, np.nan, 1, 1, 1], r"^groups: read as one label per feature: labels: contains NaN"),
    ([True] * 6, r"^groups: booleans"), ({0, 1}, r"^groups: expected"), (0, r"^groups: an int means"),
    ([-1, 7], r"^groups: read as group sizes .* must be >= 1"), ([[0, 1.5], [2, 3, 4, 5]], r"^groups: group 0 must"),
])
def test_issue14_groups_that_fit_no_reading_are_named(groups, match):
    with pytest.raises(ValueError, match=match):
        gs.solve(LeastSquares(X, y), GroupLasso(0.1), groups)


@pytest.mark.parametrize("make", [LeastSquares, Logistic, Multinomial])
@pytest.mark.parametrize("value", ["no", "yes", 0, 1, None, 0.5])
def test_issue14_loss_fit_intercept_no_is_not_true(make, value):
    with pytest.raises(ValueError, match=r"^fit_intercept: expected True or False"):
        make(X, yb, fit_intercept=value)


@pytest.mark.parametrize("n_classes", [2.5, 3.0, "3", True, 1, 0, np.nan])
def test_issue14_multinomial_n_classes_not_truncated(n_classes):
    with pytest.raises(ValueError, match=r"^n_classes: "):
        Multinomial(X, yb, n_classes=n_classes)


@pytest.mark.parametrize("ridge", ["abc", None, [1.0], 1 + 0j, True, -1.0, np.inf])
def test_issue14_ridge_abc_is_named(ridge):
    with pytest.raises(ValueError, match=r"^ridge: "):
        LeastSquares(X, y, ridge=ridge)
    with pytest.raises(ValueError, match=r"^ridge: "):
        GroupSparseRegressor(ridge=ridge).fit(X, y)


@pytest.mark.parametrize("bad", [[[1.0, 2.0], [3.0]], [["a", "b"]] * 30, np.array([[1, None]] * 30, dtype=object)])
def test_issue14_ragged_or_non_numeric_X_is_named(bad):
    with pytest.raises(ValueError, match=r"^X: (expected a numeric array|contains NaN)"):  # None -> NaN
        LeastSquares(bad, y[: len(bad)])
    with pytest.raises(ValueError, match=r"^X: |^Input X contains NaN"):  # scikit-learn's wording for NaN
        GroupSparseRegressor().fit(bad, y[: len(bad)])


def test_issue14_decreasing_composite_q_is_named():
    with pytest.raises(ValueError, match=r"^q: must be increasing"):
        gs.CompositePenalty(0.1, lambda x: -x)
    with pytest.raises(ValueError, match=r"^q: calling q on \[0, 10\] failed with ZeroDivisionError"):
        gs.CompositePenalty(0.1, lambda x: 1 / x)
    for name in ("q_inv", "dq"):
        with pytest.raises(ValueError, match=rf"^{name}: expected a callable"):
            gs.CompositePenalty(0.1, abs, **{name: 3})


@pytest.mark.parametrize("init,match", [([-1], r"^init: group ids must lie in \[0, 3\), got \[-1\]"),
                                        ([99], r"^init: group ids must lie in \[0, 3\), got \[99\]"),
                                        ([0.5], r"^init: expected integer group ids"),
                                        ([0, 0], r"^init: group ids must be distinct"),
                                        ([0, 1, 2], r"^init: holds 3 groups, more than the budget k=2")])
@pytest.mark.parametrize("method", ["splicing", "omp", "ompr", "sa", "sa++", "acdc", "exact"])
def test_issue14_select_init_minus_one_does_not_wrap(init, match, method):
    """init=[-1] silently meant the last group and init=[99] raised IndexError."""
    with pytest.raises(ValueError, match=match):
        gs.select(LeastSquares(X, y), [2, 2, 2], 2, method=method, init=init)


def test_issue14_select_options_are_named():
    loss = LeastSquares(X, y)
    for kw, name in [({"bound": "yes"}, "bound"), ({"refit_ridge": -1.0}, "refit_ridge"),
                     ({"refit_ridge": "a"}, "refit_ridge"), ({"max_iter": 2.5}, "max_iter"),
                     ({"method": "omp", "batch": 0}, "batch"), ({"method": 3}, "method")]:
        with pytest.raises(ValueError, match=rf"^{name}: "):
            gs.select(loss, [2, 2, 2], 2, **kw)
    for k in (1.5, "2", True, 0, 4, -1):
        with pytest.raises(ValueError, match=r"^k: "):
            gs.select(loss, [2, 2, 2], k)


@pytest.mark.parametrize("kw,name", [({"lambdas": [[0.1, 0.01], [0.001]]}, "lambdas"), ({"lambdas": "abc"}, "lambdas"),
                                     ({"lambdas": [[0.1, 0.01]]}, "lambdas"), ({"lambda_min_ratio": "a"}, "lambda_min_ratio"),
                                     ({"lambda_min_ratio": np.nan}, "lambda_min_ratio"), ({"n_lambdas": 2.5}, "n_lambdas"),
                                     ({"progress": "x"}, "progress"), ({"checkpoint": 3}, "checkpoint")])
def test_issue14_solve_path_options_are_named(kw, name):
    with pytest.raises(ValueError, match=rf"^{name}: "):
        gs.solve_path(LeastSquares(X, y), GroupLasso(0.1), [3, 3], **kw)


def test_issue14_solve_and_lambda_max_options_are_named():
    loss = LeastSquares(X, y, fit_intercept=True)
    with pytest.raises(ValueError, match=r"^penalty: expected a groupsparse penalty"):
        gs.lambda_max(loss, "group_lasso", [3, 3])
    with pytest.raises(ValueError, match=r"^penalty: expected a groupsparse penalty"):
        gs.solve_path(loss, "group_lasso", [3, 3])
    with pytest.raises(ValueError, match=r"^verbose: expected True or False"):
        gs.solve(loss, GroupLasso(0.1), [3, 3], verbose="yes")
    with pytest.raises(ValueError, match=r"^warm_intercept: contains NaN"):  # was ignored without warm_start
        gs.solve(loss, GroupLasso(0.1), [3, 3], warm_intercept=np.nan)
    with pytest.raises(ValueError, match=r"^warm_intercept: expected 1 value"):
        gs.solve(loss, GroupLasso(0.1), [3, 3], warm_intercept=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"^warm_intercept: given, but the loss has no intercept"):
        gs.solve(LeastSquares(X, y), GroupLasso(0.1), [3, 3], warm_intercept=[1.0])


@pytest.mark.parametrize("make,kw", [(GroupMCP, {"gamma": np.inf}),  # GroupSCAD's gamma=inf: a hang, H1's tests
                                     (gs.GroupLogSum, {"eps": np.inf}), (GroupLasso, {}),
                                     (gs.SparseGroupLasso, {"l1_ratio": True})])
def test_issue14_penalty_parameters_inf_or_bool(make, kw):
    name = next(iter(kw), "lam")
    with pytest.raises(ValueError, match=rf"^{name}: "):
        make(True if not kw else 0.1, **kw)


@pytest.mark.parametrize("kw,match", [
    ({"shape": (4, 4.5), "block": 2}, r"^shape: "), ({"shape": 4, "block": 2}, r"^shape: "),
    ({"shape": (4, 4), "block": "a"}, r"^block: "), ({"shape": (4, 4), "block": (1, 2, 3)}, r"^block: "),
    ({"shape": (4, 4), "block": 2.5}, r"^block: "), ({"shape": (True, 4), "block": 1}, r"^shape: ")])
def test_issue14_block_tiling_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        Groups.block_tiling(**kw)


def test_issue14_groups_constructors_name_their_arguments():
    for fn, match in [(lambda: Groups.from_sizes([2.5]), r"^sizes: group sizes must be integers"),
                      (lambda: Groups.from_sizes([True, True]), r"^sizes: group sizes must be integers"),
                      (lambda: Groups.from_sizes(3), r"^sizes: expected a 1-D list"),
                      (lambda: Groups.from_sizes([3, 3], weights=["a", "b"]), r"^weights: "),
                      (lambda: Groups.from_indices([[0, 1]], n_features=2.5), r"^n_features: "),
                      (lambda: Groups.from_indices([["a"]]), r"^groups: group 0 must be a list of integer indices"),
                      (lambda: Groups.from_labels([np.nan, np.nan]), r"^labels: contains NaN"),
                      (lambda: Groups.from_labels([[0, 1], [1]]), r"^labels: "),
                      (lambda: Groups.from_sizes([3, 3]).append(0), r"^size: "),
                      (lambda: Groups.from_sizes([3, 3]).expand_outputs(2.5), r"^n_outputs: ")]:
        with pytest.raises(ValueError, match=match):
            fn()


@pytest.mark.parametrize("cls", [GroupSparseClassifierCV, GroupSparseRegressorCV])
def test_issue14_cv_with_fewer_samples_than_folds_names_cv(cls):
    yy = _y_for(cls)
    with pytest.raises(ValueError, match=r"^cv: 5 folds need at least 5 samples, got n_samples=4"):
        cls(n_lambdas=3).fit(X[:4], yy[np.r_[0:2, -2:0]] if cls is GroupSparseRegressorCV else [0, 1, 0, 1])
    for cv in (1, 0, -1, 2.5, True):
        with pytest.raises(ValueError, match=r"^cv: "):
            cls(n_lambdas=3, cv=cv).fit(X, yy)


@pytest.mark.filterwarnings("ignore:The least populated class")
def test_issue14_classifier_cv_fold_with_one_class_is_named():
    """6 samples, one of class 1, cv=5 (a warning in scikit-learn): a training fold held a single class, and the
    fold's logistic fit was silently meaningless."""
    y6 = np.array([0, 0, 0, 0, 0, 1])
    with pytest.raises(ValueError, match=r"^cv: the training part of fold \d holds samples of one class only"):
        GroupSparseClassifierCV(n_lambdas=3, cv=5).fit(X[:6], y6)


@pytest.mark.parametrize("cls", [GroupSparseClassifier, GroupSparseClassifierCV])
def test_issue14_classifier_with_one_sample(cls):
    with pytest.raises(ValueError, match=r"^y: needs samples of at least 2 classes"):
        cls().fit(X[:1], yb[:1])


@pytest.mark.parametrize("kw,name", [({"lambdas": [[0.1]]}, "lambdas"), ({"lambdas": "abc"}, "lambdas"),
                                     ({"n_lambdas": 2.5}, "n_lambdas"), ({"n_lambdas": True}, "n_lambdas"),
                                     ({"lambda_min_ratio": "a"}, "lambda_min_ratio"),
                                     ({"fit_intercept": "no"}, "fit_intercept"), ({"max_iter": 2.5}, "max_iter"),
                                     ({"tol": "1e-6"}, "tol"), ({"solver": None}, "solver"), ({"penalty": 3}, "penalty"),
                                     ({"groups": 2.5}, "groups"), ({"groups": "3"}, "groups")])
def test_issue14_cv_estimator_parameters_are_named(kw, name):
    with pytest.raises(ValueError, match=rf"^{name}: "):
        GroupSparseRegressorCV(**{"n_lambdas": 3, **kw}).fit(X, y)


def test_issue14_schedules_name_their_arguments():
    """The shared sparsity schedules (exported as groupsparse.schedules) took '0.5' and True for a sparsity, and a
    NaN progress silently meant the last phase."""
    from groupsparse import schedules as S
    for bad in ("0.5", True, np.nan, 1.0, -0.1, None):
        with pytest.raises(ValueError, match=r"^target: "):
            S.exp_ramp(0.5, bad)
    for t in (np.nan, "x", [0.1, np.inf]):
        with pytest.raises(ValueError, match=r"^t: "):
            S.exp_ramp(t, 0.5)
        with pytest.raises(ValueError, match=r"^t: "):
            S.acdc_imagenet(0.5).sparsity(t)
    for c in (0, -1.0, np.nan, np.inf, "4"):
        with pytest.raises(ValueError, match=r"^c: "):
            S.exp_ramp(0.5, 0.5, c)
        with pytest.raises(ValueError, match=r"^c: "):
            S.sapp_imagenet(0.5, c=c)
    for n in (0, 2.5, True, "3"):
        with pytest.raises(ValueError, match=r"^n_pairs: "):
            S.acdc_criteo(0.5, n_pairs=n)
        with pytest.raises(ValueError, match=r"^n_pairs: "):
            S.sapp_criteo(0.5, n_pairs=n)
    for split in ((0.5, 0.5), (0.4, 0.3, 0.3, 0.0), ("a", "b", "c"), (0.5, 0.6, -0.1)):
        with pytest.raises(ValueError, match=r"^split: "):
            S.sapp_imagenet(0.5, split=split)
    with pytest.raises(ValueError, match=r"^kind: "):
        S.maxq_dense_fraction(1, 0, 5, kind=3)
    with pytest.raises(ValueError, match=r"^start: "):
        S.maxq_dense_fraction(1, "0", 5)
    with pytest.raises(ValueError, match=r"^epoch: "):
        S.maxq_dense_fraction(np.nan, 0, 5)
    # the values themselves are unchanged: the ramp's closed form, and MaxQ's linear schedule
    np.testing.assert_allclose(S.exp_ramp(0.5, 0.8, 4.0), 0.8 * (1 - np.exp(-2.0)) / (1 - np.exp(-4.0)), rtol=1e-15)
    assert S.maxq_dense_fraction(3, 1, 5) == pytest.approx(0.5)


def test_issue14_groups_methods_refuse_wrapping_ids():
    g = Groups.from_sizes([2, 3, 1])
    np.testing.assert_array_equal(g.columns([2, 0]), [0, 1, 5])
    for method in (g.columns, g.mask, g.subset):
        for bad, match in (([-1], r"must lie in \[0, 3\), got \[-1\]"), ([3], r"got \[3\]"),
                           ([0, 0], "distinct"), ([0.5], "integer")):
            with pytest.raises(ValueError, match=rf"^selected: .*{match}"):
                method(bad)


def test_issue14_model_selection_arguments():
    """choose_k truncated ks=2.5 and cv=2.5, and checked the criterion only after computing a whole path."""
    from groupsparse.selection import choose_k, information_criterion, select_path
    loss = LeastSquares(X, y)
    for ks in ([2.5], ["2"], [], 3, [0, 1], [True]):
        with pytest.raises(ValueError, match=r"^ks: "):
            select_path(loss, [2, 2, 2], ks)
        with pytest.raises(ValueError, match=r"^ks: "):
            choose_k(X, y, [2, 2, 2], ks)
    for kw, name in [({"criterion": "aic"}, "criterion"), ({"criterion": "cv", "cv": 2.5}, "cv"),
                     ({"criterion": "cv", "cv": 1}, "cv"), ({"criterion": "cv", "cv": 31}, "cv"),
                     ({"gamma": -1.0}, "gamma"), ({"loss": "huber"}, "loss"), ({"one_se": "yes"}, "one_se"),
                     ({"fit_intercept": "no"}, "fit_intercept")]:
        with pytest.raises(ValueError, match=rf"^{name}: "):
            choose_k(X, y, [2, 2, 2], [1, 2], **kw)
    sol = gs.select(loss, [2, 2, 2], 1)
    with pytest.raises(ValueError, match=r"^criterion: "):
        information_criterion(sol, loss, "cv")
    k, best, scores = choose_k(X, y, [2, 2, 2], np.array([1, 2, 3]), criterion="bic")
    assert set(scores) == {1, 2, 3} and scores[k] == min(scores.values()) and best.support.size == k


@pytest.mark.parametrize("method,kw,name", [
    ("sa", {"lr": np.nan}, "lr"), ("sa", {"per_step": 0}, "per_step"), ("sa", {"steps": 2.5}, "steps"),
    ("sa", {"lam_ratio": -1.0}, "lam_ratio"), ("sa++", {"n_cycles": 0}, "n_cycles"), ("sa++", {"c": np.inf}, "c"),
    ("sa++", {"dense_steps": -1}, "dense_steps"), ("acdc", {"n_cycles": 0}, "n_cycles"),
    ("acdc", {"dense_steps": np.inf}, "dense_steps"), ("arht", {"max_iter": 0}, "max_iter"),
    ("arht", {"rho": "x"}, "rho"), ("iht", {"relax": 0.5}, "relax"), ("iht", {"pursuit": "yes"}, "pursuit"),
    ("alg2", {"lam_factor": 2.5}, "lam_factor"), ("alg2", {"n_iter": -1}, "n_iter"),
    ("exact", {"max_nodes": 0}, "max_nodes"), ("exact", {"max_nodes": None}, "max_nodes"),
    ("local_search", {"polish": 1}, "polish"), ("local_search", {"n_candidates": 0}, "n_candidates"),
    ("splicing", {"exchange": 0}, "exchange"), ("ompr", {"tol": None}, "tol")])
def test_issue14_select_method_options_are_named(method, kw, name):
    """Sequential Attention hung on lr=nan and per_step=0; ACDC's n_cycles=0 and ARHT's max_iter=0 crashed; exact's
    max_nodes=0 raised RuntimeError; bad counts were truncated or silently ignored."""
    with time_limit_s(20):
        with pytest.raises(ValueError, match=rf"^{name}: "):
            gs.select(LeastSquares(X, y), [2, 2, 2], 2, method=method, **kw)


def time_limit_s(seconds):
    try:
        from conftest import time_limit
    except ImportError:  # pragma: no cover
        import contextlib
        return contextlib.nullcontext()
    return time_limit(seconds)
