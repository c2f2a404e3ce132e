"""finalize() bakes masks and reports achieved sparsity; finalized Linear layers export to BSR with the same
outputs as the masked dense layers."""
import pytest
import torch
from torch import nn

from nn_bridge.export import export_bsr, to_bsr_linear
from nn_bridge.models import MLP
from nn_bridge.pruners import make_pruner


@pytest.mark.parametrize("method", ["magnitude", "sapp"])
def test_finalize_then_bsr_matches_masked_dense(method):
    torch.manual_seed(0)
    m = MLP(64, 128, 8)
    p = make_pruner(method, m, 0.75, 8, total_steps=10, min_blocks=100, preset="criteo")
    with torch.no_grad():
        for q in p.params:
            if hasattr(q, "logits"):
                q.logits.normal_(0, 0.5)
    for _ in range(10):
        p.step()  # no training: just run the schedule to its final sparse phase
    x = torch.randn(5, 3, 64)
    ref = m(x).detach()
    eff = {t.name: m.get_submodule(t.name).weight.detach().clone() for t in p.tilings}
    rep = p.finalize()
    assert not any(hasattr(m.get_submodule(t.name), "parametrizations") for t in p.tilings)
    for t in p.tilings:
        assert torch.equal(m.get_submodule(t.name).weight.detach(), eff[t.name])  # baked = effective
    assert [r["kept"] for r in rep.rows] == [32, 64]
    assert rep.block_sparsity == pytest.approx(0.75)
    assert rep.weight_sparsity == pytest.approx(0.75)
    n_all = sum(mm.weight.numel() for mm in m.modules() if isinstance(mm, nn.Linear))
    assert rep.model_sparsity == pytest.approx(0.75 * (64 * 128 + 128 * 128) / n_all)
    assert "pruned layers" in rep.table()
    bsr = export_bsr(m, p.tilings)
    assert sorted(bsr) == ["fc1", "fc2"]
    assert [bsr[n].n_stored_blocks for n in ("fc1", "fc2")] == [32, 64]
    torch.testing.assert_close(m(x), ref, rtol=1e-5, atol=1e-5)


def test_bsr_export_requires_exact_tiling():
    with pytest.raises(ValueError, match="block: 8x8 blocks do not tile"):
        to_bsr_linear(nn.Linear(20, 16), 8)
