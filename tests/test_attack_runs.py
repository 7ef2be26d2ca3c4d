"""Every attack config runs end to end on the embedded data and reports CA, ASR and RA."""

import json
import pathlib

import numpy as np
import pytest

from bdjax import config_check, stages
from bdjax.attacks import poison
from bdjax.data import synthetic
from bdjax.metrics_log import read_metrics

ROOT = pathlib.Path(__file__).resolve().parent.parent
ATTACKS = ["badnet", "solid", "blended", "sig", "wanet", "label_consistent"]


def shrunk(name: str, edit=None):
  """The config `configs/NAME.py` with the tiny model, little data and a few steps; `edit(config)`
  changes it further before the start-up checks."""
  config = config_check.load_config(f"{ROOT}/configs/{name}.py")
  tiny = config_check.load_config(f"{ROOT}/configs/tiny.py")
  config.model, config.data, config.eval.batch_size = tiny.model, tiny.data, 50
  for stage in config.stages:
    if config[stage].kind == "train":
      config[stage].update(steps=2, batch_size=8, checkpoint_every=2, log_every=2, warmup_steps=1)
      if config[stage].get("num_pairs", 0):
        config[stage].num_pairs = 64
      if config[stage].distill.teacher:  # the tiny image tower has one stage
        config[stage].distill.update(blocks=("stage_1",), betas=(1000.0,))
  if edit is not None:
    edit(config)
  config_check.check_config(config)
  stages.check_stages(config)
  return config


@pytest.mark.parametrize("attack", ATTACKS)
def test_attack_config_runs_and_reports_asr(tmp_path, attack):
  config = shrunk(f"attack_{attack}")
  results = stages.run(config, str(tmp_path))
  assert {"ca_top1", "asr_top1", "asr_top5", "ra_top1"} <= set(results[-1])
  assert all(0.0 <= results[-1][k] <= 1.0 for k in ("ca_top1", "asr_top1", "ra_top1"))
  saved = json.loads((tmp_path / "poisoned_indices.json").read_text())
  assert saved["count"] == round(0.01 * config.data.num_train) == len(saved["indices"])
  if attack == "label_consistent":
    captions = synthetic.SyntheticPairs("train", config.data.num_train, 32).captions(
      saved["indices"]
    )
    assert all(synthetic.caption_mentions(c, "star") for c in captions)
  assert "asr_top1" in (tmp_path / "report.md").read_text()


def test_demo_poisons_pretraining_then_cleans_with_cleanclip(tmp_path):
  config = shrunk("demo")
  assert config.stages == ("train", "eval_poisoned", "cleanclip", "eval_defended")
  assert config.train.poison and not config.cleanclip.poison
  assert config.cleanclip.objective.name == "clip_ssl"
  results = stages.run(config, str(tmp_path))
  assert [r["stage"] for r in results] == ["eval_poisoned", "eval_defended"]
  assert all("asr_top1" in r for r in results)
  logged = {m["stage"] for m in read_metrics(str(tmp_path))}
  assert {"train", "cleanclip"} <= logged
  assert len(poison.load_indices(str(tmp_path))) == round(0.01 * config.data.num_train)


def test_der_is_reported_against_the_named_eval(tmp_path):
  config = shrunk("demo")
  results = stages.run(config, str(tmp_path))
  expected = (
    max(0.0, results[0]["asr_top1"] - results[1]["asr_top1"])
    - max(0.0, results[0]["ca_top1"] - results[1]["ca_top1"])
    + 1
  ) / 2
  assert results[1]["der"] == pytest.approx(expected)
  assert "der" not in results[0]
  assert np.isfinite(results[1]["der"])
