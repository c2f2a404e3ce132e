"""Forward greedy selection: group OMP and group OMP with replacement (OMPR).

* Group OMP (Lozano, Swirszcz & Abe, NeurIPS 2009; theory_checks.md 1.5): add the group with the largest
  gradient norm at the current refit, refit on the union.  ``batch`` > 1 adds several groups per step (one refit
  per step), which is what makes OMP usable with thousands of blocks; ``score='sacrifice'`` ranks by the
  Hessian-whitened decrease 1/2 d_g^T Phi_g^-1 d_g (exact one-group gain when the group is uncorrelated with the
  support) instead of the raw gradient norm.
* Group OMPR (Jain, Tewari & Dhillon 2011; Axiotis & Sviridenko 2020; theory_checks.md 2.3): from a k-support,
  add the best outside group by gradient norm, drop the selected group of smallest norm, refit; keep the swap only
  if the loss decreases.

Both honour a partition budget (``bp.budget_for(k)``): OMP adds only groups whose part has room; OMPR's drop comes
from the entering group's part when that part is full.
"""
from __future__ import annotations

import numpy as np

__all__ = ["omp", "ompr"]


def _scores(bp, D, score):
    if score == "gradient":
        return bp.group_sq(D)
    if score == "sacrifice":
        return bp.forward(D)
    raise ValueError(f"score: expected 'gradient' or 'sacrifice', got {score!r}")


def omp(bp, k, *, batch=1, score="gradient", init=None, history=None):
    """Group OMP.  Returns (W, S, value, n_steps)."""
    batch = max(1, int(batch))
    budget = bp.budget_for(k)
    S = np.zeros(0, dtype=np.int64) if init is None else np.unique(np.asarray(init, dtype=np.int64))[:k]
    if S.size:
        W, val = bp.refit(S)
    else:
        W = bp.zeros()
        if bp.loss.fit_intercept:
            W, val = bp.refit(S)
        else:
            val = bp.value(W)
    steps = 0
    while S.size < k and not bp.time_up():
        add = budget.pick(_scores(bp, bp.grad(W), score), batch, S)
        if add.size == 0:
            break
        S = np.union1d(S, add)
        W, val = bp.refit(S)
        steps += 1
        if history is not None:
            history.append(val)
    return W, S, val, steps


def ompr(bp, k, *, init=None, max_iter=200, score="gradient", tol=1e-12, history=None):
    """Group OMPR: single swaps (best gradient outside, smallest block inside) while they lower the loss."""
    budget = bp.budget_for(k)
    if init is None or len(init) != k:
        W, S, val, _ = omp(bp, k, score=score, init=init)
    else:
        S = np.unique(np.asarray(init, dtype=np.int64))
        W, val = bp.refit(S)
    it = 0
    for it in range(1, max_iter + 1):
        add = bp.top(_scores(bp, bp.grad(W), score), 1, exclude=S)
        if add.size == 0 or bp.time_up():
            break
        out = S[budget.swap_ok(S, S, add)[:, 0]]  # the drops that keep the budget (the entering group's part)
        if out.size == 0:
            break
        drop = out[np.argmin(bp.group_sq(W)[out])]
        S2 = np.union1d(np.setdiff1d(S, [drop]), add)
        W2, v2 = bp.refit(S2)
        if not v2 < val - tol * abs(val):
            break
        W, S, val = W2, S2, v2
        if history is not None:
            history.append(val)
    return W, S, val, it
