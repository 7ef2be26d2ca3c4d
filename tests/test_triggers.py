"""Specification of bdjax.attacks.triggers: every trigger keeps shape, dtype and range, changes
only what it should (a patch only its p x p area; SIG and blended every pixel by the stated
amount), is deterministic for a fixed key, and gives the same result with and without jit/vmap.

Images are [H, W, C]: uint8 read as 0..255, float32 as 0..1. P is the patch side in pixels.
"""

from __future__ import annotations

import functools

import chex
import jax
import ml_collections
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from bdjax.attacks import triggers

P = 4
SHAPES = ((32, 32, 3), (24, 40, 3))
GREY = np.full((24, 40, 3), 128, np.uint8)  # far from every channel of the yellow (255, 255, 0)
TRIGGERS = {
  "badnet_per_image": functools.partial(triggers.badnet_patch, size=P, pattern="per_image"),
  "badnet_fixed": functools.partial(triggers.badnet_patch, size=P, pattern="fixed"),
  "solid": functools.partial(triggers.solid_patch, size=P),
  "blend_fixed": functools.partial(triggers.blend, pattern="fixed"),
  "blend_per_image": functools.partial(triggers.blend, pattern="per_image"),
  "sig": triggers.sig,
  "wanet": triggers.wanet,
}


def _key(seed: int) -> jax.Array:
  return jax.random.key(seed)


def _image(seed: int, shape=(24, 40, 3), dtype=np.float32) -> np.ndarray:
  rng = np.random.default_rng(seed)
  if dtype == np.uint8:
    return rng.integers(0, 256, shape, dtype=np.uint8)
  return rng.uniform(0.0, 1.0, shape).astype(dtype)


def _changed(out, image) -> np.ndarray:
  """[H, W] mask of the pixels where any channel differs."""
  return np.any(np.asarray(out) != np.asarray(image), axis=-1)


def _area(shape, row: int, col: int, p: int = P) -> np.ndarray:
  mask = np.zeros(shape[:2], bool)
  mask[row : row + p, col : col + p] = True
  return mask


class EveryTriggerTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(name=tuple(TRIGGERS), dtype=(np.uint8, np.float32), shape=SHAPES)
  def test_keeps_shape_dtype_and_range_and_is_deterministic(self, name, dtype, shape):
    trigger, image = self.variant(TRIGGERS[name]), _image(0, shape, dtype)
    out = trigger(_key(1), image)
    np.testing.assert_array_equal(out, trigger(_key(1), image))
    chex.assert_shape(out, shape)
    chex.assert_type(out, dtype)
    out = np.asarray(out)
    self.assertTrue(np.all((out >= 0) & (out <= (255 if dtype == np.uint8 else 1.0))))
    self.assertTrue(np.any(out != image))

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*TRIGGERS)
  def test_apply_equals_the_trigger_image_by_image(self, name):
    trigger = TRIGGERS[name]
    images = np.stack([_image(seed, dtype=np.uint8) for seed in range(3)])
    keys = jax.random.split(_key(0), 3)
    out = self.variant(functools.partial(triggers.apply, trigger))(keys, images)
    expected = np.stack([trigger(keys[b], images[b]) for b in range(3)])
    np.testing.assert_array_equal(out, expected)


class PatchTest(chex.TestCase):
  @parameterized.parameters(
    ((5, 7), 5, 7), ("bottom_right", 20, 36), ("top_left", 0, 0), ("center", 10, 18)
  )
  def test_fixed_location_changes_only_the_patch_area(self, location, row, col):
    area = _area(GREY.shape, row, col)
    solid = functools.partial(triggers.solid_patch, size=P, location=location, color=(1, 1, 0))
    out = np.asarray(solid(_key(0), GREY))
    np.testing.assert_array_equal(out[area], np.broadcast_to([255, 255, 0], (P * P, 3)))
    np.testing.assert_array_equal(out[~area], GREY[~area])
    for pattern in ("per_image", "fixed"):
      badnet = functools.partial(triggers.badnet_patch, size=P, location=location, pattern=pattern)
      image = _image(1)
      changed = _changed(badnet(_key(0), image), image)
      self.assertFalse(np.any(changed & ~area), pattern)
      self.assertTrue(np.any(changed), pattern)

  @chex.variants(with_jit=True, without_jit=True)
  def test_random_location_changes_exactly_one_area_that_moves_with_the_key(self):
    solid = self.variant(functools.partial(triggers.solid_patch, size=P, location="random"))
    corners = set()
    for seed in range(8):
      changed = _changed(solid(_key(seed), GREY), GREY)
      rows, cols = np.nonzero(changed)
      self.assertEqual(changed.sum(), P * P)
      np.testing.assert_array_equal(changed, _area(GREY.shape, rows.min(), cols.min()))
      corners.add((rows.min(), cols.min()))
    self.assertGreater(len(corners), 1)

  @parameterized.parameters(((32, 32, 3), 0.125, 4), ((24, 40, 3), 0.125, 3), ((24, 40, 3), 6, 6))
  def test_patch_size_is_pixels_or_a_fraction_of_the_shorter_side(self, shape, size, pixels):
    self.assertEqual(triggers.patch_pixels(size, min(shape[:2])), pixels)
    grey = np.full(shape, 128, np.uint8)
    out = triggers.solid_patch(_key(0), grey, size=size, location="top_left")
    np.testing.assert_array_equal(_changed(out, grey), _area(shape, 0, 0, pixels))

  @parameterized.parameters(triggers.badnet_patch, triggers.solid_patch)
  def test_patch_that_does_not_fit_or_unknown_location_raises(self, fn):
    for kwargs in (
      {"size": 25},
      {"size": 0},
      {"size": 0.01},
      {"location": (21, 0)},
      {"location": (0, -1)},
      {"location": "middle"},
    ):
      with self.subTest(**kwargs), self.assertRaises(ValueError):
        fn(_key(0), GREY, **{"size": P, **kwargs})

  def test_badnet_fixed_pattern_is_shared_by_images_and_keys(self):
    badnet = functools.partial(triggers.badnet_patch, size=P, location=(2, 3), pattern="fixed")
    area = _area(GREY.shape, 2, 3)
    for dtype in (np.uint8, np.float32):
      a = np.asarray(badnet(_key(0), _image(0, dtype=dtype)))[area]
      b = np.asarray(badnet(_key(1), _image(1, dtype=dtype)))[area]
      c = np.asarray(badnet(_key(0), _image(0, dtype=dtype), pattern_seed=1))[area]
      np.testing.assert_array_equal(a, b)
      self.assertTrue(np.any(a != c))

  def test_badnet_per_image_pattern_depends_on_the_key(self):
    badnet = functools.partial(triggers.badnet_patch, size=P, location=(2, 3), pattern="per_image")
    area, image = _area(GREY.shape, 2, 3), _image(0)
    a, b = (np.asarray(badnet(_key(seed), image))[area] for seed in (0, 1))
    self.assertTrue(np.any(a != b))

  def test_unknown_patterns_raise(self):
    with self.assertRaises(ValueError):
      triggers.badnet_patch(_key(0), GREY, size=P, pattern="stripes")
    with self.assertRaises(ValueError):
      triggers.blend(_key(0), GREY, pattern="stripes")


class BlendTest(chex.TestCase):
  def _noise(self, key, image, alpha, pattern):
    """n recovered from out = (1 - alpha) x + alpha n."""
    out = triggers.blend(key, image, alpha=alpha, pattern=pattern)
    return (np.asarray(out, np.float64) - (1 - alpha) * image) / alpha

  @parameterized.product(alpha=(0.1, 0.5), pattern=("fixed", "per_image"))
  def test_float_blend_adds_alpha_times_unit_noise(self, alpha, pattern):
    noise = self._noise(_key(0), _image(0), alpha, pattern)
    self.assertTrue(np.all((noise >= -1e-5) & (noise <= 1 + 1e-5)))
    self.assertGreater(noise.std(), 0.2)  # U[0, 1] has std 0.29: the noise is not constant

  def test_fixed_pattern_is_shared_by_images_and_keys(self):
    a = self._noise(_key(0), _image(0), 0.2, "fixed")
    b = self._noise(_key(1), _image(1), 0.2, "fixed")
    np.testing.assert_allclose(a, b, atol=1e-5)

  def test_per_image_pattern_depends_on_the_key(self):
    a = self._noise(_key(0), _image(0), 0.2, "per_image")
    b = self._noise(_key(1), _image(0), 0.2, "per_image")
    self.assertGreater(np.abs(a - b).mean(), 0.1)

  @parameterized.product(alpha=(0.1, 0.5), pattern=("fixed", "per_image"))
  def test_uint8_pixels_move_by_at_most_alpha_times_255(self, alpha, pattern):
    image = _image(0, dtype=np.uint8)
    out = triggers.blend(_key(0), image, alpha=alpha, pattern=pattern)
    delta = np.abs(np.asarray(out, np.int32) - image)
    self.assertLessEqual(delta.max(), alpha * 255 + 0.5)
    self.assertGreater(delta.max(), alpha * 255 / 2)


class SigTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters((60 / 255, 6.0), (0.1, 2.5))
  def test_adds_a_horizontal_sinusoid(self, amplitude, frequency):
    grey = np.full((24, 40, 3), 0.5, np.float32)
    sig = functools.partial(triggers.sig, amplitude=amplitude, frequency=frequency)
    out = np.asarray(self.variant(sig)(_key(0), grey))
    wave = amplitude * np.sin(2 * np.pi * frequency * np.arange(40) / 40)
    np.testing.assert_allclose(out[0, :, 0] - 0.5, wave, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(out, np.broadcast_to(out[:1, :, :1], out.shape))

  def test_ignores_the_key(self):
    image = _image(0)
    np.testing.assert_array_equal(triggers.sig(_key(0), image), triggers.sig(_key(1), image))


class WanetTest(chex.TestCase):
  @parameterized.parameters(*SHAPES)
  def test_zero_strength_is_the_identity(self, *shape):
    image = _image(0, shape)
    np.testing.assert_allclose(triggers.wanet(_key(0), image, strength=0.0), image, atol=1e-5)
    image = _image(0, shape, np.uint8)
    np.testing.assert_array_equal(triggers.wanet(_key(0), image, strength=0.0), image)

  @chex.variants(with_jit=True, without_jit=True)
  def test_warp_is_fixed_by_pattern_seed_not_by_the_key(self):
    image = _image(0)
    wanet = self.variant(functools.partial(triggers.wanet, strength=0.5))
    a, b = wanet(_key(0), image), wanet(_key(1), image)
    np.testing.assert_array_equal(a, b)
    self.assertGreater(np.abs(np.asarray(a) - image).max(), 1e-2)
    other = self.variant(functools.partial(triggers.wanet, strength=0.5, pattern_seed=1))
    self.assertGreater(np.abs(np.asarray(other(_key(0), image)) - a).max(), 1e-2)

  @parameterized.product(shape=SHAPES, strength=(0.0, 0.5, 50.0))
  def test_grid_stays_in_the_unit_square(self, shape, strength):
    grid = np.asarray(triggers.wanet_grid(*shape[:2], grid=4, strength=strength, seed=0))
    chex.assert_shape(grid, (*shape[:2], 2))
    self.assertTrue(np.all((grid >= -1) & (grid <= 1)))
    if strength == 0.0:
      np.testing.assert_allclose(grid[0, 0], [-1, -1])
      np.testing.assert_allclose(grid[-1, -1], [1, 1])


def _config(kind: str) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
    {
      "kind": kind,
      "patch_size": P,
      "location": [2, 3],  # a list, as read from YAML/flags
      "pattern": "fixed",
      "color": [1.0, 1.0, 0.0],
      "alpha": 0.2,
      "blend_pattern": "per_image",
      "amplitude": 0.1,
      "frequency": 3.0,
      "grid": 4,
      "strength": 0.5,
      "pattern_seed": 7,
    }
  )


class MakeTriggerTest(chex.TestCase):
  @parameterized.parameters(*triggers.NAMES)
  def test_builds_each_kind_from_the_config(self, kind):
    expected = {
      "badnet": functools.partial(
        triggers.badnet_patch, size=P, location=(2, 3), pattern="fixed", pattern_seed=7
      ),
      "solid": functools.partial(triggers.solid_patch, size=P, location=(2, 3), color=(1, 1, 0)),
      "blended": functools.partial(triggers.blend, alpha=0.2, pattern="per_image", pattern_seed=7),
      "sig": functools.partial(triggers.sig, amplitude=0.1, frequency=3.0),
      "wanet": functools.partial(triggers.wanet, grid=4, strength=0.5, pattern_seed=7),
    }[kind]
    image = _image(0, dtype=np.uint8)
    out = triggers.make_trigger(_config(kind))(_key(0), image)
    chex.assert_shape(out, image.shape)
    chex.assert_type(out, np.uint8)
    np.testing.assert_array_equal(out, expected(_key(0), image))
    self.assertTrue(np.any(np.asarray(out) != image))

  def test_unknown_kind_raises_naming_it(self):
    with self.assertRaisesRegex(ValueError, "trojan"):
      triggers.make_trigger(_config("trojan"))


if __name__ == "__main__":
  absltest.main()
