"""One export for both patterns (nn_bridge.export): sparse state_dicts that read back to the same dense weights,
BSR modules with the same outputs, N:M compression on Linear and conv weights, and refusals that say why."""
import io
import warnings

import pytest
import torch
from torch import nn

from nn_bridge.export import (EXPORTED, export_model, export_state_dict, load_exported_state, nm_compress,
                              nm_decompress)
from nn_bridge.nm import nm_mask


def _nm_model(n=2, m=4):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 4 * 4, 32), nn.ReLU(),
                          nn.Linear(32, 10))
    with torch.no_grad():
        for i in (0, 3):
            model[i].weight.mul_(nm_mask(model[i].weight, n, m))
    return model  # model[5] stays dense


def _roundtrip(sd):
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # BSR is beta
        torch.save(sd, f)
        f.seek(0)
        return torch.load(f, weights_only=True), f.getbuffer().nbytes


@pytest.mark.parametrize("n, m", [(2, 4), (1, 4), (3, 8)])
def test_nm_compress_roundtrip_exact(n, m):
    model = _nm_model(n, m)
    for mod in (model[0], model[3]):
        w = mod.weight.detach()
        vals, idx = nm_compress(w, f"{n}:{m}")
        assert vals.shape == idx.shape == (w.numel() // m, n) and idx.dtype == torch.uint8 and int(idx.max()) < m
        assert torch.equal(nm_decompress(vals, idx, w.shape, f"{n}:{m}"), w)
    with pytest.raises(ValueError, match=r"^3: .* more than 1 non-zeros"):
        nm_compress(model[3].weight, "1:4" if n > 1 else "1:8", "3")


def test_nm_state_dict_reads_back_dense_and_is_smaller():
    model = _nm_model()
    sd, status = export_state_dict(model, "2:4")
    assert status["0.weight"] == status["3.weight"] == EXPORTED and "not 2:4 sparse" in status["5.weight"]
    assert set(status) == {"0.weight", "3.weight", "5.weight"}  # biases are not weights the pattern describes
    loaded, nbytes = _roundtrip(sd)
    dense = load_exported_state(loaded)
    ref = model.state_dict()
    assert dense.keys() == ref.keys() and all(torch.equal(dense[k], ref[k]) for k in ref)
    _, dense_bytes = _roundtrip(ref)
    w = model[0].weight.numel() + model[3].weight.numel()
    # half the float32 values dropped, one uint8 index per kept value added: saves 4 * w/2 - w/2 bytes
    assert dense_bytes - nbytes == pytest.approx(1.5 * w, rel=0.05)
    fresh = _nm_model()
    with torch.no_grad():
        for p in fresh.parameters():
            p.zero_()
    fresh.load_state_dict(dense)
    x = torch.randn(2, 8, 6, 6)
    assert torch.equal(fresh(x), model(x))


def test_block_state_dict_and_modules():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    with torch.no_grad():
        model[0].weight[:16, :48] = 0  # 3 of the 8 16x16 tiles
    sd, status = export_state_dict(model.state_dict(), "16x16")  # a state_dict alone does as well
    assert status["0.weight"] == EXPORTED and "that 16x16 blocks tile; shape (10, 32)" in status["2.weight"]
    assert sd["0.weight"].layout == torch.sparse_bsr and sd["0.weight"].values().shape[0] == 5
    loaded, _ = _roundtrip(sd)
    ref = model.state_dict()
    dense = load_exported_state(loaded)
    assert all(torch.equal(dense[k], ref[k]) for k in ref)
    x = torch.randn(5, 64)
    y = model(x).detach()
    done = export_model(model, (16, 16))
    assert done["0"] == EXPORTED and "do not tile a 10x32 Linear" in done["2"]
    assert type(model[0]).__name__ == "BSRLinear" and model[0].n_stored_blocks == 5
    torch.testing.assert_close(model(x), y, rtol=1e-5, atol=1e-5)


def test_refusals_name_the_argument():
    model = _nm_model()
    with pytest.raises(ValueError, match=r"^keys: '5.weight' cannot be stored 2:4 sparse: .*not 2:4 sparse"):
        export_state_dict(model, "2:4", strict=True)
    with pytest.raises(ValueError, match=r"^keys: 'fc.weight' is not in the state_dict"):
        export_state_dict(model, "2:4", keys=["fc.weight"])
    with pytest.raises(ValueError, match=r"^pattern: only 2:4 has sparse kernels"):
        export_model(model, "1:4")
    with pytest.raises(ValueError, match="pattern"):
        export_state_dict(model, "16x")
    with pytest.raises(ValueError, match="^state: not an nn_bridge export"):
        load_exported_state(model.state_dict())


def test_old_import_path_still_works():
    import nn_bridge.export as new
    import nn_bridge.nm.export as old
    assert old.to_semi_structured_linear is new.to_semi_structured_linear
    assert old.SemiStructuredUnsupported is new.SemiStructuredUnsupported


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_export_model_2of4_on_gpu_keeps_the_outputs():
    if torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("needs compute capability >= 8.0")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 128)).to("cuda", torch.float16)
    with torch.no_grad():
        for i in (0, 2):
            model[i].weight.mul_(nm_mask(model[i].weight, 2, 4).to(torch.float16))
    x = torch.randn(64, 512, device="cuda", dtype=torch.float16)
    ref = model(x).float()
    assert export_model(model, "2:4") == {"0": EXPORTED, "2": EXPORTED}
    torch.testing.assert_close(model(x).float(), ref, rtol=2e-2, atol=2e-2)
