"""The keys every training config has, with their defaults; configs/*.py start from here.

seed                     every random choice of the run flows from it
stages                   names of the config sections to run, in order (see stages.py)
data.source              'synthetic' (embedded) | a real-data reader (later: 'csv', ...)
data.train, data.eval    paths of real data ('' for the embedded dataset)
data.num_train/num_eval  sizes of the embedded dataset's splits
data.image_size          input resolution
model                    see bdjax/models/build.py (`model_config(preset)`)
objective.name           'clip' | 'clip_ssl' | 'cyclip' | 'siglip' (+ their weights)
train.steps, batch_size (global), lr (peak), warmup_steps, weight_decay, b1, b2, eps,
train.grad_clip_norm (0 = off), checkpoint_every, keep_checkpoints, log_every,
train.eval_every         evaluate every N steps during training (0 = only in eval stages)
eval.batch_size          chunk size of the evaluators
"""

from __future__ import annotations

import math

import ml_collections

from bdjax.models import model_config


def base_config(model: str = "tiny-cnn", objective: str = "clip") -> ml_collections.ConfigDict:
  """A complete training config (pre-train then evaluate) on the embedded dataset.

  For `objective="siglip"` the model gets SigLIP's initial scale 10 and bias -10.
  """
  c = ml_collections.ConfigDict()
  c.name = "bdjax run"
  c.seed = 0
  c.stages = ("train", "eval")
  c.data = ml_collections.ConfigDict(
    dict(source="synthetic", train="", eval="", num_train=20_000, num_eval=1_000, image_size=32)
  )
  c.model = model_config(model)
  c.objective = ml_collections.ConfigDict(
    dict(
      name="clip", clip_weight=1.0, inmodal_weight=1.0, lambda_inmodal=0.25, lambda_crossmodal=0.25
    )
  )
  c.objective.name = objective
  if objective == "siglip":
    c.model.logit_scale_init, c.model.logit_bias_init = math.log(10.0), -10.0
  c.train = ml_collections.ConfigDict(
    dict(
      kind="train",
      steps=1000,
      batch_size=32,
      lr=1e-3,
      warmup_steps=50,
      weight_decay=0.1,
      b1=0.9,
      b2=0.98,
      eps=1e-6,
      grad_clip_norm=1.0,
      checkpoint_every=500,
      keep_checkpoints=2,
      log_every=50,
      eval_every=0,
    )
  )
  c.eval = ml_collections.ConfigDict(dict(kind="eval", batch_size=250))
  return c


# Pre-training sets of the seed study (REFERENCE.md section 2): pairs, and global batch per
# objective (MMCL 2048, MMCL+SSL 1024), 64 epochs at lr 1e-3.
STUDY_DATASETS = {"cc3m": 3_000_000, "cc6m": 6_000_000}
STUDY_BATCH = {"clip": 2048, "clip_ssl": 1024, "cyclip": 2048}


def study_config(
  dataset: str, objective: str, model: str = "vit-b-32"
) -> ml_collections.ConfigDict:
  """Pre-training on a real corpus as in the seed study; the data path comes from the user."""
  c = base_config(model, objective)
  c.name = f"{dataset} {objective} pre-training ({model})"
  c.data.update(source="csv", train="", eval="", image_size=c.model.image.size)
  batch = STUDY_BATCH[objective]
  steps = 64 * STUDY_DATASETS[dataset] // batch
  c.train.update(
    steps=steps,
    batch_size=batch,
    lr=1e-3,
    warmup_steps=10_000,
    checkpoint_every=2_000,
    log_every=100,
  )
  return c
