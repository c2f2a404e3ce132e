"""scikit-learn estimators over the core solvers: thin shells that build a loss, a penalty and the groups, call
``solve`` / ``solve_path``, and expose the result with scikit-learn's names.

- ``GroupSparseRegressor``  : least squares, one or several targets (groups span all targets).
- ``GroupSparseClassifier`` : binary logistic (2 classes) or multinomial (>= 3 classes; groups span all classes).
- ``GroupSparseRegressorCV`` / ``GroupSparseClassifierCV`` : lambda chosen by K-fold cross-validation over a
  warm-started path, then the path refitted on all the data (``coef_path_``) and the chosen lambda kept.

Parameters are stored untouched by ``__init__`` and validated in ``fit``; every error names the parameter.
``alpha`` is the penalty's lambda, on the core's scale: the loss is a mean over samples ((1/2n)||y - Xb||^2 or the
mean log-loss), so ``alpha`` does not grow with n.
"""
from __future__ import annotations

import numbers
import warnings

import numpy as np
import scipy.sparse as sp
from scipy.special import expit, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import check_cv
from sklearn.metrics import check_scoring
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _num_samples, check_is_fitted, validate_data

from ._validation import (check_bool, check_choice, check_finite_real, check_nonneg, check_open_unit,
                          check_positive_int, check_tol, _as_array)
from .api import lambda_max, solve, solve_path
from .groups import Groups, as_groups
from .losses import LeastSquares, Logistic, Multinomial
from .penalties import (ExpMaskPenalty, GroupBridge, GroupLasso, GroupLogSum, GroupMCP, GroupSCAD,
                        SparseGroupLasso)

__all__ = ["GroupSparseRegressor", "GroupSparseClassifier", "GroupSparseRegressorCV", "GroupSparseClassifierCV",
           "PENALTIES"]

# name -> (class, the estimator parameters it takes, their defaults when the estimator's value is None)
PENALTIES = {
    "group_lasso": (GroupLasso, {}),
    "sparse_group_lasso": (SparseGroupLasso, {"l1_ratio": 0.5}),
    "mcp": (GroupMCP, {"gamma": 3.0}),
    "scad": (GroupSCAD, {"gamma": 3.7}),
    "log_sum": (GroupLogSum, {"eps": 1.0}),
    "bridge": (GroupBridge, {"q": 0.5}),
    "exp_mask": (ExpMaskPenalty, {}),
}


def _not_numeric(a):
    try:
        np.asarray(a, dtype=float)
        return False
    except (TypeError, ValueError):
        return True


class _GroupSparseMixin:
    """Shared parameter checks, the loss/penalty/groups construction and the fit hook."""

    # ----------------------------------------------------------------- validation
    def _penalty_spec(self):
        cls, defaults = PENALTIES[check_choice(self.penalty, "penalty", PENALTIES)]
        kwargs = {}
        for name, default in defaults.items():
            v = getattr(self, name)
            kwargs[name] = default if v is None else check_finite_real(v, name)  # the penalty checks the range
        return cls, kwargs

    def _make_penalty(self, lam):
        cls, kwargs = self._penalty_spec()
        return cls(lam, **kwargs)  # the penalty checks lam >= 0 and its own parameter ranges, naming them

    def _check_params(self):
        self._make_penalty(1.0)  # penalty name and its shape parameters
        check_bool(self.fit_intercept, "fit_intercept")
        check_nonneg(self.ridge, "ridge")
        check_tol(self.tol, "tol")
        check_positive_int(self.max_iter, "max_iter")
        check_choice(self.solver, "solver", ("auto", "bcd", "fista"))

    def _validate_X_y(self, X, y):
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        try:
            nx, ny = _num_samples(X), _num_samples(y)
        except TypeError:
            nx = ny = None
        if nx is not None and nx != ny:  # name the arguments, unlike sklearn's generic message
            raise ValueError(f"y: has {ny} samples but X has {nx} rows (inconsistent numbers of samples)")
        for name, v in (("X", X), ("y", y)):  # ragged lists: numpy's message names neither
            if isinstance(v, (list, tuple)):
                _as_array(v, name)
        try:
            X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], dtype=np.float64,
                                 multi_output=self._multi_output, y_numeric=not self._is_classifier)
        except ValueError as e:
            if "could not convert" not in str(e):
                raise
            # numpy's conversion message names neither argument: find the one that is not numeric
            name = "X" if not sp.issparse(X) and _not_numeric(X) else "y"
            raise ValueError(f"{name}: expected numeric values ({e})") from None
        return X, y

    def _center(self, X):
        """Center dense X when fitting an intercept: X b + c = (X - m) b + (c + m.b) is an exact
        reparametrization (the penalty ignores c), and it keeps the intercept from fighting the features in
        block coordinate descent (uncentered columns make the core's BCD very slow).  ``_set_solution`` maps the
        intercept back.  Sparse X is left as is (centering would densify it)."""
        if self.fit_intercept and not sp.issparse(X):
            self._X_offset = X.mean(axis=0)
            return X - self._X_offset
        self._X_offset = None
        return X

    def _groups_for(self, n_features):
        if self.groups is None:
            return Groups.from_sizes(np.ones(n_features, dtype=np.int64))
        return as_groups(self.groups, n_features)  # its errors start with "groups:"

    # ----------------------------------------------------------------- fit hook
    def _fit_coef(self, loss, groups):
        """The one place that turns (loss, groups) into a Solution; a budgeted fit slots in here."""
        sol = solve(loss, self._make_penalty(self.alpha), groups, solver=self.solver, tol=self.tol,
                    max_iter=self.max_iter)
        self._warn_convergence([sol])
        return sol

    def _warn_convergence(self, sols):
        bad = [s for s in sols if not s.converged]
        if bad:
            warnings.warn(f"{type(self).__name__}: solver did not reach tol={self.tol} within max_iter="
                          f"{self.max_iter} at {len(bad)} of {len(sols)} lambda(s) (last certificate "
                          f"{bad[-1].certificate:.3g}); increase max_iter or tol", ConvergenceWarning)

    def _set_solution(self, sol, groups, n_outputs):
        """coef_ (n_outputs, p) or (p,), intercept_, support_ (selected group ids), n_iter_, groups_."""
        W = sol.coef.reshape(-1, n_outputs).T  # core layout (p, K) row-major -> sklearn's (K, p)
        self.coef_ = self._shape_coef(W)
        icpt = np.zeros(n_outputs) if sol.intercept is None else np.asarray(sol.intercept, float).ravel()
        if getattr(self, "_X_offset", None) is not None:
            icpt = icpt - W @ self._X_offset
        self.intercept_ = self._shape_intercept(icpt)
        self.support_ = np.asarray(sol.support, dtype=np.int64)
        self.n_iter_ = int(sol.n_iter)
        self.groups_ = groups
        self.solution_ = sol

    def _linear(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=np.float64, reset=False)
        W = np.atleast_2d(self.coef_)
        return np.asarray(X @ W.T).reshape(X.shape[0], -1) + np.ravel(self.intercept_)

    def _more_tags_into(self, tags):
        tags.input_tags.sparse = True
        return tags


# ====================================================================== regression
class _RegressorBase(_GroupSparseMixin, RegressorMixin):
    _is_classifier = False
    _multi_output = True

    def _shape_coef(self, W):
        return W[0] if self._y_1d else W

    def _shape_intercept(self, icpt):
        return float(icpt[0]) if self._y_1d else icpt

    def _prepare(self, X, y):
        self._check_params()
        X, y = self._validate_X_y(X, y)
        self._y_1d = y.ndim == 1
        groups = self._groups_for(X.shape[1])
        X = self._center(X)
        return X, y, self._loss_on(X, y), groups

    def _loss_on(self, X, y):
        return LeastSquares(X, y, fit_intercept=bool(self.fit_intercept), ridge=self.ridge)

    def _copy_fit_context(self, other):  # what a fold-scoring shell needs besides the coefficients
        self._y_1d = other._y_1d
        self._X_offset = other._X_offset
        self.n_features_in_ = other.n_features_in_

    def _y_for_scoring(self, y):
        return y

    def predict(self, X):
        """X @ coef_.T + intercept_: shape (n,) for a 1-D target, (n, n_targets) otherwise."""
        Z = self._linear(X)
        return Z[:, 0] if self._y_1d else Z

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return self._more_tags_into(tags)


class _SingleFitMixin:
    """One fit at a given alpha; the parameters shared by the regressor and the classifier (scikit-learn reads
    them from this ``__init__``)."""

    def __init__(self, groups=None, penalty="group_lasso", alpha=0.01, *, gamma=None, eps=None, q=None,
                 l1_ratio=None, ridge=0.0, fit_intercept=True, tol=1e-6, max_iter=200, solver="auto"):
        self.groups = groups
        self.penalty = penalty
        self.alpha = alpha
        self.gamma = gamma
        self.eps = eps
        self.q = q
        self.l1_ratio = l1_ratio
        self.ridge = ridge
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter
        self.solver = solver

    def fit(self, X, y):
        X, y_fit, loss, groups = self._prepare(X, y)  # y_fit: y, or the encoded labels for a classifier
        _check_alpha(self.alpha)
        sol = self._fit_coef(loss, groups)
        self._set_solution(sol, groups, loss.n_outputs)
        return self


class GroupSparseRegressor(_SingleFitMixin, _RegressorBase, BaseEstimator):
    """Group-sparse linear regression: minimise (1/2n)||y - X b - c||^2 + sum_g pen_alpha(||b_g||).

    Parameters
    ----------
    groups : None (one group per feature), or as ``groupsparse.solve`` reads it (``groups.as_groups``): an int s
        (consecutive groups of s columns), one label per column (length n_features; columns in any order, as
        scikit-learn's ``groups`` are labels), a list of group sizes of any other length (consecutive columns,
        summing to n_features), a list of index lists, or a ``groupsparse.Groups``.  ``[1] * n_features`` fits
        two readings and is refused: write ``groups=1`` (or None) for one group per feature.  With several targets
        a group spans all targets.
    penalty : 'group_lasso', 'sparse_group_lasso', 'mcp', 'scad', 'log_sum', 'bridge' or 'exp_mask'.
    alpha : the penalty's lambda (>= 0).
    gamma : concavity of 'mcp' (> 1, default 3) and 'scad' (> 2, default 3.7).
    eps : scale of 'log_sum' (> 0, default 1).   q : exponent of 'bridge' (0 < q < 1, default 0.5).
    l1_ratio : entrywise share of 'sparse_group_lasso' (in [0, 1], default 0.5).
    ridge : an extra (ridge/2)||b||^2 (>= 0).  A little ridge keeps nonconvex penalties well conditioned on
        collinear designs, where their unpenalized region otherwise leaves a near-singular least-squares problem.
    fit_intercept : fit an unpenalized intercept.
    tol : relative duality gap (convex penalties) or relative KKT residual (nonconvex) at which to stop.
    max_iter : outer (working-set) iterations of the solver.
    solver : 'auto', 'bcd' or 'fista'.

    Attributes
    ----------
    coef_ : (n_features,) or (n_targets, n_features).   intercept_ : float or (n_targets,).
    support_ : ids of the selected (nonzero) groups.   n_iter_ : solver iterations.
    groups_ : the ``Groups`` used.   solution_ : the core ``Solution`` (objective, certificate, ...).
    """


def _check_alpha(alpha):
    return check_nonneg(alpha, "alpha")


# ====================================================================== classification
class _ClassifierBase(_GroupSparseMixin, ClassifierMixin):
    _is_classifier = True
    _multi_output = False

    def _shape_coef(self, W):
        return W  # (1, p) binary, (n_classes, p) multinomial, as in scikit-learn

    def _shape_intercept(self, icpt):
        return icpt

    def _prepare(self, X, y):
        self._check_params()
        X, y = self._validate_X_y(X, y)
        check_classification_targets(y)
        enc = LabelEncoder().fit(y)
        self.classes_ = enc.classes_
        if self.classes_.size < 2:
            raise ValueError(f"y: needs samples of at least 2 classes in the data, but the data contains only one "
                             f"class: {self.classes_[0]!r}")
        y_enc = enc.transform(y)
        groups = self._groups_for(X.shape[1])
        X = self._center(X)
        return X, y_enc, self._loss_on(X, y_enc), groups

    def _loss_on(self, X, y_enc):
        if self.classes_.size == 2:
            return Logistic(X, y_enc.astype(float), fit_intercept=bool(self.fit_intercept), ridge=self.ridge)
        return Multinomial(X, y_enc.astype(float), fit_intercept=bool(self.fit_intercept), ridge=self.ridge,
                           n_classes=self.classes_.size)

    def _copy_fit_context(self, other):
        self.classes_ = other.classes_
        self._X_offset = other._X_offset
        self.n_features_in_ = other.n_features_in_

    def _y_for_scoring(self, y_enc):
        return self.classes_[y_enc]

    def decision_function(self, X):
        """Logit of class 1 (n,) for two classes; class scores (n, n_classes) otherwise."""
        Z = self._linear(X)
        return Z[:, 0] if Z.shape[1] == 1 else Z

    def predict_proba(self, X):
        Z = self.decision_function(X)
        if Z.ndim == 1:
            p = expit(Z)
            return np.column_stack([1.0 - p, p])
        return softmax(Z, axis=1)

    def predict_log_proba(self, X):
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        Z = self.decision_function(X)
        idx = (Z > 0).astype(int) if Z.ndim == 1 else np.argmax(Z, axis=1)
        return self.classes_[idx]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        return self._more_tags_into(tags)


class GroupSparseClassifier(_SingleFitMixin, _ClassifierBase, BaseEstimator):
    """Group-sparse logistic regression: binary (mean log-loss) for two classes, multinomial for more (a group
    then spans all classes).  Parameters and attributes as ``GroupSparseRegressor``; also ``classes_``, and
    ``coef_`` of shape (1, n_features) for two classes, (n_classes, n_features) otherwise."""


# ====================================================================== cross-validation over the path
class _CVMixin:
    """lambda by K-fold CV over a warm-started path; the path is then refitted on all the data."""

    def __init__(self, groups=None, penalty="group_lasso", *, lambdas=None, n_lambdas=30, lambda_min_ratio=1e-2,
                 cv=5, scoring=None, gamma=None, eps=None, q=None, l1_ratio=None, ridge=0.0, fit_intercept=True,
                 tol=1e-6, max_iter=200, solver="auto"):
        self.groups = groups
        self.penalty = penalty
        self.lambdas = lambdas
        self.n_lambdas = n_lambdas
        self.lambda_min_ratio = lambda_min_ratio
        self.cv = cv
        self.scoring = scoring
        self.gamma = gamma
        self.eps = eps
        self.q = q
        self.l1_ratio = l1_ratio
        self.ridge = ridge
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter
        self.solver = solver

    def fit(self, X, y):
        self._check_cv_params()
        X, y_fit, loss, groups = self._prepare(X, y)  # y_fit: y, or the encoded labels for a classifier
        return self._cv_fit(X, y_fit, y_fit, loss, groups)

    def _lambda_grid(self, loss, groups):
        if self.lambdas is not None:
            lams = _as_array(self.lambdas, "lambdas")
            if lams.ndim != 1 or lams.size == 0 or lams.dtype.kind not in "iuf" or \
                    not np.all(np.isfinite(lams)) or np.any(lams < 0):
                raise ValueError(f"lambdas: must be a non-empty 1-D sequence of finite values >= 0, got "
                                 f"{self.lambdas!r}"[:300])
            return np.sort(lams.astype(float))[::-1]  # decreasing: warm starts go from sparse to dense
        check_positive_int(self.n_lambdas, "n_lambdas")
        r = check_open_unit(self.lambda_min_ratio, "lambda_min_ratio")
        try:
            with np.errstate(divide="ignore"):  # exp_mask: zero slope at 0, lambda_max = inf
                lmax = lambda_max(loss, self._make_penalty(1.0), groups)
        except ValueError:  # infinite slope at 0 (bridge): no lambda_max; use the group lasso's as the scale
            lmax = np.nan
        if not (np.isfinite(lmax) and lmax > 0):  # bridge, or exp_mask (zero slope at 0)
            lmax = lambda_max(loss, GroupLasso(1.0), groups)
        if not lmax > 0:
            lmax = 1.0  # y constant given the intercept: any grid gives b = 0
        return lmax * np.geomspace(1.0, r, int(self.n_lambdas))

    def _path(self, loss, groups, lams):
        sols = solve_path(loss, self._make_penalty(1.0), groups, lams, solver=self.solver, tol=self.tol,
                          max_iter=self.max_iter)
        return sols

    def _cv_fit(self, X, y_fit, y_split, loss, groups):
        lams = self._lambda_grid(loss, groups)
        cv = check_cv(self._checked_cv(y_split.shape[0]), y_split, classifier=self._is_classifier)
        scorer = check_scoring(self._base_estimator(), scoring=self.scoring)
        fold_scores = []
        for i, (train, test) in enumerate(cv.split(X, y_split)):
            if self._is_classifier and np.unique(y_fit[train]).size < 2:
                raise ValueError(f"cv: the training part of fold {i} holds samples of one class only "
                                 f"({self.classes_[y_fit[train][0]]!r}); use fewer folds or more samples per class")
            fold_loss = self._loss_on(X[train], y_fit[train])
            sols = self._path(fold_loss, groups, lams)
            self._warn_convergence(sols)
            shell = self._base_estimator()
            shell._copy_fit_context(self)
            row = []
            Xt = X[test] if self._X_offset is None else X[test] + self._X_offset  # the user's scale
            yt = self._y_for_scoring(y_split[test])
            for sol in sols:
                shell._set_solution(sol, groups, fold_loss.n_outputs)
                row.append(scorer(shell, Xt, yt))
            fold_scores.append(row)
        self.cv_fold_scores_ = np.asarray(fold_scores, dtype=float)
        self.cv_scores_ = self.cv_fold_scores_.mean(axis=0)
        self.lambdas_ = lams
        # best mean score; ties go to the largest lambda (the sparsest model), i.e. the first in the grid
        self.best_index_ = int(np.nanargmax(self.cv_scores_))
        self.lambda_ = float(lams[self.best_index_])
        self.alpha_ = self.lambda_
        sols = self._path(loss, groups, lams)  # refit on all the data along the whole path (for plots)
        self._warn_convergence(sols)
        K = loss.n_outputs
        self.coef_path_ = np.stack([s.coef.reshape(-1, K).T for s in sols])  # (n_lambdas, K, p)
        self.intercept_path_ = np.stack([np.zeros(K) if s.intercept is None else np.ravel(s.intercept)
                                         for s in sols])
        self.path_support_ = [np.asarray(s.support) for s in sols]
        self._set_solution(sols[self.best_index_], groups, K)
        self.n_iter_ = int(sols[self.best_index_].n_iter)
        return self

    def _base_estimator(self):
        params = {k: getattr(self, k) for k in ("groups", "penalty", "gamma", "eps", "q", "l1_ratio", "ridge",
                                                  "fit_intercept", "tol", "max_iter", "solver")}
        return self._base_cls(alpha=0.0, **params)

    def _checked_cv(self, n_samples):
        """An int cv (None: 5) is a number of folds in [2, n_samples]; scikit-learn's own error does not name cv."""
        if self.cv is not None and not isinstance(self.cv, (numbers.Number, np.bool_)):
            return self.cv  # a splitter or an iterable of (train, test): scikit-learn checks them
        folds = 5 if self.cv is None else check_positive_int(self.cv, "cv", low=2)
        if folds > n_samples:
            raise ValueError(f"cv: {folds} folds need at least {folds} samples, got n_samples={n_samples}")
        return self.cv

    def _check_cv_params(self):
        if self.scoring is not None and not (isinstance(self.scoring, str) or callable(self.scoring)):
            raise ValueError(f"scoring: expected None, a scorer name or a callable, got {self.scoring!r}")


class GroupSparseRegressorCV(_CVMixin, _RegressorBase, BaseEstimator):
    """``GroupSparseRegressor`` with alpha chosen by K-fold cross-validation over a warm-started lambda path.

    Extra parameters: ``lambdas`` (a grid; default ``n_lambdas`` values from lambda_max down to
    ``lambda_min_ratio * lambda_max``; for 'bridge' and 'exp_mask', whose lambda_max is undefined, the group
    lasso's lambda_max sets the scale), ``cv`` (folds: an int, a splitter or an iterable), ``scoring`` (None: R^2).
    Attributes: ``lambdas_`` (decreasing), ``cv_scores_`` (mean held-out score per lambda), ``cv_fold_scores_``,
    ``lambda_`` (= ``alpha_``, the best; ties go to the larger lambda), ``best_index_``, ``coef_path_``
    (n_lambdas, n_targets, n_features) refitted on all the data, and the fitted attributes of the chosen model.
    """
    _base_cls = GroupSparseRegressor


class GroupSparseClassifierCV(_CVMixin, _ClassifierBase, BaseEstimator):
    """``GroupSparseClassifier`` with alpha chosen by stratified K-fold cross-validation over a warm-started
    lambda path; parameters and attributes as ``GroupSparseRegressorCV`` (``scoring`` None: accuracy)."""
    _base_cls = GroupSparseClassifier


