"""UBT, unlearn backdoor threats (Liang et al. 2024, seed 002), with bdjax's exact choices.

    suspects  keep the `suspect_ratio` of training pairs the poisoned model matches best
              (highest cosine similarity of image and caption)
    overfit   over-fit briefly on those pairs only: the shortcut they share grows stronger,
              so poisoned pairs separate further from clean ones
    select    keep the `count` pairs with the highest similarity under the over-fitted model
    tokens    the token ids of their captions
    unlearn   from the poisoned model, on the training data: ascend on the selected pairs
              (weight -`ascent_weight`), descend on the others, updating only the parameters
              tied to their tokens and patches: the rows of those tokens in the token table
              and the image tower's first layers (`patch_layers`, which see the trigger's
              pixels), everything else frozen

The paper has no public code; "parameters tied to patches" is read here as the early image
layers, the ones whose receptive fields are patch-sized.
"""

from __future__ import annotations

import ml_collections

from bdjax.default_config import select_stage, train_stage

PATCH_LAYERS = r"params/image_tower/(stem|stage_1|conv1|embedding|ln_pre)/"


def add_stages(
  c: ml_collections.ConfigDict,
  poisoned: str,
  *,
  suspect_ratio: float = 0.05,
  overfit_steps: int = 100,
  overfit_lr: float = 1e-3,
  count: int = 50,
  unlearn_steps: int = 300,
  unlearn_lr: float = 1e-3,
  ascent_weight: float = 1.0,
  patch_layers: str = PATCH_LAYERS,
  batch_size: int = 64,
) -> tuple[str, ...]:
  """Adds the five UBT stages (`ubt_suspects` ... `ubt_unlearn`); returns their names."""
  c.ubt_suspects = select_stage(score="similarity", keep="highest", ratio=suspect_ratio)
  c.ubt_overfit = train_stage(
    c,
    start_from=poisoned,
    pairs="ubt_suspects",
    steps=overfit_steps,
    lr=overfit_lr,
    warmup_steps=0,
    batch_size=batch_size,
    checkpoint_every=overfit_steps,
  )
  c.ubt_select = select_stage(score="similarity", keep="highest", count=count)
  c.ubt_tokens = select_stage(score="caption_tokens", of="ubt_select")
  c.ubt_unlearn = train_stage(
    c,
    start_from=poisoned,
    loss=dict(kind="weighted", weight_set="ubt_select", weight=-ascent_weight),
    trainable=f"{patch_layers}|token_embedding/embedding$",
    rows_from="ubt_tokens",
    steps=unlearn_steps,
    lr=unlearn_lr,
    warmup_steps=min(20, unlearn_steps // 10),
    batch_size=batch_size,
    checkpoint_every=unlearn_steps,
  )
  return ("ubt_suspects", "ubt_overfit", "ubt_select", "ubt_tokens", "ubt_unlearn")
