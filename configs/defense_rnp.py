"""RNP: unlearn on clean pairs, learn channel masks, prune the lowest-mask channels.

    python -m bdjax.main --config=configs/defense_rnp.py --workdir=workdir/defense_rnp
    python -m bdjax.main --config=configs/defense_rnp.py:pretrained=workdir/demo --workdir=...

Pre-trains the demo's BadNet-poisoned CLIP (or loads one: `pretrained=WORKDIR`), evaluates it,
runs the defense (bdjax/defenses/rnp.py) and evaluates again with DER. ARG is `key=value,...`:
`objective` (clip, clip_ssl, cyclip, siglip), `pretrained`.
"""

from bdjax.defenses import defense_config


def get_config(arg: str | None = None):
  return defense_config("rnp", arg)
