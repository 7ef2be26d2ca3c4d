"""Grids: one run of the stages per combination of axis values, each in its own workdir.

    config.grid.axes = (("arg.objective", ("clip", "clip_ssl", "cyclip")), ("seed", (0, 1, 2)))
    python -m bdjax.main --config=configs/study_demo.py --workdir=DIR \
        [--config.grid.axes="(('seed', (0, 1)),)"]

An axis is a pair (KEY, VALUES). KEY is either a config key (`seed`, `objective.name`,
`cleanclip.steps`: the point's config is the grid's with that key set), or an argument of the
config file: `arg` replaces the whole ARG of `--config=FILE:ARG`, `arg.NAME` adds `NAME=VALUE`
to it (the `key=value,...` form of `default_config.parse_arg`). An argument axis can change
many keys at once (e.g. `arg.defense` picks a whole stage list): the point's config is the
file's `get_config(ARG)` with the command line's `--config.KEY=VALUE` overrides applied again.
The grid is the product of the axes, in their order (the last varies fastest).

Every point runs `stages.run` in `DIR/points/NAME/`, NAME being `LABEL=VALUE,...` with LABEL
the key (`NAME` for `arg.NAME`). A point is finished when `point.json` is there (its axis
values and wall time); a rerun skips finished points and resumes an unfinished one from its own
checkpoints. Within a point, `config.sweep` still runs the defense's learning rates on one
shared poisoned pre-training. After each point the grid's `results.csv`, `report.md` and plots
are rewritten (bdjax/results.py, bdjax/grid_report.py, bdjax/plots.py).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import ml_collections
from etils import epath
from tqdm.auto import tqdm

from bdjax import config_check
from bdjax.config_check import ConfigError

DONE = "point.json"
POINTS = "points"
CACHE = ".jax_cache"
EXAMPLE = "--config.grid.axes=\"(('seed', (0, 1, 2)),)\""

# The argument axes' (KEY, VALUE) pairs of a point -> the point's config (see config_loader).
Loader = Callable[[Sequence[tuple[str, str]]], ml_collections.ConfigDict]


@dataclasses.dataclass(frozen=True)
class Point:
  """One combination of axis values and the config that runs it."""

  values: tuple[tuple[str, Any], ...]  # (label, value) per axis, in axis order
  config: ml_collections.ConfigDict

  @property
  def name(self) -> str:
    """`LABEL=VALUE,...`, safe as a directory name."""
    return ",".join(f"{label}={_text(value)}" for label, value in self.values)

  def workdir(self, root: str) -> epath.Path:
    return epath.Path(root) / POINTS / self.name


def axes(config: ml_collections.ConfigDict) -> tuple:
  """`config.grid.axes`, or () for a config that is not a grid."""
  grid = config.get("grid", None)
  return tuple(grid.get("axes", ())) if grid is not None else ()


def label(key: str) -> str:
  """The name of an axis in directory names, CSV columns and reports: `NAME` for `arg.NAME`,
  `arg` for `arg`, the key itself otherwise."""
  return key.removeprefix("arg.")


def is_arg(key: str) -> bool:
  """Whether axis `key` is an argument of the config file rather than a config key."""
  return key == "arg" or key.startswith("arg.")


def check_grid(config: ml_collections.ConfigDict) -> None:
  """Raises `ConfigError` unless `config.grid.axes` is a tuple of (KEY, VALUES) pairs with
  distinct keys, KEY an existing config key (not under `grid`, not the sweep's key) or an
  argument axis, VALUES a non-empty tuple without repeats (strings for argument axes)."""
  seen = set()
  for axis in axes(config):
    if not (isinstance(axis, (tuple, list)) and len(axis) == 2 and isinstance(axis[0], str)):
      raise ConfigError(
        f"config.grid.axes must be a tuple of (KEY, VALUES) pairs, e.g. {EXAMPLE} (mind the "
        f"trailing comma of a one-axis grid); it has the entry {axis!r}."
      )
    key, values = axis
    if label(key) in seen:
      raise ConfigError(f"config.grid.axes names '{label(key)}' twice; merge the two axes.")
    if label(key) in _reserved():
      raise ConfigError(
        f"config.grid.axes: an axis named '{label(key)}' would clash with the results.csv "
        f"column of that name; rename the config argument."
      )
    seen.add(label(key))
    _check_values(key, values)
    _check_key(config, key, values)


def _reserved() -> set[str]:
  from bdjax.results import columns

  return set(columns(()))


def _check_values(key: str, values: Any) -> None:
  if not isinstance(values, (tuple, list)) or not values:
    raise ConfigError(
      f"config.grid.axes: axis '{key}' has no values ({values!r}); give a non-empty tuple, "
      f"e.g. ('{key}', (v1, v2)), or remove the axis."
    )
  texts = [_text(v) for v in values]
  repeated = sorted({t for t in texts if texts.count(t) > 1})
  if repeated:
    raise ConfigError(f"config.grid.axes: axis '{key}' repeats {', '.join(repeated)}.")


def _check_key(config: ml_collections.ConfigDict, key: str, values: Sequence) -> None:
  if is_arg(key):
    if not label(key):
      raise ConfigError("config.grid.axes: an argument axis is 'arg' or 'arg.NAME', not 'arg.'.")
    bad = [v for v in values if not isinstance(v, str) or "," in v or not v]
    if bad:
      raise ConfigError(
        f"config.grid.axes: the values of the argument axis '{key}' must be non-empty strings "
        f"without commas (they become {label(key)}=VALUE in FILE:ARG); got {bad[0]!r}."
      )
    return
  if key.split(".")[0] == "grid":
    raise ConfigError(f"config.grid.axes: axis '{key}' is a grid key; an axis sets a run's key.")
  message = config_check.unknown_key(config, key)
  if message:
    raise ConfigError(
      f"config.grid.axes: {message} An axis names a config key (dotted, e.g. 'objective.name') "
      "or an argument of the config file ('arg.NAME', e.g. 'arg.objective')."
    )
  sweep = config.get("sweep", None)
  if sweep is not None and sweep.get("choices", ()) and sweep.get("key", "") == key:
    raise ConfigError(
      f"config.grid.axes: '{key}' is also config.sweep.key; give its values in one of them "
      "(the sweep shares the stages before it between its values, the grid does not)."
    )


def make_points(config: ml_collections.ConfigDict, load: Loader | None = None) -> list[Point]:
  """Every point of the grid of `config` (checked by `check_grid`), in order. `load` builds the
  config of a point with argument axes from their (KEY, VALUE) pairs (`config_loader`); without
  them a point's config is a copy of `config`. Config-key axes are set after either. Each
  point's `grid.axes` is () (its config.json reruns it alone) and its name is
  `config.name [POINT]`."""
  check_grid(config)
  keys = [key for key, _ in axes(config)]
  points = []
  for combination in itertools.product(*(values for _, values in axes(config))):
    values = tuple(zip(keys, combination))
    point = Point(tuple((label(k), v) for k, v in values), config)
    point = dataclasses.replace(point, config=_point_config(config, values, load, point.name))
    points.append(point)
  return points


def _point_config(config, values, load: Loader | None, name: str) -> ml_collections.ConfigDict:
  args = [(k, v) for k, v in values if is_arg(k)]
  if args:
    if load is None:
      raise ValueError("a grid with argument axes needs a loader for its config file")
    c = load(args)
  else:
    c = config.copy_and_resolve_references()
  for key, value in values:
    if not is_arg(key):
      set_key(c, key, value, f"axis '{key}' of config.grid.axes")
  c.grid.axes = ()
  c.name = f"{c.get('name', 'bdjax run')} [{name}]"
  return c


def compose_arg(base: str | None, args: Sequence[tuple[str, str]]) -> str | None:
  """The ARG of a point: the value of an `arg` axis, else `base` (the command line's), then
  `NAME=VALUE` for each `arg.NAME` axis (`parse_arg` lets a later value win)."""
  whole = [v for k, v in args if k == "arg"]
  parts = (whole or ([base] if base is not None else [])) + [
    f"{label(k)}={v}" for k, v in args if k != "arg"
  ]
  return ",".join(p for p in parts if p) if parts else None


def set_key(config: ml_collections.ConfigDict, key: str, value: Any, where: str) -> None:
  """Sets dotted `key` of `config` to `value`; `ConfigError` (naming `where`) if the key is
  missing or the value has the wrong type."""
  message = config_check.unknown_key(config, key)
  if message:
    raise ConfigError(f"{where}: {message}")
  *path, leaf = key.split(".")
  node = config
  for part in path:
    node = node[part]
  try:
    node[leaf] = value
  except TypeError as e:
    raise ConfigError(
      f"{where}: cannot set '{key}' to {value!r}: {e}. Give a value of the key's type."
    ) from None


def config_loader(config_arg: str, overrides: dict[str, Any]) -> Loader:
  """A `Loader` for the config file of `--config=PATH[:ARG]`: its `get_config` of the point's
  ARG (`compose_arg`), then the command line's `--config.KEY=VALUE` `overrides` (except the
  grid's own keys) set again, as `config_flags` did on the grid's config."""
  path, sep, base = config_arg.partition(":")

  def load(args: Sequence[tuple[str, str]]) -> ml_collections.ConfigDict:
    arg = compose_arg(base if sep else None, args)
    try:
      c = config_check.load_config(path if arg is None else f"{path}:{arg}")
    except (ValueError, TypeError) as e:
      raise ConfigError(
        f"config.grid.axes: {path} could not build the point with ARG '{arg}': {e} "
        "Fix the argument axis's values (they must be arguments the config file accepts)."
      ) from None
    for key, value in overrides.items():
      if key.split(".")[0] != "grid":
        set_key(c, key, value, f"--config.{key} (applied to every grid point)")
    return c

  return load


def check_points(points: Sequence[Point], root: str) -> None:
  """Start-up checks of every point: its config (config_check, stages), and that a point
  directory already there holds a run of the same config; `ConfigError` names the point."""
  from bdjax import stages  # imports JAX

  for point in points:
    try:
      config_check.check_config(point.config)
      stages.check_stages(point.config)
      config_check.check_same_run(point.workdir(root) / "config.json", _resolved(point))
    except ConfigError as e:
      raise ConfigError(f"Grid point '{point.name}': {e}") from None


def use_compilation_cache(root: str) -> str | None:
  """Points of a grid compile the same steps (one per objective, one per learning rate of the
  cleaning stage, the evaluators): unless JAX already has one, keep a persistent compilation
  cache in `ROOT/.jax_cache` so that each is compiled once per grid. Returns the cache in use.
  Call it before anything compiles."""
  if not jax.config.jax_compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir", str(epath.Path(root) / CACHE))
  return jax.config.jax_compilation_cache_dir


def finished(point: Point, root: str) -> bool:
  return (point.workdir(root) / DONE).exists()


def run_grid(config: ml_collections.ConfigDict, root: str, points: Sequence[Point]) -> list[str]:
  """Runs the unfinished points in order, rewriting the grid's results after each; returns
  the names of the points whose training diverged (`NonFiniteLossError`): the others still
  run, and a diverged point stays unfinished (a rerun tries it again)."""
  from bdjax.train import NonFiniteLossError

  done = sum(finished(p, root) for p in points)
  count = f"{len(points)} point{'s' if len(points) != 1 else ''}"
  print(f"Grid: {count}, {done} finished, in {root}/{POINTS}/.", flush=True)
  failed = []
  bar = tqdm(total=len(points), initial=done, desc="grid", unit="point", dynamic_ncols=True)
  for point in points:
    if finished(point, root):
      continue
    bar.set_postfix_str(point.name)
    try:
      run_point(point, root)
    except NonFiniteLossError as e:
      print(f"Grid point {point.name} diverged: {e}", flush=True)
      failed.append(point.name)
    bar.update(1)
    write_outputs(config, root, points)
  bar.close()
  write_outputs(config, root, points)
  return failed


def run_point(point: Point, root: str) -> None:
  """`stages.run` of one point in its workdir, then its `point.json` (values, wall time)."""
  from bdjax import stages

  workdir = point.workdir(root)
  writer = jax.process_index() == 0
  if writer:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(_resolved(point))
  print(f"Grid point {point.name} -> {workdir}", flush=True)
  start = time.perf_counter()
  stages.run(point.config, str(workdir))
  record = {"name": point.name, "values": dict(point.values)}
  record["wall_s"] = time.perf_counter() - start
  if writer:
    (workdir / DONE).write_text(json.dumps(record, indent=2))


def write_outputs(config: ml_collections.ConfigDict, root: str, points: Sequence[Point]) -> None:
  """`results.csv`, `report.md` and the plots of the finished points (process 0 only)."""
  from bdjax import grid_report, plots, results

  if jax.process_index() != 0:
    return
  done = [p for p in points if finished(p, root)]
  rows = [row for p in done for row in results.point_rows(p, str(p.workdir(root)))]
  labels = [label for label, _ in points[0].values]
  results.write_csv(f"{root}/{results.FILENAME}", rows, labels)
  max_asr = config.get("sweep", {}).get("max_asr", 0.05)
  figures = plots.write_plots(root, rows, labels, max_asr)
  title = config.get("name", "bdjax grid")
  grid_report.write_report(root, title, rows, labels, len(points), max_asr, figures)


def point_record(workdir: str) -> dict | None:
  """The `point.json` of a finished point's workdir, or None."""
  path = epath.Path(workdir) / DONE
  return json.loads(path.read_text()) if path.exists() else None


def _resolved(point: Point) -> str:
  return point.config.to_json_best_effort(indent=2)


def _text(value: Any) -> str:
  """A value as it appears in a point's name: `str`, with path separators and spaces as `_`."""
  return re.sub(r"[/\\\s]+", "_", str(value))
