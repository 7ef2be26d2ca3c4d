"""Specification of the defense building blocks (bdjax/defenses/pieces, bdjax/data/subsets.py).

Each optax piece alone, on tiny pytrees shaped like flax variables:

- `freeze(base, fn)`: the leaves `fn` rejects stay bit for bit, weight decay included, and keep
  no optimiser state;
- `keep_rows(rows, fn)`: a marked `[V, D]` table moves only on `rows`;
- `ascend()`: the loss it is given goes up, and AdamW's weight decay still shrinks;
- `clamp(lo, hi, fn)`: the marked leaves stay in `[lo, hi]` at every step.

Then the loss reductions (mean, ABL's LGA, +/-1 weights), NAD's attention distillation, RNP's
masks and pruning on a real tiny model, BTU's row reset, shrink-and-perturb, selection by score,
the subset / weighted views of a pair source, and the per-pair CyCLIP / SigLIP losses.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from bdjax import losses
from bdjax.data.subsets import Subset, Weighted, first_pairs
from bdjax.defenses.pieces import edit, select
from bdjax.defenses.pieces import losses as reductions
from bdjax.defenses.pieces import masks as masks_lib
from bdjax.defenses.pieces.transforms import ascend, clamp, freeze, keep_rows, leaf_names, matching


def run_steps(tx, params, grad_fn, steps):
  """`steps` jitted optimiser steps with gradients `grad_fn(params, step)`; every params seen."""

  @jax.jit
  def step(params, state, i):
    updates, state = tx.update(grad_fn(params, i), state, params)
    return optax.apply_updates(params, updates), state

  state = tx.init(params)
  history = [params]
  for i in range(steps):
    params, state = step(params, state, i)
    history.append(params)
  return history, state


def random_grads(params, i):
  """Dense N(0, 1) gradients, different at every step."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.fold_in(jax.random.key(0), i), len(leaves))
  return tree.unflatten([jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])


# ---------------------------------------------------------------------------------------------
# Leaf names and predicates.
# ---------------------------------------------------------------------------------------------


def test_leaf_names_are_slash_joined_paths_from_the_collection_down():
  variables = {"params": {"a": {"kernel": jnp.zeros(1)}}, "masks": {"stem/norm": jnp.zeros(1)}}
  assert leaf_names(variables) == ["masks/stem/norm", "params/a/kernel"]


def test_matching_searches_the_regex_anywhere_in_the_path():
  fn = matching("token_embedding/embedding$")
  assert fn("params/text_tower/token_embedding/embedding")
  assert not fn("params/text_tower/token_embedding/embedding_other")
  assert matching("^params/a/")("params/a/kernel")
  assert not matching("^params/a/")("masks/params/a/kernel")


# ---------------------------------------------------------------------------------------------
# freeze
# ---------------------------------------------------------------------------------------------


def two_layer_params():
  k1, k2 = jax.random.split(jax.random.key(1))
  return {
    "params": {
      "a": {"kernel": jax.random.normal(k1, (4, 3))},
      "b": {"kernel": jax.random.normal(k2, (3, 2))},
    }
  }


def test_frozen_leaves_stay_bitwise_equal_after_many_steps():
  params = two_layer_params()
  tx = freeze(optax.adamw(1e-2, weight_decay=0.1), matching("^params/a/"))
  history, _ = run_steps(tx, params, random_grads, steps=100)
  final = history[-1]
  np.testing.assert_array_equal(final["params"]["b"]["kernel"], params["params"]["b"]["kernel"])
  assert np.all(final["params"]["a"]["kernel"] != params["params"]["a"]["kernel"])


def test_frozen_leaves_stay_bitwise_equal_under_the_project_base_optimiser():
  from bdjax.optimizer import make_optimizer

  train = ml_collections.ConfigDict(
    {
      "steps": 20,
      "lr": 1e-2,
      "warmup_steps": 5,
      "weight_decay": 0.1,
      "b1": 0.9,
      "b2": 0.98,
      "eps": 1e-6,
    }
  )
  train.grad_clip_norm = 1.0
  params = two_layer_params()
  history, _ = run_steps(
    freeze(make_optimizer(train), matching("^params/a/")), params, random_grads, 20
  )
  np.testing.assert_array_equal(
    history[-1]["params"]["b"]["kernel"], params["params"]["b"]["kernel"]
  )
  assert np.all(history[-1]["params"]["a"]["kernel"] != params["params"]["a"]["kernel"])


def test_frozen_leaves_keep_no_optimiser_state():
  params = two_layer_params()
  tx = freeze(optax.adamw(1e-2, weight_decay=0.1), matching("^params/a/"))
  state = tx.init(params)
  assert jax.tree.leaves(state.inner_states["freeze"]) == []
  shapes = {x.shape for x in jax.tree.leaves(state.inner_states["train"])}
  assert (4, 3) in shapes  # Adam's moments of a
  assert (3, 2) not in shapes  # none for b


def test_freeze_of_nothing_trainable_leaves_every_leaf_unchanged():
  params = two_layer_params()
  tx = freeze(optax.adamw(1e-2, weight_decay=0.1), lambda name: False)
  history, _ = run_steps(tx, params, random_grads, steps=5)
  chex.assert_trees_all_equal(history[-1], params)


# ---------------------------------------------------------------------------------------------
# keep_rows
# ---------------------------------------------------------------------------------------------


def test_keep_rows_updates_only_the_chosen_rows_of_the_table_weight_decay_included():
  k1, k2 = jax.random.split(jax.random.key(2))
  params = {
    "params": {
      "text_tower": {
        "token_embedding": {"embedding": jax.random.normal(k1, (10, 4))},
        "proj": {"kernel": jax.random.normal(k2, (4, 4))},
      }
    }
  }
  rows = [2, 7]
  tx = optax.chain(
    optax.adamw(1e-2, weight_decay=0.1), keep_rows(rows, matching("token_embedding/embedding$"))
  )
  history, _ = run_steps(tx, params, random_grads, steps=50)
  start = params["params"]["text_tower"]
  final = history[-1]["params"]["text_tower"]
  table, table0 = final["token_embedding"]["embedding"], start["token_embedding"]["embedding"]
  others = np.setdiff1d(np.arange(10), rows)
  np.testing.assert_array_equal(table[others], table0[others])
  assert np.all(table[np.array(rows)] != table0[np.array(rows)])
  assert np.all(final["proj"]["kernel"] != start["proj"]["kernel"])  # unmarked: passes through


# ---------------------------------------------------------------------------------------------
# ascend
# ---------------------------------------------------------------------------------------------


def test_ascend_raises_the_loss_it_is_given():
  c = jnp.array([0.5, -1.0, 2.0])
  params = {"w": c + 0.01 * jnp.array([1.0, -1.0, 1.0])}
  f = lambda p: jnp.sum(jnp.square(p["w"] - c))
  tx = optax.chain(ascend(), optax.adamw(1e-2, weight_decay=0.0))
  history, _ = run_steps(tx, params, lambda p, i: jax.grad(f)(p), steps=50)
  values = np.array([f(p) for p in history])
  assert values[-1] > values[0] + 0.1
  assert np.all(np.diff(values) > 0)  # on this bowl every ascent step climbs


def test_weight_decay_still_shrinks_under_ascent():
  c = jnp.array([0.5, -1.0, 2.0])
  params = {"w": c + 0.01, "z": jnp.array([[1.0, -2.0], [3.0, 0.5]])}
  f = lambda p: jnp.sum(jnp.square(p["w"] - c)) + 0.0 * jnp.sum(p["z"])  # dz = 0
  tx = optax.chain(ascend(), optax.adamw(1e-2, weight_decay=0.5))
  history, _ = run_steps(tx, params, lambda p, i: jax.grad(f)(p), steps=50)
  norms = np.array([jnp.linalg.norm(p["z"]) for p in history])
  assert np.all(np.diff(norms) < 0)
  np.testing.assert_allclose(norms[-1], norms[0] * (1 - 1e-2 * 0.5) ** 50, rtol=1e-5)
  assert f(history[-1]) > f(params)


def test_negating_after_the_optimiser_instead_would_turn_decay_into_growth():
  """Why `ascend` goes before the base optimiser (a property of optax, kept as a reminder)."""
  params = {"z": jnp.array([[1.0, -2.0], [3.0, 0.5]])}
  tx = optax.chain(optax.adamw(1e-2, weight_decay=0.5), optax.scale(-1.0))
  history, _ = run_steps(tx, params, lambda p, i: jax.tree.map(jnp.zeros_like, p), steps=5)
  assert jnp.linalg.norm(history[-1]["z"]) > jnp.linalg.norm(params["z"])


# ---------------------------------------------------------------------------------------------
# clamp
# ---------------------------------------------------------------------------------------------


def test_clamped_masks_stay_in_unit_interval_at_every_step():
  params = {"masks": {"stem/norm": jnp.ones(32)}, "params": {"w": jnp.ones(32)}}
  tx = optax.chain(optax.sgd(1.0), clamp(0.0, 1.0, matching("^masks/")))
  big = lambda p, i: jax.tree.map(lambda g: 3.0 * g, random_grads(p, i))
  history, _ = run_steps(tx, params, big, steps=50)
  m = np.stack([np.asarray(p["masks"]["stem/norm"]) for p in history])
  assert m.min() >= 0.0 and m.max() <= 1.0
  assert np.any(m[1:] == 0.0) and np.any(m[1:] == 1.0)  # the bounds are reached exactly
  w = np.stack([np.asarray(p["params"]["w"]) for p in history])
  assert w.min() < 0.0 and w.max() > 1.0  # an unmarked leaf is not clamped


def test_clamp_keeps_values_inside_even_where_p_plus_the_update_rounds_past_the_bound():
  """`p + (hi - p)` can round one ulp past `hi` (or below `lo`); the clamp must step back."""
  lo, hi = np.float32(0.1), np.float32(0.7)
  p = np.random.default_rng(0).uniform(-10.0, 10.0, 4096).astype(np.float32)
  naive = p + (np.clip(p + np.float32(10.0), lo, hi) - p)
  assert np.any(naive > hi)  # the case is exercised
  params = {"masks": {"m": jnp.asarray(p)}}
  tx = clamp(0.1, 0.7, matching("^masks/"))
  # params must be an argument of the jitted step, as in training: closed over as a constant,
  # XLA folds the update at compile time and the one-ulp correction does not survive.
  step = jax.jit(lambda p, g: optax.apply_updates(p, tx.update(g, tx.init(p), p)[0]))
  for g in (10.0, -10.0):
    out = np.asarray(step(params, {"masks": {"m": jnp.full(p.shape, g)}})["masks"]["m"])
    assert np.all(out <= hi) and np.all(out >= lo)


def test_clamp_without_params_is_an_error():
  tx = clamp(0.0, 1.0, matching("^masks/"))
  params = {"masks": {"m": jnp.ones(3)}}
  with pytest.raises(ValueError, match="parameters"):
    tx.update(params, tx.init(params))


# ---------------------------------------------------------------------------------------------
# Reductions
# ---------------------------------------------------------------------------------------------

PER_PAIR = jnp.array([0.1, 0.9, 0.3, 1.5, 0.45, 2.0])


def test_mean_reduction_is_the_plain_mean():
  loss, metrics = reductions.mean(PER_PAIR, {})
  np.testing.assert_allclose(loss, jnp.mean(PER_PAIR), rtol=1e-6)
  assert metrics == {}


def test_lga_value_is_mean_of_sign_times_loss_and_its_gradient_is_sign_over_n():
  gamma = 0.5
  sign = jnp.sign(PER_PAIR - gamma)
  loss, metrics = reductions.lga(gamma)(PER_PAIR, {})
  np.testing.assert_allclose(loss, jnp.mean(sign * PER_PAIR), rtol=1e-6)
  np.testing.assert_allclose(metrics["below_gamma"], 3 / 6, rtol=1e-6)
  grad = jax.grad(lambda l: reductions.lga(gamma)(l, {})[0])(PER_PAIR)
  np.testing.assert_allclose(grad, sign / PER_PAIR.size, rtol=1e-6)


def test_weighted_reduction_flips_the_gradient_sign_of_negative_weights():
  w = jnp.array([1.0, -1.0, 1.0, -1.0, 1.0, 1.0])
  batch = {"weight": w}
  loss, metrics = reductions.weighted(PER_PAIR, batch)
  np.testing.assert_allclose(loss, jnp.mean(w * PER_PAIR), rtol=1e-6)
  np.testing.assert_allclose(metrics["ascended_loss"], (0.9 + 1.5) / 2, rtol=1e-6)
  grad = jax.grad(lambda l: reductions.weighted(l, batch)[0])(PER_PAIR)
  np.testing.assert_allclose(grad, w / PER_PAIR.size, rtol=1e-6)


def test_weighted_ascended_loss_is_nan_without_negative_weights():
  _, metrics = reductions.weighted(PER_PAIR, {"weight": jnp.ones(6)})
  assert np.isnan(metrics["ascended_loss"])


def test_make_reduction_picks_by_kind_and_rejects_unknown_kinds():
  cfg = lambda **kw: ml_collections.ConfigDict(kw)
  assert reductions.make_reduction(cfg(kind="mean")) is reductions.mean
  assert reductions.make_reduction(cfg(kind="weighted")) is reductions.weighted
  lga = reductions.make_reduction(cfg(kind="lga", gamma=0.5))
  np.testing.assert_allclose(lga(PER_PAIR, {})[0], reductions.lga(0.5)(PER_PAIR, {})[0])
  with pytest.raises(ValueError, match="Unknown loss kind"):
    reductions.make_reduction(cfg(kind="sum"))


# ---------------------------------------------------------------------------------------------
# Attention distillation (NAD)
# ---------------------------------------------------------------------------------------------


def test_attention_map_is_a_unit_vector_per_sample_over_positions():
  features = jax.random.normal(jax.random.key(3), (2, 3, 5, 4))
  a = reductions.attention_map(features)
  assert a.shape == (2, 15)
  np.testing.assert_allclose(jnp.linalg.norm(a, axis=-1), 1.0, atol=1e-5)
  expected = jnp.sum(features**2, -1).reshape(2, -1)
  np.testing.assert_allclose(
    a, expected / jnp.linalg.norm(expected, axis=-1, keepdims=True), atol=1e-6
  )
  assert reductions.attention_map(jnp.ones((2, 7, 4))).shape == (2, 7)  # ViT tokens


def test_attention_distillation_is_zero_for_equal_features_and_positive_otherwise():
  k1, k2 = jax.random.split(jax.random.key(4))
  s, t = jax.random.normal(k1, (2, 4, 4, 3)), jax.random.normal(k2, (2, 4, 4, 3))
  assert reductions.attention_distillation([s], [s], [1.0]) == 0.0
  assert reductions.attention_distillation([s], [t], [1.0]) > 0.0
  one = reductions.attention_distillation([s], [t], [1.0])
  np.testing.assert_allclose(
    reductions.attention_distillation([s, s], [t, t], [2.0, 3.0]), 5 * one, rtol=1e-6
  )


def test_attention_distillation_has_no_gradient_to_the_teacher():
  k1, k2 = jax.random.split(jax.random.key(5))
  s, t = jax.random.normal(k1, (2, 4, 4, 3)), jax.random.normal(k2, (2, 4, 4, 3))
  grad_s, grad_t = jax.grad(
    lambda s, t: reductions.attention_distillation([s], [t], [1.0]), argnums=(0, 1)
  )(s, t)
  np.testing.assert_array_equal(grad_t, jnp.zeros_like(t))
  assert jnp.any(grad_s != 0)


# ---------------------------------------------------------------------------------------------
# Masks and pruning (RNP), on a real tiny model
# ---------------------------------------------------------------------------------------------

NORMS = matching(r"params/image_tower/.*norm/scale$")


@pytest.fixture(scope="module")
def tiny():
  from bdjax.models import build_model, model_config

  cfg = model_config("tiny-cnn")
  cfg.image.widths = (8, 16)
  cfg.embed_dim = 32
  cfg.text.update(context_length=16, width=32, depth=1, heads=2, vocab_size=64)
  model = build_model(cfg)
  rng = np.random.default_rng(6)
  images = jnp.asarray(rng.normal(size=(2, 16, 16, 3)), jnp.float32)
  tokens = jnp.asarray(rng.integers(0, 64, size=(2, 16)), jnp.int32)
  # The real variable tree, filled with host random numbers (jax.random per shape and a real
  # init compile too slowly for a unit test); norm biases are nonzero, so masking shows in them.
  shapes = jax.eval_shape(model.init, jax.random.key(0), images[:1], tokens[:1])
  variables = jax.tree.map(
    lambda x: jnp.asarray(0.5 * rng.normal(size=x.shape), jnp.float32), shapes
  )
  apply = jax.jit(lambda v: model.apply(v, images, tokens)["image_emb"])
  return variables, apply


def test_add_masks_puts_a_vector_of_ones_per_matching_norm_layer(tiny):
  variables, _ = tiny
  masked = masks_lib.add_masks(variables, NORMS)
  assert sorted(masked["masks"]) == [
    "image_tower/stage_1/block/norm",
    "image_tower/stage_1/down/norm",
    "image_tower/stem/norm",
  ]
  assert masked["masks"]["image_tower/stem/norm"].shape == (8,)
  assert all(np.all(m == 1.0) for m in masked["masks"].values())
  assert masked["params"] is variables["params"]
  with pytest.raises(ValueError, match="No normalisation layer"):
    masks_lib.add_masks(variables, matching("nothing"))


def test_masks_of_ones_leave_the_model_output_unchanged(tiny):
  variables, apply = tiny
  masked = masks_lib.add_masks(variables, NORMS)
  np.testing.assert_array_equal(apply(masks_lib.model_variables(masked)), apply(variables))
  assert set(masks_lib.model_variables(masked)) == {"params"}


def test_a_zero_mask_vector_changes_the_model_output(tiny):
  variables, apply = tiny
  masked = masks_lib.add_masks(variables, NORMS)
  layer = "image_tower/stage_1/block/norm"
  masked["masks"] = {**masked["masks"], layer: jnp.zeros_like(masked["masks"][layer])}
  assert not np.allclose(apply(masks_lib.model_variables(masked)), apply(variables))


def test_pruned_channels_by_count_are_exactly_the_lowest_masks():
  m = {
    "x/norm": np.array([0.9, 0.1, 0.5, 0.7]),
    "y/norm": np.array([0.2, 0.8, 0.05]),
  }
  chosen = masks_lib.pruned_channels(m, count=3)
  np.testing.assert_array_equal(chosen["x/norm"], [False, True, False, False])
  np.testing.assert_array_equal(chosen["y/norm"], [True, False, True])
  assert sum(int(c.sum()) for c in masks_lib.pruned_channels(m, count=5).values()) == 5
  assert sum(int(c.sum()) for c in masks_lib.pruned_channels(m, count=0).values()) == 0


def test_pruned_channels_by_count_takes_exactly_count_when_masks_tie():
  m = {"x/norm": np.full(4, 0.5), "y/norm": np.array([0.5, 0.1])}
  chosen = masks_lib.pruned_channels(m, count=3)
  # The lowest, then the tied channels in layer order (x/norm before y/norm).
  np.testing.assert_array_equal(chosen["x/norm"], [True, True, False, False])
  np.testing.assert_array_equal(chosen["y/norm"], [False, True])


def test_pruned_channels_by_threshold_are_those_below_it():
  m = {"x/norm": np.array([0.9, 0.1, 0.5, 0.7]), "y/norm": np.array([0.2, 0.8, 0.05])}
  chosen = masks_lib.pruned_channels(m, threshold=0.5)
  np.testing.assert_array_equal(chosen["x/norm"], [False, True, False, False])
  np.testing.assert_array_equal(chosen["y/norm"], [True, False, True])
  with pytest.raises(ValueError, match="exactly one"):
    masks_lib.pruned_channels(m)
  with pytest.raises(ValueError, match="exactly one"):
    masks_lib.pruned_channels(m, threshold=0.5, count=2)


def test_prune_zeros_scale_and_bias_of_exactly_the_chosen_channels_and_drops_masks(tiny):
  variables, apply = tiny
  masked = masks_lib.add_masks(variables, NORMS)
  layer = "image_tower/stage_1/down/norm"
  lowered = masked["masks"][layer].at[jnp.array([3, 11])].set(0.01)
  masked["masks"] = {**masked["masks"], layer: lowered}
  channels = masks_lib.pruned_channels(masked["masks"], count=2)
  pruned = masks_lib.prune(masked, channels)
  assert "masks" not in pruned
  before = variables["params"]["image_tower"]["stage_1"]["down"]["norm"]
  after = pruned["params"]["image_tower"]["stage_1"]["down"]["norm"]
  off = np.isin(np.arange(16), [3, 11])
  for leaf in ("scale", "bias"):
    np.testing.assert_array_equal(after[leaf][off], 0.0)
    np.testing.assert_array_equal(after[leaf][~off], before[leaf][~off])
  for other in ("stem", "stage_1/block"):
    path = f"params/image_tower/{other}/norm".split("/")
    a, b = pruned, variables
    for k in path:
      a, b = a[k], b[k]
    chex.assert_trees_all_equal(a, b)
  assert not np.allclose(apply(pruned), apply(variables))


# ---------------------------------------------------------------------------------------------
# Edits
# ---------------------------------------------------------------------------------------------


def test_reset_rows_resets_only_the_moved_dimensions_of_the_given_rows_to_the_pad_row():
  reference = jnp.asarray(np.random.default_rng(0).normal(size=(5, 4)), jnp.float32)
  shift = np.zeros((5, 4), np.float32)
  shift[3] = [10.0, 0.1, -10.0, 0.0]  # dims 0 and 2 moved
  shift[1] = [0.5, 0.0, 0.0, 0.0]  # moved, but less than the bound
  shift[4] = [0.0, 0.0, 0.0, 20.0]  # moved most, but not a flagged row
  bound = np.linalg.norm(shift) / 5  # ||shift||_F / V = 4.9
  assert 0.5 < bound < 10.0
  exposed = reference + shift
  edited = edit.reset_rows(reference, exposed, reference, rows=[1, 3], pad=0)
  expected = np.array(reference)
  expected[3, [0, 2]] = reference[0, [0, 2]]
  np.testing.assert_array_equal(edited, expected)
  # Another pad row, and the table edited being other than the reference.
  edited = edit.reset_rows(exposed, exposed, reference, rows=[3, 4], pad=2)
  expected = np.array(exposed)
  expected[3, [0, 2]] = exposed[2, [0, 2]]
  expected[4, 3] = exposed[2, 3]
  np.testing.assert_array_equal(edited, expected)


def test_shrink_perturb_is_shrink_times_params_plus_perturb_times_fresh():
  params = {"a": jnp.array([1.0, -2.0]), "b": {"c": jnp.array([[4.0]])}}
  fresh = {"a": jnp.array([0.5, 0.5]), "b": {"c": jnp.array([[-1.0]])}}
  out = edit.shrink_perturb(params, fresh, shrink=0.4, perturb=0.1)
  chex.assert_trees_all_close(
    out, {"a": jnp.array([0.45, -0.75]), "b": {"c": jnp.array([[1.5]])}}, rtol=1e-6
  )


# ---------------------------------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------------------------------


def test_keep_returns_the_sorted_indices_of_the_lowest_or_highest_scores():
  scores = np.array([3.0, 1.0, 4.0, 0.5, 5.0, 2.0])
  np.testing.assert_array_equal(select.keep(scores, 2, "lowest"), [1, 3])
  np.testing.assert_array_equal(select.keep(scores, 3, "highest"), [0, 2, 4])
  with pytest.raises(ValueError, match="lowest"):
    select.keep(scores, 2, "middle")


def test_keep_breaks_ties_by_index():
  scores = np.array([1.0, 0.0, 1.0, 0.0, 1.0])
  np.testing.assert_array_equal(select.keep(scores, 1, "lowest"), [1])
  np.testing.assert_array_equal(select.keep(scores, 2, "highest"), [0, 2])
  np.testing.assert_array_equal(select.keep(scores, 4, "lowest"), [0, 1, 2, 3])


def test_row_shift_is_the_l2_norm_of_each_row_difference():
  reference = np.zeros((3, 2), np.float32)
  table = np.array([[3.0, 4.0], [0.0, 0.0], [-1.0, 0.0]], np.float32)
  np.testing.assert_allclose(select.row_shift(table, reference), [5.0, 0.0, 1.0], rtol=1e-6)


def test_selection_stats_count_the_poisoned_pairs_among_the_kept():
  stats = select.selection_stats(np.array([1, 2, 3, 4]), np.array([2, 4, 9]))
  assert stats == {"kept": 4, "found": 2, "precision": 0.5, "recall": 2 / 3}
  empty = select.selection_stats(np.array([], np.int64), np.array([], np.int64))
  assert empty == {"kept": 0, "found": 0, "precision": 0.0, "recall": 0.0}


# ---------------------------------------------------------------------------------------------
# Subsets of a pair source
# ---------------------------------------------------------------------------------------------


class FakeSource:
  def __init__(self, n):
    self.n = n

  def __len__(self):
    return self.n

  def batch(self, indices):
    indices = np.asarray(indices)
    return {"index": indices, "caption": [f"pair {i}" for i in indices]}


def test_first_pairs_are_a_seeded_sorted_set_of_distinct_indices():
  a = first_pairs(100, 10, seed=3)
  np.testing.assert_array_equal(a, first_pairs(100, 10, seed=3))
  assert not np.array_equal(a, first_pairs(100, 10, seed=4))
  assert len(np.unique(a)) == 10 and np.all(np.diff(a) > 0)
  assert a.min() >= 0 and a.max() < 100
  np.testing.assert_array_equal(first_pairs(5, 5, seed=0), np.arange(5))
  for count in (0, 101):
    with pytest.raises(ValueError, match="Cannot choose"):
      first_pairs(100, count, seed=0)


def test_subset_maps_positions_to_source_indices():
  subset = Subset(FakeSource(10), np.array([7, 3, 5]))
  assert len(subset) == 3
  pairs = subset.batch(np.array([0, 2]))
  np.testing.assert_array_equal(pairs["index"], [7, 5])
  assert pairs["caption"] == ["pair 7", "pair 5"]
  with pytest.raises(ValueError, match="Subset indices"):
    Subset(FakeSource(10), np.array([3, 10]))


def test_weighted_marks_exactly_the_chosen_pairs_with_the_weight():
  source = FakeSource(8)
  weighted = Weighted(source, np.array([2, 5]), -1.0)
  assert len(weighted) == 8
  pairs = weighted.batch(np.array([5, 0, 2, 7]))
  np.testing.assert_array_equal(pairs["index"], [5, 0, 2, 7])
  np.testing.assert_array_equal(pairs["weight"], [-1.0, 1.0, -1.0, 1.0])
  assert pairs["weight"].dtype == np.float32
  half = Weighted(source, np.array([1]), 0.5).batch(np.arange(3))
  np.testing.assert_array_equal(half["weight"], [1.0, 0.5, 1.0])


# ---------------------------------------------------------------------------------------------
# Per-pair losses
# ---------------------------------------------------------------------------------------------


def unit_rows(key, n=6, d=8):
  x = jax.random.normal(key, (n, d))
  return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def np_cyclip_per_pair(i, t, s, l_in, l_cross):
  """l_i = clip_i + l_in sum_j (I_i.I_j - T_i.T_j)^2 + l_cross sum_j (I_i.T_j - T_i.I_j)^2."""
  i, t = np.float64(i), np.float64(t)
  logits = s * i @ t.T
  lse = lambda x: np.log(np.sum(np.exp(x - x.max()))) + x.max()
  out = []
  for k in range(len(i)):
    clip = (lse(logits[k]) + lse(logits[:, k])) / 2 - logits[k, k]
    c_in = sum((i[k] @ i[j] - t[k] @ t[j]) ** 2 for j in range(len(i)))
    c_cross = sum((i[k] @ t[j] - t[k] @ i[j]) ** 2 for j in range(len(i)))
    out.append(clip + l_in * c_in + l_cross * c_cross)
  return np.array(out)


def np_siglip_per_pair(i, t, s, b):
  """l_i = sum_j log(1 + exp(-z_ij (s I_i.T_j + b))), z_ij = +1 on the diagonal, -1 off it."""
  i, t = np.float64(i), np.float64(t)
  z = 2 * np.eye(len(i)) - 1
  return np.sum(np.logaddexp(0.0, -z * (s * i @ t.T + b)), axis=1)


def test_cyclip_per_pair_losses_follow_the_formula_and_average_to_the_cyclip_loss():
  k1, k2 = jax.random.split(jax.random.key(9))
  i, t = unit_rows(k1), unit_rows(k2)
  per_pair = losses.cyclip_loss_per_pair(i, t, 10.0, 0.3, 0.2)
  np.testing.assert_allclose(per_pair, np_cyclip_per_pair(i, t, 10.0, 0.3, 0.2), rtol=1e-5)
  np.testing.assert_allclose(
    jnp.mean(per_pair), losses.cyclip_loss(i, t, 10.0, 0.3, 0.2), rtol=1e-5
  )


def test_siglip_per_pair_losses_follow_the_formula_and_average_to_the_siglip_loss():
  k1, k2 = jax.random.split(jax.random.key(10))
  i, t = unit_rows(k1), unit_rows(k2)
  per_pair = losses.siglip_loss_per_pair(i, t, 10.0, -10.0)
  np.testing.assert_allclose(per_pair, np_siglip_per_pair(i, t, 10.0, -10.0), rtol=1e-5)
  np.testing.assert_allclose(jnp.mean(per_pair), losses.siglip_loss(i, t, 10.0, -10.0), rtol=1e-5)
