"""The input pipeline: batch t is a pure function of (source, seed, batch size, t)."""

import numpy as np
import pytest

from bdjax.data import pipeline
from bdjax.data.augment import augment_caption
from bdjax.data.synthetic import SyntheticPairs
from bdjax.models import tokenize

SOURCE = SyntheticPairs("train", 100, 16, seed=0)


def tok(texts):
  return tokenize(texts, context_length=16)


def test_same_seed_same_batches_any_order():
  a = pipeline.batches(SOURCE, 8, seed=1, tokenizer=tok)
  b = pipeline.batches(SOURCE, 8, seed=1, tokenizer=tok)
  for t in (0, 7, 30, 3):  # random access: a resumed run asks for step t directly
    np.testing.assert_array_equal(a[t]["index"], b[t]["index"])
    np.testing.assert_array_equal(a[t]["image"], b[t]["image"])
    np.testing.assert_array_equal(a[t]["tokens"], b[t]["tokens"])


def test_each_epoch_is_a_new_permutation_of_every_example():
  ds = pipeline.batches(SOURCE, 10, seed=1, tokenizer=tok)
  epoch0 = np.concatenate([ds[t]["index"] for t in range(10)])
  epoch1 = np.concatenate([ds[t]["index"] for t in range(10, 20)])
  assert sorted(epoch0) == list(range(100)) == sorted(epoch1)
  assert not np.array_equal(epoch0, epoch1)


def test_other_seed_other_order():
  a = pipeline.batches(SOURCE, 8, seed=1, tokenizer=tok)[0]["index"]
  b = pipeline.batches(SOURCE, 8, seed=2, tokenizer=tok)[0]["index"]
  assert not np.array_equal(a, b)


def test_batch_matches_the_source():
  batch = pipeline.batches(SOURCE, 8, seed=1, tokenizer=tok)[5]
  pairs = SOURCE.batch(batch["index"])
  np.testing.assert_array_equal(batch["image"], pairs["image"])
  np.testing.assert_array_equal(batch["tokens"], tok(list(pairs["caption"])))
  assert batch["image"].dtype == np.uint8 and batch["tokens"].dtype == np.int32


def test_views_are_deterministic_augmented_captions():
  a = pipeline.batches(SOURCE, 8, seed=1, tokenizer=tok, with_views=True)[2]
  b = pipeline.batches(SOURCE, 8, seed=1, tokenizer=tok, with_views=True)[2]
  np.testing.assert_array_equal(a["view_tokens"], b["view_tokens"])
  assert a["view_tokens"].shape == a["tokens"].shape
  assert not np.array_equal(a["view_tokens"], a["tokens"])


def test_dataset_smaller_than_a_batch_is_refused():
  with pytest.raises(ValueError, match="fewer than one batch"):
    pipeline.batches(SyntheticPairs("train", 4, 16), 8, seed=0, tokenizer=tok)


def test_caption_augmentation_keeps_words_and_never_empties():
  rng = np.random.default_rng(0)
  caption = "a small red star on a blue background"
  for _ in range(50):
    view = augment_caption(caption, rng)
    assert view and set(view.split()) <= set(caption.split())
