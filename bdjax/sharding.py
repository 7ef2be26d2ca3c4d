"""Where arrays live: a 1-D `data` mesh over every device, the batch split along it.

The train step is `jax.jit` over global arrays: parameters and optimiser state replicated,
the batch sharded along `data`, so the contrastive loss sees the whole global batch and XLA
inserts the collectives. (The `fsdp`/`model` axes and multi-host loading build on this.)
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def data_mesh() -> Mesh:
  """A mesh with one axis, `data`, over all devices."""
  return jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over `data`, other axes whole."""
  return NamedSharding(mesh, P("data"))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  """The global batch must split evenly over the `data` axis."""
  devices = mesh.shape["data"]
  if batch_size % devices:
    raise ValueError(
      f"train.batch_size={batch_size} does not split over {devices} devices: "
      f"use a multiple of {devices}."
    )


def put_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, Any]:
  """Places this process's rows of a global batch on the mesh, split along `data` (with one
  process: the whole batch)."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
