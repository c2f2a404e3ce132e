"""Demo (the README's main command): a sparse group additive model on scikit-learn's diabetes data.

    python -m groupsparse.demo [--out out/demo_path.png] [--n-lambdas 25] [--cv 5] [--n-knots 4] [--seed 0]

Each of the 10 original features is expanded into a cubic spline basis (``SplineTransformer``) that forms one
group, so selecting a group selects a feature and its fitted curve f_j(x_j).  Each basis is centered and
orthonormalized on the training data (X_g^T X_g / n = I, rank-deficient directions dropped, as grpreg does), so
||beta_g|| is the RMS of f_j over the training sample.  The group lasso and the group MCP are fitted along a
warm-started lambda path (with a tiny ridge, 1e-3: the
blood-serum features s1 and s2 are nearly collinear, and without it the MCP's unpenalized region leaves a
near-singular least-squares problem that coordinate descent crawls through), lambda is chosen by 5-fold cross-validation, and the held-out R^2 on a 25% test split
is printed with the selected features.  The group norms along both paths are plotted to ``--out``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import SplineTransformer
from sklearn.utils.validation import check_is_fitted

from .estimators import GroupSparseRegressorCV
from .groups import Groups

PENALTIES = (("group lasso", "group_lasso", {}), ("group MCP", "mcp", {"gamma": 3.0}))


class GroupSplineBasis(TransformerMixin, BaseEstimator):
    """Each column -> a cubic spline basis, centered and orthonormalized within the column's group on the data
    it is fitted on.  ``groups_`` gives the group sizes (a binary column keeps a single direction)."""

    def __init__(self, n_knots=4, degree=3):
        self.n_knots = n_knots
        self.degree = degree

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=float)
        self.spline_ = SplineTransformer(n_knots=self.n_knots, degree=self.degree).fit(X)
        S = self.spline_.transform(X)
        n, m = S.shape[0], S.shape[1] // X.shape[1]
        self.mean_, self.proj_, sizes = [], [], []
        for j in range(X.shape[1]):
            A = S[:, j * m:(j + 1) * m]
            mu = A.mean(axis=0)
            U, s, Vt = np.linalg.svd(A - mu, full_matrices=False)
            r = int(np.sum(s > 1e-8 * s[0]))
            self.mean_.append(mu)
            self.proj_.append(Vt[:r].T / s[:r] * np.sqrt(n))  # (A - mu) @ proj has Z^T Z / n = I
            sizes.append(r)
        self.groups_ = Groups.from_sizes(sizes)
        return self

    def transform(self, X):
        check_is_fitted(self)
        S = self.spline_.transform(np.asarray(X, dtype=float))
        m = S.shape[1] // len(self.proj_)
        return np.hstack([(S[:, j * m:(j + 1) * m] - mu) @ P
                          for j, (mu, P) in enumerate(zip(self.mean_, self.proj_))])


def run(out="out/demo_path.png", n_lambdas=25, cv=5, n_knots=4, seed=0, lambda_min_ratio=0.03, ridge=1e-3,
        stream=None):
    """Fit both paths, print the summary, save the plot; returns a dict of the results (used by the tests)."""
    stream = stream or sys.stdout
    pr = lambda *a: print(*a, file=stream)  # noqa: E731
    t_start = time.perf_counter()
    data = load_diabetes()
    names = list(data.feature_names)
    X_tr, X_te, y_tr, y_te = train_test_split(data.data, data.target, test_size=0.25, random_state=seed)
    basis = GroupSplineBasis(n_knots=n_knots).fit(X_tr)
    Z_tr, Z_te = basis.transform(X_tr), basis.transform(X_te)
    groups = basis.groups_
    pr(f"groupsparse demo: sparse group additive model, diabetes data ({data.data.shape[0]} samples, "
       f"{len(names)} features)")
    pr(f"  each feature -> cubic spline basis, {n_knots} knots, orthonormalized: one group of "
       f"{'/'.join(map(str, sorted(set(groups.sizes.tolist()))))} columns per feature")
    pr(f"  train {len(y_tr)} / test {len(y_te)}; lambda by {cv}-fold CV over {n_lambdas} lambdas "
       f"(lambda_max .. {lambda_min_ratio:g} lambda_max), ridge {ridge:g}\n")

    results = {}
    for label, pen, params in PENALTIES:
        t0 = time.perf_counter()
        est = GroupSparseRegressorCV(groups=groups, penalty=pen, n_lambdas=n_lambdas, cv=cv,
                                     lambda_min_ratio=lambda_min_ratio, ridge=ridge, **params).fit(Z_tr, y_tr)
        results[label] = dict(est=est, time=time.perf_counter() - t0, test_r2=est.score(Z_te, y_te),
                              selected=[names[g] for g in est.support_])
    full = LinearRegression().fit(Z_tr, y_tr)
    linear = LinearRegression().fit(X_tr, y_tr)

    pr(f"  {'model':<24}{'lambda':>9}{'features':>10}{'CV R^2':>9}{'test R^2':>10}{'time':>8}")
    for label, r in results.items():
        est = r["est"]
        pr(f"  {label:<24}{est.lambda_:>9.3g}{len(est.support_):>7d}/{len(names):<2d}"
           f"{est.cv_scores_[est.best_index_]:>9.3f}{r['test_r2']:>10.3f}{r['time']:>7.1f}s")
    pr(f"  {'additive, no penalty':<24}{'-':>9}{len(names):>7d}/{len(names):<2d}{'':>9}"
       f"{full.score(Z_te, y_te):>10.3f}")
    pr(f"  {'linear, no penalty':<24}{'-':>9}{len(names):>7d}/{len(names):<2d}{'':>9}"
       f"{linear.score(X_te, y_te):>10.3f}\n")
    for label, r in results.items():
        pr(f"  selected by {label + ':':<13}{', '.join(r['selected']) if r['selected'] else '(none)'}")

    _plot(results, groups, names, out)
    pr(f"\n  path plot: {out}   (total {time.perf_counter() - t_start:.1f}s)")
    return results


def _plot(results, groups, names, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .plotting import plot_path

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4.2), sharey=True)
    for ax, (label, r) in zip(np.atleast_1d(axes), results.items()):
        est = r["est"]
        plot_path(est.lambdas_, est.coef_path_, groups, names=names, chosen=est.lambda_, ax=ax,
                  title=f"{label}: test R^2 = {r['test_r2']:.3f}")
    for ax in np.atleast_1d(axes)[1:]:
        ax.set_ylabel("")
    np.atleast_1d(axes)[0].set_ylabel("||beta_g|| (RMS of the fitted curve f_j)")
    np.atleast_1d(axes)[-1].legend(fontsize=7, loc="upper left", ncol=2)
    fig.suptitle("Group additive model on the diabetes data: group norms along the path")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m groupsparse.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="out/demo_path.png", help="where to save the path plot (PNG)")
    ap.add_argument("--n-lambdas", type=int, default=25, help="lambdas on the path (default 25)")
    ap.add_argument("--cv", type=int, default=5, help="cross-validation folds (default 5)")
    ap.add_argument("--n-knots", type=int, default=4, help="spline knots per feature (default 4)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    a = ap.parse_args(argv)
    run(out=a.out, n_lambdas=a.n_lambdas, cv=a.cv, n_knots=a.n_knots, seed=a.seed)


if __name__ == "__main__":
    main()
