"""WebdatasetPairs: img2dataset tar shards (real JPEG/PNG, real tar files) as a pair source."""

import io
import json
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from bdjax.data.encoded import SKIP_REASONS
from bdjax.data.webdataset_pairs import WebdatasetPairs, expand_braces

S = 8  # decoded image size
COLOURS = [(255, 0, 0), (0, 200, 0), (0, 0, 255), (240, 240, 0), (0, 220, 220), (200, 0, 200)]


def encoded(colour, fmt="JPEG"):
  buf = io.BytesIO()
  Image.new("RGB", (40, 30), colour).save(buf, fmt)
  return buf.getvalue()


def write_shard(path, samples):
  """samples: list of (key, {ext: bytes}); members in the given order, like img2dataset's."""
  with tarfile.open(path, "w") as tar:
    for key, parts in samples:
      for ext, data in parts.items():
        info = tarfile.TarInfo(f"{key}.{ext}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def sample(n, colour, caption, fmt="JPEG", json_caption=None):
  ext = "png" if fmt == "PNG" else "jpg"
  meta = {"url": f"http://x/{n}", "key": f"{n:09d}", "status": "success"}
  if json_caption is not None:
    meta["caption"] = json_caption
  parts = {ext: encoded(colour, fmt), "json": json.dumps(meta).encode()}
  if caption is not None:
    parts["txt"] = caption.encode()
  return f"{n:09d}", parts


@pytest.fixture
def shards(tmp_path):
  """Three shards, six good samples (colour k, caption 'caption k') and three left out."""
  write_shard(
    tmp_path / "00000.tar",
    [sample(0, COLOURS[0], "caption 0"), sample(1, COLOURS[1], "  caption 1\n", fmt="PNG")],
  )
  write_shard(
    tmp_path / "00001.tar",
    [
      sample(2, COLOURS[2], None, json_caption="caption 2"),  # json-only caption
      ("000000003", {"txt": b"no image here", "json": b"{}"}),  # no image
      sample(4, COLOURS[3], "caption 3"),
    ],
  )
  write_shard(
    tmp_path / "00002.tar",
    [
      sample(5, COLOURS[4], None),  # no caption anywhere
      sample(6, COLOURS[4], "caption 4"),
      sample(7, COLOURS[5], "  ", json_caption="caption 5"),  # empty .txt: the json's caption
      sample(8, COLOURS[0], None, json_caption=""),  # empty captions
    ],
  )
  return tmp_path


def close(image, colour, tol=12):
  return np.abs(image.astype(int) - np.array(colour)).max() <= tol


def test_expand_braces():
  assert expand_braces("/d/{00000..00002}.tar") == ["/d/00000.tar", "/d/00001.tar", "/d/00002.tar"]
  assert expand_braces("/d/{8..11}.tar") == ["/d/8.tar", "/d/9.tar", "/d/10.tar", "/d/11.tar"]
  assert expand_braces("/d/{0098..0101}.tar")[-2:] == ["/d/0100.tar", "/d/0101.tar"]
  assert expand_braces("gs://b/{a,b}/{0..1}.tar") == [
    "gs://b/a/0.tar",
    "gs://b/a/1.tar",
    "gs://b/b/0.tar",
    "gs://b/b/1.tar",
  ]
  assert expand_braces("/a/{x,{1..2}}.tar") == ["/a/x.tar", "/a/1.tar", "/a/2.tar"]
  assert expand_braces("/a/{00..01}.tar::/b/c.tar") == ["/a/00.tar", "/a/01.tar", "/b/c.tar"]
  assert expand_braces("/a/{b}.tar") == ["/a/{b}.tar"]  # neither range nor list: as written
  assert expand_braces("/a/x.tar") == ["/a/x.tar"]


def test_index_order_captions_and_counts(shards):
  pattern = str(shards / "{00000..00002}.tar")
  pairs = WebdatasetPairs(pattern, image_size=S, threads=2)
  expected = [f"caption {k}" for k in range(6)]
  assert len(pairs) == 6
  assert [pairs.read(i).caption for i in range(6)] == expected
  assert pairs.captions(np.array([5, 0])) == ["caption 5", "caption 0"]
  assert pairs.index_skipped == {"no_image": 1, "no_caption": 2, "truncated": 0}
  again = WebdatasetPairs(f"{shards}/0000{{0,1}}.tar::{shards}/00002.tar", image_size=S)
  assert [again.read(i).caption for i in range(6)] == expected
  assert [again.read(i).image for i in range(6)] == [pairs.read(i).image for i in range(6)]
  record = pairs.read(1)
  assert record.image[:8] == b"\x89PNG\r\n\x1a\n" and record.is_backdoor is False


def test_batch_images_match_written(shards):
  pairs = WebdatasetPairs(str(shards / "{00000..00002}.tar"), image_size=S, threads=2)
  indices = np.array([5, 1, 2, 0])
  batch = pairs.batch(indices)
  assert batch["image"].shape == (4, S, S, 3) and batch["image"].dtype == np.uint8
  np.testing.assert_array_equal(batch["index"], indices)
  assert batch["caption"] == [f"caption {k}" for k in indices]
  assert all(close(img, COLOURS[k]) for img, k in zip(batch["image"], indices))
  assert batch["skipped"].tolist() == [0, 0]
  assert not batch["is_poisoned"].any()
  clone = pickle.loads(pickle.dumps(pairs))  # after batch() made the thread pool
  assert clone.captions([3]) == ["caption 3"]
  assert close(clone.batch(np.array([4]))["image"][0], COLOURS[4])


def test_corrupt_image_left_out_of_batch(tmp_path):
  write_shard(
    tmp_path / "00000.tar",
    [
      sample(0, COLOURS[0], "good 0"),
      ("000000001", {"jpg": b"not a jpeg at all" * 10, "txt": b"corrupt"}),
      sample(2, COLOURS[2], "good 2"),
    ],
  )
  pairs = WebdatasetPairs(str(tmp_path / "00000.tar"), image_size=S)
  assert len(pairs) == 3  # the index does not decode images
  batch = pairs.batch(np.array([0, 1, 2]))
  assert batch["index"].tolist() == [0, 2] and batch["caption"] == ["good 0", "good 2"]
  assert batch["skipped"][SKIP_REASONS.index("bad_image")] == 1


def cut_shard(path, cut_inside):
  """Cuts the shard `cut_inside` bytes into the data of its last member; returns that member."""
  with tarfile.open(path) as tar:
    last = tar.getmembers()[-1]
  data = path.read_bytes()
  path.write_bytes(data[: last.offset_data + cut_inside])
  return last


def test_truncated_shard_keeps_complete_samples(tmp_path):
  # The last sample's members are .txt then .jpg: the cut falls in its image data.
  write_shard(tmp_path / "00000.tar", [sample(0, COLOURS[0], "a")])
  write_shard(
    tmp_path / "00001.tar",
    [
      sample(1, COLOURS[1], "b"),
      sample(2, COLOURS[2], "c"),
      ("000000003", {"txt": b"d", "jpg": encoded(COLOURS[3])}),
    ],
  )
  last = cut_shard(tmp_path / "00001.tar", 100)
  assert last.name == "000000003.jpg"
  pairs = WebdatasetPairs(str(tmp_path / "{00000..00001}.tar"), image_size=S)
  assert [pairs.read(i).caption for i in range(len(pairs))] == ["a", "b", "c"]
  assert pairs.index_skipped == {"no_image": 0, "no_caption": 0, "truncated": 1}
  batch = pairs.batch(np.arange(3))
  assert batch["skipped"].tolist() == [0, 0]
  assert all(close(img, COLOURS[k]) for img, k in zip(batch["image"], range(3)))


def test_truncated_header_and_vanished_bytes(tmp_path):
  shard = tmp_path / "00000.tar"
  write_shard(shard, [sample(0, COLOURS[0], "a"), sample(1, COLOURS[1], "b")])
  with tarfile.open(shard) as tar:
    second_jpg = tar.getmember("000000001.jpg")
  # Cut 100 bytes into the header of the second sample's first member.
  shard.write_bytes(shard.read_bytes()[: second_jpg.offset + 100])
  pairs = WebdatasetPairs(str(shard), image_size=S)
  assert len(pairs) == 1 and pairs.index_skipped["truncated"] == 1
  # Indexed, then the shard shrinks: the image reads as bad, never raises.
  write_shard(shard, [sample(0, COLOURS[0], "a")])
  pairs = WebdatasetPairs(str(shard), image_size=S)
  shard.write_bytes(shard.read_bytes()[:520])  # 8 bytes of the image left
  assert pairs.read(0).image is None and pairs.read(0).caption == "a"
  batch = pairs.batch(np.array([0]))
  assert batch["image"].shape == (0, S, S, 3)
  assert batch["skipped"][SKIP_REASONS.index("bad_image")] == 1


def test_missing_shard_and_empty_pattern(tmp_path):
  for n in (0, 2):
    write_shard(tmp_path / f"{n:05d}.tar", [sample(n, COLOURS[n], f"c{n}")])
  pattern = str(tmp_path / "{00000..00002}.tar")
  with pytest.raises(FileNotFoundError, match=r"00001\.tar") as error:
    WebdatasetPairs(pattern, image_size=S)
  assert pattern in str(error.value) and "00000.tar" not in str(error.value)
  write_shard(tmp_path / "empty.tar", [("000000000", {"txt": b"caption only"})])
  with pytest.raises(ValueError, match="empty.tar"):
    WebdatasetPairs(str(tmp_path / "empty.tar"), image_size=S)
  with pytest.raises(ValueError, match="no shard"):
    WebdatasetPairs("::", image_size=S)


def test_skip_counts_logged_in_one_line(shards, caplog):
  with caplog.at_level("WARNING"):
    WebdatasetPairs(str(shards / "{00000..00002}.tar"), image_size=S)
  lines = [r.getMessage() for r in caplog.records if "webdataset" in r.getMessage()]
  assert len(lines) == 1 and "no_image=1, no_caption=2" in lines[0]
