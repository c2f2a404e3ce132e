"""Export of 2:4 Linear layers to ``torch.sparse.to_sparse_semi_structured`` (cuSPARSELt / CUTLASS 2:4 kernels).

What the kernels accept (maxq_nm.md 4.2, torch 2.13): CUDA only, compute capability >= 8.0 (Ampere, Hopper), a 2-D
contiguous weight with exactly the 2:4 pattern along the input dimension (the layout of ``groups.py``: M = 4
consecutive inputs of a row), fp16 / bf16 (cuSPARSELt dropped fp32), both dimensions multiples of the backend's
minimum (16 x 16 for cuSPARSELt fp16/bf16, 32 x 64 for CUTLASS).  Inference only: the sparse weight has no backward.
Convs are not supported by these kernels (2-D tensors only).  Other N:M patterns have no kernel here.

:func:`to_semi_structured_linear` converts one finalized (folded) Linear and checks its output against the masked
dense layer on a random input; :func:`export_semi_structured` does a whole model and returns, for every candidate,
either "exported" or the reason it stayed dense.  Where the kernels are unavailable the error says why
(:class:`SemiStructuredUnsupported`); ``strict=False`` leaves those layers dense, with the same outputs.
"""
from __future__ import annotations

import torch
from torch import nn

from .groups import nm_violations

__all__ = ["SemiStructuredUnsupported", "semi_structured_support", "to_semi_structured_linear",
           "export_semi_structured", "check_equivalence"]

_DTYPES = (torch.float16, torch.bfloat16)


class SemiStructuredUnsupported(RuntimeError):
    """The 2:4 kernels cannot run this layer here (reason in the message)."""


def _min_shape(dtype):
    """(min rows, min cols) of the sparse operand for the active backend, from torch's own table when present."""
    try:
        from torch.sparse import SparseSemiStructuredTensor
        from torch.sparse.semi_structured import (SparseSemiStructuredTensorCUSPARSELT,
                                                  SparseSemiStructuredTensorCUTLASS)
        cls = SparseSemiStructuredTensorCUTLASS if SparseSemiStructuredTensor._FORCE_CUTLASS else \
            SparseSemiStructuredTensorCUSPARSELT
        c = cls._DTYPE_SHAPE_CONSTRAINTS[dtype]
        return int(c.sparse_min_rows), int(c.sparse_min_cols)
    except Exception:
        return 32, 64  # the stricter (CUTLASS) minimum


def semi_structured_support(linear: nn.Module, dtype=None, device=None) -> list:
    """Reasons why ``linear`` cannot be exported to a 2:4 semi-structured weight here (empty list: it can)."""
    reasons = []
    if not hasattr(torch.sparse, "to_sparse_semi_structured"):
        return [f"this torch ({torch.__version__}) has no torch.sparse.to_sparse_semi_structured"]
    if not isinstance(linear, nn.Linear):
        return [f"only nn.Linear layers can be exported (the 2:4 kernels are matrix multiplies; got "
                f"{type(linear).__name__})"]
    w = linear.weight
    dev = torch.device(device) if device is not None else w.device
    dt = dtype or w.dtype
    if not torch.cuda.is_available():
        reasons.append("no CUDA device: torch's 2:4 kernels (cuSPARSELt / CUTLASS) run only on NVIDIA GPUs with "
                       "compute capability >= 8.0 (Ampere, Hopper); the masked dense layer is kept")
    else:
        if dev.type != "cuda":
            reasons.append(f"weight is on {dev}; move the model to CUDA first")
        cc = torch.cuda.get_device_capability(dev if dev.type == "cuda" else None)
        if cc < (8, 0):
            reasons.append(f"GPU compute capability {cc[0]}.{cc[1]} < 8.0: no sparse tensor cores")
    if dt not in _DTYPES:
        reasons.append(f"dtype {dt} not supported: use float16 or bfloat16 (cuSPARSELt in torch >= 2.5 has no fp32)")
    rows, cols = w.shape
    mr, mc = _min_shape(dt if dt in _DTYPES else torch.float16)
    if rows < mr or cols < mc or rows % mr or cols % mc:
        reasons.append(f"weight shape {tuple(w.shape)}: both dims must be multiples of ({mr}, {mc}) for the 2:4 "
                       "kernels")
    if cols % 4:
        reasons.append(f"in_features {cols} is not a multiple of 4")
    elif nm_violations(w, 2, 4):
        reasons.append(f"weight is not 2:4 sparse ({nm_violations(w, 2, 4)} groups of 4 inputs have > 2 non-zeros);"
                       " prune to 2:4 and finalize first")
    return reasons


@torch.no_grad()
def check_equivalence(dense: nn.Linear, sparse: nn.Linear, n_tokens: int = 64, rtol: float | None = None) -> float:
    """Max relative error of the sparse layer's output against the masked dense layer (same dtype, same input)."""
    w = dense.weight
    x = torch.randn(n_tokens, w.shape[1], device=w.device, dtype=w.dtype)
    ref = nn.functional.linear(x.float(), w.float(), None if dense.bias is None else dense.bias.float())
    out = sparse(x).float()
    err = float((out - ref).abs().max() / ref.abs().max().clamp_min(1e-12))
    tol = rtol if rtol is not None else (1e-2 if w.dtype == torch.bfloat16 else 2e-3)
    if not err <= tol:
        raise AssertionError(f"2:4 export: output differs from the masked dense layer by {err:.3g} (relative), "
                             f"above {tol:.1g}")
    return err


@torch.no_grad()
def to_semi_structured_linear(linear: nn.Linear, check: bool = True) -> nn.Linear:
    """A copy of ``linear`` whose weight is a ``SparseSemiStructuredTensor`` (inference only)."""
    reasons = semi_structured_support(linear)
    if reasons:
        raise SemiStructuredUnsupported("2:4 export not possible: " + "; ".join(reasons))
    from torch.sparse import to_sparse_semi_structured
    new = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None,
                    device=linear.weight.device, dtype=linear.weight.dtype)
    new.weight = nn.Parameter(to_sparse_semi_structured(linear.weight.detach().contiguous()), requires_grad=False)
    if linear.bias is not None:
        new.bias = nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
    if check:
        check_equivalence(linear, new)
    return new


def export_semi_structured(model: nn.Module, names=None, strict: bool = False, check: bool = True) -> dict:
    """Replace 2:4 Linear layers (``names``, default every Linear) by semi-structured ones.

    Returns {name: 'exported' or the reason it stayed dense}.  ``strict=True`` raises on the first layer that
    cannot be exported.
    """
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)] if names is None else list(names)
    out = {}
    for name in names:
        mod = model.get_submodule(name)
        reasons = semi_structured_support(mod)
        if reasons:
            if strict:
                raise SemiStructuredUnsupported(f"layer {name!r}: " + "; ".join(reasons))
            out[name] = "; ".join(reasons)
            continue
        new = to_semi_structured_linear(mod, check=check)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, new)
        out[name] = "exported"
    return out
