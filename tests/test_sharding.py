"""Sharding: the mesh from the config, parameters split by rules, and a train step on a
(data=4, fsdp=2) mesh equal to the same step on one device (8 simulated CPU devices, in a child
process because the device count is fixed when JAX starts)."""

import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import ml_collections
import pytest
from jax.sharding import AbstractMesh, PartitionSpec as P

from bdjax import sharding
from bdjax.checkpoint import load_params
from tests.conftest import ROOT

MESH_4x2 = AbstractMesh((4, 2, 1), sharding.AXES)
MESH_2x2x2 = AbstractMesh((2, 2, 2), sharding.AXES)


def test_small_leaves_are_replicated_large_ones_split_along_fsdp_on_their_largest_dim():
  assert sharding.leaf_spec((512,), MESH_4x2) == P(None)  # below min_shard_size
  assert sharding.leaf_spec((256, 1024), MESH_4x2) == P(None, "fsdp")
  assert sharding.leaf_spec((1024, 256), MESH_4x2) == P("fsdp", None)
  assert sharding.leaf_spec((3, 3, 64, 129), MESH_4x2, min_size=1) == P(None, None, "fsdp", None)


def test_the_model_axis_takes_the_next_largest_dimension_that_divides():
  assert sharding.leaf_spec((256, 1024), MESH_2x2x2) == P("model", "fsdp")
  assert sharding.leaf_spec((7, 1024), MESH_2x2x2, min_size=1) == P(None, "fsdp")


def test_without_fsdp_or_model_axes_everything_is_replicated():
  assert sharding.leaf_spec((4096, 4096), AbstractMesh((8, 1, 1), sharding.AXES)) == P(None, None)


def test_the_mesh_from_the_config_and_its_errors():
  mesh = sharding.make_mesh(ml_collections.ConfigDict(dict(data=-1, fsdp=1, model=1)))
  assert dict(mesh.shape) == {"data": jax.device_count(), "fsdp": 1, "model": 1}
  with pytest.raises(ValueError, match="at most one axis may be -1"):
    sharding.make_mesh(ml_collections.ConfigDict(dict(data=-1, fsdp=-1, model=1)))
  with pytest.raises(ValueError, match="multiply to"):
    sharding.make_mesh(ml_collections.ConfigDict(dict(data=jax.device_count() + 1, fsdp=1)))


def sharded_steps(form):
  env = {
    **os.environ,
    "PYTHONPATH": str(ROOT),
    "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
    "JAX_PLATFORMS": "cpu",
  }
  script = ROOT / "tests" / "multidevice" / "sharded_step.py"
  done = subprocess.run(
    [sys.executable, str(script), form],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("form", ["global", "local"])
def test_three_steps_on_a_4x2_mesh_equal_three_steps_on_one_device(form):
  results = sharded_steps(form)
  expected = ["clip", "clip_ssl", "cyclip", "siglip"] + (["siglip"] if form == "local" else [])
  assert [r["objective"] for r in results] == expected + ["clip"]
  assert results[-1]["tower"] == "resnet"  # BatchNorm's statistics over the global batch
  for r in results:
    assert r["moved"] > 1e-4, r  # the parameters did change
    assert abs(r["loss_1"] - r["loss_8"]) <= 1e-5 * max(1.0, abs(r["loss_1"])), r
    assert abs(r["grad_norm_1"] - r["grad_norm_8"]) <= 1e-5 * max(1.0, r["grad_norm_1"]), r
    assert r["param_diff"] <= 1e-5, r


def main_on(devices, *args):
  env = {
    **os.environ,
    "PYTHONPATH": str(ROOT),
    "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
    "JAX_PLATFORMS": "cpu",
  }
  return subprocess.run(
    [sys.executable, "-m", "bdjax.main", *args],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=900,
  )


def test_a_checkpoint_saved_on_8_devices_resumes_on_2(tmp_path):
  """Orbax restores into the shardings of the run that reads it: 8 -> 2 devices."""
  args = ["--config=configs/tiny.py", "--config.mesh.fsdp=2", "--config.mesh.min_shard_size=64"]
  whole = main_on(8, *args, f"--workdir={tmp_path}")
  assert whole.returncode == 0, whole.stderr[-3000:]
  final = load_params(str(tmp_path), "train")
  shutil.rmtree(tmp_path / "checkpoints" / "train" / "8")  # as if stopped after step 4's save
  resumed = main_on(2, *args, f"--workdir={tmp_path}")
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert "Resuming stage train from its checkpoint at step 4" in resumed.stdout
  again = load_params(str(tmp_path), "train")
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), final, again)
