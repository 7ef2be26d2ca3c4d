"""img2dataset's webdataset tar shards as a random-access pair source.

img2dataset (`--output_format webdataset`) writes numbered tar shards, `00000.tar`, `00001.tar`,
..., each holding its samples one after another, every sample as members that share a key:

    000000012.jpg     the image (jpg here; jpeg, png and webp are read too)
    000000012.json    metadata, with the caption under "caption"
    000000012.txt     the caption (utf-8)

`data.train` names the shards as img2dataset and webdataset do: one path, a brace pattern
(`/data/cc3m/{00000..00331}.tar`: zero-padded ranges keep their width; comma lists `{a,b}`;
several braces) or several of those joined with `::`; paths go through `etils.epath`.

Index     at construction every shard is read once (headers only, in threads): the members are
          grouped into samples by key (member name up to the first dot of its file name, as
          webdataset does); a sample keeps its image member's (shard, offset, size) and its
          caption, read now from `.txt` (stripped) or, if that is missing or empty, from the
          `.json`'s "caption". Order: shards in pattern order, samples in tar order.
Read      `read(i)` seeks to the image member in its shard and reads only its bytes; captions
          stay in memory, so `captions()` touches no image.
Skipped   a sample without an image (`no_image`) or without a caption (`no_caption`) is not
          indexed; a shard cut short (the file ends inside a member, or a header is corrupt)
          keeps its complete members and counts the cut one (`truncated`). The counts are in
          `index_skipped` and logged in one line; they never stop the run. An image member
          that cannot be read in full later, or does not decode, is a bad image of the batch
          (bdjax/data/encoded.py).

Every shard must exist (FileNotFoundError otherwise, naming the missing ones), and at least one
sample must be usable (ValueError otherwise).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import re

import numpy as np
from absl import logging
from etils import epath

from bdjax.data.encoded import EncodedPairs, Record

#: Member extensions read as the sample's image, in order of preference.
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
#: Keys of `WebdatasetPairs.index_skipped`.
INDEX_SKIP_REASONS = ("no_image", "no_caption", "truncated")

_BLOCK = 512
_REGULAR = (b"0", b"\0", b"7")  # regular file, old-style regular file, contiguous file
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?$")
_KEY_EXT = re.compile(r"^((?:.*/|)[^./]+)\.([^/]*)$")  # webdataset's key / extension split


# ------------------------------------------------------------------------------ patterns


def expand_braces(pattern: str) -> list[str]:
  """The paths of a shard pattern, in order.

  `{00000..00002}` -> 00000, 00001, 00002 (a leading zero keeps the width; `{0..10..5}` steps),
  `{a,b}` -> a, b; several braces expand left to right (`{a,b}{1,2}` -> a1 a2 b1 b2), braces may
  nest; `p1::p2` concatenates the expansions of p1 and p2. A brace with neither a range nor a
  comma stays as written.
  """
  paths = []
  for part in str(pattern).split("::"):
    part = part.strip()
    if part:
      paths.extend(_expand(part))
  return paths


def _expand(s: str) -> list[str]:
  start = s.find("{")
  while start != -1:
    end = _closing(s, start)
    if end is None:
      return [s]
    alternatives = _alternatives(s[start + 1 : end])
    if alternatives is not None:
      prefix, suffix = s[:start], s[end + 1 :]
      return [prefix + tail for alt in alternatives for tail in _expand(alt + suffix)]
    start = s.find("{", start + 1)
  return [s]


def _closing(s: str, start: int) -> int | None:
  depth = 0
  for i in range(start, len(s)):
    if s[i] == "{":
      depth += 1
    elif s[i] == "}":
      depth -= 1
      if depth == 0:
        return i
  return None


def _alternatives(body: str) -> list[str] | None:
  match = _RANGE.match(body)
  if match:
    a, b, step = match.group(1), match.group(2), match.group(3)
    lo, hi, step = int(a), int(b), abs(int(step or 1)) or 1
    padded = any(len(x.lstrip("-")) > 1 and x.lstrip("-").startswith("0") for x in (a, b))
    width = max(len(a), len(b)) if padded else 0
    numbers = range(lo, hi + 1, step) if lo <= hi else range(lo, hi - 1, -step)
    return [f"{n:0{width}d}" for n in numbers]
  parts, depth, last = [], 0, 0
  for i, c in enumerate(body):
    if c == "{":
      depth += 1
    elif c == "}":
      depth -= 1
    elif c == "," and depth == 0:
      parts.append(body[last:i])
      last = i + 1
  if not parts:
    return None
  return parts + [body[last:]]


# ------------------------------------------------------------------------------ tar index


@dataclasses.dataclass
class _Member:
  name: str
  offset: int  # of the data, in bytes from the start of the shard
  size: int
  data: bytes | None  # read at indexing time (captions and metadata only)


@dataclasses.dataclass
class _Shard:
  offsets: list[int]
  sizes: list[int]
  captions: list[str]
  skipped: dict[str, int]


def _number(field: bytes) -> int:
  """A tar header number: octal text, or base-256 when the high bit of the first byte is set."""
  if field[:1] and field[0] & 0x80:
    if field[0] != 0x80:
      raise ValueError("negative number")
    return int.from_bytes(field[1:], "big")
  text = field.split(b"\0", 1)[0].strip()
  return int(text, 8) if text else 0


def _checksum_ok(header: bytes) -> bool:
  try:
    stored = _number(header[148:156])
  except ValueError:
    return False
  rest = header[:148] + b" " * 8 + header[156:]
  unsigned = sum(rest)
  signed = unsigned - 256 * sum(1 for byte in rest if byte > 127)
  return stored in (unsigned, signed)


def _text(field: bytes) -> str:
  return field.split(b"\0", 1)[0].decode("utf-8", "replace")


def _pax(data: bytes) -> dict[str, str]:
  """The records ('LEN key=value\\n') of a pax extended header."""
  records, pos = {}, 0
  while pos < len(data):
    space = data.find(b" ", pos)
    if space == -1:
      break
    try:
      length = int(data[pos:space])
    except ValueError:
      break
    if length <= 0:
      break
    key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
    records[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    pos += length
  return records


def _scan_tar(f, file_size: int, want_data) -> tuple[list[_Member], bool, str | None]:
  """The complete regular members of an open tar file, whether it is cut, and the cut member.

  `want_data(name)` says whose data to read now. Reads headers only otherwise (seeking past
  the data). Understands ustar, pax (path, size) and GNU long names.
  """
  members: list[_Member] = []
  offset, long_name, pax = 0, None, {}
  while True:
    f.seek(offset)
    header = f.read(_BLOCK)
    if not header:
      return members, False, None  # ends on a member boundary without the end-of-archive blocks
    if len(header) < _BLOCK:
      return members, True, None  # cut inside a header
    if header.count(0) == _BLOCK:
      return members, False, None  # end-of-archive block
    if not _checksum_ok(header):
      return members, True, None  # corrupt header: the rest cannot be found
    try:
      size = _number(header[124:136])
    except ValueError:
      return members, True, None
    kind = header[156:157]
    name = _text(header[0:100])
    if header[257:263] == b"ustar\0":
      prefix = _text(header[345:500])
      if prefix:
        name = f"{prefix}/{name}"
    if kind in _REGULAR:
      name = pax.get("path") or long_name or name
      if "size" in pax:
        try:
          size = int(pax["size"])
        except ValueError:
          return members, True, name
    data_offset = offset + _BLOCK
    if data_offset + size > file_size:
      return members, True, (name if kind in _REGULAR else None)  # cut inside the data
    if kind == b"L":
      long_name = _text(f.read(size))
    elif kind == b"x":
      pax = _pax(f.read(size))
    elif kind in _REGULAR and not name.endswith("/"):
      data = f.read(size) if want_data(name) else None
      members.append(_Member(name, data_offset, size, data))
      long_name, pax = None, {}
    elif kind != b"g":  # directories, links, ...: not samples
      long_name, pax = None, {}
    offset = data_offset + -(-size // _BLOCK) * _BLOCK


def _key_ext(name: str) -> tuple[str, str] | None:
  match = _KEY_EXT.match(name)
  return (match.group(1), match.group(2).lower()) if match else None


def _wants_data(name: str) -> bool:
  key_ext = _key_ext(name)
  return key_ext is not None and key_ext[1] in ("txt", "json")


def _caption(parts: dict[str, _Member]) -> str:
  if "txt" in parts:
    text = parts["txt"].data.decode("utf-8", "replace").strip()
    if text:
      return text
  if "json" in parts:
    try:
      caption = json.loads(parts["json"].data).get("caption")
    except (ValueError, AttributeError):
      caption = None
    if isinstance(caption, str):
      return caption.strip()
  return ""


def _index_shard(path: epath.Path) -> _Shard:
  with path.open("rb") as f:
    f.seek(0, os.SEEK_END)
    file_size = f.tell()
    members, cut, cut_name = _scan_tar(f, file_size, _wants_data)
  samples: dict[str, dict[str, _Member]] = {}
  for member in members:
    key_ext = _key_ext(member.name)
    if key_ext is not None:
      samples.setdefault(key_ext[0], {}).setdefault(key_ext[1], member)
  # The sample the cut member belonged to (a corrupt header: the last one) is counted once, as
  # truncated, when what is left of it cannot be used.
  cut_key = None
  if cut:
    cut_key = _key_ext(cut_name)[0] if cut_name and _key_ext(cut_name) else None
    if cut_key is None and samples:
      cut_key = next(reversed(samples))
  shard = _Shard([], [], [], {reason: 0 for reason in INDEX_SKIP_REASONS})
  shard.skipped["truncated"] = int(cut)
  for key, parts in samples.items():
    image = next((parts[ext] for ext in IMAGE_EXTENSIONS if ext in parts), None)
    caption = _caption(parts)
    if image is not None and caption:
      shard.offsets.append(image.offset)
      shard.sizes.append(image.size)
      shard.captions.append(caption)
    elif key != cut_key:
      shard.skipped["no_image" if image is None else "no_caption"] += 1
  return shard


# ------------------------------------------------------------------------------ source


class WebdatasetPairs(EncodedPairs):
  """The samples of img2dataset's tar shards (`pattern`), images decoded to `image_size`."""

  def __init__(self, pattern: str, image_size: int, threads: int = 0):
    super().__init__(image_size, threads)
    self.pattern = str(pattern)
    self.shards = [str(p) for p in expand_braces(self.pattern)]
    if not self.shards:
      raise ValueError(
        f"webdataset: data.train='{self.pattern}' names no shard: give a tar path or a pattern "
        "such as '/data/cc3m/{00000..00331}.tar'."
      )
    paths = [epath.Path(p) for p in self.shards]
    with concurrent.futures.ThreadPoolExecutor(min(self.threads, len(paths))) as pool:
      exists = list(pool.map(lambda p: p.exists(), paths))
      missing = [p for p, ok in zip(self.shards, exists) if not ok]
      if missing:
        shown = ", ".join(missing[:3]) + (
          f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        raise FileNotFoundError(
          f"webdataset: {len(missing)} of the {len(paths)} shards of data.train='{self.pattern}' "
          f"do not exist: {shown}. Check the directory and the brace range against the shards "
          "img2dataset wrote (a shard it did not finish leaves a gap in the numbers), or list the "
          "shards that exist (comma lists '{a,b}', patterns joined with '::')."
        )
      shards = list(pool.map(_index_shard, paths))
    self.index_skipped = {
      reason: sum(s.skipped[reason] for s in shards) for reason in INDEX_SKIP_REASONS
    }
    self._shard = np.concatenate(
      [np.full(len(s.offsets), k, np.int32) for k, s in enumerate(shards)]
    )
    self._offset = np.array([o for s in shards for o in s.offsets], np.int64)
    self._size = np.array([n for s in shards for n in s.sizes], np.int64)
    self._captions = [c for s in shards for c in s.captions]
    skipped = ", ".join(f"{k}={v}" for k, v in self.index_skipped.items() if v)
    if not self._captions:
      raise ValueError(
        f"webdataset: the {len(paths)} shards of data.train='{self.pattern}' hold no usable "
        f"sample (an image member with a .txt or .json caption under the same key)"
        + (f"; left out: {skipped}" if skipped else "")
        + ". Check that they are img2dataset's webdataset output."
      )
    if skipped:
      logging.warning(
        "webdataset %s: indexed %d samples from %d shards; left out %s",
        self.pattern,
        len(self._captions),
        len(paths),
        skipped,
      )

  def __len__(self) -> int:
    return len(self._captions)

  def read(self, index: int) -> Record:
    caption = self._captions[index]
    size = int(self._size[index])
    try:
      with epath.Path(self.shards[self._shard[index]]).open("rb") as f:
        f.seek(int(self._offset[index]))
        data = f.read(size)
    except OSError:
      return Record(None, caption)
    return Record(data if len(data) == size else None, caption, False)

  def captions(self, indices: np.ndarray) -> list[str]:
    return [self._captions[int(i)] for i in indices]
