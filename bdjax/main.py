"""Entry point: `python -m bdjax.main --config=configs/NAME.py[:ARG] --workdir=DIR`.

Loads the ml_collections config (dotted overrides such as `--config.train.lr=1e-4` apply on
top), checks it, and runs its stages in `DIR`; a config with `grid.axes` runs every point of
its grid in `DIR/points/NAME/` and writes the grid's results, report and plots (grid.py).
Mistakes a user can make (a missing or unknown config, an unknown key, a wrong type, a data
path that does not exist, a bad grid) end with one paragraph naming the culprit and exit status
2; rerunning the same command resumes an interrupted run (or grid).
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from etils import epath
from ml_collections import config_flags

import jax

from bdjax import allocator, config_check, distributed

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file, PATH[:ARG].")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and report.")


def _fail(message: str, status: int = 2) -> None:
  print(f"bdjax: error: {message}", file=sys.stderr)
  sys.exit(status)


def _flags_parser(argv: list[str]) -> list[str]:
  try:
    return config_check.parse_flags(argv)
  except config_check.ConfigError as e:
    _fail(str(e))


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    _fail(f"Unexpected arguments {argv[1:]}. {config_check.USAGE}.")
  if not _WORKDIR.value:
    _fail(f"No --workdir given. {config_check.USAGE}.")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO.
  try:
    distributed.initialize()  # before anything uses JAX
  except distributed.DistributedError as e:
    _fail(str(e), status=1)
  config = _CONFIG.value
  try:
    config_check.check_config(config)
    from bdjax import grid, stages  # Imported after the cheap checks: their errors stay fast.

    points = grid.make_points(config, _loader()) if grid.axes(config) else None
    if points is None:
      stages.check_stages(config)
    else:
      grid.check_points(points, _WORKDIR.value)
  except config_check.ConfigError as e:
    _fail(str(e))
  workdir = epath.Path(_WORKDIR.value)
  workdir.mkdir(parents=True, exist_ok=True)
  resolved = config.to_json_best_effort(indent=2)
  try:  # a grid may gain or lose points: each point checks its own config
    config_check.check_same_run(workdir / "config.json", resolved, ("grid.axes",) if points else ())
  except config_check.ConfigError as e:
    _fail(str(e))
  if jax.process_index() == 0:
    (workdir / "config.json").write_text(resolved)
  print(f"bdjax: {config.get('name', 'run')} -> {workdir}", flush=True)
  note = allocator.cpu_note(jax.default_backend())
  if note and jax.process_index() == 0:
    print(note, flush=True)
  _run(config, str(workdir), points)


def _loader():
  """Builds the config of a grid point with argument axes: the config file again, with the
  command line's overrides (bdjax.grid.config_loader)."""
  from bdjax import grid

  flag = flags.FLAGS["config"]
  overrides = config_flags.get_override_values(flag)
  return grid.config_loader(config_flags.get_config_filename(flag), overrides)


def _run(config, workdir: str, points) -> None:
  from bdjax import grid, stages
  from bdjax.train import NonFiniteLossError

  try:
    if points is None:
      stages.run(config, workdir)
      return
    grid.use_compilation_cache(workdir)
    failed = grid.run_grid(config, workdir, points)
  except NonFiniteLossError as e:
    _fail(str(e), status=1)
  except config_check.ConfigError as e:  # found once the data is read (e.g. too few pairs)
    _fail(str(e))
  if failed:
    _fail(
      f"{len(failed)} grid point(s) diverged (non-finite loss): {', '.join(failed)}. Their "
      "logs are in points/NAME/; the report covers the others.",
      status=1,
    )


if __name__ == "__main__":
  app.run(main, flags_parser=_flags_parser)
