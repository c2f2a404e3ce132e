"""MaxQ (Xiang et al., CVPR 2024): multi-axis query soft N:M masks with an incremental schedule.

Exactly the authors' code (their ``SoftMaxQConv2DBNV2Pro``), with A = |W| detached,
s = (M - N) / M and tau = 1e-2:

1. L: the N:M magnitude mask of each group of M consecutive input channels (NHWC, ``groups.py``);
2. incremental dense blocks: the ``int(p * n_groups)`` groups with the smallest L1 norm get L = 1 (p from
   ``groupsparse.schedules.maxq_dense_fraction``: linear / cubic / cos / exp ramps, a per-epoch step function);
3. filter query F = 1[rank >= idx] * sigmoid((A - thr_f) / tau) per output filter, idx = s * Cin*k*k and thr_f the
   midpoint between the largest "pruned" and the smallest "kept" magnitude under a filter-wise unstructured budget;
4. kernel-position query P, the same over all Cout*Cin weights at each of the k*k positions (0 for 1x1 kernels
   and Linear layers);
5. S = L * (1 + F + P): pruned weights 0, kept ones scaled by [1, 3).

Forward ``W * S`` with the straight-through gradient plus the SR-STE decay on pruned weights (``srste.MaskedSTE``);
at the end S is folded into the weights (``finalize``), which leaves exactly the N:M pattern of L.

Differences from the authors' code, on purpose: idx = (M - N) * n // M in integers (their ``int(s * n)`` in floats
is the same for every power-of-two M); Linear layers are accepted (filter query per output row); the eval-mode
mask is the current one rather than the one stored at the last epoch end (they coincide after the epoch's last step).

Making the mask cheap when it does not change (``refresh``)
-----------------------------------------------------------
The authors recompute S from scratch with sorts at every training forward (here a full recompute uses
one unsorted top-k selection per query row instead of a sort, same result) (``refresh='always'``), which the issue
measured at +32% step time on ResNet-50 / H100.  S depends on A through (a) discrete choices -- the top-N set of each
group, the dense groups, the "kept" sets of the filter and position queries -- and (b) smooth sigmoids given those
choices.  With ``refresh='auto'`` (default) a full recompute records, for every weight, the *slack* by which its
magnitude may move before any discrete choice can flip: half the gap between the N-th and (N+1)-th magnitude of its
group, and half the gap at the idx-th order statistic of its filter and of its kernel position; for the dense-group
choice, half the gap at the cut of the sorted group L1 norms.  At the next forward, if every |A - A_ref| is below its
slack (and every group's summed change below the group slack), no choice can have changed and S is rebuilt from the
cached choices with elementwise operations and min/max reductions only (no sort); the result equals the full
recompute (tested).  Otherwise, or when p changes, the full recompute runs.  ``refresh=k`` (an int) instead
recomputes every k-th forward and reuses S in between (approximate, cheapest).
"""
from __future__ import annotations

import warnings

import torch

from groupsparse._validation import check_positive_int
from groupsparse.schedules import maxq_dense_fraction

from ..masking import Mask
from ..pruners import Pruner
from .groups import NMGrouping, NMPattern, check_nm, from_groups, to_groups
from .srste import DEFAULT_DECAY, masked_ste

__all__ = ["maxq_mask", "MaxQMask", "MaxQPruner", "DENSE_ORDERS", "AXES"]

DENSE_ORDERS = ("smallest", "largest", "random")
AXES = ("filter", "position")
_SAFE = 1.0 - 1e-4  # slack safety factor against rounding in the comparisons


def _npos(shape) -> int:
    n = 1
    for s in shape[2:]:
        n *= int(s)
    return n


def _axis_views(A):
    """Rows of the filter query (Cout, Cin*k*k) and of the position query (k*k, Cout*Cin), or None if 1 position."""
    cout = A.shape[0]
    F = A.reshape(cout, -1)
    npos = _npos(A.shape)
    P = A.reshape(-1, npos).t() if npos > 1 else None
    return F, P


def _axis_structure(X, n_prune: int):
    """Per row: 'kept' = the n - n_prune largest (rank >= n_prune); threshold = midpoint of the order statistics
    at the cut (sorted[n_prune - 1], sorted[n_prune]); gap between them.  One unsorted top-(n - n_prune + 1)
    selection instead of a full sort (3-5x cheaper on CPU): its smallest value is sorted[n_prune - 1]."""
    k = X.shape[1] - n_prune + 1
    vals, ind = torch.topk(X, k, dim=1, sorted=False)
    pos = vals.argmin(1, keepdim=True)
    lo = vals.gather(1, pos)
    hi = vals.scatter(1, pos, float("inf")).amin(1, keepdim=True)
    keep = torch.zeros_like(X, dtype=torch.bool).scatter_(1, ind, True)
    keep.scatter_(1, ind.gather(1, pos), False)
    return keep, 0.5 * (lo + hi), hi - lo


def _axis_threshold(X, keep):
    """The same threshold from a known 'kept' set, without sorting."""
    lo = X.masked_fill(keep, -float("inf")).amax(1, keepdim=True)
    hi = X.masked_fill(~keep, float("inf")).amin(1, keepdim=True)
    return 0.5 * (lo + hi)


def _axis_soft(X, keep, thr, tau):
    return keep * torch.sigmoid((X - thr) / tau)


def _n_prune(s_num: int, m: int, n: int) -> int:
    return (s_num * n) // m


class _Structure:
    """The discrete choices of one full recompute plus the slack that keeps them valid."""
    __slots__ = ("A", "L", "keepF", "keepP", "slack", "group_slack", "nd", "p")


def _full(A, n, m, p, axes, dense_order, rand_key):
    """Full MaxQ structure from magnitudes A (float32, weight-shaped)."""
    st = _Structure()
    shape = A.shape
    G = to_groups(A, m)
    vals, order = torch.topk(G, n + 1, dim=1)  # sorted, descending
    Lg = torch.zeros_like(G, dtype=torch.bool).scatter_(1, order[:, :n], True)
    slackL = 0.5 * (vals[:, n - 1] - vals[:, n])
    ng = G.shape[0]
    nd = int(p * ng)
    st.group_slack = None
    if nd > 0:
        sums = G.sum(1)
        key = {"smallest": sums, "largest": -sums}.get(dense_order, rand_key)
        ksrt, korder = key.sort()
        dense = korder[:nd]
        Lg[dense] = True
        slackL = slackL.clone()
        slackL[dense] = float("inf")
        if nd < ng and dense_order != "random":
            st.group_slack = 0.5 * (ksrt[nd] - ksrt[nd - 1])
    slack = from_groups(slackL[:, None].expand(-1, m), shape)
    s_num = m - n
    Fx, Px = _axis_views(A)
    st.keepF = st.keepP = None
    if "filter" in axes:
        keep, thr, gap = _axis_structure(Fx, _n_prune(s_num, m, Fx.shape[1]))
        st.keepF = keep
        slack = torch.minimum(slack, (0.5 * gap).expand_as(Fx).reshape(shape))
    if "position" in axes and Px is not None:
        keep, thr, gap = _axis_structure(Px, _n_prune(s_num, m, Px.shape[1]))
        st.keepP = keep
        slack = torch.minimum(slack, (0.5 * gap).expand_as(Px).t().reshape(shape))
    st.A, st.L, st.slack, st.nd, st.p = A, from_groups(Lg, shape), slack * _SAFE, nd, p
    return st


def _soft(st, A, tau):
    """S = L * (1 + F + P) from cached discrete choices (no sort)."""
    shape = A.shape
    Fx, Px = _axis_views(A)
    S = torch.ones_like(A)
    if st.keepF is not None:
        S = S + _axis_soft(Fx, st.keepF, _axis_threshold(Fx, st.keepF), tau).reshape(shape)
    if st.keepP is not None:
        S = S + _axis_soft(Px, st.keepP, _axis_threshold(Px, st.keepP), tau).t().reshape(shape)
    return S * st.L


def _still_valid(st, A, m) -> bool:
    dA = (A - st.A).abs()
    if bool(((dA > 0) & (dA >= st.slack)).any()):
        return False
    if st.group_slack is not None and bool((to_groups(dA, m).sum(1) >= st.group_slack * _SAFE).any()):
        return False
    return True


def _check_options(tau, axes, dense_order, refresh):
    if not (tau > 0):
        raise ValueError(f"tau: the sigmoid temperature must be > 0, got {tau!r}")
    bad = [a for a in axes if a not in AXES]
    if bad:
        raise ValueError(f"axes: expected a subset of {AXES}, got {tuple(axes)!r}")
    if dense_order not in DENSE_ORDERS:
        raise ValueError(f"dense_order: expected one of {DENSE_ORDERS}, got {dense_order!r}")
    if not (refresh in ("always", "auto") or (isinstance(refresh, int) and refresh >= 1)):
        raise ValueError(f"refresh: expected 'always', 'auto' or an int >= 1, got {refresh!r}")


@torch.no_grad()
def maxq_mask(w, n: int, m: int, p: float = 0.0, tau: float = 1e-2, axes=AXES, dense_order="smallest",
              seed: int = 0):
    """MaxQ's soft mask S of weight ``w`` (reference: a full recompute with sorts, as the authors do)."""
    check_nm(n, m)
    _check_options(tau, axes, dense_order, "always")
    A = w.detach().abs().float()
    rand_key = _rand_key(A, m, seed) if dense_order == "random" else None
    return _soft(_full(A, n, m, p, tuple(axes), dense_order, rand_key), A, tau)


def _rand_key(A, m, seed):
    g = torch.Generator().manual_seed(int(seed))
    return torch.rand(A.numel() // m, generator=g).to(A.device)


class MaxQMask(Mask):
    """MaxQ parametrization of one weight of ``shape`` (see the module docstring): a dynamic mask whose
    ``unit_mask`` is the soft S; ``set_dense_fraction`` moves the schedule."""

    dynamic = True

    def __init__(self, shape, n, m, *, tau=1e-2, axes=AXES, dense_order="smallest", decay=DEFAULT_DECAY,
                 refresh="auto", seed=0):
        super().__init__(NMGrouping("weight", tuple(shape), n, m))
        self.shape, self.n, self.m = tuple(shape), int(n), int(m)
        _check_options(tau, axes, dense_order, refresh)
        self.tau, self.axes, self.dense_order = float(tau), tuple(axes), dense_order
        self.decay, self.refresh, self.seed = float(decay), refresh, int(seed)
        self.p = 0.0
        self._st = None
        self._S = None
        self._calls = 0
        self.n_full = 0       # statistics: full recomputes / cheap rebuilds / reuses
        self.n_soft = 0
        self.n_reuse = 0
        self._rand = None

    def set_dense_fraction(self, p: float) -> None:
        p = float(p)
        if p != self.p:
            self.p, self._st = p, None

    @torch.no_grad()
    def mask(self, w, force_full: bool = False):
        A = w.detach().abs().float()
        self._calls += 1
        st = self._st
        if (force_full or st is None or self.refresh == "always" or st.A.shape != A.shape
                or st.A.device != A.device):
            return self._recompute(A)
        if isinstance(self.refresh, int):
            if (self._calls - 1) % self.refresh == 0:
                return self._recompute(A)
            self.n_reuse += 1
            return self._S
        if not _still_valid(st, A, self.m):
            return self._recompute(A)
        self.n_soft += 1
        self._S = _soft(st, A, self.tau)
        return self._S

    def _recompute(self, A):
        if self.dense_order == "random" and (self._rand is None or self._rand.device != A.device):
            self._rand = _rand_key(A, self.m, self.seed)
        self._st = _full(A, self.n, self.m, self.p, self.axes, self.dense_order, self._rand)
        self._S = _soft(self._st, A, self.tau)
        self.n_full += 1
        return self._S

    def unit_mask(self, w):
        return self.mask(w)

    def forward(self, w):
        return masked_ste(w, self.mask(w), self.decay)

    @torch.no_grad()
    def fold(self, w):
        """W * S with every group N:M (p forced to 0): the deployable weight."""
        saved = self.p
        self.set_dense_fraction(0.0)
        out = w * self.mask(w, force_full=True).to(w.dtype)
        self.set_dense_fraction(saved)
        return out


class MaxQPruner(Pruner):
    """MaxQ training: soft multi-axis-query masks, incremental N:M schedule over epochs ``[start, end]`` (N:M
    patterns only: its queries and dense groups are defined on windows of M).

    ``steps_per_epoch`` converts ``step()`` calls to the integer epoch the schedule reads (a per-epoch step
    function, as the authors' ``update_epoch``); ``set_epoch(e)`` sets it directly.  ``start == end == 0`` is plain
    N:M from the first step.  The authors' ImageNet runs use start=0, end=30 of 120 epochs, linear.
    """

    method = "maxq"
    default_preset = "maxq"
    pair_is_nm = True

    def __init__(self, model, pattern="2:4", *, steps_per_epoch: int = 1, start: int = 0, end: int = 0,
                 schedule: str = "linear", tau: float = 1e-2, axes=AXES, dense_order: str = "smallest",
                 decay: float = DEFAULT_DECAY, refresh="auto", seed: int = 0, **kw):
        from ..grouping import parse_pattern
        block = kw.get("block")
        pat = f"{block}x{block}" if block is not None else parse_pattern(self.read_pattern(pattern))
        if not isinstance(pat, NMPattern):
            raise ValueError(f"pattern: MaxQ's queries are defined on N:M windows; got the block pattern {pat} "
                             f"(use magnitude, powerprop, acdc, sapp, asp or srste)")
        if int(steps_per_epoch) != steps_per_epoch or steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch: expected a positive int, got {steps_per_epoch!r}")
        if not (decay >= 0):
            raise ValueError(f"decay: the SR-STE lambda must be >= 0, got {decay!r}")
        maxq_dense_fraction(0, start, end, schedule)  # validates start/end/kind with groupsparse's messages
        _check_options(tau, axes, dense_order, refresh)
        self.steps_per_epoch, self.start, self.end, self.schedule = int(steps_per_epoch), start, end, schedule
        self.opts = dict(tau=tau, axes=tuple(axes), dense_order=dense_order, decay=float(decay), refresh=refresh)
        self.seed = int(seed)
        self._epoch_override = None
        super().__init__(model, pattern, **kw)
        self.update_mask()

    def make_param(self, grouping):
        index = self.names.index(grouping.name)  # one random stream per layer (dense_order='random')
        return MaxQMask(grouping.weight_shape, grouping.n, grouping.m, seed=self.seed + index, **self.opts)

    @property
    def epoch(self) -> int:
        if self._epoch_override is not None:
            return self._epoch_override
        return self.step_count // self.steps_per_epoch

    def dense_fraction(self) -> float:
        return float(maxq_dense_fraction(self.epoch, self.start, self.end, self.schedule))

    def update_mask(self) -> None:
        """Move every layer's dense fraction to the schedule's value at the current epoch."""
        p = self.dense_fraction()
        for prm in self.params:
            prm.set_dense_fraction(p)

    def set_epoch(self, epoch: int) -> None:
        self._epoch_override = int(epoch)
        self.update_mask()

    def state_dict(self) -> dict:
        return {**super().state_dict(), "epoch_override": self._epoch_override}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        e = state["epoch_override"]
        self._epoch_override = None if e is None else check_positive_int(e, "state['epoch_override']", low=0)
        self.update_mask()

    def finalize(self):
        if self.dense_fraction() > 0:
            warnings.warn(f"finalize: the schedule still keeps {self.dense_fraction():.3f} of the groups dense at "
                          f"epoch {self.epoch}; folding applies the full N:M pattern (p = 0)", stacklevel=2)
        return super().finalize()

    def cache_stats(self) -> dict:
        return {k: sum(getattr(p, k) for p in self.params) for k in ("n_full", "n_soft", "n_reuse")}
