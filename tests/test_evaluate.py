"""Evaluator arithmetic on hand-made cases: top-k accuracy, recall@k, zero-shot, retrieval."""

import numpy as np

from bdjax.evaluate import Retrieval, ZeroShot, recall_at_k, topk_accuracy


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
