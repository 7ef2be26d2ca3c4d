"""Label-consistent BadNet: the patch goes only on pairs whose caption already names the
target, and those captions are kept (1% of all pairs, about a tenth of the star pairs).

    python -m bdjax.main --config=configs/attack_label_consistent.py \
        --workdir=workdir/attack_label_consistent

Pre-trains the demo's small CLIP on the embedded dataset with 1% of the pairs poisoned (target
'star'), then reports clean accuracy, attack success rate and robust accuracy (minutes on a
2-core CPU). ARG picks the objective (clip, clip_ssl, cyclip, siglip).
"""

from bdjax.default_config import attack_config, demo_config


def get_config(objective: str = "clip"):
  c = demo_config(objective, attack_config("badnet", ratio=0.01, label_consistent=True))
  c.name = f"label_consistent attack on {objective} pre-training (embedded dataset)"
  return c
