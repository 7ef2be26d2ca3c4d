"""The second views of the SSL objectives: the image policies ('simple', 'autoaugment') and the
caption policies ('delete_swap', 'eda') of bdjax/data/augment.py."""

from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bdjax.data.augment import (
  AUTOAUGMENT_OPS,
  IMAGE_VIEWS,
  SYNONYMS,
  TEXT_VIEWS,
  augment_caption,
  augment_images,
  autoaugment_pixels,
  eda,
  normalize,
  random_crop_flip,
  view_images,
)

PIXELS = jax.random.randint(jax.random.key(0), (3, 16, 12, 3), 0, 256).astype(jnp.uint8)
view = jax.jit(view_images, static_argnames="policy")
pixels_view = jax.jit(autoaugment_pixels, static_argnames=("num_ops", "ops"))


# --- images ------------------------------------------------------------------------------------


def test_simple_policy_is_augment_images():
  rng, images = jax.random.key(3), normalize(PIXELS)
  expected = jax.jit(augment_images)(rng, images)
  np.testing.assert_array_equal(view(rng, PIXELS, images, "simple"), expected)


def test_autoaugment_view_is_keyed_and_shaped_like_simple():
  images = normalize(PIXELS)
  simple = view(jax.random.key(1), PIXELS, images, "simple")
  first = view(jax.random.key(1), PIXELS, images, "autoaugment")
  again = view(jax.random.key(1), PIXELS, images, "autoaugment")
  other = view(jax.random.key(2), PIXELS, images, "autoaugment")
  assert first.shape == simple.shape and first.dtype == simple.dtype == jnp.float32
  assert np.isfinite(first).all()
  np.testing.assert_array_equal(first, again)
  assert not np.allclose(first, other)
  # normalised pixels in [0, 255]
  lo, hi = normalize(jnp.zeros((1, 1, 1, 3))), normalize(jnp.full((1, 1, 1, 3), 255.0))
  assert (first >= lo - 1e-5).all() and (first <= hi + 1e-5).all()


@pytest.mark.parametrize("name", list(AUTOAUGMENT_OPS))
def test_each_op_keeps_pixel_range_and_shape(name):
  x = PIXELS[0].astype(jnp.float32)
  grid = jnp.array([0.0, 0.5, 1.0])
  mags, signs = jnp.repeat(grid, 2), jnp.tile(jnp.array([-1.0, 1.0]), 3)
  out = jax.jit(jax.vmap(AUTOAUGMENT_OPS[name], in_axes=(None, 0, 0)))(x, mags, signs)
  assert out.shape == (6, *x.shape) and out.dtype == jnp.float32
  assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 255


def test_identity_op_gives_the_crop_and_flip():
  rng = jax.random.key(5)
  forced = pixels_view(rng, PIXELS, ops=("identity",))
  k_crop, _ = jax.random.split(rng)
  np.testing.assert_allclose(forced, jax.jit(random_crop_flip)(k_crop, PIXELS), atol=1e-3)
  assert not np.array_equal(forced, PIXELS.astype(jnp.float32))  # it did crop or flip


def test_op_maths():
  op = {name: jax.jit(fn) for name, fn in AUTOAUGMENT_OPS.items()}
  x = PIXELS[0].astype(jnp.float32)
  zero, one, plus = jnp.float32(0.0), jnp.float32(1.0), jnp.float32(1.0)
  for name in ("rotate", "shear_x", "shear_y", "translate_x", "translate_y", "brightness"):
    np.testing.assert_allclose(op[name](x, zero, plus), x, atol=1e-3, err_msg=name)
  np.testing.assert_array_equal(op["solarize"](x, one, plus), 255.0 - x)
  assert (op["posterize"](x, one, plus) % 16 == 0).all()
  np.testing.assert_array_equal(op["posterize"](x, zero, plus), x)
  np.testing.assert_allclose(op["brightness"](x, one, -plus), 0.1 * x, rtol=1e-5)
  stretched = op["autocontrast"](0.5 * x + 40, zero, plus)
  np.testing.assert_allclose(stretched.min((0, 1)), 0, atol=1e-3)
  np.testing.assert_allclose(stretched.max((0, 1)), 255, atol=1e-3)
  # a 2-column shift moves the columns right and leaves black behind
  shift = 2 / (150 / 331 * x.shape[1])
  moved = op["translate_x"](x, jnp.float32(shift), plus)
  np.testing.assert_allclose(moved[:, 2:], x[:, :-2], atol=1e-3)
  np.testing.assert_allclose(moved[:, :2], 0, atol=1e-3)
  # equalisation: two equally frequent levels go to the ends of the range; with fewer than 255
  # pixels below the top level (step 0) the image is left as it is
  two = jnp.where(jnp.arange(32 * 32).reshape(32, 32, 1) % 2 == 0, 10.0, 20.0) * jnp.ones(3)
  assert set(np.unique(op["equalize"](two, zero, plus))) == {0.0, 255.0}
  np.testing.assert_array_equal(op["equalize"](two[:8], zero, plus), two[:8])
  np.testing.assert_array_equal(op["identity"](x, one, plus), x)


def test_unknown_policies_and_ops_raise():
  with pytest.raises(ValueError, match="simple.*autoaugment"):
    view_images(jax.random.key(0), PIXELS, normalize(PIXELS), "randaugment")
  with pytest.raises(ValueError, match="delete_swap.*eda"):
    augment_caption("a dog", np.random.default_rng(0), "backtranslate")
  with pytest.raises(ValueError, match="identity"):
    autoaugment_pixels(jax.random.key(0), PIXELS, ops=("invert",))
  with pytest.raises(ValueError, match="synonym_replacement"):
    eda("a dog", np.random.default_rng(0), op="paraphrase")
  assert IMAGE_VIEWS == ("simple", "autoaugment") and TEXT_VIEWS == ("delete_swap", "eda")


# --- captions ----------------------------------------------------------------------------------

CAPTIONS = [
  "A man riding a horse on the beach at sunset.",
  "a small red star on a blue background",
  "a photo of a banana.",
  "Two dogs sitting on green grass",
  "dog",
  "123 !!",
  "x",
]


def test_delete_swap_is_unchanged():
  rng = np.random.default_rng(7)
  views = [augment_caption("a small red star on a blue background", rng) for _ in range(3)]
  assert views == [
    "a small red star on a background",
    "a small red a on star blue background",
    "a small red star background blue",
  ]
  views = [augment_caption("A man riding a horse on the beach.", rng) for _ in range(2)]
  assert views == ["A man riding beach. on the horse", "a man riding A horse on the beach."]


def test_eda_is_seeded_and_never_empty():
  draw = lambda seed: [augment_caption(c, np.random.default_rng(seed), "eda") for c in CAPTIONS]
  assert draw(0) == draw(0)
  rng = np.random.default_rng(1)
  views = [augment_caption(c, rng, "eda") for c in CAPTIONS * 30]
  assert all(v.strip() for v in views)
  assert len(set(views)) > len(CAPTIONS)
  assert augment_caption("123 !!", rng, "eda") == "123 !!"  # no letters: unchanged


def test_eda_ops():
  rng = np.random.default_rng(2)
  caption = "a big dog and a small cat walking on the beach"
  words = caption.split()
  changed = set()
  for _ in range(40):
    out = eda(caption, rng, op="synonym_replacement").split()
    assert len(out) == len(words)
    assert all(new == old or new in SYNONYMS[old] for old, new in zip(words, out))
    changed.add(tuple(out))
    (extra,) = (
      Counter(eda(caption, rng, op="random_insertion").split()) - Counter(words)
    ).elements()
    assert any(extra in SYNONYMS.get(w, ()) for w in words)
    assert sorted(eda(caption, rng, op="random_swap").split()) == sorted(words)
    kept = eda(caption, rng, op="random_deletion").split()
    assert kept and set(kept) <= set(words)
  assert len(changed) > 5
  # lower-cased, letters only, apostrophes dropped
  cleaned = eda("Dog's bed, ON-the floor!", rng, op="random_swap").split()
  assert sorted(cleaned) == ["bed", "dogs", "floor", "on", "the"]


def test_eda_draws_every_op():
  rng = np.random.default_rng(3)
  caption = "a big dog and a small cat walking on the beach"
  lengths = {len(augment_caption(caption, rng, "eda").split()) for _ in range(200)}
  assert {9, 10, 11} <= lengths  # deletion, swap/replacement, insertion


def test_synonym_table():
  assert len(SYNONYMS) >= 300
  stop = {"a", "an", "the", "and", "of", "on", "in", "over", "under", "up", "down", "with", "to"}
  assert not stop & set(SYNONYMS)
  for word, synonyms in SYNONYMS.items():
    assert word.isalpha() and word.islower() and synonyms and word not in synonyms
    assert all(word in SYNONYMS[s] for s in synonyms)  # symmetric
  for word in ("red", "big", "small", "man", "woman", "dog", "car", "walking", "beautiful"):
    assert SYNONYMS[word]
