"""BTU, backdoor token unlearning (AAAI 2025), on the text tower's token-embedding table.

    expose    from the poisoned model, train only the token table on the training data
    select    rank the rows by how far they moved, ||E_exposed[v] - E_poisoned[v]||, and flag
              the top `ratio` of the vocabulary (default 0.05%, ~25 of 49,408 rows)
    reset     in the poisoned model, reset each flagged row's dimensions that moved more than
              ||E_exposed - E_poisoned||_F / V to the padding token's embedding (row 0)
    tune      a short clean fine-tune on the clean subset

Adaptation: one exposure run instead of three. BTU targets text triggers (a rare token in the
caption); with an image trigger (BadNet) the poisoned captions are ordinary target prompts, the
most-moved rows are the target's words, and resetting them mostly costs that class. It is kept
for text-side backdoors and as the study's contrast (README, "Defenses"). BTU exposes a model
that has not yet learned the trigger (tests/test_defense_select.py: from a clean-trained model a
planted trigger word's rows move most); here the exposure starts from the poisoned model, the
one the defender holds, where a text trigger's rows may already have settled.
"""

from __future__ import annotations

import ml_collections

from bdjax.default_config import edit_stage, select_stage, train_stage


def add_stages(
  c: ml_collections.ConfigDict,
  poisoned: str,
  *,
  expose_steps: int = 200,
  expose_lr: float = 1e-3,
  ratio: float = 0.0005,
  num_pairs: int = 1_000,
  tune_steps: int = 100,
  tune_lr: float = 1e-3,
  batch_size: int = 64,
) -> tuple[str, ...]:
  """Adds `btu_expose`, `btu_select`, `btu_reset`, `btu_tune`; returns their names."""
  c.btu_expose = train_stage(
    c,
    start_from=poisoned,
    trainable="token_embedding/embedding$",
    steps=expose_steps,
    lr=expose_lr,
    weight_decay=0.0,
    warmup_steps=0,
    batch_size=batch_size,
    checkpoint_every=expose_steps,
  )
  c.btu_select = select_stage(score="row_shift", keep="highest", ratio=ratio, against=poisoned)
  c.btu_reset = edit_stage("reset_rows", target=poisoned, rows="btu_select", pad=0)
  c.btu_tune = train_stage(
    c,
    poison=False,
    num_pairs=num_pairs,
    steps=tune_steps,
    lr=tune_lr,
    warmup_steps=min(20, tune_steps // 5),
    batch_size=batch_size,
    checkpoint_every=tune_steps,
  )
  return ("btu_expose", "btu_select", "btu_reset", "btu_tune")
