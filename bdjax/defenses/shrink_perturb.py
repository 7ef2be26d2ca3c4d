"""Shrink-and-perturb (Ash & Adams 2020), a baseline of the seed study, then a clean tune.

    edit    theta <- shrink * theta + perturb * theta_0   (theta_0 a fresh initialisation)
    tune    fine-tune on the clean subset (MMCL)

Shrinking scales every weight, the backdoor's included, toward zero; the noise breaks the
symmetry the clean tune has to rebuild from; only what the clean data supports comes back.
"""

from __future__ import annotations

import ml_collections

from bdjax.default_config import edit_stage, train_stage


def add_stages(
  c: ml_collections.ConfigDict,
  poisoned: str,
  *,
  shrink: float = 0.5,
  perturb: float = 0.1,
  num_pairs: int = 5_000,
  steps: int = 600,
  lr: float = 2e-3,
  batch_size: int = 64,
) -> tuple[str, ...]:
  """Adds `sp_edit` and `sp_tune`; returns their names."""
  del poisoned  # edits the current parameters, the poisoned model's
  c.sp_edit = edit_stage("shrink_perturb", shrink=shrink, perturb=perturb)
  c.sp_tune = train_stage(
    c,
    poison=False,
    num_pairs=num_pairs,
    steps=steps,
    lr=lr,
    warmup_steps=min(50, steps // 10),
    batch_size=batch_size,
    checkpoint_every=steps,
  )
  return ("sp_edit", "sp_tune")
