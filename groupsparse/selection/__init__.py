"""Budgeted group selection:  min L(beta)  subject to at most k nonzero groups.

``select(loss, groups, k, method=...)`` is the entry point; every method works on the same ``BudgetProblem``
(one refit, one projection, one set of scores; ``_base.py``) and returns a ``Solution`` whose ``support`` holds
at most k group ids and whose ``coef`` is the exact refit on that support.
"""
from __future__ import annotations

import time

import numpy as np

from .._validation import (check_bool, check_choice, check_finite_real, check_index_set, check_nonneg,
                           check_open_unit, check_positive_int, check_tol)
from ..losses import Logistic
from ._base import Budget, BudgetProblem
from .model_selection import choose_k, information_criterion, select_path
from .sequential_obs import seqobs, sparsegpt, wanda  # one-shot pruning of a Gram-form layer (blocks, N:M, single)

__all__ = ["select", "select_path", "choose_k", "information_criterion", "lower_bound", "METHODS", "default_method",
           "Budget", "BudgetProblem", "seqobs", "sparsegpt", "wanda"]

# The best in benchmarks/bench_select.py (RESULTS.md, Selection), per loss.  Least squares: splicing matches
# local_search's F1 on I1/I2 (0.850 vs 0.855, 0.777 vs 0.773) at a third of its time on I2 and meets F1 >= abess at
# <= 2x its time.  Multinomial: splicing F1 0.970 / 0.890 (abess 0.895 / 0.810); 'newton' has its F1 at twice its
# time.  Binary logistic: 'newton' (F1 0.910 vs splicing 0.895 and abess 0.900, at abess's time).
DEFAULT_METHOD = "splicing"
DEFAULT_LOGISTIC_METHOD = "newton"


def default_method(loss, k=None) -> str:
    """``select``'s method ``'auto'`` (its default): 'newton' for a binary ``Logistic`` loss under an overall budget,
    'splicing' otherwise (least squares, ``Multinomial``, partition budgets ``k = Budget(n, partition)``)."""
    partitioned = isinstance(k, Budget) and k.partitioned
    return DEFAULT_LOGISTIC_METHOD if isinstance(loss, Logistic) and not partitioned else DEFAULT_METHOD


# name -> (module, function, fixed options); modules are imported on first use
METHODS = {
    "splicing": ("local_search", "local_search", {"polish": False}),  # abess-style splicing (default but for
                                                                      # binary logistic: bench_select.py)
    "local_search": ("local_search", "local_search", {}),  # splicing + exact swap polishing (1-swap optimum)
    "omp": ("greedy", "omp", {}),                 # group OMP (option batch=m adds m groups per step)
    "ompr": ("greedy", "ompr", {}),               # group OMP with replacement
    "iht": ("iht", "iht", {}),                    # group IHT, relaxed budget (relax >= 1), safe step 1/L
    "htp": ("iht", "iht", {"pursuit": True}),     # hard thresholding pursuit (IHT + refit every step)
    "arht": ("iht", "arht", {}),                  # adaptively regularized hard thresholding (reconstruction)
    "acdc": ("acdc", "acdc", {}),                 # ACDC-style dense/sparse alternation
    "sa": ("attention", "sequential_attention", {}),        # Sequential Attention (one group per step)
    "sa++": ("attention", "sequential_attention_pp", {}),   # dense -> sparsification (exp_ramp) -> sparse
    "alg2": ("attention", "ompr_nonconvex", {}),  # SA++ paper Algorithm 2: OMPR via nonconvex regularization
    "exact": ("exact", "exact", {}),              # exact best k-group subset (branch and bound; small problems)
    "bnb": ("bnb", "bnb", {}),                    # certified L0L2 branch and bound (perspective bounds; ridge > 0)
    "obs": ("obs", "obs", {}),                    # group OBS backward elimination over B x B tiles (Gram form)
    "newton": ("newton", "newton_splicing", {}),  # logistic / multinomial: IRLS-weighted splicing + model swaps
                                                  # (the default for binary logistic)
    "obs+local_search": ("local_search", "local_search", {"start": "obs"}),  # OBS, then swaps while the loss falls
}

# The methods that honour a partition budget (Budget(n, partition), e.g. N:M); the others refuse it by name.
PARTITION_METHODS = ("obs", "obs+local_search", "local_search", "splicing", "omp", "ompr", "iht", "htp", "arht",
                     "exact")


def _method_params(method):
    import importlib
    import inspect
    module, name, _ = METHODS[method]
    return inspect.signature(getattr(importlib.import_module(f".{module}", __name__), name)).parameters


def _run_method(method, bp, k, **options):
    import importlib
    module, name, fixed = METHODS[method]
    fn = getattr(importlib.import_module(f".{module}", __name__), name)
    return fn(bp, k, **fixed, **options)


def select(loss, groups, k, method="auto", *, bound=False, refit_ridge=None, **options):
    """Best support of at most ``k`` groups for ``loss`` (LeastSquares, Logistic, Multinomial, GramLeastSquares).

    Parameters
    ----------
    loss, groups : as in ``groupsparse.solve`` (feature groups are expanded over K outputs / classes).
    k : the budget: an int, 1 <= k <= number of groups (at most k groups), or a ``Budget`` -- ``Budget(n,
        partition)`` keeps at most n groups in each part of ``partition`` (one label per group), e.g. N:M with
        ``Budget.n_of_m(n, m, (p, K))`` over ``Groups.block_tiling((p, K), 1)``.  A partition budget is honoured
        by ``PARTITION_METHODS`` ('obs' needs every part inside one column block of the tiles; 'iht' / 'htp' /
        'arht' take relax=1) and refused by the others ('sa', 'sa++', 'alg2', 'acdc', 'bnb') with an error naming k.
    method : one of ``METHODS``, or ``'auto'`` (the default): the best per loss in ``benchmarks/bench_select.py``
        (``default_method``), ``'newton'`` for binary ``Logistic`` (IRLS-weighted splicing and Newton-model swaps),
        ``'splicing'`` for least squares and ``Multinomial`` (where 'newton' has splicing's F1 at twice its time)
        and for partition budgets.
        ``'obs+local_search'`` is 'local_search' started from the 'obs' support; 'local_search' takes ``start``
        (a method name or a support), ``max_swaps`` and ``max_time`` (bounded cost), and reports every accepted
        move's objective in ``history`` (and the moves in ``info['moves']``).
    bound : if True, also compute a certified lower bound on the best k-group objective (a convex perspective
        relaxation solved with cvxpy, ``bound.py``); the Solution then has ``certificate_kind='bound_gap'``,
        ``lower_bound`` and ``certificate = objective - lower_bound``.  Otherwise the certificate is the
        refit's stationarity (largest gradient norm on the support, ``'kkt'``).
    refit_ridge : tiny ridge of the Newton refits for logistic / multinomial (default 1e-8).
    options : passed to the method (e.g. ``batch`` for 'omp', ``relax`` for 'iht', ``init`` = a warm support;
        for 'bnb': ``max_time`` (s), ``max_nodes``, ``gap_tol`` (relative), ``progress`` (tqdm: None = on a terminal
        after 2 s, True, False), ``max_coef`` (a box ||b_g|| <= M, l0bnb's big-M; the certificate is then for the
        boxed problem), ``trace`` (a list that gets (seconds, nodes, proven lower bound, incumbent) about every
        second: the gap against time)).

    Returns a ``Solution``: numpy ``coef`` (the refit), ``support``, ``objective`` (the loss), certificate;
    ``info['certified']`` says which certificate it carries: 'none' (stationarity only), 'lower_bound' (a proven
    lower bound, relative gap ``info['gap']``) or 'optimal' ('exact'; 'bnb' when the gap is <= its gap_tol);
    ``info['coef_native']`` holds the coefficients in the loss's own array type (e.g. a CUDA tensor).
    """
    method = check_choice(method, "method", ("auto", *METHODS))
    if method == "auto":
        method = default_method(loss, k)
    bound = check_bool(bound, "bound")
    if refit_ridge is not None:
        refit_ridge = check_nonneg(refit_ridge, "refit_ridge")
    bp = BudgetProblem(loss, groups, refit_ridge=refit_ridge)
    bp.budget = _check_budget(k, bp.G, method)
    k = bp.budget.total
    options = _check_options(options, bp.G, k, method, bp.budget)
    history = []
    t0 = time.perf_counter()
    if options.get("max_time") is not None and "max_time" not in _method_params(method):
        # the search loops stop at their next step past it (BudgetProblem.time_up); the answer is the best so far
        bp.deadline = t0 + check_tol(options.pop("max_time"), "max_time")
    W, S, val, n_iter, *found = _run_method(method, bp, k, history=history, **options)
    elapsed = time.perf_counter() - t0
    lb, extra = None, {}
    if bp.timed_out:
        extra["converged"] = False
    if method == "exact" and not bp.timed_out:
        lb = val  # branch and bound proves optimality (up to the refit's accuracy)
    if found:  # 'bnb': its proven lower bound, gap, node count and status
        extra = dict(found[0])
        lb = extra.pop("lower_bound")
    extra.update(bp.info)  # e.g. local_search's start and accepted moves
    if bound:
        from .bound import lower_bound
        lb_relax, binfo = lower_bound(bp, k)
        lb = lb_relax if lb is None else max(lb, lb_relax)
        extra.update(binfo)
        extra.pop("gap", None)  # recomputed from the combined bound (bp.solution)
    return bp.solution(W, S, val, n_iter, method, lower_bound=lb, history=history, time=elapsed, k=k,
                       n_groups=bp.G, **extra)


def lower_bound(loss, groups, k):
    """Certified lower bound on the best k-group objective alone (``bound.py``): (value, info)."""
    from .bound import lower_bound as _lb
    bp = BudgetProblem(loss, groups)
    return _lb(bp, _check_k(k, bp.G))


def _check_budget(k, n_groups, method):
    """``select``'s k (an int or a ``Budget``) bound to the groups; a partition budget only for the methods that
    honour it."""
    budget = (k if isinstance(k, Budget) else Budget(k)).bind(n_groups)
    if budget.partitioned and method not in PARTITION_METHODS:
        raise ValueError(f"k: method {method!r} takes an overall budget of k groups, not a partition budget "
                         f"(the methods that do: {list(PARTITION_METHODS)})")
    return budget


def _check_k(k, n_groups):
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k: expected an integer number of groups, got {k!r}")
    if k <= 0 or k > n_groups:
        raise ValueError(f"k: must be in [1, {n_groups}] (the number of groups), got {k}")
    return int(k)


# The methods' own options, checked in one place by name (a NaN step hung Sequential Attention, per_step=0 looped
# forever, n_cycles=0 crashed ACDC): integer counts with their lower bound, positive steps and tolerances,
# nonnegative weights, flags.  None passes only where a method gives None a meaning (its default).
_INT_OPTIONS = {"batch": 1, "max_swaps": 0, "exchange": 1, "n_cycles": 1, "steps": 1, "per_step": 1, "max_nodes": 1,
                "max_passes": 1, "dense_steps": 0, "sparsification_steps": 0, "n_iter": 0, "n_candidates": 1}
_POSITIVE_OPTIONS = ("tol", "lr", "c", "gap_tol", "node_tol", "max_time")
_NONNEG_OPTIONS = ("lam_ratio", "rho")
_BOOL_OPTIONS = ("polish", "pursuit")
_NONE_MEANS_DEFAULT = ("n_iter", "n_candidates", "rho")  # options whose own default is None


def _check_options(options, n_groups, k, method, budget=None):
    """The options of the methods, checked once by name: ``init`` (distinct group ids in [0, G), at most k, or at
    most the relaxed budget for the hard-thresholding methods; a negative id would wrap to the last group),
    counts (``max_iter`` >= 0 where 0 swaps is meaningful, >= 1 for IHT/HTP/ARHT), steps and tolerances (> 0,
    finite), weights (>= 0), ``relax`` (>= 1), ``lam_factor`` (in (0, 1)), flags (bools).  An option no method
    takes is refused by the method's signature (a TypeError naming it).  With a partition ``budget``, a warm support
    (``init``, or ``start`` given as ids) must be feasible and ``relax`` must be 1."""
    out = dict(options)
    iht_family = METHODS[method][0] == "iht"
    partitioned = budget is not None and budget.partitioned
    for name in ("init", "start"):
        if out.get(name) is None or (name == "start" and isinstance(out[name], str)):
            continue
        # IHT, HTP, ARHT keep up to their relaxed budget k' >= k
        out[name] = check_index_set(out[name], name, n_groups, max_size=None if iht_family and not partitioned
                                    else k)
        if partitioned and not budget.feasible(out[name]):
            raise ValueError(f"{name}: holds more groups of one part than the partition budget allows "
                             f"(n={budget.n} per part)")
    if isinstance(out.get("start"), str):
        if out["start"] not in METHODS or METHODS[out["start"]][2].get("start") is not None:
            raise ValueError(f"start: expected a support (group ids) or a method of {sorted(METHODS)} other than "
                             f"the local-search ones started elsewhere, got {out['start']!r}")
        if partitioned and out["start"] not in PARTITION_METHODS:
            raise ValueError(f"start: method {out['start']!r} does not honour a partition budget; start from one of "
                             f"{list(PARTITION_METHODS)}")
    if partitioned and out.get("relax", 1) != 1:
        raise ValueError(f"relax: a partition budget is searched at its own size (relax=1), got {out['relax']!r}")
    if "max_iter" in out:
        out["max_iter"] = check_positive_int(out["max_iter"], "max_iter", low=1 if iht_family else 0)
    given = {n for n, v in out.items() if not (v is None and n in _NONE_MEANS_DEFAULT)}
    for name, low in _INT_OPTIONS.items():
        if name in given:
            out[name] = check_positive_int(out[name], name, low=low)
    for name in _POSITIVE_OPTIONS:
        if name in given:
            out[name] = check_tol(out[name], name)
    for name in _NONNEG_OPTIONS:
        if name in given:
            out[name] = check_nonneg(out[name], name)
    for name in _BOOL_OPTIONS:
        if name in out:
            out[name] = check_bool(out[name], name)
    if "relax" in out:
        r = check_finite_real(out["relax"], "relax")
        if r < 1:
            raise ValueError(f"relax: the relaxed budget factor must be >= 1, got {out['relax']!r}")
        out["relax"] = r
    if "lam_factor" in out:
        out["lam_factor"] = check_open_unit(out["lam_factor"], "lam_factor")
    return out
