"""One CLI, ``python -m nn_bridge prune|oneshot|count|export``: every command refuses wrong arguments with exit 2
and one line naming the option as typed (no traceback); ``count`` and ``export`` on saved models, checked against
counts made here from the weights."""
import json

import pytest
import torch
from torch import nn

from nn_bridge.__main__ import main
from nn_bridge.nm import nm_mask


def _one_line_error(capsys, rc, *needles):
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


@pytest.fixture
def saved(tmp_path):
    """A 2:4 model saved as a .pt state_dict and as a folder with model.safetensors (an oneshot output folder)."""
    from safetensors.torch import save_model
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 6))
    with torch.no_grad():
        for i in (0, 2):
            model[i].weight.mul_(nm_mask(model[i].weight, 2, 4))
        model[4].weight.view(6, 4, 4)[:, :, 1:] = 0  # 1:4, so also 2:4
    pt = tmp_path / "model.pt"
    torch.save(model.state_dict(), pt)
    folder = tmp_path / "pruned"
    folder.mkdir()
    save_model(model, str(folder / "model.safetensors"))
    return model, pt, folder


BAD = [
    (["prune", "--pattern", "16x"], "--pattern"),
    (["prune", "--pattern", "4:2"], "--pattern"),
    (["prune", "--pattern", "0:4"], "--pattern"),
    (["prune", "--sparsity", "1.5"], "--sparsity"),
    (["prune", "--model", "mlp", "--method", "dense"], "--method"),
    (["prune", "--pattern", "2:4", "--model", "mlp", "--scope", "global"], "--scope"),
    (["prune", "--model", "cnn", "--pattern", "8x8", "--min-blocks", "10", "--steps", "1", "--plot", ""], "--pad"),
    (["prune", "--pattern", "2:4", "--sparsity", "0.3"], "--sparsity"),
    (["prune", "--pattern", "16x16", "--method", "maxq"], "--method"),
    (["prune", "--pattern", "2:4", "--method", "sapp"], "--method"),
    (["prune", "--pattern", "16x16", "--model", "digits"], "--model"),
    (["prune", "--steps", "0"], "--steps"),
    (["prune", "--unknown"], "--unknown"),
    (["oneshot", "--model", "m", "--calib", "c", "--out", "o"], "--pattern"),
    (["oneshot", "--pattern", "2:4", "--model", "m", "--calib", "c", "--out", "o", "--sparsity", "2"], "--sparsity"),
    (["count"], "--pattern"),
    (["count", "--pattern", "16x"], "--pattern"),
    (["count", "--pattern", "3:3"], "--pattern"),
    (["count", "--pattern", "16x16"], "--sparsity"),
    (["count", "--pattern", "2:4", "--sparsity", "0.3"], "--sparsity"),
    (["count", "--pattern", "2:4", "--size", "-1"], "--size"),
    (["count", "no_such_file.pt", "--pattern", "2:4"], "no such file"),
    (["export", "--pattern", "2:4", "--out", "x.pt"], "path"),
    (["export", "no_such_file.pt", "--pattern", "2:4", "--out", "x.pt"], "no such file"),
    (["export", "m.pt", "--pattern", "2:4"], "--out"),
    (["export", "m.pt", "--pattern", "2x4", "--out", "x.pt"], "--pattern"),
    (["export", "m.pt", "--pattern", "2:4", "--out", "/no/such/folder/x.pt"], "--out"),
    (["nm", "count", "--pattern", "4:4"], "--pattern"),
    (["nm", "check"], "path"),
    ([], "a subcommand is required"),
    (["frobnicate"], "unknown subcommand"),
]


@pytest.mark.parametrize("argv, needle", BAD, ids=[" ".join(a) or "nothing" for a, _ in BAD])
def test_wrong_arguments_exit_2_with_one_line(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.pt").write_bytes(b"")
    _one_line_error(capsys, main(argv), needle)


def test_debug_shows_the_exception(capsys):
    with pytest.raises(ValueError, match="--sparsity"):
        main(["count", "--pattern", "16x16", "--debug"])


def test_count_saved_model_report_and_strict(saved, capsys):
    model, pt, folder = saved
    for path in (pt, folder):
        assert main(["count", str(path), "--pattern", "2:4", "--strict"]) == 0
        assert "3 tensors checked, 0 not 2:4" in capsys.readouterr().out
    assert main(["count", str(pt), "--pattern", "1:4", "--strict"]) == 1  # layers 0 and 2 keep 2 of 4
    out = capsys.readouterr().out
    assert "3 tensors checked, 2 not 1:4" in out and "VIOLATED" in out
    assert main(["count", str(pt), "--pattern", "1:4", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    w = model[0].weight
    windows = (w.reshape(-1, 4) != 0).sum(1)
    assert rep["rows"][0]["violations"] == int((windows > 1).sum()) > 0
    assert rep["rows"][2]["kept_fraction"] == pytest.approx(float((model[4].weight != 0).float().mean()))
    ws = [model[i].weight for i in (0, 2, 4)]
    assert rep["model_sparsity"] == pytest.approx(sum(int((x == 0).sum()) for x in ws) / sum(x.numel() for x in ws))
    assert main(["count", str(pt), "--pattern", "1:4", "--include", "4", "--strict"]) == 0  # the 1:4 layer alone
    assert "1 tensors checked, 0 not 1:4" in capsys.readouterr().out
    _one_line_error(capsys, main(["count", str(pt), "--pattern", "1:4", "--include", "enc*", "--strict"]),
                    "--strict: no tensor", "matching --include")
    # block pattern with a budget: 8x8 tiles of the 32x64 weight, none all-zero under 2:4, so 30% cannot hold
    assert main(["count", str(pt), "--pattern", "8x8", "--sparsity", "0.3", "--strict"]) == 1
    assert "not 8x8" in capsys.readouterr().out


def test_count_resnet_json(capsys):
    assert main(["count", "--pattern", "1:16", "--size", "32", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["params"] == 3576872  # 3,522,752 conv/fc weights at 1/16 (maxq preset) + 54,120 BN/bias parameters
    assert main(["count", "--pattern", "16x16", "--sparsity", "0.5", "--size", "32", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["dense_params"] == 25557032 and rep["params"] < rep["dense_params"]


@pytest.mark.parametrize("pattern", ["2:4", "8x8"])
def test_export_writes_a_sparse_file_that_reads_back(saved, pattern, tmp_path, capsys):
    from nn_bridge.export import load_exported_state
    model, pt, folder = saved
    if pattern == "8x8":
        with torch.no_grad():
            model[0].weight[:8, :16] = 0  # 2 of 32 tiles all-zero
        torch.save(model.state_dict(), pt)
    out = tmp_path / "sparse.pt"
    assert main(["export", str(pt), "--pattern", pattern, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("3 of 3 weights stored 2:4 sparse" if pattern == "2:4" else
                           "1 of 3 weights stored 8x8 sparse")
    state = load_exported_state(torch.load(out, weights_only=True))
    ref = model.state_dict()
    assert state.keys() == ref.keys() and all(torch.equal(state[k], ref[k]) for k in ref)


def test_export_strict_and_include(saved, tmp_path, capsys):
    model, pt, folder = saved
    out = tmp_path / "o.pt"
    rc = main(["export", str(folder), "--pattern", "1:4", "--out", str(out), "--strict"])
    _one_line_error(capsys, rc, "--strict: '0.weight'", "not 1:4 sparse")
    assert not out.exists()
    assert main(["export", str(folder), "--pattern", "1:4", "--out", str(out), "--include", "4"]) == 0
    assert capsys.readouterr().out.startswith("1 of 1 weights stored 1:4 sparse")
    _one_line_error(capsys, main(["export", str(pt), "--pattern", "1:4", "--out", str(out), "--include", "enc*"]),
                    "--include")


def test_prune_nm_digits_end_to_end(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["prune", "--pattern", "2:4", "--method", "srste", "--epochs", "1", "--json", str(out), "--plot", "",
               "--no-progress"])
    assert rc == 0
    rep = json.loads(out.read_text())
    assert rep["exact"] and rep["n_layers"] == 3 and rep["kept_fraction"] == 0.5
    assert all(r["kept"] * 2 == r["n_groups"] for r in rep["rows"])  # SR-STE keeps exactly N of every M
    assert 0.1 < rep["test_accuracy"] <= 1.0 and rep["args"]["pattern"] == "2:4"
