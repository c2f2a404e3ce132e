"""Calibration and evaluation data from files: the three formats ``python -m nn_bridge oneshot`` reads.

* ``text``    -- a ``.txt`` file, one sample a line (blank lines skipped), tokenized with the model's tokenizer
  (padding to the longest line of a batch, truncation at ``max_length``): dict batches ``input_ids`` /
  ``attention_mask``; the attention mask also says which token rows calibrate (padding does not);
* ``tensors`` -- a ``.pt``/``.pth`` file (``torch.save``, read with ``weights_only=True``) holding a tensor, a
  tuple/list of tensors (positional inputs) or a dict of tensors (keyword inputs, e.g. ``input_ids``); or an
  ``.npz`` file (one array = the input, several = keyword inputs).  Split into batches along dimension 0.  A
  ``labels`` entry is not fed to the model; it gives the classifier accuracy in the report;
* ``images``  -- a folder of image files read with PIL, converted to RGB, resized to ``image_size`` x
  ``image_size`` when given (else all must share one size), scaled to [0, 1] and normalized with the ImageNet
  mean / std (what torchvision's pretrained models expect), as float32 NCHW batches.  No torchvision needed.

``data_kind(path, option)`` checks the file cheaply (exists, known format, not empty) so that a CLI fails before
any work; ``load_data`` reads it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Data", "data_kind", "load_data", "TEXT_EXTS", "TENSOR_EXTS", "IMAGE_EXTS", "IMAGENET_MEAN",
           "IMAGENET_STD"]

TEXT_EXTS = (".txt",)
TENSOR_EXTS = (".pt", ".pth", ".npz")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Data:
    kind: str                # 'text' | 'tensors' | 'images'
    batches: list
    row_masks: list | None   # per batch, bool (batch, seq) of the real tokens (text / attention_mask given)
    labels: torch.Tensor | None
    n_samples: int


def _lines(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return [ln.strip() for ln in f if ln.strip()]


def _images(folder):
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if f.lower().endswith(IMAGE_EXTS) and os.path.isfile(os.path.join(folder, f)))


def data_kind(path, option: str) -> str:
    """'text', 'tensors' or 'images' for ``path``; a ValueError naming ``option`` if it is missing, of an unknown
    format or empty."""
    path = os.fspath(path)
    if os.path.isdir(path):
        if not _images(path):
            raise ValueError(f"{option}: the folder {path!r} holds no image file ({', '.join(IMAGE_EXTS)})")
        return "images"
    if not os.path.isfile(path):
        raise ValueError(f"{option}: no such file or folder: {path!r}")
    low = path.lower()
    if low.endswith(TEXT_EXTS):
        if not _lines(path):
            raise ValueError(f"{option}: {path!r} is empty (no non-blank line to use as a sample)")
        return "text"
    if low.endswith(TENSOR_EXTS):
        if os.path.getsize(path) == 0:
            raise ValueError(f"{option}: {path!r} is empty")
        return "tensors"
    raise ValueError(f"{option}: {path!r} is of an unknown format; expected a text file ({', '.join(TEXT_EXTS)}), "
                     f"a tensor file ({', '.join(TENSOR_EXTS)}) or a folder of images")


def _split(n, batch_size):
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def _load_tensors(path, option):
    if path.lower().endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as z:
                arrs = {k: z[k] for k in z.files}
        except (ValueError, OSError, EOFError) as e:
            raise ValueError(f"{option}: {path!r} is not a readable .npz file ({e})") from None
        if not arrs:
            raise ValueError(f"{option}: {path!r} holds no array")
        ts = {k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in arrs.items()}
        ts = {k: t.to(torch.get_default_dtype()) if t.is_floating_point() else t for k, t in ts.items()}
        return next(iter(ts.values())) if len(ts) == 1 else ts
    from ._cli_common import load_torch_file
    return load_torch_file(path, option)


def load_data(path, option: str, *, tokenizer=None, max_length: int = 128, batch_size: int = 16,
              image_size: int | None = None) -> Data:
    """Read ``path`` (see the module docstring) into batches of ``batch_size`` samples."""
    kind = data_kind(path, option)
    path = os.fspath(path)
    if kind == "text":
        if tokenizer is None:
            raise ValueError(f"{option}: a text file needs the model's tokenizer and this model has none; give "
                             f"token ids as a .pt/.npz tensor file instead")
        lines = _lines(path)
        batches = []
        for sl in _split(len(lines), batch_size):
            enc = tokenizer(lines[sl], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            batches.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
        return Data(kind, batches, [b["attention_mask"].bool() for b in batches], None, len(lines))
    if kind == "images":
        return _load_images(path, option, batch_size, image_size)
    obj = _load_tensors(path, option)
    labels = None
    if isinstance(obj, dict):
        obj = dict(obj)
        labels = obj.pop("labels", None)
        items = list(obj.values())
    elif isinstance(obj, (tuple, list)):
        items = list(obj)
    else:
        items = [obj]
    if not items or not all(torch.is_tensor(t) and t.dim() >= 1 for t in items):
        raise ValueError(f"{option}: {path!r} must hold a tensor, a tuple/list or a dict of tensors (dimension 0 = "
                         f"samples), got {type(obj).__name__}")
    n = items[0].shape[0]
    if n == 0 or any(t.shape[0] != n for t in items) or (labels is not None and len(labels) != n):
        raise ValueError(f"{option}: {path!r}: every tensor needs the same number (> 0) of samples along "
                         f"dimension 0, got {[tuple(t.shape) for t in items]}")
    sls = _split(n, batch_size)
    if isinstance(obj, dict):
        batches = [{k: v[sl] for k, v in obj.items()} for sl in sls]
        masks = [b["attention_mask"].bool() for b in batches] if "attention_mask" in obj else None
    elif isinstance(obj, (tuple, list)):
        batches, masks = [tuple(t[sl] for t in items) for sl in sls], None
    else:
        batches, masks = [obj[sl] for sl in sls], None
    return Data(kind, batches, masks, None if labels is None else torch.as_tensor(labels), n)


def _load_images(folder, option, batch_size, image_size):
    from PIL import Image
    files = _images(folder)
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)[:, None, None]
    std = np.asarray(IMAGENET_STD, dtype=np.float32)[:, None, None]
    arrs, first = [], None
    for f in files:
        try:
            with Image.open(f) as im:
                im = im.convert("RGB")
                if image_size:
                    im = im.resize((image_size, image_size), Image.BILINEAR)
                a = np.asarray(im, dtype=np.float32) / 255.0
        except OSError as e:
            raise ValueError(f"{option}: cannot read the image {f!r} ({e})") from None
        first = a.shape if first is None else first
        if a.shape != first:
            raise ValueError(f"{option}: images of different sizes ({os.path.basename(files[0])} is "
                             f"{first[1]}x{first[0]}, {os.path.basename(f)} is {a.shape[1]}x{a.shape[0]}); pass "
                             f"--image-size to resize them all")
        arrs.append((a.transpose(2, 0, 1) - mean) / std)
    x = torch.from_numpy(np.stack(arrs))
    return Data("images", [x[sl] for sl in _split(len(x), batch_size)], None, None, len(x))
