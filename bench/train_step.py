"""Training-step speed: bdjax against open_clip on the identical model and batch.

    .venv/bin/python bench/train_step.py --models=small_vit,vit_b_32,rn50

(needs the torch extra: `make install-torch`). For each model, in this one process and on the
same batch:

- **open_clip**: its own `CLIP` built with the same architecture, whose weights are bdjax's
  initial parameters passed through `bdjax.models.convert` (so the two models cannot differ),
  in training mode, its `ClipLoss`, `torch.optim.AdamW` (lr 1e-3, betas (0.9, 0.98), eps 1e-6,
  weight decay 0.1 on weights of rank >= 2, as open_clip's `main.py`), float32;
- **bdjax**: `bdjax.train.make_train_step` with the `clip` objective and the same AdamW
  (`bdjax.optimizer.make_optimizer`, no clipping), float32, its token trimming on
  (`bdjax.token_trim.trim_tokens`: the text tower runs on the tokens up to the batch's longest
  caption, rounded up to a bucket), and `--trim=false` without it.

Images are random, captions are the embedded dataset's (`--captions=embedded`: 4-16 tokens)
or random tokens filling the 77-token context (`--captions=full`, where trimming saves
nothing). Prints pairs/s of both, their ratio, and bdjax's FLOP/s (the step's FLOPs from XLA's
cost analysis of the program that ran) against the measured matmul peak of this machine (the
fastest float32 square matmul, 2048 or 4096, of XLA, NumPy's BLAS and PyTorch), as a Markdown
table. Each is warmed up with two steps (their first losses must agree), then they are timed in
turns, one step of each per round (`--steps` rounds), and each one's median step is what
counts: on a shared machine whose speed drifts by 10% or more over minutes, turns put the drift
on both alike.

On a GPU (JAX's default backend is `gpu` and PyTorch sees CUDA) both run there, the batch is
larger (`GPU_BATCH`), both are synchronised after every step, and the peak is the GPU's
(JAX's and PyTorch's matmul, not NumPy's). `--precision=float32` keeps both in full float32
(no TF32 in either); `--precision=bfloat16` runs bdjax's towers in bfloat16
(`model.dtype`) and open_clip under `torch.autocast(bfloat16)` (its `amp_bf16`), float32
weights in both, and measures the bfloat16 matmul peak.
"""

from __future__ import annotations

import argparse
import math
import os
import time

# On a GPU, JAX must not take 75% of its memory before open_clip runs.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from bdjax import allocator
from bdjax.data.synthetic import SyntheticPairs
from bdjax.models import build_model, convert, model_config, tokenize
from bdjax.models.build import example_inputs
from bdjax.objectives import make_objective
from bdjax.optimizer import make_optimizer
from bdjax.token_trim import trim_tokens
from bdjax.train import TrainState, make_train_step

MODELS = {
  # The small ViT: 64 px, width 256, 4 + 4 layers, context 77 (patch 8: 64 patches).
  "small_vit": (
    dict(
      embed_dim=256,
      dtype="float32",
      logit_scale_init=math.log(1 / 0.07),
      logit_bias_init=None,
      act="quick_gelu",
      image=dict(kind="vit", size=64, patch_size=8, width=256, depth=4, heads=4, mlp_ratio=4.0),
      text=dict(context_length=77, vocab_size=49408, width=256, depth=4, heads=4, mlp_ratio=4.0),
    ),
    128,
  ),
  "vit_b_32": ("vit-b-32", 16),
  "rn50": ("rn50", 16),
}
GPU_BATCH = {"small_vit": 1024, "vit_b_32": 256, "rn50": 256}
TRAIN = dict(steps=10_000, lr=1e-3, warmup_steps=100, weight_decay=0.1, b1=0.9, b2=0.98, eps=1e-6)


def model_cfg(name: str, dtype: str = "float32") -> ml_collections.ConfigDict:
  spec = MODELS[name][0]
  cfg = model_config(spec) if isinstance(spec, str) else ml_collections.ConfigDict(spec)
  cfg.dtype = dtype
  return cfg


def on_gpu() -> bool:
  """Whether both frameworks run on a GPU: JAX's default backend is `gpu` and torch sees CUDA."""
  import torch

  return jax.default_backend() == "gpu" and torch.cuda.is_available()


def make_batch(cfg, batch: int, captions: str, seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  size, context = cfg.image.size, cfg.text.context_length
  images = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
  if captions == "embedded":
    texts = SyntheticPairs("train", batch, 32, seed=seed).captions(range(batch))
    tokens = tokenize(texts, context_length=context)
  else:  # [SOT, random words, EOT] filling the context
    tokens = rng.integers(1, 49406, (batch, context), dtype=np.int32)
    tokens[:, 0], tokens[:, -1] = 49406, 49407
  return dict(image=images, tokens=np.asarray(tokens, np.int32))


def _best(fn, repeats: int) -> float:
  fn()
  best = math.inf
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - start)
  return best


def matmul_peak(gpu: bool = False, dtype: str = "float32", repeats: int = 5) -> dict[str, float]:
  """FLOP/s of the best square matmul in `dtype` by XLA (`jnp.dot` under jit, full precision),
  NumPy's BLAS (CPU only) and PyTorch: the machine's measured peak is the largest. Sizes 2048
  and 4096 on the CPU, 4096 and 8192 on a GPU."""
  import torch

  sizes = (4096, 8192) if gpu else (2048, 4096)
  device = "cuda" if gpu else "cpu"
  sync = torch.cuda.synchronize if gpu else (lambda: None)
  peaks = {}
  for n in sizes:
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    x, dot = jnp.asarray(a, dtype), jax.jit(lambda u, v: jnp.dot(u, v, precision="highest"))
    t = torch.from_numpy(a).to(device, getattr(torch, dtype))
    runs = {"jax": lambda: dot(x, x).block_until_ready()}
    if not gpu:
      runs["numpy"] = lambda: a @ a
    runs["torch"] = lambda: (t @ t, sync())
    for name, fn in runs.items():
      peaks[name] = max(peaks.get(name, 0.0), 2 * n**3 / _best(fn, repeats))
  return peaks


def warm_up(step, state, batch):
  """Two steps (compilation, first allocations): `(state, loss of the first step)`. Both
  implementations start from the same weights, so the first losses must agree."""
  state, first = step(state, batch)
  state, _ = step(state, batch)
  return state, float(first)


def time_rounds(runners: dict, batch, rounds: int) -> dict[str, list[float]]:
  """Seconds of each step of each runner (`name: (step, state)`, warmed up), taken in turns:
  one step of each per round, so that the machine's drift (about 10% over minutes on a shared
  virtual machine) falls on all of them alike."""
  states = {name: state for name, (_, state) in runners.items()}
  seconds = {name: [] for name in runners}
  for _ in range(rounds):
    for name, (step, _) in runners.items():
      start = time.perf_counter()
      states[name], _ = step(states[name], batch)
      seconds[name].append(time.perf_counter() - start)
  return seconds


def bdjax_runner(cfg, variables, trim: bool):
  """`(step, state, program)`: bdjax's train step on host batches, compiled ahead of time once
  per caption length; `program(state, batch)` is the compiled program a batch runs (its FLOPs
  are read from it, so the step is not compiled twice)."""
  model = build_model(cfg)
  tx = make_optimizer(ml_collections.ConfigDict(TRAIN))
  objective = make_objective(ml_collections.ConfigDict(dict(name="clip", loss_form="global")))
  jitted = make_train_step(model, objective, tx)
  key = jax.random.key(0)
  compiled = {}

  def executable(state, batch):
    length = batch["tokens"].shape[1]
    if length not in compiled:
      compiled[length] = jitted.lower(state, batch, key).compile()
    return compiled[length]

  def step(state, batch):
    batch = trim_tokens(batch) if trim else batch
    state, metrics = executable(state, batch)(state, batch, key)
    return state, metrics["loss"].block_until_ready()

  def program(state, batch):
    return executable(state, trim_tokens(batch) if trim else batch)

  state = TrainState.create(jax.tree.map(jnp.asarray, variables), tx)
  return step, state, program


def step_flops(executable) -> float:
  """FLOPs of one step by XLA's cost analysis of the compiled program."""
  cost = executable.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  return float(cost["flops"])


def open_clip_runner(cfg, variables, device: str = "cpu"):
  """`(step, state)`: open_clip's training step on the same weights (numpy batches in), on
  `device`, under `torch.autocast(bfloat16)` when `cfg.dtype` is bfloat16; each step waits for
  the device."""
  import open_clip
  import torch
  from open_clip.loss import ClipLoss
  from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

  image, text = cfg.image, cfg.text
  if image.kind == "resnet":
    vision = CLIPVisionCfg(layers=tuple(image.layers), width=image.width, image_size=image.size)
  else:
    vision = CLIPVisionCfg(
      layers=image.depth,
      width=image.width,
      head_width=image.width // image.heads,
      patch_size=image.patch_size,
      image_size=image.size,
      mlp_ratio=image.mlp_ratio,
    )
  text_cfg = CLIPTextCfg(
    context_length=text.context_length,
    vocab_size=text.vocab_size,
    width=text.width,
    heads=text.heads,
    layers=text.depth,
    mlp_ratio=text.mlp_ratio,
  )
  model = CLIP(
    cfg.embed_dim, vision, text_cfg, quick_gelu=cfg.act == "quick_gelu", output_dict=True
  )
  state_dict = {
    k: torch.from_numpy(np.array(v)) for k, v in convert.to_state_dict(variables, cfg).items()
  }
  model.load_state_dict(state_dict, strict=True)
  model.to(device).train()
  decay = [p for p in model.parameters() if p.ndim >= 2]
  rest = [p for p in model.parameters() if p.ndim < 2]
  opt = torch.optim.AdamW(
    [dict(params=decay, weight_decay=0.1), dict(params=rest, weight_decay=0.0)],
    lr=1e-3,
    betas=(0.9, 0.98),
    eps=1e-6,
  )
  loss_fn = ClipLoss()
  mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN, device=device).view(1, 3, 1, 1)
  std = torch.tensor(open_clip.OPENAI_DATASET_STD, device=device).view(1, 3, 1, 1)
  bf16 = cfg.dtype == "bfloat16"

  def step(state, batch):
    images = torch.from_numpy(batch["image"]).to(device).permute(0, 3, 1, 2).float().div(255)
    images = (images - mean) / std
    tokens = torch.from_numpy(batch["tokens"]).to(device).long()
    with torch.autocast(torch.device(device).type, torch.bfloat16, enabled=bf16):
      out = model(images, tokens)
      loss = loss_fn(out["image_features"], out["text_features"], out["logit_scale"])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return state, loss.detach().cpu()

  return step, None


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--models", default="small_vit,vit_b_32,rn50")
  parser.add_argument("--batch", type=int, default=0, help="0: the model's default")
  parser.add_argument("--steps", type=int, default=8, help="timed steps of each")
  parser.add_argument("--captions", choices=("embedded", "full"), default="embedded")
  parser.add_argument("--trim", default="true", choices=("true", "false"))
  parser.add_argument("--skip_open_clip", action="store_true")
  parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
  args = parser.parse_args()
  import torch

  gpu = on_gpu()
  if args.precision == "bfloat16" and not gpu:
    parser.error("--precision=bfloat16 needs a GPU (this CPU has no bfloat16 matmul units).")
  if gpu and args.precision == "float32":  # full float32 in both: no TF32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    jax.config.update("jax_default_matmul_precision", "highest")
  torch.set_num_threads(os.cpu_count())
  device = "cuda" if gpu else "cpu"
  trim = args.trim == "true"
  rows = []
  for name in args.models.split(","):
    cfg = model_cfg(name, args.precision)
    batch_size = args.batch or (GPU_BATCH[name] if gpu else MODELS[name][1])
    batch = make_batch(cfg, batch_size, args.captions)
    variables = jax.device_get(build_model(cfg).init(jax.random.key(0), *example_inputs(cfg)))
    runners, losses = {}, {"open_clip": math.nan}
    if not args.skip_open_clip:
      step, state = open_clip_runner(cfg, variables, device)
      state, losses["open_clip"] = warm_up(step, state, batch)
      runners["open_clip"] = (step, state)
    step, state, program = bdjax_runner(cfg, variables, trim)
    flops = step_flops(program(state, batch))
    state, losses["bdjax"] = warm_up(step, state, batch)
    runners["bdjax"] = (step, state)
    seconds = time_rounds(runners, batch, args.steps)
    for who, times in seconds.items():
      print(f"{name}: {who} seconds per step: {' '.join(f'{t:.3f}' for t in times)}")
    median = {who: float(np.median(times)) for who, times in seconds.items()}
    theirs = batch_size / median.get("open_clip", math.nan)
    ours = batch_size / median["bdjax"]
    print(
      f"{name}: first-step loss open_clip {losses['open_clip']:.6f}, bdjax {losses['bdjax']:.6f}",
      flush=True,
    )
    length = trim_tokens(batch)["tokens"].shape[1] if trim else cfg.text.context_length
    rows.append((name, batch_size, length, theirs, ours, flops / median['bdjax'] / 1e9))
    print(rows[-1], flush=True)
  peaks = matmul_peak(gpu, args.precision)
  peak = max(peaks.values())
  shown = ", ".join(f"{k} {v / 1e9:.0f}" for k, v in peaks.items())
  sizes = "4096^2 and 8192^2" if gpu else "2048^2 and 4096^2"
  where = torch.cuda.get_device_name() if gpu else f"CPU, torch threads: {torch.get_num_threads()}"
  print(
    f"\nmatmul peak ({args.precision}, {sizes}, best of 5): {shown} GFLOP/s; captions: "
    f"{args.captions}; trim: {trim}; {where}; malloc: "
    f"{'TCMalloc' if allocator.tcmalloc_loaded() else 'the C library (no LD_PRELOAD)'}\n"
  )
  print(
    "| model | batch | text tokens run | open_clip pairs/s | bdjax pairs/s | ratio | "
    "bdjax GFLOP/s | % of peak |"
  )
  print("|---|---:|---:|---:|---:|---:|---:|---:|")
  for name, b, length, theirs, ours, gflops in rows:
    print(
      f"| {name} | {b} | {length} | {theirs:.1f} | {ours:.1f} | {ours / theirs:.2f} | "
      f"{gflops:.1f} | {100 * gflops * 1e9 / peak:.0f} |"
    )


if __name__ == "__main__":
  main()
