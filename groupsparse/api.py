"""Entry points: ``solve`` (one lambda), ``solve_path`` (a decreasing grid with warm starts), ``lambda_max``."""
from __future__ import annotations

import time

import numpy as np

from ._validation import _as_array, check_bool, check_instance, check_open_unit, check_positive_int, check_tol
from .penalties import Penalty, SparseGroupLasso
from .problem import Problem, Solution
from .solvers import SOLVERS, least_squares

__all__ = ["solve", "solve_path", "lambda_max"]

_PENALTY_KINDS = "a groupsparse penalty (GroupLasso, GroupMCP, ...)"


def _check_solver(solver, prob):
    if solver == "auto":
        return "bcd"
    if solver not in SOLVERS:
        raise ValueError(f"solver: expected one of {['auto', *SOLVERS]}, got {solver!r}")
    return solver


_STOPS = ("auto", "kkt")


def solve(loss, penalty: Penalty, groups, *, solver="auto", tol=1e-8, max_iter=None, max_time=None,
          warm_start=None, warm_intercept=None, verbose=False, **options) -> Solution:
    """Minimise loss(beta) + penalty(beta) over the group structure ``groups``.

    Parameters
    ----------
    loss : LeastSquares, Logistic, Multinomial or GramLeastSquares.  A GramLeastSquares of torch tensors (CPU or
        CUDA, float32 or float64) is solved where it lives, in its dtype: coefficients, H W, gradients and the
        group prox stay on the device, and per iteration only per-group numbers (norms, shrink factors,
        certificates) come to the host; ``info['coef_native']`` holds the coefficients as a tensor there, ``coef``
        their float64 host copy.  In float32 the KKT stopping rule has a rounding floor (``Problem.kkt_floor``).
    penalty : GroupLasso, SparseGroupLasso, GroupMCP, GroupSCAD, GroupLogSum, GroupBridge, ExpMaskPenalty or
        CompositePenalty.
    groups : a Groups, an int (equal consecutive groups), one label per feature, a list of group sizes (any
        other length), or index lists: the rule of ``groups.as_groups``.  With K outputs or classes, groups over the
        p features are expanded to span all K (the usual grouping); groups over the p*K coefficients are used as
        given.
    solver : 'auto' (block coordinate descent with working sets), 'bcd' or 'fista'.
    tol : relative duality gap for convex penalties; relative KKT / fixed-point residual for nonconvex ones (both
        relative to scales of the problem, ``Problem.scales``, so rescaling the data never changes the answer).
    max_iter, max_time : limits on iterations and seconds; a solve that reaches one returns converged=False.
    stop : 'auto' (duality gap where available) or 'kkt' (always the KKT residual).
    warm_start : initial flat coefficients (length p*K).

    Least squares with lam = 0 (or only weight-0 groups) is solved exactly by one orthogonal factorisation
    (``solvers/lstsq.py``), whatever the solver.  Returns a ``Solution`` with coef, intercept, support, objective
    and certificate.
    """
    prob = Problem(loss, penalty, groups)
    tol = check_tol(tol)
    name = _check_solver(solver, prob)
    verbose = check_bool(verbose, "verbose")
    if warm_start is None and warm_intercept is not None:  # an intercept alone: zero coefficients around it
        warm_start = np.zeros(loss.n_coef)
    W0 = None if warm_start is None else prob.from_user(warm_start, warm_intercept)
    kw = dict(options)
    if max_iter is not None:
        kw["max_iter"] = check_positive_int(max_iter, "max_iter")
    if max_time is not None:
        kw["max_time"] = check_tol(max_time, "max_time")  # a positive finite number
    if kw.get("stop", "auto") not in _STOPS:
        raise ValueError(f"stop: expected one of {list(_STOPS)}, got {kw['stop']!r}")
    if prob.unpenalized and hasattr(loss, "solve_rows"):
        return least_squares(prob, W0, tol=tol, verbose=verbose)
    return SOLVERS[name](prob, W0, tol=tol, verbose=verbose, **kw)


def lambda_max(loss, penalty: Penalty, groups) -> float:
    """Smallest lambda at which the penalized groups are all 0 at an optimum, the free coefficients (intercept,
    weight-0 groups) fitted: the penalty's slope test on the gradient at that partial fit.

    Group lasso, MCP and SCAD share it (slope lam at 0); log-sum scales by eps; for the sparse-group lasso it
    solves the scalar condition ||ST(grad_g, lam l1_ratio)|| <= lam (1 - l1_ratio) w_g by bisection.
    """
    check_instance(penalty, "penalty", Penalty, _PENALTY_KINDS)
    prob = Problem(loss, penalty.with_lam(1.0), groups)
    W = _fit_free(prob)
    xp = prob.xp
    G = xp.reshape(loss.full_grad(loss.init_state(W), W), (-1,))  # in the loss's namespace: G norms come back
    pen = prob.penalized
    if isinstance(penalty, SparseGroupLasso):
        # a bracket that holds: lam >= max|G| / l1_ratio thresholds everything to 0, and lam (1 - l1_ratio) w_g >=
        # ||G_g|| >= ||ST(G_g)|| passes the group test; the smaller is finite for any l1_ratio in [0, 1]
        l1 = penalty.l1_ratio
        absG = xp.abs(G)
        his = [float(xp.max(absG)) / l1] if l1 > 0 and G.shape[0] else []
        if l1 < 1:
            his.append(float(np.max(prob.group_norms(G)[pen] / prob.weights[pen], initial=0.0)) / (1 - l1))
        hi = min(his) * (1 + 1e-12) + np.finfo(float).tiny
        lo = 0.0
        for _ in range(100):
            mid = 0.5 * (lo + hi)
            p = penalty.with_lam(mid)
            st = xp.clip(absG - mid * p.l1_ratio, min=0.0)
            ok = np.all((prob.group_norms(st) <= mid * (1 - p.l1_ratio) * prob.weights)[pen])
            lo, hi = (lo, mid) if ok else (mid, hi)
        return hi
    return penalty.lambda_max(prob.group_norms(G), prob.weights)


def _fit_free(prob):
    """The coefficient matrix with the free rows (intercept, weight-0 groups) at their optimum, the others 0."""
    loss = prob.loss
    W = prob.zeros()
    rows = prob.free_rows()
    if rows.size == 0:
        return W
    if hasattr(loss, "solve_rows"):  # least squares: exact
        sol = loss.solve_rows(rows)
        W[rows] = np.asarray(sol, float) if prob.device is None else prob.xp.astype(sol, prob.dtype)
    elif rows.size == 1 and loss.fit_intercept:  # the intercept alone: Newton
        loss.profile_intercept(loss.init_state(W), W)
    else:  # a GLM on the free columns alone (lam = 0: the KKT-stopped solve)
        from .groups import Groups
        from .penalties import GroupLasso
        sub = loss.restrict_rows(rows)
        nf = sub.n_features
        sol = SOLVERS["bcd"](Problem(sub, GroupLasso(0.0), Groups.from_sizes([1] * nf, np.zeros(nf))), tol=1e-10)
        W[rows[rows < loss.n_features]] = sol.coef.reshape(nf, -1)
        if loss.fit_intercept and sol.intercept is not None:
            W[-1] = sol.intercept
    return W


def solve_path(loss, penalty: Penalty, groups, lambdas=None, *, n_lambdas=50, lambda_min_ratio=1e-2,
               solver="auto", tol=1e-8, verbose=False, checkpoint=None, progress=False, **options):
    """Solve along a decreasing lambda grid with warm starts.

    ``lambdas`` defaults to ``n_lambdas`` values geometrically spaced from ``lambda_max`` down to
    ``lambda_min_ratio * lambda_max``.  ``checkpoint`` (a file path) saves the solutions after every lambda and
    resumes from it when it exists, so a long path can be stopped and resumed to the same state (its fingerprint
    reads the data on the host: with torch tensors, H and B are copied once for it).  ``max_time`` (seconds)
    bounds the whole path; the lambdas it leaves unsolved come back with converged=False.  On a GramLeastSquares
    of tensors every solve stays on the device and warm-starts from the previous one's ``coef_native``.
    Returns a list of ``Solution`` (one per lambda, ``.lam`` set).
    """
    check_instance(penalty, "penalty", Penalty, _PENALTY_KINDS)
    progress = check_bool(progress, "progress")
    if lambdas is None:
        n_lambdas = check_positive_int(n_lambdas, "n_lambdas")
        lambda_min_ratio = check_open_unit(lambda_min_ratio, "lambda_min_ratio")
        lmax = lambda_max(loss, penalty, groups)
        lambdas = lmax * np.geomspace(1.0, lambda_min_ratio, n_lambdas)
    lambdas = _as_array(lambdas, "lambdas")
    if lambdas.ndim != 1 or lambdas.size == 0 or lambdas.dtype.kind not in "iuf" or \
            np.any(~np.isfinite(lambdas)) or np.any(lambdas < 0):
        raise ValueError(f"lambdas: must be a non-empty 1-D sequence of finite values >= 0, got "
                         f"{np.array2string(lambdas, threshold=6)}")
    lambdas = lambdas.astype(float)
    key = _checkpoint_key(checkpoint, loss, penalty, groups, lambdas, solver=solver, tol=tol, **options) \
        if checkpoint is not None else None
    sols = _load_checkpoint(checkpoint, lambdas, key) if checkpoint is not None else []
    warm, warm_b = (_warm(sols[-1]), sols[-1].intercept) if sols else (None, None)
    it = range(len(sols), lambdas.size)
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc=f"path {penalty.name}", initial=len(sols), total=lambdas.size)
    max_time = options.pop("max_time", None)  # for the whole path: each solve gets what is left
    deadline = None if max_time is None else time.perf_counter() + check_tol(max_time, "max_time")
    for i in it:
        if deadline is not None:  # past it, each remaining lambda costs one certificate (converged=False)
            options["max_time"] = max(deadline - time.perf_counter(), 1e-9)
        sol = solve(loss, penalty.with_lam(lambdas[i]), groups, solver=solver, tol=tol, warm_start=warm,
                    warm_intercept=warm_b, verbose=verbose, **options)
        sol.lam = float(lambdas[i])
        sols.append(sol)
        warm, warm_b = _warm(sol), sol.intercept
        if checkpoint is not None:
            _save_checkpoint(checkpoint, lambdas, sols, key)
    return sols


def _warm(sol):
    """The warm start a path hands to its next solve: the device coefficients when there are some."""
    return sol.info.get("coef_native", sol.coef)


_CKPT_FORMAT, _CKPT_VERSION = "groupsparse.solve_path", 1


def _checkpoint_key(path, loss, penalty, groups, lambdas, **options):
    """Fingerprint of everything that determines the path: data and loss options, penalty class and parameters
    (lam aside: the grid sets it), groups, lambdas, solver options (``checkpoint.fingerprint``).  Also checks
    ``path`` before any work: a file path whose folder exists."""
    import os
    from .checkpoint import fingerprint
    from .groups import Groups, as_groups
    try:
        path = os.fspath(path)
    except TypeError:
        raise ValueError(f"checkpoint: expected a file path, got {path!r}") from None
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"checkpoint: folder {folder} of {path} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"checkpoint: {path} is a folder, expected a file path")
    g = groups if isinstance(groups, Groups) else as_groups(groups, loss.n_features)
    opts = {k: v for k, v in options.items() if k not in ("verbose", "max_time")}  # limits of this run only
    return fingerprint(_CKPT_FORMAT, loss, penalty.with_lam(1.0), g, np.asarray(lambdas, float), opts)


def _save_checkpoint(path, lambdas, sols, key):
    from .checkpoint import save_npz_json, solution_record
    meta = {"format": _CKPT_FORMAT, "version": _CKPT_VERSION, "fingerprint": key, "solutions": []}
    arrays = {"lambdas": np.asarray(lambdas, dtype=float)}
    for i, sol in enumerate(sols):
        rec, arr = solution_record(sol, f"sol{i}.")
        meta["solutions"].append(rec)
        arrays.update(arr)
    save_npz_json(path, meta, arrays)  # atomic, under a unique temporary name


def _load_checkpoint(path, lambdas, key):
    """The solutions saved at ``path`` (none if it does not exist yet); a checkpoint of another problem, another
    lambda grid, or a damaged file raises ``CheckpointError`` (a ValueError) naming the path."""
    import os
    from .checkpoint import CheckpointError, load_npz_json, solution_from_record
    if not os.path.exists(path):
        return []
    meta, arrays = load_npz_json(path, _CKPT_FORMAT, _CKPT_VERSION)
    saved = arrays.get("lambdas")
    if saved is None or saved.shape != np.shape(lambdas) or not np.array_equal(saved, lambdas):
        raise CheckpointError(f"checkpoint: {path} was written for a different lambda grid")
    if meta.get("fingerprint") != key:
        raise CheckpointError(f"checkpoint: {path} was written for another problem (the data, loss options, "
                              f"penalty, groups or solver options differ); delete it or use another path")
    recs = meta.get("solutions")
    if not isinstance(recs, list) or len(recs) > len(lambdas):
        raise CheckpointError(f"checkpoint: {path} is damaged (solutions record)")
    return [solution_from_record(r, arrays, f"sol{i}.", f"{path}, solution {i}") for i, r in enumerate(recs)]
