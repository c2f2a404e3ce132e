"""One-shot block pruning from calibration data, layer by layer, on the Gram-form least-squares problem.

For a layer with GEMM matrix M (inputs x outputs, tiling.py), calibration inputs X_p reaching it in the pruned
model and X_d reaching it in the dense model, we solve

    min_{M^ block sparse}  (1/2n) || X_d M - X_p M^ ||_F^2
      = 1/2 tr(M^T H M) - tr(M^T Bm) + const,   H = X_p^T X_p / n,  Bm = (X_p^T X_d / n) M

(the ``groupsparse.GramLeastSquares(H, Bm)`` loss, coefficients the (p, K) matrix M^ flattened row-major, the
groups ``Groups.block_tiling(M.shape, B)``), then go to the next layer feeding the pruned activations forward.
Targeting the *dense* output from *pruned* inputs lets each layer compensate the error of the layers before it.

Selection (``method``):
* ``'obs'`` (default): greedy backward elimination on the Gram form -- start from the least-squares optimum and
  repeatedly drop the block whose removal raises the loss least, re-optimizing the rest exactly (group Optimal
  Brain Surgeon: increment 1/2 tr(M_g^T [H^-1]_gg^-1 M_g), rank-B downdate of H^-1).  The loss is separable over
  the column blocks of M (they share H), so all column blocks run in lock step as one batched computation
  (one p x p inverse per column block, O(p^3) each for the whole path), and the per-column paths are merged by
  their loss increments: the layer's loss curve.  The kept blocks are then refit exactly (float64 solve).
* ``'magnitude'`` / ``'activation'``: block Frobenius norm of M, or of X M_g (tr(M_g^T H_gg M_g)), no refit;
  ``'activation_refit'``: activation scores then the least-squares refit of the kept blocks.  (Baselines.)
* any other name is passed to ``groupsparse.select(GramLeastSquares(H, Bm), groups, k, method=...)`` when that
  function exists (``_select_layer``: the one place to swap).

Allocation (``allocation``): ``'uniform'`` (every layer at the target) or ``'loss'``: a first pass over the dense
model computes every layer's loss curve (sorted single-block OBS increments, ``obs_first_costs``), normalized by the layer's dense output energy
1/2 tr(M^T H M); the blocks removed across all layers are the ones with the smallest normalized increments
(each layer capped at ``max_layer_sparsity``) -- the method, not a hand-tuned table, spreads the sparsity.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from groupsparse.schedules import check_sparsity

from . import masking
from .report import SparsityReport, finalize_model, measure
from .tiling import LayerTiling, find_prunable, matrix_to_weight, weight_to_matrix

__all__ = ["oneshot_prune", "OneShotResult", "obs_paths", "merge_paths", "layer_inputs", "METHODS"]

METHODS = ("obs", "magnitude", "activation", "activation_refit")


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


def _capture(model, module, batch, run, rows):
    """Run ``model`` on ``batch`` until ``module`` is called; return its GEMM input rows (float32)."""
    box = {}

    def hook(mod, args):
        box["x"] = args[0].detach()
        raise _Stop

    h = module.register_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            run(model, batch)
    except _Stop:
        pass
    finally:
        h.remove()
    if "x" not in box:
        raise RuntimeError("calibration: the layer was not called by run(model, batch)")
    x = box["x"]
    if rows is not None and isinstance(module, nn.Linear):
        x = x[rows.to(x.device)]
    return layer_inputs(module, x).float()


def _forward_order(model, tilings, batch, run):
    """Layer names in the order the forward pass first calls them."""
    order, hooks = [], []
    for t in tilings:
        mod = model.get_submodule(t.name)
        hooks.append(mod.register_forward_pre_hook(lambda m, a, n=t.name: order.append(n) if n not in order else None))
    try:
        with torch.no_grad():
            run(model, batch)
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


def obs_paths(H: torch.Tensor, Bm: torch.Tensor, block: int, n_steps: int, dtype=torch.float64):
    """Greedy backward elimination of row blocks, independently in every column block, in lock step.

    H (p, p) SPD, Bm (p, K) with p, K multiples of ``block``.  Returns ``order`` (C, n_steps) -- the row block
    removed by each column block at each step -- and ``incr`` (C, n_steps), the exact loss increase of each removal
    (the loss re-optimized over the remaining blocks of that column block).

    Each column block's H^-1 after s removals is H0^-1 - V V^T with V (p, B*s) (the rank-B downdates stacked), so
    nothing of size C x p x p is ever formed: a step costs O(C p B^2 s) and one shared p x p inverse is computed.
    """
    B = block
    p, K = Bm.shape
    R, C = p // B, K // B
    n_steps = int(min(n_steps, R))
    dev = H.device
    Hinv0 = torch.linalg.inv(H.to(dtype))
    Hinv0 = 0.5 * (Hinv0 + Hinv0.t())
    M = (Hinv0 @ Bm.to(dtype)).reshape(p, C, B).permute(1, 0, 2).contiguous()  # (C, p, B): LS optimum
    ar, cr, bb = torch.arange(R, device=dev), torch.arange(C, device=dev), torch.arange(B, device=dev)
    D = Hinv0.view(R, B, R, B)[ar, :, ar, :].expand(C, R, B, B).clone()  # diagonal blocks, per column block
    V = torch.zeros(C, p, B * n_steps, dtype=dtype, device=dev)
    removed = torch.zeros(C, R, dtype=torch.bool, device=dev)
    order = torch.zeros(C, n_steps, dtype=torch.long, device=dev)
    incr = torch.zeros(C, n_steps, dtype=torch.float64, device=dev)
    eye = torch.eye(B, dtype=dtype, device=dev)
    for s in range(n_steps):
        Ds = torch.where(removed[:, :, None, None], eye, D)
        L, info = torch.linalg.cholesky_ex(Ds)
        Mg = M.view(C, R, B, B)
        cost = 0.5 * (Mg * torch.cholesky_solve(Mg, L)).sum(dim=(2, 3))  # (C, R)
        cost = torch.where(removed | (info != 0), torch.full_like(cost, float("inf")), cost)
        g = cost.argmin(dim=1)  # (C,)
        order[:, s] = g
        incr[:, s] = cost[cr, g].double()
        cols = g[:, None] * B + bb  # (C, B)
        U = Hinv0[:, cols].permute(1, 0, 2)  # (C, p, B): columns g of H0^-1 ...
        if s:
            Vs = V[:, :, :B * s]
            U = U - Vs @ Vs.gather(1, cols[:, :, None].expand(C, B, B * s)).transpose(1, 2)  # ... minus V V^T
        Lg = L[cr, g]  # (C, B, B), D_g = Lg Lg^T
        Linv = torch.linalg.solve_triangular(Lg, eye.expand(C, B, B), upper=False)  # small: invert, then bmm
        Vn = U @ Linv.transpose(1, 2)  # U Lg^-T
        V[:, :, B * s:B * (s + 1)] = Vn
        M -= Vn @ (Linv @ Mg[cr, g])  # M - U D_g^-1 M_g
        Vb = Vn.view(C, R, B, B)
        D -= Vb @ Vb.transpose(2, 3)
        removed[cr, g] = True
        M.view(C, R, B, B)[cr, g] = 0.0
    return order, incr


def obs_first_costs(H: torch.Tensor, Bm: torch.Tensor, block: int) -> torch.Tensor:
    """The loss increase of removing each block alone from the least-squares optimum (C, R): the first step of
    ``obs_paths`` for every block, used as a cheap loss curve for allocating sparsity across layers."""
    B = block
    p, K = Bm.shape
    R, C = p // B, K // B
    Hinv = torch.linalg.inv(H.double())
    M = (Hinv @ Bm.double()).reshape(R, B, C, B).permute(2, 0, 1, 3)  # (C, R, B, B)
    ar = torch.arange(R, device=H.device)
    L = torch.linalg.cholesky(0.5 * (Hinv.view(R, B, R, B)[ar, :, ar, :] + Hinv.view(R, B, R, B)[ar, :, ar, :]
                                     .transpose(1, 2)))
    return 0.5 * (M * torch.cholesky_solve(M, L.expand(C, R, B, B))).sum(dim=(2, 3))


def merge_paths(incr: torch.Tensor) -> tuple:
    """Merge per-column removal paths into one non-decreasing sequence of marginal costs.

    Increments along a path are made non-decreasing (running max), so sorting all (column, step) pairs by them
    (ties by step) takes a prefix of every column's path: the first m entries say how many blocks each column
    block gives up when the layer gives up m.  Returns (sorted marginal costs, column of each entry).
    """
    C, S = incr.shape
    adj = torch.cummax(incr.cpu(), dim=1).values
    steps = torch.arange(S).expand(C, S)
    cols = torch.arange(C)[:, None].expand(C, S)
    key = np.lexsort((steps.reshape(-1).numpy(), adj.reshape(-1).numpy()))
    key = torch.from_numpy(key)
    return adj.reshape(-1)[key], cols.reshape(-1)[key]


def _refit(H, Bm, keep_mask, block):
    """Exact least-squares refit of the kept blocks, column block by column block (float64)."""
    p, K = Bm.shape
    R, C = keep_mask.shape
    Mhat = torch.zeros(p, K, dtype=torch.float64, device=H.device)
    Hd, Bd = H.double(), Bm.double()
    for j in range(C):
        rows = keep_mask[:, j].repeat_interleave(block)
        if not rows.any():
            continue
        idx = rows.nonzero().squeeze(1)
        cs = slice(j * block, (j + 1) * block)
        Hk = Hd[idx][:, idx]
        Mhat[idx, cs] = torch.cholesky_solve(Bd[idx, cs], torch.linalg.cholesky(Hk))
    return Mhat


def _select_layer(H, Bm, t: LayerTiling, n_remove: int, method: str):
    """Keep-mask (R, C) and refit matrix for one layer, removing ``n_remove`` blocks (the one place a solver is
    chosen; a ``groupsparse.select`` method name goes to groupsparse)."""
    R, C = t.grid
    B = t.block
    k = t.n_blocks - n_remove
    if method == "obs":
        # lock-step path length: enough for an uneven split across column blocks (a column block gives up at
        # most ``steps`` blocks; the merge takes the rest elsewhere)
        steps = min(R - 1, max(int(np.ceil(1.6 * n_remove / C)), int(np.ceil(n_remove / C)) + 2))
        order, incr = obs_paths(H, Bm, B, steps)
        _, col = merge_paths(incr)
        counts = torch.bincount(col[:n_remove], minlength=C)
        keep = torch.ones(R, C, dtype=torch.bool)
        for j in range(C):
            keep[order[j, :counts[j]].cpu(), j] = False
        return keep, _refit(H, Bm, keep, B)
    import groupsparse
    if not hasattr(groupsparse, "select"):
        raise ValueError(f"method: {method!r} needs groupsparse.select, which this groupsparse lacks; use one of "
                         f"{METHODS}")
    sol = groupsparse.select(groupsparse.GramLeastSquares(H, Bm), t.groups(), k, method=method)
    keep = torch.zeros(t.n_blocks, dtype=torch.bool)
    keep[torch.as_tensor(np.asarray(sol.support), dtype=torch.long)] = True
    coef = torch.as_tensor(np.asarray(sol.coef), dtype=torch.float64).reshape(Bm.shape)
    return keep.reshape(R, C), coef


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
        return keep, _refit(H, Bm, keep, B)
    return keep, (Mdense * keep.repeat_interleave(B, 0).repeat_interleave(B, 1)).double()


# ---------------------------------------------------------------------------------------------- driver
@dataclass
class OneShotResult:
    model: nn.Module
    tilings: list
    layer_sparsity: dict = field(default_factory=dict)   # name -> block sparsity chosen
    layer_loss: dict = field(default_factory=dict)       # name -> relative reconstruction error on calibration
    params: list = field(default_factory=list)

    def report(self) -> SparsityReport:
        return measure(self.model, self.tilings)

    def finalize(self) -> SparsityReport:
        return finalize_model(self.model, self.tilings)


class _Grams:
    """Calibration Grams of one layer, H = X_p^T X_p / n and C = X_p^T X_d / n (X_p: inputs in the pruned model,
    X_d: in the dense one), computed in float32 matmuls accumulated in float64.

    Layers fed the same input (e.g. query / key / value) reuse the previous layer's Grams: the captured inputs are
    compared exactly, which costs a forward pass but saves the p x p products that dominate the run time.
    """

    def __init__(self, batches, run, row_masks):
        self.batches, self.run, self.row_masks = batches, run, row_masks
        self._last = None

    def __call__(self, model, dense, mod, dmod):
        xs = []
        for b, batch in enumerate(self.batches):
            rows = None if self.row_masks is None else self.row_masks[b]
            xd = _capture(dense, dmod, batch, self.run, rows)
            xp = xd if model is dense else _capture(model, mod, batch, self.run, rows)
            xs.append((xp, xd))
        if self._last is not None and len(self._last[0]) == len(xs) and all(
                a[0].shape == b[0].shape and torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
                for a, b in zip(self._last[0], xs)):
            return self._last[1], self._last[2], xs
        p = xs[0][0].shape[1]
        H = torch.zeros(p, p, dtype=torch.float64, device=xs[0][0].device)
        C = torch.zeros_like(H)
        n = 0
        for xp, xd in xs:
            H += (xp.t() @ xp).double()
            if xd is not xp:
                C += (xp.t() @ xd).double()
            n += xp.shape[0]
        if all(xd is xp for xp, xd in xs):  # the dense pass: C = H
            C = H.clone()
        H, C = H / n, C / n
        self._last = (xs, H, C)
        return H, C, xs


def _damp(H, damp):
    d = H.diagonal().mean() * damp
    return H + d * torch.eye(H.shape[0], dtype=H.dtype, device=H.device)


def oneshot_prune(model: nn.Module, batches, sparsity, block=16, *, method: str = "obs",
                  allocation: str = "uniform", run=None, row_masks=None, min_blocks: int = 100, pad: bool = False,
                  include=None, damp: float = 0.01, max_layer_sparsity: float = 0.9,
                  progress: bool = True) -> OneShotResult:
    """Prune ``model`` in place from calibration ``batches`` (see the module docstring).

    ``run(model, batch)`` calls the model (default: ``model(**batch)`` for dicts, ``model(*batch)`` for tuples);
    ``row_masks``: optional per-batch boolean (batch, seq) masks of the tokens to use (e.g. without padding).
    Masks are attached as ``BlockMask`` parametrizations holding the refit weights; call ``finalize()`` to bake.
    """
    s = check_sparsity(sparsity)
    if method not in METHODS:
        import groupsparse
        if not hasattr(groupsparse, "select"):
            raise ValueError(f"method: expected one of {METHODS} (groupsparse.select is not available), "
                             f"got {method!r}")
    if allocation not in ("uniform", "loss"):
        raise ValueError(f"allocation: expected 'uniform' or 'loss', got {allocation!r}")
    max_layer_sparsity = check_sparsity(max_layer_sparsity, "max_layer_sparsity")
    batches = list(batches)
    if not batches:
        raise ValueError("batches: at least one calibration batch is required")
    run = run or _default_run
    tilings = find_prunable(model, block, min_blocks=min_blocks, pad=pad, include=include)
    tilings = _forward_order(model, tilings, batches[0], run)
    dense = copy.deepcopy(model).eval()
    model.eval()
    from tqdm.auto import tqdm
    gram = _Grams(batches, run, row_masks)

    # --- per-layer number of blocks to remove
    if allocation == "uniform":
        n_remove = {t.name: int(round(s * t.n_blocks)) for t in tilings}
    else:
        costs, owner = [], []
        for li, t in enumerate(tqdm(tilings, desc="loss curves", disable=not progress)):
            dmod = dense.get_submodule(t.name)
            H, _, _ = gram(dense, dense, dmod, dmod)
            M = weight_to_matrix(dmod.weight.detach()).double()
            energy = 0.5 * float((M * (H @ M)).sum())
            Hd, Bm = _pad_problem(_damp(H, damp), H @ M, t)
            cap = int(np.floor(max_layer_sparsity * t.n_blocks))
            c = obs_first_costs(Hd, Bm, t.block).reshape(-1).sort().values.cpu()
            costs.append(c[:cap] / max(energy, 1e-30))
            owner.append(torch.full((min(cap, c.numel()),), li))
        costs, owner = torch.cat(costs), torch.cat(owner)
        total = int(round(s * sum(t.n_blocks for t in tilings)))
        # each layer's costs are non-decreasing, so the global smallest ``total`` take a prefix of every layer
        pick = owner[torch.argsort(costs, stable=True)[:total]]
        counts = torch.bincount(pick, minlength=len(tilings))
        n_remove = {t.name: int(counts[i]) for i, t in enumerate(tilings)}

    # --- sequential pass: prune each layer against the dense target, feeding pruned activations forward
    res = OneShotResult(model, tilings)
    for t in tqdm(tilings, desc=f"one-shot {method}", disable=not progress):
        mod, dmod = model.get_submodule(t.name), dense.get_submodule(t.name)
        H, Cx, xs = gram(model, dense, mod, dmod)
        Md = weight_to_matrix(dmod.weight.detach()).double()
        Bm = Cx @ Md
        Hd, Bp = _pad_problem(_damp(H, damp), Bm, t)
        r = n_remove[t.name]
        Mdp = _pad_problem(H, Md, t)[1]
        if method in ("magnitude", "activation", "activation_refit"):
            keep, Mhat = _baseline(Hd, Mdp, t, t.n_blocks - r, method, Bp)
        else:
            keep, Mhat = _select_layer(Hd, Bp, t, r, method)
        rr, cc = t.matrix_shape
        Mhat = Mhat[:rr, :cc]
        with torch.no_grad():
            w = mod.weight
            w.copy_(matrix_to_weight(Mhat.to(w.dtype), t.weight_shape))
        (p,) = masking.attach(model, [t], "mask")
        p.mask.copy_(keep.reshape(-1).to(p.mask.dtype))
        res.params.append(p)
        res.layer_sparsity[t.name] = r / t.n_blocks
        # relative reconstruction error ||X_d M - X_p M^||^2 / ||X_d M||^2 on the calibration rows
        Mh32, Md32 = Mhat.float(), Md.float()
        num = sum(float((xd @ Md32 - xp @ Mh32).pow(2).sum()) for xp, xd in xs)
        den = sum(float((xd @ Md32).pow(2).sum()) for xp, xd in xs)
        res.layer_loss[t.name] = num / max(den, 1e-30)
    return res
