"""Contrastive pre-training objectives on L2-normalised embeddings.

Every function here is pure and takes the embeddings of the *global* batch,
``[N, D]`` arrays whose rows are already L2-normalised (nothing here normalises
them), and a scalar ``scale`` ``s = exp(logit_scale)`` -- the multiplier itself,
not its log. Scalar losses return a float scalar; ``*_per_pair`` functions
return one value per pair, shape ``[N]``, whose mean is the scalar loss.

Losses (notation: ``I``, ``T`` image / text embeddings, ``I'``, ``T'`` their
augmented views, ``CE(L, y)`` the softmax cross-entropy of the rows of ``L``
against integer labels ``y``, ``arange = (0, ..., N-1)``):

* :func:`clip_loss` (MMCL, symmetric InfoNCE):
  ``(CE(s I T^T, arange) + CE(s T I^T, arange)) / 2``.
* :func:`inmodal_loss` (SSL term of CleanCLIP / MMCL+SSL):
  ``(CE(s I I'^T, arange) + CE(s T T'^T, arange)) / 2``.
* :func:`cyclip_loss` (CyCLIP, Goel et al. 2022): ``clip_loss`` plus in-modal and
  cross-modal consistency regularisers.
* :func:`siglip_loss` (SigLIP, Zhai et al. 2023): pairwise sigmoid loss with a
  learned bias.

Global batch and sharding
-------------------------
The functions are written on *global* arrays. Under ``jax.jit`` with inputs
sharded along the batch axis (GSPMD), XLA inserts the collectives needed for
the ``N x N`` similarity matrices (split by rows, ``n x N`` per device, on XLA
CPU: bench/loss_memory.py), so the negatives of every pair come from the whole
global batch, as in the reference code (which all-gathers before computing the
loss); bdjax/sharded_loss.py writes the same split out in ``shard_map``. Calling them on a per-device shard (e.g. inside
``shard_map`` / ``pmap`` without gathering first) would silently compute a
per-device loss with only local negatives -- a known anti-pattern.

Numerics
--------
Inputs of any floating dtype are accepted; computation happens in at least
float32 (``bf16``/``f16`` inputs are upcast before the matmuls and the result
is float32; float64 stays float64 when x64 is enabled). The similarity
matmuls use ``jax.lax.Precision.HIGHEST`` so that float32 logits are not
silently computed in TF32/bf16 passes on accelerators: with ``s`` up to 100 a
1e-3 relative error in a cosine becomes a 0.1 error in a logit. These
``N x N x D`` matmuls are negligible next to the towers. Cross-entropies use
``log_softmax``-style stable forms and the sigmoid loss uses
``jax.nn.log_sigmoid``, so values and gradients stay finite at ``s = 100``.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import optax

__all__ = [
  "clip_loss",
  "clip_loss_per_pair",
  "cyclip_loss",
  "cyclip_loss_per_pair",
  "inmodal_loss",
  "inmodal_loss_per_pair",
  "siglip_loss",
  "siglip_loss_per_pair",
]

_PRECISION = jax.lax.Precision.HIGHEST


def _compute_dtype(*arrays: chex.Array) -> jnp.dtype:
  """At least float32: bf16/f16 -> f32, f32 -> f32, f64 -> f64."""
  dtype = jnp.result_type(*arrays)
  if not jnp.issubdtype(dtype, jnp.floating):
    dtype = jnp.float32
  return jnp.promote_types(dtype, jnp.float32)


def _check_embeddings(*embs: chex.Array) -> None:
  chex.assert_rank(embs, 2)
  chex.assert_equal_shape(embs)


def _as_scalar(x: chex.Numeric, dtype: jnp.dtype) -> chex.Array:
  x = jnp.asarray(x, dtype=dtype)
  chex.assert_rank(x, 0)
  return x


def _sim(a: chex.Array, b: chex.Array) -> chex.Array:
  """``a @ b.T`` at full precision, ``[N, D] x [N, D] -> [N, N]``."""
  return jnp.matmul(a, b.T, precision=_PRECISION)


def _diag_ce(logits: chex.Array) -> chex.Array:
  """``CE(logits, arange)`` per row: ``-log_softmax(logits)_{ii}``, shape [N]."""
  labels = jnp.arange(logits.shape[0])
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def _symmetric_info_nce_per_pair(a: chex.Array, b: chex.Array, scale: chex.Array) -> chex.Array:
  """``(CE_i(s A B^T) + CE_i(s B A^T)) / 2`` per row ``i``; shape [N]."""
  logits = scale * _sim(a, b)
  return 0.5 * (_diag_ce(logits) + _diag_ce(logits.T))


def clip_loss_per_pair(
  image_emb: chex.Array, text_emb: chex.Array, scale: chex.Numeric
) -> chex.Array:
  r"""Per-pair symmetric InfoNCE (CLIP / MMCL) loss.

  With logits ``L = s I T^T`` (``[N, N]``), the loss of pair ``i`` is the mean of
  the image->text and text->image cross-entropies of row ``i``::

    l_i = ( -log softmax(L_{i,:})_i  -  log softmax(L_{:,i})_i ) / 2
        = ( CE(L, arange)_i + CE(L^T, arange)_i ) / 2

  so that ``mean_i l_i == clip_loss``. Used by per-sample defenses (ABL
  isolation, per-pair weighting). Note that ``l_i`` still depends on every
  other pair of the batch through the softmax normalisers.

  Args:
    image_emb: ``[N, D]`` L2-normalised image embeddings (global batch).
    text_emb: ``[N, D]`` L2-normalised text embeddings, paired row by row.
    scale: scalar ``s = exp(logit_scale)``.

  Returns:
    ``[N]`` per-pair losses, float32 (or wider).
  """
  _check_embeddings(image_emb, text_emb)
  dtype = _compute_dtype(image_emb, text_emb)
  scale = _as_scalar(scale, dtype)
  return _symmetric_info_nce_per_pair(image_emb.astype(dtype), text_emb.astype(dtype), scale)


def clip_loss(image_emb: chex.Array, text_emb: chex.Array, scale: chex.Numeric) -> chex.Array:
  r"""Symmetric InfoNCE (CLIP / MMCL) loss over the global batch.

  ::

    L = s I T^T                                     # [N, N]
    loss = ( CE(L, arange) + CE(L^T, arange) ) / 2  # each CE a mean over rows

  i.e. ``mean(clip_loss_per_pair(image_emb, text_emb, scale))``. Symmetric in
  ``(image_emb, text_emb)``.

  Args:
    image_emb: ``[N, D]`` L2-normalised image embeddings (global batch).
    text_emb: ``[N, D]`` L2-normalised text embeddings, paired row by row.
    scale: scalar ``s = exp(logit_scale)`` (not its log).

  Returns:
    Scalar loss, float32 (or wider).
  """
  return jnp.mean(clip_loss_per_pair(image_emb, text_emb, scale))


def inmodal_loss_per_pair(
  image_emb: chex.Array,
  aug_image_emb: chex.Array,
  text_emb: chex.Array,
  aug_text_emb: chex.Array,
  scale: chex.Numeric,
) -> chex.Array:
  r"""Per-pair in-modal (self-supervised) contrastive loss.

  ::

    l_i = ( CE(s I I'^T, arange)_i + CE(s T T'^T, arange)_i ) / 2

  where ``I'`` / ``T'`` are the embeddings of the augmented image / caption.
  As in the reference (CleanCLIP) code, each modality's CE is one-directional
  (rows of ``I I'^T``, i.e. original -> augmented). ``mean_i l_i ==
  inmodal_loss``.

  Args:
    image_emb: ``[N, D]`` image embeddings.
    aug_image_emb: ``[N, D]`` embeddings of the augmented images.
    text_emb: ``[N, D]`` text embeddings.
    aug_text_emb: ``[N, D]`` embeddings of the augmented captions.
    scale: scalar ``s = exp(logit_scale)``.

  Returns:
    ``[N]`` per-pair losses, float32 (or wider).
  """
  _check_embeddings(image_emb, aug_image_emb, text_emb, aug_text_emb)
  dtype = _compute_dtype(image_emb, aug_image_emb, text_emb, aug_text_emb)
  scale = _as_scalar(scale, dtype)
  image_emb, aug_image_emb, text_emb, aug_text_emb = (
    x.astype(dtype) for x in (image_emb, aug_image_emb, text_emb, aug_text_emb)
  )
  image_ce = _diag_ce(scale * _sim(image_emb, aug_image_emb))
  text_ce = _diag_ce(scale * _sim(text_emb, aug_text_emb))
  return 0.5 * (image_ce + text_ce)


def inmodal_loss(
  image_emb: chex.Array,
  aug_image_emb: chex.Array,
  text_emb: chex.Array,
  aug_text_emb: chex.Array,
  scale: chex.Numeric,
) -> chex.Array:
  r"""In-modal (self-supervised) contrastive loss, the SSL term of MMCL+SSL.

  ::

    loss = ( CE(s I I'^T, arange) + CE(s T T'^T, arange) ) / 2

  each CE a mean over the batch; equals ``mean(inmodal_loss_per_pair(...))``.
  CleanCLIP's cleaning objective is ``clip_loss + inmodal_loss`` (both weights
  1 by default); the caller combines them.

  Args:
    image_emb: ``[N, D]`` image embeddings.
    aug_image_emb: ``[N, D]`` embeddings of the augmented images.
    text_emb: ``[N, D]`` text embeddings.
    aug_text_emb: ``[N, D]`` embeddings of the augmented captions.
    scale: scalar ``s = exp(logit_scale)``.

  Returns:
    Scalar loss, float32 (or wider).
  """
  return jnp.mean(inmodal_loss_per_pair(image_emb, aug_image_emb, text_emb, aug_text_emb, scale))


def cyclip_loss_per_pair(
  image_emb: chex.Array,
  text_emb: chex.Array,
  scale: chex.Numeric,
  lambda_inmodal: chex.Numeric = 0.25,
  lambda_crossmodal: chex.Numeric = 0.25,
) -> chex.Array:
  r"""Per-pair CyCLIP loss: row ``i`` of each term, so that ``mean_i l_i == cyclip_loss``.

  ::

    l_i = clip_i + l_in * sum_j (I_i.I_j - T_i.T_j)^2 + l_cross * sum_j (I_i.T_j - T_i.I_j)^2

  Args and dtype as `cyclip_loss`. Returns ``[N]`` per-pair losses.
  """
  _check_embeddings(image_emb, text_emb)
  dtype = _compute_dtype(image_emb, text_emb)
  lambda_inmodal = _as_scalar(lambda_inmodal, dtype)
  lambda_crossmodal = _as_scalar(lambda_crossmodal, dtype)
  contrastive = clip_loss_per_pair(image_emb, text_emb, scale)
  i = image_emb.astype(dtype)
  t = text_emb.astype(dtype)
  image_text = _sim(i, t)
  c_in = jnp.sum(jnp.square(_sim(i, i) - _sim(t, t)), axis=1)
  c_cross = jnp.sum(jnp.square(image_text - image_text.T), axis=1)
  return contrastive + lambda_inmodal * c_in + lambda_crossmodal * c_cross


def cyclip_loss(
  image_emb: chex.Array,
  text_emb: chex.Array,
  scale: chex.Numeric,
  lambda_inmodal: chex.Numeric = 0.25,
  lambda_crossmodal: chex.Numeric = 0.25,
) -> chex.Array:
  r"""CyCLIP loss (Goel et al. 2022): CLIP plus cyclic-consistency terms.

  ::

    loss    = clip_loss(I, T, s) + l_in * C_in + l_cross * C_cross
    C_in    = N * mean( (I I^T - T T^T)^2 ) = sum( (I I^T - T T^T)^2 ) / N
    C_cross = N * mean( (I T^T - T I^T)^2 ) = sum( (I T^T - T I^T)^2 ) / N

  with ``l_in = l_cross = 0.25`` by default. The reference code writes the
  regularisers with logits, ``sum((s I I^T - s T T^T)^2) / (s^2 N)`` and
  likewise for the cross term; dividing by ``s^2`` makes that the same value
  as the cosine form used here (so the regularisers do not depend on ``s``
  and carry no gradient to it). Both terms vanish when ``I == T``.
  Equals ``mean(cyclip_loss_per_pair(...))``.

  Args:
    image_emb: ``[N, D]`` L2-normalised image embeddings (global batch).
    text_emb: ``[N, D]`` L2-normalised text embeddings.
    scale: scalar ``s = exp(logit_scale)``.
    lambda_inmodal: weight ``l_in`` of the in-modal consistency term.
    lambda_crossmodal: weight ``l_cross`` of the cross-modal consistency term.

  Returns:
    Scalar loss, float32 (or wider).
  """
  return jnp.mean(
    cyclip_loss_per_pair(image_emb, text_emb, scale, lambda_inmodal, lambda_crossmodal)
  )


def siglip_loss_per_pair(
  image_emb: chex.Array,
  text_emb: chex.Array,
  scale: chex.Numeric,
  bias: chex.Numeric,
) -> chex.Array:
  r"""Per-image SigLIP loss, ``l_i = sum_j -log sigmoid(z_ij (s I_i . T_j + b))``.

  ``mean_i l_i == siglip_loss``. Args as `siglip_loss`; returns ``[N]``.
  """
  _check_embeddings(image_emb, text_emb)
  dtype = _compute_dtype(image_emb, text_emb)
  scale = _as_scalar(scale, dtype)
  bias = _as_scalar(bias, dtype)
  n = image_emb.shape[0]
  logits = scale * _sim(image_emb.astype(dtype), text_emb.astype(dtype)) + bias
  signs = 2.0 * jnp.eye(n, dtype=dtype) - 1.0
  return -jnp.sum(jax.nn.log_sigmoid(signs * logits), axis=1)


def siglip_loss(
  image_emb: chex.Array,
  text_emb: chex.Array,
  scale: chex.Numeric,
  bias: chex.Numeric,
) -> chex.Array:
  r"""Pairwise sigmoid loss (SigLIP, Zhai et al. 2023).

  ::

    z_ij = +1 if i == j else -1
    loss = (1/N) sum_i sum_j -log sigmoid( z_ij * (s I_i . T_j + b) )

  i.e. a mean over images of the sum over all captions, so the ``N^2`` binary
  terms are divided by ``N`` (not ``N^2``). The paper initialises
  ``s = 10`` (``logit_scale = log 10``) and ``b = -10``. Symmetric in
  ``(image_emb, text_emb)``. Equals ``mean(siglip_loss_per_pair(...))``.

  Args:
    image_emb: ``[N, D]`` L2-normalised image embeddings (global batch).
    text_emb: ``[N, D]`` L2-normalised text embeddings.
    scale: scalar ``s = exp(logit_scale)``.
    bias: scalar learned bias ``b``.

  Returns:
    Scalar loss, float32 (or wider).
  """
  return jnp.mean(siglip_loss_per_pair(image_emb, text_emb, scale, bias))
