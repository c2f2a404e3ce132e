"""``python -m nn_bridge prune``: every method runs end to end from the command line under both patterns, reaches
the asked sparsity, and writes its table, JSON report and plot."""
import json

import pytest

from nn_bridge.__main__ import main


@pytest.mark.parametrize("method", ["magnitude", "powerprop", "acdc", "sapp", "oneshot"])
def test_prune_command_end_to_end(method, tmp_path, capsys):
    out, png = tmp_path / "r.json", tmp_path / "p.png"
    rc = main(["prune", "--model", "mlp", "--method", method, "--pattern", "16x16", "--sparsity", "0.5",
               "--steps", "40", "--batch-size", "128", "--json", str(out), "--plot", str(png), "--no-progress"]
              + (["--calib", "512"] if method == "oneshot" else []))
    assert rc == 0
    rep = json.loads(out.read_text())
    assert rep["args"]["method"] == method and rep["args"]["pattern"] == "16x16" and rep["pattern"] == "16x16"
    assert rep["block_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert png.stat().st_size > 1000
    text = capsys.readouterr().out
    assert "validation loss" in text and "plot:" in text


def test_prune_command_bad_sparsity_is_named(capsys):
    rc = main(["prune", "--model", "mlp", "--method", "magnitude", "--sparsity", "1.5", "--steps", "2", "--plot", "",
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--sparsity" in err and "Traceback" not in err
    with pytest.raises(ValueError, match="sparsity"):  # --debug: the exception itself
        main(["prune", "--model", "mlp", "--sparsity", "1.5", "--plot", "", "--debug"])


def test_prune_command_oneshot_layer_cap(tmp_path):
    """--max-layer-sparsity caps every layer of the loss allocation (uncapped, this MLP sends ~90% to fc2)."""
    out = tmp_path / "r.json"
    rc = main(["prune", "--model", "mlp", "--method", "oneshot", "--pattern", "16x16", "--sparsity", "0.5",
               "--steps", "40", "--calib", "512", "--batch-size", "128", "--max-layer-sparsity", "0.55",
               "--json", str(out), "--plot", "", "--no-progress"])
    assert rc == 0
    rep = json.loads(out.read_text())
    assert rep["block_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert max(r["block_sparsity"] for r in rep["rows"]) <= 0.55


def test_prune_block_option_is_a_deprecated_spelling_of_pattern(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["prune", "--model", "mlp", "--method", "magnitude", "--block", "8", "--sparsity", "0.5", "--steps", "4",
               "--json", str(out), "--plot", "", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0 and err.count("\n") == 1 and "--block is deprecated" in err and "--pattern 8x8" in err
    rep = json.loads(out.read_text())
    assert rep["pattern"] == "8x8" and rep["rows"][0]["n_blocks"] == (256 // 8) ** 2
    assert rep["block_sparsity"] == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("method, pattern", [("sapp", "2:4"), ("maxq", "2:4"), ("asp", "1:4"), ("oneshot", "2:4"),
                                             ("srste", "16x16"), ("asp", "16x16")])
def test_prune_command_any_method_under_either_pattern(method, pattern, tmp_path):
    out = tmp_path / "r.json"
    rc = main(["prune", "--model", "mlp", "--method", method, "--pattern", pattern, "--steps", "12",
               "--batch-size", "128", "--json", str(out), "--plot", "", "--no-progress"]
              + (["--sparsity", "0.5"] if "x" in pattern else []) + (["--calib", "256"] if method == "oneshot" else []))
    assert rc == 0
    rep = json.loads(out.read_text())
    assert rep["pattern"] == pattern and rep["exact"]
    if ":" in pattern:  # N kept of every M: exactly, in every layer the method prunes
        n, m = map(int, pattern.split(":"))
        assert all(r["kept"] * m == r["n_groups"] * n and r["violations"] == 0 for r in rep["rows"])
        # the methods' own layer presets: maxq leaves the first and last layer dense, asp needs out % 8 == 0
        own = {"maxq": ["fc2"], "asp": ["fc1", "fc2"]}
        assert [r["name"] for r in rep["rows"]] == own.get(method, ["fc1", "fc2", "fc3"])
    else:
        assert rep["block_sparsity"] == pytest.approx(0.5, abs=0.01)
