"""The input pipeline: global batches (image, tokens, index, is_poisoned, weight) as a grain
`MapDataset`.

The batch of step `t` is `batches(...)[t]`: a pure function of (source, seed, batch size, t).
Each epoch is a fresh seeded permutation of the source (grain's `shuffle` followed by `repeat`
reshuffles per epoch), so a run resumed at step `t` sees exactly the batches an uninterrupted
run would, with no iterator state to save.

`is_poisoned` is the source's flag (a `bdjax.attacks.poison.PoisonedPairs` sets it), False for
a clean source; `weight` is the per-pair loss weight a `bdjax.data.subsets.Weighted` source
sets, 1 otherwise. Captions are tokenised here by a tokenizer passed in by the caller (data never
imports models). For SSL objectives every batch also carries `view_tokens`, the tokens of an
augmented caption drawn from a generator seeded by (seed, t); the image views are drawn on the
device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import grain
import numpy as np

from bdjax.data.augment import augment_caption

Tokenizer = Callable[[Sequence[str]], np.ndarray]


class PairSource(Protocol):
  """A random-access source of image-caption pairs with a vectorised `batch(indices)`."""

  def __len__(self) -> int: ...

  def batch(self, indices: np.ndarray) -> dict[str, Any]: ...


def batches(
  source: PairSource, batch_size: int, seed: int, tokenizer: Tokenizer, with_views: bool = False
) -> grain.MapDataset:
  """An endless `MapDataset` whose element `t` is the global batch of training step `t`."""
  if len(source) < batch_size:
    raise ValueError(
      f"The dataset has {len(source)} examples, fewer than one batch of "
      f"{batch_size}: lower train.batch_size or use more data."
    )
  indices = (
    grain.MapDataset.range(len(source))
    .shuffle(seed=seed)
    .repeat()
    .batch(batch_size, drop_remainder=True)
  )
  load = lambda idx, rng: _load(source, np.asarray(idx), tokenizer, rng if with_views else None)
  return indices.random_map(load, seed=seed)


def _load(
  source: PairSource, indices: np.ndarray, tokenizer: Tokenizer, rng: np.random.Generator | None
) -> dict[str, np.ndarray]:
  pairs = source.batch(indices)
  batch = {
    "image": pairs["image"],
    "tokens": tokenizer(list(pairs["caption"])),
    "index": np.asarray(pairs["index"], np.int64),
    "is_poisoned": np.asarray(pairs.get("is_poisoned", np.zeros(len(indices), bool)), bool),
    "weight": np.asarray(pairs.get("weight", np.ones(len(indices))), np.float32),
  }
  if rng is not None:
    batch["view_tokens"] = tokenizer([augment_caption(c, rng) for c in pairs["caption"]])
  return batch
