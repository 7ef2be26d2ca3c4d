"""CLIP's ResNet tower in the trainer: BatchNorm trains on the batch's statistics, keeps running
ones for evaluation, resumes exactly, and works with the defenses that read its layers."""

import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from bdjax import stages
from bdjax.checkpoint import load_params
from bdjax.config_check import load_config
from bdjax.data.augment import normalize
from bdjax.metrics_log import read_metrics
from bdjax.models import build_model, model_config
from bdjax.models.build import example_inputs
from bdjax.train import TrainState, make_train_step
from bdjax.objectives import make_objective
from tests.test_attack_runs import shrunk

ROOT = pathlib.Path(__file__).resolve().parent.parent
TINY_RESNET = dict(kind="resnet", size=32, layers=(1, 1, 1, 1), width=8, heads=2)


def resnet_config(objective="clip"):
  config = load_config(f"{ROOT}/configs/tiny.py:{objective}")
  config.model.image = TINY_RESNET
  return config


def flat(tree):
  return traverse_util.flatten_dict(jax.device_get(tree), sep="/")


def test_a_step_updates_the_running_statistics_with_the_batch_statistics():
  cfg = model_config("tiny-resnet")
  model = build_model(cfg)
  images, tokens = example_inputs(cfg, batch=4)
  images = jax.random.uniform(jax.random.key(1), images.shape, maxval=255.0).astype(jnp.uint8)
  tokens = jnp.tile(jnp.arange(1, tokens.shape[1] + 1, dtype=jnp.int32), (4, 1))
  variables = model.init(jax.random.key(0), normalize(images), tokens)
  tx = optax.adamw(1e-3)
  step = make_train_step(
    model, make_objective(load_config(f"{ROOT}/configs/tiny.py").objective), tx
  )
  state = TrainState.create(jax.tree.map(jnp.copy, variables), tx)  # the step donates it
  state, _ = step(state, dict(image=images, tokens=tokens), None)
  # The stem's first BatchNorm: running = 0.9 running + 0.1 batch statistics of conv1's output.
  kernel = variables["params"]["image_tower"]["conv1"]["kernel"]
  conv = jax.lax.conv_general_dilated(
    normalize(images), kernel, (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
  )
  stats = state.params["batch_stats"]["image_tower"]["bn1"]
  np.testing.assert_allclose(stats["mean"], 0.1 * conv.mean((0, 1, 2)), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * conv.var((0, 1, 2)), rtol=1e-4)


def test_training_moves_the_running_statistics_and_evaluation_uses_them(tmp_path):
  config = resnet_config()
  config.train.steps = 4
  results = stages.run(config, str(tmp_path))
  saved = flat(load_params(str(tmp_path), "train"))
  means = [v for k, v in saved.items() if k.startswith("batch_stats/") and k.endswith("/mean")]
  assert len(means) == 3 + 4 * 4  # 3 stem BNs; bn1-3 + downsample per block (1 block per stage)
  assert all(np.abs(m).max() > 0 for m in means)  # moved from their initial zeros
  assert 0.0 <= results[-1]["ca_top1"] <= 1.0


def test_an_objective_with_views_trains_a_resnet(tmp_path):
  config = resnet_config("clip_ssl")  # BatchNorm normalises both views together
  config.train.steps = 2
  stages.run(config, str(tmp_path))
  assert np.isfinite(jax.tree.leaves(jax.tree.map(np.sum, load_params(str(tmp_path))))).all()


def test_a_resumed_resnet_run_equals_an_uninterrupted_one(tmp_path):
  config = resnet_config()  # 8 steps, checkpoints at 4 and 8
  stages.run(config, str(tmp_path))
  whole = flat(load_params(str(tmp_path), "train"))
  shutil.rmtree(tmp_path / "checkpoints" / "train" / "8")  # as if killed after step 4's save
  stages.run(config, str(tmp_path))
  a, b = whole, flat(load_params(str(tmp_path), "train"))
  assert a.keys() == b.keys() and any(k.startswith("batch_stats/") for k in a)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("defense", ["nad", "rnp"])
def test_defenses_that_touch_layers_run_on_a_resnet(tmp_path, defense):
  config = shrunk(f"defense_{defense}")
  config.model.image = TINY_RESNET
  if defense == "nad":
    from bdjax.defenses.nad import default_blocks

    blocks, betas = default_blocks(config.model.image)
    assert blocks == ("layer2_0", "layer3_0", "layer4_0") and betas == (500.0, 1000.0, 1000.0)
    config.nad_student.distill.update(blocks=blocks, betas=betas)
  results = stages.run(config, str(tmp_path))
  if defense == "rnp":  # RNP's masks sit on every BatchNorm channel of the tower, as in the paper
    pruning = [m for m in read_metrics(str(tmp_path)) if m["stage"] == "rnp_prune"][-1]
    stem, planes = 4 + 4 + 8, (8, 16, 32, 64)  # width 8; bn1, bn2 (p), bn3, downsample (4p)
    assert pruning["channels"] == stem + sum(10 * p for p in planes)
  assert [r["stage"] for r in results] == ["eval_poisoned", "eval_defended"]
  assert np.isfinite(results[-1]["ca_top1"])
