"""python -m proofs_checks [--examples N] [--seed S] [--only NAME] [--out DIR]"""
from __future__ import annotations

import argparse
import sys
import time

from . import load_all, run_claim
from .report import table, write


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m proofs_checks", description=__doc__)
    ap.add_argument("--examples", type=int, default=100, help="instances per claim (hypothesis max_examples)")
    ap.add_argument("--seed", type=int, default=0, help="hypothesis seed (the run is reproducible from it)")
    ap.add_argument("--only", default=None, help="run the claims whose name contains this string")
    ap.add_argument("--out", default="proofs_checks_report", help="directory for report.md and the figures")
    ap.add_argument("--control-budget", type=int, default=None, help="max instances per negative control")
    args = ap.parse_args(argv)
    if args.examples < 1:
        ap.error(f"--examples: must be >= 1, got {args.examples}")
    reg = load_all()
    names = [n for n in reg if args.only is None or args.only in n]
    if not names:
        ap.error(f"--only: no claim matches {args.only!r}; claims: {', '.join(reg)}")
    t0 = time.perf_counter()
    results = []
    for name in names:
        r = run_claim(reg[name], n_examples=args.examples, seed=args.seed, progress=sys.stderr.isatty(),
                      control_budget=args.control_budget)
        results.append(r)
        print(f"[{time.perf_counter() - t0:7.1f}s] {name}: {r.verdict} ({r.instances} instances, worst slack "
              f"{r.worst_slack:.3g})", file=sys.stderr, flush=True)
    print(table(results))
    path = write(results, args.out, args)
    print(f"\ntotal {time.perf_counter() - t0:.1f}s; report: {path}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
