"""The seed study (Verma et al.; REFERENCE.md section 2) at demo scale, as one grid.

    python -m bdjax.main --config=configs/study_demo.py --workdir=workdir/study_demo

Grid (bdjax/grid.py): pre-training objective (`arg.objective`: MMCL `clip`, MMCL+SSL
`clip_ssl`, CyCLIP `cyclip`) x `seed` (0, 1, 2) = 9 points, each in
`workdir/study_demo/points/objective=OBJ,seed=S/`. Each point: the demo model pre-trained on
the embedded dataset with 2% of the pairs poisoned by BadNet (16-px noise patch, target
"star"), evaluated; CleanCLIP on 5,000 clean pairs at two learning rates (`config.sweep`, both
from the one poisoned model), each run evaluated every 60 steps and keeping its best
evaluation with ASR < 5% (`select_below`), then evaluated with DER. The grid writes
`results.csv` (every evaluation), `report.md` (the study's table: CA / ASR of the poisoned and
of the selected cleaned model per objective, mean +- 95% CI over the seeds) and the plots.
A killed run resumes with the same command. Change the grid from the command line, e.g. one
seed: `--config.grid.axes="(('arg.objective', ('clip', 'clip_ssl', 'cyclip')), ('seed', (0,)))"`.

ARG (`key=value,...`): `objective` (set by the grid's axis), `defense` (default `cleanclip`;
another defense of bdjax/defenses runs with its own defaults and no sweep).

Measured (2026-12-01, 2 CPU cores alone, README "The study"): 51 min 26 s for the 9 points,
4.7-5.7 min for an MMCL or CyCLIP point, 6.3-7.3 min for an MMCL+SSL one (pre-training ~230
pairs/s for clip at batch 32, half that for clip_ssl; CleanCLIP ~110 pairs/s; an evaluation of
the 500 images and their ~450 triggered copies a few seconds). The image tower has half the
demo's widths, (16, 32, 64): on that day the demo's (32, 64, 128) ran at ~120 pairs/s and the
grid would have taken an estimated ~90 min (not run); the narrower tower still learns the task
(CA 86-99%) and the backdoor (ASR 66-93%).

What was cut from the demo to fit, and why: pre-training 800 steps instead of 1,500, with 2% of
the pairs poisoned instead of 1% (400 poisons seen 1.3 times each: more trigger exposures than
the demo's 1% at the 900 steps where its ASR reached 85%); CleanCLIP 240 steps at batch 32
(7,680 pairs, 1.5 epochs of the clean set) instead of 600 at batch 64, at lr 2e-3 and 6e-3 (the
demo's 4e-3 at batch 64 in between); 500 evaluation images instead of 1,000. At the demo's
rates CleanCLIP's ASR fell to ~10% only after ~12,800 clean pairs (README, "Defenses"), so a
point may well keep no model under the 5% rule here; the report says so per point and lists
its lowest ASR. Scale `cleanclip.steps` (and `eval_every`) up when there is time.
"""

import ml_collections

from bdjax.default_config import parse_arg
from bdjax.defenses import defense_config

OBJECTIVES = ("clip", "clip_ssl", "cyclip")
SEEDS = (0, 1, 2)
LEARNING_RATES = (2e-3, 6e-3)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  opts = parse_arg(arg, objective="clip", defense="cleanclip")
  c = defense_config(opts["defense"], f"objective={opts['objective']}")
  c.name = f"Seed study at demo scale: BadNet-poisoned pre-training, cleaned by {opts['defense']}"
  c.grid.axes = (("arg.objective", OBJECTIVES), ("seed", SEEDS))
  c.model.image.widths = (16, 32, 64)  # half the demo's widths: 1.65x faster steps
  c.attack.ratio = 0.02
  c.train.update(steps=800, warmup_steps=100, checkpoint_every=400, log_every=100)
  c.data.num_eval = 500
  if opts["defense"] == "cleanclip":
    c.cleanclip.update(
      steps=240, batch_size=32, warmup_steps=24, eval_every=60, checkpoint_every=240, log_every=60
    )
    c.sweep.update(key="cleanclip.lr", choices=LEARNING_RATES, max_asr=0.05)
  return c
