"""UBT: over-fit on well-matched pairs, pick the most suspicious, unlearn them locally.

    python -m bdjax.main --config=configs/defense_ubt.py --workdir=workdir/defense_ubt
    python -m bdjax.main --config=configs/defense_ubt.py:pretrained=workdir/demo --workdir=...

Pre-trains the demo's BadNet-poisoned CLIP (or loads one: `pretrained=WORKDIR`), evaluates it,
runs the defense (bdjax/defenses/ubt.py) and evaluates again with DER. ARG is `key=value,...`:
`objective` (clip, clip_ssl, cyclip, siglip), `pretrained`.
"""

from bdjax.defenses import defense_config


def get_config(arg: str | None = None):
  return defense_config("ubt", arg)
