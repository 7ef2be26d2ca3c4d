"""Backdoor triggers: pure, jittable functions `(key, image) -> image` (REFERENCE.md section 3).

Every trigger takes one image `[H, W, C]` of any resolution and a PRNG key, and returns an
image of the same shape and dtype. Integer images are read as 0..255, float images as 0..1,
and the result is clipped back to that range (and rounded, for integer images). `apply`
vmaps a trigger over a batch with one key per image; `make_trigger(cfg)` builds one from
`config.attack`.

Triggers, with `x` the image in [0, 1]:

- `badnet_patch`: a `p x p` patch replaced by `clip(mean_c(x) + N(0, 1))`, drawn from `key`
  for every image (`pattern='per_image'`, the reference code), or by one `U[0, 1]` pattern
  from `pattern_seed` (`'fixed'`, classic BadNet); a `'random'` location comes from `key`.
- `solid_patch`: a `p x p` patch of one colour (CleanCLIP's "yellow" is (1, 1, 0)).
- `blend`: `(1 - alpha) x + alpha n` over the whole image, `n ~ U[0, 1]`: one fixed `n` from
  `pattern_seed` (`'fixed'`, Chen et al. 2017) or a new `n` per image from `key`
  (`'per_image'`, the reference code).
- `sig`: `x + A sin(2 pi f j / W)` at column `j` (horizontal sinusoid; A = 60/255, f = 6).
- `wanet`: `x` resampled (bilinear, align-corners) at `clip(g + s up(F) / H, -1, 1)`: `g` the
  identity grid in [-1, 1], `F` a `k x k x 2` field `U[-1, 1]` from `pattern_seed` divided by
  its mean magnitude, `up` bicubic upsampling to `H x W` (Nguyen & Tran 2021: k = 4, s = 0.5).

Patch sizes are pixels (an int) or a fraction of the shorter side (a float below 1).
Locations: `'random'` (uniform over every position where the patch fits), `'bottom_right'`,
`'top_left'`, `'center'`, or a `(row, col)` pair of the patch's top-left corner.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

Trigger = Callable[[jax.Array, jax.Array], jax.Array]
Location = str | tuple[int, int]

NAMES = ("badnet", "solid", "blended", "sig", "wanet")


def patch_pixels(size: int | float, side: int) -> int:
  """A patch size in pixels: `size` itself (an int), or `round(size * side)` (a float < 1)."""
  fraction = isinstance(size, (float, np.floating)) and size < 1
  pixels = round(float(size) * side) if fraction else int(size)
  if not 1 <= pixels <= side:
    raise ValueError(f"Patch size {size} gives {pixels} px, which does not fit a {side}-px side.")
  return pixels


def badnet_patch(
  key: jax.Array,
  image: jax.Array,
  size: int | float = 16,
  location: Location = "random",
  pattern: str = "per_image",
  pattern_seed: int = 0,
) -> jax.Array:
  """BadNet: pastes a `p x p` noise patch (see the module table for the two patterns)."""
  x = _to_unit(image)
  p = patch_pixels(size, min(x.shape[:2]))
  k_loc, k_noise = jax.random.split(key)
  if pattern == "per_image":
    mean = x.mean(axis=(0, 1))
    patch = mean + jax.random.normal(k_noise, (p, p, x.shape[-1]))
  elif pattern == "fixed":
    patch = jax.random.uniform(jax.random.key(pattern_seed), (p, p, x.shape[-1]))
  else:
    raise ValueError(f"Unknown BadNet pattern '{pattern}'; use 'per_image' or 'fixed'.")
  return _from_unit(_paste(k_loc, x, jnp.clip(patch, 0.0, 1.0), location), image.dtype)


def solid_patch(
  key: jax.Array,
  image: jax.Array,
  size: int | float = 16,
  location: Location = "random",
  color: Sequence[float] = (1.0, 1.0, 0.0),
) -> jax.Array:
  """A `p x p` patch of one colour (RGB in [0, 1]; CleanCLIP's "yellow" is (1, 1, 0))."""
  x = _to_unit(image)
  p = patch_pixels(size, min(x.shape[:2]))
  patch = jnp.broadcast_to(jnp.asarray(color, jnp.float32), (p, p, x.shape[-1]))
  return _from_unit(_paste(key, x, patch, location), image.dtype)


def blend(
  key: jax.Array,
  image: jax.Array,
  alpha: float = 0.2,
  pattern: str = "fixed",
  pattern_seed: int = 0,
) -> jax.Array:
  """Blended: `(1 - alpha) x + alpha n` with uniform noise `n` (fixed or per image)."""
  x = _to_unit(image)
  if pattern == "fixed":
    noise = jax.random.uniform(jax.random.key(pattern_seed), x.shape)
  elif pattern == "per_image":
    noise = jax.random.uniform(key, x.shape)
  else:
    raise ValueError(f"Unknown blend pattern '{pattern}'; use 'fixed' or 'per_image'.")
  return _from_unit((1.0 - alpha) * x + alpha * noise, image.dtype)


def sig(
  key: jax.Array, image: jax.Array, amplitude: float = 60 / 255, frequency: float = 6.0
) -> jax.Array:
  """SIG: adds `amplitude * sin(2 pi frequency j / W)` to every pixel of column `j`."""
  del key  # SIG is deterministic.
  x = _to_unit(image)
  width = x.shape[1]
  wave = amplitude * jnp.sin(2 * jnp.pi * frequency * jnp.arange(width) / width)
  return _from_unit(x + wave[None, :, None], image.dtype)


def wanet_grid(height: int, width: int, grid: int = 4, strength: float = 0.5, seed: int = 0):
  """WaNet's sampling grid `[H, W, 2]` (row, col) in [-1, 1]: identity plus a smooth warp."""
  field = jax.random.uniform(jax.random.key(seed), (grid, grid, 2), minval=-1.0, maxval=1.0)
  field = field / jnp.mean(jnp.abs(field))
  flow = jax.image.resize(field, (height, width, 2), method="cubic")
  rows, cols = jnp.meshgrid(
    jnp.linspace(-1.0, 1.0, height), jnp.linspace(-1.0, 1.0, width), indexing="ij"
  )
  identity = jnp.stack([rows, cols], axis=-1)
  return jnp.clip(identity + strength * flow / height, -1.0, 1.0)


def wanet(
  key: jax.Array, image: jax.Array, grid: int = 4, strength: float = 0.5, pattern_seed: int = 0
) -> jax.Array:
  """WaNet: bilinear resampling of the image along `wanet_grid` (align_corners semantics)."""
  del key  # The warp is fixed by `pattern_seed`.
  x = _to_unit(image)
  height, width = x.shape[:2]
  g = wanet_grid(height, width, grid, strength, pattern_seed)
  coords = [(g[..., 0] + 1) / 2 * (height - 1), (g[..., 1] + 1) / 2 * (width - 1)]
  sample = lambda channel: jax.scipy.ndimage.map_coordinates(channel, coords, 1, mode="nearest")
  return _from_unit(jax.vmap(sample, in_axes=-1, out_axes=-1)(x), image.dtype)


def apply(trigger: Trigger, keys: jax.Array, images: jax.Array) -> jax.Array:
  """`trigger` on every image of `images [B, H, W, C]`, image `b` with `keys[b]`."""
  chex.assert_rank(images, 4)
  chex.assert_axis_dimension(keys, 0, images.shape[0])
  return jax.vmap(trigger)(keys, images)


def make_trigger(cfg: ml_collections.ConfigDict) -> Trigger:
  """The trigger named by `cfg.kind` (`config.attack`), its parameters from `cfg`."""
  kind = cfg.kind
  seed = cfg.get("pattern_seed", 0)
  if kind == "badnet":
    return functools.partial(
      badnet_patch,
      size=cfg.patch_size,
      location=_location(cfg.location),
      pattern=cfg.pattern,
      pattern_seed=seed,
    )
  if kind == "solid":
    return functools.partial(
      solid_patch, size=cfg.patch_size, location=_location(cfg.location), color=tuple(cfg.color)
    )
  if kind == "blended":
    return functools.partial(blend, alpha=cfg.alpha, pattern=cfg.blend_pattern, pattern_seed=seed)
  if kind == "sig":
    return functools.partial(sig, amplitude=cfg.amplitude, frequency=cfg.frequency)
  if kind == "wanet":
    return functools.partial(wanet, grid=cfg.grid, strength=cfg.strength, pattern_seed=seed)
  raise ValueError(f"Unknown trigger '{kind}'; choose one of {', '.join(NAMES)}.")


def _location(value) -> Location:
  return value if isinstance(value, str) else (int(value[0]), int(value[1]))


def _paste(key: jax.Array, x: jax.Array, patch: jax.Array, location: Location) -> jax.Array:
  """`x` with `patch` written at `location` (see the module docstring)."""
  (height, width), p = x.shape[:2], patch.shape[0]
  if location == "random":
    row = jax.random.randint(key, (), 0, height - p + 1)
    col = jax.random.randint(jax.random.fold_in(key, 1), (), 0, width - p + 1)
  elif location == "bottom_right":
    row, col = height - p, width - p
  elif location == "top_left":
    row, col = 0, 0
  elif location == "center":
    row, col = (height - p) // 2, (width - p) // 2
  elif isinstance(location, (tuple, list)):
    row, col = (int(v) for v in location)
    if not (0 <= row <= height - p and 0 <= col <= width - p):
      raise ValueError(f"A {p}-px patch at {location} does not fit a {height}x{width} image.")
  else:
    raise ValueError(
      f"Unknown patch location {location!r}; use 'random', 'bottom_right', 'top_left', "
      "'center' or a (row, col) pair."
    )
  return jax.lax.dynamic_update_slice(x, patch.astype(x.dtype), (row, col, 0))


def _to_unit(image: jax.Array) -> jax.Array:
  """float32 in [0, 1]: integer images are divided by 255."""
  chex.assert_rank(image, 3)
  x = image.astype(jnp.float32)
  return x / 255.0 if jnp.issubdtype(image.dtype, jnp.integer) else x


def _from_unit(x: jax.Array, dtype) -> jax.Array:
  """Back to `dtype`, clipped to its range (0..255, rounded, for integers; 0..1 for floats)."""
  x = jnp.clip(x, 0.0, 1.0)
  if jnp.issubdtype(dtype, jnp.integer):
    return jnp.round(x * 255.0).astype(dtype)
  return x.astype(dtype)
