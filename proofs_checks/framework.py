"""The claim registry and the runner.

A ``Claim`` is one theoretical statement made executable:

- ``strategy``: a hypothesis strategy that draws a *seed and sizes* (never raw matrices); the check builds its
  instance from them with a seeded numpy generator, so every instance is reproducible from the printed params.
- ``check(params) -> Outcome``: computes both sides and returns the **slack**, how far the instance is from
  violating the claim after the numerical tolerance (>= 0: the claim holds on it; < 0: a counterexample).
- ``controls``: negative controls, each an instance family that breaks an assumption (or a deliberately broken
  solver) together with a check that the claim's test must *flag* (some slack < 0 within the control's budget).
  A control that is never flagged means the check has no teeth, and the verdict says so.
- ``notes`` / ``counterexamples``: where the claim as printed is false, vacuous or needs an extra assumption, the
  report says so; ``counterexamples()`` computes the concrete instance live, so the report cannot go stale.

``run_claim`` drives the check with hypothesis (shrinking a violation to a minimal example) and returns a
``ClaimResult``; ``run_control`` searches for the flag without shrinking.
"""
from __future__ import annotations

import math
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hseed
from hypothesis import strategies as st

__all__ = ["Outcome", "Control", "Claim", "ClaimResult", "ControlResult", "REGISTRY", "register",
           "run_claim", "run_claim_limited", "run_control", "seeds", "st"]


@dataclass
class Outcome:
    """slack >= 0 iff the claim holds on the instance (after tolerance).  ``info``: both sides, constants, and
    anything a figure needs (keep it small: one dict per instance is stored)."""
    slack: float
    info: dict = field(default_factory=dict)


@dataclass
class Control:
    name: str
    description: str
    strategy: object
    check: Callable[[dict], Outcome]
    budget: int = 200  # instances tried before declaring the control NOT flagged


@dataclass
class Claim:
    name: str
    title: str
    source: str
    mark: str  # source mark from theory_checks.md: P, P-abs, C, D✓ (asserted) or R? (informational only)
    statement: str
    assumptions: str
    strategy: object
    check: Callable[[dict], Outcome]
    controls: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    counterexamples: Callable[[], list] | None = None  # -> list of (title, markdown text)
    figure: Callable | None = None  # (ClaimResult, outdir) -> list of written paths
    informational: bool = False  # report only, never a pass/fail verdict
    under_test: str = ""  # what groupsparse code the check exercises
    cost: float = 1.0  # relative per-instance cost; the test suite scales its budget by 1/cost


@dataclass
class ControlResult:
    name: str
    description: str
    flagged: bool
    tries: int
    worst_slack: float
    example: dict | None
    info: dict | None
    seconds: float
    error: str | None = None


@dataclass
class ClaimResult:
    claim: Claim
    instances: int
    worst_slack: float
    worst_params: dict | None
    worst_info: dict | None
    counterexample: dict | None  # minimal (shrunk) params of a violation, if any
    counterexample_info: dict | None
    records: list  # info dict of every instance (for figures)
    slacks: list
    controls: list
    seconds: float
    error: str | None = None
    timed_out: bool = False

    @property
    def verdict(self) -> str:
        if self.timed_out:
            return "TIMED OUT"
        if self.error:
            return "ERROR"
        if self.counterexample is not None:
            return "INFO: below bound" if self.claim.informational else "VIOLATED"
        if any(not c.flagged for c in self.controls):
            return "CONTROL MISSED"
        return "informational" if self.claim.informational else "holds"

    @property
    def ok(self) -> bool:
        return self.verdict in ("holds", "informational", "INFO: below bound")


REGISTRY: dict[str, Claim] = {}


def register(claim: Claim) -> Claim:
    if claim.name in REGISTRY:
        raise ValueError(f"claim {claim.name!r} registered twice")
    REGISTRY[claim.name] = claim
    return claim


def seeds():
    """The seed every instance is built from (hypothesis shrinks it towards 0)."""
    return st.integers(min_value=0, max_value=2**32 - 1)


class _Violation(AssertionError):
    pass


def _settings(n, shrink):
    phases = [Phase.generate, Phase.shrink] if shrink else [Phase.generate]
    return settings(max_examples=int(n), deadline=None, database=None, derandomize=False, phases=phases,
                    suppress_health_check=list(HealthCheck), report_multiple_bugs=False, print_blob=False)


def _drive(strategy, check, n, seed, shrink, stop_on_violation, on_instance=None):
    """Run ``check`` on up to ``n`` drawn instances.  Returns (records, last_failing_params, last_failing_info).

    With ``shrink``, a violation is shrunk by hypothesis; the last failing call is then the minimal example."""
    state = {"records": [], "fail": None, "fail_info": None}

    @_settings(n, shrink)
    @hseed(seed)
    @given(strategy)
    def run(params):
        out = check(params)
        s = float(out.slack)
        if math.isnan(s):
            s = -math.inf  # a NaN slack is a failure to compute both sides: never silently a pass
        state["records"].append((dict(params), s, out.info))
        if on_instance is not None:
            on_instance()
        if s < 0:
            state["fail"], state["fail_info"] = dict(params), out.info
            if stop_on_violation:
                raise _Violation(f"slack {s}")

    try:
        run()
    except _Violation:
        pass
    return state["records"], state["fail"], state["fail_info"]


def _one_thread():
    """BLAS limited to one thread: the instances are tiny, and a multi-threaded OpenBLAS on a shared 2-core machine
    was measured 600x slower on a 200 x 80 QR (1.26 s vs 2 ms)."""
    try:
        from threadpoolctl import threadpool_limits
        return threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        import contextlib
        return contextlib.nullcontext()


def run_control(ctrl: Control, seed: int = 0, budget: int | None = None) -> ControlResult:
    with _one_thread():
        return _run_control(ctrl, seed, budget)


def _run_control(ctrl, seed, budget):
    t0 = time.perf_counter()
    try:
        recs, fail, info = _drive(ctrl.strategy, ctrl.check, budget or ctrl.budget, seed, shrink=False,
                                  stop_on_violation=True)
    except Exception:  # noqa: BLE001 - a crashing control is reported, never a pass
        return ControlResult(ctrl.name, ctrl.description, False, 0, math.nan, None, None,
                             time.perf_counter() - t0, traceback.format_exc(limit=4))
    worst = min((s for _, s, _ in recs), default=math.nan)
    return ControlResult(ctrl.name, ctrl.description, fail is not None, len(recs), worst, fail, info,
                         time.perf_counter() - t0)


def run_claim(claim: Claim, n_examples: int = 100, seed: int = 0, progress: bool = False,
              control_budget: int | None = None, controls: bool = True) -> ClaimResult:
    """Run one claim (and its negative controls unless ``controls=False``).  ``progress``: a tqdm bar on a
    terminal; ``"lines"``: a plain line to stderr at every quarter of the budget (logs, CI, pipes)."""
    with _one_thread():
        return _run_claim(claim, n_examples, seed, progress, control_budget, controls)


class _Lines:
    """Plain progress lines (no terminal needed): one per quarter of the budget."""

    def __init__(self, name, total):
        self.name, self.total, self.n, self.t0 = name, total, 0, time.perf_counter()
        self.every = max(1, total // 4)

    def update(self, k=1):
        self.n += k
        if self.n % self.every == 0 and self.n < self.total:
            print(f"  {self.name}: {self.n}/{self.total} instances ({time.perf_counter() - self.t0:.1f}s)",
                  file=sys.stderr, flush=True)

    def close(self):
        pass


def _run_claim(claim, n_examples, seed, progress, control_budget, controls=True):
    t0 = time.perf_counter()
    bar = None
    if progress == "lines":
        bar = _Lines(claim.name, n_examples)
    elif progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=n_examples, desc=claim.name, leave=False)
    err = None
    try:
        # shrinking: on a violation ``fail`` is hypothesis's minimal failing example
        recs, fail, fail_info = _drive(claim.strategy, claim.check, n_examples, seed, shrink=True,
                                       stop_on_violation=True, on_instance=(bar.update if bar else None))
    except Exception:  # noqa: BLE001 - an exception inside a check is an ERROR verdict, never a pass
        recs, fail, fail_info, err = [], None, None, traceback.format_exc(limit=6)
    if claim.informational and fail is not None and err is None:
        # informational claims: a shortfall is data, not a stop; finish the budget without stopping
        recs, _, _ = _drive(claim.strategy, claim.check, n_examples, seed, shrink=False, stop_on_violation=False)
    if bar:
        bar.close()
    ctl = [run_control(c, seed, control_budget) for c in claim.controls] if controls else []
    if recs:
        i = int(np.argmin([s for _, s, _ in recs]))
        worst, wp, wi = recs[i][1], recs[i][0], recs[i][2]
    else:
        worst, wp, wi = math.nan, None, None
    return ClaimResult(claim, len(recs), worst, wp, wi, fail, fail_info, [r[2] for r in recs],
                       [r[1] for r in recs], ctl, time.perf_counter() - t0, err)


def run_claim_limited(claim: Claim, time_limit: float | None, **kw) -> ClaimResult:
    """``run_claim`` in a forked worker that is killed after ``time_limit`` seconds: a claim that runs past it
    (a solver that hangs, a slow mutant) gives a "TIMED OUT" result instead of hanging the run.  Without a limit,
    or where fork is unavailable (Windows), the claim runs in this process."""
    if not time_limit or not hasattr(os, "fork"):
        return run_claim(claim, **kw)
    import multiprocessing as mp
    ctx = mp.get_context("fork")  # fork: the claim (with its lambdas) is inherited, never pickled
    recv, send = ctx.Pipe(duplex=False)
    t0 = time.perf_counter()
    proc = ctx.Process(target=_worker, args=(claim, kw, send), daemon=True)
    proc.start()
    send.close()
    payload, err = None, None
    try:
        if recv.poll(time_limit):
            payload = recv.recv()
    except EOFError:  # the worker died without a result (crash, out of memory)
        err = "worker exited without a result"
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
        recv.close()
    if payload is not None:
        return ClaimResult(claim=claim, **payload)
    timed_out = err is None
    msg = f"timed out after {time_limit:g}s" if timed_out else f"{err} (exit code {proc.exitcode})"
    return ClaimResult(claim, 0, math.nan, None, None, None, None, [], [], [], time.perf_counter() - t0, msg,
                       timed_out=timed_out)


def _worker(claim, kw, send):
    try:
        r = run_claim(claim, **kw)
        payload = {k: v for k, v in r.__dict__.items() if k != "claim"}
        try:
            send.send(payload)
        except Exception:  # noqa: BLE001 - an info dict that does not pickle: send the verdict without records
            payload.update(records=[], worst_info=None, counterexample_info=None)
            send.send(payload)
    finally:
        send.close()
        os._exit(0)  # skip atexit handlers inherited from the parent


def rel(a, b, floor=1.0):
    """|a - b| / max(floor, |a|, |b|)."""
    return abs(a - b) / max(floor, abs(a), abs(b))
