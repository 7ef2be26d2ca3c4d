"""The pre-LN transformer shared by the image (ViT) and text towers.

Mirrors OpenAI CLIP's ``Transformer`` / ``ResidualAttentionBlock``:

    x = x + attn(ln_1(x))          attn: multi-head self-attention with biases
    x = x + mlp(ln_2(x))           mlp:  c_fc (width -> mlp_ratio * width), act, c_proj

Parameter correspondence (PyTorch ``transformer.resblocks.{i}.*`` -> Flax
``transformer/resblocks_{i}/*``; PyTorch linear weights are ``[out, in]``, Flax
kernels ``[in, out]``; ``h`` heads of size ``d = width / h``):

    ln_1.{weight,bias}           -> ln_1/{scale,bias}
    attn.in_proj_weight [3w, w]  -> attn/{query,key,value}/kernel  [w, h, d]
                                    (rows [0:w], [w:2w], [2w:3w], transposed, reshaped)
    attn.in_proj_bias [3w]       -> attn/{query,key,value}/bias    [h, d]
    attn.out_proj.weight [w, w]  -> attn/out/kernel [h, d, w]  (transposed, reshaped)
    attn.out_proj.bias [w]       -> attn/out/bias [w]
    ln_2.{weight,bias}           -> ln_2/{scale,bias}
    mlp.c_fc.{weight,bias}       -> mlp/c_fc/{kernel,bias}
    mlp.c_proj.{weight,bias}     -> mlp/c_proj/{kernel,bias}

Initialisation follows OpenAI's ``CLIP.initialize_parameters`` (used for both
towers here): ``attn_std = w^-1/2``, ``proj_std = w^-1/2 (2 depth)^-1/2``,
``fc_std = (2w)^-1/2``, biases zero. LayerNorm epsilon is PyTorch's 1e-5.

Each block's output is sown into the ``intermediates`` collection under
``resblocks_{i}/out`` (a no-op unless ``apply(..., mutable=['intermediates'])``),
for defenses that read hidden features (e.g. NAD).
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

LN_EPS = 1e-5  # PyTorch nn.LayerNorm default, as in OpenAI CLIP.


def quick_gelu(x: jax.Array) -> jax.Array:
  """OpenAI CLIP's GELU approximation: ``x * sigmoid(1.702 x)``."""
  return x * jax.nn.sigmoid(1.702 * x)


_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
  'quick_gelu': quick_gelu,
  'gelu': lambda x: jax.nn.gelu(x, approximate=False),  # torch.nn.GELU default
  'relu': jax.nn.relu,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
  """The activation function called ``name`` (one of ``quick_gelu``, ``gelu``, ``relu``)."""
  if name not in _ACTIVATIONS:
    raise ValueError(f'unknown activation {name!r}; allowed: {sorted(_ACTIVATIONS)}')
  return _ACTIVATIONS[name]


class MLP(nn.Module):
  """``c_proj(act(c_fc(x)))`` with hidden size ``int(width * mlp_ratio)``."""

  width: int
  mlp_ratio: float = 4.0
  act: str = 'quick_gelu'
  fc_std: float = 0.02
  proj_std: float = 0.02
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    hidden = int(self.width * self.mlp_ratio)
    x = nn.Dense(
      hidden, dtype=self.dtype, name='c_fc', kernel_init=nn.initializers.normal(self.fc_std)
    )(x)
    x = activation(self.act)(x)
    return nn.Dense(
      self.width, dtype=self.dtype, name='c_proj', kernel_init=nn.initializers.normal(self.proj_std)
    )(x)


class ResidualAttentionBlock(nn.Module):
  """One pre-LN block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``.

  ``mask`` (optional, boolean, broadcastable to ``[B, heads, L, L]``) marks the
  key positions each query may attend to.
  """

  width: int
  heads: int
  mlp_ratio: float = 4.0
  act: str = 'quick_gelu'
  attn_std: float = 0.02
  proj_std: float = 0.02
  fc_std: float = 0.02
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    y = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name='ln_1')(x)
    y = nn.MultiHeadDotProductAttention(
      num_heads=self.heads,
      dtype=self.dtype,
      use_bias=True,
      kernel_init=nn.initializers.normal(self.attn_std),
      out_kernel_init=nn.initializers.normal(self.proj_std),
      force_fp32_for_softmax=True,
      name='attn',
    )(y, mask=mask)
    x = x + y
    y = nn.LayerNorm(epsilon=LN_EPS, dtype=self.dtype, name='ln_2')(x)
    x = x + MLP(
      self.width,
      self.mlp_ratio,
      self.act,
      fc_std=self.fc_std,
      proj_std=self.proj_std,
      dtype=self.dtype,
      name='mlp',
    )(y)
    self.sow('intermediates', 'out', x)
    return x


class Transformer(nn.Module):
  """``depth`` residual attention blocks named ``resblocks_{i}``; ``[B, L, width]`` in and out."""

  width: int
  depth: int
  heads: int
  mlp_ratio: float = 4.0
  act: str = 'quick_gelu'
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    if self.width % self.heads:
      raise ValueError(f'transformer width {self.width} is not divisible by heads {self.heads}')
    attn_std = self.width**-0.5
    proj_std = attn_std * (2 * self.depth) ** -0.5
    fc_std = (2 * self.width) ** -0.5
    for i in range(self.depth):
      x = ResidualAttentionBlock(
        self.width,
        self.heads,
        self.mlp_ratio,
        self.act,
        attn_std=attn_std,
        proj_std=proj_std,
        fc_std=fc_std,
        dtype=self.dtype,
        name=f'resblocks_{i}',
      )(x, mask)
    return x
