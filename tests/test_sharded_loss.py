"""Specification of bdjax.sharded_loss: the `shard_map` objectives equal the global ones.

For every objective (clip, clip_ssl, cyclip, siglip, siglip with the ring), on a (data=4, fsdp=2)
mesh and on a 1-D mesh of 8 simulated CPU devices, `local_objective_fn(...)` gives the same
per-pair losses, terms and gradients (w.r.t. the embeddings, their views, scale and bias) as
`bdjax.objectives.make_objective(cfg).fn` within 1e-5 in float32, and no device holds an N x N
matrix.

Why a child process: the 8 devices are simulated with
`XLA_FLAGS=--xla_force_host_platform_device_count=8`, which XLA reads once, when jax first
initialises its CPU backend. In `pytest tests` other modules have usually initialised it (with one
device) before this module runs, and setting the flag in this process would also change what the
other test modules see. So `test_8_simulated_devices` re-runs this very file in a child pytest
(fresh interpreter, the flag and `_CHILD_ENV=1` set, CPU only) and fails with the child's report
if any of its tests fail; the tests marked `@on_8_devices` run only there and are skipped in the
parent. The few tests that need no mesh of 8 run in both.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from bdjax import objectives, sharded_loss

ROOT = pathlib.Path(__file__).resolve().parent.parent
_CHILD_ENV = "BDJAX_SHARDED_LOSS_CHILD"
_IN_CHILD = os.environ.get(_CHILD_ENV) == "1"
on_8_devices = pytest.mark.skipif(
  not _IN_CHILD, reason="runs in the child process of test_8_simulated_devices"
)

N, D = 32, 16  # global batch, embedding dim: n = 4 rows per device; D differs from n and N.
TOL = dict(rtol=1e-5, atol=1e-5)
# "siglip_ring" is the siglip objective with `siglip_ring=True`.
FORMS = ("clip", "clip_ssl", "cyclip", "siglip", "siglip_ring")
MESHES = {  # name: (shape, axis names, batch_axes)
  "data4_fsdp2": ((4, 2), ("data", "fsdp"), ("data", "fsdp")),
  "data8": ((8,), ("data",), ("data",)),
}


def objective_cfg(name: str) -> ml_collections.ConfigDict:
  """`config.objective` with weights away from their defaults, so that a dropped weight shows."""
  return ml_collections.ConfigDict(
    dict(name=name, clip_weight=0.7, inmodal_weight=0.5, lambda_inmodal=0.25, lambda_crossmodal=0.4)
  )


def make_mesh(shape: tuple[int, ...], names: tuple[str, ...]) -> jax.sharding.Mesh:
  auto = (jax.sharding.AxisType.Auto,) * len(names)
  return jax.make_mesh(shape, names, axis_types=auto)


def both_forms(form: str, mesh: jax.sharding.Mesh, batch_axes: tuple[str, ...]):
  """(global fn, local fn) of one objective."""
  name = "siglip" if form == "siglip_ring" else form
  cfg = objective_cfg(name)
  local = sharded_loss.local_objective_fn(
    name, cfg, mesh, batch_axes, siglip_ring=form == "siglip_ring"
  )
  return objectives.make_objective(cfg).fn, local


def unit_rows(x: np.ndarray) -> np.ndarray:
  return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def model_outputs(seed: int = 0, n: int = N) -> tuple[dict, dict]:
  """Outputs and view outputs as the model gives them: texts and views correlated with their
  images (so that positives matter), s = 1 / 0.07, b = -10."""
  rng = np.random.default_rng(seed)
  image = rng.normal(size=(n, D))
  text = image + rng.normal(size=(n, D))
  out = dict(
    image_emb=unit_rows(image),
    text_emb=unit_rows(text),
    scale=np.float32(1 / 0.07),
    bias=np.float32(-10.0),
  )
  views = dict(
    image_emb=unit_rows(image + 0.5 * rng.normal(size=(n, D))),
    text_emb=unit_rows(text + 0.5 * rng.normal(size=(n, D))),
  )
  return out, views


def weighted_loss(fn, out, views, weights):
  """`sum_i w_i l_i + sum(terms)`: its gradient checks the vjp of every per-pair loss and term."""
  per_pair, terms = fn(out, views)
  return jnp.sum(weights * per_pair) + sum(terms.values())


def assert_trees_close(actual, expected) -> None:
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(e), **TOL)


# ---------------------------------------------------------------------------------------------
# The runner (parent process only).
# ---------------------------------------------------------------------------------------------


@pytest.mark.skipif(_IN_CHILD, reason="this is the child process")
def test_8_simulated_devices(tmp_path):
  """Every `@on_8_devices` test passes in a child pytest with 8 simulated CPU devices."""
  flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
  env = {
    **os.environ,
    _CHILD_ENV: "1",
    "XLA_FLAGS": flags.strip(),
    "JAX_PLATFORMS": "cpu",
    "PYTHONPATH": str(ROOT),
  }
  cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
  cmd += [f"--basetemp={tmp_path / 'child'}", str(pathlib.Path(__file__).resolve())]
  proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, f"{proc.stdout[-8000:]}\n{proc.stderr[-3000:]}"
  summary = proc.stdout.strip().splitlines()[-1]  # "41 passed, 1 skipped in ...": this test.
  assert re.fullmatch(r"\d+ passed, 1 skipped in .*", summary), proc.stdout[-3000:]


# ---------------------------------------------------------------------------------------------
# On 8 simulated devices (child process).
# ---------------------------------------------------------------------------------------------


@on_8_devices
def test_the_child_sees_8_cpu_devices():
  assert jax.device_count() == 8
  assert jax.default_backend() == "cpu"


@on_8_devices
@pytest.mark.parametrize("mesh_name", list(MESHES))
@pytest.mark.parametrize("form", FORMS)
def test_per_pair_and_terms_equal_the_global_form(form, mesh_name):
  """Same per-pair losses [B] (split over the batch axes like the batch) and global-mean terms."""
  shape, names, batch_axes = MESHES[mesh_name]
  mesh = make_mesh(shape, names)
  global_fn, local_fn = both_forms(form, mesh, batch_axes)
  out, views = model_outputs()
  expected = jax.jit(global_fn)(out, views)
  per_pair, terms = jax.jit(local_fn)(out, views)
  assert per_pair.shape == (N,)
  assert per_pair.sharding.is_equivalent_to(NamedSharding(mesh, P(batch_axes)), 1)
  assert_trees_close((per_pair, terms), expected)


@on_8_devices
@pytest.mark.parametrize("mesh_name", list(MESHES))
@pytest.mark.parametrize("form", FORMS)
def test_gradients_equal_the_global_form(form, mesh_name):
  """Gradients of `sum_i w_i l_i + sum(terms)` w.r.t. embeddings, views, scale and bias."""
  shape, names, batch_axes = MESHES[mesh_name]
  global_fn, local_fn = both_forms(form, make_mesh(shape, names), batch_axes)
  out, views = model_outputs(seed=1)
  weights = np.random.default_rng(2).uniform(size=N).astype(np.float32) / N

  def grads(fn):
    return jax.jit(jax.grad(weighted_loss, argnums=(1, 2)), static_argnums=0)(
      fn, out, views, weights
    )

  assert_trees_close(grads(local_fn), grads(global_fn))


@on_8_devices
@pytest.mark.parametrize("form", FORMS)
def test_gradient_through_all_gather_equals_the_single_device_gradient(form):
  """`jax.grad` of the mean loss w.r.t. inputs split over (data, fsdp) -- the rows' gradient is
  the reduce-scatter of every device's use of them as columns -- equals the gradient on one
  device, and comes back split like the inputs; scale / bias gradients are replicated."""
  mesh = make_mesh((4, 2), ("data", "fsdp"))
  rows, replicated = NamedSharding(mesh, P(("data", "fsdp"))), NamedSharding(mesh, P())
  global_fn, local_fn = both_forms(form, mesh, ("data", "fsdp"))
  out, views = model_outputs(seed=3)
  views = views if form == "clip_ssl" else None  # (no gradient to unused views)

  def mean_loss(fn, out, views):
    return jnp.mean(fn(out, views)[0])

  grad = jax.jit(jax.grad(mean_loss, argnums=(1, 2)), static_argnums=0)
  one_device = jax.devices()[0]
  expected = grad(global_fn, *jax.device_put((out, views), one_device))
  sharded_out, sharded_views = jax.tree.map(
    lambda v: jax.device_put(v, rows if v.ndim else replicated), (out, views)
  )
  assert sharded_out["image_emb"].addressable_shards[0].data.shape == (N // 8, D)
  actual = grad(local_fn, sharded_out, sharded_views)
  assert_trees_close(actual, expected)
  for g in jax.tree.leaves(actual):
    sharding = rows if g.ndim else replicated
    assert g.sharding.is_equivalent_to(sharding, g.ndim), (g.shape, g.sharding)


@on_8_devices
@pytest.mark.parametrize("form", FORMS)
def test_no_device_holds_an_n_by_n_matrix(form):
  """The compiled per-device loss + gradient has n x N blocks (n x n for the ring), never N x N."""
  mesh = make_mesh((4, 2), ("data", "fsdp"))
  _, local_fn = both_forms(form, mesh, ("data", "fsdp"))
  out, views = model_outputs()
  weights = np.ones(N, np.float32)
  fn = jax.jit(jax.value_and_grad(weighted_loss, argnums=(1, 2)), static_argnums=0)
  hlo = fn.lower(local_fn, out, views, weights).compile().as_text()
  n = N // 8
  assert f"f32[{N},{N}]" not in hlo
  if form == "siglip_ring":
    assert f"f32[{n},{N}]" not in hlo and f"f32[{n},{n}]" in hlo
  else:
    assert f"f32[{n},{N}]" in hlo


@on_8_devices
@pytest.mark.parametrize("form", ["clip_ssl", "cyclip", "siglip_ring"])
def test_batch_split_over_one_axis_of_a_2d_mesh(form):
  """(data=4, model=2), batch over `data` only (n = 8, replicated over `model`): same values and
  gradients."""
  mesh = make_mesh((4, 2), ("data", "model"))
  global_fn, local_fn = both_forms(form, mesh, ("data",))
  out, views = model_outputs(seed=4)
  weights = np.random.default_rng(5).uniform(size=N).astype(np.float32) / N
  assert_trees_close(jax.jit(local_fn)(out, views), jax.jit(global_fn)(out, views))
  grad = jax.jit(jax.grad(weighted_loss, argnums=(1, 2)), static_argnums=0)
  assert_trees_close(grad(local_fn, out, views, weights), grad(global_fn, out, views, weights))


@on_8_devices
def test_a_batch_that_does_not_split_over_the_devices_is_an_error():
  mesh = make_mesh((4, 2), ("data", "fsdp"))
  _, local_fn = both_forms("clip", mesh, ("data", "fsdp"))
  out, views = model_outputs(n=N - 2)
  with pytest.raises(ValueError, match="does not split over the 8 devices"):
    local_fn(out, views)


# ---------------------------------------------------------------------------------------------
# Any device count (parent and child).
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
def test_on_a_one_device_mesh_it_is_the_global_form(form):
  """With one device the gather is the identity and the ring has no step."""
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
  global_fn, local_fn = both_forms(form, mesh, ("data",))
  out, views = model_outputs(seed=6, n=8)
  assert_trees_close(jax.jit(local_fn)(out, views), jax.jit(global_fn)(out, views))


def test_bad_arguments_are_errors():
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
  cfg = objective_cfg("clip")
  with pytest.raises(ValueError, match="Unknown objective 'nope'"):
    sharded_loss.local_objective_fn("nope", cfg, mesh, ("data",))
  with pytest.raises(ValueError, match="not axes of the mesh"):
    sharded_loss.local_objective_fn("clip", cfg, mesh, ("data", "fsdp"))
  clip_ssl = sharded_loss.local_objective_fn("clip_ssl", objective_cfg("clip_ssl"), mesh, "data")
  out, _ = model_outputs(n=8)
  with pytest.raises(ValueError, match="needs view_outputs"):
    clip_ssl(out, None)
