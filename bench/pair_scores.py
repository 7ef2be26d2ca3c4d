"""Where the poisoned pairs sit in the scores that ABL and UBT select by.

    python bench/pair_scores.py --config=configs/defense_abl.py --workdir=workdir/poisoned_demo

Loads the `train` stage of the run in --workdir (a model pre-trained on the config's poisoned
data), scores every training pair by per-pair CLIP loss and by image-caption cosine similarity
(bdjax/defenses/pieces/select.py, batches of 64), and prints the mean score of the poisoned
and the clean pairs and how many poisoned pairs fall in the lowest and highest 1%.
"""

from __future__ import annotations

import sys

import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from bdjax import sharding
from bdjax.attacks import poison
from bdjax.checkpoint import load_params
from bdjax.data import sources
from bdjax.defenses.pieces import select
from bdjax.metrics_log import MetricsLog
from bdjax.models import build_model
from bdjax.stages import Run

_CONFIG = config_flags.DEFINE_config_file("config", None, "The poisoned run's config.")
_WORKDIR = flags.DEFINE_string("workdir", None, "The poisoned run's workdir.")


def main(argv: list[str]) -> None:
  del argv
  logging.set_verbosity(logging.WARNING)
  c = _CONFIG.value
  scratch = f"{_WORKDIR.value}/pair_scores"
  r = Run(c, scratch, build_model(c.model), sharding.data_mesh(), MetricsLog(scratch))
  params = {"params": load_params(_WORKDIR.value, "train")["params"]}
  attack = r.attack()
  pairs = poison.PoisonedPairs(sources.train_source(c.data, c.seed), attack)
  n, k = len(pairs), len(pairs) // 100
  for score in ("loss", "similarity"):
    s = select.score_pairs(r.model, params, pairs, r.tokenizer, 64, score, seed=0)
    clean = np.delete(s, attack.indices)
    low = np.isin(select.keep(s, k, "lowest"), attack.indices).sum()
    high = np.isin(select.keep(s, k, "highest"), attack.indices).sum()
    print(
      f"{score}: poisoned mean {s[attack.indices].mean():.4f}, clean mean {clean.mean():.4f}; "
      f"poisoned among the lowest {k}: {low}, among the highest {k}: {high} "
      f"(of {len(attack.indices)} poisoned, {n} pairs)",
      flush=True,
    )


if __name__ == "__main__":
  sys.exit(app.run(main))
