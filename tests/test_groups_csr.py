"""Groups is held in CSR form (``order``, ``indptr``, ``label``): every constructor and helper equals its definition
on index lists, and nothing builds one Python array per group unless ``indices`` is asked for (N:M over an LLM
layer is millions of single-weight groups)."""
from __future__ import annotations

import numpy as np
import pytest

from groupsparse import GramLeastSquares, Groups
from groupsparse.selection import Budget, select


def _random_partition(rng, n):
    perm = rng.permutation(n)
    cuts = np.sort(rng.choice(np.arange(1, n), size=rng.integers(0, min(n - 1, 6) + 1), replace=False))
    return [rng.permutation(part).tolist() for part in np.split(perm, cuts)]  # unsorted within groups


def _check(g, lists, weights=None):
    """``g`` is the partition ``lists`` (each group sorted), with CSR arrays consistent with it."""
    assert g.n_groups == len(lists) == len(g)
    for i, idx in enumerate(lists):
        want = np.sort(np.asarray(idx, dtype=np.int64))
        assert np.array_equal(g[i], want) and np.array_equal(g.indices[i], want)
        assert np.array_equal(g.order[g.indptr[i]:g.indptr[i + 1]], want)
        assert np.all(g.label[want] == i)
    assert np.array_equal(g.sizes, [len(v) for v in lists])
    w = np.sqrt(g.sizes) if weights is None else np.asarray(weights, dtype=float)
    assert np.allclose(g.weights, w)
    assert not g.order.flags.writeable and not g.weights.flags.writeable  # the group views share order


@pytest.mark.parametrize("seed", range(20))
def test_every_constructor_and_helper_equals_its_index_list_definition(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 30))
    lists = _random_partition(rng, n)
    w = rng.uniform(0, 2, len(lists))
    g = Groups.from_indices(lists, n, w)
    _check(g, lists, w)
    _check(Groups.from_indices(lists), lists)
    labels = np.empty(n, dtype=np.int64)
    for i, idx in enumerate(lists):
        labels[idx] = 10 * i + 3  # sorted labels keep the group order
    _check(Groups.from_labels(labels), lists)
    sizes = [len(v) for v in lists]
    _check(Groups.from_sizes(sizes), np.split(np.arange(n), np.cumsum(sizes)[:-1]))
    # helpers, against the index-list definitions
    sel = rng.permutation(len(lists))[: int(rng.integers(0, len(lists) + 1))]
    cols = np.sort(np.concatenate([lists[i] for i in sel])) if sel.size else np.zeros(0, np.int64)
    assert np.array_equal(g.columns(sel), cols)
    assert np.array_equal(g.mask(sel), np.isin(np.arange(n), cols))
    if sel.size:
        pos = {c: j for j, c in enumerate(cols)}
        _check(g.subset(sel), [[pos[c] for c in lists[i]] for i in sel], w[sel])
    _check(g.with_weights(2 * w), lists, 2 * w)
    _check(g.append(3, 0.0), lists + [[n, n + 1, n + 2]], np.append(w, 0.0))
    K = int(rng.integers(2, 4))
    _check(g.expand_outputs(K), [[c * K + k for c in idx for k in range(K)] for idx in lists], w * np.sqrt(K))
    beta = rng.standard_normal(n)
    assert np.allclose(g.norms(beta), [np.linalg.norm(beta[idx]) for idx in lists])


@pytest.mark.parametrize("shape, block", [((6, 8), 2), ((4, 6), (2, 3)), ((3, 5), 1)])
def test_block_tiling_is_the_tiles(shape, block):
    rows, cols = shape
    br, bc = (block, block) if isinstance(block, int) else block
    M = np.arange(rows * cols).reshape(rows, cols)
    tiles = [M[i:i + br, j:j + bc].ravel() for i in range(0, rows, br) for j in range(0, cols, bc)]
    _check(Groups.block_tiling(shape, block), tiles)


@pytest.mark.parametrize("lists, match", [([[0, 1], []], "group 1 is empty"), ([[0, 1], [1, 2]], "overlap"),
                                          ([[0], [2]], "belong to no group"), ([[0], [-1]], "must lie in")])
def test_bad_partitions_are_named(lists, match):
    with pytest.raises(ValueError, match=f"^groups: .*{match}"):
        Groups.from_indices(lists)


def test_nm_selection_builds_no_per_group_arrays():
    """N:M under the core: one group per weight; block_tiling and select('obs' / 'iht') never build the tuple of
    per-group arrays (it would be a Python object per weight: gigabytes at LLM widths)."""
    rng = np.random.default_rng(0)
    p, K = 64, 32
    X = rng.standard_normal((200, p))
    H = X.T @ X / 200 + 0.01 * np.eye(p)
    B = H @ rng.standard_normal((p, K))
    for method in ("obs", "iht"):
        g = Groups.block_tiling((p, K), 1)
        sol = select(GramLeastSquares(H, B), g, Budget.n_of_m(2, 4, (p, K)), method=method)
        kept = np.zeros(p * K, dtype=bool)
        kept[g.columns(sol.support)] = True
        assert np.all(kept.reshape(p // 4, 4, K).sum(axis=1) == 2)  # 2 of every 4 consecutive inputs per output
        assert g._views == []
