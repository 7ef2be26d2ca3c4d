"""A run on a real corpus (a CSV of JPEG files written here): bad pairs left out and counted in
the logs and the report, and a run resumed from a checkpoint sees exactly the data an
uninterrupted run sees."""

import json
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image, ImageDraw

from bdjax import stages
from bdjax.checkpoint import load_params
from bdjax.config_check import ConfigError
from tests.conftest import ROOT
from tests.test_train import tiny_config

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}
SHAPES = ("square", "circle")


def write_corpus(folder, n=60, corrupt=(7, 19), empty=(11,)):
  """`n` JPEGs of coloured shapes with captions; some corrupt files and empty captions."""
  (folder / "img").mkdir(parents=True)
  rng = np.random.default_rng(0)
  rows = ["image,caption"]
  for i in range(n):
    colour, shape = list(COLOURS)[i % 3], SHAPES[(i // 3) % 2]
    img = Image.new("RGB", (48, 40), tuple(int(v) for v in rng.integers(0, 60, 3)))
    box = (8 + i % 5, 6, 36 + i % 5, 34)
    draw = ImageDraw.Draw(img)
    (draw.rectangle if shape == "square" else draw.ellipse)(box, fill=COLOURS[colour])
    name = f"img/{i:04d}.jpg"
    if i in corrupt:
      (folder / name).write_bytes(b"\xff\xd8 not really a jpeg")
    else:
      img.save(folder / name, quality=90)
    rows.append(f"{name},{'' if i in empty else f'a {colour} {shape} on a dark background'}")
  (folder / "train.csv").write_text("\n".join(rows) + "\n")
  return folder / "train.csv"


def csv_config(path):
  c = tiny_config()
  c.data.update(source="csv", train=str(path))
  c.train.update(steps=12, batch_size=8, checkpoint_every=6, log_every=3)
  return c


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  return write_corpus(tmp_path_factory.mktemp("corpus"))


def records(workdir, stage="train"):
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return [r for r in map(json.loads, lines) if r["stage"] == stage]


def test_bad_pairs_are_left_out_counted_logged_and_reported(tmp_path, corpus, capsys):
  stages.run(csv_config(corpus), str(tmp_path))
  last = records(tmp_path)[-1]
  # 12 steps x 8 pairs = 96 pairs drawn from 60 per epoch: every bad pair met at least once
  assert last["skipped_bad_image"] >= 2 and last["skipped_empty_caption"] >= 1
  report = (tmp_path / "report.md").read_text()
  assert "left out pairs it could not use" in report and "bad_image" in report
  assert "epoch 1 ends at step" in capsys.readouterr().out


def test_a_resumed_run_sees_the_data_an_uninterrupted_run_sees(tmp_path, corpus):
  config = csv_config(corpus)
  whole = tmp_path / "whole"
  stages.run(config, str(whole))
  cut = tmp_path / "cut"
  shutil.copytree(whole, cut)
  shutil.rmtree(cut / "checkpoints" / "train" / "12")  # as if killed after step 6's save
  (cut / "metrics.jsonl").unlink()
  stages.run(config, str(cut))
  assert (cut / "checkpoints" / "train" / "6" / "data").exists()
  jax.tree.map(
    np.testing.assert_array_equal, load_params(str(whole), "train"), load_params(str(cut), "train")
  )
  assert records(cut)[-1]["skipped_bad_image"] == records(whole)[-1]["skipped_bad_image"]


def test_a_corpus_that_cannot_be_opened_stops_before_training(tmp_path):
  (tmp_path / "train.csv").write_text("path,text\na.jpg,x\n")
  config = csv_config(tmp_path / "train.csv")
  with pytest.raises(ConfigError, match=r"config.data.train: .*train.csv.*no column"):
    stages.run(config, str(tmp_path / "run"))


def test_from_a_csv_to_arrayrecord_shards_to_a_run_evaluated_on_an_imagenet_folder(
  tmp_path, corpus, run_main
):
  """The README's path for real data, through the command line: prepare, then train and
  evaluate with the same entry point as every run."""
  shards = tmp_path / "shards"
  prepared = subprocess.run(
    [sys.executable, "-m", "bdjax.data.prepare", f"--input={corpus}", f"--output={shards}"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert prepared.returncode == 0, prepared.stderr
  summary = json.loads((shards / "prepare_summary.json").read_text())
  assert summary["pairs_written"] == 57 and summary["skipped"] == {
    "bad_image": 2,
    "empty_caption": 1,
  }
  val = tmp_path / "val"
  val.mkdir()
  rows = ["image,label"]
  for i in range(6):
    Image.new("RGB", (40, 40), list(COLOURS.values())[i % 3]).save(val / f"{i}.jpg")
    rows.append(f"{i}.jpg,{i % 3}")
  (val / "labels.csv").write_text("\n".join(rows) + "\n")
  result = run_main(
    "--config=configs/tiny.py",
    f"--workdir={tmp_path / 'run'}",
    "--config.data.source=auto",
    f"--config.data.train={shards}",
    "--config.data.eval_source=imagenet",
    f"--config.data.eval={val}",
  )
  assert result.returncode == 0, result.stderr[-3000:]
  report = (tmp_path / "run" / "report.md").read_text()
  assert "| eval | 8 |" in report and "i2t_r1" not in report  # no captions: no retrieval
  assert "left out" not in report  # prepare already dropped the bad pairs
