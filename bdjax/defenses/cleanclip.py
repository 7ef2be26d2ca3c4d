"""CleanCLIP (Bansal et al., ICCV 2023): fine-tune the poisoned model on clean pairs with
`clip_weight * MMCL + inmodal_weight * SSL` (REFERENCE.md sections 1 and 5).

One train stage: the objective `clip_ssl` (each image and caption also meets an augmented view
of itself), `poison=False` on the defender's fixed clean subset of `num_pairs` pairs. The in-modal
term makes every image embed near its own augmentations rather than near the caption class
alone, which breaks the trigger -> target shortcut; the MMCL term keeps the alignment.

Model selection as in the study: the stage is evaluated every `eval_every` steps and keeps the
evaluation with the highest clean accuracy among those with ASR < `select_below` (the last
state if none is); this selects on the evaluation set's triggered images, an optimistic
protocol the README states next to every number. `select_below=0` turns it off.

Adaptation at demo scale: the published recipe (lr 1e-5, 10 epochs on 100k pairs, batch 64)
is for a pre-trained ViT-B/32; the demo model needs a larger rate and `inmodal_weight` 2 (the
SSL term is what removes the backdoor; README, "Defenses").
"""

from __future__ import annotations

import ml_collections

from bdjax.default_config import train_stage


def add_stages(
  c: ml_collections.ConfigDict,
  poisoned: str,
  *,
  num_pairs: int = 5_000,
  steps: int = 600,
  batch_size: int = 64,
  lr: float = 4e-3,
  clip_weight: float = 1.0,
  inmodal_weight: float = 2.0,
  eval_every: int = 100,
  select_below: float = 0.05,
) -> tuple[str, ...]:
  """Adds `cleanclip` (fine-tune from stage `poisoned` on clean pairs); returns its name."""
  objective = c.objective.copy_and_resolve_references()
  objective.update(name="clip_ssl", clip_weight=clip_weight, inmodal_weight=inmodal_weight)
  c.cleanclip = train_stage(
    c,
    objective=objective,
    start_from=poisoned,
    poison=False,
    num_pairs=num_pairs,
    steps=steps,
    batch_size=batch_size,
    lr=lr,
    warmup_steps=min(50, steps // 10),
    checkpoint_every=steps,
    eval_every=eval_every,
    select_below=select_below,
  )
  return ("cleanclip",)
