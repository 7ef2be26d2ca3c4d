"""The evaluation data a config names (`config.data`): labelled images, their captions where
the set has them, and the zero-shot class names and prompts.

    data.eval_source  'synthetic'  the embedded dataset's evaluation split (data/synthetic.py),
                                   generated from `config.seed` and held in memory, with captions
                                   (so retrieval is evaluated too) and its own prompt templates
                      'imagenet'   an ImageNet-style image folder `data.eval` (ImageNet-1k val), in
                                   one of two layouts:
                                   - CleanCLIP's: FOLDER/labels.csv, columns `image` (path relative
                                     to FOLDER, or absolute) and `label` (class index 0..999 of
                                     ImageNet-1k, CLIP's names); examples in file order
                                   - class subfolders: FOLDER/<class>/<image> (torchvision's
                                     ImageFolder), subfolders sorted = class index, so ImageNet's
                                     1,000 wnid folders (n01440764, ...) give the standard order
                                     and CLIP's names (other folder names are used as names, '_'
                                     read as ' '); examples sorted by file name, then folder
                                     (ImageNet's val names ILSVRC2012_val_NNNNNNNN give its
                                     canonical, class-mixed order)
                      'tfds'       a prepared TFDS image classification dataset: `data.eval` is its
                                   name ('cifar10', 'imagenet2012:5.1.0'; a 'tfds:' prefix is
                                   allowed) in `data.eval_data_dir` ('' = TFDS's default), or the
                                   directory of a prepared version (holding dataset_info.json);
                                   split `data.eval_split` ('test'), features 'image' and 'label';
                                   names from the label feature, CLIP's where it has them
                                   (bdjax/data/class_names.py). Read as TFDS data sources, i.e.
                                   ArrayRecord files, with no TensorFlow: the dataset must have
                                   been prepared with file_format='array_record'. Its labels are
                                   read when the evaluation set is built, by one pass over the
                                   evaluated records (images left encoded). ImageNet's split is
                                   'validation'.
    data.eval_max     0 = every example; N = the first N examples in the order above (quick evals)
    data.templates    real sets: the prompt templates, 'openai' (CLIP's 80 ImageNet templates) or
                      'cifar' (CLIP's 18 CIFAR templates); the synthetic set keeps its own
    data.image_size   images are decoded to this size (shorter side resized, centre square:
                      bdjax/data/encoded.py `decode_image`, CLIP's preprocessing)
    data.threads      decoding threads (0 = up to 16, one per CPU)

Real sets are never held in memory: `EvalData.images` is then a read-only array-like
(`LazyImages`) that reads and decodes the images an index or slice asks for, in a thread pool;
the evaluators ask one chunk at a time. Real classification sets have no paired captions:
`captions` is None and no retrieval is evaluated.

Bad data: a missing folder, a folder with neither labels.csv nor class subfolders, a malformed
labels.csv row (named by file and line), a listed image that does not exist, an unprepared or
non-ArrayRecord TFDS dataset stop the run at start-up with a `ConfigError` saying what is
expected (`class_names` runs these checks without reading any image). An image that exists but
cannot be decoded (corrupt, truncated) does not stop an evaluation: a black image stands in for
it, so every evaluation scores the same N examples (the bad one counts, normally as a miss); each
such image is reported once, with its path, on stdout.
"""

from __future__ import annotations

import abc
import concurrent.futures
import csv
import dataclasses
import functools
import io
import os
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections
import numpy as np
from etils import epath

from bdjax.config_check import ConfigError
from bdjax.data import class_names as clip_names
from bdjax.data import synthetic
from bdjax.data.encoded import BadImage, decode_image

EVAL_SOURCES = ("synthetic", "imagenet", "tfds")

#: Image file extensions of the class-subfolder layout (torchvision's ImageFolder's).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

LABELS_FILE = "labels.csv"
_REPORTED_BAD = 10  # bad images named one by one; later ones are only counted


@dataclasses.dataclass(frozen=True)
class EvalData:
  """Labelled evaluation images, their captions (None: the set has none) and the zero-shot
  class names and prompts."""

  images: Any  # uint8 [N, S, S, 3]: an ndarray or a `LazyImages`
  labels: np.ndarray  # int32 [N]
  captions: Sequence[str] | None
  class_names: Sequence[str]
  prompts: Sequence[Sequence[str]]  # [C][T]: the prompt templates filled with each class name


# ----------------------------------------------------------------------------------------------
# Lazy image arrays.
# ----------------------------------------------------------------------------------------------


class LazyImages(abc.ABC):
  """A read-only uint8 [N, S, S, 3] array-like whose rows are made when indexed.

  `x[i]` is one image [S, S, 3]; `x[a:b]`, `x[int_array]`, `x[bool_mask]` are [k, S, S, 3]
  ndarrays, and a tuple indexes the loaded rows further (`x[:, 0, 0]`). `np.asarray(x)` loads
  every row: fine for a small set, never done by the evaluators. Subclasses implement `_load`.
  """

  dtype = np.dtype(np.uint8)
  ndim = 4

  def __init__(self, length: int, image_size: int):
    self._length, self.image_size = int(length), int(image_size)

  @abc.abstractmethod
  def _load(self, indices: np.ndarray) -> np.ndarray:
    """uint8 [len(indices), S, S, 3]: the rows `indices` (int64, in range, maybe empty)."""

  def __len__(self) -> int:
    return self._length

  @property
  def shape(self) -> tuple[int, int, int, int]:
    return (self._length, self.image_size, self.image_size, 3)

  def __getitem__(self, key: Any) -> np.ndarray:
    if isinstance(key, tuple):
      return self[key[0]][(slice(None),) * (not _is_int(key[0])) + key[1:]]
    if _is_int(key):
      return self._load(row_indices(np.array([key]), self._length))[0]
    return self._load(row_indices(key, self._length))

  def __array__(self, dtype=None, copy=None) -> np.ndarray:
    out = self[:]
    return out if dtype is None else out.astype(dtype)

  def __repr__(self) -> str:
    return f"{type(self).__name__}(shape={self.shape})"


def row_indices(key: Any, length: int) -> np.ndarray:
  """The int64 row indices (in [0, length)) that `key` (a slice, int or bool array) selects."""
  if isinstance(key, slice):
    return np.arange(length, dtype=np.int64)[key]
  idx = np.asarray(key)
  if idx.dtype == bool:
    if idx.shape != (length,):
      raise IndexError(f"A boolean index of shape {idx.shape} for {length} rows.")
    return np.flatnonzero(idx).astype(np.int64)
  if idx.ndim != 1 or not (idx.size == 0 or np.issubdtype(idx.dtype, np.integer)):
    raise IndexError(f"Index rows with a slice, an int array or a bool mask, not {key!r}.")
  idx = idx.astype(np.int64)
  if idx.size and (idx.min() < -length or idx.max() >= length):
    raise IndexError(f"Row index out of range for {length} rows.")
  return np.where(idx < 0, idx + length, idx)


def _is_int(key: Any) -> bool:
  return isinstance(key, (int, np.integer))


class Rows(LazyImages):
  """Rows `indices` of the array-like `images`, loaded when indexed; with `transform`, a loaded
  chunk is `transform(images[idx], idx)`, idx being the chunk's row indices into `images`
  (e.g. an attack's trigger keyed by the image index)."""

  def __init__(
    self,
    images: Any,
    indices: np.ndarray,
    transform: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
  ):
    super().__init__(len(indices), images.shape[1])
    self.images, self.indices = images, np.asarray(indices, np.int64)
    self.transform = transform

  def _load(self, indices: np.ndarray) -> np.ndarray:
    idx = self.indices[indices]
    chunk = np.asarray(self.images[idx])
    if self.transform is not None and len(idx):
      chunk = np.asarray(self.transform(chunk, idx))
    return chunk


def take_rows(images: Any, indices: np.ndarray) -> Any:
  """`images[indices]`: an ndarray for an ndarray, a lazy `Rows` view for a `LazyImages`."""
  if isinstance(images, np.ndarray):
    return images[indices]
  return Rows(images, indices)


class DecodedImages(LazyImages):
  """Encoded images decoded to [S, S, 3] when indexed, in a thread pool; subclasses say how to
  read example i's bytes (`_read`) and name it (`describe`).

  An image that cannot be read or decoded becomes a black image, reported once on stdout (the
  first few by name) and kept in `bad` (example index -> reason).
  """

  def __init__(self, length: int, image_size: int, threads: int = 0):
    super().__init__(length, image_size)
    self.threads = int(threads) or min(16, os.cpu_count() or 1)
    self.bad: dict[int, str] = {}
    self._pool: concurrent.futures.ThreadPoolExecutor | None = None

  @abc.abstractmethod
  def _read(self, indices: np.ndarray) -> list[bytes | None]:
    """The encoded bytes of examples `indices` (None where they cannot be read)."""

  @abc.abstractmethod
  def describe(self, index: int) -> str:
    """Where example `index` comes from (a path, a dataset and index), for messages."""

  def _load(self, indices: np.ndarray) -> np.ndarray:
    size = self.image_size
    out = np.zeros((len(indices), size, size, 3), np.uint8)
    if not len(indices):
      return out
    blobs = self._read(indices)
    for row, (index, result) in enumerate(zip(indices, self._executor().map(self._decode, blobs))):
      if isinstance(result, str):
        self._report(int(index), result)
      else:
        out[row] = result
    return out

  def _decode(self, data: bytes | None) -> np.ndarray | str:
    try:
      return decode_image(data, self.image_size)
    except BadImage as e:
      return str(e) or "cannot decode"

  def _report(self, index: int, reason: str) -> None:
    if index in self.bad:
      return
    self.bad[index] = reason
    if len(self.bad) <= _REPORTED_BAD:
      print(
        f"Warning: evaluation image {index} ({self.describe(index)}) cannot be read or decoded "
        f"({reason}): a black image stands in for it.",
        flush=True,
      )
    if len(self.bad) == _REPORTED_BAD:
      print("Warning: further bad evaluation images are counted, not named.", flush=True)

  def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
    if self._pool is None:
      self._pool = concurrent.futures.ThreadPoolExecutor(self.threads)
    return self._pool

  def __del__(self):
    if self._pool is not None:
      self._pool.shutdown(wait=False)


class FolderImages(DecodedImages):
  """Image files, example i being `paths[i]`."""

  def __init__(self, paths: Sequence[epath.Path], image_size: int, threads: int = 0):
    super().__init__(len(paths), image_size, threads)
    self.paths = list(paths)

  def _read(self, indices: np.ndarray) -> list[bytes | None]:
    return list(self._executor().map(self._read_one, indices))

  def _read_one(self, index: int) -> bytes | None:
    try:
      return self.paths[int(index)].read_bytes()
    except OSError:
      return None

  def describe(self, index: int) -> str:
    return str(self.paths[index])


class TfdsImages(DecodedImages):
  """The 'image' feature of the TFDS data source `source` (decoders skipping image decoding),
  example i being `source[indices[i]]`."""

  def __init__(
    self, source: Any, indices: np.ndarray, name: str, image_size: int, threads: int = 0
  ):
    super().__init__(len(indices), image_size, threads)
    self.source, self.indices, self.name = source, np.asarray(indices, np.int64), name

  def _read(self, indices: np.ndarray) -> list[bytes | None]:
    records = _getitems(self.source, self.indices[indices])
    return [r["image"] if isinstance(r.get("image"), bytes) else None for r in records]

  def describe(self, index: int) -> str:
    return f"{self.name} example {int(self.indices[index])}"


def _getitems(source: Any, indices: np.ndarray) -> list[dict[str, Any]]:
  keys = [int(i) for i in indices]
  if hasattr(source, "__getitems__"):
    return list(source.__getitems__(keys))
  return [source[k] for k in keys]


# ----------------------------------------------------------------------------------------------
# The evaluation sets.
# ----------------------------------------------------------------------------------------------


def eval_data(data: ml_collections.ConfigDict, seed: int) -> EvalData:
  """The evaluation set named by `data`: in memory for the synthetic set, lazy for real sets."""
  kind = eval_source(data)
  if kind == "synthetic":
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
  index = _index(data)
  threads = data.get("threads", 0)
  if kind == "imagenet":
    images = FolderImages(index.paths, data.image_size, threads)
  else:
    images = TfdsImages(index.source(), index.rows, index.name, data.image_size, threads)
  labels = index.labels()
  names = index.class_names
  prompts = [class_prompts(data, c) for c in names]
  print(
    f"Evaluation data: {index.description}: {len(images)} images, {len(names)} classes, "
    f"{len(prompts[0])} prompts per class.",
    flush=True,
  )
  return EvalData(images, labels, None, names, prompts)


def eval_source(data: ml_collections.ConfigDict) -> str:
  """`data.eval_source`, checked."""
  kind = data.get("eval_source", "synthetic")
  if kind not in EVAL_SOURCES:
    raise ConfigError(
      f"Unknown config.data.eval_source='{kind}': use one of {', '.join(EVAL_SOURCES)}."
    )
  return kind


def class_names(data: ml_collections.ConfigDict) -> Sequence[str]:
  """The zero-shot class names of the evaluation set named by `data`.

  Reads no image: for a real set it reads the labels file, lists the folder or opens the TFDS
  dataset's metadata, and so raises the set's start-up errors (`ConfigError`).
  """
  if eval_source(data) == "synthetic":
    return synthetic.CLASS_NAMES
  return _index(data).class_names


def class_prompts(data: ml_collections.ConfigDict, class_name: str) -> list[str]:
  """The prompt templates of the evaluation set filled with `class_name` (CLIP's templates,
  verbatim, for a real set)."""
  if eval_source(data) == "synthetic":
    return synthetic.class_prompts(class_name)
  return [t.format(class_name) for t in _templates(data)]


def caption_mentions(caption: str, class_name: str) -> bool:
  """Whether `caption` names `class_name` as a whole word (case-insensitive)."""
  return synthetic.caption_mentions(caption, class_name)


def _templates(data: ml_collections.ConfigDict) -> tuple[str, ...]:
  name = data.get("templates", "openai")
  if name not in clip_names.TEMPLATES:
    raise ConfigError(
      f"Unknown config.data.templates='{name}': use one of {', '.join(clip_names.TEMPLATES)}."
    )
  return clip_names.TEMPLATES[name]


# ----------------------------------------------------------------------------------------------
# Indexes: what each example is, read without decoding any image.
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _FolderIndex:
  paths: tuple[epath.Path, ...]
  label_array: np.ndarray
  class_names: tuple[str, ...]
  description: str

  def labels(self) -> np.ndarray:
    return self.label_array.copy()


@dataclasses.dataclass(frozen=True)
class _TfdsIndex:
  builder: Any
  split: str
  rows: np.ndarray  # the examples of the split that are evaluated (eval_max)
  class_names: tuple[str, ...]
  name: str
  description: str

  def source(self) -> Any:
    import tensorflow_datasets as tfds

    return self.builder.as_data_source(
      split=self.split, decoders={"image": tfds.decode.SkipDecoding()}
    )

  def labels(self) -> np.ndarray:
    """The labels of `rows`: reads the split's records (images left encoded), in chunks."""
    source = self.source()
    chunks = [
      [r["label"] for r in _getitems(source, self.rows[i : i + 1024])]
      for i in range(0, len(self.rows), 1024)
    ]
    return np.asarray([x for c in chunks for x in c], np.int32).reshape(-1)


def _index(data: ml_collections.ConfigDict) -> _FolderIndex | _TfdsIndex:
  kind = eval_source(data)
  path = str(data.get("eval", "") or "").strip()
  if not path:
    raise ConfigError(
      f"config.data.eval is empty but data.eval_source='{kind}' reads real evaluation data: "
      + (
        "pass --config.data.eval=PATH to the ImageNet validation folder (labels.csv or class "
        "subfolders)."
        if kind == "imagenet"
        else "pass --config.data.eval=NAME of a prepared TFDS dataset (e.g. cifar10) or the "
        "directory of one."
      )
    )
  max_examples = int(data.get("eval_max", 0) or 0)
  if max_examples < 0:
    raise ConfigError(f"config.data.eval_max must be >= 0 (0 = all), got {max_examples}.")
  if kind == "imagenet":
    return _imagenet_index(path, max_examples)
  return _tfds_index(
    path.removeprefix("tfds:"),
    str(data.get("eval_split", "test") or "test"),
    str(data.get("eval_data_dir", "") or ""),
    max_examples,
  )


@functools.lru_cache(maxsize=8)
def _imagenet_index(path: str, max_examples: int) -> _FolderIndex:
  root = epath.Path(path)
  if not root.is_dir():
    raise ConfigError(
      f"The evaluation folder '{path}' (config.data.eval) does not exist or is not a folder: "
      f"point it at the ImageNet validation folder, holding {LABELS_FILE} (columns image,label) "
      "or one subfolder per class (n01440764/, ...)."
    )
  labels_file = root / LABELS_FILE
  if labels_file.exists():
    paths, labels = _read_labels_csv(labels_file, len(clip_names.IMAGENET_CLASSNAMES))
    names, layout = clip_names.IMAGENET_CLASSNAMES, LABELS_FILE
  else:
    paths, labels, folders = _list_class_folders(root)
    names = clip_names.names_for(root.name, folders)
    layout = f"{len(folders)} class folders"
  if max_examples:
    paths, labels = paths[:max_examples], labels[:max_examples]
  return _FolderIndex(
    tuple(paths),
    np.asarray(labels, np.int32),
    tuple(names),
    f"image folder {path} ({layout}" + (f", first {len(paths)}" if max_examples else "") + ")",
  )


def _read_labels_csv(path: epath.Path, num_classes: int) -> tuple[list[epath.Path], list[int]]:
  """(image paths, labels) of CleanCLIP's labels.csv; ConfigError naming the file and line of
  the first bad row, or the first listed image that does not exist."""
  expected = (
    f"expected a header 'image,label' then one row per image: its path relative to "
    f"{path.parent} and its ImageNet class index (0..{num_classes - 1})"
  )
  reader = csv.reader(io.StringIO(path.read_text(encoding="utf-8")))
  header = [h.strip() for h in next(reader, [])]
  if "image" not in header or "label" not in header:
    raise ConfigError(f"{path}, line 1: header {header}; {expected}.")
  i_img, i_lab = header.index("image"), header.index("label")
  paths, labels, lines = [], [], []
  for row in reader:
    if not row or not any(f.strip() for f in row):
      continue
    where = f"{path}, line {reader.line_num}"
    if len(row) <= max(i_img, i_lab):
      raise ConfigError(f"{where}: {len(row)} field(s) {row}; {expected}.")
    name, label = row[i_img].strip(), row[i_lab].strip()
    try:
      value = int(label)
    except ValueError:
      value = -1
    if not name or not 0 <= value < num_classes:
      raise ConfigError(f"{where}: image {name!r}, label {label!r}; {expected}.")
    paths.append(epath.Path(name) if os.path.isabs(name) or "://" in name else path.parent / name)
    labels.append(value)
    lines.append(reader.line_num)
  if not paths:
    raise ConfigError(f"{path} lists no images; {expected}.")
  _check_exist(paths, lambda k: f"{path}, line {lines[k]}")
  return paths, labels


def _check_exist(paths: Sequence[epath.Path], where: Callable[[int], str]) -> None:
  """ConfigError for the first of `paths` that does not exist (one listing per folder)."""
  listed: dict[str, set[str] | None] = {}
  for k, p in enumerate(paths):
    folder = str(p.parent)
    if folder not in listed:
      try:
        listed[folder] = {c.name for c in p.parent.iterdir()}
      except OSError:
        listed[folder] = None
    names = listed[folder]
    if names is None or p.name not in names:
      raise ConfigError(
        f"{where(k)}: the image {p} does not exist (image paths are relative to the folder of "
        f"{LABELS_FILE})."
      )


def _list_class_folders(root: epath.Path) -> tuple[list[epath.Path], list[int], list[str]]:
  """(image paths, labels, class folder names) of the class-subfolder layout, examples sorted
  by file name then class folder."""
  folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
  if not folders:
    raise ConfigError(
      f"The evaluation folder '{root}' (config.data.eval) holds neither {LABELS_FILE} (columns "
      "image,label: CleanCLIP's layout) nor class subfolders (FOLDER/n01440764/*.JPEG, ...: "
      "one per class, sorted = class index)."
    )
  examples = []
  for label, folder in enumerate(folders):
    files = [
      p.name
      for p in (root / folder).iterdir()
      if p.name.lower().endswith(IMAGE_EXTENSIONS) and not p.name.startswith(".")
    ]
    if not files:
      raise ConfigError(
        f"The class folder '{root / folder}' holds no image ({', '.join(IMAGE_EXTENSIONS)}): "
        "every subfolder of the evaluation folder is a class and needs its images."
      )
    examples.extend((name, label) for name in files)
  examples.sort()
  paths = [root / folders[label] / name for name, label in examples]
  return paths, [label for _, label in examples], folders


@functools.lru_cache(maxsize=8)
def _tfds_index(name: str, split: str, data_dir: str, max_examples: int) -> _TfdsIndex:
  import tensorflow_datasets as tfds

  builder = _tfds_builder(tfds, name, data_dir)
  info = builder.info
  file_format = str(getattr(info, "file_format", "") or "")
  if "array_record" not in file_format.lower():
    raise ConfigError(
      f"The TFDS dataset '{name}' in {builder.data_dir} is stored as {file_format or 'unknown'}; "
      "bdjax reads TFDS evaluation sets without TensorFlow, as ArrayRecord data sources: "
      "prepare it with file_format='array_record' (e.g. `tfds build NAME "
      "--file_format=array_record`)."
    )
  base_split = split.split("[")[0]
  if base_split not in info.splits:
    raise ConfigError(
      f"The TFDS dataset '{name}' has no split '{base_split}' (config.data.eval_split); its "
      f"splits: {', '.join(info.splits)}."
    )
  features = info.features
  missing = [k for k in ("image", "label") if k not in features]
  if missing or not hasattr(features["label"], "names"):
    raise ConfigError(
      f"The TFDS dataset '{name}' is no image classification set bdjax can read: it needs the "
      f"features 'image' (encoded image) and 'label' (ClassLabel); it has "
      f"{', '.join(features)}."
    )
  try:
    num_examples = len(builder.as_data_source(split=split))
  except Exception as e:  # a bad split slice, missing files
    raise ConfigError(f"The TFDS dataset '{name}', split '{split}', cannot be read: {e}") from None
  rows = np.arange(min(num_examples, max_examples) if max_examples else num_examples)
  names = clip_names.names_for(info.name, features["label"].names)
  return _TfdsIndex(
    builder,
    split,
    rows,
    tuple(names),
    info.name,
    f"TFDS {info.full_name} '{split}' in {builder.data_dir}"
    + (f" (first {len(rows)})" if max_examples else ""),
  )


def _tfds_builder(tfds: Any, name: str, data_dir: str) -> Any:
  """The builder of a prepared TFDS dataset: `name` in `data_dir`, or `name` a directory."""
  path = epath.Path(name)
  if path.is_dir():
    versions = [p for p in path.iterdir() if p.is_dir()]
    candidates = [path] + sorted(versions, key=_version_key, reverse=True)  # newest first
    for candidate in candidates:
      if (candidate / "dataset_info.json").exists():
        return tfds.builder_from_directory(str(candidate))
    if name.startswith((".", "/", "~")) or "://" in name:
      raise ConfigError(
        f"The folder '{name}' (config.data.eval) holds no prepared TFDS dataset (no "
        "dataset_info.json in it or in a version subfolder)."
      )
  try:
    builder = tfds.builder(name, data_dir=data_dir or None)
  except Exception as e:  # unknown name, unreadable metadata
    raise ConfigError(f"No TFDS dataset '{name}' (config.data.eval): {e}") from None
  if not (epath.Path(builder.data_dir) / "dataset_info.json").exists():
    raise ConfigError(
      f"The TFDS dataset '{name}' is not prepared in {builder.data_dir}: prepare it there (as "
      "ArrayRecord), set config.data.eval_data_dir to the TFDS data folder that holds it, or "
      "point config.data.eval at the directory of a prepared copy."
    )
  return builder


def _version_key(path: epath.Path) -> tuple[int, ...]:
  parts = path.name.split(".")
  return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else (-1,)
