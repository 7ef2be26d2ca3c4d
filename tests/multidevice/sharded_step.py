"""Run by tests/test_sharding.py in a child process with 8 simulated CPU devices: one train step
of every objective on a (data=4, fsdp=2) mesh against the same step on one device.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/multidevice/sharded_step.py FORM

FORM is the loss form, 'global' or 'local' (which also runs SigLIP's 'ring').

Prints one JSON line per objective: the loss on both meshes and the largest parameter
difference after the step. The last line is CLIP with the tiny ResNet tower, whose BatchNorm must
normalise with the statistics of the global batch: its running statistics (in `params`) are
compared too.
"""

import json
import sys

import jax
import numpy as np
from jax.sharding import Mesh

from bdjax import sharding
from bdjax.config_check import load_config
from bdjax.data import pipeline
from bdjax.data.synthetic import SyntheticPairs
from bdjax.models import build_model, tokenize
from bdjax.objectives import make_objective
from bdjax.optimizer import make_optimizer
from bdjax.train import TrainState, make_train_step


STEPS = 3  # the first step's AdamW update is lr * sign(g): later ones show gradient errors


def one_step(config, mesh, batch, form):
  model = build_model(config.model)
  size = config.data.image_size
  params = model.init(
    jax.random.key(0), np.zeros((1, size, size, 3), np.float32), batch["tokens"][:1]
  )
  tx = make_optimizer(config.train)
  shapes = jax.eval_shape(lambda p: TrainState.create(p, tx), params)
  state_sharding = sharding.tree_shardings(shapes, mesh, min_size=64)  # shard even tiny leaves
  state = jax.jit(TrainState.create, static_argnums=1, out_shardings=state_sharding)(params, tx)
  objective = make_objective(config.objective, mesh=mesh, form=form)
  step = make_train_step(model, objective, tx, state_sharding=state_sharding)
  for t in range(STEPS):
    state, metrics = step(state, sharding.put_batch(batch, mesh), jax.random.key(t))
  moved = max(
    jax.tree.leaves(jax.tree.map(lambda a, b: float(np.abs(a - b).max()), params, state.params))
  )
  return float(metrics["loss"]), float(metrics["grad_norm"]), moved, jax.device_get(state.params)


def main(form):
  assert jax.device_count() == 8, jax.devices()
  devices = np.array(jax.devices())
  single = Mesh(devices[:1].reshape(1, 1, 1), sharding.AXES)
  sharded = Mesh(devices.reshape(4, 2, 1), sharding.AXES)
  cases = [(name, form, "cnn") for name in ("clip", "clip_ssl", "cyclip", "siglip")]
  if form == "local":
    cases.append(("siglip", "ring", "cnn"))  # SigLIP's own sharded form
  cases.append(("clip", form, "resnet"))
  for objective, form, tower in cases:
    config = load_config(f"configs/tiny.py:{objective}")
    if tower == "resnet":
      config.model.image = dict(kind="resnet", size=32, layers=(1, 1, 1, 1), width=8, heads=2)
    tok = lambda t: tokenize(t, context_length=config.model.text.context_length)
    source = SyntheticPairs("train", 64, config.data.image_size, seed=0)
    views = objective == "clip_ssl"
    batch = next(iter(pipeline.batches(source, 16, 0, tok, views)))
    batch.pop("skipped")
    config.train.update(warmup_steps=1, lr=1e-3)
    loss_1, grad_1, moved, params_1 = one_step(config, single, batch, form)
    loss_8, grad_8, _, params_8 = one_step(config, sharded, batch, form)
    diff = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), params_1, params_8)
    result = dict(
      objective=objective, form=form, tower=tower, loss_1=loss_1, loss_8=loss_8, grad_norm_1=grad_1
    )
    result.update(grad_norm_8=grad_8, moved=moved, param_diff=max(jax.tree.leaves(diff)))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
  main(sys.argv[1] if len(sys.argv) > 1 else "global")
