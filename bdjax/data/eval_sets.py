"""The evaluation data a config names (`config.data.eval_source`, `config.data.eval`): labelled
images with their captions, and the zero-shot class names and prompts.

`'synthetic'` is the embedded dataset's evaluation split (bdjax/data/synthetic.py), generated
from `config.seed`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import ml_collections
import numpy as np

from bdjax.data import synthetic


@dataclasses.dataclass(frozen=True)
class EvalData:
  """Labelled evaluation images with their captions and the zero-shot class prompts."""

  images: np.ndarray  # uint8 [N, H, W, 3]
  labels: np.ndarray  # int32 [N]
  captions: Sequence[str]
  class_names: Sequence[str]
  prompts: Sequence[Sequence[str]]  # [C][T]: the prompt templates filled with each class name


def eval_data(data: ml_collections.ConfigDict, seed: int) -> EvalData:
  """The evaluation set named by `data`, rendered into memory."""
  _require_synthetic(data)
  split = synthetic.SyntheticPairs("eval", data.num_eval, data.image_size, seed)
  pairs = split.batch(np.arange(len(split)))
  prompts = [class_prompts(data, c) for c in class_names(data)]
  return EvalData(
    pairs["image"],
    np.asarray(pairs["label"]),
    list(pairs["caption"]),
    synthetic.CLASS_NAMES,
    prompts,
  )


def class_names(data: ml_collections.ConfigDict) -> Sequence[str]:
  """The zero-shot class names of the evaluation set named by `data`."""
  _require_synthetic(data)
  return synthetic.CLASS_NAMES


def class_prompts(data: ml_collections.ConfigDict, class_name: str) -> list[str]:
  """The prompt templates of the evaluation set filled with `class_name`."""
  _require_synthetic(data)
  return synthetic.class_prompts(class_name)


def caption_mentions(caption: str, class_name: str) -> bool:
  """Whether `caption` names `class_name` as a whole word (case-insensitive)."""
  return synthetic.caption_mentions(caption, class_name)


def _require_synthetic(data: ml_collections.ConfigDict) -> None:
  if data.get("eval_source", "synthetic") != "synthetic":
    raise NotImplementedError(
      f"data.eval_source='{data.eval_source}' (eval={data.get('eval')!r}) needs the real "
      "evaluation readers, which this version of bdjax does not have yet."
    )
