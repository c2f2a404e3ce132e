"""Choosing the number of groups k: a path in k with warm starts, scored by cross-validation or an information
criterion.

* ``select_path``: solutions for increasing k, each method run warm-started from the previous support (the
  methods complete a short support greedily), as abess does along support sizes.
* Information criteria on the deviance D (n log(RSS/n) for least squares, 2 n mean log-loss for GLMs), with df
  the number of nonzero coefficients:  BIC = D + df log n;  EBIC (Chen & Chen 2008) = BIC + 2 gamma log C(G, k);
  GIC (Fan & Tang 2013, as abess uses it) = D + df log(log n) log(p).
* ``choose_k``: the k minimising the criterion, or for ``'cv'`` the smallest k whose mean held-out loss over
  ``cv`` folds (paths fitted on the training folds) is within one standard error of the best (``one_se``), then
  the solution at that k on all the data.
"""
from __future__ import annotations

import math

import numpy as np

from ..losses import LeastSquares, Logistic, Multinomial
from .._validation import check_bool, check_choice, check_nonneg, check_positive_int

__all__ = ["select_path", "information_criterion", "choose_k"]

_LOSSES = {"ls": LeastSquares, "logistic": Logistic, "multinomial": Multinomial}


def _check_ks(ks):
    """A non-empty collection of budgets k >= 1 (integers: 2.5 or '2' are refused, not truncated), ascending."""
    if isinstance(ks, (str, bytes)) or not hasattr(ks, "__iter__"):
        raise ValueError(f"ks: expected a non-empty list of integer budgets, got {ks!r}")
    out = sorted({check_positive_int(k, "ks") for k in (ks.tolist() if isinstance(ks, np.ndarray) else ks)})
    if not out:
        raise ValueError("ks: expected a non-empty list of integer budgets, got none")
    return out


def select_path(loss, groups, ks, method="local_search", **options):
    """``select`` for each k in ``ks`` (ascending), each warm-started from the previous support."""
    from . import select
    ks = _check_ks(ks)
    out, prev = [], None
    for k in ks:
        opts = dict(options)
        if prev is not None and method not in ("iht", "htp", "arht", "sa++"):
            opts.setdefault("init", prev)
        sol = select(loss, groups, k, method=method, **opts)
        out.append(sol)
        prev = sol.support
    return out


def information_criterion(sol, loss, criterion="ebic", gamma=0.5):
    """EBIC / GIC / BIC of a budgeted ``Solution`` of ``loss`` (module docstring)."""
    check_choice(criterion, "criterion", ("ebic", "gic", "bic"))
    gamma = check_nonneg(gamma, "gamma")
    n = loss.n_samples
    df = int(np.count_nonzero(sol.coef)) + (loss.n_outputs if loss.fit_intercept else 0)
    if isinstance(loss, LeastSquares):
        dev = n * math.log(max(2.0 * sol.objective, 1e-300))
    else:
        dev = 2.0 * n * sol.objective
    G = int(sol.info.get("n_groups", 0)) or None
    k = len(sol.support)
    if criterion == "bic":
        return dev + df * math.log(n)
    if criterion == "ebic":
        if G is None:
            raise ValueError("information_criterion: the solution does not record n_groups")
        return dev + df * math.log(n) + 2.0 * gamma * (math.lgamma(G + 1) - math.lgamma(k + 1) - math.lgamma(G - k + 1))
    if criterion == "gic":
        p = loss.n_features
        return dev + df * math.log(math.log(n)) * math.log(p)
    raise ValueError(f"criterion: expected one of 'ebic', 'gic', 'bic', 'cv', got {criterion!r}")


def choose_k(X, y, groups, ks, *, loss="ls", criterion="ebic", method="local_search", cv=5, seed=0,
             fit_intercept=False, gamma=0.5, one_se=True, **options):
    """Pick k over ``ks`` by ``criterion`` ('ebic', 'gic', 'bic' or 'cv').  Returns (k, Solution, scores)."""
    Loss = _LOSSES[check_choice(loss, "loss", _LOSSES)]
    check_choice(criterion, "criterion", ("ebic", "gic", "bic", "cv"))  # before any work
    gamma, one_se = check_nonneg(gamma, "gamma"), check_bool(one_se, "one_se")
    ks = _check_ks(ks)
    full = Loss(X, y, fit_intercept=fit_intercept)  # checks X and y, naming them
    X, y = np.asarray(X, float), np.asarray(y)
    if criterion == "cv":
        n = X.shape[0]
        cv = check_positive_int(cv, "cv", low=2, high=n)  # int(2.5) would silently give 2 folds
        folds = np.array_split(np.random.default_rng(seed).permutation(n), cv)
        err = np.zeros((len(folds), len(ks)))
        for fi, f in enumerate(folds):
            tr = np.setdiff1d(np.arange(n), f)
            train = Loss(X[tr], y[tr], fit_intercept=fit_intercept)
            test = Loss(X[f], y[f], fit_intercept=fit_intercept, **({"n_classes": full.n_outputs}
                                                                  if loss == "multinomial" else {}))
            for i, sol in enumerate(select_path(train, groups, ks, method=method, **options)):
                flat = sol.coef if sol.intercept is None else np.concatenate([sol.coef, sol.intercept])
                err[fi, i] = test.value(flat)
        mean = err.mean(axis=0)
        se = err.std(axis=0, ddof=1) / np.sqrt(len(folds)) if len(folds) > 1 else np.zeros(len(ks))
        i0 = int(np.argmin(mean))
        # one-standard-error rule (Breiman et al. 1984): the smallest k within one SE of the best mean error
        best = ks[int(np.flatnonzero(mean <= mean[i0] + se[i0])[0])] if one_se else ks[i0]
        scores = dict(zip(ks, mean.tolist()))
        from . import select
        return best, select(full, groups, best, method=method, **options), scores
    path = select_path(full, groups, ks, method=method, **options)
    vals = [information_criterion(s, full, criterion, gamma) for s in path]
    i = int(np.argmin(vals))
    return ks[i], path[i], dict(zip(ks, vals))
