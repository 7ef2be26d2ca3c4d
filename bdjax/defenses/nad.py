"""NAD, neural attention distillation (Li et al., ICLR 2021), on the image tower.

    teacher   the poisoned model fine-tuned on the clean subset (MMCL)
    student   the poisoned model fine-tuned on the clean subset with
              MMCL + sum_k beta_k * MSE(A(F_S^k), A(F_T^k)),  A(F) = normalise(sum_c |F_c|^2)
              on the outputs of the image tower's `blocks`

Adaptation: the task loss is the contrastive objective; attention maps are taken on the CNN's
stage outputs (or a ViT's residual blocks, `[B, N, C]`). The teacher runs inside the student's
step from the `teacher` collection of the parameters, frozen.
"""

from __future__ import annotations

import ml_collections

from bdjax.default_config import train_stage


def add_stages(
  c: ml_collections.ConfigDict,
  poisoned: str,
  *,
  num_pairs: int = 1_000,
  teacher_steps: int = 300,
  student_steps: int = 300,
  lr: float = 2e-3,
  blocks: tuple[str, ...] = ("stage_1", "stage_2"),
  betas: tuple[float, ...] = (1_000.0, 1_000.0),
  batch_size: int = 64,
) -> tuple[str, ...]:
  """Adds `nad_teacher` and `nad_student`; returns their names."""
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
