"""nn_bridge.nm: N:M structured sparsity for torch Linear and Conv layers.

* ``groups``   -- the N:M grouping convention (M consecutive inputs of a row; NHWC for convs) as ``groupsparse.Groups``;
* ``presets``  -- layer coverage of each paper (MaxQ, SR-STE, ASP);
* ``pruner``   -- the pruner interface (bind / step / finalize), masks as parametrizations;
* ``maxq`` / ``srste`` / ``asp`` -- training-time methods;
* ``oneshot``  -- N:M one-shot from calibration data on each layer's Gram-form least squares, with refit;
* ``export``   -- 2:4 Linear layers to ``torch.sparse.to_sparse_semi_structured`` (CUDA, fp16/bf16);
* ``flops``    -- parameters and FLOPs of a pruned model;  ``resnet`` -- torchvision's ResNet-50, rebuilt;
* ``cli``      -- ``python -m nn_bridge nm ...``.
"""
from .groups import NMPattern, check_nm, nm_groups, nm_mask, to_groups, from_groups, is_nm, nm_violations
from .presets import PRESETS, select_layers
from .pruner import NMPruner, NMReport, measure_nm
from .srste import SRSTEPruner, masked_ste
from .maxq import MaxQPruner, maxq_mask
from .asp import ASPPruner

NM_PRUNERS = {"maxq": MaxQPruner, "srste": SRSTEPruner, "asp": ASPPruner}


def make_nm_pruner(method: str, model, pattern="2:4", **kw):
    """Build an N:M pruner by name ('maxq', 'srste', 'asp')."""
    if method not in NM_PRUNERS:
        raise ValueError(f"method: expected one of {sorted(NM_PRUNERS)}, got {method!r}")
    return NM_PRUNERS[method](model, pattern, **kw)


__all__ = ["NMPattern", "check_nm", "nm_groups", "nm_mask", "to_groups", "from_groups", "is_nm", "nm_violations",
           "PRESETS", "select_layers", "NMPruner", "NMReport", "measure_nm", "SRSTEPruner", "masked_ste",
           "MaxQPruner", "maxq_mask", "ASPPruner", "NM_PRUNERS", "make_nm_pruner"]
