"""Image preprocessing and the second views of the SSL objectives.

Images travel through the pipeline as uint8 NHWC and become floats on the device:
`normalize` maps them to CLIP's normalised range, `augment_images` draws the second view of
every image for the in-modal (SSL) objectives inside the jitted step (random resized crop,
horizontal flip, brightness/contrast jitter, all keyed by an explicit PRNG key), and
`augment_caption` draws the second view of a caption on the host (random word deletion and one
random swap, as in EDA-style text augmentation) from a NumPy generator.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def normalize(images: jax.Array) -> jax.Array:
  """uint8 [B, H, W, 3] in 0..255 -> float32 `(x / 255 - mean) / std` with CLIP's statistics."""
  chex.assert_rank(images, 4)
  x = images.astype(jnp.float32) / 255.0
  return (x - jnp.asarray(CLIP_MEAN)) / jnp.asarray(CLIP_STD)


def augment_images(rng: jax.Array, images: jax.Array, min_scale: float = 0.5) -> jax.Array:
  """A random view of each float image: resized crop (area in [min_scale, 1]), flip, jitter.

  The crop keeps the aspect ratio, covers a fraction `a ~ U[min_scale, 1]` of the area at a
  uniformly random position, and is resized back to the input size (bilinear). Brightness and
  contrast are jittered by up to 20%: `x' = (x - m) * c + m + b` with `m` the image mean.
  """
  chex.assert_rank(images, 4)
  keys = jax.random.split(rng, images.shape[0])
  return jax.vmap(lambda k, x: _augment_one(k, x, min_scale))(keys, images)


IMAGE_VIEWS = ("simple",)
TEXT_VIEWS = ("delete_swap",)


def view_images(rng: jax.Array, pixels: jax.Array, images: jax.Array, policy: str) -> jax.Array:
  """The second view of a batch, normalised: `pixels` are the uint8 images, `images` the same
  normalised. 'simple' is `augment_images` on the normalised images."""
  if policy == "simple":
    return augment_images(rng, images)
  raise ValueError(f"Unknown image view policy '{policy}'; choose one of {IMAGE_VIEWS}.")


def _augment_one(rng: jax.Array, image: jax.Array, min_scale: float) -> jax.Array:
  k_area, k_pos, k_flip, k_bright, k_contrast = jax.random.split(rng, 5)
  height, width = image.shape[:2]
  side = jnp.sqrt(jax.random.uniform(k_area, minval=min_scale, maxval=1.0))
  offset = jax.random.uniform(k_pos, (2,)) * (1.0 - side) * jnp.array([height, width])
  scale = jnp.array([1.0 / side, 1.0 / side])
  out = jax.image.scale_and_translate(
    image, image.shape, (0, 1), scale, -offset * scale, method="linear", antialias=False
  )
  out = jnp.where(jax.random.bernoulli(k_flip), out[:, ::-1], out)
  mean = out.mean()
  contrast = jax.random.uniform(k_contrast, minval=0.8, maxval=1.2)
  brightness = jax.random.uniform(k_bright, minval=-0.2, maxval=0.2)
  return (out - mean) * contrast + mean + brightness


def augment_caption(
  caption: str, rng: np.random.Generator, policy: str = "delete_swap", p_delete: float = 0.1
) -> str:
  """Deletes each word with probability `p_delete` (keeping at least one), then swaps two."""
  if policy not in TEXT_VIEWS:
    raise ValueError(f"Unknown text view policy '{policy}'; choose one of {TEXT_VIEWS}.")
  words = caption.split()
  if len(words) < 2:
    return caption
  kept = [w for w in words if rng.random() >= p_delete] or [words[rng.integers(len(words))]]
  if len(kept) >= 2:
    i, j = rng.choice(len(kept), size=2, replace=False)
    kept[i], kept[j] = kept[j], kept[i]
  return " ".join(kept)
