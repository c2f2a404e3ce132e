"""The one grouping protocol (nn_bridge.grouping): both implementations against their definitions, the budget met
exactly, the pattern parser's errors, the one layer finder."""
import numpy as np
import pytest
import torch
from torch import nn

from groupsparse import Groups
from nn_bridge.grouping import find_layers, parse_pattern
from nn_bridge.nm.groups import NMGrouping, NMPattern, is_nm, nm_groups
from nn_bridge.tiling import BlockPattern, BlockTiling, LayerTiling, weight_to_matrix

SHAPES = [(24, 16), (16, 8, 3, 3)]  # a Linear and a Conv2d weight; 8x8 blocks and windows of 4 fit both


@pytest.mark.parametrize("text, expect", [("16x16", BlockPattern(16)), (" 8X8 ", BlockPattern(8)),
                                          ((4, 4), BlockPattern(4)), ("2:4", NMPattern(2, 4)),
                                          ("1 : 16", NMPattern(1, 16)), (NMPattern(2, 8), NMPattern(2, 8)),
                                          (BlockPattern(2), BlockPattern(2))])
def test_parse_pattern_both_kinds(text, expect):
    p = parse_pattern(text)
    assert p == expect and type(p) is type(expect)
    assert parse_pattern(str(p)) == p  # str round-trips


@pytest.mark.parametrize("bad", ["16x", "4:2", "0:4", "2:2", "3x4", "0x0", "x", "", "2:4:8", "16x16x16", 7, None,
                                 (2, "a"), (True, True), (0, 0), 2.5, "-2:4"])
def test_parse_pattern_errors_name_pattern(bad):
    with pytest.raises(ValueError, match=r"^pattern: "):
        parse_pattern(bad)


def _groupings(shape):
    return [BlockPattern(8).grouping("l", shape), NMPattern(2, 4).grouping("l", shape)]


def _unit_definition(g, shape) -> torch.Tensor:
    """Unit index of every weight entry from the definitions (Groups over the GEMM matrix / nm_groups over W)."""
    labels = np.empty(int(np.prod(shape)), dtype=np.int64)
    if isinstance(g, BlockTiling):  # block id of each GEMM-matrix entry, mapped back through weight_to_matrix
        G = Groups.block_tiling(g.matrix_shape, 8)
        flat = np.empty(int(np.prod(g.matrix_shape)), dtype=np.int64)
        for i, idx in enumerate(G.indices):
            flat[idx] = i
        pos = weight_to_matrix(torch.arange(labels.size).reshape(shape)).reshape(-1).numpy()
        labels[pos] = flat
    else:  # a unit is one weight: its own index
        labels[:] = np.arange(labels.size)
    return torch.from_numpy(labels).reshape(shape)


@pytest.mark.parametrize("shape", SHAPES)
def test_scale_and_expand_match_the_definitions(shape):
    torch.manual_seed(0)
    w = torch.randn(shape, dtype=torch.float64)
    for g in _groupings(shape):
        per_unit = torch.rand(g.unit_shape, dtype=torch.float64) + 0.5
        label = _unit_definition(g, shape)
        expected = per_unit.reshape(-1)[label]
        torch.testing.assert_close(g.expand(per_unit), expected, rtol=0, atol=0)
        torch.testing.assert_close(g.scale(w, per_unit), w * expected, rtol=0, atol=1e-15)
        sq = torch.zeros(g.n_groups, dtype=torch.float64).index_add_(0, label.reshape(-1), w.reshape(-1) ** 2)
        torch.testing.assert_close(g.unit_sq_norms(w).reshape(-1), sq, rtol=1e-13, atol=0)
        torch.testing.assert_close(g.unit_norms(w), g.unit_sq_norms(w).sqrt(), rtol=1e-13, atol=0)
        assert g.partitions(per_unit).shape[1] * g.partitions(per_unit).shape[0] == g.n_groups
        torch.testing.assert_close(g.from_partitions(g.partitions(per_unit)), per_unit, rtol=0, atol=0)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sparsity", [None, 0.5, 0.75])
def test_topk_mask_meets_each_budget_exactly(shape, sparsity):
    torch.manual_seed(1)
    w = torch.randn(shape)
    for g in _groupings(shape):
        if isinstance(g, BlockTiling) and sparsity is None:
            with pytest.raises(ValueError, match="^sparsity: "):
                g.keep_per_partition(None)
            continue
        k = g.keep_per_partition(sparsity)
        scores = g.unit_norms(w)
        mask = g.topk_mask(scores, k)
        assert mask.shape == tuple(g.unit_shape)
        kept = g.partitions(mask).sum(1)
        assert bool((kept == k).all())
        # the kept units are the best of their partition
        parts, pm = g.partitions(scores), g.partitions(mask) > 0
        worst_kept = parts.masked_fill(~pm, float("inf")).amin(1)
        best_dropped = parts.masked_fill(pm, -float("inf")).amax(1)
        assert bool((worst_kept >= best_dropped).all())
        pruned = g.scale(w, mask)
        assert g.violations(pruned, sparsity) == 0
        if isinstance(g, NMGrouping):
            assert is_nm(pruned, 2, 4, exact=sparsity is None)
        else:
            assert int((g.unit_norms(pruned) > 0).sum()) == k == round((1 - sparsity) * g.n_groups)
        # one more non-zero unit in the first partition breaks its budget, and only that one
        parts = g.partitions(mask).clone()
        parts[0, int((parts[0] == 0).nonzero()[0])] = 1.0
        assert g.violations(g.scale(w, g.from_partitions(parts)), sparsity) == 1


@pytest.mark.parametrize("shape", SHAPES + [(8, 12, 3), (4, 8, 3, 2, 2)])
def test_gemm_matrix_round_trip_and_conv_row_order(shape):
    """Row (pos * Cin + c) of a conv's GEMM matrix is input channel c at kernel position pos (row-major over the
    kernel), column o the output: checked entry by entry against the weight."""
    w = torch.randn(shape)
    g = NMPattern(1, 4).grouping("l", shape)
    m = g.to_matrix(w)
    cin, npos = shape[1], int(np.prod(shape[2:]))
    assert m.shape == (cin * npos, shape[0]) == g.matrix_shape
    flat = w.reshape(shape[0], cin, npos)
    for row in sorted({0, 1, cin - 1, min(cin, cin * npos - 1), cin * npos - 1}):
        pos, c = divmod(row, cin)
        torch.testing.assert_close(m[row], flat[:, c, pos], rtol=0, atol=0)
    assert torch.equal(g.from_matrix(m), w)


@pytest.mark.parametrize("shape", SHAPES + [(8, 12, 3), (4, 8, 3, 2, 2)])
def test_nm_partition_groups_over_the_gemm_matrix_match_the_windows(shape):
    """Two derivations of the N:M windows: numpy index arithmetic over the GEMM matrix (what the core gets) and the
    reshape over the weight (what masks use); a mask kept by one is exactly N per window of the other."""
    torch.manual_seed(2)
    g = NMPattern(2, 4).grouping("l", shape)
    w = torch.randn(shape)
    mask = g.topk_mask(g.unit_norms(w), 2)
    m = weight_to_matrix(mask).reshape(-1).numpy()
    windows = g.partition_groups()
    assert windows.n_groups == g.n_weights // 4 and windows.n_features == g.n_weights
    assert all(m[idx].sum() == 2 for idx in windows.indices)
    # and over W.ravel(), the definition in nm.groups
    assert all(mask.reshape(-1).numpy()[idx].sum() == 2 for idx in nm_groups(shape, 4).indices)
    assert g.groups().n_groups == g.n_weights and set(g.groups().sizes) == {1}


@pytest.mark.parametrize("pattern, sparsity", [("2:4", None), ("8x8", 0.5)])
def test_budget_drives_groupsparse_select_to_the_pattern(pattern, sparsity):
    """groups() + budget() are what the core needs: select on the layer's Gram problem returns a support that, as a
    unit mask through the grouping, meets the pattern; for N:M the core's partition labels are our windows."""
    from groupsparse import GramLeastSquares, select
    torch.manual_seed(3)
    g = parse_pattern(pattern).grouping("l", (16, 16))  # Linear 16 -> 16: GEMM matrix 16 x 16
    p, K = g.matrix_shape
    X = torch.randn(64, p, dtype=torch.float64)
    H = X.t() @ X / 64 + 1e-3 * torch.eye(p, dtype=torch.float64)
    M = torch.randn(p, K, dtype=torch.float64)
    budget = g.budget(sparsity)
    sol = select(GramLeastSquares(H.numpy(), (H @ M).numpy()), g.groups(), budget, method="obs")
    coef = torch.from_numpy(np.asarray(sol.coef).reshape(p, K))
    w = g.from_matrix(coef)
    assert g.violations(w, sparsity) == 0
    if sparsity is None:
        labels = np.asarray(budget.partition)
        for idx in g.partition_groups().indices:  # every window is one part of the core's budget, and vice versa
            assert len(set(labels[idx])) == 1
        assert len(set(labels)) == g.partition_groups().n_groups
        assert is_nm(w, 2, 4)
    else:
        assert budget == 2 and int((g.unit_norms(w) > 0).sum()) <= 2


def test_block_groups_cover_the_padded_matrix():
    t = BlockTiling("l", (20, 12), 8, pad=True)
    assert t.matrix_shape == (12, 20) and t.padded_shape == (16, 24) and t.n_groups == 6
    assert t.groups().n_features == 16 * 24 and t.partition_groups() is None
    assert LayerTiling is BlockTiling


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 16, 3)
        self.dw = nn.Conv2d(16, 16, 3, groups=16)
        self.odd = nn.Linear(16, 6)   # 6 outputs: 8x8 blocks do not tile it; N:M only needs 16 % M
        self.fc = nn.Linear(16, 32)
        self.head = nn.Linear(32, 10)


def test_find_layers_one_finder_for_both_patterns():
    net = _Net()
    ts, skipped = find_layers(net, "8x8", exclude=("odd", "head"), min_blocks=2)
    assert [t.name for t in ts] == ["conv", "fc"] and all(isinstance(t, BlockTiling) for t in ts)
    gs, skipped = find_layers(net, "2:4", layers="srste")
    assert [g.name for g in gs] == ["conv", "odd", "fc"] and "classifier" in skipped["head"]
    assert "does not divide" in skipped["dw"]  # depthwise: 1 input channel per group
    assert all(isinstance(g, NMGrouping) and (g.n, g.m) == (2, 4) for g in gs)
    with pytest.raises(ValueError, match=r"^pattern: 8x8 blocks do not tile layer 'odd'"):
        find_layers(net, "8x8", min_blocks=1)
    with pytest.raises(ValueError, match=r"^pattern: 1:64 does not fit layer 'head' \(M=64 does not divide"):
        find_layers(net, "1:64", layers=["head"])
    with pytest.raises(ValueError, match=r"^pattern: 8x8 does not fit layer 'fc' \(8 blocks of 8x8 < min_blocks=9"):
        find_layers(net, "8x8", layers=["fc"], min_blocks=9)
    with pytest.raises(ValueError, match=r"^layers: model has no module named 'nope'"):
        find_layers(net, "2:4", layers=["nope"])
    with pytest.raises(ValueError, match=r"^model: no prunable layer for pattern 1:64"):
        find_layers(net, "1:64")
    with pytest.raises(ValueError, match=r"^pattern: "):
        find_layers(net, "4:2")
