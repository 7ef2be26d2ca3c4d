"""NAD, neural attention distillation (Li et al., ICLR 2021), on the image tower.

    teacher   the poisoned model fine-tuned on the clean subset (MMCL)
    student   the poisoned model fine-tuned on the clean subset with
              MMCL + sum_k beta_k * MSE(A(F_S^k), A(F_T^k)),  A(F) = normalise(sum_c |F_c|^2)
              on the outputs of the image tower's `blocks`

Adaptation: the task loss is the contrastive objective; attention maps are taken on the image
tower's stage outputs (`default_blocks`: the CNN's stages, the last Bottleneck of a ResNet's
layers 2-4 with NAD's betas 500/1000/1000, or a ViT's residual blocks, `[B, N, C]`, at a third,
two thirds and the end of its depth). The teacher runs inside the student's step from the
`teacher` entry of the parameters, frozen, in evaluation mode.
"""

from __future__ import annotations

import ml_collections

from bdjax.default_config import train_stage


def default_blocks(image: ml_collections.ConfigDict) -> tuple[tuple[str, ...], tuple[float, ...]]:
  """The sown image-tower blocks NAD distils, and their betas, for the tower `image` describes."""
  if image.kind == "resnet":
    blocks = tuple(f"layer{i}_{image.layers[i - 1] - 1}" for i in (2, 3, 4))
    return blocks, (500.0, 1_000.0, 1_000.0)
  if image.kind == "vit":
    d = image.depth
    blocks = tuple(dict.fromkeys(f"resblocks_{max(0, k * d // 3 - 1)}" for k in (1, 2, 3)))
    return blocks, (1_000.0,) * len(blocks)
  blocks = tuple(f"stage_{i}" for i in range(1, min(3, len(image.widths))))
  return blocks, (1_000.0,) * len(blocks)


def add_stages(
  c: ml_collections.ConfigDict,
  poisoned: str,
  *,
  num_pairs: int = 1_000,
  teacher_steps: int = 300,
  student_steps: int = 300,
  lr: float = 2e-3,
  blocks: tuple[str, ...] | None = None,
  betas: tuple[float, ...] | None = None,
  batch_size: int = 64,
) -> tuple[str, ...]:
  """Adds `nad_teacher` and `nad_student`; returns their names. `blocks` and `betas` default
  to `default_blocks(c.model.image)`."""
  if blocks is None:
    blocks, betas = default_blocks(c.model.image)
  common = dict(
    start_from=poisoned, poison=False, num_pairs=num_pairs, batch_size=batch_size, lr=lr
  )
  c.nad_teacher = train_stage(
    c, steps=teacher_steps, warmup_steps=20, checkpoint_every=teacher_steps, **common
  )
  c.nad_student = train_stage(
    c,
    steps=student_steps,
    warmup_steps=20,
    checkpoint_every=student_steps,
    distill=dict(teacher="nad_teacher", blocks=tuple(blocks), betas=tuple(betas)),
    **common,
  )
  return ("nad_teacher", "nad_student")
