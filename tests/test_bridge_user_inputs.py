"""A new user's own small models and data through ``nn_bridge.oneshot_prune``, the pruners and the CLI: each case a
finding of a bug hunt (a crash after the model was pruned, an option or a batch silently misread, a traceback for
bad input), fixed and pinned here.  Bad input is refused with an error naming the argument before the model
changes; every value asserted follows from the pattern's arithmetic."""
from __future__ import annotations

import contextlib
import io
import warnings

import pytest
import torch
from torch import nn

import nn_bridge
from nn_bridge import make_pruner
from nn_bridge.export import export_state_dict, load_exported_state
from nn_bridge.oneshot import solve_layers
from nn_bridge.oneshot_cli import main as oneshot_cli

from conftest import time_limit  # tests/conftest.py

W = 32


def _mlp(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(W, 64), nn.Dropout(dropout), nn.ReLU(), nn.Linear(64, 16))


class _Tied(nn.Module):
    """``c`` uses ``a``'s weight (a Linear used twice with two biases): one weight to prune, under ``a``."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.c, self.b = nn.Linear(W, W), nn.Linear(W, W), nn.Linear(W, 16)
        self.c.weight = self.a.weight

    def forward(self, x):
        return self.b(torch.relu(self.c(torch.relu(self.a(x)))))


def _batches(n=3, rows=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(rows, W, generator=g) for _ in range(n)]


def _prune(model, batches, pattern="8x8", **kw):
    s = 0.5 if "x" in pattern else None
    with time_limit(60):
        return nn_bridge.oneshot_prune(model, batches, pattern, s, min_blocks=1, progress=False, **kw)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _unchanged(model, before):
    return all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


# ------------------------------------------------------------------------------------------ tied weights
@pytest.mark.parametrize("pattern", ["8x8", "2:4"])
def test_tied_weight_is_one_report_row_under_its_first_user(pattern, tmp_path):
    """The report looked the shared weight up under its second user too: KeyError 'c' after the model was pruned."""
    model = _Tied()
    res = _prune(model, _batches(), pattern)
    assert model.c.weight is model.a.weight
    assert [r["name"] for r in res.layers] == ["a", "b"]
    assert res.layers[0]["tied"] == ["c"] and "tied" not in res.layers[1]
    # 8x8 at 0.5: 8 of 16 tiles of a 32 x 32 weight; 2:4: 2 of every 4 -- half the weights either way
    assert [r["weight_sparsity"] for r in res.layers] == [0.5, 0.5]
    assert "| a (tied: c) |" in res.markdown()
    res.save(tmp_path / "out")
    back = nn_bridge.load_pruned(tmp_path / "out", model=_Tied())
    assert torch.equal(back.a.weight, model.a.weight) and torch.equal(back.b.weight, model.b.weight)
    with pytest.raises(ValueError, match=r"^model: does not match the weights saved in .*Missing key"):
        nn_bridge.load_pruned(tmp_path / "out", model=_mlp())  # was a RuntimeError of load_state_dict


# ------------------------------------------------------------------------------------------ options
@pytest.mark.parametrize("pattern", ["8x8", "2:4"])
def test_misspelt_option_is_refused_before_any_work(pattern):
    """Extra keywords go to the layer solver; with the default 'obs' they were dropped silently (refine_step=512
    ran without refinement)."""
    model = _mlp()
    before = _state(model)
    with pytest.raises(TypeError, match="unexpected keyword argument 'refine_step'"):
        _prune(model, _batches(), pattern, refine_step=512)
    assert _unchanged(model, before)


def test_seqobs_options_still_reach_seqobs():
    """The check keeps the solver options that do run: seqobs's own, and 'obs' falling back to it under max_memory
    (a budget that fits seqobs on both layers but not the exact path at 50%)."""
    from groupsparse.selection.sequential_obs import memory_bytes
    a, b = _mlp(), _mlp()
    ra = solve_layers(a, _batches(), "8x8", 0.5, method="seqobs", refit_iters=0, min_blocks=1, progress=False)
    budget = max(memory_bytes(W, 64, 8), memory_bytes(64, 16, 8))
    rb = solve_layers(b, _batches(), "8x8", 0.5, method="obs", max_memory=budget, refit_iters=0, min_blocks=1,
                      progress=False)
    assert set(rb.layer_method.values()) == {"seqobs"}
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert ra.layer_rel_error == rb.layer_rel_error


def test_exact_method_on_a_layer_too_large_for_it_is_refused():
    """method='exact' on a 64 -> 32 layer of 32 blocks of 8 ran for hours (2^32 nodes at most, a refit each)."""
    model = _mlp()
    calls = []
    model.register_forward_pre_hook(lambda m, a: calls.append(1))
    with pytest.raises(ValueError, match=r"^method: 'exact' .* layer '0' has 32 \(at most 16\)"):
        _prune(model, _batches(), "8x8", method="exact")
    assert len(calls) == 1  # the forward-order pass only


def test_unknown_block_method_is_refused_before_any_forward_pass():
    """It failed inside the first layer solve, after the forward passes, listing the core's methods only."""
    model = _mlp()
    calls = []
    model.register_forward_pre_hook(lambda m, a: calls.append(1))
    with pytest.raises(ValueError, match=r"^method: expected one of obs, magnitude, .*local_search.*got 'nosuch'"):
        _prune(model, _batches(), "8x8", method="nosuch")
    assert calls == []


@pytest.mark.parametrize("blocks, match", [("0", r"^blocks: expected 'auto' or a list .*the string '0'"),
                                           (["0", "nosuch"], r"^blocks: the model has no submodule named 'nosuch'")])
def test_blocks_must_name_submodules(blocks, match):
    """A string was split into its letters, an unknown name an AttributeError from deep inside the streams."""
    with pytest.raises(ValueError, match=match):
        _prune(_mlp(), _batches(), "8x8", blocks=blocks)


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(nn.Linear(W, 64), nn.ReLU(), nn.Linear(64, W))

    def forward(self, x):
        return x + self.f(x)


class _Stack(nn.Module):
    """Blocks in a ModuleList; ``outside=True`` adds each block's residual outside it (the blocks do not chain)."""

    def __init__(self, outside=False):
        super().__init__()
        torch.manual_seed(0)
        self.outside = outside
        self.layers = nn.ModuleList([_Block().f if outside else _Block() for _ in range(3)])

    def forward(self, x):
        for blk in self.layers:
            x = x + blk(x) if self.outside else blk(x)
        return x


_BLOCKS = ["layers.0", "layers.1", "layers.2"]


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("outside", [False, True])
def test_blocks_auto_streams_only_blocks_that_chain(outside):
    """solve_layers(blocks='auto') streamed the ModuleList even when a residual outside it breaks the chain: wrong
    weights from the second block on.  Now: the same weights as the prefix streams either way (the streams where the
    blocks chain, the prefix streams where they do not)."""
    a, b = _Stack(outside), _Stack(outside)
    with time_limit(60):
        solve_layers(a, _batches(), "2:4", blocks="auto", progress=False)
        solve_layers(b, _batches(), "2:4", blocks=None, progress=False)
    assert _same(a, b)


@pytest.mark.parametrize("outside", [False, True])
def test_oneshot_prune_streams_a_user_module_where_its_blocks_chain(outside, monkeypatch):
    """oneshot_prune's default blocks='auto' on the user's own module: the block streams where its ModuleList
    chains (one forward pass per block instead of the prefix per layer), the prefix streams where it does not; the
    weights of blocks=None either way."""
    from nn_bridge import oneshot
    made, real = [], oneshot.streams
    monkeypatch.setattr(oneshot, "streams", lambda *a, **k: made.append(a[4]) or real(*a, **k))
    a, b = _Stack(outside), _Stack(outside)
    _prune(a, _batches(), "2:4")
    _prune(b, _batches(), "2:4", blocks=None)
    assert _same(a, b)
    assert made == [None if outside else _BLOCKS, None]


def test_chained_blocks_give_the_prefix_streams_weights():
    a, b = _Stack(), _Stack()
    _prune(a, _batches(), "2:4", blocks=_BLOCKS)
    _prune(b, _batches(), "2:4", blocks=None)
    assert _same(a, b)


@pytest.mark.parametrize("outside, blocks, match", [
    (True, _BLOCKS, r"^blocks: the output of 'layers.0' is not the input of 'layers.1' on batches\[0\]"),
    (False, ["layers.0", "layers.2", "layers.1"], r"^blocks: not in the order the forward pass calls them"),
    (False, ["layers.0", "layers.0", "layers.1", "layers.2"], r"^blocks: 'layers.0' is named twice"),
    (False, ["layers", "layers.1"], r"^blocks: 'layers' is not called"),
])
def test_blocks_the_streams_cannot_replay_are_refused(outside, blocks, match):
    """Each of these was accepted and replayed wrongly: every layer after the first block was fitted to inputs the
    model never sees (a residual outside the blocks, blocks out of order or twice); a ModuleList (never called)
    was a RuntimeError."""
    model = _Stack(outside)
    before = _state(model)
    with pytest.raises(ValueError, match=match):
        _prune(model, _batches(), "2:4", blocks=blocks)
    assert _unchanged(model, before)


class _Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.net, self.aux = _mlp(), nn.Linear(W, W)  # aux: never called by forward

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("run, match", [
    (None, r"^include: the model never calls \['aux'\] when it runs on batches\[0\]"),
    (lambda model, batch: None, r"^run: run\(model, batch\) called none of the layers"),
    (3, r"^run: expected a callable run\(model, batch\) or None, got int"),
])
def test_layers_no_calibration_reaches_or_a_bad_run_are_named(run, match):
    """A layer the forward pass never calls (an unused head) or a run that calls nothing was a RuntimeError
    'calibration: ... was not called' after the first passes; a run raising KeyError its own traceback."""
    model = _Unused()
    before = _state(model)
    with pytest.raises(ValueError, match=match):
        _prune(model, _batches(), "2:4", run=run)
    assert _unchanged(model, before)


def test_run_raising_key_error_names_the_batch():
    with pytest.raises(ValueError, match=r"^batches\[0\]: the model cannot run on this calibration batch "
                                         r"\(KeyError: 'input'\)"):
        _prune(_mlp(), [{"x": x} for x in _batches()], "2:4", run=lambda m, b: m(b["input"]))


@pytest.mark.parametrize("arg, value", [("include", 3), ("exclude", [1]), ("include", ["0", None])])
def test_include_exclude_must_be_globs(arg, value):
    with pytest.raises(ValueError, match=rf"^{arg}: expected a glob"):
        _prune(_mlp(), _batches(), "2:4", **{arg: value})


def test_training_mode_is_restored_and_dropout_is_off_while_pruning():
    """The model came back in eval mode; the pruning itself must not see dropout (same weights as from eval mode)."""
    a, b = _mlp(dropout=0.5), _mlp(dropout=0.5)
    a.train()
    b.eval()
    _prune(a, _batches(), "8x8")
    _prune(b, _batches(), "8x8")
    assert a.training and all(m.training for m in a.modules())
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c = _mlp(dropout=0.5).train()
    solve_layers(c, _batches(), "2:4", progress=False)
    assert c.training


@pytest.mark.parametrize("pattern", ["8x8", "2:4"])
def test_layer_error_is_right_under_a_huge_damp(pattern):
    """damp=1e30 reported errors of 0 or 3e13: H + d I rounds H's diagonal away and the error subtracted d I back.
    The first layer's inputs are the batches, so its error is recomputed here from the weights."""
    dense, model, xs = _mlp(), _mlp(), _batches()
    with time_limit(60):
        res = solve_layers(model, xs, pattern, 0.5 if "x" in pattern else None, damp=1e30, min_blocks=1,
                           progress=False)
    res.finalize()
    x = torch.cat(xs).double()
    yd, yp = x @ dense[0].weight.detach().double().T, x @ model[0].weight.detach().double().T
    true = float((yd - yp).pow(2).sum() / yd.pow(2).sum())
    assert 0.01 < true and res.layer_rel_error["0"] == pytest.approx(true, rel=1e-5)  # float32 Gram products


class _Conv1D(nn.Module):
    """transformers' GPT-2 Conv1D: a Linear with a transposed weight, not an nn.Linear."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out) / n_in ** 0.5)

    def forward(self, x):
        return x @ self.weight


def test_nothing_to_prune_names_the_unsupported_layer_types():
    """A GPT-2-style model was told only 'include: no layer to prune', blaming the argument it did not give."""
    model = nn.Sequential(_Conv1D(W, 64), nn.ReLU(), _Conv1D(64, 16))
    with pytest.raises(ValueError, match=r"one-shot prunes Linear and Conv2d \(groups=1\) only, not \{'_Conv1D': 2\}"):
        _prune(model, _batches(), "2:4")


def test_layers_one_shot_does_not_solve_are_reported_as_left_dense():
    """A Conv1d and a depthwise Conv2d were left dense without a word in result.skipped."""
    torch.manual_seed(0)
    c1 = nn.Sequential(nn.Conv1d(4, 8, 3), nn.Flatten(), nn.Linear(8 * 6, 16))
    dw = nn.Sequential(nn.Conv2d(8, 8, 3, groups=8), nn.Flatten(), nn.Linear(8 * 2, 16))
    r1 = _prune(c1, [torch.randn(5, 4, 8)], "2:4")
    r2 = _prune(dw, [torch.randn(5, 8, 4, 3)], "2:4")
    assert [x["name"] for x in r1.layers] == ["2"] and [x["name"] for x in r2.layers] == ["2"]
    assert r1.skipped == {"0": "Conv1d: one-shot prunes Linear and Conv2d (groups=1) only"}
    assert r2.skipped == {"0": "Conv2d (groups=8): one-shot prunes Linear and Conv2d (groups=1) only"}


def test_last_layer_of_the_wrong_width_is_refused_before_any_work():
    """The forward-order pass stops on entering the last layer, before the layer itself fails: a width mismatch
    there was a matmul RuntimeError in the Grams, after the first layer had been pruned."""
    model = nn.Sequential(nn.Linear(W, 16), nn.Flatten(0), nn.Linear(16, 4))  # Flatten(0): 24 x 16 -> 384
    before = _state(model)
    with pytest.raises(ValueError, match=r"^batches\[0\]: the model cannot run on this calibration batch \(layer "
                                         r"'2' receives inputs of width 384, it takes 16\)"):
        _prune(model, _batches(), "2:4")
    assert _unchanged(model, before)


@pytest.mark.parametrize("pattern", ["8x8", "2:4"])
def test_non_finite_weight_is_refused_before_any_work(pattern):
    """A NaN in the last layer's weight was 'B: must be finite' from the core, after the first layer was pruned."""
    model = _mlp()
    with torch.no_grad():
        model[3].weight[2, 5] = float("nan")
    before = _state(model)
    with pytest.raises(ValueError, match=r"^model: the weight of layer '3' holds NaN or inf"):
        _prune(model, _batches(), pattern)
    assert all(torch.allclose(v, before[k], rtol=0, atol=0, equal_nan=True) for k, v in model.state_dict().items())


@pytest.mark.parametrize("pattern", ["8x8", "2:4"])
def test_layer_with_a_pruners_masks_attached_is_refused(pattern):
    """One-shot on a model still carrying a training pruner's masks wrote its weights into the parametrization's
    computed tensor: nothing changed, and the report said every layer was pruned (N:M: weight sparsity 0)."""
    model = _mlp()
    pr = make_pruner("magnitude", model, 0.5, pattern="8x8", min_blocks=1, total_steps=1)
    pr.step()
    with torch.no_grad():
        effective = [model[i].weight.clone() for i in (0, 3)]
    with pytest.raises(ValueError, match=r"^model: the weight of layer '0' is computed from other tensors"):
        _prune(model, _batches(), pattern)
    assert all(torch.equal(model[i].weight, w) for i, w in zip((0, 3), effective))
    pr.finalize()
    res = _prune(model, _batches(), pattern)  # after finalize: plain weights, pruned for real
    assert [r["weight_sparsity"] for r in res.layers] == [0.5, 0.5]
    old = _mlp()
    with warnings.catch_warnings():  # deprecated: its hook recomputes weight from weight_g, weight_v every forward
        warnings.simplefilter("ignore", FutureWarning)
        old[0] = torch.nn.utils.weight_norm(old[0])
    with pytest.raises(ValueError, match=r"^model: the weight of layer '0' is computed"):
        _prune(old, _batches(), pattern)


def test_exclude_that_takes_every_layer_is_named():
    with pytest.raises(ValueError, match=r"^exclude: no layer to prune .*none \(exclude matches them all\)"):
        _prune(_mlp(), _batches(), "2:4", exclude="*")


def test_module_eval_reports_the_output_relative_error():
    """A regression head (one output per sample) got output_cosine 1.0 whatever the pruning did."""
    class Reg(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _mlp()

        def forward(self, x):
            return self.net(x).sum(-1)

    model, ev = Reg(), _batches(2, seed=5)
    with torch.no_grad():
        dense = torch.cat([model(x) for x in ev])
    res = _prune(model, _batches(), "2:4", eval_batches=ev)
    with torch.no_grad():
        pruned = torch.cat([model(x) for x in ev])
    assert res.eval["output_cosine_min"] in (-1.0, 1.0)  # the cosine of scalars: their signs only
    assert res.eval["output_rel_error"] == pytest.approx(float((dense - pruned).norm() / dense.norm()), rel=1e-5)
    assert res.eval["output_rel_error"] > 0.01


# ------------------------------------------------------------------------------------------ data
def test_one_tensor_as_batches_is_refused():
    """list(tensor) made every row a batch of one 1-D sample."""
    with pytest.raises(ValueError, match=r"^batches: expected a list of calibration batches, got one Tensor"):
        _prune(_mlp(), torch.randn(24, W), "2:4")


def test_row_mask_of_another_shape_is_refused():
    """A mask matching no input was ignored silently: every row calibrated."""
    xs = _batches()
    with pytest.raises(ValueError, match=r"^row_masks\[1\]: shape \(5,\)"):
        _prune(_mlp(), xs, "2:4", row_masks=[torch.ones(24, dtype=torch.bool), torch.ones(5, dtype=torch.bool),
                                             torch.ones(24, dtype=torch.bool)])


def _eval_cases():
    nan = _batches(seed=2)
    nan[0][1, 2] = float("nan")
    return {"tensor": (torch.randn(24, W), r"^eval_batches: expected a list of batches, got one Tensor"),
            "empty": ([], r"^eval_batches: at least one batch is required"),
            "width": ([torch.randn(8, W + 4)], r"^eval_batches\[0\]: the model cannot run on this batch"),
            "nan": (nan, r"^eval_batches\[0\]: contains NaN or inf")}


@pytest.mark.parametrize("case", ["tensor", "empty", "width", "nan"])
def test_bad_eval_batches_are_refused_before_pruning(case):
    """A tensor gave a meaningless cosine over scalars (min -1), NaN a NaN metric, a wrong width a traceback."""
    ev, match = _eval_cases()[case]
    model = _mlp()
    before = _state(model)
    with pytest.raises(ValueError, match=match):
        _prune(model, _batches(), "2:4", eval_batches=ev)
    assert _unchanged(model, before)


def test_eval_labels_of_another_length_are_refused_before_pruning():
    """A RuntimeError from the comparison, after the model was pruned."""
    model = _mlp()
    before = _state(model)
    with pytest.raises(ValueError, match=r"^eval_labels: expected one label per evaluation sample \(48\), got 10"):
        _prune(model, _batches(), "2:4", kind="classifier", eval_batches=_batches(2, seed=3),
               eval_labels=torch.zeros(10, dtype=torch.long))
    assert _unchanged(model, before)


# ------------------------------------------------------------------------------------------ meta device
def test_meta_model_batches_and_device_are_refused():
    """'Tensor.item() cannot be called on meta tensors' (or blaming the batch); device='meta' also wiped the user's
    weights (model.to('meta')) before failing."""
    with pytest.raises(ValueError, match=r"^model: '0.weight' is on the 'meta' device"):
        _prune(_mlp().to("meta"), _batches(), "8x8")
    with pytest.raises(ValueError, match=r"^batches\[0\]: is on the 'meta' device"):
        _prune(_mlp(), [x.to("meta") for x in _batches()], "2:4")
    model = _mlp()
    before = _state(model)
    with pytest.raises(ValueError, match=r"^device: the 'meta' device holds shapes without values"):
        _prune(model, _batches(), "2:4", device="meta")
    assert _unchanged(model, before)
    with pytest.raises(ValueError, match=r"^model: '0.weight' is on the 'meta' device"):
        make_pruner("srste", _mlp().to("meta"), pattern="2:4")


def test_pruner_report_says_which_layers_its_preset_left_dense():
    """SR-STE's preset keeps the classifier dense, MaxQ's the stem too: the report's table did not say so."""
    rep = make_pruner("srste", _mlp(), pattern="2:4").finalize()
    assert [r["name"] for r in rep.rows] == ["0"] and rep.skipped == {"3": "srste preset: classifier stays dense"}
    assert "left dense: 3 (srste preset: classifier stays dense)" in rep.table()
    assert rep.to_dict()["skipped"] == rep.skipped


def test_module_called_twice_warns_that_its_first_call_calibrates_it():
    """A Linear applied twice (to differently distributed inputs) was fitted to its first call's inputs alone, in
    silence: its error on the second call's inputs was 2.3x the reported one.  Now a RuntimeWarning says so; a
    weight shared by two modules (fitted to both uses) gives none."""
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.a, self.b = nn.Linear(W, W), nn.Linear(W, 16)

        def forward(self, x):
            return self.b(torch.relu(self.a(torch.relu(self.a(x)) * 5 + 1)))

    with pytest.warns(RuntimeWarning, match=r"\['a'\] are called more than once per forward pass \(\{'a': 2\}"):
        _prune(Twice(), _batches(), "2:4")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        _prune(_Tied(), _batches(), "2:4")


def test_lazy_module_not_yet_run_is_refused():
    """An uninitialized LazyLinear was torch's 'Can't access the shape of an uninitialized parameter'."""
    model = nn.Sequential(nn.LazyLinear(64), nn.ReLU(), nn.Linear(64, 16))
    for call in (lambda: _prune(model, _batches(), "2:4"),
                 lambda: make_pruner("magnitude", model, 0.5, pattern="8x8", min_blocks=1, total_steps=2)):
        with pytest.raises(ValueError, match=r"^model: '0.weight' is not initialized yet \(a lazy module\)"):
            call()
    model(_batches()[0])  # initialized: prunable
    assert [r["weight_sparsity"] for r in _prune(model, _batches(), "2:4").layers] == [0.5, 0.5]


# ------------------------------------------------------------------------------------------ export, CLI
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_bsr_export_leaves_a_layer_dense_where_its_matmul_cannot_run(dtype):
    """A float16 model on the CPU was exported to BSR layers whose forward then failed ('addmm_out_sparse_csr_impl_mkl'
    not implemented); where this torch has the kernel, the exported model computes the same outputs."""
    from nn_bridge.export import export_model
    model = _mlp().to(dtype)
    _prune(model, [x.to(dtype) for x in _batches()], "8x8")
    x = torch.randn(4, W, dtype=dtype)
    with torch.no_grad():
        y = model(x)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            torch.eye(2, dtype=dtype).to_sparse_bsr((1, 1)) @ torch.ones(2, 1, dtype=dtype)
        runs = True
    except (RuntimeError, NotImplementedError):
        runs = False
    status = export_model(model, "8x8")
    if runs:
        assert set(status.values()) == {"exported"}
    else:
        assert all("no CPU kernel" in v for v in status.values())
    with torch.no_grad():
        assert torch.allclose(model(x), y, atol=1e-2)


def test_export_of_a_non_module_names_model():
    from nn_bridge.export import export_model
    with pytest.raises(ValueError, match=r"^model: expected a torch.nn.Module, got int"):
        export_model(3, "8x8")
    with pytest.raises(ValueError, match=r"^model: expected a torch.nn.Module or a state_dict, got list"):
        export_state_dict([], "2:4")


def test_load_exported_state_reads_the_export_file(tmp_path):
    model = _mlp()
    _prune(model, _batches(), "2:4")
    sd, _ = export_state_dict(model, "2:4")
    torch.save(sd, tmp_path / "m.pt")
    back = load_exported_state(tmp_path / "m.pt")
    assert back.keys() == model.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match=r"^state: no such file"):
        load_exported_state(tmp_path / "none.pt")


def build_raising():  # --model tests.test_bridge_user_inputs:build_raising
    raise RuntimeError("no weights here")


def build_mlp():
    return _mlp()


def _cli(argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), time_limit(60):
        rc = oneshot_cli(argv)
    return rc, err.getvalue()


@pytest.mark.parametrize("extra, model, named", [
    (["--pattern", "2:4", "--allocation", "loss"], "build_mlp", "--allocation"),
    (["--pattern", "2:4", "--max-layer-sparsity", "0.5"], "build_mlp", "--max-layer-sparsity"),
    (["--pattern", "8x8", "--sparsity", "0.5", "--max-layer-sparsity", "0.5"], "build_mlp", "--max-layer-sparsity"),
    (["--pattern", "2:4"], "build_raising", "--model"),
    (["--pattern", "2:4", "--image-size", "32"], "build_mlp", "--image-size"),
    (["--pattern", "2:4", "--max-length", "32"], "build_mlp", "--max-length"),
    (["--pattern", "8x8", "--sparsity", "0.5", "--refine-lr", "1e-3"], "build_mlp", "--refine-lr"),
    (["--pattern", "2:4", "--arch", "x:y"], "build_mlp", "--arch"),
])
def test_cli_ignored_option_or_failing_model_is_one_line(tmp_path, extra, model, named):
    """--allocation / --max-layer-sparsity (and --image-size, --max-length, --refine-lr, --arch) were ignored
    silently where they do nothing; a --model function that raised printed its traceback."""
    torch.save(torch.randn(16, W), tmp_path / "x.pt")
    rc, err = _cli(["--model", f"{__file__}:{model}", "--calib", str(tmp_path / "x.pt"), "--out",
                    str(tmp_path / "out"), "--no-progress", *extra])
    assert rc == 2 and err.count("\n") == 1 and named in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_count_checks_a_loss_allocated_run_against_its_own_budgets(tmp_path):
    """count --sparsity S --strict failed (exit 1, 'VIOLATED') on a correct --allocation loss run, whose layers
    carry uneven shares of S; it now checks each layer against the share report.json records -- and still fails a
    layer whose saved weights keep more tiles than that."""
    from safetensors.torch import load_file, save_file

    from nn_bridge.count_cli import main as count_cli
    torch.save(torch.randn(48, W), tmp_path / "x.pt")
    out = tmp_path / "out"
    rc, err = _cli(["--model", f"{__file__}:build_mlp", "--calib", str(tmp_path / "x.pt"), "--pattern", "8x8",
                    "--sparsity", "0.5", "--min-blocks", "1", "--allocation", "loss", "--out", str(out),
                    "--no-progress"])
    assert rc == 0, err
    import json
    shares = [r["block_sparsity"] for r in json.loads((out / "report.json").read_text())["layers"]]
    assert len(set(shares)) > 1  # the allocation spread the sparsity unevenly

    def count():
        with contextlib.redirect_stdout(io.StringIO()) as o, contextlib.redirect_stderr(io.StringIO()):
            code = count_cli([str(out), "--pattern", "8x8", "--sparsity", "0.5", "--strict"])
        return code, o.getvalue()
    code, text = count()
    assert code == 0 and "budgets: each layer's block sparsity in report.json" in text, text
    sd = load_file(out / "model.safetensors")
    sd["0.weight"] = torch.ones_like(sd["0.weight"])  # every tile kept
    save_file(sd, out / "model.safetensors")
    code, text = count()
    assert code == 1 and "VIOLATED" in text


@pytest.mark.parametrize("extra, named", [
    (["--pattern", "2:4", "--method", "magnitude", "--allocation", "uniform"], "--allocation"),
    (["--pattern", "2:4", "--method", "oneshot", "--allocation", "uniform"], "--allocation"),
    (["--pattern", "8x8", "--method", "oneshot", "--allocation", "uniform", "--max-layer-sparsity", "0.5"],
     "--max-layer-sparsity"),
    (["--method", "magnitude", "--damp", "0.5"], "--damp"),
    (["--method", "sapp", "--calib", "512"], "--calib"),
    (["--method", "srste", "--layers", "all"], "--layers"),
    (["--method", "srste", "--preset", "criteo"], "--preset"),
    (["--method", "oneshot", "--scope", "global"], "--scope"),
    (["--method", "magnitude", "--epochs", "3"], "--epochs"),
    (["--method", "magnitude", "--max-layer", "0.5"], "--max-layer-sparsity"),  # argparse's unique prefix
])
def test_prune_cli_option_the_run_would_ignore_is_one_line(extra, named, capsys):
    """Each was accepted and silently ignored by the run (e.g. --allocation loss with 2:4, --layers on the mlp)."""
    from nn_bridge.cli import main as prune_cli
    with time_limit(30):
        rc = prune_cli(["--model", "mlp", "--steps", "2", "--plot", "", "--no-progress", *extra])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and f"error: {named}: only " in err, err


@pytest.mark.parametrize("args, named", [(["FILE", "--layers", "all"], "--layers"), (["FILE", "--top", "3"], "--top"),
                                         (["--strict"], "--strict"), (["--include", "0*"], "--include")])
def test_count_option_the_mode_would_ignore_is_one_line(args, named, tmp_path, capsys):
    """A saved model's check ignored the ResNet-50 count's options, and the count the check's, silently."""
    from nn_bridge.count_cli import main as count_cli
    torch.save(_mlp().state_dict(), tmp_path / "m.pt")
    argv = [str(tmp_path / "m.pt") if x == "FILE" else x for x in args] + ["--pattern", "2:4"]
    assert count_cli(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"error: {named}: only " in err, err

