"""What every ``python -m nn_bridge <subcommand>`` shares: one-line errors, argparse ``type=`` checks, torch files.

API (stable; the subcommands ``prune``, ``nm`` and ``oneshot`` use it):

* ``ArgumentParser(prog=..., ...)`` -- argparse's parser whose usage errors raise :class:`UsageError` (a
  ``ValueError``) instead of printing the usage block and exiting, and which accepts ``--debug`` (show the full
  traceback on errors).  Sub-parsers made by ``add_subparsers`` are of the same class.
* ``run_cli(main, argv, prog=...)`` -- call ``main(argv)`` and return its exit code (``None`` -> 0); a
  ``ValueError`` / ``TypeError`` / ``OSError`` (``FileNotFoundError`` ...) / ``EOFError`` becomes one line
  ``<prog>: error: <message>`` on stderr and exit code 2, unless ``--debug`` is in ``argv`` (then it propagates).
  ``SystemExit`` (``--help``) becomes its exit code.  A CLI module's public entry point is
  ``def main(argv=None): return run_cli(_main, argv, prog="python -m nn_bridge <cmd>")``.
* ``type=`` functions, each raising ``argparse.ArgumentTypeError`` (argparse prefixes the option name):
  ``positive_int`` (>= 1), ``nonneg_int`` (>= 0), ``positive_float`` (finite > 0), ``nonneg_float`` (finite >= 0),
  ``fraction_in_0_1`` (a sparsity: finite, 0 <= x < 1), ``existing_file`` (a readable regular file),
  ``writable_path`` (an output file: its folder exists and is writable, the path is not a folder; ``''`` passes
  through and means "do not write").  All run at parse time, i.e. before any work.
* ``pattern_arg`` -- argparse ``type=`` for ``--pattern``: ``BxB`` or ``N:M`` parsed by ``grouping.parse_pattern``
  into its pattern object (``BlockPattern`` / ``NMPattern``), its error under the option's name.
* ``read_state_dict(path, option)`` -- the tensors of a saved model: a ``.safetensors`` / ``.pt`` / ``.pth`` /
  ``.bin`` state_dict, or a folder holding one (an ``oneshot --out`` folder, a Hugging Face folder, sharded or
  not); anything else is a ``ValueError`` naming ``option``.
* ``select_weights(keys, globs)`` -- the state_dict keys matching a ``--include`` glob (the key or its module
  name, e.g. ``'encoder.*'``); ``globs=None`` keeps all.
* ``as_option(error, options)`` -- a library ``ValueError`` whose message starts ``name:`` (the Python argument)
  re-raised under the command-line option the user typed (``options = {"pattern": "--pattern", ...}``; ``pad=True``
  in the advice becomes ``--pad``).
* ``deprecated(old, new)`` -- one line on stderr: ``old`` is deprecated, use ``new`` (the replacing command).
* ``load_torch_file(path, name)`` -- ``torch.load(path, map_location='cpu', weights_only=True)`` (a checkpoint is
  data, not code); an empty, truncated, garbage or code-carrying file is a ``ValueError`` naming ``name`` and the
  file.  ``save_torch_file(obj, path)`` -- ``torch.save`` to a unique temporary name in the same folder, then an
  atomic ``os.replace`` (a crash or a concurrent writer never leaves a half-written file under ``path``).
"""
from __future__ import annotations

import argparse
import math
import os
import sys

__all__ = ["ArgumentParser", "UsageError", "run_cli", "positive_int", "nonneg_int", "positive_float",
           "nonneg_float", "fraction_in_0_1", "existing_file", "writable_path", "load_torch_file",
           "save_torch_file", "pattern_arg", "read_state_dict", "select_weights", "as_option", "deprecated"]

#: the exceptions a CLI reports as a one-line error (anything else is a bug and keeps its traceback)
CLI_ERRORS = (ValueError, TypeError, OSError, EOFError)


class UsageError(ValueError):
    """Wrong command-line arguments (argparse's message, naming the option)."""


class ArgumentParser(argparse.ArgumentParser):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.add_argument("--debug", action="store_true", help="on errors, show the full traceback")

    def error(self, message):
        raise UsageError(message)


def run_cli(main, argv=None, prog: str = "python -m nn_bridge") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        rc = main(argv)
    except SystemExit as e:  # --help, or a main that exits itself
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except CLI_ERRORS as e:
        if "--debug" in argv:
            raise
        msg = " ".join(str(e).split()) or type(e).__name__  # one line, whatever the message held
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return 2
    return 0 if rc is None else int(rc)


def given_options(argv, parser) -> set:
    """The long options typed in ``argv`` (argparse's unique prefixes resolved): to refuse one the run would
    ignore."""
    known = [o for o in parser._option_string_actions if o.startswith("--")]
    out = set()
    for tok in argv:
        if tok.startswith("--"):
            name = tok.split("=", 1)[0]
            hits = [o for o in known if o == name] or [o for o in known if o.startswith(name)]
            if len(hits) == 1:
                out.add(hits[0])
    return out


def _number(s, kind):
    try:
        v = kind(s)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {s!r}")
    if kind is float and not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {s!r}")
    return v


def positive_int(s) -> int:
    v = _number(s, int)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {s!r}")
    return v


def nonneg_int(s) -> int:
    v = _number(s, int)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {s!r}")
    return v


def positive_float(s) -> float:
    v = _number(s, float)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {s!r}")
    return v


def nonneg_float(s) -> float:
    v = _number(s, float)
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {s!r}")
    return v


def fraction_in_0_1(s) -> float:
    v = _number(s, float)
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {s!r}")
    return v


def pattern_arg(s):
    from .grouping import parse_pattern
    try:
        return parse_pattern(s)
    except ValueError as e:  # argparse prefixes "argument --pattern: "
        raise argparse.ArgumentTypeError(str(e).removeprefix("pattern: ")) from None


def select_weights(keys, globs) -> list:
    import fnmatch
    if globs is None:
        return list(keys)
    return [k for k in keys if any(fnmatch.fnmatchcase(k, g) or fnmatch.fnmatchcase(k.rpartition(".")[0], g)
                                   for g in globs)]


def as_option(error: ValueError, options: dict) -> ValueError:
    name, sep, rest = str(error).partition(":")
    if not sep or name not in options:
        return error
    return ValueError(f"{options[name]}:{rest}".replace("pad=True", "--pad"))


def deprecated(old: str, new: str) -> None:
    print(f"{old} is deprecated and goes in the next release; use: {new}", file=sys.stderr)


def existing_file(s) -> str:
    if not os.path.isfile(s):
        raise argparse.ArgumentTypeError(f"no such file: {s!r}")
    if not os.access(s, os.R_OK):
        raise argparse.ArgumentTypeError(f"file not readable: {s!r}")
    return s


def writable_path(s) -> str:
    if s == "":
        return s
    if os.path.isdir(s):
        raise argparse.ArgumentTypeError(f"{s!r} is a folder, expected a file path")
    parent = os.path.dirname(os.path.abspath(s))
    if not os.path.isdir(parent):
        raise argparse.ArgumentTypeError(f"folder {parent!r} does not exist (for {s!r})")
    if not os.access(parent, os.W_OK):
        raise argparse.ArgumentTypeError(f"folder {parent!r} is not writable (for {s!r})")
    return s


def load_torch_file(path, name: str = "path"):
    import pickle

    import torch
    if not os.path.isfile(path):
        raise ValueError(f"{name}: no such file: {str(path)!r}")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{name}: {str(path)!r} is empty, not a torch.save file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refused a global: the file holds code, not only tensors
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ValueError(f"{name}: {str(path)!r} is not a plain torch state file (weights_only load refused "
                         f"it: {first})") from None
    except Exception as e:  # a corrupt file can fail anywhere in the unpickler (struct.error, AssertionError, ...)
        raise ValueError(f"{name}: {str(path)!r} is not a readable torch.save file (truncated or corrupt: "
                         f"{type(e).__name__})") from None


def save_torch_file(obj, path) -> None:
    import torch
    from groupsparse.checkpoint import atomic_write
    atomic_write(path, lambda f: torch.save(obj, f))


_STATE_FILES = ("model.safetensors", "pytorch_model.bin", "model.pt", "model.pth")


def read_state_dict(path, option: str = "path") -> dict:
    """{name: tensor} of a saved model file, or of the model file(s) in a folder (see the module docstring)."""
    import glob

    import torch
    path = os.fspath(path)
    if os.path.isdir(path):
        files = [os.path.join(path, f) for f in _STATE_FILES if os.path.isfile(os.path.join(path, f))][:1]
        files = files or sorted(glob.glob(os.path.join(path, "model-*-of-*.safetensors")))
        if not files:
            raise ValueError(f"{option}: the folder {path!r} holds no model file ({', '.join(_STATE_FILES)} or "
                             f"model-*-of-*.safetensors shards)")
    elif os.path.isfile(path):
        files = [path]
    else:
        raise ValueError(f"{option}: no such file or folder: {path!r}")
    state = {}
    for f in files:
        if f.endswith(".safetensors"):
            from safetensors import SafetensorError
            from safetensors.torch import load_file
            try:
                part = load_file(f)
            except (SafetensorError, OSError) as e:
                raise ValueError(f"{option}: {f!r} is not a readable safetensors file ({e})") from None
        else:
            part = load_torch_file(f, option)
        if hasattr(part, "state_dict") and callable(part.state_dict):  # a pickled module
            part = part.state_dict()
        if not isinstance(part, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in part.items()):
            raise ValueError(f"{option}: {f!r} holds a {type(part).__name__}, expected a state_dict (name -> tensor, "
                             f"e.g. torch.save(model.state_dict()))")
        state.update(part)
    return state
