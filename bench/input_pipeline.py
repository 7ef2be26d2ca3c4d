"""Input pipeline throughput: images/s per CPU core for decode + crop + flip, from JPEG tar
shards (webdataset) and from ArrayRecord shards, with and without the SSL views.

    python bench/input_pipeline.py                      # 2,048 images, 224 px, batch 64
    python bench/input_pipeline.py --num_images=4096 --source_width=500 --source_height=375

Writes `--num_images` JPEGs (smooth random colour fields with shapes, `--source_width` x
`--source_height`, quality 90, like an img2dataset download) into webdataset tar shards in a
temporary folder, converts them with `bdjax.data.prepare` to ArrayRecord shards, then runs
`bdjax.data.pipeline.batches` (decode in PIL with JPEG draft mode, shorter side to `--size`,
centre crop, random flip, tokenise; with views also the augmented caption) over each and
prints:

    images/s          wall-clock rate with `--threads` decoding threads
    images/cpu-s      images per second of CPU time of the whole process (all threads): the
                      rate per core, whatever the number of threads

The SSL *image* views are drawn on the device inside the train step (bdjax/data/augment.py);
their cost is printed apart, per policy, as images/s of the jitted `view_images` on this
machine's JAX device.
"""

from __future__ import annotations

import io
import itertools
import sys
import tarfile
import tempfile
import time

import jax
import numpy as np
from absl import app, flags
from PIL import Image, ImageDraw

from bdjax.data import augment, pipeline, prepare
from bdjax.data.arrayrecord_pairs import ArrayRecordPairs
from bdjax.data.webdataset_pairs import WebdatasetPairs
from bdjax.models import tokenize

_N = flags.DEFINE_integer("num_images", 2048, "Images to write and read.")
_W = flags.DEFINE_integer("source_width", 400, "Width of the written JPEGs.")
_H = flags.DEFINE_integer("source_height", 300, "Height of the written JPEGs.")
_SIZE = flags.DEFINE_integer("size", 224, "Training resolution (shorter side, then centre crop).")
_BATCH = flags.DEFINE_integer("batch", 64, "Batch size.")
_THREADS = flags.DEFINE_multi_integer("decode_threads", [1, 2], "Decoding threads to measure with.")
_SHARDS = 4


def write_shards(folder: str, n: int, width: int, height: int) -> str:
  """`n` JPEG + caption samples in img2dataset's layout, over `_SHARDS` tar shards."""
  rng = np.random.default_rng(0)
  per = -(-n // _SHARDS)
  for s in range(_SHARDS):
    with tarfile.open(f"{folder}/{s:05d}.tar", "w") as tar:
      for i in range(s * per, min(n, (s + 1) * per)):
        _add(tar, f"{i:09d}.jpg", _jpeg(rng, width, height))
        _add(tar, f"{i:09d}.txt", f"a photo of thing {i} on a table".encode())
  return f"{folder}/{{00000..{_SHARDS - 1:05d}}}.tar"


def _jpeg(rng: np.random.Generator, width: int, height: int) -> bytes:
  field = rng.integers(0, 256, (height // 50 + 2, width // 50 + 2, 3), dtype=np.uint8)
  img = Image.fromarray(field).resize((width, height), Image.Resampling.BICUBIC)
  draw = ImageDraw.Draw(img)
  for _ in range(3):
    x, y = rng.integers(0, width - 40), rng.integers(0, height - 40)
    draw.ellipse((x, y, x + 40, y + 40), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
  buf = io.BytesIO()
  img.save(buf, "JPEG", quality=90)
  return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def rate(source, threads: int, views: bool, batch: int) -> tuple[float, float]:
  """(images/s, images per CPU-second) over one pass of `source` after a warm-up batch."""
  source.threads = threads
  tok = lambda texts: tokenize(texts, context_length=77)
  it = iter(pipeline.batches(source, batch, 0, tok, views, threads=threads, flip=True))
  next(it)
  steps = max(1, len(source) // batch - 1)
  wall, cpu = time.perf_counter(), time.process_time()
  for b in itertools.islice(it, steps):
    assert b["image"].shape == (batch, source.image_size, source.image_size, 3)
  wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
  return steps * batch / wall, steps * batch / cpu


def view_rate(policy: str, batch: int, size: int) -> float:
  """images/s of the jitted second image view (policy) on the default JAX device."""
  pixels = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
  fn = jax.jit(lambda k, x: augment.view_images(k, x, augment.normalize(x), policy))
  fn(jax.random.key(0), pixels).block_until_ready()
  reps = 5
  start = time.perf_counter()
  for r in range(reps):
    fn(jax.random.key(r), pixels).block_until_ready()
  return reps * batch / (time.perf_counter() - start)


def main(argv: list[str]) -> None:
  del argv
  size, batch = _SIZE.value, _BATCH.value
  with tempfile.TemporaryDirectory() as tmp:
    pattern = write_shards(tmp, _N.value, _W.value, _H.value)
    tars = WebdatasetPairs(pattern, image_size=size)
    prepare.prepare(tars, f"{tmp}/ar", num_shards=_SHARDS, progress=False)
    records = ArrayRecordPairs(f"{tmp}/ar", image_size=size)
    print(
      f"{_N.value} JPEGs of {_W.value}x{_H.value} -> {size} px, batch {batch}, "
      f"{jax.device_count()} JAX device(s) ({jax.devices()[0].platform})"
    )
    print("| source | SSL text views | threads | images/s | images/cpu-s |")
    print("|---|---|---:|---:|---:|")
    for name, source in (("webdataset tar", tars), ("ArrayRecord", records)):
      for views in (False, True):
        for threads in _THREADS.value:
          wall, per_cpu = rate(source, threads, views, batch)
          print(f"| {name} | {'yes' if views else 'no'} | {threads} | {wall:.0f} | {per_cpu:.0f} |")
  print("\n| SSL image views (device) | images/s |\n|---|---:|")
  for policy in augment.IMAGE_VIEWS:
    print(f"| {policy} | {view_rate(policy, batch, size):.0f} |")


if __name__ == "__main__":
  sys.exit(app.run(main))
