"""Training-time block pruners behind one interface.

Usage::

    pruner = make_pruner("sapp", model, sparsity=0.9, block=16, total_steps=n_steps)   # before DDP wrapping
    opt = torch.optim.Adam(pruner.weight_parameters(), lr=...)
    pruner.bind(opt)               # for optimizer resets; SA++ adds its logits as a group with their weight decay
    for step in range(n_steps):
        loss(model(x)).backward(); opt.step(); opt.zero_grad()
        pruner.step()                                      # advance the schedule by one training step
    report = pruner.finalize()                             # bake the masks, measure sparsity

Every method is the same state machine over a ``groupsparse.schedules.PhaseSchedule`` and differs only in the
block score and the parametrization:

==============  ======================  ===============================  =======================
method          parametrization         score (higher = keep)            optimizer reset
==============  ======================  ===============================  =======================
magnitude       W * mask                ||W_block||_F                    never
powerprop       W * ||W_block|| * mask  ||W_eff block||_F = ||W_b||^2    never
acdc            W * mask                ||W_block||_F                    when blocks come back
sapp            W * A * mask            logit (A = n softmax(logits))    every phase boundary
==============  ======================  ===============================  =======================

Phase semantics (choices where the papers are silent, seqattn_pp.md 2.2):
* entering ``dense``: every block comes back (mask = 1);
* ``sparsification``: every ``update_every`` steps the sparsity follows ``schedule.sparsity(t)`` (exp_ramp,
  c = 4); pruning is monotone inside the phase (a pruned block stays pruned until the next dense phase);
* entering ``sparse``: the mask is cut to exactly the target, choosing among the blocks still kept, then frozen.
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
from .report import SparsityReport, finalize_model, measure
from .tiling import find_prunable, keep_count

__all__ = ["BlockPruner", "MagnitudePruner", "PowerPropPruner", "ACDCPruner", "SAPPPruner", "make_pruner",
           "PRUNERS", "as_schedule", "check_state_keys"]

RESETS = ("never", "decompress", "boundary")


def check_state_keys(state, mine: dict, same=()) -> None:
    """A pruner state (block or N:M) must be a dict with exactly the keys of this pruner's ``state_dict()``
    (``mine``), and equal to it on the keys ``same`` (what identifies the run); otherwise a ValueError naming
    ``state`` and the missing / unexpected / differing keys."""
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


class BlockPruner:
    """Block magnitude pruning; the base of every training-time method (see the module docstring).

    Parameters
    ----------
    model : the nn.Module to prune (not yet wrapped in DDP).  Parametrizations are attached at construction.
    sparsity : target block sparsity in [0, 1), per layer (``scope='uniform'``) or over all layers ('global').
    block : B of the B x B blocks.  ``pad`` / ``min_blocks`` / ``include``: see ``tiling.find_prunable``.
    total_steps : number of ``step()`` calls making up training; progress t = steps / total_steps.
    schedule : a PhaseSchedule or list of (kind, start, end); default from ``preset``.
    preset : 'imagenet' or 'criteo' -- the paper's schedules (groupsparse.schedules).
    reset_optimizer : 'never', 'decompress' (when pruned blocks come back) or 'boundary' (every phase change).
    zero_pruned : write zeros into the stored weights of blocks pruned on entering a sparse phase (ACDC's pruning);
        otherwise they are masked and come back with their old values.
    """

    method = "magnitude"
    kind = "mask"
    default_reset = "never"

    def __init__(self, model: nn.Module, sparsity, block=16, *, total_steps: int, optimizer=None, schedule=None,
                 preset: str = "imagenet", min_blocks: int = 100, pad: bool = False, scope: str = "uniform",
                 include=None, update_every: int = 1, reset_optimizer=None, zero_pruned: bool = False):
        from torch.nn.parallel import DistributedDataParallel
        if isinstance(model, DistributedDataParallel):
            raise ValueError("model: attach the pruner to the bare module before wrapping it in DDP")
        self.sparsity = check_sparsity(sparsity)
        if int(total_steps) != total_steps or total_steps < 1:
            raise ValueError(f"total_steps: expected a positive int, got {total_steps!r}")
        if preset not in ("imagenet", "criteo"):
            raise ValueError(f"preset: expected 'imagenet' or 'criteo', got {preset!r}")
        if scope not in ("uniform", "global"):
            raise ValueError(f"scope: expected 'uniform' or 'global', got {scope!r}")
        if int(update_every) < 1:
            raise ValueError(f"update_every: expected an int >= 1, got {update_every!r}")
        reset = self.default_reset if reset_optimizer is None else reset_optimizer
        if reset not in RESETS:
            raise ValueError(f"reset_optimizer: expected one of {RESETS}, got {reset!r}")
        self.total_steps, self.preset, self.scope = int(total_steps), preset, scope
        self.update_every, self.reset, self.zero_pruned = int(update_every), reset, bool(zero_pruned)
        self.schedule = (self.default_schedule(self.sparsity, preset) if schedule is None
                         else as_schedule(schedule, self.sparsity))
        self.model = model
        self.tilings = find_prunable(model, block, min_blocks=min_blocks, pad=pad, include=include)
        self.block = self.tilings[0].block
        self.params = masking.attach(model, self.tilings, self.kind, **self._param_kwargs())
        self.optimizer = None
        self.step_count = 0
        self.n_resets = 0
        self._phase = 0
        self._enter(0)
        if optimizer is not None:
            self.bind(optimizer)

    # ------------------------------------------------------------------ hooks for subclasses
    @classmethod
    def default_schedule(cls, target, preset):
        return dense_then_sparse(target, 0.15 if preset == "imagenet" else 0.2)

    def _param_kwargs(self) -> dict:
        return {}

    def weight_parameters(self) -> list:
        """The model's parameters except the pruner's own (SA++ logits): build the optimizer over these and let
        ``bind`` add the logits with their own weight decay."""
        own = {id(q) for p in self.params for q in p.parameters(recurse=False)}
        return [q for q in self.model.parameters() if id(q) not in own]

    def bind(self, optimizer) -> "BlockPruner":
        """The optimizer whose state is reset at phase boundaries (per ``reset_optimizer``)."""
        self.optimizer = optimizer
        return self

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

    def step(self) -> None:
        """Advance by one training step (call after ``optimizer.step()``)."""
        self.step_count += 1
        i = self.schedule.index(self.progress)
        entered_now = i != self._phase
        if entered_now:
            entered = self.schedule.phases[self._phase + 1:i + 1]  # a short run may skip phases: enter each
            for j in range(self._phase + 1, i + 1):
                self._enter(j)
            self._phase = i
            self._maybe_reset(entered)
        if self.phase.kind == "sparsification" and (entered_now or self.step_count % self.update_every == 0):
            self._prune_to(self.target_now())

    def _enter(self, j: int) -> None:
        kind = self.schedule.phases[j].kind
        if kind == "dense":
            for p in self.params:
                p.mask.fill_(1.0)
        elif kind == "sparse":
            self._prune_to(self.sparsity, zero=self.zero_pruned)
        else:  # sparsification starts where the previous phase left the masks
            self._prune_to(self.schedule.sparsity(self.schedule.phases[j].start))

    def _maybe_reset(self, entered) -> None:
        if self.reset == "never" or self.optimizer is None:
            if self.reset != "never" and self.optimizer is None:
                warnings.warn("pruner: no optimizer bound (pruner.bind(opt)); optimizer state is not reset",
                              stacklevel=3)
            return
        if self.reset == "boundary" or any(p.kind == "dense" for p in entered):
            self.optimizer.state.clear()  # moments and step counts restart lazily (SGD momentum, Adam)
            self.n_resets += 1

    # ------------------------------------------------------------------ selection
    @torch.no_grad()
    def scores(self) -> list:
        """Per-layer block scores (higher = more important), flat in Groups order."""
        return [p.score(masking.original(self.model, t.name)).float() for p, t in zip(self.params, self.tilings)]

    @torch.no_grad()
    def _prune_to(self, s: float, zero: bool = False) -> None:
        """Cut each layer's mask to sparsity ``s`` by score, among blocks still kept (never un-prunes)."""
        scores = [torch.where(p.mask > 0, sc, torch.full_like(sc, -float("inf")))
                  for p, sc in zip(self.params, self.scores())]
        if self.scope == "uniform":
            keep = [keep_count(s, t.n_blocks) for t in self.tilings]
        else:
            from .tiling import allocate_keep
            keep = allocate_keep(self.tilings, s, "global", scores)
        for p, t, sc, k in zip(self.params, self.tilings, scores, keep):
            if k >= int(p.mask.sum()):
                continue
            new = torch.zeros_like(p.mask)
            new[torch.topk(sc, k, sorted=False).indices] = 1.0
            p.mask.copy_(new)
            if zero:
                w = masking.original(self.model, t.name)
                w.copy_(t.scale(w, new))
        self._sync_masks()

    def _sync_masks(self) -> None:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            for p in self.params:
                dist.broadcast(p.mask, src=0)

    # ------------------------------------------------------------------ state, reporting
    def masks(self) -> list:
        return [p.mask.detach().clone() for p in self.params]

    def state_dict(self) -> dict:
        """Pruner state beyond the model's state_dict (which holds masks, logits and weights)."""
        return {"method": self.method, "sparsity": self.sparsity, "block": self.block,
                "total_steps": self.total_steps, "layers": [t.name for t in self.tilings],
                "step": self.step_count, "phase": self._phase, "n_resets": self.n_resets}

    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict()``'s output; a state with missing or unexpected keys, of another run (method,
        sparsity, block, total_steps, layers) or with out-of-range counters is a ValueError naming ``state``."""
        check_state_keys(state, self.state_dict(), ("method", "sparsity", "block", "total_steps", "layers"))
        step = check_positive_int(state["step"], "state['step']", low=0)
        phase = check_positive_int(state["phase"], "state['phase']", low=0, high=len(self.schedule.phases) - 1)
        n_resets = check_positive_int(state["n_resets"], "state['n_resets']", low=0)
        self.step_count, self._phase, self.n_resets = step, phase, n_resets

    def report(self) -> SparsityReport:
        """Sparsity of the current effective weights."""
        return measure(self.model, self.tilings)

    def finalize(self) -> SparsityReport:
        """Bake the effective weights (masks, attention / PowerProp scaling) into plain parameters and report."""
        self.params = []
        return finalize_model(self.model, self.tilings)


class MagnitudePruner(BlockPruner):
    """Keep the blocks with the largest Frobenius norm (dense training, one cut, sparse fine-tuning)."""


class PowerPropPruner(BlockPruner):
    """Block PowerPropagation: train ``b`` with ``W = ||b_block|| b``, then magnitude-prune ``W``'s blocks."""
    method, kind = "powerprop", "powerprop"


class ACDCPruner(BlockPruner):
    """AC/DC: alternate dense and sparse (magnitude top-k) phases; momentum reset when blocks come back."""
    method = "acdc"
    default_reset = "decompress"

    @classmethod
    def default_schedule(cls, target, preset):
        return acdc_imagenet(target) if preset == "imagenet" else acdc_criteo(target)


class SAPPPruner(BlockPruner):
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


PRUNERS = {"magnitude": MagnitudePruner, "powerprop": PowerPropPruner, "acdc": ACDCPruner, "sapp": SAPPPruner}


def make_pruner(method: str, model: nn.Module, sparsity, block=16, **kw) -> BlockPruner:
    if method not in PRUNERS:
        raise ValueError(f"method: expected one of {sorted(PRUNERS)}, got {method!r}")
    return PRUNERS[method](model, sparsity, block, **kw)
