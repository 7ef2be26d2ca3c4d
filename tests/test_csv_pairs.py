"""CSV/TSV pairs (CleanCLIP's format): read and checked at start-up, images decoded per batch,
bad rows named by line, bad images and empty captions skipped and counted."""

import numpy as np
import pytest
from PIL import Image

from bdjax.data.csv_pairs import CsvPairs
from bdjax.data.encoded import SKIP_REASONS

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]


def write_images(folder, n=4):
  (folder / "images").mkdir(parents=True, exist_ok=True)
  names = []
  for i in range(n):
    name = f"images/{i:03d}.{'png' if i % 2 else 'jpg'}"
    Image.new("RGB", (40, 30), COLOURS[i % len(COLOURS)]).save(folder / name)
    names.append(name)
  return names


def write_csv(path, rows, header="image,caption", sep=","):
  path.write_text("\n".join([header, *(sep.join(r) for r in rows)]) + "\n")
  return path


def test_pairs_in_file_order_with_decoded_images(tmp_path):
  names = write_images(tmp_path)
  path = write_csv(tmp_path / "train.csv", [(n, f"caption {i}") for i, n in enumerate(names)])
  pairs = CsvPairs(str(path), image_size=16)
  assert len(pairs) == 4
  assert pairs.captions(np.array([2, 0])) == ["caption 2", "caption 0"]
  batch = pairs.batch(np.array([3, 0, 1]))
  assert batch["image"].shape == (3, 16, 16, 3) and batch["image"].dtype == np.uint8
  np.testing.assert_array_equal(batch["index"], [3, 0, 1])
  for row, i in enumerate([3, 0, 1]):  # the colour that was written (JPEG is close, PNG exact)
    np.testing.assert_allclose(batch["image"][row].mean((0, 1)), COLOURS[i], atol=3)
  assert batch["caption"] == ["caption 3", "caption 0", "caption 1"]
  assert batch["skipped"].tolist() == [0, 0]


def test_tsv_with_other_column_names_and_the_backdoor_flag(tmp_path):
  names = write_images(tmp_path, 2)
  rows = [(names[0], "a dog", "0"), (names[1], "a banana", "1")]
  path = write_csv(tmp_path / "train.tsv", rows, header="filepath\ttitle\tis_backdoor", sep="\t")
  pairs = CsvPairs(str(path), 16, image_column="filepath", caption_column="title")
  batch = pairs.batch(np.array([0, 1]))
  assert batch["is_poisoned"].tolist() == [False, True]
  assert batch["caption"] == ["a dog", "a banana"]


def test_absolute_image_paths_are_used_as_they_are(tmp_path):
  names = write_images(tmp_path / "elsewhere", 1)
  path = write_csv(tmp_path / "train.csv", [(str(tmp_path / "elsewhere" / names[0]), "x")])
  assert len(CsvPairs(str(path), 8).batch(np.array([0]))["index"]) == 1


def test_missing_and_corrupt_images_and_empty_captions_are_skipped_and_counted(tmp_path):
  names = write_images(tmp_path, 2)
  (tmp_path / "images" / "bad.jpg").write_bytes(b"not a jpeg at all")
  good = (tmp_path / "images" / "000.jpg").read_bytes()
  (tmp_path / "images" / "cut.jpg").write_bytes(good[: len(good) // 3])
  rows = [
    (names[0], "fine"),
    ("images/bad.jpg", "corrupt"),
    ("images/missing.jpg", "missing"),
    ("images/cut.jpg", "truncated"),
    (names[1], " "),
  ]
  pairs = CsvPairs(str(write_csv(tmp_path / "train.csv", rows)), 16)
  batch = pairs.batch(np.arange(5))
  assert batch["index"].tolist() == [0] and batch["caption"] == ["fine"]
  counts = dict(zip(SKIP_REASONS, batch["skipped"].tolist()))
  assert counts == {"bad_image": 3, "empty_caption": 1}


def test_a_missing_file_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="nothere.csv"):
    CsvPairs(str(tmp_path / "nothere.csv"), 16)


def test_a_header_without_the_columns_is_named_with_what_it_has(tmp_path):
  path = write_csv(tmp_path / "train.csv", [("a.jpg", "x")], header="path,text")
  with pytest.raises(ValueError, match=r"no column \['image', 'caption'\].*'path', 'text'"):
    CsvPairs(str(path), 16)


def test_a_short_row_is_named_by_its_line(tmp_path):
  path = tmp_path / "train.csv"
  path.write_text("image,caption\na.jpg,first\nb.jpg\nc.jpg,third\n")
  with pytest.raises(ValueError, match="train.csv, line 3"):
    CsvPairs(str(path), 16)


def test_an_empty_dataset_stops_at_start_up(tmp_path):
  path = write_csv(tmp_path / "train.csv", [])
  with pytest.raises(ValueError, match="no pairs"):
    CsvPairs(str(path), 16)
  (tmp_path / "empty.csv").write_text("")
  with pytest.raises(ValueError, match="is empty"):
    CsvPairs(str(tmp_path / "empty.csv"), 16)


def test_a_grain_random_access_source_yielding_image_caption_index(tmp_path):
  import grain

  names = write_images(tmp_path, 3)
  rows = [(names[0], "one"), ("images/missing.jpg", "gone"), (names[2], "three")]
  pairs = CsvPairs(str(write_csv(tmp_path / "train.csv", rows)), 8)
  examples = list(grain.MapDataset.source(pairs).to_iter_dataset())  # the bad pair dropped
  assert [(e["caption"], e["index"]) for e in examples] == [("one", 0), ("three", 2)]
  assert examples[0]["image"].shape == (8, 8, 3)
