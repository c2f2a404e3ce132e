"""Calibration for the one-shot driver (``nn_bridge.oneshot.solve_layers``, block and N:M patterns alike): the
checks of the calibration data, the streams of layer inputs (dense and already-pruned model), their Grams and the
damping of each layer's problem.  Every error names ``batches`` (with the batch index, the element and, once layers
are involved, the layer).

Streams (``PrefixStreams``: re-run the model prefix, any model; ``BlockStreams``: replay one sequential block at a
time on cached block inputs, in memory or spilled to a temporary directory) hand out a layer's input rows batch by
batch; ``Grams`` folds them into H and Bm (through the cross Gram C, or directly for narrow outputs) at once, so no
layer's rows and no copy of the model are ever held (one dense copy of the current block at most).

What is refused, and when:

* before any work (``check_batches``): no batch; a batch that holds an empty tensor, a complex tensor or a NaN /
  inf in a floating-point tensor; a batch whose structure (tuple / dict keys), tensor dtypes or numbers of
  dimensions differ from batch 0's; a batch the model cannot run (wrong width, wrong dtype for the model, ...):
  every batch whose tensor shapes differ from batch 0's beyond the first (batch) dimension is run through the
  model once here, and batch 0 by the driver's first pass (both through ``run_batch``, so a failure names the
  batch).  ``row_masks``: one bool tensor per batch.
* per layer (``check_gram``, on the layer's Gram H = X^T X / n): no rows reach the layer, H is not finite (an
  overflow inside the model, or of X^T X in float32), or H is all zero.

Rows of zeros, and whole all-zero batches among others, are accepted: they add nothing to a Gram, which is what
the layer problem sees (the damped H stays positive definite).  Only a layer whose whole Gram is zero -- no
calibration signal reaches it at all -- is an error, since there is nothing to fit the pruned weights to.
"""
from __future__ import annotations

import copy
import math
import os
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["check_batches", "run_batch", "check_gram", "check_blocks", "check_run", "default_run", "Layer",
           "layer_inputs", "called_with", "forward_order", "pow2_scale", "PrefixStreams", "BlockStreams", "streams",
           "Grams", "damped"]


def _leaves(x, path):
    """(path, leaf) of a batch: tensors inside tuples / lists / mappings, anything else as a leaf."""
    if isinstance(x, Mapping):
        for k in x:
            yield from _leaves(x[k], f"{path}[{k!r}]")
    elif isinstance(x, (tuple, list)):
        for i, v in enumerate(x):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, x


def _signature(batch, b, name="batches"):
    """Per leaf: (relative path, kind, dtype, ndim) and the shapes beyond dim 0."""
    sig, shapes = [], []
    prefix = len(f"{name}[{b}]")
    for path, leaf in _leaves(batch, f"{name}[{b}]"):
        if torch.is_tensor(leaf):
            sig.append((path[prefix:], "tensor", leaf.dtype, leaf.dim()))
            shapes.append(tuple(leaf.shape[1:]))
        else:
            sig.append((path[prefix:], type(leaf).__name__, None, None))
    return sig, shapes


def _check_leaf(path, leaf):
    if not torch.is_tensor(leaf):
        return
    if leaf.is_meta:
        raise ValueError(f"{path}: is on the 'meta' device (a shape without values)")
    if leaf.numel() == 0:
        raise ValueError(f"{path}: is empty (shape {tuple(leaf.shape)})")
    if leaf.is_complex():
        raise ValueError(f"{path}: complex tensors are not supported")
    if leaf.is_floating_point() and not bool(torch.isfinite(leaf).all()):
        raise ValueError(f"{path}: contains NaN or inf")


def run_batch(model, batch, run, b: int, name: str = "batches"):
    """``run(model, batch)``; a model that fails on the batch is a ValueError naming ``batches[b]`` (``name``: the
    argument the batches came in)."""
    try:
        return run(model, batch)
    except (RuntimeError, TypeError, IndexError, KeyError, AttributeError) as e:  # the model or run failed on it
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        what = "calibration batch" if name == "batches" else "batch"
        raise ValueError(f"{name}[{b}]: the model cannot run on this {what} "
                         f"({type(e).__name__}: {first})") from e


def check_batches(batches, model, run, row_masks=None, name: str = "batches", run_all: bool = False) -> list:
    """The batches as a list, checked as the module docstring says (runs the model, without gradients, on the
    batches shaped unlike batch 0; the caller runs batch 0 through ``run_batch``).  ``name``: the argument the
    batches came in (``eval_batches``: the same checks); ``run_all``: run every batch here."""
    what = "calibration batch" if name == "batches" else "batch"
    if isinstance(batches, (torch.Tensor, Mapping)):
        raise ValueError(f"{name}: expected a list of {what}es, got one {type(batches).__name__} (wrap it in a list)")
    try:
        batches = list(batches)
    except TypeError:
        raise ValueError(f"{name}: expected a list of {what}es, got {type(batches).__name__}") from None
    if not batches:
        raise ValueError(f"{name}: at least one {what} is required")
    ref, ref_shapes = _signature(batches[0], 0, name)
    odd = []
    for b, batch in enumerate(batches):
        for path, leaf in _leaves(batch, f"{name}[{b}]"):
            _check_leaf(path, leaf)
        sig, shapes = _signature(batch, b, name)
        if sig != ref:
            diff = next((f"{s} vs {r}" for s, r in zip(sig, ref) if s != r),
                        f"{len(sig)} elements vs {len(ref)}")
            raise ValueError(f"{name}[{b}]: its structure, dtype or dimensions differ from {name}[0] "
                             f"((path, kind, dtype, ndim): {diff})")
        if shapes != ref_shapes or run_all:
            odd.append(b)
    if row_masks is not None:
        row_masks = list(row_masks)
        if len(row_masks) != len(batches):
            raise ValueError(f"row_masks: expected one mask per batch ({len(batches)}), got {len(row_masks)}")
        for b, r in enumerate(row_masks):
            if not (torch.is_tensor(r) and r.dtype == torch.bool):
                raise ValueError(f"row_masks[{b}]: expected a bool tensor, got "
                                 f"{getattr(r, 'dtype', type(r).__name__)}")
            # a mask of another shape would be ignored silently (a layer it does not fit takes every row)
            shapes = [tuple(x.shape) for _, x in _leaves(batches[b], "") if torch.is_tensor(x)]
            if r.dim() == 0 or not any(s[:r.dim()] == tuple(r.shape) for s in shapes):
                raise ValueError(f"row_masks[{b}]: shape {tuple(r.shape)} is not the leading (batch, seq) dimensions "
                                 f"of any tensor of batches[{b}] (shapes {shapes})")
    with torch.no_grad():
        for b in odd:
            run_batch(model, batches[b], run, b, name)
    return batches


def check_gram(H: torch.Tensor, n_rows: int, layer: str) -> None:
    """A layer's calibration Gram (sum X^T X over ``n_rows`` rows): refuse no rows, non-finite and all-zero."""
    if n_rows == 0:
        raise ValueError(f"batches: no calibration rows reach layer {layer!r} (row_masks select none?)")
    if not bool(torch.isfinite(H).all()):
        raise ValueError(f"batches: the calibration inputs of layer {layer!r} are not finite (NaN/inf from an "
                         f"overflow inside the model, or of X^T X in float32)")
    if not bool((H != 0).any()):
        raise ValueError(f"batches: every calibration input reaching layer {layer!r} is zero (its Gram matrix is "
                         f"0): there is nothing to fit its pruned weights to")


# ---------------------------------------------------------------------------------------------- streams and Grams
# The one-shot drivers' calibration machinery (block and N:M alike): which rows reach a layer in the dense and in
# the already-pruned model, their Grams, and the damping of the layer problem.  Nothing here holds a copy of the
# whole model or all of a layer's rows: rows are produced batch by batch and folded into the Grams at once.

class _Stop(Exception):
    pass


def _until_stop(call, hooks):
    """Run ``call()`` without gradients until a hook raises ``_Stop``; the hooks are removed either way."""
    try:
        with torch.no_grad():
            call()
    except _Stop:
        pass
    finally:
        for h in hooks:
            h.remove()


def default_run(model, batch):
    """``model(**batch)`` for dicts, ``model(*batch)`` for tuples / lists, else ``model(batch)``."""
    if isinstance(batch, dict):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


def check_run(run):
    """``run`` (None: ``default_run``) as a callable ``run(model, batch)``."""
    if run is None:
        return default_run
    if not callable(run):
        raise ValueError(f"run: expected a callable run(model, batch) or None, got {type(run).__name__}")
    return run


@dataclass(frozen=True)
class Layer:
    """A pruned weight: ``name`` (its first user) and ``holders`` (every module using it, tied weights; the first
    is ``name``).  ``tiling.LayerTiling`` has the same two attributes; N:M layers use this."""
    name: str
    holders: tuple


def layer_inputs(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The rows of the layer's implicit GEMM input: (tokens, in) for Linear, im2col rows in (kh, kw, Cin) order
    (the tiling convention) for Conv2d."""
    if isinstance(module, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    cols = F.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)  # (N, Cin*kh*kw, L)
    n, _, L = cols.shape
    kk = module.kernel_size[0] * module.kernel_size[1]
    cols = cols.view(n, module.in_channels, kk, L).transpose(1, 2).reshape(n, kk * module.in_channels, L)
    return cols.permute(0, 2, 1).reshape(n * L, -1)


def _rows_of(module, x, rows):
    """GEMM rows (float32) of the input ``x`` of ``module``, the token rows ``rows`` only (Linear fed (batch, seq,
    in) tokens; a layer fed one row per sequence, such as BERT's pooler on the first token, takes every row)."""
    x = x.detach()
    if rows is not None and isinstance(module, nn.Linear) and tuple(x.shape[:-1]) == tuple(rows.shape):
        x = x[rows.to(x.device)]
    return layer_inputs(module, x).float()


def _same_rows_map(a: nn.Module, b: nn.Module) -> bool:
    """Whether equal inputs give ``a`` and ``b`` equal GEMM rows (both Linear, or Conv2d of one geometry)."""
    if isinstance(a, nn.Linear) and isinstance(b, nn.Linear):
        return True
    geo = ("kernel_size", "dilation", "padding", "stride", "in_channels")
    return (isinstance(a, nn.Conv2d) and isinstance(b, nn.Conv2d)
            and all(getattr(a, g) == getattr(b, g) for g in geo))


def _stopped(call, watch, stop):
    """Run ``call()`` without gradients until module ``stop`` is entered; return {module: its first positional
    input} for the modules in ``watch`` entered before (``stop`` included), the tensors themselves (not copies)."""
    box = {}

    def hook(m, args):
        box.setdefault(m, args[0])
        if m is stop:
            raise _Stop
    _until_stop(call, [m.register_forward_pre_hook(hook) for m in dict.fromkeys(watch)])
    return box


def _run_to(model, batch, run, b, name, watch=None):
    """(input of module ``name``, input of module ``watch`` or None): ``model`` run on batch ``b`` until ``name``
    is called."""
    mod = model.get_submodule(name)
    wmod = None if watch is None else model.get_submodule(watch)
    box = _stopped(lambda: run_batch(model, batch, run, b), [m for m in (wmod, mod) if m is not None], mod)
    if mod not in box:
        raise RuntimeError(f"calibration: the layer {name!r} was not called by run(model, batch)")
    return box[mod], box.get(wmod)


def called_with(model, module, batch, run, who, b):
    """Run ``model`` on ``batch`` (number ``b``) until ``module`` is called; return the (args, kwargs) of that
    call, detached."""
    box = {}

    def hook(mod, args, kwargs):
        box["in"] = (tuple(a.detach() if torch.is_tensor(a) else a for a in args), dict(kwargs))
        raise _Stop

    _until_stop(lambda: run_batch(model, batch, run, b), [module.register_forward_pre_hook(hook, with_kwargs=True)])
    if "in" not in box:
        raise RuntimeError(f"{who} was not called by run(model, batch)")
    return box["in"]


def forward_order(model, layers, batch, run):
    """``layers`` (objects with ``name`` / ``holders``) in the order the forward pass first calls them (the pass
    stops once every layer was called).  A layer the pass never calls gets no calibration data: an error naming
    ``include`` (or ``run``, when it calls none of them).  A module called again before the pass stops gets a
    RuntimeWarning: the streams calibrate it on its first call's inputs only."""
    order, hooks, calls = [], [], {}

    def seen(m, a, n, holder):
        calls[holder] = calls.get(holder, 0) + 1
        x = a[0] if a and torch.is_tensor(a[0]) else None
        width = None if x is None or x.dim() == 0 else x.shape[-1] if isinstance(m, nn.Linear) else (
            x.shape[-3] if isinstance(m, nn.Conv2d) and x.dim() >= 3 else None)
        want = m.in_features if isinstance(m, nn.Linear) else getattr(m, "in_channels", None)
        if width is not None and width != want:  # the pass stops at the layer, before the layer itself would fail
            raise ValueError(f"batches[0]: the model cannot run on this calibration batch (layer {n!r} receives "
                             f"inputs of width {width}, it takes {want})")
        if n not in order:
            order.append(n)
            if len(order) == len(layers):
                raise _Stop
    for t in layers:
        for name in getattr(t, "holders", (t.name,)):  # a tied weight's place is its first use
            mod = model.get_submodule(name)
            hooks.append(mod.register_forward_pre_hook(lambda m, a, n=t.name, h=name: seen(m, a, n, h)))
    _until_stop(lambda: run_batch(model, batch, run, 0), hooks)
    missing = [t.name for t in layers if t.name not in order]
    if missing and not order:
        raise ValueError(f"run: run(model, batch) called none of the layers to prune on batches[0] (e.g. "
                         f"{missing[0]!r}); it must run the model's forward")
    if missing:
        raise ValueError(f"include: the model never calls {missing} when it runs on batches[0] (no calibration data "
                         f"reaches them); leave them out (exclude=, or include= only the layers it calls)")
    again = {h: c for h, c in calls.items() if c > 1}  # seen before the pass stopped (at the last layer's first call)
    if again:  # the streams take each module's first call: the later calls' inputs do not calibrate it
        warnings.warn(f"one-shot: {sorted(again)} are called more than once per forward pass ({again} times, a "
                      f"module reused); each is fitted to the inputs of its first call only (modules that share one "
                      f"weight instead are fitted to every use)", RuntimeWarning, stacklevel=3)
    by = {t.name: t for t in layers}
    return [by[n] for n in order]


def pow2_scale(m: float) -> float:
    """A power of 2 near ``m`` (> 0, finite; else 1): dividing by it is exact in floating point."""
    if not (m > 0 and math.isfinite(m)):
        return 1.0
    return math.ldexp(1.0, math.frexp(m)[1])


def _rescaled(x):
    """(x / s, s) with s a power of 2 when x's magnitude would over- or underflow X^T X in float32, else (x, 1)."""
    m = float(x.abs().amax()) if x.numel() else 0.0
    if 2.0 ** -30 <= m <= 2.0 ** 30 or not (m > 0 and math.isfinite(m)):
        return x, 1.0
    s = pow2_scale(m)
    return x / s, s


def _call_block(block_mod, inp):
    args, kwargs = inp
    with torch.no_grad():
        out = block_mod(*args, **kwargs)
    return out[0] if isinstance(out, (tuple, list)) else out


class _Streams:
    """Rows reaching a layer, batch by batch, in the pruned model (X_p) and in the dense one (X_d).

    ``dense_only``: the model is dense throughout (the allocation pass): X_p is X_d.  Subclasses give
    ``_input(b, name, pruned, watch)``: the stopped forward pass of batch ``b`` up to module ``name``."""

    dense_only = False
    keeps_dense = False  # the driver hands ``done`` a copy of each replaced weight's dense value
    in_block = False  # whether the current group of layers is a block (``BlockStreams``): what ``refine`` fits

    def _rows(self, b):
        return None if self.row_masks is None else self.row_masks[b]

    def close(self):
        """Release what the streams hold outside the process (``BlockStreams``' spilled inputs)."""

    def pairs(self, layer):
        """Per batch: [(x_pruned, x_dense) GEMM rows of each holder of ``layer``] (x_dense is x_pruned when
        dense_only)."""
        for b in range(self.n_batches):
            out = []
            for h in layer.holders:
                mod = self.model.get_submodule(h)
                xp = _rows_of(mod, self._input(b, h, True)[0], self._rows(b))
                xd = xp if self.dense_only else _rows_of(mod, self._input(b, h, False)[0], self._rows(b))
                out.append((xp, xd))
            yield out

    def shares_input(self, prev, layer):
        """Whether ``layer`` is fed the very tensor ``prev`` was fed (e.g. query / key / value), in every batch and
        both streams: then its Grams are ``prev``'s (its input cannot depend on ``prev``'s weights, since ``prev``
        consumed it first).  Single-holder layers of one GEMM row map only."""
        if len(prev.holders) > 1 or len(layer.holders) > 1 or not _same_rows_map(
                self.model.get_submodule(prev.name), self.model.get_submodule(layer.name)):
            return False
        for b in range(self.n_batches):
            for pruned in (True,) if self.dense_only else (True, False):
                x, xprev = self._input(b, layer.name, pruned, watch=prev.name)
                if xprev is None or xprev is not x:
                    return False
        return True


class PrefixStreams(_Streams):
    """Layer inputs by re-running the model from its input up to the layer (generic, any model; the prefix is
    re-run for every layer and batch).  The dense stream runs the same model with the dense weights of the layers
    already pruned swapped back in (``done`` keeps them: a copy of the pruned weights, not of the model)."""

    def __init__(self, model, batches, run, row_masks, dense_only=False):
        self.model, self.batches, self.run, self.row_masks = model, batches, run, row_masks
        self.n_batches, self.dense_only = len(batches), dense_only
        self.keeps_dense = not dense_only
        self.saved = {}

    def groups(self, layers):
        return [list(layers)]

    def begin(self, copy=True):
        pass

    def done(self, layer, dense_weight):
        """``layer``'s weight was replaced; keep its dense value for the dense stream."""
        if not self.dense_only:
            self.saved[layer.name] = dense_weight

    def _input(self, b, name, pruned, watch=None):
        swapped = [] if pruned else [(self.model.get_submodule(n).weight, w) for n, w in self.saved.items()]
        try:
            for w, d in swapped:
                w.data, d.data = d.data, w.data  # swap the dense values in (no copy)
            return _run_to(self.model, self.batches[b], self.run, b, name, watch)
        finally:
            for w, d in swapped:
                w.data, d.data = d.data, w.data

    def advance(self):
        pass


SPILL_BYTES = 256 * 2 ** 20  # spill=None: block inputs of both streams above this go to a temporary directory


def check_spill(spill):
    """``spill``: None (automatic, above ``SPILL_BYTES``), True or False."""
    if spill is not None and not isinstance(spill, bool):
        raise ValueError(f"spill: expected None (automatic), True or False, got {spill!r}")
    return spill


class _BlockInputs:
    """One stream's inputs (args, kwargs) of the current block, one per batch, list-like.  In memory, or spilled
    (``dir``): the first positional tensor of each batch -- the hidden states, the part that grows with the tokens
    and changes from block to block -- is written to a file of ``dir`` and read back whenever the batch is replayed
    (``torch.save`` / ``torch.load``: bit-exact), so the streams hold no token-proportional memory of the process;
    the other arguments (masks, positions: the same for every block) stay in memory."""

    def __init__(self, tag, dir=None):
        self.tag, self.dir, self.items = tag, dir, []

    def __len__(self):
        return len(self.items)

    def _put(self, b, inp):
        if self.dir is None:
            return inp
        (x, *rest), kwargs = inp
        path = os.path.join(self.dir, f"{self.tag}{b}.pt")
        torch.save(x, path)
        return (path, *rest), kwargs

    def append(self, inp):
        self.items.append(self._put(len(self.items), inp))

    def __setitem__(self, b, inp):
        self.items[b] = self._put(b, inp)

    def __getitem__(self, b):
        if self.dir is None:
            return self.items[b]
        (path, *rest), kwargs = self.items[b]
        return (torch.load(path, weights_only=True), *rest), kwargs


class _FirstArgs:
    """The first argument of each entry of a ``_BlockInputs`` (spilled block outputs, a tail's inputs), read on
    access."""

    def __init__(self, store):
        self.store = store

    def __getitem__(self, b):
        return self.store[b][0][0]

    def __setitem__(self, b, value):  # ``advance`` drops each output once used: its file goes with the directory
        pass


def copy_module(module):
    """A deep copy of one module in eval mode (the dense copy of the current block)."""
    return copy.deepcopy(module).eval()


class BlockStreams(_Streams):
    """Layer inputs by replaying one block (e.g. a transformer layer) on cached block inputs, as SparseGPT does.

    ``blocks`` are the names of submodules called one after the other, block i+1 taking block i's output as its
    first positional argument and the same remaining arguments as the first block (true of BERT-style encoders and
    OPT-style decoders: the attention mask).  The model runs once up to the first block; afterwards only one block
    is replayed at a time.  Memory: the inputs of the current block for every batch, once per stream (on the
    model's device), and one dense copy of the current block (``begin``): never a copy of the model.  The block
    inputs are the only memory that grows with the calibration tokens (2 x 512 MiB for 65,536 tokens of width
    2048): ``spill`` writes their hidden states to a temporary directory instead (``_BlockInputs``; None: when both
    streams would exceed ``SPILL_BYTES``, judged from batch 0; the directory is deleted by ``close`` or when the
    streams are collected).  The results are the same either way (bit-exact files).
    """

    def __init__(self, model, batches, run, row_masks, blocks, dense_only=False, spill=None):
        self.model, self.row_masks, self.blocks = model, row_masks, list(blocks)
        self.batches, self.run = batches, run
        self.dense_only = dense_only
        first = model.get_submodule(self.blocks[0])
        self._tmp = None
        self._tail = {}  # tail layer name -> its dense inputs per batch (``groups``, ``_FirstArgs``)
        self.d_in = self.p_in = None
        for b, batch in enumerate(batches):
            inp = called_with(model, first, batch, run, "blocks: the first block", b)
            if b == 0:
                self._open(spill, inp[0][0], len(batches))
            self.d_in.append(inp)
            if self.p_in is not self.d_in:
                self.p_in.append(inp)
            del inp
        self.n_batches = len(self.d_in)
        self.i = 0
        self.dense_block = None
        self._d_out = None

    def _open(self, spill, x, n_batches):
        """The two streams' stores, spilled or not (``spill``; None: by the size batch 0 implies)."""
        streams = 1 if self.dense_only else 2
        if spill is None:
            spill = torch.is_tensor(x) and x.device.type == "cpu" and (
                streams * n_batches * x.numel() * x.element_size() > SPILL_BYTES)
        if spill:
            self._tmp = tempfile.TemporaryDirectory(prefix="groupsparse-streams-")
        d = self._tmp.name if spill else None
        self.d_in = _BlockInputs("d", d)
        self.p_in = self.d_in if self.dense_only else _BlockInputs("p", d)

    @property
    def spilled(self) -> bool:
        return self._tmp is not None

    def close(self):
        """Delete the spilled block inputs (if any)."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def hidden_states(self):
        """(dense, pruned) first positional input of the current block for every batch (pruned None when
        dense_only): what a checkpoint keeps of the streams (``nn_bridge.resume``)."""
        d = [self.d_in[b][0][0] for b in range(self.n_batches)]
        return d, (None if self.p_in is self.d_in else [self.p_in[b][0][0] for b in range(self.n_batches)])

    def restore(self, i, d, p):
        """Stand at block ``i`` with the saved hidden states ``d`` / ``p`` (the other arguments of each batch, the
        same for every block, are this run's)."""
        if len(d) != self.n_batches or (p is not None and len(p) != self.n_batches):
            raise ValueError("checkpoint: holds another number of calibration batches")
        for b in range(self.n_batches):
            (x, *rest), kw = self.d_in[b]
            self.d_in[b] = ((d[b].to(x.device), *rest), kw)
            if self.p_in is not self.d_in:
                (x, *rest), kw = self.p_in[b]
                self.p_in[b] = ((p[b].to(x.device), *rest), kw)
        self.i = i

    @property
    def in_block(self) -> bool:
        """Whether the current group is a block (not the tail)."""
        return self.i < len(self.blocks)

    def groups(self, layers):
        """The layers of each block, in block order, then the tail: layers outside every block that the forward
        pass calls after all the blocks' layers (``layers`` is in forward order), such as BERT's pooler or an
        untied LM head.  The tail's dense inputs are captured here, by one pass of the (still dense) model; its
        pruned inputs come from re-running the model up to each tail layer (``PrefixStreams``' way)."""
        out = [[] for _ in self.blocks]
        tail = []
        for t in layers:
            owner = [i for i, b in enumerate(self.blocks) if t.name.startswith(b + ".")]
            if not owner:
                if len(getattr(t, "holders", ())) > 1:
                    raise ValueError(f"blocks: layer {t.name!r} lies in none of the blocks {self.blocks} and shares "
                                     f"its weight with {list(t.holders[1:])}; pass blocks=None")
                tail.append(t)
                continue
            if tail:
                raise ValueError(f"blocks: layer {tail[0].name!r} lies in none of the blocks {self.blocks} and is "
                                 f"called before the block layer {t.name!r}; restrict the layers with include= or "
                                 f"pass blocks=None")
            for n in getattr(t, "holders", ())[1:]:
                if not n.startswith(self.blocks[owner[0]] + "."):
                    raise ValueError(f"blocks: layers {t.name!r} and {n!r} share one weight but lie in different "
                                     f"blocks; pass blocks=None (the whole-model streams fit it to both)")
            out[owner[0]].append(t)
        if tail and not any(out):
            raise ValueError(f"blocks: none of the layers to prune lies in the blocks {self.blocks} (layer "
                             f"{tail[0].name!r}, ...); name the modules that contain them, or pass blocks=None")
        if tail:
            self._capture_tail([t.name for t in tail])
        return out + [tail]

    def _capture_tail(self, names):
        mods = [self.model.get_submodule(n) for n in names]
        stores = {n: _BlockInputs(f"t{j}_", None if self._tmp is None else self._tmp.name)
                  for j, n in enumerate(names)}
        for b, batch in enumerate(self.batches):
            box = _stopped(lambda: run_batch(self.model, batch, self.run, b), mods, mods[-1])
            for n, m in zip(names, mods):
                if m not in box:
                    raise RuntimeError(f"calibration: the layer {n!r} was not called by run(model, batch)")
                stores[n].append(((box[m],), {}))
            del box
        self._tail = {n: _FirstArgs(store) for n, store in stores.items()}

    def _block(self):
        return self.model.get_submodule(self.blocks[self.i])

    def begin(self, copy=True):
        """Keep a dense copy of the current block (before any of its layers changes); ``copy=False``: the block
        stays dense (no layer of it is pruned, or the dense-only pass), the block itself serves."""
        if not self.in_block:  # the tail: its dense inputs were captured
            return
        self.dense_block = copy_module(self._block()) if copy and not self.dense_only else self._block()

    def done(self, layer, dense_weight):
        pass

    def _input(self, b, name, pruned, watch=None):
        if not self.in_block:
            return self._tail_input(b, name, pruned, watch)
        block = self._block() if pruned else self.dense_block
        pre = self.blocks[self.i] + "."
        mod = block.get_submodule(name[len(pre):])
        wmod = None if watch is None else block.get_submodule(watch[len(pre):])
        inp = (self.p_in if pruned else self.d_in)[b]
        box = _stopped(lambda: _call_block(block, inp), [m for m in (wmod, mod) if m is not None], mod)
        if mod not in box:
            raise RuntimeError(f"calibration: the layer {name!r} was not called by its block {self.blocks[self.i]!r}")
        return box[mod], box.get(wmod)

    def _tail_input(self, b, name, pruned, watch):
        if pruned and not self.dense_only:  # the pruned model, re-run from its input up to the layer
            return _run_to(self.model, self.batches[b], self.run, b, name, watch)
        return self._tail[name][b], (None if watch is None else self._tail[watch][b])

    def _dense_out(self):
        """The dense block's outputs (``refine``'s targets): on disk beside the spilled inputs when they spill."""
        if self._d_out is None:
            if self.spilled:
                store = _BlockInputs("o", self._tmp.name)
                for inp in self.d_in:
                    store.append(((_call_block(self.dense_block, inp),), {}))
                self._d_out = _FirstArgs(store)
            else:
                self._d_out = [_call_block(self.dense_block, inp) for inp in self.d_in]
        return self._d_out

    def refine(self, steps: int, lr: float, val: int = 0, every: int = 16):
        """Block reconstruction after the current block's layers are pruned: Adam on the block's parameters (masks
        fixed: pruned weights get no gradient through the mask) so that the pruned block fed the pruned stream
        reproduces the dense block fed the dense stream, on the calibration tokens.  Selection is not revisited;
        this corrects what layer-by-layer least squares cannot see (the nonlinearities between the layers, and the
        error the earlier blocks pass on).  With ``val`` > 0 the last ``val`` batches are not trained on: their
        error is checked every ``every`` steps and the block keeps its best parameters (early stopping: with few
        calibration tokens the fit overfits).  Returns the relative block-output error (all batches) before and
        after.  Interrupted, the block gets its parameters from before the refine back."""
        block = self._block()
        target = self._dense_out()
        params = [q for q in block.parameters() if q.requires_grad]
        start = [q.detach().clone() for q in params]
        opt = torch.optim.Adam(params, lr=lr)
        n_train = len(self.p_in) - val

        def rel_err(b):
            args, kwargs = self.p_in[b]
            out = block(*args, **kwargs)
            out = out[0] if isinstance(out, (tuple, list)) else out
            rows = self._rows(b)
            d, t = out - target[b], target[b]
            if rows is not None:
                d, t = d[rows.to(d.device)], t[rows.to(t.device)]
            return d.pow(2).sum(), t.pow(2).sum()

        def total(bs):
            with torch.no_grad():
                num, den = zip(*(rel_err(b) for b in bs))
            return float(sum(num) / sum(den))

        try:
            before = total(range(len(self.p_in)))
            held = range(n_train, len(self.p_in))
            best = (total(held), [q.detach().clone() for q in params]) if val else None
            with torch.enable_grad():
                for step in range(1, steps + 1):
                    num, den = rel_err((step - 1) % n_train)
                    (num / den).backward()
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                    if val and (step % every == 0 or step == steps):
                        e = total(held)
                        if e < best[0]:
                            best = (e, [q.detach().clone() for q in params])
            if val:
                with torch.no_grad():
                    for q, b in zip(params, best[1]):
                        q.copy_(b)
        except BaseException:
            with torch.no_grad():
                for q, b in zip(params, start):
                    q.copy_(b)
            raise
        return before, total(range(len(self.p_in)))

    def advance(self):
        """Move both streams past the current block, batch by batch, and drop the dense copy of the block."""
        if not self.in_block:
            self.i += 1
            return
        block, d_out = self._block(), self._d_out
        for b in range(self.n_batches):
            din = self.d_in[b]
            do = d_out[b] if d_out is not None else _call_block(self.dense_block, din)
            self.d_in[b] = ((do,) + din[0][1:], din[1])
            del din, do
            if self.p_in is not self.d_in:  # dense_only: one stream
                pin = self.p_in[b]
                self.p_in[b] = ((_call_block(block, pin),) + pin[0][1:], pin[1])
                del pin
            if d_out is not None:
                d_out[b] = None
        self._d_out = self.dense_block = None
        self.i += 1


def check_blocks(model, blocks, batch, run, names=None) -> list:
    """``blocks`` as a non-empty list of distinct names of submodules of ``model`` that ``BlockStreams`` can replay:
    on ``batch`` (batch 0) the forward pass calls them in this order, and the first block's output is the second's
    first input (they chain: no residual sum or other step between them).  Only the blocks up to the last one
    holding a layer of ``names`` (the layers to prune) are run: the streams replay no later block.  Errors name
    ``blocks``."""
    try:
        blocks = list(blocks)
    except TypeError:
        raise ValueError(f"blocks: expected a non-empty list of submodule names, got {blocks!r}") from None
    if not blocks or not all(isinstance(b, str) for b in blocks):
        raise ValueError(f"blocks: expected a non-empty list of submodule names, got {blocks!r}")
    if len(set(blocks)) != len(blocks):
        raise ValueError(f"blocks: {next(b for b in blocks if blocks.count(b) > 1)!r} is named twice")
    for b in blocks:
        try:
            model.get_submodule(b)
        except AttributeError:
            raise ValueError(f"blocks: the model has no submodule named {b!r}") from None
    full = blocks
    if names is not None:
        owners = [i for i, b in enumerate(blocks) if any(n.startswith(b + ".") for n in names)]
        blocks = blocks[:max(owners, default=0) + 1]
    order, inputs, hooks = [], {}, []

    def seen(mod, args, kwargs, name):
        if name not in order:
            order.append(name)
            if name in blocks[:2]:
                inputs[name] = (tuple(a.detach() if torch.is_tensor(a) else a for a in args), dict(kwargs))
            if len(order) == len(blocks):
                raise _Stop
    for b in blocks:
        hooks.append(model.get_submodule(b).register_forward_pre_hook(
            lambda m, a, k, n=b: seen(m, a, k, n), with_kwargs=True))
    _until_stop(lambda: run_batch(model, batch, run, 0), hooks)
    missing = [b for b in blocks if b not in order]
    if missing:
        raise ValueError(f"blocks: {missing[0]!r} is not called when the model runs on batches[0]; name the modules "
                         f"the forward pass calls one after another (e.g. the layers of a ModuleList)")
    if order != blocks:
        raise ValueError(f"blocks: not in the order the forward pass calls them ({order})")
    if len(blocks) > 1:
        out, nxt = _call_block(model.get_submodule(blocks[0]), inputs[blocks[0]]), inputs[blocks[1]][0][0]
        if not (torch.is_tensor(out) and torch.is_tensor(nxt) and out.shape == nxt.shape
                and float((out.float() - nxt.float()).norm()) <= 1e-3 * float(nxt.float().norm())):
            raise ValueError(f"blocks: the output of {blocks[0]!r} is not the input of {blocks[1]!r} on batches[0] "
                             f"(out of order, or a step such as a residual sum between them): the streams cannot "
                             f"replay them one after another; pass blocks=None")
    return full


def streams(model, batches, run, row_masks, blocks, dense_only=False, spill=None):
    """``BlockStreams`` when ``blocks`` names the model's sequential blocks (``spill``: theirs), else
    ``PrefixStreams``."""
    if blocks is None:
        return PrefixStreams(model, batches, run, row_masks, dense_only)
    return BlockStreams(model, batches, run, row_masks, blocks, dense_only, spill)


class Grams:
    """Calibration Grams of one layer, H = X_p^T X_p / n and the cross term Bm = X_p^T X_d M / n (X_p: inputs in
    the pruned model, X_d: in the dense one, M: the layer's dense GEMM matrix), and the dense output energy
    ||X_d M||^2 / n, float32 products accumulated in float64 batch by batch (no rows are kept).  Bm comes from the
    cross Gram C = X_p^T X_d / n (p x p) as C M, except for a layer with K < p / 2 outputs (e.g. an MLP's down
    projection) not kept for the next layer: there Bm is accumulated as X_p^T (X_d M) batch by batch, which holds
    p x K instead of p x p and costs 2 n p K instead of n p^2 flops (the two differ at float32 rounding level).
    Row batches of extreme magnitude are scaled by a power of 2 before the float32 product (exact), so inputs of
    1e20 or 1e-20 give the Grams that 1 would, times the scale squared.  The energy comes from D = X_d^T X_d / n
    where D is cheaper than the rows' products (p <= K) or may serve the next layer, else from ||X_d M||^2 batch by
    batch.

    A layer fed the very tensor the previous one was fed (query / key / value) reuses its Grams
    (``_Streams.shares_input``) when the driver kept them (``keep``: only where the next layer could share, so
    that large Grams are not held for nothing).
    """

    def __init__(self):
        self._last = None

    def holds(self, H) -> bool:
        """Whether ``H`` is kept for the next layer (then it must not be changed in place)."""
        return self._last is not None and self._last[1][0] is H

    def __call__(self, st, layer, M=None, keep=False):
        """(H, Bm, energy) of ``layer`` from the streams ``st`` (Bm and energy None without ``M``; errors name
        ``batches`` and the layer, ``check_gram``).  ``keep``: hold the Grams for the next layer (when it may share
        the input)."""
        if self._last is not None and st.shares_input(self._last[0], layer):
            H, C, D = self._last[1]
            self._last = self._last if keep else None
            return H, _cross(C, M), _energy(D, M)
        self._last = None
        H = C = D = Bm = None
        n, energy = 0, 0.0
        M32 = None if M is None else M.float()
        for pairs in st.pairs(layer):
            for xp, xd in pairs:
                if H is None:
                    p = xp.shape[1]
                    H = torch.zeros(p, p, dtype=torch.float64, device=xp.device)
                    if xd is not xp and M is not None and not keep and direct_cross(p, M.shape[1]):
                        Bm = torch.zeros(p, M.shape[1], dtype=torch.float64, device=xp.device)
                    elif xd is not xp:
                        C = torch.zeros_like(H)
                        D = torch.zeros_like(H) if keep or M is None or p <= M.shape[1] else None
                a, sa = _rescaled(xp)
                H.add_(a.t() @ a, alpha=sa * sa)  # float32 product, float64 sum (no float64 copy of it)
                if Bm is not None:  # K < p / 2: X_p^T (X_d M), no p x p cross Gram
                    b, sb = _rescaled(xd)
                    y = b @ M32
                    Bm.add_(a.t() @ y, alpha=sa * sb)
                    energy += float(y.double().pow(2).sum()) * (sb * sb)
                    del y
                elif C is not None:
                    b, sb = _rescaled(xd)
                    C.add_(a.t() @ b, alpha=sa * sb)
                    if D is not None:
                        D.add_(b.t() @ b, alpha=sb * sb)
                    else:
                        energy += float((b @ M32).double().pow(2).sum()) * (sb * sb)
                n += xp.shape[0]
        check_gram(H, n, layer.name)
        H.div_(n)
        if Bm is not None:
            return H, Bm.div_(n), energy / n
        if C is None:  # the dense stream: X_p is X_d
            C = D = H
        else:
            C.div_(n)
            D = None if D is None else D.div_(n)
        if keep:
            self._last = (layer, (H, C, D))
        return H, _cross(C, M), (energy / n if D is None else _energy(D, M))


def _energy(D, M):
    return None if M is None else float((M * (D @ M)).sum())


# A p x p float64 cross Gram above this size (p > 4096) is worth avoiding; below it the C path is kept because its
# one float32 rounding of the Gram products (against two for X_p^T (X_d M)) is what the figures were measured with.
DIRECT_CROSS_BYTES = 1 << 27


def direct_cross(p: int, K: int) -> bool:
    """Whether a (p, K) layer's Bm is accumulated as X_p^T (X_d M) (fewer flops, p x K held) rather than through the
    p x p cross Gram: when K < p / 2 and that Gram would be large (``DIRECT_CROSS_BYTES``, a memory cut for LLM
    widths such as OPT's 8192 -> 2048 fc2)."""
    return 2 * K < p and 8 * p * p > DIRECT_CROSS_BYTES


def _cross(C, M):
    return None if M is None else C @ M


def damped(H, Bm, M, damp, layer, inplace=False):
    """(H + d I, Bm + d M, d), d = damp * mean diag H: a ridge toward the dense weights M, i.e. the loss gains
    d/2 ||M^ - M||^2.  Shrinking toward M rather than 0 keeps the refit unbiased: with no pruning and no drift it
    returns M exactly, and with few calibration tokens it stays near the dense weights where H is ill-determined.
    With ``damp`` = 0, H itself must be positive definite (as many independent calibration rows as inputs).
    ``inplace``: damp H itself (one p x p matrix less, for a caller that no longer needs the raw H)."""
    from groupsparse.losses import is_positive_definite
    if damp == 0 and not is_positive_definite(H):
        raise ValueError(f"damp: the calibration Gram of layer {layer!r} is singular (fewer independent rows than "
                         f"its {H.shape[0]} inputs, or constant / zero inputs); use damp > 0")
    d = H.diagonal().mean() * damp
    Hd = H if inplace else H.clone()
    Hd.diagonal().add_(d)  # H + d I without a p x p identity
    return Hd, Bm + d * M, float(d)
