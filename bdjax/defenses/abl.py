"""ABL, anti-backdoor learning (Li et al., NeurIPS 2021), adapted to contrastive training.

    isolate   fine-tune with LGA, loss = mean_i sign(l_i - gamma) * l_i, on the (poisoned)
              training data: clean pairs are held near `gamma`, pairs learned through a
              shortcut fall far below it
    select    keep the `ratio` of pairs with the lowest per-pair CLIP loss (default 1%)
    unlearn   from the poisoned model, descend on the training data while *ascending* on the
              kept pairs: the `weighted` loss, weight `-ascent_weight` on them, +1 elsewhere

Adaptation: ABL isolates during the first epochs of training a classifier; here the defender
holds the poisoned model and its training data, so isolation is a short LGA fine-tune of that
model. The per-pair loss of a contrastive model depends on the batch (its negatives), so the
scores come from one pass in batches of random pairs. Unlearning a pair by ascent on its own
caption would be void in a batch of identical target captions: the kept pairs are ascended
inside ordinary batches, against clean negatives, while the rest is descended.
"""

from __future__ import annotations

import ml_collections

from bdjax.default_config import select_stage, train_stage


def add_stages(
  c: ml_collections.ConfigDict,
  poisoned: str,
  *,
  gamma: float = 0.5,
  isolate_steps: int = 200,
  isolate_lr: float = 1e-3,
  ratio: float = 0.01,
  unlearn_steps: int = 300,
  unlearn_lr: float = 1e-3,
  ascent_weight: float = 1.0,
  batch_size: int = 64,
) -> tuple[str, ...]:
  """Adds `abl_isolate`, `abl_select`, `abl_unlearn`; returns their names."""
  c.abl_isolate = train_stage(
    c,
    start_from=poisoned,
    loss=dict(kind="lga", gamma=gamma),
    steps=isolate_steps,
    batch_size=batch_size,
    lr=isolate_lr,
    warmup_steps=min(20, isolate_steps // 10),
    checkpoint_every=isolate_steps,
  )
  c.abl_select = select_stage(score="loss", keep="lowest", ratio=ratio, batch_size=batch_size)
  c.abl_unlearn = train_stage(
    c,
    start_from=poisoned,
    loss=dict(kind="weighted", weight_set="abl_select", weight=-ascent_weight),
    steps=unlearn_steps,
    batch_size=batch_size,
    lr=unlearn_lr,
    warmup_steps=min(20, unlearn_steps // 10),
    checkpoint_every=unlearn_steps,
  )
  return ("abl_isolate", "abl_select", "abl_unlearn")
