"""Helpers shared by the N:M benchmarks: banner and the read-modify-write of benchmarks/results/nm.json (one key per
benchmark, so the scripts can be re-run independently)."""
from __future__ import annotations

import json
import os
import sys

from benchmarks.common import machine_info, print_banner

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "nm.json")
PACKAGES = ("numpy", "scipy", "scikit-learn", "groupsparse", "torch", "transformers")


def banner() -> dict:
    info = machine_info(PACKAGES)
    import torch
    info["torch_threads"] = torch.get_num_threads()
    info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    print_banner(info)
    print("torch threads:", info["torch_threads"], "| cuda:", info["cuda"])
    return info


def update_results(key: str, payload: dict, path: str = RESULTS) -> None:
    data = json.load(open(path)) if os.path.exists(path) else {}
    payload = dict(payload, command="python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]))
    data[key] = payload
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=1, default=float)
    print(f"wrote {path} [{key}]")
