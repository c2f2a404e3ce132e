"""Plots of results worth looking at (matplotlib, imported lazily so the core never needs it)."""
from __future__ import annotations

import numpy as np

from .groups import Groups

__all__ = ["group_norm_path", "plot_path"]


def group_norm_path(coef_path, groups: Groups) -> np.ndarray:
    """Group norms along a path: ``coef_path`` of shape (n_lambdas, p) or (n_lambdas, K, p) (scikit-learn layout,
    as in ``GroupSparseRegressorCV.coef_path_``) over ``groups`` of the p features; a group's norm spans all K
    outputs.  Returns (n_lambdas, n_groups)."""
    C = np.asarray(coef_path, dtype=float)
    if C.ndim == 2:
        C = C[:, None, :]
    if C.ndim != 3 or C.shape[2] != groups.n_features:
        raise ValueError(f"coef_path: expected shape (n_lambdas, [K,] {groups.n_features}), got {np.shape(coef_path)}")
    per_feature = np.sqrt(np.sum(C * C, axis=1))  # (n_lambdas, p): norm across outputs
    return np.stack([groups.norms(row) for row in per_feature])


def plot_path(lambdas, coef_path, groups: Groups, names=None, chosen=None, ax=None, title=None):
    """Group norms against lambda (log scale, decreasing to the right, as paths are computed), one line per
    group, labelled with ``names``; ``chosen`` marks a lambda (e.g. the cross-validated one).  Returns the axes."""
    import matplotlib.pyplot as plt

    lambdas = np.asarray(lambdas, dtype=float)
    norms = group_norm_path(coef_path, groups)
    if norms.shape[0] != lambdas.size:
        raise ValueError(f"lambdas: {lambdas.size} values but coef_path has {norms.shape[0]}")
    if names is None:
        names = [f"group {g}" for g in range(groups.n_groups)]
    if ax is None:
        ax = plt.figure(figsize=(6, 4)).gca()
    colors = plt.get_cmap("tab10" if groups.n_groups <= 10 else "tab20")
    for g in range(groups.n_groups):
        ax.plot(lambdas, norms[:, g], color=colors(g % colors.N), label=str(names[g]), lw=1.6)
    ax.set_xscale("log")
    ax.invert_xaxis()
    if chosen is not None:
        ax.axvline(chosen, color="k", ls="--", lw=1, label=f"CV lambda = {chosen:.3g}")
    ax.set_xlabel("lambda")
    ax.set_ylabel("group norm ||beta_g||")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    return ax
