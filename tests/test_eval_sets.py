"""Real evaluation sets: ImageNet-style folders (labels.csv and class subfolders) and a TFDS
classification set written in tmp_path, read lazily with CLIP's class names and prompts; the
lazy triggered copies and zero-shot on lazy images."""

import dataclasses

import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

from bdjax.attacks import poison
from bdjax.config_check import ConfigError
from bdjax.data import class_names as cn
from bdjax.data import eval_sets, synthetic
from bdjax.default_config import attack_config
from bdjax.evaluate import Encoder, Retrieval, ZeroShot, build_evaluators
from bdjax.models import tokenize
from bdjax.models.clip import CLIP
from bdjax.models.text import TextTransformer
from bdjax.models.vit import VisionTransformer

SIZE = 32
# Three ImageNet classes (wnid, CLIP's name, the colour of their test images).
CLASSES = [
  ("n01440764", "tench", (200, 30, 30)),
  ("n01443537", "goldfish", (30, 200, 30)),
  ("n01484850", "great white shark", (30, 30, 200)),
]


def write_jpeg(path, rgb, size=(48, 40)):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.new("RGB", size, tuple(rgb)).save(path, format="JPEG", quality=95)


def config(path, source="imagenet", **kw):
  return ml_collections.ConfigDict(
    dict(eval_source=source, eval=str(path), image_size=SIZE, templates="openai", **kw)
  )


def labels_csv_folder(root, labels=(2, 0, 1, 0, 2)):
  """CleanCLIP's layout: images/ plus labels.csv (image i has the colour of its class)."""
  rows = ["image,label"]
  for i, label in enumerate(labels):
    write_jpeg(root / "images" / f"val_{i:03d}.JPEG", CLASSES[label][2])
    rows.append(f"images/val_{i:03d}.JPEG,{label}")
  (root / "labels.csv").write_text("\n".join(rows) + "\n")
  return root


def class_folders(root):
  """Class subfolders: file names interleave the classes (ImageNet's val naming)."""
  for k, (wnid, _, rgb) in enumerate(CLASSES):
    for j in range(2):
      write_jpeg(root / wnid / f"ILSVRC2012_val_{3 * j + k:08d}.JPEG", rgb)
  return root


def colours(images):
  return images.reshape(len(images), -1, 3).mean(1)


def assert_colours(images, labels):
  expected = np.array([CLASSES[int(c)][2] for c in labels], np.float64)
  np.testing.assert_allclose(colours(images), expected, atol=4)


# ------------------------------------------------------------------------------ ImageNet folders


def test_labels_csv_layout_is_read_lazily_with_clip_names(tmp_path):
  data = eval_sets.eval_data(config(labels_csv_folder(tmp_path / "val")), seed=0)
  np.testing.assert_array_equal(data.labels, [2, 0, 1, 0, 2])
  assert data.captions is None
  assert tuple(data.class_names) == cn.IMAGENET_CLASSNAMES and len(data.class_names) == 1000
  images = data.images
  assert isinstance(images, eval_sets.LazyImages) and not isinstance(images, np.ndarray)
  assert images.shape == (5, SIZE, SIZE, 3) and images.dtype == np.uint8 and len(images) == 5
  chunk = images[1:4]
  assert isinstance(chunk, np.ndarray) and chunk.shape == (3, SIZE, SIZE, 3)
  assert_colours(chunk, [0, 1, 0])
  assert_colours(images[np.array([4, 0])], [2, 2])
  assert images[2].shape == (SIZE, SIZE, 3) and images[:0].shape == (0, SIZE, SIZE, 3)
  assert_colours(np.asarray(images), data.labels)


def test_class_folder_layout_orders_by_file_name_and_names_wnids(tmp_path):
  data = eval_sets.eval_data(config(class_folders(tmp_path / "val")), seed=0)
  assert list(data.class_names) == ["tench", "goldfish", "great white shark"]
  np.testing.assert_array_equal(data.labels, [0, 1, 2, 0, 1, 2])  # ILSVRC2012_val_0..5
  assert_colours(data.images[:], data.labels)
  assert eval_sets.class_names(config(tmp_path / "val")) == data.class_names


def test_other_class_folders_are_named_by_their_folder(tmp_path):
  for name, rgb in (("sea_lion", (0, 0, 0)), ("apple", (255, 255, 255))):
    write_jpeg(tmp_path / "set" / name / "a.png", rgb)
  assert list(eval_sets.class_names(config(tmp_path / "set"))) == ["apple", "sea lion"]


def test_eval_max_keeps_the_first_examples(tmp_path):
  csv_data = eval_sets.eval_data(config(labels_csv_folder(tmp_path / "a"), eval_max=3), seed=0)
  np.testing.assert_array_equal(csv_data.labels, [2, 0, 1])
  assert csv_data.images.shape == (3, SIZE, SIZE, 3)
  folder_data = eval_sets.eval_data(config(class_folders(tmp_path / "b"), eval_max=4), seed=0)
  np.testing.assert_array_equal(folder_data.labels, [0, 1, 2, 0])


def test_real_prompts_are_clip_templates_filled_with_the_name(tmp_path):
  cfg = config(labels_csv_folder(tmp_path / "val"))
  prompts = eval_sets.class_prompts(cfg, "goldfish")
  assert len(prompts) == 80 == len(set(prompts))
  assert prompts[0] == "a bad photo of a goldfish." and prompts[-1] == "a tattoo of the goldfish."
  data = eval_sets.eval_data(cfg, seed=0)
  assert data.prompts[1] == prompts and len(data.prompts) == 1000
  cfg.templates = "cifar"
  assert eval_sets.class_prompts(cfg, "cat")[:2] == [
    "a photo of a cat.",
    "a blurry photo of a cat.",
  ]
  cfg.templates = "mine"
  with pytest.raises(ConfigError, match="templates='mine'"):
    eval_sets.class_prompts(cfg, "cat")


def test_class_names_read_no_image(tmp_path, monkeypatch):
  cfg = config(labels_csv_folder(tmp_path / "val"))

  def no_decoding(*args):
    raise AssertionError("class_names decoded an image")

  monkeypatch.setattr(eval_sets, "decode_image", no_decoding)
  assert len(eval_sets.class_names(cfg)) == 1000
  assert len(eval_sets.class_prompts(cfg, "tench")) == 80


def test_startup_errors_say_what_is_expected(tmp_path):
  with pytest.raises(ConfigError, match="does not exist"):
    eval_sets.class_names(config(tmp_path / "missing"))
  with pytest.raises(ConfigError, match="config.data.eval is empty"):
    eval_sets.class_names(config(""))
  (tmp_path / "empty").mkdir()
  with pytest.raises(ConfigError, match="neither labels.csv"):
    eval_sets.class_names(config(tmp_path / "empty"))
  with pytest.raises(ConfigError, match="eval_source='folder'"):
    eval_sets.class_names(config(tmp_path, source="folder"))

  root = labels_csv_folder(tmp_path / "bad")
  lines = (root / "labels.csv").read_text().splitlines()
  for bad_row, expect in (
    ("images/val_000.JPEG,goldfish", "label 'goldfish'"),
    ("images/val_000.JPEG,1000", "label '1000'"),
    ("images/val_000.JPEG", "1 field"),
    ("images/nowhere.JPEG,1", "nowhere.JPEG does not exist"),
  ):
    (root / "labels.csv").write_text("\n".join(lines[:2] + [bad_row] + lines[2:]) + "\n")
    eval_sets._imagenet_index.cache_clear()
    with pytest.raises(ConfigError, match="line 3") as e:
      eval_sets.class_names(config(root))
    assert str(root / "labels.csv") in str(e.value) and expect in str(e.value)
  (root / "labels.csv").write_text("path,class\nimages/val_000.JPEG,1\n")
  eval_sets._imagenet_index.cache_clear()
  with pytest.raises(ConfigError, match="header 'image,label'"):
    eval_sets.class_names(config(root))


def test_a_corrupt_image_becomes_black_and_is_reported_once(tmp_path, capsys):
  root = labels_csv_folder(tmp_path / "val")
  (root / "images" / "val_001.JPEG").write_bytes(b"not a jpeg")
  images = eval_sets.eval_data(config(root), seed=0).images
  capsys.readouterr()
  batch = images[0:3]
  assert not batch[1].any()  # black
  assert_colours(batch[[0, 2]], [2, 1])
  images[1:2]
  out = capsys.readouterr().out
  assert out.count("Warning: evaluation image 1") == 1 and "val_001.JPEG" in out
  assert list(images.bad) == [1]


# ------------------------------------------------------------------------------------ TFDS


def test_tfds_classification_set_via_data_source(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  import io

  class BdjaxTinyClassification(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      label = tfds.features.ClassLabel(names=["tench_fish", "gold_fish", "white_shark"])
      features = tfds.features.FeaturesDict({"image": tfds.features.Image(), "label": label})
      return tfds.core.DatasetInfo(builder=self, features=features)

    def _split_generators(self, dl_manager):
      return {"test": self._generate_examples()}

    def _generate_examples(self):
      for i in range(7):
        buf = io.BytesIO()  # encoded bytes: tfds encodes arrays with TensorFlow
        Image.new("RGB", (20, 24), CLASSES[i % 3][2]).save(buf, format="PNG")
        yield i, {"image": buf.getvalue(), "label": i % 3}

  builder = BdjaxTinyClassification(data_dir=str(tmp_path / "tfds"), file_format="array_record")
  builder.download_and_prepare()
  name = "bdjax_tiny_classification"
  by_name = config(name, source="tfds", eval_data_dir=str(tmp_path / "tfds"), eval_split="test")
  by_dir = config(tmp_path / "tfds" / name, source="tfds", eval_split="test", eval_max=4)
  assert list(eval_sets.class_names(by_name)) == ["tench fish", "gold fish", "white shark"]
  data = eval_sets.eval_data(by_name, seed=0)
  assert data.captions is None and len(data.prompts[0]) == 80
  assert sorted(data.labels.tolist()) == [0, 0, 0, 1, 1, 2, 2]
  assert data.images.shape == (7, SIZE, SIZE, 3)
  assert_colours(data.images[2:7], data.labels[2:7])
  short = eval_sets.eval_data(by_dir, seed=0)
  np.testing.assert_array_equal(short.labels, data.labels[:4])
  np.testing.assert_array_equal(short.images[:], data.images[:4])
  with pytest.raises(ConfigError, match="no split 'validation'"):
    eval_sets.class_names(
      config(name, source="tfds", eval_data_dir=str(tmp_path / "tfds"), eval_split="validation")
    )
  with pytest.raises(ConfigError, match="not prepared"):
    eval_sets.class_names(config(name, source="tfds", eval_data_dir=str(tmp_path / "none")))


def test_names_for_uses_clip_names_where_clip_has_them():
  assert cn.names_for("cifar10", [f"x{i}" for i in range(10)]) == cn.CIFAR10_CLASSNAMES
  cifar100 = ["aquarium_fish" if n == "aquarium fish" else n for n in cn.CIFAR100_CLASSNAMES]
  assert cn.names_for("cifar100:3.0.2", cifar100) == cn.CIFAR100_CLASSNAMES
  assert cn.names_for("imagenet2012", cn.IMAGENET_WNIDS) == cn.IMAGENET_CLASSNAMES
  assert cn.names_for("imagenet_r", ["n01443537", "n01440764"]) == ("goldfish", "tench")
  assert cn.names_for("beans", ["angular_leaf_spot", "healthy"]) == ("angular leaf spot", "healthy")
  assert len(cn.IMAGENET_CLASSNAMES) == 1000 and len(cn.OPENAI_TEMPLATES) == 80
  assert cn.IMAGENET_CLASSNAMES[0] == "tench" and cn.IMAGENET_CLASSNAMES[-1] == "toilet paper"


# ------------------------------------------------------------- evaluators on lazy images


class StarAttack:
  """A real BadNet attack's trigger, aimed at an ImageNet class of the test folders."""

  def __init__(self, target="goldfish", kind="badnet"):
    source = synthetic.SyntheticPairs("train", 200, SIZE, seed=0)
    cfg = attack_config(kind, count=5, patch_size=8)
    attack = poison.make_attack(
      cfg, source, synthetic.class_prompts("star"), 0, synthetic.caption_mentions
    )
    self.attack = dataclasses.replace(attack, target=target)
    self.target = target
    self.calls = []

  def trigger_images(self, images, indices, split="train"):
    self.calls.append((len(images), split))
    return self.attack.trigger_images(images, indices, split=split)


def test_lazy_triggered_view_equals_trigger_images_on_the_materialised_images(tmp_path):
  data = eval_sets.eval_data(config(labels_csv_folder(tmp_path / "val")), seed=0)
  attack = StarAttack()
  (zero_shot,) = build_evaluators(data, attack)
  assert zero_shot.target == 1 and not attack.calls  # nothing triggered before it is asked
  keep = np.flatnonzero(data.labels != 1)  # rows of other classes than goldfish
  expected = attack.attack.trigger_images(data.images[:], np.arange(5), split="eval")[keep]
  got = np.concatenate([zero_shot.triggered[0:2], zero_shot.triggered[2:]])
  np.testing.assert_array_equal(got, expected)
  assert not np.array_equal(got, data.images[keep])  # the trigger is there
  assert [n for n, _ in attack.calls] == [2, 2] and {s for _, s in attack.calls} == {"eval"}


def test_build_evaluators_skips_retrieval_without_captions(tmp_path):
  real = eval_sets.eval_data(config(labels_csv_folder(tmp_path / "val")), seed=0)
  assert [type(e) for e in build_evaluators(real)] == [ZeroShot]
  synth_cfg = ml_collections.ConfigDict(dict(eval_source="synthetic", num_eval=20, image_size=16))
  synth = eval_sets.eval_data(synth_cfg, seed=0)
  assert isinstance(synth.images, np.ndarray) and len(synth.captions) == 20
  assert [type(e) for e in build_evaluators(synth)] == [ZeroShot, Retrieval]


@pytest.fixture(scope="module")
def tiny_encoder():
  d = 16
  vit = VisionTransformer(patch_size=8, width=32, depth=1, heads=2, output_dim=d, act="quick_gelu")
  text = TextTransformer(
    width=32,
    depth=1,
    heads=2,
    output_dim=d,
    vocab_size=49408,
    context_length=16,
    act="quick_gelu",
  )
  model = CLIP(vit, text)
  images = np.zeros((1, SIZE, SIZE, 3), np.float32)
  params = jax.jit(model.init)(jax.random.key(0), images, np.zeros((1, 16), np.int32))
  encoder = Encoder(model, lambda t: tokenize(t, context_length=16), batch_size=4)
  return encoder, params


def test_zero_shot_on_lazy_images_equals_zero_shot_on_the_ndarray(tmp_path, tiny_encoder):
  encoder, params = tiny_encoder
  root = labels_csv_folder(tmp_path / "val", labels=(2, 0, 1, 0, 2, 1, 1))
  data = eval_sets.eval_data(config(root), seed=0)
  prompts = [p[:2] for p in data.prompts[:3]]  # the three classes of the folder, 2 templates
  attack = StarAttack().attack

  def trigger(images, indices):
    return attack.trigger_images(images, indices, split="eval")

  lazy_triggered = eval_sets.Rows(data.images, np.arange(7), trigger)
  lazy = ZeroShot(data.images, data.labels, prompts, triggered=lazy_triggered, target=1)
  dense = np.asarray(data.images)
  triggered = trigger(dense, np.arange(7))
  eager = ZeroShot(dense, data.labels, prompts, triggered=triggered, target=1)
  got, want = lazy.run(encoder, params), eager.run(encoder, params)
  assert set(got) == {"ca_top1", "ca_top5", "asr_top1", "asr_top5", "ra_top1"}
  assert got == want
  np.testing.assert_array_equal(encoder.images(params, data.images), encoder.images(params, dense))
