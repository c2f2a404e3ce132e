"""Training-time pruners for both sparsity patterns: one base, methods that differ in how they score and update
masks (torch.ao's ``update_mask`` idea).

Usage::

    pruner = make_pruner("sapp", model, sparsity=0.9, pattern="16x16", total_steps=n_steps)  # before DDP wrapping
    pruner = make_pruner("srste", model, pattern="2:4")                                        # N:M: sparsity 1/2
    opt = torch.optim.Adam(pruner.weight_parameters(), lr=...)
    pruner.bind(opt)               # for optimizer resets; SA++ adds its logits as a group with their weight decay
    for step in range(n_steps):
        loss(model(x)).backward(); opt.step(); opt.zero_grad()
        pruner.step()                                      # advance by one training step
    report = pruner.finalize()                             # bake the masks, measure sparsity, check the pattern

:class:`Pruner` does the plumbing for every method: it finds the layers (``grouping.find_layers``), attaches one
``masking`` parametrization per weight (tied weights share one), keeps the step count and the optimizer, cuts masks
to a budget (``prune_to``: top-k by score in every partition of the grouping -- the layer for B x B blocks, each
window of M for N:M), saves / restores its state and finalizes.  Methods:

==============  =========================  ===============================  ============================
method          parametrization            score / mask update              when
==============  =========================  ===============================  ============================
magnitude       W * mask                   ||W_unit||                       phase schedule
powerprop       W * ||W_unit|| * mask      ||W_eff unit|| = ||W_unit||^2    phase schedule
acdc            W * mask                   ||W_unit||                       phase schedule, resets
sapp            W * A * mask               logit (A = n softmax(logits))    phase schedule, resets
asp             W * mask (zeroed)          |W| of the trained weights       once, at construction
srste           STE(W * mask(W))           |W|, top-k at every forward      every forward (``nm.srste``)
maxq            STE(W * S(W)) soft         multi-axis queries (N:M only)    every forward (``nm.maxq``)
==============  =========================  ===============================  ============================

Phase semantics of the scheduled methods (choices where the papers are silent, SA++ Section 2.2):
* entering ``dense``: every unit comes back (mask = 1);
* ``sparsification``: every ``update_every`` steps the sparsity follows ``schedule.sparsity(t)`` (exp_ramp,
  c = 4); pruning is monotone inside the phase (a pruned unit stays pruned until the next dense phase); an N:M
  window keeps round((1 - s) M) on the way to N;
* entering ``sparse``: the mask is cut to exactly the target, choosing among the units still kept, then frozen.
Under ``torch.distributed`` every mask change is broadcast from rank 0, so all ranks hold identical masks even if
scores differ in the last bit.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch
from torch import nn

from groupsparse._validation import check_positive_int
from groupsparse.schedules import (Phase, PhaseSchedule, acdc_criteo, acdc_imagenet, check_sparsity,
                                   sapp_criteo, sapp_imagenet)

from . import masking
from .grouping import find_layers, parse_pattern
from .report import SparsityReport, measure
from .tiling import BlockPattern, allocate_keep, check_block

__all__ = ["Pruner", "ScheduledPruner", "BlockPruner", "MagnitudePruner", "PowerPropPruner", "ACDCPruner",
           "SAPPPruner", "ASPPruner", "SRSTEPruner", "MaxQPruner", "make_pruner", "PRUNERS", "as_schedule",
           "check_state_keys", "resolve_pattern"]

RESETS = ("never", "decompress", "boundary")


def check_state_keys(state, mine: dict, same=()) -> None:
    """A pruner state must be a dict with exactly the keys of this pruner's ``state_dict()`` (``mine``), and
    equal to it on the keys ``same`` (what identifies the run); otherwise a ValueError naming ``state`` and the
    missing / unexpected / differing keys."""
    if not isinstance(state, Mapping):
        raise ValueError(f"state: expected the dict of pruner.state_dict(), got {type(state).__name__}")
    missing, unexpected = sorted(set(mine) - set(state)), sorted(map(str, set(state) - set(mine)))
    if missing or unexpected:
        raise ValueError(f"state: not a state of this {mine.get('method')!r} pruner (missing keys {missing}, "
                         f"unexpected keys {unexpected})")
    for key in same:
        try:
            equal = bool(state[key] == mine[key])
        except Exception:  # e.g. a tensor where a list was saved
            equal = False
        if not equal:
            raise ValueError(f"state: saved {key}={state[key]!r} does not match this pruner's {mine[key]!r}")


def resolve_pattern(pattern, block, sparsity):
    """(pattern object, sparsity): ``pattern`` ("16x16", (16, 16), "2:4") or, before patterns, ``block`` (B);
    an N:M pattern fixes the sparsity (a given one must agree), a block pattern needs one."""
    if pattern is None:
        pattern = BlockPattern(check_block(16 if block is None else block))
    elif block is not None:
        raise ValueError(f"block: give the pattern once (pattern={pattern!r} and block={block!r})")
    pat = parse_pattern(pattern)
    if pat.sparsity is None:
        if sparsity is None:
            raise ValueError(f"sparsity: the block pattern {pat} needs a target sparsity in [0, 1), e.g. 0.5")
        return pat, check_sparsity(sparsity)
    if sparsity is not None and abs(check_sparsity(sparsity) - pat.sparsity) > 1e-9:
        raise ValueError(f"sparsity: the N:M pattern {pat} fixes the sparsity at {pat.sparsity:g}; got "
                         f"{sparsity!r} (leave it out)")
    return pat, pat.sparsity


def as_schedule(schedule, target: float) -> PhaseSchedule:
    """A PhaseSchedule from a PhaseSchedule or a list of (kind, start, end); its target must equal ``target``."""
    if isinstance(schedule, PhaseSchedule):
        if abs(schedule.target - target) > 1e-12:
            raise ValueError(f"schedule: its target sparsity {schedule.target} differs from sparsity={target}")
        return schedule
    try:
        phases = tuple(p if isinstance(p, Phase) else Phase(*p) for p in schedule)
        return PhaseSchedule(phases, target)
    except (TypeError, ValueError) as e:
        raise ValueError(f"schedule: {e}") from None


def dense_then_sparse(target: float, finetune: float = 0.2) -> PhaseSchedule:
    """Train dense, prune once to the target at ``1 - finetune``, fine-tune sparse (the paper's baselines)."""
    if not (0.0 < finetune < 1.0):
        raise ValueError(f"finetune: fraction of training left for sparse fine-tuning, in (0, 1), got {finetune}")
    return PhaseSchedule((Phase("dense", 0.0, 1.0 - finetune), Phase("sparse", 1.0 - finetune, 1.0)), target)


class Pruner:
    """The base of every training-time method: layers, masks, state and the budget cut (module docstring).

    Parameters
    ----------
    model : the nn.Module to prune (not yet wrapped in DDP).  Parametrizations are attached at construction.
    pattern : "BxB" / (B, B) blocks or "N:M" (``grouping.parse_pattern``); ``block=B`` is the older spelling of
        "BxB" (errors then name ``block``).
    sparsity : target in [0, 1); required for blocks, fixed by N:M (1 - N/M; a given value must agree).
    layers / include / exclude / min_blocks / pad : which layers (``grouping.find_layers``); ``layers`` defaults
        to the method's ``default_preset``.
    Subclasses choose the parametrization (``make_param``) and override ``update_mask`` (called by ``step``).
    """

    method = "base"
    kind = "mask"
    default_preset = "all"
    pair_is_nm = False  # see read_pattern

    def __init__(self, model: nn.Module, pattern=None, *, sparsity=None, block=None, layers=None, include=None,
                 exclude=(), min_blocks: int = 100, pad: bool = False):
        from torch.nn.parallel import DistributedDataParallel
        if isinstance(model, DistributedDataParallel):
            raise ValueError("model: attach the pruner to the bare module before wrapping it in DDP")
        check_positive_int(min_blocks, "min_blocks")
        pattern = self.read_pattern(pattern)
        self.pattern, self.sparsity = resolve_pattern(pattern, block, sparsity)
        if isinstance(self.pattern, BlockPattern):
            self.block = self.pattern.block
        self.model = model
        self.groupings, self.skipped = find_layers(
            model, self.pattern, layers=self.default_preset if layers is None else layers, include=include,
            exclude=exclude, min_blocks=min_blocks, pad=pad, arg="block" if pattern is None else "pattern")
        self.params = masking.attach(model, self.groupings, self.make_param)
        self.optimizer = None
        self.step_count = 0
        self.finalized = False

    @classmethod
    def read_pattern(cls, pattern):
        """``pattern`` as given, except that the N:M-born methods read a pair (n, m), n != m, as N:M (as they did
        before blocks); (B, B) is blocks for every method."""
        if cls.pair_is_nm and isinstance(pattern, (tuple, list)) and len(pattern) == 2 and pattern[0] != pattern[1]:
            from .nm.groups import NMPattern
            return NMPattern.parse(pattern)
        return pattern

    # ------------------------------------------------------------------ names
    @property
    def tilings(self) -> list:
        """The groupings under their block-only name."""
        return self.groupings

    @property
    def names(self) -> list:
        """The pruned weights, each by its first holder's module name."""
        return [g.name for g in self.groupings]

    @property
    def tied(self) -> dict:
        """{first holder: other holders} of the tied weights."""
        return {g.name: tuple(g.tied) for g in self.groupings if g.tied}

    def original(self, name: str) -> torch.Tensor:
        """The stored (unmasked) weight of layer ``name``."""
        return masking.original(self.model, name)

    # ------------------------------------------------------------------ hooks for subclasses
    def make_param(self, grouping) -> masking.Mask:
        return masking.PARAM_KINDS[self.kind](grouping, **self._param_kwargs())

    def _param_kwargs(self) -> dict:
        return {}

    def update_mask(self) -> None:
        """Called by ``step`` after the step count moved: update the masks (default: nothing)."""

    def weight_parameters(self) -> list:
        """The model's parameters except the pruner's own (SA++ logits): build the optimizer over these and let
        ``bind`` add the logits with their own weight decay."""
        own = {id(q) for p in self.params for q in p.parameters(recurse=False)}
        return [q for q in self.model.parameters() if id(q) not in own]

    def bind(self, optimizer) -> "Pruner":
        """The optimizer whose state a method may reset (``reset_optimizer``)."""
        self.optimizer = optimizer
        return self

    def step(self) -> None:
        """One training step done (call after ``optimizer.step()``)."""
        self.step_count += 1
        self.update_mask()

    # ------------------------------------------------------------------ selection
    @torch.no_grad()
    def scores(self) -> list:
        """Per-layer unit scores (higher = more important), in each grouping's unit shape."""
        return [p.score(self.original(g.name)).float() for p, g in zip(self.params, self.groupings)]

    def keep_counts(self, s: float, scores) -> list:
        """Units kept per partition of every layer at sparsity ``s``."""
        return [g.keep_per_partition(s) for g in self.groupings]

    @torch.no_grad()
    def prune_to(self, s: float, zero: bool = False) -> None:
        """Cut every layer's mask to sparsity ``s`` by score, among units still kept (never un-prunes): the
        top-k of every partition; ``zero`` also writes zeros into the stored weights of the pruned units."""
        scores = [torch.where(p.mask > 0, sc, torch.full_like(sc, -float("inf")))
                  for p, sc in zip(self.params, self.scores())]
        for p, g, sc, k in zip(self.params, self.groupings, scores, self.keep_counts(s, scores)):
            if k >= int(g.partitions(p.mask).sum(1).max()):
                continue
            new = g.topk_mask(sc, k)
            p.mask.copy_(new)
            if zero:
                w = self.original(g.name)
                w.copy_(g.scale(w, new))
        self._sync_masks()

    def _sync_masks(self) -> None:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            for p in self.params:
                dist.broadcast(p.mask, src=0)

    # ------------------------------------------------------------------ state, reporting
    @torch.no_grad()
    def masks(self) -> list:
        """Every layer's current unit mask (0/1; MaxQ's soft S), in the grouping's unit shape."""
        return [p.unit_mask(self.original(g.name)).detach().clone() for p, g in zip(self.params, self.groupings)]

    def _pattern_state(self) -> dict:
        return {"block": self.block} if isinstance(self.pattern, BlockPattern) else {"pattern": str(self.pattern)}

    def state_dict(self) -> dict:
        """Pruner state beyond the model's state_dict (which holds masks, logits and weights)."""
        return {"method": self.method, **self._pattern_state(), "layers": self.names, "step": self.step_count}

    _identity = ("method", "block", "pattern", "layers")  # keys that must match this pruner's to load a state

    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict()``'s output; a state with missing or unexpected keys, of another run (method,
        pattern, layers, ...) or with out-of-range counters is a ValueError naming ``state``."""
        mine = self.state_dict()
        check_state_keys(state, mine, [k for k in self._identity if k in mine])
        self.step_count = check_positive_int(state["step"], "state['step']", low=0)

    @torch.no_grad()
    def budgets(self) -> dict:
        """{layer: most units kept per partition} the masks promise now (the report's pattern check): a stored
        mask's fullest partition; a dynamic mask (SR-STE, MaxQ) folds to the target's budget."""
        if self.finalized:
            return self._budgets
        return {g.name: (g.keep_per_partition(self.sparsity) if p.dynamic
                         else int(g.partitions(p.mask).sum(1).max()))
                for p, g in zip(self.params, self.groupings)}

    def report(self) -> SparsityReport:
        """Sparsity of the current effective weights and the pattern check (and the layers left dense, why)."""
        rep = measure(self.model, self.groupings, budgets=self.budgets())
        rep.skipped = dict(self.skipped)
        return rep

    @torch.no_grad()
    def finalize(self) -> SparsityReport:
        """Bake the effective weights (masks, attention / PowerProp / MaxQ scaling) into plain parameters, report,
        and check the pattern (a violation after folding would be a bug: AssertionError)."""
        if self.finalized:
            raise RuntimeError("finalize: already finalized")
        self._budgets = self.budgets()
        masking.detach(self.model, self.groupings, bake=True)
        self.params, self.finalized = [], True
        rep = self.report()
        if not rep.exact:
            bad = [r["name"] for r in rep.rows if r["violations"]]
            raise AssertionError(f"finalize: layers {bad} violate {self.pattern} after folding (a bug)")
        return rep


class ScheduledPruner(Pruner):
    """Magnitude pruning over a phase schedule; the base of powerprop, acdc and sapp (module docstring).

    Parameters (beyond :class:`Pruner`'s)
    ----------
    sparsity, block : the target and, before patterns, B of the B x B blocks (``pattern`` replaces ``block``).
    total_steps : number of ``step()`` calls making up training; progress t = steps / total_steps.
    schedule : a PhaseSchedule or list of (kind, start, end); default from ``preset``.
    preset : 'imagenet' or 'criteo' -- the paper's schedules (groupsparse.schedules).
    scope : 'uniform' (every layer at the target) or 'global' (the best blocks over all layers; blocks only).
    reset_optimizer : 'never', 'decompress' (when pruned units come back) or 'boundary' (every phase change).
    zero_pruned : write zeros into the stored weights of units pruned on entering a sparse phase (ACDC's pruning);
        otherwise they are masked and come back with their old values.
    """

    method = "magnitude"
    default_reset = "never"

    def __init__(self, model: nn.Module, sparsity=None, block=None, *, pattern=None, total_steps: int,
                 optimizer=None, schedule=None, preset: str = "imagenet", min_blocks: int = 100, pad: bool = False,
                 scope: str = "uniform", include=None, exclude=(), layers=None, update_every: int = 1,
                 reset_optimizer=None, zero_pruned: bool = False):
        from torch.nn.parallel import DistributedDataParallel
        if isinstance(model, DistributedDataParallel):
            raise ValueError("model: attach the pruner to the bare module before wrapping it in DDP")
        pat, self.sparsity = resolve_pattern(pattern, block, sparsity)
        if int(total_steps) != total_steps or total_steps < 1:
            raise ValueError(f"total_steps: expected a positive int, got {total_steps!r}")
        if preset not in ("imagenet", "criteo"):
            raise ValueError(f"preset: expected 'imagenet' or 'criteo', got {preset!r}")
        if scope not in ("uniform", "global"):
            raise ValueError(f"scope: expected 'uniform' or 'global', got {scope!r}")
        if scope == "global" and not isinstance(pat, BlockPattern):
            raise ValueError(f"scope: 'global' moves blocks between layers; the N:M pattern {pat} budgets every "
                             f"window (use 'uniform')")
        if int(update_every) < 1:
            raise ValueError(f"update_every: expected an int >= 1, got {update_every!r}")
        reset = self.default_reset if reset_optimizer is None else reset_optimizer
        if reset not in RESETS:
            raise ValueError(f"reset_optimizer: expected one of {RESETS}, got {reset!r}")
        self.total_steps, self.preset, self.scope = int(total_steps), preset, scope
        self.update_every, self.reset, self.zero_pruned = int(update_every), reset, bool(zero_pruned)
        self.schedule = (self.default_schedule(self.sparsity, preset) if schedule is None
                         else as_schedule(schedule, self.sparsity))
        super().__init__(model, pattern, sparsity=self.sparsity, block=block, layers=layers, include=include,
                         exclude=exclude, min_blocks=min_blocks, pad=pad)
        self.n_resets = 0
        self._phase = 0
        self._enter(0)
        if optimizer is not None:
            self.bind(optimizer)

    @classmethod
    def default_schedule(cls, target, preset):
        return dense_then_sparse(target, 0.15 if preset == "imagenet" else 0.2)

    # ------------------------------------------------------------------ schedule
    @property
    def progress(self) -> float:
        return min(self.step_count / self.total_steps, 1.0)

    @property
    def phase(self) -> Phase:
        return self.schedule.phases[self._phase]

    def target_now(self) -> float:
        """Scheduled sparsity at the current progress."""
        return self.schedule.sparsity(self.progress)

    def update_mask(self) -> None:
        """Enter the phases the step crossed; inside a sparsification phase follow the ramp."""
        i = self.schedule.index(self.progress)
        entered_now = i != self._phase
        if entered_now:
            entered = self.schedule.phases[self._phase + 1:i + 1]  # a short run may skip phases: enter each
            for j in range(self._phase + 1, i + 1):
                self._enter(j)
            self._phase = i
            self._maybe_reset(entered)
        if self.phase.kind == "sparsification" and (entered_now or self.step_count % self.update_every == 0):
            self.prune_to(self.target_now())

    def _enter(self, j: int) -> None:
        kind = self.schedule.phases[j].kind
        if kind == "dense":
            for p in self.params:
                p.mask.fill_(1.0)
        elif kind == "sparse":
            self.prune_to(self.sparsity, zero=self.zero_pruned)
        else:  # sparsification starts where the previous phase left the masks
            self.prune_to(self.schedule.sparsity(self.schedule.phases[j].start))

    def _maybe_reset(self, entered) -> None:
        if self.reset == "never" or self.optimizer is None:
            if self.reset != "never" and self.optimizer is None:
                warnings.warn("pruner: no optimizer bound (pruner.bind(opt)); optimizer state is not reset",
                              stacklevel=4)
            return
        if self.reset == "boundary" or any(p.kind == "dense" for p in entered):
            self.optimizer.state.clear()  # moments and step counts restart lazily (SGD momentum, Adam)
            self.n_resets += 1

    def keep_counts(self, s: float, scores) -> list:
        if self.scope == "uniform":
            return super().keep_counts(s, scores)
        return allocate_keep(self.groupings, s, "global", scores)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {**super().state_dict(), "sparsity": self.sparsity, "total_steps": self.total_steps,
                "phase": self._phase, "n_resets": self.n_resets}

    _identity = ("method", "sparsity", "block", "pattern", "total_steps", "layers")

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        phase = check_positive_int(state["phase"], "state['phase']", low=0, high=len(self.schedule.phases) - 1)
        n_resets = check_positive_int(state["n_resets"], "state['n_resets']", low=0)
        self._phase, self.n_resets = phase, n_resets


#: the name from before N:M shared the base (the scheduled magnitude pruner)
BlockPruner = ScheduledPruner


class MagnitudePruner(ScheduledPruner):
    """Keep the blocks with the largest Frobenius norm (dense training, one cut, sparse fine-tuning)."""


class PowerPropPruner(ScheduledPruner):
    """Block PowerPropagation: train ``b`` with ``W = ||b_block|| b``, then magnitude-prune ``W``'s blocks."""
    method, kind = "powerprop", "powerprop"


class ACDCPruner(ScheduledPruner):
    """AC/DC: alternate dense and sparse (magnitude top-k) phases; momentum reset when blocks come back."""
    method = "acdc"
    default_reset = "decompress"

    @classmethod
    def default_schedule(cls, target, preset):
        return acdc_imagenet(target) if preset == "imagenet" else acdc_criteo(target)


class SAPPPruner(ScheduledPruner):
    """SequentialAttention++ (see masking.BlockAttention for A and its clipping).

    ``logit_weight_decay``: weight decay on the logits, added as their own optimizer param group by ``bind`` when
    the optimizer does not already hold them (if it does, its own weight decay applies).
    """
    method, kind = "sapp", "attention"
    default_reset = "boundary"

    def __init__(self, *args, logit_weight_decay: float = 1e-4, **kw):
        if logit_weight_decay < 0:
            raise ValueError(f"logit_weight_decay: must be >= 0, got {logit_weight_decay}")
        self.logit_weight_decay = float(logit_weight_decay)
        super().__init__(*args, **kw)

    @classmethod
    def default_schedule(cls, target, preset):
        return sapp_imagenet(target) if preset == "imagenet" else sapp_criteo(target)

    def _param_kwargs(self) -> dict:
        return {"density": 1.0 - self.sparsity}

    def logits(self) -> list:
        return [p.logits for p in self.params]

    def bind(self, optimizer):
        held = {id(q) for g in optimizer.param_groups for q in g["params"]}
        missing = [q for q in self.logits() if id(q) not in held]
        if missing:
            optimizer.add_param_group({"params": missing, "weight_decay": self.logit_weight_decay})
        return super().bind(optimizer)


# the methods born for N:M build on Pruner above (imported here, after it exists)
from .nm.asp import ASPPruner  # noqa: E402
from .nm.maxq import MaxQPruner  # noqa: E402
from .nm.srste import SRSTEPruner  # noqa: E402

PRUNERS = {"magnitude": MagnitudePruner, "powerprop": PowerPropPruner, "acdc": ACDCPruner, "sapp": SAPPPruner,
           "asp": ASPPruner, "srste": SRSTEPruner, "maxq": MaxQPruner}


def make_pruner(method: str, model: nn.Module, sparsity=None, block=None, *, pattern=None, **kw) -> Pruner:
    """Any method of ``PRUNERS`` under any pattern: ``make_pruner("sapp", model, 0.8, pattern="16x16",
    total_steps=...)``, ``make_pruner("srste", model, pattern="2:4")``.  ``block=B`` is the spelling from before
    patterns (``pattern=(B, B)``; default 16x16 when neither is given)."""
    if method not in PRUNERS:
        raise ValueError(f"method: expected one of {sorted(PRUNERS)}, got {method!r}")
    resolve_pattern(pattern, block, sparsity)  # one message for a bad pattern / sparsity, whatever the method
    return PRUNERS[method](model, pattern=pattern, sparsity=sparsity, block=block, **kw)
