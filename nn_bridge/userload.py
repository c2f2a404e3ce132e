"""Load the model a user names, without downloading anything.

``--model`` (``spec``) is one of
* a Hugging Face model folder (has ``config.json``), or a model id already in the local Hugging Face cache
  (``local_files_only=True``: nothing is fetched; a clear error when it is not on disk).  The Auto class follows
  the config's ``architectures``: ``*ForCausalLM`` / ``*LMHeadModel`` -> ``AutoModelForCausalLM``,
  ``*ForSequenceClassification`` -> ``AutoModelForSequenceClassification``, anything else -> ``AutoModel``;
* ``module:function`` or ``path/to/file.py:function``: a function of no arguments returning an ``nn.Module``;
* a ``torch.save``d state_dict or module (``.pt``/``.pth``/``.bin``) or a ``.safetensors`` state_dict, with
  ``arch`` (``module:function``) building the architecture.  Files are read with ``weights_only=True`` (a
  checkpoint is data, not code): a pickled module loads only if it is made of the classes ``arch`` builds.

``resolve_model(spec, arch)`` does the cheap checks (paths exist, the id is cached, ``arch`` is given where
needed) so a CLI fails before any work; ``load_model`` then builds the model.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass

from torch import nn

__all__ = ["LoadedModel", "resolve_model", "load_model", "build_from_function", "STATE_EXTS"]

STATE_EXTS = (".pt", ".pth", ".bin", ".safetensors")
_FUNC = re.compile(r"^(?P<mod>[^:]+):(?P<fn>[A-Za-z_]\w*)$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


@dataclass
class LoadedModel:
    model: nn.Module
    kind: str                 # 'encoder' | 'causal_lm' | 'classifier' | 'module' (nn_bridge.compare.KINDS)
    tokenizer: object = None
    hf_folder: str | None = None
    arch: str | None = None   # module:function building the architecture (non-HF)


def _is_function_spec(spec: str) -> bool:
    m = _FUNC.match(spec)
    return bool(m) and not os.path.exists(spec) and (m.group("mod").endswith(".py")
                                                     or re.fullmatch(r"[A-Za-z_][\w.]*", m.group("mod")) is not None)


def _import(spec: str, option: str):
    m = _FUNC.match(spec)
    if not m:
        raise ValueError(f"{option}: expected 'module:function' or 'file.py:function', got {spec!r}")
    mod, fn = m.group("mod"), m.group("fn")
    if mod.endswith(".py"):
        if not os.path.isfile(mod):
            raise ValueError(f"{option}: no such Python file: {mod!r}")
        name = "_nn_bridge_user_" + re.sub(r"\W", "_", os.path.abspath(mod))
        sp = importlib.util.spec_from_file_location(name, mod)
        module = importlib.util.module_from_spec(sp)
        sp.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            raise ValueError(f"{option}: cannot import module {mod!r} ({e}); run from the folder that holds it, "
                             f"or give 'path/to/file.py:{fn}'") from None
    f = getattr(module, fn, None)
    if not callable(f):
        raise ValueError(f"{option}: {mod!r} has no function {fn!r}")
    return f


def build_from_function(spec: str, option: str = "model") -> nn.Module:
    """Call the ``module:function`` (no arguments) and check it returns an ``nn.Module``."""
    fn = _import(spec, option)
    try:
        out = fn()
    except Exception as e:  # the user's code: one line naming the option (--debug shows the traceback)
        raise ValueError(f"{option}: {spec!r} raised {type(e).__name__}: {e}") from e
    if not isinstance(out, nn.Module):
        raise ValueError(f"{option}: {spec!r} returned {type(out).__name__}, expected a torch.nn.Module")
    return out


def _cached_hub_folder(spec: str):
    """The snapshot folder of a model id in the local Hugging Face cache, or None (never downloads)."""
    try:
        from huggingface_hub import snapshot_download
        return snapshot_download(spec, local_files_only=True)
    except Exception:  # noqa: BLE001 -- not cached, malformed id, no huggingface_hub: all mean "not on disk"
        return None


def resolve_model(spec: str, arch: str | None = None, option: str = "--model", arch_option: str = "--arch"):
    """('hf', folder) | ('function', spec) | ('state', path): what ``spec`` names, checked without loading it."""
    spec = os.fspath(spec)
    if arch is not None and not _FUNC.match(arch):
        raise ValueError(f"{arch_option}: expected 'module:function' or 'file.py:function', got {arch!r}")
    if _is_function_spec(spec):
        return "function", spec
    if os.path.isdir(spec):
        if not os.path.isfile(os.path.join(spec, "config.json")):
            raise ValueError(f"{option}: the folder {spec!r} has no config.json (not a Hugging Face model folder)")
        return "hf", spec
    if os.path.isfile(spec):
        if not spec.endswith(STATE_EXTS):
            raise ValueError(f"{option}: {spec!r} is a file but not a weights file ({', '.join(STATE_EXTS)})")
        if arch is None:
            raise ValueError(f"{option}: {spec!r} holds weights only; pass {arch_option} module:function to build "
                             f"the architecture they belong to")
        return "state", spec
    looks_like_path = spec.startswith((".", "/", "~")) or spec.endswith(STATE_EXTS) or spec.count("/") > 1
    if not looks_like_path and _HUB_ID.match(spec):
        folder = _cached_hub_folder(spec)
        if folder is not None:
            return "hf", folder
        raise ValueError(f"{option}: {spec!r} is not a file or folder here, and not a model id in the local "
                         f"Hugging Face cache (nothing is downloaded: fetch it first, e.g. `hf download {spec}`, "
                         f"or pass the model's folder)")
    raise ValueError(f"{option}: no such file or folder: {spec!r}")


def _hf_kind(folder: str) -> tuple:
    with open(os.path.join(folder, "config.json")) as f:
        archs = json.load(f).get("architectures") or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return "causal_lm", "AutoModelForCausalLM"
    if any(a.endswith("ForSequenceClassification") for a in archs):
        return "classifier", "AutoModelForSequenceClassification"
    return "encoder", "AutoModel"


def load_model(spec: str, arch: str | None = None, option: str = "--model", arch_option: str = "--arch"):
    """Build the model ``spec`` names (see the module docstring); returns a :class:`LoadedModel`."""
    how, where = resolve_model(spec, arch, option, arch_option)
    if how == "hf":
        import transformers
        kind, auto = _hf_kind(where)
        try:
            model = getattr(transformers, auto).from_pretrained(where, local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"{option}: {spec!r} could not be loaded with {auto}: {str(e).splitlines()[0]}") from None
        try:
            tok = transformers.AutoTokenizer.from_pretrained(where, local_files_only=True)
        except Exception:  # noqa: BLE001 -- a model without a tokenizer is fine until text data needs one
            tok = None
        return LoadedModel(model.eval(), kind, tok, hf_folder=where)
    if how == "function":
        return LoadedModel(build_from_function(where, option).eval(), "module", arch=where)
    model = build_from_function(arch, arch_option)
    _load_weights(model, where, option)
    return LoadedModel(model.eval(), "module", arch=arch)


def _load_weights(model: nn.Module, path: str, option: str) -> None:
    import torch
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        state = load_file(path)
    else:
        from ._cli_common import load_torch_file
        # a pickled module may only be made of the classes the architecture function builds
        with torch.serialization.safe_globals(sorted({type(m) for m in model.modules()}, key=str)):
            state = load_torch_file(path, option)
    if isinstance(state, nn.Module):
        state = state.state_dict()
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{option}: {path!r} holds {type(state).__name__}, expected a state_dict (name -> tensor) "
                         f"or a module")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{option}: the weights in {path!r} do not fit the architecture: "
                         f"{' '.join(str(e).split())[:300]}") from None
