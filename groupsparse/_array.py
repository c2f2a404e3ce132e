"""Array-API helpers: one implementation of an algorithm runs on numpy arrays and on (CUDA) torch tensors."""
from __future__ import annotations

import math

import array_api_compat
import numpy as np


def namespace(*arrays):
    """The array namespace of the inputs (numpy's or torch's, wrapped to the array API standard)."""
    return array_api_compat.array_namespace(*arrays)


def to_numpy(a):
    """A host numpy copy of any array (torch tensors are detached and moved to the CPU)."""
    if hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def device(a):
    return array_api_compat.device(a)


def norm(z) -> float:
    """Euclidean norm of all entries of z, as a Python float (on a device array: one scalar comes back)."""
    if isinstance(z, np.ndarray):
        return math.sqrt(float(np.vdot(z, z)))
    return math.sqrt(float(namespace(z).sum(z * z)))


def copy(a):
    """A copy of an array in its own namespace, dtype and device."""
    return a.copy() if isinstance(a, np.ndarray) else namespace(a).asarray(a, copy=True)


class GroupsOnDevice:
    """The part of ``Groups`` that the solvers use per iteration (``norms``, ``expand``, ``weights``), for flat
    coefficient vectors that live on a device: group norms are reduced there and only the G norms come back to
    the host; per-group numbers go back as one vector.  (Numpy problems use the ``Groups`` itself.)"""

    def __init__(self, groups, xp, dtype, dev):
        self.groups, self.xp, self.dtype, self.device = groups, xp, dtype, dev
        self.weights, self.n_groups = groups.weights, groups.n_groups
        self._label = xp.asarray(groups.label, device=dev)

    def norms(self, beta) -> np.ndarray:
        """Euclidean norm of every group of a flat device vector, as a host float64 array (G numbers)."""
        import torch  # the only non-numpy namespace the core accepts (GramLeastSquares checks it)
        v = self.xp.reshape(beta, (-1,))
        sq = torch.zeros(self.n_groups, dtype=v.dtype, device=v.device).index_add_(0, self._label, v * v)
        return to_numpy(self.xp.sqrt(sq)).astype(float)

    def expand(self, per_group):
        """One value per group (host) to one value per coefficient (device, the problem's dtype)."""
        vals = self.xp.asarray(np.asarray(per_group, dtype=float), dtype=self.dtype, device=self.device)
        return self.xp.take(vals, self._label, axis=0)
