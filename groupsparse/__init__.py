"""groupsparse: group-sparse optimization with convex and nonconvex penalties, budgeted group selection with
certificates, and the schedules shared with the torch bridge (``nn_bridge``)."""
from .groups import Groups
from .losses import GramLeastSquares, LeastSquares, Logistic, Multinomial
from .penalties import (CompositePenalty, ExpMaskPenalty, GroupBridge, GroupLasso, GroupLogSum, GroupMCP,
                        GroupSCAD, SparseGroupLasso)
from .problem import Solution
from .api import lambda_max, solve, solve_path
from . import schedules
from .selection import select, Budget
from .estimators import (GroupSparseClassifier, GroupSparseClassifierCV, GroupSparseRegressor,
                         GroupSparseRegressorCV)

__version__ = "0.1.0"
__all__ = ["Groups", "LeastSquares", "Logistic", "Multinomial", "GramLeastSquares", "GroupLasso",
           "SparseGroupLasso", "GroupMCP", "GroupSCAD", "GroupLogSum", "GroupBridge", "ExpMaskPenalty",
           "CompositePenalty", "Solution", "solve", "solve_path", "lambda_max", "schedules", "select", "Budget",
           "GroupSparseRegressor", "GroupSparseClassifier", "GroupSparseRegressorCV", "GroupSparseClassifierCV"]
