"""Pairs of a real TFDS ArrayRecord dataset, written here without TensorFlow and read by TfdsPairs.

TFDS writes a dataset without TensorFlow when its images are given already encoded (bytes or
paths: `tfds.features.Image` stores them as they are) and the file format is ArrayRecord.
"""

import importlib.util
import io
import pickle
import sys

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from bdjax.data.encoded import SKIP_REASONS, Record
from bdjax.data.sources import train_source
from bdjax.data.tfds_pairs import TfdsPairs

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]


def image_bytes(colour, fmt="JPEG") -> bytes:
  buffer = io.BytesIO()
  Image.new("RGB", (12, 8), colour).save(buffer, fmt)
  return buffer.getvalue()


# Four good pairs (the third a PNG, the second a backdoor pair), then a corrupt image and an
# empty caption.
EXAMPLES = [
  (image_bytes(COLOURS[0]), "a red square", False),
  (image_bytes(COLOURS[1]), "a green square – ünïcode", True),
  (image_bytes(COLOURS[2], "PNG"), "a blue square", False),
  (image_bytes(COLOURS[3]), "a yellow square", False),
  (b"\xff\xd8\xff not a jpeg", "a corrupt image", False),
  (image_bytes(COLOURS[0]), "", False),
]


class BdjaxTinyPairs(tfds.core.GeneratorBasedBuilder):
  """Six image-caption pairs in a 'train' split and two in 'test'."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    features = tfds.features.FeaturesDict(
      {
        "image": tfds.features.Image(encoding_format="jpeg"),
        "caption": tfds.features.Text(),
        "is_backdoor": tfds.features.Scalar(np.bool_),
      }
    )
    # TFDS stores examples in the order of their keys' hashes unless told to keep them in order.
    return tfds.core.DatasetInfo(builder=self, features=features, disable_shuffling=True)

  def _split_generators(self, dl_manager):
    return {
      "train": self._generate_examples(EXAMPLES),
      "test": self._generate_examples(EXAMPLES[:2]),
    }

  def _generate_examples(self, examples):
    for i, (image, caption, backdoor) in enumerate(examples):
      yield i, {"image": image, "caption": caption, "is_backdoor": backdoor}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("tfds")
  BdjaxTinyPairs(data_dir=str(root), file_format="array_record").download_and_prepare()
  return root


def colour_of(image: np.ndarray) -> tuple[int, ...]:
  return tuple(int(round(v / 255)) * 255 for v in image.reshape(-1, 3).mean(0))


def test_written_without_tensorflow(data_dir):
  if importlib.util.find_spec("tensorflow") is not None:
    pytest.skip("TensorFlow is installed here: this checks that writing does not need it.")
  assert "tensorflow" not in sys.modules
  version_dir = data_dir / "bdjax_tiny_pairs" / "1.0.0"
  assert (version_dir / "dataset_info.json").exists()
  assert list(version_dir.glob("bdjax_tiny_pairs-train.array_record-*"))


@pytest.mark.parametrize("form", ["name", "version_dir", "dataset_dir"])
def test_reads_encoded_pairs_in_order(data_dir, form):
  name_or_dir, kwargs = {
    "name": ("bdjax_tiny_pairs", {"data_dir": str(data_dir)}),
    "version_dir": (str(data_dir / "bdjax_tiny_pairs" / "1.0.0"), {}),
    "dataset_dir": (str(data_dir / "bdjax_tiny_pairs"), {}),  # the newest version
  }[form]
  pairs = TfdsPairs(name_or_dir, split="train", image_size=16, threads=2, **kwargs)
  assert len(pairs) == 6
  assert [pairs.read(i) for i in range(6)] == [Record(*e) for e in EXAMPLES]  # bytes as stored
  batch = pairs.batch(np.arange(6))
  assert batch["image"].shape == (4, 16, 16, 3)
  assert [colour_of(im) for im in batch["image"]] == COLOURS
  assert batch["caption"] == [e[1] for e in EXAMPLES[:4]]
  assert batch["index"].tolist() == [0, 1, 2, 3]
  assert batch["is_poisoned"].tolist() == [False, True, False, False]
  assert dict(zip(SKIP_REASONS, batch["skipped"].tolist())) == {"bad_image": 1, "empty_caption": 1}
  assert pairs.captions(np.array([3, 1])) == [EXAMPLES[3][1], EXAMPLES[1][1]]


def test_other_splits_and_the_sources_dispatch(data_dir):
  test = TfdsPairs("bdjax_tiny_pairs", split="test", data_dir=str(data_dir), image_size=8)
  assert [test.read(i).caption for i in range(len(test))] == ["a red square", EXAMPLES[1][1]]
  part = TfdsPairs("bdjax_tiny_pairs", split="train[2:4]", data_dir=str(data_dir), image_size=8)
  assert [part.read(i).caption for i in range(len(part))] == ["a blue square", "a yellow square"]
  config = ml_collections.ConfigDict(
    {"source": "auto", "train": "tfds:bdjax_tiny_pairs", "data_dir": str(data_dir), "image_size": 8}
  )
  source = train_source(config, seed=0)
  assert isinstance(source, TfdsPairs) and len(source) == 6


def test_picklable_for_grain_workers(data_dir):
  pairs = TfdsPairs("bdjax_tiny_pairs", data_dir=str(data_dir), image_size=8, threads=2)
  pairs.batch(np.arange(2))
  copy = pickle.loads(pickle.dumps(pairs))
  assert [copy.read(i) for i in range(6)] == [pairs.read(i) for i in range(6)]


def test_missing_dataset_split_or_feature_is_a_clear_error(data_dir, tmp_path):
  with pytest.raises(FileNotFoundError, match=rf"(?s)'no_such_pairs'.*{tmp_path}.*tfds build"):
    TfdsPairs("no_such_pairs", data_dir=str(tmp_path), image_size=8)
  with pytest.raises(FileNotFoundError, match=r"(?s)'bdjax_tiny_pairs'.*not prepared.*tfds build"):
    TfdsPairs("bdjax_tiny_pairs", data_dir=str(tmp_path), image_size=8)  # registered, not built
  with pytest.raises(FileNotFoundError, match=r"(?s)nowhere.*dataset_info.json"):
    TfdsPairs(str(tmp_path / "nowhere"), image_size=8)
  with pytest.raises(ValueError, match=r"(?s)no split 'validation'.*'test', 'train'"):
    TfdsPairs("bdjax_tiny_pairs", split="validation", data_dir=str(data_dir), image_size=8)
  with pytest.raises(ValueError, match=r"no feature 'text'.*caption_key"):
    TfdsPairs("bdjax_tiny_pairs", data_dir=str(data_dir), caption_key="text", image_size=8)
  with pytest.raises(ValueError, match=r"'is_backdoor' is a Scalar, not a tfds.features.Image"):
    TfdsPairs("bdjax_tiny_pairs", data_dir=str(data_dir), image_key="is_backdoor", image_size=8)
