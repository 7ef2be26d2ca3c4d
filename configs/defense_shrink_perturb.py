"""Shrink-and-perturb the poisoned weights, then fine-tune on clean pairs.

    python -m bdjax.main --config=configs/defense_shrink_perturb.py --workdir=workdir/defense_shrink_perturb
    python -m bdjax.main --config=configs/defense_shrink_perturb.py:pretrained=workdir/demo --workdir=...

Pre-trains the demo's BadNet-poisoned CLIP (or loads one: `pretrained=WORKDIR`), evaluates it,
runs the defense (bdjax/defenses/shrink_perturb.py) and evaluates again with DER. ARG is `key=value,...`:
`objective` (clip, clip_ssl, cyclip, siglip), `pretrained`.
"""

from bdjax.defenses import defense_config


def get_config(arg: str | None = None):
  return defense_config("shrink_perturb", arg)
