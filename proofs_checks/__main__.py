"""python -m proofs_checks [--examples N] [--seed S] [--only NAMES] [--skip NAMES] [--time-limit SEC] [--out DIR]

Each claim runs in a forked worker under ``--time-limit`` (a claim past it is reported as "timed out"); the report
(report.md, summary.json) is rewritten after every claim, so an interrupted run leaves a valid partial report;
progress goes to stderr as plain lines when stderr is not a terminal.
"""
from __future__ import annotations

import argparse
import sys
import time


def _names(spec):
    return [s for s in (spec or "").split(",") if s]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m proofs_checks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=100, help="instances per claim (hypothesis max_examples)")
    ap.add_argument("--seed", type=int, default=0, help="hypothesis seed (the run is reproducible from it)")
    ap.add_argument("--only", default=None, help="comma-separated: run the claims whose name contains one of these")
    ap.add_argument("--skip", default=None, help="comma-separated: skip the claims whose name contains one of these")
    ap.add_argument("--out", default="proofs_checks_report", help="directory for report.md and the figures")
    ap.add_argument("--control-budget", type=int, default=None, help="max instances per negative control")
    ap.add_argument("--no-controls", action="store_true", help="skip the negative controls (fast runs, mutation "
                    "testing); the verdicts then do not say whether the checks have teeth")
    ap.add_argument("--time-limit", type=float, default=1200.0,
                    help="seconds per claim (controls included) before it is reported as timed out; 0: no limit")
    ap.add_argument("--fail-fast", action="store_true", help="stop at the first claim that does not hold")
    ap.add_argument("--no-figures", action="store_true", help="write the report without figures")
    args = ap.parse_args(argv)
    if args.examples < 1:
        ap.error(f"--examples: must be >= 1, got {args.examples}")
    if args.time_limit < 0:
        ap.error(f"--time-limit: must be >= 0 seconds, got {args.time_limit}")
    import proofs_checks
    if proofs_checks.MISSING:
        print(proofs_checks.INSTALL_HINT, file=sys.stderr)
        return 2
    from . import load_all, run_claim_limited
    from .report import table, write
    reg = load_all()
    only, skip = _names(args.only), _names(args.skip)
    names = [n for n in reg if (not only or any(o in n for o in only)) and not any(s in n for s in skip)]
    if only:  # in the order of --only (cheap or targeted claims first, with --fail-fast)
        names.sort(key=lambda n: min(i for i, o in enumerate(only) if o in n))
    if not names:
        ap.error(f"--only/--skip: no claim left ({args.only!r}, {args.skip!r}); claims: {', '.join(reg)}")
    progress = True if sys.stderr.isatty() else "lines"
    t0 = time.perf_counter()
    results = []
    for i, name in enumerate(names):
        print(f"[{time.perf_counter() - t0:7.1f}s] {name} ({i + 1}/{len(names)}) ...", file=sys.stderr, flush=True)
        r = run_claim_limited(reg[name], args.time_limit or None, n_examples=args.examples, seed=args.seed,
                              progress=progress, control_budget=args.control_budget,
                              controls=not args.no_controls)
        results.append(r)
        print(f"[{time.perf_counter() - t0:7.1f}s] {name}: {r.verdict} ({r.instances} instances, worst slack "
              f"{r.worst_slack:.3g})" + (f" -- {r.error.strip().splitlines()[-1]}" if r.error else ""),
              file=sys.stderr, flush=True)
        last = i + 1 == len(names) or (args.fail_fast and not r.ok)
        # rewritten after every claim: an interrupted run leaves a valid report of the claims done
        write(results, args.out, args, figures=last and not args.no_figures, done=(len(results), len(names)))
        if args.fail_fast and not r.ok:
            break
    print(table(results))
    print(f"\ntotal {time.perf_counter() - t0:.1f}s; report: {args.out}/report.md")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
