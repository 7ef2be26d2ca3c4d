"""Per-channel masks on normalisation layers (RNP), and pruning with them.

A masked model carries, next to its `params`, a `masks` collection: one vector `m` of ones per
masked normalisation layer, keyed by the layer's path. `model_variables` applies them,

    scale' = m * scale,   bias' = m * bias        (the layer's output channel c times m_c)

so a train stage that freezes everything but `masks/` learns RNP's neuron masks, and `prune`
then zeroes, in another model, the channels whose mask fell lowest. The model sees `params` and
its BatchNorm statistics (`batch_stats`, a ResNet tower's); the other collections (masks, a
distillation teacher) never reach it: `model_variables` drops them.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from bdjax.defenses.pieces.transforms import LeafPredicate

SEP = "/"


def _flat(params: Any) -> dict[str, Any]:
  return traverse_util.flatten_dict(params, sep=SEP)


def norm_layers(params: Any, where: LeafPredicate) -> list[str]:
  """Paths (under `params`) of the layers with a `scale` vector whose path `where` accepts."""
  flat = _flat({"params": params})
  return sorted(
    k.rsplit(SEP, 1)[0].split(SEP, 1)[1]
    for k, v in flat.items()
    if k.endswith(SEP + "scale") and v.ndim == 1 and where(k)
  )


def add_masks(variables: dict, where: LeafPredicate) -> dict:
  """`variables` plus a `masks` collection of ones, one vector per normalisation layer."""
  flat = _flat(variables["params"])
  layers = norm_layers(variables["params"], where)
  if not layers:
    raise ValueError("No normalisation layer (a 'scale' vector) matches the mask pattern.")
  masks = {layer: jnp.ones_like(flat[layer + SEP + "scale"]) for layer in layers}
  return {**variables, "masks": masks}


MODEL_COLLECTIONS = ("params", "batch_stats")  # what `model.apply` reads


def model_variables(variables: dict) -> dict:
  """The variables the model sees: `params`, with `masks` (if any) multiplied in, and
  `batch_stats` when the model has them."""
  params = variables["params"]
  masks = variables.get("masks")
  if masks:
    flat = _flat(params)
    for layer, m in masks.items():
      for leaf in ("scale", "bias"):
        key = layer + SEP + leaf
        if key in flat:
          flat[key] = flat[key] * m
    params = traverse_util.unflatten_dict(flat, sep=SEP)
  rest = {k: variables[k] for k in MODEL_COLLECTIONS[1:] if k in variables}
  return {"params": params, **rest}


def pruned_channels(masks: dict, threshold: float | None = None, count: int | None = None) -> dict:
  """Which channels to prune: `m < threshold`, or the `count` lowest over all layers."""
  if (threshold is None) == (count is None):
    raise ValueError("Prune by exactly one of threshold and count.")
  host = {k: np.asarray(v) for k, v in masks.items()}
  if threshold is not None:
    return {k: m < threshold for k, m in host.items()}
  values = np.sort(np.concatenate([m.ravel() for m in host.values()]))
  if count <= 0:
    return {k: np.zeros_like(m, bool) for k, m in host.items()}
  cut = values[min(count, values.size) - 1]
  ties_left = min(count, values.size) - int(np.sum(values < cut))
  chosen = {}
  for k in sorted(host):  # channels tied at the cut are taken in layer order: exactly `count`
    m = host[k]
    tie = np.flatnonzero(m == cut)[:ties_left]
    ties_left -= len(tie)
    chosen[k] = m < cut
    chosen[k][tie] = True
  return chosen


def prune(variables: dict, channels: dict) -> dict:
  """`variables` with the chosen channels' normalisation scale and bias set to 0 (the channel
  then outputs 0, as RNP prunes); any `masks` collection is dropped."""
  flat = _flat(variables["params"])
  for layer, off in channels.items():
    keep = jnp.asarray(~np.asarray(off), jnp.float32)
    for leaf in ("scale", "bias"):
      key = layer + SEP + leaf
      if key in flat:
        flat[key] = flat[key] * keep
  rest = {k: v for k, v in variables.items() if k not in ("params", "masks")}
  return {**rest, "params": traverse_util.unflatten_dict(flat, sep=SEP)}
