"""Bad-input fuzzing of the public API (issue 14, item 5): for each generated bad value of one argument, the call
must raise ValueError or TypeError whose message names that argument (no silent acceptance, no other exception,
no hang); generated good values must be accepted, and the equivalent spellings of one grouping must give the same
answer.  Runs in the "ci" hypothesis profile by default (few examples); ``--hypothesis-profile=deep`` for more.
The tally (inputs tried, clear errors, unclear errors, crashes, hangs) is printed at the end of the module
(``pytest -s``)."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

import groupsparse as gs  # noqa: E402
from groupsparse import (GroupSparseClassifier, GroupSparseClassifierCV, GroupSparseRegressor,  # noqa: E402
                         GroupSparseRegressorCV, Groups)

from conftest import Hang, examples_scale, time_limit  # the shared helpers of tests/conftest.py

rng = np.random.default_rng(14)
N, P = 24, 6
X = rng.normal(size=(N, P))
Y = X[:, 0] - X[:, 3] + 0.1 * rng.normal(size=N)
YB = (Y > np.median(Y)).astype(float)
YC = np.arange(N) % 3
SIZES = [2, 2, 2]
TALLY = {"tried": 0, "clear": 0, "accepted": 0, "unclear": 0, "crash": 0, "hang": 0, "good": 0}
LIMIT_S = 20.0  # per call: a bad value must be refused at once; a good one solves a 24 x 6 problem


def _examples(n):
    return max(1, int(round(n * examples_scale())))


@pytest.fixture(scope="module", autouse=True)
def _report_tally():
    yield
    print(f"\n[fuzz_inputs] bad inputs tried {TALLY['tried']}: clear errors {TALLY['clear']}, unclear "
          f"{TALLY['unclear']}, accepted {TALLY['accepted']}, crashes {TALLY['crash']}, hangs {TALLY['hang']}; "
          f"good inputs accepted {TALLY['good']}")


def expect_named(call, value, name):
    """``call(value)`` raises ValueError/TypeError naming ``name`` within LIMIT_S; anything else fails."""
    TALLY["tried"] += 1
    try:
        with time_limit(LIMIT_S):
            call(value)
    except Hang:
        TALLY["hang"] += 1
        raise AssertionError(f"{name}={value!r}: no answer within {LIMIT_S} s") from None
    except (ValueError, TypeError) as e:
        if re.search(rf"(?<![A-Za-z_]){re.escape(name)}(?![A-Za-z_])", str(e)):
            TALLY["clear"] += 1
            return
        TALLY["unclear"] += 1
        raise AssertionError(f"{name}={value!r}: {type(e).__name__} does not name {name!r}: {e}") from None
    except Exception as e:  # IndexError, ZeroDivisionError, LinAlgError, ...: a crash
        TALLY["crash"] += 1
        raise AssertionError(f"{name}={value!r}: crashed with {type(e).__name__}: {e}") from None
    TALLY["accepted"] += 1
    raise AssertionError(f"{name}={value!r} was accepted")


def expect_ok(call, value):
    with time_limit(LIMIT_S):
        out = call(value)
    TALLY["good"] += 1
    return out


# ------------------------------------------------------------------------------------------ bad-value strategies
junk = st.one_of(st.none(), st.text(max_size=4), st.booleans(), st.lists(st.floats(0, 1), min_size=1, max_size=2),
                 st.complex_numbers(allow_nan=False, allow_infinity=False, max_magnitude=10).filter(lambda z: z.imag),
                 st.just({"a": 1}))
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])


def _not_none(v):  # for the arguments whose default is None
    return v is not None


def not_nonneg():  # ridge, alpha, lam, refit_ridge: finite reals >= 0 only
    return st.one_of(junk, non_finite, st.floats(max_value=-1e-12, allow_nan=False, allow_infinity=False),
                     st.integers(max_value=-1))


def not_positive():  # tol: finite reals > 0 only
    return st.one_of(junk, non_finite, st.floats(max_value=0.0, allow_nan=False, allow_infinity=False))


def not_int(low, high=None):  # integers in [low, high] only: floats such as 2.5 or 3.0 are not truncated
    out = [junk, non_finite, st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: v != int(v) or True),
           st.integers(max_value=low - 1)]
    if high is not None:
        out.append(st.integers(min_value=high + 1, max_value=high + 1000))
    return st.one_of(*out)


def not_bool():
    return st.one_of(st.none(), st.text(max_size=4), st.integers(-2, 2), st.floats(allow_nan=True))


def not_choice(choices):
    return st.one_of(st.text(max_size=8).filter(lambda s: s not in choices), st.integers(), st.none(),
                     st.booleans())


def bad_array(shape, name_kind):
    """Arrays of the right shape holding a NaN/inf, or of a wrong shape, ragged lists, strings, empty ones."""
    n = int(np.prod(shape))

    @st.composite
    def poisoned(draw):
        a = draw(st.sampled_from([X, Y, YB]) if False else st.just(np.ones(shape)))
        a = np.array(a, dtype=float)
        a.flat[draw(st.integers(0, n - 1))] = draw(non_finite)
        return a

    ragged = st.just([[1.0, 2.0], [3.0]] * (shape[0] // 2))
    return st.one_of(poisoned(), ragged, st.just(np.zeros((0,) + tuple(shape[1:]))),
                     st.just(np.full(shape, "a")), st.just(np.ones(shape + (2, 2))), st.none(), st.text(max_size=3))


# ------------------------------------------------------------------------------------------ the calls
def LS(**kw):
    return gs.LeastSquares(X, Y, **kw)


CONSTRUCTOR_ARGS = {
    # name: (call(value), bad strategy)
    "X": (lambda v: gs.LeastSquares(v, Y), bad_array((N, P), "X")),
    "y": (lambda v: gs.LeastSquares(X, v), st.one_of(bad_array((N,), "y"), st.just(np.ones(N - 1)))),
    "fit_intercept": (lambda v: gs.Logistic(X, YB, fit_intercept=v), not_bool()),
    "ridge": (lambda v: gs.Multinomial(X, YC, ridge=v), not_nonneg()),
    "n_classes": (lambda v: gs.Multinomial(X, YC, n_classes=v), st.one_of(not_int(3), st.just(2)).filter(_not_none)),
    "lam": (lambda v: gs.GroupLasso(v), not_nonneg()),
    "gamma": (lambda v: gs.GroupMCP(0.1, gamma=v),
              st.one_of(junk, non_finite, st.floats(max_value=1.0, allow_nan=False, allow_infinity=False))),
    "eps": (lambda v: gs.GroupLogSum(0.1, eps=v),
            st.one_of(junk, non_finite, st.floats(max_value=0.0, allow_nan=False, allow_infinity=False))),
    "q": (lambda v: gs.GroupBridge(0.1, q=v),
          st.one_of(junk, non_finite, st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: not 0 < v < 1))),
    "l1_ratio": (lambda v: gs.SparseGroupLasso(0.1, l1_ratio=v),
                 st.one_of(junk, non_finite, st.floats(allow_nan=False).filter(lambda v: not 0 <= v <= 1))),
    "sizes": (lambda v: Groups.from_sizes(v),
              st.one_of(st.just([]), st.lists(st.integers(-3, 0), min_size=1, max_size=4),
                        st.lists(st.floats(0.1, 5).filter(lambda v: v != int(v)), min_size=1, max_size=3),
                        st.lists(st.booleans(), min_size=1, max_size=3), st.integers(1, 5))),
    "labels": (lambda v: Groups.from_labels(v),
               st.one_of(st.just([]), st.just([math.nan, 1.0, 1.0]), st.just([[0, 1], [1]]),
                         st.just(np.zeros((2, 3))), st.just([0.5, 1.5]))),
    "weights": (lambda v: Groups.from_sizes(SIZES, weights=v),
                st.one_of(st.lists(st.floats(allow_nan=False), min_size=3, max_size=3).filter(lambda w: min(w) < 0),
                          st.lists(st.floats(0, 1), min_size=1, max_size=2), st.just([math.nan, 1, 1]),
                          st.just(["a", "b", "c"]), st.just([math.inf, 1, 1]))),
    "block": (lambda v: Groups.block_tiling((4, 6), v),
              st.one_of(st.integers(max_value=0), st.floats(0.5, 3).filter(lambda v: v != int(v)), st.text(max_size=2),
                        st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 2)), st.booleans(),
                        st.sampled_from([3, 4, 5, (4, 4), (3, 2)]))),  # blocks that do not tile 4 x 6
    "shape": (lambda v: Groups.block_tiling(v, 2),
              st.one_of(st.integers(1, 9), st.tuples(st.integers(-3, 0), st.integers(1, 4)),
                        st.tuples(st.floats(1.5, 4.5).filter(lambda v: v != int(v)), st.just(4)), st.text(max_size=2))),
}


def _groups_bad():
    """groups arguments that fit no reading for p = 6: not a label per column, not sizes summing to 6, not a
    partition by index lists (or the ambiguous [1] * 6)."""
    return st.one_of(
        st.floats(allow_nan=True).filter(lambda v: not float(v).is_integer() if math.isfinite(v) else True),
        st.booleans(), st.text(max_size=3), st.just([1] * P), st.just({0, 1}),
        st.integers(max_value=0), st.sampled_from([4, 5, 7]),  # ints that do not divide 6
        st.lists(st.integers(1, 4), min_size=1, max_size=5).filter(lambda s: sum(s) != P and len(s) != P),
        st.lists(st.integers(-3, 0), min_size=1, max_size=4).filter(lambda s: len(s) != P),
        st.lists(st.lists(st.integers(0, P + 2), min_size=1, max_size=4), min_size=1, max_size=4).filter(
            lambda gl: sorted(i for g in gl for i in g) != list(range(P))),
        st.lists(st.floats(0, 5), min_size=P, max_size=P).map(lambda v: v[:2] + [math.nan] + v[3:]))


SOLVE_ARGS = {
    "groups": (lambda v: gs.solve(LS(), gs.GroupLasso(0.1), v), _groups_bad()),
    "tol": (lambda v: gs.solve(LS(), gs.GroupLasso(0.1), SIZES, tol=v), not_positive()),
    "max_iter": (lambda v: gs.solve(LS(), gs.GroupLasso(0.1), SIZES, max_iter=v), not_int(1).filter(_not_none)),
    "solver": (lambda v: gs.solve(LS(), gs.GroupLasso(0.1), SIZES, solver=v), not_choice(("auto", "bcd", "fista"))),
    "warm_start": (lambda v: gs.solve(LS(), gs.GroupLasso(0.1), SIZES, warm_start=v),
                   st.one_of(bad_array((P,), "warm_start"), st.just(np.zeros(P + 1))).filter(_not_none)),
    "verbose": (lambda v: gs.solve(LS(), gs.GroupLasso(0.1), SIZES, verbose=v), not_bool().filter(lambda v: v is not None)),
    "lambdas": (lambda v: gs.solve_path(LS(), gs.GroupLasso(0.1), SIZES, v),
                st.one_of(st.just([]), st.lists(st.floats(max_value=-1e-9), min_size=1, max_size=3),
                          st.lists(non_finite, min_size=1, max_size=2), st.just([[0.1, 0.01], [0.001]]),
                          st.just([[0.1, 0.01]]), st.text(min_size=1, max_size=3))),
    "n_lambdas": (lambda v: gs.solve_path(LS(), gs.GroupLasso(0.1), SIZES, n_lambdas=v), not_int(1)),
    "lambda_min_ratio": (lambda v: gs.solve_path(LS(), gs.GroupLasso(0.1), SIZES, n_lambdas=2, lambda_min_ratio=v),
                         st.one_of(junk, non_finite, st.floats(allow_nan=False).filter(lambda v: not 0 < v < 1))),
    "penalty": (lambda v: gs.lambda_max(LS(), v, SIZES), st.one_of(junk, st.integers())),
    "checkpoint": (lambda v: gs.solve_path(LS(), gs.GroupLasso(0.1), SIZES, n_lambdas=2, checkpoint=v),
                   st.one_of(st.integers(), st.floats(), st.just([1]), st.just("/nonexistent-folder/x.ckpt"))),
    "k": (lambda v: gs.select(LS(), SIZES, v), not_int(1, len(SIZES))),
    "method": (lambda v: gs.select(LS(), SIZES, 2, method=v), not_choice(tuple(gs.selection.METHODS))),
    "init": (lambda v: gs.select(LS(), SIZES, 2, method="omp", init=v),
             st.one_of(st.lists(st.integers(max_value=-1), min_size=1, max_size=2),
                       st.lists(st.integers(min_value=len(SIZES)), min_size=1, max_size=2),
                       st.integers(0, 2).map(lambda i: [i, i]), st.just([0, 1, 2]),
                       st.lists(st.floats(0.1, 1.9).filter(lambda v: v != 1.0), min_size=1, max_size=2))),
    "bound": (lambda v: gs.select(LS(), SIZES, 2, bound=v), not_bool().filter(lambda v: v is not None)),
    "refit_ridge": (lambda v: gs.select(LS(), SIZES, 2, refit_ridge=v), not_nonneg().filter(lambda v: v is not None)),
    "lr": (lambda v: gs.select(LS(), SIZES, 2, method="sa", steps=2, lr=v), not_positive()),
    "per_step": (lambda v: gs.select(LS(), SIZES, 2, method="sa", steps=2, per_step=v), not_int(1)),
    "n_cycles": (lambda v: gs.select(LS(), SIZES, 2, method="acdc", n_cycles=v), not_int(1)),
    "relax": (lambda v: gs.select(LS(), SIZES, 2, method="iht", relax=v),
              st.one_of(junk, non_finite, st.floats(max_value=0.999, allow_nan=False))),
    "ks": (lambda v: gs.selection.select_path(LS(), SIZES, v, method="omp"),
           st.one_of(st.just([]), st.lists(not_int(1).filter(_not_none), min_size=1, max_size=2), st.integers(),
                     st.text(max_size=2))),
    "criterion": (lambda v: gs.selection.choose_k(X, Y, SIZES, [1, 2], criterion=v),
                  not_choice(("ebic", "gic", "bic", "cv"))),
    "selected": (lambda v: Groups.from_sizes(SIZES).columns(v),
                 st.one_of(st.lists(st.integers(max_value=-1), min_size=1, max_size=2),
                           st.lists(st.integers(min_value=len(SIZES)), min_size=1, max_size=2),
                           st.integers(0, 2).map(lambda i: [i, i]),
                           st.lists(st.floats(0.1, 1.9).filter(lambda v: v != 1.0), min_size=1, max_size=2))),
    "target": (lambda v: gs.schedules.exp_ramp(0.5, v),
               st.one_of(junk, non_finite, st.floats(allow_nan=False).filter(lambda v: not 0 <= v < 1))),
    "t": (lambda v: gs.schedules.acdc_imagenet(0.5).sparsity(v),
          st.one_of(non_finite, st.text(min_size=1, max_size=3), st.none())),
}


def _fit(cls, **kw):
    yy = YB if "Classifier" in cls.__name__ else Y
    extra = {"n_lambdas": 2, "cv": 2} if "CV" in cls.__name__ else {}
    return cls(**{**extra, **kw}).fit(X, yy)


ESTIMATOR_ARGS = {
    "alpha": ((GroupSparseRegressor, GroupSparseClassifier), not_nonneg()),
    "ridge": ((GroupSparseRegressor, GroupSparseClassifierCV), not_nonneg()),
    "tol": ((GroupSparseRegressor, GroupSparseRegressorCV), not_positive()),
    "max_iter": ((GroupSparseClassifier, GroupSparseRegressorCV), not_int(1)),
    "fit_intercept": ((GroupSparseRegressor, GroupSparseClassifier), not_bool()),
    "solver": ((GroupSparseRegressor,), not_choice(("auto", "bcd", "fista"))),
    "penalty": ((GroupSparseRegressor, GroupSparseClassifierCV), not_choice(tuple(gs.estimators.PENALTIES))),
    "groups": ((GroupSparseRegressor, GroupSparseClassifier, GroupSparseRegressorCV),
               _groups_bad().filter(lambda v: v is not None)),
    "lambdas": ((GroupSparseRegressorCV, GroupSparseClassifierCV), SOLVE_ARGS["lambdas"][1]),
    "n_lambdas": ((GroupSparseRegressorCV,), not_int(1).filter(lambda v: v is not None)),
    "lambda_min_ratio": ((GroupSparseClassifierCV,), SOLVE_ARGS["lambda_min_ratio"][1].filter(lambda v: v is not None)),
    "cv": ((GroupSparseRegressorCV, GroupSparseClassifierCV),
           st.one_of(st.integers(max_value=1), st.integers(N + 1, N + 100), st.floats(2.1, 4.9), st.booleans())),
}


# ------------------------------------------------------------------------------------------ bad values: named
@pytest.mark.parametrize("name", list(CONSTRUCTOR_ARGS))
def test_fuzz_constructor_argument_is_named(name):
    call, bad = CONSTRUCTOR_ARGS[name]

    @settings(max_examples=_examples(8), deadline=None)
    @given(bad)
    def run(value):
        expect_named(call, value, name)
    run()


@pytest.mark.parametrize("name", list(SOLVE_ARGS))
def test_fuzz_solve_select_option_is_named(name):
    call, bad = SOLVE_ARGS[name]

    @settings(max_examples=_examples(8), deadline=None)
    @given(bad)
    def run(value):
        expect_named(call, value, name)
    run()


@pytest.mark.parametrize("name", list(ESTIMATOR_ARGS))
def test_fuzz_estimator_parameter_is_named(name):
    classes, bad = ESTIMATOR_ARGS[name]
    penalty = {"gamma": "mcp"}.get(name, "group_lasso")

    @settings(max_examples=_examples(5), deadline=None)
    @given(st.sampled_from(classes), bad)
    def run(cls, value):
        kw = {name: value}
        if name != "penalty":
            kw.setdefault("penalty", penalty)
        expect_named(lambda v: _fit(cls, **{**kw, name: v}), value, name)
    run()


# ------------------------------------------------------------------------------------------ good values: accepted
@st.composite
def partitions(draw):
    """A random partition of range(P) into consecutive sizes, as sizes / labels / index lists / Groups."""
    cuts = sorted(draw(st.sets(st.integers(1, P - 1), max_size=P - 1)))
    sizes = np.diff([0, *cuts, P]).tolist()
    return sizes


@settings(max_examples=_examples(10), deadline=None)
@given(partitions(), st.integers(0, 10**6))
def test_fuzz_groups_spellings_agree(sizes, seed):
    """Every accepted spelling of one grouping gives the same solution (the rule of groups.as_groups), up to the
    distance that the duality gaps allow: least squares is mu-strongly convex (mu = smallest eigenvalue of
    X^T X / n), so ||b - b*||^2 <= 2 gap / mu for each solve."""
    r = np.random.default_rng(seed)
    ids = np.repeat(np.arange(len(sizes)), sizes)
    names = r.permutation(100)[: len(sizes)] + 2  # arbitrary label values (never all 1: that is ambiguous)
    spellings = [Groups.from_sizes(sizes), [np.flatnonzero(ids == g).tolist() for g in range(len(sizes))],
                 [f"g{names[i]}" for i in ids], names[ids].tolist()]
    if len(sizes) != P:  # sizes of any length but P (a length-P int list is labels)
        spellings.append(sizes)
    if len(set(sizes)) == 1:
        spellings.append(sizes[0])
    loss = gs.LeastSquares(X, Y)
    mu = float(np.linalg.eigvalsh(X.T @ X / N)[0])
    lam = 0.3 * gs.lambda_max(loss, gs.GroupLasso(1.0), Groups.from_sizes(sizes))
    sols = [expect_ok(lambda v: gs.solve(loss, gs.GroupLasso(lam), v, tol=1e-12), g) for g in spellings]
    # a gap is known to rounding only: ~ eps |objective| even where it prints as 0
    gap = [max(s.certificate, 0.0) + 10 * np.finfo(float).eps * abs(s.objective) for s in sols]
    for sol, g in zip(sols, gap):
        assert sol.converged and sol.certificate_kind == "duality_gap"
        radius = np.sqrt(2 * g / mu) + np.sqrt(2 * gap[0] / mu)
        assert np.linalg.norm(sol.coef - sols[0].coef) <= radius, (sizes, sol, sols[0])


@settings(max_examples=_examples(10), deadline=None)
@given(ridge=st.floats(0, 10), tol=st.floats(1e-10, 1e-2), max_iter=st.integers(1, 50),
       fit_intercept=st.booleans(), solver=st.sampled_from(["auto", "bcd", "fista"]),
       alpha=st.floats(1e-2, 1.0))
def test_fuzz_good_estimator_parameters_are_accepted(ridge, tol, max_iter, fit_intercept, solver, alpha):
    import warnings
    from sklearn.exceptions import ConvergenceWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter = 1 may stop early: that is a warning
        est = expect_ok(lambda v: GroupSparseRegressor(groups=SIZES, alpha=alpha, ridge=ridge, tol=tol,
                                                       max_iter=max_iter, fit_intercept=v, solver=solver).fit(X, Y),
                        fit_intercept)
    assert est.coef_.shape == (P,) and np.all(np.isfinite(est.coef_))
    assert (est.intercept_ != 0) == fit_intercept or not fit_intercept  # no intercept unless asked for


@settings(max_examples=_examples(10), deadline=None)
@given(k=st.integers(1, len(SIZES)), data=st.data())
def test_fuzz_good_select_init_and_k_are_accepted(k, data):
    init = data.draw(st.lists(st.integers(0, len(SIZES) - 1), unique=True, max_size=k))
    sol = expect_ok(lambda v: gs.select(LS(), SIZES, k, method="omp", init=v), init)
    assert sol.support.size <= k and set(init) <= set(sol.support.tolist())  # OMP keeps its warm support


@settings(max_examples=_examples(10), deadline=None)
@given(st.lists(st.floats(1e-3, 1.0), min_size=1, max_size=4))
def test_fuzz_good_lambdas_are_accepted(lams):
    sols = expect_ok(lambda v: gs.solve_path(LS(), gs.GroupLasso(1.0), SIZES, v, tol=1e-8), lams)
    assert [s.lam for s in sols] == [float(v) for v in lams]
