"""``python -m nn_bridge oneshot``: prune your own model one-shot from your own data and save it.

  python -m nn_bridge oneshot --model MODEL --calib DATA [--eval DATA] --pattern 16x16 --sparsity 0.3 --out DIR

``--model``: a Hugging Face model folder or a model id already in the local cache (nothing is downloaded),
``module:function`` / ``file.py:function`` returning an ``nn.Module``, or a weights file (``.pt``/``.pth``/
``.bin``/``.safetensors``) with ``--arch module:function`` (``nn_bridge.userload``).  ``--calib`` / ``--eval``: a
``.txt`` file (one sample a line), a ``.pt``/``.npz`` tensor file or a folder of images, both in the same format
(``nn_bridge.calibdata``).  ``--pattern``: ``BxB`` blocks (needs ``--sparsity``) or ``N:M``.  The output folder gets
the pruned model (``save_pretrained`` for Hugging Face models, else ``model.safetensors`` + ``pruned.json``),
``report.json``, ``report.md`` and ``layers.png`` (``nn_bridge.pruned``).  Every argument is checked before any
pruning work starts; errors are one line naming the option.

Training-time pruning (a pruner inside your own training loop) is a Python API: see the README's
"Prune your own model" section; ``python -m nn_bridge prune`` trains its built-in presets only.
"""
from __future__ import annotations

import json
import sys

from ._cli_common import (ArgumentParser, fraction_in_0_1, given_options, nonneg_float, nonneg_int, pattern_arg,
                          positive_float, positive_int, run_cli)
from .oneshot import solve_device

__all__ = ["main", "build_parser"]

PROG = "python -m nn_bridge oneshot"


def build_parser():
    ap = ArgumentParser(prog=PROG, description="One-shot prune your own model (block BxB or N:M) from calibration "
                                               "data; save it with a report.")
    ap.add_argument("--model", required=True,
                    help="Hugging Face folder or cached model id, module:function, or a weights file with --arch")
    ap.add_argument("--arch", default=None, help="module:function building the architecture of a weights file")
    ap.add_argument("--calib", required=True, help=".txt (one sample a line), .pt/.npz tensors, or an image folder")
    ap.add_argument("--eval", default=None, help="evaluation data in the --calib format (report: dense vs pruned)")
    ap.add_argument("--pattern", required=True, type=pattern_arg, help="BxB blocks (e.g. 16x16) or N:M (e.g. 2:4)")
    ap.add_argument("--sparsity", type=fraction_in_0_1, default=None,
                    help="fraction of blocks removed (block patterns; N:M fixes it)")
    ap.add_argument("--method", default=None,
                    help="block: obs (default), seqobs, magnitude, activation, activation_refit, sparsegpt / wanda "
                         "(1x1), or any groupsparse.select method; N:M: iht (default), obs, seqobs, magnitude_refit, "
                         "magnitude, sparsegpt, wanda")
    ap.add_argument("--include", nargs="+", default=None, metavar="GLOB", help="prune only layers matching a glob")
    ap.add_argument("--exclude", nargs="+", default=[], metavar="GLOB", help="leave layers matching a glob dense")
    ap.add_argument("--allocation", default="uniform", choices=["uniform", "loss"],
                    help="block: the same sparsity in every layer, or spread by the one-shot loss curves")
    ap.add_argument("--max-layer-sparsity", type=fraction_in_0_1, default=None,
                    help="block, --allocation loss: no layer above this block sparsity (default 0.9)")
    ap.add_argument("--damp", type=nonneg_float, default=0.01, help="ridge toward the dense weights")
    ap.add_argument("--refine-steps", type=nonneg_int, default=0,
                    help="Hugging Face transformers (block and N:M): Adam steps of block reconstruction per transformer layer "
                         "after its layers are pruned (masks fixed; e.g. 512)")
    ap.add_argument("--refine-lr", type=positive_float, default=1e-3, help="learning rate of --refine-steps")
    ap.add_argument("--checkpoint", default=None, metavar="DIR",
                    help="Hugging Face transformers: write the run's state into this directory after every "
                         "transformer layer; the same command continues an interrupted run from it (same model, data "
                         "and options)")
    ap.add_argument("--min-blocks", type=positive_int, default=100,
                    help="block: layers with fewer blocks stay dense")
    ap.add_argument("--max-length", type=positive_int, default=128, help="text: tokens per sample")
    ap.add_argument("--batch-size", type=positive_int, default=16)
    ap.add_argument("--image-size", type=positive_int, default=None, help="images: resize to this square size")
    ap.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:0")
    ap.add_argument("--out", required=True, help="output folder (must not exist unless --overwrite)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing output folder written before")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def _main(argv) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    given = given_options(argv, parser)
    a.pattern = str(a.pattern)  # parsed (errors name --pattern); the drivers take the canonical spelling
    from . import calibdata, pruned, userload
    from .oneshot import METHODS as BLOCK_METHODS
    from .nm.oneshot import ONESHOT_METHODS as NM_METHODS

    # every check that can fail runs here, before the model is loaded or any pruning starts
    pkind, p = pruned.parse_pattern(a.pattern)
    if pkind == "block" and a.sparsity is None:
        raise ValueError(f"--sparsity: the block pattern {a.pattern} needs a sparsity in [0, 1), e.g. 0.3")
    if pkind == "nm" and a.sparsity is not None and abs(a.sparsity - p.sparsity) > 1e-9:
        raise ValueError(f"--sparsity: the N:M pattern {p} fixes the sparsity at {p.sparsity:g}; leave it out")
    if a.allocation != "uniform" and pkind != "block":  # N:M fixes every layer's budget: the option would be ignored
        raise ValueError(f"--allocation: spreads the sparsity of block patterns; {a.pattern} is N:M (every layer "
                         f"keeps {p.n} of every {p.m})")
    if a.max_layer_sparsity is not None and a.allocation != "loss":
        raise ValueError("--max-layer-sparsity: caps the layers of --allocation loss only (give both, or neither)")
    methods = BLOCK_METHODS if pkind == "block" else NM_METHODS
    if pkind == "block":  # the driver hands any groupsparse.select method to the core
        from groupsparse.selection import METHODS as SELECT_METHODS
        methods = tuple(methods) + tuple(m for m in SELECT_METHODS if m not in methods)
    if a.method is not None and a.method not in methods:
        raise ValueError(f"--method: expected one of {', '.join(methods)} for a{' block' if pkind == 'block' else 'n N:M'}"
                         f" pattern, got {a.method!r}")
    pruned.check_out_dir(a.out, a.overwrite, "--out")
    if a.checkpoint is not None:
        from .resume import check_path
        try:
            check_path(a.checkpoint)
        except ValueError as e:
            raise ValueError(f"--{e}") from None
    device = solve_device(a.device, "--device")
    calib_kind = calibdata.data_kind(a.calib, "--calib")
    if a.eval is not None:
        eval_kind = calibdata.data_kind(a.eval, "--eval")
        if eval_kind != calib_kind:
            raise ValueError(f"--eval: {a.eval!r} is {eval_kind} data but --calib is {calib_kind}; give both in one "
                             f"format")
    source = userload.resolve_model(a.model, a.arch)[0]
    # options only some inputs read: given where they would be ignored, an error naming them
    for opt, reads, who in (("--image-size", calib_kind == "images", "a folder of images (--calib)"),
                            ("--max-length", calib_kind == "text", "a text file (--calib)"),
                            ("--refine-lr", bool(a.refine_steps), "--refine-steps"),
                            ("--arch", source == "state", "a weights file (--model)")):
        if opt in given and not reads:
            raise ValueError(f"{opt}: only {who} reads it; this run would ignore it")

    loaded = userload.load_model(a.model, a.arch)
    if a.checkpoint is not None and loaded.kind == "module":
        raise ValueError(f"--checkpoint: needs a Hugging Face transformer (checkpoints are written after each of its "
                         f"layers); {a.model!r} is a plain nn.Module")
    if a.refine_steps and loaded.kind == "module":
        raise ValueError(f"--refine-steps: needs a Hugging Face transformer (its layers are replayed one at a time); "
                         f"{a.model!r} is a plain nn.Module")
    if calib_kind == "text" and loaded.tokenizer is None:
        raise ValueError(f"--calib: a text file needs the model's tokenizer and {a.model!r} has none; give token "
                         f"ids as a .pt/.npz tensor file instead")
    opts = dict(tokenizer=loaded.tokenizer, max_length=a.max_length, batch_size=a.batch_size,
                image_size=a.image_size)
    cal = calibdata.load_data(a.calib, "--calib", **opts)
    ev = calibdata.load_data(a.eval, "--eval", **opts) if a.eval is not None else None
    kw = dict(damp=a.damp)
    if a.checkpoint is not None:
        kw["checkpoint"] = a.checkpoint
    if pkind == "block":
        kw.update(allocation=a.allocation, max_layer_sparsity=0.9 if a.max_layer_sparsity is None else
                  a.max_layer_sparsity)
    if a.refine_steps:
        kw.update(refine_steps=a.refine_steps, refine_lr=a.refine_lr)
    res = pruned.oneshot_prune(loaded, cal, a.pattern, a.sparsity, a.method, include=a.include, exclude=a.exclude,
                               min_blocks=a.min_blocks, eval_batches=ev, device=device, progress=not a.no_progress,
                               **kw)
    res.info = {"model": a.model, "calib": a.calib, "n_calib": cal.n_samples, "eval": a.eval,
                "n_eval": None if ev is None else ev.n_samples, "max_length": a.max_length,
                "batch_size": a.batch_size, "device": str(device), "refine_steps": a.refine_steps,
                "refine_lr": a.refine_lr if a.refine_steps else None, "command": " ".join([PROG] + list(argv))}
    res.model.to("cpu")
    res.save(a.out, overwrite=a.overwrite)
    rep = res.report()
    print(f"pruned {len(res.layers)} layers to {res.pattern} ({res.method}), weight sparsity "
          f"{rep['weight_sparsity']:.4f}, {res.seconds:.1f} s")
    if res.eval:
        print("eval: " + json.dumps({k: v for k, v in res.eval.items()}))
    print(f"saved: {a.out} (model, report.json, report.md, layers.png)")
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
