"""Plumbing at scale (session 4): layers after the transformer layers, and groups of single weights.

(a) A random Llama (``transformers`` config, untied lm_head) pruned 2:4 with 'obs' through ``nn_bridge.oneshot_prune``:
    ``blocks="auto"`` (the block streams, lm_head as their tail) against ``blocks=None`` (the model prefix re-run for
    every layer), same process, same calibration batches; the weights must be identical.
(b) The single-weight groups of a (rows, cols) layer (N:M in the core): ``Groups.block_tiling(shape, 1)`` (CSR: a few
    flat arrays) against ``Groups.from_indices`` of the same tiles (one index array per group, as every ``Groups``
    was held before), time (untraced) and the peak memory each adds (tracemalloc, a second run), same process.

    OMP_NUM_THREADS=1 python benchmarks/bench_bridge_plumbing.py [--layers 8] [--shape 2048 2048]
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
import tracemalloc

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from benchmarks.common import machine_info, print_banner, write_json  # noqa: E402
from groupsparse import Groups  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "results", "bridge_plumbing.json")


def tail_case(n_layers):
    import transformers
    from nn_bridge.pruned import oneshot_prune
    cfg = transformers.LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=n_layers,
                                   num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                                   tie_word_embeddings=False)
    torch.manual_seed(0)
    dense = transformers.LlamaForCausalLM(cfg).eval()
    g = torch.Generator().manual_seed(1)
    batches = [{"input_ids": torch.randint(0, 512, (8, 64), generator=g)} for _ in range(4)]
    out, states = {}, {}
    for blocks in ("auto", None):
        m = copy.deepcopy(dense)
        t = time.perf_counter()
        res = oneshot_prune(m, batches, "2:4", method="obs", kind="causal_lm", blocks=blocks, progress=False)
        out[str(blocks)] = {"seconds": time.perf_counter() - t, "n_layers_pruned": len(res.layers),
                            "last_layer": res.layers[-1]["name"]}
        states[str(blocks)] = m.state_dict()
        print(f"(a) blocks={blocks!s:5}: {out[str(blocks)]['seconds']:.1f} s, {len(res.layers)} layers "
              f"(last {res.layers[-1]['name']})", flush=True)
    same = all(torch.equal(states["auto"][k], states["None"][k]) for k in states["None"])
    print(f"(a) identical weights: {same}; ratio {out['None']['seconds'] / out['auto']['seconds']:.2f}x", flush=True)
    return {"decoder_layers": n_layers, "tokens": 4 * 8 * 64, "runs": out, "identical_weights": same}


def _measure(fn):
    """(seconds, peak bytes) of ``fn()``: timed untraced, then run again under tracemalloc (which slows allocation
    several-fold) for the peak."""
    t = time.perf_counter()
    g = fn()
    el = time.perf_counter() - t
    del g
    tracemalloc.start()
    g = fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del g
    return el, peak


def groups_case(shape):
    rows, cols = shape
    t_csr, m_csr = _measure(lambda: Groups.block_tiling(shape, 1))
    lists = lambda: Groups.from_indices(list(np.arange(rows * cols).reshape(-1, 1)), rows * cols)  # noqa: E731
    t_per, m_per = _measure(lambda: lists().indices)  # the tuple of per-group arrays, as before
    print(f"(b) {rows}x{cols} single-weight groups: CSR {t_csr:.2f} s / {m_csr / 2**20:.0f} MiB; "
          f"one array per group {t_per:.2f} s / {m_per / 2**20:.0f} MiB", flush=True)
    return {"shape": [rows, cols], "n_groups": rows * cols, "csr_seconds": t_csr, "csr_peak_bytes": m_csr,
            "per_group_seconds": t_per, "per_group_peak_bytes": m_per}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--shape", type=int, nargs=2, default=[2048, 2048])
    a = ap.parse_args()
    info = machine_info(packages=("numpy", "torch", "transformers", "groupsparse"))
    info["torch_threads"] = torch.get_num_threads()
    print_banner(info)
    res = {"machine": info, "command": " ".join(sys.argv), "load_before": os.getloadavg()}
    res["tail"] = tail_case(a.layers)
    res["groups"] = groups_case(tuple(a.shape))
    res["load_after"] = os.getloadavg()
    write_json(OUT, res)


if __name__ == "__main__":
    main()
