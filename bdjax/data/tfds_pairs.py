"""Image-caption pairs of a prepared TFDS dataset, read by random access without TensorFlow.

`data.train` names the dataset as `tfds:NAME[/CONFIG][:VERSION]`, found in `data.data_dir` (''
for TFDS's default, $TFDS_DATA_DIR or ~/tensorflow_datasets), or as the directory that holds a
prepared version (its `dataset_info.json`, e.g. `/data/tfds/cc3m_pairs/1.0.0`; the directory
above it picks the newest version). The dataset must have been prepared in a random-access
format (`tfds build NAME --file_format=array_record`; `tfds.data_source` reads it without
TensorFlow); it is never downloaded or prepared here.

    data.split          the split ('train', 'train[:90%]', ...)
    data.image_key      its `tfds.features.Image` feature ('image')
    data.caption_key    its `tfds.features.Text` feature ('caption')
    is_backdoor         an optional boolean feature marking pairs shipped already poisoned

The images are read still encoded (`tfds.decode.SkipDecoding`) and decoded here like every
other source's, so a corrupt image or an empty caption is skipped and counted
(bdjax/data/encoded.py); a record that cannot be read at all counts as an empty caption.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from bdjax.data.encoded import EncodedPairs, Record

_INFO = "dataset_info.json"
_HOW = (
  "prepare it with `tfds build NAME --data_dir=DIR --file_format=array_record` (or "
  "`builder.download_and_prepare(file_format='array_record')`), then set "
  "--config.data.train=tfds:NAME --config.data.data_dir=DIR, or --config.data.train to the "
  "directory that holds its dataset_info.json"
)


def builder_dir(path: epath.Path) -> epath.Path | None:
  """The prepared-dataset directory `path` is or holds (its newest version); None if none."""
  if (path / _INFO).exists():
    return path
  versions = []
  for child in path.iterdir() if path.is_dir() else []:
    try:
      version = tfds.core.Version(child.name)
    except ValueError:
      continue
    if (child / _INFO).exists():
      versions.append((version, child))
  return max(versions, key=lambda v: v[0])[1] if versions else None


class TfdsPairs(EncodedPairs):
  """The pairs of one split of a prepared TFDS dataset, in the dataset's order."""

  def __init__(
    self,
    name_or_dir: str,
    split: str = "train",
    data_dir: str | None = None,
    image_key: str = "image",
    caption_key: str = "caption",
    image_size: int = 224,
    threads: int = 0,
  ):
    super().__init__(image_size, threads)
    self.name, self.split = str(name_or_dir), str(split)
    self.image_key, self.caption_key = image_key, caption_key
    builder = self._builder(data_dir)
    where = f"TFDS dataset '{self.name}' (in '{builder.data_dir}')"
    features = builder.info.features
    for key, kind in ((image_key, "image_key"), (caption_key, "caption_key")):
      if key not in features:
        raise ValueError(
          f"{where} has no feature '{key}' (config.data.{kind}); its features: "
          f"{sorted(features.keys())}."
        )
    if not isinstance(features[image_key], tfds.features.Image):
      raise ValueError(
        f"{where}: feature '{image_key}' is a {type(features[image_key]).__name__}, not a "
        "tfds.features.Image (encoded image file): set config.data.image_key to one."
      )
    self.backdoor_key = "is_backdoor" if "is_backdoor" in features else None
    try:
      self._source = builder.as_data_source(
        split=self.split, decoders={image_key: tfds.decode.SkipDecoding()}
      )
    except NotImplementedError as e:  # prepared as TFRecord: no random access
      raise ValueError(f"{where} is not stored for random access ({e}): {_HOW}.") from None
    except (ValueError, KeyError) as e:
      raise ValueError(
        f"{where} has no split '{self.split}' (config.data.split; its splits: "
        f"{sorted(builder.info.splits.keys())}): {e}"
      ) from None

  def _builder(self, data_dir: str | None) -> Any:
    path = epath.Path(self.name)
    looks_like_path = self.name.startswith(("/", ".", "~")) or "://" in self.name
    if looks_like_path or path.is_dir():
      found = builder_dir(path.expanduser()) if path.expanduser().is_dir() else None
      if found is None:
        raise FileNotFoundError(
          f"'{self.name}' (config.data.train) is not a prepared TFDS dataset directory (no "
          f"{_INFO} in it or in a version directory under it): {_HOW}."
        )
      return tfds.builder_from_directory(found)
    shown = data_dir or os.environ.get("TFDS_DATA_DIR") or tfds.core.constants.DATA_DIR
    missing = (
      f"TFDS dataset '{self.name}' (config.data.train) is not prepared in data_dir '{shown}' "
      f"(config.data.data_dir): {_HOW}."
    )
    try:
      builder = tfds.builder(self.name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError:
      raise FileNotFoundError(missing) from None
    if not builder.is_prepared():
      raise FileNotFoundError(missing)
    return builder

  def __len__(self) -> int:
    return len(self._source)

  def read(self, index: int) -> Record:
    index = int(index)
    if not 0 <= index < len(self):
      raise IndexError(f"Pair {index} out of range for {len(self)} pairs in {self!r}.")
    try:
      example = self._source[index]
      image = _value(example[self.image_key])
      caption = _value(example[self.caption_key])
      backdoor = bool(_value(example[self.backdoor_key])) if self.backdoor_key else False
    except Exception:  # an unreadable record: a bad pair, not a stopped run
      return Record(None, "")
    if isinstance(caption, bytes):
      caption = caption.decode("utf-8", errors="replace")
    return Record(image if isinstance(image, bytes) and image else None, str(caption), backdoor)

  def __repr__(self) -> str:
    return f"TfdsPairs('{self.name}', split='{self.split}', {len(self)} pairs)"


def _value(x: Any) -> Any:
  """A Python scalar / bytes for a 0-d numpy value."""
  return x.item() if isinstance(x, np.ndarray | np.generic) and np.ndim(x) == 0 else x
