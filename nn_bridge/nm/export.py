"""Moved to :mod:`nn_bridge.export` (one export for block and N:M patterns); this path re-exports the 2:4 names."""
from ..export import (SemiStructuredUnsupported, check_equivalence, export_semi_structured, semi_structured_support,
                      to_semi_structured_linear)

__all__ = ["SemiStructuredUnsupported", "semi_structured_support", "to_semi_structured_linear",
           "export_semi_structured", "check_equivalence"]
