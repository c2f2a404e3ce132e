"""``python -m nn_bridge nm ...`` through nn_bridge.nm.cli.main."""
import torch
from torch import nn

from nn_bridge.nm import nm_mask
from nn_bridge.nm.cli import main


def test_check_command(tmp_path, capsys):
    lin = nn.Linear(16, 8)
    with torch.no_grad():
        lin.weight.mul_(nm_mask(lin.weight, 2, 4))
    good = tmp_path / "good.pt"
    torch.save(nn.Sequential(lin).state_dict(), good)
    assert main(["check", str(good), "--pattern", "2:4", "--strict"]) == 0
    assert "0 not 2:4" in capsys.readouterr().out
    bad = tmp_path / "bad.pt"
    torch.save(nn.Sequential(nn.Linear(16, 8)).state_dict(), bad)
    assert main(["check", str(bad), "--pattern", "2:4", "--strict"]) == 1
    assert main(["check", str(bad), "--pattern", "4:4"]) == 2  # clear error, exit 2
    err = capsys.readouterr().err
    assert "N >= M" in err and "--pattern" in err and err.count("\n") == 1


def test_count_command_json(capsys):
    assert main(["count", "--pattern", "1:16", "--size", "32", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"params": 3576872' in out  # 3,522,752 conv/fc weights + 54,120 BN/bias parameters


def test_forwarded_by_nn_bridge_main(capsys):
    import nn_bridge.__main__ as m
    assert m.main(["nm", "count", "--pattern", "2:4", "--size", "32", "--json"]) == 0
