"""Pairs stored as encoded image files and caption strings: the common part of the real sources.

A real source (CSV, webdataset shards, ArrayRecord, TFDS) only says how to `read` pair `i`: its
encoded image bytes, its caption and whether the corpus marks it as a backdoor pair. This module
turns a batch of indices into the pipeline's batch, decoding the images in a thread pool:

    decode      PIL, reduced while decoding where the format allows (JPEG draft mode), then
                the centre square resized to `image_size` (bicubic) in one pass: CLIP's and
                CleanCLIP's `Resize` (shorter side) + `CenterCrop`, up to sub-pixel rounding

Bad input never stops a run and never passes silently: a pair whose image cannot be read or
decoded (missing file, corrupt or truncated data) or whose caption is empty is left out of the
batch and counted under its reason in `batch['skipped']`; the pipeline refills the batch and
logs the counts.
"""

from __future__ import annotations

import abc
import concurrent.futures
import dataclasses
import io
import os
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

#: Why a pair was left out; `batch['skipped'][k]` counts reason `SKIP_REASONS[k]`.
SKIP_REASONS = ("bad_image", "empty_caption")


class BadImage(ValueError):
  """An image that cannot be read or decoded."""


@dataclasses.dataclass(frozen=True)
class Record:
  """One stored pair: encoded image bytes (None if they could not be read), caption, flag."""

  image: bytes | None
  caption: str
  is_backdoor: bool = False


def decode_image(data: bytes | None, size: int) -> np.ndarray:
  """RGB uint8 [size, size, 3]: the centre square, resized to `size` (bicubic).

  Raises `BadImage` for missing, corrupt or truncated data.
  """
  if not data:
    raise BadImage("no image data")
  try:
    with Image.open(io.BytesIO(data)) as img:
      if img.format == "JPEG":
        img.draft("RGB", (size, size))  # decode at the smallest scale >= size (fast)
      img = img.convert("RGB")
      w, h = img.size
      side = min(w, h)  # the centre square, resized in one pass (`box`): no pixel computed twice
      left, top = (w - side) / 2, (h - side) / 2
      if (w, h) != (size, size):
        box = (left, top, left + side, top + side)
        img = img.resize((size, size), Image.Resampling.BICUBIC, box=box)
      return np.asarray(img, np.uint8)
  except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
    raise BadImage(str(e)) from None


class EncodedPairs(abc.ABC):
  """A random-access pair source over encoded images; subclasses implement `__len__`, `read`.

  `batch(indices)` returns the pipeline's pair batch for the good pairs among `indices`
  (image uint8 [k, S, S, 3], caption, index, is_poisoned) and `skipped` (int64
  [len(SKIP_REASONS)]), the count of those left out by reason.
  """

  def __init__(self, image_size: int, threads: int = 0):
    self.image_size = int(image_size)
    self.threads = int(threads) or min(16, os.cpu_count() or 1)
    self._pool: concurrent.futures.ThreadPoolExecutor | None = None

  @abc.abstractmethod
  def __len__(self) -> int: ...

  @abc.abstractmethod
  def read(self, index: int) -> Record:
    """Pair `index` as stored; never raises for bad data (image None, caption '' instead)."""

  def captions(self, indices: np.ndarray) -> list[str]:
    """The captions of `indices` (sources that hold captions apart from images override this)."""
    return [self.read(int(i)).caption for i in indices]

  def decoded(self, index: int) -> tuple[np.ndarray | None, Record, int | None]:
    """(image or None, record, skip reason or None) of pair `index`."""
    record = self.read(int(index))
    if record.image is None:
      return None, record, SKIP_REASONS.index("bad_image")
    if not record.caption.strip():
      return None, record, SKIP_REASONS.index("empty_caption")
    try:
      return decode_image(record.image, self.image_size), record, None
    except BadImage:
      return None, record, SKIP_REASONS.index("bad_image")

  def __getitem__(self, index: int) -> dict[str, Any] | None:
    """Pair `index` as grain's random-access sources give it: {image, caption, index,
    is_poisoned}, or None for a pair that is left out (grain drops Nones)."""
    image, record, _ = self.decoded(index)
    if image is None:
      return None
    return {
      "image": image,
      "caption": record.caption,
      "index": int(index),
      "is_poisoned": record.is_backdoor,
    }

  def batch(self, indices: np.ndarray) -> dict[str, Any]:
    indices = np.asarray(indices, np.int64)
    results = list(self._executor().map(self.decoded, indices))
    keep = [i for i, (image, _, _) in enumerate(results) if image is not None]
    skipped = np.zeros(len(SKIP_REASONS), np.int64)
    for _, _, reason in results:
      if reason is not None:
        skipped[reason] += 1
    size = self.image_size
    images = [results[i][0] for i in keep]
    return {
      "image": np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8),
      "caption": [results[i][1].caption for i in keep],
      "index": indices[keep],
      "is_poisoned": np.array([results[i][1].is_backdoor for i in keep], bool),
      "skipped": skipped,
    }

  def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
    if self._pool is None:
      self._pool = concurrent.futures.ThreadPoolExecutor(self.threads)
    return self._pool

  def __getstate__(self) -> dict[str, Any]:  # picklable for grain's worker processes
    return {**self.__dict__, "_pool": None}
