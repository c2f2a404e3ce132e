"""Moved to :mod:`nn_bridge.flops` (FLOPs are counted the same for every pattern); this path re-exports it."""
from ..flops import FlopsReport, count_params_flops

__all__ = ["count_params_flops", "FlopsReport"]
