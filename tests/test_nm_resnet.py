"""The local ResNet-50 matches torchvision's architecture; parameter / FLOP accounting with MaxQ's coverage."""
import torch
from torch import nn

from nn_bridge.flops import count_params_flops
from nn_bridge.nm.presets import select_layers
from nn_bridge.nm.resnet import RESNET50_PARAMS, ResNet


def test_resnet50_counts_and_maxq_coverage():
    torch.manual_seed(0)
    model = ResNet()
    assert sum(p.numel() for p in model.parameters()) == RESNET50_PARAMS == 25_557_032
    # v1.5: the stride of a downsampling bottleneck sits on the 3x3 conv, not the first 1x1
    assert model.layer2[0].conv1.stride == (1, 1) and model.layer2[0].conv2.stride == (2, 2)
    names, skipped = select_layers(model, 16, "maxq")
    assert len(names) == 52 and set(skipped) == {"conv1", "fc"}
    assert sum("downsample" in n for n in names) == 4
    rep = count_params_flops(model, torch.zeros(1, 3, 224, 224))
    # torchvision's well-known 4.09 GMACs for ResNet-50 at 224x224 (conv + fc)
    assert rep["dense_flops"] == 4_089_184_256 and rep["dense_params"] == RESNET50_PARAMS
    sp = count_params_flops(model, torch.zeros(1, 3, 224, 224), {n: 1 / 16 for n in names})
    conv_w = {n: m.weight.numel() for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    expected = sum(v // 16 if n in names else v for n, v in conv_w.items())
    assert sp["params"] - sp["norm_bias_params"] == expected == 3_522_752  # the paper's 3.52M
    stem = 112 * 112 * 64 * 3 * 49
    assert sp["flops"] == stem + 2048 * 1000 + (rep["dense_flops"] - stem - 2048 * 1000) // 16
