"""optax transforms that turn a train stage into a defense's stage, each with one job.

A train stage's optimiser is `chain(pre..., freeze(base), post...)` (stages.py):

- `ascend()`             before the base optimiser: gradient ascent, weight decay still shrinks;
- `freeze(base, fn)`     the base optimiser on the leaves `fn` marks trainable, zero elsewhere;
- `keep_rows(rows, fn)`  after the base optimiser: updates of the marked [V, D] tables only on
                         the chosen rows (weight decay included: other rows stay bit for bit);
- `clamp(lo, hi, fn)`    after the base optimiser: the marked leaves stay in [lo, hi].

Leaves are picked by a predicate on their path, written `collection/module/.../leaf`
(`path_name`), e.g. `params/text_tower/token_embedding/embedding`; `matching(regex)` builds one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

LeafPredicate = Callable[[str], bool]


def path_name(path: tuple) -> str:
  """`('params', 'image_tower', 'stem', ...)` as `params/image_tower/stem/...`."""
  return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def matching(pattern: str) -> LeafPredicate:
  """True for the leaf paths in which the regular expression `pattern` is found."""
  regex = re.compile(pattern)
  return lambda name: regex.search(name) is not None


def leaf_names(params: Any) -> list[str]:
  """The path names of every leaf of `params`, in tree order."""
  return [path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def _label(params: Any, fn: LeafPredicate) -> Any:
  return jax.tree_util.tree_map_with_path(lambda p, _: fn(path_name(p)), params)


def ascend() -> optax.GradientTransformation:
  """Gradient ascent on the loss: `u = -g`.

  Chained *before* the base optimiser, so AdamW sees `-g` and moves the parameters up the loss,
  while its decoupled weight decay `- lr * wd * p`, added after, still shrinks them (negating the
  loss after the optimiser would turn decay into growth; REFERENCE.md section 5).
  """
  return optax.scale(-1.0)


def freeze(
  base: optax.GradientTransformation, trainable: LeafPredicate
) -> optax.GradientTransformation:
  """`base` on the leaves whose path `trainable` accepts; every other leaf gets `u = 0`.

  Built with `optax.multi_transform` and `optax.set_to_zero()`: frozen leaves keep no optimiser
  state and stay bit for bit, weight decay included. (`optax.masked` would not do: it passes the
  unmasked gradients through unchanged.)
  """
  labels = lambda params: jax.tree.map(
    lambda t: "train" if t else "freeze", _label(params, trainable)
  )
  return optax.multi_transform({"train": base, "freeze": optax.set_to_zero()}, labels)


def keep_rows(rows: jax.Array, where: LeafPredicate) -> optax.GradientTransformation:
  """Zeroes the update of every row of the marked `[V, D]` leaves except `rows` (token ids).

      u[v] = u[v] if v in rows else 0        for the leaves `where` accepts

  Placed after the base optimiser, the other rows move neither by the gradient nor by weight
  decay. Other leaves pass through unchanged (combine with `freeze` to fix them too).
  """
  rows = jnp.asarray(rows, jnp.int32)

  def update(updates, state, params=None):
    del params

    def one(path, u):
      if not where(path_name(path)):
        return u
      keep = jnp.zeros((u.shape[0],), bool).at[rows].set(True)
      return jnp.where(keep[:, None], u, jnp.zeros_like(u))

    return jax.tree_util.tree_map_with_path(one, updates), state

  return optax.GradientTransformation(lambda _: optax.EmptyState(), update)


def clamp(lo: float, hi: float, where: LeafPredicate) -> optax.GradientTransformation:
  """Keeps the marked leaves in `[lo, hi]` after the update (RNP's mask clamp).

      u' = clip(p + u, lo, hi) - p            for the leaves `where` accepts

  so that `apply_updates(p, u')` is the clamped value. Needs `params` in `update`.
  """

  def update(updates, state, params=None):
    if params is None:
      raise ValueError("clamp needs the parameters: call update(updates, state, params).")

    def one(path, u, p):
      if not where(path_name(path)):
        return u
      u = jnp.clip(p + u, lo, hi) - p
      # p + (c - p) can round one ulp past c: step back where it would.
      u = jnp.where(p + u > hi, jnp.nextafter(u, -jnp.inf), u)
      return jnp.where(p + u < lo, jnp.nextafter(u, jnp.inf), u)

    return jax.tree_util.tree_map_with_path(one, updates, params), state

  return optax.GradientTransformation(lambda _: optax.EmptyState(), update)
