"""Small models for tests, the CLI and the Criteo-shaped benchmark, and the synthetic click-data generator."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["MLP", "SmallCNN", "ClickModel", "ClickTeacher", "build_model", "MODEL_PRESETS"]


class MLP(nn.Module):
    """in -> hidden -> hidden -> out ReLU MLP (with 64-wide hidden layers and B = 8: 64 blocks per hidden layer)."""

    def __init__(self, d_in=64, hidden=128, d_out=10):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(d_in, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, d_out)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class SmallCNN(nn.Module):
    """Two 3x3 convs (16 -> 32 -> 32 channels) and a linear head, for conv tiling tests."""

    def __init__(self, c_in=16, width=32, n_out=10):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.head = nn.Linear(width, n_out)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.head(x.mean(dim=(2, 3)))


class ClickModel(nn.Module):
    """Criteo-shaped click model (SA++ paper, Criteo setup): 13 numeric + 26 categorical features, embedding width
    10 for each of the 39 features (numeric ones through a per-feature linear embedding), so a 390-wide input,
    three 400-wide ReLU layers and a logit output (sigmoid in the loss).  ``fc1`` (390 -> 400) is the layer pruned.
    """

    def __init__(self, n_num=13, n_cat=26, vocab=1000, emb=10, hidden=400):
        super().__init__()
        self.n_num, self.n_cat, self.emb = n_num, n_cat, emb
        self.num_emb = nn.Parameter(torch.randn(n_num, emb) * 0.1)
        self.cat_emb = nn.Embedding(n_cat * vocab, emb)
        nn.init.normal_(self.cat_emb.weight, std=0.1)
        self.register_buffer("cat_offset", torch.arange(n_cat) * vocab)
        d = (n_num + n_cat) * emb
        self.fc1, self.fc2, self.fc3 = nn.Linear(d, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, 1)

    def features(self, x_num, x_cat):
        e_num = x_num[:, :, None] * self.num_emb  # (n, 13, 10)
        e_cat = self.cat_emb(x_cat + self.cat_offset)  # (n, 26, 10)
        return torch.cat([e_num, e_cat], dim=1).flatten(1)

    def forward(self, x_num, x_cat):
        h = torch.relu(self.fc1(self.features(x_num, x_cat)))
        h = torch.relu(self.fc3(torch.relu(self.fc2(h))))
        return self.out(h).squeeze(-1)


class ClickTeacher:
    """A fixed random sparse teacher for Criteo-shaped data (documented generator; seedable, no downloads).

    * numeric features: x_num ~ N(0, 1), 13 columns; categorical: x_cat[j] ~ Zipf-like over ``vocab`` values
      (p(v) proportional to 1/(v+1)^1.1), 26 columns;
    * the teacher embeds each feature with its own random table (width 10, N(0,1)), giving the 390-wide input u;
    * a block-sparse first layer: W1 (390 x 64) has only ``n_active`` nonzero 10 x 16 blocks (random positions,
      N(0, 1/sqrt(fan-in)) entries), then ReLU and a random 64 -> 1 readout, plus a pairwise term between the first
      two active features; logit = that / its std * ``signal`` + bias chosen for a ~25% click rate;
    * y ~ Bernoulli(sigmoid(logit)).
    So the label depends on a sparse set of feature blocks: block pruning of the student's fc1 can, in principle,
    find them.
    """

    def __init__(self, seed=0, vocab=1000, n_active=12, signal=2.0, n_num=13, n_cat=26, emb=10):
        g = torch.Generator().manual_seed(seed)
        self.vocab, self.n_num, self.n_cat, self.emb = vocab, n_num, n_cat, emb
        self.num_tab = torch.randn(n_num, emb, generator=g)
        self.cat_tab = torch.randn(n_cat, vocab, emb, generator=g)
        d, h = (n_num + n_cat) * emb, 64
        self.w1 = torch.zeros(d, h)
        feats = torch.randperm(n_num + n_cat, generator=g)[:n_active]
        units = torch.randint(0, h // 16, (n_active,), generator=g)
        for f, u in zip(feats.tolist(), units.tolist()):
            self.w1[f * emb:(f + 1) * emb, u * 16:(u + 1) * 16] = torch.randn(emb, 16, generator=g) / emb ** 0.5
        self.active_features = sorted(feats.tolist())
        self.w2 = torch.randn(h, generator=g) / h ** 0.5
        self.pair = feats[:2].tolist()
        self.signal = signal
        p = 1.0 / (torch.arange(vocab, dtype=torch.float64) + 1.0) ** 1.1
        self.cat_p = (p / p.sum()).float()
        self._calib = None
        self._calib = self._logit_stats(g)

    def _embed(self, x_num, x_cat):
        e_num = x_num[:, :, None] * self.num_tab
        e_cat = self.cat_tab[torch.arange(self.n_cat), x_cat]  # (n, 26, 10)
        return torch.cat([e_num, e_cat], dim=1)

    def _raw_logit(self, x_num, x_cat):
        e = self._embed(x_num, x_cat)
        z = torch.relu(e.flatten(1) @ self.w1) @ self.w2
        a, b = self.pair
        return z + (e[:, a] * e[:, b]).sum(-1) / self.emb ** 0.5

    def _logit_stats(self, g):
        xn, xc = self.sample_x(20000, g)
        z = self._raw_logit(xn, xc)
        mu, sd = z.mean(), z.std()
        zs = (z - mu) / sd * self.signal
        lo, hi = -10.0, 10.0  # bias for a 25% positive rate
        for _ in range(50):
            mid = (lo + hi) / 2
            if torch.sigmoid(zs + mid).mean() > 0.25:
                hi = mid
            else:
                lo = mid
        return mu, sd, (lo + hi) / 2

    def sample_x(self, n, g):
        x_num = torch.randn(n, self.n_num, generator=g)
        x_cat = torch.multinomial(self.cat_p, n * self.n_cat, replacement=True, generator=g).reshape(n, self.n_cat)
        return x_num, x_cat

    def sample(self, n, seed):
        """``n`` rows (x_num float (n, 13), x_cat long (n, 26), y float (n,)) from the given seed."""
        g = torch.Generator().manual_seed(seed)
        xn, xc = self.sample_x(n, g)
        mu, sd, bias = self._calib
        p = torch.sigmoid((self._raw_logit(xn, xc) - mu) / sd * self.signal + bias)
        y = torch.bernoulli(p, generator=g)
        return xn, xc, y

    def bayes_logloss(self, x_num, x_cat, y) -> float:
        """Log loss of the teacher's own probabilities (the floor any student can reach)."""
        mu, sd, bias = self._calib
        z = (self._raw_logit(x_num, x_cat) - mu) / sd * self.signal + bias
        return float(nn.functional.binary_cross_entropy_with_logits(z, y))


MODEL_PRESETS = {
    "mlp": lambda: MLP(256, 256, 10),
    "cnn": lambda: SmallCNN(32, 64, 10),
    "criteo": lambda: ClickModel(),
}


def build_model(preset: str) -> nn.Module:
    if preset not in MODEL_PRESETS:
        raise ValueError(f"model: expected one of {sorted(MODEL_PRESETS)}, got {preset!r}")
    return MODEL_PRESETS[preset]()
