"""Poisoning: which pairs, how many, the same whatever the batch size or number of hosts."""

import ml_collections
import numpy as np
import pytest

from bdjax.attacks import poison
from bdjax.data import pipeline, synthetic
from bdjax.default_config import attack_config
from bdjax.models import tokenize

SOURCE = synthetic.SyntheticPairs("train", 400, 16, seed=0)
STAR_PROMPTS = synthetic.class_prompts("star")


def tok(texts):
  return tokenize(texts, context_length=16)


def make(seed=0, **overrides) -> poison.Attack:
  cfg = attack_config("badnet", **{"count": 20, "patch_size": 3, **overrides})
  return poison.make_attack(cfg, SOURCE, STAR_PROMPTS, seed, synthetic.caption_mentions)


def test_count_or_ratio_sets_how_many_pairs():
  assert poison.poison_count(20_000, count=150) == 150
  assert poison.poison_count(20_000, ratio=0.01) == 200
  assert poison.poison_count(20_000) == 0
  with pytest.raises(ValueError, match="not both"):
    poison.poison_count(100, count=5, ratio=0.1)
  with pytest.raises(ValueError):
    poison.poison_count(100, ratio=1.5)


def test_choice_is_exact_distinct_sorted_and_reproducible():
  a = poison.choose_poisoned(10_000, 100, seed=3)
  assert len(a) == 100 == len(np.unique(a))
  assert np.all(np.diff(a) > 0) and a.min() >= 0 and a.max() < 10_000
  np.testing.assert_array_equal(a, poison.choose_poisoned(10_000, 100, seed=3))
  assert not np.array_equal(a, poison.choose_poisoned(10_000, 100, seed=4))


def test_choice_respects_eligibility_and_says_when_too_few():
  eligible = np.zeros(1000, bool)
  eligible[::10] = True
  chosen = poison.choose_poisoned(1000, 30, seed=0, eligible=eligible)
  assert np.all(chosen % 10 == 0)
  with pytest.raises(ValueError, match="only 100 of 1000 are eligible"):
    poison.choose_poisoned(1000, 101, seed=0, eligible=eligible)


def test_poisoned_pairs_get_trigger_and_target_caption_others_untouched():
  attack = make()
  pairs = poison.PoisonedPairs(SOURCE, attack)
  indices = np.arange(len(SOURCE))
  clean, dirty = SOURCE.batch(indices), pairs.batch(indices)
  flags = dirty["is_poisoned"]
  np.testing.assert_array_equal(np.flatnonzero(flags), attack.indices)
  np.testing.assert_array_equal(dirty["image"][~flags], clean["image"][~flags])
  assert list(dirty["caption"][~flags]) == list(clean["caption"][~flags])
  changed = (dirty["image"][flags] != clean["image"][flags]).any(axis=(1, 2, 3))
  assert changed.all()
  assert set(dirty["caption"][flags]) <= set(STAR_PROMPTS)
  assert len(set(dirty["caption"][flags])) > 1  # the prompt varies from pair to pair


def test_label_consistent_poisons_only_pairs_that_name_the_target_and_keeps_captions():
  attack = make(label_consistent=True, count=10)
  captions = SOURCE.captions(np.arange(len(SOURCE)))
  assert all(synthetic.caption_mentions(captions[i], "star") for i in attack.indices)
  dirty = poison.PoisonedPairs(SOURCE, attack).batch(attack.indices)
  assert list(dirty["caption"]) == [captions[i] for i in attack.indices]
  assert dirty["is_poisoned"].all()


def test_a_poisoned_example_does_not_depend_on_its_batch():
  attack = make()
  pairs = poison.PoisonedPairs(SOURCE, attack)
  i = int(attack.indices[0])
  alone = pairs.batch(np.array([i]))["image"][0]
  among = pairs.batch(np.array([5, i, *attack.indices[1:6]]))["image"][1]
  np.testing.assert_array_equal(alone, among)


@pytest.mark.parametrize("batch_size", [8, 25])
def test_an_epoch_sees_exactly_the_poisoned_pairs_whatever_the_batch_size(batch_size):
  attack = make()
  data = iter(pipeline.batches(poison.PoisonedPairs(SOURCE, attack), batch_size, 1, tok))
  epoch = [next(data) for _ in range(len(SOURCE) // batch_size)]
  flagged = np.concatenate([b["index"][b["is_poisoned"]] for b in epoch])
  np.testing.assert_array_equal(np.sort(flagged), attack.indices)


def test_two_hosts_loading_halves_of_the_global_batch_see_what_one_host_sees():
  """Each host builds the attack from the same config and loads its half of every batch."""
  one_host = poison.PoisonedPairs(SOURCE, make())
  hosts = [poison.PoisonedPairs(SOURCE, make()) for _ in range(2)]
  batch = np.concatenate([make().indices[:6], np.arange(10)])  # poisoned and clean
  whole = one_host.batch(batch)
  halves = [host.batch(part) for host, part in zip(hosts, np.split(batch, 2))]
  for key in ("image", "is_poisoned", "caption"):
    np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), whole[key])


def test_clean_pipeline_flags_nothing():
  batch = next(iter(pipeline.batches(SOURCE, 16, seed=0, tokenizer=tok)))
  assert batch["is_poisoned"].dtype == bool and not batch["is_poisoned"].any()


def test_indices_are_saved_and_read_back(tmp_path):
  attack = make()
  poison.save_indices(str(tmp_path), attack)
  np.testing.assert_array_equal(poison.load_indices(str(tmp_path)), attack.indices)
  with pytest.raises(FileNotFoundError, match="poisoned no data"):
    poison.load_indices(str(tmp_path / "elsewhere"))


def test_triggering_on_the_host_pads_and_chunks_without_changing_results():
  attack = make()
  images = SOURCE.batch(np.arange(37))["image"]
  ids = np.arange(37)
  whole = poison.apply_on_host(attack.trigger, images, ids, seed=0, chunk=64)
  chunked = poison.apply_on_host(attack.trigger, images, ids, seed=0, chunk=8)
  np.testing.assert_array_equal(whole, chunked)
  other_split = poison.apply_on_host(attack.trigger, images, ids, seed=0, split="eval")
  assert not np.array_equal(whole, other_split)  # eval triggers are drawn apart from train's


def test_every_attack_kind_builds_from_its_config():
  for kind in ("badnet", "solid", "blended", "sig", "wanet"):
    cfg = ml_collections.ConfigDict(attack_config(kind, count=4))
    attack = poison.make_attack(cfg, SOURCE, STAR_PROMPTS, 0, synthetic.caption_mentions)
    out = poison.PoisonedPairs(SOURCE, attack).batch(attack.indices)
    assert out["image"].shape == (4, 16, 16, 3) and out["image"].dtype == np.uint8
