"""groupsparse: group-sparse optimization with convex and nonconvex penalties, budgeted group selection with
certificates, and the schedules shared with the torch bridge (``nn_bridge``)."""
from .groups import Groups
from . import schedules

__version__ = "0.1.0"
__all__ = ["Groups", "schedules"]
