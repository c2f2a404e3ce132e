"""Issue 14, bridge part: each case a named regression test (calibration data, tied weights, pruner state, nm check,
CLI).  Tiny models; every value asserted follows from the math of the layer problem."""
import io
import os
import pickle
import time

import pytest
import torch
from torch import nn

from conftest import time_limit
from nn_bridge import make_pruner
from nn_bridge.__main__ import main as cli
from nn_bridge.nm import NMPattern, is_nm
from nn_bridge.oneshot import layer_inputs, solve_layers
from nn_bridge.tiling import weight_to_matrix


def oneshot_prune(model, batches, sparsity, block=16, **kw):
    """The one driver with a B x B pattern (the signature of the deprecated ``nn_bridge.oneshot.oneshot_prune``)."""
    return solve_layers(model, batches, (block, block), sparsity, **kw)


def nm_oneshot(model, batches, pattern="2:4", layers="all", **kw):
    """The one driver with an N:M pattern (the signature of the deprecated ``nn_bridge.nm.oneshot.nm_oneshot``)."""
    return solve_layers(model, batches, NMPattern.parse(pattern), include=layers, **kw)


def _mlp(bias=True, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(32, 32, bias=bias), nn.ReLU(), nn.Linear(32, 16, bias=bias))


def _block(model, batches, **kw):
    return oneshot_prune(model, batches, 0.5, 8, min_blocks=4, progress=False, **kw)


def _nm(model, batches, **kw):
    return nm_oneshot(model, batches, "2:4", progress=False, **kw)


DRIVERS = {"block": _block, "nm": _nm}


def _batches(n=3, rows=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(rows, 32, generator=g) for _ in range(n)]


# ------------------------------------------------------------------------------------------ calibration data
@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_oneshot_nonfinite_calibration_names_the_batch(driver, bad):
    xs = _batches()
    xs[1][3, 5] = bad
    with pytest.raises(ValueError, match=r"^batches\[1\]: contains NaN or inf"):
        DRIVERS[driver](_mlp(), xs)


@pytest.mark.parametrize("driver", DRIVERS)
def test_oneshot_all_zero_calibration_names_batches_and_layer(driver):
    with pytest.raises(ValueError, match=r"^batches: every calibration input reaching layer '0' is zero"):
        DRIVERS[driver](_mlp(), [torch.zeros(16, 32), torch.zeros(8, 32)])


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("case", ["width", "dtype", "ndim", "empty", "int", "structure"])
def test_oneshot_malformed_batch_names_the_batch(driver, case):
    xs = _batches()
    xs[2] = {"width": torch.randn(16, 31), "dtype": torch.randn(16, 32, dtype=torch.float64),
             "ndim": torch.randn(2, 16, 32), "empty": torch.randn(0, 32),
             "int": torch.ones(16, 32, dtype=torch.long), "structure": (torch.randn(16, 32), torch.randn(16, 32))
             }[case]
    with pytest.raises(ValueError, match=r"^batches\[2\]"):
        DRIVERS[driver](_mlp(), xs)


@pytest.mark.parametrize("driver", DRIVERS)
def test_oneshot_wrong_width_everywhere_is_a_named_error_not_a_matmul_error(driver):
    with pytest.raises(ValueError, match=r"^batches\[0\]: the model cannot run"):
        DRIVERS[driver](_mlp(), [torch.randn(16, 31), torch.randn(16, 31)])


@pytest.mark.parametrize("driver", DRIVERS)
def test_oneshot_zero_rows_add_nothing(driver):
    """Zero rows (and a whole zero batch) add nothing to X^T X; the damping is relative to mean diag H, so the
    pruned weights equal those from the non-zero rows alone (bias-free ReLU MLP: zero rows stay zero)."""
    xs = _batches()
    padded = [torch.cat([xs[0], torch.zeros(5, 32)]), torch.zeros(7, 32), xs[1], xs[2]]
    a, b = _mlp(bias=False), _mlp(bias=False)
    DRIVERS[driver](a, xs)
    DRIVERS[driver](b, padded)
    for la, lb in zip(a, b):
        if isinstance(la, nn.Linear):
            torch.testing.assert_close(lb.weight, la.weight, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("driver", DRIVERS)
def test_oneshot_undamped_singular_gram_names_damp(driver):
    """8 rows for 32 inputs: H = X^T X / n has rank 8, so damp=0 leaves nothing to invert."""
    with pytest.raises(ValueError, match=r"^damp: the calibration Gram of layer '0' is singular"):
        DRIVERS[driver](_mlp(), [torch.randn(8, 32)], damp=0.0)


# ------------------------------------------------------------------------------------------ tied weights
class Tied(nn.Module):
    """Two Linears sharing one weight Parameter (different biases, different inputs)."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.a = nn.Linear(32, 32)
        self.b = nn.Linear(32, 32)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def _gram_of_holders(model, xs, damp):
    """The summed, damped Gram problem of the shared weight over both holders (dense model: nothing is pruned
    before the tied weight's first use, so pruned and dense inputs coincide)."""
    rows = {"a": [], "b": []}
    hooks = [getattr(model, n).register_forward_pre_hook(lambda m, a, n=n: rows[n].append(layer_inputs(m, a[0])))
             for n in rows]
    with torch.no_grad():
        for x in xs:
            model(x)
    for h in hooks:
        h.remove()
    X = torch.cat(rows["a"] + rows["b"]).double()
    H = X.t() @ X / X.shape[0]
    M = weight_to_matrix(model.a.weight.detach()).double()
    d = H.diagonal().mean() * damp
    return H + d * torch.eye(32, dtype=H.dtype), H @ M + d * M


@pytest.mark.parametrize("driver", DRIVERS)
def test_oneshot_prunes_a_tied_weight_once_fitted_to_both_uses(driver):
    model, xs = Tied(), _batches(4)
    H, Bm = _gram_of_holders(Tied(), xs, 0.01)
    kw = {"include": ["a", "b"]} if driver == "block" else {"layers": ["a", "b"]}
    DRIVERS[driver](model, xs, **kw)
    if driver == "block":  # one parametrization object (one mask) on both holders
        assert model.a.parametrizations.weight[0] is model.b.parametrizations.weight[0]
    torch.testing.assert_close(model.a.weight, model.b.weight, rtol=0, atol=0)
    W = model.a.weight.detach()
    if driver == "block":
        zero_blocks = (W.reshape(4, 8, 4, 8).pow(2).sum(dim=(1, 3)) == 0).float().mean()
        assert float(zero_blocks) == 0.5  # was 0.74: the second holder's refit overwrote the first's
    else:
        assert is_nm(W, 2, 4, exact=True)
    # the refit is the least-squares optimum of the summed problem on its support: the gradient H M - Bm vanishes
    # on every kept entry (float64 solve, stored in float32)
    Mh = weight_to_matrix(W).double()
    grad = H @ Mh - Bm
    kept = Mh != 0
    assert float(grad[kept].abs().max()) <= 1e-4 * float(Bm.abs().max())


def _tied_pruner(method, pattern, model):
    kw = {} if method in ("maxq", "srste", "asp") else dict(total_steps=12)
    if method == "maxq":
        kw.update(steps_per_epoch=1, start=0, end=2)
    if pattern == "8x8":
        kw.update(sparsity=0.5, min_blocks=4)
    return make_pruner(method, model, pattern=pattern, layers="all", **kw)


@pytest.mark.parametrize("method, pattern", [(m, "8x8") for m in ("magnitude", "powerprop", "acdc", "sapp", "asp")]
                         + [(m, "2:4") for m in ("maxq", "srste", "asp", "sapp")])
def test_pruner_treats_a_tied_weight_as_one_tensor(method, pattern):
    model = Tied()
    pr = _tied_pruner(method, pattern, model)
    assert pr.names == ["a"] and pr.tied == {"a": ("b",)} and pr.tilings[0].tied == ("b",)
    opt = torch.optim.Adam(pr.weight_parameters(), lr=1e-2)
    pr.bind(opt)
    g = torch.Generator().manual_seed(0)
    for _ in range(12):
        model(torch.randn(16, 32, generator=g)).pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
        pr.step()
    x = torch.randn(8, 32, generator=g)
    with torch.no_grad():
        before = model(x)
    rep = pr.finalize()
    assert model.a.weight is model.b.weight and rep.exact
    if pattern == "8x8":
        zero_blocks = (model.a.weight.reshape(4, 8, 4, 8).pow(2).sum(dim=(1, 3)) == 0).float().mean()
        assert float(zero_blocks) == 0.5 and rep.block_sparsity == 0.5  # SA++ was 0.73: both masks applied
    else:
        assert is_nm(model.a.weight, 2, 4, exact=True)
    with torch.no_grad():
        torch.testing.assert_close(model(x), before)  # baking applies the parametrization once


def test_tied_weight_selected_for_one_holder_only_is_refused():
    with pytest.raises(ValueError, match=r"^include: 'b.weight' shares its weight with 'a'"):
        make_pruner("magnitude", Tied(), 0.5, 8, total_steps=4, min_blocks=4, include=["a"])


# ------------------------------------------------------------------------------------------ pruner state
def _pruners():
    kw = dict(steps_per_epoch=1, start=0, end=2)
    return {
        **{m: (lambda m=m: make_pruner(m, _mlp(), 0.5, 8, total_steps=4, min_blocks=4))
           for m in ("magnitude", "powerprop", "acdc", "sapp")},
        "maxq": lambda: make_pruner("maxq", _mlp(), pattern="2:4", layers="all", **kw),
        "srste": lambda: make_pruner("srste", _mlp(), pattern="2:4", layers="all"),
        "asp": lambda: make_pruner("asp", _mlp(), pattern="2:4", layers="all"),
    }


@pytest.mark.parametrize("method", list(_pruners()))
def test_pruner_load_state_dict_refuses_incomplete_or_foreign_state(method):
    make = _pruners()[method]
    pr = make()
    with pytest.raises(ValueError, match=r"^state: .*missing keys \['"):
        pr.load_state_dict({})
    good = pr.state_dict()
    with pytest.raises(ValueError, match=r"^state: .*unexpected keys \['extra'\]"):
        pr.load_state_dict({**good, "extra": 1})
    foreign = _pruners()["sapp" if method in ("maxq", "srste", "asp") else "srste"]().state_dict()
    with pytest.raises(ValueError, match=r"^state: "):
        pr.load_state_dict(foreign)
    with pytest.raises(ValueError, match=r"^state: expected the dict"):
        pr.load_state_dict(["step", 3])
    with pytest.raises(ValueError, match=r"state\['step'\]"):
        pr.load_state_dict({**good, "step": -2})
    pr.step()
    pr2 = make()
    pr2.load_state_dict(pr.state_dict())  # a complete own state still loads
    assert pr2.state_dict() == pr.state_dict()


# ------------------------------------------------------------------------------------------ nm check
def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


@pytest.mark.parametrize("content", ["empty", "truncated", "garbage", "tensor"])
def test_nm_check_unreadable_file_is_one_line_naming_it(content, tmp_path, capsys):
    f = tmp_path / "model.pt"
    buf = io.BytesIO()
    torch.save(nn.Linear(16, 8).state_dict(), buf)
    f.write_bytes({"empty": b"", "truncated": buf.getvalue()[:200], "garbage": os.urandom(300),
                   "tensor": b""}[content])
    if content == "tensor":
        torch.save(torch.zeros(4, 4), f)
    assert cli(["count", str(f), "--pattern", "2:4"]) == 2  # formerly nm check
    _one_line_error(capsys, "python -m nn_bridge count: error: path:", str(f))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_nm_check_corrupt_legacy_file_is_one_line(tmp_path, capsys):
    """One zeroed byte inside a legacy (non-zip) torch.save file: the unpickler failed with a bare AssertionError
    (found by the fuzz suite)."""
    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.save(nn.Linear(16, 8).state_dict(), buf, _use_new_zipfile_serialization=False)
    data = bytearray(buf.getvalue())
    data[262] = 0
    f = tmp_path / "legacy.pt"
    f.write_bytes(bytes(data))
    assert cli(["count", str(f), "--pattern", "2:4"]) == 2
    _one_line_error(capsys, "path:", "truncated or corrupt")


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch pwned_by_checkpoint",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_nm_check_does_not_run_code_from_the_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = tmp_path / "evil.pt"
    f.write_bytes(pickle.dumps({"w.weight": _Boom()}))
    assert cli(["count", str(f), "--pattern", "2:4"]) == 2
    assert not (tmp_path / "pwned_by_checkpoint").exists()
    _one_line_error(capsys, "not a plain torch state file")


def test_nm_check_strict_that_checked_nothing_fails(tmp_path, capsys):
    f = tmp_path / "m.pt"
    torch.save(nn.Sequential(nn.Linear(16, 8)).state_dict(), f)  # 16 inputs: no group of 3
    assert cli(["count", str(f), "--pattern", "2:3", "--strict"]) == 2
    _one_line_error(capsys, "--strict: no tensor", "M=3")
    assert cli(["count", str(f), "--pattern", "2:3"]) == 0  # without --strict: a report, not a failure


# ------------------------------------------------------------------------------------------ CLI
PRUNE = ["prune", "--model", "mlp", "--method", "magnitude", "--steps", "2", "--plot", "", "--no-progress"]


@pytest.mark.parametrize("args,option", [
    (["--batch-size", "0"], "--batch-size"), (["--calib", "0", "--method", "oneshot"], "--calib"),
    (["--steps", "-1"], "--steps"), (["--block", "abc"], "--block"), (["--sparsity", "nan"], "--sparsity"),
    (["--lr", "0"], "--lr"), (["--damp", "-1"], "--damp"), (["--max-layer-sparsity", "1"], "--max-layer-sparsity"),
    (["--min-blocks", "0"], "--min-blocks"), (["--model", "nope"], "--model"), (["--bogus"], "--bogus"),
    (["--calib", "100", "--method", "oneshot"], "--calib"), (["--model", "cnn", "--batch-size", "4"], "--batch-size"),
])
def test_prune_cli_bad_argument_is_one_line_naming_the_option(args, option, capsys):
    t0 = time.perf_counter()
    with time_limit(60):
        assert cli(PRUNE + args) == 2
    assert time.perf_counter() - t0 < 5  # refused before any training
    _one_line_error(capsys, "python -m nn_bridge prune: error:", option)


@pytest.mark.parametrize("option", ["--save", "--json", "--plot"])
def test_prune_cli_output_in_missing_folder_fails_before_training(option, tmp_path, capsys):
    target = str(tmp_path / "no_such_dir" / "out.x")
    t0 = time.perf_counter()
    with time_limit(30):
        assert cli(PRUNE + ["--steps", "100000", option, target]) == 2  # 100000 steps would take minutes
    assert time.perf_counter() - t0 < 5
    _one_line_error(capsys, option, "does not exist")


def test_prune_cli_debug_shows_the_exception():
    with pytest.raises(ValueError, match="--batch-size"):
        cli(PRUNE + ["--batch-size", "0", "--debug"])


def test_prune_cli_save_is_atomic_and_loads_weights_only(tmp_path):
    out = tmp_path / "m.pt"
    assert cli(PRUNE + ["--save", str(out), "--sparsity", "0.5", "--block", "16"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left behind
    sd = torch.load(out, weights_only=True)
    assert {"fc1.weight", "fc2.weight"} <= set(sd)
    assert float((sd["fc1.weight"] == 0).float().mean()) == 0.5


def test_nm_cli_bad_arguments_are_one_line(tmp_path, capsys):
    assert cli(["nm", "check", str(tmp_path / "missing.pt")]) == 2
    _one_line_error(capsys, "path", "no such file")
    assert cli(["nm", "count", "--size", "0"]) == 2
    _one_line_error(capsys, "--size")
    assert cli(["nm", "digits", "--pattern", "3:2"]) == 2
    _one_line_error(capsys, "--pattern")
    assert cli(["nm"]) == 2
    _one_line_error(capsys, "required")


def test_top_level_cli_missing_or_unknown_subcommand_is_one_line(capsys):
    assert cli([]) == 2
    _one_line_error(capsys, "python -m nn_bridge: error:", "subcommand")
    assert cli(["prnue"]) == 2
    _one_line_error(capsys, "'prnue'")


# ------------------------------------------------------------------------------------------ found by the fuzz suite
def test_block_must_be_an_int_not_a_bool_or_float():
    for bad in (True, 8.0, "8"):
        with pytest.raises(ValueError, match=r"^block: expected a positive int"):
            make_pruner("magnitude", _mlp(), 0.5, bad, total_steps=2, min_blocks=4)


def test_oneshot_reaches_high_sparsity_exactly():
    """0.875 of the 8 blocks of a 32 -> 16 layer is 7 blocks: the OBS paths stopped one block short of a whole
    column block (6), silently."""
    model = _mlp()
    res = oneshot_prune(model, _batches(), 0.875, 8, min_blocks=4, progress=False)
    kept = [int((t.block_sq_norms(model.get_submodule(t.name).weight.detach()) > 0).sum()) for t in res.tilings]
    assert kept == [2, 1]  # round(0.125 * 16), round(0.125 * 8)


def test_block_count_rounding_is_the_same_for_pruners_and_oneshot():
    """33 x 33 padded to 11 x 11 blocks of 3: at 0.5 both keep round(60.5) = 60 blocks (one-shot kept 61)."""
    torch.manual_seed(0)
    a, b = nn.Sequential(nn.Linear(33, 33)), nn.Sequential(nn.Linear(33, 33))
    b.load_state_dict(a.state_dict())
    pr = make_pruner("magnitude", a, 0.5, 3, total_steps=1, min_blocks=1, pad=True)
    pr.step()
    res = oneshot_prune(b, [torch.randn(64, 33)], 0.5, 3, min_blocks=1, pad=True, progress=False)
    assert [r["kept"] for r in pr.report().rows] == [r["kept"] for r in res.report().rows] == [60]


def test_loss_allocation_target_beyond_the_layer_caps_is_refused():
    """0.95 of 24 blocks is 23 removals; max_layer_sparsity 0.9 caps the layers at 14 + 7 = 21: it silently
    removed 21."""
    with pytest.raises(ValueError, match=r"^sparsity: 0.95 means removing 23 of the 24 blocks.*only 21"):
        oneshot_prune(_mlp(), _batches(), 0.95, 8, min_blocks=4, allocation="loss", progress=False)


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("c", [1e-20, 1e20])
def test_oneshot_is_scale_invariant_in_the_calibration_data(driver, c):
    """Bias-free ReLU layers are positively homogeneous: inputs times c scale every layer's H and Bm by c^2 and
    leave each layer problem's solution unchanged.  Was: float32 X^T X overflowed at 1e20 (block) and the float32
    N:M solver met an underflowed, singular H at 1e-20 (LinAlgError)."""
    xs = _batches()
    a, b = _mlp(bias=False), _mlp(bias=False)
    DRIVERS[driver](a, xs)
    DRIVERS[driver](b, [x * c for x in xs])
    for la, lb in zip(a, b):
        if isinstance(la, nn.Linear):
            torch.testing.assert_close(lb.weight, la.weight, rtol=1e-4, atol=1e-6)


class TiedHead(nn.Module):
    """A language-model shape: the output Linear shares its weight with the input Embedding."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(64, 32)
        self.mid = nn.Linear(32, 32)
        self.head = nn.Linear(32, 64, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids):
        return self.head(torch.tanh(self.mid(self.embed(ids))))


def test_weight_tied_to_an_embedding_is_left_dense_unless_named():
    """Pruning the head would prune the embedding table too: automatic choices leave it dense, an explicit one is
    an error naming the option."""
    model, ids = TiedHead(), [torch.randint(0, 64, (4, 8)) for _ in range(2)]
    emb = model.embed.weight.detach().clone()
    res = oneshot_prune(model, ids, 0.5, 8, min_blocks=4, progress=False)
    assert [t.name for t in res.tilings] == ["mid"]
    res.finalize()
    assert torch.equal(model.embed.weight, emb) and model.head.weight is model.embed.weight
    pr = make_pruner("srste", TiedHead(), pattern="2:4")
    assert pr.names == ["mid"] and "head" in pr.skipped
    with pytest.raises(ValueError, match=r"^include: 'embed.weight' shares its weight with 'head'"):
        make_pruner("magnitude", TiedHead(), 0.5, 8, total_steps=2, min_blocks=4, include=["head", "mid"])
    with pytest.raises(ValueError, match=r"^layers: 'embed.weight' shares its weight with 'head'"):
        nm_oneshot(TiedHead(), ids, "2:4", layers=["head"], progress=False)


def test_tied_weights_across_replayed_blocks_are_refused():
    class TwoBlocks(nn.Module):
        def __init__(self):
            super().__init__()
            self.b0, self.b1 = nn.Sequential(nn.Linear(32, 32), nn.Tanh()), nn.Sequential(nn.Linear(32, 32))
            self.b1[0].weight = self.b0[0].weight

        def forward(self, x):  # the blocks chain (the streams' check): the tanh inside b0
            return self.b1(self.b0(x))

    with pytest.raises(ValueError, match=r"^blocks: layers 'b0.0' and 'b1.0' share one weight"):
        oneshot_prune(TwoBlocks(), _batches(), 0.5, 8, min_blocks=4, blocks=["b0", "b1"], progress=False)
