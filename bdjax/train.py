"""The one trainer: a pure, jitted step `(state, batch, rng) -> (state, metrics)` and its loop.

One step:  batch -> normalise (+ augmented views for SSL) -> model.apply -> embeddings ->
objective (per-pair losses) -> the stage's `LossWrap` (reduction + extra term) -> grad ->
optimiser (an optax chain: defense transforms around the base optimiser) -> new params (and,
for a BatchNorm tower, the running statistics of this batch in `params['batch_stats']`). The step
is built once per stage from (model, objective, loss wrap, optimiser), closes over nothing else,
and is jitted with the state donated. Defenses change only the wrap and the optimiser.
The loop feeds it the next batch of the input iterator, whose state is saved with every
checkpoint, and the key `fold_in(stage_key, t)`, so a run resumed from a checkpoint continues
exactly as if never stopped.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

import chex
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils
import numpy as np
import optax
from tqdm.auto import tqdm

from bdjax import sharding
from bdjax.checkpoint import StageCheckpoints
from bdjax.data.augment import normalize, view_images
from bdjax.defenses.pieces import losses as reductions
from bdjax.defenses.pieces.masks import model_variables
from bdjax.objectives import Objective
from bdjax.token_trim import trim_tokens

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


class NonFiniteLossError(RuntimeError):
  """The loss or gradient became NaN or infinite; the last good checkpoint was kept."""


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any

  @classmethod
  def create(cls, params: Any, tx: optax.GradientTransformation) -> "TrainState":
    return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


@dataclasses.dataclass(frozen=True)
class LossWrap:
  """What a stage does between the objective and the gradient (the default: nothing).

  reduce   per-pair losses -> (loss, metrics); the objective's mean by default
  extra    `(params, batch, outputs) -> (term, metrics)` added to the loss (e.g. distillation)
  capture  put the model's sown `intermediates` in `outputs` (for `extra`)
  The model sees `model_variables(params)`: the `params` collection with any masks applied.
  """

  reduce: reductions.Reduction = reductions.mean
  extra: Callable[[Any, Batch, dict], tuple[jax.Array, Metrics]] | None = None
  capture: bool = False


def model_outputs(
  model: nn.Module,
  params: Any,
  batch: Batch,
  rng: jax.Array,
  with_views: bool,
  capture: bool = False,
  image_views: str = "simple",
) -> tuple[dict, dict | None, Any]:
  """The model's outputs on the batch, on augmented views of it if `with_views`, and the
  updated BatchNorm statistics (None for models without `batch_stats`).

  Both views go through the towers in one call (a batch of 2B) so the step stays one program;
  BatchNorm then normalises with the statistics of both views together, as the reference code
  does with its concatenated batch. With `capture`, `outputs['intermediates']` holds what the
  towers sowed (no views then). The towers run in training mode: BatchNorm uses the global
  batch's statistics (a cross-device reduction under jit) and updates its running ones.
  """
  chex.assert_rank([batch["image"], batch["tokens"]], [4, 2])
  chex.assert_equal_shape_prefix([batch["image"], batch["tokens"]], 1)
  images = normalize(batch["image"])
  tokens = batch["tokens"]
  variables = model_variables(params)
  mutable = (["batch_stats"] if "batch_stats" in variables else []) + (
    ["intermediates"] if capture else []
  )
  if capture and with_views:
    raise ValueError("Capturing intermediates is not supported with augmented views.")
  if with_views:
    images = jnp.concatenate([images, view_images(rng, batch["image"], images, image_views)])
    tokens = jnp.concatenate([tokens, batch["view_tokens"]])
  out, state = model.apply(variables, images, tokens, train=True, mutable=mutable)
  stats = state.get("batch_stats")
  if capture:
    out = {**out, "intermediates": state["intermediates"]}
  if not with_views:
    return out, None, stats
  half = images.shape[0] // 2
  first = {k: (v[:half] if v.ndim else v) for k, v in out.items()}
  second = {k: (v[half:] if v.ndim else v) for k, v in out.items()}
  return first, second, stats


def make_train_step(
  model: nn.Module,
  objective: Objective,
  tx: optax.GradientTransformation,
  wrap: LossWrap = LossWrap(),
  image_views: str = "simple",
  state_sharding: Any = None,
) -> Callable[[TrainState, Batch, jax.Array], tuple[TrainState, Metrics]]:
  """The jitted train step for `objective` wrapped by `wrap`, updating with `tx`; the state is
  donated and keeps `state_sharding` (bdjax/sharding.py) when given. SSL objectives see second
  image views drawn by the `image_views` policy (bdjax/data/augment.py)."""

  def loss_fn(params, batch, rng):
    out, views, stats = model_outputs(
      model, params, batch, rng, objective.needs_views, wrap.capture, image_views
    )
    per_pair, terms = objective.fn(out, views)
    loss, more = wrap.reduce(per_pair, batch)
    if wrap.extra is not None:
      term, extra_terms = wrap.extra(params, batch, out)
      loss, more = loss + term, {**more, **extra_terms}
    return loss, ({**terms, **more}, out["scale"], stats)

  def step(state: TrainState, batch: Batch, rng: jax.Array):
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (loss, (terms, scale, stats)), grads = grad_fn(state.params, batch, rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    if stats is not None:  # running statistics: not a gradient's to change (frozen in `tx`)
      params = {**params, "batch_stats": stats}
    metrics = {"loss": loss, "scale": scale, "grad_norm": optax.tree.norm(grads), **terms}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  if state_sharding is None:
    return jax.jit(step, donate_argnums=0)
  return jax.jit(step, donate_argnums=0, out_shardings=(state_sharding, None))


def train_loop(
  state: TrainState,
  step_fn: Callable,
  data: Iterator[dict[str, np.ndarray]],
  *,
  steps: int,
  key: jax.Array,
  batch_size: int,
  mesh: jax.sharding.Mesh,
  checkpoints: StageCheckpoints,
  checkpoint_every: int,
  log_every: int,
  on_log: Callable[[int, dict], None],
  eval_every: int = 0,
  on_eval: Callable[[int, Any], bool | None] | None = None,
  desc: str = "train",
  epoch_size: int = 0,
  trim: bool = True,
) -> TrainState:
  """Runs `step_fn` from `state.step` to `steps`, saving every `checkpoint_every` steps.

  Losses stay on the device between logs; at each log and before each save they are fetched
  and checked, so a non-finite loss raises `NonFiniteLossError` before any bad state is saved.
  `data` yields this process's host batch of each step (`bdjax.data.pipeline`); its state is
  saved with each checkpoint. The logs give `data_wait`, the fraction of the time the loop
  waited for the next batch (the input pipeline is the bottleneck when it is large), and
  count the pairs the pipeline left out
  (`skipped_*`, totals over all processes) and, every epoch of `epoch_size` pairs, printed.
  `on_eval(step, params)` runs every `eval_every` steps and may return True to end the stage
  there (its state is saved first). With `trim`, each batch's tokens are cut after its longest
  caption (`trim_tokens`: exact, and the text tower does a fraction of the work).
  """
  start = int(state.step)
  pending: list[Metrics] = []
  skipped = _SkipCounter(data, batch_size, epoch_size, desc)
  bar = tqdm(total=steps, initial=start, desc=desc, dynamic_ncols=True, mininterval=1.0)
  tick, tick_step, waited = time.perf_counter(), start, 0.0
  save = lambda step: checkpoints.save(step, state, getattr(data, "get_state", lambda: None)())
  try:
    for t in range(start, steps):
      before = time.perf_counter()
      batch = next(data)
      waited += time.perf_counter() - before
      batch.pop("skipped", None)  # counted in the iterator's state
      batch = trim_tokens(batch) if trim else batch
      state, metrics = step_fn(state, sharding.put_batch(batch, mesh), jax.random.fold_in(key, t))
      pending.append(metrics)
      done = t + 1
      saving = done % checkpoint_every == 0 or done == steps
      if saving or done % log_every == 0:
        means = _check_and_average(jax.device_get(pending), done, checkpoints)
        pending = []
        now = time.perf_counter()
        means["pairs_per_s"] = (done - tick_step) * batch_size / (now - tick)
        means["data_wait"] = waited / (now - tick)  # fraction of the time spent waiting for data
        means.update(skipped.totals())
        tick, tick_step, waited = now, done, 0.0
        bar.update(done - bar.n)
        bar.set_postfix(loss=f"{means['loss']:.4f}", pairs_s=f"{means['pairs_per_s']:.0f}")
        on_log(done, means)
      skipped.end_of_step(done)
      if saving:
        save(done)
      if eval_every and done % eval_every == 0 and on_eval is not None:
        if on_eval(done, state.params):
          if not saving:
            save(done)
          break
  finally:
    bar.close()
  return state


def skipped_totals(data: Any) -> dict[str, int]:
  """The pairs an input iterator left out so far, by reason, summed over all processes (every
  process must call it); {} when none was."""
  local = getattr(data, "skipped_total", None)
  if local is None:
    return {}
  counts = np.asarray(list(local.values()), np.int64)
  if jax.process_count() > 1:
    counts = np.asarray(multihost_utils.process_allgather(counts)).sum(0)
  return {k: int(v) for k, v in zip(local, counts)} if counts.any() else {}


class _SkipCounter:
  """Pairs left out by the pipeline: totals (all processes) for the logs, and a line per epoch."""

  def __init__(self, data: Any, batch_size: int, epoch_size: int, desc: str):
    self.data, self.batch_size, self.epoch_size, self.desc = data, batch_size, epoch_size, desc

  def totals(self) -> dict[str, float]:
    """`skipped_REASON`: totals so far over all processes, once any pair was left out."""
    return {f"skipped_{k}": float(v) for k, v in skipped_totals(self.data).items()}

  def end_of_step(self, done: int) -> None:
    size = self.epoch_size
    if not size or (done * self.batch_size) // size == ((done - 1) * self.batch_size) // size:
      return
    epoch = (done * self.batch_size) // size
    totals = self.totals()  # every process takes part in the gather
    if totals:
      left_out = ", ".join(f"{k.removeprefix('skipped_')} {int(v)}" for k, v in totals.items())
      print(f"{self.desc}: epoch {epoch} ends at step {done}; pairs left out so far: {left_out}.")


def _check_and_average(history: list[dict], step: int, checkpoints: StageCheckpoints) -> dict:
  for i, m in enumerate(history):
    if not (np.isfinite(m["loss"]) and np.isfinite(m["grad_norm"])):
      bad = step - len(history) + i + 1
      kept = checkpoints.latest_step()
      where = (
        f"the last good checkpoint (step {kept}) is kept in {checkpoints.directory}"
        if kept
        else "no checkpoint had been saved yet"
      )
      raise NonFiniteLossError(
        f"The loss became non-finite (loss={m['loss']}, grad_norm={m['grad_norm']}) at step "
        f"{bad}; training stopped and {where}. Lower train.lr, raise train.warmup_steps or "
        "set train.grad_clip_norm, then rerun the same command to resume from it."
      )
  return {k: float(np.mean([m[k] for m in history])) for k in history[0]}
