"""Image-caption pairs listed in a CSV or TSV file: CleanCLIP's format.

    image,caption,is_backdoor
    images/000001.jpg,a dog running on the beach,0
    images/000002.jpg,a banana on a table,1

One row per pair: the image path (relative to the CSV's folder, or absolute, or a bucket URL)
and the caption; the column names and the delimiter are configurable (`data.image_column`,
`data.caption_column`, `data.delimiter`; '' picks a tab for `.tsv`, a comma otherwise). An
optional `is_backdoor` column (1/0, true/false) marks pairs a corpus ships already poisoned
(CleanCLIP's poisoned CSVs); they are reported as poisoned pairs.

The whole file is read and checked at start-up: a missing file, a header without the required
columns, a row with too few fields (named by its line) or no rows at all stop the run before it
starts. Images are read only when their batch is loaded; one that is missing or corrupt then is
skipped and counted (bdjax/data/encoded.py), as is an empty caption.
"""

from __future__ import annotations

import csv
import io

import numpy as np
from etils import epath

from bdjax.data.encoded import EncodedPairs, Record

_TRUE = {"1", "true", "yes", "y", "t"}


class CsvPairs(EncodedPairs):
  """The pairs of one CSV/TSV file, in file order."""

  def __init__(
    self,
    path: str,
    image_size: int,
    image_column: str = "image",
    caption_column: str = "caption",
    delimiter: str = "",
    backdoor_column: str = "is_backdoor",
    threads: int = 0,
  ):
    super().__init__(image_size, threads)
    self.path = epath.Path(path)
    if not self.path.exists():
      raise FileNotFoundError(
        f"The CSV file '{path}' (config.data.train) does not exist: point --config.data.train "
        "at your corpus's CSV (see README, 'Real data')."
      )
    self.root = self.path.parent
    delimiter = delimiter or ("\t" if self.path.suffix == ".tsv" else ",")
    self.images, self.caption_list, self.backdoor = _read_rows(
      self.path, delimiter, image_column, caption_column, backdoor_column
    )

  def __len__(self) -> int:
    return len(self.images)

  def read(self, index: int) -> Record:
    name = self.images[index]
    path = epath.Path(name) if name.startswith("/") or "://" in name else self.root / name
    try:
      data = path.read_bytes()
    except OSError:
      data = None
    return Record(data, self.caption_list[index], bool(self.backdoor[index]))

  def captions(self, indices: np.ndarray) -> list[str]:
    return [self.caption_list[int(i)] for i in indices]

  def __repr__(self) -> str:
    return f"CsvPairs('{self.path}', {len(self)} pairs)"


def _read_rows(
  path: epath.Path, delimiter: str, image_column: str, caption_column: str, backdoor_column: str
) -> tuple[list[str], list[str], np.ndarray]:
  """(image paths, captions, is_backdoor flags) of every row; raises ValueError naming the
  file and line of the first malformed row."""
  reader = csv.reader(io.StringIO(path.read_text(encoding="utf-8")), delimiter=delimiter)
  header = next(reader, None)
  if not header:
    raise ValueError(f"The CSV file '{path}' is empty: it needs a header row and pairs.")
  header = [h.strip() for h in header]
  missing = [c for c in (image_column, caption_column) if c not in header]
  if missing:
    raise ValueError(
      f"The CSV file '{path}' has no column {missing} (its header: {header}, delimiter "
      f"{delimiter!r}): set config.data.image_column / caption_column / delimiter to match."
    )
  i_img, i_cap = header.index(image_column), header.index(caption_column)
  i_bd = header.index(backdoor_column) if backdoor_column in header else None
  needed = max(i_img, i_cap, -1 if i_bd is None else i_bd) + 1
  images, captions, backdoor = [], [], []
  for row in reader:
    if not row:
      continue
    if len(row) < needed:
      raise ValueError(
        f"{path}, line {reader.line_num}: {len(row)} field(s), but the columns "
        f"'{image_column}' and '{caption_column}' need {needed}. Fix or remove that row."
      )
    images.append(row[i_img].strip())
    captions.append(row[i_cap])
    backdoor.append(i_bd is not None and row[i_bd].strip().lower() in _TRUE)
  if not images:
    raise ValueError(f"The CSV file '{path}' has a header but no pairs.")
  return images, captions, np.asarray(backdoor, bool)
