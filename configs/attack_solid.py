"""Solid patch: an 8-px yellow square at a random place (CleanCLIP's 'yellow' trigger).

    python -m bdjax.main --config=configs/attack_solid.py --workdir=workdir/attack_solid

Pre-trains the demo's small CLIP on the embedded dataset with 1% of the pairs poisoned (target
'star'), then reports clean accuracy, attack success rate and robust accuracy (minutes on a
2-core CPU). ARG picks the objective (clip, clip_ssl, cyclip, siglip).
"""

from bdjax.default_config import attack_config, demo_config


def get_config(objective: str = "clip"):
  c = demo_config(objective, attack_config("solid", ratio=0.01))
  c.name = f"solid attack on {objective} pre-training (embedded dataset)"
  return c
