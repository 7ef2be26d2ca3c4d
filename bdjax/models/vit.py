"""CLIP's Vision Transformer image tower.

    patches = conv1(images)                          [B, gh, gw, width], no bias
    x = [class_embedding; patches] + positional_embedding
    x = transformer(ln_pre(x))                       pre-LN blocks, no mask
    out = ln_post(x[:, 0]) @ proj                    [B, output_dim], not normalised

Parameter correspondence with OpenAI's ``visual.*`` (PyTorch -> Flax):

    conv1.weight [w, 3, p, p]          -> conv1/kernel [p, p, 3, w]  (transpose 2, 3, 1, 0)
    class_embedding [w]                -> class_embedding [w]
    positional_embedding [1 + g*g, w]  -> positional_embedding [1 + g*g, w]
    ln_pre / ln_post {weight, bias}    -> ln_pre / ln_post {scale, bias}
    transformer.resblocks.{i}.*        -> transformer/resblocks_{i}/*  (see transformer.py)
    proj [w, output_dim]               -> proj/kernel [w, output_dim]  (same layout)

The positional table is sized from the input at ``init`` (``1 + (H/p)(W/p)`` rows,
so any resolution divisible by ``patch_size`` works). Applied to a different
resolution, the (square) patch grid of the table is resized bicubically, as
open_clip's ``resize_pos_embed`` does, so a 224 px checkpoint can run at 32 px.
"""

from __future__ import annotations

import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from .transformer import LN_EPS, Transformer


def resize_positional_embedding(pos: jax.Array, grid: tuple[int, int]) -> jax.Array:
  """Resize ``[1 + n*n, w]`` (class row + square grid) to ``[1 + gh*gw, w]``, bicubic."""
  n = math.isqrt(pos.shape[0] - 1)
  if n * n != pos.shape[0] - 1:
    raise ValueError(
      f'cannot resize a positional embedding of {pos.shape[0] - 1} patches '
      f'(not a square grid) to grid {grid}'
    )
  cls, patches = pos[:1], pos[1:].reshape(n, n, pos.shape[-1])
  patches = jax.image.resize(
    patches.astype(jnp.float32), (*grid, pos.shape[-1]), method='bicubic', antialias=False
  )
  return jnp.concatenate([cls, patches.reshape(-1, pos.shape[-1]).astype(pos.dtype)])


class VisionTransformer(nn.Module):
  """CLIP ViT: images ``[B, H, W, 3]`` (NHWC, normalised) -> features ``[B, output_dim]``.

  Pass fields by keyword; ``act`` is ``'quick_gelu'`` (OpenAI) or ``'gelu'``.
  """

  patch_size: int
  width: int
  depth: int
  heads: int
  output_dim: int
  mlp_ratio: float = 4.0
  act: str = 'quick_gelu'
  dtype: jnp.dtype = jnp.float32

  def _positional_embedding(self, grid: tuple[int, int]) -> jax.Array:
    n_tokens = 1 + grid[0] * grid[1]
    if self.has_variable('params', 'positional_embedding'):
      pos = self.get_variable('params', 'positional_embedding')
    else:
      pos = self.param(
        'positional_embedding',
        nn.initializers.normal(self.width**-0.5),
        (n_tokens, self.width),
        jnp.float32,
      )
    if pos.shape[0] != n_tokens:
      pos = resize_positional_embedding(pos, grid)
    return pos

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    """``train`` is accepted for a uniform tower interface; nothing here depends on it."""
    del train
    chex.assert_rank(images, 4)
    b, h, w, _ = images.shape
    p = self.patch_size
    if h % p or w % p:
      raise ValueError(f'image size {h}x{w} is not divisible by patch size {p}')
    x = nn.Conv(
      self.width,
      (p, p),
      strides=(p, p),
      padding='VALID',
      use_bias=False,
      dtype=self.dtype,
      name='conv1',
    )(images)
    grid = (h // p, w // p)
    x = x.reshape(b, grid[0] * grid[1], self.width)
    cls = self.param(
      'class_embedding', nn.initializers.normal(self.width**-0.5), (self.width,), jnp.float32
    )
    cls = jnp.broadcast_to(cls.astype(x.dtype), (b, 1, self.width))
    x = jnp.concatenate([cls, x], axis=1)
    x = x + self._positional_embedding(grid).astype(x.dtype)
    x = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name='ln_pre')(x)
    x = Transformer(
      self.width,
      self.depth,
      self.heads,
      self.mlp_ratio,
      self.act,
      dtype=self.dtype,
      name='transformer',
    )(x)
    x = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name='ln_post')(x[:, 0])
    x = nn.Dense(
      self.output_dim,
      use_bias=False,
      dtype=self.dtype,
      name='proj',
      kernel_init=nn.initializers.normal(self.width**-0.5),
    )(x)
    chex.assert_shape(x, (b, self.output_dim))
    return x
