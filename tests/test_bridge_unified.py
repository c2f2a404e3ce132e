"""One pruner base for both patterns: every method under "8x8" and "2:4" ends on exactly its pattern, N:M
schedules ramp per window, old names still work (warning).  Resume: test_bridge_resume.py, both patterns."""
import warnings

import pytest
import torch
from torch import nn

from groupsparse.schedules import exp_ramp
from nn_bridge import PRUNERS, make_pruner
from nn_bridge.models import MLP
from nn_bridge.nm.groups import is_nm, to_groups
from test_bridge_resume import _run  # one training loop for the pruner tests (data from the step's seed)

METHODS = ["magnitude", "powerprop", "acdc", "sapp", "asp", "srste"]
STEPS = 30


def _model(seed=0):
    torch.manual_seed(seed)
    return MLP(64, 128, 8)  # fc1 / fc2 / fc3: 128 / 256 / 16 blocks of 8x8; inputs 64 / 128 / 128


def _kw(method, pattern):
    kw = {} if method in ("asp", "srste", "maxq") else dict(total_steps=STEPS, preset="criteo")
    if pattern == "8x8":
        kw.update(sparsity=0.75, min_blocks=16)
    return kw


def _build(method, pattern, seed=0):
    m = _model(seed)
    pr = make_pruner(method, m, pattern=pattern, layers="all", **_kw(method, pattern))
    pr.bind(torch.optim.Adam(pr.weight_parameters(), lr=1e-2))
    return m, pr


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("pattern", ["8x8", "2:4"])
def test_same_method_meets_each_pattern_exactly(method, pattern):
    m, pr = _build(method, pattern)
    assert type(pr) is PRUNERS[method]
    _run(m, pr, pr.optimizer, 0, STEPS)
    x = torch.randn(4, 64)
    with torch.no_grad():
        before = m(x)
    rep = pr.finalize()
    assert rep.exact and rep.pattern == pattern and [r["name"] for r in rep.rows] == ["fc1", "fc2", "fc3"]
    for g in pr.groupings:
        w = m.get_submodule(g.name).weight
        assert isinstance(w, nn.Parameter)
        if pattern == "2:4":
            assert is_nm(w, 2, 4, exact=True)  # exactly 2 non-zeros in every window of 4 inputs
        else:  # exactly round(0.25 n) blocks left, the others all-zero
            nz = g.unit_norms(w) > 0
            assert int(nz.sum()) == round(0.25 * g.n_blocks)
            assert float((w == 0).float().mean()) == pytest.approx(1 - int(nz.sum()) / g.n_blocks)
    with torch.no_grad():
        torch.testing.assert_close(m(x), before)  # baking keeps the trained function


def test_nm_schedule_ramps_every_window_to_n():
    """Scheduled methods under N:M: on the ramp every window keeps max(round((1 - s) M), N), then exactly N."""
    m = _model()
    pr = make_pruner("sapp", m, pattern="2:4", total_steps=STEPS, preset="imagenet", layers="all")
    pr.bind(torch.optim.Adam(pr.weight_parameters(), lr=1e-2))
    seen = set()
    for step in range(STEPS):
        _run(m, pr, pr.optimizer, step, step + 1)
        ph = pr.phase
        if ph.kind == "sparsification":
            s = exp_ramp((pr.progress - ph.start) / (ph.end - ph.start), 0.5)
            want = max(round((1 - s) * 4), 2)
        else:
            want = 2 if ph.kind == "sparse" else 4
        for g, mask in zip(pr.groupings, pr.masks()):
            kept = to_groups(mask, 4).sum(1)
            assert bool((kept == want).all()), (step, ph, want)
        seen.add(want)
    assert seen == {4, 3, 2}  # the ramp passed through 3 of 4


@pytest.mark.parametrize("call, match", [
    (lambda m: make_pruner("magnitude", m, 0.3, pattern="2:4", total_steps=5), r"^sparsity: the N:M pattern 2:4"),
    (lambda m: make_pruner("magnitude", m, pattern="8x8", total_steps=5), r"^sparsity: the block pattern 8x8"),
    (lambda m: make_pruner("maxq", m, pattern="8x8", sparsity=0.5), r"^pattern: MaxQ"),
    (lambda m: make_pruner("maxq", m, 0.5, 8), r"^pattern: MaxQ.* 8x8"),
    (lambda m: make_pruner("magnitude", m, 0.5, 24, total_steps=5, min_blocks=4),
     r"^block: 24x24 blocks do not tile layer 'fc1'"),  # the older block= spelling: the error names block
    (lambda m: make_pruner("srste", m, 0.5, pattern=(24, 24), min_blocks=4),
     r"^pattern: 24x24 blocks do not tile layer 'fc1'"),
    (lambda m: make_pruner("magnitude", m, 0.5, 8, pattern="8x8", total_steps=5), r"^block: give the pattern once"),
    (lambda m: make_pruner("magnitude", m, pattern="4:2", total_steps=5), r"^pattern: "),
    (lambda m: make_pruner("srste", m, pattern="16x"), r"^pattern: "),
    (lambda m: make_pruner("acdc", m, pattern="2:4", total_steps=5, scope="global"), r"^scope: 'global'"),
    (lambda m: make_pruner("nope", m, pattern="2:4"), r"^method: expected one of"),
    (lambda m: make_pruner("srste", m, pattern="2:4", min_blocks="x"), r"^min_blocks: expected an integer"),
    (lambda m: make_pruner("asp", m, pattern=([2], [4])), r"^pattern: "),
    (lambda m: make_pruner("asp", m, 0.5, pattern="8x8", layers=["fc3"], min_blocks=100),
     r"^pattern: 8x8 does not fit layer 'fc3' \(16 blocks"),
])
def test_bad_construction_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call(_model())


def test_old_names_still_work_with_a_deprecation_warning():
    import nn_bridge.nm as nm
    from nn_bridge import masking, pruners, report
    from nn_bridge.nm import pruner as nm_pruner
    with pytest.warns(DeprecationWarning, match="make_pruner"):
        pr = nm.make_nm_pruner("asp", _model(), (2, 4), layers="all")  # (n, m) pairs meant N:M there
    assert str(pr.pattern) == "2:4"
    with pytest.warns(DeprecationWarning, match="nn_bridge.pruners.Pruner"):
        assert nm.NMPruner is pruners.Pruner
    with pytest.warns(DeprecationWarning, match="nn_bridge.masking.Mask"):
        assert nm_pruner.NMParametrization is masking.Mask
    with pytest.warns(DeprecationWarning):
        assert set(nm.NM_PRUNERS) == {"maxq", "srste", "asp"}
    with pytest.warns(DeprecationWarning, match="report.measure"):
        rep = nm.measure_nm(pr.model, pr.names, "2:4")
    assert isinstance(rep, report.SparsityReport) and rep["exact_nm"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pruners.BlockPruner is pruners.ScheduledPruner and masking.BlockMask is masking.Mask


def test_old_asp_checkpoint_with_a_fixed_bool_mask_loads():
    m, pr = _build("asp", "2:4")
    st = m.state_dict()
    key = "fc1.parametrizations.weight.0.mask"
    old = {k: v for k, v in st.items() if k != key}
    old[key.replace(".mask", ".fixed")] = st[key].bool()  # the buffer's name and dtype before the unification
    m2, pr2 = _build("asp", "2:4", seed=1)
    m2.load_state_dict(old)
    assert torch.equal(pr2.params[0].mask, st[key])
