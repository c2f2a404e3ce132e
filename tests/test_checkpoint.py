"""solve_path checkpoints (issue 14, 'Unsafe or stale loading' and 'Crashes'): data not code, atomic under a unique
temporary name, refused with an error naming the file when they belong to another problem or are damaged, and a
resumed path equal to an uninterrupted one."""
import json
import multiprocessing
import os
import pickle
import zipfile

import numpy as np
import pytest

import groupsparse as gs
import groupsparse.api as api
from groupsparse.checkpoint import (CheckpointError, fingerprint, load_npz_json, save_npz_json,
                                    solution_from_record, solution_record)

rng = np.random.default_rng(3)
X = rng.normal(size=(40, 12))
y = X[:, :3] @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=40)
GROUPS = [3, 3, 3, 3]
N_LAM = 6


def _path(loss=None, penalty=None, groups=GROUPS, **kw):
    loss = gs.LeastSquares(X, y, fit_intercept=True) if loss is None else loss
    penalty = gs.GroupLasso(1.0) if penalty is None else penalty
    kw.setdefault("n_lambdas", N_LAM)
    return gs.solve_path(loss, penalty, groups, tol=1e-10, **kw)


def _interrupt_after(monkeypatch, n):
    """Make solve_path's n+1-th solve raise, as a killed run would stop."""
    real, calls = api.solve, []

    def solve(*a, **k):
        if len(calls) == n:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*a, **k)
    monkeypatch.setattr(api, "solve", solve)


@pytest.mark.parametrize("penalty", [gs.GroupLasso(1.0), gs.GroupMCP(1.0, gamma=3.0)], ids=lambda p: p.name)
def test_resume_gives_the_uninterrupted_path(tmp_path, monkeypatch, penalty):
    ref = _path(penalty=penalty)
    ck = tmp_path / "path.ckpt"
    with monkeypatch.context() as m:
        _interrupt_after(m, 3)
        with pytest.raises(KeyboardInterrupt):
            _path(penalty=penalty, checkpoint=ck)
    meta, arrays = load_npz_json(ck, api._CKPT_FORMAT, api._CKPT_VERSION)
    assert len(meta["solutions"]) == 3  # saved after every lambda
    solved = []
    real = api.solve
    monkeypatch.setattr(api, "solve", lambda *a, **k: solved.append(1) or real(*a, **k))
    res = _path(penalty=penalty, checkpoint=ck)
    assert len(solved) == N_LAM - 3  # only the missing lambdas are solved
    assert len(res) == len(ref) == N_LAM
    for a, b in zip(res, ref):  # warm starts restored bit for bit, so the continued path is the same computation
        np.testing.assert_array_equal(a.coef, b.coef)
        np.testing.assert_array_equal(a.intercept, b.intercept)
        np.testing.assert_array_equal(a.support, b.support)
        assert (a.lam, a.objective, a.certificate, a.converged, a.n_iter, a.certificate_kind) == \
            (b.lam, b.objective, b.certificate, b.converged, b.n_iter, b.certificate_kind)
    # a complete checkpoint: resuming solves nothing and returns the same solutions
    solved.clear()
    again = _path(penalty=penalty, checkpoint=ck)
    assert not solved and [s.objective for s in again] == [s.objective for s in ref]


def _other_problems():
    loss = lambda **kw: gs.LeastSquares(kw.pop("X", X), kw.pop("y", y), **{"fit_intercept": True, **kw})
    return {
        "other y": dict(loss=loss(y=y * 2)),
        "other X": dict(loss=loss(X=X[::-1].copy())),
        "sparse X": dict(loss=loss(X=__import__("scipy.sparse").sparse.csr_matrix(X + 1.0))),
        "no intercept": dict(loss=loss(fit_intercept=False)),
        "ridge": dict(loss=loss(ridge=0.1)),
        "penalty class": dict(penalty=gs.GroupSCAD(1.0)),
        "penalty parameter": dict(penalty=gs.SparseGroupLasso(1.0, l1_ratio=0.3)),
        "groups": dict(groups=[6, 6]),
        "group weights": dict(groups=gs.Groups.from_sizes(GROUPS, weights=[1.0, 1.0, 1.0, 0.5])),
        "tol": dict(tol_override=1e-6),
        "solver": dict(solver="fista"),
        "max_iter": dict(max_iter=7),
    }


@pytest.mark.parametrize("case", list(_other_problems()))
def test_checkpoint_of_another_problem_is_refused(tmp_path, case):
    ck = tmp_path / "path.ckpt"
    first = _path(checkpoint=ck)
    kw = _other_problems()[case]
    kw.setdefault("penalty", gs.GroupLasso(1.0))
    lams = [s.lam for s in first]  # the same lambdas: the grid alone cannot tell the problems apart
    tol = kw.pop("tol_override", 1e-10)
    loss = kw.pop("loss", gs.LeastSquares(X, y, fit_intercept=True))
    pen, groups = kw.pop("penalty"), kw.pop("groups", GROUPS)
    with pytest.raises(CheckpointError, match=rf"^checkpoint: {ck}.*another problem"):
        gs.solve_path(loss, pen, groups, lams, checkpoint=ck, tol=tol, **kw)


def test_same_problem_spelled_differently_resumes(tmp_path):
    ck = tmp_path / "path.ckpt"
    first = _path(checkpoint=ck)
    # groups as a Groups instead of sizes, the penalty's lam and verbose / max_time do not enter the fingerprint
    again = gs.solve_path(gs.LeastSquares(X.copy(), y.copy(), fit_intercept=True), gs.GroupLasso(5.0),
                          gs.Groups.from_sizes(GROUPS), [s.lam for s in first], tol=1e-10, checkpoint=ck)
    assert [s.objective for s in again] == [s.objective for s in first]


def test_other_lambda_grid_is_refused(tmp_path):
    ck = tmp_path / "path.ckpt"
    _path(checkpoint=ck)
    with pytest.raises(CheckpointError, match=rf"^checkpoint: {ck} was written for a different lambda grid"):
        _path(checkpoint=ck, n_lambdas=N_LAM + 1)


class _Crafted:
    """A pickle that would create a folder when unpickled (stands for 'ran a shell command on resume')."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_crafted_pickle_never_runs(tmp_path):
    marker = str(tmp_path / "pwned")
    ck = tmp_path / "path.ckpt"
    ck.write_bytes(pickle.dumps({"lambdas": np.ones(3), "solutions": [_Crafted(marker)]}))
    with pytest.raises(CheckpointError, match=rf"^checkpoint: {ck} is not a groupsparse checkpoint"):
        _path(checkpoint=ck)
    # the same payload inside an .npz (an object array) is refused by allow_pickle=False
    with open(ck, "wb") as f:
        np.savez(f, __meta__=np.frombuffer(b"{}", np.uint8), lambdas=np.array([_Crafted(marker)], dtype=object))
    with pytest.raises(CheckpointError, match=rf"^checkpoint: {ck}"):
        _path(checkpoint=ck)
    assert not os.path.exists(marker)


def _valid_checkpoint(ck):
    _path(checkpoint=ck)
    return ck.read_bytes()


def _rewrite(ck, edit_meta=None, drop=None):
    with np.load(ck, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(bytes(arrays.pop("__meta__")).decode())
    if edit_meta:
        edit_meta(meta)
    for k in drop or ():
        arrays.pop(k)
    os.remove(ck)
    save_npz_json(ck, meta, arrays)


@pytest.mark.parametrize("damage", ["empty", "garbage", "invalid utf-8", "truncated", "npy", "no metadata",
                                    "other format", "future version", "missing coef", "wrong field type",
                                    "not json"])
def test_damaged_checkpoint_names_the_file(tmp_path, damage):
    ck = tmp_path / "path.ckpt"
    good = _valid_checkpoint(ck)
    if damage == "empty":
        ck.write_bytes(b"")
    elif damage == "garbage":
        ck.write_bytes(os.urandom(300))
    elif damage == "invalid utf-8":
        ck.write_bytes(b"\xff\xfe\xfa" * 50)
    elif damage == "truncated":
        ck.write_bytes(good[: len(good) // 2])
    elif damage == "npy":
        np.save(ck.open("wb"), np.ones(3))
    elif damage == "no metadata":
        with open(ck, "wb") as f:
            np.savez(f, lambdas=np.ones(3))
    elif damage == "other format":
        _rewrite(ck, lambda m: m.update(format="nn_bridge.pruner"))
    elif damage == "future version":
        _rewrite(ck, lambda m: m.update(version=99))
    elif damage == "missing coef":
        _rewrite(ck, drop=["sol1.coef"])
    elif damage == "wrong field type":
        _rewrite(ck, lambda m: m["solutions"][0].update(objective="1.0"))
    elif damage == "not json":
        with zipfile.ZipFile(ck, "w") as zf:
            with zf.open("__meta__.npy", "w") as f:
                np.lib.format.write_array(f, np.frombuffer(b"\xff{not json", np.uint8))
    with pytest.raises(CheckpointError, match=rf"^checkpoint: {ck}"):
        _path(checkpoint=ck)


def test_checkpoint_argument_checked_before_work(tmp_path, monkeypatch):
    monkeypatch.setattr(api, "solve", lambda *a, **k: pytest.fail("solved before checking the checkpoint path"))
    with pytest.raises(ValueError, match=r"^checkpoint: folder .* does not exist"):
        _path(checkpoint=tmp_path / "missing" / "path.ckpt")
    with pytest.raises(ValueError, match=r"^checkpoint: expected a file path, got 3"):
        _path(checkpoint=3)
    with pytest.raises(ValueError, match=r"^checkpoint: .* is a folder"):
        _path(checkpoint=tmp_path)


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    ck = tmp_path / "data.npz"
    save_npz_json(ck, {"format": "t", "version": 1}, {"a": np.arange(3.0)})
    before = ck.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        save_npz_json(ck, {"format": "t", "version": 1}, {"a": np.arange(4.0)})
    assert ck.read_bytes() == before
    assert os.listdir(tmp_path) == ["data.npz"]


def _writer(path, tag, n):
    for i in range(n):
        save_npz_json(path, {"format": "t", "version": 1, "writer": tag, "i": i}, {"a": np.full(1000, tag, float)})


def test_two_processes_writing_one_path(tmp_path):
    """The old fixed '.tmp' name made the second writer's os.replace fail; unique names never collide."""
    ck = str(tmp_path / "shared.npz")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(ck, tag, 40)) for tag in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    meta, arrays = load_npz_json(ck, "t", 1)
    assert meta["i"] == 39 and np.all(arrays["a"] == meta["writer"])  # one writer's whole file, never a mix
    assert os.listdir(tmp_path) == ["shared.npz"]  # no temporary file left behind


def test_solution_round_trip():
    sol = gs.select(gs.LeastSquares(X, y, fit_intercept=False), GROUPS, 2, method="omp")
    sol.lam = 0.25
    rec, arrays = solution_record(sol, "s.")
    back = solution_from_record(json.loads(json.dumps(rec)), arrays, "s.", "here")
    assert back.intercept is None and back.lam == 0.25 and back.certificate_kind == sol.certificate_kind
    np.testing.assert_array_equal(back.coef, sol.coef)
    np.testing.assert_array_equal(back.support, sol.support)
    assert back.objective == sol.objective and back.n_iter == sol.n_iter and back.converged == sol.converged


def test_fingerprint_sees_data_and_ignores_private_caches():
    a, b = gs.LeastSquares(X, y), gs.LeastSquares(X, y)
    b._anything_cached = {"k": 1.0}
    assert fingerprint(a) == fingerprint(b)
    Xb = X.copy()
    Xb[5, 7] = np.nextafter(Xb[5, 7], 10)  # one ulp
    assert fingerprint(gs.LeastSquares(Xb, y)) != fingerprint(a)
    assert fingerprint(gs.GroupMCP(1.0, 3.0)) != fingerprint(gs.GroupMCP(1.0, 3.5))
