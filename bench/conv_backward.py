"""Where RN50's training time goes on XLA:CPU: its 3 x 3 convolutions, pass by pass.

    .venv/bin/python bench/conv_backward.py --batch=16

For every distinct 3 x 3 stride-1 convolution of CLIP's RN50 at 224 px (the stem's two, then
each stage's, at the batch given), times the jitted forward pass, the input gradient and the
weight gradient of `bdjax.models.conv.conv3x3` (XLA's convolution forward and for dL/dx; nine
tap matmuls for dL/dW), XLA's own weight gradient (autodiff of `lax.conv_general_dilated`),
and the whole forward + backward done as im2col matmuls (the patches `[B H W, 9 C]` built once
and kept for dL/dW). Prints GFLOP/s (2 B H W C O 9 per pass, best of 5) as a Markdown table,
and XLA's own float32 matmul at 2048 for scale.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from bdjax.models.conv import conv3x3

# (spatial size, in, out, how many of this shape RN50 has)
RN50_3X3 = [
  (112, 32, 32, 1),
  (112, 32, 64, 1),
  (56, 64, 64, 3),
  (56, 128, 128, 1),
  (28, 128, 128, 3),
  (28, 256, 256, 1),
  (14, 256, 256, 5),
  (14, 512, 512, 1),
  (7, 512, 512, 2),
]


def _seconds(fn, *args, repeats: int = 5) -> float:
  jax.block_until_ready(fn(*args))
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - start)
  return best


def _xla_conv(x: jax.Array, w: jax.Array) -> jax.Array:
  dims = ('NHWC', 'HWIO', 'NHWC')
  return jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dims)


def _patches(x: jax.Array) -> jax.Array:
  """`[B, H, W, C] -> [B H W, 9 C]`: the 3 x 3 neighbourhoods (zero padding) as rows."""
  b, h, w, c = x.shape
  p = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  taps = [p[:, i : i + h, j : j + w, :] for i in range(3) for j in range(3)]
  return jnp.concatenate(taps, axis=-1).reshape(b * h * w, 9 * c)


@jax.custom_vjp
def _im2col_conv(x: jax.Array, w: jax.Array) -> jax.Array:
  return _im2col_fwd(x, w)[0]


def _im2col_fwd(x, w):
  b, h, wd, c = x.shape
  p = _patches(x)
  return (p @ w.reshape(9 * c, -1)).reshape(b, h, wd, -1), (p, w)


def _im2col_bwd(residuals, g):
  p, w = residuals
  b, h, wd, o = g.shape
  c = w.shape[2]
  dw = (p.T @ g.reshape(-1, o)).reshape(w.shape)
  flipped = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2).reshape(9 * o, c)
  return (_patches(g) @ flipped).reshape(b, h, wd, c), dw


_im2col_conv.defvjp(_im2col_fwd, _im2col_bwd)


def passes(conv):
  """Jitted `(forward, input gradient, weight gradient, forward + backward)` of `conv`."""

  def grad(which):
    return jax.jit(lambda x, w, g: jax.vjp(conv, x, w)[1](g)[which])

  def both(x, w, g):
    y, pullback = jax.vjp(conv, x, w)
    return y, pullback(g)

  return jax.jit(conv), grad(0), grad(1), jax.jit(both)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--batch', type=int, default=16)
  args = parser.parse_args()
  ours, xla, im2col = passes(conv3x3), passes(_xla_conv), passes(_im2col_conv)
  n = 2048
  a = jax.random.normal(jax.random.key(0), (n, n))
  peak = 2 * n**3 / _seconds(jax.jit(jnp.dot), a, a)
  print(f'XLA float32 matmul {n}^2: {peak / 1e9:.0f} GFLOP/s; batch {args.batch}\n')
  print(
    '| H = W | in -> out | in RN50 | forward | dL/dx | dL/dW (9 matmuls) | dL/dW (XLA) | '
    'fwd + bwd, bdjax | fwd + bwd, im2col |'
  )
  print('|---:|---|---:|---:|---:|---:|---:|---:|---:|')
  kx, kw, kg = jax.random.split(jax.random.key(1), 3)
  for size, c, o, count in RN50_3X3:
    x = jax.random.normal(kx, (args.batch, size, size, c))
    w = jax.random.normal(kw, (3, 3, c, o)) * 0.05
    g = jax.random.normal(kg, (args.batch, size, size, o))
    flops = 2 * args.batch * size * size * c * o * 9
    times = [
      _seconds(ours[0], x, w),
      _seconds(ours[1], x, w, g),
      _seconds(ours[2], x, w, g),
      _seconds(xla[2], x, w, g),
    ]
    rates = [flops / t / 1e9 for t in times]
    rates += [3 * flops / _seconds(f[3], x, w, g) / 1e9 for f in (ours, im2col)]
    cells = ' | '.join(f'{r:.0f}' for r in rates)
    print(f'| {size} | {c} -> {o} | {count} | {cells} |', flush=True)


if __name__ == '__main__':
  main()
