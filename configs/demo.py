"""The demo: pre-train a small CLIP on BadNet-poisoned data, then clean it with CleanCLIP.

    make demo      # or: python -m bdjax.main --config=configs/demo.py --workdir=workdir/demo

Stages: pre-train the demo model (1,500 steps at batch 32) on the embedded dataset where 1% of
the pairs (200 of 20,000) carry a 16-px random-noise patch and one of the star's prompts as
caption ("a photo of a star."); evaluate it (clean accuracy CA, attack success rate ASR, robust
accuracy RA); fine-tune it with CleanCLIP on 5,000 clean pairs (bdjax/defenses/cleanclip.py);
evaluate again, with DER. Results land in workdir/demo/report.md (under 10 minutes on 2 CPU
cores: README). ARG picks the pre-training objective: configs/demo.py:clip_ssl, :cyclip, ...
"""

from bdjax.defenses import defense_config


def get_config(objective: str = "clip"):
  c = defense_config("cleanclip", f"objective={objective}")
  c.name = f"demo: BadNet-poisoned {objective} pre-training, then CleanCLIP (embedded dataset)"
  return c
