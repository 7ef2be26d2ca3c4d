"""RNP, reconstructive neuron pruning (Li et al., ICML 2023), on the image tower.

    unlearn   from the poisoned model, gradient *ascent* on the clean subset (`ascend`) until
              zero-shot accuracy falls below `stop_below` (checked every `eval_every` steps)
    masks     add a mask m = 1 per channel of the image tower's normalisation layers
    recover   on the unlearned model, train only the masks (clamped to [0, 1]) on the clean
              subset: channels that only carried the backdoor are not needed to recover
    prune     zero the normalisation scale and bias of the `prune_count` lowest-mask
              channels in the *poisoned* model (or, with `prune_count=0`, those with
              m < `threshold`: at demo scale that pruned 265 of 544 channels, README)

Adaptation: the masks sit on the normalisation scales of the image tower, where the trigger
lives: BatchNorm in CLIP's ResNet (as RNP's), GroupNorm in the demo CNN, LayerNorm in a ViT; "clean accuracy" during unlearning is zero-shot
accuracy on the evaluation split, a stand-in for the defender's held-out clean data.
"""

from __future__ import annotations

import ml_collections

from bdjax.default_config import edit_stage, train_stage

MASKED = r"params/image_tower/.*(norm|ln_\w+|bn\d|downsample_1)/scale$"


def add_stages(
  c: ml_collections.ConfigDict,
  poisoned: str,
  *,
  num_pairs: int = 1_000,
  unlearn_lr: float = 2e-4,
  unlearn_steps: int = 400,
  stop_below: float = 0.2,
  mask_lr: float = 0.2,
  mask_steps: int = 200,
  prune_count: int = 32,
  threshold: float = 0.2,
  batch_size: int = 64,
) -> tuple[str, ...]:
  """Adds `rnp_unlearn`, `rnp_masks`, `rnp_recover`, `rnp_prune`; returns their names."""
  clean = dict(poison=False, num_pairs=num_pairs, batch_size=batch_size)
  c.rnp_unlearn = train_stage(
    c,
    start_from=poisoned,
    ascend=True,
    steps=unlearn_steps,
    lr=unlearn_lr,
    warmup_steps=0,
    weight_decay=0.0,
    eval_every=10,
    stop_below=dict(metric="ca_top1", value=stop_below),
    checkpoint_every=unlearn_steps,
    **clean,
  )
  c.rnp_masks = edit_stage("add_masks", where=MASKED)
  c.rnp_recover = train_stage(
    c,
    trainable="^masks/",
    clamp="^masks/",
    steps=mask_steps,
    lr=mask_lr,
    warmup_steps=0,
    weight_decay=0.0,
    grad_clip_norm=0.0,
    b2=0.999,
    checkpoint_every=mask_steps,
    **clean,
  )
  c.rnp_prune = edit_stage("prune", target=poisoned, threshold=threshold, count=prune_count)
  return ("rnp_unlearn", "rnp_masks", "rnp_recover", "rnp_prune")
