"""Views of a pair source that defense stages train on: a subset, or per-pair weights.

- `Subset(source, indices)`: only the pairs `indices` of `source` (in that order), e.g. the
  defender's small clean set, or the pairs a select stage kept. Batches keep the original
  `index` of every pair.
- `Weighted(source, indices, weight)`: every pair of `source`, with `weight[i] = weight` for the
  pairs in `indices` and `+1` elsewhere, carried in the batch as `weight` (the `weighted`
  reduction of defenses/pieces/losses.py turns -1 into gradient ascent on those pairs).
- `first_pairs(n, count, seed)`: a seeded choice of `count` of `n` pairs, the same for every
  stage that names the same seed (the defender's clean set is one fixed set).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def first_pairs(n: int, count: int, seed: int) -> np.ndarray:
  """`count` distinct indices of `range(n)` drawn from `seed`, sorted."""
  if not 0 < count <= n:
    raise ValueError(f"Cannot choose {count} of {n} pairs: use 1..{n}.")
  return np.sort(np.random.default_rng(seed).permutation(n)[:count])


class Subset:
  """The pairs `indices` of `source`; position `i` is pair `indices[i]`."""

  def __init__(self, source: Any, indices: np.ndarray):
    self.source = source
    self.indices = np.asarray(indices, np.int64)
    if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= len(source)):
      raise ValueError(f"Subset indices must lie in 0..{len(source) - 1}.")

  def __len__(self) -> int:
    return len(self.indices)

  def batch(self, positions: np.ndarray) -> dict[str, Any]:
    return self.source.batch(self.indices[np.asarray(positions, np.int64)])


class Weighted:
  """Every pair of `source`, those in `indices` weighted `weight`, the others `+1`."""

  def __init__(self, source: Any, indices: np.ndarray, weight: float):
    self.source = source
    self.indices = np.asarray(indices, np.int64)
    self.weight = float(weight)

  def __len__(self) -> int:
    return len(self.source)

  def batch(self, indices: np.ndarray) -> dict[str, Any]:
    pairs = dict(self.source.batch(indices))
    chosen = np.isin(np.asarray(pairs["index"], np.int64), self.indices)
    pairs["weight"] = np.where(chosen, self.weight, 1.0).astype(np.float32)
    return pairs
