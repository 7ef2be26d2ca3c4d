"""NAD: a clean-tuned teacher, a student fine-tuned with attention distillation.

    python -m bdjax.main --config=configs/defense_nad.py --workdir=workdir/defense_nad
    python -m bdjax.main --config=configs/defense_nad.py:pretrained=workdir/demo --workdir=...

Pre-trains the demo's BadNet-poisoned CLIP (or loads one: `pretrained=WORKDIR`), evaluates it,
runs the defense (bdjax/defenses/nad.py) and evaluates again with DER. ARG is `key=value,...`:
`objective` (clip, clip_ssl, cyclip, siglip), `pretrained`.
"""

from bdjax.defenses import defense_config


def get_config(arg: str | None = None):
  return defense_config("nad", arg)
