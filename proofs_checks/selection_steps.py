"""The library's selection steps are the algorithms they are named after (theory_checks.md 1.5, 2.1-2.3).

Each library method is run and compared with a REFERENCE written here from the algorithm's definition, on small
least-squares instances (optional ridge), with exact refits by ``numpy.linalg.solve``:

- ``selection_steps.greedy``: group OMP (Lozano et al. 2009: add argmax_g ||grad_g L(beta_S)||, refit), its
  "sacrifice" variant (add argmax_g 1/2 d_g^T Phi_g^{-1} d_g with Phi_g = X_g^T X_g / n + ridge I, abess's
  forward sacrifice), and group OMPR (from OMP's support: add argmax gradient outside, drop argmin ||beta_j||
  inside, refit, keep the swap only if the loss drops).  Same support and value (rtol 1e-9) when the scores have
  no near-ties (top two 1e-6 apart at every step; other instances are discarded).
- ``selection_steps.iht``: group IHT (W <- H_k(W - grad/L), L = lambda_max(X^T X/n) + ridge) and hard
  thresholding pursuit (refit after every projection): the library's iterate (``selection.iht._iterate``, no
  early stop) equals the reference after the same number of iterations (rtol 1e-9); the descent lemma
  (theory_checks 2.1) then holds for the library's iterates because it holds for the reference's (checked here
  too: every reference IHT step is monotone).
- ``selection_steps.swap``: ``select(method='local_search')`` ends at a 1-swap local optimum (no single swap
  lowers the loss, by brute-force refits); every method's reported objective is the exact refit value of its
  support; ``method='exact'`` equals the enumerated optimum.

Negative control: a reference OMP that adds the group of SMALLEST gradient must disagree with the library.
"""
from __future__ import annotations

from itertools import combinations

import numpy as np
from hypothesis import assume

import groupsparse as gs
from groupsparse.selection import BudgetProblem
from groupsparse.selection import information_criterion
from groupsparse.selection.iht import _iterate

from ._instances import design
from .framework import Claim, Control, Outcome, register, seeds, st

SOURCE = "Lozano et al. 2009 (group OMP); Jain et al. 2011 (OMPR); Blumensath & Davies 2009 (IHT); " \
         "Foucart 2011 (HTP); theory_checks.md 1.5, 2.1-2.3"


class LS:
    """Least squares (1/2n)||y - X b||^2 + ridge/2 ||b||^2 with exact refits (the reference side)."""

    def __init__(self, X, y, groups, ridge):
        self.X, self.y, self.groups, self.ridge = X, y, groups, ridge
        self.n, self.p = X.shape

    def value(self, b):
        r = self.y - self.X @ b
        return 0.5 * r @ r / self.n + 0.5 * self.ridge * b @ b

    def grad(self, b):
        return self.X.T @ (self.X @ b - self.y) / self.n + self.ridge * b

    def refit(self, S):
        b = np.zeros(self.p)
        cols = self.groups.columns(sorted(int(g) for g in S))
        if cols.size:
            A = self.X[:, cols]
            b[cols] = np.linalg.solve(A.T @ A / self.n + self.ridge * np.eye(cols.size), A.T @ self.y / self.n)
        return b, self.value(b)

    def forward(self, d):
        out = np.empty(self.groups.n_groups)
        for g, idx in enumerate(self.groups.indices):
            Phi = self.X[:, idx].T @ self.X[:, idx] / self.n + self.ridge * np.eye(idx.size)
            out[g] = 0.5 * d[idx] @ np.linalg.solve(Phi, d[idx])
        return out


def build(params):
    rng = np.random.default_rng(params["seed"])
    sizes = [int(s) for s in rng.integers(1, 4, size=params["t"])]
    p = sum(sizes)
    n = params["n"]
    X = design(params["design"], n, p, rng, rho=0.6)
    groups = gs.Groups.from_sizes(sizes)
    beta = np.zeros(p)
    for g in rng.choice(len(sizes), size=min(3, len(sizes)), replace=False):
        beta[groups.indices[g]] = rng.standard_normal(sizes[g]) * rng.uniform(0.3, 2.0)
    y = X @ beta + 0.3 * rng.standard_normal(n)
    ridge = params["ridge"]
    k = min(params["k"], params["t"] - 1)
    return rng, LS(X, y, groups, ridge), gs.LeastSquares(X, y, ridge=ridge), groups, k


_strat = st.fixed_dictionaries({
    "seed": seeds(), "design": st.sampled_from(["iid", "equicorr", "toeplitz"]), "t": st.integers(3, 8),
    "k": st.integers(1, 4), "n": st.integers(15, 40), "ridge": st.sampled_from([0.0, 0.0, 1e-2, 0.3])})


def _argmax_untied(scores, exclude=()):
    s = np.array(scores, float)
    s[list(exclude)] = -np.inf
    order = np.argsort(-s)
    top, second = s[order[0]], (s[order[1]] if np.isfinite(s[order[1]]) else -np.inf) if s.size > 1 else -np.inf
    # near-ties make the pick ambiguous (theory_checks 0.3); the 1e-12 floor covers scores that are all ~0
    assume(top - second > 1e-6 * abs(top) + 1e-12)
    return int(order[0])


def ref_omp(ref, k, score="gradient", worst=False):
    S = []
    b = np.zeros(ref.p)
    for _ in range(k):
        d = ref.grad(b)
        sc = ref.groups.norms(d) ** 2 if score == "gradient" else ref.forward(d)
        if worst:
            sc = np.where(np.isin(np.arange(sc.size), S), np.inf, sc)
            S.append(int(np.argmin(sc)))
        else:
            S.append(_argmax_untied(sc, S))
        b, _ = ref.refit(S)
    return sorted(S), ref.refit(S)[1]


def ref_ompr(ref, k, max_iter=200, tol=1e-12):
    S, val = ref_omp(ref, k)
    for _ in range(max_iter):
        b, _ = ref.refit(S)
        add = _argmax_untied(ref.groups.norms(ref.grad(b)), S)
        bn = ref.groups.norms(b)[S]
        srt = np.sort(bn)
        assume(srt.size < 2 or srt[1] - srt[0] > 1e-6 * max(srt[1], 1e-300))
        drop = S[int(np.argmin(bn))]
        S2 = sorted(set(S) - {drop} | {add})
        v2 = ref.refit(S2)[1]
        if not v2 < val - tol * max(1.0, abs(val)):
            break
        S, val = S2, v2
    return S, val


def _greedy(params, worst=False):
    rng, ref, loss, groups, k = build(params)
    slacks, info = [], {}
    scale = max(1.0, ref.value(np.zeros(ref.p)))
    cases = [("omp", dict(score="gradient")), ("omp", dict(score="sacrifice")), ("ompr", {})]
    for method, opts in cases:
        if method == "omp":
            S_ref, v_ref = ref_omp(ref, k, opts["score"], worst=worst)
        else:
            if worst:
                continue
            S_ref, v_ref = ref_ompr(ref, k)
        sol = gs.select(loss, groups, k, method=method, **opts)
        same = sol.support.tolist() == S_ref
        slacks.append((1e-9 - abs(sol.objective - v_ref) / scale) if same else -1.0)
        info[f"{method}_{opts.get('score', '')}"] = dict(lib=sol.support.tolist(), ref=S_ref, lib_value=sol.objective,
                                                         ref_value=v_ref)
    return Outcome(min(slacks), info)


register(Claim(
    name="selection_steps.greedy",
    title="select('omp' | 'omp' sacrifice | 'ompr') = reference group OMP / OMPR",
    source=SOURCE, mark="D✓ (definitions)",
    statement="the library's group OMP adds argmax_g ||grad_g L(beta_S)|| (or the largest forward sacrifice) and "
              "refits; its OMPR swaps the best outside group for the smallest inside group while the loss drops",
    assumptions="least squares (ridge 0, 1e-2, 0.3), designs iid/equicorr/toeplitz (rho 0.6), t in 3..8 groups of "
                "size 1..3, k in 1..4 (< t), n in 15..40; no near-ties (1e-6) among the scores",
    strategy=_strat, check=_greedy,
    controls=[Control("worst-pick OMP", "a reference OMP adding the smallest gradient must disagree", _strat,
                      lambda p: _greedy(p, worst=True), budget=50)],
    under_test="groupsparse.select(method='omp', score='gradient'|'sacrifice'), select(method='ompr'); "
               "BudgetProblem.grad / forward / refit / top",
    cost=0.3,
))


def ref_iht(ref, k, iters, L, pursuit=False):
    b = np.zeros(ref.p)
    vals = [ref.value(b)]
    for _ in range(iters):
        v = b - ref.grad(b) / L
        gn = ref.groups.norms(v)
        srt = np.sort(gn)[::-1]
        assume(srt[k - 1] - srt[k] > 1e-9 * max(srt[0], 1e-300))  # H_k unambiguous
        S = np.sort(np.argsort(-gn)[:k])
        b = v * ref.groups.mask(S) if not pursuit else ref.refit(S)[0]
        vals.append(ref.value(b))
    return b, np.array(vals)


_iht_strat = st.fixed_dictionaries({
    "seed": seeds(), "design": st.sampled_from(["iid", "equicorr", "toeplitz"]), "t": st.integers(3, 8),
    "k": st.integers(1, 4), "n": st.integers(15, 40), "ridge": st.sampled_from([0.0, 1e-2, 0.3]),
    "iters": st.integers(1, 25), "pursuit": st.booleans()})


def _iht(params, step=1.0):
    rng, ref, loss, groups, k = build(params)
    bp = BudgetProblem(loss, groups)
    L = float(np.linalg.eigvalsh(ref.X.T @ ref.X / ref.n)[-1]) + ref.ridge
    W, S, it = _iterate(bp, k, k, max_iter=params["iters"], tol=0.0, pursuit=params["pursuit"], init=None)
    b_ref, vals = ref_iht(ref, k, it, L / step, pursuit=params["pursuit"])
    w = np.asarray(W, float).ravel()
    err = float(np.linalg.norm(w - b_ref)) / max(1.0, float(np.linalg.norm(b_ref)))
    mono = float(np.min(-(np.diff(vals)) + 1e-13 * np.maximum(1.0, np.abs(vals[:-1]))))
    return Outcome(min(1e-9 - err, mono), dict(iters=it, err=err, monotone_slack=mono, k=k, L=L,
                                               L_lib=bp.lipschitz))


register(Claim(
    name="selection_steps.iht",
    title="library group IHT / HTP iterates = reference H_k(W - grad/L) (and the descent lemma)",
    source=SOURCE, mark="D✓",
    statement="each library IHT step is W <- H_k(W - grad L(W)/L) (HTP: then refit on the support); with step 1/L "
              "the loss never increases",
    assumptions="as selection_steps.greedy; 1..25 iterations from 0, no early stop; the k-th and (k+1)-th group "
                "norms 1e-9 apart at every step",
    strategy=_iht_strat, check=_iht,
    controls=[Control("step 1/(0.3 L)", "a reference with a 3.3x larger step must disagree with the library",
                      _iht_strat, lambda p: _iht(p, step=3.3), budget=50)],
    under_test="groupsparse.selection.iht._iterate (pursuit False/True), BudgetProblem.lipschitz / project / grad",
    cost=0.2,
))


def _swap(params, perturb=False):
    rng, ref, loss, groups, k = build(params)
    t = groups.n_groups
    scale = max(1.0, ref.value(np.zeros(ref.p)))
    tol = 1e-9 * scale
    slacks, info = [], {}
    opt = min(ref.refit(S)[1] for S in combinations(range(t), k))
    for method in ("local_search", "splicing", "exact", "iht", "omp"):
        sol = gs.select(loss, groups, k, method=method)
        S = sol.support.tolist()
        v_ref = ref.refit(S)[1]
        val = sol.objective + (1e-6 * scale if perturb else 0.0)
        slacks.append(tol - abs(val - v_ref))  # the objective is the exact refit value of the support
        slacks.append(1.0 if len(S) == k else -1.0)
        if method == "local_search":  # no single swap improves
            best_swap = min(ref.refit(sorted(set(S) - {j} | {g}))[1] for j in S for g in range(t) if g not in S)
            slacks.append(best_swap - sol.objective + tol)
            info["best_swap"] = best_swap
        if method == "exact":
            slacks.append(tol - abs(sol.objective - opt))
        # the 'kkt' certificate is the largest gradient norm on the support at the refit (0 up to rounding)
        b_ref = ref.refit(S)[0]
        stat = float(np.max(ref.groups.norms(ref.grad(b_ref))[S]))
        gscale = max(1.0, float(np.max(ref.groups.norms(ref.grad(np.zeros(ref.p))))))
        if method == "exact":  # branch and bound proves optimality: a zero bound gap
            slacks.append(tol - sol.certificate if sol.certificate_kind == "bound_gap" else -1.0)
        else:
            slacks.append(1e-8 * gscale - abs(sol.certificate - stat) if sol.certificate_kind == "kkt" else -1.0)
        info[method] = dict(support=S, value=sol.objective, refit=v_ref, certificate=sol.certificate)
    # information criteria of the last solution (definitions: Chen & Chen 2008 EBIC, Fan & Tang 2013 GIC)
    n, df, G = ref.n, int(np.count_nonzero(sol.coef)), t
    dev = n * np.log(2 * sol.objective)
    lgC = np.log(float(np.prod(np.arange(G - k + 1, G + 1)) / np.prod(np.arange(1, k + 1))))
    want = dict(bic=dev + df * np.log(n), ebic=dev + df * np.log(n) + 2 * 0.5 * lgC,
                gic=dev + df * np.log(np.log(n)) * np.log(ref.p))
    for crit, v in want.items():
        got = information_criterion(sol, loss, crit)
        slacks.append(1e-9 * max(1.0, abs(v)) - abs(got - v))
    info["criteria"] = want
    info["opt"] = opt
    return Outcome(min(slacks), info)


register(Claim(
    name="selection_steps.swap",
    title="local_search ends at a 1-swap optimum; objectives are exact refits; exact = enumeration",
    source=SOURCE, mark="D✓",
    statement="select('local_search') admits no improving single swap; every method's objective is the refit "
              "value of its support (k groups) and its 'kkt' certificate the largest gradient norm there; "
              "select('exact') attains the best k-group value; BIC / EBIC / GIC follow their definitions",
    assumptions="as selection_steps.greedy (no tie filter needed)",
    strategy=_strat, check=_swap,
    controls=[Control("objective off by 1e-6", "a reported objective 1e-6 away from the refit must be flagged",
                      _strat, lambda p: _swap(p, perturb=True), budget=5)],
    under_test="groupsparse.select(method='local_search'|'splicing'|'exact'|'iht'|'omp'), refit, swap_polish, "
               "BudgetProblem.stationarity, groupsparse.selection.information_criterion",
    cost=0.5,
))


def ref_splice(ref, k, S, val, exchange=5, max_iter=100, tol=1e-12):
    """REFERENCE abess splicing (Zhu et al. 2020): swap the C selected groups of smallest backward sacrifice
    1/2 b_g^T Phi_g b_g for the C unselected groups of largest forward sacrifice 1/2 d_g^T Phi_g^{-1} d_g, refit,
    keep if the loss drops, else halve C."""
    S = sorted(S)
    cmax = max(0, min(exchange, len(S), ref.groups.n_groups - len(S)))
    for _ in range(max_iter):
        if cmax == 0:
            break
        b = ref.refit(S)[0]
        bwd = np.array([0.5 * b[idx] @ (ref.X[:, idx].T @ ref.X[:, idx] / ref.n + ref.ridge * np.eye(idx.size))
                        @ b[idx] for idx in ref.groups.indices])
        fwd = ref.forward(ref.grad(b))
        out = [g for g in range(ref.groups.n_groups) if g not in S]
        for arr, ids in ((bwd, S), (fwd, out)):  # near-ties make the exchange ambiguous
            v = np.sort(arr[ids])
            assume(v.size < 2 or np.min(np.diff(v)) > 1e-6 * max(abs(v[-1]), 1e-300))
        order_in = [S[i] for i in np.argsort(bwd[S], kind="stable")]
        order_out = [out[i] for i in np.argsort(-fwd[out], kind="stable")]
        C, improved = cmax, False
        while C >= 1:
            S2 = sorted(set(S) - set(order_in[:C]) | set(order_out[:C]))
            v2 = ref.refit(S2)[1]
            if v2 < val - tol * max(1.0, abs(val)):
                S, val, improved = S2, v2, True
                break
            C //= 2
        if not improved:
            break
    return S, val


def _splice(params, worst=False):
    rng, ref, loss, groups, k = build(params)
    scale = max(1.0, ref.value(np.zeros(ref.p)))
    fwd0 = ref.forward(ref.grad(np.zeros(ref.p)))
    S0 = sorted(int(i) for i in np.argsort(-fwd0 if not worst else fwd0, kind="stable")[:k])  # abess's start
    srt = np.sort(fwd0)[::-1]
    assume(srt[k - 1] - srt[k] > 1e-6 * max(srt[0], 1e-300))
    S_ref, v_ref = ref_splice(ref, k, S0, ref.refit(S0)[1])
    sol = gs.select(loss, groups, k, method="splicing")
    same = sol.support.tolist() == S_ref
    slack = (1e-9 - abs(sol.objective - v_ref) / scale) if same else -1.0
    # backward pruning of a relaxed IHT support (iht relax > 1): drop the cheapest half of the excess, refit, repeat
    from groupsparse.selection.iht import prune_to
    kk = min(groups.n_groups, 2 * k + 1)
    Sbig = np.sort(rng.choice(groups.n_groups, size=kk, replace=False))
    # backward sacrifices are defined by the refit, which is unique only with fewer columns than samples (past that
    # the library's min-norm refit and the reference's solve legitimately differ)
    assume(sum(len(groups.indices[g]) for g in Sbig) < ref.n)
    bp = BudgetProblem(loss, groups)
    W, _ = bp.refit(Sbig)
    S_lib = prune_to(bp, k, Sbig, W).tolist()
    Sp = [int(g) for g in Sbig]
    while len(Sp) > k:
        b = ref.refit(Sp)[0]
        bwd = np.array([0.5 * b[idx] @ (ref.X[:, idx].T @ ref.X[:, idx] / ref.n + ref.ridge * np.eye(idx.size))
                        @ b[idx] for idx in ref.groups.indices])[Sp]
        v = np.sort(bwd)
        assume(np.min(np.diff(v)) > 1e-6 * max(v[-1], 1e-300) if v.size > 1 else True)
        excess = len(Sp) - k
        drop_n = max(1, excess // 2) if excess > 2 else excess
        Sp = sorted(Sp[i] for i in np.argsort(bwd, kind="stable")[drop_n:])
    if S_lib != Sp:
        slack = min(slack, -1.0)
    return Outcome(slack, dict(lib=sol.support.tolist(), ref=S_ref, lib_value=sol.objective, ref_value=v_ref,
                               prune_lib=S_lib, prune_ref=Sp))


register(Claim(
    name="selection_steps.splice",
    title="select('splicing') = reference abess splicing; IHT's backward pruning = reference",
    source="Zhu, Wen, Zhang, Wang & Wang, PNAS 2020 (abess splicing); theory_checks.md 2.1",
    mark="D✓ (definitions)",
    statement="from the k largest forward sacrifices, splicing exchanges the C smallest backward sacrifices for the C "
              "largest forward ones (C halved on failure) while the loss drops; prune_to drops the smallest "
              "backward sacrifices (half the excess per round) with a refit between rounds",
    assumptions="as selection_steps.greedy; no near-ties (1e-6) among the sacrifices",
    strategy=_strat, check=_splice,
    controls=[Control("start from the weakest groups", "a reference started from the k smallest forward sacrifices "
                      "must end elsewhere somewhere", _strat, lambda p: _splice(p, worst=True), budget=60)],
    under_test="groupsparse.select(method='splicing'): abess_init, splice, BudgetProblem.backward / forward; "
               "groupsparse.selection.iht.prune_to",
    cost=0.3,
))


def _J(ref, beta, logits, fixed, active, lam):
    """Sequential Attention's objective J = L(a(l) o beta) + lam/2 (||beta||^2 + ||l||^2) (L with its ridge), a = 1 on ``fixed``,
    m softmax(l) over the m ``active`` groups, 0 elsewhere (SA++ App. C.1; Yasuda et al. 2023)."""
    a = np.where(fixed, 1.0, 0.0)
    if active.any():
        z = logits[active] - logits[active].max()
        a[active] = active.sum() * np.exp(z) / np.exp(z).sum()
    u = ref.groups.expand(a) * beta
    return ref.value(u) + 0.5 * lam * (beta @ beta + logits @ logits)  # ref.value: the loss with its ridge


def ref_train(ref, beta, logits, fixed, active, steps, lam, lr, L, fd=False):
    """REFERENCE attention training: beta <- beta - dJ/dbeta / (L max(a)^2 + lam), l <- l - lr g / max|g| with
    g = dJ/dl; gradients by central finite differences of J (``fd``) or by the chain rule."""
    for _ in range(steps):
        a = np.where(fixed, 1.0, 0.0)
        if active.any():
            z = logits[active] - logits[active].max()
            p = np.exp(z) / np.exp(z).sum()
            a[active] = active.sum() * p
        A = ref.groups.expand(a)
        if fd:
            h = 1e-6
            e = np.eye(beta.size)
            gb = np.array([(_J(ref, beta + h * e[i], logits, fixed, active, lam)
                            - _J(ref, beta - h * e[i], logits, fixed, active, lam)) / (2 * h) for i in range(beta.size)])
            el = np.eye(logits.size)
            gl = np.array([(_J(ref, beta, logits + h * el[i], fixed, active, lam)
                            - _J(ref, beta, logits - h * el[i], fixed, active, lam)) / (2 * h)
                           for i in range(logits.size)])
        else:
            G = ref.grad(A * beta)
            gb = A * G + lam * beta
            s = np.array([beta[idx] @ G[idx] for idx in ref.groups.indices])
            gl = lam * logits
            if active.any():
                m = active.sum()
                gl[active] += m * p * (s[active] - p @ s[active])
        beta = beta - gb / (L * max(float(a.max()), 1.0) ** 2 + lam)
        gmax = float(np.abs(gl).max())
        if gmax > 0:
            logits = logits - lr * gl / gmax
    return beta, logits


def ref_sa(ref, k, L, steps=15, lr=0.2, lam_ratio=0.02):
    """REFERENCE Sequential Attention: train (ref_train) from the refit with zero logits, add the unselected group of
    largest logit, refit; lam = lam_ratio * max_g ||grad_g L(0)||."""
    lam = lam_ratio * (float(np.max(ref.groups.norms(ref.grad(np.zeros(ref.p))))) + 1e-300)
    S = []
    b = np.zeros(ref.p)
    while len(S) < k:
        fixed = np.isin(np.arange(ref.groups.n_groups), S)
        _, lg = ref_train(ref, b.copy(), np.zeros(ref.groups.n_groups), fixed, ~fixed, steps, lam, lr, L)
        S.append(_argmax_untied(lg, S))
        b = ref.refit(S)[0]
    return sorted(S), ref.refit(S)[1]


def _attention(params, lr_scale=1.0):
    from groupsparse.selection.attention import _train
    rng, ref, loss, groups, k = build(params)
    bp = BudgetProblem(loss, groups)
    L = float(np.linalg.eigvalsh(ref.X.T @ ref.X / ref.n)[-1]) + ref.ridge
    G = groups.n_groups
    fixed = rng.random(G) < 0.3
    active = ~fixed & (rng.random(G) < 0.8)
    beta = rng.standard_normal(ref.p)
    logits = rng.standard_normal(G) * (rng.random(G) < 0.7)
    lam, lr = float(rng.uniform(0.01, 0.3)), float(rng.uniform(0.05, 0.5))
    slacks, info = [], {}
    # (i) one library step = one step along the finite-difference gradient of J (the objective it claims to descend)
    b1, l1 = _train(bp, beta.reshape(-1, 1), logits.copy(), fixed, active, 1, lam, lr * lr_scale, None)
    rb1, rl1 = ref_train(ref, beta, logits.copy(), fixed, active, 1, lam, lr, L, fd=True)
    e1 = max(float(np.linalg.norm(np.asarray(b1).ravel() - rb1)) / max(1.0, float(np.linalg.norm(rb1))),
             float(np.linalg.norm(l1 - rl1)) / max(1.0, float(np.linalg.norm(rl1))))
    slacks.append(1e-5 - e1)  # central differences with h = 1e-6: O(1e-8) error, amplified by the normalization
    # (ii) several steps = the chain-rule reference
    steps = int(rng.integers(2, 8))
    b2, l2 = _train(bp, beta.reshape(-1, 1), logits.copy(), fixed, active, steps, lam, lr * lr_scale, None)
    rb2, rl2 = ref_train(ref, beta, logits.copy(), fixed, active, steps, lam, lr, L)
    e2 = float(np.linalg.norm(np.asarray(b2).ravel() - rb2)) / max(1.0, float(np.linalg.norm(rb2)))
    slacks.append(1e-9 - e2)
    # (iii) select('sa') = reference Sequential Attention (no near-ties among the final logits)
    S_ref, v_ref = ref_sa(ref, k, L)
    sol = gs.select(loss, groups, k, method="sa")
    slacks.append(1.0 if sol.support.tolist() == S_ref else -1.0)
    info.update(one_step_err=e1, multi_step_err=e2, sa_lib=sol.support.tolist(), sa_ref=S_ref)
    # the safe IHT/attention step uses the global Lipschitz constant: by Lanczos above 64 columns, exact below
    for n_, p_ in ((30, 12), (90, 70)):
        Xl = rng.standard_normal((n_, p_))
        for lo in (gs.LeastSquares(Xl, rng.standard_normal(n_), ridge=ref.ridge),
                   gs.Logistic(Xl, (rng.random(n_) < 0.5).astype(float), ridge=ref.ridge)):
            exact = lo.curvature * float(np.linalg.eigvalsh(Xl.T @ Xl)[-1]) / n_ + ref.ridge
            got = BudgetProblem(lo, gs.Groups.from_sizes([1] * p_)).lipschitz
            slacks.append(min(got - exact * (1 - 1e-12), 1e-5 * exact - (got - exact)) / exact)
    return Outcome(min(slacks), info)


register(Claim(
    name="selection_steps.attention",
    title="Sequential Attention: library training steps = gradient steps on its objective J; select('sa') = reference",
    source="Yasuda et al., ICLR 2023 (Sequential Attention); SA++ App. C.1 (weight decay on logits)",
    mark="D✓ (definitions)",
    statement="each _train step moves beta by -dJ/dbeta / (L max(a)^2 + lam) and the logits by -lr g/max|g|, "
              "g = dJ/dl, J = L(a(l) o beta) + lam/2 (||beta||^2 + ||l||^2); select('sa') adds the largest logit; "
              "BudgetProblem.lipschitz = curvature lambda_max(X^T X)/n + ridge (Lanczos above 64 columns)",
    assumptions="as selection_steps.greedy; random masks (fixed / active / inactive groups), lam 0.01..0.3, lr "
                "0.05..0.5; finite differences h = 1e-6 for one step, chain rule for 2..7 steps; no near-ties",
    strategy=_strat, check=_attention,
    controls=[Control("logit step x 1.5", "a library step with a different logit step length must disagree",
                      _strat, lambda p: _attention(p, lr_scale=1.5), budget=30)],
    under_test="groupsparse.selection.attention._train, select(method='sa'), BudgetProblem.lipschitz "
               "(selection._base._glm_lipschitz)",
    cost=0.5,
))
