"""Select stages: score every training pair (or every token row), keep an index set.

    pair scores   'loss':        l_i = CLIP per-pair loss of pair i in a batch of random others
                  'similarity':  s_i = cos(image_i, text_i)
    row scores    'row_shift':   d_v = ||E[v] - E_ref[v]||_2 over the rows v of a token table
    keep          the `count` lowest or highest, ties broken by index; pairs a real source
                  left out (bad image, empty caption) score NaN and are never kept

Backdoored pairs are learned fastest and matched most confidently, so they sit at the low end of
the loss (ABL) and the high end of the similarity (UBT); a trigger token's row moves most when
only the token table is trained (BTU). `selection_stats` says how many of the kept pairs were
really poisoned (known in an experiment, never used by a defense).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bdjax import losses
from bdjax.data.augment import normalize

PAIR_SCORES = ("loss", "similarity")
ROW_SCORES = ("row_shift",)


def keep(scores: np.ndarray, count: int, end: str) -> np.ndarray:
  """Indices of the `count` lowest (`end='lowest'`) or highest scores, sorted by index."""
  if end not in ("lowest", "highest"):
    raise ValueError(f"keep: end is '{end}'; use 'lowest' or 'highest'.")
  scores = np.asarray(scores, np.float64)
  order = np.argsort(scores if end == "lowest" else -scores, kind="stable")  # NaN sort last
  return np.sort(order[: min(int(count), int(np.isfinite(scores).sum()))])


def row_shift(table: jax.Array, reference: jax.Array) -> np.ndarray:
  """`d_v = ||table[v] - reference[v]||_2` for every row `v`."""
  chex.assert_equal_shape([table, reference])
  return np.asarray(jnp.linalg.norm(table - reference, axis=-1))


def score_pairs(
  model: nn.Module,
  variables: Any,
  source: Any,
  tokenizer: Callable[[Sequence[str]], np.ndarray],
  batch_size: int,
  score: str,
  seed: int,
) -> np.ndarray:
  """The score of every pair of `source` (shape [N]), pairs batched in a seeded random order.

  The last batch is filled up with pairs from the start of the order, whose second scores are
  dropped, so every batch has `batch_size` pairs (the 'loss' of a pair depends on its batch).
  Pairs the source leaves out (bad image, empty caption) score NaN.
  """
  if score not in PAIR_SCORES:
    raise ValueError(f"Unknown pair score '{score}'; choose one of {', '.join(PAIR_SCORES)}.")
  n = len(source)
  order = np.random.default_rng(seed).permutation(n)
  padded = np.concatenate([order, order[: (-n) % batch_size]])
  fn = jax.jit(lambda v, images, tokens: _scores(model, v, images, tokens, score))
  scores = np.full(n, np.nan, np.float32)
  for start in range(0, n, batch_size):
    pairs = source.batch(padded[start : start + batch_size])
    values = np.asarray(fn(variables, pairs["image"], tokenizer(list(pairs["caption"]))))
    got = np.asarray(pairs["index"], np.int64)
    first = np.isnan(scores[got])  # the fill-up pairs of the last batch keep their first score
    scores[got[first]] = values[first]
  return scores


def _scores(model, variables, images, tokens, score):
  out = model.apply(variables, normalize(images), tokens)
  if score == "similarity":
    return jnp.sum(out["image_emb"] * out["text_emb"], axis=-1)
  return losses.clip_loss_per_pair(out["image_emb"], out["text_emb"], out["scale"])


def selection_stats(selected: np.ndarray, poisoned: np.ndarray) -> dict[str, float]:
  """How many kept pairs are poisoned: `found`, `precision` (found / kept), `recall`
  (found / poisoned)."""
  found = int(np.isin(selected, poisoned).sum())
  return dict(
    kept=int(len(selected)),
    found=found,
    precision=found / max(len(selected), 1),
    recall=found / max(len(poisoned), 1),
  )
