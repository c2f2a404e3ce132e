"""Dense vs pruned on evaluation data, by model kind: what a user of that kind of model looks at.

* ``'encoder'``    -- sentence-embedding cosine: mean pooling of ``last_hidden_state`` over the attention mask, L2
  normalized (what sentence-transformers does for MiniLM-style encoders), cosine per sample, mean and min;
* ``'causal_lm'``  -- perplexity of each model on the evaluation tokens (next-token NLL over the attention mask);
* ``'classifier'`` -- agreement of the predicted classes, and accuracy of both when labels are given;
* ``'module'``     -- output cosine: per sample, the cosine of the flattened outputs; and the relative error
  ||Y_d - Y_p|| / ||Y_d|| over all outputs (meaningful for one output value per sample too).

``summarize(model, batches, kind)`` reduces one model's outputs to what the comparison needs (so the dense model
need not be kept while pruning) and ``compare(dense, pruned, kind, labels)`` gives the metrics.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["KINDS", "summarize", "compare", "mean_pooled_embeddings"]

KINDS = ("encoder", "causal_lm", "classifier", "module")


def _call(model, batch, run, b):
    """The model on evaluation batch ``b`` (a failure is an error naming ``eval_batches[b]``)."""
    from .calibration import default_run, run_batch
    return run_batch(model, batch, run or default_run, b, "eval_batches")


def _main_tensor(out, attr):
    """The output tensor a metric reads: ``out.<attr>`` (HF outputs), else the first tensor of a tuple."""
    if torch.is_tensor(out):
        return out
    if hasattr(out, attr) and getattr(out, attr) is not None:
        return getattr(out, attr)
    if isinstance(out, dict):
        return out[attr] if attr in out else next(v for v in out.values() if torch.is_tensor(v))
    if isinstance(out, (tuple, list)):
        return next(v for v in out if torch.is_tensor(v))
    raise ValueError(f"model: cannot read a tensor output from {type(out).__name__}")


def _input_ids(batch):
    ids = batch.get("input_ids") if isinstance(batch, dict) else batch if torch.is_tensor(batch) else None
    if ids is None or ids.is_floating_point():
        raise ValueError("eval: a causal LM's perplexity needs token ids (a text file, or a tensor file of input_ids)")
    mask = batch.get("attention_mask") if isinstance(batch, dict) else None
    return ids, torch.ones_like(ids) if mask is None else mask


def mean_pooled_embeddings(hidden, mask):
    """sentence-transformers' mean pooling over the real tokens, L2 normalized: (batch, dim)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return F.normalize((hidden * m).sum(1) / m.sum(1).clamp_min(1e-9), dim=-1)


@torch.no_grad()
def summarize(model, batches, kind: str, run=None) -> dict:
    was_training = model.training
    model.eval()
    out = {"emb": [], "nll": 0.0, "tokens": 0, "logits": [], "flat": []}
    try:
        for i, b in enumerate(batches):
            o = _call(model, b, run, i)
            if kind == "encoder":
                mask = b["attention_mask"] if isinstance(b, dict) and "attention_mask" in b else None
                h = _main_tensor(o, "last_hidden_state")
                mask = torch.ones(h.shape[:2], device=h.device) if mask is None else mask
                out["emb"].append(mean_pooled_embeddings(h.float(), mask).cpu())
            elif kind == "causal_lm":
                ids, mask = _input_ids(b)
                logits = _main_tensor(o, "logits").float()
                nll = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                      reduction="none")
                keep = (mask[:, 1:] * mask[:, :-1]).reshape(-1).to(nll.dtype)
                out["nll"] += float((nll * keep).sum())
                out["tokens"] += int(keep.sum())
            elif kind == "classifier":
                out["logits"].append(_main_tensor(o, "logits").float().cpu())
            else:
                t = _main_tensor(o, "logits")
                out["flat"].append(t.float().reshape(t.shape[0], -1).cpu())
    finally:
        model.train(was_training)
    return out


def compare(dense: dict, pruned: dict, kind: str, labels=None) -> dict:
    if kind == "encoder":
        cos = (torch.cat(dense["emb"]) * torch.cat(pruned["emb"])).sum(-1)
        return {"metric": "embedding_cosine", "embedding_cosine": float(cos.mean()),
                "embedding_cosine_min": float(cos.min()), "n_samples": int(cos.numel())}
    if kind == "causal_lm":
        if not dense["tokens"]:
            raise ValueError("eval: no token pairs to score (every sample is shorter than 2 tokens)")
        pd, pp = (math.exp(s["nll"] / s["tokens"]) for s in (dense, pruned))
        return {"metric": "perplexity", "dense_perplexity": pd, "pruned_perplexity": pp,
                "perplexity_ratio": pp / pd, "n_tokens": dense["tokens"]}
    if kind == "classifier":
        ld, lp = torch.cat(dense["logits"]), torch.cat(pruned["logits"])
        res = {"metric": "agreement", "agreement": float((ld.argmax(-1) == lp.argmax(-1)).float().mean()),
               "logit_cosine": float(F.cosine_similarity(ld, lp, dim=-1).mean()), "n_samples": int(ld.shape[0])}
        if labels is not None:
            y = torch.as_tensor(labels).reshape(-1)
            res["dense_accuracy"] = float((ld.argmax(-1) == y).float().mean())
            res["pruned_accuracy"] = float((lp.argmax(-1) == y).float().mean())
        return res
    fd, fp = torch.cat(dense["flat"]), torch.cat(pruned["flat"])
    cos = F.cosine_similarity(fd, fp, dim=-1)
    # with one output value per sample (a regression head) the cosine is only its sign: the relative error says more
    rel = float((fd - fp).norm() / fd.norm().clamp_min(1e-30))
    return {"metric": "output_cosine", "output_cosine": float(cos.mean()), "output_cosine_min": float(cos.min()),
            "output_rel_error": rel, "n_samples": int(cos.numel())}
