"""Names from before block and N:M pruners shared one base (deprecated; kept one release).

* ``NMPruner``          -> ``nn_bridge.pruners.Pruner`` (the base of every training-time method, any pattern);
* ``NMParametrization`` -> ``nn_bridge.masking.Mask`` (one mask parametrization for both patterns);
* ``NMReport``          -> ``nn_bridge.report.SparsityReport``;  ``measure_nm`` -> ``nn_bridge.report.measure``.
"""
from __future__ import annotations

import warnings

__all__ = ["NMParametrization", "NMPruner", "NMReport", "measure_nm"]

_MOVED = {"NMPruner": ("nn_bridge.pruners", "Pruner"), "NMParametrization": ("nn_bridge.masking", "Mask"),
          "NMReport": ("nn_bridge.report", "SparsityReport")}


def moved(name: str, where: dict, module: str):
    """The object an old name now points to, with a DeprecationWarning naming its new home."""
    import importlib
    if name not in where:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    mod, new = where[name]
    warnings.warn(f"{module}.{name} is deprecated: use {mod}.{new}", DeprecationWarning, stacklevel=3)
    return getattr(importlib.import_module(mod), new)


def __getattr__(name):
    return moved(name, _MOVED, __name__)


def measure_nm(model, names, pattern):
    """Deprecated: ``nn_bridge.report.measure(model, names, pattern)``."""
    from ..report import measure
    warnings.warn("nn_bridge.nm.measure_nm is deprecated: use nn_bridge.report.measure(model, names, pattern)",
                  DeprecationWarning, stacklevel=2)
    return measure(model, names, pattern)
