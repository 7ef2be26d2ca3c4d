"""CleanCLIP's own setting: poison a pre-trained CLIP, then clean it (Bansal et al. 2023).

    python -m bdjax.main --config=configs/cleanclip_pretrained.py:checkpoint=/models/RN50.pt \
        --workdir=DIR --config.data.train=/data/cc3m/train.csv --config.data.eval=/data/imagenet/val

ARG is `key=value,...`: `checkpoint` (an OpenAI or open_clip checkpoint file: OpenAI's RN50.pt,
an open_clip .bin or .safetensors; bdjax/models/convert.py reads it without running code from
it) and `model` (the bdjax preset of its architecture: rn50 by default, rn101, rn50x4,
vit-b-32, vit-b-16, vit-l-14; a mismatch is reported with the checkpoint's own preset).

Stages (REFERENCE.md sections 2 and 5):
- `poison`: fine-tune the pre-trained model on `data.train` (CleanCLIP: 500K CC3M pairs) of
  which 1,500 carry the BadNet patch (16 px at 224 px, random place) and a "banana" prompt:
  5 epochs of 500K pairs (`poison.steps`; set it for another corpus size), lr 1e-6, warmup 50,
  AdamW (weight decay 0.1), batch 128;
- `eval_poisoned`: zero-shot CA, ASR and RA on the evaluation set (ImageNet val);
- `cleanclip`: MMCL + in-modal SSL on a fixed subset of 100K clean pairs of `data.train`, 10 epochs at batch 64, lr 1e-5,
  warmup 50 (bdjax/defenses/cleanclip.py), keeping the highest-CA evaluation with ASR < 5%;
- `eval_defended`: the same metrics, and DER against `eval_poisoned`.
"""

from bdjax.default_config import parse_arg, study_config
from bdjax.defenses import cleanclip

POISON_PAIRS, POISONS, CLEAN_PAIRS = 500_000, 1_500, 100_000


def get_config(arg: str | None = None):
  opts = parse_arg(arg, checkpoint="", model="rn50")
  c = study_config("cc3m", "clip", opts["model"])
  c.name = f"CleanCLIP on a pre-trained {opts['model']} poisoned with BadNet"
  c.init.checkpoint = opts["checkpoint"]
  c.attack.count = POISONS
  c.poison = c.train.copy_and_resolve_references()
  c.poison.update(
    steps=5 * POISON_PAIRS // 128,
    batch_size=128,
    lr=1e-6,
    warmup_steps=50,
    checkpoint_every=1_000,
  )
  c.poison.kind = "train"
  c.eval_poisoned = c.eval.copy_and_resolve_references()
  names = cleanclip.add_stages(
    c,
    "poison",
    num_pairs=CLEAN_PAIRS,
    steps=10 * CLEAN_PAIRS // 64,
    batch_size=64,
    lr=1e-5,
    inmodal_weight=1.0,
    eval_every=1_000,
  )
  c.cleanclip.warmup_steps = 50
  c.eval_defended = c.eval.copy_and_resolve_references()
  c.eval_defended.der_against = "eval_poisoned"
  c.stages = ("poison", "eval_poisoned", *names, "eval_defended")
  return c
