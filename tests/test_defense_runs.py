"""Every defense config runs end to end on tiny data; stage options behave as documented."""

import json

import numpy as np
import pytest
from test_attack_runs import shrunk

from bdjax import stages
from bdjax.config_check import ConfigError
from bdjax.defenses import DEFENSES, defense_config
from bdjax.metrics_log import read_metrics


@pytest.mark.parametrize("defense", sorted(DEFENSES))
def test_defense_config_runs_and_rates_the_defended_model(tmp_path, defense):
  config = shrunk(f"defense_{defense}")
  assert config.stages[1] == "eval_poisoned" and config.stages[-1] == "eval_defended"
  results = stages.run(config, str(tmp_path))
  assert [r["stage"] for r in results] == ["eval_poisoned", "eval_defended"]
  assert {"ca_top1", "asr_top1", "der"} <= set(results[-1])
  for name in config.stages:
    if config[name].kind == "select":
      saved = json.loads((tmp_path / "sets" / f"{name}.json").read_text())
      assert saved["kept"] == len(saved["indices"]) > 0


def test_a_defense_can_start_from_a_loaded_poisoned_run(tmp_path):
  config = shrunk("defense_cleanclip")
  poisoned = shrunk("attack_badnet")
  poisoned.attack = config.attack  # the defended run recomputes the same attack from its config
  stages.run(poisoned, str(tmp_path / "poisoned"))
  loaded = defense_config("cleanclip", f"pretrained={tmp_path / 'poisoned'}")
  loaded.model, loaded.data, loaded.eval = config.model, config.data, config.eval
  loaded.cleanclip.update(steps=2, batch_size=8, checkpoint_every=2, num_pairs=64)
  results = stages.run(loaded, str(tmp_path / "defended"))
  before = [m for m in read_metrics(str(tmp_path / "poisoned")) if m["stage"] == "eval"][-1]
  assert results[0]["asr_top1"] == pytest.approx(before["asr_top1"])
  assert results[0]["ca_top1"] == pytest.approx(before["ca_top1"])


def test_stop_below_ends_a_stage_early_and_a_rerun_does_not_continue_it(tmp_path):
  config = shrunk("defense_rnp")
  config.rnp_unlearn.update(steps=6, checkpoint_every=6, eval_every=2)
  config.rnp_unlearn.stop_below.value = 2.0  # any accuracy is below: stop at the first check
  stages.run(config, str(tmp_path))
  unlearn = [m for m in read_metrics(str(tmp_path)) if m["stage"] == "rnp_unlearn/eval"]
  assert [m["step"] for m in unlearn] == [2 + 2]  # the poisoned model's 2 steps, then 2 more
  stages.run(config, str(tmp_path))
  again = [m for m in read_metrics(str(tmp_path)) if m["stage"] == "rnp_unlearn/eval"]
  assert [m["step"] for m in again] == [4, 4]  # re-checked once on resume, not trained further


def test_select_below_keeps_the_best_evaluation_of_a_stage_and_a_rerun_keeps_it(tmp_path):
  config = shrunk("defense_cleanclip")
  config.cleanclip.update(steps=6, eval_every=2, checkpoint_every=6, select_below=1.01)
  results = stages.run(config, str(tmp_path))
  evals = [m for m in read_metrics(str(tmp_path)) if m["stage"] == "cleanclip/eval"]
  best = max(evals, key=lambda m: m["ca_top1"])  # ties: the first, as the rule keeps it
  assert results[-1]["step"] == best["step"]
  assert results[-1]["ca_top1"] == pytest.approx(best["ca_top1"])
  again = stages.run(config, str(tmp_path))
  assert again[-1]["step"] == best["step"]
  assert again[-1]["ca_top1"] == pytest.approx(best["ca_top1"])


def test_a_sweep_runs_each_value_and_chooses_the_best_point_below_the_asr_bound(tmp_path):
  config = shrunk("defense_cleanclip")
  config.sweep.update(key="cleanclip.lr", choices=(1e-4, 3e-3), max_asr=1.01)
  results = stages.run(config, str(tmp_path))
  points = [r for r in results if r["stage"].startswith("cleanclip.lr=")]
  assert [p["stage"] for p in points] == ["cleanclip.lr=0.0001", "cleanclip.lr=0.003"]
  assert (
    points[0]["ca_top1"] != points[1]["ca_top1"] or points[0]["i2t_r10"] != points[1]["i2t_r10"]
  )
  report = (tmp_path / "report.md").read_text()
  best = max(points, key=lambda p: p["ca_top1"])["stage"].split("=")[1]
  assert f"chosen {best}" in report
  for value in ("0.0001", "0.003"):
    assert (tmp_path / f"cleanclip.lr={value}" / "metrics.jsonl").exists()


def test_a_sweep_with_no_point_below_the_bound_says_so(tmp_path):
  config = shrunk("defense_weight_decay")
  config.sweep.update(key="wd_tune.weight_decay", choices=(0.1,), max_asr=-1.0)
  stages.run(config, str(tmp_path))
  assert "no point has asr_top1 < " in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize(
  "section, key, value, message",
  [
    ("abl_unlearn", "start_from", "nope", "must name a stage that runs before"),
    ("abl_unlearn", "loss.weight_set", "eval_defended", "must name a stage that runs before"),
    ("abl_select", "score", "vibes", "score is 'vibes'"),
    ("abl_select", "keep", "middle", "use 'lowest' or 'highest'"),
    ("abl_isolate", "loss.kind", "median", "loss.kind"),
  ],
)
def test_bad_defense_options_stop_at_start_up_with_the_key_named(section, key, value, message):
  config = shrunk("defense_abl")
  node = config[section]
  *path, leaf = key.split(".")
  for part in path:
    node = node[part]
  node[leaf] = value
  with pytest.raises(ConfigError, match=message):
    stages.check_stages(config)


def test_num_pairs_larger_than_the_data_is_a_config_error(tmp_path):
  config = shrunk("defense_cleanclip")
  config.cleanclip.num_pairs = 10 * config.data.num_train
  with pytest.raises(ConfigError, match="cleanclip.num_pairs"):
    stages.run(config, str(tmp_path))


def test_rnp_prunes_channels_of_the_poisoned_model(tmp_path):
  config = shrunk("defense_rnp")
  config.rnp_prune.update(count=3)
  stages.run(config, str(tmp_path))
  pruned = [m for m in read_metrics(str(tmp_path)) if m["stage"] == "rnp_prune"]
  assert pruned[-1]["pruned"] == 3
  assert np.isfinite(pruned[-1]["channels"])
