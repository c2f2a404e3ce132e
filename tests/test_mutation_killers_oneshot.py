"""Layer-wise one-shot pruning (``groupsparse.selection.sequential_obs``): properties the other tests did not pin
(issue 16: found by mutation testing, ``benchmarks/mutation.py``)."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from groupsparse.selection.sequential_obs import memory_bytes, seqobs, sparsegpt


@pytest.mark.parametrize("method", ["seqobs", "sparsegpt"])
def test_memory_bytes_is_the_measured_peak_within_a_factor_3(method):
    # memory_bytes is what nn_bridge's max_memory planning trusts: numpy reports its buffers to tracemalloc, so the
    # measured peak of one call is the working memory it estimates (H's factor and inverse: O(p^2); W, window,
    # result: O(pK)).  p >> K, so an estimate missing its p^2 terms is off by more than the factor.
    rng = np.random.default_rng(0)
    p, K = 256, 32
    A = rng.standard_normal((4 * p, p))
    H = A.T @ A / (4 * p)
    W = rng.standard_normal((p, K))
    run = {"seqobs": lambda: seqobs(H, W, sparsity=0.5, block=16),
           "sparsegpt": lambda: sparsegpt(H, W, sparsity=0.5)}[method]
    tracemalloc.start()
    try:
        run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    est = memory_bytes(p, K, itemsize=8)
    assert est / 3 <= peak <= 3 * est, (peak, est)
