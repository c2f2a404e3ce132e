"""Export of pruned layers to sparse formats, for both patterns, in one module.

* ``B x B`` blocks -> torch's block-sparse-row (BSR) tensors.  The B x B tiles of the GEMM matrix ``W.T``
  (tiling.py) are the transposes of the B x B tiles of the stored ``(out, in)`` weight, so
  ``weight.to_sparse_bsr((B, B))`` stores exactly the kept blocks (all-zero tiles are dropped) and
  ``y = W_bsr @ x.T`` is the layer without the zero blocks (:class:`BSRLinear`, CPU or GPU).
* ``2:4`` -> ``torch.sparse.to_sparse_semi_structured`` (cuSPARSELt / CUTLASS kernels).  What the kernels accept
  (torch 2.13): CUDA only, compute capability >= 8.0 (Ampere, Hopper), a 2-D contiguous weight with exactly the 2:4
  pattern along the input dimension (``nm/groups.py``: M = 4 consecutive inputs of a row), fp16 / bf16
  (cuSPARSELt dropped fp32), both dimensions multiples of the backend's minimum (16 x 16 for cuSPARSELt fp16/bf16,
  32 x 64 for CUTLASS).  Inference only; convs and other N:M patterns have no kernel here.  Where the kernels are
  unavailable the reason is given (:class:`SemiStructuredUnsupported`); ``strict=False`` leaves those layers dense.
* any ``N:M`` -> a compressed pair (values, indices): the N kept values of every window of M and their positions
  in it (uint8), the storage of sparse tensor cores, on any device (:func:`nm_compress` / :func:`nm_decompress`).

:func:`export_model` replaces a model's layers by their sparse modules (BSR, or 2:4 semi-structured) and returns,
per layer, ``"exported"`` or why it stayed dense; :func:`export_state_dict` writes a state_dict whose pruned
weights are stored sparse (BSR tensors, or N:M compressed pairs) and :func:`load_exported_state` reads it back to
plain dense weights.
"""
from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping

import torch
from torch import nn

from .tiling import check_block

__all__ = ["BSRLinear", "to_bsr_linear", "export_bsr", "SemiStructuredUnsupported", "semi_structured_support",
           "to_semi_structured_linear", "export_semi_structured", "check_equivalence", "nm_compress",
           "nm_decompress", "export_model", "export_state_dict", "prunable_weights", "load_exported_state",
           "EXPORTED"]

EXPORTED = "exported"  # the status of a layer that was converted
_NM_VALUES, _NM_INDICES = ".nm_values", ".nm_indices"  # state_dict suffixes of an N:M compressed weight
_META = "_nn_bridge_export"  # state_dict key recording the pattern and the dense shapes


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


# ---------------------------------------------------------------------------------------------- blocks: BSR
class BSRLinear(nn.Module):
    """A Linear whose weight is a BSR tensor (inference only)."""

    def __init__(self, weight_bsr: torch.Tensor, bias, in_features: int, out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("weight", weight_bsr)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @property
    def n_stored_blocks(self) -> int:
        return int(self.weight.values().shape[0])

    def forward(self, x):
        lead = x.shape[:-1]
        y = (self.weight @ x.reshape(-1, self.in_features).t().to(self.weight.dtype)).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)


def _bsr_reasons(mod, B) -> list:
    if not isinstance(mod, nn.Linear):
        return [f"only nn.Linear layers export to BSR (got {type(mod).__name__})"]
    out_f, in_f = mod.weight.shape
    if out_f % B or in_f % B:
        return [f"{B}x{B} blocks do not tile a {out_f}x{in_f} Linear weight; BSR export needs exact tiling "
                "(padded layers stay dense)"]
    if mod.weight.device.type == "cpu" and not _cpu_bsr_matmul(mod.weight.dtype):
        return [f"this torch has no CPU kernel for a {mod.weight.dtype} BSR matmul (the exported layer could not "
                f"run); export in float32 / float64, or on CUDA"]
    return []


@functools.lru_cache(maxsize=None)
def _cpu_bsr_matmul(dtype) -> bool:
    """Whether a BSR matmul runs on the CPU in ``dtype`` (float16 / bfloat16 do not in torch 2.x): tried once."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "BSR support is in beta"
            torch.eye(2, dtype=dtype).to_sparse_bsr((1, 1)) @ torch.ones(2, 1, dtype=dtype)
        return True
    except (RuntimeError, NotImplementedError):
        return False


def _to_bsr(w: torch.Tensor, B: int) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "BSR support is in beta"
        return w.detach().to_sparse_bsr((B, B))


def to_bsr_linear(linear: nn.Linear, block) -> BSRLinear:
    """A BSRLinear computing the same function as ``linear`` (whose weight is already block sparse, baked)."""
    B = check_block(block)
    if not isinstance(linear, nn.Linear):
        raise ValueError(f"linear: expected an nn.Linear, got {type(linear).__name__}")
    reasons = _bsr_reasons(linear, B)
    if reasons:
        raise ValueError(f"block: {reasons[0]}")
    out_f, in_f = linear.weight.shape
    return BSRLinear(_to_bsr(linear.weight, B), linear.bias, in_f, out_f)


def export_bsr(model: nn.Module, tilings) -> dict:
    """Replace every tiled Linear of ``model`` (already finalized) by its BSRLinear; returns {name: BSRLinear}."""
    done = {}
    for t in tilings:
        for name in t.holders:  # every holder of a tied weight (each keeps its own bias)
            mod = model.get_submodule(name)
            if not isinstance(mod, nn.Linear) or t.needs_padding:
                continue
            done[name] = to_bsr_linear(mod, t.block)
            _replace(model, name, done[name])
    return done


# ---------------------------------------------------------------------------------------------- 2:4 kernels
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
    from .nm.groups import nm_violations
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
        _replace(model, name, to_semi_structured_linear(mod, check=check))
        out[name] = EXPORTED
    return out


# ---------------------------------------------------------------------------------------------- N:M compressed
def nm_compress(w: torch.Tensor, pattern, name: str = "weight") -> tuple:
    """(values, indices) of an N:M weight: per window of M consecutive inputs (``nm/groups.py`` order), its N kept
    values and their positions 0..M-1 (uint8), each of shape (windows, N).  A window with more than N non-zeros is
    a ValueError naming ``name``."""
    from .nm.groups import NMPattern, to_groups
    p = NMPattern.parse(pattern)
    g = to_groups(w.detach(), p.m)
    over = int(((g != 0).sum(1) > p.n).sum())
    if over:
        raise ValueError(f"{name}: {over} windows of {p.m} inputs hold more than {p.n} non-zeros; not {p} sparse "
                         f"(prune and finalize first)")
    # the non-zeros first, in input order (a stable sort of the zero flags); short windows are padded with zeros
    idx = torch.sort((g == 0).to(torch.int8), dim=1, stable=True).indices[:, :p.n]
    return g.gather(1, idx).contiguous(), idx.to(torch.uint8)


def nm_decompress(values: torch.Tensor, indices: torch.Tensor, shape, pattern) -> torch.Tensor:
    """The dense weight of ``shape`` that :func:`nm_compress` stored as (values, indices)."""
    from .nm.groups import NMPattern, from_groups
    p = NMPattern.parse(pattern)
    g = torch.zeros(values.shape[0], p.m, dtype=values.dtype, device=values.device)
    g.scatter_(1, indices.long(), values)
    return from_groups(g, tuple(shape)).contiguous()


# ---------------------------------------------------------------------------------------------- both patterns
def _parse(pattern) -> tuple:
    """('block', B, '16x16') or ('nm', NMPattern, '2:4')."""
    from .grouping import parse_pattern
    pat = parse_pattern(pattern)
    return ("block", pat.block, str(pat)) if hasattr(pat, "block") else ("nm", pat, str(pat))


def export_model(model: nn.Module, pattern, layers=None, strict: bool = False) -> dict:
    """Replace the pruned layers of a finalized model by sparse modules: BSR (``"16x16"``) or 2:4 semi-structured
    (``"2:4"``, CUDA).  ``layers``: module names (default every Linear).  Returns {name: 'exported' or why it stayed
    dense}; ``strict=True`` raises ValueError on the first layer that cannot be exported."""
    kind, p, pname = _parse(pattern)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)] if layers is None else list(layers)
    if kind == "nm" and (p.n, p.m) != (2, 4):
        raise ValueError(f"pattern: only 2:4 has sparse kernels to export to (got {pname}); "
                         f"export_state_dict stores any N:M compressed")
    out = {}
    for name in names:
        mod = model.get_submodule(name)
        reasons = _bsr_reasons(mod, p) if kind == "block" else semi_structured_support(mod)
        if reasons:
            if strict:
                raise ValueError(f"layers: {name!r} cannot be exported to {pname}: " + "; ".join(reasons))
            out[name] = "; ".join(reasons)
            continue
        new = to_bsr_linear(mod, p) if kind == "block" else to_semi_structured_linear(mod)
        _replace(model, name, new)
        out[name] = EXPORTED
    return out


def prunable_weights(state, pattern) -> list:
    """Keys of the weights of ``state`` (a state_dict) the pattern can describe: floating ``*weight`` tensors with 2
    or more dimensions, whose input dimension M divides (N:M) or that are 2-D / 4-D (block)."""
    kind, p, _ = _parse(pattern)
    out = []
    for k, w in state.items():
        if not (isinstance(k, str) and k.endswith("weight") and torch.is_tensor(w) and w.is_floating_point()
                and w.dim() >= 2 and w.layout == torch.strided):
            continue
        if (kind == "nm" and w.shape[1] % p.m == 0) or (kind == "block" and w.dim() in (2, 4)):
            out.append(k)
    return out


def _weight_reasons(w, kind, p) -> list:
    """Why ``w`` cannot be stored sparse under the pattern, or why storing it sparse would not save space."""
    from .nm.groups import check_shape, nm_violations
    if kind == "block":
        B = p
        if w.dim() != 2 or w.shape[0] % B or w.shape[1] % B:
            return [f"BSR stores 2-D weights that {B}x{B} blocks tile; shape {tuple(w.shape)}"]
        tiles = w.reshape(w.shape[0] // B, B, w.shape[1] // B, B).abs().sum(dim=(1, 3))
        return [] if bool((tiles == 0).any()) else [f"no all-zero {B}x{B} block: dense storage is smaller"]
    try:
        check_shape(tuple(w.shape), p.m, "weight")
    except ValueError as e:
        return [str(e).removeprefix("weight: ")]
    bad = nm_violations(w, p.n, p.m)
    return [f"{bad} windows of {p.m} inputs hold more than {p.n} non-zeros (not {p} sparse)"] if bad else []


@torch.no_grad()
def export_state_dict(model, pattern, keys=None, strict: bool = False) -> tuple:
    """(state_dict, status): the state_dict of ``model`` (an ``nn.Module`` or a state_dict) with the weights
    ``keys`` (default :func:`prunable_weights`) stored sparse -- BSR tensors (block patterns) or
    ``<key>.nm_values`` / ``<key>.nm_indices`` pairs (N:M) -- plus a record of the pattern and dense shapes.
    ``status``: {key: 'exported' or why that weight stayed dense}; ``strict=True`` raises ValueError instead."""
    kind, p, pname = _parse(pattern)
    state = model.state_dict() if isinstance(model, nn.Module) else model
    if not isinstance(state, Mapping):
        raise ValueError(f"model: expected a torch.nn.Module or a state_dict, got {type(model).__name__}")
    sd = {k: v.detach() if torch.is_tensor(v) else v for k, v in state.items()}
    keys = prunable_weights(sd, pname) if keys is None else list(keys)
    status, shapes = {}, {}
    for key in keys:
        if key not in sd:
            raise ValueError(f"keys: {key!r} is not in the state_dict")
        reasons = _weight_reasons(sd[key], kind, p)
        if reasons:
            if strict:
                raise ValueError(f"keys: {key!r} cannot be stored {pname} sparse: " + "; ".join(reasons))
            status[key] = "; ".join(reasons)
            continue
        w = sd.pop(key)
        shapes[key] = list(w.shape)
        if kind == "block":
            sd[key] = _to_bsr(w, p)
        else:
            sd[key + _NM_VALUES], sd[key + _NM_INDICES] = nm_compress(w, p, key)
        status[key] = EXPORTED
    sd[_META] = {"pattern": pname, "shapes": shapes}
    return sd, status


def load_exported_state(state) -> dict:
    """A plain dense state_dict from :func:`export_state_dict`'s output, or from the file ``python -m nn_bridge
    export`` wrote (a path: read with ``weights_only=True``); load it with ``model.load_state_dict``."""
    import os
    if isinstance(state, (str, os.PathLike)):
        from ._cli_common import load_torch_file
        state = load_torch_file(state, "state")
    if not isinstance(state, dict) or _META not in state:
        raise ValueError(f"state: not an nn_bridge export (no {_META!r} record)")
    meta = state[_META]
    out = {}
    for k, v in state.items():
        if k == _META or k.endswith(_NM_INDICES):
            continue
        if k.endswith(_NM_VALUES):
            key = k[:-len(_NM_VALUES)]
            out[key] = nm_decompress(v, state[key + _NM_INDICES], meta["shapes"][key], meta["pattern"])
        elif torch.is_tensor(v) and v.layout == torch.sparse_bsr:
            out[k] = v.to_dense()
        else:
            out[k] = v
    return out
