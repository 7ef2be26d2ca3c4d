"""Sweeps: the stages from one option onwards, once per value, and the study's choice.

`config.sweep.key` is `STAGE.OPTION` (e.g. `cleanclip.lr`), `config.sweep.choices` its values.
stages.run runs the stages before STAGE once, then, for each value, the rest on a copy of the
run in `WORKDIR/KEY=VALUE/`, and keeps the point with the highest `ca_top1` among those whose
final evaluation has `asr_top1 < sweep.max_asr` (5%); the report lists every point.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import ml_collections

from bdjax.config_check import ConfigError, unknown_key
from bdjax.metrics_log import MetricsLog
from bdjax.report import write_report

if TYPE_CHECKING:
  from bdjax.stages import Run


def sweep_dir(workdir: str, key: str, value: Any) -> str:
  """Where the sweep's point `key=value` of the run in `workdir` works: `WORKDIR/KEY=VALUE`."""
  return f"{workdir}/{key}={value}"


def sweep_point(r: Run, key: str, value: Any) -> Run:
  """A copy of `r` whose config sets `key` to `value`, working in `sweep_dir`."""
  config = r.config.copy_and_resolve_references()
  *path, leaf = key.split(".")
  node = config
  for part in path:
    node = node[part]
  node[leaf] = value
  workdir = sweep_dir(r.workdir, key, value)
  return dataclasses.replace(
    r,
    config=config,
    workdir=workdir,
    log=MetricsLog(workdir),
    results=list(r.results),
    outputs=dict(r.outputs),
    sets=dict(r.sets),
  )


def choose(r: Run, sweep: ml_collections.ConfigDict, points: list) -> list[dict]:
  """Picks the highest-CA point with ASR below `sweep.max_asr`; writes the report of all."""
  rows, eligible = [], []
  for value, point in points:
    final = dict(point.results[-1])
    final["stage"] = f"{sweep.key}={value}"
    rows.append(final)
    if final.get("asr_top1", 0.0) < sweep.get("max_asr", 0.05):
      eligible.append((final["ca_top1"], value, point))
  if eligible:
    _, value, best = max(eligible, key=lambda e: e[0])
    note = (
      f"Sweep of {sweep.key}: chosen {value}, the highest ca_top1 among the points with "
      f"asr_top1 < {sweep.get('max_asr', 0.05):.0%}."
    )
    r.params, r.step = best.params, best.step
  else:
    best = None
    note = f"Sweep of {sweep.key}: no point has asr_top1 < {sweep.get('max_asr', 0.05):.0%}."
  r.results = r.results + rows
  print(write_report(r.workdir, r.config.get("name", "bdjax run"), r.results, notes=[note]))
  return r.results


def check_sweep(config: ml_collections.ConfigDict) -> None:
  """Raises `ConfigError` for a sweep key that names no stage option, or no final eval."""
  sweep = config.get("sweep", None)
  if not (sweep and sweep.get("choices", ())):
    return
  stage, _, rest = sweep.key.partition(".")
  if stage not in config.stages or not rest:
    raise ConfigError(
      f"config.sweep.key='{sweep.key}' must be STAGE.KEY with STAGE one of config.stages "
      f"({', '.join(config.stages)})."
    )
  message = unknown_key(config, sweep.key)
  if message:
    raise ConfigError(f"config.sweep.key: {message}")
  if config.stages[-1] == stage or config[config.stages[-1]].get("kind", "") != "eval":
    raise ConfigError("A sweep needs an eval stage at the end of config.stages to choose by.")
