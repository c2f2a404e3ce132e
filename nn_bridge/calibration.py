"""Checks of one-shot calibration data, shared by the block (``nn_bridge.oneshot``) and N:M (``nn_bridge.nm.oneshot``)
drivers: every error names ``batches`` (with the batch index, the element and, once layers are involved, the layer).

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

from collections.abc import Mapping

import torch

__all__ = ["check_batches", "run_batch", "check_gram"]


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


def _signature(batch, b):
    """Per leaf: (relative path, kind, dtype, ndim) and the shapes beyond dim 0."""
    sig, shapes = [], []
    prefix = len(f"batches[{b}]")
    for path, leaf in _leaves(batch, f"batches[{b}]"):
        if torch.is_tensor(leaf):
            sig.append((path[prefix:], "tensor", leaf.dtype, leaf.dim()))
            shapes.append(tuple(leaf.shape[1:]))
        else:
            sig.append((path[prefix:], type(leaf).__name__, None, None))
    return sig, shapes


def _check_leaf(path, leaf):
    if not torch.is_tensor(leaf):
        return
    if leaf.numel() == 0:
        raise ValueError(f"{path}: is empty (shape {tuple(leaf.shape)})")
    if leaf.is_complex():
        raise ValueError(f"{path}: complex tensors are not supported")
    if leaf.is_floating_point() and not bool(torch.isfinite(leaf).all()):
        raise ValueError(f"{path}: contains NaN or inf")


def run_batch(model, batch, run, b: int):
    """``run(model, batch)``; a model that fails on the batch is a ValueError naming ``batches[b]``."""
    try:
        return run(model, batch)
    except (RuntimeError, TypeError, IndexError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"batches[{b}]: the model cannot run on this calibration batch "
                         f"({type(e).__name__}: {first})") from e


def check_batches(batches, model, run, row_masks=None) -> list:
    """The batches as a list, checked as the module docstring says (runs the model, without gradients, on the
    batches shaped unlike batch 0; the caller runs batch 0 through ``run_batch``)."""
    if isinstance(batches, (torch.Tensor, Mapping)):
        raise ValueError(f"batches: expected a list of calibration batches, got one {type(batches).__name__} "
                         f"(wrap it in a list)")
    try:
        batches = list(batches)
    except TypeError:
        raise ValueError(f"batches: expected a list of calibration batches, got {type(batches).__name__}") from None
    if not batches:
        raise ValueError("batches: at least one calibration batch is required")
    ref, ref_shapes = _signature(batches[0], 0)
    odd = []
    for b, batch in enumerate(batches):
        for path, leaf in _leaves(batch, f"batches[{b}]"):
            _check_leaf(path, leaf)
        sig, shapes = _signature(batch, b)
        if sig != ref:
            diff = next((f"{s} vs {r}" for s, r in zip(sig, ref) if s != r),
                        f"{len(sig)} elements vs {len(ref)}")
            raise ValueError(f"batches[{b}]: its structure, dtype or dimensions differ from batches[0] "
                             f"((path, kind, dtype, ndim): {diff})")
        if shapes != ref_shapes:
            odd.append(b)
    if row_masks is not None:
        row_masks = list(row_masks)
        if len(row_masks) != len(batches):
            raise ValueError(f"row_masks: expected one mask per batch ({len(batches)}), got {len(row_masks)}")
        for b, r in enumerate(row_masks):
            if not (torch.is_tensor(r) and r.dtype == torch.bool):
                raise ValueError(f"row_masks[{b}]: expected a bool tensor, got "
                                 f"{getattr(r, 'dtype', type(r).__name__)}")
    with torch.no_grad():
        for b in odd:
            run_batch(model, batches[b], run, b)
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
