"""Block tiling: the torch reductions agree with groupsparse.Groups (the definition), the conv convention, the
small-layer and padding policies, allocation, and bad-input errors."""
import numpy as np
import pytest
import torch
from torch import nn

from groupsparse import Groups
from nn_bridge.tiling import LayerTiling, allocate_keep, find_prunable, weight_to_matrix
from nn_bridge.pruners import make_pruner
from nn_bridge.models import MLP, SmallCNN


@pytest.mark.parametrize("shape,B,pad", [((48, 32), 8, False), ((24, 16, 3, 3), 8, False),
                                         ((40, 30), 8, True), ((20, 6, 3, 3), 8, True)])
def test_block_norms_match_groups(shape, B, pad):
    torch.manual_seed(0)
    w = torch.randn(shape, dtype=torch.float64)
    t = LayerTiling("x", shape, B, pad)
    m = weight_to_matrix(w)
    pr, pc = t.padded_shape
    mp = torch.zeros(pr, pc, dtype=torch.float64)
    mp[:m.shape[0], :m.shape[1]] = m
    g = t.groups()
    assert g.n_groups == t.n_blocks
    np.testing.assert_allclose(t.block_norms(w).numpy(), g.norms(mp.numpy().ravel()), rtol=1e-12)
    # scale() multiplies exactly the entries Groups assigns to each block
    sel = np.array([0, t.n_blocks // 2, t.n_blocks - 1])
    per = torch.zeros(t.n_blocks, dtype=torch.float64)
    per[sel] = 1.0
    expect = torch.from_numpy(g.mask(sel).reshape(pr, pc).astype(float))[:m.shape[0], :m.shape[1]] * m
    np.testing.assert_array_equal(weight_to_matrix(t.scale(w, per)).numpy(), expect.numpy())
    # block sizes count real weights only
    assert int(t.block_sizes().sum()) == w.numel()


def test_conv_convention_rows_are_tap_major_channels_last():
    w = torch.randn(5, 4, 3, 2)  # Cout, Cin, kh, kw
    m = weight_to_matrix(w)
    for (o, c, h, k) in [(0, 0, 0, 0), (4, 3, 2, 1), (2, 1, 1, 0)]:
        assert m[(h * 2 + k) * 4 + c, o] == w[o, c, h, k]
    # with a channels-last weight the GEMM matrix is a view (no copy), the point of the convention
    wcl = torch.randn(8, 16, 3, 3).to(memory_format=torch.channels_last)
    assert weight_to_matrix(wcl).data_ptr() == wcl.data_ptr()
    assert weight_to_matrix(wcl)._base is not None


def test_linear_convention_is_transpose():
    w = torch.randn(6, 4)
    assert torch.equal(weight_to_matrix(w), w.t())


def test_small_layers_stay_dense_and_conv_found():
    cnn = SmallCNN(16, 32, 10)  # conv1: 144x32 -> 18*4 = 72 blocks of 8; conv2: 288x32 -> 144 blocks
    names = [t.name for t in find_prunable(cnn, 8, min_blocks=100)]
    assert names == ["conv2"]
    names = [t.name for t in find_prunable(cnn, 8, min_blocks=50)]
    assert names == ["conv1", "conv2"]


def test_allocation_uniform_and_global():
    ts = [LayerTiling("a", (32, 32), 8), LayerTiling("b", (64, 32), 8)]  # 16 and 32 blocks
    assert allocate_keep(ts, 0.75) == [4, 8]
    sa = torch.arange(16.0) + 100  # every block of 'a' beats every block of 'b'
    sb = torch.arange(32.0)
    assert allocate_keep(ts, 0.75, "global", [sa, sb]) == [12, 0]


def test_error_block_does_not_tile_names_block_and_layer():
    m = nn.Sequential(nn.Linear(390, 400))
    with pytest.raises(ValueError, match=r"block: 20x20 blocks do not tile layer '0'.*pad=True"):
        find_prunable(m, 20)
    ts = find_prunable(m, 20, pad=True)
    assert ts[0].padded_shape == (400, 400) and ts[0].n_blocks == 400


@pytest.mark.parametrize("s", [1.0, -0.1, 1.5, "x"])
def test_error_sparsity_out_of_range(s):
    with pytest.raises(ValueError, match=r"sparsity"):
        make_pruner("magnitude", MLP(64, 128, 8), s, 8, total_steps=10, min_blocks=50)


def test_error_no_prunable_layer():
    m = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    with pytest.raises(ValueError, match=r"model: no prunable layer"):
        make_pruner("magnitude", m, 0.5, 8, total_steps=10)
    with pytest.raises(ValueError, match=r"model: no prunable layer"):
        find_prunable(nn.ReLU(), 8)


def test_error_overlapping_phases():
    with pytest.raises(ValueError, match=r"schedule: .*overlaps"):
        make_pruner("acdc", MLP(64, 128, 8), 0.5, 8, total_steps=10, min_blocks=50,
                    schedule=[("dense", 0.0, 0.6), ("sparse", 0.5, 1.0)])


@pytest.mark.parametrize("kw,arg", [({"block": 0}, "block"), ({"method": "foo"}, "method"),
                                    ({"total_steps": 0}, "total_steps"), ({"preset": "x"}, "preset"),
                                    ({"scope": "x"}, "scope")])
def test_error_other_arguments_named(kw, arg):
    args = dict(method="magnitude", block=8, total_steps=10, min_blocks=50)
    args.update(kw)
    method = args.pop("method")
    block = args.pop("block")
    with pytest.raises(ValueError, match=rf"^{arg}"):
        make_pruner(method, MLP(64, 128, 8), 0.5, block, **args)
