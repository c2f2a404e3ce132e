"""End to end at full scale: a randomly initialised OPT-1.3B-shaped decoder pruned one-shot at 16x16 50% on the CPU.

The model is built from ``transformers.OPTConfig`` (nothing is downloaded): hidden 2048, 24 decoder layers, FFN
8192, 32 heads, vocabulary 50272 (OPT-1.3B's shapes, 1.3 B parameters, 5.3 GB in float32), random weights
(``torch.manual_seed(0)``).  Calibration: ``--seqs`` sequences of ``--seq-len`` random token ids, fed as a one-shot
generator of batches of ``--batch`` sequences.  The one driver (``nn_bridge.oneshot.solve_layers``) prunes the
Linears of the first ``--prune-layers`` decoder layers (q, k, v, out_proj, fc1, fc2; the LM head is tied to the
embedding and stays dense) with ``--method`` (default ``seqobs``, the scalable sequential group OBS), streamed:
the decoder layers are replayed one at a time on cached layer inputs (``calibration.BlockStreams``), one dense copy
of the current layer at a time, never a copy of the model.  The run stops after the last pruned decoder layer.

Reported (``--out``, JSON, runs accumulate under "runs"): model size (parameter bytes), RSS after building the model, peak RSS of the process
(``getrusage`` ru_maxrss: everything, model included), wall time of the pruning split into forward passes / Gram
products / solves, per pruned decoder layer wall time, each layer's relative calibration error, and the
extrapolation to all 24 layers and to 128 x 512 tokens (``extrapolate``: solves do not depend on the token count;
forward passes and Gram products are linear in it).

Usage: nice -n 5 python -m benchmarks.bench_oneshot_opt [--seqs 128] [--seq-len 512] [--batch 8]
       [--prune-layers 24] [--layers 24] [--method seqobs] [--device cpu] [--threads 2] [--spill auto|on|off]
       [--rss-trace] [--out benchmarks/results/oneshot_opt.json]
(``--rss-trace``: each phase's own RSS peak under "rss_trace", ``PhaseTrace``; ``--spill``: the block-input streams
in a temporary directory, ``solve_layers(spill=)``, automatic above ``calibration.SPILL_BYTES``.)
Acceptance (issue 12): ``--seqs 128 --seq-len 512 --prune-layers 24``; peak RSS <= model size + 4 GB.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

OUT = "benchmarks/results/oneshot_opt.json"


def _rss_gb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2 ** 20
    return float("nan")


def _peak_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # KiB on Linux


class PhaseTrace:
    """Per-phase RSS high-water marks (``--rss-trace``): the kernel's VmHWM is reset (``/proc/self/clear_refs``,
    "5") when a phase starts and read when it ends, so each phase gets its own exact peak; the time between two
    traced phases (the driver's Bm product, damping, error, weight write) is recorded as "between". Phases: the
    first forward pass (block inputs), each Linear's Gram pass, each layer solve, the block replay (advance)."""

    def __init__(self):
        self.rows = []
        self.reset()

    @staticmethod
    def _status(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 2 ** 20
        return float("nan")

    def reset(self):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")

    def _close(self, label):
        self.rows.append({"phase": label, "peak_rss_gb": round(self._status("VmHWM"), 3),
                          "rss_after_gb": round(self._status("VmRSS"), 3)})
        self.reset()

    def wrap(self, owner, attr, label):
        fn = getattr(owner, attr)
        tr = self

        def wrapped(*args, **kw):
            tr._close("between")
            name = label(*args, **kw)
            try:
                return fn(*args, **kw)
            finally:
                tr._close(name)
        setattr(owner, attr, wrapped)

    def peak_gb(self):
        """The whole run's peak: resetting VmHWM resets getrusage's ru_maxrss too, so it is the phases' maximum."""
        return max([r["peak_rss_gb"] for r in self.rows] + [self._status("VmHWM")])

    def install(self):
        from nn_bridge import calibration, oneshot
        self.wrap(calibration.BlockStreams, "__init__", lambda *a, **k: "first forward (block inputs)")
        self.wrap(calibration.BlockStreams, "advance", lambda st: f"advance past {st.blocks[st.i]}")
        self.wrap(calibration.Grams, "__call__", lambda g, st, layer, *a, **k: f"gram {layer.name}")
        self.wrap(oneshot, "_solve_block", lambda H, Hd, Bp, Mdp, t, *a, **k: f"solve {t.name}")


def build(n_layers: int, hidden: int = 2048, ffn: int = 8192, heads: int = 32):
    import torch
    import transformers
    torch.manual_seed(0)
    cfg = transformers.OPTConfig(hidden_size=hidden, num_hidden_layers=n_layers, ffn_dim=ffn,
                                 num_attention_heads=heads, vocab_size=50272, max_position_embeddings=2048,
                                 word_embed_proj_dim=hidden, do_layer_norm_before=True)
    with torch.device("cpu"):
        model = transformers.OPTForCausalLM(cfg).eval()
    return model


def extrapolate(seconds, n_pruned, n_layers, tokens, target_tokens=128 * 512):
    """Total wall time for ``n_layers`` pruned decoder layers at ``target_tokens``: the measured solve time per
    layer, plus forward passes and Gram products per layer scaled linearly with the tokens."""
    k = target_tokens / tokens
    per = {key: seconds.get(key, 0.0) / n_pruned for key in ("forward", "gram", "solve")}
    return {"seconds_per_layer_now": sum(per.values()), "target_tokens": target_tokens,
            "seconds_per_layer_at_target": per["solve"] + k * (per["forward"] + per["gram"]),
            "seconds_total_at_target": n_layers * (per["solve"] + k * (per["forward"] + per["gram"]))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seqs", type=int, default=128)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8, help="sequences per calibration batch")
    ap.add_argument("--layers", type=int, default=24, help="decoder layers of the model built (OPT-1.3B: 24)")
    ap.add_argument("--prune-layers", type=int, default=None, help="prune the first N decoder layers (default all)")
    ap.add_argument("--hidden", type=int, default=2048, help="(a smaller model only to smoke-test the script)")
    ap.add_argument("--ffn", type=int, default=8192)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--method", default="seqobs")
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--refit-iters", type=int, default=None,
                    help="seqobs: CG iterations on the support (default: the bridge's SEQOBS_OPTIONS, 20; 0 = the "
                         "sweep alone)")
    ap.add_argument("--solver-dtype", default=None, choices=["float32", "float64"],
                    help="the seqobs solve's dtype (default float64, the bridge's; float32 halves its memory)")
    ap.add_argument("--device", default=None, help="where the layer solves run (the model stays on the CPU)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--spill", default="auto", choices=["auto", "on", "off"],
                    help="block inputs in a temporary directory (auto: above calibration.SPILL_BYTES)")
    ap.add_argument("--rss-trace", action="store_true",
                    help="record each phase's RSS high-water mark (first forward, Gram pass, solve, advance)")
    ap.add_argument("--out", default=OUT)
    a = ap.parse_args(argv)
    import torch

    from nn_bridge.oneshot import solve_layers
    if a.threads:
        torch.set_num_threads(a.threads)
    from nn_bridge.pruned import _run_no_cache
    n_prune = a.layers if a.prune_layers is None else min(a.prune_layers, a.layers)
    t0 = time.perf_counter()
    model = build(a.layers, a.hidden, a.ffn, a.heads)
    build_s = time.perf_counter() - t0
    size_gb = sum(q.numel() * q.element_size() for q in {id(q): q for q in model.parameters()}.values()) / 2 ** 30
    rss_model = _rss_gb()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 50272, (a.seqs, a.seq_len), generator=g)

    def batches():  # a one-shot iterator: the driver reads it once
        for i in range(0, a.seqs, a.batch):
            yield {"input_ids": ids[i:i + a.batch], "attention_mask": torch.ones_like(ids[i:i + a.batch])}

    blocks = [f"model.decoder.layers.{i}" for i in range(a.layers)]
    prefixes = tuple(f"model.decoder.layers.{i}." for i in range(n_prune))
    trace = PhaseTrace() if a.rss_trace else None
    if trace:
        trace.install()
    t0 = time.perf_counter()
    res = solve_layers(model, batches(), "16x16", a.sparsity, method=a.method, run=_run_no_cache, blocks=blocks,
                       include=lambda n: n.startswith(prefixes), device=a.device, progress=False,
                       spill={"auto": None, "on": True, "off": False}[a.spill],
                       solver_dtype=None if a.solver_dtype is None else getattr(torch, a.solver_dtype),
                       **({} if a.refit_iters is None else {"refit_iters": a.refit_iters}))
    wall = time.perf_counter() - t0
    peak = max(_peak_rss_gb(), trace.peak_gb()) if trace else _peak_rss_gb()
    per_block = {}
    for name, s in res.layer_seconds.items():
        b = name.split(".")[3]
        per_block[b] = per_block.get(b, 0.0) + s
    out = {"config": {"hidden": a.hidden, "layers": a.layers, "ffn": a.ffn, "heads": a.heads, "vocab": 50272,
                      "dtype": "float32", "pruned_layers": n_prune, "pattern": "16x16", "sparsity": a.sparsity,
                      "method": a.method, "refit_iters": a.refit_iters,
                      "solver_dtype": a.solver_dtype or "float64", "seqs": a.seqs, "seq_len": a.seq_len, "batch": a.batch,
                      "tokens": a.seqs * a.seq_len, "device": a.device or "cpu", "spill": a.spill},
           "command": "python -m benchmarks.bench_oneshot_opt " + " ".join(sys.argv[1:] if argv is None else argv),
           "model_gb": round(size_gb, 3), "rss_after_build_gb": round(rss_model, 3), "build_seconds": round(build_s, 1),
           "peak_rss_gb": round(peak, 3), "peak_over_model_gb": round(peak - size_gb, 3),
           "peak_over_model_GB_1e9": round((peak - size_gb) * 2 ** 30 / 1e9, 3),
           "prune_seconds": round(wall, 1), "seconds": {k: round(v, 1) for k, v in res.seconds.items()},
           "seconds_per_decoder_layer": {k: round(v, 1) for k, v in per_block.items()},
           "layer_method": sorted(set(res.layer_method.values())),
           "layer_rel_error": {k: round(v, 5) for k, v in res.layer_rel_error.items()},
           "load_avg": os.getloadavg(), "threads": torch.get_num_threads()}
    if trace:
        out["rss_trace"] = trace.rows
    out["extrapolation"] = extrapolate(res.seconds, n_prune, 24, a.seqs * a.seq_len)
    print(json.dumps({k: v for k, v in out.items() if k != "layer_rel_error"}, indent=1))
    if a.out:  # runs accumulate: {"runs": [...]}
        os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
        runs = []
        if os.path.exists(a.out):
            with open(a.out) as f:
                old = json.load(f)
            runs = old.get("runs", [old])
        with open(a.out, "w") as f:
            json.dump({"runs": runs + [out]}, f, indent=1)
    return out


if __name__ == "__main__":
    main()
