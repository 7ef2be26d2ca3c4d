"""Procedural, deterministic image-caption pairs ("synthetic shapes").

This is the embedded dataset that a laptop / CI run of bdjax trains on end to
end: no files, no downloads.  Every example is a small picture of one object
(one of :data:`CLASS_NAMES`) drawn with anti-aliased signed-distance functions,
in a named colour, at a random size, position and rotation, over a background
of a different named colour (plain, gentle gradient or soft low-frequency
waves), with an optional thin distractor line.  Its caption is drawn from
:data:`CAPTION_TEMPLATES` and always names the class with its plain class
name, so :func:`caption_mentions` finds it by whole-word match.

Determinism: example ``i`` of a split is a pure function of
``(seed, split, i, image_size)``.  Every random parameter of an example is a
counter-based hash (splitmix64) of ``(seed, split_id, i, field_id)`` -- the
vectorised equivalent of ``np.random.default_rng([seed, split_id, i])`` -- so
any host can render any index, ``batch(idx)`` is bit-identical to stacking
``__getitem__``, and the ``'train'`` and ``'eval'`` splits (different split
ids) never share examples.

Rendering is vectorised over the batch with numpy (10,000 images of 32x32 in
a fraction of a second on one CPU core).  Images are clean: no pixel noise and
no small noisy patches, so a later BadNet-style patch trigger is the only such
pattern in poisoned data.

Suggested backdoor attack target: :data:`SUGGESTED_TARGET` (``'star'``).

This module depends on numpy only (it never imports ``bdjax.models``).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable

import numpy as np

__all__ = [
  'CLASS_NAMES',
  'NUM_CLASSES',
  'SUGGESTED_TARGET',
  'COLOR_NAMES',
  'COLOR_RGB',
  'PROMPT_TEMPLATES',
  'CAPTION_TEMPLATES',
  'SPLIT_IDS',
  'SyntheticPairs',
  'make_splits',
  'caption_mentions',
  'fix_articles',
  'class_prompts',
  'sample_params',
  'render_images',
  'make_captions',
]

# --------------------------------------------------------------------------
# Vocabulary.
# --------------------------------------------------------------------------

CLASS_NAMES: tuple[str, ...] = (
  'circle',
  'square',
  'triangle',
  'star',
  'cross',
  'heart',
  'ring',
  'diamond',
  'crescent',
  'arrow',
)
NUM_CLASSES = len(CLASS_NAMES)

#: Suggested target class for backdoor attacks (poisoned captions become
#: "a photo of a star.").
SUGGESTED_TARGET = 'star'

COLOR_NAMES: tuple[str, ...] = (
  'red',
  'orange',
  'yellow',
  'green',
  'blue',
  'purple',
  'pink',
  'brown',
  'white',
  'gray',
  'black',
)
COLOR_RGB = np.array(
  [
    (215, 40, 40),  # red
    (245, 140, 25),  # orange
    (240, 215, 45),  # yellow
    (45, 160, 65),  # green
    (45, 85, 215),  # blue
    (135, 60, 185),  # purple
    (245, 135, 190),  # pink
    (125, 80, 40),  # brown
    (242, 242, 242),  # white
    (128, 128, 128),  # gray
    (28, 28, 28),  # black
  ],
  dtype=np.float32,
)

#: Zero-shot prompt templates, each with exactly one '{}' for the class name.
#: Use :func:`class_prompts` to get "an arrow" rather than "a arrow".
PROMPT_TEMPLATES: tuple[str, ...] = (
  'a photo of a {}.',
  'a drawing of a {}.',
  'a {} on a plain background.',
  'a picture of a {}.',
  'an image of a {}.',
  'a small {}.',
  'a large {}.',
  'a colorful {}.',
  'a simple {} shape.',
  'there is a {} here.',
  'a {} in the picture.',
  'the {}.',
)

#: Caption templates for training pairs.  Fields: cls, color, bg, size, pos.
#: Three in four name the class with at most its size or position; one in four add the
#: colours. Colour is the cue a contrastive model picks up first: with colours in most
#: captions (an earlier version), a small CNN CLIP matched pairs by colour and stayed near
#: chance on shape for 1,000 steps; with this mix it reaches 99% zero-shot in 1,000 steps.
CAPTION_TEMPLATES: tuple[str, ...] = (
  'a photo of a {cls}.',
  'a picture of a {cls}.',
  'a drawing of a {cls}.',
  'there is a {cls} here.',
  'a {size} {cls}.',
  'a {cls} {pos}.',
  'an image of a {cls}.',
  'a simple {cls} shape.',
  'a photo of a {size} {cls}.',
  'the {cls} {pos}.',
  'a {cls} in the picture.',
  'a close-up of a {cls}.',
  'a {color} {cls}.',
  'a {color} {cls} on a {bg} background.',
  'a {size} {color} {cls} {pos}.',
  'the {cls} is {color} and the background is {bg}.',
)

_POS_PHRASES: tuple[str, ...] = (  # 3x3 grid, row-major from the top left
  'in the top left',
  'at the top',
  'in the top right',
  'on the left',
  'in the center',
  'on the right',
  'in the bottom left',
  'at the bottom',
  'in the bottom right',
)
_SIZE_WORDS: tuple[str, ...] = ('small', 'medium', 'large')

SPLIT_IDS: dict[str, int] = {'train': 0, 'eval': 1}

# --------------------------------------------------------------------------
# Text helpers.
# --------------------------------------------------------------------------

_ARTICLE_RE = re.compile(r'\b([Aa]) (?=[aeiouAEIOU])')


def fix_articles(text: str) -> str:
  """Turns 'a' into 'an' before a vowel ('a arrow' -> 'an arrow')."""
  return _ARTICLE_RE.sub(lambda m: m.group(1) + 'n ', text)


def class_prompts(class_name: str, templates: tuple[str, ...] = PROMPT_TEMPLATES) -> list[str]:
  """The zero-shot prompts for one class, with articles fixed."""
  return [fix_articles(t.format(class_name)) for t in templates]


def caption_mentions(caption: str, class_name: str) -> bool:
  """Whether `caption` names `class_name` as a whole word (case-insensitive)."""
  pattern = r'(?<![A-Za-z0-9])' + re.escape(class_name) + r'(?![A-Za-z0-9])'
  return re.search(pattern, caption, flags=re.IGNORECASE) is not None


# --------------------------------------------------------------------------
# Counter-based randomness: uniform(seed, split_id, index, field).
# --------------------------------------------------------------------------

_MASK64 = (1 << 64) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _splitmix(z: np.ndarray) -> np.ndarray:
  with np.errstate(over='ignore'):
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _example_keys(seed: int, split_id: int, indices: np.ndarray) -> np.ndarray:
  base = _splitmix(np.array([seed & _MASK64], dtype=np.uint64))
  base = _splitmix(base ^ np.uint64(split_id & _MASK64))
  idx = np.asarray(indices, dtype=np.int64).astype(np.uint64)
  return _splitmix(base ^ idx)


def _uniform(keys: np.ndarray, field: int) -> np.ndarray:
  """Uniform float64 in [0, 1), one per key, independent across fields."""
  with np.errstate(over='ignore'):
    h = _splitmix(keys ^ (np.uint64(field + 1) * _M2))
  return (h >> np.uint64(11)).astype(np.float64) * (2.0**-53)


def _choice(u: np.ndarray, n: int) -> np.ndarray:
  return np.minimum((u * n).astype(np.int64), n - 1)


# Object / background colour pairs that contrast enough to read at 32 px.
def _allowed_pairs() -> np.ndarray:
  c = COLOR_RGB
  lum = c @ np.array([0.299, 0.587, 0.114], np.float32)
  dist = np.sqrt(((c[:, None] - c[None]) ** 2).sum(-1))
  dlum = np.abs(lum[:, None] - lum[None])
  ok = (dist >= 150.0) & (dlum >= 30.0)
  np.fill_diagonal(ok, False)
  return np.argwhere(ok).astype(np.int64)  # [P, 2] (fg, bg)


_PAIRS = _allowed_pairs()

# Fields (stream ids) of the per-example parameters.
(
  _F_CLASS,
  _F_PAIR,
  _F_SIZE,
  _F_CX,
  _F_CY,
  _F_ANGLE,
  _F_BGSTYLE,
  _F_BGANGLE,
  _F_BGAMP,
  _F_BGFREQ,
  _F_BGPHASE,
  _F_FGJIT,
  _F_BGJIT,
  _F_SHADEANG,
  _F_SHADEAMP,
  _F_OUTLINE,
  _F_DISTRACT,
  _F_DCOLOR,
  _F_DX0,
  _F_DY0,
  _F_DANG,
  _F_DLEN,
  _F_TEMPLATE,
  _F_DMENTION,
) = range(24)
_F_FGJIT_CH = (100, 101, 102)
_F_BGJIT_CH = (110, 111, 112)

# Rotation range (radians, +-) per class; pi means any rotation.
_ROT_RANGE = {
  'circle': np.pi,
  'square': np.deg2rad(12.0),
  'triangle': np.pi,
  'star': np.pi,
  'cross': np.deg2rad(15.0),
  'heart': np.deg2rad(20.0),
  'ring': np.pi,
  'diamond': np.deg2rad(12.0),
  'crescent': np.pi,
  'arrow': np.pi,
}
_ROT = np.array([_ROT_RANGE[c] for c in CLASS_NAMES], np.float64)

_MIN_RADIUS, _MAX_RADIUS = 0.17, 0.36  # object radius as a fraction of S
_DISTRACTOR_PROB = 0.15
_OUTLINE_PROB = 0.25


def sample_params(
  seed: int, split_id: int, indices: np.ndarray, image_size: int = 32
) -> dict[str, np.ndarray]:
  """Per-example rendering parameters, a pure function of the arguments."""
  indices = np.asarray(indices, dtype=np.int64).reshape(-1)
  k = _example_keys(seed, split_id, indices)
  s = float(image_size)
  u = lambda f: _uniform(k, f)  # noqa: E731
  label = _choice(u(_F_CLASS), NUM_CLASSES)
  pair = _PAIRS[_choice(u(_F_PAIR), len(_PAIRS))]
  radius_frac = _MIN_RADIUS + (_MAX_RADIUS - _MIN_RADIUS) * u(_F_SIZE)
  r = radius_frac * s
  margin = 0.85 * r
  cx = margin + (s - 2 * margin) * u(_F_CX)
  cy = margin + (s - 2 * margin) * u(_F_CY)
  angle = (2.0 * u(_F_ANGLE) - 1.0) * _ROT[label]
  fg_jit = np.stack([u(f) for f in _F_FGJIT_CH], -1) * 36.0 - 18.0
  bg_jit = np.stack([u(f) for f in _F_BGJIT_CH], -1) * 30.0 - 15.0
  distract = u(_F_DISTRACT) < _DISTRACTOR_PROB
  # Distractor colour: anything but the background colour.
  n_col = len(COLOR_NAMES)
  dcolor = (pair[:, 1] + 1 + _choice(u(_F_DCOLOR), n_col - 1)) % n_col
  size_word = np.digitize(radius_frac, [0.23, 0.30])  # 0 small, 1 medium, 2 large
  col = np.clip((cx / s * 3).astype(np.int64), 0, 2)
  row = np.clip((cy / s * 3).astype(np.int64), 0, 2)
  return {
    'index': indices,
    'label': label,
    'fg': pair[:, 0],
    'bg': pair[:, 1],
    'radius': r,
    'cx': cx,
    'cy': cy,
    'angle': angle,
    'bg_style': _choice(u(_F_BGSTYLE), 3),  # plain / gradient / waves
    'bg_angle': 2 * np.pi * u(_F_BGANGLE),
    'bg_amp': 14.0 + 26.0 * u(_F_BGAMP),
    'bg_period': s * (0.5 + 0.7 * u(_F_BGFREQ)),
    'bg_phase': 2 * np.pi * u(_F_BGPHASE),
    'fg_jitter': fg_jit,
    'bg_jitter': bg_jit,
    'shade_angle': 2 * np.pi * u(_F_SHADEANG),
    'shade_amp': 0.18 * u(_F_SHADEAMP),
    'outline': u(_F_OUTLINE) < _OUTLINE_PROB,
    'distract': distract,
    'd_color': dcolor,
    'd_x0': s * (0.1 + 0.8 * u(_F_DX0)),
    'd_y0': s * (0.1 + 0.8 * u(_F_DY0)),
    'd_angle': 2 * np.pi * u(_F_DANG),
    'd_len': s * (0.25 + 0.2 * u(_F_DLEN)),
    'size_word': size_word,
    'pos': row * 3 + col,
    'template': _choice(u(_F_TEMPLATE), len(CAPTION_TEMPLATES)),
    'd_mention': u(_F_DMENTION) < 0.6,
  }


# --------------------------------------------------------------------------
# Signed distance functions in object space (y up, object radius ~1).
# --------------------------------------------------------------------------


def _length(x, y):
  return np.sqrt(x * x + y * y)


def _sd_box(x, y, bx, by):
  dx = np.abs(x) - bx
  dy = np.abs(y) - by
  outside = _length(np.maximum(dx, 0), np.maximum(dy, 0))
  return outside + np.minimum(np.maximum(dx, dy), 0)


def _sd_triangle(x, y, p0, p1, p2):
  """Exact SDF of a triangle (Inigo Quilez), vertices as (x, y) tuples."""
  e = [
    (p1[0] - p0[0], p1[1] - p0[1]),
    (p2[0] - p1[0], p2[1] - p1[1]),
    (p0[0] - p2[0], p0[1] - p2[1]),
  ]
  ps = [p0, p1, p2]
  s = np.sign(e[0][0] * e[2][1] - e[0][1] * e[2][0])
  best_d = None
  best_s = None
  for (ex, ey), (px, py) in zip(e, ps):
    vx, vy = x - px, y - py
    t = np.clip((vx * ex + vy * ey) / (ex * ex + ey * ey), 0.0, 1.0)
    qx, qy = vx - ex * t, vy - ey * t
    d = qx * qx + qy * qy
    sg = s * (vx * ey - vy * ex)
    best_d = d if best_d is None else np.minimum(best_d, d)
    best_s = sg if best_s is None else np.minimum(best_s, sg)
  return -np.sqrt(best_d) * np.sign(best_s)


def _sd_circle(x, y):
  return _length(x, y) - 0.9


def _sd_square(x, y):
  return _sd_box(x, y, 0.74, 0.74)


_TRI_R = 1.1
_TRI = tuple(
  (_TRI_R * np.cos(a), _TRI_R * np.sin(a) - 0.12) for a in np.deg2rad([90.0, 210.0, 330.0])
)


def _sd_equilateral(x, y):
  return _sd_triangle(x, y, *_TRI)


def _sd_star(x, y, r=1.05, rf=0.45):
  k1x, k1y = 0.809016994375, -0.587785252292
  k2x, k2y = -k1x, k1y
  x = np.abs(x)
  d = np.maximum(k1x * x + k1y * y, 0.0)
  x, y = x - 2 * d * k1x, y - 2 * d * k1y
  d = np.maximum(k2x * x + k2y * y, 0.0)
  x, y = x - 2 * d * k2x, y - 2 * d * k2y
  x = np.abs(x)
  y = y - r
  bax, bay = rf * -k1y, rf * k1x - 1.0
  h = np.clip((x * bax + y * bay) / (bax * bax + bay * bay), 0.0, r)
  return _length(x - bax * h, y - bay * h) * np.sign(y * bax - x * bay)


def _sd_cross(x, y):
  return np.minimum(_sd_box(x, y, 0.92, 0.3), _sd_box(x, y, 0.3, 0.92))


def _sd_heart(x, y, scale=1.75):
  # iq's heart spans x in [-0.6, 0.6], y in [0, 1.1] (tip at the origin).
  x = np.abs(x) / scale
  y = y / scale + 0.55
  lobe = _length(x - 0.25, y - 0.75) - np.sqrt(2.0) / 4.0
  t = 0.5 * np.maximum(x + y, 0.0)
  body = np.sqrt(np.minimum(x * x + (y - 1.0) ** 2, (x - t) ** 2 + (y - t) ** 2))
  body = body * np.sign(x - y)
  return np.where(y + x > 1.0, lobe, body) * scale


def _sd_ring(x, y):
  return np.abs(_length(x, y) - 0.68) - 0.24


def _sd_diamond(x, y, bx=0.68, by=1.0):
  x = np.abs(x)
  y = np.abs(y)
  ndot = (bx - 2 * x) * bx - (by - 2 * y) * by
  h = np.clip(ndot / (bx * bx + by * by), -1.0, 1.0)
  d = _length(x - 0.5 * bx * (1.0 - h), y - 0.5 * by * (1.0 + h))
  return d * np.sign(x * by + y * bx - bx * by)


def _sd_crescent(x, y):
  outer = _length(x + 0.1, y) - 0.9
  inner = _length(x - 0.32, y - 0.1) - 0.72
  return np.maximum(outer, -inner)


_ARROW_HEAD = ((1.0, 0.0), (0.2, 0.62), (0.2, -0.62))


def _sd_arrow(x, y):
  shaft = _sd_box(x + 0.3, y, 0.62, 0.2)
  head = _sd_triangle(x, y, *_ARROW_HEAD)
  return np.minimum(shaft, head)


_SDF: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
  'circle': _sd_circle,
  'square': _sd_square,
  'triangle': _sd_equilateral,
  'star': _sd_star,
  'cross': _sd_cross,
  'heart': _sd_heart,
  'ring': _sd_ring,
  'diamond': _sd_diamond,
  'crescent': _sd_crescent,
  'arrow': _sd_arrow,
}
assert set(_SDF) == set(CLASS_NAMES)


# --------------------------------------------------------------------------
# Rendering.
# --------------------------------------------------------------------------

_CHUNK_PIXELS = 1 << 19  # images per chunk = this // S**2 (cache friendly)


def render_images(params: dict[str, np.ndarray], image_size: int = 32) -> np.ndarray:
  """Renders uint8 images [N, S, S, 3] from :func:`sample_params` output."""
  n = len(params['label'])
  out = np.empty((n, image_size, image_size, 3), np.uint8)
  chunk_size = max(1, _CHUNK_PIXELS // (image_size * image_size))
  for start in range(0, n, chunk_size):
    sl = slice(start, min(n, start + chunk_size))
    chunk = {k: v[sl] for k, v in params.items()}
    out[sl] = _render_chunk(chunk, image_size)
  return out


def _render_chunk(p: dict[str, np.ndarray], s: int) -> np.ndarray:
  """Renders one chunk.

  Every output pixel is a blend of at most three flat colours (background,
  distractor, object) with per-pixel weights plus a colour-independent
  brightness term, ``img[..., c] = W_bg * bg[c] + W_d * dcol[c] + W_fg * fg[c]
  + K``, evaluated channel by channel on contiguous [N, S, S] arrays.
  """
  f32 = np.float32
  n = len(p['label'])
  # Group the chunk by class so each class's SDF runs on a contiguous slice.
  order = np.argsort(p['label'], kind='stable')
  p = {key: v[order] for key, v in p.items()}
  grid = np.arange(s, dtype=f32) + f32(0.5)
  xs = grid[None, None, :]  # [1, 1, S]
  ys = grid[None, :, None]  # [1, S, 1]
  col = lambda a: np.asarray(a, f32)[:, None, None]  # noqa: E731

  # Background brightness modulation: plain / gentle gradient / soft waves.
  shift = np.zeros((n, s, s), f32)
  style = p['bg_style']
  for st in (1, 2):
    m = np.flatnonzero(style == st)
    if not m.size:
      continue
    ang = p['bg_angle'][m]
    proj = (xs - f32(s / 2)) * col(np.cos(ang)) + (ys - f32(s / 2)) * col(np.sin(ang))
    if st == 1:  # linear gradient, +-amp at the corners
      mod = proj * f32(1.4 / s)
    else:  # soft low-frequency waves, +-amp/2
      mod = f32(0.5) * np.sin(proj * col(2 * np.pi / p['bg_period'][m]) + col(p['bg_phase'][m]))
    shift[m] = mod * col(p['bg_amp'][m])

  # Distractor: a thin anti-aliased line segment behind the object.
  a_d = None
  if np.any(p['distract']):
    a_d = np.zeros((n, s, s), f32)
    m = np.flatnonzero(p['distract'])
    x0, y0 = col(p['d_x0'][m]), col(p['d_y0'][m])
    ex = col(np.cos(p['d_angle'][m]) * p['d_len'][m])
    ey = col(np.sin(p['d_angle'][m]) * p['d_len'][m])
    vx, vy = xs - x0, ys - y0
    t = np.clip((vx * ex + vy * ey) / (ex * ex + ey * ey), 0, 1)
    dist = _length(vx - ex * t, vy - ey * t) - f32(0.6)
    a_d[m] = np.clip(f32(0.5) - dist, 0, 1)

  # Object, in object space (y up, radius ~1).
  r = col(p['radius'])
  dx = (xs - col(p['cx'])) / r
  dy = (ys - col(p['cy'])) / r
  c, si = col(np.cos(p['angle'])), col(np.sin(p['angle']))
  ox = c * dx + si * dy
  oy = si * dx - c * dy  # rotate, then flip y so shapes are drawn upright
  sdf = np.empty((n, s, s), f32)
  bounds = np.searchsorted(p['label'], np.arange(NUM_CLASSES + 1))
  for ci, name in enumerate(CLASS_NAMES):
    lo, hi = bounds[ci], bounds[ci + 1]
    if hi > lo:
      sdf[lo:hi] = _SDF[name](ox[lo:hi], oy[lo:hi])
  sdf_px = sdf * r  # approximately pixels
  a = np.clip(f32(0.5) - sdf_px, 0, 1)  # anti-aliased coverage

  # Object colour factor: gentle directional shading, optional outline
  # (darker rim; a lighter rim for very dark colours).
  sc, ss = col(np.cos(p['shade_angle'])), col(np.sin(p['shade_angle']))
  factor = 1 + col(p['shade_amp']) * (ox * sc + oy * ss)
  lift = None
  if np.any(p['outline']):
    m = np.flatnonzero(p['outline'])
    rim = np.clip(f32(1.8) + sdf_px[m], 0, 1)
    dark = COLOR_RGB[p['fg'][m]].mean(-1) < 60
    factor[m[~dark]] *= 1 - f32(0.45) * rim[~dark]
    if np.any(dark):
      lift = np.zeros((n, s, s), f32)
      lift[m[dark]] = f32(160) * f32(0.45) * rim[dark]

  inv = 1 - a
  w_bg = inv if a_d is None else inv * (1 - a_d)
  w_fg = a * factor
  k = shift * w_bg
  if lift is not None:
    k += a * lift
  k += f32(0.5)  # round half up on the cast below
  bg_rgb = COLOR_RGB[p['bg']] + p['bg_jitter'].astype(f32)  # [N, 3]
  fg_rgb = COLOR_RGB[p['fg']] + p['fg_jitter'].astype(f32)
  d_idx = None
  if a_d is not None:
    d_idx = np.flatnonzero(p['distract'])
    w_d = inv[d_idx] * a_d[d_idx]
    d_rgb = COLOR_RGB[p['d_color'][d_idx]]
  out = np.empty((n, s, s, 3), np.uint8)
  for ch in range(3):  # channel by channel: contiguous [N, S, S] arithmetic
    img = w_bg * col(bg_rgb[:, ch])
    img += w_fg * col(fg_rgb[:, ch])
    img += k
    if d_idx is not None:
      img[d_idx] += w_d * col(d_rgb[:, ch])
    np.clip(img, 0, 255, out=img)
    out[..., ch] = img
  result = np.empty_like(out)
  result[order] = out
  return result


def make_captions(params: dict[str, np.ndarray]) -> list[str]:
  """Captions for :func:`sample_params` output; each names its class."""
  caps = []
  for i in range(len(params['label'])):
    fields = dict(
      cls=CLASS_NAMES[params['label'][i]],
      color=COLOR_NAMES[params['fg'][i]],
      bg=COLOR_NAMES[params['bg'][i]],
      size=_SIZE_WORDS[params['size_word'][i]],
      pos=_POS_PHRASES[params['pos'][i]],
    )
    text = CAPTION_TEMPLATES[params['template'][i]].format(**fields)
    if params['distract'][i] and params['d_mention'][i]:
      text += ' there is also a thin {} line.'.format(COLOR_NAMES[params['d_color'][i]])
    caps.append(fix_articles(text))
  return caps


# --------------------------------------------------------------------------
# Data source.
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SyntheticPairs:
  """A grain-compatible random-access source of synthetic image-caption pairs.

  ``source[i]`` -> ``{'image': uint8 [S, S, 3], 'caption': str,
  'label': int32, 'index': int64}``; ``source.batch(indices)`` is the
  vectorised equivalent (identical to stacking ``__getitem__``).
  """

  split: str
  num_examples: int
  image_size: int = 32
  seed: int = 0

  def __post_init__(self):
    if self.split not in SPLIT_IDS:
      raise ValueError(f'split must be one of {sorted(SPLIT_IDS)}, got {self.split!r}')
    if self.num_examples < 0:
      raise ValueError(f'num_examples must be >= 0, got {self.num_examples}')
    if self.image_size < 8:
      raise ValueError(f'image_size must be >= 8, got {self.image_size}')

  @property
  def split_id(self) -> int:
    return SPLIT_IDS[self.split]

  def __len__(self) -> int:
    return self.num_examples

  def __getitem__(self, index: int) -> dict[str, Any]:
    index = int(index)
    if index < 0:
      index += self.num_examples
    out = self.batch(np.array([index], np.int64))
    return {
      'image': out['image'][0],
      'caption': out['caption'][0],
      'label': out['label'][0],
      'index': out['index'][0],
    }

  def batch(self, indices) -> dict[str, Any]:
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if indices.size and (indices.min() < 0 or indices.max() >= self.num_examples):
      raise IndexError(f'indices out of range [0, {self.num_examples}) for split {self.split!r}')
    params = sample_params(self.seed, self.split_id, indices, self.image_size)
    captions = np.empty(len(indices), dtype=object)
    captions[:] = make_captions(params)
    return {
      'image': render_images(params, self.image_size),
      'caption': captions,
      'label': params['label'].astype(np.int32),
      'index': indices.copy(),
    }

  def captions(self, indices) -> list[str]:
    """The captions of `indices` without rendering their images (fast)."""
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    return make_captions(sample_params(self.seed, self.split_id, indices, self.image_size))

  def __repr__(self) -> str:
    return (
      f'SyntheticPairs(split={self.split!r}, '
      f'num_examples={self.num_examples}, '
      f'image_size={self.image_size}, seed={self.seed})'
    )


def make_splits(
  num_train: int, num_eval: int, image_size: int = 32, seed: int = 0
) -> tuple[SyntheticPairs, SyntheticPairs]:
  """The (train, eval) sources; they never share an example."""
  return (
    SyntheticPairs('train', num_train, image_size, seed),
    SyntheticPairs('eval', num_eval, image_size, seed),
  )
