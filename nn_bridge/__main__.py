"""``python -m nn_bridge <subcommand> ...``: ``prune`` (block sparsity, nn_bridge.cli), ``oneshot`` (one-shot
pruning of your own model and data, block or N:M, nn_bridge.oneshot_cli) or ``nm`` (N:M sparsity, forwarded to
``nn_bridge.nm.cli:main(argv)``); a missing or unknown subcommand is a one-line error, exit 2."""
import sys

USAGE = "usage: python -m nn_bridge {prune,oneshot,nm} [options]   (python -m nn_bridge prune --help)"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(f"python -m nn_bridge: error: a subcommand is required; {USAGE}", file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == "prune":
        from .cli import main as prune_main
        return prune_main(rest) or 0
    if cmd == "oneshot":
        from .oneshot_cli import main as oneshot_main
        return oneshot_main(rest)
    if cmd == "nm":
        from .nm.cli import main as nm_main
        return nm_main(rest) or 0
    print(f"python -m nn_bridge: error: unknown subcommand {cmd!r}; {USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
