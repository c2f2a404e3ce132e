"""nn_bridge: block (B x B) sparsification of torch networks with groupsparse's selection machinery.

* ``tiling``   -- which layers are prunable and how a weight maps to blocks (the one convention, built on
  ``groupsparse.Groups.block_tiling``);
* ``masking``  -- masks as ``torch.nn.utils.parametrize`` parametrizations (plain, PowerProp, SA++ attention);
* ``pruners``  -- training-time methods behind one interface: magnitude, powerprop, acdc, sapp;
* ``oneshot``  -- one-shot pruning from calibration data, layer by layer, on the Gram-form least-squares problem;
* ``export``   -- finalized Linear layers to torch BSR tensors;
* ``pruned``   -- ``oneshot_prune(model, batches, "16x16" | "2:4", ...)``: one entry point for both patterns, whose
  result saves the pruned model with a report (``result.save(dir)``, ``load_pruned(dir)``); ``userload`` /
  ``calibdata`` / ``compare`` read the user's model and data files and compare dense vs pruned;
* ``cli``      -- ``python -m nn_bridge prune ...``; ``oneshot_cli`` -- ``python -m nn_bridge oneshot ...``.
(``nn_bridge.nm`` holds N:M sparsity and is maintained separately.)
"""
from .tiling import LayerTiling, find_prunable, allocate_keep
from .masking import BlockMask, BlockPowerProp, BlockAttention
from .pruners import (BlockPruner, MagnitudePruner, PowerPropPruner, ACDCPruner, SAPPPruner, make_pruner,
                      PRUNERS)
from .report import SparsityReport, measure
from .export import BSRLinear, to_bsr_linear, export_bsr
from .pruned import oneshot_prune, PrunedResult, load_pruned

__all__ = ["LayerTiling", "find_prunable", "allocate_keep", "BlockMask", "BlockPowerProp", "BlockAttention",
           "BlockPruner", "MagnitudePruner", "PowerPropPruner", "ACDCPruner", "SAPPPruner", "make_pruner", "PRUNERS",
           "SparsityReport", "measure", "BSRLinear", "to_bsr_linear", "export_bsr",
           "oneshot_prune", "PrunedResult", "load_pruned"]
