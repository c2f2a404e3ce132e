"""Schedules: pure functions of training progress t in [0, 1] (or of an epoch) to a target sparsity.

Shared by regression SequentialAttention++ (``groupsparse.selection``) and the torch bridge (``nn_bridge``), so the
same schedule drives both.  Everything here is a plain function or a frozen dataclass; nothing holds state.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._validation import (_as_array, check_choice, check_finite_real, check_positive_int, check_real,
                          check_tol)

__all__ = ["exp_ramp", "maxq_dense_fraction", "Phase", "PhaseSchedule",
           "acdc_imagenet", "sapp_imagenet", "acdc_criteo", "sapp_criteo", "check_sparsity"]

PHASE_KINDS = ("dense", "sparsification", "sparse")


def check_sparsity(s, name: str = "sparsity") -> float:
    """A sparsity must be a finite number in [0, 1) ('0.5' and True are refused, not converted)."""
    try:
        v = check_real(s, name)
    except ValueError:
        raise ValueError(f"{name}: expected a number in [0, 1), got {s!r}") from None
    if not (0.0 <= v < 1.0):
        raise ValueError(f"{name}: must lie in [0, 1), got {s!r}")
    return v


def exp_ramp(t, target: float, c: float = 4.0):
    """SequentialAttention++ sparsification ramp: s(1 - e^{-ct}) / (1 - e^{-c}) for t in [0, 1], clipped.

    Aggressive early, careful near the target (c = 4 as in the paper); c -> 0 gives the linear ramp s*t.
    """
    target = check_sparsity(target, "target")
    t = np.clip(_check_times(t, "t"), 0.0, 1.0)
    c = check_tol(c, "c")  # a finite number > 0
    out = target * (-np.expm1(-c * t)) / (-math.expm1(-c))
    return float(out) if out.ndim == 0 else out


def maxq_dense_fraction(epoch, start: int, end: int, kind: str = "linear"):
    """MaxQ's incremental schedule p(e): the fraction of M-groups still dense at (integer) epoch e.

    ``kind`` is one of 'linear', 'cubic', 'cos', 'exp' (MaxQ's ``get_preserve_rate``); ``start == end == 0`` gives
    plain N:M from the first epoch.  Fractional epochs are allowed (a smooth version of the per-epoch step).
    """
    check_choice(kind, "kind", ("linear", "cubic", "cos", "exp"))
    start, end = check_finite_real(start, "start"), check_finite_real(end, "end")
    if not (0 <= start <= end):
        raise ValueError(f"start/end: need 0 <= start <= end, got start={start}, end={end}")
    e = _check_times(epoch, "epoch")
    if end == start:
        out = np.where(e < start, 1.0, 0.0)
    else:
        u = np.clip((e - start) / (end - start), 0.0, 1.0)
        if kind == "linear":
            out = 1.0 - u
        elif kind == "cubic":
            out = (1.0 - u) ** 3
        elif kind == "cos":
            out = np.cos(0.5 * np.pi * u)
        else:  # MaxQ: sch = 1 - exp(-0.05 * arange(end - start)); p = 1 - sch[e - start] / sch[-1]
            span = end - start
            last = -math.expm1(-0.05 * max(span - 1, 1))
            out = np.where(u >= 1.0, 0.0, 1.0 + np.expm1(-0.05 * (e - start)) / last)
        out = np.where(e < start, 1.0, np.clip(out, 0.0, 1.0))
    return float(out) if np.ndim(out) == 0 else out


@dataclass(frozen=True)
class Phase:
    """One phase of a training schedule, over progress [start, end) with 0 <= start < end <= 1."""
    kind: str
    start: float
    end: float

    def __post_init__(self):
        if not isinstance(self.kind, str) or self.kind not in PHASE_KINDS:
            raise ValueError(f"phase kind: expected one of {PHASE_KINDS}, got {self.kind!r}")
        check_finite_real(self.start, "start"), check_finite_real(self.end, "end")
        if not (0.0 <= self.start < self.end <= 1.0 + 1e-12):
            raise ValueError(f"phase {self.kind}: need 0 <= start < end <= 1, got [{self.start}, {self.end})")


@dataclass(frozen=True)
class PhaseSchedule:
    """A timeline of dense / sparsification / sparse phases that covers [0, 1] without overlaps or gaps.

    ``sparsity(t)`` is the target sparsity at progress t: 0 in dense phases, ``target`` in sparse ones, and
    ``exp_ramp`` from 0 to ``target`` across a sparsification phase.
    """
    phases: tuple
    target: float
    c: float = 4.0

    def __post_init__(self):
        check_sparsity(self.target, "target")
        check_tol(self.c, "c")
        ph = tuple(self.phases)
        if not ph:
            raise ValueError("phases: a schedule needs at least one phase")
        object.__setattr__(self, "phases", ph)
        if abs(ph[0].start) > 1e-9 or abs(ph[-1].end - 1.0) > 1e-9:
            raise ValueError(f"phases: must start at 0 and end at 1, got [{ph[0].start}, {ph[-1].end}]")
        for a, b in zip(ph[:-1], ph[1:]):
            if b.start < a.end - 1e-9:
                raise ValueError(f"phases: {a.kind} [{a.start}, {a.end}) overlaps {b.kind} [{b.start}, {b.end})")
            if b.start > a.end + 1e-9:
                raise ValueError(f"phases: gap between {a.end} and {b.start}")

    def index(self, t: float) -> int:
        """Index of the phase that holds progress t (t = 1 belongs to the last phase)."""
        t = float(np.clip(_check_times(t, "t"), 0.0, 1.0))  # NaN would fall through to the last phase
        for i, p in enumerate(self.phases):
            if t < p.end:
                return i
        return len(self.phases) - 1

    def phase(self, t: float) -> Phase:
        return self.phases[self.index(t)]

    def sparsity(self, t: float) -> float:
        p = self.phase(t)
        if p.kind == "dense":
            return 0.0
        if p.kind == "sparse":
            return self.target
        return exp_ramp((float(t) - p.start) / (p.end - p.start), self.target, self.c)

    def boundaries(self) -> list:
        """Progress values where one phase ends and the next starts (optimizer resets happen there)."""
        return [p.start for p in self.phases[1:]]


def _check_times(t, name):
    """Progress or epochs: finite numbers (a NaN would silently give the last phase or a NaN sparsity)."""
    a = _as_array(t, name)
    if a.dtype.kind not in "iuf":
        raise ValueError(f"{name}: expected a number or an array of numbers, got {t!r}"[:200])
    a = a.astype(float)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: must be finite, got {t!r}"[:200])
    return a


def _timeline(target, c, spec):
    return PhaseSchedule(tuple(Phase(k, a, b) for k, a, b in spec), target, c)


def acdc_imagenet(target: float) -> PhaseSchedule:
    """ACDC's ResNet-50 schedule (100 epochs scaled to [0, 1]): dense 10%, 7 sparse/dense pairs of 5% + 5% with
    the last dense extended by 5%, final 15% sparse."""
    spec = [("dense", 0.0, 0.10)]
    for i in range(7):
        a = 0.10 + 0.10 * i
        spec += [("sparse", a, a + 0.05), ("dense", a + 0.05, a + (0.15 if i == 6 else 0.10))]
    spec.append(("sparse", 0.85, 1.0))
    return _timeline(target, 4.0, spec)


def sapp_imagenet(target: float, c: float = 4.0, split=(0.4, 0.3, 0.3)) -> PhaseSchedule:
    """SequentialAttention++'s ImageNet schedule: ACDC's with each sparse-dense pair replaced by
    sparsification-sparse-dense (``split`` of each 10% pair; the paper does not give it) and the 7th pair with its
    extension replaced by one sparsification phase; final 15% sparse."""
    sp = _as_array(split, "split")
    if sp.shape != (3,) or sp.dtype.kind not in "iuf" or not np.all(np.isfinite(sp)) or \
            abs(float(sp.sum()) - 1.0) > 1e-9 or sp.min() <= 0:
        raise ValueError(f"split: three positive fractions summing to 1, got {split!r}")
    a_, b_, _ = (float(v) for v in sp)
    spec = [("dense", 0.0, 0.10)]
    for i in range(6):
        a = 0.10 + 0.10 * i
        spec += [("sparsification", a, a + 0.1 * a_), ("sparse", a + 0.1 * a_, a + 0.1 * (a_ + b_)),
                 ("dense", a + 0.1 * (a_ + b_), a + 0.10)]
    spec += [("sparsification", 0.70, 0.85), ("sparse", 0.85, 1.0)]
    return _timeline(target, c, spec)


def acdc_criteo(target: float, n_pairs: int = 10) -> PhaseSchedule:
    """Criteo schedule of the SA++ paper: 20% dense, 10 sparse-dense phases (6% each), 20% sparse."""
    n_pairs = check_positive_int(n_pairs, "n_pairs")
    spec = [("dense", 0.0, 0.2)]
    w = 0.6 / n_pairs
    for i in range(n_pairs):
        a = 0.2 + w * i
        spec += [("sparse", a, a + w / 2), ("dense", a + w / 2, a + w)]
    spec.append(("sparse", 0.8, 1.0))
    return _timeline(target, 4.0, spec)


def sapp_criteo(target: float, n_pairs: int = 10, c: float = 4.0) -> PhaseSchedule:
    """SA++ on Criteo: 20% dense, then sparsification-sparse-dense phases (6% each, split 2/2/2), the last of
    which is replaced by one sparsification phase (as in the ImageNet schedule), then 20% sparse."""
    n_pairs = check_positive_int(n_pairs, "n_pairs")
    spec = [("dense", 0.0, 0.2)]
    w = 0.6 / n_pairs
    for i in range(n_pairs - 1):
        a = 0.2 + w * i
        spec += [("sparsification", a, a + w / 3), ("sparse", a + w / 3, a + 2 * w / 3), ("dense", a + 2 * w / 3, a + w)]
    spec += [("sparsification", 0.8 - w, 0.8), ("sparse", 0.8, 1.0)]
    return _timeline(target, c, spec)
