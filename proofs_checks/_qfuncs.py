"""The q functions of SA++ Eq. (1): strictly increasing, q(0) = 0; subadditive ones are Theorem 1.1's class.

Each entry: (q, q_inv or None).  ``SUBADDITIVE`` are in Theorem 1.1's class (q(a+b) <= q(a) + q(b)); the
last one is subadditive without being concave (|sin(a+b)| <= |sin a| + |sin b|; slope >= 1/2 > 0), the case
the paper says the class strictly contains.  ``NOT_SUBADDITIVE`` are the negative controls.
"""
from __future__ import annotations

import numpy as np

from groupsparse.penalties import exp_mask_q

# Closed-form inverses clamp at 0: a solver may pass a q-sum that rounding made slightly negative.
SUBADDITIVE = {
    "x": (lambda x: x, lambda s: max(s, 0.0)),
    "x^(1/2)": (lambda x: x ** 0.5, lambda s: max(s, 0.0) ** 2),
    "x^(2/3)": (lambda x: x ** (2 / 3), lambda s: max(s, 0.0) ** 1.5),
    "log(1+x)": (np.log1p, lambda s: np.expm1(max(s, 0.0))),
    "x+|sin x|/2": (lambda x: x + 0.5 * abs(np.sin(x)), None),
}
NOT_SUBADDITIVE = {
    "x^2": (lambda x: x * x, lambda s: np.sqrt(max(s, 0.0))),
    "lambert_w_exp_mask": (lambda x: float(exp_mask_q(x)), None),
}
BOUNDED = {"1-exp(-x)": (lambda x: -np.expm1(-x), lambda s: -np.log1p(-s))}
