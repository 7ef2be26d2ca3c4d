"""Image-caption pairs in ArrayRecord shards: the fast random-access form of a corpus.

`python -m bdjax.data.prepare` (bdjax/data/prepare.py) writes a CSV or webdataset corpus as

    DIR/pairs.array_record-00000-of-00004      the pairs, one record each, in input order
    DIR/pairs.captions-00000-of-00004.json     the captions of that shard (a JSON list)
    DIR/prepare_summary.json                   pairs read, written and skipped

A record is a small, versioned binary layout (no pickle, nothing is executed when reading):

    bytes 0-7     magic b'BDJXPAIR'
    byte  8       format version (1)
    bytes 9-12    header length H, unsigned 32-bit big-endian
    H bytes       header, a UTF-8 JSON object: {"key": str, "caption": str,
                  "is_backdoor": bool, "image_format": "jpeg" | "png" | ..., "image_bytes": int}
    the rest      the encoded image file, exactly `image_bytes` long

`data.train` names a directory written by `prepare` (all its `*.array_record-*` shards, in name
order), a glob of shards or one shard file; local paths and bucket URLs (`etils.epath`) alike.
The caption files make `captions()` (read for poisoning) cheap; without them every record is read.

A record that does not parse (wrong magic, unknown version, truncated or malformed header, image
shorter than announced) never stops a run: it is read as a pair without an image (and without a
caption unless its header could be read) and skipped and counted like any bad pair
(bdjax/data/encoded.py).
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import numpy as np
from array_record.python import array_record_data_source
from etils import epath

from bdjax.data.encoded import EncodedPairs, Record

MAGIC = b"BDJXPAIR"
VERSION = 1
_PREFIX = struct.Struct(">8sBI")  # magic, version, header length
#: Shards in a directory written by `prepare`.
SHARD_GLOB = "*.array_record-*"
_SHARD_INFIX, _CAPTIONS_INFIX = ".array_record-", ".captions-"
_PREPARE_HINT = "write them with `python -m bdjax.data.prepare --input=CORPUS --output=DIR`"


def encode_record(record: Record, key: str, image_format: str = "") -> bytes:
  """The stored form of `record` (see the module docstring); `image_format` ('' = guessed from
  the image's first bytes) is informative only."""
  image = record.image or b""
  header = {
    "key": str(key),
    "caption": str(record.caption),
    "is_backdoor": bool(record.is_backdoor),
    "image_format": (image_format or _sniff_format(image)).lower() if image else None,
    "image_bytes": len(image),
  }
  data = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
  return _PREFIX.pack(MAGIC, VERSION, len(data)) + data + image


def decode_record(data: bytes) -> tuple[Record, str]:
  """(record, key) stored in `data`; raises ValueError saying what is wrong if it does not parse.

  A record stored without an image gives `Record(None, caption, is_backdoor)`.
  """
  header, offset = _header(data)
  size = header["image_bytes"]
  if len(data) - offset != size:
    raise ValueError(
      f"Pair record '{header['key']}' announces {size} image bytes but holds {len(data) - offset}."
    )
  image = bytes(data[offset:]) if size else None
  return Record(image, header["caption"], header["is_backdoor"]), header["key"]


def _header(data: bytes) -> tuple[dict[str, Any], int]:
  """The checked JSON header of a record and the offset of its image bytes."""
  if len(data) < _PREFIX.size:
    raise ValueError(f"Not a bdjax pair record: {len(data)} bytes, shorter than its prefix.")
  magic, version, length = _PREFIX.unpack_from(data)
  if magic != MAGIC:
    raise ValueError(f"Not a bdjax pair record: it starts with {bytes(data[:8])!r}, not {MAGIC!r}.")
  if version != VERSION:
    raise ValueError(
      f"Pair record format version {version} is not supported (this bdjax reads {VERSION}): "
      "prepare the corpus again with this version's `python -m bdjax.data.prepare`."
    )
  end = _PREFIX.size + length
  if len(data) < end:
    raise ValueError(f"Truncated pair record: a {length}-byte header in {len(data)} bytes.")
  try:
    header = json.loads(bytes(data[_PREFIX.size : end]).decode("utf-8"))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ValueError(f"Pair record with a malformed header: {e}") from None
  types = {"key": str, "caption": str, "is_backdoor": bool, "image_bytes": int}
  if not isinstance(header, dict) or any(
    not isinstance(header.get(k), t) for k, t in types.items()
  ):
    raise ValueError(f"Pair record header {header!r} lacks one of {sorted(types)}.")
  return header, end


def _sniff_format(image: bytes) -> str:
  signatures = {
    b"\xff\xd8\xff": "jpeg",
    b"\x89PNG\r\n\x1a\n": "png",
    b"GIF8": "gif",
    b"BM": "bmp",
  }
  for signature, name in signatures.items():
    if image.startswith(signature):
      return name
  if image[:4] == b"RIFF" and image[8:12] == b"WEBP":
    return "webp"
  return "unknown"


def captions_path(shard: str) -> str | None:
  """The caption file `prepare` writes beside `shard` (None for a name it cannot have written)."""
  head, sep, tail = str(shard).rpartition(_SHARD_INFIX)
  return f"{head}{_CAPTIONS_INFIX}{tail}.json" if sep else None


def shard_paths(pattern: str) -> list[str]:
  """The shard files `pattern` names (a directory written by `prepare`, a glob or one file), in
  name order; FileNotFoundError naming `pattern` if there are none."""
  pattern = str(pattern)
  path = epath.Path(pattern)
  if any(c in pattern for c in "*?["):
    parts = pattern.split("/")
    first = next(i for i, part in enumerate(parts) if any(c in part for c in "*?["))
    base = epath.Path("/".join(parts[:first]) or ".")
    files = base.glob("/".join(parts[first:])) if base.is_dir() else []
    what = "matches"
  elif path.is_dir():
    files = path.glob(SHARD_GLOB)
    what = f"holds ({SHARD_GLOB})"
  elif path.exists():
    return [os.fspath(path)]
  else:
    raise FileNotFoundError(
      f"The ArrayRecord path '{pattern}' (config.data.train) does not exist: {_PREPARE_HINT} "
      "and point --config.data.train at DIR."
    )
  shards = sorted(os.fspath(f) for f in files if not f.is_dir())
  if not shards:
    raise FileNotFoundError(
      f"No ArrayRecord shards: '{pattern}' (config.data.train) {what} no file; {_PREPARE_HINT} "
      "and point --config.data.train at DIR."
    )
  return shards


class ArrayRecordPairs(EncodedPairs):
  """The pairs of the ArrayRecord shards `pattern` names, shard after shard, in record order."""

  def __init__(self, pattern: str, image_size: int, threads: int = 0):
    super().__init__(image_size, threads)
    self.pattern = str(pattern)
    self.paths = shard_paths(self.pattern)
    try:
      self._source = array_record_data_source.ArrayRecordDataSource(self.paths)
    except Exception as e:  # the reader raises RuntimeError/ValueError for non-ArrayRecord files
      raise ValueError(
        f"Cannot read the ArrayRecord shards of '{self.pattern}' ({len(self.paths)} file(s), "
        f"first '{self.paths[0]}'): {e}"
      ) from None
    self._captions: list[str] | None = None

  def __len__(self) -> int:
    return len(self._source)

  def read(self, index: int) -> Record:
    index = int(index)
    if not 0 <= index < len(self):
      raise IndexError(f"Pair {index} out of range for {len(self)} pairs in '{self.pattern}'.")
    try:
      data = self._source[index]
    except Exception:  # unreadable chunk: a bad pair, not a stopped run
      return Record(None, "")
    try:
      return decode_record(data)[0]
    except ValueError:
      try:
        return Record(None, _header(data)[0]["caption"])
      except ValueError:
        return Record(None, "")

  def captions(self, indices: np.ndarray) -> list[str]:
    if self._captions is None:
      self._captions = self._caption_files()
    if self._captions is not None:
      return [self._captions[int(i)] for i in indices]
    indices = [int(i) for i in indices]
    out = []
    for start in range(0, len(indices), 4096):
      for data in self._source.__getitems__(indices[start : start + 4096]):
        try:
          out.append(_header(data)[0]["caption"])
        except ValueError:
          out.append("")
    return out

  def _caption_files(self) -> list[str] | None:
    """All captions, from the caption files beside the shards; None unless every shard has one
    and they hold as many captions as the shards hold records."""
    captions = []
    for shard in self.paths:
      path = captions_path(shard)
      try:
        listed = json.loads(epath.Path(path).read_text(encoding="utf-8")) if path else None
      except (OSError, ValueError):
        return None
      if not isinstance(listed, list):
        return None
      captions.extend(str(c) for c in listed)
    return captions if len(captions) == len(self) else None

  def __getstate__(self) -> dict[str, Any]:
    return {**super().__getstate__(), "_captions": None}

  def __repr__(self) -> str:
    return f"ArrayRecordPairs('{self.pattern}', {len(self)} pairs in {len(self.paths)} shards)"
