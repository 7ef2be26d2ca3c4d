"""Heavy weight decay, a baseline of the seed study: fine-tune on the clean subset with a large
decoupled weight decay, `theta <- theta - lr(t) * (adam(g) + wd * theta)`.

Weights the clean data does not keep up (a backdoor's) decay by `exp(-sum_t lr(t) * wd)`.
"""

from __future__ import annotations

import ml_collections

from bdjax.default_config import train_stage


def add_stages(
  c: ml_collections.ConfigDict,
  poisoned: str,
  *,
  weight_decay: float = 1.0,
  num_pairs: int = 5_000,
  steps: int = 600,
  lr: float = 2e-3,
  batch_size: int = 64,
) -> tuple[str, ...]:
  """Adds `wd_tune`; returns its name."""
  c.wd_tune = train_stage(
    c,
    start_from=poisoned,
    poison=False,
    num_pairs=num_pairs,
    steps=steps,
    lr=lr,
    weight_decay=weight_decay,
    warmup_steps=min(50, steps // 10),
    batch_size=batch_size,
    checkpoint_every=steps,
  )
  return ("wd_tune",)
