"""BadNet: an 8-px random-noise patch (a new draw per image, as in the reference code) at a
random place.

    python -m bdjax.main --config=configs/attack_badnet.py --workdir=workdir/attack_badnet

Pre-trains the demo's small CLIP on the embedded dataset with 1% of the pairs poisoned (target
'star'), then reports clean accuracy, attack success rate and robust accuracy (minutes on a
2-core CPU). ARG picks the objective (clip, clip_ssl, cyclip, siglip).
"""

from bdjax.default_config import attack_config, demo_config


def get_config(objective: str = "clip"):
  c = demo_config(objective, attack_config("badnet", ratio=0.01))
  c.name = f"badnet attack on {objective} pre-training (embedded dataset)"
  return c
