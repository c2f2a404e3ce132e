"""grouping.choose_layers, the one layer finder: an exclude predicate, and untileable B x B layers left dense in an
automatic choice (``untileable='skip'``, what ``nn_bridge.oneshot_prune`` uses) but still an error when named."""
import pytest
from torch import nn

from nn_bridge.grouping import choose_layers


def _model():
    return nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 16))


def test_untileable_layers_skip_or_raise():
    m = _model()
    with pytest.raises(ValueError, match=r"^pattern: 16x16 blocks do not tile layer '2'"):
        choose_layers(m, "16x16", min_blocks=1)
    chosen, skipped, explicit = choose_layers(m, "16x16", min_blocks=1, untileable="skip")
    assert list(chosen) == ["0"] and not explicit
    assert skipped == {"2": "16x16 blocks do not tile its 32x24 GEMM matrix",
                       "4": "16x16 blocks do not tile its 24x16 GEMM matrix"}
    # named explicitly: the user asked for that layer, so it stays an error
    with pytest.raises(ValueError, match=r"^pattern: 16x16 blocks do not tile layer '2'"):
        choose_layers(m, "16x16", layers=["0", "2"], min_blocks=1, untileable="skip")
    # pad=True tiles them all
    assert list(choose_layers(m, "16x16", min_blocks=1, pad=True, untileable="skip")[0]) == ["0", "2", "4"]
    # N:M layers never need tiling: the option changes nothing there (M=8 divides 32 and 24)
    assert list(choose_layers(m, "2:8", untileable="skip")[0]) == list(choose_layers(m, "2:8")[0]) == ["0", "2", "4"]
    with pytest.raises(ValueError, match="^untileable: "):
        choose_layers(m, "16x16", untileable="skp")


def test_exclude_takes_names_or_a_predicate():
    m = _model()
    by_name = choose_layers(m, "2:4", exclude=("2",))[0]
    by_pred = choose_layers(m, "2:4", exclude=lambda n: n == "2")[0]
    assert list(by_name) == list(by_pred) == ["0", "4"]
    assert list(choose_layers(m, "2:4", exclude=lambda n: True)[0]) == []
