"""One-shot pruning from calibration data, layer by layer, on the Gram-form least-squares problem: the one driver
for every pattern, ``solve_layers(model, batches, pattern, sparsity=None, method=...)`` with ``pattern``
``"16x16"`` / ``(16, 16)`` (B x B blocks, below) or ``"2:4"`` (N:M; its layer solver is ``nm.oneshot``).  The
calibration -- streams of layer inputs, Grams, damping -- is ``nn_bridge.calibration``; the public entry point with
layer globs, a report and saving is ``nn_bridge.oneshot_prune`` (``pruned.py``).

For a layer with GEMM matrix M (inputs x outputs, tiling.py), calibration inputs X_p reaching it in the pruned
model and X_d reaching it in the dense model, we solve

    min_{M^ block sparse}  (1/2n) || X_d M - X_p M^ ||_F^2
      = 1/2 tr(M^T H M) - tr(M^T Bm) + const,   H = X_p^T X_p / n,  Bm = (X_p^T X_d / n) M

(the ``groupsparse.GramLeastSquares(H, Bm)`` loss, coefficients the (p, K) matrix M^ flattened row-major, the
groups ``Groups.block_tiling(M.shape, B)``), then go to the next layer feeding the pruned activations forward.
Targeting the *dense* output from *pruned* inputs lets each layer compensate the error of the layers before it.
Both H and Bm get a ridge term that pulls M^ toward the dense M (``calibration.damped``): with few calibration tokens H is
ill-determined, and shrinking toward M, not toward 0, leaves an unpruned, undrifted layer exactly as it was.

Selection (``method``):
* ``'obs'`` (default): greedy backward elimination on the Gram form -- start from the least-squares optimum and
  repeatedly drop the block whose removal raises the loss least, re-optimizing the rest exactly (group Optimal
  Brain Surgeon: increment 1/2 tr(M_g^T [H^-1]_gg^-1 M_g), rank-B downdate of H^-1).  The loss is separable over
  the column blocks of M (they share H), so all column blocks run in lock step as one batched computation
  (one shared p x p inverse, rank-B downdates per column block), and the per-column paths are merged by
  their loss increments: the layer's loss curve.  The kept blocks are then refit exactly (float64 solve).  Each
  layer goes to ``groupsparse.select(GramLeastSquares(H, Bm), groups, k, method='obs')`` (``selection/obs.py``).
* ``'magnitude'`` / ``'activation'``: block Frobenius norm of M, or of X M_g (tr(M_g^T H_gg M_g)), no refit;
  ``'activation_refit'``: activation scores then the least-squares refit of the kept blocks.  (Baselines.)
* ``'seqobs'``: the scalable sequential group OBS of ``groupsparse.selection.sequential_obs`` (one shared factor of
  H^-1, O(p^2 + pK) memory, O(p^3 + p^2 K) time; ``SEQOBS_OPTIONS``): for layers whose exact path does not fit.
  ``max_memory`` (bytes) picks per layer: 'obs' runs where its estimate (``obs_memory_bytes``) fits, else
  'seqobs'; ``result.layer_method`` says which ran.  ``device`` runs the layer solves there (the model stays put).
* ``'sparsegpt'`` / ``'wanda'``: the papers' methods on single weights (``block=1``, pattern ``'1x1'``), from the
  raw calibration Gram and the dense weights (SparseGPT damps H itself by 1% of its mean diagonal).
* any other name is passed to ``groupsparse.select(GramLeastSquares(H, Bm), groups, k, method=...)`` when that
  function exists (``_select_layer``: the one place to swap).

Allocation (``allocation``): ``'uniform'`` (every layer at the target) or ``'loss'``: a first pass over the dense
model computes every layer's loss curve (sorted single-block OBS increments, ``obs_first_costs``), normalized by
the layer's dense output energy 1/2 tr(M^T H M); the blocks removed across all layers are the ones with the smallest
normalized increments (each layer capped at ``max_layer_sparsity``) -- the method, not a hand-tuned table, spreads
the sparsity.
"""
from __future__ import annotations

import time
import warnings
from contextlib import closing
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from groupsparse._validation import check_nonneg, check_positive_int, check_tol
from groupsparse.schedules import check_sparsity
from groupsparse.selection.obs import gram_refit, merge_paths, obs_first_costs, obs_memory_bytes, obs_paths

from . import masking
from .calibration import (Grams, Layer, check_batches, check_blocks, check_run, check_spill, damped,  # noqa: F401
                          default_run, forward_order, layer_inputs, pow2_scale, streams)
from .report import finalize_model, measure
from .tiling import LayerTiling, find_prunable, keep_count, matrix_to_weight, weight_to_matrix

__all__ = ["solve_layers", "oneshot_prune", "OneShotResult", "obs_paths", "merge_paths", "layer_inputs", "METHODS",
           "solve_device", "layer_method"]

METHODS = ("obs", "magnitude", "activation", "activation_refit", "seqobs", "sparsegpt", "wanda")
# the scalable method's settings: row-block budgets by the exact OBS first-step saliency, then 20 preconditioned CG
# iterations on the support (the best of the variants measured in groupsparse.selection.sequential_obs)
SEQOBS_OPTIONS = {"budget": "obs", "refit_iters": 20}
_SINGLE_WEIGHT = ("sparsegpt", "wanda")  # the papers' methods: unstructured (block=1), raw H and dense weights
# 'exact' (groupsparse.selection.exact) visits up to 2^n nodes (a refit each) for n blocks: the layers it finishes
# in seconds (16 blocks of 8: 6 s on one core; 24 did not finish in a minute)
_EXACT_MAX_BLOCKS = 16


# ---------------------------------------------------------------------------------------------- the solver
def _pad_problem(H, Bm, t: LayerTiling):
    """Zero-pad H and Bm to the padded tiling (padded rows get unit curvature and no signal: they stay 0)."""
    pr, pc = t.padded_shape
    p, K = Bm.shape
    if (pr, pc) == (p, K):
        return H, Bm
    Hp = torch.eye(pr, dtype=H.dtype, device=H.device)
    Hp[:p, :p] = H
    Bp = torch.zeros(pr, pc, dtype=Bm.dtype, device=Bm.device)
    Bp[:p, :K] = Bm
    return Hp, Bp


def _pad_matrix(M, t: LayerTiling):
    """M zero-padded to the padded tiling's GEMM shape."""
    pr, pc = t.padded_shape
    if tuple(M.shape) == (pr, pc):
        return M
    out = torch.zeros(pr, pc, dtype=M.dtype, device=M.device)
    out[:M.shape[0], :M.shape[1]] = M
    return out


def _select_layer(H, Bm, t: LayerTiling, n_remove: int, method: str, seqobs_kw=None):
    """Keep-mask (R, C) and refit matrix for one layer, removing ``n_remove`` blocks (the one place a solver is
    chosen; a ``groupsparse.select`` method name goes to groupsparse)."""
    R, C = t.grid
    B = t.block
    k = t.n_blocks - n_remove
    if method == "seqobs":
        from groupsparse.selection.sequential_obs import seqobs
        r = seqobs(H, B=Bm, block=B, n_remove=n_remove, **{**SEQOBS_OPTIONS, **(seqobs_kw or {})})
        return r.keep.cpu(), r.coef
    if k == 0:  # every block removed
        return torch.zeros(R, C, dtype=torch.bool), torch.zeros(Bm.shape, dtype=torch.float64, device=H.device)
    import groupsparse
    # 'obs' (groupsparse.selection.obs: merged lock-step group OBS paths) and every other select method; the
    # exact refit comes back on H's device (coef_native)
    sol = groupsparse.select(groupsparse.GramLeastSquares(H, Bm), t.groups(), k, method=method)
    keep = torch.zeros(t.n_blocks, dtype=torch.bool)
    keep[torch.as_tensor(np.asarray(sol.support), dtype=torch.long)] = True
    coef = sol.info["coef_native"].reshape(Bm.shape).to(torch.float64)
    return keep.reshape(R, C), coef


def layer_method(method: str, p: int, K: int, block: int, n_remove: int, max_memory=None) -> str:
    """The method run on a (p, K) layer under ``max_memory`` bytes: 'obs' where ``obs_memory_bytes`` fits, else
    'seqobs'; a layer that even the scalable method cannot fit is an error naming max_memory."""
    if max_memory is None:
        return method
    if method == "obs":
        if obs_memory_bytes(p, K, block, n_remove) <= max_memory:
            return "obs"
        method = "seqobs"
    from groupsparse.selection.sequential_obs import memory_bytes
    if memory_bytes(p, K, 8) > max_memory:
        raise ValueError(f"max_memory: a {p} x {K} layer needs about {memory_bytes(p, K, 8) / 1e9:.2f} GB even for "
                         f"the scalable method (H, its factor and the weights in float64); got "
                         f"{max_memory / 1e9:.2f} GB")
    return method


def _single_weight(H, Md, t: LayerTiling, n_remove: int, method: str):
    """SparseGPT / Wanda on single weights from the raw Gram and the dense weights (their papers' setting)."""
    from groupsparse.selection import sequential_obs
    r = getattr(sequential_obs, method)(H, Md, sparsity=n_remove / t.n_blocks)
    return r.keep.cpu(), r.coef


def solve_device(device, name="device"):
    """``device`` as a torch.device (None: where the Grams are); CUDA asked without CUDA is an error naming
    ``name`` (the argument or the CLI option that gave it)."""
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{name}: expected a torch device such as 'cpu', 'cuda' or 'cuda:0', got {device!r}") from None
    if dev.type == "meta":  # model.to('meta') would drop every weight's values
        raise ValueError(f"{name}: the 'meta' device holds shapes without values; expected e.g. 'cpu' or 'cuda'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{name}: {device!r} asked but CUDA is not available (torch.cuda.is_available() is False)")
    return dev


def _baseline(H, Mdense, t: LayerTiling, k: int, method: str, Bm):
    R, C = t.grid
    B = t.block
    blocks = Mdense.reshape(R, B, C, B)
    if method == "magnitude":
        score = blocks.pow(2).sum(dim=(1, 3))
    else:  # ||X M_g||^2 = tr(M_g^T H_gg M_g)
        Hg = H.reshape(R, B, R, B)[torch.arange(R), :, torch.arange(R), :]  # (R, B, B)
        score = torch.einsum("iajb,iac,icjb->ij", blocks, Hg, blocks)
    keep = torch.zeros(R * C, dtype=torch.bool)
    keep[torch.topk(score.reshape(-1), k).indices] = True
    keep = keep.reshape(R, C)
    if method == "activation_refit":
        return keep, gram_refit(H, Bm, keep, block=B, dtype=torch.float64)
    return keep, (Mdense * keep.repeat_interleave(B, 0).repeat_interleave(B, 1)).double()




# ---------------------------------------------------------------------------------------------- driver
@dataclass
class OneShotResult:
    """What one run of the driver did.  ``tilings``: the pruned layers in forward order (``LayerTiling`` for block
    patterns, ``calibration.Layer`` for N:M); ``pattern``: ``'BxB'`` or the ``NMPattern``."""
    model: nn.Module
    tilings: list
    pattern: object = None
    layer_sparsity: dict = field(default_factory=dict)   # name -> block (or weight) sparsity chosen
    layer_rel_error: dict = field(default_factory=dict)  # name -> ||X_d M - X_p M^||^2 / ||X_d M||^2 (calibration)
    params: list = field(default_factory=list)          # block patterns: the BlockMask parametrizations
    seconds: dict = field(default_factory=dict)         # wall time: forward passes, Gram products, solve
    block_error: dict = field(default_factory=dict)     # block -> relative output error before, after refine
    keep: dict = field(default_factory=dict)            # name -> keep-mask ((R, C) blocks; N:M: the weight's)
    layer_method: dict = field(default_factory=dict)    # name -> the method that ran (max_memory: 'obs' or 'seqobs')
    layer_seconds: dict = field(default_factory=dict)   # name -> wall time of the layer (Grams, solve, write)

    @property
    def names(self) -> list:
        return [t.name for t in self.tilings]

    @property
    def layer_loss(self) -> dict:
        """Deprecated: the former name of ``layer_rel_error`` (the same quantity)."""
        warnings.warn("OneShotResult.layer_loss is deprecated; use layer_rel_error (the same quantity)",
                      DeprecationWarning, stacklevel=2)
        return self.layer_rel_error

    @property
    def is_block(self) -> bool:
        return isinstance(self.pattern, str)

    def report(self):
        if self.is_block:
            return measure(self.model, self.tilings)
        return measure(self.model, self.names, self.pattern)

    def finalize(self):
        """Bake the block masks into plain weights (N:M writes plain weights already)."""
        return finalize_model(self.model, self.tilings) if self.is_block else self.report()


def _layers(model, kind, p, include, min_blocks, pad):
    """The layers to prune: ``LayerTiling``s (block) or ``calibration.Layer``s (N:M: Linear and Conv2d with
    groups=1, ``include`` a preset / names / predicate of ``nm.presets.select_layers``; tied holders as one)."""
    if kind == "block":
        return find_prunable(model, p, min_blocks=min_blocks, pad=pad, include=include)
    from .nm.presets import select_layers
    from .tiling import tie_groups
    layers = "all" if include is None else include
    names, _ = select_layers(model, p.m, layers)
    for n in names:
        mod = model.get_submodule(n)
        if not (isinstance(mod, nn.Linear) or (isinstance(mod, nn.Conv2d) and mod.groups == 1)):
            raise ValueError(f"layers: one-shot handles Linear and Conv2d (groups=1) layers; {n!r} is "
                             f"{type(mod).__name__}")
    groups = tie_groups(model, names, skip_shared=isinstance(layers, str))  # a preset leaves shared ones dense
    if not groups:
        raise ValueError(f"layers: every selected layer shares its weight with a module outside the selection "
                         f"({names}); nothing to prune")
    return [Layer(g[0], tuple(g)) for g in groups]


def _width(model, layer) -> int:
    return model.get_submodule(layer.name).weight[0].numel()  # GEMM rows' width: in (x kh x kw)


def _solve_block(H, Hd, Bp, Mdp, t, r, method, fixed, dev, seqobs_kw):
    """(keep (R, C), M^ padded, float64) of a block layer: ``fixed`` keep-mask (refit only) or ``method``."""
    if dev is not None and method not in ("magnitude", "activation", "activation_refit"):
        Hd, Bp, Mdp = (x.to(dev) for x in (Hd, Bp, Mdp))
        H = H.to(dev) if method in _SINGLE_WEIGHT else None
    if fixed is not None:
        return fixed, gram_refit(Hd, Bp, fixed, block=t.block, dtype=torch.float64)
    if method in ("magnitude", "activation", "activation_refit"):
        return _baseline(Hd, Mdp, t, t.n_blocks - r, method, Bp)
    if method in _SINGLE_WEIGHT:
        return _single_weight(H, Mdp, t, r, method)
    return _select_layer(Hd, Bp, t, r, method, seqobs_kw)


def _solve_nm(H, Hd, Bm, Md, pat, method, dev, dtype, solver_kw):
    """(keep, M^) of an N:M layer (``nm.oneshot.solve_nm_layer``)."""
    from .nm.oneshot import solve_nm_layer
    # the solution is invariant to scaling H and Bm together: bring mean diag H near 1 (a power of 2, exact) so
    # that the float32 solver neither under- nor overflows on tiny or huge inputs
    sc = pow2_scale(float(Hd.diagonal().mean()))
    Hs = (H if method in _SINGLE_WEIGHT else Hd) / sc  # SparseGPT / Wanda: the raw Gram (they damp it themselves)
    dv = dev or Hd.device
    dtype = dtype or torch.float32
    beta, keep, _ = solve_nm_layer(Hs.to(dv, dtype), (Bm / sc).to(dv, dtype), pat.n, pat.m, method=method,
                                   Md=Md.to(dv, dtype), **solver_kw)
    return keep, beta


#: damp beyond which the layer error is computed from the undamped H (the cancellation in ``_rel_error`` costs about
#: damp x 1e-16 of relative accuracy: negligible below this, and a p x p copy is kept only above it)
_EXACT_DAMP = 1e3


def _rel_error(Mh, Hd, d, Bm, den):
    """||X_d M - X_p M^||^2 / ||X_d M||^2 from the Grams (all / n): den - 2 <M^, C M> + <M^, H M^>, den =
    ||X_d M||^2 / n, H = Hd - d I (in Hd's dtype, summed in float64; accurate to the float32 Gram products'
    rounding, clipped at 0)."""
    Mq = Mh.to(Hd.dtype)
    quad = float((Mq * (Hd @ Mq)).double().sum())
    num = den - 2.0 * float((Mh * Bm).sum()) + quad - d * float(Mh.pow(2).sum())
    return max(num, 0.0) / max(den, 1e-30)


def _allocate(model, layers, s, allocation, max_layer_sparsity, make_streams, damp, keep, clock, progress):
    """Blocks to remove per layer: fixed masks, a dict, uniform, or 'loss' (a dense pass computing every layer's
    sorted first-step OBS increments, normalized by the layer's dense output energy)."""
    from tqdm.auto import tqdm
    if keep is not None:
        return {n: int((~k).sum()) for n, k in keep.items()}
    if isinstance(allocation, dict):
        _check_layer_names(allocation, layers, "allocation")
        return {t.name: t.n_blocks - keep_count(check_sparsity(allocation.get(t.name, s), f"allocation[{t.name!r}]"),
                                                t.n_blocks) for t in layers}
    if allocation == "uniform":
        return {t.name: t.n_blocks - keep_count(s, t.n_blocks) for t in layers}
    n_all = sum(t.n_blocks for t in layers)
    total = n_all - keep_count(s, n_all)
    caps = sum(int(np.floor(max_layer_sparsity * t.n_blocks)) for t in layers)
    if total > caps:  # checked before any work: the caps cannot be met
        raise ValueError(f"sparsity: {s} means removing {total} of the {n_all} blocks, but max_layer_sparsity="
                         f"{max_layer_sparsity} lets the layers give up only {caps}; raise max_layer_sparsity or "
                         f"lower the sparsity")
    costs = {}
    st, gram = make_streams(True), Grams()
    with closing(st), tqdm(total=len(layers), desc="loss curves", disable=not progress) as bar:
        groups = st.groups(layers)
        last = max((i for i, g in enumerate(groups) if g), default=-1)
        for group in groups[:last + 1]:
            st.begin(copy=False)
            for j, t in enumerate(group):
                t0 = time.perf_counter()
                nxt = group[j + 1] if j + 1 < len(group) else None
                H = gram(st, t, keep=nxt is not None and _width(model, nxt) == _width(model, t))[0]
                t1 = time.perf_counter()
                M = weight_to_matrix(model.get_submodule(t.name).weight.detach()).double()
                energy = 0.5 * float((M * (H @ M)).sum())
                Hd, Bm = _pad_problem(*damped(H, H @ M, M, damp, t.name)[:2], t)
                cap = int(np.floor(max_layer_sparsity * t.n_blocks))
                c = obs_first_costs(Hd, Bm, t.block).reshape(-1).sort().values.cpu()
                costs[t.name] = c[:cap] / max(energy, 1e-30)
                clock["gram"] += t1 - t0
                clock["solve"] += time.perf_counter() - t1
                bar.update()
            t0 = time.perf_counter()
            st.advance()
            clock["forward"] += time.perf_counter() - t0
    names = [t.name for t in layers]
    owner = torch.cat([torch.full((costs[n].numel(),), i) for i, n in enumerate(names)])
    costs = torch.cat([costs[n] for n in names])
    # each layer's costs are non-decreasing, so the global smallest ``total`` take a prefix of every layer
    pick = owner[torch.argsort(costs, stable=True)[:total]]
    counts = torch.bincount(pick, minlength=len(layers))
    return {n: int(counts[i]) for i, n in enumerate(names)}


def solve_layers(model: nn.Module, batches, pattern, sparsity=None, *, method=None, allocation="uniform",
                 run=None, row_masks=None, min_blocks: int = 100, pad: bool = False, include=None, damp: float = 0.01,
                 max_layer_sparsity: float = 0.9, blocks=None, refine_steps: int = 0, refine_lr: float = 1e-3,
                 refine_val: int = 0, keep=None, max_memory=None, device=None, solver_dtype=None,
                 spill=None, checkpoint=None, progress: bool = True, **solver_kw) -> OneShotResult:
    """The one-shot driver for every pattern: prune ``model`` in place from calibration ``batches``, layer by layer
    in forward order (see the module docstring).  ``nn_bridge.oneshot_prune`` (``pruned.py``) wraps it with layer
    globs, a report and saving; use that unless you need this result object.

    ``pattern``: ``"16x16"`` / ``(16, 16)`` (B x B blocks; needs ``sparsity``, the fraction of blocks removed) or
    ``"2:4"`` (N kept of every M consecutive inputs; sparsity fixed).  ``method``: block ``METHODS`` (default
    ``'obs'``; any other name goes to ``groupsparse.select``) or N:M ``nm.oneshot.ONESHOT_METHODS`` (default
    ``'iht'``).  ``include``: block -- names / predicate of ``tiling.find_prunable``; N:M -- a preset / names /
    predicate of ``nm.presets.select_layers``.

    ``batches``: any iterable of batches (a list, a generator: read once and kept as given, on their device).
    ``run(model, batch)`` calls the model (default ``calibration.default_run``); ``row_masks``: optional per-batch
    boolean (batch, seq) masks of the tokens to use (e.g. without padding).
    ``blocks``: names of sequential submodules (e.g. ``['encoder.layer.0', ...]``) that contain every pruned
    layer: the streamed mode (``calibration.BlockStreams``): the model runs once up to the first block, then one
    block is replayed at a time; it holds the block inputs of every batch (two streams) and one dense copy of the
    current block, never a copy of the model.  ``blocks=None``: the model prefix is re-run for every layer
    (``calibration.PrefixStreams``, any model; it keeps the dense weights of the layers pruned so far).
    ``blocks="auto"``: the children of the ModuleList holding the most pruned layers, provided the pruned layers
    outside it are all called after those inside (they are pruned last, the streams' tail) and the blocks chain
    (``calibration.check_blocks``: given blocks must), else None.
    Grams are accumulated batch by batch and freed after their layer (a layer fed the same tensor as the previous
    one -- query / key / value -- reuses its Grams).
    ``refine_steps`` (with ``blocks``; block and N:M patterns): that many Adam steps (``refine_lr``) of block
    reconstruction after each block's layers are pruned, masks fixed (``BlockStreams.refine``); ``refine_val``: calibration batches
    held out of it to stop early; ``result.block_error`` holds each block's error before and after.
    ``damp``: ridge weight, relative to the mean diagonal of H, pulling the refit toward the dense weights
    (``calibration.damped``).  ``allocation`` (block): ``'uniform'``, ``'loss'`` or {layer: sparsity};
    ``keep`` (block): fixed masks {layer: (R, C) bool} for every prunable layer -- refit only.
    ``max_memory``: bytes a layer solve may use ('obs' falls back to 'seqobs' where it does not fit,
    ``result.layer_method``; a layer too large for any method is an error before any work).  ``device``: run the
    layer solves there (e.g. 'cuda' for a model on the CPU; the model and its activations stay where they are).
    ``solver_dtype``: the layer solver's dtype (Grams are float64): N:M default float32; block patterns: float64
    unless given ('seqobs' only; float32 halves its 3 p^2 working memory); other keywords go to the layer solver:
    ``nm.oneshot.solve_nm_layer`` (N:M), or ``sequential_obs.seqobs`` over ``SEQOBS_OPTIONS`` (block 'seqobs',
    e.g. ``refit_iters=0`` for the sweep alone).  ``spill`` (with ``blocks``): keep the two streams' block inputs
    in a temporary directory instead of memory (None: when they would exceed ``calibration.SPILL_BYTES``; the same
    results, read back bit-exact; deleted at the end).  ``checkpoint`` (with ``blocks``): a directory; the run's
    state is written there after every block and a run given the same directory continues from it -- the same model
    as an uninterrupted run -- provided the dense weights, the batches and the options are the same (else an error
    naming ``checkpoint``); deleted when the run completes (``nn_bridge.resume``).

    Interrupted (Ctrl-C, or any error after the first layer changed), the model has only whole, finished layers
    changed (block masks attached to them, a refine in progress undone); the error carries a note and a
    RuntimeWarning names those layers.
    """
    from .pruned import check_sparsity_for, parse_pattern
    kind, p = parse_pattern(pattern)
    s = check_sparsity_for(kind, p, sparsity)
    training = getattr(model, "training", False)  # the passes run in eval mode (no dropout); the user's mode stays
    try:
        return _solve(model, batches, kind, p, s, method=method, allocation=allocation, run=run, row_masks=row_masks,
                      min_blocks=min_blocks, pad=pad, include=include, damp=damp,
                      max_layer_sparsity=max_layer_sparsity, blocks=blocks, refine_steps=refine_steps,
                      refine_lr=refine_lr, refine_val=refine_val, keep=keep, max_memory=max_memory, device=device,
                      solver_dtype=solver_dtype, spill=spill, progress=progress, solver_kw=solver_kw,
                      checkpoint=checkpoint)
    finally:
        if training:
            model.train()


def _solve(model, batches, kind, p, s, *, method, allocation, run, row_masks, min_blocks, pad, include, damp,
           max_layer_sparsity, blocks, refine_steps, refine_lr, refine_val, keep, max_memory, device, solver_dtype,
           progress, solver_kw, spill=None, checkpoint=None) -> OneShotResult:
    from .grouping import check_model
    check_model(model)
    block = kind == "block"
    if block:
        method = method or "obs"
        if not isinstance(allocation, dict) and allocation not in ("uniform", "loss"):
            raise ValueError(f"allocation: expected 'uniform', 'loss' or a dict of per-layer block sparsities, "
                             f"got {allocation!r}")
        if method in _SINGLE_WEIGHT and p != 1:
            raise ValueError(f"method: {method!r} prunes single weights; use block=1 (pattern '1x1') or an N:M "
                             f"pattern, got block={p!r}")
        if method not in METHODS and method not in _select_methods():  # before any work, not at the first layer
            names = METHODS + tuple(m for m in _select_methods() if m not in METHODS)
            raise ValueError(f"method: expected one of {', '.join(names)} for a block pattern, got {method!r}")
    else:
        from .nm.oneshot import ONESHOT_METHODS
        method = method or "iht"
        if method not in ONESHOT_METHODS:
            raise ValueError(f"method: expected one of {ONESHOT_METHODS}, got {method!r}")
        for arg, bad in (("allocation", isinstance(allocation, dict) or allocation != "uniform"),
                         ("keep", keep is not None)):
            if bad:
                raise ValueError(f"{arg}: block patterns only (the N:M pattern {p} fixes every layer's budget)")
    _check_solver_kw(solver_kw, block, method, max_memory)
    max_layer_sparsity = check_sparsity(max_layer_sparsity, "max_layer_sparsity")
    refine_steps = check_positive_int(refine_steps, "refine_steps", low=0)
    refine_lr = check_tol(refine_lr, "refine_lr")
    damp = check_nonneg(damp, "damp")
    if max_memory is not None:
        max_memory = check_tol(max_memory, "max_memory")
    dev = solve_device(device)
    spill = check_spill(spill)
    from . import resume
    checkpoint = resume.check_path(checkpoint)
    auto = isinstance(blocks, str) and blocks == "auto"
    if isinstance(blocks, str) and not auto:  # list("layers.0") would be its letters
        raise ValueError(f"blocks: expected 'auto' or a list of submodule names, got the string {blocks!r} (wrap "
                         f"it in a list)")
    if not auto:
        _check_needs_blocks(blocks, refine_steps, checkpoint)
    run = check_run(run)
    batches = check_batches(batches, model, run, row_masks)
    refine_val = check_positive_int(refine_val, "refine_val", low=0, high=len(batches) - 1)  # one batch to train on
    layers = forward_order(model, _layers(model, kind, p, include, min_blocks, pad), batches[0], run)
    if auto:  # decided on the forward order (``pruned._block_list``); blocks that do not chain: the prefix streams
        from .pruned import _block_list
        blocks = _block_list(model, [t.name for t in layers])
        if blocks is not None:
            try:
                blocks = check_blocks(model, blocks, batches[0], run, [t.name for t in layers])
            except ValueError:
                if refine_steps or checkpoint is not None:  # they need the block streams: say why they cannot run
                    raise
                blocks = None
        _check_needs_blocks(blocks, refine_steps, checkpoint)
    elif blocks is not None:
        blocks = check_blocks(model, blocks, batches[0], run, [t.name for t in layers])
    if keep is not None:
        keep = _check_keep(keep, layers)
    for t in layers:  # every layer fits max_memory with some method and has finite weights, before any work
        mod = model.get_submodule(t.name)
        if parametrize.is_parametrized(mod, "weight") or not ("weight" in mod._parameters or "weight" in mod._buffers):
            # a computed weight (a parametrization, the old weight_norm hook): writing it would change nothing
            raise ValueError(f"model: the weight of layer {t.name!r} is computed from other tensors (a weight "
                             f"parametrization such as a training pruner's masks, or weight_norm); call the pruner's "
                             f"finalize() or remove the parametrization first")
        if not bool(torch.isfinite(mod.weight.detach()).all()):
            raise ValueError(f"model: the weight of layer {t.name!r} holds NaN or inf")
        if block and method == "exact" and t.n_blocks > _EXACT_MAX_BLOCKS:  # its cost: up to 2^n_blocks nodes
            raise ValueError(f"method: 'exact' proves the best subset by branch and bound, up to 2^n nodes for n "
                             f"blocks; layer {t.name!r} has {t.n_blocks} (at most {_EXACT_MAX_BLOCKS}): use 'obs' or "
                             f"'local_search'")
        if block:
            layer_method(method, *t.padded_shape, t.block, 0, max_memory)
        else:
            w = model.get_submodule(t.name).weight
            layer_method("seqobs", w[0].numel(), w.shape[0], 1, 0, max_memory)  # O(p^2 + pK) each
    model.eval()
    clock = {"forward": 0.0, "gram": 0.0, "solve": 0.0}

    def make_streams(dense_only):
        t0 = time.perf_counter()
        st = streams(model, batches, run, row_masks, blocks, dense_only, spill)
        clock["forward"] += time.perf_counter() - t0
        return st

    ck = fp = None
    if checkpoint is not None:  # everything that changes the result, so that a checkpoint fits one run only
        options = {"pattern": str(p), "kind": kind, "sparsity": s, "method": method, "damp": damp,
                   "allocation": allocation, "max_layer_sparsity": max_layer_sparsity, "keep": keep,
                   "layers": [t.name for t in layers], "blocks": blocks, "refine": [refine_steps, refine_lr,
                   refine_val], "max_memory": max_memory, "device": str(dev), "solver_dtype": str(solver_dtype),
                   "solver_kw": solver_kw, "run": getattr(run, "__qualname__", repr(run))}
        fp = resume.fingerprint(model, batches, row_masks, options)
        ck = resume.load(checkpoint, fp)
    if ck is not None:  # resumed: the allocation is the checkpoint's
        n_remove = dict(ck["n_remove"]) if block else None
    else:
        n_remove = (_allocate(model, layers, s, allocation, max_layer_sparsity, make_streams, damp, keep, clock,
                              progress) if block else None)
    res = OneShotResult(model, layers, f"{p}x{p}" if block else p)
    res.seconds = clock
    changed, unmasked = [], []
    st = make_streams(False)
    save = None if checkpoint is None else (
        lambda: resume.save(checkpoint, fp, res, st, n_remove, st.blocks))
    try:
        groups = st.groups(layers)  # (captures a tail's dense inputs from the still dense model)
        start = 0
        if ck is not None:
            done, start = resume.restore(ck, res, st, layers,
                                         lambda ts: _attach_masks(model, list(ts), res) if block else None)
            changed.extend(done)
        _prune_pass(model, layers, groups, block, p, method, st, n_remove, keep, damp, max_memory, dev,
                    solver_dtype, solver_kw, refine_steps, refine_lr, refine_val, res, changed, unmasked, progress,
                    start=start, save=save)
    except BaseException as e:
        if unmasked:
            _attach_masks(model, unmasked, res)
        if changed:
            msg = (f"one-shot interrupted by {type(e).__name__}: {len(changed)} of {len(layers)} layers are pruned "
                   f"(whole layers, in place): {changed}; the others are untouched")
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
            e.add_note(msg)
        raise
    finally:
        st.close()
    resume.remove(checkpoint)  # the run is complete: its result is the model
    return res


def _select_methods() -> tuple:
    """The ``groupsparse.select`` method names (the block driver hands any of them to the core)."""
    from groupsparse.selection import METHODS as SELECT
    return ("auto", *SELECT)


def _check_solver_kw(solver_kw, block, method, max_memory):
    """Extra keywords go to the layer solver: refuse, before any work, one it does not take or that no layer would
    see (a misspelt option such as ``refine_step=`` would otherwise be dropped silently)."""
    if not solver_kw:
        return
    import inspect
    if block:
        from groupsparse.selection.sequential_obs import seqobs as solver
        fixed = {"H", "W", "B", "block", "n_remove", "sparsity", "nm"}  # the driver's
        if method != "seqobs" and not (method == "obs" and max_memory is not None):
            raise TypeError(f"unexpected keyword argument {sorted(solver_kw)[0]!r} for method {method!r} and a block "
                            f"pattern (options go to 'seqobs' only: method='seqobs', or 'obs' with max_memory)")
    else:
        from .nm.oneshot import solve_nm_layer as solver
        fixed = {"H", "Bm", "n", "m", "method", "Md"}
    takes = [k for k in inspect.signature(solver).parameters if k not in fixed]
    unknown = sorted(set(solver_kw) - set(takes))
    if unknown:
        raise TypeError(f"unexpected keyword argument {unknown[0]!r} (the options of the one-shot driver, or of its "
                        f"layer solver {solver.__name__}: {', '.join(takes)})")


def _check_needs_blocks(blocks, refine_steps, checkpoint):
    if refine_steps and blocks is None:
        raise ValueError("refine_steps: block reconstruction needs blocks= (the block inputs and outputs it fits)")
    if checkpoint is not None and blocks is None:
        raise ValueError("checkpoint: resumable runs need blocks= (the streamed mode, checkpointed after each "
                         "block)")


def _attach_masks(model, finished, res, nm=False):
    """Masks (``Mask`` parametrizations) on the layers just pruned, from ``res.keep``: block masks (``finished`` is
    emptied), or weight-shaped N:M masks (``nm``; for the refine only)."""
    for t in finished:
        (prm,) = masking.attach(model, [t], "mask")
        m = res.keep[t.name].to(prm.mask.dtype)
        prm.mask.copy_(matrix_to_weight(m, tuple(prm.mask.shape)) if nm else m.reshape(-1))
        res.params.append(prm)
    if not nm:
        finished.clear()


def _prune_pass(model, layers, groups, block, p, method, st, n_remove, keep, damp, max_memory, dev, solver_dtype,
                solver_kw, refine_steps, refine_lr, refine_val, res, changed, unmasked, progress, start=0, save=None):
    """Prune each layer (``groups``: ``st.groups(layers)``) against the dense target, feeding pruned activations
    forward.  ``start``: the first group to run (a resumed run: the streams stand there); ``save()`` after every
    block."""
    from tqdm.auto import tqdm
    clock, gram = res.seconds, Grams()
    with tqdm(total=len(layers), initial=sum(len(g) for g in groups[:start]), desc=f"one-shot {method}",
              disable=not progress) as bar:
        last = max((i for i, g in enumerate(groups) if g), default=-1)
        for group in groups[start:last + 1]:  # the blocks after the last pruned layer need no replay
            st.begin(copy=bool(group))
            for j, t in enumerate(group):
                t0 = time.perf_counter()
                nxt = group[j + 1] if j + 1 < len(group) else None
                mod = model.get_submodule(t.name)
                Md = weight_to_matrix(mod.weight.detach()).double()  # not written yet: the dense weights
                H, Bm, den = gram(st, t, Md, keep=nxt is not None and _width(model, nxt) == _width(model, t))
                t1 = time.perf_counter()
                clock["gram"] += t1 - t0
                if block:
                    r = n_remove[t.name]
                    m_run = ("refit" if keep is not None else
                             layer_method(method, *t.padded_shape, t.block, r, max_memory))
                else:
                    m_run = method
                # the raw H is needed only by SparseGPT / Wanda (or by the next layer, sharing it): else damp it in
                # place, one p x p matrix less during the solve; above _EXACT_DAMP, H + d I has rounded H's diagonal
                # away and the layer's error needs the raw H
                raw = damp > _EXACT_DAMP
                Hu, Bd, d = damped(H, Bm, Md, damp, t.name,
                                   inplace=not raw and m_run not in _SINGLE_WEIGHT and not gram.holds(H))
                if block:
                    Hd, Bp = _pad_problem(Hu, Bd, t)
                    if solver_dtype is not None and m_run == "seqobs":  # e.g. float32: half the solve's memory
                        Hd, Bp = Hd.to(solver_dtype), Bp.to(solver_dtype)
                        if Hu is H and not gram.holds(H):  # the float64 H goes (the error uses the solver's copy)
                            Hu = Hd[:Hu.shape[0], :Hu.shape[0]]
                            H = None
                    fixed = None if keep is None else keep[t.name]
                    kept, Mhat = _solve_block(H, Hd, Bp, _pad_matrix(Md, t), t, r, m_run, fixed, dev, solver_kw)
                    del Hd, Bp
                    rr, cc = t.matrix_shape
                    Mhat = Mhat[:rr, :cc]
                    kept = kept.cpu().clone()
                    res.layer_sparsity[t.name] = float((~kept).sum()) / t.n_blocks
                else:
                    kept, Mhat = _solve_nm(H, Hu, Bd, Md, p, method, dev, solver_dtype, solver_kw)
                    kept = kept.cpu()
                    res.layer_sparsity[t.name] = float((~kept).sum()) / kept.numel()
                del Bd
                Mhat = Mhat.to(Md.device, torch.float64)
                res.layer_rel_error[t.name] = (_rel_error(Mhat, H, 0.0, Bm, den) if raw else
                                               _rel_error(Mhat, Hu, d, Bm, den))
                del H, Hu, Bm
                res.layer_method[t.name] = m_run
                res.keep[t.name] = kept
                with torch.no_grad():
                    w = mod.weight
                    if st.keeps_dense:
                        st.done(t, w.detach().clone())
                    changed.append(t.name)
                    w.copy_(matrix_to_weight(Mhat.to(w.dtype), tuple(w.shape)))
                if block:
                    unmasked.append(t)
                clock["solve"] += time.perf_counter() - t1
                res.layer_seconds[t.name] = time.perf_counter() - t0
                bar.update()
            if unmasked:
                _attach_masks(model, unmasked, res)
            if refine_steps and group and st.in_block:  # the tail (a pooler, an LM head) is no block to refit
                t0 = time.perf_counter()
                nm = [] if block else [p.grouping(t.name, model.get_submodule(t.name).weight.shape, t.holders[1:])
                                       for t in group]
                # N:M weights hold their zeros plainly: a mask keeps them at 0 while Adam runs, baked away after
                _attach_masks(model, nm, res, nm=True)
                try:
                    res.block_error[st.blocks[st.i]] = st.refine(refine_steps, refine_lr, refine_val)
                finally:
                    if nm:
                        masking.detach(model, nm, bake=True)
                        del res.params[-len(nm):]
                clock["refine"] = clock.get("refine", 0.0) + time.perf_counter() - t0
            t0 = time.perf_counter()
            in_block = st.in_block
            st.advance()
            clock["forward"] += time.perf_counter() - t0
            if save is not None and in_block and st.i <= last:  # more to do: keep the state
                save()


def oneshot_prune(model: nn.Module, batches, sparsity, block=16, *, method: str = "obs", **kw) -> OneShotResult:
    """Deprecated: ``solve_layers(model, batches, (block, block), sparsity, method=..., ...)`` (same options and
    result), or ``nn_bridge.oneshot_prune(model, batches, "16x16", sparsity)`` for the reported, savable result."""
    warnings.warn("nn_bridge.oneshot.oneshot_prune(model, batches, sparsity, block) is deprecated; use "
                  "nn_bridge.oneshot_prune(model, batches, 'BxB', sparsity) or nn_bridge.oneshot.solve_layers",
                  DeprecationWarning, stacklevel=2)
    kw = {"allocation": "uniform", "min_blocks": 100, "damp": 0.01, "max_layer_sparsity": 0.9, "pad": False,
          "include": None, "blocks": None, "refine_steps": 0, "refine_lr": 1e-3, "refine_val": 0, "keep": None,
          "max_memory": None, "device": None, "progress": True, "run": None, "row_masks": None, **kw}
    unknown = set(kw) - set(_BLOCK_OPTIONS)
    if unknown:
        raise TypeError(f"oneshot_prune() got an unexpected keyword argument {sorted(unknown)[0]!r}")
    # block is checked by find_prunable (an int >= 1, not a bool), before the sparsity
    return _solve(model, batches, "block", block, check_sparsity(sparsity), method=method, solver_dtype=None,
                  solver_kw={}, **kw)


_BLOCK_OPTIONS = ("allocation", "min_blocks", "damp", "max_layer_sparsity", "pad", "include", "blocks",
                  "refine_steps", "refine_lr", "refine_val", "keep", "max_memory", "device", "progress", "run",
                  "row_masks")


def _check_layer_names(per_layer: dict, tilings, arg):
    """Every key of a per-layer dict argument names a prunable layer."""
    unknown = set(per_layer) - {t.name for t in tilings}
    if unknown:
        raise ValueError(f"{arg}: no prunable layer named {sorted(unknown)[0]!r}")


def _check_keep(keep, tilings):
    """``keep`` as {name: (R, C) bool cpu tensor}, one for every prunable layer, each the shape of its grid."""
    if not isinstance(keep, dict):
        raise ValueError(f"keep: expected a dict {{layer name: (R, C) bool mask}}, got {type(keep).__name__}")
    _check_layer_names(keep, tilings, "keep")
    names = {t.name for t in tilings}
    if names - set(keep):
        raise ValueError(f"keep: no mask for the prunable layer {sorted(names - set(keep))[0]!r}")
    out = {}
    for t in tilings:
        k = torch.as_tensor(keep[t.name]).cpu()
        if tuple(k.shape) != tuple(t.grid) or k.dtype != torch.bool:
            raise ValueError(f"keep[{t.name!r}]: expected a bool mask of shape {tuple(t.grid)} (row blocks x column "
                             f"blocks), got {k.dtype} of shape {tuple(k.shape)}")
        out[t.name] = k
    return out


