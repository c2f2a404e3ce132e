"""``python -m nn_bridge prune``: prune a built-in model with any method, block (``--pattern 16x16``) or N:M
(``--pattern 2:4``), print the per-layer sparsity report (``nn_bridge.report``) and save a plot of the schedule and
of the per-layer sparsity.

* the ``mlp`` / ``cnn`` / ``criteo`` presets, under either pattern, trained on their synthetic task (tasks below)
  for ``--steps`` steps with any pruner of ``nn_bridge.pruners.PRUNERS`` (magnitude, powerprop, acdc, sapp,
  srste, asp -- after ``--steps`` of dense training, as ASP prescribes -- and, N:M only, maxq); ``oneshot`` prunes
  a trained-for-``--steps`` model from ``--calib`` synthetic calibration rows (``nn_bridge.oneshot.solve_layers``);
* the ``digits`` testbed (scikit-learn's digits, ``nn_bridge.nm.digits``), N:M only: maxq / srste / asp (or
  ``dense``, the baseline) for ``--epochs`` epochs, the pruned layers chosen by ``--layers``.

Examples:  python -m nn_bridge prune --model criteo --method sapp --pattern 10x10 --sparsity 0.9 --steps 300 \
               --plot sapp.png --json sapp.json
           python -m nn_bridge prune --model mlp --pattern 2:4 --method sapp --steps 300 --plot sapp24.png
           python -m nn_bridge prune --model digits --pattern 2:4 --method srste --epochs 5 --plot srste.png
"""
from __future__ import annotations

import json

import torch
from torch import nn

from ._cli_common import (ArgumentParser, as_option, deprecated, fraction_in_0_1, given_options, nonneg_float,
                          pattern_arg, positive_float, positive_int, run_cli, save_torch_file, writable_path)
from .models import ClickTeacher, build_model, MODEL_PRESETS
from .pruners import PRUNERS, make_pruner

__all__ = ["main", "build_parser", "Task"]

PROG = "python -m nn_bridge prune"
MODELS = sorted(MODEL_PRESETS) + ["digits"]
METHODS = sorted(PRUNERS) + ["oneshot", "dense"]
DIGITS_METHODS = ["maxq", "srste", "asp", "dense"]  # what the digits testbed trains (nm.digits.train_run)
N_M_ONLY = ["maxq"]                                 # MaxQ's queries are defined on N:M windows
LIBRARY_ARGS = {"pattern": "--pattern", "block": "--pattern", "sparsity": "--sparsity", "min_blocks": "--min-blocks",
                "model": "--model", "layers": "--layers", "scope": "--scope", "damp": "--damp"}


class Task:
    """A synthetic training task for a preset: ``batch(step)`` -> (inputs tuple, target), ``loss(out, target)``."""

    def __init__(self, preset: str, seed: int = 0, batch_size: int = 256):
        self.preset, self.bs = preset, batch_size
        g = torch.Generator().manual_seed(seed)
        if preset == "criteo":
            self.teacher = ClickTeacher(seed=seed)
        elif preset == "mlp":
            self.teacher = nn.Sequential(nn.Linear(256, 64), nn.Tanh(), nn.Linear(64, 10))
        elif preset == "cnn":
            self.teacher = nn.Sequential(nn.Conv2d(32, 8, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool2d(1),
                                         nn.Flatten(), nn.Linear(8, 10))
        else:
            raise ValueError(f"model: expected one of {sorted(MODEL_PRESETS)}, got {preset!r}")
        if preset != "criteo":
            with torch.no_grad():
                for q in self.teacher.parameters():
                    q.copy_(torch.randn(q.shape, generator=g) / max(q.shape[-1], 1) ** 0.5 * 2)

    def batch(self, step: int, seed_offset: int = 0):
        s = 1_000_003 * seed_offset + step
        if self.preset == "criteo":
            xn, xc, y = self.teacher.sample(self.bs, s)
            return (xn, xc), y
        g = torch.Generator().manual_seed(s)
        x = torch.randn(self.bs, 256, generator=g) if self.preset == "mlp" else \
            torch.randn(self.bs // 8, 32, 8, 8, generator=g)
        with torch.no_grad():
            y = self.teacher(x)
        return (x,), y

    def loss(self, out, y):
        if self.preset == "criteo":
            return nn.functional.binary_cross_entropy_with_logits(out, y)
        return (out - y).pow(2).mean()


def build_parser():
    from .nm.presets import PRESETS
    ap = ArgumentParser(prog=PROG, description="Prune a built-in model, block (BxB) or N:M.")
    ap.add_argument("--pattern", type=pattern_arg, default=None,
                    help="BxB blocks (e.g. 16x16, the default) or N:M (e.g. 2:4)")
    ap.add_argument("--model", default=None, choices=MODELS,
                    help="mlp, cnn, criteo (any pattern; default for blocks: mlp) or digits (N:M; the N:M default)")
    ap.add_argument("--method", default=None, choices=METHODS,
                    help=f"presets: {', '.join(m for m in METHODS if m != 'dense')} (default sapp; maxq N:M only); "
                         f"digits: {', '.join(DIGITS_METHODS)} (default maxq)")
    ap.add_argument("--block", type=positive_int, default=None, help="deprecated: use --pattern BxB")
    ap.add_argument("--sparsity", type=fraction_in_0_1, default=None,
                    help="block: fraction of blocks removed (default 0.9); N:M fixes it at 1 - N/M")
    ap.add_argument("--steps", type=positive_int, default=200,
                    help="presets: training steps (oneshot and asp: dense pre-training first)")
    ap.add_argument("--epochs", type=positive_int, default=30, help="N:M (digits): training epochs")
    ap.add_argument("--layers", default="maxq", choices=PRESETS, help="N:M (digits): which layers get the pattern")
    ap.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    ap.add_argument("--calib", type=positive_int, default=1024,
                    help="calibration rows for oneshot (a multiple of --batch-size)")
    ap.add_argument("--preset", default=None, choices=["imagenet", "criteo"], help="schedule preset")
    ap.add_argument("--min-blocks", type=positive_int, default=100)
    ap.add_argument("--pad", action="store_true", help="zero-pad layers the block does not tile")
    ap.add_argument("--scope", default="uniform", choices=["uniform", "global"])
    ap.add_argument("--allocation", default="loss", choices=["uniform", "loss"], help="oneshot allocation")
    ap.add_argument("--damp", type=nonneg_float, default=0.01,
                    help="oneshot: ridge pulling the refit toward the dense weights (relative to mean diag H)")
    ap.add_argument("--max-layer-sparsity", type=fraction_in_0_1, default=0.9,
                    help="oneshot, loss allocation: no layer above this block sparsity")
    ap.add_argument("--lr", type=positive_float, default=2e-3)
    ap.add_argument("--batch-size", type=positive_int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", type=writable_path, default="nn_bridge_prune.png", help="plot file ('' for none)")
    ap.add_argument("--json", type=writable_path, default="", help="write the report as JSON here")
    ap.add_argument("--save", type=writable_path, default="", help="save the finalized model's state_dict here")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def _train(model, task, steps, lr, pruner=None, progress=True, desc="train"):
    from tqdm.auto import tqdm
    params = pruner.weight_parameters() if pruner is not None else model.parameters()
    opt = torch.optim.Adam(params, lr=lr)
    if pruner is not None:
        pruner.bind(opt)
    trace = []
    for step in tqdm(range(steps), desc=desc, disable=not progress):
        x, y = task.batch(step)
        loss = task.loss(model(*x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        if pruner is not None:
            pruner.step()
            if hasattr(pruner, "target_now"):  # a scheduled pruner: its target against what the masks keep
                kept = sum(int(p.mask.sum()) for p in pruner.params)
                total = sum(g.n_groups for g in pruner.groupings)
                trace.append((pruner.progress, pruner.target_now(), 1 - kept / total, loss.item()))
    return trace


def _plot(path, trace, report, title):
    unit = "tiles" if report.is_block else "weights"
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    if trace:
        t = [r[0] for r in trace]
        ax[0].plot(t, [r[1] for r in trace], label="scheduled sparsity")
        ax[0].plot(t, [r[2] for r in trace], "--", label=f"achieved: zero {unit} / {unit}")
        ax[0].set_xlabel("training progress")
        ax[0].set_ylabel("sparsity")
        ax[0].legend()
        ax[0].set_title("schedule")
    else:
        ax[0].text(0.5, 0.5, "no schedule traced", ha="center")
        ax[0].set_axis_off()
    names = [r["name"] for r in report.rows]
    ax[1].barh(range(len(names)), [1.0 - r["kept_fraction"] for r in report.rows])
    ax[1].set_yticks(range(len(names)), names, fontsize=7)
    ax[1].set_xlabel(f"zero {unit} / {unit}")
    ax[1].set_xlim(0, 1)
    ax[1].set_title("per-layer sparsity")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    """Exit code 0 on success; wrong arguments give one line ``python -m nn_bridge prune: error: ...`` and exit 2
    (``--debug``: the traceback instead)."""
    return run_cli(_main, argv, prog=PROG)


def _scheduled(a, block):
    from .pruners import ScheduledPruner
    return a.model != "digits" and a.method in PRUNERS and issubclass(PRUNERS[a.method], ScheduledPruner)


# options only some runs read: given to a run that would not (they were dropped silently), an error naming them
_READ_BY = {
    "--allocation": ("--method oneshot on a block pattern", lambda a, block: a.method == "oneshot" and block),
    "--max-layer-sparsity": ("--method oneshot on a block pattern with --allocation loss",
                             lambda a, block: a.method == "oneshot" and block and a.allocation == "loss"),
    "--damp": ("--method oneshot", lambda a, block: a.method == "oneshot"),
    "--calib": ("--method oneshot", lambda a, block: a.method == "oneshot"),
    "--layers": ("--model digits", lambda a, block: a.model == "digits"),
    "--epochs": ("--model digits", lambda a, block: a.model == "digits"),
    "--steps": ("the mlp / cnn / criteo presets", lambda a, block: a.model != "digits"),
    "--preset": ("the scheduled methods (magnitude, powerprop, acdc, sapp)", _scheduled),
    "--scope": ("the scheduled methods (magnitude, powerprop, acdc, sapp)", _scheduled),
}


def _resolve(a, given=frozenset()):
    """Fill the pattern-dependent defaults and check the options against each other, before any work."""
    if a.block is not None:
        deprecated(f"{PROG} --block", f"{PROG} --pattern {a.block}x{a.block}")
        if a.pattern is not None and str(a.pattern) != f"{a.block}x{a.block}":
            raise ValueError(f"--block: {a.block} contradicts --pattern {a.pattern}; give --pattern only")
        a.pattern = pattern_arg(f"{a.block}x{a.block}")
    a.pattern = a.pattern or pattern_arg("16x16")
    block = hasattr(a.pattern, "block")
    a.model = a.model or ("mlp" if block else "digits")
    a.method = a.method or ("maxq" if a.model == "digits" else "sapp")
    if a.model == "digits":
        if block:
            raise ValueError(f"--model: digits is the N:M testbed (e.g. --pattern 2:4); a block pattern ({a.pattern}) "
                             f"trains {', '.join(sorted(MODEL_PRESETS))}")
        if a.method not in DIGITS_METHODS:
            raise ValueError(f"--method: the digits testbed trains {', '.join(DIGITS_METHODS)}, got {a.method!r}")
    elif a.method == "dense":
        raise ValueError(f"--method: 'dense' is the digits testbed's baseline (--model digits), not a method for "
                         f"{a.model!r}")
    if block and a.method in N_M_ONLY:
        raise ValueError(f"--method: {a.method} is defined on N:M windows; give an N:M --pattern (e.g. 2:4), "
                         f"not {a.pattern}")
    if not block and a.sparsity is not None and abs(a.sparsity - a.pattern.sparsity) > 1e-9:
        raise ValueError(f"--sparsity: the N:M pattern {a.pattern} fixes the sparsity at {a.pattern.sparsity:g}; "
                         f"leave it out")
    if not block and a.scope == "global":
        raise ValueError(f"--scope: 'global' moves blocks between layers; the N:M pattern {a.pattern} budgets every "
                         f"window (use uniform)")
    a.sparsity = (0.9 if a.sparsity is None else a.sparsity) if block else a.pattern.sparsity
    if a.model == "cnn" and a.batch_size < 8:
        raise ValueError(f"--batch-size: the cnn task draws batch-size // 8 images, so it needs >= 8, "
                         f"got {a.batch_size}")
    if a.model != "digits" and a.method == "oneshot" and a.calib % a.batch_size:
        raise ValueError(f"--calib: expected a multiple of --batch-size ({a.batch_size}), got {a.calib}")
    for opt, (who, reads) in _READ_BY.items():
        if opt in given and not reads(a, block):
            raise ValueError(f"{opt}: only {who} reads it; this run ({a.model}, {a.method}, {a.pattern}) would ignore "
                             f"it")


def _main(argv) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    _resolve(a, given_options(argv, parser))
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    try:
        model, report, trace, metric = (_prune_digits if a.model == "digits" else _prune_preset)(a)
    except ValueError as e:  # the library names its argument; say the option the user typed
        raise as_option(e, LIBRARY_ARGS) from None
    print(report.table())
    print(f"{metric[0]}: {metric[1]:.5f}")
    title = f"{a.model} / {a.method} / {a.pattern}" + (f" / sparsity {a.sparsity:g}" if hasattr(a.pattern, "block")
                                                        else "")
    if a.plot:
        _plot(a.plot, trace, report, title)
        print(f"plot: {a.plot}")
    if a.json:
        args = dict(vars(a), pattern=str(a.pattern), block=getattr(a.pattern, "block", None))
        with open(a.json, "w") as f:
            json.dump({"args": args, metric[0].split(" (")[0].replace(" ", "_"): metric[1], **report.to_dict()}, f,
                      indent=1, default=float)
    if a.save:
        save_torch_file(model.state_dict(), a.save)
    return 0


def _prune_preset(a):
    torch.manual_seed(a.seed)
    model = build_model(a.model)
    task = Task(a.model, a.seed, a.batch_size)
    progress = not a.no_progress
    block = hasattr(a.pattern, "block")
    s = a.sparsity if block else None  # N:M fixes it
    layers = dict(min_blocks=a.min_blocks, pad=a.pad)
    if a.method in ("oneshot", "asp"):  # both start from a trained dense model
        _train(model, task, a.steps, a.lr, progress=progress, desc="dense pre-training")
    if a.method == "oneshot":
        from .oneshot import solve_layers
        calib = [task.batch(i, seed_offset=1)[0] for i in range(a.calib // a.batch_size)]
        kw = dict(allocation=a.allocation, max_layer_sparsity=a.max_layer_sparsity) if block else {}
        res = solve_layers(model, calib, a.pattern, s, damp=a.damp, progress=progress, **layers, **kw)
        report, trace = res.finalize(), []
    else:
        kw = {"asp": {}, "srste": {}, "maxq": dict(steps_per_epoch=1, start=0, end=max(a.steps // 4, 1))}.get(
            a.method, dict(total_steps=a.steps, preset=a.preset or ("criteo" if a.model == "criteo" else "imagenet"),
                           scope=a.scope))
        pruner = make_pruner(a.method, model, s, pattern=a.pattern, **layers, **kw)
        trace = _train(model, task, a.steps, a.lr, pruner, progress,
                       desc=f"{a.method} {'fine-tuning' if a.method == 'asp' else 'training'}")
        report = pruner.finalize()
    with torch.no_grad():
        x, y = task.batch(0, seed_offset=2)
        val = float(task.loss(model(*x), y))
    return model, report, trace, ("validation loss (held-out batch)", val)


def _prune_digits(a):
    from .nm.digits import load_digits_split, train_run
    from .grouping import find_layers
    from .report import measure
    data = load_digits_split()
    dense = None
    if a.method == "asp":  # ASP prunes the trained dense model of the same seed, then fine-tunes it
        dense, r = train_run("dense", None, a.seed, a.epochs, data)
        print(f"dense: test accuracy {r['test_acc']:.4f}")
    model, r = train_run(a.method, None if a.method == "dense" else str(a.pattern), a.seed, a.epochs, data,
                         dense_model=dense, layers=a.layers)
    names = r.get("layers") or [g.name for g in find_layers(model, a.pattern, layers=a.layers)[0]]  # dense: would
    return model, measure(model, names, a.pattern), [], ("test accuracy (digits held-out split)", r["test_acc"])
