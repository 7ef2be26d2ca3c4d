"""Where metrics go: one JSON object per line in `WORKDIR/metrics.jsonl`, the same records as
TensorBoard scalars in `WORKDIR/events.out.tfevents.*` (bdjax/tensorboard.py), and the console.

Each line is `{"stage": ..., "step": ..., **metrics}`, metrics as plain floats (accuracies as
fractions); in TensorBoard each metric is the scalar `STAGE/METRIC` at `step` (e.g.
`train/loss`, `cleanclip/eval/asr_top1`). Written by process 0 only.
"""

from __future__ import annotations

import json
import math

import jax
from etils import epath

from bdjax.tensorboard import EventWriter

FILENAME = "metrics.jsonl"


class MetricsLog:
  """Appends metrics records to `WORKDIR/metrics.jsonl` and its TensorBoard event file, and
  logs them."""

  def __init__(self, workdir: str):
    self.path = epath.Path(workdir) / FILENAME
    self._write = jax.process_index() == 0
    self._events = EventWriter(workdir) if self._write else None

  def write(self, stage: str, step: int, metrics: dict[str, float], echo: bool = True) -> None:
    record = {"stage": stage, "step": int(step), **{k: float(v) for k, v in metrics.items()}}
    if self._write:
      self.path.parent.mkdir(parents=True, exist_ok=True)
      with self.path.open("a") as f:
        f.write(json.dumps(record) + "\n")
      scalars = {f"{stage}/{k}": v for k, v in record.items() if k not in ("stage", "step")}
      self._events.scalars(record["step"], scalars)
    if echo:
      shown = ", ".join(f"{k}={_fmt(v)}" for k, v in record.items() if k not in ("stage", "step"))
      print(f"[{stage} step {step}] {shown}", flush=True)


def read_metrics(workdir: str) -> list[dict]:
  """All records of `WORKDIR/metrics.jsonl`, oldest first."""
  path = epath.Path(workdir) / FILENAME
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _fmt(v: float) -> str:
  return f"{v:.4g}" if math.isfinite(v) else str(v)
