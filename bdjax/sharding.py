"""Where arrays live: a (data, fsdp, model) device mesh, parameters sharded by rules, the batch
split over the data-parallel axes.

    mesh         `config.mesh`: sizes of the `data`, `fsdp` and `model` axes (-1: the devices
                 left over); default every device on `data`
    batch        leading axis split over (`data`, `fsdp`): each of the data*fsdp shards holds
                 B / (data*fsdp) rows; replicated over `model`
    parameters   and optimiser state, by `leaf_spec`: leaves smaller than `mesh.min_shard_size`
    (rules)      elements are replicated; larger ones are split along `fsdp` on their largest
                 dimension that divides evenly, and along `model` on the next one
                 (GSPMD inserts the gathers, so any rule is correct; these keep memory per device
                 at about 1/fsdp of the model)

The train step is `jax.jit` over global arrays with the state's shardings as outputs and the
state donated, so the contrastive loss sees the whole global batch and XLA inserts the
collectives (or, with `objective.loss_form='local'`, bdjax/sharded_loss.py computes each
device's rows against the gathered embeddings).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXES = ("data", "fsdp", "model")
BATCH_AXES = ("data", "fsdp")
MIN_SHARD_SIZE = 2**14  # elements: smaller leaves are replicated


def make_mesh(cfg: ml_collections.ConfigDict | None = None) -> Mesh:
  """The (data, fsdp, model) mesh of `cfg` (`config.mesh`) over every device."""
  sizes = [
    int(cfg.get(a, -1 if a == "data" else 1)) if cfg else (-1 if a == "data" else 1) for a in AXES
  ]
  count = jax.device_count()
  if sizes.count(-1) > 1:
    raise ValueError(f"config.mesh: at most one axis may be -1, got {dict(zip(AXES, sizes))}.")
  fixed = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if count % fixed:
      raise ValueError(f"config.mesh {dict(zip(AXES, sizes))} does not divide {count} devices.")
    sizes[sizes.index(-1)] = count // fixed
  if math.prod(sizes) != count:
    raise ValueError(
      f"config.mesh {dict(zip(AXES, sizes))} has {math.prod(sizes)} devices, but there are "
      f"{count}: make the sizes multiply to {count} (or set one to -1)."
    )
  auto = (jax.sharding.AxisType.Auto,) * len(AXES)
  return jax.make_mesh(tuple(sizes), AXES, axis_types=auto)


def data_mesh() -> Mesh:
  """Every device on the `data` axis."""
  return make_mesh()


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the data-parallel axes, other axes whole."""
  return NamedSharding(mesh, P(BATCH_AXES))


def batch_shards(mesh: Mesh) -> int:
  """How many parts the global batch is split into."""
  return math.prod(mesh.shape[a] for a in BATCH_AXES)


def leaf_spec(shape: tuple[int, ...], mesh: Mesh, min_size: int = MIN_SHARD_SIZE) -> P:
  """The partition of a parameter (or optimiser-state) leaf of `shape` (see the module doc)."""
  spec: list[Any] = [None] * len(shape)
  if math.prod(shape) < min_size:
    return P(*spec)
  free = sorted(range(len(shape)), key=lambda d: -shape[d])
  for axis in ("fsdp", "model"):
    n = mesh.shape[axis]
    if n == 1:
      continue
    for d in free:
      if shape[d] % n == 0 and shape[d] >= n:
        spec[d] = axis
        free.remove(d)
        break
  return P(*spec)


def tree_shardings(tree: Any, mesh: Mesh, min_size: int = MIN_SHARD_SIZE) -> Any:
  """A `NamedSharding` per leaf of `tree` (arrays or shape/dtype structs) by `leaf_spec`."""
  return jax.tree.map(lambda x: NamedSharding(mesh, leaf_spec(np.shape(x), mesh, min_size)), tree)


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  """The global batch must split evenly over the data-parallel axes."""
  shards = batch_shards(mesh)
  if batch_size % shards:
    raise ValueError(
      f"train.batch_size={batch_size} does not split over {shards} data-parallel shards "
      f"(mesh {dict(mesh.shape)}): use a multiple of {shards}."
    )


def put_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, Any]:
  """Places this process's rows of a global batch on the mesh, split over the data-parallel
  axes (with one process: the whole batch)."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
