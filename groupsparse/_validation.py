"""Input checks shared by losses, penalties, solvers, selection and estimators.

Each helper checks one concept and raises ``ValueError("<argument>: expected ..., got ...")``: the message starts
with the argument's name and says which values are accepted.  Booleans are refused wherever a number is expected
(``True`` is an ``int`` in Python, so ``ridge=True`` would otherwise silently mean 1).
"""
from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp


def _is_bool(v):
    return isinstance(v, (bool, np.bool_))


def check_bool(v, name):
    """True or False (numpy bools too); 'no', 0, 1 or None are refused rather than read by truthiness."""
    if not _is_bool(v):
        raise ValueError(f"{name}: expected True or False, got {v!r}")
    return bool(v)


def check_real(v, name):
    """One real number (bools, complex, strings and arrays are refused, naming the argument)."""
    if _is_bool(v) or isinstance(v, (str, bytes, complex, np.complexfloating)):
        raise ValueError(f"{name}: expected a real number, got {v!r}")  # float("1") or float(True) hides a slip
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v[()]
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a real number, got {v!r}") from None


def check_finite_real(v, name):
    """One finite real number."""
    x = check_real(v, name)
    if not np.isfinite(x):
        raise ValueError(f"{name}: expected a finite real number, got {v!r}")
    return x


def check_nonneg(v, name):
    """A finite real number >= 0 (a penalty or ridge weight)."""
    x = check_real(v, name)
    if not (x >= 0 and np.isfinite(x)):
        raise ValueError(f"{name}: must be a finite number >= 0, got {v!r}")
    return x


def check_tol(v, name="tol"):
    """A finite real number > 0 (a tolerance, a step, a time limit)."""
    x = check_real(v, name)
    if not (x > 0 and np.isfinite(x)):
        raise ValueError(f"{name}: must be a positive finite number, got {v!r}")
    return x


def check_open_unit(v, name):
    """A real number in the open interval (0, 1) (a ratio such as lambda_min_ratio)."""
    x = check_real(v, name)
    if not 0 < x < 1:
        raise ValueError(f"{name}: must lie in (0, 1), got {v!r}")
    return x


def check_positive_int(v, name, low=1, high=None):
    """An integer in [low, high] (bools and floats such as 2.5 or 3.0 are refused, not truncated)."""
    if _is_bool(v) or not isinstance(v, numbers.Integral):
        raise ValueError(f"{name}: expected an integer, got {v!r}")
    if v < low or (high is not None and v > high):
        rng = f"in [{low}, {high}]" if high is not None else f"an integer >= {low}"
        raise ValueError(f"{name}: must be {rng}, got {v}")
    return int(v)


def check_choice(v, name, choices):
    """One of a few strings (an unknown option is an error, never the default)."""
    if not isinstance(v, str) or v not in choices:
        raise ValueError(f"{name}: expected one of {sorted(choices)}, got {v!r}")
    return v


def check_callable(v, name, what="a callable"):
    if not callable(v):
        raise ValueError(f"{name}: expected {what}, got {v!r}")
    return v


def _as_array(a, name, dtype=None):
    """np.asarray that names the argument when numpy cannot build a regular array (ragged lists, objects)."""
    try:
        return np.asarray(a) if dtype is None else np.asarray(a, dtype=dtype)
    except (TypeError, ValueError) as e:
        detail = "ragged nested sequences (rows of different lengths)" if "inhomogeneous" in str(e) else \
            f"a {type(a).__name__}"
        raise ValueError(f"{name}: expected a numeric array, got {detail}") from None


def check_finite_array(a, name, ndim=(1, 2)):
    """A float ndarray with no NaN/inf and one of the allowed numbers of dimensions."""
    if sp.issparse(a):
        raise ValueError(f"{name}: expected a dense array, got a scipy.sparse matrix")
    arr = _as_array(a, name)
    if arr.dtype.kind == "c":  # np.asarray(.., float) would drop the imaginary part with only a warning
        raise ValueError(f"{name}: complex values are not supported")
    if arr.dtype.kind not in "biufO":  # strings, dates: float("1") would hide a slip
        raise ValueError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    arr = _as_array(arr, name, float)  # object arrays of numbers convert; None or strings inside do not
    if arr.ndim not in ndim:
        raise ValueError(f"{name}: expected {' or '.join(map(str, ndim))} dimensions, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: is empty, shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or inf")
    return arr


def check_X(X):
    """Dense 2-D float array or scipy.sparse matrix, non-empty, finite."""
    if sp.issparse(X):
        if X.dtype.kind == "c":
            raise ValueError("X: complex values are not supported")
        if X.dtype.kind not in "biuf":
            raise ValueError(f"X: expected a numeric sparse matrix, got dtype {X.dtype}")
        X = X.astype(float)
        if X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(f"X: is empty, shape {X.shape}")
        if not np.all(np.isfinite(X.data)):
            raise ValueError("X: contains NaN or inf")
        return X
    return check_finite_array(X, "X", ndim=(2,))


def check_index_set(v, name, n, max_size=None):
    """Distinct integer ids in [0, n) (a support, a warm start set of groups), as a sorted int64 array.

    Negative ids are refused rather than wrapped (numpy would read -1 as the last group)."""
    arr = _as_array(v, name)
    if arr.ndim > 1:
        raise ValueError(f"{name}: expected a 1-D sequence of group ids, got shape {arr.shape}")
    arr = arr.ravel()
    if arr.size and (arr.dtype.kind not in "iu"):
        raise ValueError(f"{name}: expected integer group ids in [0, {n}), got {arr[:5].tolist()}")
    arr = arr.astype(np.int64)
    bad = arr[(arr < 0) | (arr >= n)]
    if bad.size:
        raise ValueError(f"{name}: group ids must lie in [0, {n}), got {bad[:5].tolist()}")
    uniq = np.unique(arr)
    if uniq.size != arr.size:
        raise ValueError(f"{name}: group ids must be distinct, got {arr[:10].tolist()}")
    if max_size is not None and uniq.size > max_size:
        raise ValueError(f"{name}: holds {uniq.size} groups, more than the budget k={max_size}")
    return uniq


def check_instance(v, name, cls, what):
    """An instance of ``cls`` (e.g. a groupsparse penalty); ``what`` names the accepted kinds in the message."""
    if not isinstance(v, cls):
        raise ValueError(f"{name}: expected {what}, got {type(v).__name__} {v!r}"[:300])
    return v
