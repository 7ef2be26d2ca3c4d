"""Token trimming: a batch's captions cut after the longest one, for a text tower that attends
causally and pools at the end-of-text token (CLIP's), where the cut changes no output.

Captions are tokenised to the model's context (77 for CLIP), but most are far shorter (the
embedded dataset's 4-16 tokens, CC3M's median about 12). Under the causal mask no position sees a
later one, and the tower's output is the hidden state at each row's end-of-text token, so the
positions after the batch's longest caption never reach an output: running the tower on
`tokens[:, :L']` instead of `[:, :L]` gives the same embeddings, losses and gradients (up to
float rounding) for `L'/L` of the work. `L'` is rounded up to a bucket so that a handful of
programs is compiled, one per bucket used.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils

TOKEN_BUCKETS = (8, 16, 24, 32, 48, 64)  # lengths a trimmed batch is cut to (else the context)


def token_length(tokens: np.ndarray) -> int:
  """Positions up to and including the end-of-text token of the longest row: `max_b argmax + 1`
  (the EOT id is the largest in CLIP's vocabulary, so `argmax` finds it, as the text tower's
  pooling does)."""
  return int(np.max(np.argmax(tokens, axis=-1))) + 1 if tokens.size else 0


def trim_tokens(batch: dict[str, np.ndarray], buckets=TOKEN_BUCKETS) -> dict[str, np.ndarray]:
  """The host batch with `tokens` (and `view_tokens`) cut to the smallest of `buckets` that
  holds every row's end-of-text token (all processes agree on it), or left at full length.

  Exact: the text tower attends causally and pools the hidden state at the EOT token, so the
  positions after the longest caption's EOT never reach any output (models/text.py); cutting
  them leaves every embedding, loss and gradient as it was (up to float rounding) and saves the text tower
  `1 - L'/L` of its work (about 3/4 for 77-token contexts and captions of up to 20 tokens). One program
  is compiled per bucket used.
  """
  keys = [k for k in ("tokens", "view_tokens") if k in batch]
  if not keys:  # a batch without captions (image-only stages, tests of the loop itself)
    return batch
  context = batch[keys[0]].shape[1]
  longest = max(token_length(batch[k]) for k in keys)
  if jax.process_count() > 1:  # every process must build the same global shape
    longest = int(np.max(multihost_utils.process_allgather(np.int32(longest))))
  length = next((b for b in buckets if longest <= b < context), context)
  if length == context:
    return batch
  return {**batch, **{k: batch[k][:, :length] for k in keys}}
