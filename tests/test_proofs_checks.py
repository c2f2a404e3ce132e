"""proofs_checks: every claim runs on a modest budget and holds; every negative control is flagged; the runner
itself reports violations, NaN slacks and crashes instead of passing them; the CLI writes its report."""
import math

import numpy as np
import pytest

pytest.importorskip("hypothesis")

from proofs_checks import load_all, run_claim  # noqa: E402
from proofs_checks.framework import Claim, Control, Outcome, seeds, st  # noqa: E402

REGISTRY = load_all()
BUDGET = 24  # instances for a claim of cost 1; cheap claims run more, expensive ones fewer (at least 4)


def _budget(claim):
    return max(4, int(BUDGET / max(claim.cost, 0.1)))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_claim_holds_and_controls_are_flagged(name):
    claim = REGISTRY[name]
    res = run_claim(claim, n_examples=_budget(claim), seed=0, control_budget=60)
    assert res.error is None, res.error
    assert res.counterexample is None or claim.informational, (
        f"{name}: counterexample {res.counterexample} -> {res.counterexample_info}")
    assert res.instances >= 1
    assert claim.controls, f"{name}: every claim needs a negative control"
    for c in res.controls:
        assert c.error is None, f"{name} / {c.name}: {c.error}"
        assert c.flagged, f"{name}: negative control '{c.name}' was not flagged in {c.tries} instances"
    assert res.verdict in ("holds", "informational")


def test_every_claim_states_itself():
    for name, c in REGISTRY.items():
        assert c.statement and c.source and c.assumptions and c.mark, name
    modules = {n.split(".")[0] for n in REGISTRY}
    import proofs_checks
    assert modules == set(proofs_checks.MODULES)


def _toy(check):
    return Claim(name="toy", title="toy", source="test", mark="D✓", statement="x <= 0.9", assumptions="x in [0,1]",
                 strategy=st.fixed_dictionaries({"seed": seeds(), "x": st.floats(0.0, 1.0)}), check=check,
                 controls=[])


def test_runner_finds_and_shrinks_a_violation():
    res = run_claim(_toy(lambda p: Outcome(0.9 - p["x"])), n_examples=200, seed=0)
    assert res.verdict == "VIOLATED"
    assert res.counterexample is not None and res.counterexample["x"] > 0.9
    assert res.worst_slack < 0


def test_runner_treats_nan_as_violation_and_crash_as_error():
    res = run_claim(_toy(lambda p: Outcome(math.nan)), n_examples=5, seed=0)
    assert res.verdict == "VIOLATED"

    def boom(p):
        raise RuntimeError("check crashed")

    res = run_claim(_toy(boom), n_examples=5, seed=0)
    assert res.verdict == "ERROR" and "check crashed" in res.error


def test_control_that_is_never_flagged_is_reported():
    c = _toy(lambda p: Outcome(1.0))
    c.controls = [Control("toothless", "never negative", c.strategy, lambda p: Outcome(1.0), budget=10)]
    res = run_claim(c, n_examples=5, seed=0)
    assert res.verdict == "CONTROL MISSED"


def test_counterexamples_are_concrete():
    texts = [t for c in REGISTRY.values() if c.counterexamples for _, t in c.counterexamples()]
    joined = " ".join(texts)
    assert "outside the range of q" in joined  # Lemma 2.4 needs sum q in the range of q
    assert "not even a local minimiser" in joined  # Theorem 1.1 does not cover the Lambert-W q


def test_cli_writes_report(tmp_path, capsys):
    from proofs_checks.__main__ import main
    rc = main(["--examples", "5", "--only", "lemma_2_5", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "lemma_2_5_one_sparse" in out and "holds" in out
    text = (tmp_path / "report.md").read_text()
    assert "Claims that are false, vacuous or need an extra assumption" in text
    assert (tmp_path / "slacks.png").exists() and (tmp_path / ".gitignore").read_text() == "*\n"
    with pytest.raises(SystemExit):
        main(["--only", "no_such_claim", "--out", str(tmp_path)])


@pytest.mark.xfail(strict=True, reason="groupsparse.select(method='ompr') (add argmax gradient, drop min |beta|, "
                   "keep only improving swaps) stops at OMP's support on this kappa = 1.5, s = s* = 2 instance, "
                   "above f(x*) + 1e-6, although s > s* kappa^2 / 4 (Axiotis & Sviridenko [P-abs]); "
                   "method='local_search' reaches f(x*). Reported; the OMPR rule may differ from the paper's.")
def test_ompr_axiotis_sviridenko_counterexample():
    from proofs_checks.arht_guarantee import COUNTEREXAMPLE, _check
    out = _check(COUNTEREXAMPLE)
    assert out.slack >= 0, out.info
