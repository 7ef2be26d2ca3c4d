"""Turns mistakes in a command line or config into one clear paragraph.

`python -m bdjax.main` parses its flags through `parse_flags`; every mistake a user can make in
the config (a file that does not exist, an unknown key, a value of the wrong type, a data path
that does not exist, a value outside its range) raises `ConfigError`, which `main` prints as one
paragraph before exiting with status 2 and no traceback.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import re
from collections.abc import Sequence
from typing import Any

import ml_collections
from absl import flags
from etils import epath

USAGE = "usage: python -m bdjax.main --config=configs/NAME.py[:ARG] --workdir=DIR [--config.KEY=VALUE ...]"


class ConfigError(Exception):
  """A mistake in the command line or config that the user can fix; the message says how."""


def parse_flags(argv: Sequence[str]) -> list[str]:
  """absl `flags_parser` for `app.run`: parses `argv`, raising `ConfigError` on any mistake."""
  config_arg = _flag_value(argv, "config")
  if config_arg is None:
    raise ConfigError(
      f"No --config given. {USAGE}. The shipped configs are in configs/ "
      "(configs/demo.py runs on the embedded dataset)."
    )
  path, _ = _split_config_arg(config_arg)
  if not os.path.isfile(path):
    raise ConfigError(
      f"Config file '{path}' does not exist. Pass the path of a Python file with a "
      "get_config() function, e.g. --config=configs/demo.py."
    )
  try:
    return flags.FLAGS(list(argv))
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    raise ConfigError(_explain_parse_error(argv, config_arg, e)) from None


def load_config(config_arg: str) -> ml_collections.ConfigDict:
  """Loads `path[:arg]` the way `config_flags` does: `get_config(arg)` or `get_config()`."""
  path, arg = _split_config_arg(config_arg)
  spec = importlib.util.spec_from_file_location("bdjax_user_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg is not None else module.get_config()


def unknown_key(config: ml_collections.ConfigDict, dotted: str) -> str | None:
  """The first component of `dotted` that `config` lacks, as a message, or None if it exists."""
  node, seen = config, []
  for part in dotted.split("."):
    keys = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
    if part not in keys:
      where = ".".join(seen) or "the top level"
      hint = difflib.get_close_matches(part, keys, n=1)
      guess = f" Did you mean '{'.'.join(seen + hint)}'?" if hint else ""
      return (
        f"Unknown config key '{dotted}': there is no '{part}' under {where}.{guess} "
        f"Keys there: {', '.join(sorted(keys)) or '(none)'}."
      )
    node, seen = node[part], seen + [part]
  return None


def check_training_config(config: ml_collections.ConfigDict) -> None:
  """Checks the stable keys every training config has, raising `ConfigError` on a bad value."""
  for key in ("seed", "train.steps", "train.batch_size", "train.lr", "train.checkpoint_every"):
    if unknown_key(config, key):
      raise ConfigError(
        f"The config lacks the required key '{key}'. Every training config sets "
        "seed, train.steps, train.batch_size, train.lr and train.checkpoint_every; "
        "start from configs/tiny.py."
      )
  for key in ("train.steps", "train.batch_size", "train.checkpoint_every"):
    if _get(config, key) <= 0:
      raise ConfigError(f"config.{key} must be a positive integer, got {_get(config, key)}.")
  if not config.train.lr > 0:
    raise ConfigError(f"config.train.lr must be positive, got {config.train.lr}.")


def check_data(config: ml_collections.ConfigDict) -> None:
  """Checks that the data the config reads is named, and exists where it is a plain path (the
  readers check formats, shards and rows when the run opens them, before any training)."""
  data = config.data
  for key, source in (("train", data.source), ("eval", data.get("eval_source", "synthetic"))):
    if source == "synthetic":
      continue
    path = str(data.get(key, ""))
    if not path:
      raise ConfigError(
        f"config.data.{key} is empty but it is read from '{source}' data: pass "
        f"--config.data.{key}=PATH to your dataset (see README, 'Real data'), or run "
        "configs/demo.py on the embedded dataset."
      )
    plain = not any(ch in path for ch in "{*?") and not path.startswith("tfds:")
    if plain and source != "tfds" and not epath.Path(path).exists():
      raise ConfigError(
        f"Dataset path '{path}' (config.data.{key}) does not exist. Point "
        f"--config.data.{key}=PATH at your copy of the dataset (see README, "
        "'Real data'), or run configs/demo.py on the embedded dataset."
      )
  if data.get("eval_source", "synthetic") != "synthetic":
    from bdjax.data import eval_sets  # opens the labels, never an image

    eval_sets.class_names(data)


def check_init(config: ml_collections.ConfigDict) -> None:
  """`init.checkpoint`, when given, must be a file (what it holds is checked when it is read)."""
  checkpoint = config.get("init", {}).get("checkpoint", "")
  if checkpoint and not epath.Path(checkpoint).is_file():
    raise ConfigError(
      f"config.init.checkpoint='{checkpoint}' is not a file. Give the path of an OpenAI or "
      "open_clip checkpoint on local disk (.pt, .bin or .safetensors), or '' to start from "
      "fresh parameters."
    )


def check_config(config: ml_collections.ConfigDict | None) -> None:
  """All start-up checks of a loaded config; raises `ConfigError` with what to do."""
  if config is None:
    raise ConfigError(f"No --config given. {USAGE}.")
  check_training_config(config)
  check_init(config)
  check_data(config)
  check_attack(config)
  from bdjax.grid import check_grid  # Imports jax: only after the cheap checks.

  check_grid(config)


def check_attack(config: ml_collections.ConfigDict) -> None:
  """Checks `config.attack`: a known trigger, a known target class, a poison count or ratio."""
  from bdjax.attacks import triggers  # Imports jax: only after the cheap checks.
  from bdjax.attacks.poison import poison_count
  from bdjax.data import eval_sets

  attack = config.get("attack")
  if attack is None or attack.kind == "none":
    return
  if attack.kind not in triggers.NAMES:
    raise ConfigError(
      f"Unknown attack config.attack.kind='{attack.kind}'; choose 'none' or one of "
      f"{', '.join(triggers.NAMES)}."
    )
  classes = list(eval_sets.class_names(config.data))
  if attack.target not in classes:
    raise ConfigError(
      f"config.attack.target='{attack.target}' is not a class of the evaluation set; "
      f"choose one of: {', '.join(classes[:20])}{' ...' if len(classes) > 20 else ''}."
    )
  try:
    poison_count(1, attack.count, attack.ratio)
    if attack.kind in ("badnet", "solid"):
      triggers.patch_pixels(attack.patch_size, config.data.image_size)
  except ValueError as e:
    raise ConfigError(str(e)) from None


def check_same_run(saved: epath.Path, resolved: str, ignore: Sequence[str] = ()) -> None:
  """Raises `ConfigError` if `saved` (a workdir's config.json) holds another config than
  `resolved`: a rerun resumes the finished stages of the workdir, so two configs would mix.
  Keys in `ignore` may differ (a grid's axes: its points check their own configs)."""
  if not saved.exists():
    return
  old, new = _flat(json.loads(saved.read_text())), _flat(json.loads(resolved))
  keys = old.keys() | new.keys()
  changed = sorted(k for k in keys if old.get(k) != new.get(k) and k not in ignore)
  if changed:
    shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    raise ConfigError(
      f"The workdir {saved.parent} holds a run of another config (differing keys: {shown}). "
      "Rerunning in a workdir resumes its finished stages, which would mix two experiments: "
      "pass a new --workdir, or delete this one to start over."
    )


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
  if not isinstance(tree, dict):
    return {prefix: tree}
  out = {}
  for k, v in tree.items():
    out.update(_flat(v, f"{prefix}.{k}" if prefix else k))
  return out


def _get(config: ml_collections.ConfigDict, dotted: str) -> Any:
  for part in dotted.split("."):
    config = config[part]
  return config


def _flag_value(argv: Sequence[str], name: str) -> str | None:
  for i, arg in enumerate(argv):
    if arg.startswith(f"--{name}="):
      return arg.split("=", 1)[1]
    if arg == f"--{name}" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _split_config_arg(config_arg: str) -> tuple[str, str | None]:
  path, sep, arg = config_arg.partition(":")
  return path, (arg if sep else None)


def _overrides(argv: Sequence[str]) -> list[tuple[str, str]]:
  pairs = []
  for arg in argv:
    m = re.match(r"--(?:no)?config\.([^=]+)(?:=(.*))?$", arg)
    if m:
      pairs.append((m.group(1), m.group(2) or ""))
  return pairs


def _explain_parse_error(argv: Sequence[str], config_arg: str, error: Exception) -> str:
  try:
    config = load_config(config_arg)
  except Exception as load_error:  # The config file itself is broken: say where.
    return (
      f"Could not load config '{config_arg}': {type(load_error).__name__}: {load_error}. "
      "Fix the file (it must define get_config()) and run again."
    )
  for key, _ in _overrides(argv):
    message = unknown_key(config, key)
    if message:
      return message + " Fix or remove the --config." + key + " flag."
  text = str(error).strip("'\"").replace("\\n", " ")
  return (
    f"Bad command line: {text}. Each --config.KEY=VALUE must name an existing key and give "
    "a value of the key's type (an int for an int key, a float for a float key, ...)."
  )
