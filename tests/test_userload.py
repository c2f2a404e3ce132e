"""Loading the user's model and data (nn_bridge.userload, nn_bridge.calibdata) and the Python one-shot API
(nn_bridge.oneshot_prune, result.save, load_pruned): each form of --model, each data format, their errors."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

import nn_bridge
from nn_bridge import calibdata, userload
from nn_bridge.pruned import parse_pattern, select_layer_names

USER_MODULE = '''
import torch
from torch import nn

def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8))

def not_a_module():
    return 3
'''


@pytest.fixture()
def user(tmp_path):
    (tmp_path / "usermod.py").write_text(USER_MODULE)
    return tmp_path, f"{tmp_path / 'usermod.py'}:build"


def _same(a: nn.Module, b: nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---------------------------------------------------------------------------------------------- --model forms
def test_module_function_and_weight_files(user):
    t, spec = user
    ref = userload.build_from_function(spec)
    got = userload.load_model(spec)
    assert got.kind == "module" and got.arch == spec and _same(got.model, ref)
    trained = userload.build_from_function(spec)
    with torch.no_grad():
        for q in trained.parameters():
            q.mul_(-2.0)   # weights that differ from what build() makes, so loading them is visible
    torch.save(trained.state_dict(), t / "sd.pt")
    torch.save(trained, t / "whole.pt")   # a pickled module, made only of classes build() uses
    from safetensors.torch import save_model
    save_model(trained, str(t / "w.safetensors"))
    for f in ("sd.pt", "whole.pt", "w.safetensors"):
        got = userload.load_model(str(t / f), arch=spec)
        assert _same(got.model, trained) and not _same(got.model, ref), f


def test_weight_file_errors(user):
    t, spec = user
    torch.save(userload.build_from_function(spec).state_dict(), t / "sd.pt")
    with pytest.raises(ValueError, match="--model.*--arch"):
        userload.resolve_model(str(t / "sd.pt"))
    torch.save({"0.weight": torch.zeros(3, 3)}, t / "wrong.pt")
    with pytest.raises(ValueError, match="--model: the weights .* do not fit"):
        userload.load_model(str(t / "wrong.pt"), arch=spec)
    torch.save(nn.Sequential(nn.Linear(32, 64), nn.GELU()), t / "other.pt")   # GELU: not a class build() uses
    with pytest.raises(ValueError, match="--model: .*weights_only"):
        userload.load_model(str(t / "other.pt"), arch=spec)
    with pytest.raises(ValueError, match="--model: .*returned int"):
        userload.load_model(f"{t / 'usermod.py'}:not_a_module")
    with pytest.raises(ValueError, match="--model: .*no function 'nope'"):
        userload.load_model(f"{t / 'usermod.py'}:nope")
    with pytest.raises(ValueError, match="--arch: expected 'module:function'"):
        userload.resolve_model(str(t / "sd.pt"), arch="no_colon")
    (t / "notes.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="--model: .*not a weights file"):
        userload.resolve_model(str(t / "notes.csv"))
    (t / "folder").mkdir()
    with pytest.raises(ValueError, match="--model: .*no config.json"):
        userload.resolve_model(str(t / "folder"))


def test_hub_id_only_from_the_local_cache(tmp_path, monkeypatch):
    transformers = pytest.importorskip("transformers")
    import huggingface_hub.constants as hc
    cfg = transformers.BertConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                  num_attention_heads=2, max_position_embeddings=16)
    torch.manual_seed(0)
    ref = transformers.BertModel(cfg)
    # the hub cache layout: models--org--name/refs/main -> snapshots/<commit>/
    snap = tmp_path / "hub" / "models--someorg--tiny-bert" / "snapshots" / ("a" * 40)
    ref.save_pretrained(snap)
    (tmp_path / "hub" / "models--someorg--tiny-bert" / "refs").mkdir()
    (tmp_path / "hub" / "models--someorg--tiny-bert" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert userload.resolve_model("someorg/tiny-bert") == ("hf", str(snap))
    got = userload.load_model("someorg/tiny-bert")
    assert got.kind == "encoder" and type(got.model).__name__ == "BertModel" and _same(got.model, ref)
    with pytest.raises(ValueError, match="--model: 'someorg/other' is not a file or folder here, and not a model "
                                         "id in the local Hugging Face cache"):
        userload.resolve_model("someorg/other")
    with pytest.raises(ValueError, match="--model: no such file or folder"):
        userload.resolve_model(str(tmp_path / "a" / "b" / "c"))


# ---------------------------------------------------------------------------------------------- data files
def test_tensor_files(tmp_path):
    x, y = torch.randn(10, 4), torch.arange(10)
    torch.save(x, tmp_path / "x.pt")
    torch.save((x, y), tmp_path / "xy.pt")
    ids, mask = torch.randint(0, 9, (10, 5)), torch.ones(10, 5, dtype=torch.long)
    mask[:, 3:] = 0
    torch.save({"input_ids": ids, "attention_mask": mask, "labels": y}, tmp_path / "d.pt")
    np.savez(tmp_path / "one.npz", x=x.double().numpy())
    d = calibdata.load_data(tmp_path / "x.pt", "--calib", batch_size=4)
    assert d.kind == "tensors" and [b.shape[0] for b in d.batches] == [4, 4, 2] and torch.equal(torch.cat(d.batches), x)
    d = calibdata.load_data(tmp_path / "xy.pt", "--calib", batch_size=4)
    assert isinstance(d.batches[0], tuple) and torch.equal(torch.cat([b[1] for b in d.batches]), y)
    d = calibdata.load_data(tmp_path / "d.pt", "--calib", batch_size=4)
    assert set(d.batches[0]) == {"input_ids", "attention_mask"} and torch.equal(d.labels, y)
    assert torch.equal(torch.cat(d.row_masks), mask.bool())
    d = calibdata.load_data(tmp_path / "one.npz", "--calib", batch_size=16)
    assert d.batches[0].dtype == torch.float32 and torch.allclose(d.batches[0], x)
    torch.save({"a": torch.zeros(3, 2), "b": torch.zeros(4, 2)}, tmp_path / "ragged.pt")
    with pytest.raises(ValueError, match="--eval: .*same number"):
        calibdata.load_data(tmp_path / "ragged.pt", "--eval")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="--calib: .*empty"):
        calibdata.data_kind(tmp_path / "empty.pt", "--calib")
    (tmp_path / "x.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match="--calib: .*unknown format"):
        calibdata.data_kind(tmp_path / "x.csv", "--calib")


def test_image_folder(tmp_path):
    from PIL import Image
    (tmp_path / "im").mkdir()
    rng = np.random.default_rng(0)
    raw = [rng.integers(0, 256, (6, 5, 3), dtype=np.uint8) for _ in range(3)]
    for i, a in enumerate(raw):
        Image.fromarray(a).save(tmp_path / "im" / f"{i}.png")
    (tmp_path / "im" / "notes.txt").write_text("not an image")
    d = calibdata.load_data(tmp_path / "im", "--calib", batch_size=2)
    x = torch.cat(d.batches)
    assert d.kind == "images" and x.shape == (3, 3, 6, 5) and x.dtype == torch.float32
    want = (raw[2][2, 1, 0] / 255 - calibdata.IMAGENET_MEAN[0]) / calibdata.IMAGENET_STD[0]  # image 2, red, (2, 1)
    assert abs(float(x[2, 0, 2, 1]) - want) < 1e-6
    assert calibdata.load_data(tmp_path / "im", "--calib", image_size=4).batches[0].shape == (3, 3, 4, 4)
    Image.fromarray(raw[0][:4]).save(tmp_path / "im" / "3.png")
    with pytest.raises(ValueError, match="--calib: images of different sizes.*--image-size"):
        calibdata.load_data(tmp_path / "im", "--calib")
    (tmp_path / "none").mkdir()
    with pytest.raises(ValueError, match="--eval: .*no image file"):
        calibdata.data_kind(tmp_path / "none", "--eval")


# ---------------------------------------------------------------------------------------------- Python API
def test_python_api_prune_save_load(user, tmp_path):
    t, spec = user
    model = userload.build_from_function(spec)
    dense = userload.build_from_function(spec)
    g = torch.Generator().manual_seed(0)
    calib = [torch.randn(64, 32, generator=g) for _ in range(3)]
    ev = [torch.randn(32, 32, generator=g)]
    res = nn_bridge.oneshot_prune(model, calib, (8, 8), 0.5, min_blocks=16, eval_batches=ev)
    assert [r["name"] for r in res.layers] == ["0", "2"] and res.skipped == {"4": "8 blocks of 8x8 < min_blocks=16"}
    assert all(r["block_sparsity"] == 0.5 for r in res.layers)
    with torch.no_grad():
        cos = nn.functional.cosine_similarity(dense(ev[0]), model(ev[0]), dim=-1)
    assert abs(res.eval["output_cosine"] - float(cos.mean())) < 1e-6
    out = res.save(tmp_path / "pruned")
    with pytest.raises(ValueError, match="model: .*records no architecture"):
        nn_bridge.load_pruned(out)   # a module passed from Python: the architecture is not known by name
    back = nn_bridge.load_pruned(out, model=userload.build_from_function(spec))
    assert _same(back, model)
    rep = json.loads((tmp_path / "pruned" / "report.json").read_text())
    assert rep["pattern"] == "8x8" and rep["method"] == "obs" and rep["eval"]["metric"] == "output_cosine"
    with pytest.raises(ValueError, match="out: .*already exists"):
        res.save(out)
    res.arch = spec
    res.save(out, overwrite=True)
    assert _same(nn_bridge.load_pruned(out), model)
    # N:M through the same entry point
    model2 = userload.build_from_function(spec)
    res2 = nn_bridge.oneshot_prune(model2, calib, "2:4", method="obs")
    assert res2.sparsity == 0.5 and res2.method == "obs" and len(res2.layers) == 3
    for r in res2.layers:
        w = model2.get_submodule(r["name"]).weight
        assert int((w.reshape(w.shape[0], -1, 4) != 0).sum(-1).max()) <= 2


@pytest.mark.parametrize("pattern,sparsity,msg", [
    ("16x", 0.3, "pattern"), ("4:2", None, "N:M"), ("0:4", None, "N:M"), ("16x8", 0.3, "pattern: blocks must be "
                                                                                       "square"),
    ("16x16", None, "sparsity: a block pattern needs"), ("2:4", 0.3, "sparsity: the N:M pattern 2:4 fixes"),
    (16, 0.3, "pattern"), ("dense", None, "pattern")])
def test_pattern_errors(user, pattern, sparsity, msg):
    _, spec = user
    with pytest.raises(ValueError, match=msg):
        nn_bridge.oneshot_prune(userload.build_from_function(spec), [torch.zeros(2, 32)], pattern, sparsity)


def test_pattern_parse_and_layer_choice():
    assert parse_pattern("16x16") == ("block", 16) and parse_pattern((32, 32)) == ("block", 32)
    kind, p = parse_pattern("2:4")
    assert kind == "nm" and (p.n, p.m) == (2, 4)
    emb = nn.Embedding(10, 32)
    head = nn.Linear(32, 10, bias=False)
    head.weight = emb.weight   # a tied LM head
    m = nn.ModuleDict({"emb": emb, "body": nn.Linear(32, 32), "head": head})
    names, skipped = select_layer_names(m, "nm", p)
    assert names == ["body"] and "tied" in skipped["head"]
    assert select_layer_names(m, "nm", p, include=["head"])[0] == ["head"]   # named explicitly: pruned
    assert select_layer_names(m, "nm", p, exclude=["bo*"], include=["*"])[0] == ["head"]
    with pytest.raises(ValueError, match="include: no layer to prune"):
        select_layer_names(m, "nm", p, include=["nothing.*"])
    # the only matching layer does not fit the pattern (M = 3 does not divide 32 inputs; 5x5 blocks do not tile):
    # the pattern is what to change
    for kind_p in (parse_pattern("2:3"), parse_pattern("5x5")):
        with pytest.raises(ValueError, match="^pattern: no layer to prune") as e:
            select_layer_names(m, *kind_p, include=["body"])
        assert "body" in str(e.value)
