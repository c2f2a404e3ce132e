"""nn_bridge: block (B x B) and N:M sparsification of torch networks with groupsparse's selection machinery, one
stack for both patterns.

* ``grouping`` -- the one grouping protocol: ``parse_pattern("16x16" | "2:4")``, a per-layer ``Grouping`` (units,
  partitions, budget, ``groupsparse.Groups``) with two implementations, ``tiling.BlockTiling`` and
  ``nm.groups.NMGrouping``, and the one layer finder ``find_layers``;
* ``masking``  -- masks as ``torch.nn.utils.parametrize`` parametrizations (plain, PowerProp, SA++ attention; the
  dynamic SR-STE / MaxQ masks subclass it);
* ``pruners``  -- one training-time base, ``Pruner``; methods magnitude, powerprop, acdc, sapp, asp, srste, maxq in
  one registry ``PRUNERS`` (``make_pruner(method, model, sparsity, pattern=...)``);
* ``oneshot``  -- one-shot pruning from calibration data, layer by layer, on the Gram-form least-squares problem;
* ``export``   -- finalized layers to torch BSR / 2:4 semi-structured modules, sparse state files (BSR, N:M compressed);
* ``pruned``   -- ``oneshot_prune(model, batches, "16x16" | "2:4", ...)``: one entry point for both patterns, whose
  result saves the pruned model with a report (``result.save(dir)``, ``load_pruned(dir)``); ``userload`` /
  ``calibdata`` / ``compare`` read the user's model and data files and compare dense vs pruned;
* ``cli``      -- ``python -m nn_bridge prune ...``; ``oneshot_cli`` -- ``python -m nn_bridge oneshot ...``.
(``nn_bridge.nm`` holds what is specific to N:M: its conventions, presets, the methods born for it, one-shot.)
"""
from .grouping import Grouping, parse_pattern, find_layers
from .tiling import BlockPattern, BlockTiling, LayerTiling, find_prunable, allocate_keep
from .masking import Mask, PowerPropMask, AttentionMask, BlockMask, BlockPowerProp, BlockAttention
from .pruners import (Pruner, ScheduledPruner, BlockPruner, MagnitudePruner, PowerPropPruner, ACDCPruner,
                      SAPPPruner, ASPPruner, SRSTEPruner, MaxQPruner, make_pruner, PRUNERS)
from .report import SparsityReport, measure, measure_weights
from .export import BSRLinear, to_bsr_linear, export_bsr, export_model, export_state_dict, load_exported_state
from .pruned import oneshot_prune, PrunedResult, load_pruned

__all__ = ["Grouping", "parse_pattern", "find_layers", "BlockPattern", "BlockTiling", "LayerTiling", "find_prunable",
           "allocate_keep", "Mask", "PowerPropMask", "AttentionMask", "BlockMask", "BlockPowerProp", "BlockAttention",
           "Pruner", "ScheduledPruner", "BlockPruner", "MagnitudePruner", "PowerPropPruner", "ACDCPruner",
           "SAPPPruner", "ASPPruner", "SRSTEPruner", "MaxQPruner", "make_pruner", "PRUNERS",
           "SparsityReport", "measure", "measure_weights", "BSRLinear", "to_bsr_linear", "export_bsr",
           "export_model", "export_state_dict", "load_exported_state",
           "oneshot_prune", "PrunedResult", "load_pruned"]
