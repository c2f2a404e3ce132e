"""Resumable one-shot runs (``solve_layers(..., checkpoint=dir)``): the driver's state at a block boundary.

The checkpoint is a directory.  After block i of the streamed mode it gets ``block<i>.pt``, that block's finished
state (its ``state_dict``, masks attached: the pruned weights, refined or not), written once, and ``state.pt`` is
replaced: every finished layer's keep mask and figures, the allocation, the index of the next block and the first
positional input of the next block for every batch in both streams (the hidden states; the other arguments --
attention masks, positions -- are recomputed by running the model to the first block).  A resumed run continues
from there and ends with the same model as an uninterrupted one (test: bit-identical weights).  So each block's
weights are written once, and ``state.pt`` is the size of the two streams.

The files are data, not code: ``torch.save`` of tensors, numbers and strings, read back with ``weights_only=True``,
each written to a temporary file and renamed (an interrupted write leaves the previous state).  Each carries a
fingerprint of the problem -- the dense weights, the calibration batches and every option that changes the result --
and the checkpoint is refused, naming ``checkpoint``, when it belongs to another run or is damaged.  The directory is
deleted when the run completes.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping

import torch

FORMAT = "nn_bridge-oneshot-checkpoint-1"


_FILES = re.compile(r"^(state|block\d+)\.pt(\.tmp)?$")


def check_path(path):
    """``checkpoint``: None or a directory path (str / PathLike; created at the first block) whose parent exists
    and which, if it exists, holds nothing but checkpoint files."""
    if path is None:
        return None
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f"checkpoint: expected a directory path (str) or None, got {path!r}")
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(f"checkpoint: the directory {parent!r} does not exist")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"checkpoint: {path!r} is a file; give a directory path (it holds one file per block)")
    if os.path.isdir(path):
        other = [f for f in os.listdir(path) if not _FILES.match(f)]
        if other:
            raise ValueError(f"checkpoint: {path!r} holds other files ({other[:3]}); give a new or a checkpoint "
                             f"directory")
    return path


def _read(path, name, fp):
    f = os.path.join(path, name)
    try:
        ck = torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:  # missing, not a torch file, truncated, or holding objects that are not plain data
        raise ValueError(f"checkpoint: {f!r} is damaged or not a one-shot checkpoint ({type(e).__name__}: "
                         f"{e}); delete {path!r} to start over") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise ValueError(f"checkpoint: {f!r} is not a one-shot checkpoint of this version; delete {path!r} to start "
                         f"over")
    if ck.get("fingerprint") != fp:
        raise ValueError(f"checkpoint: {path!r} belongs to another run (different dense weights, calibration data "
                         f"or options); delete it, or give another path")
    return ck


def _write(path, name, obj):
    tmp = os.path.join(path, name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, os.path.join(path, name))


def remove(path) -> None:
    """Delete the checkpoint directory (its checkpoint files; the directory if nothing else is left)."""
    if path is None or not os.path.isdir(path):
        return
    for f in os.listdir(path):
        if _FILES.match(f):
            os.remove(os.path.join(path, f))
    if not os.listdir(path):
        os.rmdir(path)


def _update(h, x):
    """Feed a nested structure of tensors / containers / plain values into the hash ``h``."""
    if torch.is_tensor(x):
        t = x.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(x, Mapping):
        h.update(b"{")
        for k in sorted(x, key=str):
            h.update(repr(k).encode())
            _update(h, x[k])
        h.update(b"}")
    elif isinstance(x, (list, tuple)):
        h.update(b"[")
        for v in x:
            _update(h, v)
        h.update(b"]")
    else:
        h.update(repr(x).encode())


def fingerprint(model, batches, row_masks, options: dict) -> str:
    """sha256 of the model's (dense) state, the batches, their row masks and the options."""
    h = hashlib.sha256()
    _update(h, dict(model.state_dict()))
    _update(h, list(batches))
    _update(h, row_masks)
    _update(h, options)
    return h.hexdigest()


def load(path, fp):
    """The checkpoint in ``path`` for the run with fingerprint ``fp`` (None when there is none yet), with its
    finished blocks' states under ``'blocks'``."""
    if path is None or not os.path.isdir(path) or not [f for f in os.listdir(path) if _FILES.match(f)]:
        return None
    ck = _read(path, "state.pt", fp)
    ck["blocks"] = {}
    for i in range(int(ck["next_block"])):
        blk = _read(path, f"block{i}.pt", fp)
        ck["blocks"][blk["block"]] = blk["state"]
    return ck


def save(path, fp, res, st, n_remove, blocks) -> None:
    """Write the state after the blocks ``blocks[:st.i]`` (``st`` stands at the next one): the newly finished
    blocks' files, then ``state.pt``."""
    model = res.model
    os.makedirs(path, exist_ok=True)
    for i in range(st.i):
        if not os.path.exists(os.path.join(path, f"block{i}.pt")):
            state = {k: v.cpu() for k, v in model.get_submodule(blocks[i]).state_dict().items()}
            _write(path, f"block{i}.pt", {"format": FORMAT, "fingerprint": fp, "block": blocks[i], "state": state})
    d_in, p_in = st.hidden_states()
    _write(path, "state.pt", {
        "format": FORMAT, "fingerprint": fp, "next_block": st.i, "n_remove": dict(n_remove or {}),
        "keep": {n: k.cpu() for n, k in res.keep.items()},
        "figures": json.dumps({"layer_sparsity": res.layer_sparsity, "layer_rel_error": res.layer_rel_error,
                               "layer_method": res.layer_method, "layer_seconds": res.layer_seconds,
                               "block_error": {b: list(e) for b, e in res.block_error.items()}}),
        "d_in": [x.cpu() for x in d_in], "p_in": None if p_in is None else [x.cpu() for x in p_in]})


def restore(ck, res, st, layers, attach):
    """Put the finished blocks back into ``res.model`` (their masks attached first by ``attach``, so that the
    saved state_dicts fit), the figures into ``res`` and the streams at the next block.  Returns the names of the
    layers finished (in forward order) and the index of the next block."""
    res.keep.update({n: k.to(torch.bool) for n, k in ck["keep"].items()})
    finished = [t for t in layers if t.name in ck["keep"]]
    attach(finished)
    for b, sd in ck["blocks"].items():
        mod = res.model.get_submodule(b)
        ref = next(iter(mod.state_dict().values()), None)
        mod.load_state_dict({k: v.to(ref.device) if ref is not None else v for k, v in sd.items()})
    fig = json.loads(ck["figures"])
    res.layer_sparsity.update(fig["layer_sparsity"])
    res.layer_rel_error.update(fig["layer_rel_error"])
    res.layer_method.update(fig["layer_method"])
    res.layer_seconds.update(fig["layer_seconds"])
    res.block_error.update({b: tuple(e) for b, e in fig["block_error"].items()})
    st.restore(int(ck["next_block"]), ck["d_in"], ck["p_in"])
    return [t.name for t in finished], int(ck["next_block"])
