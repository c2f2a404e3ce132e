"""Solvers for penalized problems; each takes a ``Problem`` and returns a ``Solution``."""
from .bcd import bcd
from .fista import fista

SOLVERS = {"bcd": bcd, "fista": fista}
