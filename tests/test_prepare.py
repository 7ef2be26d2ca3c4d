"""`python -m bdjax.data.prepare`: a corpus to ArrayRecord shards, bad pairs skipped and counted."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from bdjax.data.arrayrecord_pairs import ArrayRecordPairs, decode_record
from bdjax.data.encoded import EncodedPairs, Record
from bdjax.data.prepare import checked_image, prepare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]


def image_bytes(colour, size=(12, 8), fmt="JPEG") -> bytes:
  buffer = io.BytesIO()
  Image.new("RGB", size, colour).save(buffer, fmt)
  return buffer.getvalue()


class ListPairs(EncodedPairs):
  """Pairs held in memory: the `len` / `read` interface `prepare` relies on."""

  def __init__(self, records):
    super().__init__(image_size=16, threads=2)
    self.records = records

  def __len__(self):
    return len(self.records)

  def read(self, index):
    return self.records[index]


def corpus() -> list[Record]:
  """Ten pairs: six good ones (a PNG among them, two backdoor pairs) and four bad ones."""
  jpeg = image_bytes(COLOURS[1])
  return [
    Record(image_bytes(COLOURS[0]), "red", False),  # 0
    Record(jpeg, "green", True),  # 1
    Record(image_bytes(COLOURS[2], fmt="PNG"), "blue png", False),  # 2
    Record(image_bytes(COLOURS[3]), "   ", False),  # 3 empty caption
    Record(b"\xff\xd8\xff\xe0 not really a jpeg", "corrupt", False),  # 4 bad image
    Record(image_bytes(COLOURS[3]), "yellow", False),  # 5
    Record(jpeg[: len(jpeg) // 2], "truncated", False),  # 6 bad image
    Record(None, "missing file", False),  # 7 bad image
    Record(image_bytes(COLOURS[4]), "cyan", True),  # 8
    Record(image_bytes(COLOURS[5]), "magenta", False),  # 9
  ]


GOOD = [0, 1, 2, 5, 8, 9]


def colour_of(image: np.ndarray) -> tuple[int, ...]:
  return tuple(int(round(v / 255)) * 255 for v in image.reshape(-1, 3).mean(0))


def test_writes_the_good_pairs_in_order_and_counts_the_rest(tmp_path, capsys):
  records = corpus()
  summary = prepare(ListPairs(records), str(tmp_path / "out"), num_shards=3)
  names = [f"pairs.array_record-0000{k}-of-00003" for k in range(3)]
  assert summary["pairs_read"] == 10 and summary["pairs_written"] == 6
  assert summary["skipped"] == {"bad_image": 3, "empty_caption": 1}
  assert summary["backdoor_pairs"] == 2 and summary["num_shards"] == 3
  assert summary["shards"] == dict(zip(names, [3, 1, 2]))  # inputs [0, 3), [3, 6), [6, 10)
  assert json.loads((tmp_path / "out" / "prepare_summary.json").read_text()) == summary
  assert sorted(os.listdir(tmp_path / "out")) == sorted(
    names
    + [n.replace("array_record", "captions") + ".json" for n in names]
    + ["prepare_summary.json"]
  )

  pairs = ArrayRecordPairs(str(tmp_path / "out"), image_size=16)
  assert len(pairs) == 6
  assert [pairs.read(i) for i in range(6)] == [records[i] for i in GOOD]  # bytes kept as they were
  assert pairs.captions(np.arange(6)) == [records[i].caption for i in GOOD]
  batch = pairs.batch(np.arange(6))
  assert [colour_of(im) for im in batch["image"]] == [COLOURS[i] for i in (0, 1, 2, 3, 4, 5)]
  assert batch["is_poisoned"].tolist() == [False, True, False, False, True, False]
  assert batch["skipped"].tolist() == [0, 0]
  shard = ArrayRecordPairs(str(tmp_path / "out" / names[2]), 16)
  assert [decode_record(shard._source[i])[1] for i in range(2)] == ["8", "9"]  # keys: input index
  assert [decode_record(pairs._source[i])[1] for i in range(6)] == [str(i) for i in GOOD]


def test_same_input_gives_the_same_shards(tmp_path):
  for name in ("a", "b"):
    prepare(ListPairs(corpus()), str(tmp_path / name), num_shards=2, progress=False)
  for file in os.listdir(tmp_path / "a"):
    if file != "prepare_summary.json":
      assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()


def test_default_shard_count_and_never_more_shards_than_pairs(tmp_path):
  records = [Record(image_bytes(COLOURS[0]), "red")] * 3
  assert prepare(ListPairs(records), str(tmp_path / "a"), 0, progress=False)["num_shards"] == 1
  summary = prepare(ListPairs(records), str(tmp_path / "b"), 8, progress=False)
  assert summary["shards"] == {f"pairs.array_record-0000{k}-of-00003": 1 for k in range(3)}


def test_max_size_shrinks_large_images_as_jpeg(tmp_path):
  big = Record(image_bytes(COLOURS[0], size=(64, 32), fmt="PNG"), "big red")
  small = Record(image_bytes(COLOURS[2], size=(20, 16)), "small blue", True)
  summary = prepare(ListPairs([big, small]), str(tmp_path / "out"), 1, max_size=16, progress=False)
  assert summary["resized"] == 1 and summary["pairs_written"] == 2
  pairs = ArrayRecordPairs(str(tmp_path / "out"), 8)
  shrunk = pairs.read(0)
  with Image.open(io.BytesIO(shrunk.image)) as img:
    assert (img.format, img.size) == ("JPEG", (32, 16))
    assert colour_of(np.asarray(img.convert("RGB"))) == COLOURS[0]
  assert shrunk.caption == "big red" and pairs.read(1) == small  # kept byte for byte
  assert checked_image(small.image, 0) == (small.image, "jpeg", False)


def test_refuses_a_non_empty_output_unless_overwrite(tmp_path):
  out = tmp_path / "out"
  prepare(ListPairs(corpus()), str(out), 3, progress=False)
  (out / "notes.txt").write_text("mine")
  with pytest.raises(FileExistsError, match="not empty.*--overwrite"):
    prepare(ListPairs(corpus()), str(out), 1, progress=False)
  summary = prepare(ListPairs(corpus()), str(out), 1, overwrite=True, progress=False)
  assert summary["num_shards"] == 1
  assert sorted(os.listdir(out)) == [
    "notes.txt",
    "pairs.array_record-00000-of-00001",
    "pairs.captions-00000-of-00001.json",
    "prepare_summary.json",
  ]
  assert len(ArrayRecordPairs(str(out), 16)) == 6


def write_csv(directory) -> str:
  """A CleanCLIP CSV: four image files (one corrupt), an empty caption and a missing file."""
  (directory / "images").mkdir(parents=True)
  for i, colour in enumerate(COLOURS[:3]):
    Image.new("RGB", (10, 14), colour).save(directory / "images" / f"{i}.jpg")
  (directory / "images" / "bad.jpg").write_bytes(b"corrupt")
  rows = [
    "image,caption,is_backdoor",
    "images/0.jpg,a red square,0",
    "images/bad.jpg,a corrupt file,0",
    "images/1.jpg,a green square,1",
    "images/2.jpg,,0",
    "images/gone.jpg,a missing file,0",
    "images/2.jpg,a blue square,0",
  ]
  (directory / "train.csv").write_text("\n".join(rows) + "\n")
  return str(directory / "train.csv")


def test_csv_end_to_end(tmp_path):
  pytest.importorskip("bdjax.data.csv_pairs")
  from bdjax.data.prepare import input_source

  source = input_source(write_csv(tmp_path / "corpus"), threads=2)
  summary = prepare(source, str(tmp_path / "out"), 2, progress=False)
  assert (summary["pairs_read"], summary["pairs_written"]) == (6, 3)
  assert summary["skipped"] == {"bad_image": 2, "empty_caption": 1}
  pairs = ArrayRecordPairs(str(tmp_path / "out"), 8)
  batch = pairs.batch(np.arange(3))
  assert batch["caption"] == ["a red square", "a green square", "a blue square"]
  assert [colour_of(im) for im in batch["image"]] == COLOURS[:3]
  assert batch["is_poisoned"].tolist() == [False, True, False]


def run_prepare(*args):
  return subprocess.run(
    [sys.executable, "-m", "bdjax.data.prepare", *args],
    cwd=ROOT,
    env={**os.environ, "PYTHONPATH": ROOT},
    capture_output=True,
    text=True,
    timeout=120,
  )


def test_command_line(tmp_path):
  pytest.importorskip("bdjax.data.csv_pairs")
  csv = write_csv(tmp_path / "corpus")
  out = str(tmp_path / "out")
  result = run_prepare(f"--input={csv}", f"--output={out}", "--num_shards=2", "--threads=2")
  assert result.returncode == 0, result.stderr
  summary = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
  assert summary["pairs_written"] == 3 and summary["num_shards"] == 2
  assert "--config.data.source=arrayrecord" in result.stdout
  assert len(ArrayRecordPairs(out, 8)) == 3

  again = run_prepare(f"--input={csv}", f"--output={out}")
  assert again.returncode == 2 and "--overwrite" in again.stderr
  missing = run_prepare(f"--input={tmp_path / 'nope.csv'}", f"--output={tmp_path / 'o2'}")
  assert (
    missing.returncode == 2 and "nope.csv" in missing.stderr and "does not exist" in missing.stderr
  )
  unknown = run_prepare(f"--input={tmp_path / 'corpus'}", f"--output={tmp_path / 'o3'}")
  assert unknown.returncode == 2 and "--source=csv" in unknown.stderr
