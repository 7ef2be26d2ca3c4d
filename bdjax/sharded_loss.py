"""Contrastive objectives over the global batch in `shard_map` form: local rows vs gathered columns.

`bdjax.losses` is written on global arrays: under `jax.jit` XLA's SPMD partitioner decides
how the ``N x N`` similarity matrices of the global batch are split and which collectives to
insert. Here the split is explicit: every device of the mesh axes that split the batch (``P``
devices, ``n = N / P`` rows each) computes only its ``n`` rows of every matrix, against the
``N`` all-gathered embeddings: ``n x N`` logits per device, the same per-pair losses, the same
gradients. (bench/loss_memory.py: on XLA CPU the partitioner already keeps the global form at
``n x N`` per device; the ring form of SigLIP is the one that needs less memory, ``n x n``.)

Notation as in `bdjax.losses` (``I``, ``T`` image / text embeddings of the global batch,
``I'``, ``T'`` their augmented views, ``s`` the scale, ``b`` the SigLIP bias), and per device:
``I_loc``, ``T_loc`` its ``[n, D]`` rows, ``o = axis_index * n`` the global index of its first
row, ``I_all = all_gather(I_loc)`` the ``[N, D]`` gathered rows, ``r = o + arange(n)`` the
labels of its rows. Row ``i`` of ``L = s I T^T`` is row ``i - o`` of ``s I_loc T_all^T`` and
row ``i`` of ``L^T = s T I^T`` (column ``i`` of ``L``) is row ``i - o`` of
``s T_loc I_all^T``; so with ``CE_r`` the softmax cross-entropy against labels ``r``:

* CLIP:     ``l = ( CE_r(s I_loc T_all^T) + CE_r(s T_loc I_all^T) ) / 2``.
* in-modal: ``l = ( CE_r(s I_loc I'_all^T) + CE_r(s T_loc T'_all^T) ) / 2``.
* CyCLIP:   ``l = clip + l_in * rowsum((I_loc I_all^T - T_loc T_all^T)^2)
  + l_cross * rowsum((I_loc T_all^T - T_loc I_all^T)^2)``, since ``(I T^T)^T_{ij} = T_i . I_j``.
* SigLIP:   ``l = rowsum(-log sigmoid(z * (s I_loc T_all^T + b)))``, ``z_kj = +1`` iff
  ``j == o + k``. With ``siglip_ring=True`` the texts are never gathered: each device starts with
  its own ``[n, D]`` text block (the positive block) and passes it ``P - 1`` times around the ring
  with `jax.lax.ppermute`, adding the all-negative ``n x n`` block of each visiting block (as in
  the SigLIP paper's chunked implementation); each block is rematerialised in the backward pass
  (`jax.checkpoint`), so only the ``[n, D]`` text blocks are kept.

The collectives are differentiable: the transpose of `all_gather` is a reduce-scatter (the
gradient w.r.t. a device's rows sums the contributions of every device that used them as
columns), that of `ppermute` the inverse permutation, and the replicated ``s`` / ``b`` get the
psum of the per-device gradients. Per-pair losses come back as the global ``[N]`` array, split
over the batch axes like the batch; terms are global means (a psum).

`local_objective_fn` returns a drop-in replacement for `bdjax.objectives.Objective.fn`:
``dataclasses.replace(make_objective(cfg), fn=local_objective_fn(cfg.name, cfg, mesh, axes))``.
The ``*_per_pair_local`` functions are the bodies, to call inside one's own `shard_map`.

Numerics as in `bdjax.losses`: computation in at least float32, matmuls at
``Precision.HIGHEST``, stable ``log_softmax`` / ``log_sigmoid`` forms.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import chex
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh, PartitionSpec as P

from bdjax.losses import _compute_dtype  # the same dtype rule as the global form

__all__ = [
  "NAMES",
  "clip_per_pair_local",
  "cyclip_per_pair_local",
  "inmodal_per_pair_local",
  "local_objective_fn",
  "siglip_per_pair_local",
  "siglip_ring_per_pair_local",
]

Outputs = Mapping[str, jax.Array]
ObjectiveFn = Callable[[Outputs, Outputs | None], tuple[jax.Array, dict[str, jax.Array]]]
AxisNames = tuple[str, ...]
NAMES = ("clip", "clip_ssl", "cyclip", "siglip")

_PRECISION = jax.lax.Precision.HIGHEST


# ---------------------------------------------------------------------------------------------
# Helpers (inside `shard_map`).
# ---------------------------------------------------------------------------------------------


def _cast(dtype: jnp.dtype, *arrays: chex.Array) -> list[chex.Array]:
  return [jnp.asarray(x).astype(dtype) for x in arrays]


def _sim(a: chex.Array, b: chex.Array) -> chex.Array:
  """``a @ b.T`` at full precision, ``[n, D] x [N, D] -> [n, N]``."""
  return jnp.matmul(a, b.T, precision=_PRECISION)


def _gather(x: chex.Array, axis_name: AxisNames) -> chex.Array:
  """The ``[N, D]`` rows of every device, in the order of the batch (``P(axis_name)``)."""
  return jax.lax.all_gather(x, axis_name, axis=0, tiled=True)


def _row_labels(n: int, axis_name: AxisNames) -> chex.Array:
  """``o + arange(n)``: the global indices of this device's rows."""
  return jax.lax.axis_index(axis_name) * n + jnp.arange(n)


def _ce(logits: chex.Array, labels: chex.Array) -> chex.Array:
  """``CE(logits, labels)`` per row of ``[n, N]`` logits: ``logsumexp(row) - row[label]``."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def _check_local(*embs: chex.Array) -> None:
  chex.assert_rank(embs, 2)
  chex.assert_equal_shape(embs)


# ---------------------------------------------------------------------------------------------
# Per-pair losses on this device's rows (call inside `shard_map` over `axis_name`).
# ---------------------------------------------------------------------------------------------


def _clip_from_sims(
  sim_it: chex.Array, sim_ti: chex.Array, scale: chex.Array, labels: chex.Array
) -> chex.Array:
  return 0.5 * (_ce(scale * sim_it, labels) + _ce(scale * sim_ti, labels))


def clip_per_pair_local(
  image_emb: chex.Array, text_emb: chex.Array, scale: chex.Numeric, axis_name: AxisNames
) -> chex.Array:
  r"""This device's rows of `bdjax.losses.clip_loss_per_pair` (symmetric InfoNCE).

  ::

    l = ( CE(s I_loc T_all^T, o + arange(n)) + CE(s T_loc I_all^T, o + arange(n)) ) / 2

  the first CE row ``k`` being row ``o + k`` of ``L = s I T^T`` (image -> text), the second
  its column ``o + k`` (text -> image).

  Args:
    image_emb: ``[n, D]`` this device's L2-normalised image embeddings.
    text_emb: ``[n, D]`` this device's text embeddings, paired row by row.
    scale: scalar ``s``, the same on every device.
    axis_name: the mesh axes the batch is split over.

  Returns:
    ``[n]`` per-pair losses of this device's rows, float32 (or wider).
  """
  _check_local(image_emb, text_emb)
  dtype = _compute_dtype(image_emb, text_emb)
  image, text, scale = _cast(dtype, image_emb, text_emb, scale)
  labels = _row_labels(image.shape[0], axis_name)
  sim_it = _sim(image, _gather(text, axis_name))
  sim_ti = _sim(text, _gather(image, axis_name))
  return _clip_from_sims(sim_it, sim_ti, scale, labels)


def inmodal_per_pair_local(
  image_emb: chex.Array,
  aug_image_emb: chex.Array,
  text_emb: chex.Array,
  aug_text_emb: chex.Array,
  scale: chex.Numeric,
  axis_name: AxisNames,
) -> chex.Array:
  r"""This device's rows of `bdjax.losses.inmodal_loss_per_pair` (one-directional per modality).

  ::

    l = ( CE(s I_loc I'_all^T, o + arange(n)) + CE(s T_loc T'_all^T, o + arange(n)) ) / 2

  Args:
    image_emb, aug_image_emb, text_emb, aug_text_emb: ``[n, D]`` this device's rows.
    scale: scalar ``s``.
    axis_name: the mesh axes the batch is split over.

  Returns:
    ``[n]`` per-pair losses of this device's rows.
  """
  _check_local(image_emb, aug_image_emb, text_emb, aug_text_emb)
  dtype = _compute_dtype(image_emb, aug_image_emb, text_emb, aug_text_emb)
  image, aug_image, text, aug_text, scale = _cast(
    dtype, image_emb, aug_image_emb, text_emb, aug_text_emb, scale
  )
  labels = _row_labels(image.shape[0], axis_name)
  image_ce = _ce(scale * _sim(image, _gather(aug_image, axis_name)), labels)
  text_ce = _ce(scale * _sim(text, _gather(aug_text, axis_name)), labels)
  return 0.5 * (image_ce + text_ce)


def cyclip_per_pair_local(
  image_emb: chex.Array,
  text_emb: chex.Array,
  scale: chex.Numeric,
  lambda_inmodal: chex.Numeric,
  lambda_crossmodal: chex.Numeric,
  axis_name: AxisNames,
) -> chex.Array:
  r"""This device's rows of `bdjax.losses.cyclip_loss_per_pair`.

  Row ``i`` of each regulariser is a sum over the ``N`` columns, so it splits over devices by
  rows; with ``k = i - o``::

    C_in_i    = sum_j (I_i.I_j - T_i.T_j)^2 = rowsum_k( (I_loc I_all^T - T_loc T_all^T)^2 )
    C_cross_i = sum_j (I_i.T_j - T_i.I_j)^2 = rowsum_k( (I_loc T_all^T - T_loc I_all^T)^2 )
    l_i       = clip_i + l_in * C_in_i + l_cross * C_cross_i

  (``(I T^T - T I^T)_{ij} = I_i.T_j - T_i.I_j``; the two cross-modal matrices are those of the
  CLIP term, computed once). The regularisers are on cosines: no gradient to ``s``.

  Args:
    image_emb, text_emb: ``[n, D]`` this device's rows.
    scale: scalar ``s``.
    lambda_inmodal: weight ``l_in`` of the in-modal consistency term.
    lambda_crossmodal: weight ``l_cross`` of the cross-modal consistency term.
    axis_name: the mesh axes the batch is split over.

  Returns:
    ``[n]`` per-pair losses of this device's rows.
  """
  _check_local(image_emb, text_emb)
  dtype = _compute_dtype(image_emb, text_emb)
  image, text, scale, l_in, l_cross = _cast(
    dtype, image_emb, text_emb, scale, lambda_inmodal, lambda_crossmodal
  )
  labels = _row_labels(image.shape[0], axis_name)
  image_all, text_all = _gather(image, axis_name), _gather(text, axis_name)
  sim_it = _sim(image, text_all)
  sim_ti = _sim(text, image_all)
  contrastive = _clip_from_sims(sim_it, sim_ti, scale, labels)
  c_in = jnp.sum(jnp.square(_sim(image, image_all) - _sim(text, text_all)), axis=1)
  c_cross = jnp.sum(jnp.square(sim_it - sim_ti), axis=1)
  return contrastive + l_in * c_in + l_cross * c_cross


def siglip_per_pair_local(
  image_emb: chex.Array,
  text_emb: chex.Array,
  scale: chex.Numeric,
  bias: chex.Numeric,
  axis_name: AxisNames,
) -> chex.Array:
  r"""This device's rows of `bdjax.losses.siglip_loss_per_pair`, texts all-gathered.

  ::

    z_kj = +1 if j == o + k else -1                                  # [n, N]
    l_k  = sum_j -log sigmoid( z_kj * (s I_loc_k . T_all_j + b) )

  Args:
    image_emb, text_emb: ``[n, D]`` this device's rows.
    scale: scalar ``s``.
    bias: scalar ``b``.
    axis_name: the mesh axes the batch is split over.

  Returns:
    ``[n]`` per-image losses of this device's rows.
  """
  _check_local(image_emb, text_emb)
  dtype = _compute_dtype(image_emb, text_emb)
  image, text, scale, bias = _cast(dtype, image_emb, text_emb, scale, bias)
  text_all = _gather(text, axis_name)
  labels = _row_labels(image.shape[0], axis_name)
  logits = scale * _sim(image, text_all) + bias
  positive = jnp.arange(text_all.shape[0])[None, :] == labels[:, None]
  signs = jnp.where(positive, 1.0, -1.0).astype(dtype)
  return -jnp.sum(jax.nn.log_sigmoid(signs * logits), axis=1)


def _siglip_block(
  image: chex.Array, text: chex.Array, scale: chex.Array, bias: chex.Array, positive: bool
) -> chex.Array:
  """Row sums of ``-log sigmoid(z (s I T^T + b))`` on one ``n x n`` block; ``z = 2 eye - 1``
  on the diagonal block (``positive``), ``-1`` elsewhere."""
  logits = scale * _sim(image, text) + bias
  if positive:
    signs = 2.0 * jnp.eye(image.shape[0], dtype=logits.dtype) - 1.0
  else:
    signs = -jnp.ones((), logits.dtype)
  return -jnp.sum(jax.nn.log_sigmoid(signs * logits), axis=1)


def siglip_ring_per_pair_local(
  image_emb: chex.Array,
  text_emb: chex.Array,
  scale: chex.Numeric,
  bias: chex.Numeric,
  axis_name: AxisNames,
) -> chex.Array:
  r"""`siglip_per_pair_local` with the texts passed around a ring, never gathered.

  With ``T_(q)`` the text block of device ``q`` and ``p`` this device::

    l = block_+(I_loc, T_(p)) + sum_{m=1}^{P-1} block_-(I_loc, T_(p - m mod P))
    block_+(A, B) = rowsum( -log sigmoid( (2 eye - 1) * (s A B^T + b) ) )   # positives on diag
    block_-(A, B) = rowsum( -log sigmoid( -(s A B^T + b) ) )                # all negatives

  the block ``T_(p - m)`` arriving after ``m`` shifts ``q -> q + 1`` (`jax.lax.ppermute`) in a
  `jax.lax.scan`. Peak memory per device: ``n x n`` logits and the ``[n, D]`` text blocks; each
  block is recomputed in the backward pass (`jax.checkpoint`), whose text gradients travel
  back around the ring.

  Args and returns as `siglip_per_pair_local`.
  """
  _check_local(image_emb, text_emb)
  dtype = _compute_dtype(image_emb, text_emb)
  image, text, scale, bias = _cast(dtype, image_emb, text_emb, scale, bias)
  num_devices = jax.lax.axis_size(axis_name)
  loss = _siglip_block(image, text, scale, bias, positive=True)
  if num_devices == 1:
    return loss
  perm = [(q, (q + 1) % num_devices) for q in range(num_devices)]
  negative_block = jax.checkpoint(lambda i, t, s, b: _siglip_block(i, t, s, b, positive=False))

  def step(carry, _):
    block, loss = carry
    block = jax.lax.ppermute(block, axis_name, perm)
    return (block, loss + negative_block(image, block, scale, bias)), None

  (_, loss), _ = jax.lax.scan(step, (text, loss), length=num_devices - 1)
  return loss


# ---------------------------------------------------------------------------------------------
# The objectives of `bdjax.objectives`, in `shard_map` form.
# ---------------------------------------------------------------------------------------------


def _normalise_axes(batch_axes: str | Sequence[str]) -> AxisNames:
  return (batch_axes,) if isinstance(batch_axes, str) else tuple(batch_axes)


def local_objective_fn(
  name: str,
  cfg: ml_collections.ConfigDict,
  mesh: Mesh,
  batch_axes: str | Sequence[str],
  *,
  siglip_ring: bool = False,
) -> ObjectiveFn:
  r"""`bdjax.objectives.make_objective(cfg).fn` for objective `name`, as a `jax.shard_map`.

  ``fn(outputs, view_outputs) -> (per_pair [B], terms)`` with the same values, gradients and
  weights as the global form::

    clip:      l = clip
    clip_ssl:  l = cfg.clip_weight * clip + cfg.inmodal_weight * inmodal   (needs views)
    cyclip:    l = clip + cfg.lambda_inmodal * C_in + cfg.lambda_crossmodal * C_cross
    siglip:    l = sigmoid loss (uses outputs["bias"])

  ``outputs["image_emb"]``, ``outputs["text_emb"]`` (and the views') are ``[B, D]``, their
  batch dimension split over the mesh axes `batch_axes` (``B`` a multiple of the product of
  their sizes); ``outputs["scale"]`` / ``outputs["bias"]`` are scalars, replicated. Other keys
  are ignored. ``per_pair`` is ``[B]``, split over `batch_axes`; ``terms`` hold global means.
  Call it inside `jax.jit` (or eagerly: `shard_map` reshards its inputs).

  Args:
    name: one of `NAMES`.
    cfg: the objective's config (`config.objective`); reads the weights of `name`.
    mesh: the device mesh.
    batch_axes: the mesh axes that split the batch, in the order of the batch's
      ``PartitionSpec`` (e.g. ``("data", "fsdp")``).
    siglip_ring: SigLIP only: pass the texts around a ring (`siglip_ring_per_pair_local`)
      instead of gathering them.

  Returns:
    The objective's ``fn``.
  """
  axes = _normalise_axes(batch_axes)
  missing = [a for a in axes if a not in mesh.shape]
  if missing:
    raise ValueError(f"batch_axes {missing} are not axes of the mesh {dict(mesh.shape)}.")
  num_devices = 1
  for a in axes:
    num_devices *= mesh.shape[a]
  rows, scalar = P(axes), P()

  def check(*embs: chex.Array) -> None:
    chex.assert_rank(embs, 2)
    chex.assert_equal_shape(embs)
    if embs[0].shape[0] % num_devices:
      raise ValueError(
        f"The batch of {embs[0].shape[0]} pairs does not split over the {num_devices} devices "
        f"of the mesh axes {axes}."
      )

  def as_scalar(x: chex.Numeric) -> chex.Array:
    x = jnp.asarray(x)
    chex.assert_rank(x, 0)
    return x

  def mean(per_pair: chex.Array) -> chex.Array:
    return jax.lax.psum(jnp.sum(per_pair), axes) / (per_pair.shape[0] * num_devices)

  def smap(body: Callable, num_rows: int, num_scalars: int) -> Callable:
    return jax.shard_map(
      body,
      mesh=mesh,
      in_specs=(rows,) * num_rows + (scalar,) * num_scalars,
      out_specs=(rows, scalar),
    )

  if name == "clip":

    def body(i, t, s):
      per_pair = clip_per_pair_local(i, t, s, axes)
      return per_pair, {"clip": mean(per_pair)}

    mapped = smap(body, 2, 1)

    def fn(out, _):
      check(out["image_emb"], out["text_emb"])
      return mapped(out["image_emb"], out["text_emb"], as_scalar(out["scale"]))

    return fn
  if name == "clip_ssl":
    clip_weight, inmodal_weight = cfg.clip_weight, cfg.inmodal_weight

    def body(i, t, iv, tv, s):
      mmcl = clip_per_pair_local(i, t, s, axes)
      inmodal = inmodal_per_pair_local(i, iv, t, tv, s, axes)
      per_pair = clip_weight * mmcl + inmodal_weight * inmodal
      return per_pair, {"clip": mean(mmcl), "inmodal": mean(inmodal)}

    mapped = smap(body, 4, 1)

    def fn(out, views):
      if views is None:
        raise ValueError("clip_ssl needs view_outputs (the model's outputs on augmented views).")
      embs = (out["image_emb"], out["text_emb"], views["image_emb"], views["text_emb"])
      check(*embs)
      return mapped(*embs, as_scalar(out["scale"]))

    return fn
  if name == "cyclip":
    l_in, l_cross = cfg.lambda_inmodal, cfg.lambda_crossmodal

    def body(i, t, s):
      per_pair = cyclip_per_pair_local(i, t, s, l_in, l_cross, axes)
      return per_pair, {"cyclip": mean(per_pair)}

    mapped = smap(body, 2, 1)

    def fn(out, _):
      check(out["image_emb"], out["text_emb"])
      return mapped(out["image_emb"], out["text_emb"], as_scalar(out["scale"]))

    return fn
  if name == "siglip":
    per_pair_local = siglip_ring_per_pair_local if siglip_ring else siglip_per_pair_local

    def body(i, t, s, b):
      per_pair = per_pair_local(i, t, s, b, axes)
      return per_pair, {"siglip": mean(per_pair)}

    mapped = smap(body, 2, 2)

    def fn(out, _):
      check(out["image_emb"], out["text_emb"])
      return mapped(
        out["image_emb"], out["text_emb"], as_scalar(out["scale"]), as_scalar(out["bias"])
      )

    return fn
  raise ValueError(f"Unknown objective '{name}'; choose one of {', '.join(NAMES)}.")
