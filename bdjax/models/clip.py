"""Two towers and a learned temperature: the CLIP (and SigLIP) model.

    image_emb = normalise(image_tower(images))         [B, D], float32
    text_emb  = normalise(text_tower(tokens))          [B, D], float32
    scale     = min(exp(logit_scale), max_scale)       scalar
    bias      = logit_bias                             scalar (SigLIP only)

``normalise(x) = x / ||x||_2`` is computed in float32 whatever the towers' dtype.
The clamp is ``jnp.minimum``, so the gradient with respect to ``logit_scale`` is zero
while ``exp(logit_scale) > max_scale``, the effect of OpenAI clamping the parameter
at ``log(100)`` after each step.

Parameter correspondence with OpenAI's ``CLIP`` (PyTorch -> Flax):

    visual.*         -> image_tower/*   (see vit.py)
    token_embedding, positional_embedding, transformer, ln_final, text_projection
                     -> text_tower/*    (see text.py)
    logit_scale      -> logit_scale     (scalar, log-space)
    (open_clip SigLIP) logit_bias -> logit_bias

``model.init(rng, images, tokens)`` creates every variable; afterwards each tower
runs alone with ``model.apply(variables, x, method='encode_image' | 'encode_text')``.

``train`` reaches the image tower: a tower with BatchNorm (resnet.py) keeps running
statistics in the ``batch_stats`` collection, uses them when ``train=False`` (evaluation,
the default) and normalises with the batch's own statistics when ``train=True``, which then
needs ``apply(..., train=True, mutable=['batch_stats'])``. The other towers ignore it.
"""

from __future__ import annotations

import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp


def l2_normalise(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """``x / ||x||`` along the last axis, in float32 (``eps`` bounds ``||x||^2`` below)."""
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps))


class CLIP(nn.Module):
  """Image and text towers mapping to a shared, L2-normalised embedding space.

  ``image_tower`` maps ``[B, H, W, 3]`` images and ``text_tower`` maps int ``[B, L]``
  tokens to ``[B, D]`` features of the same ``D``. ``logit_bias_init`` (SigLIP's
  ``b``, e.g. -10) adds the learned ``logit_bias``; ``None`` leaves it out.
  """

  image_tower: nn.Module
  text_tower: nn.Module
  logit_scale_init: float = math.log(1 / 0.07)
  logit_bias_init: float | None = None
  max_scale: float = 100.0

  def setup(self):
    self.logit_scale = self.param(
      'logit_scale', nn.initializers.constant(self.logit_scale_init), (), jnp.float32
    )
    if self.logit_bias_init is not None:
      self.logit_bias = self.param(
        'logit_bias', nn.initializers.constant(self.logit_bias_init), (), jnp.float32
      )

  def encode_image(self, images: jax.Array, train: bool = False) -> jax.Array:
    """Images ``[B, H, W, 3]`` -> unit-norm float32 embeddings ``[B, D]``."""
    chex.assert_rank(images, 4)
    emb = l2_normalise(self.image_tower(images, train=train))
    chex.assert_rank(emb, 2)
    return emb

  def encode_text(self, tokens: jax.Array) -> jax.Array:
    """Token ids ``[B, L]`` -> unit-norm float32 embeddings ``[B, D]``."""
    chex.assert_rank(tokens, 2)
    emb = l2_normalise(self.text_tower(tokens))
    chex.assert_rank(emb, 2)
    return emb

  def __call__(
    self, images: jax.Array, tokens: jax.Array, train: bool = False
  ) -> dict[str, jax.Array]:
    """Embeddings of paired ``images`` and ``tokens`` plus the logit scale (and bias).

    Returns ``dict(image_emb, text_emb, scale[, bias])``; ``bias`` only when
    ``logit_bias_init`` is set.
    """
    chex.assert_rank([images, tokens], [4, 2])
    chex.assert_axis_dimension(tokens, 0, images.shape[0])
    image_emb = self.encode_image(images, train)
    text_emb = self.encode_text(tokens)
    chex.assert_equal_shape([image_emb, text_emb])
    out = dict(
      image_emb=image_emb,
      text_emb=text_emb,
      scale=jnp.minimum(jnp.exp(self.logit_scale), self.max_scale),
    )
    if self.logit_bias_init is not None:
      out['bias'] = self.logit_bias
    return out
