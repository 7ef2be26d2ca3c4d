"""Image preprocessing and the second views of the SSL objectives, as named policies.

Images travel through the pipeline as uint8 NHWC and become floats on the device: `normalize`
maps them to CLIP's normalised range. The second view of every image for the in-modal (SSL)
objectives is drawn inside the jitted step by `view_images`, keyed by an explicit PRNG key:

  'simple'       `augment_images`: random resized crop, horizontal flip, brightness/contrast
                 jitter, on the normalised images.
  'autoaugment'  `autoaugment_images`: the same crop and flip in pixel space, then N = 2 ops per
                 image drawn uniformly from AutoAugment's op set, each with a random magnitude in
                 AutoAugment's range (RandAugment-style sampling), then normalised. CleanCLIP
                 uses torchvision's `AutoAugment` for its image views.

The second view of a caption is drawn on the host from a NumPy generator by `augment_caption`:

  'delete_swap'  random word deletion and one random swap.
  'eda'          `eda`: EDA (Wei & Zou 2019) with alpha 0.1, one of synonym replacement, random
                 insertion, random swap and random deletion, as CleanCLIP's text views; synonyms
                 come from `SYNONYMS`, a small table shipped here in place of WordNet.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

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


IMAGE_VIEWS = ("simple", "autoaugment")
TEXT_VIEWS = ("delete_swap", "eda")


def view_images(rng: jax.Array, pixels: jax.Array, images: jax.Array, policy: str) -> jax.Array:
  """The second view of a batch, normalised: `pixels` are the uint8 images, `images` the same
  normalised. 'simple' is `augment_images` on the normalised images, 'autoaugment' is
  `autoaugment_images` on the pixels."""
  if policy == "simple":
    return augment_images(rng, images)
  if policy == "autoaugment":
    return autoaugment_images(rng, pixels)
  raise ValueError(f"Unknown image view policy '{policy}'; choose one of {IMAGE_VIEWS}.")


def _crop_flip(
  k_area: jax.Array, k_pos: jax.Array, k_flip: jax.Array, image: jax.Array, min_scale: float
) -> jax.Array:
  height, width = image.shape[:2]
  side = jnp.sqrt(jax.random.uniform(k_area, minval=min_scale, maxval=1.0))
  offset = jax.random.uniform(k_pos, (2,)) * (1.0 - side) * jnp.array([height, width])
  scale = jnp.array([1.0 / side, 1.0 / side])
  out = jax.image.scale_and_translate(
    image, image.shape, (0, 1), scale, -offset * scale, method="linear", antialias=False
  )
  return jnp.where(jax.random.bernoulli(k_flip), out[:, ::-1], out)


def _augment_one(rng: jax.Array, image: jax.Array, min_scale: float) -> jax.Array:
  k_area, k_pos, k_flip, k_bright, k_contrast = jax.random.split(rng, 5)
  out = _crop_flip(k_area, k_pos, k_flip, image, min_scale)
  mean = out.mean()
  contrast = jax.random.uniform(k_contrast, minval=0.8, maxval=1.2)
  brightness = jax.random.uniform(k_bright, minval=-0.2, maxval=0.2)
  return (out - mean) * contrast + mean + brightness


# --- 'autoaugment': AutoAugment's ops in pixel space, RandAugment-style sampling --------------
#
# Every op maps one float image `x` [H, W, C] with values in [0, 255] to one of the same shape
# and range, given a magnitude `m` in [0, 1] and a sign `s` in {-1, +1} (ops without a magnitude
# ignore them). `m` is scaled to the op's range in torchvision's AutoAugment (magnitude bins of
# `torchvision.transforms.AutoAugment._augmentation_space`); `s` picks the direction of the
# signed ops. All ops are pure `jnp` (jit- and vmap-friendly) and clip their result to [0, 255].

_MAX_SHEAR = 0.3  # shear factor
_MAX_TRANSLATE = 150.0 / 331.0  # fraction of the side
_MAX_ROTATE = 30.0  # degrees
_MAX_ENHANCE = 0.9  # enhancement factor 1 +- 0.9
_GRAY = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as PIL and torchvision


def _clip(x: jax.Array) -> jax.Array:
  return jnp.clip(x, 0.0, 255.0)


def _grayscale(x: jax.Array) -> jax.Array:
  return (x @ jnp.asarray(_GRAY, x.dtype))[..., None]


def _enhance_factor(m: jax.Array, s: jax.Array) -> jax.Array:
  return 1.0 + s * _MAX_ENHANCE * m


def _warp(x: jax.Array, source: Callable[[jax.Array, jax.Array], tuple]) -> jax.Array:
  """`y[r, c] = x(source(r, c))`: bilinear samples, 0 (black) outside the image."""
  height, width = x.shape[:2]
  rows, cols = jnp.meshgrid(
    jnp.arange(height, dtype=jnp.float32), jnp.arange(width, dtype=jnp.float32), indexing="ij"
  )
  coords = list(source(rows, cols))
  sample = lambda channel: jax.scipy.ndimage.map_coordinates(
    channel, coords, order=1, mode="constant", cval=0.0
  )
  return _clip(jax.vmap(sample, in_axes=-1, out_axes=-1)(x))


def op_identity(x: jax.Array, m: jax.Array, s: jax.Array) -> jax.Array:
  """`y = x`."""
  del m, s
  return x


def op_autocontrast(x: jax.Array, m: jax.Array, s: jax.Array) -> jax.Array:
  """Per channel `y = (x - lo) * 255 / (hi - lo)` with `lo, hi` the channel's min and max
  (`y = x` for a constant channel)."""
  del m, s
  lo = x.min(axis=(0, 1), keepdims=True)
  hi = x.max(axis=(0, 1), keepdims=True)
  spread = hi > lo
  return _clip(jnp.where(spread, (x - lo) * 255.0 / jnp.where(spread, hi - lo, 1.0), x))


def _equalize_channel(channel: jax.Array) -> jax.Array:
  levels = jnp.clip(jnp.floor(channel), 0, 255).astype(jnp.int32)
  hist = jnp.bincount(levels.ravel(), length=256)
  top = jnp.max(jnp.where(hist > 0, jnp.arange(256), 0))
  step = (levels.size - hist[top]) // 255
  below = jnp.cumsum(hist) - hist  # pixels strictly below each level
  lut = jnp.clip((below + step // 2) // jnp.maximum(step, 1), 0, 255)
  return jnp.where(step > 0, lut[levels].astype(channel.dtype), channel)


def op_equalize(x: jax.Array, m: jax.Array, s: jax.Array) -> jax.Array:
  """Histogram equalisation per channel, as PIL's `ImageOps.equalize` / torchvision's `equalize`
  on the image quantised to integer levels `q = floor(x)` (the crop leaves non-integer values):
  with `h` the histogram of `q`, `n` the pixel count and `h_top` the count of the highest level
  present, `step = (n - h_top) // 255` and `y = (sum_{l < q} h[l] + step // 2) // step`, clipped
  to 255; `y = x` when `step = 0` (almost constant channel)."""
  del m, s
  return jax.vmap(_equalize_channel, in_axes=-1, out_axes=-1)(x)


def op_rotate(x: jax.Array, m: jax.Array, s: jax.Array) -> jax.Array:
  """Rotation by `theta = s * 30 deg * m` about the image centre `(r0, c0)`: `y[r, c] = x[r0 +
  cos(theta) (r - r0) - sin(theta) (c - c0), c0 + sin(theta) (r - r0) + cos(theta) (c - c0)]`,
  bilinear, black outside."""
  height, width = x.shape[:2]
  theta = jnp.deg2rad(s * _MAX_ROTATE * m)
  cos, sin = jnp.cos(theta), jnp.sin(theta)
  r0, c0 = (height - 1) / 2.0, (width - 1) / 2.0

  def source(r, c):
    dr, dc = r - r0, c - c0
    return r0 + cos * dr - sin * dc, c0 + sin * dr + cos * dc

  return _warp(x, source)


def op_solarize(x: jax.Array, m: jax.Array, s: jax.Array) -> jax.Array:
  """`y = 255 - x` where `x >= t`, else `x`, with threshold `t = 255 (1 - m)` (AutoAugment's
  range 255..0)."""
  del s
  return jnp.where(x >= 255.0 * (1.0 - m), 255.0 - x, x)


def op_posterize(x: jax.Array, m: jax.Array, s: jax.Array) -> jax.Array:
  """Keeps `b = 8 - min(floor(5 m), 4)` bits (AutoAugment's range 8..4, uniform for uniform `m`):
  `y = floor(x / 2^(8 - b)) * 2^(8 - b)`."""
  del s
  bits = 8 - jnp.minimum(jnp.floor(5.0 * m), 4.0)
  quantum = 2.0 ** (8.0 - bits)
  return _clip(jnp.floor(x / quantum) * quantum)


def op_color(x: jax.Array, m: jax.Array, s: jax.Array) -> jax.Array:
  """Saturation: `y = g + f (x - g)`, `g` the pixel's luma `0.299 R + 0.587 G + 0.114 B` and
  `f = 1 + 0.9 s m` (PIL's `ImageEnhance.Color`)."""
  gray = _grayscale(x)
  return _clip(gray + _enhance_factor(m, s) * (x - gray))


def op_contrast(x: jax.Array, m: jax.Array, s: jax.Array) -> jax.Array:
  """`y = mu + f (x - mu)`, `mu` the mean luma of the image and `f = 1 + 0.9 s m` (PIL's
  `ImageEnhance.Contrast`)."""
  mean = _grayscale(x).mean()
  return _clip(mean + _enhance_factor(m, s) * (x - mean))


def op_brightness(x: jax.Array, m: jax.Array, s: jax.Array) -> jax.Array:
  """`y = f x` with `f = 1 + 0.9 s m` (PIL's `ImageEnhance.Brightness`)."""
  return _clip(_enhance_factor(m, s) * x)


def op_sharpness(x: jax.Array, m: jax.Array, s: jax.Array) -> jax.Array:
  """`y = d + f (x - d)` with `f = 1 + 0.9 s m` and `d` the image smoothed by the 3x3 kernel
  `[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13` inside, `d = x` on the border pixels (PIL's
  `ImageEnhance.Sharpness`)."""
  height, width = x.shape[:2]
  window = sum(
    x[1 + dr : height - 1 + dr, 1 + dc : width - 1 + dc] for dr in (-1, 0, 1) for dc in (-1, 0, 1)
  )
  smooth = x.at[1:-1, 1:-1].set((window + 4.0 * x[1:-1, 1:-1]) / 13.0)
  return _clip(smooth + _enhance_factor(m, s) * (x - smooth))


def op_shear_x(x: jax.Array, m: jax.Array, s: jax.Array) -> jax.Array:
  """Horizontal shear about the top-left corner (as torchvision's AutoAugment):
  `y[r, c] = x[r, c + k r]`, `k = 0.3 s m`; bilinear, black outside."""
  k = s * _MAX_SHEAR * m
  return _warp(x, lambda r, c: (r, c + k * r))


def op_shear_y(x: jax.Array, m: jax.Array, s: jax.Array) -> jax.Array:
  """Vertical shear about the top-left corner: `y[r, c] = x[r + k c, c]`, `k = 0.3 s m`."""
  k = s * _MAX_SHEAR * m
  return _warp(x, lambda r, c: (r + k * c, c))


def op_translate_x(x: jax.Array, m: jax.Array, s: jax.Array) -> jax.Array:
  """Horizontal shift by `t = s m (150 / 331) W` pixels: `y[r, c] = x[r, c - t]`, black where
  uncovered (bilinear for a fractional `t`)."""
  t = s * m * _MAX_TRANSLATE * x.shape[1]
  return _warp(x, lambda r, c: (r, c - t))


def op_translate_y(x: jax.Array, m: jax.Array, s: jax.Array) -> jax.Array:
  """Vertical shift by `t = s m (150 / 331) H` pixels: `y[r, c] = x[r - t, c]`."""
  t = s * m * _MAX_TRANSLATE * x.shape[0]
  return _warp(x, lambda r, c: (r - t, c))


# RandAugment's (and torchvision's TrivialAugment's) list of AutoAugment ops; AutoAugment's
# `invert` and `cutout` are left out, as RandAugment does.
AUTOAUGMENT_OPS: dict[str, Callable[[jax.Array, jax.Array, jax.Array], jax.Array]] = {
  "identity": op_identity,
  "autocontrast": op_autocontrast,
  "equalize": op_equalize,
  "rotate": op_rotate,
  "solarize": op_solarize,
  "posterize": op_posterize,
  "color": op_color,
  "contrast": op_contrast,
  "brightness": op_brightness,
  "sharpness": op_sharpness,
  "shear_x": op_shear_x,
  "shear_y": op_shear_y,
  "translate_x": op_translate_x,
  "translate_y": op_translate_y,
}


def random_crop_flip(rng: jax.Array, pixels: jax.Array, min_scale: float = 0.5) -> jax.Array:
  """The crop and flip of `augment_images` (same sampling) on float pixel images [B, H, W, C] in
  [0, 255], clipped back to that range (bilinear weights can round a hair past it)."""
  chex.assert_rank(pixels, 4)
  keys = jax.random.split(rng, pixels.shape[0])
  one = lambda k, x: _crop_flip(*jax.random.split(k, 3), x, min_scale)
  return _clip(jax.vmap(one)(keys, pixels.astype(jnp.float32)))


def _op_functions(ops: Sequence[str]) -> list[Callable]:
  unknown = [name for name in ops if name not in AUTOAUGMENT_OPS]
  if unknown or not ops:
    raise ValueError(f"Unknown ops {unknown}; choose from {tuple(AUTOAUGMENT_OPS)}.")
  return [AUTOAUGMENT_OPS[name] for name in ops]


def apply_autoaugment_ops(
  rng: jax.Array, pixels: jax.Array, num_ops: int = 2, ops: Sequence[str] = tuple(AUTOAUGMENT_OPS)
) -> jax.Array:
  """`num_ops` ops applied in turn to each float pixel image [B, H, W, C] in [0, 255].

  Per image and turn: an op index `i ~ U{0, ..., len(ops) - 1}` (dispatched by `jax.lax.switch`;
  under `vmap` every branch is computed and the result selected), a magnitude `m ~ U[0, 1]` and
  a sign `s = +-1` with probability 1/2 each (see `AUTOAUGMENT_OPS`). `ops` restricts the choice
  (a single name forces that op).
  """
  chex.assert_rank(pixels, 4)
  branches = _op_functions(ops)

  def one(key, x):
    for k in jax.random.split(key, num_ops):
      k_op, k_mag, k_sign = jax.random.split(k, 3)
      index = jax.random.randint(k_op, (), 0, len(branches))
      m = jax.random.uniform(k_mag)
      s = jnp.where(jax.random.bernoulli(k_sign), 1.0, -1.0)
      x = jax.lax.switch(index, branches, x, m, s)
    return x

  keys = jax.random.split(rng, pixels.shape[0])
  return jax.vmap(one)(keys, pixels.astype(jnp.float32))


def autoaugment_pixels(
  rng: jax.Array,
  pixels: jax.Array,
  num_ops: int = 2,
  ops: Sequence[str] = tuple(AUTOAUGMENT_OPS),
  min_scale: float = 0.5,
) -> jax.Array:
  """The 'autoaugment' view before normalisation: float32 [B, H, W, C] in [0, 255].

  With `k_crop, k_ops = jax.random.split(rng)`: `random_crop_flip(k_crop, pixels, min_scale)`,
  then `apply_autoaugment_ops(k_ops, ., num_ops, ops)`. torchvision's `AutoAugment` instead
  applies one of 25 sub-policies learned on ImageNet (two ops with fixed probabilities and
  magnitudes); this draws the ops and magnitudes uniformly over the same op set and ranges
  (RandAugment / TrivialAugment-style), which needs no policy table and stays one program.
  """
  _op_functions(ops)  # fail before any work on unknown names
  k_crop, k_ops = jax.random.split(rng)
  return apply_autoaugment_ops(k_ops, random_crop_flip(k_crop, pixels, min_scale), num_ops, ops)


def autoaugment_images(
  rng: jax.Array,
  pixels: jax.Array,
  num_ops: int = 2,
  ops: Sequence[str] = tuple(AUTOAUGMENT_OPS),
  min_scale: float = 0.5,
) -> jax.Array:
  """The 'autoaugment' view of uint8 (or float 0..255) images [B, H, W, 3], normalised like
  `normalize`: `normalize(autoaugment_pixels(...))`."""
  return normalize(autoaugment_pixels(rng, pixels, num_ops, ops, min_scale))


# --- caption views -----------------------------------------------------------------------------


def augment_caption(
  caption: str,
  rng: np.random.Generator,
  policy: str = "delete_swap",
  p_delete: float = 0.1,
  alpha: float = 0.1,
) -> str:
  """The second view of a caption under `policy` (one of `TEXT_VIEWS`).

  'delete_swap' deletes each word with probability `p_delete` (keeping at least one), then swaps
  two; 'eda' is `eda(caption, rng, alpha)`.
  """
  if policy not in TEXT_VIEWS:
    raise ValueError(f"Unknown text view policy '{policy}'; choose one of {TEXT_VIEWS}.")
  if policy == "eda":
    return eda(caption, rng, alpha)
  words = caption.split()
  if len(words) < 2:
    return caption
  kept = [w for w in words if rng.random() >= p_delete] or [words[rng.integers(len(words))]]
  if len(kept) >= 2:
    i, j = rng.choice(len(kept), size=2, replace=False)
    kept[i], kept[j] = kept[j], kept[i]
  return " ".join(kept)


EDA_OPS = ("synonym_replacement", "random_insertion", "random_swap", "random_deletion")


def eda(caption: str, rng: np.random.Generator, alpha: float = 0.1, op: str | None = None) -> str:
  """EDA (Wei & Zou 2019) as CleanCLIP's text views use it: one of `EDA_OPS`, drawn uniformly
  (or forced by `op`), on the caption's `L` words with `n = max(1, floor(alpha L))`:

  synonym_replacement  `n` distinct words that have synonyms, chosen at random, each replaced
                       (every occurrence) by one of its synonyms, drawn uniformly.
  random_insertion     `n` times: a random synonym of a random word (that has synonyms) inserted
                       at a random position.
  random_swap          `n` times: two random positions swapped.
  random_deletion      each word deleted with probability `alpha` (one random word kept if all
                       would go).

  As in the reference code, the caption is first lower-cased and reduced to the letters a-z
  (apostrophes dropped, everything else a word break). Synonyms come from `SYNONYMS`, a small
  table of common caption words shipped here in place of WordNet (EDA's source, which cannot be
  downloaded at run time); words outside it have none. A caption with no letters comes back
  unchanged, so a non-empty caption never yields an empty view.
  """
  if op is not None and op not in EDA_OPS:
    raise ValueError(f"Unknown EDA op '{op}'; choose one of {EDA_OPS}.")
  words = _letters_only(caption).split()
  if not words:
    return caption
  if op is None:
    op = EDA_OPS[rng.integers(len(EDA_OPS))]
  n = max(1, int(alpha * len(words)))
  if op == "synonym_replacement":
    words = _synonym_replacement(words, n, rng)
  elif op == "random_insertion":
    words = _random_insertion(words, n, rng)
  elif op == "random_swap":
    words = _random_swap(words, n, rng)
  else:
    words = _random_deletion(words, alpha, rng)
  return " ".join(words)


def _letters_only(text: str) -> str:
  text = text.lower().replace("'", "").replace("\u2019", "")
  return re.sub("[^a-z]+", " ", text)


def _synonym(word: str, rng: np.random.Generator) -> str:
  choices = SYNONYMS[word]
  return choices[rng.integers(len(choices))]


def _synonym_replacement(words: list[str], n: int, rng: np.random.Generator) -> list[str]:
  known = [w for w in dict.fromkeys(words) if w in SYNONYMS]
  out = list(words)
  for index in rng.permutation(len(known))[:n]:
    word = known[index]
    new = _synonym(word, rng)
    out = [new if old == word else cur for old, cur in zip(words, out)]
  return out


def _random_insertion(words: list[str], n: int, rng: np.random.Generator) -> list[str]:
  out = list(words)
  for _ in range(n):
    known = [w for w in out if w in SYNONYMS]
    if not known:
      break
    new = _synonym(known[rng.integers(len(known))], rng)
    out.insert(int(rng.integers(len(out) + 1)), new)
  return out


def _random_swap(words: list[str], n: int, rng: np.random.Generator) -> list[str]:
  out = list(words)
  for _ in range(n if len(out) >= 2 else 0):
    i, j = rng.choice(len(out), size=2, replace=False)
    out[i], out[j] = out[j], out[i]
  return out


def _random_deletion(words: list[str], p: float, rng: np.random.Generator) -> list[str]:
  if len(words) == 1:
    return list(words)
  return [w for w in words if rng.random() >= p] or [words[rng.integers(len(words))]]


# Groups of interchangeable caption words, one group a line; a word's synonyms are the other
# words of every group it is in. Lower-case letters only, no stop words.
_SYNONYM_GROUPS = """
red crimson scarlet ruby
blue azure cobalt
green emerald verdant
yellow golden amber
orange tangerine
purple violet mauve lilac
pink rosy
white snowy ivory
black ebony
gray grey silver
brown tan chestnut
colorful colourful multicolored multicoloured vibrant
bright vivid brilliant
dark dim shadowy gloomy
shiny glossy gleaming sparkling
big large huge giant enormous massive
small little tiny miniature
tall high lofty
long lengthy
wide broad
narrow thin slim slender
thick dense
fat plump chubby
young youthful
old aged elderly
ancient antique
new fresh
modern contemporary
vintage retro classic
man guy gentleman
men guys gentlemen
woman lady
women ladies
boy lad
child kid youngster
children kids youngsters
people persons folks
person individual
baby infant toddler
friends pals buddies
mother mom mum
father dad
player athlete
crowd throng
couple pair duo
team squad
student pupil
doctor physician
policeman officer cop
worker labourer laborer
actor performer
singer vocalist
celebrity celeb
dog puppy hound pup
cat kitten kitty
horse pony steed
bird fowl
cow cattle
sheep lamb
car automobile auto vehicle
truck lorry
bus coach
bicycle bike cycle
motorcycle motorbike
boat ship vessel
airplane plane aeroplane aircraft jet
train locomotive
road street avenue
highway motorway freeway
path trail track
house home residence dwelling
building structure edifice
room chamber
chair seat
couch sofa settee
picture photo photograph image snapshot
painting artwork
drawing sketch illustration
view vista panorama
scene setting
city town
village hamlet
field meadow pasture
forest woods woodland
hill knoll
mountain mount peak
sea ocean
beach shore seashore coast
river stream creek brook
lake pond
sun sunlight sunshine
sunset sundown
stone rock boulder
ground earth
soil dirt
grass lawn turf
flower blossom bloom
food meal dish cuisine
cup mug
bottle flask
bag sack
hat cap
dress gown frock
coat jacket
shoes sneakers footwear
clothes clothing garments outfit attire
face visage
sign placard
door doorway
gate entrance
phone telephone cellphone smartphone
computer pc
laptop notebook
television tv
toy plaything
game match contest
shop store boutique
market marketplace bazaar
restaurant cafe diner eatery
party celebration
wedding marriage
exhibition exhibit display
background backdrop
top summit
edge border rim
middle center centre
bread loaf
fire flame blaze
lamp lantern
night nighttime
evening dusk twilight
morning dawn sunrise
day daytime
autumn fall
holiday vacation
trip journey voyage tour
office workplace
school academy
church chapel
castle fortress
hotel inn motel
island isle
design pattern motif
logo emblem
icon symbol
event occasion
walking strolling wandering
running jogging sprinting
sitting seated
looking gazing staring peering
watching viewing observing
holding grasping gripping clutching
eating dining munching
drinking sipping
smiling grinning beaming
laughing giggling chuckling
talking speaking chatting
jumping leaping hopping
flying soaring gliding
sleeping napping dozing resting
working toiling labouring laboring
carrying toting
wearing donning sporting
throwing tossing hurling
climbing scaling ascending
lying reclining lounging
posing modelling modeling
shows displays depicts portrays
showing displaying depicting portraying
made crafted
covered coated
filled packed
decorated adorned
surrounded encircled
beautiful pretty lovely gorgeous attractive
ugly hideous unsightly
happy glad joyful cheerful
sad unhappy sorrowful
cute adorable sweet
funny amusing humorous comical
clean spotless tidy neat
dirty filthy grimy
empty vacant bare
crowded busy bustling
quiet calm peaceful tranquil serene
fast quick rapid swift speedy
slow sluggish leisurely
cold chilly frosty freezing
hot scorching
warm cozy cosy
wet damp soaked moist
dry arid parched
soft fluffy plush
smooth sleek
hard solid firm
round circular
flat level
heavy weighty hefty
rich wealthy affluent
strong powerful mighty
famous renowned celebrated
simple plain basic
fancy elegant stylish chic
delicious tasty yummy
whole entire complete
perfect ideal flawless
great wonderful fantastic excellent superb terrific
nice pleasant
bad terrible awful
scary frightening spooky creepy
strange odd weird unusual bizarre
near close nearby
far distant remote
alone lonely solitary lone
indoor interior
outdoor outside exterior
many numerous countless
several various
"""


def _synonym_table(groups: str) -> dict[str, tuple[str, ...]]:
  table: dict[str, dict[str, None]] = {}
  for line in groups.strip().splitlines():
    group = line.split()
    for word in group:
      table.setdefault(word, {}).update(dict.fromkeys(w for w in group if w != word))
  return {word: tuple(synonyms) for word, synonyms in table.items()}


SYNONYMS: dict[str, tuple[str, ...]] = _synonym_table(_SYNONYM_GROUPS)
