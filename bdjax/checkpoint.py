"""Checkpoints with orbax: one `CheckpointManager` per train stage, asynchronous saves.

Layout: `WORKDIR/checkpoints/STAGE/STEP/`: `default/` holds the whole train state (step,
parameters, optimiser state), `data/` the input pipeline's iterator state, one JSON file per
process (grain's orbax handler). The step's PRNG key is a function of the step, so restoring the
newest checkpoint, data state included, and continuing gives the same final parameters as a run
that was never interrupted. Orbax writes into a temporary directory and renames it when complete, so
a run killed mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

CHECKPOINTS = "checkpoints"


def checkpoints_root(workdir: str) -> epath.Path:
  """`WORKDIR/checkpoints`, absolute (orbax needs it) unless it is a bucket URL."""
  root = workdir if "://" in str(workdir) else os.path.abspath(workdir)
  return epath.Path(root) / CHECKPOINTS


def stage_dir(workdir: str, stage: str) -> epath.Path:
  return checkpoints_root(workdir) / stage


class StageCheckpoints:
  """Saves and restores the train state of one stage."""

  def __init__(self, workdir: str, stage: str, keep: int = 2):
    self.directory = stage_dir(workdir, stage)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    self._manager = ocp.CheckpointManager(
      self.directory,
      options=options,
      item_handlers={
        "default": ocp.StandardCheckpointHandler(),
        "data": grain.checkpoint.CheckpointHandler(),
      },
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, data: dict[str, Any] | None = None) -> None:
    """Starts an asynchronous save of `state` at `step` (returns before the write ends), with
    `data`, the input iterator's state at that step, when given."""
    items = {"default": ocp.args.StandardSave(state)}
    if data is not None:  # captured now: the iterator moves on while the save runs
      items["data"] = grain.checkpoint.CheckpointSave(_SavedState(data))
    self._manager.save(step, args=ocp.args.Composite(**items), force=True)

  def restore(self, state_like: Any, step: int | None = None) -> Any:
    """Restores the state at `step` (default newest) into the structure of `state_like`."""
    step = self.latest_step() if step is None else step
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_like)
    items = ocp.args.Composite(default=ocp.args.StandardRestore(abstract))
    return self._manager.restore(step, args=items)["default"]

  def restore_data(self, iterator: Any, step: int) -> bool:
    """Sets `iterator` to its state saved at `step`; False if that checkpoint has none (saved
    without data state, or by an older bdjax)."""
    name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
    if not (self.directory / str(step) / "data" / name).exists():
      return False  # none saved, or by another number of processes
    items = ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(iterator))
    self._manager.restore(step, args=items)
    return True

  def wait(self) -> None:
    """Blocks until pending saves are written."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()


class _SavedState:
  """An iterator state captured at save time, in the form grain's orbax handler writes."""

  def __init__(self, state: dict[str, Any]):
    self._json = json.dumps(state).encode()

  def get_state(self) -> bytes:
    return self._json


def latest_checkpoint(workdir: str, stage: str = "") -> epath.Path | None:
  """The newest finished checkpoint of `stage` (any stage if '') of the run in `workdir`."""
  root = checkpoints_root(workdir)
  found = []
  if root.exists():
    for d in root.iterdir():
      if d.is_dir() and (not stage or d.name == stage):
        found.extend(ocp.utils.checkpoint_steps_paths(d))
  if stage:
    return max(found, key=lambda p: int(p.name), default=None)
  return max(found, key=lambda p: (p.stat().mtime, int(p.name)), default=None)  # mtime: seconds


def load_params(workdir: str, stage: str = "") -> Any:
  """The parameters of the newest checkpoint in `workdir` (of `stage` if given), as a pytree
  of NumPy arrays, whatever devices saved it.

  Raises FileNotFoundError naming the directory when the run has no such checkpoint.
  """
  path = latest_checkpoint(workdir, stage)
  if path is None:
    of = f" of stage '{stage}'" if stage else ""
    raise FileNotFoundError(
      f"No checkpoint{of} under '{checkpoints_root(workdir)}': train "
      "a model there first (python -m bdjax.main --workdir=...)."
    )
  checkpointer = ocp.StandardCheckpointer()
  here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])  # whatever device saved it
  target = jax.tree.map(
    lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=here),
    checkpointer.metadata(path / "default").item_metadata,
  )
  restored = checkpointer.restore(path / "default", target)
  return jax.tree.map(np.asarray, restored["params"])
