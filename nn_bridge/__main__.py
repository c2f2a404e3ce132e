"""``python -m nn_bridge <command> ...``, one command per job, every one taking the pattern as ``--pattern BxB|N:M``:

* ``prune``   -- train a built-in model with a pruning method (``nn_bridge.cli``);
* ``oneshot`` -- one-shot prune your own model from your own data and save it (``nn_bridge.oneshot_cli``);
* ``count``   -- parameters / FLOPs under a pattern, or the sparsity report and pattern check of a saved model
  (``nn_bridge.count_cli``);
* ``export``  -- store a pruned model's weights sparse (``nn_bridge.export_cli``).

``nm`` (the former N:M tools: ``nm count`` / ``nm digits`` / ``nm check``) still runs for one release, with a
one-line deprecation on stderr naming the command that replaced it.  A missing or unknown subcommand is a one-line
error, exit 2.
"""
import sys

COMMANDS = ("prune", "oneshot", "count", "export")
USAGE = ("usage: python -m nn_bridge {prune,oneshot,count,export} [options]   "
         "(python -m nn_bridge <command> --help)")


def _command(cmd):
    if cmd == "prune":
        from .cli import main
    elif cmd == "oneshot":
        from .oneshot_cli import main
    elif cmd == "count":
        from .count_cli import main
    elif cmd == "export":
        from .export_cli import main
    else:  # "nm", deprecated
        from .nm.cli import main
    return main


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(f"python -m nn_bridge: error: a subcommand is required; {USAGE}", file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        print(USAGE)
        print(__doc__)
        return 0
    if argv[0] not in COMMANDS + ("nm",):
        print(f"python -m nn_bridge: error: unknown subcommand {argv[0]!r}; {USAGE}", file=sys.stderr)
        return 2
    return _command(argv[0])(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
