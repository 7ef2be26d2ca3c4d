"""Token trimming: the text tower runs only up to the batch's longest caption, and nothing the
model computes changes (bdjax/token_trim.py), in training and in evaluation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bdjax.data.synthetic import SyntheticPairs
from bdjax.default_config import base_config
from bdjax.models import build_model, model_config, tokenize
from bdjax.models.build import example_inputs
from bdjax.objectives import make_objective
from bdjax.token_trim import TOKEN_BUCKETS, token_length, trim_tokens
from bdjax.train import TrainState, make_train_step

EOT = 49407


def captions_batch(n=16, context=77, seed=0):
  texts = SyntheticPairs("train", n, 32, seed=seed).captions(range(n))
  images = np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
  return dict(image=images, tokens=np.asarray(tokenize(texts, context_length=context)))


def test_the_length_is_the_last_end_of_text_position_plus_one():
  tokens = np.zeros((3, 77), np.int32)
  tokens[0, :3] = [49406, 320, EOT]
  tokens[1, :6] = [49406, 320, 321, 322, 323, EOT]
  assert token_length(tokens) == 6


def test_batches_are_cut_to_the_smallest_bucket_that_holds_every_caption():
  batch = captions_batch()
  longest = token_length(batch["tokens"])
  trimmed = trim_tokens(batch)
  assert longest <= trimmed["tokens"].shape[1] == min(b for b in TOKEN_BUCKETS if b >= longest)
  np.testing.assert_array_equal(trimmed["tokens"], batch["tokens"][:, : trimmed["tokens"].shape[1]])
  assert trimmed["image"] is batch["image"]


def test_caption_views_are_cut_with_the_captions_and_long_batches_stay_whole():
  batch = captions_batch()
  views = np.zeros_like(batch["tokens"])
  views[:, 0], views[:, 50] = 49406, EOT  # one view reaches position 51: bucket 64
  trimmed = trim_tokens({**batch, "view_tokens": views})
  assert trimmed["tokens"].shape[1] == trimmed["view_tokens"].shape[1] == 64
  batch["tokens"][0, 1:70], batch["tokens"][0, 70] = 320, EOT  # a 71-token caption
  assert trim_tokens(batch)["tokens"].shape[1] == 77


def test_batches_without_captions_pass_through():
  batch = {"image": np.zeros((2, 8, 8, 3), np.uint8)}
  assert trim_tokens(batch) is batch


def gradient(batch, objective):
  """The loss and the gradient of one step (an SGD step of rate 1 moves params by -grad)."""
  cfg = model_config("tiny-vit")
  cfg.text.context_length = 77
  model = build_model(cfg)
  variables = model.init(jax.random.key(0), *example_inputs(cfg))
  tx = optax.sgd(1.0)
  step = make_train_step(model, make_objective(base_config(objective=objective).objective), tx)
  before = jax.device_get(variables)
  state, metrics = step(TrainState.create(variables, tx), batch, jax.random.key(0))
  return float(metrics["loss"]), jax.tree.map(np.subtract, before, jax.device_get(state.params))


def test_a_trimmed_train_step_equals_the_full_length_one():
  for objective in ("clip", "clip_ssl"):
    batch = captions_batch()
    if objective == "clip_ssl":
      batch["view_tokens"] = np.roll(batch["tokens"], 1, axis=0)
    assert trim_tokens(batch)["tokens"].shape[1] < 77
    loss_full, grad_full = gradient(batch, objective)
    loss_cut, grad_cut = gradient(trim_tokens(batch), objective)
    assert abs(loss_full - loss_cut) <= 1e-6 * abs(loss_full)
    scale = max(np.abs(g).max() for g in jax.tree.leaves(grad_full))
    for full, cut in zip(jax.tree.leaves(grad_full), jax.tree.leaves(grad_cut)):
      np.testing.assert_allclose(cut, full, atol=1e-5 * scale)  # float rounding only


def test_text_embeddings_do_not_depend_on_the_padding_length():
  cfg = model_config("tiny-vit")
  cfg.text.context_length = 77
  model = build_model(cfg)
  variables = model.init(jax.random.key(1), *example_inputs(cfg))
  tokens = captions_batch()["tokens"]
  encode = jax.jit(lambda t: model.apply(variables, t, method="encode_text"))
  full = encode(jnp.asarray(tokens))
  for length in (16, 32, 64):
    np.testing.assert_allclose(encode(jnp.asarray(tokens[:, :length])), full, atol=1e-6)
