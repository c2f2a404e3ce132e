"""One-shot pruning: the Gram-form backward elimination is exact, im2col follows the tiling convention, and the
solver beats score-based baselines on the layer-wise reconstruction problem."""
import copy
import os

import pytest
import torch
from torch import nn

from nn_bridge.models import MLP, SmallCNN
from groupsparse.selection.obs import gram_refit, merge_paths, obs_paths
from nn_bridge.oneshot import layer_inputs, solve_layers
from nn_bridge.tiling import weight_to_matrix


def oneshot_prune(model, batches, sparsity, block=16, **kw):
    """The one driver with a B x B pattern (the signature of the deprecated ``nn_bridge.oneshot.oneshot_prune``)."""
    return solve_layers(model, batches, (block, block), sparsity, **kw)


def test_obs_path_increments_are_exact_refit_loss_differences():
    torch.manual_seed(0)
    p, K, B = 32, 16, 4
    X = torch.randn(200, p, dtype=torch.float64)
    X[:, 5] += X[:, 6]  # correlated inputs: increments differ from independent scores
    H = X.T @ X / 200
    Bm = torch.randn(p, K, dtype=torch.float64)
    order, incr = obs_paths(H, Bm, B, 7)

    def loss(M):
        return 0.5 * (M * (H @ M)).sum() - (M * Bm).sum()

    keep = torch.ones(p // B, K // B, dtype=torch.bool)
    prev = loss(gram_refit(H, Bm, keep, block=B))
    for s in range(7):
        keep[order[:, s], torch.arange(K // B)] = False
        cur = loss(gram_refit(H, Bm, keep, block=B))
        assert float(cur - prev) == pytest.approx(float(incr[:, s].sum()), rel=1e-8, abs=1e-10)
        prev = cur
    # merged costs are non-decreasing and take a prefix of each column's path
    costs, cols = merge_paths(incr)
    assert torch.all(costs[1:] >= costs[:-1])


def test_conv_im2col_rows_follow_tiling_convention():
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 8, 3, padding=1, stride=2, bias=False)
    x = torch.randn(2, 6, 7, 7)
    y = conv(x)  # (2, 8, 4, 4)
    rows = layer_inputs(conv, x)
    got = rows @ weight_to_matrix(conv.weight)  # (2*16, 8)
    torch.testing.assert_close(got, y.permute(0, 2, 3, 1).reshape(-1, 8), rtol=1e-5, atol=1e-5)


def _calib(n_batches=4, d=64):
    g = torch.Generator().manual_seed(1)
    base = torch.randn(d, d, generator=g) / d ** 0.5  # correlated inputs
    return [torch.randn(256, d, generator=g) @ base + 0.1 * torch.randn(256, d, generator=g)
            for _ in range(n_batches)]


@pytest.mark.parametrize("alloc", ["uniform", "loss"])
def test_oneshot_obs_beats_baselines_and_hits_sparsity(alloc):
    torch.manual_seed(0)
    dense = MLP(64, 128, 8)
    cal = _calib()
    x_eval = _calib(1)[0][:64] * 1.0
    ref = dense(x_eval).detach()
    errs = {}
    for method in ["magnitude", "activation_refit", "obs"]:
        m = MLP(64, 128, 8)
        m.load_state_dict(dense.state_dict())
        res = oneshot_prune(m, cal, 0.5, 8, method=method, allocation=alloc if method == "obs" else "uniform",
                            min_blocks=100, progress=False)
        rep = res.finalize()
        assert rep.block_sparsity == pytest.approx(0.5, abs=1e-9)  # 192 of 384 blocks removed overall
        if alloc == "uniform" or method != "obs":
            assert [r["kept"] for r in rep.rows] == [64, 128]
        errs[method] = float((m(x_eval).detach() - ref).pow(2).mean() / ref.pow(2).mean())
        errs[method + "_layers"] = sum(res.layer_rel_error.values())
    assert errs["obs_layers"] <= errs["activation_refit_layers"] + 1e-9
    assert errs["activation_refit_layers"] < errs["magnitude_layers"]
    assert errs["obs"] < errs["magnitude"]


def test_fixed_masks_reproduce_a_selection_and_refit_on_other_data():
    """``keep=result.keep`` skips selection: on the same batches it reproduces the result exactly; on other
    batches it keeps the masks and refits the weights to those batches."""
    torch.manual_seed(0)
    dense = MLP(64, 128, 8)
    runs = {}
    plan = [("select", _calib(), None), ("same", _calib(), "select"), ("other", _calib(3, 64)[1:], "select")]
    for name, cal, keep in plan:
        m = MLP(64, 128, 8)
        m.load_state_dict(dense.state_dict())
        res = oneshot_prune(m, cal, 0.5, 8, allocation="loss", min_blocks=100, progress=False,
                            keep=None if keep is None else runs[keep][1].keep)
        runs[name] = ({k: v.detach().clone() for k, v in m.state_dict().items()}, res)
    (w0, r0), (w1, r1), (w2, r2) = runs["select"], runs["same"], runs["other"]
    assert r0.keep and all(torch.equal(r0.keep[n], r[n]) for r in (r1.keep, r2.keep) for n in r0.keep)
    assert r1.layer_sparsity == r0.layer_sparsity
    for k in w0:
        torch.testing.assert_close(w1[k], w0[k])
    moved = [k for k in w0 if k.endswith("original") and not torch.allclose(w2[k], w0[k])]
    assert moved  # the refit followed the other batches


def test_fixed_masks_bad_input_named():
    m = MLP(64, 128, 8)
    res = oneshot_prune(MLP(64, 128, 8), _calib(1), 0.5, 8, min_blocks=100, progress=False)
    good = res.keep
    name = next(iter(good))
    cases = [({}, "^keep: no mask for the prunable layer"),
             (dict(good, nope=good[name]), "^keep: no prunable layer named 'nope'"),
             (dict(good, **{name: good[name].float()}), rf"^keep\['{name}'\]: expected a bool mask"),
             (dict(good, **{name: good[name][:1]}), rf"^keep\['{name}'\]: expected a bool mask of shape"),
             ([good[name]], "^keep: expected a dict")]
    for keep, msg in cases:
        with pytest.raises(ValueError, match=msg):
            oneshot_prune(m, _calib(1), 0.5, 8, min_blocks=100, progress=False, keep=keep)


@pytest.mark.parametrize("damp", [0.01, 1.0])
def test_damping_pulls_toward_the_dense_weights(damp):
    """The ridge term pulls the refit toward the dense weights, not toward 0: with nothing pruned (so no drift)
    the one-shot pass returns the dense weights whatever the damping."""
    torch.manual_seed(0)
    dense = MLP(64, 128, 8)
    m = MLP(64, 128, 8)
    m.load_state_dict(dense.state_dict())
    oneshot_prune(m, _calib(), 0.0, 8, damp=damp, min_blocks=100, progress=False).finalize()
    got, want = m.state_dict(), dense.state_dict()
    assert got.keys() == want.keys()
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-5)


def test_oneshot_conv_model_runs_and_reports():
    torch.manual_seed(0)
    m = SmallCNN(16, 32, 10)
    g = torch.Generator().manual_seed(0)
    cal = [torch.randn(4, 16, 8, 8, generator=g) for _ in range(2)]
    res = oneshot_prune(m, cal, 0.5, 8, min_blocks=50, progress=False)
    rep = res.finalize()
    assert [r["name"] for r in rep.rows] == ["conv1", "conv2"]
    assert [r["kept"] for r in rep.rows] == [36, 72]


def test_oneshot_bad_method_named():
    with pytest.raises(ValueError, match="^method"):
        oneshot_prune(MLP(64, 128, 8), _calib(1), 0.5, 8, method="nope", min_blocks=100, progress=False)


def _tiny_bert():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=16)
    dense = transformers.BertModel(cfg, add_pooling_layer=False).eval()
    g = torch.Generator().manual_seed(0)
    cal = []
    for _ in range(2):
        mask = torch.ones(8, 12, dtype=torch.long)
        mask[:4, 9:] = 0  # padded rows: excluded from the Grams through row_masks
        cal.append({"input_ids": torch.randint(0, 50, (8, 12), generator=g), "attention_mask": mask})
    return cfg, dense, cal, [b["attention_mask"].bool() for b in cal]


def test_block_replay_matches_prefix_reruns_on_a_tiny_bert():
    """Caching each encoder layer's inputs and replaying only that layer gives the same masks and weights as
    re-running the model prefix for every Linear (the slow generic path), dense and pruned streams alike."""
    cfg, dense, cal, masks = _tiny_bert()
    import transformers
    out = {}
    for blocks in [None, ["encoder.layer.0", "encoder.layer.1"]]:
        m = transformers.BertModel(cfg, add_pooling_layer=False).eval()
        m.load_state_dict(dense.state_dict())
        res = oneshot_prune(m, cal, 0.5, 8, method="obs", allocation="loss", row_masks=masks, min_blocks=8,
                            include=lambda n: n.startswith("encoder."), blocks=blocks, progress=False)
        res.finalize()
        out[blocks is None] = (res.layer_sparsity, res.layer_rel_error,
                               {k: v.clone() for k, v in m.state_dict().items()})
    (sp0, loss0, sd0), (sp1, loss1, sd1) = out[True], out[False]
    assert len(sp0) == 12 and sp0 == sp1
    assert max(loss0.values()) > 0  # the pruned stream differs from the dense one after the first layer
    for k in loss0:
        assert loss1[k] == pytest.approx(loss0[k], rel=1e-4, abs=1e-7)
    for k in sd0:
        torch.testing.assert_close(sd1[k], sd0[k], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("pattern", ["8x8", "2:4"])
def test_layers_after_the_blocks_are_pruned_last_with_the_same_result(pattern):
    """A pruned layer outside the transformer layers but called after them (BERT's pooler, fed one row per
    sequence) is the streams' tail: the same masks and weights as re-running the model prefix for every layer
    (loss allocation included, which reads the tail's dense inputs); ``pruned._block_list`` picks the encoder
    layers for it; a layer outside the blocks called before one of their layers is refused, naming blocks."""
    from nn_bridge.pruned import _block_list
    cfg, _, cal, masks = _tiny_bert()
    import transformers
    torch.manual_seed(1)
    dense = transformers.BertModel(cfg, add_pooling_layer=True).eval()
    kw = dict(method="obs", row_masks=masks, min_blocks=8, progress=False)
    kw.update(dict(sparsity=0.5, allocation="loss") if pattern == "8x8" else {})
    out = {}
    for blocks in [None, _TINY_BLOCKS, "auto"]:
        m = copy.deepcopy(dense)
        res = solve_layers(m, cal, pattern, blocks=blocks, **kw)
        res.finalize()
        out[str(blocks)] = (res.layer_sparsity, res.layer_rel_error,
                            {k: v.clone() for k, v in m.state_dict().items()})
    (sp0, loss0, sd0), (sp1, loss1, sd1) = out["None"], out[str(_TINY_BLOCKS)]
    for k, v in out["auto"][2].items():  # "auto" finds the encoder layers, the pooler as the tail: the same run
        assert torch.equal(v, sd1[k]), k
    assert "pooler.dense" in sp0 and len(sp0) == 13 and sp0 == sp1
    assert _block_list(dense, list(sp0)) == _TINY_BLOCKS
    # a layer outside the list called before one inside it: no list (the prefix streams serve)
    assert _block_list(dense, ["pooler.dense"] + [n for n in sp0 if n != "pooler.dense"]) is None
    assert loss0["pooler.dense"] > 0
    for k in loss0:
        assert loss1[k] == pytest.approx(loss0[k], rel=1e-4, abs=1e-7)
    for k in sd0:
        torch.testing.assert_close(sd1[k], sd0[k], rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="^blocks: layer 'encoder.layer.0.* is called before"):
        solve_layers(copy.deepcopy(dense), cal, pattern, blocks=_TINY_BLOCKS[1:], **kw)


def test_blocks_must_contain_every_pruned_layer():
    with pytest.raises(ValueError, match="^blocks"):
        oneshot_prune(MLP(64, 128, 8), _calib(1), 0.5, 8, min_blocks=100, blocks=["fc1"], progress=False)


_TINY_BLOCKS = ["encoder.layer.0", "encoder.layer.1"]


def _refined_tiny_bert(**kw):
    """One-shot 50% of the tiny BERT's encoder in 8x8 blocks with block replay, a fresh copy each call."""
    cfg, dense, cal, masks = _tiny_bert()  # skips without transformers
    import transformers
    m = transformers.BertModel(cfg, add_pooling_layer=False).eval()
    m.load_state_dict(dense.state_dict())
    return oneshot_prune(m, cal, 0.5, 8, row_masks=masks, min_blocks=8, include=lambda n: n.startswith("encoder."),
                         blocks=_TINY_BLOCKS, progress=False, **kw)


def test_block_refine_lowers_every_block_error_and_keeps_the_masks():
    blocks = _TINY_BLOCKS
    kept = {}
    for steps in (0, 40):
        res = _refined_tiny_bert(refine_steps=steps, refine_lr=1e-3)
        kept[steps] = [p.mask.clone() for p in res.params]
        if steps:
            assert list(res.block_error) == blocks
            for before, after in res.block_error.values():
                assert 0 < after < 0.9 * before
            rep = res.finalize()
            assert rep.block_sparsity == pytest.approx(0.5, abs=0.01)
    for a, b in zip(kept[0], kept[40]):
        torch.testing.assert_close(a, b)  # selection is not revisited: same masks


def test_nm_refine_lowers_every_block_error_and_keeps_the_pattern():
    """1:4 with the block refine (at 2:4 this tiny model's blocks are refit almost exactly, errors ~5e-7): the masks hold the N:M zeros while Adam runs and are baked away after each
    block (an N:M result is plain weights); the refine lowers each block's error."""
    from torch.nn.utils import parametrize
    cfg, dense, cal, masks = _tiny_bert()
    import transformers
    out = {}
    for steps in (0, 40):
        m = transformers.BertModel(cfg, add_pooling_layer=False).eval()
        m.load_state_dict(dense.state_dict())
        res = solve_layers(m, cal, "1:4", row_masks=masks, include=lambda n: n.startswith("encoder."),
                           blocks=_TINY_BLOCKS, refine_steps=steps, refine_lr=1e-3, progress=False)
        out[steps] = (m, res)
    m, res = out[40]
    assert list(res.block_error) == _TINY_BLOCKS and not res.params
    for before, after in res.block_error.values():
        assert 0 < after < 0.9 * before
    m0, res0 = out[0]
    changed = 0
    for name, keep in res.keep.items():
        mod = m.get_submodule(name)
        assert not parametrize.is_parametrized(mod)
        w = weight_to_matrix(mod.weight.detach())
        if name.startswith(_TINY_BLOCKS[0] + "."):  # the first block's supports are chosen before any refine
            assert torch.equal(keep, res0.keep[name])
        assert not w[~keep].any()  # the pruned weights stayed 0 through Adam
        assert (w[keep] != 0).float().mean() > 0.99 and float(keep.float().mean()) == 0.25
        changed += not torch.equal(w, weight_to_matrix(m0.get_submodule(name).weight.detach()))
    assert changed == len(res.keep)  # the refine moved every pruned layer's kept weights
    assert list(m.state_dict()) == list(m0.state_dict())  # the masks come and go without reordering the keys


def test_refine_held_out_batches_stop_a_diverging_refine():
    """With a learning rate far too large the refine makes every block worse; holding out a batch
    (``refine_val``) keeps the best parameters seen on it, here the starting ones."""
    errs = {val: _refined_tiny_bert(refine_steps=16, refine_lr=10.0, refine_val=val).block_error for val in (0, 1)}
    for b in _TINY_BLOCKS:
        assert errs[0][b][1] > errs[0][b][0]
        assert errs[1][b][1] == pytest.approx(errs[1][b][0], rel=1e-6)


def test_refine_bad_input():
    with pytest.raises(ValueError, match="^refine_steps: .*blocks="):
        oneshot_prune(MLP(64, 128, 8), _calib(1), 0.5, 8, min_blocks=100, refine_steps=5, progress=False)
    with pytest.raises(ValueError, match="^refine_steps: "):
        oneshot_prune(MLP(64, 128, 8), _calib(1), 0.5, 8, min_blocks=100, refine_steps=-1, progress=False)
    with pytest.raises(ValueError, match="^refine_lr: "):
        oneshot_prune(MLP(64, 128, 8), _calib(1), 0.5, 8, min_blocks=100, refine_lr=0.0, progress=False)
    with pytest.raises(ValueError, match="^refine_val: "):
        oneshot_prune(MLP(64, 128, 8), _calib(2), 0.5, 8, min_blocks=100, refine_val=2, progress=False)
    with pytest.raises(ValueError, match="^damp: "):
        oneshot_prune(MLP(64, 128, 8), _calib(1), 0.5, 8, min_blocks=100, damp=-1.0, progress=False)
    with pytest.raises(ValueError, match="^allocation: no prunable layer"):
        oneshot_prune(MLP(64, 128, 8), _calib(1), 0.5, 8, min_blocks=100, allocation={"nope": 0.5},
                      progress=False)


def test_select_layer_obs_is_the_core_path_and_all_removed_is_zero():
    """The bridge's 'obs' goes through groupsparse.select: the core's obs_keep + gram_refit exactly; removing every
    block gives zeros without a solve."""
    from groupsparse.selection.obs import obs_keep
    from nn_bridge.oneshot import _select_layer
    from nn_bridge.tiling import LayerTiling
    torch.manual_seed(1)
    t = LayerTiling("fc", (16, 24), 4)  # Linear(24 -> 16): matrix (24, 16), grid (6, 4)
    X = torch.randn(100, 24, dtype=torch.float64)
    H = X.T @ X / 100
    Bm = H @ torch.randn(24, 16, dtype=torch.float64)
    keep, coef = _select_layer(H, Bm, t, 10, "obs")
    ref = obs_keep(H, Bm, 4, 10)
    assert torch.equal(keep, ref)
    torch.testing.assert_close(coef, gram_refit(H, Bm, ref, block=4), rtol=0, atol=1e-12)
    keep, coef = _select_layer(H, Bm, t, t.n_blocks, "obs")
    assert not keep.any() and not coef.any()


@pytest.mark.parametrize("pattern", ["8x8", "2:4"])
def test_checkpointed_run_interrupted_in_the_tail_resumes(pattern, tmp_path):
    """Ctrl-C while the tail (BERT's pooler) is pruned, after both blocks were checkpointed: the resumed run
    captures the tail's dense inputs again from the fresh model and ends with the uninterrupted run's weights."""
    from test_oneshot_stream import _Interrupt
    cfg, _, cal, masks = _tiny_bert()
    import transformers
    torch.manual_seed(1)
    dense = transformers.BertModel(cfg, add_pooling_layer=True).eval()
    kw = dict(method="obs", row_masks=masks, min_blocks=8, progress=False, blocks=_TINY_BLOCKS)
    kw.update(dict(sparsity=0.5, allocation="loss", refine_steps=2) if pattern == "8x8" else dict(refine_steps=2))
    full, part, again = copy.deepcopy(dense), copy.deepcopy(dense), copy.deepcopy(dense)
    solve_layers(full, cal, pattern, **kw)
    ck = tmp_path / "ck"
    part.pooler.dense.register_forward_pre_hook(_Interrupt(1, when=lambda: os.path.exists(ck / "block1.pt")))
    with pytest.warns(RuntimeWarning, match="layers are pruned"), pytest.raises(KeyboardInterrupt):
        solve_layers(part, cal, pattern, checkpoint=str(ck), **kw)
    assert sorted(f.name for f in ck.iterdir()) == ["block0.pt", "block1.pt", "state.pt"]
    solve_layers(again, cal, pattern, checkpoint=str(ck), **kw)
    for (n, a), b in zip(full.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), n
    assert not ck.exists()
