"""How a train stage turns the objective's per-pair losses into the loss it descends.

A reduction is `fn(per_pair [B], batch) -> (loss, metrics)`; `make_reduction(cfg)` picks one
by `cfg.kind`:

- `mean`      `loss = mean_i l_i`, the objective itself;
- `lga`       ABL's local gradient ascent, `loss = mean_i sign(l_i - gamma) * l_i`: pairs whose
              loss falls below `gamma` are pushed back up to it, so only pairs learned
              unusually fast (the poisoned ones) can sit far below `gamma`;
- `weighted`  `loss = mean_i w_i * l_i` with `w_i = batch['weight']` (+1 descend, -1 ascend:
              ABL's and UBT's unlearning of a selected set while descending on the rest).

`attention_distillation` is NAD's extra term on sown feature maps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from flax import traverse_util

from bdjax.data.augment import normalize
from bdjax.defenses.pieces.masks import model_variables

Reduction = Callable[[jax.Array, Mapping[str, jax.Array]], tuple[jax.Array, dict]]
KINDS = ("mean", "lga", "weighted")


def mean(per_pair: jax.Array, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, dict]:
  """`loss = mean_i l_i`."""
  del batch
  return jnp.mean(per_pair), {}


def lga(gamma: float) -> Reduction:
  """ABL's local gradient ascent: `loss = mean_i sign(l_i - gamma) * l_i`.

  The sign is a constant of the step (no gradient flows through it). Reports the share of pairs
  below `gamma` as `below_gamma`.
  """

  def fn(per_pair, batch):
    del batch
    sign = jax.lax.stop_gradient(jnp.sign(per_pair - gamma))
    return jnp.mean(sign * per_pair), {"below_gamma": jnp.mean(per_pair < gamma)}

  return fn


def weighted(per_pair: jax.Array, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, dict]:
  """`loss = mean_i w_i * l_i`, `w = batch['weight']`; reports the mean loss of the pairs with
  negative weight as `ascended_loss` (NaN when the batch has none)."""
  w = batch["weight"].astype(per_pair.dtype)
  chex.assert_equal_shape([w, per_pair])
  up = w < 0
  ascended = jnp.sum(jnp.where(up, per_pair, 0.0)) / jnp.sum(up)
  return jnp.mean(w * per_pair), {"ascended_loss": ascended}


def make_reduction(cfg: ml_collections.ConfigDict) -> Reduction:
  """The reduction named `cfg.kind` ('mean' | 'lga' with `cfg.gamma` | 'weighted')."""
  if cfg.kind == "mean":
    return mean
  if cfg.kind == "lga":
    return lga(cfg.gamma)
  if cfg.kind == "weighted":
    return weighted
  raise ValueError(f"Unknown loss kind '{cfg.kind}'; choose one of {', '.join(KINDS)}.")


def attention_map(features: jax.Array) -> jax.Array:
  """NAD's attention map of `[B, H, W, C]` (or ViT `[B, N, C]`) features: `A = sum_c |F_c|^2`,
  flattened to `[B, H*W]` and L2-normalised per sample."""
  chex.assert_rank(features, {3, 4})
  a = jnp.sum(jnp.square(features.astype(jnp.float32)), axis=-1).reshape(features.shape[0], -1)
  return a / (jnp.linalg.norm(a, axis=-1, keepdims=True) + 1e-6)


def attention_distillation(
  student: Sequence[jax.Array], teacher: Sequence[jax.Array], betas: Sequence[float]
) -> jax.Array:
  """`sum_k beta_k * mean_b ||A(F_S^k)_b - A(F_T^k)_b||^2 / (H*W)`, the teacher held fixed."""
  total = jnp.zeros((), jnp.float32)
  for s, t, beta in zip(student, teacher, betas, strict=True):
    chex.assert_equal_shape([s, t])
    diff = attention_map(s) - jax.lax.stop_gradient(attention_map(t))
    total = total + beta * jnp.mean(jnp.square(diff))
  return total


def sown(intermediates: dict, blocks: Sequence[str]) -> list[jax.Array]:
  """The image tower's sown outputs of `blocks` (e.g. 'stage_1', 'resblocks_3')."""
  flat = traverse_util.flatten_dict(intermediates, sep="/")
  found = []
  for block in blocks:
    keys = [
      k for k in flat if f"image_tower/{block}/" in k or f"image_tower/transformer/{block}/" in k
    ]
    if len(keys) != 1:
      names = sorted({k.rsplit("/", 1)[0] for k in flat if k.startswith("image_tower/")})
      raise ValueError(f"No single sown image-tower block '{block}'; the blocks are {names}.")
    found.append(flat[keys[0]][0])
  return found


def distillation_term(model: nn.Module, blocks: Sequence[str], betas: Sequence[float]):
  """NAD's extra loss term for a `LossWrap`: attention distillation of the image tower's
  `blocks` towards the teacher whose variables are `params['teacher']` (its forward pass runs
  in the step, on the same images, without gradient, in evaluation mode: a BatchNorm teacher
  uses its running statistics)."""
  if len(blocks) != len(betas) or not blocks:
    raise ValueError(f"distill: give one beta per block (blocks {blocks}, betas {betas}).")

  def term(params, batch, out):
    teacher = model_variables(params["teacher"])
    _, state = model.apply(
      teacher, normalize(batch["image"]), method="encode_image", mutable=["intermediates"]
    )
    student = sown(out["intermediates"], blocks)
    loss = attention_distillation(student, sown(state["intermediates"], blocks), betas)
    return loss, {"distill": loss}

  return term
