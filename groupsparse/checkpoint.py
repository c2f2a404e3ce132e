"""Checkpoints are data, not code: one ``.npz`` file (read with ``allow_pickle=False``) that holds the arrays and a
JSON metadata record (format name, version, a fingerprint of the problem).

- ``save_npz_json(path, meta, arrays)``: written atomically under a unique temporary name in the same folder, then
  ``os.replace``d, so a crash never leaves half a file and two writers of one path never collide.
- ``load_npz_json(path, fmt)``: refuses a missing format field, another format, a newer version, a corrupt or
  foreign file (a pickle included: it is never unpickled) with a ``CheckpointError`` naming the path.
- ``solution_record`` / ``solution_from_record``: a ``Solution`` as (JSON-able scalars, arrays) and back.
- ``fingerprint(*parts)``: a SHA-256 over arrays (dense, scipy.sparse, torch), scalars, strings, containers and
  groupsparse objects (their public attributes), so that resuming another problem's checkpoint is detected.
"""
from __future__ import annotations

import hashlib
import json
import numbers
import os
import tempfile
import zipfile

import numpy as np
import scipy.sparse as sp

__all__ = ["CheckpointError", "save_npz_json", "load_npz_json", "solution_record", "solution_from_record",
           "fingerprint"]

_META = "__meta__"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, of another format or version, or of another problem."""


# ---------------------------------------------------------------------------------------------- file format
def atomic_write(path, write) -> None:
    """Call ``write(f)`` on a binary file that replaces ``path`` only once complete: a unique temporary name in
    the same folder (two writers never collide), fsync, then os.replace; on any failure the temporary goes."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def save_npz_json(path, meta: dict, arrays: dict) -> None:
    """Write ``arrays`` and the JSON record ``meta`` to ``path`` atomically (``atomic_write``)."""
    blob = np.frombuffer(json.dumps(meta, default=_json_default).encode("utf-8"), dtype=np.uint8)
    # a file object: numpy adds no ".npz" suffix
    atomic_write(path, lambda f: np.savez(f, **{_META: blob}, **arrays))


def load_npz_json(path, fmt: str, version: int):
    """(meta, arrays) of a file written by ``save_npz_json`` with ``meta['format'] == fmt`` and a version <=
    ``version``; any other file gives a ``CheckpointError`` naming ``path``.  Nothing is unpickled."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        if head != b"PK\x03\x04":  # np.load would take anything else for a .npy or a pickle
            raise CheckpointError(f"checkpoint: {path} is not a groupsparse checkpoint (not an .npz archive"
                                  f"{': empty file' if not head else ''}; a pickle is never loaded)")
        with np.load(path, allow_pickle=False) as z:
            if not isinstance(z, np.lib.npyio.NpzFile) or _META not in z.files:
                raise CheckpointError(f"checkpoint: {path} is not a groupsparse checkpoint (no metadata record)")
            meta = json.loads(bytes(z[_META]).decode("utf-8"))
            arrays = {k: z[k] for k in z.files if k != _META}
    except CheckpointError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        # a pickle is refused by allow_pickle=False (ValueError), a truncated zip by zipfile, garbage by numpy
        raise CheckpointError(f"checkpoint: {path} is not a readable groupsparse checkpoint "
                              f"({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"checkpoint: {path} holds {got!r}, not a {fmt!r} checkpoint")
    v = meta.get("version")
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= version:
        raise CheckpointError(f"checkpoint: {path} has format version {v!r}; this groupsparse reads versions "
                              f"1..{version}")
    return meta, arrays


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return repr(v)  # data, never code: an unknown object is kept as its text


# ---------------------------------------------------------------------------------------------- Solution
_SCALARS = ("objective", "certificate", "certificate_kind", "converged", "n_iter", "lam", "lower_bound")


def solution_record(sol, prefix: str):
    """(record, arrays): the scalars, history and info of ``sol`` as JSON-able data, its arrays under
    ``prefix + name``."""
    rec = {k: _json_default(v) if isinstance(v, np.generic) else v for k, v in
           ((k, getattr(sol, k)) for k in _SCALARS)}
    rec["history"] = sol.history
    rec["info"] = sol.info
    rec["has_intercept"] = sol.intercept is not None
    arrays = {prefix + "coef": np.asarray(sol.coef, dtype=float),
              prefix + "support": np.asarray(sol.support, dtype=np.int64)}
    if sol.intercept is not None:
        arrays[prefix + "intercept"] = np.asarray(sol.intercept, dtype=float)
    return rec, arrays


def solution_from_record(rec, arrays, prefix: str, where: str):
    """The ``Solution`` saved by ``solution_record``; a missing or mistyped field names ``where``."""
    from .problem import Solution
    try:
        coef = _float_array(arrays[prefix + "coef"])
        support = np.asarray(arrays[prefix + "support"])
        if support.dtype.kind not in "iu":
            raise TypeError("support is not an integer array")
        icpt = _float_array(arrays[prefix + "intercept"]) if rec["has_intercept"] else None
        vals = {k: rec[k] for k in _SCALARS}
        for k in ("objective", "certificate"):
            if isinstance(vals[k], bool) or not isinstance(vals[k], numbers.Real):
                raise TypeError(f"{k} is not a number")
        if not isinstance(vals["certificate_kind"], str) or not isinstance(vals["converged"], bool) or \
                isinstance(vals["n_iter"], bool) or not isinstance(vals["n_iter"], int):
            raise TypeError("certificate_kind / converged / n_iter of the wrong type")
        for k in ("lam", "lower_bound"):
            if vals[k] is not None and (isinstance(vals[k], bool) or not isinstance(vals[k], numbers.Real)):
                raise TypeError(f"{k} is not a number")
        history, info = rec["history"], rec["info"]
        if not isinstance(history, list) or not isinstance(info, dict):
            raise TypeError("history / info of the wrong type")
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint: {where} is damaged ({type(e).__name__}: {e})") from None
    return Solution(coef, icpt, support.astype(np.int64), float(vals["objective"]), float(vals["certificate"]),
                    vals["certificate_kind"], vals["converged"], vals["n_iter"],
                    None if vals["lam"] is None else float(vals["lam"]),
                    None if vals["lower_bound"] is None else float(vals["lower_bound"]), history=history, info=info)


def _float_array(a):
    a = np.asarray(a)
    if a.dtype.kind != "f":
        raise TypeError(f"expected a float array, got dtype {a.dtype}")
    return a.astype(float)


# ---------------------------------------------------------------------------------------------- fingerprint
def fingerprint(*parts) -> str:
    """SHA-256 (hex) of the parts, fed in a canonical byte form (see ``_feed``)."""
    h = hashlib.sha256()
    for p in parts:
        _feed(h, p)
    return h.hexdigest()


def _feed(h, v, depth=0):
    if depth > 8:  # a cycle or a deep object graph: its type is enough
        h.update(b"<deep>" + type(v).__qualname__.encode())
        return
    if v is None or isinstance(v, (bool, numbers.Number, str, bytes, np.generic)):
        h.update(f"{type(v).__name__}:{v!r};".encode())
    elif isinstance(v, np.ndarray):
        a = np.ascontiguousarray(v)
        h.update(f"nd{a.dtype.str}{a.shape};".encode())
        h.update(a.tobytes() if a.dtype.kind != "O" else repr(a.tolist()).encode())
    elif sp.issparse(v):
        c = v.tocsr()
        c.sum_duplicates()
        h.update(f"sp{c.shape};".encode())
        for a in (c.indptr, c.indices, c.data):
            _feed(h, np.asarray(a), depth + 1)
    elif type(v).__module__.startswith("torch") and hasattr(v, "detach"):
        _feed(h, v.detach().cpu().numpy(), depth + 1)
    elif isinstance(v, dict):
        h.update(b"{")
        for k in sorted(v, key=repr):
            _feed(h, k, depth + 1)
            _feed(h, v[k], depth + 1)
        h.update(b"}")
    elif isinstance(v, (list, tuple)):
        h.update(f"[{len(v)}".encode())
        for x in v:
            _feed(h, x, depth + 1)
        h.update(b"]")
    elif callable(v) and hasattr(v, "__code__"):  # a Python function (CompositePenalty's q): name and bytecode
        c = v.__code__
        h.update(f"fn{getattr(v, '__module__', '')}.{v.__qualname__};".encode() + c.co_code)
        _feed(h, [x for x in c.co_consts if isinstance(x, (numbers.Number, str, bytes, type(None)))], depth + 1)
    elif hasattr(v, "__dict__") and not isinstance(v, type):
        # a loss, penalty or Groups: its class and public attributes (caches start with "_" and are skipped)
        h.update(f"obj{type(v).__module__}.{type(v).__qualname__};".encode())
        attrs = {k: x for k, x in vars(v).items() if not k.startswith("_") and not _is_module(x)}
        _feed(h, attrs, depth + 1)
    elif hasattr(v, "__dataclass_fields__") or hasattr(v, "__slots__"):
        h.update(repr(v).encode())
    else:
        h.update(f"{type(v).__qualname__}:{v!r};".encode())


def _is_module(x):
    return type(x).__name__ == "module"
