"""Evaluators: small objects with `run(encoder, params) -> dict[str, float]` (metrics as fractions).

- `ZeroShot`: top-1/top-5 zero-shot classification (`ca_top1`, `ca_top5`): each class is the
  re-normalised mean of the embeddings of its prompts (the prompt templates filled with its
  name); an image is assigned the class of highest cosine similarity. Given triggered copies of
  the images and the attack's target class, the same pass also reports the backdoor metrics
  (REFERENCE.md section 4) on the triggered images whose true class is *not* the target:
  attack success rate `asr_top1`/`asr_top5` (the target among the top 1/5 classes) and robust
  accuracy `ra_top1` (the true class on top).
- `Retrieval`: image->text and text->image recall@{1,5,10} on held-out pairs (`i2t_r1`, ...,
  `t2i_r10`). A retrieved item counts as correct when its caption is identical to the query's
  own caption (generated captions repeat, and an identical caption is an equally right answer).

`der(backdoored, defended)` is BackdoorBench's defense effectiveness rating between two
evaluations. `Encoder` holds the jitted tower functions; evaluators call it in fixed-size
chunks (the last one padded) so each tower compiles once.

Images may be an ndarray or a lazy array-like (`bdjax.data.eval_sets.LazyImages`: a real
evaluation set decoded on demand). The `Encoder` takes one chunk at a time (`images[i:i+b]`), so
a lazy set is only ever decoded a chunk at a time, the next chunk while the accelerator embeds
the previous one. The triggered copies for ASR are lazy too: `build_evaluators` gives `ZeroShot`
a view that applies the attack's trigger to each chunk as it is embedded, and `ZeroShot` only
asks it for the images outside the target class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from bdjax.data.augment import normalize
from bdjax.data.eval_sets import Rows, take_rows
from bdjax.token_trim import trim_tokens


class Encoder:
  """Embeds images and texts with a CLIP model in fixed-size jitted chunks."""

  def __init__(
    self, model: nn.Module, tokenizer: Callable[[Sequence[str]], np.ndarray], batch_size: int = 256
  ):
    self.tokenizer = tokenizer
    self.batch_size = batch_size
    self._images = jax.jit(lambda p, x: model.apply(p, normalize(x), method="encode_image"))
    self._texts = jax.jit(lambda p, t: model.apply(p, t, method="encode_text"))

  def images(self, params: Any, images: Any) -> np.ndarray:
    """uint8 [N, H, W, 3] (an ndarray or a lazy array-like) -> L2-normalised [N, D]."""
    return self._chunked(self._images, params, images)

  def texts(self, params: Any, texts: Sequence[str]) -> np.ndarray:
    """N strings -> L2-normalised [N, D] (the tokens cut after the longest: token_trim.py)."""
    tokens = trim_tokens({"tokens": np.asarray(self.tokenizer(list(texts)))})["tokens"]
    return self._chunked(self._texts, params, tokens)

  def _chunked(self, fn, params, x: Any) -> np.ndarray:
    """`fn` over `x` in chunks of `batch_size`. Only one chunk of `x` is loaded at a time
    (`x[i:i+b]`: a lazy array decodes it then), while the accelerator still embeds the previous
    one (jax dispatches asynchronously; its result is fetched after the next chunk is loaded)."""
    out, n, b = [], len(x), self.batch_size
    pending = None  # (result, rows) of the chunk dispatched last
    for i in range(0, n, b):
      chunk = np.asarray(x[i : i + b])
      rows = len(chunk)
      if rows < b:
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - rows, axis=0)])
      result = fn(params, chunk)
      del chunk
      if pending is not None:
        out.append(np.asarray(pending[0])[: pending[1]])
      pending = (result, rows)
    if pending is not None:
      out.append(np.asarray(pending[0])[: pending[1]])
    return np.concatenate(out)


def class_embeddings(encoder: Encoder, params: Any, prompts: Sequence[Sequence[str]]) -> np.ndarray:
  """[C, D]: per class, the normalised mean of its normalised prompt embeddings.

  `prompts[c]` holds class c's prompt templates filled with its name (T per class).
  """
  num_classes, num_templates = len(prompts), len(prompts[0])
  flat = [p for class_prompts in prompts for p in class_prompts]
  emb = encoder.texts(params, flat).reshape(num_classes, num_templates, -1).mean(1)
  return emb / np.linalg.norm(emb, axis=-1, keepdims=True)


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
  """Fraction of rows whose label is among the k highest scores."""
  topk = np.argsort(-scores, axis=1)[:, :k]
  return float(np.mean(np.any(topk == labels[:, None], axis=1)))


def attack_success(scores: np.ndarray, labels: np.ndarray, target: int, k: int) -> float:
  """Fraction of the rows whose true label is not `target` that have `target` in their top k.

  Rows of the target class are left out: a triggered image of the target class classified as
  the target is no success of the attack. NaN when every row is of the target class.
  """
  keep = np.asarray(labels) != target
  if not keep.any():
    return float("nan")
  return topk_accuracy(scores[keep], np.full(int(keep.sum()), target), k)


def der(backdoored: dict[str, float], defended: dict[str, float]) -> float:
  """Defense effectiveness rating (BackdoorBench), in [0, 1]; 0.5 means no change.

  `DER = [max(0, ASR_bd - ASR_def) - max(0, CA_bd - CA_def) + 1] / 2` on top-1 ASR and CA.
  """
  asr_drop = max(0.0, backdoored["asr_top1"] - defended["asr_top1"])
  ca_drop = max(0.0, backdoored["ca_top1"] - defended["ca_top1"])
  return (asr_drop - ca_drop + 1.0) / 2.0


class ZeroShot:
  """Zero-shot accuracy of labelled images and, given triggered copies, ASR and RA."""

  def __init__(
    self,
    images: Any,
    labels: np.ndarray,
    prompts: Sequence[Sequence[str]],
    triggered: Any | None = None,
    target: int | None = None,
  ):
    """`triggered[i]` is `images[i]` with the trigger; `target` the attack's class index.

    `images` and `triggered` are ndarrays or lazy array-likes (loaded a chunk at a time)."""
    if (triggered is None) != (target is None):
      raise ValueError("Give both `triggered` images and the `target` class, or neither.")
    self.images, self.labels, self.prompts = images, np.asarray(labels), prompts
    self.target = target
    if triggered is not None:
      keep = np.flatnonzero(self.labels != target)  # only these count for ASR and RA
      self.triggered, self.triggered_labels = take_rows(triggered, keep), self.labels[keep]

  def run(self, encoder: Encoder, params: Any) -> dict[str, float]:
    classes = class_embeddings(encoder, params, self.prompts)
    scores = encoder.images(params, self.images) @ classes.T
    k5 = min(5, len(self.prompts))
    metrics = {
      "ca_top1": topk_accuracy(scores, self.labels, 1),
      "ca_top5": topk_accuracy(scores, self.labels, k5),
    }
    if self.target is not None:
      metrics.update(self._backdoor(encoder, params, classes, k5))
    return metrics

  def _backdoor(self, encoder: Encoder, params: Any, classes: np.ndarray, k5: int) -> dict:
    labels = self.triggered_labels
    if not len(labels):
      return {"asr_top1": float("nan"), "asr_top5": float("nan"), "ra_top1": float("nan")}
    scores = encoder.images(params, self.triggered) @ classes.T
    return {
      "asr_top1": attack_success(scores, labels, self.target, 1),
      "asr_top5": attack_success(scores, labels, self.target, k5),
      "ra_top1": topk_accuracy(scores, labels, 1),
    }


def recall_at_k(scores: np.ndarray, correct: np.ndarray, k: int) -> float:
  """Fraction of queries (rows) with a correct item (`correct[i, j]`) among the top k scores."""
  topk = np.argsort(-scores, axis=1)[:, :k]
  return float(np.mean(np.take_along_axis(correct, topk, axis=1).any(axis=1)))


class Retrieval:
  """Image<->text recall@{1,5,10} on held-out pairs."""

  def __init__(self, images: Any, captions: Sequence[str]):
    self.images, self.captions = images, list(captions)

  def run(self, encoder: Encoder, params: Any) -> dict[str, float]:
    scores = encoder.images(params, self.images) @ encoder.texts(params, self.captions).T
    caps = np.asarray(self.captions, dtype=object)
    correct = caps[:, None] == caps[None, :]
    metrics = {}
    for k in (1, 5, 10):
      metrics[f"i2t_r{k}"] = recall_at_k(scores, correct, k)
      metrics[f"t2i_r{k}"] = recall_at_k(scores.T, correct.T, k)
    return metrics


def build_evaluators(data: Any, attack: Any | None = None) -> tuple[Any, ...]:
  """The evaluators of `data` (a `bdjax.data.eval_sets.EvalData`): zero-shot classification,
  with ASR and RA when there is an `attack`, and retrieval when the set has captions (a real
  classification set has none).

  The attack's trigger goes on eval-only copies, made lazily a chunk at a time: image i is
  `attack.trigger_images(images[i], [i], split='eval')`, keyed by its index in the set."""
  backdoor = {}
  if attack is not None:

    def trigger(images: np.ndarray, indices: np.ndarray) -> np.ndarray:
      return attack.trigger_images(images, indices, split="eval")

    backdoor = dict(
      triggered=Rows(data.images, np.arange(len(data.images)), trigger),
      target=list(data.class_names).index(attack.target),
    )
  evaluators: tuple[Any, ...] = (ZeroShot(data.images, data.labels, data.prompts, **backdoor),)
  if data.captions is not None:
    evaluators += (Retrieval(data.images, data.captions),)
  return evaluators
