"""Every penalty's proximal operator is the global minimiser of its prox problem, for every step size.

Statement (definition of the prox; theory_checks.md 3.2-3.3 for MCP/SCAD, including the nonconvex regime t >= gamma):
for a radial penalty rho and a block z with r = ||z||, prox_{t rho}(z) = x* z/r with
x* in argmin_{0 <= x <= r} h(x),  h(x) = (x - r)^2/(2t) + rho(x; lam w_g)  (the minimiser is never beyond r
and lies on the ray of z, since rho depends on the norm only).  Sparse-group lasso (not radial): argmin_x
||x - z||^2/(2t) + a||x||_1 + b w_g ||x||.  Composite (SA++ Eq. (1), other groups' q-sum ``rest`` fixed):
argmin_x (x - r)^2/(2t) + lam q^{-1}(rest + q(x)).

Under test: ``Penalty.prox_group`` and ``prox_scalar`` of GroupLasso, GroupMCP, GroupSCAD, GroupLogSum,
GroupBridge, ExpMaskPenalty; ``SparseGroupLasso.prox_group``; ``CompositePenalty.prox_given_rest``; and
``Problem.prox`` (the solvers' entry point) on the same block.
Reference: ``_refpen`` (independent scalar formulas) minimised by grid + Brent polishing (``_refpen.global_min``);
the sparse-group lasso by cvxpy (Clarabel).  Asserted: h(library) <= h(reference) + 1e-10 * scale, the output is
on the ray of z (radial), prox_scalar, prox_group and Problem.prox agree, and below ``prox_zero_radius`` (where the
solvers skip zero groups) the exact prox is 0, and that radius is 0 without a penalty (lam w = 0).

Negative control: the prox with the step ignored (t = 1 inside, the true step outside) must lose to the reference.
"""
from __future__ import annotations

import math

import numpy as np

import groupsparse as gs
from groupsparse.problem import Problem

from ._refpen import ALL, Ref, global_min
from .framework import Claim, Control, Outcome, register, seeds, st

SOURCE = "definition of the proximal operator; grpreg [C] (MCP/SCAD); SA++ Lemma 2.1 and Eq. (1)"

# hypothesis draws the seed and the penalty; the continuous parameters come from the seeded generator (hypothesis'
# float draws repeat boundary values such as t = 1 too often to exercise every branch of every prox)
_strat = st.fixed_dictionaries({"seed": seeds(), "kind": st.sampled_from(("all",) + ALL), "d": st.integers(1, 4)})


def _draw(rng):
    return dict(log10_lam=rng.uniform(-1.3, 0.5), a=rng.uniform(0.0, 1.0), log10_t=rng.uniform(-2.0, 2.0),
                log10_r_rel=rng.uniform(-1.5, 1.2), w=rng.uniform(0.3, 2.5))


def _sgl_reference(z, t, a, b):
    import cvxpy as cp
    x = cp.Variable(z.size)
    obj = cp.sum_squares(x - z) / (2 * t) + a * cp.norm1(x) + b * cp.norm2(x)
    cp.Problem(cp.Minimize(obj)).solve(solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    return np.asarray(x.value, float)


def _check(params, ignore_step=False):
    """One penalty, or every penalty in turn for kind 'all' (each with its own generator): the worst slack."""
    if params["kind"] == "all":
        # three draws (step, radius, shape) per penalty: one instance then reaches most branches of every prox
        outs = [_check(dict(params, kind=k, seed=params["seed"] + 3 * i + j), ignore_step)
                for i, k in enumerate(ALL) for j in range(3)]
        worst = min(outs, key=lambda o: o.slack)
        return Outcome(worst.slack, dict(worst.info, all_kinds=True))
    rng = np.random.default_rng(params["seed"])
    params = dict(params, **_draw(rng))
    lam, t, w, d = 10 ** params["log10_lam"], 10 ** params["log10_t"], params["w"], params["d"]
    ref = Ref(params["kind"], lam, params["a"])
    pen = ref.lib
    lw = lam * w
    # the radius where the prox switches on is ~ t lw (slopes), lw sqrt(gamma t) (MCP, t >= gamma),
    # (t lw)^(1/(2-q)) (bridge): draw r around the largest of these
    r0 = max(t * lw, math.sqrt(t) * lw, (t * lw) ** (1 / (2 - getattr(ref, "q", 1.0))) if ref.kind == "bridge"
             else 0.0, 1e-3)
    r = r0 * 10 ** params["log10_r_rel"]
    u = rng.standard_normal(d)
    u /= np.linalg.norm(u)
    if ref.kind == "sparse_group_lasso":  # make some coordinates fall below the entrywise threshold
        u *= rng.uniform(0.05, 1.0, d)
        u /= np.linalg.norm(u)
    z = r * u
    tt = 1.0 if ignore_step else t  # control: a prox that ignores its step
    info = dict(kind=ref.kind, r=r, t=t, lw=lw, a=params["a"])
    if ref.kind == "sparse_group_lasso":
        a, b = lam * ref.alpha, lam * (1 - ref.alpha) * w
        x = pen.prox_group(z, tt, w)
        F = lambda v: float(np.sum((v - z) ** 2)) / (2 * t) + a * float(np.sum(np.abs(v))) + b * float(np.linalg.norm(v))
        xr = _sgl_reference(z, t, a, b)
        scale = max(F(np.zeros(d)), 1e-300)
        slack = 1e-8 - (F(x) - min(F(xr), F(np.zeros(d)))) / scale  # cvxpy's accuracy ~1e-9 relative
        info.update(F_lib=F(x), F_ref=F(xr))
        return Outcome(slack, info)
    if ref.kind == "composite":
        rest = float(rng.choice([0.0, ref.q(float(rng.uniform(0.1, 3.0)))]))
        h = lambda x: (x - r) ** 2 / (2 * t) + lam * ref.q_inv(rest + ref.q(x))
        xs = pen.prox_given_rest(r, tt, rest)
        _, m = global_min(h, r)
        scale = max(h(0.0), 1e-300)
        info.update(rest=rest, q=ref.qname, x_lib=xs, h_lib=h(xs), h_ref=m)
        return Outcome(1e-10 - (h(xs) - m) / scale, info)
    h = lambda x: (x - r) ** 2 / (2 * t) + ref.rho(x, lw)
    x = pen.prox_group(z, tt, w)
    xs = pen.prox_scalar(r, tt, lw)
    # the solvers call the prox through Problem.prox: one group of size d with weight w
    loss = gs.LeastSquares(np.eye(d), np.zeros(d))
    xp = Problem(loss, pen, gs.Groups.from_sizes([d], weights=[w])).prox(0, z, tt)
    xn = float(np.linalg.norm(x))
    ray = float(np.linalg.norm(x - float(x @ u) * u)) + max(-float(x @ u), 0.0)  # off the ray of z
    _, m = global_min(h, r, ref.kinks(lw))
    scale = max(h(0.0), 1e-300)
    s_opt = 1e-10 - (h(xn) - m) / scale
    # prox_zero_radius (the solvers skip zero groups inside it): below it the exact prox must be 0
    rz = float(np.asarray(pen.prox_zero_radius(tt, lw)))
    if rz > 0:
        r1 = rz * (1 - 1e-9)
        h1 = lambda x: (x - r1) ** 2 / (2 * t) + ref.rho(x, lw)
        x1, m1 = global_min(h1, r1, ref.kinks(lw))
        s_opt = min(s_opt, 1e-10 - (h1(0.0) - m1) / max(h1(0.0), 1e-300))
        info["zero_radius"] = rz
    # without a penalty (lam w = 0) the prox is the identity: it switches on at radius 0 (the solvers' vectorised
    # call passes lam w = 0 for weight-0 entries)
    rz0 = float(np.asarray(pen.prox_zero_radius(tt, np.array([0.0, lw])))[0])
    if rz0 != 0.0:
        s_opt = min(s_opt, -abs(rz0) / max(r, 1e-300) - 1.0)
        info["zero_radius_without_penalty"] = rz0
    s_agree = 1e-12 * max(r, 1e-300) - max(abs(xs - xn), float(np.linalg.norm(np.asarray(xp) - x)), ray)
    info.update(x_lib=xn, x_scalar=xs, h_lib=h(xn), h_ref=m)
    return Outcome(min(s_opt, s_agree / max(r, 1e-300)), info)


register(Claim(
    name="penalty_prox.global_min",
    title="prox = global minimiser of the prox problem, every penalty, every step size",
    source=SOURCE, mark="D✓ (definition), C (MCP/SCAD)",
    statement="x = prox_{t P}(z) minimises ||x - z||^2/(2t) + P(x) globally (radial penalties: on the ray of z)",
    assumptions="group lasso, MCP (gamma 1.05..5), SCAD (2.05..6), log-sum (eps 0.03..3), bridge (q 0.1..0.9), "
                "exp mask, sparse-group lasso (l1_ratio 0..1), composite (q in x^(1/2), x^(2/3), log(1+x)); lam "
                "0.05..3, step t 0.01..100 (includes the nonconvex regimes t >= gamma), block size 1..4, weight "
                "0.3..2.5, ||z|| from 0.03 to 16 times the switch-on radius",
    strategy=_strat, check=_check,
    controls=[Control("step ignored", "a prox computed with step 1 instead of t must lose to the reference",
                      _strat, lambda p: _check(p, ignore_step=True), budget=100)],
    under_test="Penalty.prox_group / prox_scalar (all radial penalties), SparseGroupLasso.prox_group, "
               "CompositePenalty.prox_given_rest, Problem.prox",
    cost=2.0,  # kind "all": 24 prox problems per instance
))
