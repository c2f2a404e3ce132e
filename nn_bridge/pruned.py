"""Prune any model one-shot through one entry point, save the pruned model with its report, load it back.

``oneshot_prune(model, batches, pattern, sparsity=None, method=None, ...)`` takes the sparsity pattern as one
argument -- ``"16x16"`` / ``(16, 16)`` (B x B blocks) or ``"2:4"`` (N kept of every M consecutive inputs) -- and
hands the work to the one one-shot driver (``nn_bridge.oneshot.solve_layers``, both patterns).  The result bakes the
masks into plain weights, records per layer the achieved sparsity and the driver's relative reconstruction error on the
calibration data, and, given ``eval_batches``, compares the dense and the pruned model on them
(``nn_bridge.compare``).

``result.save(dir)`` writes the model the ecosystem's way -- ``save_pretrained`` for Hugging Face models (the
pattern and method recorded under ``"pruning"`` in ``config.json``), otherwise the state_dict as
``model.safetensors`` plus ``pruned.json`` -- and ``report.json``, ``report.md`` and ``layers.png`` (per-layer
sparsity and error).  ``load_pruned(dir)`` reads either back.
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field

import torch
from torch import nn

from groupsparse.schedules import check_sparsity

from . import compare as _compare

__all__ = ["oneshot_prune", "PrunedResult", "load_pruned", "parse_pattern", "check_out_dir", "AUTO_CLASSES"]

#: how a Hugging Face model is loaded and saved, by model kind (see ``userload``)
AUTO_CLASSES = {"encoder": "AutoModel", "causal_lm": "AutoModelForCausalLM",
                "classifier": "AutoModelForSequenceClassification"}
_REPORT_FILES = ("report.json", "report.md", "layers.png")
# sentence-transformers files that describe the pooling around the transformer (copied so the output folder loads
# as a SentenceTransformer too)
_ST_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


def parse_pattern(pattern):
    """``('block', B)`` for ``"16x16"`` / ``(16, 16)``, ``('nm', NMPattern)`` for ``"2:4"``: the (kind, parameter)
    view of ``grouping.parse_pattern`` (the one parser; its errors name ``pattern``)."""
    from .grouping import parse_pattern as parse
    from .tiling import BlockPattern
    p = parse(pattern)
    return ("block", p.block) if isinstance(p, BlockPattern) else ("nm", p)


def pattern_name(kind, p) -> str:
    return f"{p}x{p}" if kind == "block" else str(p)


def check_sparsity_for(kind, p, sparsity):
    """The block pattern needs a sparsity; N:M fixes it (1 - N/M), so a given one must agree."""
    if kind == "block":
        if sparsity is None:
            raise ValueError("sparsity: a block pattern needs a target sparsity in [0, 1), e.g. 0.3")
        return check_sparsity(sparsity)
    if sparsity is not None and abs(float(sparsity) - p.sparsity) > 1e-9:
        raise ValueError(f"sparsity: the N:M pattern {p} fixes the sparsity at {p.sparsity:g}; got {sparsity!r} "
                         f"(leave it out)")
    return p.sparsity


def check_out_dir(out, overwrite: bool, option: str = "out") -> str:
    """An output folder that does not exist yet, or (``overwrite``) one this module wrote before or an empty one."""
    out = os.fspath(out)
    if os.path.exists(out):
        if not os.path.isdir(out):
            raise ValueError(f"{option}: {out!r} exists and is a file, expected a folder")
        if not overwrite:
            raise ValueError(f"{option}: {out!r} already exists; pass --overwrite (overwrite=True) to replace it")
        if os.listdir(out) and not os.path.isfile(os.path.join(out, "report.json")):
            raise ValueError(f"{option}: {out!r} is not empty and holds no report.json (not an nn_bridge output "
                             f"folder); refusing to replace it")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise ValueError(f"{option}: the parent folder {parent!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise ValueError(f"{option}: the parent folder {parent!r} is not writable")
    return out


def tied_to_embedding(model: nn.Module) -> set:
    """Names of Linear layers whose weight is an embedding's (tied LM heads): pruning them would prune the
    embedding table too, so they are left dense unless named by ``include``."""
    emb = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return {n for n, m in model.named_modules() if isinstance(m, nn.Linear) and id(m.weight) in emb}


def select_layer_names(model, kind, p, include=None, exclude=(), min_blocks: int = 100):
    """(names, skipped): the Linear / Conv2d (groups=1) layers to prune, and {name: reason} of those left dense
    (``grouping.choose_layers``, the one layer finder, with shell-style globs and the tied-embedding rule).

    ``include`` / ``exclude`` are shell-style globs over module names (``'encoder.layer.*.attention.*'``).  A layer
    the pattern cannot cover (fewer than ``min_blocks`` blocks, B not dividing it, M not dividing its inputs) is
    skipped with its reason; a Linear tied to an embedding too, unless ``include`` is given; nothing left to prune
    is an error naming ``include``/``pattern``."""
    from .grouping import choose_layers
    from .tiling import BlockPattern
    include = None if include is None else _globs(include, "include")
    exclude = _globs(exclude or (), "exclude")

    def one_gemm(name):  # what the one-shot driver solves
        return _one_gemm_type(model.get_submodule(name))

    def glob(patterns):
        return lambda name: any(fnmatch.fnmatchcase(name, g) for g in patterns)

    keep = one_gemm if include is None else (lambda name: one_gemm(name) and glob(include)(name))
    chosen, skipped, _ = choose_layers(model, BlockPattern(p) if kind == "block" else p, include=keep,
                                       exclude=glob(exclude), min_blocks=min_blocks, untileable="skip")
    tied = tied_to_embedding(model) if include is None else set()
    for name in tied & set(chosen):
        skipped[name] = "weight tied to an embedding (name it in include to prune it anyway)"
    names = [n for n in chosen if n not in tied]
    if not names:
        matched = [n for n, _ in model.named_modules() if keep(n) and not glob(exclude)(n)]
        what = f"include={include!r}, exclude={exclude!r}"
        # every candidate refused only because the pattern does not fit it: the pattern is what to change
        misfit = skipped and all("do not tile" in r or "does not divide" in r for r in skipped.values())
        excluded = not matched and any(keep(n) for n, _ in model.named_modules())  # exclude took them all
        arg = "pattern" if misfit else "exclude" if excluded else "include"
        other = {}  # weighted modules of types one-shot does not prune (e.g. GPT-2's transformers Conv1D)
        for _, mod in model.named_modules():
            w = getattr(mod, "weight", None)
            if torch.is_tensor(w) and w.dim() >= 2 and not _one_gemm_type(mod) and not isinstance(mod, nn.Embedding):
                other[type(mod).__name__] = other.get(type(mod).__name__, 0) + 1
        none = "none (exclude matches them all)" if excluded else "none (no Linear/Conv2d matches)"
        raise ValueError(f"{arg}: no layer to prune with pattern {pattern_name(kind, p)} ({what}); "
                         + (f"left dense: {skipped}" if skipped else f"matched layers: {matched or none}")
                         + (f"; one-shot prunes Linear and Conv2d (groups=1) only, not {other}" if other else ""))
    from .nm.presets import candidates
    for name, mod in candidates(model):  # what the pattern could group but one-shot does not solve: say so
        if not _one_gemm_type(mod) and (include is None or glob(include)(name)) and not glob(exclude)(name):
            groups = getattr(mod, "groups", 1)
            skipped[name] = (f"{type(mod).__name__}{f' (groups={groups})' if groups != 1 else ''}: one-shot prunes "
                             f"Linear and Conv2d (groups=1) only")
    return names, skipped


def _one_gemm_type(mod) -> bool:
    """A layer the one-shot driver solves: Linear, or Conv2d with groups=1."""
    return isinstance(mod, nn.Linear) or (isinstance(mod, nn.Conv2d) and mod.groups == 1)


def _globs(value, arg) -> list:
    """One shell-style glob or a list of them, as a list of strings; anything else is an error naming ``arg``."""
    if isinstance(value, str):
        return [value]
    try:
        out = list(value)
    except TypeError:
        out = None
    if out is None or not all(isinstance(g, str) for g in out):
        raise ValueError(f"{arg}: expected a glob such as 'encoder.*' or a list of globs, got {value!r}")
    return out


def _block_list(model, names):
    """Names of the children of the ModuleList holding the most pruned layers (the transformer layers), or None.
    ``names`` are in forward order; the pruned layers outside the list must all come after those inside it (BERT's
    pooler, an untied LM head, a classifier): the streams prune them last, as their tail
    (``calibration.BlockStreams.groups``).  Otherwise None: the prefix is re-run for every layer."""
    best, best_in = None, 0
    for lname, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) > 1:
            kids = [f"{lname}.{i}" for i in range(len(mod))]
            inside = [any(n.startswith(k + ".") for k in kids) for n in names]
            n_in = sum(inside)
            if n_in > best_in and all(inside[:n_in]):  # the inside layers first, then the tail
                best, best_in = kids, n_in
    return best


def to_device(batch, device):
    if torch.is_tensor(batch):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


@dataclass
class PrunedResult:
    """A pruned model (plain weights, masks baked) and what is known about it; ``save(dir)`` writes it all."""
    model: nn.Module
    pattern: str
    sparsity: float
    method: str
    layers: list = field(default_factory=list)     # {name, shape, weight_sparsity, rel_error[, block_sparsity]}
    skipped: dict = field(default_factory=dict)    # name -> why it stayed dense
    eval: dict | None = None                       # nn_bridge.compare metrics, dense vs pruned
    seconds: float = 0.0
    kind: str = "module"                           # encoder | causal_lm | classifier | module
    info: dict = field(default_factory=dict)       # provenance (report's "inputs"): model, data files, options
    tokenizer: object = None
    hf_folder: str | None = None                   # the Hugging Face folder the model came from (extra files)
    arch: str | None = None                        # 'module:function' that builds the architecture (non-HF)
    block_error: dict = field(default_factory=dict)  # block -> [before, after] refine: relative block-output error

    # ------------------------------------------------------------------ report
    def report(self) -> dict:
        nw = sum(r["n_weights"] for r in self.layers)
        zw = sum(r["weight_sparsity"] * r["n_weights"] for r in self.layers)
        return {"pattern": self.pattern, "sparsity": self.sparsity, "method": self.method, "kind": self.kind,
                "weight_sparsity": zw / max(nw, 1), "eval": self.eval, "seconds": self.seconds,
                "layers": self.layers, "skipped": self.skipped, "refine_block_error": self.block_error,
                "inputs": self.info}

    def markdown(self) -> str:
        r = self.report()
        lines = [f"# One-shot pruning report: {self.pattern}, method {self.method}", "",
                 f"- model: {self.info.get('model', type(self.model).__name__)} ({self.kind})",
                 f"- target sparsity {self.sparsity:.4f}; achieved weight sparsity over the pruned layers "
                 f"{r['weight_sparsity']:.4f} ({len(self.layers)} layers, {len(self.skipped)} left dense)",
                 f"- time {self.seconds:.1f} s"]
        if self.eval:
            lines += ["", f"## Dense vs pruned on the evaluation data ({self.eval['metric']})", "",
                      "| quantity | value |", "|---|---|"]
            lines += [f"| {k} | {v:.6g} |" if isinstance(v, float) else f"| {k} | {v} |"
                      for k, v in self.eval.items() if k != "metric"]
        lines += ["", "## Layers", "", "| layer | shape | weight sparsity | rel. error (calibration) |",
                  "|---|---|---|---|"]
        lines += [f"| {x['name']}{' (tied: ' + ', '.join(x['tied']) + ')' if x.get('tied') else ''} | "
                  f"{'x'.join(map(str, x['shape']))} | {x['weight_sparsity']:.4f} | "
                  f"{x['rel_error']:.3e} |" for x in self.layers]
        if self.block_error:
            lines += ["", "## Block reconstruction (refine)", "", "| block | rel. output error before | after |",
                      "|---|---|---|"]
            lines += [f"| {b} | {e[0]:.3e} | {e[1]:.3e} |" for b, e in self.block_error.items()]
        if self.skipped:
            lines += ["", "Left dense: " + "; ".join(f"{k} ({v})" for k, v in self.skipped.items())]
        lines += ["", "rel. error = ||X_d W_d - X_p W||^2 / ||X_d W_d||^2 on the calibration inputs (dense inputs "
                  "X_d, already-pruned inputs X_p); see layers.png."]
        return "\n".join(lines) + "\n"

    def plot(self, path) -> None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        names = [x["name"] for x in self.layers]
        h = max(3.0, 0.18 * len(names) + 1.2)
        fig, ax = plt.subplots(1, 2, figsize=(12, h), sharey=True)
        y = range(len(names))
        ax[0].barh(y, [x["weight_sparsity"] for x in self.layers])
        ax[0].axvline(self.sparsity, color="k", ls="--", lw=0.8, label="target")
        ax[0].set_yticks(list(y), names, fontsize=6)
        ax[0].set_xlim(0, 1)
        ax[0].set_xlabel("weight sparsity")
        ax[0].legend(fontsize=7)
        ax[0].invert_yaxis()
        ax[1].barh(y, [max(x["rel_error"], 1e-12) for x in self.layers], color="tab:red")
        ax[1].set_xscale("log")
        ax[1].set_xlabel("relative reconstruction error (calibration)")
        fig.suptitle(f"{self.info.get('model', type(self.model).__name__)}: {self.pattern}, {self.method}")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)

    # ------------------------------------------------------------------ save
    def save(self, out, overwrite: bool = False) -> str:
        """Write the model and the report into the folder ``out`` (written to a temporary folder next to it, then
        renamed: an interrupted save leaves no half-written folder)."""
        out = check_out_dir(out, overwrite)
        parent = os.path.dirname(os.path.abspath(out))
        tmp = tempfile.mkdtemp(prefix=os.path.basename(out) + ".", suffix=".tmp", dir=parent)
        try:
            self._save_model(tmp)
            with open(os.path.join(tmp, "report.json"), "w") as f:
                json.dump(self.report(), f, indent=1)
            with open(os.path.join(tmp, "report.md"), "w") as f:
                f.write(self.markdown())
            self.plot(os.path.join(tmp, "layers.png"))
            if os.path.exists(out):
                shutil.rmtree(out)
            os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out

    def _pruning_record(self) -> dict:
        return {"tool": "nn_bridge", "pattern": self.pattern, "sparsity": self.sparsity, "method": self.method,
                "layers": [x["name"] for x in self.layers]}

    def _save_model(self, folder):
        model = self.model
        if hasattr(model, "save_pretrained") and hasattr(model, "config"):
            model.config.pruning = dict(self._pruning_record(), auto_class=AUTO_CLASSES.get(self.kind, "AutoModel"))
            model.save_pretrained(folder)
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(folder)
            if self.hf_folder:
                for f in os.listdir(self.hf_folder):
                    src = os.path.join(self.hf_folder, f)
                    if f in _ST_FILES and os.path.isfile(src):
                        shutil.copy2(src, folder)
                    elif re.fullmatch(r"\d+_[A-Za-z]\w*", f) and os.path.isdir(src):  # 1_Pooling, 2_Normalize
                        shutil.copytree(src, os.path.join(folder, f))
            return
        from safetensors.torch import save_model
        save_model(model, os.path.join(folder, "model.safetensors"))
        with open(os.path.join(folder, "pruned.json"), "w") as f:
            json.dump(dict(self._pruning_record(), arch=self.arch), f, indent=1)


def load_pruned(folder, model: nn.Module | None = None) -> nn.Module:
    """Load a folder written by ``PrunedResult.save``: a Hugging Face model through the Auto class recorded in
    its config, otherwise the architecture from ``pruned.json``'s ``arch`` (or the given ``model``, filled in
    place) with the saved state_dict."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise ValueError(f"folder: no such folder: {folder!r}")
    cfg = os.path.join(folder, "config.json")
    if os.path.isfile(cfg) and model is None:
        import transformers
        with open(cfg) as f:
            auto = json.load(f).get("pruning", {}).get("auto_class", "AutoModel")
        if auto not in AUTO_CLASSES.values():
            raise ValueError(f"folder: {cfg} names an unknown auto_class {auto!r}")
        return getattr(transformers, auto).from_pretrained(folder, local_files_only=True).eval()
    meta_path = os.path.join(folder, "pruned.json")
    weights = os.path.join(folder, "model.safetensors")
    if not os.path.isfile(weights):
        raise ValueError(f"folder: {folder!r} holds neither a Hugging Face config.json nor model.safetensors")
    if model is None:
        arch = None
        if os.path.isfile(meta_path):
            with open(meta_path) as f:
                arch = json.load(f).get("arch")
        if not arch:
            raise ValueError(f"model: {folder!r} records no architecture ('arch' in pruned.json); pass model= (a "
                             f"freshly built module of the same architecture)")
        from .userload import build_from_function
        model = build_from_function(arch, "arch")
    from safetensors.torch import load_model
    try:
        load_model(model, weights)
    except RuntimeError as e:  # another architecture: missing / unexpected keys or shapes
        raise ValueError(f"model: does not match the weights saved in {folder!r}: "
                         f"{' '.join(str(e).split())}") from None
    return model.eval()


def oneshot_prune(model: nn.Module, batches, pattern, sparsity=None, method: str | None = None, *, include=None,
                  exclude=(), row_masks=None, run=None, blocks="auto", min_blocks: int = 100, eval_batches=None,
                  eval_labels=None, kind: str | None = None, device=None, solve_device=None, progress: bool = True,
                  **driver_kw) -> PrunedResult:
    """Prune ``model`` in place, one-shot from calibration ``batches``, to ``pattern``; returns a
    :class:`PrunedResult` whose ``save(dir)`` writes the model and its report.

    ``model``: an ``nn.Module``, or what ``nn_bridge.userload.load_model`` returns (its kind, tokenizer and source
    then go with the result); ``batches`` / ``eval_batches``: lists of batches, or what
    ``nn_bridge.calibdata.load_data`` returns (its row masks / labels are used).

    ``pattern``: ``"16x16"`` / ``(16, 16)`` (needs ``sparsity``, the fraction of blocks removed) or ``"2:4"``
    (sparsity fixed by the pattern).  ``method``: the driver's (block: ``nn_bridge.oneshot.METHODS``, default
    ``'obs'``; N:M: ``nn_bridge.nm.oneshot.ONESHOT_METHODS``, default ``'iht'``); None = the driver's default.
    ``include`` / ``exclude``: globs over module names (:func:`select_layer_names`).  ``row_masks``: per-batch
    bool (batch, seq) masks of the real tokens (e.g. ``attention_mask.bool()``).  ``run(model, batch)`` calls the
    model (default: ``model(**batch)`` for dicts, ``model(*batch)`` for tuples, else ``model(batch)``).
    ``blocks``: names of the sequential submodules (transformer layers) holding every pruned layer, replayed one at
    a time; ``"auto"`` = the driver's choice (``solve_layers(blocks="auto")``: the ModuleList holding them, layers
    called after it as the tail, provided each block's output is the next one's input on batch 0; else None, the
    prefix re-run per layer).  ``eval_batches``
    (and ``eval_labels``, for classifiers): data on which the dense and the pruned model are compared by
    ``nn_bridge.compare`` for ``kind``.  ``device``: move the model and the batches there first.  Other keyword
    arguments go to the driver (e.g. ``allocation``, ``damp``, ``refine_steps``, ``max_memory``).
    ``solve_device``: run the layer solves there while the model stays on ``device`` (the driver's ``device``).
    Pattern ``"1x1"`` with a sparsity prunes single weights (e.g. ``method='sparsegpt'`` or ``'wanda'``).
    """
    from .calibdata import Data
    from .userload import LoadedModel
    loaded = model if isinstance(model, LoadedModel) else None
    if loaded is not None:
        model, kind = loaded.model, kind or loaded.kind
    kind = kind or "module"
    if isinstance(batches, Data):
        batches, row_masks = batches.batches, batches.row_masks if row_masks is None else row_masks
    if isinstance(eval_batches, Data):
        eval_batches, eval_labels = eval_batches.batches, eval_batches.labels if eval_labels is None else eval_labels
    pkind, p = parse_pattern(pattern)
    if solve_device is not None:
        driver_kw["device"] = solve_device
    s = check_sparsity_for(pkind, p, sparsity)
    if kind not in _compare.KINDS:
        raise ValueError(f"kind: expected one of {_compare.KINDS}, got {kind!r}")
    if run is not None:
        from .calibration import check_run
        check_run(run)
    if torch.is_tensor(batches) or isinstance(batches, dict):  # list() would make each row a batch
        raise ValueError(f"batches: expected a list of calibration batches, got one {type(batches).__name__} (wrap "
                         f"it in a list)")
    batches = list(batches)
    if not batches:
        raise ValueError("batches: at least one calibration batch is required")
    from .grouping import check_model
    check_model(model)
    if device is not None:
        from .oneshot import solve_device as _device
        device = _device(device, "device")
        model = model.to(device)
        batches = [to_device(b, device) for b in batches]
        row_masks = None if row_masks is None else [to_device(m, device) for m in row_masks]
        eval_batches = None if eval_batches is None else [to_device(b, device) for b in eval_batches]
    names, skipped = select_layer_names(model, pkind, p, include, exclude, min_blocks)
    if run is None and kind == "causal_lm":
        run = _run_no_cache  # a KV cache would grow with every replay of a block
    t0 = time.perf_counter()
    dense_summary = None
    if eval_batches is not None:  # checked like the calibration batches, before any pruning
        from .calibration import check_batches, default_run
        eval_batches = check_batches(eval_batches, model, run or default_run, name="eval_batches")
        dense_summary = _compare.summarize(model, eval_batches, kind, run)
        if eval_labels is not None and kind == "classifier":
            n = sum(len(x) for x in dense_summary["logits"])
            if torch.as_tensor(eval_labels).numel() != n:
                raise ValueError(f"eval_labels: expected one label per evaluation sample ({n}), got "
                                 f"{torch.as_tensor(eval_labels).numel()}")
    from .oneshot import solve_layers
    training = model.training  # the driver runs the model in eval mode (no dropout); the user's mode is restored
    model.eval()
    try:
        res = solve_layers(model, batches, pattern, s if pkind == "block" else None, method=method, run=run,
                           row_masks=row_masks, include=names, min_blocks=min_blocks, blocks=blocks,
                           progress=progress, **driver_kw)
    finally:
        model.train(training)
    res.finalize()
    method = method or ("obs" if pkind == "block" else "iht")
    errors = res.layer_rel_error
    tied = {t.name: list(t.holders[1:]) for t in res.tilings}  # a shared weight: one row, under its first user
    layers = []
    with torch.no_grad():
        for name in (n for n in names if n in tied):
            w = model.get_submodule(name).weight
            row = {"name": name, "shape": list(w.shape), "n_weights": w.numel(),
                   "weight_sparsity": float((w == 0).sum()) / w.numel(), "rel_error": float(errors[name]),
                   "method": res.layer_method.get(name, method)}
            if tied[name]:
                row["tied"] = tied[name]
            if pkind == "block":
                from .tiling import LayerTiling
                kept = int((LayerTiling(name, tuple(w.shape), p).block_sq_norms(w) > 0).sum())
                row["block_sparsity"] = 1.0 - kept / LayerTiling(name, tuple(w.shape), p).n_blocks
            layers.append(row)
    result = PrunedResult(model, pattern_name(pkind, p), s, method, layers, skipped, kind=kind,
                          block_error={b: list(e) for b, e in res.block_error.items()})
    if loaded is not None:
        result.tokenizer, result.hf_folder, result.arch = loaded.tokenizer, loaded.hf_folder, loaded.arch
    if eval_batches is not None:
        result.eval = _compare.compare(dense_summary, _compare.summarize(model, eval_batches, kind, run), kind,
                                       eval_labels)
    result.seconds = time.perf_counter() - t0
    return result


def _run_no_cache(model, batch):
    if isinstance(batch, dict):
        return model(**batch, use_cache=False)
    return model(batch, use_cache=False)
