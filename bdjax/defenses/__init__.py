"""Backdoor defenses: one module per defense, each a short list of stages built from the pieces
in `pieces/` (DESIGN.md). A defense never touches the trainer; what it may touch is its stage
options: the data (clean subset, selected pairs, per-pair weights), the loss (reductions, a
distillation term) and the optimiser (ascent, frozen leaves, chosen token rows, clamped masks),
plus select stages (index sets) and edit stages (pruning, row resets, shrink-and-perturb).

Every module has `add_stages(config, poisoned, **hyper)`, which adds its sections to `config`
(starting from the output of stage `poisoned`) and returns their names in order.
"""

from bdjax.defenses import abl, btu, cleanclip, nad, rnp, shrink_perturb, ubt, weight_decay

DEFENSES = {
  "cleanclip": cleanclip.add_stages,
  "abl": abl.add_stages,
  "rnp": rnp.add_stages,
  "nad": nad.add_stages,
  "btu": btu.add_stages,
  "ubt": ubt.add_stages,
  "shrink_perturb": shrink_perturb.add_stages,
  "weight_decay": weight_decay.add_stages,
}


def defense_config(name: str, arg: str | None = None):
  """The demo's BadNet-poisoned pre-training (`poisoned_demo_config`), evaluated, then defense
  `name`, evaluated again (with DER against the poisoned model).

  `arg` is `key=value,...` (the `configs/NAME.py:ARG` of the command line): `objective` (clip,
  clip_ssl, cyclip, siglip) and `pretrained`, the workdir of a finished poisoned run whose
  `train` stage is loaded instead of pre-training again (e.g. `workdir/demo`; its config must
  have the same attack and seed).
  """
  import ml_collections

  from bdjax.default_config import parse_arg, poisoned_demo_config

  opts = parse_arg(arg, objective="clip", pretrained="")
  c = poisoned_demo_config(opts["objective"])
  c.name = f"{name} against BadNet on {opts['objective']} pre-training (embedded dataset)"
  first = "train"
  if opts["pretrained"]:
    c.load = ml_collections.ConfigDict(dict(kind="load", workdir=opts["pretrained"], stage="train"))
    first = "load"
  c.eval_poisoned = c.eval.copy_and_resolve_references()
  names = DEFENSES[name](c, first)
  c.eval_defended = c.eval.copy_and_resolve_references()
  c.eval_defended.der_against = "eval_poisoned"
  c.stages = (first, "eval_poisoned", *names, "eval_defended")
  return c
