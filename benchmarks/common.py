"""Shared benchmark helpers: the machine/version banner and the AR(1) group designs of the issues."""
from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata

import numpy as np


def machine_info(packages=("numpy", "scipy", "groupsparse", "skglm", "celer", "abess", "cvxpy", "torch")) -> dict:
    info = {"python": sys.version.split()[0], "platform": platform.platform(), "machine": platform.machine(),
            "cpu_count": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    except OSError:
        info["cpu"] = platform.processor() or "?"
    for p in packages:
        try:
            info[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            info[p] = None
    return info


def print_banner(info: dict) -> None:
    print("machine:", info["cpu"], f"({info['cpu_count']} cores)", info["platform"])
    print("versions:", ", ".join(f"{k} {v}" for k, v in info.items()
                                 if k not in ("cpu", "cpu_count", "platform", "machine") and v))


def ar1_design(n, n_groups, group_size, rho, rng, order="F"):
    """X with AR(1) correlated columns: corr(X_i, X_j) = rho^|i-j|, unit variance."""
    p = n_groups * group_size
    X = np.empty((n, p), order=order)
    X[:, 0] = rng.standard_normal(n)
    c = np.sqrt(1 - rho * rho)
    for j in range(1, p):
        X[:, j] = rho * X[:, j - 1] + c * rng.standard_normal(n)
    return X


def planted(X, n_groups, group_size, k, snr, rng):
    """k active groups with N(0, 1) coefficients; Gaussian noise scaled to the requested SNR (var(Xb)/var(e))."""
    beta = np.zeros(n_groups * group_size)
    active = np.sort(rng.choice(n_groups, k, replace=False))
    for g in active:
        beta[g * group_size:(g + 1) * group_size] = rng.standard_normal(group_size)
    signal = X @ beta
    sigma = np.sqrt(np.var(signal) / snr)
    y = signal + sigma * rng.standard_normal(X.shape[0])
    return y, beta, active


def write_json(path, payload) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f, indent=1, default=float)
    print(f"wrote {path}")
