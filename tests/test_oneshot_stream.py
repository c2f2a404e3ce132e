"""The one one-shot driver (``nn_bridge.oneshot.solve_layers``, block and N:M patterns): the deprecated entry points
are it; it never copies the model (one block at most); calibration batches may be a one-shot iterator; an
interrupted run leaves only whole, finished layers changed and names them; bad input is named.  Tiny models."""
import copy
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from conftest import time_limit
from test_bridge_oneshot import _tiny_bert as tiny_bert
from nn_bridge import calibration
from nn_bridge.oneshot import solve_layers
from nn_bridge.tiling import weight_to_matrix

TINY_BLOCKS = ["encoder.layer.0", "encoder.layer.1"]


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 16))


def _xs(n=3, rows=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(rows, 32, generator=g) for _ in range(n)]


def _tiny_bert():
    """A fresh tiny BERT (2 encoder layers, width 32) and 2 calibration batches, seed 0."""
    _, model, cal, _ = tiny_bert()
    return model, cal


def _prune(model, batches, pattern, **kw):
    kw.setdefault("progress", False)
    if pattern == "8x8":
        return solve_layers(model, batches, pattern, 0.5, min_blocks=4, **kw)
    return solve_layers(model, batches, pattern, **kw)


PATTERNS = ["8x8", "2:4"]


def _bert_kw(pattern):
    return {"include": lambda n: n.startswith("encoder.")}


def _linears(model):
    """Effective weight and bias of every Linear (a block mask's product included)."""
    return {n: (m.weight.detach().clone(), m.bias.detach().clone()) for n, m in model.named_modules()
            if isinstance(m, nn.Linear)}


# ------------------------------------------------------------------------------------------ one driver
@pytest.mark.parametrize("pattern", PATTERNS)
def test_deprecated_entry_points_warn_and_are_the_one_driver(pattern):
    from nn_bridge.nm.oneshot import nm_oneshot
    from nn_bridge.oneshot import oneshot_prune
    a, b = _mlp(), _mlp()
    ra = _prune(a, _xs(), pattern)
    with pytest.warns(DeprecationWarning, match="deprecated"):
        if pattern == "8x8":
            rb = oneshot_prune(b, _xs(), 0.5, 8, min_blocks=4, progress=False)
        else:
            rb = nm_oneshot(b, _xs(), "2:4", progress=False)
    for (n, wa), wb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(wa, wb), n
    assert ra.layer_rel_error == rb.layer_rel_error
    with pytest.warns(DeprecationWarning, match="layer_rel_error"):
        assert ra.layer_loss is ra.layer_rel_error


@pytest.mark.parametrize("pattern", PATTERNS)
def test_layer_error_from_the_grams_is_the_output_error(pattern):
    """The first layer sees the raw batches in both streams: its relative error ||X M - X M^||^2 / ||X M||^2 is
    computed directly here; the driver's Gram identity agrees to the float32 Gram products' rounding."""
    model, xs = _mlp(), _xs()
    dense = weight_to_matrix(model[0].weight.detach()).double()
    res = _prune(model, xs, pattern)
    if pattern == "8x8":
        res.finalize()
    X = torch.cat(xs).double()
    Mh = weight_to_matrix(model[0].weight.detach()).double()
    direct = float((X @ dense - X @ Mh).pow(2).sum() / (X @ dense).pow(2).sum())
    assert 1e-3 < direct < 1  # pruned: a real error, not a rounding residue
    assert res.layer_rel_error["0"] == pytest.approx(direct, rel=1e-4, abs=1e-6)


# ------------------------------------------------------------------------------------------ streamed
@pytest.mark.parametrize("pattern", PATTERNS)
def test_streamed_driver_copies_at_most_one_block_never_the_model(pattern, monkeypatch):
    model, cal = _tiny_bert()
    copied = []
    real = copy.deepcopy

    def spy(obj, *a, **k):
        if isinstance(obj, nn.Module):
            copied.append(sum(q.numel() for q in obj.parameters()))
        return real(obj, *a, **k)
    monkeypatch.setattr(calibration.copy, "deepcopy", spy)
    monkeypatch.setattr(copy, "deepcopy", spy)
    one_block = sum(q.numel() for q in model.encoder.layer[0].parameters())
    _prune(model, cal, pattern, blocks=TINY_BLOCKS, **_bert_kw(pattern))
    assert copied == [one_block, one_block]  # one dense copy per block, each dropped before the next
    copied.clear()
    _prune(_tiny_bert()[0], cal, pattern, **_bert_kw(pattern))  # the generic streams copy nothing
    assert copied == []


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("blocks", [None, TINY_BLOCKS])
def test_calibration_batches_may_be_a_one_shot_iterator(pattern, blocks):
    model, cal = _tiny_bert()
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    _prune(a, cal, pattern, blocks=blocks, **_bert_kw(pattern))
    _prune(b, (x for x in cal), pattern, blocks=blocks, **_bert_kw(pattern))
    for (n, wa), wb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(wa, wb), n


# ------------------------------------------------------------------------------------------ interrupted
class _Interrupt:
    """A forward pre-hook raising KeyboardInterrupt (a Ctrl-C) at the ``at``-th call of its module."""

    def __init__(self, at, when=lambda: True):
        self.n, self.at, self.when = 0, at, when

    def __call__(self, mod, args):
        if self.when():
            self.n += 1
            if self.n == self.at:
                raise KeyboardInterrupt


@pytest.mark.parametrize("pattern", PATTERNS)
def test_interrupted_run_changes_only_whole_finished_layers_and_names_them(pattern):
    """Generic streams, 3 Linears: the hook on the last one fires at its second call (the first is the forward-
    order pass), i.e. while the driver collects that layer's inputs; the two layers before are finished."""
    full = _mlp()
    _prune(full, _xs(), pattern)
    model, dense = _mlp(), _mlp()
    model[4].register_forward_pre_hook(_Interrupt(2))
    with time_limit(60), pytest.warns(RuntimeWarning, match=r"2 of 3 layers are pruned .*\['0', '2'\]"), \
            pytest.raises(KeyboardInterrupt) as e:
        _prune(model, _xs(), pattern)
    assert "['0', '2']" in "".join(getattr(e.value, "__notes__", []))
    for i in (0, 2):  # finished: exactly the uninterrupted run's layer (block masks attached)
        assert torch.equal(model[i].weight, full[i].weight)
        assert parametrize.is_parametrized(model[i], "weight") == (pattern == "8x8")
    assert torch.equal(model[4].weight, dense[4].weight) and not parametrize.is_parametrized(model[4])


@pytest.mark.parametrize("pattern", PATTERNS)
def test_interrupted_streamed_run_keeps_the_finished_block(pattern):
    model, cal = _tiny_bert()
    dense, full = copy.deepcopy(model), copy.deepcopy(model)
    _prune(full, cal, pattern, blocks=TINY_BLOCKS, **_bert_kw(pattern))
    # block 1's first Linear: called once by the forward-order pass, then only when block 1 is replayed
    model.encoder.layer[1].attention.self.query.register_forward_pre_hook(_Interrupt(2))
    with time_limit(60), pytest.warns(RuntimeWarning, match="layers are pruned"), pytest.raises(KeyboardInterrupt):
        _prune(model, cal, pattern, blocks=TINY_BLOCKS, **_bert_kw(pattern))
    got, ref_full, ref_dense = _linears(model), _linears(full), _linears(dense)
    for n, (w, b) in got.items():
        ref = ref_full[n] if n.startswith("encoder.layer.0.") else ref_dense[n]
        assert torch.equal(w, ref[0]) and torch.equal(b, ref[1]), n
    assert not torch.equal(ref_full["encoder.layer.0.output.dense"][0], ref_dense["encoder.layer.0.output.dense"][0])


@pytest.mark.parametrize("pattern", PATTERNS)
def test_interrupted_refine_is_undone(pattern):
    """Ctrl-C inside block 0's refine: block 0 keeps its pruned layers (block masks attached; N:M ones baked
    away) with the parameters they had before the refine, i.e. those of a run without refine; block 1 is
    untouched."""
    from torch.nn.utils import parametrize
    model, cal = _tiny_bert()
    dense, plain = copy.deepcopy(model), copy.deepcopy(model)
    _prune(plain, cal, pattern, blocks=TINY_BLOCKS, **_bert_kw(pattern))
    model.encoder.layer[0].output.dense.register_forward_pre_hook(_Interrupt(3, torch.is_grad_enabled))
    with time_limit(60), pytest.warns(RuntimeWarning, match="6 of 12 layers"), pytest.raises(KeyboardInterrupt):
        _prune(model, cal, pattern, blocks=TINY_BLOCKS, refine_steps=10, **_bert_kw(pattern))
    if pattern != "8x8":
        assert not any(parametrize.is_parametrized(m) for m in model.modules())
    sd, sp, s0 = model.state_dict(), plain.state_dict(), dense.state_dict()
    assert all(torch.equal(sd[k], sp[k]) for k in sp if k.startswith("encoder.layer.0."))
    assert all(torch.equal(sd[k], s0[k]) for k in s0 if k.startswith("encoder.layer.1."))


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("pattern", PATTERNS)
def test_empty_calibration_iterator_is_named(pattern):
    with pytest.raises(ValueError, match=r"^batches: at least one calibration batch"):
        _prune(_mlp(), iter([]), pattern)


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("blocks", [None, ["0", "2", "4"]])
def test_batch_shapes_changing_between_calls_are_named(pattern, blocks):
    def gen():
        yield torch.randn(16, 32)
        yield torch.randn(16, 24)  # the model cannot take 24 inputs
    with pytest.raises(ValueError, match=r"^batches\[1\]: the model cannot run"):
        _prune(_mlp(), gen(), pattern, blocks=blocks)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_max_memory_too_small_for_every_method_is_named(pattern):
    model = _mlp()
    with pytest.raises(ValueError, match=r"^max_memory: a 32 x 32 layer needs"):
        _prune(model, _xs(), pattern, max_memory=1000)
    assert not any(parametrize.is_parametrized(m) for m in model.modules())  # refused before any work


@pytest.mark.parametrize("pattern", PATTERNS)
def test_cuda_without_cuda_is_named(pattern, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"^device: 'cuda' asked but CUDA is not available"):
        _prune(_mlp(), _xs(), pattern, device="cuda")


def test_block_only_options_refused_for_nm():
    for kw in ({"allocation": "loss"}, {"keep": {}}):
        with pytest.raises(ValueError, match=f"^{next(iter(kw))}: block patterns only"):
            solve_layers(_mlp(), _xs(), "2:4", progress=False, **kw)


def test_no_warning_from_the_public_entry_point():
    import nn_bridge
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nn_bridge.oneshot_prune(_mlp(), _xs(), "2:4", progress=False)


def test_query_key_value_share_one_gram_and_trailing_blocks_are_not_replayed(monkeypatch):
    """BERT's query, key and value take the very same tensor: one Gram accumulation serves the three (per block
    4 accumulations for 6 Linears); pruning block 0 only runs no later block."""
    model, cal = _tiny_bert()
    calls = []
    real_pairs = calibration._Streams.pairs
    monkeypatch.setattr(calibration._Streams, "pairs", lambda self, layer: calls.append(layer.name) or
                        real_pairs(self, layer))
    res = _prune(model, cal, "8x8", blocks=TINY_BLOCKS, include=lambda n: n.startswith("encoder."))
    assert len(res.names) == 12 and len(calls) == 8
    assert not any(n.endswith((".key", ".value")) for n in calls)
    model = _tiny_bert()[0]
    n_calls = []
    model.encoder.layer[1].register_forward_pre_hook(lambda m, a: n_calls.append(1))
    _prune(model, cal, "8x8", blocks=TINY_BLOCKS, include=lambda n: n.startswith("encoder.layer.0."))
    assert n_calls == []  # neither replayed nor reached by the forward-order pass (it stops after the last layer)


def test_seqobs_options_reach_the_scalable_solver():
    """refit_iters=0 is the sweep alone: a different (here: no better) refit than the bridge's 20 CG iterations;
    a solver option for a method that takes none is refused by name."""
    a, b = _mlp(), _mlp()
    ra = _prune(a, _xs(), "8x8", method="seqobs")
    rb = _prune(b, _xs(), "8x8", method="seqobs", refit_iters=0)
    assert not torch.equal(a[0].weight, b[0].weight)
    assert sum(rb.layer_rel_error.values()) >= sum(ra.layer_rel_error.values()) - 1e-9
    with pytest.raises(TypeError, match="refit_iters"):
        _prune(_mlp(), _xs(), "8x8", method="magnitude", refit_iters=0)


def test_block_seqobs_in_float32_matches_float64():
    """solver_dtype=float32 (half the scalable solve's memory) picks nearly the same blocks: the layer errors agree
    to float32's precision on these well-conditioned (damped) layers."""
    a, b = _mlp(), _mlp()
    ra = _prune(a, _xs(), "8x8", method="seqobs")
    rb = _prune(b, _xs(), "8x8", method="seqobs", solver_dtype=torch.float32)
    for n in ra.names:
        assert rb.layer_rel_error[n] == pytest.approx(ra.layer_rel_error[n], rel=1e-3, abs=1e-6)
    assert a[0].weight.dtype == b[0].weight.dtype == torch.float32


@pytest.mark.parametrize("method", ["obs", "seqobs"])
def test_narrow_output_layer_accumulates_bm_without_the_cross_gram(method, monkeypatch):
    """A layer with K < p / 2 outputs (here 64 -> 16) and a large p x p cross Gram accumulates Bm = X_p^T (X_d M) batch by batch instead of the
    p x p cross Gram C (``calibration.direct_cross``): the same masks, and weights equal to the float32 rounding of
    the Gram products (each entry a float32 sum of 24 products, relative error ~ 24 * 2^-24 ~ 1.4e-6, times the
    damped H's conditioning: a 1e-5 relative bound); the wide first layer takes the C path in both runs: bit-equal.
    A small cross Gram keeps the C path (``DIRECT_CROSS_BYTES``)."""
    def mlp():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16))
    monkeypatch.setattr(calibration, "DIRECT_CROSS_BYTES", 0)  # the tiny layer counts as large
    seen = []
    real = calibration.direct_cross
    monkeypatch.setattr(calibration, "direct_cross", lambda p, K: seen.append((p, K)) or real(p, K))
    a, b = mlp(), mlp()
    ra = _prune(a, _xs(), "8x8", method=method)
    assert seen == [(32, 64), (64, 16)] and real(64, 16) and not real(32, 64)
    monkeypatch.setattr(calibration, "DIRECT_CROSS_BYTES", 1 << 27)
    assert real(8192, 2048) and not real(1536, 384) and not real(8192, 8192)
    monkeypatch.setattr(calibration, "DIRECT_CROSS_BYTES", 0)
    monkeypatch.setattr(calibration, "direct_cross", lambda p, K: False)
    rb = _prune(b, _xs(), "8x8", method=method)
    for n in ra.names:
        assert torch.equal(ra.keep[n], rb.keep[n])
        assert ra.layer_rel_error[n] == pytest.approx(rb.layer_rel_error[n], rel=1e-5, abs=1e-9)
    assert torch.equal(a[0].weight, b[0].weight)
    wa, wb = a[2].weight.detach(), b[2].weight.detach()
    assert float((wa - wb).norm() / wb.norm()) < 1e-5


@pytest.mark.parametrize("pattern", PATTERNS)
def test_spilled_streams_give_the_same_model_and_leave_no_files(pattern, monkeypatch, tmp_path):
    """spill=True keeps the block inputs in a temporary directory (read back bit-exact): the same weights as in
    memory, allocation pass included; the directory is gone after the run, and after an interrupted one; spill=None
    spills above calibration.SPILL_BYTES only; a bad value is named."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(calibration.tempfile, "tempdir", None)  # TMPDIR is read again
    model, cal = _tiny_bert()
    a, b, c = copy.deepcopy(model), copy.deepcopy(model), copy.deepcopy(model)
    spilled = []
    real_open = calibration.BlockStreams._open

    def spy(self, *args):
        real_open(self, *args)
        spilled.append(self.spilled)
    monkeypatch.setattr(calibration.BlockStreams, "_open", spy)
    tags = []
    real_store = calibration._BlockInputs.__init__

    def store_spy(self, tag, dir=None):
        real_store(self, tag, dir)
        tags.append((tag, dir is not None))
    monkeypatch.setattr(calibration._BlockInputs, "__init__", store_spy)
    kw = {"blocks": TINY_BLOCKS, **_bert_kw(pattern)}
    kw.update(refine_steps=3)  # the refine's dense targets spill too
    if pattern == "8x8":
        kw.update(allocation="loss")
    _prune(a, cal, pattern, spill=False, **kw)
    assert all(not on_disk for _, on_disk in tags)
    tags.clear()
    _prune(b, cal, pattern, spill=True, **kw)
    assert all(on_disk for _, on_disk in tags) and ("o", True) in tags
    n_passes = 2 if pattern == "8x8" else 1  # the loss allocation's dense pass, then the pruning pass
    assert spilled == [False] * n_passes + [True] * n_passes
    for (n, wa), wb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(wa, wb), n
    assert not list(tmp_path.glob("groupsparse-streams-*"))
    monkeypatch.setattr(calibration, "SPILL_BYTES", 0)
    spilled.clear()
    _prune(c, cal, pattern, **kw)  # spill=None above the (here zero) size
    assert spilled == [True] * n_passes and not list(tmp_path.glob("groupsparse-streams-*"))
    model.encoder.layer[1].attention.self.query.register_forward_pre_hook(_Interrupt(2))
    with time_limit(60), pytest.warns(RuntimeWarning, match="layers are pruned"), pytest.raises(KeyboardInterrupt):
        _prune(model, cal, pattern, spill=True, blocks=TINY_BLOCKS, **_bert_kw(pattern))
    assert not list(tmp_path.glob("groupsparse-streams-*"))
    with pytest.raises(ValueError, match=r"^spill: expected None \(automatic\), True or False, got 'yes'"):
        _prune(_tiny_bert()[0], cal, pattern, spill="yes", **kw)


@pytest.mark.parametrize("spill", [False, True])
@pytest.mark.parametrize("pattern", PATTERNS)
def test_checkpointed_run_resumes_to_the_same_model(pattern, spill, tmp_path, monkeypatch):
    """Ctrl-C in block 1 of a checkpointed run; the same call on a fresh dense model continues from the checkpoint
    (block 0 from the file, block 1 replayed from the saved hidden states) and ends with the weights and figures of
    an uninterrupted run, bit for bit (loss allocation and refine included for blocks); the file is then gone.  A
    checkpoint of another run, a damaged one, or one without blocks is refused, naming checkpoint."""
    model, cal = _tiny_bert()
    kw = {"blocks": TINY_BLOCKS, "spill": spill, **_bert_kw(pattern)}
    kw.update(refine_steps=3)
    if pattern == "8x8":
        kw.update(allocation="loss")
    full, part, again = copy.deepcopy(model), copy.deepcopy(model), copy.deepcopy(model)
    ref = _prune(full, cal, pattern, **kw)
    ck = tmp_path / "run.ckpt"
    part.encoder.layer[1].attention.self.query.register_forward_pre_hook(_Interrupt(1, when=ck.exists))
    with time_limit(60), pytest.warns(RuntimeWarning, match="layers are pruned"), pytest.raises(KeyboardInterrupt):
        _prune(part, cal, pattern, checkpoint=str(ck), **kw)
    assert sorted(f.name for f in ck.iterdir()) == ["block0.pt", "state.pt"]  # block 0's weights, written once
    with pytest.raises(ValueError, match="^checkpoint: .* belongs to another run"):
        _prune(copy.deepcopy(model), cal, pattern, checkpoint=str(ck), **dict(kw, damp=0.02))
    from nn_bridge import resume
    restored, real_restore = [], resume.restore
    monkeypatch.setattr(resume, "restore", lambda *a: restored.append(real_restore(*a)) or restored[-1])
    with time_limit(60):
        res = _prune(again, cal, pattern, checkpoint=str(ck), **kw)
    (done, nxt), = restored  # resumed at block 1, block 0's layers from the file
    assert nxt == 1 and done and all(n.startswith("encoder.layer.0.") for n in done)
    for (n, wa), wb in zip(full.state_dict().items(), again.state_dict().values()):
        assert torch.equal(wa, wb), n
    assert res.layer_rel_error == ref.layer_rel_error and res.layer_sparsity == ref.layer_sparsity
    assert res.block_error == ref.block_error
    assert not ck.exists()
    ck.mkdir()
    (ck / "state.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="^checkpoint: .* damaged"):
        _prune(copy.deepcopy(model), cal, pattern, checkpoint=str(ck), **kw)
    (ck / "notes.txt").write_text("user data")
    with pytest.raises(ValueError, match="^checkpoint: .* holds other files"):
        _prune(copy.deepcopy(model), cal, pattern, checkpoint=str(ck), **kw)
    with pytest.raises(ValueError, match="^checkpoint: resumable runs need blocks="):
        _prune(copy.deepcopy(model), cal, pattern, checkpoint=str(tmp_path / "x.ckpt"), **_bert_kw(pattern))
