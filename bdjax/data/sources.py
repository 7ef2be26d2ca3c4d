"""Builds the training pairs a config names (`config.data`).

    data.source   'synthetic'    the embedded dataset (bdjax/data/synthetic.py), from config.seed
                  'csv'          CleanCLIP's CSV/TSV: image path (relative to the file) + caption
                  'webdataset'   img2dataset tar shards, e.g. 'cc3m-{00000..00331}.tar'
                  'arrayrecord'  ArrayRecord shards written by `python -m bdjax.data.prepare`
                  'tfds'         a prepared TFDS dataset (name in data.data_dir, or a directory)
                  'auto'         one of the above, from the form of data.train

Every real source is a random-access `EncodedPairs` (bdjax/data/encoded.py) that decodes
images to `data.image_size` in `data.threads` threads; paths go through `etils.epath`, so
bucket URLs work where local paths do.
"""

from __future__ import annotations

import ml_collections
from etils import epath

from bdjax.data import synthetic
from bdjax.data.encoded import EncodedPairs

SOURCES = ("synthetic", "csv", "webdataset", "arrayrecord", "tfds")


def source_kind(data: ml_collections.ConfigDict) -> str:
  """`data.source`, with 'auto' resolved from the form of `data.train`."""
  kind = data.source
  if kind != "auto":
    return kind
  path = str(data.train)
  if path.startswith("tfds:"):
    return "tfds"
  if path.endswith((".csv", ".tsv")):
    return "csv"
  if ".tar" in path:
    return "webdataset"
  if "array_record" in path:
    return "arrayrecord"
  folder = epath.Path(path)
  if folder.is_dir():
    if (folder / "prepare_summary.json").exists() or any(folder.glob("*.array_record-*")):
      return "arrayrecord"
    if (folder / "dataset_info.json").exists() or any(folder.glob("*/dataset_info.json")):
      return "tfds"
  raise ValueError(
    f"data.source='auto' cannot tell the format of data.train='{path}': set data.source to one "
    f"of {SOURCES[1:]}."
  )


def train_source(
  data: ml_collections.ConfigDict, seed: int
) -> synthetic.SyntheticPairs | EncodedPairs:
  """The training pairs named by `data`."""
  kind = source_kind(data)
  if kind == "synthetic":
    return synthetic.SyntheticPairs("train", data.num_train, data.image_size, seed)
  size, threads = data.image_size, data.get("threads", 0)
  if kind == "csv":
    from bdjax.data.csv_pairs import CsvPairs

    return CsvPairs(
      data.train,
      image_size=size,
      image_column=data.get("image_column", "image"),
      caption_column=data.get("caption_column", "caption"),
      delimiter=data.get("delimiter", ""),
      threads=threads,
    )
  if kind == "webdataset":
    from bdjax.data.webdataset_pairs import WebdatasetPairs

    return WebdatasetPairs(data.train, image_size=size, threads=threads)
  if kind == "arrayrecord":
    from bdjax.data.arrayrecord_pairs import ArrayRecordPairs

    return ArrayRecordPairs(data.train, image_size=size, threads=threads)
  if kind == "tfds":
    from bdjax.data.tfds_pairs import TfdsPairs

    return TfdsPairs(
      str(data.train).removeprefix("tfds:"),
      split=data.get("split", "train"),
      data_dir=data.get("data_dir", "") or None,
      image_key=data.get("image_key", "image"),
      caption_key=data.get("caption_key", "caption"),
      image_size=size,
      threads=threads,
    )
  raise ValueError(f"Unknown data.source '{kind}': use one of {SOURCES} or 'auto'.")
