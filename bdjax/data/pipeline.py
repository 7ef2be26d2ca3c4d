"""The input pipeline: batches (image, tokens, index, is_poisoned, weight) as a grain
`IterDataset` whose iterator state is saved with every checkpoint.

    indices   grain.MapDataset: a seeded permutation of the source per epoch (`shuffle` then
              `repeat`, which reshuffles each epoch), cut into global batches; element `t` is
              this process's rows of global batch `t` (rows [p * B/P, (p + 1) * B/P) of
              process p of P), so every host reads a disjoint part and together they read the
              global batch a single process would
    load      `source.batch(indices)`: images decoded (and poisoned, for a `PoisonedPairs`
              source) and captions tokenised; for SSL objectives also `view_tokens`, an
              augmented caption drawn from a generator seeded by (seed, t) (policy
              `text_views`), and with `flip` a random half of the images mirrored. The image
              views are drawn on the device.
    prefetch  `data.threads` batches loaded ahead in threads; with `data.workers > 0`, grain
              worker processes load them (output order unchanged)
    refill    a real source leaves out pairs it cannot use (bad image, empty caption) and
              counts them: `Refill` tops the batch up from the next ones, so every batch has
              B/P rows, and keeps the counts, per batch and in total, in its state

`is_poisoned` is the source's flag (a `bdjax.attacks.poison.PoisonedPairs` sets it), False for
a clean source; `weight` is the per-pair loss weight a `bdjax.data.subsets.Weighted` source
sets, 1 otherwise. Captions are tokenised by a tokenizer passed in by the caller (data never
imports models).

The embedded dataset never leaves a pair out, so there the batch of step `t` is a pure
function of (source, seed, batch size, t); in general the iterator state (`get_state`, saved
in each checkpoint by `bdjax.checkpoint`) is what lets a resumed run see exactly the data an
uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import grain
import numpy as np

from bdjax.data.augment import augment_caption
from bdjax.data.encoded import SKIP_REASONS

Tokenizer = Callable[[Sequence[str]], np.ndarray]


class PairSource(Protocol):
  """A random-access source of image-caption pairs with a vectorised `batch(indices)`."""

  def __len__(self) -> int: ...

  def batch(self, indices: np.ndarray) -> dict[str, Any]: ...


def batches(
  source: PairSource,
  batch_size: int,
  seed: int,
  tokenizer: Tokenizer,
  with_views: bool = False,
  *,
  process_index: int = 0,
  process_count: int = 1,
  threads: int = 2,
  workers: int = 0,
  text_views: str = "delete_swap",
  flip: bool = False,
) -> grain.IterDataset:
  """An endless `IterDataset` of this process's share (`batch_size / process_count` rows) of
  each global batch; `iter(...)` gives an iterator with `get_state` / `set_state`."""
  if len(source) < batch_size:
    raise ValueError(
      f"The dataset has {len(source)} examples, fewer than one batch of "
      f"{batch_size}: lower train.batch_size or use more data."
    )
  if batch_size % process_count:
    raise ValueError(f"The batch size {batch_size} does not split over {process_count} processes.")
  local = batch_size // process_count
  first = process_index * local
  indices = (
    grain.MapDataset.range(len(source))
    .shuffle(seed=seed)
    .repeat()
    .batch(batch_size, drop_remainder=True)
    .map(lambda idx: np.asarray(idx)[first : first + local])
  )
  load = lambda idx, rng: _load(source, idx, tokenizer, rng, with_views and text_views, flip)
  loaded = indices.random_map(load, seed=seed).to_iter_dataset(
    grain.ReadOptions(num_threads=max(1, threads), prefetch_buffer_size=max(1, threads))
  )
  if workers:
    loaded = loaded.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
  return Refill(loaded, local)


def _load(
  source: PairSource,
  indices: np.ndarray,
  tokenizer: Tokenizer,
  rng: np.random.Generator,
  text_views: str | bool,
  flip: bool,
) -> dict[str, np.ndarray]:
  pairs = source.batch(indices)
  n = len(pairs["index"])
  batch = {
    "image": pairs["image"],
    "tokens": tokenizer(list(pairs["caption"])),
    "index": np.asarray(pairs["index"], np.int64),
    "is_poisoned": np.asarray(pairs.get("is_poisoned", np.zeros(n, bool)), bool),
    "weight": np.asarray(pairs.get("weight", np.ones(n)), np.float32),
    "skipped": np.asarray(pairs.get("skipped", np.zeros(len(SKIP_REASONS))), np.int64),
  }
  if text_views:
    views = [augment_caption(c, rng, text_views) for c in pairs["caption"]]
    batch["view_tokens"] = tokenizer(views)
  if flip:  # drawn after the caption views, which stay as they are without flips
    rows = np.flatnonzero(rng.random(n) < 0.5)
    batch["image"] = np.array(batch["image"])
    batch["image"][rows] = batch["image"][rows, :, ::-1]
  return batch


_MAX_EMPTY = 100  # loaded batches in a row without a usable pair before giving up


class Refill(grain.IterDataset):
  """Batches of exactly `size` rows from loaded batches that may have fewer (pairs left out).

  Each output carries `skipped` (int64 [len(SKIP_REASONS)]): the pairs left out while loading
  the batches it was assembled from.
  """

  def __init__(self, parent: grain.IterDataset, size: int):
    super().__init__(parent)
    self.size = size

  def __iter__(self) -> RefillIterator:
    return RefillIterator(self._parent.__iter__(), self.size)


class RefillIterator(grain.DatasetIterator):
  """State: the parent's state before the batch being drawn from, the rows of that batch
  already used, and the running total of pairs left out (`skipped_total`)."""

  def __init__(self, parent: grain.DatasetIterator, size: int):
    super().__init__(parent)
    self.size = size
    self._current: dict[str, np.ndarray] | None = None
    self._current_state = parent.get_state()
    self._used = 0
    self._total = np.zeros(len(SKIP_REASONS), np.int64)

  def __next__(self) -> dict[str, np.ndarray]:
    parts, need = [], self.size
    skipped = np.zeros(len(SKIP_REASONS), np.int64)
    empty = 0
    while need:
      if self._current is None or self._used == len(self._current["index"]):
        self._current_state = self._parent.get_state()
        self._current, self._used = next(self._parent), 0
        skipped += self._current["skipped"]
        empty = 0 if len(self._current["index"]) else empty + 1
        if empty == _MAX_EMPTY:
          raise RuntimeError(
            f"{_MAX_EMPTY} batches in a row had no usable pair (left out: "
            f"{dict(zip(SKIP_REASONS, (self._total + skipped).tolist()))}): check the data."
          )
      take = min(need, len(self._current["index"]) - self._used)
      parts.append(_rows(self._current, self._used, self._used + take))
      self._used += take
      need -= take
    self._total += skipped
    batch = (
      parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    )
    return {**batch, "skipped": skipped}

  def get_state(self) -> dict[str, Any]:
    used_up = self._current is None or self._used == len(self._current["index"])
    return {
      "parent": self._parent.get_state() if used_up else self._current_state,
      "used": 0 if used_up else self._used,
      "skipped_total": [int(x) for x in self._total],
    }

  def set_state(self, state: dict[str, Any]) -> None:
    self._parent.set_state(state["parent"])
    self._current_state = state["parent"]
    self._total = np.asarray(state["skipped_total"], np.int64)
    self._current, self._used = None, 0
    if state["used"]:  # the partly used batch again, without counting its pairs twice
      self._current, self._used = next(self._parent), state["used"]

  @property
  def skipped_total(self) -> dict[str, int]:
    """Pairs left out so far (this process), by reason."""
    return dict(zip(SKIP_REASONS, (int(x) for x in self._total)))


def state_at(step: int) -> dict[str, Any]:
  """The iterator state before step `step` of a pipeline that never left a pair out and has no
  worker processes: for checkpoints saved without their data state (older bdjax)."""
  return {"parent": {"next_index": step}, "used": 0, "skipped_total": [0] * len(SKIP_REASONS)}


def _rows(batch: dict[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
  if start == 0 and stop == len(batch["index"]):
    return {k: v for k, v in batch.items() if k != "skipped"}
  return {k: v[start:stop] for k, v in batch.items() if k != "skipped"}
