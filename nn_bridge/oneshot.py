"""One-shot block pruning from calibration data, layer by layer, on the Gram-form least-squares problem.

For a layer with GEMM matrix M (inputs x outputs, tiling.py), calibration inputs X_p reaching it in the pruned
model and X_d reaching it in the dense model, we solve

    min_{M^ block sparse}  (1/2n) || X_d M - X_p M^ ||_F^2
      = 1/2 tr(M^T H M) - tr(M^T Bm) + const,   H = X_p^T X_p / n,  Bm = (X_p^T X_d / n) M

(the ``groupsparse.GramLeastSquares(H, Bm)`` loss, coefficients the (p, K) matrix M^ flattened row-major, the
groups ``Groups.block_tiling(M.shape, B)``), then go to the next layer feeding the pruned activations forward.
Targeting the *dense* output from *pruned* inputs lets each layer compensate the error of the layers before it.
Both H and Bm get a ridge term that pulls M^ toward the dense M (``_damped``): with few calibration tokens H is
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
model computes every layer's loss curve (sorted single-block OBS increments, ``obs_first_costs``), normalized by the layer's dense output energy
1/2 tr(M^T H M); the blocks removed across all layers are the ones with the smallest normalized increments
(each layer capped at ``max_layer_sparsity``) -- the method, not a hand-tuned table, spreads the sparsity.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from groupsparse._validation import check_nonneg, check_positive_int, check_tol
from groupsparse.schedules import check_sparsity
from groupsparse.selection.obs import gram_refit, merge_paths, obs_first_costs, obs_memory_bytes, obs_paths

from . import masking
from .calibration import check_batches, check_gram, run_batch
from .report import SparsityReport, finalize_model, measure
from .tiling import LayerTiling, find_prunable, keep_count, matrix_to_weight, weight_to_matrix

__all__ = ["oneshot_prune", "OneShotResult", "obs_paths", "merge_paths", "layer_inputs", "METHODS"]

METHODS = ("obs", "magnitude", "activation", "activation_refit", "seqobs", "sparsegpt", "wanda")
# the scalable method's settings: row-block budgets by the exact OBS first-step saliency, then 20 preconditioned CG
# iterations on the support (the best of the variants measured in groupsparse.selection.sequential_obs)
SEQOBS_OPTIONS = {"budget": "obs", "refit_iters": 20}
_SINGLE_WEIGHT = ("sparsegpt", "wanda")  # the papers' methods: unstructured (block=1), raw H and dense weights


class _Stop(Exception):
    pass


def _default_run(model, batch):
    if isinstance(batch, dict):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


def layer_inputs(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The rows of the layer's implicit GEMM input: (tokens, in) for Linear, im2col rows in (kh, kw, Cin) order
    (the tiling convention) for Conv2d."""
    if isinstance(module, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    cols = F.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)  # (N, Cin*kh*kw, L)
    n, _, L = cols.shape
    kk = module.kernel_size[0] * module.kernel_size[1]
    cols = cols.view(n, module.in_channels, kk, L).transpose(1, 2).reshape(n, kk * module.in_channels, L)
    return cols.permute(0, 2, 1).reshape(n * L, -1)


def _called_with(model, module, batch, run, who, b):
    """Run ``model`` on ``batch`` (number ``b``) until ``module`` is called; return the (args, kwargs) of that
    call, detached."""
    box = {}

    def hook(mod, args, kwargs):
        box["in"] = (tuple(a.detach() if torch.is_tensor(a) else a for a in args), dict(kwargs))
        raise _Stop

    h = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            run_batch(model, batch, run, b)
    except _Stop:
        pass
    finally:
        h.remove()
    if "in" not in box:
        raise RuntimeError(f"{who} was not called by run(model, batch)")
    return box["in"]


def _capture(model, module, batch, run, rows, b):
    """Run ``model`` on ``batch`` until ``module`` is called; return its GEMM input rows (float32)."""
    x = _called_with(model, module, batch, run, "calibration: the layer", b)[0][0]
    if rows is not None and isinstance(module, nn.Linear):
        x = x[rows.to(x.device)]
    return layer_inputs(module, x).float()


def _forward_order(model, tilings, batch, run):
    """Layer names in the order the forward pass first calls them."""
    order, hooks = [], []
    for t in tilings:
        for name in getattr(t, "holders", (t.name,)):  # a tied weight's place is its first use
            mod = model.get_submodule(name)
            hooks.append(mod.register_forward_pre_hook(
                lambda m, a, n=t.name: order.append(n) if n not in order else None))
    try:
        with torch.no_grad():
            run_batch(model, batch, run, 0)
    finally:
        for h in hooks:
            h.remove()
    by = {t.name: t for t in tilings}
    return [by[n] for n in order] + [t for t in tilings if t.name not in order]


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


def _select_layer(H, Bm, t: LayerTiling, n_remove: int, method: str):
    """Keep-mask (R, C) and refit matrix for one layer, removing ``n_remove`` blocks (the one place a solver is
    chosen; a ``groupsparse.select`` method name goes to groupsparse)."""
    R, C = t.grid
    B = t.block
    k = t.n_blocks - n_remove
    if method == "seqobs":
        from groupsparse.selection.sequential_obs import seqobs
        r = seqobs(H, B=Bm, block=B, n_remove=n_remove, **SEQOBS_OPTIONS)
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
    model: nn.Module
    tilings: list
    layer_sparsity: dict = field(default_factory=dict)   # name -> block sparsity chosen
    layer_loss: dict = field(default_factory=dict)       # name -> relative reconstruction error on calibration
    params: list = field(default_factory=list)
    seconds: dict = field(default_factory=dict)         # wall time: forward passes, Gram products, solve
    block_error: dict = field(default_factory=dict)     # block -> relative output error before, after refine
    keep: dict = field(default_factory=dict)            # name -> (R, C) bool block keep-mask (reusable as keep=)
    layer_method: dict = field(default_factory=dict)    # name -> the method that ran (max_memory: 'obs' or 'seqobs')

    def report(self) -> SparsityReport:
        return measure(self.model, self.tilings)

    def finalize(self) -> SparsityReport:
        return finalize_model(self.model, self.tilings)


def pow2_scale(m: float) -> float:
    """A power of 2 near ``m`` (> 0, finite; else 1): dividing by it is exact in floating point."""
    if not (m > 0 and math.isfinite(m)):
        return 1.0
    return math.ldexp(1.0, math.frexp(m)[1])


def _rescaled(x):
    """(x / s, s) with s a power of 2 when x's magnitude would over- or underflow X^T X in float32, else (x, 1)."""
    m = float(x.abs().amax()) if x.numel() else 0.0
    if 2.0 ** -30 <= m <= 2.0 ** 30 or not (m > 0 and math.isfinite(m)):
        return x, 1.0
    s = pow2_scale(m)
    return x / s, s


class _Grams:
    """Calibration Grams of one layer, H = X_p^T X_p / n and C = X_p^T X_d / n (X_p: inputs in the pruned model,
    X_d: in the dense one), computed in float32 matmuls accumulated in float64, once per layer.  Row batches of
    extreme magnitude are scaled by a power of 2 before the float32 product (exact), so inputs of 1e20 or 1e-20
    give the Grams that 1 would, times the scale squared.

    Layers fed the same input (e.g. query / key / value) reuse the previous layer's Grams: the captured inputs are
    compared exactly (cheap next to the p x p products that dominate the run time).
    """

    def __init__(self):
        self._last = None

    def __call__(self, xs, layer):
        """``xs``: list of (x_pruned, x_dense) row batches (``x_dense is x_pruned`` on the dense pass) reaching
        ``layer`` (named in the errors of ``calibration.check_gram``)."""
        if self._last is not None and len(self._last[0]) == len(xs) and all(
                a[0].shape == b[0].shape and a[1].shape == b[1].shape and torch.equal(a[0], b[0])
                and torch.equal(a[1], b[1]) for a, b in zip(self._last[0], xs)):
            return self._last[1], self._last[2]
        p = xs[0][0].shape[1]
        H = torch.zeros(p, p, dtype=torch.float64, device=xs[0][0].device)
        C = torch.zeros_like(H)
        n = 0
        for xp, xd in xs:
            a, sa = _rescaled(xp)
            H += (a.t() @ a).double() * (sa * sa)
            if xd is not xp:
                b, sb = _rescaled(xd)
                C += (a.t() @ b).double() * (sa * sb)
            n += xp.shape[0]
        check_gram(H, n, layer)
        if all(xd is xp for xp, xd in xs):  # the dense pass: C = H
            C = H.clone()
        H, C = H / n, C / n
        self._last = (xs, H, C)
        return H, C


class _PrefixStreams:
    """Layer inputs by re-running the model from its input up to the layer (generic, any model; slow for deep
    models: the prefix is re-run for every layer, dense and pruned)."""

    def __init__(self, model, dense, batches, run, row_masks):
        self.model, self.dense, self.batches, self.run, self.row_masks = model, dense, batches, run, row_masks

    def _rows(self, b):
        return None if self.row_masks is None else self.row_masks[b]

    def dense_inputs(self, names):
        """{name: [rows per batch]} for the dense model (one prefix run per layer)."""
        return {n: [_capture(self.dense, self.dense.get_submodule(n), batch, self.run, self._rows(b), b)
                    for b, batch in enumerate(self.batches)] for n in names}

    def pruned_inputs(self, name):
        return [_capture(self.model, self.model.get_submodule(name), batch, self.run, self._rows(b), b)
                for b, batch in enumerate(self.batches)]

    def groups(self, tilings):
        return [tilings]

    def advance(self):
        pass


def _call_block(block_mod, inp):
    args, kwargs = inp
    with torch.no_grad():
        out = block_mod(*args, **kwargs)
    return out[0] if isinstance(out, (tuple, list)) else out


class _BlockStreams:
    """Layer inputs by replaying one block (e.g. a transformer layer) on cached block inputs, as SparseGPT does.

    ``blocks`` are the names of submodules called one after the other, block i+1 taking block i's output as its
    first positional argument and the same remaining arguments as the first block (true of BERT-style encoders:
    the attention mask).  The model runs once up to the first block; afterwards only one block is replayed at a
    time, for the dense stream (once per block, capturing every pruned layer's input and the block output) and for
    the pruned stream (once per layer, stopped at that layer, plus once for the block output).
    """

    def __init__(self, model, dense, batches, run, row_masks, blocks):
        self.model, self.dense, self.row_masks, self.blocks = model, dense, row_masks, list(blocks)
        first = dense.get_submodule(self.blocks[0])
        self.d_in = [_called_with(dense, first, batch, run, "blocks: the first block", b)
                     for b, batch in enumerate(batches)]
        self.p_in = list(self.d_in)
        self.i = 0
        self._d_out = None

    def _rows(self, b):
        return None if self.row_masks is None else self.row_masks[b]

    def groups(self, tilings):
        out = [[] for _ in self.blocks]
        for t in tilings:
            owner = [i for i, b in enumerate(self.blocks) if t.name.startswith(b + ".")]
            if not owner:
                raise ValueError(f"blocks: layer {t.name!r} lies in none of the blocks {self.blocks}; restrict the "
                                 f"layers with include= or pass blocks=None")
            for n in getattr(t, "holders", ())[1:]:
                if not n.startswith(self.blocks[owner[0]] + "."):
                    raise ValueError(f"blocks: layers {t.name!r} and {n!r} share one weight but lie in different "
                                     f"blocks; pass blocks=None (the whole-model streams fit it to both)")
            out[owner[0]].append(t)
        return out

    def dense_inputs(self, names):
        block = self.dense.get_submodule(self.blocks[self.i])
        caps = {n: [] for n in names}
        self._d_out = []
        for b, inp in enumerate(self.d_in):
            box, hooks = {}, []
            for n in names:
                mod = self.dense.get_submodule(n)

                def hook(m, args, n=n, rows=self._rows(b)):
                    x = args[0].detach()
                    if rows is not None and isinstance(m, nn.Linear):
                        x = x[rows.to(x.device)]
                    box[n] = layer_inputs(m, x).float()
                hooks.append(mod.register_forward_pre_hook(hook))
            try:
                self._d_out.append(_call_block(block, inp))
            finally:
                for h in hooks:
                    h.remove()
            for n in names:
                caps[n].append(box[n])
        return caps

    def pruned_inputs(self, name):
        block = self.model.get_submodule(self.blocks[self.i])
        mod = self.model.get_submodule(name)
        out = []
        for b, inp in enumerate(self.p_in):
            box = {}

            def hook(m, args, rows=self._rows(b)):
                x = args[0].detach()
                if rows is not None and isinstance(m, nn.Linear):
                    x = x[rows.to(x.device)]
                box["x"] = layer_inputs(m, x).float()
                raise _Stop
            h = mod.register_forward_pre_hook(hook)
            try:
                _call_block(block, inp)
            except _Stop:
                pass
            finally:
                h.remove()
            out.append(box["x"])
        return out

    def _dense_out(self):
        if self._d_out is None:
            self._d_out = [_call_block(self.dense.get_submodule(self.blocks[self.i]), inp) for inp in self.d_in]
        return self._d_out

    def refine(self, steps: int, lr: float, val: int = 0, every: int = 16):
        """Block reconstruction after the current block's layers are pruned: Adam on the block's parameters (masks
        fixed: pruned weights get no gradient through the mask) so that the pruned block fed the pruned stream
        reproduces the dense block fed the dense stream, on the calibration tokens.  Selection is not revisited;
        this corrects what layer-by-layer least squares cannot see (the nonlinearities between the layers, and the
        error the earlier blocks pass on).  With ``val`` > 0 the last ``val`` batches are not trained on: their
        error is checked every ``every`` steps and the block keeps its best parameters (early stopping: with few
        calibration tokens the fit overfits).  Returns the relative block-output error (all batches) before and
        after."""
        block = self.model.get_submodule(self.blocks[self.i])
        target = self._dense_out()
        params = [q for q in block.parameters() if q.requires_grad]
        opt = torch.optim.Adam(params, lr=lr)
        n_train = len(self.p_in) - val

        def rel_err(b):
            out = block(*self.p_in[b][0], **self.p_in[b][1])
            out = out[0] if isinstance(out, (tuple, list)) else out
            rows = self._rows(b)
            d, t = out - target[b], target[b]
            if rows is not None:
                d, t = d[rows.to(d.device)], t[rows.to(t.device)]
            return d.pow(2).sum(), t.pow(2).sum()

        def total(bs):
            with torch.no_grad():
                num, den = zip(*(rel_err(b) for b in bs))
            return float(sum(num) / sum(den))

        before = total(range(len(self.p_in)))
        held = range(n_train, len(self.p_in))
        best = (total(held), [q.detach().clone() for q in params]) if val else None
        with torch.enable_grad():
            for step in range(1, steps + 1):
                num, den = rel_err((step - 1) % n_train)
                (num / den).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                if val and (step % every == 0 or step == steps):
                    e = total(held)
                    if e < best[0]:
                        best = (e, [q.detach().clone() for q in params])
        if val:
            with torch.no_grad():
                for q, b in zip(params, best[1]):
                    q.copy_(b)
        return before, total(range(len(self.p_in)))

    def advance(self):
        """Move both streams past the current block (the dense output was computed by ``dense_inputs``)."""
        d_out = self._dense_out()
        if self.model is self.dense:
            p_out = d_out
        else:
            block = self.model.get_submodule(self.blocks[self.i])
            p_out = [_call_block(block, inp) for inp in self.p_in]
        self.d_in = [((o,) + inp[0][1:], inp[1]) for o, inp in zip(d_out, self.d_in)]
        self.p_in = [((o,) + inp[0][1:], inp[1]) for o, inp in zip(p_out, self.p_in)]
        self._d_out = None
        self.i += 1


def _damped(H, Bm, M, damp, layer):
    """Ridge toward the dense weights M: H + d I and Bm + d M (d = damp * mean diag H), i.e. the loss gains
    d/2 ||M^ - M||^2.  Shrinking toward M rather than 0 keeps the refit unbiased: with no pruning and no drift it
    returns M exactly, and with few calibration tokens it stays near the dense weights where H is ill-determined.
    With ``damp`` = 0, H itself must be positive definite (as many independent calibration rows as inputs)."""
    if damp == 0 and int(torch.linalg.cholesky_ex(H).info) != 0:
        raise ValueError(f"damp: the calibration Gram of layer {layer!r} is singular (fewer independent rows than "
                         f"its {H.shape[0]} inputs, or constant / zero inputs); use damp > 0")
    d = H.diagonal().mean() * damp
    return H + d * torch.eye(H.shape[0], dtype=H.dtype, device=H.device), Bm + d * M


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


def oneshot_prune(model: nn.Module, batches, sparsity, block=16, *, method: str = "obs",
                  allocation: str = "uniform", run=None, row_masks=None, min_blocks: int = 100, pad: bool = False,
                  include=None, damp: float = 0.01, max_layer_sparsity: float = 0.9, blocks=None,
                  refine_steps: int = 0, refine_lr: float = 1e-3, refine_val: int = 0, keep=None,
                  max_memory=None, device=None, progress: bool = True) -> OneShotResult:
    """Prune ``model`` in place from calibration ``batches`` (see the module docstring).

    ``run(model, batch)`` calls the model (default: ``model(**batch)`` for dicts, ``model(*batch)`` for tuples);
    ``row_masks``: optional per-batch boolean (batch, seq) masks of the tokens to use (e.g. without padding).
    ``blocks``: optional names of sequential submodules (e.g. ``['encoder.layer.0', ...]``) that contain every
    pruned layer: their inputs are cached and only one block is replayed per layer (``_BlockStreams``) instead of
    the whole prefix of the model; same result, far fewer forward passes.
    ``refine_steps``: with ``blocks``, after each block's layers are pruned, that many Adam steps (``refine_lr``)
    of block reconstruction on the calibration batches, masks fixed (``_BlockStreams.refine``); 0 = pure
    layer-by-layer solve.  ``refine_val``: calibration batches held out of the refine to stop it early (the block
    keeps the parameters with the least held-out error; they still serve the selection).
    ``result.block_error`` holds each block's relative output error before and after.
    ``damp``: ridge weight, relative to the mean diagonal of H, pulling the refit toward the dense weights
    (``_damped``); more damping trusts the calibration data less.
    Masks are attached as ``BlockMask`` parametrizations holding the refit weights; call ``finalize()`` to bake.
    ``batches`` are checked before any work by ``nn_bridge.calibration`` (finite, non-empty, alike, runnable; a
    layer whose calibration Gram is all zero or not finite is an error naming ``batches`` and the layer).
    A weight shared by several layers (tied) is pruned once: one mask, refit on the stacked inputs of all of them.
    ``result.seconds`` splits the wall time into forward passes, Gram products and selection/refit.
    ``keep``: fixed block masks, {layer name: (R, C) bool, True = kept} for every prunable layer (e.g. a previous
    result's ``result.keep``): selection and allocation are skipped and only the refit (and refine) runs on these
    batches -- to refit a known pattern on other calibration data, or to tell selection from refit apart.
    ``max_memory``: bytes a layer solve may use: 'obs' falls back to 'seqobs' on the layers where it does not fit
    (``result.layer_method``); a layer too large for any method is an error before any work.  ``device``: run the
    layer solves there (e.g. 'cuda' for a model on the CPU); the model and its activations stay where they are.
    """
    s = check_sparsity(sparsity)
    if method not in METHODS:
        import groupsparse
        if not hasattr(groupsparse, "select"):
            raise ValueError(f"method: expected one of {METHODS} (groupsparse.select is not available), "
                             f"got {method!r}")
    if not isinstance(allocation, dict) and allocation not in ("uniform", "loss"):
        raise ValueError(f"allocation: expected 'uniform', 'loss' or a dict of per-layer block sparsities, "
                         f"got {allocation!r}")
    max_layer_sparsity = check_sparsity(max_layer_sparsity, "max_layer_sparsity")
    refine_steps = check_positive_int(refine_steps, "refine_steps", low=0)
    if refine_steps and blocks is None:
        raise ValueError("refine_steps: block reconstruction needs blocks= (the block inputs and outputs it fits)")
    refine_lr = check_tol(refine_lr, "refine_lr")
    damp = check_nonneg(damp, "damp")
    if max_memory is not None:
        max_memory = check_tol(max_memory, "max_memory")
    dev = solve_device(device)
    if method in _SINGLE_WEIGHT and block != 1:
        raise ValueError(f"method: {method!r} prunes single weights; use block=1 (pattern '1x1') or an N:M pattern, "
                         f"got block={block!r}")
    run = run or _default_run
    batches = check_batches(batches, model, run, row_masks)
    refine_val = check_positive_int(refine_val, "refine_val", low=0, high=len(batches) - 1)  # one batch to train on
    if blocks is not None:
        blocks = list(blocks)
        if not blocks or not all(isinstance(b, str) for b in blocks):
            raise ValueError(f"blocks: expected a non-empty list of submodule names, got {blocks!r}")
    tilings = find_prunable(model, block, min_blocks=min_blocks, pad=pad, include=include)
    tilings = _forward_order(model, tilings, batches[0], run)
    if keep is not None:
        keep = _check_keep(keep, tilings)
    for t in tilings:  # every layer fits max_memory with some method, checked before any work
        layer_method(method, *t.padded_shape, t.block, 0, max_memory)
    dense = copy.deepcopy(model).eval()
    model.eval()
    from tqdm.auto import tqdm
    clock = {"forward": 0.0, "gram": 0.0, "solve": 0.0}

    def streams(m):
        t0 = time.perf_counter()
        st = (_PrefixStreams(m, dense, batches, run, row_masks) if blocks is None else
              _BlockStreams(m, dense, batches, run, row_masks, blocks))
        clock["forward"] += time.perf_counter() - t0
        return st

    def timed(key, f, *args):
        t0 = time.perf_counter()
        out = f(*args)
        clock[key] += time.perf_counter() - t0
        return out

    # --- per-layer number of blocks to remove
    if keep is not None:
        n_remove = {n: int((~k).sum()) for n, k in keep.items()}
    elif isinstance(allocation, dict):
        _check_layer_names(allocation, tilings, "allocation")
        n_remove = {t.name: t.n_blocks - keep_count(check_sparsity(allocation.get(t.name, s),
                                                                    f"allocation[{t.name!r}]"), t.n_blocks)
                    for t in tilings}
    elif allocation == "uniform":
        n_remove = {t.name: t.n_blocks - keep_count(s, t.n_blocks) for t in tilings}
    else:
        n_all = sum(t.n_blocks for t in tilings)
        total = n_all - keep_count(s, n_all)
        caps = sum(int(np.floor(max_layer_sparsity * t.n_blocks)) for t in tilings)
        if total > caps:  # checked before any work: the caps cannot be met
            raise ValueError(f"sparsity: {s} means removing {total} of the {n_all} blocks, but max_layer_sparsity="
                             f"{max_layer_sparsity} lets the layers give up only {caps}; raise max_layer_sparsity or "
                             f"lower the sparsity")
        costs, owner = {}, {}
        st, gram = streams(dense), _Grams()
        with tqdm(total=len(tilings), desc="loss curves", disable=not progress) as bar:
            for group in st.groups(tilings):
                xd = timed("forward", st.dense_inputs, [n for t in group for n in t.holders])
                for t in group:
                    H, _ = timed("gram", gram, [(x, x) for n in t.holders for x in xd[n]], t.name)
                    t0 = time.perf_counter()
                    M = weight_to_matrix(dense.get_submodule(t.name).weight.detach()).double()
                    energy = 0.5 * float((M * (H @ M)).sum())
                    Hd, Bm = _pad_problem(*_damped(H, H @ M, M, damp, t.name), t)
                    cap = int(np.floor(max_layer_sparsity * t.n_blocks))
                    c = obs_first_costs(Hd, Bm, t.block).reshape(-1).sort().values.cpu()
                    costs[t.name] = c[:cap] / max(energy, 1e-30)
                    clock["solve"] += time.perf_counter() - t0
                    bar.update()
                timed("forward", st.advance)
        names = [t.name for t in tilings]
        owner = torch.cat([torch.full((costs[n].numel(),), i) for i, n in enumerate(names)])
        costs = torch.cat([costs[n] for n in names])
        # each layer's costs are non-decreasing, so the global smallest ``total`` take a prefix of every layer
        pick = owner[torch.argsort(costs, stable=True)[:total]]
        counts = torch.bincount(pick, minlength=len(tilings))
        n_remove = {n: int(counts[i]) for i, n in enumerate(names)}

    # --- sequential pass: prune each layer against the dense target, feeding pruned activations forward
    res = OneShotResult(model, tilings)
    res.seconds = clock
    st, gram = streams(model), _Grams()
    with tqdm(total=len(tilings), desc=f"one-shot {method}", disable=not progress) as bar:
        for group in st.groups(tilings):
            xd_all = timed("forward", st.dense_inputs, [n for t in group for n in t.holders])
            for t in group:
                mod, dmod = model.get_submodule(t.name), dense.get_submodule(t.name)
                # a tied weight is fitted to all its holders: their rows stack into one Gram
                xp = [x for n in t.holders for x in timed("forward", st.pruned_inputs, n)]
                xs = list(zip(xp, [x for n in t.holders for x in xd_all[n]]))
                H, Cx = timed("gram", gram, xs, t.name)
                t0 = time.perf_counter()
                Md = weight_to_matrix(dmod.weight.detach()).double()
                Bm = Cx @ Md
                Hd, Bp = _pad_problem(*_damped(H, Bm, Md, damp, t.name), t)
                r = n_remove[t.name]
                Mdp = _pad_problem(H, Md, t)[1]
                m_run = "refit" if keep is not None else layer_method(method, *Bp.shape, t.block, r, max_memory)
                if dev is not None and m_run not in ("magnitude", "activation", "activation_refit"):
                    Hd, Bp, H, Mdp = (x.to(dev) for x in (Hd, Bp, H, Mdp))
                if keep is not None:
                    kept = keep[t.name]
                    Mhat = gram_refit(Hd, Bp, kept, block=t.block, dtype=torch.float64)
                elif m_run in ("magnitude", "activation", "activation_refit"):
                    kept, Mhat = _baseline(Hd, Mdp, t, t.n_blocks - r, m_run, Bp)
                elif m_run in _SINGLE_WEIGHT:
                    kept, Mhat = _single_weight(H, Mdp, t, r, m_run)
                else:
                    kept, Mhat = _select_layer(Hd, Bp, t, r, m_run)
                res.layer_method[t.name] = m_run
                rr, cc = t.matrix_shape
                Mhat = Mhat[:rr, :cc].to(Md.device)
                with torch.no_grad():
                    w = mod.weight
                    w.copy_(matrix_to_weight(Mhat.to(w.dtype), t.weight_shape))
                (p,) = masking.attach(model, [t], "mask")
                p.mask.copy_(kept.reshape(-1).to(p.mask.dtype))
                res.params.append(p)
                res.keep[t.name] = kept.cpu().clone()
                res.layer_sparsity[t.name] = float((~kept).sum()) / t.n_blocks  # Wanda counts per output
                # relative reconstruction error ||X_d M - X_p M^||^2 / ||X_d M||^2 on the calibration rows
                Mh32, Md32 = Mhat.float(), Md.float()
                num = sum(float((xd @ Md32 - xp @ Mh32).double().pow(2).sum()) for xp, xd in xs)
                den = sum(float((xd @ Md32).double().pow(2).sum()) for xp, xd in xs)
                res.layer_loss[t.name] = num / max(den, 1e-30)
                clock["solve"] += time.perf_counter() - t0
                bar.update()
            if refine_steps and group:
                t0 = time.perf_counter()
                res.block_error[st.blocks[st.i]] = st.refine(refine_steps, refine_lr, refine_val)
                clock["refine"] = clock.get("refine", 0.0) + time.perf_counter() - t0
            timed("forward", st.advance)
    return res
