"""Writes a corpus as ArrayRecord shards: `python -m bdjax.data.prepare --input=PATH --output=DIR`.

Reads a CleanCLIP CSV/TSV (image paths + captions) or img2dataset webdataset tar shards (or
ArrayRecord shards, to re-shard or shrink them) and writes every good pair, in input order, as

    DIR/pairs.array_record-00000-of-00004      records in bdjax/data/arrayrecord_pairs.py's format
    DIR/pairs.captions-00000-of-00004.json     the captions of each shard (cheap `captions()`)
    DIR/prepare_summary.json                   pairs read, written, skipped by reason, shards

for fast random access in training (`--config.data.source=arrayrecord --config.data.train=DIR`).

    --source=auto|csv|webdataset|arrayrecord   the input's format ('auto': from the path)
    --image_column, --caption_column, --delimiter      the CSV's columns and delimiter
    --num_shards=N          0 (default): one shard per 10,000 pairs
    --max_size=N            re-encode images whose shorter side exceeds N as JPEG (quality 95) at
                            shorter side N: smaller shards, faster decoding (0: keep every image)
    --overwrite             replace the shards of a non-empty DIR (refused otherwise)

Each pair is checked as training would: one with an empty caption or whose image is missing or
cannot be decoded (corrupt or truncated) is skipped and counted under its reason
(`bdjax.data.encoded.SKIP_REASONS`); `is_backdoor` flags are kept. The shards are written into
`DIR/.incomplete/` and moved into DIR once all are complete, the summary last. DIR is a local
directory (copy it to a bucket afterwards if needed).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import io
import json
import os
import shutil
import sys
from typing import Any

from absl import app, flags
from array_record.python import array_record_module
from etils import epath
from PIL import Image, UnidentifiedImageError

from bdjax.data.arrayrecord_pairs import SHARD_GLOB, captions_path, encode_record
from bdjax.data.encoded import SKIP_REASONS, BadImage, EncodedPairs, Record, decode_image

SHARD_NAME = "pairs.array_record-{:05d}-of-{:05d}"
SUMMARY = "prepare_summary.json"
PAIRS_PER_SHARD = 10_000
INPUT_SOURCES = ("auto", "csv", "webdataset", "arrayrecord")
_INCOMPLETE = ".incomplete"


def default_num_shards(num_pairs: int) -> int:
  """One shard per `PAIRS_PER_SHARD` pairs (at least one)."""
  return max(1, -(-num_pairs // PAIRS_PER_SHARD))


def prepare(
  source: EncodedPairs,
  output: str,
  num_shards: int,
  max_size: int = 0,
  *,
  threads: int = 0,
  overwrite: bool = False,
  progress: bool = True,
) -> dict[str, Any]:
  """Writes the good pairs of `source` (`len`, `read(i) -> Record`) as `num_shards` (0 = one per
  10,000 pairs) ArrayRecord shards in the directory `output`; returns the summary it also writes
  to `output/prepare_summary.json`.

  Shard k holds the good pairs among input pairs [k n / S, (k+1) n / S), in input order; each
  record's key is its input index. Raises FileExistsError if `output` is not empty and not
  `overwrite`, ValueError if `source` is empty.
  """
  n = len(source)
  if n == 0:
    raise ValueError(f"The input {source!r} holds no pairs: nothing to prepare.")
  num_shards = max(1, min(int(num_shards) or default_num_shards(n), n))
  out = epath.Path(output)
  _clear_output(out, overwrite)
  incomplete = out / _INCOMPLETE
  incomplete.mkdir(parents=True, exist_ok=True)
  threads = int(threads) or int(getattr(source, "threads", 0)) or min(16, os.cpu_count() or 1)
  chunk = 64 * threads
  skipped = collections.Counter()
  shards: dict[str, int] = {}
  written = backdoor = resized = 0

  from tqdm import tqdm

  with (
    concurrent.futures.ThreadPoolExecutor(threads) as pool,
    tqdm(total=n, unit="pair", desc=f"prepare -> {out}", disable=not progress) as bar,
  ):
    for k in range(num_shards):
      name = SHARD_NAME.format(k, num_shards)
      lo, hi = k * n // num_shards, (k + 1) * n // num_shards
      captions = []
      writer = array_record_module.ArrayRecordWriter(
        os.fspath(incomplete / name), "group_size:1,uncompressed"
      )
      try:
        for start in range(lo, hi, chunk):
          indices = range(start, min(hi, start + chunk))
          for i, (record, image_format, reason, was_resized) in zip(
            indices, pool.map(lambda i: _checked(source, i, max_size), indices)
          ):
            bar.update(1)
            if reason is not None:
              skipped[reason] += 1
              continue
            writer.write(encode_record(record, str(i), image_format))
            captions.append(record.caption)
            backdoor += record.is_backdoor
            resized += was_resized
      finally:
        writer.close()
      (incomplete / captions_path(name)).write_text(
        json.dumps(captions, ensure_ascii=False), encoding="utf-8"
      )
      shards[name] = len(captions)
      written += len(captions)

  for name in shards:
    for file in (name, captions_path(name)):
      (incomplete / file).rename(out / file)
  incomplete.rmdir()
  summary = {
    "input": repr(source),
    "output": os.fspath(out),
    "pairs_read": n,
    "pairs_written": written,
    "skipped": {reason: skipped[reason] for reason in SKIP_REASONS},
    "backdoor_pairs": backdoor,
    "resized": resized,
    "max_size": int(max_size),
    "num_shards": num_shards,
    "shards": shards,
  }
  (out / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
  return summary


def _checked(
  source: EncodedPairs, index: int, max_size: int
) -> tuple[Record, str, str | None, bool]:
  """(record to write, its image format, skip reason or None, whether the image was resized)."""
  record = source.read(index)
  if not record.caption.strip():
    return record, "", "empty_caption", False
  try:
    image, image_format, resized = checked_image(record.image, max_size)
  except BadImage:
    return record, "", "bad_image", False
  return dataclasses.replace(record, image=image), image_format, None, resized


def checked_image(data: bytes | None, max_size: int = 0) -> tuple[bytes, str, bool]:
  """(image bytes to store, format, resized): `data` itself if it decodes, or, if its shorter side
  exceeds `max_size` (> 0), a JPEG (quality 95) with shorter side `max_size`.

  Raises `BadImage` for missing, corrupt or truncated data.
  """
  if not data:
    raise BadImage("no image data")
  try:
    with Image.open(io.BytesIO(data)) as img:
      image_format = (img.format or "unknown").lower()
      w, h = img.size
      if max_size > 0 and min(w, h) > max_size:
        scale = max_size / min(w, h)
        new = (max(max_size, round(w * scale)), max(max_size, round(h * scale)))
        img.draft("RGB", new)  # JPEG: decode at the smallest scale >= new (fast)
        small = img.convert("RGB").resize(new, Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        small.save(buffer, "JPEG", quality=95)
        return buffer.getvalue(), "jpeg", True
  except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
    raise BadImage(str(e)) from None
  decode_image(data, 16)  # the check training applies (raises BadImage), at a cheap scale
  return data, image_format, False


def _clear_output(out: epath.Path, overwrite: bool) -> None:
  """Refuses a non-empty `out` unless `overwrite`; then removes the shards, caption files,
  summary and unfinished output there (and nothing else)."""
  if out.exists() and not out.is_dir():
    raise FileExistsError(f"The output '{out}' is a file: give --output a directory.")
  if not out.exists() or not any(out.iterdir()):
    return
  if not overwrite:
    raise FileExistsError(
      f"The output directory '{out}' is not empty: choose another --output, or pass --overwrite "
      "to replace the shards written there."
    )
  for path in [*out.glob(SHARD_GLOB), *out.glob("*.captions-*.json"), out / SUMMARY]:
    if path.exists() and not path.is_dir():
      path.unlink()
  if (out / _INCOMPLETE).exists():
    shutil.rmtree(out / _INCOMPLETE)


_INPUT = flags.DEFINE_string("input", None, "The corpus: a CSV/TSV file or webdataset tar shards.")
_OUTPUT = flags.DEFINE_string("output", None, "Directory for the ArrayRecord shards.")
_SOURCE = flags.DEFINE_enum("source", "auto", INPUT_SOURCES, "The input's format.")
_IMAGE_COLUMN = flags.DEFINE_string("image_column", "image", "CSV column of the image paths.")
_CAPTION_COLUMN = flags.DEFINE_string("caption_column", "caption", "CSV column of the captions.")
_DELIMITER = flags.DEFINE_string("delimiter", "", "CSV delimiter ('': tab for .tsv, else comma).")
_NUM_SHARDS = flags.DEFINE_integer("num_shards", 0, "Shards to write (0: one per 10,000 pairs).")
_MAX_SIZE = flags.DEFINE_integer(
  "max_size", 0, "Re-encode images whose shorter side exceeds this as JPEG (0: never)."
)
_THREADS = flags.DEFINE_integer("threads", 0, "Reading/decoding threads (0: up to 16 CPUs).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace the shards of a non-empty --output.")


def _fail(message: str, status: int = 2) -> None:
  print(f"bdjax.data.prepare: error: {message}", file=sys.stderr)
  sys.exit(status)


def input_source(
  path: str,
  source: str = "auto",
  image_column: str = "image",
  caption_column: str = "caption",
  delimiter: str = "",
  threads: int = 0,
) -> EncodedPairs:
  """The pairs of the corpus at `path`, built by `bdjax.data.sources.train_source`."""
  import ml_collections

  from bdjax.data import sources

  data = ml_collections.ConfigDict(
    {
      "source": source,
      "train": path,
      "image_size": 224,  # unused: prepare only reads the encoded images
      "threads": threads,
      "image_column": image_column,
      "caption_column": caption_column,
      "delimiter": delimiter,
    }
  )
  try:
    kind = sources.source_kind(data)
  except ValueError:
    kind = None
  if kind not in INPUT_SOURCES[1:]:
    raise ValueError(
      f"Cannot tell the format of --input='{path}': pass --source=csv, webdataset or arrayrecord."
    )
  data.source = kind
  return sources.train_source(data, seed=0)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    _fail(f"Unexpected arguments {argv[1:]}.")
  if not _INPUT.value or not _OUTPUT.value:
    _fail("Usage: python -m bdjax.data.prepare --input=CORPUS --output=DIR [--max_size=N].")
  try:
    source = input_source(
      _INPUT.value,
      _SOURCE.value,
      _IMAGE_COLUMN.value,
      _CAPTION_COLUMN.value,
      _DELIMITER.value,
      _THREADS.value,
    )
    summary = prepare(
      source,
      _OUTPUT.value,
      _NUM_SHARDS.value,
      _MAX_SIZE.value,
      threads=_THREADS.value,
      overwrite=_OVERWRITE.value,
    )
  except (FileNotFoundError, FileExistsError, ValueError) as e:
    _fail(f"--input={_INPUT.value}: {e}" if not isinstance(e, FileExistsError) else str(e))
  print(json.dumps(summary, indent=2), flush=True)
  if not summary["pairs_written"]:
    _fail(f"No pair of '{_INPUT.value}' could be used (see 'skipped' above).", status=1)
  print(
    f"Train on them with --config.data.source=arrayrecord --config.data.train={_OUTPUT.value}",
    flush=True,
  )


if __name__ == "__main__":
  app.run(main)
