"""Evaluator arithmetic on hand-made cases: top-k accuracy, recall@k, zero-shot, ASR, DER."""

import numpy as np
import pytest

from bdjax.evaluate import Retrieval, ZeroShot, attack_success, der, recall_at_k, topk_accuracy


class FakeEncoder:
  """Embeds an image by its first pixel's RGB, a text by the one-hot of its colour word."""

  WORDS = ("red", "green", "blue")

  def images(self, params, images):
    return images[:, 0, 0, :].astype(np.float32) / 255.0

  def texts(self, params, texts):
    return np.array([[float(w in t) for w in self.WORDS] for t in texts], np.float32)


def solid(rgb_rows):
  return np.array(rgb_rows, np.uint8)[:, None, None, :].repeat(2, 1).repeat(2, 2)


def test_topk_accuracy_by_hand():
  scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.4, 0.35, 0.25]])
  labels = np.array([0, 1, 2])
  assert topk_accuracy(scores, labels, 1) == 1 / 3
  assert topk_accuracy(scores, labels, 2) == 2 / 3
  assert topk_accuracy(scores, labels, 3) == 1.0


def test_recall_at_k_counts_any_correct_item():
  scores = np.array([[0.1, 0.9, 0.5], [0.8, 0.1, 0.3]])
  correct = np.array([[True, False, False], [False, False, True]])
  assert recall_at_k(scores, correct, 1) == 0.0
  assert recall_at_k(scores, correct, 2) == 0.5
  assert recall_at_k(scores, correct, 3) == 1.0


def test_zero_shot_averages_prompts_per_class():
  images = solid([[255, 0, 0], [0, 255, 0], [0, 0, 255], [0, 0, 255]])
  prompts = [["a red thing", "red!"], ["a green thing", "green."], ["a blue thing", "blue"]]
  metrics = ZeroShot(images, np.array([0, 1, 2, 1]), prompts).run(FakeEncoder(), None)
  assert metrics == {"ca_top1": 0.75, "ca_top5": 1.0}


def test_retrieval_treats_identical_captions_as_correct():
  images = solid([[255, 0, 0], [0, 255, 0], [255, 0, 0]])
  captions = ["red", "green", "red"]
  metrics = Retrieval(images, captions).run(FakeEncoder(), None)
  assert metrics["i2t_r1"] == 1.0 and metrics["t2i_r1"] == 1.0


def test_attack_success_counts_only_images_outside_the_target_class():
  # Class 2 is the target. Every row puts the target on top.
  scores = np.array([[0.1, 0.2, 0.9], [0.3, 0.1, 0.8], [0.0, 0.1, 0.7], [0.2, 0.1, 0.6]])
  assert attack_success(scores, np.array([0, 1, 2, 2]), target=2, k=1) == 1.0
  # Rows of the target class would "succeed" trivially: they must not count.
  scores[:2, 2] = 0.0
  assert attack_success(scores, np.array([0, 1, 2, 2]), target=2, k=1) == 0.0
  assert attack_success(scores, np.array([0, 1, 2, 2]), target=2, k=3) == 1.0


def test_asr_is_undefined_not_perfect_when_every_image_is_of_the_target_class():
  scores = np.array([[0.0, 1.0], [0.0, 1.0]])
  assert np.isnan(attack_success(scores, np.array([1, 1]), target=1, k=1))
  images = solid([[0, 0, 255], [0, 0, 255]])
  prompts = [["a red thing"], ["a green thing"], ["a blue thing"]]
  zs = ZeroShot(images, np.array([2, 2]), prompts, triggered=images, target=2)
  metrics = zs.run(FakeEncoder(), None)
  assert metrics["ca_top1"] == 1.0
  assert np.isnan(metrics["asr_top1"]) and np.isnan(metrics["ra_top1"])


def test_zero_shot_reports_ca_asr_and_robust_accuracy_in_one_pass():
  # Clean images are red, green, blue, blue (labels 0, 1, 2, 1); the trigger turns them blue.
  images = solid([[255, 0, 0], [0, 255, 0], [0, 0, 255], [0, 0, 255]])
  triggered = solid([[0, 0, 255], [0, 0, 255], [0, 0, 255], [0, 255, 0]])
  prompts = [["a red thing"], ["a green thing"], ["a blue thing"]]
  labels = np.array([0, 1, 2, 1])
  metrics = ZeroShot(images, labels, prompts, triggered=triggered, target=2).run(
    FakeEncoder(), None
  )
  assert metrics["ca_top1"] == 0.75
  # Rows 0, 1, 3 are outside the target class; rows 0 and 1 are flipped to blue, row 3 is not.
  assert metrics["asr_top1"] == 2 / 3
  assert metrics["ra_top1"] == 1 / 3  # only row 3 keeps its true class


def test_der_by_hand():
  backdoored = {"ca_top1": 0.90, "asr_top1": 0.98}
  assert der(backdoored, {"ca_top1": 0.88, "asr_top1": 0.02}) == pytest.approx(
    (0.96 - 0.02 + 1) / 2
  )
  assert der(backdoored, backdoored) == 0.5
  assert der(backdoored, {"ca_top1": 0.95, "asr_top1": 1.0}) == 0.5  # gains count as no change
