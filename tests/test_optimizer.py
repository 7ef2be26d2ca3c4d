"""The base optimiser: warmup from step 0, cosine to 0, no decay on norms, biases, logit scale."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from bdjax.optimizer import lr_schedule, make_optimizer, weight_decay_mask


def train_cfg(**kw):
  base = dict(steps=100, lr=1e-3, warmup_steps=10, weight_decay=0.1, grad_clip_norm=1.0)
  return ml_collections.ConfigDict({**base, **kw})


def test_warmup_starts_at_zero_and_peaks_at_lr():
  schedule = lr_schedule(train_cfg())
  assert schedule(0) == 0.0
  np.testing.assert_allclose(schedule(5), 0.5e-3, rtol=1e-6)
  np.testing.assert_allclose(schedule(10), 1e-3, rtol=1e-6)


def test_cosine_decays_to_zero_at_the_last_step():
  schedule = lr_schedule(train_cfg())
  np.testing.assert_allclose(schedule(55), 0.5e-3, rtol=1e-5)
  assert schedule(100) == pytest.approx(0.0, abs=1e-12)
  values = [float(schedule(t)) for t in range(10, 101)]
  assert all(a >= b for a, b in zip(values, values[1:]))


def test_decay_mask_skips_rank_below_two_and_logit_params():
  params = {
    "dense": {"kernel": jnp.ones((3, 4)), "bias": jnp.ones(4)},
    "ln": {"scale": jnp.ones(4)},
    "logit_scale": jnp.ones(()),
    "embed": {"embedding": jnp.ones((10, 4))},
  }
  mask = weight_decay_mask(params)
  assert mask == {
    "dense": {"kernel": True, "bias": False},
    "ln": {"scale": False},
    "logit_scale": False,
    "embed": {"embedding": True},
  }


def test_zero_gradient_step_decays_only_masked_leaves():
  params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2), "logit_scale": jnp.ones(())}
  tx = make_optimizer(train_cfg(warmup_steps=0, lr=0.1))
  state = tx.init(params)
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)
  new = optax.apply_updates(params, updates)
  assert float(new["kernel"][0, 0]) < 1.0
  assert float(new["bias"][0]) == 1.0
  assert float(new["logit_scale"]) == 1.0
