"""CLIP's ModifiedResNet image tower (OpenAI RN50 / RN101 / RN50x4 ...), with BatchNorm.

Images ``[B, H, W, 3]`` (NHWC, normalised) -> features ``[B, output_dim]`` (not normalised).
``w`` is ``width``, ``BN`` BatchNorm, every 3x3 conv has padding 1 and no conv has a bias:

    stem:     x = relu(BN(conv3x3(x, w/2, stride 2)))                    H/2
              x = relu(BN(conv3x3(x, w/2)));  x = relu(BN(conv3x3(x, w)))
              x = avgpool2x2(x)                                          H/4
    layer_i:  layers[i] Bottleneck blocks of planes p_i = w * 2^(i-1), i = 1..4; the first
              block of layer_i has stride s_i = (1, 2, 2, 2)[i-1]         H/4, /8, /16, /32
    attnpool: AttentionPool2d over the final (H/32) x (W/32) grid of C = 32 w channels

Bottleneck (expansion 4; ``inplanes`` = input channels, ``p`` = planes, ``s`` = stride):

    y = relu(BN(conv1x1(x, p)));  y = relu(BN(conv3x3(y, p)))
    y = avgpool_s(y)                       anti-aliased: pool, then a stride-1 conv (s > 1)
    y = BN(conv1x1(y, 4p))
    r = BN(conv1x1(avgpool_s(x), 4p))      if s > 1 or inplanes != 4p, else r = x
    out = relu(y + r)

The stride-1 convolutions are conv.py's ``Conv1x1`` / ``Conv3x3`` (the same functions and
parameters as ``nn.Conv``, with gradients XLA:CPU computes several times faster).

``avgpool_s`` is an s x s average pool with stride s (PyTorch ``AvgPool2d(s)``: odd sizes
are floored). AttentionPool2d on ``x [B, h, w, C]`` with ``n = h w`` tokens, ``heads``
heads of size ``d = C / heads`` (default ``heads = 32 w / 64``, as OpenAI):

    t = [mean_j x_j; x_1; ...; x_n] + positional_embedding        [B, n + 1, C]
    q = q_proj(t_0),  k = k_proj(t),  v = v_proj(t)                (Dense with bias, C -> C)
    a_h = softmax(q_h . k_h^T / sqrt(d))                           [B, heads, n + 1], float32
    out = c_proj(concat_h(a_h v_h))                                [B, output_dim]

Only the mean token is a query: OpenAI runs full attention and keeps row 0, which is the
same. Nor are ``k_proj`` and ``v_proj`` applied to every token: with ``K_h``, ``V_h`` the
head's columns of their kernels and ``kb``, ``vb`` their biases,
``q_h . k_h,n = t_n . (K_h q_h) + q_h . kb_h`` and
``sum_n a_h,n v_h,n = (sum_n a_h,n t_n) V_h + vb_h`` (the weights sum to 1), so each kernel
meets one vector per head instead of ``n + 1`` tokens: 6% of RN50's training FLOPs saved.
``q_h . kb_h`` is the same for every token, and softmax ignores it. The positional table
(``n + 1`` rows) is sized from the input at ``init``; at another (square-gridded)
resolution it is resized bicubically as the ViT's is (see vit.py).

Parameter correspondence with OpenAI's ``visual.*`` (PyTorch -> Flax). Rule: the PyTorch
module path with '.' replaced by '_' inside ``layer{i}.{j}`` and ``downsample.{k}``, then

    conv*.weight [out, in, kh, kw]   -> .../conv*/kernel [kh, kw, in, out]  (transpose 2, 3, 1, 0)
    bn*.{weight,bias}                -> params .../bn*/{scale,bias}
    bn*.{running_mean,running_var}   -> batch_stats .../bn*/{mean,var}  (num_batches_tracked: drop)
    layer{i}.{j}.{conv,bn}{k}.*      -> layer{i}_{j}/{conv,bn}{k}/*
    layer{i}.{j}.downsample.0.weight -> layer{i}_{j}/downsample_0/kernel  (the conv; the
                                        AvgPool "-1" has no parameters)
    layer{i}.{j}.downsample.1.*      -> layer{i}_{j}/downsample_1/*       (its BatchNorm)
    attnpool.positional_embedding    -> attnpool/positional_embedding [n + 1, C] (same layout)
    attnpool.{q,k,v,c}_proj.weight   -> attnpool/{q,k,v,c}_proj/kernel  (transposed, [in, out])
    attnpool.{q,k,v,c}_proj.bias     -> attnpool/{q,k,v,c}_proj/bias

Initialisation follows OpenAI's ``CLIP.initialize_parameters``: q/k/v/c_proj kernels
``N(0, C^-1/2)`` (biases zero here), every Bottleneck's ``bn3`` scale zero (each block
starts as ``relu(r)``); convs are He-normal (fan_out), as torchvision's ResNet; other
BatchNorms scale 1, bias 0; positional embedding ``N(0, C^-1/2)``.

BatchNorm: ``momentum=0.9`` in Flax's convention (``running = 0.9 running + 0.1 batch``,
PyTorch's ``momentum=0.1``), ``epsilon=1e-5``; statistics live in the ``batch_stats``
collection. ``train=False`` (the default, how CLIP towers are normally run) normalises with
the running statistics, so each image's features are independent of the rest of the batch;
``train=True`` normalises with the batch statistics and updates the running ones, which
needs ``apply(..., train=True, mutable=['batch_stats'])``. Flax stores the biased batch
variance in ``var`` where PyTorch stores the unbiased one (factor ``m / (m - 1)``, ``m`` =
B H W per channel; negligible at CLIP's batch sizes). Under data parallelism the batch
statistics must be those of the global batch: under ``jax.jit`` on globally sharded arrays
(how bdjax trains) the mean over the batch axis is a global reduction and XLA inserts the
cross-device all-reduce, so nothing is needed; ``axis_name`` would only be needed under
``pmap`` / ``shard_map``, which this module does not support.

Each Bottleneck's output is sown into ``intermediates`` as ``layer{i}_{j}/out`` (the stage
outputs are the last block of each layer, e.g. ``layer4_2`` for RN50) and the stem's
output as ``stem`` (no-ops unless ``apply(..., mutable=['intermediates'])``).
"""

from __future__ import annotations

from typing import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from .conv import KERNEL_INIT, Conv1x1, Conv3x3
from .transformer import Weights
from .vit import resize_positional_embedding

BN_MOMENTUM = 0.9  # Flax convention; PyTorch's BatchNorm2d default momentum=0.1.
BN_EPS = 1e-5  # PyTorch's BatchNorm2d default.
EXPANSION = 4  # Bottleneck output channels = EXPANSION * planes.


def avg_pool(x: jax.Array, s: int) -> jax.Array:
  """``s x s`` average pool with stride ``s`` on NHWC (PyTorch ``AvgPool2d(s)``); identity at 1."""
  if s == 1:
    return x
  return nn.avg_pool(x, (s, s), strides=(s, s), padding='VALID')


def _conv(features: int, k: int, dtype: jnp.dtype, name: str) -> nn.Module:
  """A bias-free stride-1 ``k x k`` conv (k = 1 or 3) with PyTorch's padding ``k // 2``."""
  return (Conv1x1 if k == 1 else Conv3x3)(features, dtype=dtype, name=name)


def _bn(train: bool, dtype: jnp.dtype, name: str, zero: bool = False) -> nn.BatchNorm:
  return nn.BatchNorm(
    use_running_average=not train,
    momentum=BN_MOMENTUM,
    epsilon=BN_EPS,
    scale_init=nn.initializers.zeros if zero else nn.initializers.ones,
    dtype=dtype,
    name=name,
  )


class Bottleneck(nn.Module):
  """``relu(conv-BN path + shortcut)``, ``[B, H, W, inplanes] -> [B, H/s, W/s, 4 planes]``."""

  planes: int
  stride: int = 1
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    chex.assert_rank(x, 4)
    b, h, w, inplanes = x.shape
    out_ch = self.planes * EXPANSION
    y = jax.nn.relu(_bn(train, self.dtype, 'bn1')(_conv(self.planes, 1, self.dtype, 'conv1')(x)))
    y = jax.nn.relu(_bn(train, self.dtype, 'bn2')(_conv(self.planes, 3, self.dtype, 'conv2')(y)))
    y = avg_pool(y, self.stride)
    y = _bn(train, self.dtype, 'bn3', zero=True)(_conv(out_ch, 1, self.dtype, 'conv3')(y))
    if self.stride > 1 or inplanes != out_ch:
      r = _conv(out_ch, 1, self.dtype, 'downsample_0')(avg_pool(x, self.stride))
      x = _bn(train, self.dtype, 'downsample_1')(r)
    out = jax.nn.relu(y + x)
    chex.assert_shape(out, (b, h // self.stride, w // self.stride, out_ch))
    self.sow('intermediates', 'out', out)
    return out


class AttentionPool2d(nn.Module):
  """Attention pooling with the mean token as the query: ``[B, h, w, C] -> [B, output_dim]``."""

  heads: int
  output_dim: int
  dtype: jnp.dtype = jnp.float32

  def _positional_embedding(self, grid: tuple[int, int], c: int) -> jax.Array:
    n_tokens = 1 + grid[0] * grid[1]
    if self.has_variable('params', 'positional_embedding'):
      pos = self.get_variable('params', 'positional_embedding')
    else:
      pos = self.param(
        'positional_embedding', nn.initializers.normal(c**-0.5), (n_tokens, c), jnp.float32
      )
    if pos.shape != (n_tokens, c):
      pos = resize_positional_embedding(pos, grid)
    return pos

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    chex.assert_rank(x, 4)
    b, h, w, c = x.shape
    if c % self.heads:
      raise ValueError(f'attention pool width {c} is not divisible by heads {self.heads}')
    d = c // self.heads
    x = x.reshape(b, h * w, c)
    mean = jnp.mean(x.astype(jnp.float32), axis=1, keepdims=True).astype(x.dtype)
    t = jnp.concatenate([mean, x], axis=1)
    t = t + self._positional_embedding((h, w), c).astype(t.dtype)
    dense = lambda n, name: nn.Dense(  # noqa: E731
      n, dtype=self.dtype, kernel_init=nn.initializers.normal(c**-0.5), name=name
    )
    heads, t = self.heads, t.astype(self.dtype)
    q = dense(c, 'q_proj')(t[:, 0]).reshape(b, heads, d) * d**-0.5
    k_kernel, _, v_kernel, v_bias = (
      a.astype(self.dtype)
      for n in ('k_proj', 'v_proj')
      for a in Weights((c, c), (c,), c**-0.5, name=n)()
    )
    # q_h . (t_n K_h + kb_h) = t_n . (K_h q_h) + q_h . kb_h, the last term the same for every
    # token (softmax ignores it): K_h q_h once, not K_h for every t_n.
    u = jnp.einsum('chd,bhd->bch', k_kernel.reshape(c, heads, d), q)
    logits = jnp.einsum('bnc,bch->bhn', t, u, preferred_element_type=jnp.float32)
    weights = jax.nn.softmax(logits, axis=-1).astype(t.dtype)
    # sum_n a_hn (t_n V_h + vb_h) = (sum_n a_hn t_n) V_h + vb_h, as the weights sum to 1.
    mixed = jnp.einsum('bhn,bnc->bhc', weights, t)
    out = jnp.einsum('bhc,chd->bhd', mixed, v_kernel.reshape(c, heads, d))
    out = out + v_bias.reshape(heads, d)
    out = dense(self.output_dim, 'c_proj')(out.reshape(b, c))
    chex.assert_shape(out, (b, self.output_dim))
    return out


class ModifiedResNet(nn.Module):
  """CLIP ResNet: images ``[B, H, W, 3]`` (NHWC, normalised) -> features ``[B, output_dim]``.

  ``layers`` is blocks per stage, e.g. RN50 ``(3, 4, 6, 3)`` width 64, RN101 ``(3, 4, 23, 3)``
  width 64, RN50x4 ``(4, 6, 10, 6)`` width 80. ``heads=None`` means ``32 width / 64``.
  H and W should be multiples of 32 (other sizes are floored by the pools).
  """

  layers: Sequence[int]
  output_dim: int
  width: int = 64
  heads: int | None = None
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> jax.Array:
    chex.assert_rank(images, 4)
    chex.assert_axis_dimension(images, 3, 3)
    if len(self.layers) != 4:
      raise ValueError(f'ModifiedResNet needs 4 stages of blocks, got layers={self.layers}')
    b = images.shape[0]
    x = images.astype(self.dtype)
    stem = nn.Conv(  # stride 2; its input (the images) needs no gradient
      self.width // 2,
      (3, 3),
      strides=(2, 2),
      padding=((1, 1), (1, 1)),
      use_bias=False,
      kernel_init=KERNEL_INIT,
      dtype=self.dtype,
      name='conv1',
    )
    x = jax.nn.relu(_bn(train, self.dtype, 'bn1')(stem(x)))
    for i, features in ((2, self.width // 2), (3, self.width)):
      x = jax.nn.relu(
        _bn(train, self.dtype, f'bn{i}')(_conv(features, 3, self.dtype, f'conv{i}')(x))
      )
    x = avg_pool(x, 2)
    self.sow('intermediates', 'stem', x)
    for i, blocks in enumerate(self.layers, start=1):
      planes = self.width * 2 ** (i - 1)
      for j in range(blocks):
        stride = 2 if i > 1 and j == 0 else 1
        x = Bottleneck(planes, stride, dtype=self.dtype, name=f'layer{i}_{j}')(x, train)
    heads = self.heads if self.heads is not None else self.width * 32 // 64
    x = AttentionPool2d(heads, self.output_dim, dtype=self.dtype, name='attnpool')(x)
    chex.assert_shape(x, (b, self.output_dim))
    return x
