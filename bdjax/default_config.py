"""The keys every training config has, with their defaults; configs/*.py start from here.

seed                     every random choice of the run flows from it
stages                   names of the config sections to run, in order (see stages.py)
data.source              'synthetic' (embedded) | 'csv' | 'webdataset' | 'arrayrecord' | 'tfds' |
                         'auto' (from the form of data.train): bdjax/data/sources.py
data.train               the training corpus: CSV/TSV file, tar shard pattern
                         ('cc3m-{00000..00331}.tar'), ArrayRecord directory, TFDS name or dir
data.split, data_dir     TFDS split and data directory of data.train
data.image_column, caption_column, delimiter   CSV columns and delimiter ('' = by extension)
data.image_key, caption_key                    TFDS feature names
data.threads             image-decoding threads per loaded batch (0 = one per core, <= 16)
data.prefetch            batches loaded ahead (threads); data.workers: worker processes (0 = none)
data.eval_source         'synthetic' | 'imagenet' (val folder + labels) | 'tfds' (classification)
data.eval                the evaluation set: ImageNet val folder, or TFDS name or dir
data.eval_split, eval_data_dir, eval_max       TFDS split and dir; evaluate the first N (0 = all)
data.templates           zero-shot prompts of real eval sets: 'openai' (CLIP's 80) | 'cifar'
data.image_views         the SSL objectives' second image views: 'simple' (crop, flip, jitter)
                         | 'autoaugment' (+ two AutoAugment ops per image): data/augment.py
data.text_views          their caption views: 'delete_swap' | 'eda' (CleanCLIP's EDA)
data.flip                random horizontal flip of the training images (off: captions say
                         'left' and 'right')
data.num_train/num_eval  sizes of the embedded dataset's splits
data.image_size          input resolution
mesh.data, fsdp, model   device mesh axis sizes (-1 = the rest); leaves with fewer than
                         mesh.min_shard_size elements replicated, larger ones split: sharding.py
model                    see bdjax/models/build.py (`model_config(preset)`)
init.checkpoint          start from a pre-trained CLIP: an OpenAI or open_clip checkpoint file
                         (.pt / .bin / .safetensors; bdjax/models/convert.py) loaded, without
                         running code from it, as the run's initial parameters; config.model
                         must describe the same architecture (the error names the preset)
objective.name           'clip' | 'clip_ssl' | 'cyclip' | 'siglip' (+ their weights)
objective.loss_form      'global' (jit on the global batch) | 'local' (shard_map: each device's
                         rows against the gathered embeddings): same losses and gradients
train.steps, batch_size (global), lr (peak), warmup_steps, weight_decay, b1, b2, eps,
train.grad_clip_norm (0 = off), checkpoint_every, keep_checkpoints, log_every,
train.trim_tokens        run the text tower only on each batch's tokens up to its longest
                         caption (exact; bdjax/token_trim.py)
train.eval_every         evaluate every N steps during training (0 = only in eval stages)
train.init               'continue' from the previous stage's parameters | 'fresh' (from seed)
train.poison             train on the attack's poisoned data (True) or on clean data (False)
train.start_from         start from the output of this earlier stage instead of the previous one
train.num_pairs          train on a fixed seeded subset of this many pairs (0 = all): the
                         defender's clean set when poison=False
train.pairs              train only on the pairs a select stage of this name kept
train.loss.kind          'mean' | 'lga' (gamma) | 'weighted' (weight_set pairs get `weight`,
                         the others +1): defenses/pieces/losses.py
train.ascend             gradient ascent (optax transform before the base optimiser)
train.trainable          regex of the leaf paths that train ('' = all of `params/`)
train.rows_from          only the token-table rows in this select stage's set are updated
train.clamp              regex of leaves clamped to [0, 1] after each update (masks)
train.distill            NAD: teacher (a stage), blocks of the image tower, betas
train.stop_below         end the stage once eval metric < value (needs eval_every)
train.select_below       keep the stage's evaluation (every eval_every steps) with the highest
                         ca_top1 among those with asr_top1 < select_below (0 = the last state)
eval.batch_size          chunk size of the evaluators
eval.der_against         an earlier eval stage: report DER of this evaluation against it
attack.kind              'none' | a trigger of bdjax/attacks/triggers.py: 'badnet', 'solid',
                         'blended', 'sig', 'wanet'
attack.target            class whose prompts replace poisoned captions, and whose ASR is reported
attack.count, ratio      how many training pairs to poison (one of them)
attack.label_consistent  poison only pairs whose caption names the target; keep their captions
attack.patch_size        BadNet / solid patch side, pixels (int) or fraction of the side (< 1.0)
attack.location          'random' | 'bottom_right' | 'top_left' | 'center' | (row, col)
attack.pattern           BadNet noise: 'per_image' (reference code) | 'fixed' (pattern_seed)
attack.color             solid patch colour, RGB in [0, 1]
attack.alpha, blend_pattern    blended: weight of the noise, 'fixed' | 'per_image'
attack.amplitude, frequency    SIG: sinusoid amplitude (of 1.0) and periods across the width
attack.grid, strength    WaNet: control grid side k and warp strength s
attack.pattern_seed      seed of the fixed patterns (BadNet 'fixed', blended 'fixed', WaNet)
sweep.key, choices       run the stages from STAGE of `key` (STAGE.OPTION) once per choice and
                         choose the highest-CA point with asr_top1 < sweep.max_asr (stages.py)
grid.axes                ((KEY, VALUES), ...): one run per combination, in DIR/points/NAME/;
                         KEY a config key or 'arg.NAME' (an argument of the config file): grid.py
"""

from __future__ import annotations

import math

import ml_collections

from bdjax.models import model_config


def parse_arg(arg: str | None, **defaults: str) -> dict[str, str]:
  """`configs/NAME.py:ARG` with ARG = `key=value,...` (a bare first value sets the first key),
  over `defaults`; an unknown key raises ValueError naming the known ones."""
  opts = dict(defaults)
  for i, part in enumerate(p for p in (arg or "").split(",") if p):
    key, sep, value = part.partition("=")
    if not sep and i == 0:
      key, value = next(iter(defaults)), part
    if key not in defaults:
      raise ValueError(f"Unknown config argument '{key}'; the arguments are {', '.join(defaults)}.")
    opts[key] = value
  return opts


def base_config(model: str = "tiny-cnn", objective: str = "clip") -> ml_collections.ConfigDict:
  """A complete training config (pre-train then evaluate) on the embedded dataset.

  For `objective="siglip"` the model gets SigLIP's initial scale 10 and bias -10.
  """
  c = ml_collections.ConfigDict()
  c.name = "bdjax run"
  c.seed = 0
  c.stages = ("train", "eval")
  c.data = ml_collections.ConfigDict(
    dict(
      source="synthetic",
      train="",
      split="train",
      data_dir="",
      image_column="image",
      caption_column="caption",
      delimiter="",
      image_key="image",
      caption_key="caption",
      threads=0,
      prefetch=2,
      workers=0,
      eval_source="synthetic",
      eval="",
      eval_split="test",
      eval_data_dir="",
      eval_max=0,
      templates="openai",
      image_views="simple",
      text_views="delete_swap",
      flip=False,
      num_train=20_000,
      num_eval=1_000,
      image_size=32,
    )
  )
  c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, model=1, min_shard_size=2**14))
  c.model = model_config(model)
  c.init = ml_collections.ConfigDict(dict(checkpoint=""))
  c.objective = ml_collections.ConfigDict(
    dict(
      name="clip",
      clip_weight=1.0,
      inmodal_weight=1.0,
      lambda_inmodal=0.25,
      lambda_crossmodal=0.25,
      loss_form="global",
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
      trim_tokens=True,
      checkpoint_every=500,
      keep_checkpoints=2,
      log_every=50,
      eval_every=0,
      init="continue",
      poison=True,
      start_from="",
      num_pairs=0,
      pairs="",
      loss=ml_collections.ConfigDict(dict(kind="mean", gamma=0.5, weight_set="", weight=-1.0)),
      ascend=False,
      trainable="",
      rows_from="",
      clamp="",
      distill=ml_collections.ConfigDict(dict(teacher="", blocks=(), betas=())),
      stop_below=ml_collections.ConfigDict(dict(metric="", value=0.0)),
      select_below=0.0,
    )
  )
  c.eval = ml_collections.ConfigDict(dict(kind="eval", batch_size=250, der_against=""))
  c.attack = attack_config()
  c.sweep = ml_collections.ConfigDict(dict(key="", choices=(), max_asr=0.05))
  c.grid = ml_collections.ConfigDict(dict(axes=()))
  return c


def demo_config(
  objective: str = "clip", attack: ml_collections.ConfigDict | None = None
) -> ml_collections.ConfigDict:
  """Pre-training of the demo's small CLIP on the embedded dataset (minutes on 2 CPU cores),
  poisoned by `attack` when given; the attack configs and configs/demo.py start from it."""
  c = base_config("tiny-cnn", objective)
  # 2,400 steps at lr 2e-3: a 1%-poisoned BadNet backdoor needs them (ASR 58% after 1,200 steps,
  # 92% after 1,800; README, "Attacks"); the clean task alone is learned in about 1,000.
  c.train.update(steps=2400, batch_size=32, lr=2e-3, warmup_steps=200, checkpoint_every=600)
  if attack is not None:
    c.attack = attack
  return c


def train_stage(c: ml_collections.ConfigDict, **overrides) -> ml_collections.ConfigDict:
  """A train stage section: `c.train` (every option at its default) with `overrides`; nested
  sections (`loss`, `distill`, `stop_below`) take dicts."""
  stage = c.train.copy_and_resolve_references()
  for key, value in overrides.items():
    if isinstance(value, dict):
      stage[key].update(value)
    else:
      stage[key] = value
  return stage


def select_stage(**options) -> ml_collections.ConfigDict:
  """A select stage section (bdjax/defense_stages.py): score, keep, count or ratio, ..."""
  c = dict(kind="select", score="loss", keep="lowest", count=0, ratio=0.0, poison=True)
  c.update(batch_size=64, against="", of="")
  c.update(options)
  return ml_collections.ConfigDict(c)


def edit_stage(op: str, **options) -> ml_collections.ConfigDict:
  """An edit stage section (bdjax/defense_stages.py) doing `op` with `options`."""
  return ml_collections.ConfigDict(dict(kind="edit", op=op, **options))


def poisoned_demo_config(objective: str = "clip") -> ml_collections.ConfigDict:
  """The poisoned pre-training that `make demo` and every defense config start from: BadNet, a
  16-px noise patch on 1% of the pairs, 1,500 steps (learned to ASR ~91% by step 1,200; an 8-px
  patch needs 2,400 steps and is seed-fragile: README, "Attacks")."""
  c = demo_config(objective, attack_config("badnet", ratio=0.01, patch_size=16))
  c.train.update(steps=1500, checkpoint_every=500)
  return c


def attack_config(kind: str = "none", **overrides) -> ml_collections.ConfigDict:
  """`config.attack`: no attack by default; the trigger defaults follow REFERENCE.md section 3,
  except the patch: 8 px of the embedded dataset's 32 (the study's 16 px at 224 px would be
  2-3 px; a 4-px patch poisoning 1% of the pairs stayed below 1% ASR after 3,000 steps of the
  demo model, an 8-px one reaches 92%: README, "Attacks")."""
  c = ml_collections.ConfigDict(
    dict(
      kind=kind,
      target="star",
      count=0,
      ratio=0.0,
      label_consistent=False,
      patch_size=8,
      location="random",
      pattern="per_image",
      color=(1.0, 1.0, 0.0),
      alpha=0.2,
      blend_pattern="fixed",
      amplitude=60 / 255,
      frequency=6.0,
      grid=4,
      strength=0.5,
      pattern_seed=0,
    )
  )
  c.update(overrides)
  return c


# Pre-training sets of the seed study (REFERENCE.md section 2): pairs, and global batch per
# objective (MMCL 2048, MMCL+SSL 1024), 64 epochs at lr 1e-3.
STUDY_DATASETS = {"cc3m": 3_000_000, "cc6m": 6_000_000}
STUDY_BATCH = {"clip": 2048, "clip_ssl": 1024, "cyclip": 2048}
STUDY_POISONS = {"cc3m": 1_500, "cc6m": 3_000}


def study_config(dataset: str, objective: str, model: str = "rn50") -> ml_collections.ConfigDict:
  """Pre-training on a real corpus as in the seed study (RN50 by default, as the study and
  CleanCLIP; `configs/cc3m_clip.py:vit-b-32` for its ViT); the data path comes from the user."""
  c = base_config(model, objective)
  c.name = f"{dataset} {objective} pre-training ({model})"
  c.data.update(
    source="auto",
    train="",
    eval_source="imagenet",
    eval="",
    image_size=c.model.image.size,
    image_views="autoaugment",  # CleanCLIP's views of the in-modal objective
    text_views="eda",
  )
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
  # The study's attack: BadNet, a 16-px noise patch at a random place, target "banana".
  c.attack.update(kind="badnet", target="banana", count=STUDY_POISONS[dataset], patch_size=16)
  return c
