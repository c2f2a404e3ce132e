"""Resumable one-shot runs (``solve_layers(..., checkpoint=path)``): the driver's state at a block boundary.

After each block of the streamed mode the file holds: the finished blocks' state (their ``state_dict``, masks
attached: the pruned weights, refined or not), every finished layer's keep mask and figures, the allocation, and the
first positional input of the next block for every batch in both streams (the hidden states; the other arguments --
attention masks, positions -- are recomputed by running the model to the first block).  A resumed run continues
from there and ends with the same model as an uninterrupted one (test: bit-identical weights).

The file is data, not code: ``torch.save`` of tensors, numbers and strings, read back with ``weights_only=True``,
written to a temporary file and renamed (an interrupted write leaves the previous checkpoint).  It carries a
fingerprint of the problem -- the dense weights, the calibration batches and every option that changes the result --
and is refused, naming ``checkpoint``, when it belongs to another run or is damaged.  It is deleted when the run
completes.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping

import torch

FORMAT = "nn_bridge-oneshot-checkpoint-1"


def check_path(path):
    """``checkpoint``: None or a file path (str / PathLike) in an existing directory."""
    if path is None:
        return None
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f"checkpoint: expected a file path (str) or None, got {path!r}")
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(f"checkpoint: the directory {parent!r} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"checkpoint: {path!r} is a directory; give a file path")
    return path


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
    """The checkpoint at ``path`` for the run with fingerprint ``fp`` (None when there is no file)."""
    if path is None or not os.path.exists(path):
        return None
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # not a torch file, truncated, or holding objects that are not plain data
        raise ValueError(f"checkpoint: {path!r} is damaged or not a one-shot checkpoint ({type(e).__name__}: "
                         f"{e}); delete it to start over") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise ValueError(f"checkpoint: {path!r} is not a one-shot checkpoint of this version; delete it to start "
                         f"over")
    if ck.get("fingerprint") != fp:
        raise ValueError(f"checkpoint: {path!r} belongs to another run (different dense weights, calibration data "
                         f"or options); delete it, or give another path")
    return ck


def save(path, fp, res, st, n_remove, done_blocks) -> None:
    """Write the state after the blocks ``done_blocks`` (``st`` stands at the next one); atomic."""
    model = res.model
    d_in, p_in = st.hidden_states()
    ck = {"format": FORMAT, "fingerprint": fp, "next_block": st.i,
          "n_remove": dict(n_remove or {}),
          "keep": {n: k.cpu() for n, k in res.keep.items()},
          "blocks": {b: {k: v.cpu() for k, v in model.get_submodule(b).state_dict().items()} for b in done_blocks},
          "figures": json.dumps({"layer_sparsity": res.layer_sparsity, "layer_rel_error": res.layer_rel_error,
                                 "layer_method": res.layer_method, "layer_seconds": res.layer_seconds,
                                 "block_error": {b: list(e) for b, e in res.block_error.items()}}),
          "d_in": [x.cpu() for x in d_in], "p_in": None if p_in is None else [x.cpu() for x in p_in]}
    tmp = f"{path}.tmp"
    torch.save(ck, tmp)
    os.replace(tmp, path)


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
