"""Deprecated: ``python -m nn_bridge nm <command>`` (kept for one release).  Each command is translated to the one
that replaced it, named in a one-line deprecation on stderr, and run by it:

  nm count --pattern 1:16 --preset maxq    ->  count --pattern 1:16 --layers maxq
  nm digits --method maxq --pattern 1:16   ->  prune --model digits --method maxq --pattern 1:16 --layers maxq
  nm check model.pt --pattern 2:4          ->  count model.pt --pattern 2:4
"""
from __future__ import annotations

import argparse
import shlex
import sys

from .._cli_common import ArgumentParser, deprecated, existing_file, positive_int, run_cli

__all__ = ["main", "translate"]

PROG = "python -m nn_bridge nm"


def _pattern(text):
    """argparse type for --pattern: 'N:M' with 0 < N < M (these commands were N:M only)."""
    from .groups import NMPattern
    try:
        return str(NMPattern.parse(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("pattern: ")) from None


def _parser():
    from .presets import PRESETS
    ap = ArgumentParser(prog=PROG, description="Deprecated N:M tools (see python -m nn_bridge --help)",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("count", help="now: python -m nn_bridge count")
    c.add_argument("--pattern", type=_pattern, default="1:16")
    c.add_argument("--preset", default="maxq", choices=PRESETS)
    c.add_argument("--size", type=positive_int, default=224)
    c.add_argument("--top", type=positive_int, default=10)
    c.add_argument("--json", action="store_true")
    d = sub.add_parser("digits", help="now: python -m nn_bridge prune --model digits")
    d.add_argument("--method", default="maxq", choices=["dense", "maxq", "srste", "asp"])
    d.add_argument("--pattern", type=_pattern, default="2:4")
    d.add_argument("--preset", default="maxq", choices=PRESETS)
    d.add_argument("--epochs", type=positive_int, default=30)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--threads", type=positive_int, default=1)
    k = sub.add_parser("check", help="now: python -m nn_bridge count PATH")
    k.add_argument("path", type=existing_file)
    k.add_argument("--pattern", type=_pattern, default="2:4")
    k.add_argument("--strict", action="store_true")
    return ap


def translate(argv) -> list:
    """The argv of the command that replaced ``nm <argv>`` (checked here first, so a wrong argument is one line
    under this command's name, as before)."""
    a = _parser().parse_args(argv)
    a.size, a.top, a.epochs, a.seed, a.threads = (str(getattr(a, k, "")) for k in ("size", "top", "epochs", "seed",
                                                                                   "threads"))
    debug = ["--debug"] if a.debug else []
    if a.cmd == "count":
        return (["count", "--pattern", a.pattern, "--layers", a.preset, "--size", a.size, "--top", a.top]
                + (["--json"] if a.json else []) + debug)
    if a.cmd == "digits":
        return ["prune", "--model", "digits", "--method", a.method, "--pattern", a.pattern, "--layers", a.preset,
                "--epochs", a.epochs, "--seed", a.seed, "--threads", a.threads, "--plot", "", "--no-progress"] + debug
    return ["count", a.path, "--pattern", a.pattern] + (["--strict"] if a.strict else []) + debug


def _main(argv) -> int:
    from ..__main__ import main as nn_bridge_main
    new = translate(argv)
    deprecated(f"{PROG} {argv[0]}", "python -m nn_bridge " + " ".join(shlex.quote(x) for x in new))
    return nn_bridge_main(new)


def main(argv=None) -> int:
    """Exit codes as the replacing command's; wrong arguments give one line ``python -m nn_bridge nm: error: ...``
    and exit 2."""
    return run_cli(_main, argv, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
