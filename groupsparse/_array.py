"""Array-API helpers: one implementation of an algorithm runs on numpy arrays and on (CUDA) torch tensors."""
from __future__ import annotations

import array_api_compat


def namespace(*arrays):
    """The array namespace of the inputs (numpy's or torch's, wrapped to the array API standard)."""
    return array_api_compat.array_namespace(*arrays)


def to_numpy(a):
    """A host numpy copy of any array (torch tensors are detached and moved to the CPU)."""
    import numpy as np
    if hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    return np.asarray(a)
