"""BTU: expose with the token table alone, reset the rows that moved most, clean tune.

    python -m bdjax.main --config=configs/defense_btu.py --workdir=workdir/defense_btu
    python -m bdjax.main --config=configs/defense_btu.py:pretrained=workdir/demo --workdir=...

Pre-trains the demo's BadNet-poisoned CLIP (or loads one: `pretrained=WORKDIR`), evaluates it,
runs the defense (bdjax/defenses/btu.py) and evaluates again with DER. ARG is `key=value,...`:
`objective` (clip, clip_ssl, cyclip, siglip), `pretrained`.
"""

from bdjax.defenses import defense_config


def get_config(arg: str | None = None):
  return defense_config("btu", arg)
