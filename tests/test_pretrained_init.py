"""`config.init.checkpoint`: any run starts from a pre-trained CLIP file (OpenAI / open_clip
layout, bdjax/models/convert.py), and CleanCLIP's own setting runs from such a file."""

import jax
import ml_collections
import numpy as np
import pytest
from flax import traverse_util

from bdjax import sharding, stages
from bdjax.config_check import ConfigError
from bdjax.models import build_model, convert
from bdjax.models.build import example_inputs
from tests.test_attack_runs import shrunk
from tests.test_resnet_training import TINY_RESNET


def pretrained_config(checkpoint):
  """configs/cleanclip_pretrained.py shrunk to the tiny ResNet and the embedded data."""

  def edit(config):
    config.model.image = TINY_RESNET
    config.attack.update(target="star", count=5)  # "banana" is no class of the embedded data

  config = shrunk("cleanclip_pretrained", edit)
  config.init.checkpoint = str(checkpoint)
  return config


def save_checkpoint(path, model_cfg, seed=3):
  """A 'pre-trained' CLIP file: random parameters and BatchNorm statistics in open_clip's
  layout, as `save_open_clip` writes them."""
  variables = build_model(model_cfg).init(jax.random.key(seed), *example_inputs(model_cfg))
  leaves, tree = jax.tree.flatten(variables)
  keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
  noisy = [x + 0.1 * jax.random.uniform(k, x.shape) for x, k in zip(leaves, keys)]
  variables = jax.device_get(jax.tree.unflatten(tree, noisy))
  convert.save_open_clip(path, variables, model_cfg)
  return variables


def test_the_run_starts_from_the_checkpoint_exactly(tmp_path):
  config = pretrained_config(tmp_path / "clip.safetensors")
  saved = save_checkpoint(config.init.checkpoint, config.model)
  run = stages.Run(config, str(tmp_path), build_model(config.model), sharding.make_mesh(None), None)
  initial = traverse_util.flatten_dict(jax.device_get(run.init_params()), sep="/")
  expected = traverse_util.flatten_dict(saved, sep="/")
  assert initial.keys() == expected.keys() and any(k.startswith("batch_stats/") for k in initial)
  for k in expected:
    np.testing.assert_array_equal(initial[k], expected[k], err_msg=k)
  fresh = jax.device_get(run.init_params(position=1))  # other positions stay fresh draws
  assert not np.allclose(fresh["params"]["logit_scale"] + 1, saved["params"]["logit_scale"] + 1)


def test_cleanclip_poisons_then_cleans_a_pretrained_model(tmp_path):
  config = pretrained_config(tmp_path / "clip.safetensors")
  save_checkpoint(config.init.checkpoint, config.model)
  assert config.stages == ("poison", "eval_poisoned", "cleanclip", "eval_defended")
  assert config.poison.lr == 1e-6 and config.cleanclip.lr == 1e-5
  results = stages.run(config, str(tmp_path / "run"))
  assert [r["stage"] for r in results] == ["eval_poisoned", "eval_defended"]
  assert {"ca_top1", "asr_top1", "der"} <= set(results[-1])


def test_a_checkpoint_of_another_architecture_is_refused_naming_it(tmp_path):
  config = pretrained_config(tmp_path / "vit.safetensors")
  other = ml_collections.ConfigDict(config.model.to_dict())
  other.image = dict(kind="vit", size=32, patch_size=8, width=64, depth=1, heads=2)
  save_checkpoint(config.init.checkpoint, other)
  run = stages.Run(config, str(tmp_path), build_model(config.model), sharding.make_mesh(None), None)
  with pytest.raises(ConfigError, match=r"config.init.checkpoint: .*vit.safetensors.*config.model"):
    run.init_params()


def test_a_missing_checkpoint_fails_at_start_up(run_main, tmp_path):
  result = run_main(
    "--config=configs/cleanclip_pretrained.py:checkpoint=/no/such/RN50.pt",
    f"--workdir={tmp_path}",
  )
  assert result.returncode == 2
  assert "config.init.checkpoint='/no/such/RN50.pt' is not a file" in result.stderr
  assert "Traceback" not in result.stderr
