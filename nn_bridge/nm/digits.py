"""A small real-data testbed for N:M training on CPU: scikit-learn's digits (1797 8x8 images, bundled offline).

``DigitsCNN`` is a conv -> BN -> ReLU stack (MaxQ's layer structure) whose sparsifiable convs have 16, 32 and 32
input channels, so 2:4, 1:4 and 1:16 all apply; with the ``maxq`` preset the stem (1 input channel) and the
classifier stay dense.  ``train_run`` is one seeded run of dense / MaxQ / SR-STE / ASP-style training, used by the
benchmark and the CLI so both run the same protocol:

* dense, MaxQ, SR-STE: ``epochs`` epochs from scratch, SGD (momentum 0.9, nesterov), cosine lr, batch 64;
* MaxQ: incremental schedule over the first quarter of training (the authors' 30 of 120 epochs), linear;
* ASP-style: the dense run of the same seed, pruned one-shot, then fine-tuned for ``epochs`` more epochs with the
  same optimizer settings and lr schedule (ASP's recipe: same hyper-parameters and epochs as the dense run).
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

__all__ = ["load_digits_split", "DigitsCNN", "train_run", "train_epochs", "accuracy"]


def load_digits_split(n_test: int = 597, seed: int = 0):
    """(Xtr, ytr, Xte, yte) as float tensors (N, 1, 8, 8) scaled to [0, 1], a fixed stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    X = (d.images / 16.0).astype(np.float32)[:, None]
    Xtr, Xte, ytr, yte = train_test_split(X, d.target, test_size=n_test, random_state=seed, stratify=d.target)
    t = lambda a, dt: torch.as_tensor(a, dtype=dt)  # noqa: E731
    return t(Xtr, torch.float32), t(ytr, torch.long), t(Xte, torch.float32), t(yte, torch.long)


class DigitsCNN(nn.Module):
    def __init__(self, width: int = 32):
        super().__init__()
        w = width

        def block(cin, cout, stride=1):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

        self.stem = block(1, 16)
        self.body = nn.Sequential(block(16, w), block(w, w, 2), block(w, 2 * w))
        self.fc = nn.Linear(2 * w, 10)

    def forward(self, x):
        return self.fc(self.body(self.stem(x)).mean((2, 3)))


@torch.no_grad()
def accuracy(model, X, y) -> float:
    model.eval()
    acc = float((model(X).argmax(1) == y).float().mean())
    model.train()
    return acc


def train_epochs(model, Xtr, ytr, epochs, *, lr=0.05, batch=64, seed=0, pruner=None, wd=5e-5):
    """Plain SGD + cosine lr; ``pruner.step()`` after every optimizer step.  Returns seconds per step."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=wd)
    n = Xtr.shape[0]
    spe = (n + batch - 1) // batch
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * spe)
    if pruner is not None:
        pruner.bind(opt)
    model.train()
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(spe):
            idx = perm[i * batch:(i + 1) * batch]
            loss = F.cross_entropy(model(Xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if pruner is not None:
                pruner.step()
    return (time.perf_counter() - t0) / (epochs * spe)


def train_run(method: str, pattern: str | None, seed: int, epochs: int, data=None, dense_model=None,
              layers="maxq", maxq_kw=None):
    """One run; returns (model, result dict).  ``dense_model`` (ASP) is the trained dense model to prune."""
    import copy

    from ..pruners import make_pruner
    Xtr, ytr, Xte, yte = data if data is not None else load_digits_split()
    batch = 64
    spe = (Xtr.shape[0] + batch - 1) // batch
    torch.manual_seed(seed)
    res = {"method": method, "pattern": pattern, "seed": seed, "epochs": epochs}
    if method == "dense":
        model = DigitsCNN()
        res["sec_per_step"] = train_epochs(model, Xtr, ytr, epochs, seed=seed, batch=batch)
        res["test_acc"] = accuracy(model, Xte, yte)
        return model, res
    if method == "asp":
        if dense_model is None:
            dense_model, _ = train_run("dense", None, seed, epochs, (Xtr, ytr, Xte, yte))
        model = copy.deepcopy(dense_model)
        pr = make_pruner("asp", model, pattern=pattern, layers=layers)
        res["acc_after_prune"] = accuracy(model, Xte, yte)
    else:
        model = DigitsCNN()
        kw = {}
        if method == "maxq":
            kw = dict(steps_per_epoch=spe, start=0, end=max(epochs // 4, 1))
            kw.update(maxq_kw or {})
        pr = make_pruner(method, model, pattern=pattern, layers=layers, **kw)
    res["sec_per_step"] = train_epochs(model, Xtr, ytr, epochs, seed=seed, batch=batch, pruner=pr)
    if method == "maxq":
        res["mask_cache"] = pr.cache_stats()
    rep = pr.finalize()
    res["layers"] = list(pr.names)  # the pruned layers (the report reads them)
    res["exact_nm"] = rep["exact_nm"]
    res["weight_sparsity"] = rep["weight_sparsity"]
    res["test_acc"] = accuracy(model, Xte, yte)
    return model, res
