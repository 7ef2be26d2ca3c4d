"""Objectives of a run, chosen by `config.objective.name`, on the model's outputs.

An objective maps the CLIP model's outputs on the batch (and, for SSL objectives, on a second
augmented view of every image and caption) to per-pair losses `l` of shape [B], whose mean is
the objective's loss, and a dict of named scalar terms:

- `clip`:     MMCL, symmetric InfoNCE over the global batch;
- `clip_ssl`: `clip_weight * MMCL + inmodal_weight * inmodal` (CleanCLIP's loss);
- `cyclip`:   MMCL + CyCLIP's in-modal and cross-modal consistency regularisers;
- `siglip`:   pairwise sigmoid loss with a learned bias (the model must have `logit_bias_init`).

Per-pair losses let a stage reduce them in other ways than the mean (defenses/pieces/losses.py:
LGA, per-pair weights, ascent); `l_i` still depends on the whole batch through its negatives.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections

from bdjax import losses

Outputs = Mapping[str, jax.Array]
NAMES = ("clip", "clip_ssl", "cyclip", "siglip")


@dataclasses.dataclass(frozen=True)
class Objective:
  """`fn(outputs, view_outputs) -> (per_pair [B], terms)`; `needs_views`: it wants
  `view_outputs` (the model's outputs on augmented views of the batch)."""

  name: str
  fn: Callable[[Outputs, Outputs | None], tuple[jax.Array, dict[str, jax.Array]]]
  needs_views: bool = False


LOSS_FORMS = ("global", "local", "ring")


def make_objective(
  cfg: ml_collections.ConfigDict, mesh: jax.sharding.Mesh | None = None, form: str = ""
) -> Objective:
  """Builds the objective named `cfg.name` with its weights from `cfg`, in the loss form
  `form` (default `cfg.loss_form`, else 'global'): 'global' computes it on the global batch
  under `jax.jit`; 'local' (needs `mesh`) in a `shard_map`, each device's rows against the
  gathered embeddings; 'ring' (SigLIP only) passes the text embeddings around the devices
  instead of gathering them (bdjax/sharded_loss.py). All give the same losses and gradients."""
  form = form or cfg.get("loss_form", "global")
  if form not in LOSS_FORMS:
    raise ValueError(f"Unknown objective.loss_form '{form}'; choose one of {LOSS_FORMS}.")
  if form == "ring" and cfg.name != "siglip":
    raise ValueError(f"objective.loss_form='ring' is SigLIP's; '{cfg.name}' has 'global', 'local'.")
  if form != "global" and mesh is not None:
    from bdjax import sharded_loss
    from bdjax.sharding import BATCH_AXES

    ring = form == "ring"
    fn = sharded_loss.local_objective_fn(cfg.name, cfg, mesh, BATCH_AXES, siglip_ring=ring)
    return Objective(cfg.name, fn, needs_views=cfg.name == "clip_ssl")
  return _global_objective(cfg)


def _global_objective(cfg: ml_collections.ConfigDict) -> Objective:
  name = cfg.name
  if name == "clip":

    def fn(out, _):
      per_pair = losses.clip_loss_per_pair(out["image_emb"], out["text_emb"], out["scale"])
      return per_pair, {"clip": jnp.mean(per_pair)}

    return Objective(name, fn)
  if name == "clip_ssl":

    def fn(out, views):
      mmcl = losses.clip_loss_per_pair(out["image_emb"], out["text_emb"], out["scale"])
      inmodal = losses.inmodal_loss_per_pair(
        out["image_emb"], views["image_emb"], out["text_emb"], views["text_emb"], out["scale"]
      )
      per_pair = cfg.clip_weight * mmcl + cfg.inmodal_weight * inmodal
      return per_pair, {"clip": jnp.mean(mmcl), "inmodal": jnp.mean(inmodal)}

    return Objective(name, fn, needs_views=True)
  if name == "cyclip":

    def fn(out, _):
      per_pair = losses.cyclip_loss_per_pair(
        out["image_emb"], out["text_emb"], out["scale"], cfg.lambda_inmodal, cfg.lambda_crossmodal
      )
      return per_pair, {"cyclip": jnp.mean(per_pair)}

    return Objective(name, fn)
  if name == "siglip":

    def fn(out, _):
      per_pair = losses.siglip_loss_per_pair(
        out["image_emb"], out["text_emb"], out["scale"], out["bias"]
      )
      return per_pair, {"siglip": jnp.mean(per_pair)}

    return Objective(name, fn)
  raise ValueError(f"Unknown objective '{name}'; choose one of {', '.join(NAMES)}.")
