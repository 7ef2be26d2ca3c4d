"""Runs the stages of a config in order: `config.stages` names sections of the config.

Each named section has a `kind` (default: its own name): `train` (a train stage, whose
parameters go on to the next stage; `init='fresh'` starts it from the seed's initial parameters
instead, `poison=False` trains it on clean data when the config has an attack) or `eval`
(zero-shot accuracy and retrieval of the current parameters and, when `config.attack.kind` is
not 'none', the attack's ASR and RA; `der_against` names an earlier eval stage to rate
against). Later issues add `select` and `edit` stages (DESIGN.md); a defense is a list of
stages, never a fork of the trainer. Finished train stages are skipped on a rerun: a rerun of
the same command resumes where the last one stopped.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from bdjax import sharding
from bdjax.attacks import poison
from bdjax.checkpoint import StageCheckpoints
from bdjax.data import pipeline, sources
from bdjax.evaluate import Encoder, Retrieval, ZeroShot, der
from bdjax.metrics_log import MetricsLog
from bdjax.models import build_model, tokenize
from bdjax.config_check import ConfigError
from bdjax.objectives import NAMES as OBJECTIVES
from bdjax.objectives import make_objective
from bdjax.optimizer import make_optimizer
from bdjax.report import write_report
from bdjax.train import TrainState, make_train_step, train_loop


@dataclasses.dataclass
class Run:
  """What the stages of one run share: config, model, data, the current parameters."""

  config: ml_collections.ConfigDict
  workdir: str
  model: nn.Module
  mesh: jax.sharding.Mesh
  log: MetricsLog
  params: Any = None
  step: int = 0
  results: list = dataclasses.field(default_factory=list)
  encoder: Encoder | None = None
  evaluators: tuple | None = None
  _attack: poison.Attack | None = None

  def tokenizer(self, texts):
    return tokenize(texts, context_length=self.config.model.text.context_length)

  def key(self, position: int) -> jax.Array:
    return jax.random.fold_in(jax.random.key(self.config.seed), position)

  @property
  def attacked(self) -> bool:
    return self.config.attack.kind != "none"

  def attack(self) -> poison.Attack:
    """The run's attack, built once; its poisoned indices are saved in the workdir."""
    if self._attack is None:
      cfg, data = self.config.attack, self.config.data
      source = sources.train_source(data, self.config.seed)
      prompts = sources.class_prompts(data, cfg.target)
      try:
        self._attack = poison.make_attack(
          cfg, source, prompts, self.config.seed, sources.caption_mentions
        )
      except ValueError as e:  # e.g. more label-consistent poisons than target pairs
        raise ConfigError(f"config.attack: {e} Lower attack.count or attack.ratio.") from None
      path = poison.save_indices(self.workdir, self._attack)
      print(
        f"Attack: {cfg.kind}, {len(self._attack.indices)} of {len(source)} pairs poisoned "
        f"(target '{cfg.target}'); indices in {path}.",
        flush=True,
      )
    return self._attack


def run(config: ml_collections.ConfigDict, workdir: str) -> list[dict]:
  """Runs every stage of `config` in `workdir`; returns the evaluation results."""
  r = Run(config, workdir, build_model(config.model), sharding.data_mesh(), MetricsLog(workdir))
  for position, name in enumerate(config.stages):
    stage = config[name]
    kind = stage.get("kind", name)
    print(f"Stage {position + 1}/{len(config.stages)}: {name} ({kind})", flush=True)
    STAGE_KINDS[kind](r, name, stage, position)
  if r.results:
    print(write_report(workdir, config.get("name", "bdjax run"), r.results))
  return r.results


def check_stages(config: ml_collections.ConfigDict) -> None:
  """Raises `ConfigError` if `config.stages` names a missing section, an unknown stage kind or
  an unknown objective."""
  for position, name in enumerate(config.stages):
    if name not in config:
      raise ConfigError(
        f"config.stages names '{name}', but the config has no section '{name}'. Add "
        f"config.{name} or remove it from config.stages ({', '.join(config.stages)})."
      )
    kind = config[name].get("kind", name)
    if kind not in STAGE_KINDS:
      raise ConfigError(
        f"config.{name}.kind is '{kind}'; the stage kinds are {', '.join(STAGE_KINDS)}."
      )
    init = config[name].get("init", "continue")
    if kind == "train" and init not in ("continue", "fresh"):
      raise ConfigError(f"config.{name}.init is '{init}'; use 'continue' or 'fresh'.")
    reference = config[name].get("der_against", "") if kind == "eval" else ""
    earlier_evals = [n for n in config.stages[:position] if config[n].get("kind", n) == "eval"]
    if reference and (reference not in earlier_evals or config.attack.kind == "none"):
      raise ConfigError(
        f"config.{name}.der_against='{reference}': DER needs an attack (config.attack.kind) "
        f"and an eval stage of that name before '{name}' in config.stages "
        f"(earlier eval stages: {', '.join(earlier_evals) or 'none'})."
      )
    objective = config[name].get("objective", config.objective).name
    if kind == "train" and objective not in OBJECTIVES:
      raise ConfigError(
        f"Unknown objective '{objective}' for stage '{name}'; choose one of "
        f"{', '.join(OBJECTIVES)} (--config.objective.name=...)."
      )


def init_params(r: Run, image_size: int) -> Any:
  """Fresh parameters from `config.seed`, replicated over the mesh."""
  images = np.zeros((1, image_size, image_size, 3), np.float32)
  tokens = np.zeros((1, r.config.model.text.context_length), np.int32)
  init = jax.jit(r.model.init, out_shardings=sharding.replicated(r.mesh))
  return init(r.key(0), images, tokens)


def train_stage(r: Run, name: str, stage: ml_collections.ConfigDict, position: int) -> None:
  """Trains the current parameters with the stage's objective and optimiser; resumable."""
  sharding.check_batch_size(stage.batch_size, r.mesh)
  objective = make_objective(stage.get("objective", r.config.objective))
  tx = make_optimizer(stage)
  fresh = r.params is None or stage.get("init", "continue") == "fresh"
  params = init_params(r, r.config.data.image_size) if fresh else r.params
  start = 0 if fresh else r.step  # the step count of the model this stage starts from
  state = jax.jit(TrainState.create, static_argnums=1, out_shardings=sharding.replicated(r.mesh))(
    params, tx
  )
  checkpoints = StageCheckpoints(r.workdir, name, stage.get("keep_checkpoints", 2))
  if checkpoints.latest_step() is not None:
    state = checkpoints.restore(state)
    print(f"Resuming stage {name} from its checkpoint at step {int(state.step)}.", flush=True)
  if int(state.step) < stage.steps:
    seed = r.config.seed * 1000 + position
    source = sources.train_source(r.config.data, r.config.seed)
    if r.attacked and stage.get("poison", True):
      source = poison.PoisonedPairs(source, r.attack())
    data = pipeline.batches(source, stage.batch_size, seed, r.tokenizer, objective.needs_views)
    state = train_loop(
      state,
      make_train_step(r.model, objective, tx),
      data,
      steps=stage.steps,
      key=r.key(position + 1),
      batch_size=stage.batch_size,
      mesh=r.mesh,
      checkpoints=checkpoints,
      checkpoint_every=stage.checkpoint_every,
      log_every=stage.get("log_every", 50),
      desc=name,
      on_log=lambda step, m: r.log.write(name, step, m, echo=False),
      eval_every=stage.get("eval_every", 0),
      on_eval=lambda step, params: evaluate(r, f"{name}/eval", params, start + step),
    )
  checkpoints.close()
  r.params, r.step = state.params, start + int(state.step)


def eval_stage(r: Run, name: str, stage: ml_collections.ConfigDict, position: int) -> None:
  """Zero-shot accuracy and retrieval of the current parameters, logged and reported."""
  if r.params is None:
    raise ValueError(f"Stage '{name}' evaluates a model, but no train stage came before it.")
  metrics = evaluate(r, name, r.params, r.step)
  reference = stage.get("der_against", "")
  if reference:
    earlier = [m for m in r.results if m["stage"] == reference][-1]  # check_stages made sure
    metrics["der"] = der(earlier, metrics)
    r.log.write(name, r.step, {"der": metrics["der"]})
  r.results.append({"stage": name, "step": r.step, **metrics})


def evaluate(r: Run, name: str, params: Any, step: int) -> dict[str, float]:
  """Runs the evaluators of `config.eval` on `params` and logs the metrics under `name`."""
  if r.evaluators is None:
    data = sources.eval_data(r.config.data, r.config.seed)
    r.encoder = Encoder(r.model, r.tokenizer, r.config.eval.batch_size)
    backdoor = {}
    if r.attacked:
      attack = r.attack()
      indices = np.arange(len(data.images))
      backdoor = dict(
        triggered=attack.trigger_images(data.images, indices, split="eval"),
        target=list(data.class_names).index(attack.target),
      )
    r.evaluators = (
      ZeroShot(data.images, data.labels, data.prompts, **backdoor),
      Retrieval(data.images, data.captions),
    )
  metrics = {}
  for evaluator in r.evaluators:
    metrics.update(evaluator.run(r.encoder, params))
  r.log.write(name, step, metrics)
  return metrics


STAGE_KINDS = {"train": train_stage, "eval": eval_stage}
