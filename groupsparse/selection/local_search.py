"""Swap local search: abess-style splicing, then exact best-swap polishing.

* Splicing (Zhu, Wen, Zhang, Wang & Wang, PNAS 2020; group version Zhang et al. 2023; solver_anchors.md 2):
  exchange the C selected groups with the smallest backward sacrifice for the C unselected groups with the
  largest forward sacrifice, refit on the new support only, keep it if the loss drops; otherwise halve C.
  One refit per attempted exchange (never per candidate).
* Exact swap polishing (least squares, X or Gram form, any number of outputs whose groups fall into disjoint
  column blocks -- one output, B x B tiles, N:M's single weights, feature groups spanning all outputs): the loss is
  a sum over column blocks, each a least-squares problem on its own support rows A with H shared.  In one column
  block the exact loss of every single swap (drop j in S, add g outside) comes at once from the column block
  H[:, A] and the inverse of H_AA, by the block-inverse downdate of the support:
      L(A \\ j) = L(A) + 1/2 tr(beta_j^T T_j beta_j),             T_j = ((H_AA^-1)_jj)^-1
      L(A \\ j + g) = L(A \\ j) - 1/2 tr(d^T M^-1 d),
      d = r_g + E_gj T_j beta_j,   M = Phi_g - E_g H_gA^T + E_gj T_j E_gj^T,   E = H_:A H_AA^-1,
  with r the negative gradient at the refit; a swap across column blocks is the removal in one plus the addition
  1/2 tr(r_g^T (Phi_g - E_g H_gA^T)^-1 r_g) in the other.  A sweep computes these for every column block (batched
  over blocks of equal sizes, in the loss's array namespace: numpy, or torch on any device), then applies the best
  improving swap of every column block at once (they are independent), or else the best swap across blocks; the
  result is a 1-swap local optimum over the candidates ("exhaustive local search", Axiotis & Sviridenko 2020) --
  over all groups when the candidates are all of them (the default up to 200 groups per column block;
  ``n_candidates`` otherwise).  Under a partition budget (N:M) a swap must keep every part within its budget
  (``Budget.swap_ok``) and stays inside its column block.

``local_search`` starts from any support (``start``: a ``select`` method name such as 'obs', or group ids), bounds
its cost (``max_swaps`` accepted moves, ``max_iter`` rounds, ``select``'s ``max_time``) and records the objective
after every accepted move in ``history`` (the moves themselves in ``info['moves']``).
"""
from __future__ import annotations

import numpy as np

from .._array import to_numpy

__all__ = ["splice", "swap_polish", "local_search", "abess_init"]


def abess_init(bp, k):
    """The k groups with the largest forward sacrifice at the empty-support refit (abess's initial support; under a
    partition budget the largest of every part)."""
    W0, _ = bp.refit(np.zeros(0, dtype=np.int64))
    return bp.budget_for(k).pick(bp.forward(bp.grad(W0)), k)


def splice(bp, k, S, W, val, *, exchange=5, max_iter=100, max_swaps=None, tol=1e-12, history=None, moves=None):
    """abess splicing from support S (refit W, value val), exchanging at most ``max_swaps`` groups in all (None:
    no limit).  Returns (W, S, val, n_iter); ``moves`` (a list) receives {'drop', 'add', 'objective'} per accepted
    exchange."""
    S = np.sort(np.asarray(S, dtype=np.int64))
    budget = bp.budget_for(k)
    cmax = max(0, min(int(exchange), S.size, bp.G - S.size))
    it, done = 0, 0
    for it in range(1, max_iter + 1):
        if cmax == 0 or bp.time_up() or (max_swaps is not None and done >= max_swaps):
            break
        bwd = bp.backward(W)[S]
        fwd = bp.forward(bp.grad(W))
        order_in = S[np.argsort(bwd, kind="stable")]
        improved = False
        C = cmax if max_swaps is None else min(cmax, max_swaps - done)
        while C >= 1:
            kept = np.setdiff1d(S, order_in[:C])
            add = budget.pick(fwd, C, kept, exclude=S)  # the room the drops left (their parts, under a partition)
            S2 = np.union1d(kept, add)
            W2, v2 = bp.refit(S2, W)  # GLMs: Newton from the current refit (least squares: exact anyway)
            if v2 < val - tol * abs(val):
                if moves is not None:
                    moves.append({"drop": np.setdiff1d(S, S2).tolist(), "add": np.setdiff1d(S2, S).tolist(),
                                  "objective": float(v2)})
                W, S, val, improved = W2, S2, v2, True
                done += C
                break
            C //= 2
        if not improved:
            break
        if history is not None:
            history.append(val)
    return W, S, val, it


def column_blocks(bp):
    """(column block of every group, the output columns of every block) when the groups' column sets are equal or
    disjoint -- the loss is then a sum of independent least-squares problems, one per column block -- else None.
    Cached on ``bp``."""
    if not hasattr(bp, "_colblocks"):
        bp._colblocks = None
        if bp.quadratic and bp.rect:
            K = bp.K
            uniq, inv = np.unique(bp._cols_np, axis=0, return_inverse=True)
            sets = [u[u < K] for u in uniq]
            allc = np.concatenate(sets)
            if np.unique(allc).size == allc.size:
                bp._colblocks = (np.asarray(inv).ravel().astype(np.int64), sets)
    return bp._colblocks


def can_polish(bp) -> bool:
    return column_blocks(bp) is not None


def _gram_rows(bp, need):
    """(H[need][:, need] + pad, B[need] + pad, position of every coefficient row in ``need`` (pad row -> last)):
    float64 in the loss's namespace, the ridge-free Hessian of the loss and its linear term b = -grad(0), with one
    zero row (and column) appended that the padded indices read."""
    xp, loss = bp.xp, bp.loss
    nr = bp.n_rows
    if bp.gram:  # every row: H is already formed
        need = np.arange(nr)
        Hn = xp.astype(loss.H, xp.float64)
        Bn = xp.astype(loss.B, xp.float64)
    else:
        X, n = loss.X, loss.n_samples
        Xn = X[:, need]
        Xn = Xn.toarray() if hasattr(Xn, "toarray") else np.asarray(Xn)
        Hn = Xn.T @ Xn / n
        Bn = Xn.T @ loss.Y / n
    q = need.size
    zc = xp.zeros((q, 1), dtype=xp.float64, device=bp.device)
    Hn = xp.concat([xp.concat([Hn, zc], axis=1), xp.zeros((1, q + 1), dtype=xp.float64, device=bp.device)], axis=0)
    Bn = xp.concat([Bn, xp.zeros((1, bp.K), dtype=xp.float64, device=bp.device)], axis=0)
    pos = np.full(nr + 1, q, dtype=np.int64)
    pos[need] = np.arange(q)
    return Hn, Bn, pos


def _half_quad(xp, M, D, scale=None):
    """1/2 tr(D^T M^-1 D) over the last two axes of a stack (M (..., r, r) SPD, D (..., r, c)); a singular M (an
    entering group collinear with the support: a 1 x 1 M at most 1e-10 of ``scale``, its Phi_g) gives 0, never
    inf or NaN."""
    if M.shape[-1] == 1:
        m = M[..., 0, 0]
        num = xp.sum(D[..., 0, :] * D[..., 0, :], axis=-1)
        ok = m > (1e-10 * scale if scale is not None else 0.0) + 1e-300
        return xp.where(ok, 0.5 * num / xp.where(ok, m, xp.ones_like(m)), xp.zeros_like(m))
    try:
        sol = xp.linalg.solve(M, D)
    except Exception:  # numpy LinAlgError / torch's: a singular system somewhere in the stack
        sol = xp.linalg.pinv(M) @ D
    v = 0.5 * xp.sum(D * sol, axis=(-2, -1))
    return xp.where(xp.isfinite(v), v, xp.zeros_like(v))


def _evaluate(bp, Hn, Bn, pos, Phi, items):
    """Exact swap values for a batch of column blocks of equal sizes (module docstring).  ``items``: per block
    (J ids, U ids, pair j index, pair u index, columns).  Returns host arrays: delta (n, P) = loss change of each
    pair's swap, rem (n, J) = loss increase of each removal, add (n, U) = loss decrease of each addition alone, and
    ok (n,) whether the block's support system was usable."""
    from .obs import _cholesky_ok
    xp, dev = bp.xp, bp.device
    R, nr, p = bp._rows_np, bp.n_rows, bp.p
    r = R.shape[1]
    q = Hn.shape[0] - 1
    n_it = len(items)
    J, U = items[0][0].size, items[0][1].size
    rows_of = [[R[g][R[g] < nr] for g in it[0]] for it in items]
    a = sum(x.size for x in rows_of[0]) + bp.fixed_rows.size
    A = np.empty((n_it, a), dtype=np.int64)
    Jp = np.full((n_it, J, r), a, dtype=np.int64)  # positions of each kept group's rows in A; pad -> a
    for i, ro in enumerate(rows_of):
        A[i] = np.concatenate(ro + [bp.fixed_rows])
        off = 0
        for j, x in enumerate(ro):
            Jp[i, j, : x.size] = np.arange(off, off + x.size)
            off += x.size
    Ah = pos[A]
    Cr = pos[R[np.stack([it[1] for it in items])]] if U else np.zeros((n_it, 0, r), dtype=np.int64)  # (n, U, r)
    cols = np.stack([it[4] for it in items])  # (n, nc)
    nc = cols.shape[1]
    asx = lambda v: xp.asarray(v, device=dev)  # noqa: E731
    Ax, Crx, colx = asx(Ah), asx(Cr.reshape(n_it, U * r)), asx(cols)
    ridge = bp.loss.ridge
    GA = Hn[Ax[:, :, None], Ax[:, None, :]]
    if ridge:
        GA = GA + xp.asarray(np.where(A < p, ridge, 0.0), dtype=xp.float64, device=dev)[:, :, None] * \
            xp.eye(a, dtype=xp.float64, device=dev)
    Lc, ok = _cholesky_ok(xp, GA)  # failed factors come back as identities
    if hasattr(Lc, "detach"):  # torch: from the factor (its batched LU inverse fails at some sizes: torch 2.13, MKL)
        import torch
        Ginv = torch.cholesky_inverse(Lc)
    else:
        Ginv = xp.linalg.inv(xp.where(asx(ok)[:, None, None], GA, xp.eye(a, dtype=xp.float64, device=dev)))
    beta = Ginv @ Bn[Ax[:, :, None], colx[:, None, :]]                      # (n, a, nc)
    HgA = Hn[Crx[:, :, None], Ax[:, None, :]]                                 # (n, U r, a)
    rg = Bn[Crx[:, :, None], colx[:, None, :]] - HgA @ beta                   # (n, U r, nc): -gradient
    E = HgA @ Ginv
    E4 = xp.reshape(E, (n_it, U, r, a))
    base = Phi[asx(np.stack([it[1] for it in items]))] if U else xp.zeros((n_it, 0, r, r), dtype=xp.float64,
                                                                               device=dev)
    base0 = base
    base = base - E4 @ xp.permute_dims(xp.reshape(HgA, (n_it, U, r, a)), (0, 1, 3, 2))
    rg4 = xp.reshape(rg, (n_it, U, r, nc))
    scale = xp.linalg.diagonal(base0)[..., 0] if U else None  # Phi_g's scale: a Schur complement below it
    add = _half_quad(xp, base, rg4, scale)                                     # (n, U)
    # the kept groups, padded: Ginv gets a unit diagonal entry and beta / E a zero at the pad position a
    Gx = xp.concat([xp.concat([Ginv, xp.zeros((n_it, a, 1), dtype=xp.float64, device=dev)], axis=2),
                    xp.concat([xp.zeros((n_it, 1, a), dtype=xp.float64, device=dev),
                               xp.ones((n_it, 1, 1), dtype=xp.float64, device=dev)], axis=2)], axis=1)
    bx = xp.concat([beta, xp.zeros((n_it, 1, nc), dtype=xp.float64, device=dev)], axis=1)
    Ex = xp.concat([E4, xp.zeros((n_it, U, r, 1), dtype=xp.float64, device=dev)], axis=3)
    bi = xp.arange(n_it, device=dev)
    Jx = asx(Jp)
    valid = asx(Jp < a)  # a group with fewer than r rows: its pad entries get an identity block, never a singular one
    Gj = xp.where(valid[..., :, None] & valid[..., None, :], Gx[bi[:, None, None, None], Jx[:, :, :, None],
                                                                Jx[:, :, None, :]], xp.eye(r, dtype=xp.float64,
                                                                                           device=dev))
    T = 1.0 / Gj if r == 1 else xp.linalg.inv(Gj)                             # (n, J, r, r)
    bj = bx[bi[:, None, None], Jx]                                             # (n, J, r, nc)
    Tb = T @ bj
    rem = 0.5 * xp.sum(bj * Tb, axis=(2, 3))                                   # (n, J)
    jp = asx(np.stack([it[2] for it in items]))                                # (n, P)
    up = asx(np.stack([it[3] for it in items]))
    if jp.shape[1]:
        # E_g on the rows of j, for every pair (g = candidate u, j): (n, P, r, r)
        JJ = Jx[bi[:, None], jp]                                               # (n, P, r)
        ar = xp.arange(r, device=dev)
        Ej = Ex[bi[:, None, None, None], up[:, :, None, None], ar[None, None, :, None], JJ[:, :, None, :]]
        Tj = T[bi[:, None], jp]
        M = base[bi[:, None], up] + Ej @ Tj @ xp.permute_dims(Ej, (0, 1, 3, 2))
        dd = rg4[bi[:, None], up] + Ej @ Tb[bi[:, None], jp]
        delta = rem[bi[:, None], jp] - _half_quad(xp, M, dd, scale[bi[:, None], up])
    else:
        delta = xp.zeros((n_it, 0), dtype=xp.float64, device=dev)
    return to_numpy(delta), to_numpy(rem), to_numpy(add), ok


def _chunks(items, per_item_bytes, limit=2e8):
    step = max(1, int(limit // max(per_item_bytes, 1)))
    for a in range(0, len(items), step):
        yield items[a:a + step]


def swap_polish(bp, k, S, W, val, *, n_candidates=None, max_iter=50, max_swaps=None, tol=1e-12, history=None,
                moves=None):
    """Apply exact improving single swaps while the loss falls (module docstring): per sweep the best swap of every
    column block, or else the best across blocks.  (W, S, val, n_swaps).

    The groups that may enter a column block are its ``n_candidates`` unselected groups with the largest forward
    sacrifice (default: all of them up to 200 groups in the block, else max(100, 8 x its kept groups); abess's
    "important search"), so a sweep's cost does not grow with the number of groups.  At most ``max_iter`` sweeps
    and ``max_swaps`` swaps (None: no limit).  ``moves`` (a list) receives {'drop', 'add', 'objective'} per sweep."""
    S = np.sort(np.asarray(S, dtype=np.int64))
    budget = bp.budget_for(k)
    cb, blocks = column_blocks(bp)
    G, R, nr = bp.G, bp._rows_np, bp.n_rows
    r = R.shape[1]
    Phi, _ = bp._phi_blocks()
    by_block = np.argsort(cb, kind="stable")
    bounds = np.searchsorted(cb[by_block], np.arange(len(blocks) + 1))
    lab = budget._lab
    swaps = 0
    cache = {}  # column block -> (its support and room, its entries): a block's swap values depend on nothing else
    for _ in range(max_iter):
        if S.size == 0 or S.size == G or bp.time_up() or (max_swaps is not None and swaps >= max_swaps):
            break
        fwd = bp.forward(bp.grad(W))
        inS = np.zeros(G, dtype=bool)
        inS[S] = True
        room = budget.room(S)
        batches, entries = {}, {}
        for b in range(len(blocks)):
            ids = by_block[bounds[b]:bounds[b + 1]]
            Jb, out = ids[inS[ids]], ids[~inS[ids]]
            state = (Jb.tobytes(), room[ids].tobytes())
            if b in cache and cache[b][0] == state:
                entries[b] = cache[b][1]
                continue
            entries[b] = ([], [], [])
            cap = n_candidates if n_candidates is not None else (
                out.size if out.size + Jb.size <= 200 else max(100, 8 * Jb.size))
            if out.size > cap:
                out = np.sort(out[np.argsort(-fwd[out], kind="stable")[:cap]])
            ok = (lab[Jb][:, None] == lab[out][None, :]) | room[out][None, :]
            jp, up = np.nonzero(ok)
            if Jb.size == 0 and out.size == 0:
                continue
            a = int((R[Jb] < nr).sum())
            key = (a, Jb.size, out.size, jp.size, blocks[b].size)
            batches.setdefault(key, []).append((Jb, out, jp, up, blocks[b], b))
            cache[b] = (state, entries[b])
        need = None if bp.gram else np.unique(np.concatenate(
            [R[g][R[g] < nr] for g in np.concatenate([S, *[it[1] for its in batches.values() for it in its]])]
            + [bp.fixed_rows]))
        Hn, Bn, pos = _gram_rows(bp, need)
        for (a, J, U, P, nc), its in batches.items():
            per = 8 * (a * a * 3 + U * r * a * 3 + P * r * (2 * r + nc + a) * 3 + J * r * (r + nc) * 2)
            for part in _chunks(its, per):
                if J == 0:  # nothing kept in these blocks: only additions, with no support to correct for
                    for it in part:
                        dd = xp_add_alone(bp, Hn, Bn, pos, Phi, it)
                        c = int(np.argmax(dd))
                        entries[it[5]][2].append((float(dd[c]), int(it[1][c])))
                    continue
                delta, rem, add, okb = _evaluate(bp, Hn, Bn, pos, Phi, part)
                for i, it in enumerate(part):
                    if not okb[i]:  # a rank-deficient support: the swap algebra needs H_AA^-1
                        continue
                    Jb, out, jp, up, _, b = it
                    within_b, rems_b, adds_b = entries[b]  # (delta, j, g); (cost, j, block); (gain, g)
                    if P:
                        c = int(np.argmin(delta[i]))
                        within_b.append((float(delta[i, c]), int(Jb[jp[c]]), int(out[up[c]])))
                    c = int(np.argmin(rem[i]))
                    rems_b.append((float(rem[i, c]), int(Jb[c]), b))
                    if U:
                        c = int(np.argmax(add[i]))
                        adds_b.append((float(add[i, c]), int(out[c])))
        within = [e for w, _, _ in entries.values() for e in w]
        rems = [e for _, rm, _ in entries.values() for e in rm]
        adds = [e for _, _, ad in entries.values() for e in ad]
        thr = -tol * abs(val)
        chosen = sorted(w for w in within if w[0] < thr)
        if not chosen and not budget.partitioned and rems and adds:  # a swap across column blocks
            rems.sort()
            adds.sort(reverse=True)
            pairs = []
            for gain, g in adds[:2]:  # the best pair is among the two best additions and their cheapest removal
                cost, j = next(((c, j) for c, j, bj in rems if bj != cb[g]), (None, None))
                if cost is not None and cost - gain < thr:
                    pairs.append((cost - gain, j, g))
            chosen = sorted(pairs)[:1]
        if not chosen:
            break
        if max_swaps is not None:
            chosen = chosen[: max_swaps - swaps]
        for attempt in (chosen, chosen[:1]):  # all blocks' best swaps at once; failing that, the best alone
            drop = np.array([j for _, j, _ in attempt], dtype=np.int64)
            add = np.array([g for _, _, g in attempt], dtype=np.int64)
            S2 = np.union1d(np.setdiff1d(S, drop), add)
            if not budget.feasible(S2):  # swaps of several blocks into one part (a partition across blocks)
                continue
            W2, v2 = bp.refit(S2)
            if v2 < val:  # numerical safety: the predicted decrease must be realised
                break
        else:
            break
        W, S, val = W2, S2, v2
        swaps += len(attempt)
        if history is not None:
            history.append(val)
        if moves is not None:
            moves.append({"drop": drop.tolist(), "add": add.tolist(), "objective": val})
    return W, S, val, swaps


def xp_add_alone(bp, Hn, Bn, pos, Phi, item):
    """Loss decrease of adding each candidate of a column block with nothing kept: 1/2 tr(b_g^T Phi_g^-1 b_g)."""
    xp = bp.xp
    _, out, _, _, cols, _ = item
    R = bp._rows_np
    Cr = xp.asarray(pos[R[out]], device=bp.device)                          # (U, r)
    colx = xp.asarray(cols, device=bp.device)
    bg = Bn[Cr[:, :, None], colx[None, None, :]]                            # (U, r, nc)
    P = Phi[xp.asarray(out, device=bp.device)]
    return to_numpy(_half_quad(xp, P, bg, xp.linalg.diagonal(P)[..., 0]))


def local_search(bp, k, *, start=None, init=None, exchange=5, max_iter=100, max_swaps=None, polish=True,
                 n_candidates=None, history=None):
    """Exact swap polishing where available (``can_polish``) from ``start``, then splicing, alternating until
    neither improves (the result is then a 1-swap local optimum where polishing is available).  ``start``: None (abess's initial support), a ``select`` method name (its support, e.g.
    'obs', 'omp', 'iht'), or group ids (``init``, its older name; a short one is completed greedily).
    ``max_swaps``: the most swaps accepted (a splice exchange of C groups counts C; None: no limit).
    Returns (W, S, value, n_moves); ``bp.info`` gets the start's name and objective and the accepted moves."""
    if start is not None and init is not None:
        raise ValueError("start: give start or init (its older name), not both")
    start = init if start is None else start
    if isinstance(start, str):
        from . import _run_method
        W, S, val, *_ = _run_method(start, bp, k)
        S = np.sort(np.asarray(S, dtype=np.int64))
    else:
        S = abess_init(bp, k) if start is None else np.unique(np.asarray(start, dtype=np.int64))
        if S.size < k:  # complete a short warm start greedily
            from .greedy import omp
            W, S, val, _ = omp(bp, k, init=S, score="sacrifice")
        else:
            S = S[:k] if S.size > k else S
            W, val = bp.refit(S)
    moves = []
    bp.info.update(start=start if isinstance(start, str) else ("abess" if start is None else "support"),
                   start_objective=float(val), moves=moves)

    def left():  # swaps still allowed (a splice exchange of C groups is C swaps)
        return None if max_swaps is None else max_swaps - sum(len(m["drop"]) for m in moves)

    polishing = polish and can_polish(bp)
    for _ in range(20):
        # exact swaps first where they exist (one per column block per sweep: thousands at once on a layer), then
        # splicing's multi-group exchanges from that 1-swap optimum; until a round of splicing finds nothing
        if polishing:
            W, S, val, _ = swap_polish(bp, k, S, W, val, n_candidates=n_candidates, max_swaps=left(),
                                       history=history, moves=moves)
        if left() == 0 or bp.time_up():
            break
        n_moves = len(moves)
        W, S, val, _ = splice(bp, k, S, W, val, exchange=exchange, max_iter=max_iter, max_swaps=left(),
                              history=history, moves=moves)
        if not polishing or len(moves) == n_moves or left() == 0 or bp.time_up():
            break
    return W, S, val, len(moves)
