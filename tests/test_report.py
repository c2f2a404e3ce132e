"""One report for both patterns (nn_bridge.report.measure): counts of kept groups, the pattern check and FLOPs are
recomputed here from weights whose zeros are placed by hand."""
import pytest
import torch
from torch import nn

from nn_bridge.report import SparsityReport, measure
from nn_bridge.tiling import LayerTiling


def _model():
    torch.manual_seed(0)  # normal weights: no accidental zeros
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16))


def test_block_rows_budget_check_and_json():
    m = _model()
    t0 = LayerTiling("0", (64, 32), 8)  # GEMM matrix W.T is 32 x 64: a 4 x 8 grid of 8x8 tiles
    with torch.no_grad():
        m[0].weight[:8, :16] = 0  # W.T rows 0-15, cols 0-7: tiles (0, 0) and (1, 0) of the GEMM grid
        m[0].weight[8:16, 0:8] = 0  # tile (0, 1)
        m[0].weight[20, 3] = 0  # a lone zero inside a kept tile: the weight count sees it, the tile count does not
    rep = measure(m, [t0])
    r = rep.rows[0]
    assert (r["n_groups"], r["kept"], r["n_blocks"]) == (32, 29, 32)
    assert r["kept_fraction"] == pytest.approx(29 / 32) and r["block_sparsity"] == pytest.approx(3 / 32)
    assert r["weight_sparsity"] == pytest.approx((3 * 64 + 1) / 2048)
    assert rep.pattern == "8x8" and rep.block_sparsity == pytest.approx(3 / 32) and rep.exact
    assert r["budget"] is None and r["violations"] == 0  # no k given: nothing to check against
    assert rep.model_sparsity == pytest.approx((3 * 64 + 1) / (2048 + 1024))
    assert not measure(m, [t0], budgets={"0": 28}).exact  # 29 tiles kept, at most 28 allowed
    ok = measure(m, [t0], budgets={"0": 29})
    assert ok.exact and ok.rows[0]["violations"] == 0
    d = rep.to_dict()
    assert d["block_sparsity"] == rep["block_sparsity"] == pytest.approx(3 / 32) and d["rows"][0]["shape"] == [64, 32]
    assert "pruned layers" in rep.table() and "no tile budget given" in rep.table() and "OK" in ok.table()
    by_name = measure(m, ["0"], "8x8")  # names + pattern: the same tiling built here
    assert by_name.rows == rep.rows


def test_nm_rows_window_check_and_legacy_keys():
    m = _model()
    with torch.no_grad():
        w = m[2].weight  # (16, 64): 16 * 16 windows of 4 inputs
        w.view(16, 16, 4)[:, :, 2:] = 0  # 2:4 everywhere
    rep = measure(m, ["2"], "2:4")
    r = rep.rows[0]
    assert (r["n_groups"], r["kept"], r["n_partitions"], r["budget"]) == (1024, 512, 256, 2)
    assert r["kept_fraction"] == 0.5 and r["weight_sparsity"] == 0.5 and rep.exact and rep["exact_nm"]
    assert rep.pattern == "2:4" and rep["n_layers"] == 1 and "block_sparsity" not in rep.to_dict()
    with torch.no_grad():
        w.view(16, 16, 4)[3, 5, 2] = 1.0  # one window with 3 non-zeros
        w.view(16, 16, 4)[7, 0, 3] = 1.0  # and another
    bad = measure(m, ["2"], "2:4")
    assert bad.rows[0]["violations"] == 2 and not bad.exact and not bad["exact_nm"] and "VIOLATED" in bad.table()
    assert measure(m, ["2"], "3:4").exact  # 3 of 4 allowed: the same weights pass


def test_nm_conv_windows_run_along_input_channels():
    conv = nn.Conv2d(8, 4, 3)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.weight[:, 1::2] = 0  # channels 1, 3, 5, 7 zero: every window of 2 consecutive channels keeps 1
    rep = measure(nn.Sequential(conv), ["0"], "1:2")
    assert rep.exact and rep.rows[0]["n_partitions"] == 4 * 3 * 3 * 4 and rep.rows[0]["kept_fraction"] == 0.5
    with torch.no_grad():
        conv.weight[:, 4:] = 0
        conv.weight[:, 4] = 1.0  # channels 4-7 become (1, 0, 0, 0): still <= 1 of 2, but
        conv.weight[:, 0] = 0
        conv.weight[:, 1] = 1.0  # and (0, 1): fine; now break one spatial position only
        conv.weight[2, 2:4, 1, 1] = 1.0
    rep = measure(nn.Sequential(conv), ["0"], "1:2")
    assert rep.rows[0]["violations"] == 1


def test_flops_with_an_example_input():
    m = _model()
    with torch.no_grad():
        m[0].weight[:32] = 0  # half of the first layer
    rep = measure(m, ["0"], "2:4", example=torch.zeros(1, 32))
    f = rep.flops
    assert f["dense_flops"] == 32 * 64 + 64 * 16 and f["flops"] == 32 * 64 // 2 + 64 * 16
    assert rep["flops"]["params"] == f["dense_params"] - 32 * 32 and "MACs" in rep.table()


@pytest.mark.parametrize("layers, pattern, match", [
    (["0"], None, "pattern"), (["0"], "16x", "pattern"), ([0], "2:4", "layers"),
    ([LayerTiling("0", (64, 32), 8)], "2:4", "pattern")])
def test_bad_arguments_are_named(layers, pattern, match):
    with pytest.raises(ValueError, match=match):
        measure(_model(), layers, pattern)


def test_empty_report_defaults():
    rep = SparsityReport()
    assert rep.block_sparsity == 0.0 and rep.exact and rep.n_layers == 0
