"""2:4 export: clear refusal where the kernels cannot run (CPU here), equivalence with the masked layer on a GPU."""
import pytest
import torch
from torch import nn

from nn_bridge.nm import nm_mask
from nn_bridge.export import (SemiStructuredUnsupported, export_semi_structured, semi_structured_support,
                              to_semi_structured_linear)


def _linear_24(out_f=64, in_f=128, dtype=torch.float16, device="cpu"):
    torch.manual_seed(0)
    lin = nn.Linear(in_f, out_f).to(device=device, dtype=dtype)
    with torch.no_grad():
        lin.weight.mul_(nm_mask(lin.weight, 2, 4).to(dtype))
    return lin


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU message")
def test_cpu_gives_clear_message_and_keeps_layers():
    lin = _linear_24()
    with pytest.raises(SemiStructuredUnsupported, match="no CUDA device"):
        to_semi_structured_linear(lin)
    model = nn.Sequential(_linear_24(), nn.ReLU(), nn.Linear(64, 10))
    status = export_semi_structured(model)
    assert set(status) == {"0", "2"} and all("CUDA" in s for s in status.values())
    assert isinstance(model[0], nn.Linear) and model[0].weight.layout == torch.strided
    with pytest.raises(SemiStructuredUnsupported, match="layer '0'"):
        export_semi_structured(model, strict=True)


def test_reasons_cover_dtype_pattern_shape_and_type():
    dense = nn.Linear(128, 64)  # fp32, not 2:4
    r = " | ".join(semi_structured_support(dense))
    assert "float16 or bfloat16" in r and "not 2:4 sparse" in r
    r = " | ".join(semi_structured_support(_linear_24(out_f=8, in_f=12)))
    assert "multiples of" in r
    assert "only nn.Linear" in semi_structured_support(nn.Conv2d(16, 16, 3))[0]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gpu_export_matches_masked_dense(dtype):
    if torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("needs compute capability >= 8.0")
    lin = _linear_24(256, 512, dtype, "cuda")
    sp = to_semi_structured_linear(lin)  # checks equivalence internally
    x = torch.randn(128, 512, device="cuda", dtype=dtype)
    torch.testing.assert_close(sp(x).float(), lin(x).float(), rtol=2e-2, atol=2e-2)
