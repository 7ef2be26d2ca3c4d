"""CleanCLIP: fine-tune on 5,000 clean pairs with MMCL + 2 x in-modal SSL.

    python -m bdjax.main --config=configs/defense_cleanclip.py --workdir=workdir/defense_cleanclip
    python -m bdjax.main --config=configs/defense_cleanclip.py:pretrained=workdir/demo --workdir=...

Pre-trains the demo's BadNet-poisoned CLIP (or loads one: `pretrained=WORKDIR`), evaluates it,
runs the defense (bdjax/defenses/cleanclip.py) and evaluates again with DER. ARG is `key=value,...`:
`objective` (clip, clip_ssl, cyclip, siglip), `pretrained`.
"""

from bdjax.defenses import defense_config


def get_config(arg: str | None = None):
  return defense_config("cleanclip", arg)
