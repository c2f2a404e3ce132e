"""``python -m nn_bridge nm ...``: deprecated for one release; each command still runs, through the command that
replaced it, after one line on stderr naming that command."""
import torch
from torch import nn

from nn_bridge.nm import nm_mask
from nn_bridge.nm.cli import main, translate


def _deprecation(capsys, new):
    captured = capsys.readouterr()
    first = captured.err.splitlines()[0]
    assert "is deprecated" in first and f"use: python -m nn_bridge {new}" in first
    return captured


def test_check_command(tmp_path, capsys):
    lin = nn.Linear(16, 8)
    with torch.no_grad():
        lin.weight.mul_(nm_mask(lin.weight, 2, 4))
    good = tmp_path / "good.pt"
    torch.save(nn.Sequential(lin).state_dict(), good)
    assert main(["check", str(good), "--pattern", "2:4", "--strict"]) == 0
    out = _deprecation(capsys, f"count {good} --pattern 2:4 --strict").out
    assert "1 tensors checked, 0 not 2:4" in out
    bad = tmp_path / "bad.pt"
    torch.save(nn.Sequential(nn.Linear(16, 8)).state_dict(), bad)
    assert main(["check", str(bad), "--pattern", "2:4", "--strict"]) == 1
    assert "1 tensors checked, 1 not 2:4" in _deprecation(capsys, "count").out
    assert main(["check", str(bad), "--pattern", "4:4"]) == 2  # clear error, exit 2, before any deprecation line
    err = capsys.readouterr().err
    assert "N >= M" in err and "--pattern" in err and err.count("\n") == 1


def test_count_command_json(capsys):
    assert main(["count", "--pattern", "1:16", "--size", "32", "--json"]) == 0
    out = _deprecation(capsys, "count --pattern 1:16 --layers maxq --size 32 --top 10 --json").out
    assert '"params": 3576872' in out  # 3,522,752 conv/fc weights + 54,120 BN/bias parameters


def test_digits_translates_to_prune():
    assert translate(["digits", "--method", "srste", "--pattern", "1:4", "--preset", "srste", "--epochs", "3"]) == [
        "prune", "--model", "digits", "--method", "srste", "--pattern", "1:4", "--layers", "srste", "--epochs", "3",
        "--seed", "0", "--threads", "1", "--plot", "", "--no-progress"]


def test_forwarded_by_nn_bridge_main(capsys):
    import nn_bridge.__main__ as m
    assert m.main(["nm", "count", "--pattern", "2:4", "--size", "32", "--json"]) == 0
    _deprecation(capsys, "count --pattern 2:4")
