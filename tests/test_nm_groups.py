"""N:M grouping convention: the Groups definition against the fast reshape path, masks, bad input."""
import numpy as np
import pytest
import torch
from torch import nn

from nn_bridge.nm import NMPattern, check_nm, from_groups, is_nm, nm_groups, nm_mask, nm_violations, to_groups
from nn_bridge.nm.groups import check_layer
from nn_bridge.nm.presets import select_layers


@pytest.mark.parametrize("shape,m", [((6, 8), 4), ((6, 32), 16), ((5, 8, 3, 3), 4), ((4, 16, 1, 1), 16),
                                     ((3, 8, 5), 2), ((2, 4, 2, 3, 2), 4)])
def test_groups_definition_matches_reshape(shape, m):
    """Group g of the Groups definition holds exactly the entries of row g of to_groups (same order of groups)."""
    G = nm_groups(shape, m)
    flat = torch.arange(int(np.prod(shape))).reshape(shape)
    rows = to_groups(flat, m).numpy()
    assert G.n_groups == rows.shape[0] == int(np.prod(shape)) // m
    for g in range(G.n_groups):
        np.testing.assert_array_equal(np.sort(rows[g]), G.indices[g])
    # inverse
    assert torch.equal(from_groups(to_groups(flat, m), shape), flat)


def test_conv_groups_are_input_channels_nhwc():
    """Conv group = M consecutive input channels at one (out, kh, kw); contiguous in channels-last memory."""
    shape = (2, 8, 3, 3)
    G = nm_groups(shape, 4)
    w = torch.arange(2 * 8 * 9).reshape(shape)
    g0 = w.ravel()[G.indices[0]]
    assert torch.equal(torch.sort(g0).values, w[0, 0:4, 0, 0])
    nhwc = w.permute(0, 2, 3, 1).contiguous().ravel()
    assert torch.equal(nhwc[:4], w[0, 0:4, 0, 0])  # first 4 channels-last entries are group 0


def test_nm_mask_keeps_top_n_per_group():
    torch.manual_seed(0)
    w = torch.randn(16, 32, 3, 3)
    for n, m in [(2, 4), (1, 4), (1, 16), (3, 8)]:
        mask = nm_mask(w, n, m)
        G = to_groups(w.abs(), m)
        kept = to_groups(mask, m)
        assert bool((kept.sum(1) == n).all())
        # every kept magnitude >= every dropped magnitude within its group
        mn_kept = torch.where(kept, G, torch.full_like(G, float("inf"))).amin(1)
        mx_drop = torch.where(~kept, G, torch.full_like(G, -1.0)).amax(1)
        assert bool((mn_kept >= mx_drop).all())
        assert is_nm(w * mask, n, m, exact=True) and nm_violations(w, n, m) > 0


def test_masked_fraction_equals_density():
    w = torch.randn(64, 64)
    for n, m in [(2, 4), (1, 16), (5, 8)]:
        assert float(nm_mask(w, n, m).float().mean()) == pytest.approx(n / m, abs=0)


@pytest.mark.parametrize("n,m", [(4, 4), (5, 4), (0, 4), (1, 1), (2.5, 4), ("a", 4)])
def test_bad_nm(n, m):
    with pytest.raises(ValueError, match="N:M"):
        check_nm(n, m)


def test_pattern_parse():
    assert NMPattern.parse("2:4") == NMPattern(2, 4)
    assert NMPattern.parse((1, 16)).sparsity == pytest.approx(15 / 16)
    with pytest.raises(ValueError, match="pattern"):
        NMPattern.parse("2/4")
    with pytest.raises(ValueError, match="N >= M"):
        NMPattern.parse("4:4")


def test_m_not_dividing_and_bad_layer_types():
    with pytest.raises(ValueError, match="does not divide"):
        check_layer(nn.Linear(6, 4), 4)
    with pytest.raises(ValueError, match="does not divide"):
        check_layer(nn.Conv2d(3, 8, 3), 4)
    for mod in (nn.Embedding(10, 8), nn.ConvTranspose2d(8, 8, 3), nn.BatchNorm2d(8), nn.LayerNorm(8)):
        with pytest.raises(ValueError, match="cannot be grouped"):
            check_layer(mod, 4)
    with pytest.raises(ValueError, match="does not divide"):
        to_groups(torch.zeros(4, 6), 4)


def test_presets():
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Conv2d(16, 32, 3), nn.Conv2d(32, 32, 1), nn.Flatten(),
                          nn.Linear(32, 32), nn.Linear(32, 10))
    names, skipped = select_layers(model, 4, "maxq")
    assert names == ["1", "2", "4"] and "0" in skipped and "5" in skipped
    names, skipped = select_layers(model, 4, "srste")
    assert names == ["1", "2", "4"] and "does not divide" in skipped["0"]  # RGB stem cannot be grouped
    names, _ = select_layers(model, 4, "asp")
    assert names == ["1", "2", "4"]  # 10 outputs fail out % 8
    with pytest.raises(ValueError, match="does not divide"):
        select_layers(model, 4, ["0"])
    with pytest.raises(ValueError, match="no module"):
        select_layers(model, 4, ["nope"])
    with pytest.raises(ValueError, match="preset"):
        select_layers(model, 4, "bogus")
