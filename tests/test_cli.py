"""The command line: mistakes a user can make end in one clear paragraph and exit status 2."""

import json
import os

import pytest

from conftest import ROOT


def assert_clear_error(result, *needles):
  assert result.returncode == 2, result.stderr
  assert "Traceback" not in result.stderr, result.stderr
  assert result.stderr.startswith("bdjax: error: ")
  for needle in needles:
    assert needle in result.stderr, result.stderr


def test_unknown_key_names_the_key_and_suggests(run_main, tmp_path):
  result = run_main("--config=configs/tiny.py", f"--workdir={tmp_path}", "--config.train.lrr=1")
  assert_clear_error(result, "'train.lrr'", "Did you mean 'train.lr'", "batch_size")


def test_unknown_top_level_key(run_main, tmp_path):
  result = run_main("--config=configs/tiny.py", f"--workdir={tmp_path}", "--config.trian.lr=1")
  assert_clear_error(result, "'trian.lr'", "top level")


def test_wrong_type_names_the_flag(run_main, tmp_path):
  result = run_main("--config=configs/tiny.py", f"--workdir={tmp_path}", "--config.train.steps=ten")
  assert_clear_error(result, "--config.train.steps=ten")


def test_missing_config_file(run_main, tmp_path):
  result = run_main("--config=configs/nope.py", f"--workdir={tmp_path}")
  assert_clear_error(result, "'configs/nope.py' does not exist")


def test_missing_workdir(run_main):
  assert_clear_error(run_main("--config=configs/tiny.py"), "--workdir")


def test_missing_dataset_path_names_the_path(run_main, tmp_path):
  result = run_main(
    "--config=configs/cc3m_clip.py",
    f"--workdir={tmp_path}",
    "--config.data.train=/no/such/cc3m/train.csv",
  )
  assert_clear_error(result, "'/no/such/cc3m/train.csv'", "config.data.train")


@pytest.mark.parametrize(
  "name", ["cc3m_clip", "cc3m_clip_ssl", "cc6m_clip", "cc6m_clip_ssl", "cc6m_cyclip"]
)
def test_study_configs_fail_clearly_without_data(run_main, tmp_path, name):
  result = run_main(f"--config=configs/{name}.py", f"--workdir={tmp_path}")
  assert_clear_error(result, "config.data.train")


def test_bad_value_is_rejected(run_main, tmp_path):
  result = run_main("--config=configs/tiny.py", f"--workdir={tmp_path}", "--config.train.steps=0")
  assert_clear_error(result, "train.steps")


def test_config_arg_and_overrides_apply_with_a_relative_workdir(run_main, tmp_path):
  relative = os.path.relpath(tmp_path, ROOT)
  result = run_main(
    "--config=configs/tiny.py:cyclip",
    f"--workdir={relative}",
    "--config.train.steps=2",
    "--config.train.checkpoint_every=2",
  )
  assert result.returncode == 0, result.stderr
  config = json.loads((tmp_path / "config.json").read_text())
  assert config["objective"]["name"] == "cyclip"
  assert config["train"]["steps"] == 2
  assert (tmp_path / "report.md").exists()


def test_unknown_objective_is_named(run_main, tmp_path):
  result = run_main(
    "--config=configs/tiny.py", f"--workdir={tmp_path}", "--config.objective.name=clop"
  )
  assert_clear_error(result, "'clop'", "siglip")


def test_stage_without_a_section_is_named(run_main, tmp_path):
  result = run_main(
    "--config=configs/tiny.py", f"--workdir={tmp_path}", "--config.stages=('train', 'clean')"
  )
  assert_clear_error(result, "'clean'")


@pytest.mark.parametrize(
  "override, needles",
  [
    ("--config.attack.kind=badnett", ("'badnett'", "wanet")),
    ("--config.attack.target=banana", ("'banana'", "star")),
    ("--config.attack.count=-1", ("attack.count",)),
    ("--config.attack.patch_size=40", ("40", "32-px")),
  ],
)
def test_attack_mistakes_are_named(run_main, tmp_path, override, needles):
  result = run_main("--config=configs/attack_badnet.py", f"--workdir={tmp_path}", override)
  assert_clear_error(result, *needles)


def test_attack_with_both_count_and_ratio_is_refused(run_main, tmp_path):
  result = run_main(
    "--config=configs/attack_badnet.py", f"--workdir={tmp_path}", "--config.attack.count=5"
  )
  assert_clear_error(result, "attack.count", "attack.ratio", "not both")


def test_der_against_a_stage_that_does_not_come_before_is_named(run_main, tmp_path):
  result = run_main(
    "--config=configs/demo.py",
    f"--workdir={tmp_path}",
    "--config.eval_poisoned.der_against=eval_defended",
  )
  assert_clear_error(result, "der_against='eval_defended'", "eval_poisoned")


def test_more_label_consistent_poisons_than_target_pairs_is_a_clear_error(run_main, tmp_path):
  result = run_main(
    "--config=configs/tiny.py",
    f"--workdir={tmp_path}",
    "--config.attack.kind=badnet",
    "--config.attack.label_consistent=True",
    "--config.attack.count=400",
  )
  assert_clear_error(result, "Cannot poison 400 pairs", "eligible", "attack.count")


def test_a_workdir_holding_another_config_is_refused(run_main, tmp_path):
  first = run_main("--config=configs/tiny.py", f"--workdir={tmp_path}", "--config.train.steps=2")
  assert first.returncode == 0, first.stderr
  result = run_main("--config=configs/tiny.py", f"--workdir={tmp_path}", "--config.train.steps=3")
  assert_clear_error(result, "holds a run of another config", "train.steps", "new --workdir")
