"""Solvers for penalized problems; each takes a ``Problem`` and returns a ``Solution``."""
from .bcd import bcd
from .fista import fista
from .lstsq import least_squares

SOLVERS = {"bcd": bcd, "fista": fista}
