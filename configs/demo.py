"""The demo: a clean and a BadNet-poisoned small CLIP on the embedded dataset, side by side.

    make demo      # or: python -m bdjax.main --config=configs/demo.py --workdir=workdir/demo

Stages: pre-train a clean model (2,400 steps at batch 32) and evaluate it, then pre-train the
same model from the same initial parameters on data where 1% of the pairs (200 of 20,000)
carry an 8-px random-noise patch and one of the star's prompts as caption ("a photo of a
star."), and evaluate it: clean accuracy (CA), attack success rate (ASR) and robust accuracy
(RA) of both models land in workdir/demo/report.md (about 12 minutes on a 2-core CPU).
ARG picks the objective: configs/demo.py:clip_ssl, :cyclip, :siglip.
"""

from bdjax.default_config import attack_config, demo_config


def get_config(objective: str = "clip"):
  c = demo_config(objective, attack_config("badnet", ratio=0.01))
  c.name = f"demo: clean vs BadNet-poisoned {objective} pre-training on the embedded dataset"
  c.train_clean = c.train.copy_and_resolve_references()
  c.train_clean.poison = False
  c.train.init = "fresh"  # the poisoned model starts from the clean model's initial parameters
  c.eval_clean = c.eval.copy_and_resolve_references()
  c.stages = ("train_clean", "eval_clean", "train", "eval")
  return c
