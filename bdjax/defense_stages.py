"""The `select` and `edit` stage kinds (stages.py runs them; the pieces are in defenses/pieces).

select   score every training pair (`score='loss' | 'similarity'`, on the poisoned data unless
         `poison=False`) or every token row (`score='row_shift'` against the stage named
         `against`), keep the `count` (or `ratio` of them) at the `keep` end ('lowest' |
         'highest'), save them in `WORKDIR/sets/NAME.json`. Later stages use the set by name:
         `pairs` (train on it), `loss.weight_set` (weight it), `rows_from` (update those rows).
         In an experiment with an attack it also reports how many kept pairs were poisoned.
         `score='caption_tokens'` keeps the token ids of the captions of set `of` instead.
edit     `op='add_masks'`: per-channel masks on the normalisation layers matching `where`;
         `op='prune'`: prune the channels whose mask is lowest (`threshold` or `count`) in the
         model output by stage `target`; `op='reset_rows'`: BTU's reset of the rows of set
         `rows` in stage `target`'s token table, from the movement seen since then;
         `op='shrink_perturb'`: `shrink * params + perturb * fresh initialisation`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import jax
import ml_collections
import numpy as np
from etils import epath
from flax import traverse_util

from bdjax.attacks import poison
from bdjax.config_check import ConfigError
from bdjax.defenses.pieces import edit, masks, select, transforms
from bdjax.models.tokenizer import default_tokenizer

if TYPE_CHECKING:
  from bdjax.stages import Run

SETS = "sets"
TOKEN_TABLE = "params/text_tower/token_embedding/embedding"
EDIT_OPS = ("add_masks", "prune", "reset_rows", "shrink_perturb")


def select_stage(r: Run, name: str, stage: ml_collections.ConfigDict, position: int) -> None:
  """Keeps the pairs (or token rows) at one end of a score; see the module docstring."""
  if stage.score == "caption_tokens":
    kept = _caption_tokens(r, stage)
    scores = None
  elif stage.score == "row_shift":
    scores = select.row_shift(_table(r.params), _table(r.outputs[stage.against][0]))
  else:
    source = r.train_pairs(stage.get("poison", True))
    variables = masks.model_variables(r.params)
    seed = r.config.seed * 1000 + position
    scores = select.score_pairs(
      r.model, variables, source, r.tokenizer, stage.batch_size, stage.score, seed
    )
  if scores is not None:
    count = poison.poison_count(len(scores), stage.get("count", 0), stage.get("ratio", 0.0))
    kept = select.keep(scores, count, stage.keep)
  r.sets[name] = kept
  summary = {"kept": len(kept)}
  if stage.score in ("row_shift", "caption_tokens"):
    decode = default_tokenizer().decode
    order = kept if scores is None else kept[np.argsort(-scores[kept])]
    summary["tokens"] = [decode([int(v)]) for v in order[:20]]
  elif r.attacked:
    summary.update(select.selection_stats(kept, r.attack().indices))
  _save_set(r.workdir, name, kept, summary)
  r.log.write(name, r.step, {k: v for k, v in summary.items() if k != "tokens"})
  if "tokens" in summary:
    print(f"[{name}] tokens: {summary['tokens']}", flush=True)


def _caption_tokens(r: Run, stage: ml_collections.ConfigDict) -> np.ndarray:
  """The token ids in the captions of the pairs of set `stage.of` (without start, end, pad)."""
  source = r.train_pairs(stage.get("poison", True))
  captions = list(source.batch(r.sets[stage.of])["caption"])
  tok = default_tokenizer()
  ids = np.unique(np.asarray(r.tokenizer(captions)))
  return ids[~np.isin(ids, [0, tok.sot_token_id, tok.eot_token_id])]


def edit_stage(r: Run, name: str, stage: ml_collections.ConfigDict, position: int) -> None:
  """Changes parameters directly; see the module docstring for the ops."""
  op = stage.op
  if op == "add_masks":
    r.params = masks.add_masks(r.params, transforms.matching(stage.where))
  elif op == "prune":
    threshold = stage.threshold if stage.get("count", 0) == 0 else None
    count = stage.count if threshold is None else None
    off = masks.pruned_channels(r.params["masks"], threshold, count)
    pruned = sum(int(v.sum()) for v in off.values())
    total = sum(v.size for v in off.values())
    r.params, r.step = masks.prune(r.outputs[stage.target][0], off), r.outputs[stage.target][1]
    r.log.write(name, r.step, {"pruned": pruned, "channels": total})
  elif op == "reset_rows":
    reference, step = r.outputs[stage.target]
    table = _table(reference)
    new = edit.reset_rows(table, _table(r.params), table, r.sets[stage.rows], stage.get("pad", 0))
    r.params, r.step = _with_table(reference, new), step
  elif op == "shrink_perturb":
    fresh = r.init_params(position + 1)["params"]  # BatchNorm statistics are kept as they are
    r.params = {
      **r.params,
      "params": edit.shrink_perturb(r.params["params"], fresh, stage.shrink, stage.perturb),
    }


def check_defense_stage(
  config: ml_collections.ConfigDict, name: str, kind: str, earlier: list[str]
) -> None:
  """Raises `ConfigError` for a select or edit stage with an unknown option value or a
  reference to a stage that does not run before it."""
  stage = config[name]
  refs = []
  if kind == "select":
    scores = select.PAIR_SCORES + select.ROW_SCORES + ("caption_tokens",)
    if stage.get("score") not in scores:
      raise ConfigError(
        f"config.{name}.score is '{stage.get('score')}'; use one of {', '.join(scores)}."
      )
    if stage.get("keep") not in ("lowest", "highest"):
      raise ConfigError(f"config.{name}.keep is '{stage.get('keep')}'; use 'lowest' or 'highest'.")
    if stage.score == "caption_tokens":
      refs.append(("of", stage.get("of", "")))
    if stage.score == "row_shift":
      refs.append(("against", stage.get("against", "")))
      if not stage.get("against", ""):
        raise ConfigError(f"config.{name}.score='row_shift' needs config.{name}.against.")
    try:
      poison.poison_count(1, stage.get("count", 0), stage.get("ratio", 0.0))
    except ValueError as e:
      raise ConfigError(f"config.{name}: {str(e).replace('attack.', name + '.')}") from None
  if kind == "edit":
    if stage.get("op") not in EDIT_OPS:
      raise ConfigError(
        f"config.{name}.op is '{stage.get('op')}'; use one of {', '.join(EDIT_OPS)}."
      )
    if stage.op in ("prune", "reset_rows"):
      refs.append(("target", stage.get("target", "")))
    if stage.op == "reset_rows":
      refs.append(("rows", stage.get("rows", "")))
  for key, value in refs:
    if value not in earlier:
      raise ConfigError(
        f"config.{name}.{key}='{value}' must name a stage that runs before '{name}' "
        f"(earlier stages: {', '.join(earlier) or 'none'})."
      )


def load_set(workdir: str, name: str) -> np.ndarray:
  """The indices a select stage saved in `WORKDIR/sets/NAME.json`."""
  path = epath.Path(workdir) / SETS / f"{name}.json"
  return np.asarray(json.loads(path.read_text())["indices"], np.int64)


def _save_set(workdir: str, name: str, kept: np.ndarray, summary: dict) -> None:
  if jax.process_index() != 0:
    return
  path = epath.Path(workdir) / SETS / f"{name}.json"
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps({**summary, "indices": [int(i) for i in kept]}))


def _table(variables: Any) -> jax.Array:
  return traverse_util.flatten_dict(variables, sep="/")[TOKEN_TABLE]


def _with_table(variables: Any, table: jax.Array) -> Any:
  flat = traverse_util.flatten_dict(variables, sep="/")
  flat[TOKEN_TABLE] = table
  return traverse_util.unflatten_dict(flat, sep="/")
