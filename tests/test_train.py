"""The one trainer: every objective trains, training learns, resumes exactly, stops on NaN."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bdjax import checkpoint, sharding, stages
from bdjax.checkpoint import StageCheckpoints, load_params
from bdjax.metrics_log import read_metrics
from bdjax.train import NonFiniteLossError, TrainState, train_loop
from bdjax.config_check import load_config

ROOT = pathlib.Path(__file__).resolve().parent.parent


def tiny_config(objective="clip"):
  return load_config(f"{ROOT}/configs/tiny.py:{objective}")


def train_records(workdir):
  return [m for m in read_metrics(workdir) if m["stage"] == "train"]


@pytest.mark.parametrize("objective", ["clip", "clip_ssl", "cyclip", "siglip"])
def test_every_objective_trains_with_finite_loss(tmp_path, objective):
  config = tiny_config(objective)
  config.train.steps = 4
  results = stages.run(config, str(tmp_path))
  records = train_records(tmp_path)
  assert [r["step"] for r in records] == [2, 4]
  assert all(np.isfinite(r["loss"]) and np.isfinite(r["grad_norm"]) for r in records)
  assert {"ca_top1", "ca_top5", "i2t_r1", "t2i_r10"} <= set(results[-1])
  if objective == "clip_ssl":
    assert "inmodal" in records[0]


def test_short_run_lowers_the_loss_and_beats_chance(tmp_path):
  config = tiny_config("clip")
  config.data.num_train = 4096
  config.model.image.widths = (16, 32, 64)
  config.model.embed_dim = 64
  config.train.update(
    steps=1200, batch_size=32, lr=1e-3, warmup_steps=50, log_every=100, checkpoint_every=1200
  )
  results = stages.run(config, str(tmp_path))
  losses = [r["loss"] for r in train_records(tmp_path)]
  assert losses[-1] < 0.7 * losses[0]
  assert results[-1]["ca_top1"] >= 0.4  # chance is 0.1 on the 10 classes


def test_rerun_of_a_finished_run_trains_nothing_more(tmp_path):
  config = tiny_config("clip")
  stages.run(config, str(tmp_path))
  first = load_params(str(tmp_path))
  stages.run(config, str(tmp_path))
  assert len(train_records(tmp_path)) == config.train.steps // config.train.log_every
  jax.tree.map(np.testing.assert_array_equal, first, load_params(str(tmp_path)))


def test_run_killed_with_sigkill_resumes_to_the_same_parameters(tmp_path):
  args = [
    "--config=configs/tiny.py",
    "--config.train.steps=60",
    "--config.train.checkpoint_every=10",
    "--config.train.log_every=10",
  ]
  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  main = [sys.executable, "-m", "bdjax.main"]
  whole, killed = tmp_path / "whole", tmp_path / "killed"
  subprocess.run(
    main + args + [f"--workdir={whole}"], cwd=ROOT, env=env, check=True, capture_output=True
  )

  proc = subprocess.Popen(
    main + args + [f"--workdir={killed}"],
    cwd=ROOT,
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  ckpt_dir = checkpoint.stage_dir(str(killed), "train")
  deadline = time.time() + 300
  while not (ckpt_dir / "20").exists() and proc.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (ckpt_dir / "60").exists(), "the run finished before it could be killed"

  resumed = subprocess.run(
    main + args + [f"--workdir={killed}"], cwd=ROOT, env=env, capture_output=True, text=True
  )
  assert resumed.returncode == 0, resumed.stderr
  assert "Resuming stage train" in resumed.stdout
  jax.tree.map(np.testing.assert_array_equal, load_params(str(whole)), load_params(str(killed)))


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  mesh = sharding.data_mesh()
  state = TrainState(step=jnp.zeros((), jnp.int32), params={"w": jnp.ones(3)}, opt_state=())

  def step_fn(state, batch, rng):  # the loss turns NaN at step 7 (the 7th call)
    step = state.step + 1
    loss = jnp.where(step >= 7, jnp.nan, 1.0)
    new = state.replace(step=step, params={"w": state.params["w"] + loss})
    return new, {"loss": loss, "grad_norm": jnp.float32(1.0)}

  data = iter([{"x": np.zeros((jax.device_count(),), np.float32)}] * 20)
  ckpts = StageCheckpoints(str(tmp_path), "train")
  with pytest.raises(NonFiniteLossError, match=r"step 7.*step 5"):
    train_loop(
      state,
      step_fn,
      data,
      steps=20,
      key=jax.random.key(0),
      batch_size=1,
      mesh=mesh,
      checkpoints=ckpts,
      checkpoint_every=5,
      log_every=100,
      on_log=lambda s, m: None,
    )
  ckpts.close()
  assert ckpts.latest_step() == 5
  np.testing.assert_array_equal(load_params(str(tmp_path))["w"], np.full(3, 6.0))


def test_load_params_without_checkpoint_names_the_directory(tmp_path):
  with pytest.raises(FileNotFoundError, match=str(tmp_path)):
    load_params(str(tmp_path))


def test_metrics_file_has_one_json_object_per_line(tmp_path):
  stages.run(tiny_config("clip"), str(tmp_path))
  lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
  records = [json.loads(line) for line in lines]
  assert all({"stage", "step"} <= set(r) for r in records)
  evals = [r for r in records if r["stage"] == "eval"]
  assert evals and all(0.0 <= evals[0][k] <= 1.0 for k in ("ca_top1", "ca_top5", "i2t_r1"))
  assert (tmp_path / "report.md").read_text().count("| eval |") == 1
