"""ArrayRecord pair shards: the record format, reading by directory / glob / file, bad records."""

import io
import json
import pickle
import struct

import numpy as np
import pytest
from array_record.python import array_record_module
from PIL import Image

from bdjax.data.arrayrecord_pairs import (
  MAGIC,
  ArrayRecordPairs,
  captions_path,
  decode_record,
  encode_record,
)
from bdjax.data.encoded import SKIP_REASONS, Record

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]


def image_bytes(colour, size=(12, 8), fmt="JPEG") -> bytes:
  buffer = io.BytesIO()
  Image.new("RGB", size, colour).save(buffer, fmt)
  return buffer.getvalue()


def write_shard(path, records: list[bytes], captions: list[str] | None = None) -> None:
  writer = array_record_module.ArrayRecordWriter(str(path), "group_size:1,uncompressed")
  for data in records:
    writer.write(data)
  writer.close()
  if captions is not None:
    (path.parent / captions_path(path.name)).write_text(json.dumps(captions))


def five_pairs(directory, with_captions=True) -> list[Record]:
  """Five pairs (the 3rd a PNG, the 4th a backdoor pair) in shards of 2 and 3 records."""
  records = [
    Record(image_bytes(c, fmt="PNG" if i == 2 else "JPEG"), f"pair {i}", i == 3)
    for i, c in enumerate(COLOURS)
  ]
  encoded = [encode_record(r, str(i)) for i, r in enumerate(records)]
  directory.mkdir(exist_ok=True)
  caps = [r.caption for r in records]
  write_shard(
    directory / "pairs.array_record-00000-of-00002", encoded[:2], with_captions and caps[:2]
  )
  write_shard(
    directory / "pairs.array_record-00001-of-00002", encoded[2:], with_captions and caps[2:]
  )
  return records


def colour_of(image: np.ndarray) -> tuple[int, ...]:
  return tuple(int(round(v / 255)) * 255 for v in image.reshape(-1, 3).mean(0))


def test_record_round_trip_and_layout():
  record = Record(image_bytes(COLOURS[0]), "un chien sur la plage – ünïcode", True)
  data = encode_record(record, "000042")
  assert data.startswith(MAGIC + bytes([1]))
  (length,) = struct.unpack(">I", data[9:13])
  header = json.loads(data[13 : 13 + length])
  assert header == {
    "key": "000042",
    "caption": record.caption,
    "is_backdoor": True,
    "image_format": "jpeg",
    "image_bytes": len(record.image),
  }
  assert data[13 + length :] == record.image
  assert decode_record(data) == (record, "000042")
  png = Record(image_bytes(COLOURS[1], fmt="PNG"), "a png")
  assert json.loads(encode_record(png, "k")[13 : -len(png.image)])["image_format"] == "png"
  assert decode_record(encode_record(Record(None, "no image"), "k")) == (
    Record(None, "no image"),
    "k",
  )


@pytest.mark.parametrize(
  "mutate, message",
  [
    (lambda d: b"NOTAPAIR" + d[8:], "Not a bdjax pair record"),
    (lambda d: d[:8] + bytes([9]) + d[9:], "version 9 is not supported"),
    (lambda d: d[:5], "shorter than its prefix"),
    (lambda d: d[:20], "Truncated pair record"),
    (lambda d: d[:13] + b"?" + d[14:], "malformed header"),
    (lambda d: d[:-10], "announces"),
  ],
  ids=["magic", "version", "prefix", "header", "json", "image"],
)
def test_a_record_that_does_not_parse_raises_value_error(mutate, message):
  data = encode_record(Record(image_bytes(COLOURS[0]), "a caption"), "0")
  with pytest.raises(ValueError, match=message):
    decode_record(mutate(data))


@pytest.mark.parametrize("form", ["directory", "glob", "files"])
def test_reads_the_shards_in_name_order(tmp_path, form):
  records = five_pairs(tmp_path / "ar")
  (tmp_path / "ar" / "prepare_summary.json").write_text("{}")  # not a shard
  if form == "files":
    first = ArrayRecordPairs(str(tmp_path / "ar" / "pairs.array_record-00000-of-00002"), 16)
    second = ArrayRecordPairs(str(tmp_path / "ar" / "pairs.array_record-00001-of-00002"), 16)
    assert [first.read(i) for i in range(2)] + [second.read(i) for i in range(3)] == records
    return
  pattern = {"directory": tmp_path / "ar", "glob": tmp_path / "ar" / "pairs.array_record-*"}[form]
  pairs = ArrayRecordPairs(str(pattern), image_size=16)
  assert len(pairs) == 5
  assert [pairs.read(i) for i in range(5)] == records
  batch = pairs.batch(np.array([4, 0, 2, 3]))
  assert batch["image"].shape == (4, 16, 16, 3) and batch["image"].dtype == np.uint8
  assert [colour_of(im) for im in batch["image"]] == [COLOURS[i] for i in (4, 0, 2, 3)]
  assert batch["caption"] == ["pair 4", "pair 0", "pair 2", "pair 3"]
  assert batch["index"].tolist() == [4, 0, 2, 3]
  assert batch["is_poisoned"].tolist() == [False, False, False, True]
  assert batch["skipped"].tolist() == [0, 0]
  with pytest.raises(IndexError):
    pairs.read(5)


def test_captions_from_the_caption_files_or_the_records(tmp_path):
  five_pairs(tmp_path / "with")
  five_pairs(tmp_path / "without", with_captions=False)
  expected = ["pair 3", "pair 0", "pair 4"]
  for name in ("with", "without"):
    pairs = ArrayRecordPairs(str(tmp_path / name), 16)
    assert pairs.captions(np.array([3, 0, 4])) == expected
  # a caption file that does not match its shard is ignored
  (tmp_path / "with" / "pairs.captions-00001-of-00002.json").write_text('["x"]')
  assert ArrayRecordPairs(str(tmp_path / "with"), 16).captions(np.array([3, 0, 4])) == expected


def test_bad_records_are_skipped_and_counted_not_raised(tmp_path):
  good = Record(image_bytes(COLOURS[0]), "good")
  truncated = encode_record(Record(image_bytes(COLOURS[1]), "truncated image"), "1")[:-30]
  corrupt = encode_record(Record(b"not an image at all", "corrupt image"), "2")
  write_shard(
    tmp_path / "x.array_record-00000-of-00001",
    [
      encode_record(good, "0"),
      truncated,
      corrupt,
      b"garbage",
      encode_record(Record(None, ""), "4"),
    ],
  )
  pairs = ArrayRecordPairs(str(tmp_path), 8)
  assert pairs.read(1) == Record(None, "truncated image")  # header readable: its caption kept
  assert pairs.read(3) == Record(None, "")
  batch = pairs.batch(np.arange(5))
  assert batch["caption"] == ["good"] and batch["index"].tolist() == [0]
  skipped = dict(zip(SKIP_REASONS, batch["skipped"].tolist()))
  assert skipped == {"bad_image": 4, "empty_caption": 0}  # no image: bad, whatever the caption


def test_picklable_for_grain_workers(tmp_path):
  records = five_pairs(tmp_path / "ar")
  pairs = ArrayRecordPairs(str(tmp_path / "ar"), 16, threads=2)
  pairs.batch(np.arange(2))  # opens readers and the thread pool
  pairs.captions(np.arange(5))
  copy = pickle.loads(pickle.dumps(pairs))
  assert len(copy) == 5 and [copy.read(i) for i in range(5)] == records
  assert copy.batch(np.arange(5))["caption"] == [r.caption for r in records]


def test_missing_or_empty_paths_say_how_to_prepare(tmp_path):
  for path in (tmp_path / "nope", tmp_path / "nope" / "*.array_record-*"):
    with pytest.raises(FileNotFoundError, match=r"(?s)nope.*python -m bdjax.data.prepare"):
      ArrayRecordPairs(str(path), 16)
  (tmp_path / "empty").mkdir()
  with pytest.raises(
    FileNotFoundError, match=r"(?s)No ArrayRecord shards.*empty.*bdjax.data.prepare"
  ):
    ArrayRecordPairs(str(tmp_path / "empty"), 16)
  (tmp_path / "text.array_record-00000-of-00001").write_text("not array record")
  with pytest.raises(ValueError, match="Cannot read the ArrayRecord shards"):
    ArrayRecordPairs(str(tmp_path / "text.array_record-00000-of-00001"), 16)
