"""The demo: pre-train a small CLIP (CNN image tower) on the embedded dataset, then evaluate.

    make demo      # or: python -m bdjax.main --config=configs/demo.py --workdir=workdir/demo

A 2-core CPU finishes it in a few minutes; the zero-shot accuracy and retrieval land in
workdir/demo/report.md. ARG picks the objective: configs/demo.py:clip_ssl, :cyclip, :siglip.
"""

from bdjax.default_config import base_config


def get_config(objective: str = "clip"):
  c = base_config("tiny-cnn", objective)
  c.name = f"demo: {objective} pre-training on the embedded dataset"
  c.train.update(steps=1200, batch_size=32, lr=1e-3, warmup_steps=100, checkpoint_every=300)
  return c
