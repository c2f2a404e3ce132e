"""Optional numba kernel for the hottest loop: a BCD epoch of the group lasso on dense, single-output least squares.

numba is not a requirement (it comes with the bench extra, through skglm). Where it imports, this kernel replaces
the numpy epoch of ``bcd._bcd_epoch_fast``, which stays the reference and the fallback; both do the same arithmetic
in the same order of groups, so they agree to rounding (tested). Set GROUPSPARSE_NO_JIT=1 to force the fallback.
"""
from __future__ import annotations

import math
import os

import numpy as np

try:
    if os.environ.get("GROUPSPARSE_NO_JIT"):
        raise ImportError
    import numba
except ImportError:  # pragma: no cover - depends on the environment
    numba = None


def _group_lasso_epoch(X, starts, stops, ws, w, r, L, lws, inv_n):
    """One cyclic pass over ``ws``: block prox-gradient step per group, residual r = Xw - y updated in place.
    Returns the largest L_g * ||step_g|| (the fixed-point residual the inner loop stops on)."""
    n = X.shape[0]
    worst = 0.0
    z = np.empty(int(np.max(stops - starts)) if stops.size else 0)
    for g in ws:
        a, b = starts[g], stops[g]
        Lg = L[g]
        nz2 = 0.0
        for j in range(b - a):
            s = 0.0
            for i in range(n):
                s += X[i, a + j] * r[i]
            z[j] = w[a + j] - s * (inv_n / Lg)
            nz2 += z[j] * z[j]
        lw = lws[g]
        if lw == 0.0:
            scale = 1.0
        else:
            nz = math.sqrt(nz2)
            scale = max(nz - lw / Lg, 0.0) / nz if nz > 0.0 else 0.0
        step2 = 0.0
        for j in range(b - a):
            z[j] = z[j] * scale - w[a + j]  # z now holds the step d
            step2 += z[j] * z[j]
        if step2 == 0.0:
            continue
        worst = max(worst, Lg * math.sqrt(step2))
        for j in range(b - a):
            d = z[j]
            if d != 0.0:
                w[a + j] += d
                for i in range(n):
                    r[i] += X[i, a + j] * d
    return worst


group_lasso_epoch = None if numba is None else numba.njit(cache=True, nogil=True, fastmath=True)(_group_lasso_epoch)
