"""Fine-tune on clean pairs with heavy weight decay.

    python -m bdjax.main --config=configs/defense_weight_decay.py --workdir=workdir/defense_weight_decay
    python -m bdjax.main --config=configs/defense_weight_decay.py:pretrained=workdir/demo --workdir=...

Pre-trains the demo's BadNet-poisoned CLIP (or loads one: `pretrained=WORKDIR`), evaluates it,
runs the defense (bdjax/defenses/weight_decay.py) and evaluates again with DER. ARG is `key=value,...`:
`objective` (clip, clip_ssl, cyclip, siglip), `pretrained`.
"""

from bdjax.defenses import defense_config


def get_config(arg: str | None = None):
  return defense_config("weight_decay", arg)
