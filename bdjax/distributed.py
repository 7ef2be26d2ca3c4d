"""Multi-host start-up: JAX's multi-controller runtime, one process per host (or per GPU).

Every process runs the same command. `initialize()` joins them before JAX is used:

    BDJAX_COORDINATOR=HOST:PORT   explicit: with BDJAX_NUM_PROCESSES and BDJAX_PROCESS_ID (the
                                  local launcher, launch/local.py, sets these)
    SLURM (SLURM_NTASKS > 1),     `jax.distributed.initialize()` finds the coordinator, the
    Cloud TPU pods                process count and this process's id by itself
    otherwise                     one process: nothing to do

On CPU the processes talk through gloo (`jax_cpu_collectives_implementation`). After it, each
process sees its local devices and `jax.devices()` all of them; data loading is per process
(bdjax/data/pipeline.py), metrics, reports and JSON files are written by process 0, checkpoints
by orbax from every process.
"""

from __future__ import annotations

import os

import jax


class DistributedError(RuntimeError):
  """The processes of a multi-host run could not be joined."""


def initialize() -> None:
  """Joins this process to its multi-host run if the environment names one (see above)."""
  coordinator = os.environ.get("BDJAX_COORDINATOR", "")
  explicit = bool(coordinator)
  auto = int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 or "TPU_WORKER_HOSTNAMES" in os.environ
  if not (explicit or auto):
    return
  if os.environ.get("JAX_PLATFORMS", "").startswith("cpu") or not _has_accelerator():
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    if explicit:
      count, index = int(os.environ["BDJAX_NUM_PROCESSES"]), int(os.environ["BDJAX_PROCESS_ID"])
      jax.distributed.initialize(coordinator, num_processes=count, process_id=index)
    else:
      jax.distributed.initialize()
  except (KeyError, ValueError) as e:
    raise DistributedError(
      f"BDJAX_COORDINATOR={coordinator} needs BDJAX_NUM_PROCESSES and BDJAX_PROCESS_ID as "
      f"integers too ({e}); launch/local.py sets all three."
    ) from None
  except RuntimeError as e:
    where = coordinator or "found from the environment (SLURM / TPU)"
    raise DistributedError(
      f"jax.distributed.initialize failed (coordinator {where}): {e}. Check that every process "
      "runs the same command, that the coordinator's host and port are reachable from all "
      "hosts, and that no earlier run still holds the port."
    ) from None


def _has_accelerator() -> bool:
  """Whether a GPU or TPU plugin is installed (without initialising a backend)."""
  import importlib.util

  return any(
    importlib.util.find_spec(m) is not None
    for m in ("jax_cuda12_plugin", "jax_cuda13_plugin", "libtpu", "jax_rocm60_plugin")
  )
