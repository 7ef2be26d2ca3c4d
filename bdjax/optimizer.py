"""The base optimiser of every train stage: AdamW on a warmup-cosine schedule, with clipping.

    lr(t) = lr * t / warmup                                   for t < warmup (t counted from 0)
    lr(t) = lr * (1 + cos(pi * (t - warmup) / (T - warmup))) / 2   afterwards, T = train.steps

The update is `chain(clip_by_global_norm(c), adamw(lr(t), b1, b2, eps, wd, mask))`, where the
weight-decay mask excludes every parameter of rank < 2 (norm scales, biases, the class token) and
the logit scale / bias, as CLIP and open_clip do. Defense transforms (later issues) are chained
*before* this, so they see raw gradients and the base optimiser stays the same for every stage.
Unlike CleanCLIP's reference scheduler, warmup always starts at step 0 (REFERENCE.md, section 6).
"""

from __future__ import annotations

import jax
import ml_collections
import optax


def lr_schedule(train: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warmup from 0 to `train.lr` over `train.warmup_steps`, then cosine decay to 0."""
  warmup = min(int(train.get("warmup_steps", 0)), train.steps - 1)
  return optax.warmup_cosine_decay_schedule(
    init_value=0.0,
    peak_value=train.lr,
    warmup_steps=warmup,
    decay_steps=train.steps,
    end_value=train.lr * float(train.get("end_lr_fraction", 0.0)),
  )


def weight_decay_mask(params: optax.Params) -> optax.Params:
  """True for the leaves that get weight decay: rank >= 2 and not a logit scale or bias."""

  def decays(path, leaf) -> bool:
    names = [getattr(k, "key", getattr(k, "name", "")) for k in path]
    return leaf.ndim >= 2 and not any(str(n).startswith("logit_") for n in names)

  return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(train: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """`clip_by_global_norm` then AdamW with the schedule above and the decay mask."""
  adamw = optax.adamw(
    learning_rate=lr_schedule(train),
    b1=train.get("b1", 0.9),
    b2=train.get("b2", 0.98),
    eps=train.get("eps", 1e-6),
    weight_decay=train.weight_decay,
    mask=weight_decay_mask,
  )
  clip = train.get("grad_clip_norm", 0.0)
  return optax.chain(optax.clip_by_global_norm(clip), adamw) if clip else adamw
