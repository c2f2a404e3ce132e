"""Schedules: exact values of the ramps and the phase timelines."""
import math

import numpy as np
import pytest

from groupsparse import schedules as S


def test_exp_ramp_values():
    # fraction of s reached at t = 0.25 / 0.5 with c = 4 (seqattn_pp.md 2.2): 0.644 / 0.881
    assert S.exp_ramp(0.0, 0.9) == 0.0
    assert S.exp_ramp(1.0, 0.9) == pytest.approx(0.9)
    assert S.exp_ramp(0.25, 1 - 1e-12) == pytest.approx(0.644, abs=1e-3)
    assert S.exp_ramp(0.5, 1 - 1e-12) == pytest.approx(0.881, abs=1e-3)
    t = np.linspace(0, 1, 11)
    assert np.all(np.diff(S.exp_ramp(t, 0.5)) > 0)
    with pytest.raises(ValueError, match="target"):
        S.exp_ramp(0.5, 1.0)


def test_maxq_ramps():
    assert S.maxq_dense_fraction(0, 0, 30) == 1.0
    assert S.maxq_dense_fraction(15, 0, 30) == pytest.approx(0.5)
    assert S.maxq_dense_fraction(15, 0, 30, "cubic") == pytest.approx(0.125)
    assert S.maxq_dense_fraction(15, 0, 30, "cos") == pytest.approx(math.cos(math.pi / 4))
    sch = 1 - np.exp(-0.05 * np.arange(30))
    for e in (0, 7, 29):
        assert S.maxq_dense_fraction(e, 0, 30, "exp") == pytest.approx(1 - sch[e] / sch[-1])
    assert S.maxq_dense_fraction(30, 0, 30, "exp") == 0.0
    assert S.maxq_dense_fraction(5, 0, 0) == 0.0  # start == end == 0: plain N:M from the start
    with pytest.raises(ValueError, match="kind"):
        S.maxq_dense_fraction(1, 0, 3, "quadratic")


@pytest.mark.parametrize("make", [S.acdc_imagenet, S.sapp_imagenet, S.acdc_criteo, S.sapp_criteo])
def test_presets_cover_the_unit_interval_and_end_sparse(make):
    s = make(0.9)
    assert s.phases[0].kind == "dense" and s.phases[-1].kind == "sparse"
    assert s.sparsity(0.0) == 0.0 and s.sparsity(1.0) == pytest.approx(0.9)
    assert s.phases[-1].start == pytest.approx(0.85 if "imagenet" in make.__name__ else 0.8)


def test_sapp_final_cut_is_a_ramp_not_a_jump():
    s = S.sapp_criteo(0.9)
    assert s.phase(0.79).kind == "sparsification"
    assert 0.0 < s.sparsity(0.75) < s.sparsity(0.79) < 0.9


def test_acdc_imagenet_matches_the_official_epochs():
    s = S.acdc_imagenet(0.9)
    sparse_starts = [round(p.start * 100) for p in s.phases if p.kind == "sparse"]
    dense_starts = [round(p.start * 100) for p in s.phases if p.kind == "dense"][1:]
    assert sparse_starts == [10, 20, 30, 40, 50, 60, 70, 85]
    assert dense_starts == [15, 25, 35, 45, 55, 65, 75]


def test_overlapping_phases_and_bad_sparsity_are_rejected():
    with pytest.raises(ValueError, match="overlap"):
        S.PhaseSchedule((S.Phase("dense", 0.0, 0.6), S.Phase("sparse", 0.5, 1.0)), 0.5)
    with pytest.raises(ValueError, match="gap"):
        S.PhaseSchedule((S.Phase("dense", 0.0, 0.4), S.Phase("sparse", 0.5, 1.0)), 0.5)
    with pytest.raises(ValueError, match="target"):
        S.PhaseSchedule((S.Phase("sparse", 0.0, 1.0),), 1.2)
    with pytest.raises(ValueError, match="kind"):
        S.Phase("pruning", 0.0, 1.0)
