"""The input pipeline: seeded, per-epoch shuffled global batches, split over processes, topped up
when a source leaves pairs out, and resumable from its iterator state."""

import itertools

import numpy as np
import pytest

from bdjax.data import pipeline
from bdjax.data.augment import augment_caption
from bdjax.data.encoded import SKIP_REASONS
from bdjax.data.synthetic import SyntheticPairs
from bdjax.models import tokenize

SOURCE = SyntheticPairs("train", 100, 16, seed=0)


def tok(texts):
  return tokenize(texts, context_length=16)


def take(iterator, n):
  return list(itertools.islice(iterator, n))


def batches(source=SOURCE, batch_size=8, seed=1, **kw):
  return iter(pipeline.batches(source, batch_size, seed, tok, **kw))


class LeavesOut:
  """A source that, like a real one meeting corrupt images, leaves out every pair whose index
  is a multiple of 7 and counts it."""

  def __init__(self, source):
    self.source = source

  def __len__(self):
    return len(self.source)

  def batch(self, indices):
    good = np.asarray([i for i in indices if i % 7], np.int64)
    pairs = dict(self.source.batch(good))
    pairs["skipped"] = np.array([len(indices) - len(good), 0])
    return pairs


def test_same_seed_same_batches():
  for a, b in zip(take(batches(), 20), take(batches(), 20)):
    for key in ("index", "image", "tokens"):
      np.testing.assert_array_equal(a[key], b[key])


def test_each_epoch_is_a_new_permutation_of_every_example():
  ds = take(batches(batch_size=10), 20)
  epoch0 = np.concatenate([b["index"] for b in ds[:10]])
  epoch1 = np.concatenate([b["index"] for b in ds[10:]])
  assert sorted(epoch0) == list(range(100)) == sorted(epoch1)
  assert not np.array_equal(epoch0, epoch1)


def test_other_seed_other_order():
  assert not np.array_equal(next(batches(seed=1))["index"], next(batches(seed=2))["index"])


def test_batch_matches_the_source():
  batch = take(batches(), 6)[5]
  pairs = SOURCE.batch(batch["index"])
  np.testing.assert_array_equal(batch["image"], pairs["image"])
  np.testing.assert_array_equal(batch["tokens"], tok(list(pairs["caption"])))
  assert batch["image"].dtype == np.uint8 and batch["tokens"].dtype == np.int32
  assert batch["skipped"].tolist() == [0] * len(SKIP_REASONS)


def test_views_are_deterministic_augmented_captions():
  a = take(batches(with_views=True), 3)[2]
  b = take(batches(with_views=True), 3)[2]
  np.testing.assert_array_equal(a["view_tokens"], b["view_tokens"])
  assert a["view_tokens"].shape == a["tokens"].shape
  assert not np.array_equal(a["view_tokens"], a["tokens"])


def test_dataset_smaller_than_a_batch_is_refused():
  with pytest.raises(ValueError, match="fewer than one batch"):
    pipeline.batches(SyntheticPairs("train", 4, 16), 8, seed=0, tokenizer=tok)


def test_two_processes_each_load_their_half_of_every_global_batch():
  one = take(batches(batch_size=10), 25)
  halves = [take(batches(batch_size=10, process_index=p, process_count=2), 25) for p in (0, 1)]
  for whole, a, b in zip(one, *halves):
    assert len(a["index"]) == len(b["index"]) == 5
    np.testing.assert_array_equal(np.concatenate([a["index"], b["index"]]), whole["index"])
  seen = np.concatenate([h["index"] for part in halves for h in part[:10]])  # the first epoch
  assert sorted(seen) == list(range(100))  # none lost, none twice


def test_resuming_from_a_saved_state_gives_the_identical_remaining_sequence():
  it = batches(with_views=True)
  take(it, 13)  # mid-epoch (12.5 batches per epoch)
  state = it.get_state()
  rest = take(it, 10)
  resumed = batches(with_views=True)
  resumed.set_state(state)
  for a, b in zip(rest, take(resumed, 10)):
    for key in ("index", "image", "tokens", "view_tokens"):
      np.testing.assert_array_equal(a[key], b[key])


def test_pairs_left_out_are_replaced_and_counted():
  out = take(batches(LeavesOut(SOURCE)), 26)  # about two epochs
  left_out = [i for i in range(100) if i % 7 == 0]
  for b in out:
    assert len(b["index"]) == 8 and not np.isin(b["index"], left_out).any()
  counted = sum(int(b["skipped"][0]) for b in out)
  assert counted >= len(left_out)  # each epoch meets all 15 of them
  it = batches(LeavesOut(SOURCE))
  take(it, 26)
  assert it.skipped_total == {"bad_image": counted, "empty_caption": 0}


def test_resuming_inside_a_topped_up_batch_repeats_nothing_and_counts_nothing_twice():
  it = batches(LeavesOut(SOURCE))
  take(it, 5)
  state = it.get_state()
  assert state["used"] > 0  # a loaded batch is partly used: the case to get right
  rest = take(it, 20)
  resumed = batches(LeavesOut(SOURCE))
  resumed.set_state(state)
  for a, b in zip(rest, take(resumed, 20)):
    np.testing.assert_array_equal(a["index"], b["index"])
  assert resumed.skipped_total == it.skipped_total


def test_a_source_with_no_usable_pair_stops_with_a_message():
  class Nothing(LeavesOut):
    def batch(self, indices):
      pairs = dict(self.source.batch(np.zeros(0, np.int64)))
      return {**pairs, "skipped": np.array([len(indices), 0])}

  with pytest.raises(RuntimeError, match="no usable pair"):
    next(batches(Nothing(SOURCE)))


def test_caption_augmentation_keeps_words_and_never_empties():
  rng = np.random.default_rng(0)
  caption = "a small red star on a blue background"
  for _ in range(50):
    view = augment_caption(caption, rng)
    assert view and set(view.split()) <= set(caption.split())


def test_worker_processes_load_the_same_batches_in_the_same_order_and_resume():
  from absl import flags

  flags.FLAGS.mark_as_parsed()  # grain's worker processes read absl flags (main parses them)
  expected = take(batches(), 12)
  it = batches(workers=2)
  first = take(it, 7)
  state = it.get_state()
  resumed = batches(workers=2)
  resumed.set_state(state)
  got = first + take(resumed, 5)
  for a, b in zip(expected, got):
    np.testing.assert_array_equal(a["index"], b["index"])
    np.testing.assert_array_equal(a["image"], b["image"])
