"""Per-device memory of the contrastive losses: global (jit) form vs `shard_map` local form.

    .venv/bin/python bench/loss_memory.py --batch_sizes=4096,8192,16384,32768,65536

For each global batch N (default 4k..32k; add 65536 as above), embedding dim 512 and 8
simulated CPU devices (the batch split over a 1-D `data` mesh, or `--mesh=4x2` for
(data=4, fsdp=2)), compiles -- never runs -- the loss and its gradient w.r.t. the embeddings,
scale and bias of every objective in both forms:

- global: `bdjax.objectives.make_objective(cfg).fn` under `jax.jit`, the inputs split over the
  batch axes and XLA's SPMD partitioner inserting the collectives;
- local:  `bdjax.sharded_loss.local_objective_fn` (each device's n = N / 8 rows against the
  gathered embeddings), and for SigLIP also the ring (`siglip_ring=True`),

and prints a Markdown table of `compiled.memory_analysis()` per device: temp + argument +
output bytes (`CompiledMemoryStats.{temp,argument,output}_size_in_bytes`; the `alias` bytes,
donated buffers, are 0 here), and the largest f32 matrix in the compiled per-device HLO at the
largest N (at small N that may be the [N, D] gathered embeddings). For reference one f32 logits matrix takes ``4 N^2`` bytes (N x N) and ``4 n N``
(n x N). Compiles only: about 30 s on 2 CPU cores with 64k.

What it showed (jax 0.10.2, XLA CPU): the SPMD partitioner already splits the global form's
logits by rows -- its largest matrix is n x N too, the column (text->image) softmax reduced
with an all-reduce of [N] vectors -- so at a fixed device count both forms grow as n N = N^2/8,
the gather form of CLIP needing ~1.2x the global form's memory (it forms both n x N matrices,
I_loc T_all^T and T_loc I_all^T). Only SigLIP's ring stays at n x n blocks (~5x less at 64k).
"""

from __future__ import annotations

import os
import re
import sys
import time

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):  # before jax initialises its backend
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}".strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
from absl import app, flags  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

from bdjax import objectives, sharded_loss  # noqa: E402

_BATCH_SIZES = flags.DEFINE_list(
  "batch_sizes", ["4096", "8192", "16384", "32768"], "Global batch sizes N (65536: add it)."
)
_DIM = flags.DEFINE_integer("dim", 512, "Embedding dimension D.")
_MESH = flags.DEFINE_enum("mesh", "8", ["8", "4x2"], "8: (data=8); 4x2: (data=4, fsdp=2).")
_OBJECTIVES = flags.DEFINE_list(
  "objectives", ["clip", "clip_ssl", "cyclip", "siglip", "siglip_ring"], "Objectives."
)

MIB = 2**20


def _cfg(name: str) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
    dict(
      name=name, clip_weight=1.0, inmodal_weight=1.0, lambda_inmodal=0.25, lambda_crossmodal=0.25
    )
  )


def _compiled(
  fn, n: int, dim: int, rows: NamedSharding, replicated: NamedSharding
) -> tuple[int, str]:
  """temp + argument + output bytes per device of `value_and_grad(mean loss)`, compiled only,
  and the largest f32 matrix of the per-device program."""

  def loss(out, views):
    per_pair, _ = fn(out, views)
    return jnp.mean(per_pair)

  emb = jax.ShapeDtypeStruct((n, dim), jnp.float32, sharding=rows)
  scalar = jax.ShapeDtypeStruct((), jnp.float32, sharding=replicated)
  out = dict(image_emb=emb, text_emb=emb, scale=scalar, bias=scalar)
  views = dict(image_emb=emb, text_emb=emb)
  compiled = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(out, views).compile()
  m = compiled.memory_analysis()
  total = m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes
  shapes = {(int(r), int(c)) for r, c in re.findall(r"f32\[(\d+),(\d+)\]", compiled.as_text())}
  rows, cols = max(sorted(shapes), key=lambda rc: rc[0] * rc[1])
  return total, f"{rows} x {cols}"


def main(argv: list[str]) -> None:
  del argv
  assert jax.device_count() == 8, f"needs 8 (simulated) devices, has {jax.device_count()}"
  auto = jax.sharding.AxisType.Auto
  if _MESH.value == "8":
    mesh, axes = jax.make_mesh((8,), ("data",), axis_types=(auto,)), ("data",)
  else:
    mesh = jax.make_mesh((4, 2), ("data", "fsdp"), axis_types=(auto, auto))
    axes = ("data", "fsdp")
  rows, replicated = NamedSharding(mesh, P(axes)), NamedSharding(mesh, P())
  sizes = [int(s) for s in _BATCH_SIZES.value]
  dim = _DIM.value
  header = ["objective", "form"] + [f"N={n // 1024}k" for n in sizes]
  header.append(f"largest matrix, N={sizes[-1] // 1024}k")
  lines = [
    f"Per-device MiB (temp + argument + output) of loss + grad, D={dim}, 8 devices, "
    f"batch over {axes}:",
    "",
    "| " + " | ".join(header) + " |",
    "|" + "|".join(["---"] * 2 + ["--:"] * len(sizes) + ["--:"]) + "|",
  ]
  lines.append(
    "| (one f32 logits matrix) | global N x N | "
    + " | ".join(f"{4 * n * n / MIB:.0f}" for n in sizes)
    + f" | {sizes[-1]} x {sizes[-1]} |"
  )
  lines.append(
    "| (one f32 logits matrix) | local n x N | "
    + " | ".join(f"{4 * (n // 8) * n / MIB:.0f}" for n in sizes)
    + f" | {sizes[-1] // 8} x {sizes[-1]} |"
  )
  start = time.time()
  for objective in _OBJECTIVES.value:
    name = "siglip" if objective == "siglip_ring" else objective
    cfg = _cfg(name)
    forms = {"ring": dict(siglip_ring=True)} if objective == "siglip_ring" else {"local": {}}
    if objective != "siglip_ring":
      forms = {"global": None, **forms}
    for form, kwargs in forms.items():
      if kwargs is None:
        fn = objectives.make_objective(cfg).fn
      else:
        fn = sharded_loss.local_objective_fn(name, cfg, mesh, axes, **kwargs)
      results = [_compiled(fn, n, dim, rows, replicated) for n in sizes]
      cells = [f"{total / MIB:.0f}" for total, _ in results] + [results[-1][1]]
      lines.append(f"| {name} | {form} | " + " | ".join(cells) + " |")
      print(f"  {objective} {form}: {time.time() - start:.0f} s", file=sys.stderr, flush=True)
  print("\n".join(lines))


if __name__ == "__main__":
  app.run(main)
