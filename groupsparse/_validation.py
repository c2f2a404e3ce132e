"""Input checks shared by losses, penalties, solvers and estimators: each error names the argument."""
from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse as sp


def check_real(v, name):
    """One real number (complex, strings and arrays are refused, naming the argument)."""
    if isinstance(v, (str, bytes, complex, np.complexfloating)):  # float("1") or float(1+0j) would hide a slip
        raise ValueError(f"{name}: expected a real number, got {v!r}")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a real number, got {v!r}") from None


def check_finite_array(a, name, ndim=(1, 2)):
    """A float ndarray with no NaN/inf and one of the allowed numbers of dimensions."""
    if np.iscomplexobj(a):  # np.asarray(.., float) would drop the imaginary part with only a warning
        raise ValueError(f"{name}: complex values are not supported")
    try:
        arr = np.asarray(a, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a numeric array, got {type(a).__name__}") from None
    if arr.ndim not in ndim:
        raise ValueError(f"{name}: expected {' or '.join(map(str, ndim))} dimensions, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name}: is empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or inf")
    return arr


def check_X(X):
    """Dense 2-D float array or scipy.sparse matrix, non-empty, finite."""
    if sp.issparse(X):
        if np.iscomplexobj(X.data):
            raise ValueError("X: complex values are not supported")
        X = X.astype(float)
        if X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(f"X: is empty, shape {X.shape}")
        if not np.all(np.isfinite(X.data)):
            raise ValueError("X: contains NaN or inf")
        return X
    return check_finite_array(X, "X", ndim=(2,))


def check_positive_int(v, name, low=1, high=None):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise ValueError(f"{name}: expected an integer, got {v!r}")
    if v < low or (high is not None and v > high):
        rng = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name}: must be in {rng}, got {v}")
    return int(v)


def check_nonneg(v, name):
    """A finite real number >= 0 (a penalty or ridge weight)."""
    x = check_real(v, name)
    if not (x >= 0 and np.isfinite(x)):
        raise ValueError(f"{name}: must be a finite number >= 0, got {v!r}")
    return x


def check_tol(v, name="tol"):
    x = check_real(v, name)
    if not (x > 0 and np.isfinite(x)):
        raise ValueError(f"{name}: must be a positive finite number, got {v!r}")
    return x
