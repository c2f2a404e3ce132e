"""Hypothesis fuzzing of the bridge's inputs (issue 14): calibration data, block shapes and N:M patterns, sparsity
targets, tied weights, pruner states and command lines.

Every input is classified by an oracle written from the documented contract (not from the code's behaviour):
valid inputs must give a result whose invariants hold (exactly round((1 - s) n) of n blocks kept per tensor,
exact N:M, finite weights, tied holders sharing one weight, baking that leaves the function unchanged); invalid
inputs must raise a ValueError whose message starts with the argument's name.  Each call runs under a time
limit.  The tally (inputs tried, clear errors, valid results, wrong results, hangs, crashes) is printed at the end
of the module (``pytest -s tests/test_fuzz_bridge.py``).  Tiny models only; the "ci" profile keeps the file well under 60 s.
"""
import contextlib
import io
import math
import re
from collections import Counter

import pytest
import torch
from torch import nn

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from conftest import Hang, examples_scale, time_limit  # noqa: E402
from nn_bridge import make_pruner  # noqa: E402
from nn_bridge.__main__ import main as cli  # noqa: E402
from nn_bridge.nm import is_nm  # noqa: E402
from nn_bridge.pruners import make_pruner  # noqa: E402
from nn_bridge.oneshot import solve_layers  # noqa: E402

TALLY = Counter()
LIMIT_S = 30


def n_examples(k):
    return max(1, int(k * examples_scale()))


@pytest.fixture(scope="module", autouse=True)
def _print_tally():
    yield
    print(f"\nbridge fuzz tally: {dict(TALLY)}")


def outcome(call, expect_error, arg_pattern):
    """Run ``call`` under the time limit and classify it; ``expect_error``: the oracle's verdict (None: either is
    fine); errors must be a ValueError whose message matches ``arg_pattern`` at its start.  Returns the call's
    result (valid inputs) or None (a clear error)."""
    TALLY["tried"] += 1
    try:
        with time_limit(LIMIT_S):
            res = call()
    except Hang:
        TALLY["hang"] += 1
        raise
    except ValueError as e:
        if expect_error is not False and re.match(arg_pattern, str(e)):
            TALLY["clear_error"] += 1
            return None
        TALLY["wrong"] += 1
        raise AssertionError(f"{'unclear' if expect_error else 'unexpected'} error: {e}") from e
    except Exception:
        TALLY["crash"] += 1
        raise
    if expect_error is True:
        TALLY["wrong"] += 1
        raise AssertionError("bad input accepted")
    TALLY["ok"] += 1
    return res


def check_result(ok, counted="ok"):
    """Invariant check of a call's result; a failure moves it from ``counted`` to the wrong results."""
    if not ok:
        TALLY[counted] -= 1
        TALLY["wrong"] += 1
    assert ok


def _mlp(seed=0, widths=(32, 32, 16)):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(widths[0], widths[1]), nn.ReLU(), nn.Linear(widths[1], widths[2]))


def _block_sparsity(w, B):
    r, c = w.shape
    return float((w.reshape(r // B, B, c // B, B).pow(2).sum(dim=(1, 3)) == 0).float().mean())


# ------------------------------------------------------------------------------------------ calibration data
batch_spec = st.fixed_dictionaries({
    "rows": st.sampled_from([0, 1, 3, 8]),
    "width": st.sampled_from([32, 32, 32, 31, 33]),
    "dtype": st.sampled_from([torch.float32, torch.float32, torch.float16, torch.float64, torch.int64]),
    "special": st.sampled_from([None, None, "nan", "inf", "-inf", "zero"]),
    "scale": st.sampled_from([1.0, 1.0, 1e-20, 1e20]),
})


def _make_batch(spec, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(spec["rows"], spec["width"], generator=g, dtype=torch.float64) * spec["scale"]
    if spec["special"] == "zero":
        x.zero_()
    elif spec["special"] is not None and spec["rows"]:
        x[0, 0] = float(spec["special"])
    if spec["dtype"] == torch.int64:
        return torch.randint(0, 4, x.shape, generator=g) * (spec["special"] != "zero")
    return x.to(spec["dtype"])


def _calibration_is_bad(specs, xs):
    """The contract (nn_bridge.calibration): every batch non-empty and finite, batch 0's dtype what the (float32)
    model runs and every batch like batch 0, the right width; some non-zero input (any scale: 1e-20 and 1e20 are
    data like any other)."""
    if any(x.numel() == 0 for x in xs):
        return True
    if any(x.is_floating_point() and not bool(torch.isfinite(x).all()) for x in xs):
        return True
    if any(x.dtype != torch.float32 or x.shape[1] != 32 for x in xs):
        return True
    return all(not bool((x != 0).any()) for x in xs)


@settings(max_examples=n_examples(40))
@given(specs=st.lists(batch_spec, min_size=1, max_size=3), driver=st.sampled_from(["block", "nm"]),
       seed=st.integers(0, 2**16))
def test_fuzz_calibration_data(specs, driver, seed):
    if seed % 2:  # half the cases: well-formed batches (any scale, zero batches allowed), to test the results too
        specs = [{**s, "rows": max(s["rows"], 1), "width": 32, "dtype": torch.float32,
                  "special": "zero" if s["special"] == "zero" else None} for s in specs]
    xs = [_make_batch(s, seed + i) for i, s in enumerate(specs)]
    bad = _calibration_is_bad(specs, xs)
    model = _mlp()
    if driver == "block":
        res = outcome(lambda: solve_layers(model, xs, (8, 8), 0.5, min_blocks=4, progress=False), bad,
                      r"batches(\[\d+\])?: ")
    else:
        res = outcome(lambda: solve_layers(model, xs, "2:4", progress=False), bad, r"batches(\[\d+\])?: ")
    if res is None:
        return
    ws = [model[0].weight.detach(), model[2].weight.detach()]
    fine = all(bool(torch.isfinite(w).all()) for w in ws)
    if driver == "block":
        fine &= all(_block_sparsity(w, 8) == 0.5 for w in ws)
        fine &= all(math.isfinite(v) for v in res.layer_rel_error.values())
    else:
        fine &= all(is_nm(w, 2, 4, exact=True) for w in ws)
        fine &= all(math.isfinite(v) for v in res.layer_rel_error.values())
    check_result(fine)


# ------------------------------------------------------------------------------------------ block shapes, N:M patterns
@settings(max_examples=n_examples(30))
@given(block=st.one_of(st.integers(-2, 40), st.sampled_from([2.5, "8", None, True, 8.0])), pad=st.booleans(),
       how=st.sampled_from(["oneshot", "magnitude", "sapp"]))
def test_fuzz_block_shapes(block, pad, how):
    """Layers 32x32 and 32->16: an int B >= 1 is valid iff it divides 32 and 16, or pad=True (one-shot: the pattern
    (B, B); the pruners: the block argument)."""
    is_int = isinstance(block, int) and not isinstance(block, bool)
    bad = not (is_int and block >= 1 and (pad or 16 % block == 0))
    if block is None and how != "oneshot":
        bad = False  # the pruners' default block (16) tiles both layers
    model, x = _mlp(), torch.randn(16, 32)
    if how == "oneshot":
        call = lambda: solve_layers(model, [x], (block, block), 0.5, min_blocks=1, pad=pad, progress=False)  # noqa
    else:
        call = lambda: make_pruner(how, model, 0.5, block, total_steps=1, min_blocks=1, pad=pad)  # noqa: E731
    # the one driver names 'block' for B x B blocks that do not tile a layer (its find_prunable), else 'pattern'
    res = outcome(call, bad, r"(block|model): " if how != "oneshot" else r"(pattern|block|model): ")
    if res is None:
        return
    if how != "oneshot":
        res.step()
        res.finalize()
    tilings = res.tilings
    fine = True
    for t in tilings:
        w = model.get_submodule(t.name).weight.detach()
        kept = int((t.block_sq_norms(w) > 0).sum())
        fine &= kept == round(0.5 * t.n_blocks)
    check_result(fine)


@settings(max_examples=n_examples(30))
@given(n=st.integers(-1, 9), m=st.integers(-1, 17), form=st.sampled_from(["str", "tuple", "junk"]),
       how=st.sampled_from(["oneshot", "srste", "asp"]))
def test_fuzz_nm_patterns(n, m, form, how):
    """Inputs of 32: 'N:M' is valid iff 0 < N < M and M divides 32 (a pair is a B x B block shape)."""
    pattern = {"str": f"{n}:{m}", "tuple": (n, m), "junk": f"{n}-{m}"}[form]
    bad = form == "junk" or not (0 < n < m and m >= 2 and 32 % m == 0)
    model, x = _mlp(), torch.randn(16, 32)
    if how == "oneshot":
        call = lambda: solve_layers(model, [x], pattern, progress=False)  # noqa: E731
    else:
        call = lambda: make_pruner(how, model, pattern=pattern, layers="all")  # noqa: E731
    names = "pattern|N:M|model|layers|layer '[^']*'"
    if form == "tuple":
        # the one driver and make_pruner read a pair as a B x B block shape: a non-square pair is refused, a square
        # one needs a sparsity; either error names its argument
        bad, names = True, names + "|sparsity"
    res = outcome(call, bad, rf"({names}): ")
    if res is None:
        return
    if how != "oneshot":
        res.step()
        res.finalize()
    check_result(all(is_nm(model[i].weight, n, m, exact=True) for i in (0, 2)))


# ------------------------------------------------------------------------------------------ sparsity targets
@settings(max_examples=n_examples(40))
@given(s=st.one_of(st.floats(-0.5, 1.5), st.sampled_from([float("nan"), float("inf"), -0.0, 0.0, 0.999, 1.0,
                                                          1, 0, True, False, "0.5", None, [0.5]])),
       how=st.sampled_from(["oneshot", "oneshot_loss", "magnitude", "acdc"]))
def test_fuzz_sparsity(s, how):
    """A sparsity is a real number in [0, 1) (not a bool or a string); every layer then keeps exactly
    round((1 - s) n) of its n blocks (uniform) or the layers together do (loss allocation; a target the per-layer
    cap max_layer_sparsity cannot reach is an error)."""
    real = isinstance(s, (int, float)) and not isinstance(s, bool)
    bad = not (real and 0 <= s < 1)
    if how == "oneshot_loss" and not bad:  # 16 + 8 blocks, each layer capped at floor(0.999 n): 15 + 7
        bad = 24 - round((1 - s) * 24) > 22
    model, xs = _mlp(), [torch.randn(16, 32), torch.randn(16, 32)]
    if how.startswith("oneshot"):
        alloc = "loss" if how == "oneshot_loss" else "uniform"
        call = lambda: solve_layers(model, xs, (8, 8), s, min_blocks=4, allocation=alloc,  # noqa: E731
                                    max_layer_sparsity=0.999, progress=False)
    else:
        call = lambda: make_pruner(how, model, s, 8, total_steps=1, min_blocks=4)  # noqa: E731
    res = outcome(call, bad, r"(max_layer_)?sparsity: ")
    if res is None:
        return
    if how in ("magnitude", "acdc"):
        res.step()
        res.finalize()
    kept = [int((t.block_sq_norms(model.get_submodule(t.name).weight.detach()) > 0).sum()) for t in res.tilings]
    n = [t.n_blocks for t in res.tilings]
    if how == "oneshot_loss":
        check_result(sum(kept) == round((1 - s) * sum(n)))
    else:
        check_result(all(k == round((1 - s) * nb) for k, nb in zip(kept, n)))


# ------------------------------------------------------------------------------------------ tied weights
def _same_weight(a, b):
    """One weight Parameter (and, while masked, one mask parametrization) behind both modules."""
    pa, pb = getattr(a, "parametrizations", None), getattr(b, "parametrizations", None)
    if pa is None or pb is None:
        return pa is None and pb is None and a.weight is b.weight
    return pa.weight.original is pb.weight.original and pa.weight[0] is pb.weight[0]


class Chain(nn.Module):
    """Three 32x32 Linears; ``ties`` lists tuples of layers sharing one weight Parameter."""

    def __init__(self, ties, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.l0, self.l1, self.l2 = nn.Linear(32, 32), nn.Linear(32, 32), nn.Linear(32, 32)
        for group in ties:
            for j in group[1:]:
                getattr(self, f"l{j}").weight = getattr(self, f"l{group[0]}").weight

    def forward(self, x):
        return self.l2(torch.tanh(self.l1(torch.tanh(self.l0(x)))))


@settings(max_examples=n_examples(25))
@given(ties=st.sampled_from([(), ((0, 1),), ((1, 2),), ((0, 2),), ((0, 1, 2),)]),
       how=st.sampled_from(["oneshot", "nm_oneshot", "magnitude", "powerprop", "acdc", "sapp", "maxq", "srste",
                            "asp"]))
def test_fuzz_tied_weights(ties, how):
    model = Chain(ties)
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(16, 32, generator=g) for _ in range(2)]
    names = ["l0", "l1", "l2"]
    if how == "oneshot":
        call = lambda: solve_layers(model, xs, (8, 8), 0.5, min_blocks=4, progress=False)  # noqa: E731
    elif how == "nm_oneshot":
        call = lambda: solve_layers(model, xs, "2:4", include=names, progress=False)  # noqa: E731
    elif how in ("maxq", "srste", "asp"):
        kw = dict(steps_per_epoch=1, start=0, end=2) if how == "maxq" else {}
        call = lambda: make_pruner(how, model, pattern="2:4", layers=names, **kw)  # noqa: E731
    else:
        call = lambda: make_pruner(how, model, 0.5, 8, total_steps=6, min_blocks=4)  # noqa: E731
    res = outcome(call, False, "")
    fine = True
    if how not in ("oneshot", "nm_oneshot"):
        opt = torch.optim.SGD([q for q in model.parameters()], lr=0.05)
        for step in range(6):
            model(xs[step % 2]).pow(2).mean().backward()
            opt.step()
            opt.zero_grad()
            res.step()
        with torch.no_grad():
            before = model(xs[0])
        res.finalize()
        with torch.no_grad():
            fine &= bool(torch.allclose(model(xs[0]), before, rtol=1e-5, atol=1e-6))
    for group in ties:
        fine &= all(_same_weight(getattr(model, f"l{j}"), getattr(model, f"l{group[0]}")) for j in group)
    for name in names:
        w = getattr(model, name).weight.detach()
        fine &= bool(torch.isfinite(w).all())
        fine &= is_nm(w, 2, 4, exact=True) if how in ("nm_oneshot", "maxq", "srste", "asp") else \
            _block_sparsity(w, 8) == 0.5
    check_result(fine)


# ------------------------------------------------------------------------------------------ pruner states
_junk = st.one_of(st.none(), st.integers(-3, 5), st.floats(allow_nan=True), st.text(max_size=3),
                  st.lists(st.integers(0, 3), max_size=2), st.just(torch.zeros(2)), st.booleans())


def _pruner(method):
    model = _mlp()
    if method in ("maxq", "srste", "asp"):
        kw = dict(steps_per_epoch=1, start=0, end=2) if method == "maxq" else {}
        return make_pruner(method, model, pattern="2:4", layers="all", **kw)
    return make_pruner(method, model, 0.5, 8, total_steps=4, min_blocks=4)


@settings(max_examples=n_examples(60))
@given(method=st.sampled_from(["magnitude", "powerprop", "acdc", "sapp", "maxq", "srste", "asp"]),
       source=st.sampled_from(["magnitude", "sapp", "maxq", "asp"]), data=st.data())
def test_fuzz_pruner_state(method, source, data):
    """Any dict (a mutated state of this or another pruner): either it loads and the pruner's state then equals
    it exactly, or a ValueError naming ``state``."""
    state = dict(_pruner(source).state_dict())
    for key in data.draw(st.lists(st.sampled_from(sorted(state)), max_size=2, unique=True)):
        op = data.draw(st.sampled_from(["drop", "replace", "keep"]))
        if op == "drop":
            del state[key]
        elif op == "replace":
            state[key] = data.draw(_junk)
    for key in data.draw(st.lists(st.sampled_from(["extra", "step", "phase", "epoch_override"]), max_size=1)):
        state[key] = data.draw(_junk)
    pr = _pruner(method)
    loaded = outcome(lambda: pr.load_state_dict(state) or True, None, r"state(\['\w+'\])?: ")
    if loaded:
        mine = pr.state_dict()
        try:
            same = set(mine) == set(state) and all(type(mine[k]) is type(state[k]) for k in mine) and mine == state
        except RuntimeError:  # a tensor compared to a list: it was accepted, so it is wrong
            same = False
        check_result(same)


# ------------------------------------------------------------------------------------------ command lines
POS_INT = ["0", "-1", "abc", "1.5", "", "nan", "1e3"]
FRACTION = ["1", "1.0", "-0.1", "nan", "inf", "abc", ""]
POS_FLOAT = ["0", "-1", "nan", "inf", "x", ""]
NONNEG_FLOAT = ["-1e-9", "nan", "-inf", "x"]
PRUNE_BAD = {
    **{o: POS_INT for o in ("--block", "--steps", "--calib", "--min-blocks", "--batch-size")},
    **{o: FRACTION for o in ("--sparsity", "--max-layer-sparsity")},
    "--lr": POS_FLOAT, "--damp": NONNEG_FLOAT,
    **{o: ["nope", "", "MLP"] for o in ("--model", "--method", "--scope", "--allocation", "--preset")},
    **{o: ["{tmp}/no_dir/out.x", "{tmp}"] for o in ("--plot", "--json", "--save")},
}
NM_BAD = {
    ("count", "--pattern"): ["2:2", "0:4", "a:b", "2-4", ""], ("count", "--size"): POS_INT,
    ("count", "--top"): POS_INT, ("count", "--preset"): ["nope"], ("digits", "--epochs"): POS_INT,
    ("digits", "--threads"): POS_INT, ("digits", "--method"): ["nope"], ("digits", "--pattern"): ["4:4", "x"],
    ("check", "--pattern"): ["5:4", "1:1"],
}


def _run_cli(argv):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        rc = cli(argv)
    return rc, err.getvalue()


def cli_outcome(argv):
    """``outcome`` for a command line: exit code 2 counts as an error (checked by the caller for clarity)."""
    rc, err = outcome(lambda: _run_cli(argv), None, "")
    if rc == 2:
        TALLY["ok"] -= 1
        TALLY["clear_error"] += 1
    return rc, err


@settings(max_examples=n_examples(80))
@given(data=st.data(), kind=st.sampled_from(["prune", "prune", "nm", "unknown", "missing_value"]))
def test_fuzz_cli_arguments(tmp_path_factory, data, kind):
    """One bad option among good ones: exit code 2, one line on stderr naming the option, before any work."""
    tmp = str(tmp_path_factory.getbasetemp())
    good_pt = f"{tmp}/good.pt"
    torch.save({"0.weight": torch.zeros(8, 16)}, good_pt)
    base = ["prune", "--model", "mlp", "--steps", "2", "--plot", "", "--no-progress"]
    if kind == "prune":
        opt = data.draw(st.sampled_from(sorted(PRUNE_BAD)))
        val = data.draw(st.sampled_from(PRUNE_BAD[opt])).format(tmp=tmp)
        argv, named = base + [opt, val], opt
    elif kind == "nm":
        sub, opt = data.draw(st.sampled_from(sorted(NM_BAD)))
        val = data.draw(st.sampled_from(NM_BAD[(sub, opt)]))
        argv = ["nm", sub] + ([good_pt] if sub == "check" else []) + [opt, val]
        named = opt
    elif kind == "unknown":
        named = "--" + data.draw(st.text("xyzqw", min_size=3, max_size=6))
        argv = base + [named, "1"]
    else:
        named = data.draw(st.sampled_from(sorted(o for o in PRUNE_BAD)))
        argv = base + [named]
    rc, err = cli_outcome(argv)
    check_result(rc == 2 and err.count("\n") == 1 and named in err and "Traceback" not in err
                 and err.startswith("python -m nn_bridge"), "clear_error" if rc == 2 else "ok")


def _saved(legacy):
    buf = io.BytesIO()
    torch.save(nn.Sequential(nn.Linear(16, 8)).state_dict(), buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=n_examples(30))
@given(legacy=st.booleans(), cut=st.floats(0, 1), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)),
                                                                    max_size=4),
       junk=st.one_of(st.none(), st.binary(max_size=300)))
def test_fuzz_nm_check_files(tmp_path_factory, legacy, cut, flips, junk):
    """A truncated, bit-flipped or random file: ``count`` (formerly ``nm check``) reports it (exit 0 / 1 when it still
    loads as a state dict) or says in one line that it cannot read that file (exit 2); never a traceback."""
    data = bytearray(_saved(legacy) if junk is None else junk)
    data = data[:int(round(cut * len(data)))] if cut < 0.5 else data
    for where, byte in flips:
        if data:
            data[min(int(where * len(data)), len(data) - 1)] = byte
    f = tmp_path_factory.mktemp("ck") / "model.pt"
    f.write_bytes(bytes(data))
    rc, err = cli_outcome(["count", str(f), "--pattern", "2:4", "--strict"])
    check_result(rc in (0, 1) and err == "" or rc == 2 and err.count("\n") == 1 and str(f) in err
                 and err.startswith("python -m nn_bridge count: error: "), "clear_error" if rc == 2 else "ok")
