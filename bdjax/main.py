"""Entry point: `python -m bdjax.main --config=configs/NAME.py[:ARG] --workdir=DIR`.

Loads the ml_collections config (dotted overrides such as `--config.train.lr=1e-4` apply on
top), checks it, and runs its stages in `DIR`. Mistakes a user can make (a missing or unknown
config, an unknown key, a wrong type, a data path that does not exist) end with one paragraph
naming the culprit and exit status 2; rerunning the same command resumes an interrupted run.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from etils import epath
from ml_collections import config_flags

import jax

from bdjax import config_check, distributed

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
    from bdjax import stages  # Imported after the cheap checks so that their errors stay fast.

    stages.check_stages(config)
  except config_check.ConfigError as e:
    _fail(str(e))
  workdir = epath.Path(_WORKDIR.value)
  workdir.mkdir(parents=True, exist_ok=True)
  resolved = config.to_json_best_effort(indent=2)
  try:
    config_check.check_same_run(workdir / "config.json", resolved)
  except config_check.ConfigError as e:
    _fail(str(e))
  if jax.process_index() == 0:
    (workdir / "config.json").write_text(resolved)
  print(f"bdjax: {config.get('name', 'run')} -> {workdir}", flush=True)

  from bdjax.train import NonFiniteLossError

  try:
    stages.run(config, str(workdir))
  except NonFiniteLossError as e:
    _fail(str(e), status=1)
  except config_check.ConfigError as e:  # found once the data is read (e.g. too few pairs)
    _fail(str(e))


if __name__ == "__main__":
  app.run(main, flags_parser=_flags_parser)
