"""Shared test helpers: a per-call time limit (so a hang fails a test instead of stalling the suite) and the
hypothesis profiles ("ci", the default: few examples; "deep": ``pytest --hypothesis-profile=deep``)."""
from __future__ import annotations

import contextlib
import signal
import threading

try:
    from hypothesis import HealthCheck, Phase, settings
except ImportError:  # hypothesis comes with the test extra; only the fuzz tests need it
    settings = None

if settings is not None:
    # "ci" keeps hypothesis' default number of examples for the tests that do not set one (and is derandomized,
    # so CI is reproducible); tests that set their own count scale it by ``examples_scale()``
    _checks = [HealthCheck.too_slow, HealthCheck.data_too_large]
    settings.register_profile("ci", max_examples=100, deadline=None, derandomize=True,
                              suppress_health_check=_checks)
    # deep: no shrinking (each example can take seconds; the failing input is reported as drawn)
    settings.register_profile("deep", max_examples=2000, deadline=None, suppress_health_check=_checks,
                              phases=[Phase.explicit, Phase.reuse, Phase.generate])
    settings.load_profile("ci")


def examples_scale() -> float:
    """How many times more examples the loaded hypothesis profile asks for than "ci" (deep: 20)."""
    return settings.default.max_examples / 100 if settings is not None else 1.0


class Hang(TimeoutError):
    """A call ran past its time limit: the library promised a bounded cost."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise ``Hang`` in the block after ``seconds`` (SIGALRM; Unix main thread only, else no limit)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise Hang(f"call did not finish within {seconds} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
