"""Bias-free stride-1 convolutions for the ResNet tower, with the gradients XLA:CPU runs fast.

Both keep ``nn.Conv``'s parameter, ``kernel [k, k, in, out]`` (HWIO; images NHWC), and compute
the same function; only how the gradient is computed differs.

``Conv1x1``: ``y = x W`` as one 2-D matmul ``[B H W, in] x [in, out]``.

``Conv3x3`` (padding 1): the forward pass is XLA's convolution; the backward pass is, with
``g = dL/dy`` and ``x_p`` the zero-padded input,

    dL/dx = conv(g, W'),     W'[i, j, o, c] = W[2 - i, 2 - j, c, o]   (a forward conv again)
    dL/dW[i, j] = x_p[:, i:i+H, j:j+W, :]^T g     for each of the 9 taps, [in, B H W] x [B H W, out]

XLA:CPU's own weight gradient of a convolution (a convolution that contracts the batch and
spatial axes) is 5-20x slower than these nine matmuls at the ResNet's large spatial sizes
(56 x 56 and 112 x 112); bench/README.md ("Training step") has the measurements.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

KERNEL_INIT = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')  # He (fan_out)
_NHWC = ('NHWC', 'HWIO', 'NHWC')


class Conv1x1(nn.Module):
  """``[..., in] -> [..., features]`` by a 1 x 1 kernel ``[1, 1, in, features]``."""

  features: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    kernel = self.param('kernel', KERNEL_INIT, (1, 1, c, self.features), jnp.float32)
    y = x.reshape(-1, c).astype(self.dtype) @ kernel.reshape(c, self.features).astype(self.dtype)
    return y.reshape(*x.shape[:-1], self.features)


def _conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=_NHWC)


@jax.custom_vjp
def conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """``[B, H, W, in] * [3, 3, in, out] -> [B, H, W, out]``, stride 1, padding 1."""
  return _conv(x, kernel)


def _conv3x3_fwd(x, kernel):
  return _conv(x, kernel), (x, kernel)


def _conv3x3_bwd(residuals, g):
  x, kernel = residuals
  b, h, w, c = x.shape
  dx = _conv(g, jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2))
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  rows = g.reshape(-1, g.shape[-1])
  taps = [
    padded[:, i : i + h, j : j + w, :].reshape(-1, c).T @ rows for i in range(3) for j in range(3)
  ]
  return dx, jnp.stack(taps).reshape(kernel.shape).astype(kernel.dtype)


conv3x3.defvjp(_conv3x3_fwd, _conv3x3_bwd)


class Conv3x3(nn.Module):
  """``[B, H, W, in] -> [B, H, W, features]``, stride 1, padding 1, kernel ``[3, 3, in, out]``."""

  features: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param('kernel', KERNEL_INIT, (3, 3, x.shape[-1], self.features), jnp.float32)
    return conv3x3(x.astype(self.dtype), kernel.astype(self.dtype))
