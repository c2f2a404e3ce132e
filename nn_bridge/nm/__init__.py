"""nn_bridge.nm: what is specific to N:M structured sparsity (the pruners and masks are shared with blocks:
``nn_bridge.pruners`` / ``nn_bridge.masking``, through the grouping protocol of ``nn_bridge.grouping``).

* ``groups``   -- the N:M grouping convention (M consecutive inputs of a row; NHWC for convs): ``NMPattern``,
  ``NMGrouping``, ``groupsparse.Groups`` definitions;
* ``presets``  -- layer coverage of each paper (MaxQ, SR-STE, ASP), used by the one layer finder;
* ``maxq`` / ``srste`` / ``asp`` -- the training-time methods born for N:M (registered in ``pruners.PRUNERS``);
* ``oneshot``  -- N:M one-shot from calibration data on each layer's Gram-form least squares, with refit;
* ``export``   -- 2:4 Linear layers to ``torch.sparse.to_sparse_semi_structured`` (CUDA, fp16/bf16);
* ``flops``    -- parameters and FLOPs of a pruned model;  ``resnet`` -- torchvision's ResNet-50, rebuilt;
* ``cli``      -- ``python -m nn_bridge nm ...``.
``NMPruner``, ``NMReport``, ``measure_nm``, ``NM_PRUNERS`` and ``make_nm_pruner`` are deprecated names (one
release): use ``nn_bridge.pruners.Pruner`` / ``PRUNERS`` / ``make_pruner(method, model, pattern="2:4")`` and
``nn_bridge.report``.
"""
import warnings

from .groups import (NMGrouping, NMPattern, check_nm, from_groups, is_nm, nm_groups, nm_mask, nm_violations,
                     to_groups)
from .presets import PRESETS, select_layers
from .srste import SRSTEPruner, masked_ste
from .maxq import MaxQPruner, maxq_mask
from .asp import ASPPruner
from .pruner import measure_nm, moved

_NM_METHODS = ("maxq", "srste", "asp")


def make_nm_pruner(method: str, model, pattern="2:4", **kw):
    """Deprecated: ``nn_bridge.make_pruner(method, model, pattern=pattern, **kw)`` (any method, any pattern)."""
    from ..pruners import make_pruner
    warnings.warn("nn_bridge.nm.make_nm_pruner is deprecated: use nn_bridge.make_pruner(method, model, "
                  "pattern='N:M', ...)", DeprecationWarning, stacklevel=2)
    if method not in _NM_METHODS:
        raise ValueError(f"method: expected one of {sorted(_NM_METHODS)}, got {method!r}")
    return make_pruner(method, model, pattern=NMPattern.parse(pattern), **kw)


def __getattr__(name):
    if name == "NM_PRUNERS":
        from ..pruners import PRUNERS
        warnings.warn("nn_bridge.nm.NM_PRUNERS is deprecated: use nn_bridge.PRUNERS (every method, any pattern)",
                      DeprecationWarning, stacklevel=2)
        return {m: PRUNERS[m] for m in _NM_METHODS}
    return moved(name, {"NMPruner": ("nn_bridge.pruners", "Pruner"), "NMReport": ("nn_bridge.report",
                                                                                   "SparsityReport")}, __name__)


__all__ = ["NMPattern", "NMGrouping", "check_nm", "nm_groups", "nm_mask", "to_groups", "from_groups", "is_nm",
           "nm_violations", "PRESETS", "select_layers", "SRSTEPruner", "masked_ste", "MaxQPruner", "maxq_mask",
           "ASPPruner", "make_nm_pruner", "measure_nm"]
