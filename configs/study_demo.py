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

Budget (2 CPU cores alone, the README's rates: pre-training ~240 pairs/s for clip, about half
that for clip_ssl, cyclip ~ clip; CleanCLIP, a clip_ssl objective, ~120 pairs/s; an evaluation
of the 500 images and their ~450 triggered copies a few seconds):

    pre-training  3 seeds x 800 steps x 32 pairs x (1/240 + 1/120 + 1/230) s  ~ 1,280 s  21 min
    cleaning      9 points x 2 lr x 240 steps x 32 pairs / 120 pairs/s       ~ 1,150 s  19 min
    evaluation    9 x (1 + 2 x (4 + 1)) = 99 evaluations x ~3 s               ~   300 s   5 min
    start-up      9 points x ~15 s (compilation is cached across points)      ~   135 s   2 min
    total                                                                               ~ 48 min

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
  c.model.image.widths = (16, 32, 64)  # half the demo's widths: 1.65x faster steps (docstring)
  c.attack.ratio = 0.02
  c.train.update(steps=800, warmup_steps=100, checkpoint_every=400, log_every=100)
  c.data.num_eval = 500
  if opts["defense"] == "cleanclip":
    c.cleanclip.update(
      steps=240, batch_size=32, warmup_steps=24, eval_every=60, checkpoint_every=240, log_every=60
    )
    c.sweep.update(key="cleanclip.lr", choices=LEARNING_RATES, max_asr=0.05)
  return c
