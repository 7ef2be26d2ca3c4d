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
  """OpenAI CLIP's GELU approximation: ``x * sigmoid(1.702 x)``, computed as
  ``x * (1 + tanh(0.851 x)) / 2`` (the same function; XLA's tanh is cheaper than its logistic,
  about 8% of an MLP's forward and backward on the CPU)."""
  return x * (0.5 + 0.5 * jnp.tanh(0.851 * x))


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


def _rows(x: jax.Array) -> jax.Array:
  """``[..., w] -> [N, w]``: dense layers run as one 2-D matmul. XLA:CPU computes the weight
  gradient of a rank-3 ``dot_general`` (contracting batch and length together) about 1.6x slower
  than the same 2-D one; the reshapes are free (bitcasts)."""
  return x.reshape(-1, x.shape[-1])


class Weights(nn.Module):
  """A ``kernel`` and a ``bias`` parameter (a projection's), returned for the caller to apply."""

  kernel_shape: tuple[int, ...]
  bias_shape: tuple[int, ...]
  std: float

  @nn.compact
  def __call__(self) -> tuple[jax.Array, jax.Array]:
    kernel = self.param('kernel', nn.initializers.normal(self.std), self.kernel_shape, jnp.float32)
    return kernel, self.param('bias', nn.initializers.zeros, self.bias_shape, jnp.float32)


class SelfAttention(nn.Module):
  """Multi-head self-attention, ``[B, L, w] -> [B, L, w]``, with Flax
  ``MultiHeadDotProductAttention``'s parameters (``query``/``key``/``value``: kernel
  ``[w, h, d]``, bias ``[h, d]``; ``out``: kernel ``[h, d, w]``, bias ``[w]``) and maths:

      q, k, v = x W_q + b_q, x W_k + b_k, x W_v + b_v       (one [N, w] x [w, 3w] matmul)
      a = softmax(q k^T / sqrt(d)  where mask, else finfo.min)   per head, float32
      out = concat_h(a v) W_o + b_o

  Projections run as 2-D matmuls (``_rows``) and the three input projections as one.
  ``mask`` (boolean, broadcastable to ``[B, h, L, L]``) marks the keys each query may see.
  """

  width: int
  heads: int
  attn_std: float = 0.02
  proj_std: float = 0.02
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    b, length, w = x.shape
    h = self.heads
    d = w // h
    qkv = [Weights((w, h, d), (h, d), self.attn_std, name=n)() for n in ('query', 'key', 'value')]
    kernel = jnp.concatenate([k.reshape(w, w) for k, _ in qkv], axis=1).astype(self.dtype)
    bias = jnp.concatenate([bb.reshape(w) for _, bb in qkv]).astype(self.dtype)
    y = (_rows(x.astype(self.dtype)) @ kernel + bias).reshape(b, length, 3, h, d)
    q, k, v = (jnp.transpose(y[:, :, i], (0, 2, 1, 3)) for i in range(3))  # [B, h, L, d]
    logits = jnp.einsum('bhqd,bhkd->bhqk', q / jnp.sqrt(d).astype(q.dtype), k)
    logits = logits.astype(jnp.float32)
    if mask is not None:
      logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    y = jnp.transpose(jnp.einsum('bhqk,bhkd->bhqd', weights, v), (0, 2, 1, 3))
    out_kernel, out_bias = Weights((h, d, w), (w,), self.proj_std, name='out')()
    y = _rows(y.reshape(b, length, w)) @ out_kernel.reshape(w, w).astype(self.dtype)
    return (y + out_bias.astype(self.dtype)).reshape(b, length, w)


class MLP(nn.Module):
  """``c_proj(act(c_fc(x)))`` with hidden size ``int(width * mlp_ratio)`` (2-D matmuls)."""

  width: int
  mlp_ratio: float = 4.0
  act: str = 'quick_gelu'
  fc_std: float = 0.02
  proj_std: float = 0.02
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    hidden = int(self.width * self.mlp_ratio)
    y = nn.Dense(
      hidden, dtype=self.dtype, name='c_fc', kernel_init=nn.initializers.normal(self.fc_std)
    )(_rows(x))
    y = activation(self.act)(y)
    y = nn.Dense(
      self.width, dtype=self.dtype, name='c_proj', kernel_init=nn.initializers.normal(self.proj_std)
    )(y)
    return y.reshape(*x.shape[:-1], self.width)


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
    y = SelfAttention(
      self.width, self.heads, self.attn_std, self.proj_std, dtype=self.dtype, name='attn'
    )(y, mask)
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
