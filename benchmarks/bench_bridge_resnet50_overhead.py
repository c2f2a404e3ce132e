"""ResNet-50 training-step overhead of SequentialAttention++ block masks against dense (issue 5, benchmark 6c).

torchvision ResNet-50 (random init), ImageNet-shaped synthetic batches (256 x 3 x 224 x 224, 1000 classes), bf16
autocast, channels-last, SGD with momentum; SA++ at 16 x 16 blocks on every conv / linear with >= 100 blocks
(nn_bridge.pruners.SAPPPruner with the ImageNet schedule; timed in a sparse phase, so masks, attention and clipping
are all active).  Dense and SA++ are timed in the same process, alternating, with CUDA events.

Needs CUDA and torchvision; otherwise it prints why and exits 0.  Usage:
    python benchmarks/bench_bridge_resnet50_overhead.py [--batch 256] [--steps 30] [--warmup 10] [--compile]
"""
from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--block", type=int, default=16)
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/bridge.json")
    a = ap.parse_args(argv)
    import torch
    if not torch.cuda.is_available():
        print("bench_bridge_resnet50_overhead: needs a CUDA GPU; none available -- not measured.")
        return 0
    try:
        import torchvision
    except Exception as e:  # noqa: BLE001 -- any import failure means: cannot run here
        print(f"bench_bridge_resnet50_overhead: needs torchvision ({e}); not measured.")
        return 0
    from nn_bridge.pruners import SAPPPruner

    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    x = torch.randn(a.batch, 3, 224, 224, device=dev).to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (a.batch,), device=dev)

    def build(sapp: bool):
        torch.manual_seed(0)
        m = torchvision.models.resnet50().to(dev).to(memory_format=torch.channels_last)
        pruner = None
        if sapp:
            total = 1000
            pruner = SAPPPruner(m, a.sparsity, a.block, total_steps=total, preset="imagenet")
            params = pruner.weight_parameters()
        else:
            params = m.parameters()
        opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=3e-5)
        if pruner is not None:
            pruner.bind(opt)
            while pruner.phase.kind != "sparse":  # move to a sparse phase: masks + attention + clipping active
                pruner.step()
        fwd = torch.compile(m) if a.compile else m
        return m, fwd, opt, pruner

    def step(fwd, opt, pruner):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(fwd(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if pruner is not None:
            pruner.step_count -= 1  # hold the schedule in place: time the sparse-phase step itself
            pruner.step()

    runs = {"dense": build(False), "sapp": build(True)}
    for name, (m, fwd, opt, pr) in runs.items():
        for _ in range(a.warmup):
            step(fwd, opt, pr)
    torch.cuda.synchronize()
    times = {k: [] for k in runs}
    for rep in range(a.steps):
        for name, (m, fwd, opt, pr) in runs.items():
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            step(fwd, opt, pr)
            e.record()
            torch.cuda.synchronize()
            times[name].append(s.elapsed_time(e))
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    n_layers = len(runs["sapp"][3].tilings)
    res = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
           "torchvision": torchvision.__version__, "batch": a.batch, "block": a.block, "sparsity": a.sparsity,
           "pruned_layers": n_layers, "dense_ms": med["dense"], "sapp_ms": med["sapp"],
           "overhead": med["sapp"] / med["dense"] - 1.0, "compile": a.compile}
    print(json.dumps(res, indent=1))
    if a.out:
        data = json.load(open(a.out)) if os.path.exists(a.out) else {}
        data["resnet50_overhead"] = res
        json.dump(data, open(a.out, "w"), indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
