"""ABL: LGA isolation fine-tune, keep the 1% lowest-loss pairs, unlearn them by ascent.

    python -m bdjax.main --config=configs/defense_abl.py --workdir=workdir/defense_abl
    python -m bdjax.main --config=configs/defense_abl.py:pretrained=workdir/demo --workdir=...

Pre-trains the demo's BadNet-poisoned CLIP (or loads one: `pretrained=WORKDIR`), evaluates it,
runs the defense (bdjax/defenses/abl.py) and evaluates again with DER. ARG is `key=value,...`:
`objective` (clip, clip_ssl, cyclip, siglip), `pretrained`.
"""

from bdjax.defenses import defense_config


def get_config(arg: str | None = None):
  return defense_config("abl", arg)
