"""ACDC-style alternation for a group budget (Peste, Iofinova, Vladu & Alistarh, NeurIPS 2021; seqattn_pp.md 5).

Regression adaptation of alternating compressed / decompressed training: a *dense* phase takes ``dense_steps``
gradient steps (step 1/L) on all coefficients from the current point; a *compressed* phase keeps the k groups of
largest magnitude and trains on that support to convergence (= the exact refit).  The run starts with a dense
warm-up from 0 and ends compressed; the lowest-loss compressed iterate is returned (every one is feasible).
"""
from __future__ import annotations

import numpy as np

__all__ = ["acdc"]


def acdc(bp, k, *, n_cycles=5, dense_steps=25, init=None, history=None):
    eta = 1.0 / bp.lipschitz
    if init is not None and len(init):
        W, _ = bp.refit(np.asarray(init, dtype=np.int64))
    else:
        W = bp.zeros()
    best = None
    for cyc in range(int(n_cycles)):
        for _ in range(int(dense_steps)):          # decompressed phase
            W = W - eta * bp.grad(W)
        S = bp.top(bp.group_sq(W), k)              # compress by group magnitude
        W, val = bp.refit(S)                       # compressed phase, trained to convergence
        if history is not None:
            history.append(val)
        if best is None or val < best[2]:
            best = (W, S, val)
    return best[0], best[1], best[2], int(n_cycles)
