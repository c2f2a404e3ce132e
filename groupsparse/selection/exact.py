"""Exact best k-group subset by branch and bound (small problems).

The refit value f(T) = min{L(b) : supp(b) in T} is non-increasing in T, so at a node that has fixed the groups F
(included) and may still use the candidates C (the rest are excluded), f(F u C) is a lower bound on every
completion.  Depth-first search, candidates ordered by their one-group forward score (strong groups first, so
good incumbents come early), incumbent from ``local_search``; a node is pruned when its bound is not below the
incumbent.  With at most 12 groups this visits at most 2^12 nodes; it is exact whenever the refit is (least
squares: a Cholesky solve; GLMs: Newton to 1e-13 with the 1e-8 refit ridge, which the node bounds discount).

A partition budget (``bp.budget_for(k)``) restricts the branching: a group is included only while its part has
room, and a node's bound is the refit on F plus the candidates whose part still has room (still a superset of
every feasible completion, so the bound stays valid).
"""
from __future__ import annotations

import numpy as np

__all__ = ["exact"]


def exact(bp, k, *, max_nodes=1_000_000, init=None, history=None):
    """Returns (W, S, value, n_nodes); raises if ``max_nodes`` is hit (the answer would not be proven)."""
    from .local_search import local_search
    W, S, ub, _ = local_search(bp, k, init=init)
    cache = {}

    def f(T):
        key = T.tobytes()
        if key not in cache:
            Wt, v = bp.refit(T)
            slack = 0.5 * bp.refit_ridge * float(np.sum(np.asarray(Wt) ** 2)) if bp.refit_ridge else 0.0
            cache[key] = (Wt, v, slack)
        return cache[key]

    W0, _ = bp.refit(np.zeros(0, dtype=np.int64))
    order = np.argsort(-bp.forward(bp.grad(W0)), kind="stable")
    G = bp.G
    budget = bp.budget_for(k)
    best = [W, np.sort(S), ub]
    tol = 1e-12 * abs(ub)  # relative: objectives of 1e-18 are as real as of 1e18
    stack = [((), 0)]
    nodes = 0
    while stack and not bp.time_up():  # past select's max_time: the best so far, unproven (converged=False)
        F, i = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise RuntimeError(f"exact: more than max_nodes={max_nodes} nodes; the problem is too large for "
                               "branch and bound (use bound=True with a heuristic method)")
        F_arr = np.array(F, dtype=np.int64)
        rest = order[i:]
        if budget.partitioned:  # only candidates whose part still has room can complete F
            room = budget.room(F_arr)
            rest = rest[room[rest]]
            while i < G and not room[order[i]]:  # groups that can no longer enter are not branched on
                i += 1
        i_next = i + 1
        T_all = np.concatenate([F_arr, rest])
        if len(F) == k or budget.feasible(T_all):  # leaf: the best completion is everything allowed
            T = np.sort(T_all) if len(F) < k else np.sort(F_arr)
            Wt, v, _ = f(T)
            if v < best[2] - tol:
                best = [Wt, T, v]
                if history is not None:
                    history.append(v)
            continue
        _, lb, slack = f(np.sort(T_all))
        if lb - slack >= best[2] - tol:
            continue
        g = int(order[i])
        stack.append((F, i_next))          # exclude g (explored second)
        stack.append((F + (g,), i_next))   # include g (explored first)
    return best[0], best[1], best[2], nodes
