"""Runs the stages of a config in order: `config.stages` names sections of the config.

Each named section has a `kind` (default: its own name):

- `train`: trains the current parameters, which go on to the next stage. `init='fresh'` starts
  from the seed's initial parameters, `start_from` from the output of an earlier stage;
  `poison=False` trains on clean data when the config has an attack; `num_pairs` / `pairs` train
  on a seeded subset or on a select stage's set; a defense changes the loss (`loss`,
  `distill`) and the optimiser (`ascend`, `trainable`, `rows_from`, `clamp`) and may end the
  stage early (`stop_below`). See default_config.py for every option.
- `eval`: zero-shot accuracy and retrieval of the current parameters and, when
  `config.attack.kind` is not 'none', the attack's ASR and RA; `der_against` names an earlier
  eval stage to rate against.
- `select` and `edit` (bdjax/defense_stages.py): keep a set of pairs or token rows, change
  parameters directly.
- `load`: the parameters of another run (`workdir`), e.g. a poisoned model to defend.

A defense is a list of these stages, never a fork of the trainer. Every stage's output is kept
under its name (`start_from`, `prune.target`, ...). Finished train stages are skipped on a
rerun: a rerun of the same command resumes where the last one stopped.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import optax
from etils import epath

from bdjax import sharding
from bdjax.attacks import poison
from bdjax.checkpoint import StageCheckpoints, latest_checkpoint, load_params
from bdjax.config_check import ConfigError
from bdjax.data import eval_sets, pipeline, sources, subsets
from bdjax.defense_stages import check_defense_stage, edit_stage, select_stage
from bdjax.defenses.pieces import transforms
from bdjax.defenses.pieces.losses import KINDS as REDUCTIONS
from bdjax.defenses.pieces.losses import distillation_term, make_reduction, sown
from bdjax.defenses.pieces.masks import MODEL_COLLECTIONS, model_variables
from bdjax.evaluate import Encoder, build_evaluators, der
from bdjax.metrics_log import MetricsLog
from bdjax.models import build_model, convert, tokenize
from bdjax.objectives import NAMES as OBJECTIVES
from bdjax.objectives import make_objective
from bdjax.optimizer import make_optimizer
from bdjax.report import write_report
from bdjax.sweep import check_sweep, choose, sweep_point
from bdjax.train import LossWrap, TrainState, make_train_step, skipped_totals, train_loop


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
  outputs: dict = dataclasses.field(default_factory=dict)  # stage name -> (params, step)
  sets: dict = dataclasses.field(default_factory=dict)  # select stage name -> indices
  encoder: Encoder | None = None
  evaluators: tuple | None = None
  _attack: poison.Attack | None = None
  _corpus: Any = None
  _pretrained: Any = None
  notes: list = dataclasses.field(default_factory=list)  # lines for the report

  def tokenizer(self, texts):
    return tokenize(texts, context_length=self.config.model.text.context_length)

  def key(self, position: int) -> jax.Array:
    return jax.random.fold_in(jax.random.key(self.config.seed), position)

  def corpus(self) -> Any:
    """The training corpus of `config.data`, opened (and checked) once."""
    if self._corpus is None:
      try:
        self._corpus = sources.train_source(self.config.data, self.config.seed)
      except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"config.data.train: {e}") from None
    return self._corpus

  def train_pairs(self, poisoned: bool = True) -> Any:
    """The training pairs: with the attack's poison when the run has one and `poisoned`."""
    source = self.corpus()
    if self.attacked and poisoned:
      source = poison.PoisonedPairs(source, self.attack())
    return source

  def init_params(self, position: int = 0) -> Any:
    """The run's initial parameters (`position` 0): a pre-trained checkpoint's when
    `config.init.checkpoint` names one, else fresh ones from `config.seed`; other positions give
    other fresh ones (e.g. shrink-and-perturb's). Replicated over the mesh."""
    if position == 0 and self.config.get("init", {}).get("checkpoint", ""):
      return jax.device_put(self.pretrained(), sharding.replicated(self.mesh))
    size = self.config.data.image_size
    images = np.zeros((1, size, size, 3), np.float32)
    tokens = np.zeros((1, self.config.model.text.context_length), np.int32)
    init = jax.jit(self.model.init, out_shardings=sharding.replicated(self.mesh))
    return init(self.key(position), images, tokens)

  def pretrained(self) -> Any:
    """The variables of `config.init.checkpoint` (bdjax/models/convert.py), read once; a file
    that does not hold `config.model`'s architecture is a `ConfigError` naming both."""
    if self._pretrained is None:
      path = self.config.init.checkpoint
      try:
        self._pretrained, _ = convert.load_checkpoint(path, cfg=self.config.model)
      except (OSError, convert.CheckpointError) as e:
        raise ConfigError(
          f"config.init.checkpoint: {e} config.model must describe the checkpoint's "
          f"architecture: start from a config whose model is its preset, or convert the file "
          f"with `python -m bdjax.models.convert {path}` to see it."
        ) from None
      print(f"Initial parameters from {path}.", flush=True)
    return self._pretrained

  @property
  def attacked(self) -> bool:
    return self.config.attack.kind != "none"

  def attack(self) -> poison.Attack:
    """The run's attack, built once; its poisoned indices are saved in the workdir."""
    if self._attack is None:
      cfg, data = self.config.attack, self.config.data
      source = self.corpus()
      prompts = eval_sets.class_prompts(data, cfg.target)
      try:
        self._attack = poison.make_attack(
          cfg, source, prompts, self.config.seed, eval_sets.caption_mentions
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
  """Runs every stage of `config` in `workdir`; returns the evaluation results.

  With `config.sweep.choices`, the stages from the one `config.sweep.key` names onwards run once
  per value in `WORKDIR/KEY=VALUE/` (the stages before it run once and are shared), and the
  point with the highest `ca_top1` among those with `asr_top1 < sweep.max_asr` is chosen.
  """
  try:
    mesh = sharding.make_mesh(config.get("mesh"))
  except ValueError as e:
    raise ConfigError(str(e)) from None
  r = Run(config, workdir, build_model(config.model), mesh, MetricsLog(workdir))
  names = list(config.stages)
  sweep = config.get("sweep", None)
  if not (sweep and sweep.get("choices", ())):
    _run_stages(r, names, 0)
    if r.results:
      print(write_report(workdir, config.get("name", "bdjax run"), r.results, r.notes))
    return r.results
  first = names.index(sweep.key.split(".")[0])
  _run_stages(r, names[:first], 0)
  points = []
  for value in sweep.choices:
    point = sweep_point(r, sweep.key, value)
    _run_stages(point, names[first:], first)
    points.append((value, point))
  return choose(r, sweep, points)


def _run_stages(r: Run, names: list[str], offset: int) -> None:
  total = len(r.config.stages)
  for position, name in enumerate(names, start=offset):
    stage = r.config[name]
    kind = stage.get("kind", name)
    print(f"Stage {position + 1}/{total}: {name} ({kind})", flush=True)
    STAGE_KINDS[kind](r, name, stage, position)
    r.outputs[name] = (r.params, r.step)


def check_stages(config: ml_collections.ConfigDict) -> None:
  """Raises `ConfigError` if `config.stages` names a missing section, an unknown stage kind,
  an unknown objective, or an earlier stage that is not there."""
  for position, name in enumerate(config.stages):
    if name not in config:
      raise ConfigError(
        f"config.stages names '{name}', but the config has no section '{name}'. Add "
        f"config.{name} or remove it from config.stages ({', '.join(config.stages)})."
      )
    stage, earlier = config[name], list(config.stages[:position])
    kind = stage.get("kind", name)
    if kind not in STAGE_KINDS:
      raise ConfigError(
        f"config.{name}.kind is '{kind}'; the stage kinds are {', '.join(STAGE_KINDS)}."
      )
    if kind == "train":
      _check_train_stage(config, name, earlier)
    if kind == "eval":
      _check_eval_stage(config, name, earlier)
    check_defense_stage(config, name, kind, earlier)
  check_sweep(config)


def _check_train_stage(config, name: str, earlier: list[str]) -> None:
  stage = config[name]
  init = stage.get("init", "continue")
  if init not in ("continue", "fresh"):
    raise ConfigError(f"config.{name}.init is '{init}'; use 'continue' or 'fresh'.")
  objective = stage.get("objective", config.objective).name
  if objective not in OBJECTIVES:
    raise ConfigError(
      f"Unknown objective '{objective}' for stage '{name}'; choose one of "
      f"{', '.join(OBJECTIVES)} (--config.objective.name=...)."
    )
  for key in ("start_from", "pairs", "rows_from"):
    _require_earlier(config, name, key, stage.get(key, ""), earlier)
  _require_earlier(
    config, name, "loss.weight_set", stage.get("loss", {}).get("weight_set", ""), earlier
  )
  teacher = stage.get("distill", {}).get("teacher", "")
  _require_earlier(config, name, "distill.teacher", teacher, earlier)
  if teacher and make_objective(stage.get("objective", config.objective)).needs_views:
    raise ConfigError(
      f"config.{name}.distill works with objectives without views, not '{objective}'."
    )
  kind = stage.get("loss", {}).get("kind", "mean")
  if kind not in REDUCTIONS:
    raise ConfigError(f"config.{name}.loss.kind is '{kind}'; use one of {', '.join(REDUCTIONS)}.")
  metric = stage.get("stop_below", {}).get("metric", "")
  if metric and not stage.get("eval_every", 0):
    raise ConfigError(f"config.{name}.stop_below needs config.{name}.eval_every > 0.")


def _check_eval_stage(config, name: str, earlier: list[str]) -> None:
  reference = config[name].get("der_against", "")
  earlier_evals = [n for n in earlier if config[n].get("kind", n) == "eval"]
  if reference and (reference not in earlier_evals or config.attack.kind == "none"):
    raise ConfigError(
      f"config.{name}.der_against='{reference}': DER needs an attack (config.attack.kind) "
      f"and an eval stage of that name before '{name}' in config.stages "
      f"(earlier eval stages: {', '.join(earlier_evals) or 'none'})."
    )


def _require_earlier(config, name: str, key: str, value: str, earlier: list[str]) -> None:
  if value and value not in earlier:
    raise ConfigError(
      f"config.{name}.{key}='{value}' must name a stage that runs before '{name}' "
      f"(earlier stages: {', '.join(earlier) or 'none'})."
    )


def stage_start(r: Run, name: str, stage: ml_collections.ConfigDict) -> tuple[Any, int]:
  """The parameters a train stage starts from and their step count (`init`, `start_from`),
  with a distillation teacher attached as the `teacher` collection."""
  if stage.get("start_from", ""):
    params, start = r.outputs[stage.start_from]
  elif r.params is None or stage.get("init", "continue") == "fresh":
    params, start = r.init_params(), 0
  else:
    params, start = r.params, r.step
  teacher = stage.get("distill", {}).get("teacher", "")
  if teacher:
    params = {**params, "teacher": model_variables(r.outputs[teacher][0])}
  return params, start


def stage_optimizer(
  r: Run, stage: ml_collections.ConfigDict, params: Any
) -> optax.GradientTransformation:
  """`chain([ascend], freeze(base), [keep_rows], [clamp])` as the stage asks (pieces/transforms)."""
  tx = make_optimizer(stage)
  trainable = transforms.matching(stage.get("trainable", "") or "^params/")
  if not all(trainable(n) for n in transforms.leaf_names(params)):
    tx = transforms.freeze(tx, trainable)
  pre = [transforms.ascend()] if stage.get("ascend", False) else []
  post = []
  if stage.get("rows_from", ""):
    rows = r.sets[stage.rows_from]
    post.append(transforms.keep_rows(rows, transforms.matching("token_embedding/embedding$")))
  if stage.get("clamp", ""):
    post.append(transforms.clamp(0.0, 1.0, transforms.matching(stage.clamp)))
  return optax.chain(*pre, tx, *post) if pre or post else tx


def stage_loss(r: Run, stage: ml_collections.ConfigDict) -> LossWrap:
  """The stage's reduction of per-pair losses and its distillation term, if any."""
  loss = stage.get("loss", ml_collections.ConfigDict(dict(kind="mean")))
  distill = stage.get("distill", {})
  if not distill.get("teacher", ""):
    return LossWrap(reduce=make_reduction(loss))
  _check_blocks(r, stage)
  term = distillation_term(r.model, tuple(distill.blocks), tuple(distill.betas))
  return LossWrap(reduce=make_reduction(loss), extra=term, capture=True)


def _check_blocks(r: Run, stage: ml_collections.ConfigDict) -> None:
  """Raises `ConfigError` unless every `distill.blocks` entry names one sown image block."""
  size = r.config.data.image_size
  images = jax.ShapeDtypeStruct((1, size, size, 3), np.float32)
  _, state = jax.eval_shape(
    lambda p, x: r.model.apply(p, x, method="encode_image", mutable=["intermediates"]),
    model_variables(r.params),
    images,
  )
  try:
    sown(state["intermediates"], tuple(stage.distill.blocks))
  except ValueError as e:
    raise ConfigError(f"config.distill.blocks: {e}") from None


def stage_source(r: Run, name: str, stage: ml_collections.ConfigDict) -> Any:
  """The pairs a train stage sees: poisoned or clean, all or a subset, weighted or not."""
  source = r.train_pairs(stage.get("poison", True))
  weight_set = stage.get("loss", {}).get("weight_set", "")
  if weight_set:
    source = subsets.Weighted(source, r.sets[weight_set], stage.loss.weight)
  if stage.get("pairs", ""):
    source = subsets.Subset(source, r.sets[stage.pairs])
  elif stage.get("num_pairs", 0):
    try:
      chosen = subsets.first_pairs(len(source), stage.num_pairs, r.config.seed + CLEAN_SET_SALT)
    except ValueError as e:
      raise ConfigError(f"config.{name}.num_pairs: {e}") from None
    source = subsets.Subset(source, chosen)
  return source


def stage_data(
  r: Run, stage: ml_collections.ConfigDict, position: int, source: Any, views: bool
) -> pipeline.RefillIterator:
  """The input iterator of a train stage: this process's share of each global batch."""
  data = r.config.data
  batches = pipeline.batches(
    source,
    stage.batch_size,
    r.config.seed * 1000 + position,
    r.tokenizer,
    views,
    process_index=jax.process_index(),
    process_count=jax.process_count(),
    threads=data.get("prefetch", 2),
    workers=data.get("workers", 0),
    text_views=data.get("text_views", "delete_swap"),
    flip=data.get("flip", False),
  )
  return iter(batches)


CLEAN_SET_SALT = 7919  # the defender's clean set: the same pairs for every stage and defense


def train_stage(r: Run, name: str, stage: ml_collections.ConfigDict, position: int) -> None:
  """Trains the current parameters with the stage's objective, loss and optimiser; resumable."""
  sharding.check_batch_size(stage.batch_size, r.mesh)
  objective = make_objective(stage.get("objective", r.config.objective), r.mesh)
  params, start = stage_start(r, name, stage)
  tx = stage_optimizer(r, stage, params)
  state_sharding = sharding.tree_shardings(
    jax.eval_shape(lambda p: TrainState.create(p, tx), params),
    r.mesh,
    r.config.get("mesh", {}).get("min_shard_size", sharding.MIN_SHARD_SIZE),
  )
  state = jax.jit(TrainState.create, static_argnums=1, out_shardings=state_sharding)(params, tx)
  checkpoints = StageCheckpoints(r.workdir, name, stage.get("keep_checkpoints", 2))
  best = _BestCheckpoint(r, name, stage.get("select_below", 0.0))
  stop = _stopper(r, name, stage, start, best)
  if checkpoints.latest_step() is not None:
    state = checkpoints.restore(state)
    print(f"Resuming stage {name} from its checkpoint at step {int(state.step)}.", flush=True)
    rechecks = bool(stage.get("stop_below", {}).get("metric", ""))  # did it stop there?
    if rechecks and int(state.step) < stage.steps and stop(int(state.step), state.params):
      print(f"Stage {name} had already stopped early at step {int(state.step)}.", flush=True)
      stage = ml_collections.ConfigDict({**stage.to_dict(), "steps": int(state.step)})
  if int(state.step) < stage.steps:
    source = stage_source(r, name, stage)
    data = stage_data(r, stage, position, source, objective.needs_views)
    if int(state.step) and not checkpoints.restore_data(data, int(state.step)):
      data.set_state(pipeline.state_at(int(state.step)))
    state = train_loop(
      state,
      make_train_step(
        r.model,
        objective,
        tx,
        stage_loss(r, stage),
        r.config.data.get("image_views", "simple"),
        state_sharding,
      ),
      data,
      steps=stage.steps,
      key=r.key(position + 1),
      batch_size=stage.batch_size,
      mesh=r.mesh,
      checkpoints=checkpoints,
      checkpoint_every=stage.checkpoint_every,
      log_every=stage.get("log_every", 50),
      desc=name,
      epoch_size=len(source),
      on_log=lambda step, m: r.log.write(name, step, m, echo=False),
      eval_every=stage.get("eval_every", 0),
      on_eval=stop,
      trim=stage.get("trim_tokens", True),
    )
    left_out = skipped_totals(data)
    if left_out:
      counts = ", ".join(f"{v} {k}" for k, v in left_out.items())
      r.notes.append(f"Stage {name} left out pairs it could not use (all epochs): {counts}.")
  checkpoints.close()
  r.params = {k: v for k, v in state.params.items() if k != "teacher"}
  r.step = start + int(state.step)
  chosen = best.restore(state.params)
  if chosen is not None:
    (params, step), r.step = chosen, start + chosen[1]
    r.params = {k: v for k, v in params.items() if k != "teacher"}
    print(f"Stage {name}: keeping its evaluation at step {step} ({best.summary()}).", flush=True)


class _BestCheckpoint:
  """The `select_below` rule of a train stage: of its evaluations (every `eval_every` steps),
  keep the one with the highest `ca_top1` among those with `asr_top1 < select_below` (the
  study's model selection), saved in `checkpoints/NAME_best/` so that a rerun keeps it."""

  def __init__(self, r: Run, name: str, bound: float):
    self.bound = bound
    self.path = epath.Path(r.workdir) / f"best_{name}.json"
    self.checkpoints = StageCheckpoints(r.workdir, f"{name}_best", keep=1) if bound else None
    self.best = json.loads(self.path.read_text()) if bound and self.path.exists() else None

  def offer(self, step: int, params: Any, metrics: dict) -> None:
    if not self.bound or not metrics.get("asr_top1", 1.0) < self.bound:
      return
    if self.best is None or metrics["ca_top1"] > self.best["ca_top1"]:
      self.best = {"step": step, "ca_top1": metrics["ca_top1"], "asr_top1": metrics["asr_top1"]}
      self.checkpoints.save(step, params)
      self.checkpoints.wait()
      if jax.process_index() == 0:
        self.path.write_text(json.dumps(self.best))

  def restore(self, params_like: Any) -> tuple[Any, int] | None:
    if self.checkpoints is None:
      return None
    step = self.best["step"] if self.best else None
    found = self.checkpoints.restore(params_like, step) if step is not None else None
    self.checkpoints.close()
    return None if found is None else (found, step)

  def summary(self) -> str:
    b = self.best
    return f"ca_top1 {b['ca_top1']:.4f}, asr_top1 {b['asr_top1']:.4f} < {self.bound}"


def _stopper(
  r: Run, name: str, stage: ml_collections.ConfigDict, start: int, best: _BestCheckpoint
):
  """`on_eval` of a train stage: evaluates, offers the result to `best`, and says whether
  `stop_below` is reached."""
  rule = stage.get("stop_below", {})

  def on_eval(step: int, params: Any) -> bool:
    metrics = evaluate(r, f"{name}/eval", params, start + step)
    best.offer(step, params, metrics)
    if rule.get("metric", "") and metrics[rule.metric] < rule.value:
      print(
        f"Stage {name}: {rule.metric} = {metrics[rule.metric]:.4f} < {rule.value} at "
        f"step {step}; stopping there.",
        flush=True,
      )
      return True
    return False

  return on_eval


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
    data = eval_sets.eval_data(r.config.data, r.config.seed)
    r.encoder = Encoder(r.model, r.tokenizer, r.config.eval.batch_size)
    r.evaluators = build_evaluators(data, r.attack() if r.attacked else None)
  metrics = {}
  variables = model_variables(params)
  for evaluator in r.evaluators:
    metrics.update(evaluator.run(r.encoder, variables))
  r.log.write(name, step, metrics)
  return metrics


def load_stage(r: Run, name: str, stage: ml_collections.ConfigDict, position: int) -> None:
  """The newest parameters of stage `stage.stage` ('' = any) of the run in `stage.workdir`
  (e.g. a poisoned model to defend)."""
  try:
    params = load_params(stage.workdir, stage.get("stage", ""))
  except FileNotFoundError as e:
    raise ConfigError(f"config.{name}.workdir: {e}") from None
  model = {k: params[k] for k in MODEL_COLLECTIONS if k in params}
  r.params = jax.device_put(model, sharding.replicated(r.mesh))
  r.step = int(latest_checkpoint(stage.workdir, stage.get("stage", "")).name)
  print(f"Loaded the parameters of {stage.workdir}.", flush=True)


STAGE_KINDS = {
  "train": train_stage,
  "eval": eval_stage,
  "select": select_stage,
  "edit": edit_stage,
  "load": load_stage,
}
