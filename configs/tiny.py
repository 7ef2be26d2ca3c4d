"""The smallest end-to-end run (seconds): a few steps on the embedded dataset, for tests.

python -m bdjax.main --config=configs/tiny.py --workdir=/tmp/bdjax_tiny
python -m bdjax.main --config=configs/tiny.py:siglip --workdir=...   # ARG = objective
"""

from bdjax.default_config import base_config


def get_config(objective: str = "clip"):
  c = base_config("tiny-cnn", objective)
  c.name = f"tiny ({objective})"
  c.data.num_train, c.data.num_eval = 512, 100
  c.model.image.widths = (8, 16)
  c.model.embed_dim = 32
  c.model.text.update(context_length=16, width=32, depth=1, heads=2)
  c.train.update(steps=8, batch_size=8, lr=1e-3, warmup_steps=2, checkpoint_every=4, log_every=2)
  c.eval.batch_size = 50
  return c
